"""Plots a jtrain run's metrics (README "Progress and metrics"): for every head, the loss and the
accuracy over optimizer steps, training (the progress records) against evaluation (the eval
records of data.eval), one row of two panels per head, plus the learning rate when it varies.

usage: jtrain-plot RUN_DIR|metrics.jsonl [--out FILE.png]

RUN_DIR is a run folder (checkpoint.dir) holding metrics.jsonl. The default output is
metrics.png beside the metrics file. A resumed run's records (after its "start" record) continue
the same curves; records of steps already plotted (a restart from an older checkpoint) replace
the earlier ones from that step on, so the plot shows the run that the checkpoints hold."""
import argparse
import json
import os
import sys


def load(path):
    """The train and eval records, each list in step order, with restarts resolved."""
    train, evals = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"jtrain-plot: {path}:{n}: not JSON ({e.msg}); is this a jtrain metrics file?")
            kind = rec.get("type")
            if kind == "start":  # a restart: drop what it will train again
                step = rec.get("step", 0)
                train = [r for r in train if r["step"] <= step]
                evals = [r for r in evals if r["step"] <= step]
            elif kind == "train":
                train.append(rec)
            elif kind == "eval":
                evals.append(rec)
    return train, evals


def series(records, head, key):
    xs, ys = [], []
    for r in records:
        v = r.get("heads", {}).get(head, {}).get(key)
        if v is not None:
            xs.append(r["step"])
            ys.append(v)
    return xs, ys


def main():
    ap = argparse.ArgumentParser(prog="jtrain-plot", description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="run folder (checkpoint.dir) or metrics.jsonl")
    ap.add_argument("--out", help="output image (default: metrics.png beside the metrics)")
    a = ap.parse_args()
    path = os.path.join(a.run, "metrics.jsonl") if os.path.isdir(a.run) else a.run
    if not os.path.isfile(path):
        sys.exit(f"jtrain-plot: {path}: no such file (give a run folder or its metrics.jsonl)")
    train, evals = load(path)
    if not train and not evals:
        sys.exit(f"jtrain-plot: {path}: no train or eval records yet")
    heads = list((train or evals)[0]["heads"])
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(path)), "metrics.png")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("jtrain-plot: needs matplotlib: apt-get install python3-matplotlib "
                 "(or scripts/setup --with-plot)")
    lrs = [r["lr"] for r in train if "lr" in r]
    show_lr = len(set(lrs)) > 1
    rows = len(heads) + (1 if show_lr else 0)
    fig, axes = plt.subplots(rows, 2, figsize=(10, 3 * rows), squeeze=False)
    for i, head in enumerate(heads):
        for j, (key, label) in enumerate((("loss", "loss"), ("accuracy", "accuracy"))):
            ax = axes[i][j]
            for recs, name, style in ((train, "train", "-"), (evals, "eval", "o-")):
                xs, ys = series(recs, head, key)
                if xs:
                    ax.plot(xs, ys, style, label=name, markersize=3)
            ax.set_title(f"{head} {label}")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend()
    if show_lr:
        ax = axes[-1][0]
        ax.plot([r["step"] for r in train if "lr" in r], lrs)
        ax.set_title("learning rate")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        axes[-1][1].axis("off")
    fig.suptitle(os.path.basename(os.path.dirname(os.path.abspath(path))) or path)
    fig.tight_layout()
    tmp = f"{out}.tmp.{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, out)
    print(f"jtrain-plot: wrote {out} ({len(heads)} heads, {len(train)} train and {len(evals)} "
          f"eval records)")


if __name__ == "__main__":
    main()
