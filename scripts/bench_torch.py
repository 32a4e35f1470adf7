"""PyTorch twins of the benchmark models A and B (datasets/bench/model-{a,b}.yaml), trained on the
same synthetic data, batch and optimizer as jtrain and timed the way jtrain times itself; the
torch side of scripts/bench. One process = one rank; scripts/bench starts 1 process for "torch 1
thread" and 2 for "torch DDP gloo 2x1" (RANK/WORLD_SIZE, --init file://...).

The twin comes from scripts/jtrain_torch.py (build_twin: a torch model built from the jtrain
config itself, one source of truth with the reference fixtures) when that module imports and
builds; otherwise (or with --twin hand) from the two hand-written classes below, which have the
same layers, shapes and parameter counts as `jtrain summary` prints. The JSON says which.

    A: trunk conv2d 32 3x3 (valid) on 28x28, relu, maxpool 2, flatten (5408);
       heads item/speaker: dense 128, relu, dense 10 / 16.                   1,388,378 params
    B: image conv 32 3x3, relu, pool 2, conv 64 3x3, relu, pool 2, flatten (1600), dense 128,
       relu -> dense 10; audio GRU 128 over (32, 40), last state -> dense 16.   292,378 params

Loss: sum over heads of weight * mean cross-entropy over the labelled rows (-1 = no label), as
jtrain. Optimizer: torch.optim.AdamW with the config's lr, betas, eps, weight_decay; the
gradient norm is clipped only if the config sets train.clip_norm. Inputs are normalised as
jtrain does on load (uint8 * scale + offset, float (x - mean) / std). Batches: one permutation
of the train split per epoch (seed 1), global batch t = perm[t*B:(t+1)*B], rank r trains on the
r-th part of it.

Timing as jtrain's progress lines: the wall time of every --log-every steps (batch gather,
forward, backward, allreduce, optimizer), samples/s = global samples / that time; intervals
inside the first --warmup steps are dropped; the median of the rest is reported. Minor page
faults of the process over the timed steps (getrusage) are reported too.

Prints one JSON line (each rank). usage:
  bench_torch.py --model a|b --config FILE --data FILE [--steps 200] [--warmup 20]
                 [--batch 64 (per rank)] [--log-every 10] [--rank R --world W --init URL]
                 [--twin auto|module|hand]
  bench_torch.py --check-params a|b   (print the hand-written twin's parameter count)
"""
import argparse
import ctypes
import json
import os
import resource
import statistics
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn


class ModelA(nn.Module):
    """A shared conv trunk with two dense heads (datasets/bench/model-a.yaml)."""

    arrays = ("image",)

    def __init__(self, n_item, n_speaker):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.item = nn.Sequential(nn.Linear(5408, 128), nn.ReLU(), nn.Linear(128, n_item))
        self.speaker = nn.Sequential(nn.Linear(5408, 128), nn.ReLU(), nn.Linear(128, n_speaker))

    def forward(self, image):
        t = self.trunk(image.unsqueeze(1))
        return {"item": self.item(t), "speaker": self.speaker(t)}


class ModelB(nn.Module):
    """Two separate networks: an image CNN -> item, an audio GRU -> speaker (model-b.yaml)."""

    arrays = ("image", "audio")

    def __init__(self, n_item, n_speaker):
        super().__init__()
        self.image_net = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(1600, 128), nn.ReLU())
        self.audio_net = nn.GRU(40, 128, batch_first=True)
        self.item = nn.Linear(128, n_item)
        self.speaker = nn.Linear(128, n_speaker)

    def forward(self, image, audio):
        h = self.audio_net(audio)[1][0]  # the last hidden state, (N, 128)
        return {"item": self.item(self.image_net(image.unsqueeze(1))), "speaker": self.speaker(h)}


MODELS = {"a": ModelA, "b": ModelB}
# head -> target array, as in both configs
TARGETS = {"item": "label", "speaker": "speaker"}


def openblas_corename():
    """The kernel of the libopenblas that this process (torch) has loaded, or None."""
    for name in ("libopenblas.so.0", "libopenblas.so"):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return None


def load_split(path, split, arrays, targets):
    """The input arrays of one split as float32 tensors, normalised as jtrain does on load, and
    the target arrays as int64."""
    out = {}
    with h5py.File(path, "r") as f:
        g = f[split]
        for name in arrays:
            d = g[name]
            x = d[()]
            if x.dtype == np.uint8:
                scale = float(d.attrs.get("scale", 1.0 / 255.0))
                offset = float(d.attrs.get("offset", 0.0))
                x = x.astype(np.float32) * np.float32(scale) + np.float32(offset)
            elif "mean" in d.attrs:
                x = (x.astype(np.float32) - d.attrs["mean"].astype(np.float32)) / \
                    d.attrs["std"].astype(np.float32)
            out[name] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        for t in targets:
            out[t] = torch.from_numpy(g[t][()].astype(np.int64))
    return out


def optimizer_settings(cfg):
    """AdamW arguments and clip norm from a jtrain config (defaults as docs/config.md's)."""
    tr = cfg.get("train", {})
    o = tr.get("optimizer", {}) or {}
    kw = dict(lr=float(o.get("lr", 1e-3)),
              betas=(float(o.get("beta1", 0.9)), float(o.get("beta2", 0.999))),
              eps=float(o.get("eps", 1e-8)), weight_decay=float(o.get("weight_decay", 0.0)))
    return kw, float(tr.get("clip_norm", 0.0) or 0.0)


def head_weights(cfg):
    return {h: float(v.get("weight", 1.0)) for h, v in cfg["model"]["heads"].items()}


def build(kind, cfg, data_path, split, how):
    """(module, arrays it reads, fn(module, batch) -> loss, source). The module is the twin from
    scripts/jtrain_torch.py if how is auto/module and it builds, else the hand-written class."""
    note = ""
    if how in ("auto", "module"):
        try:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import jtrain_torch as jt
            with h5py.File(data_path, "r") as f:
                shapes, classes = jt.shapes_of(f[split])
            twin, _ = jt.build_twin(cfg, shapes, classes)
            twin.dropout_mode = "torch"
            reads = sorted({twin.src[c] for c in twin.order if twin.src[c] in shapes})
            targets = sorted({t for t, _ in twin.heads.values()})

            def step_loss(model, batch):
                inner = model.module if hasattr(model, "module") else model
                return jt.loss(inner, model(batch, train=True), batch)[0]
            return twin, reads, targets, step_loss, "scripts/jtrain_torch.py build_twin"
        except Exception as e:  # noqa: BLE001 - any failure falls back, and says why
            if how == "module":
                raise
            note = " (jtrain_torch unusable: %s: %s)" % (type(e).__name__, e)
    cls = MODELS[kind]
    with h5py.File(data_path, "r") as f:
        n_item, n_speaker = (len(f[split][t].attrs["classes"]) for t in ("label", "speaker"))
    weights = head_weights(cfg)

    def step_loss(model, batch):
        loss = 0
        for head, logits in model(*[batch[a] for a in cls.arrays]).items():
            loss = loss + weights[head] * F.cross_entropy(logits, batch[TARGETS[head]],
                                                          ignore_index=-1)
        return loss
    return (cls(n_item, n_speaker), list(cls.arrays), sorted(TARGETS.values()), step_loss,
            "scripts/bench_torch.py hand-written" + note)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS))
    ap.add_argument("--config")
    ap.add_argument("--data")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64, help="per rank")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--rank", type=int, default=int(os.environ.get("RANK", 0)))
    ap.add_argument("--world", type=int, default=int(os.environ.get("WORLD_SIZE", 1)))
    ap.add_argument("--init", help="torch.distributed init_method (file:// or tcp://127.0.0.1:P)")
    ap.add_argument("--twin", choices=["auto", "module", "hand"], default="auto")
    ap.add_argument("--check-params", choices=sorted(MODELS))
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    if args.check_params:
        m = MODELS[args.check_params](10, 16)
        print(sum(p.numel() for p in m.parameters()))
        return 0
    if not (args.model and args.config and args.data):
        ap.error("--model, --config and --data are required")
    if args.steps <= args.warmup:
        ap.error("--steps must exceed --warmup")

    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    adam, clip = optimizer_settings(cfg)
    split = cfg.get("data", {}).get("train", "train")
    torch.manual_seed(1)
    model, reads, targets, step_loss, source = build(args.model, cfg, args.data, split, args.twin)
    data = load_split(args.data, split, reads, targets)
    n_params = sum(p.numel() for p in model.parameters())
    ddp = args.world > 1
    if ddp:
        import torch.distributed as dist
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        dist.init_process_group("gloo", init_method=args.init, rank=args.rank,
                                world_size=args.world)
        model = nn.parallel.DistributedDataParallel(model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), **adam)

    n = data[targets[0]].shape[0]
    B, G = args.batch, args.batch * args.world
    per_epoch = n // G
    gen = torch.Generator().manual_seed(1)
    perm, epoch = None, -1
    intervals, fault_intervals, t_log, f_log = [], [], None, 0
    flt_start = None
    for step in range(args.steps):
        if step == args.warmup:
            flt_start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        if step % args.log_every == 0:
            f_log = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t_log = time.perf_counter()
        if step // per_epoch != epoch:
            epoch = step // per_epoch
            perm = torch.randperm(n, generator=gen)
        t = step % per_epoch
        idx = perm[t * G + args.rank * B: t * G + (args.rank + 1) * B]
        # jtrain divides each head's summed loss by the global labelled count; with every row
        # labelled (synth) that is the local mean, which DDP's gradient averaging keeps
        loss = step_loss(model, {a: data[a][idx] for a in reads + targets})
        opt.zero_grad(set_to_none=False)
        loss.backward()
        if clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if (step + 1) % args.log_every == 0:
            dt = time.perf_counter() - t_log
            if step + 1 - args.log_every >= args.warmup:
                intervals.append(G * args.log_every / dt)
                fault_intervals.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f_log)
    flt_end = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    timed = args.steps - args.warmup
    if ddp:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    # every rank prints: scripts/bench reads each rank's page faults
    print(json.dumps({
        "rank": args.rank, "model": args.model, "world": args.world, "global_batch": G,
        "steps": args.steps, "warmup": args.warmup, "twin": source,
        "samples_per_s": statistics.median(intervals),
        "intervals": [round(x, 1) for x in intervals], "params": n_params,
        "faults_per_step_inprocess": (flt_end - flt_start) / timed,
        "faults_per_interval": fault_intervals,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "openblas": openblas_corename(), "adamw": {**adam, "betas": list(adam["betas"])},
        "clip_norm": clip, "loss": float(loss)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
