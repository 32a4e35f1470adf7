"""Copies a jtrain data set and keeps only a fraction of one label array's labels in one split
(the rest become -1, "no label"): semi-supervised variants of a data set, e.g. the AVFM recipe
where the speaker is known for 10 % of the training rows (README "Multi-task training").

usage: jtrain-mask-labels IN.h5 OUT.h5 --array speaker --keep 0.1 [--split train] [--seed 1]

The rows that keep their label are drawn without replacement from numpy's default_rng(seed),
exactly round(keep * labelled rows) of the rows that had a label. Every other array, attribute
and split is copied unchanged; OUT is written to a temporary file and renamed."""
import argparse
import os
import sys

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser(prog="jtrain-mask-labels", description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--array", required=True, help="label array to thin out")
    ap.add_argument("--keep", type=float, required=True, help="fraction of labels kept, in [0, 1]")
    ap.add_argument("--split", default="train")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if not 0.0 <= a.keep <= 1.0:
        ap.error(f"--keep {a.keep}: expected a fraction in [0, 1]")
    tmp = f"{a.dst}.tmp.{os.getpid()}"
    try:
        with h5py.File(a.src, "r") as fin, h5py.File(tmp, "w") as fout:
            for k, v in fin.attrs.items():
                fout.attrs[k] = v
            for name in fin:
                fin.copy(fin[name], fout, name=name)
            key = f"{a.split}/{a.array}"
            if key not in fout:
                sys.exit(f"jtrain-mask-labels: {a.src}: no array /{key}")
            y = fout[key][()]
            if y.ndim != 1 or y.dtype.kind != "i":
                sys.exit(f"jtrain-mask-labels: {a.src}: /{key} is not a class label array (int, [N])")
            rows = np.flatnonzero(y >= 0)
            keep = np.random.default_rng(a.seed).choice(rows, size=int(round(a.keep * rows.size)),
                                                        replace=False)
            masked = np.full_like(y, -1)
            masked[keep] = y[keep]
            fout[key][...] = masked
        os.replace(tmp, a.dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"{a.dst}: /{a.split}/{a.array} keeps {keep.size} of {rows.size} labels "
          f"({a.keep:g}), seed {a.seed}")


if __name__ == "__main__":
    main()
