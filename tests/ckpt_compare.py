"""Compares the parameters (and with --adam, Adam's moments) of two jtrain checkpoints.

usage: ckpt_compare.py A.h5 B.h5 [--delta D] [--adam]
Exit 0 if every value differs by at most D (default 0: bitwise equal), 1 otherwise, printing
the largest difference and where it is."""
import argparse
import sys

import h5py
import numpy as np


def groups(adam):
    return ["params", "adam/m", "adam/v"] if adam else ["params"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--delta", type=float, default=0.0)
    ap.add_argument("--adam", action="store_true")
    args = ap.parse_args()
    worst, where = 0.0, None
    with h5py.File(args.a, "r") as fa, h5py.File(args.b, "r") as fb:
        for g in groups(args.adam):
            if sorted(fa[g].keys()) != sorted(fb[g].keys()):
                print(f"{g}: different views", file=sys.stderr)
                return 1
            for name in fa[g]:
                x, y = fa[g][name][()], fb[g][name][()]
                if x.shape != y.shape:
                    print(f"{g}/{name}: shapes {x.shape} vs {y.shape}", file=sys.stderr)
                    return 1
                if args.delta == 0.0 and x.tobytes() != y.tobytes():
                    print(f"{g}/{name}: not bitwise equal", file=sys.stderr)
                    return 1
                d = float(np.max(np.abs(x.astype(np.float64) - y))) if x.size else 0.0
                if d > worst:
                    worst, where = d, f"{g}/{name}"
    print(f"max |difference| {worst:.3g}" + (f" at {where}" if where else ""))
    return 0 if worst <= args.delta else 1


if __name__ == "__main__":
    sys.exit(main())
