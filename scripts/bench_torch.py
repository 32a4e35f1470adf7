"""The AVFM `separate` / `separate-cnn` recipes written in PyTorch, timed on the same data, batch
and optimizer as jtrain (the reference for scripts/bench-torch). Prints one line:
    torch RECIPE: median S samples/s over K timed steps (threads T)

usage: bench_torch.py --recipe separate|separate-cnn --data FILE [--steps 80] [--threads 1]
"""
import argparse
import statistics
import sys
import time

import h5py
import numpy as np
import torch
from torch import nn


class Separate(nn.Module):
    """image CNN -> item; audio GRU(128) or conv1d net -> speaker (datasets/avfm/*.yaml)."""

    def __init__(self, audio_kind, n_item, n_speaker):
        super().__init__()
        self.image = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 128), nn.ReLU())
        self.audio_kind = audio_kind
        if audio_kind == "gru":
            self.gru = nn.GRU(40, 128, batch_first=True)
        else:
            self.audio = nn.Sequential(
                nn.Conv1d(40, 64, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
                nn.Conv1d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
                nn.Flatten(), nn.Dropout(0.25), nn.Linear(128 * 8, 128), nn.ReLU())
        self.item = nn.Linear(128, n_item)
        self.speaker = nn.Linear(128, n_speaker)

    def forward(self, image, audio):
        a = self.gru(audio)[1][0] if self.audio_kind == "gru" else self.audio(audio.transpose(1, 2))
        return self.item(self.image(image)), self.speaker(a)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="separate", choices=["separate", "separate-cnn"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    with h5py.File(args.data, "r") as f:
        g = f["train"]
        image = torch.from_numpy(g["image"][()].astype(np.float32) / 255.0).unsqueeze(1)
        a = g["audio"]
        audio = torch.from_numpy((a[()] - a.attrs["mean"]) / a.attrs["std"]).float()
        item = torch.from_numpy(g["label"][()].astype(np.int64))
        speaker = torch.from_numpy(g["speaker"][()].astype(np.int64))
        n_item, n_speaker = len(g["label"].attrs["classes"]), len(g["speaker"].attrs["classes"])
    model = Separate("gru" if args.recipe == "separate" else "conv", n_item, n_speaker)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss(ignore_index=-1)
    n, B = image.shape[0], args.batch
    gen = torch.Generator().manual_seed(1)
    perm = torch.randperm(n, generator=gen)
    times = []
    for step in range(args.steps + 5):  # 5 warm-up steps
        idx = perm[(step * B) % (n - B):][:B]
        t0 = time.perf_counter()
        li, ls = model(image[idx], audio[idx])
        loss = 0.5 * loss_fn(li, item[idx]) + 0.5 * loss_fn(ls, speaker[idx])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if step >= 5:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"torch {args.recipe}: median {B / med:.0f} samples/s over {len(times)} timed steps "
          f"(threads {args.threads}, torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
