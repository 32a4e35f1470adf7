#!/usr/bin/env bash
# jtrain predict: every head's logits and predictions in data-set order, on 1 and 2 ranks
# (the same predictions; logits equal up to rounding), and exactly the predictions eval counts:
# the correct counts (rows, tokens, whole sequences) from /HEAD/pred and the labels equal
# `jtrain eval --json` on 1 and 2 ranks, for a class head and a sequence head (greedy tokens).
source "$(dirname "$0")/../testlib.sh"
make_synth synth.h5 300 130
for cfg in tiny-shared arch2-attention; do
  jt_mpirun -np 2 "$JTRAIN" train "$FIX/$cfg.yaml" --set checkpoint.dir="$cfg" \
    --set train.epochs=0 --set train.steps=8 > "$cfg.log" 2>&1 || { cat "$cfg.log"; fail "train $cfg"; }
  for np in 1 2; do
    jt_mpirun -np "$np" "$JTRAIN" predict "$cfg" --out "$cfg-p$np.h5" > "$cfg-p$np.log" 2>&1 \
      || { cat "$cfg-p$np.log"; fail "$cfg: predict np $np"; }
    jt_mpirun -np "$np" "$JTRAIN" eval "$cfg" --json > "$cfg-e$np.json" 2>&1 \
      || { cat "$cfg-e$np.json"; fail "$cfg: eval np $np"; }
  done
  "$JT_PYTHON" - "$cfg" <<'PY' || fail "$cfg: predictions disagree"
import json, sys
import h5py, numpy as np
cfg = sys.argv[1]
p1, p2 = h5py.File(f"{cfg}-p1.h5", "r"), h5py.File(f"{cfg}-p2.h5", "r")
data = h5py.File("synth.h5", "r")["test"]
for np_ in (1, 2):
    ev = json.load(open(f"{cfg}-e{np_}.json"))["heads"]
    p = (p1, p2)[np_ - 1]
    assert p.attrs["split"] == "test" and int(p.attrs["step"]) == 8
    for head, e in ev.items():
        pred, logits = p[head]["pred"][()], p[head]["logits"][()]
        target = {"item": "label", "word": "word", "speaker": "speaker", "caption": "caption"}[head]
        y = data[target][()]
        assert pred.shape == y.shape, (head, pred.shape, y.shape)
        assert (pred == logits.argmax(axis=-1)).all(), head
        mask = y >= 0
        assert int(mask.sum()) == e["n"], (head, int(mask.sum()), e["n"])
        assert int(((pred == y) & mask).sum()) == e["correct"], (head, np_, e)
        if y.ndim == 2:  # sequences: exact when every labelled token is right
            rows = mask.any(axis=1)
            exact = (((pred == y) | ~mask).all(axis=1) & rows).sum()
            assert int(exact) == round(e["sequence_accuracy"] * e["sequences"]), (head, e)
        assert len(p[head].attrs["classes"]) == logits.shape[-1]
for head in p1:
    assert (p1[head]["pred"][()] == p2[head]["pred"][()]).all(), head
    d = np.abs(p1[head]["logits"][()] - p2[head]["logits"][()]).max()
    assert d <= 1e-4, (head, d)
print(cfg, "ok")
PY
  pass "$cfg: predict np 1 and 2 agree and equal eval's counts"
done
# summary of a checkpoint without its data file: the model from the checkpoint's layout
"$JTRAIN" summary arch2-attention > sum-with.txt 2>&1 || { cat sum-with.txt; fail "summary"; }
mv synth.h5 away.h5
"$JTRAIN" summary arch2-attention/latest > sum-without.txt 2>&1 || { cat sum-without.txt; fail "summary without data"; }
mv away.h5 synth.h5
grep -q "the checkpoint's layout; the data file is not here" sum-without.txt || fail "no layout note"
diff <(tail -n +2 sum-with.txt) <(tail -n +2 sum-without.txt) || fail "summaries differ"
pass "summary of a checkpoint without the data file equals the one with it"

expect_exit 2 "predict needs --out" -- "$JTRAIN" predict tiny-shared
expect_exit 4 "nothing-here" -- jt_mpirun -np 1 "$JTRAIN" predict nothing-here --out x.h5
[ ! -e x.h5 ] || fail "a failed predict left x.h5"
pass "usage errors"
