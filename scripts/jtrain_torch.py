#!/usr/bin/python3
"""jtrain_torch - PyTorch twins of jtrain models: the outside oracle of issue 7, and the loader
of jtrain checkpoints into PyTorch (issue 11).

A twin is a torch.nn.Module that computes what jtrain computes for the same config: the same
blocks and heads, the same layer kinds (src/layers/*.c, all of them), the projection
"<head>.out" jtrain adds to every class head, the same loss (per head: weight * mean
cross-entropy over labelled rows, label -1 masked; summed over heads; src/model.c jt_model_loss)
and torch.optim.AdamW (src/optim.c follows it term by term). Every activation keeps jtrain's
layout: a sequence is (N, T, F), time-major, so conv1d -> flatten flattens (T', filters) as
jtrain does. Parameters are named by jtrain's views ("<chain>.<index>.<kind>.<param>",
"<head>.out.W"); PARAM_MAP is the one table, per layer kind, of which torch tensor each view is
and how its layout differs (only conv1d's weight is permuted); the twins, the reference
fixtures, the benchmark and load() all go through it.

Needs Debian's /usr/bin/python3 (torch, numpy, h5py, PyYAML: scripts/setup --with-torch).

Checkpoints:

    m = load("runs/x/latest")          # or a ckpt-<step>.h5, a run folder, a best file
    x = read_split(m.data, m.split, data_arrays(m)[0])   # normalised inputs, as jtrain loads them
    logits = m(x)                                         # {head: (N, classes) | (N, L, vocab)}

    /usr/bin/python3 scripts/jtrain_torch.py CHECKPOINT --eval [--data FILE] [--split NAME]

prints `jtrain eval CHECKPOINT --json`'s JSON, computed in torch (exit 2 usage, 3 data set, 4
checkpoint, as jtrain). Evaluation decodes sequence heads greedily, as jtrain's eval does.

Twins (the reference fixtures, the benchmark):

    cfg = load_config(path_or_text)                # the YAML config as a dict
    twin, views = build_twin(cfg, shapes, classes)  # views: {view name: (kind, pname, Parameter)}
    arrays = to_tensors(twin, {name: numpy batch}, dtype)
    logits = forward(twin, arrays, rows=, step=, train=)   # {head: logits tensor}
    total, per_head = loss(twin, logits, arrays)    # per_head: {head: mean cross-entropy}
    jtrain_arrays(views, grad=False)                # {view: float32 ndarray, jtrain layout}
    load_jtrain_arrays(views, {view: ndarray})
    opt = make_optimizer(twin, cfg)
    total, per_head, norm = train_step(twin, opt, arrays, rows, step, clip_norm)
    shapes_of(h5_split_group)                       # (shapes, classes) of a data set split

`shapes` maps every array the model reads to its per-sample shape (an input (H, W), (C, H, W) or
(T, F); a class label (); a sequence label (L,)); `classes` maps each label array to its number
of classes (or vocabulary). `arrays` maps names to batches: inputs float (already normalised as
jtrain normalises them on load), labels integer. Dropout: `twin.dropout_mode = "jtrain"` draws
jtrain's own masks (xoshiro256** streams per (seed, step, row, layer), src/rng.c; slow, exact),
"torch" uses torch.nn.functional.dropout (for benchmarks).
"""
import json
import math
import os
import re
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

try:
    import yaml
except ImportError:  # pragma: no cover - scripts/setup --with-torch installs python3-yaml
    yaml = None

LN_EPS = 1e-5  # src/layers/norm.c JT_LN_EPS


def load_config(source):
    """Parses a jtrain config from a file path or from YAML text (contains a newline)."""
    if yaml is None:
        raise RuntimeError("jtrain_torch needs PyYAML (apt-get install python3-yaml)")
    text = source if "\n" in source else open(source, encoding="utf-8").read()
    return yaml.safe_load(text)


def parse_layer(spec):
    """A layer as written in the config (`relu` or `{conv2d: {...}}`) -> (kind, settings)."""
    if isinstance(spec, str):
        return spec, {}
    (kind, opts), = spec.items()
    return kind, dict(opts or {})


# ---- the name map: the ONE place that ties jtrain's parameter views to torch's tensors ----

_T12 = (0, 2, 1)  # swap the last two axes of a 3-D weight
_RNN = [("W_ih", "rnn.weight_ih_l0"), ("W_hh", "rnn.weight_hh_l0"), ("b_ih", "rnn.bias_ih_l0"),
        ("b_hh", "rnn.bias_hh_l0")]  # gate blocks in torch's order on both sides: GRU r, z, n;
#                                      LSTM i, f, g, o (src/layers/gru.c, lstm.c)
_MHA = [(n, n) for n in ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")]

# kind -> [(jtrain parameter name, attribute path of the torch tensor in the layer module,
#           permutation taking the torch tensor to jtrain's layout (None: the same layout))],
# in jtrain's registration order: a view is "<chain>.<index>.<kind>.<name>" ("<head>.out.<name>"
# for the projection jtrain adds to a class head). Kinds without parameters are absent.
PARAM_MAP = {
    "dense": [("W", "lin.weight"), ("b", "lin.bias")],          # (out, in), as nn.Linear
    "conv2d": [("W", "conv.weight"), ("b", "conv.bias")],       # (filters, C, k, k)
    # jtrain (filters, k, F), time-major windows; torch (filters, F, k)
    "conv1d": [("W", "conv.weight", _T12), ("b", "conv.bias")],
    "gru": _RNN,
    "lstm": _RNN,
    "layernorm": [("gain", "ln.weight"), ("bias", "ln.bias")],
    "attention_pool": [("W", "W"), ("b", "b"), ("v", "v")],    # (A, F), (A), (A)
    "self_attention": _MHA,                                      # torch's x @ W.t() + b
    "cross_attention": _MHA,
    # emb (V+1, U) with START = row V; the GRU cell's input is [emb; context]
    "attn_decoder": [("emb", "emb"), ("W_a", "W_a"), ("U_a", "U_a"), ("b_a", "b_a"), ("v", "v"),
                     ("W_ih", "cell.weight_ih"), ("W_hh", "cell.weight_hh"),
                     ("b_ih", "cell.bias_ih"), ("b_hh", "cell.bias_hh"), ("W_o", "W_o"),
                     ("b_o", "b_o")],
}


def _param_entry(kind, pname):
    for e in PARAM_MAP.get(kind, ()):
        if e[0] == pname:
            return e
    raise KeyError(f"layer kind {kind!r} has no parameter {pname!r}")


def _perm(kind, pname):
    e = _param_entry(kind, pname)
    return e[2] if len(e) > 2 else None


def jtrain_layout(kind, pname, t):
    """A torch parameter (tensor) in jtrain's layout for view <...>.<kind>.<pname>."""
    perm = _perm(kind, pname)
    return t if perm is None else t.permute(*perm)


def torch_layout(kind, pname, t):
    """Inverse of jtrain_layout."""
    perm = _perm(kind, pname)
    return t if perm is None else t.permute(*np.argsort(perm).tolist())


def layer_params(layer):
    """[(jtrain parameter name, torch Parameter)] of a twin layer, from PARAM_MAP."""
    out = []
    for e in PARAM_MAP.get(layer.kind, ()):
        obj = layer
        for part in e[1].split("."):
            obj = getattr(obj, part)
        out.append((e[0], obj))
    return out


# ---- jtrain's random streams (src/rng.c), for bit-exact dropout masks ----

_M64 = (1 << 64) - 1


def _splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & _M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return x, z ^ (z >> 31)


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & _M64


class JtRng:
    """jt_rng (xoshiro256** seeded through splitmix64 from a tuple), as src/rng.c."""

    def __init__(self, seed, purpose, a, b, c):
        x = seed & _M64
        for part in (purpose, a, b, c):
            x2, z = _splitmix64(x)
            x = x2 ^ ((z + part * 0xD1342543DE82EF95) & _M64)
        s = []
        for _ in range(4):
            x, z = _splitmix64(x)
            s.append(z)
        if not any(s):
            s[0] = 1
        self.s = s

    def u64(self):
        s = self.s
        result = (_rotl((s[1] * 5) & _M64, 7) * 9) & _M64
        t = (s[1] << 17) & _M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def uniform(self):
        """float32 in [0, 1) with 24 random bits (returned as a Python float, exact)."""
        return (self.u64() >> 40) / 16777216.0


JT_RNG_DROPOUT = 3


def jtrain_dropout_mask(seed, step, row, layer_index, size, rate):
    """The mask jtrain's dropout draws for one row: 0 or float32(1 / (1 - rate)) per element."""
    r = JtRng(seed, JT_RNG_DROPOUT, step, row, layer_index)
    rate32 = float(np.float32(rate))
    keep = float(np.float32(1.0 / (1.0 - rate)))
    return np.array([keep if r.uniform() >= rate32 else 0.0 for _ in range(size)])


# ---- layer kinds: each computes what src/layers/<kind>.c computes, in jtrain's layout ----

def _seq_view(shape, allow_vec=False):
    """A per-sample shape read as T vectors of F: (T, F, chw), chw for a (C, H, W) map."""
    if len(shape) == 1 and allow_vec:
        return 1, shape[0], False
    if len(shape) == 2:
        return shape[0], shape[1], False
    if len(shape) == 3:
        return shape[1] * shape[2], shape[0], True
    raise ValueError(f"expected a sequence or a feature map, got {shape}")


def _as_rows(x, chw):
    """(N, C, H, W) -> (N, H*W, C) for a feature map; a sequence (N, T, F) as it is."""
    return x.reshape(x.shape[0], x.shape[1], -1).transpose(1, 2) if chw else x


def _same_pad(size, k, s):
    """TensorFlow SAME padding as jtrain defines it: (out, pad before, pad after)."""
    out = (size + s - 1) // s
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


class Layer(nn.Module):
    """A layer of a chain: in_shape / out_shape per sample; params() in jtrain's view order."""

    kind = None

    def params(self):
        return layer_params(self)


class Dense(Layer):
    kind = "dense"

    def __init__(self, o, shape):
        super().__init__()
        self.lin = nn.Linear(shape[-1], o["units"])
        self.out_shape = tuple(shape[:-1]) + (o["units"],)


    def forward(self, x, ctx):
        return self.lin(x)


class Conv2d(Layer):
    kind = "conv2d"

    def __init__(self, o, shape):
        super().__init__()
        self.two = len(shape) == 2
        C, H, W = (1,) + tuple(shape) if self.two else shape
        k, s = o["kernel"], o.get("stride", 1)
        if o.get("padding", "valid") == "same":
            oh, pt, pb = _same_pad(H, k, s)
            ow, pl, pr = _same_pad(W, k, s)
            self.pad = (pl, pr, pt, pb)
        else:
            oh, ow, self.pad = (H - k) // s + 1, (W - k) // s + 1, None
        self.conv = nn.Conv2d(C, o["filters"], k, stride=s)
        self.out_shape = (o["filters"], oh, ow)


    def forward(self, x, ctx):
        if self.two:
            x = x.unsqueeze(1)
        if self.pad:
            x = F.pad(x, self.pad)
        return self.conv(x)


class MaxPool2d(Layer):
    kind = "maxpool2d"

    def __init__(self, o, shape):
        super().__init__()
        p = o.get("size", 2)
        s = o.get("stride", p)
        self.pool = nn.MaxPool2d(p, s)
        oh, ow = (shape[-2] - p) // s + 1, (shape[-1] - p) // s + 1
        self.out_shape = tuple(shape[:-2]) + (oh, ow)

    def forward(self, x, ctx):
        return self.pool(x)  # (N, H, W) reads as an unbatched (C, H, W): the same windows


class Flatten(Layer):
    kind = "flatten"

    def __init__(self, o, shape):
        super().__init__()
        self.out_shape = (math.prod(shape),)

    def forward(self, x, ctx):
        return x.reshape(x.shape[0], -1)


class Elementwise(Layer):
    FNS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}

    def __init__(self, o, shape, kind):
        super().__init__()
        self.kind, self.fn, self.out_shape = kind, self.FNS[kind], tuple(shape)

    def forward(self, x, ctx):
        return self.fn(x)


class Dropout(Layer):
    kind = "dropout"

    def __init__(self, o, shape):
        super().__init__()
        self.rate, self.out_shape = float(o.get("rate", 0.0)), tuple(shape)
        self.layer_index = None  # set by Twin: the layer's index in the whole model

    def forward(self, x, ctx):
        if not ctx["train"] or self.rate == 0.0:
            return x
        if ctx["dropout_mode"] == "torch":
            return F.dropout(x, self.rate, True)
        size = math.prod(self.out_shape)
        mask = np.stack([jtrain_dropout_mask(ctx["seed"], ctx["step"], int(r), self.layer_index,
                                             size, self.rate) for r in ctx["rows"]])
        return x * torch.from_numpy(mask).to(x.dtype).reshape(x.shape)


class Conv1d(Layer):
    kind = "conv1d"

    def __init__(self, o, shape):
        super().__init__()
        T, Fin = shape
        k, s = o["kernel"], o.get("stride", 1)
        if o.get("padding", "valid") == "same":
            ot, before, after = _same_pad(T, k, s)
            self.pad = (before, after)
        else:
            ot, self.pad = (T - k) // s + 1, None
        self.conv = nn.Conv1d(Fin, o["filters"], k, stride=s)
        self.out_shape = (ot, o["filters"])


    def forward(self, x, ctx):
        x = x.transpose(1, 2)  # (N, T, F) -> torch's (N, F, T)
        if self.pad:
            x = F.pad(x, self.pad)
        return self.conv(x).transpose(1, 2)


class Pool1d(Layer):
    def __init__(self, o, shape, kind):
        super().__init__()
        self.kind = kind
        k = o["size"]
        s = o.get("stride", k)
        self.pool = (nn.MaxPool1d if kind == "maxpool1d" else nn.AvgPool1d)(k, s)
        self.out_shape = ((shape[0] - k) // s + 1, shape[1])

    def forward(self, x, ctx):
        return self.pool(x.transpose(1, 2)).transpose(1, 2)


class MeanPoolTime(Layer):
    kind = "meanpool_time"

    def __init__(self, o, shape):
        super().__init__()
        self.out_shape = (shape[1],)

    def forward(self, x, ctx):
        return x.mean(1)


class Recurrent(Layer):
    def __init__(self, o, shape, kind):
        super().__init__()
        self.kind = kind
        U = o["units"]
        self.rnn = (nn.GRU if kind == "gru" else nn.LSTM)(shape[1], U, batch_first=True)
        self.seq = bool(o.get("return_sequences", False))
        self.out_shape = (shape[0], U) if self.seq else (U,)


    def forward(self, x, ctx):
        y = self.rnn(x)[0]
        return y if self.seq else y[:, -1]


class LayerNorm(Layer):
    kind = "layernorm"

    def __init__(self, o, shape):
        super().__init__()
        self.ln = nn.LayerNorm(shape[-1], eps=LN_EPS)
        self.out_shape = tuple(shape)


    def forward(self, x, ctx):
        return self.ln(x)


def _glorot(*shape):
    fan_out, fan_in = (shape[0], shape[1]) if len(shape) == 2 else (1, shape[0])
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return nn.Parameter(torch.empty(*shape).uniform_(-a, a))


def _small(n):
    return nn.Parameter(torch.empty(n).uniform_(-0.1, 0.1))


class AttentionPool(Layer):
    """p_t = tanh(W x_t + b), e_t = v . p_t, a = softmax_t(e), y = sum_t a_t x_t."""

    kind = "attention_pool"

    def __init__(self, o, shape):
        super().__init__()
        _, Fin, self.chw = _seq_view(shape)
        A = o.get("units") or Fin
        self.W, self.b, self.v = _glorot(A, Fin), _small(A), _glorot(A)
        self.out_shape = (Fin,)


    def forward(self, x, ctx):
        X = _as_rows(x, self.chw)
        a = torch.softmax(torch.tanh(X @ self.W.t() + self.b) @ self.v, dim=1)
        return (a.unsqueeze(-1) * X).sum(1)


class MultiHeadAttention(Layer):
    """torch.nn.MultiheadAttention's maths with separate q/k/v projections (kdim = vdim)."""

    def __init__(self, o, shape, kind, aux_shape=None):
        super().__init__()
        self.kind = kind
        self.cross = kind == "cross_attention"
        T, Fq, self.q_chw = _seq_view(shape, allow_vec=self.cross)
        self.vec = len(shape) == 1
        if self.cross:
            _, G, self.kv_chw = _seq_view(aux_shape)
            self.context = o["context"]
        else:
            G = Fq
        D = o.get("units") or Fq
        self.H = o.get("heads", 1)
        self.Wq, self.bq = _glorot(D, Fq), _small(D)
        self.Wk, self.bk = _glorot(D, G), _small(D)
        self.Wv, self.bv = _glorot(D, G), _small(D)
        self.Wo, self.bo = _glorot(D, D), _small(D)
        self.out_shape = (D,) if self.vec else (T, D)


    def forward(self, x, ctx):
        N = x.shape[0]
        Xq = x.unsqueeze(1) if self.vec else _as_rows(x, self.q_chw)
        Xkv = _as_rows(ctx["chains"][self.context], self.kv_chw) if self.cross else Xq
        D, H = self.Wq.shape[0], self.H
        dk = D // H

        def heads(z):  # (N, T, D) -> (N, H, T, dk)
            return z.reshape(N, z.shape[1], H, dk).transpose(1, 2)

        Q = heads(Xq @ self.Wq.t() + self.bq)
        K = heads(Xkv @ self.Wk.t() + self.bk)
        V = heads(Xkv @ self.Wv.t() + self.bv)
        P = torch.softmax(Q @ K.transpose(-1, -2) / math.sqrt(dk), dim=-1)
        O = (P @ V).transpose(1, 2).reshape(N, -1, D)
        Y = O @ self.Wo.t() + self.bo
        return Y[:, 0] if self.vec else Y


class AttnDecoder(Layer):
    """GRU decoder with additive attention (src/layers/decoder.c), teacher forcing in training
    (the head's target tokens, -1 fed as 0), greedy at evaluation. E = A = U."""

    kind = "attn_decoder"

    def __init__(self, o, shape, vocab, length, target):
        super().__init__()
        _, Fin, self.chw = _seq_view(shape, allow_vec=True)
        self.vec = len(shape) == 1
        self.U = U = o["units"]
        self.V, self.L, self.target = vocab, length, target
        self.emb = nn.Parameter(0.1 * torch.randn(vocab + 1, U))
        self.W_a, self.U_a, self.b_a, self.v = _glorot(U, Fin), _glorot(U, U), _small(U), _glorot(U)
        self.cell = nn.GRUCell(U + Fin, U)
        self.W_o, self.b_o = _glorot(vocab, U + Fin), _small(vocab)
        self.out_shape = (length, vocab)


    def forward(self, x, ctx):
        N = x.shape[0]
        X = x.unsqueeze(1) if self.vec else _as_rows(x, self.chw)
        keys = X @ self.W_a.t()
        h = torch.zeros(N, self.U, dtype=x.dtype)
        tokens = ctx["arrays"][self.target] if ctx["train"] else None
        out, tok = [], torch.full((N,), self.V, dtype=torch.long)
        for t in range(self.L):
            if t > 0:
                tok = (tokens[:, t - 1].clamp(min=0) if ctx["train"]
                       else out[-1].argmax(1))
            e = torch.tanh(keys + (h @ self.U_a.t() + self.b_a).unsqueeze(1)) @ self.v
            c = (torch.softmax(e, dim=1).unsqueeze(-1) * X).sum(1)
            h = self.cell(torch.cat([self.emb[tok], c], 1), h)
            out.append(torch.cat([h, c], 1) @ self.W_o.t() + self.b_o)
        return torch.stack(out, 1)


def _make_layer(kind, o, shape, aux_shape=None, head=None):
    if kind in ("relu", "tanh", "sigmoid"):
        return Elementwise(o, shape, kind)
    if kind in ("maxpool1d", "avgpool1d"):
        return Pool1d(o, shape, kind)
    if kind in ("gru", "lstm"):
        return Recurrent(o, shape, kind)
    if kind in ("self_attention", "cross_attention"):
        return MultiHeadAttention(o, shape, kind, aux_shape)
    if kind == "attn_decoder":
        return AttnDecoder(o, shape, *head)
    simple = {"dense": Dense, "conv2d": Conv2d, "maxpool2d": MaxPool2d, "flatten": Flatten,
              "dropout": Dropout, "conv1d": Conv1d, "meanpool_time": MeanPoolTime,
              "layernorm": LayerNorm, "attention_pool": AttentionPool}
    if kind not in simple:
        raise ValueError(f"layer kind {kind!r} has no torch twin")
    return simple[kind](o, shape)


# ---- the model graph ----

def chain_order(cfg):
    """Block names in jtrain's order (src/model.c order_blocks: repeated sweeps in config order,
    placing each block whose input and context blocks are placed), then the heads."""
    blocks = cfg["model"]["blocks"]
    placed = []
    while len(placed) < len(blocks):
        progress = False
        for name, b in blocks.items():
            if name in placed:
                continue
            deps = [b["input"]] + [parse_layer(s)[1].get("context") for s in b["layers"]]
            if all(d is None or d not in blocks or d in placed for d in deps):
                placed.append(name)
                progress = True
        if not progress:
            raise ValueError("blocks form a cycle")
    return placed + list(cfg["model"]["heads"])


class Twin(nn.Module):
    """The torch twin of a jtrain model: chains (blocks, then heads) of Layer modules."""

    def __init__(self, cfg, shapes, classes):
        super().__init__()
        blocks, heads = cfg["model"]["blocks"], cfg["model"]["heads"]
        self.order = chain_order(cfg)
        self.src, self.heads = {}, {}
        self.chains = nn.ModuleDict()
        self.seed = int(cfg.get("train", {}).get("seed", 1))
        self.dropout_mode = "jtrain"
        out_shape, index = {}, 0
        for name in self.order:
            is_head = name in heads
            c = heads[name] if is_head else blocks[name]
            self.src[name] = c["input"]
            shape = out_shape[c["input"]] if c["input"] in out_shape else tuple(shapes[c["input"]])
            specs = [parse_layer(s) for s in c.get("layers") or []]
            head = None
            if is_head:
                tgt = c["target"]
                self.heads[name] = (tgt, float(c.get("weight", 1.0)))
                if len(shapes[tgt]) == 1:  # a sequence label: the decoder is the last layer
                    head = (classes[tgt], shapes[tgt][0], tgt)
                else:
                    specs.append(("dense", {"units": classes[tgt]}))
            layers = nn.ModuleList()
            for i, (kind, o) in enumerate(specs):
                aux = out_shape.get(o.get("context")) if kind == "cross_attention" else None
                lay = _make_layer(kind, o, shape, aux, head)
                lay.view = (f"{name}.out" if is_head and i == len(specs) - 1 and head is None
                            else f"{name}.{i}.{kind}")
                lay.layer_index = index
                index += 1
                layers.append(lay)
                shape = lay.out_shape
            out_shape[name] = shape
            self.chains[name] = layers

    def forward(self, arrays, rows=None, step=0, train=False):
        ctx = {"train": train, "rows": rows, "step": step, "seed": self.seed, "arrays": arrays,
               "chains": {}, "dropout_mode": self.dropout_mode}
        for name in self.order:
            x = ctx["chains"].get(self.src[name])
            if x is None:
                x = self._input(arrays[self.src[name]])
            for lay in self.chains[name]:
                x = lay(x, ctx)
            ctx["chains"][name] = x
        return {h: ctx["chains"][h] for h in self.heads}

    def _input(self, x):
        """An input batch as a tensor of the twin's float dtype (numpy arrays and other float
        dtypes are converted; the values must already be normalised as jtrain loads them)."""
        dtype = next(self.parameters()).dtype
        x = torch.as_tensor(x)
        return x if x.dtype == dtype else x.to(dtype)


def build_twin(cfg, shapes, classes, dtype=torch.float32):
    """The twin of config cfg (a dict) over arrays of the given per-sample shapes and label
    class counts, and its views: {jtrain view name: (kind, pname, torch Parameter)} in jtrain's
    registration order. Parameters start from torch's defaults (seed with torch.manual_seed)."""
    twin = Twin(cfg, shapes, classes).to(dtype)
    views = {}
    for name in twin.order:
        for lay in twin.chains[name]:
            for pname, p in lay.params():
                views[f"{lay.view}.{pname}"] = (lay.kind, pname, p)
    return twin, views


def to_tensors(twin, arrays, dtype=torch.float32):
    """numpy batches -> tensors: the twin's label arrays (head targets) as int64, every other
    array (inputs, already normalised as jtrain normalises them on load) as dtype."""
    labels = {tgt for tgt, _ in twin.heads.values()}
    return {k: torch.from_numpy(np.ascontiguousarray(a)).to(torch.long if k in labels else dtype)
            for k, a in arrays.items()}


def forward(twin, arrays, rows=None, step=0, train=False):
    """{head: logits} for a batch: (N, classes), or (N, L, vocab) for a sequence head. rows (the
    rows' global indices) and step matter only for dropout in training."""
    return twin(arrays, rows=rows, step=step, train=train)


def loss(twin, logits, arrays):
    """(total, {head: mean cross-entropy over the head's labelled rows or tokens}); total is
    sum over heads of weight * mean. A head with no labelled row contributes 0."""
    total, per_head = 0.0, {}
    for h, (tgt, weight) in twin.heads.items():
        z, y = logits[h], arrays[tgt]
        z, y = z.reshape(-1, z.shape[-1]), y.reshape(-1)
        count = int((y >= 0).sum())
        m = (F.cross_entropy(z, y, ignore_index=-1, reduction="sum") / count if count
             else z.sum() * 0.0)
        per_head[h] = m
        total = total + weight * m
    return total, per_head


def jtrain_arrays(views, grad=False):
    """{view: float32 ndarray in jtrain's layout} of the parameters (or their gradients)."""
    out = {}
    for name, (kind, pname, p) in views.items():
        t = p.grad if grad else p
        out[name] = jtrain_layout(kind, pname, t.detach()).contiguous().cpu().numpy().astype(np.float32)
    return out


def load_jtrain_arrays(views, arrays):
    """Sets every parameter from {view: ndarray in jtrain's layout} (all views required)."""
    with torch.no_grad():
        for name, (kind, pname, p) in views.items():
            a = torch.from_numpy(np.asarray(arrays[name])).to(p.dtype)
            p.copy_(torch_layout(kind, pname, a))


def make_optimizer(twin, cfg):
    """torch.optim.AdamW with the config's train.optimizer settings (jtrain's defaults)."""
    o = cfg.get("train", {}).get("optimizer", {}) or {}
    return torch.optim.AdamW(twin.parameters(), lr=float(o.get("lr", 1e-3)),
                             betas=(float(o.get("beta1", 0.9)), float(o.get("beta2", 0.999))),
                             eps=float(o.get("eps", 1e-8)),
                             weight_decay=float(o.get("weight_decay", 0.0)))


def clip_grad_norm(twin, max_norm):
    """jtrain's clipping (src/optim.c): if max_norm > 0 and the global norm exceeds it, scale
    by max_norm / norm (torch's clip_grad_norm_ divides by norm + 1e-6 instead). Returns norm."""
    grads = [p.grad for p in twin.parameters() if p.grad is not None]
    norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
    if max_norm > 0 and norm > max_norm:
        for g in grads:
            g.mul_(max_norm / norm)
    return norm


def train_step(twin, opt, arrays, rows, step, clip_norm=0.0):
    """One jtrain training step (src/train.c): forward in training mode at global step `step`
    (0-based; dropout streams), loss, backward, clipping, opt.step(). Returns the total loss and
    the per-head losses before the update, and the gradient norm before clipping."""
    opt.zero_grad(set_to_none=False)
    total, per_head = loss(twin, forward(twin, arrays, rows, step, train=True), arrays)
    total.backward()
    norm = clip_grad_norm(twin, clip_norm)
    opt.step()
    return float(total), {h: float(v) for h, v in per_head.items()}, norm


def shapes_of(split):
    """(shapes, classes) of an h5py group /<split> of a jtrain data set."""
    shapes, classes = {}, {}
    for name, d in split.items():
        shapes[name] = tuple(d.shape[1:])
        if "classes" in d.attrs or "vocab" in d.attrs:
            classes[name] = len(d.attrs["vocab"] if "vocab" in d.attrs else d.attrs["classes"])
    return shapes, classes


# ---- checkpoints: load() and the eval command ----

def layout_of(path):
    """(shapes, classes) from a checkpoint's /layout (the arrays as training saw them; jtrain
    writes it since it could summarise a checkpoint without its data), or None without one."""
    with h5py.File(path, "r") as f:
        if "layout" not in f:
            return None
        a = f["layout"].attrs
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in a["names"]]
        dims = list(a["dims"])
        shapes, classes = {}, {}
        for i, name in enumerate(names):
            shapes[name] = tuple(int(d) for d in dims[3 * i:3 * i + int(a["ndims"][i])])
            if int(a["roles"][i]) == 1:
                classes[name] = int(a["classes"][i])
        return shapes, classes


class JtError(Exception):
    """An error the command reports as one line and an exit code (jtrain's: 2 usage, 3 data
    set, 4 checkpoint)."""

    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code


_CKPT_NAME = re.compile(r"ckpt-[0-9]{8,20}\.h5")


def resolve_checkpoint(path):
    """The checkpoint file a user names, as jtrain resolves it (src/ckpt_dir.c jt_ckpt_resolve):
    a ckpt-<step>.h5 (any HDF5 file), a run folder (its latest), or a latest/best pointer file,
    whose one line names a checkpoint file beside it."""
    path = os.fspath(path)
    if os.path.isdir(path):
        base = path.rstrip("/") or "/"
        pointer = os.path.join(base, "latest")
        if not os.path.exists(pointer):
            raise JtError(4, f"checkpoint {path}: a directory without a latest file (not a "
                             "checkpoint folder, or no checkpoint was written there yet)")
        return _read_pointer(pointer, base + ("" if base == "/" else "/"))
    if not os.path.isfile(path):
        raise JtError(4, f"checkpoint {path}: " + ("not a regular file or directory"
                                                   if os.path.exists(path) else
                                                   "No such file or directory"))
    if h5py.is_hdf5(path):
        return path
    slash = path.rfind("/")
    return _read_pointer(path, path[:slash + 1])


def _read_pointer(pointer, base):
    with open(pointer, "rb") as f:
        text = f.read(256)
    name = text[:-1] if text.endswith(b"\n") else text
    if not _CKPT_NAME.fullmatch(name.decode("latin-1")):
        shown = "".join(c if " " <= c <= "~" else "?" for c in name[:60].decode("latin-1"))
        raise JtError(4, f"checkpoint {pointer}: not an HDF5 file, nor a latest or best file "
                         f"naming one like ckpt-00000020.h5 (found '{shown}')")
    target = base + name.decode("ascii")
    if not os.path.isfile(target):
        raise JtError(4, f"checkpoint {pointer} names {target}, which does not exist or is not "
                         "a file")
    return target


def read_checkpoint(path):
    """(config text, step, {view: float32 ndarray}) of a checkpoint file (include/jtrain/ckpt.h);
    the loss-balancing views balance.* (train.balance), not part of the network, are left out."""
    try:
        with h5py.File(path, "r") as f:
            if _attr_str(f.attrs.get("jtrain_format")) != "checkpoint":
                raise JtError(4, f"checkpoint {path}: not a jtrain checkpoint (attribute "
                                 "jtrain_format is not 'checkpoint')")
            text = _attr_str(f.attrs["config"])
            step = int(f.attrs["step"])
            params = {k: np.asarray(d[()], dtype=np.float32) for k, d in f["params"].items()
                      if not k.startswith("balance.")}
    except (OSError, KeyError) as e:
        raise JtError(4, f"checkpoint {path}: {e}") from None
    return text, step, params


def _attr_str(v):
    return v.decode("utf-8") if isinstance(v, bytes) else (None if v is None else str(v))


def data_arrays(twin):
    """(input arrays, label arrays) the twin reads from a data set split."""
    inputs = sorted({twin.src[c] for c in twin.order if twin.src[c] not in twin.chains})
    labels = sorted({tgt for tgt, _ in twin.heads.values()})
    return inputs, labels


def _split_meta(path, split):
    try:
        with h5py.File(path, "r") as f:
            if split not in f:
                raise JtError(3, f"{path}: no split /{split}")
            return shapes_of(f[split])
    except OSError as e:
        raise JtError(3, f"{path}: {e}") from None


def load(checkpoint, data=None, split=None, shapes=None, classes=None, dtype=torch.float32):
    """A torch.nn.Module (a Twin, in eval mode) of a jtrain checkpoint: built from its resolved
    config (root attribute config) with its weights (/params/<view>, through PARAM_MAP).

    checkpoint: a ckpt-<step>.h5, a run folder or a latest/best file. The per-sample shapes and
    class counts come from the data set's metadata (data, default the config's data.file, read
    from the working directory as jtrain does; split, default data.eval), or when that file is
    not there from the checkpoint's /layout, unless shapes and classes are given (as for
    build_twin). Every view of the checkpoint but balance.* must match
    a twin parameter in name and shape, and the other way round.

    m(arrays) maps arrays by name (normalised inputs, e.g. read_split's: image (N, H, W) or
    (N, C, H, W), audio (N, T, F)) to {head: logits}, (N, classes) or (N, L, vocab) for a
    sequence head, decoded greedily as jtrain's eval does (no target tokens needed). The module
    carries .checkpoint (the resolved file), .step, .config (dict), .config_text, .data,
    .split."""
    path = resolve_checkpoint(checkpoint)
    text, step, params = read_checkpoint(path)
    try:
        cfg = load_config(text)
    except Exception as e:  # noqa: BLE001 - a damaged config is a checkpoint error
        raise JtError(4, f"checkpoint {path}: its config does not parse: {e}") from None
    dcfg = cfg.get("data") or {}
    data = data or dcfg.get("file")
    split = split or dcfg.get("eval", "test")
    if shapes is None or classes is None:  # the data set's metadata; without the file, the
        meta = None if data and os.path.exists(data) else layout_of(path)  # checkpoint's layout
        shapes, classes = meta if meta else _split_meta(data, split)
    try:
        twin, views = build_twin(cfg, shapes, classes, dtype)
    except (KeyError, ValueError) as e:
        raise JtError(3, f"{data} /{split}: cannot build the model of {path} on it: "
                         f"{type(e).__name__}: {e}") from None
    missing = [v for v in views if v not in params]
    extra = [v for v in params if v not in views]
    if missing or extra:
        raise JtError(4, f"checkpoint {path} does not match its model: "
                         + "; ".join(x for x in (
                             missing and "missing " + ", ".join(missing[:5]),
                             extra and "unexpected " + ", ".join(extra[:5])) if x))
    for name, (kind, pname, p) in views.items():
        want = tuple(jtrain_layout(kind, pname, p).shape)
        if params[name].shape != want:
            raise JtError(4, f"checkpoint {path}: params/{name} has shape "
                             f"{params[name].shape}, the model expects {want}")
    load_jtrain_arrays(views, params)
    twin.eval()
    twin.checkpoint, twin.step, twin.config, twin.config_text = path, step, cfg, text
    twin.data, twin.split = data, split
    return twin


def read_split(path, split, names, dtype=torch.float32):
    """{name: tensor} of whole arrays of a data set split: inputs normalised as jtrain does on
    load (src/data.c: x * scale + offset, uint8's default scale 1/255, or (x - mean) / std per
    entry of the last axis; in double, then rounded to float32), labels as int64."""
    out = {}
    try:
        with h5py.File(path, "r") as f:
            g = f[split]
            for name in names:
                if name not in g:
                    raise JtError(3, f"{path}: no array /{split}/{name}")
                d = g[name]
                x = d[()]
                a = d.attrs
                if "classes" in a or "vocab" in a:
                    out[name] = torch.from_numpy(x.astype(np.int64))
                    continue
                if "mean" in a:
                    mean = np.asarray(a["mean"], np.float64).reshape(-1)
                    std = np.asarray(a["std"], np.float64).reshape(-1)
                    x = (x.astype(np.float64) - mean) / std
                elif "scale" in a or "offset" in a or x.dtype == np.uint8:
                    scale = float(np.asarray(a.get("scale", 1 / 255 if x.dtype == np.uint8
                                                    else 1.0)).reshape(-1)[0])
                    offset = float(np.asarray(a.get("offset", 0.0)).reshape(-1)[0])
                    x = x.astype(np.float64) * scale + offset
                out[name] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dtype)
    except OSError as e:
        raise JtError(3, f"{path}: {e}") from None
    return out


def head_stats(logits, y):
    """jtrain's sums for one head and batch (src/loss.c, src/model.c jt_model_loss): rows (or
    tokens) with a label >= 0 count; loss_sum = sum of log-sum-exp(z) - z_y in float64 over the
    float logits; correct = argmax (first maximum) == y; for a sequence head (y (N, L)) a row
    with a labelled token is a sequence, exact when every labelled token is right."""
    V = logits.shape[-1]
    z = logits.detach().reshape(-1, V).double()
    yy = y.reshape(-1)
    if len(yy) and (int(yy.min()) < -1 or int(yy.max()) >= V):
        raise JtError(3, f"a label outside [-1, {V})")
    mask = yy >= 0
    zl, yl = z[mask], yy[mask]
    st = {"loss_sum": float((torch.logsumexp(zl, 1) - zl.gather(1, yl[:, None])[:, 0]).sum())
          if len(yl) else 0.0,
          "n": int(mask.sum()), "correct": int((zl.argmax(1) == yl).sum()),
          "seq_rows": 0, "seq_exact": 0}
    if y.dim() == 2:
        right = (z.argmax(1) == yy) | ~mask
        m2 = mask.reshape(y.shape)
        rows = m2.any(1)
        st["seq_rows"] = int(rows.sum())
        st["seq_exact"] = int((right.reshape(y.shape).all(1) & rows).sum())
    return st


def evaluate(twin, arrays, batch=256):
    """{head: sums} over a split's arrays ({name: tensor}, read_split's), in batches of rows."""
    _, labels = data_arrays(twin)
    n = next(iter(arrays.values())).shape[0]
    acc = {h: {"loss_sum": 0.0, "n": 0, "correct": 0, "seq_rows": 0, "seq_exact": 0}
           for h in twin.heads}
    twin.eval()
    with torch.no_grad():
        for off in range(0, n, batch):
            part = {k: v[off:off + batch] for k, v in arrays.items()}
            logits = twin(part)
            for h, (tgt, _) in twin.heads.items():
                for k, v in head_stats(logits[h], part[tgt]).items():
                    acc[h][k] += v
    return acc


def eval_json(twin, acc, data, split):
    """The JSON line of `jtrain eval --json` (src/evaluate.c), with the same number formats."""
    def num(x):
        return "%.6f" % x

    parts = []
    for h in twin.heads:
        a, seq = acc[h], len(twin.chains[h]) and twin.chains[h][-1].kind == "attn_decoder"
        n = a["n"]
        s = _json_str(h) + ": {"
        s += (f'"loss": {num(a["loss_sum"] / n)}, "accuracy": {num(a["correct"] / n)}' if n
              else '"loss": null, "accuracy": null')
        s += f', "n": {n}, "correct": {a["correct"]}'
        if seq:
            s += (', "sequence_accuracy": ' + (num(a["seq_exact"] / a["seq_rows"])
                                              if a["seq_rows"] else "null"))
            s += f', "sequences": {a["seq_rows"]}'
        parts.append(s + "}")
    return ('{"checkpoint": %s, "data": %s, "split": %s, "step": %d, "heads": {%s}}'
            % (_json_str(twin.checkpoint), _json_str(data), _json_str(split), twin.step,
               ", ".join(parts)))


def _json_str(s):
    """A path as a JSON string as jtrain writes it: UTF-8, a byte that is not UTF-8 as U+FFFD."""
    return json.dumps(os.fsencode(s).decode("utf-8", "replace"), ensure_ascii=False)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(
        prog="jtrain_torch.py",
        description="Load a jtrain checkpoint into PyTorch; --eval prints per-head metrics as "
                    "JSON in the shape of `jtrain eval CHECKPOINT --json`.")
    ap.add_argument("checkpoint", help="a ckpt-<step>.h5, a run folder, or a latest/best file")
    ap.add_argument("--eval", action="store_true", help="evaluate on a split and print JSON")
    ap.add_argument("--data", help="the data set (default: the config's data.file)")
    ap.add_argument("--split", help="the split (default: the config's data.eval)")
    ap.add_argument("--batch", type=int, default=256, help="rows per forward pass (256)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if not args.eval:
        ap.error("nothing to do: pass --eval")
    if args.batch < 1:
        ap.error("--batch must be >= 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        twin = load(args.checkpoint, data=args.data, split=args.split)
        inputs, labels = data_arrays(twin)
        arrays = read_split(twin.data, twin.split, inputs + labels)
        acc = evaluate(twin, arrays, args.batch)
        print(eval_json(twin, acc, twin.data, twin.split), flush=True)
    except JtError as e:
        print(f"jtrain_torch: {e}", file=sys.stderr)
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
