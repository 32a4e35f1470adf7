#!/usr/bin/env bash
# Progress and metrics (README "Progress and metrics"):
#   - in a log (stdout not a terminal): plain lines with elapsed time and ETA, one line per
#     finished epoch, the end summary ("trained N steps ... in T") and the results table;
#   - on a terminal (JTRAIN_PROGRESS=bar, as under a pty): a live bar per epoch redrawn with \r,
#     and no plain step lines;
#   - metrics.jsonl: train records with lr, elapsed_s and wall; eval records with elapsed_s;
#     one epoch record per finished epoch, 1-based; the resume line counts epochs from 1 too;
#   - scripts/jtrain-plot writes a PNG of a run folder.
source "$(dirname "$0")/../testlib.sh"
make_synth synth.h5 320 100
cfg="$FIX/tiny-shared.yaml"   # batch 32: 10 steps per epoch
common=(--set train.epochs=0 --set train.steps=25 --set log.every_steps=5 --set train.eval_every=10)

jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=plain "${common[@]}" > plain.log 2>&1 \
  || { cat plain.log; fail "plain run"; }
grep -qE '^epoch 1 step 5/25 \|.* \| ([0-9]+:)?[0-9.]+s? elapsed, ETA ([0-9]+:)?[0-9.]+s? \| [0-9]+ samples/s$' plain.log \
  || { cat plain.log; fail "no plain progress line with elapsed and ETA"; }
grep -qE '^epoch 2/3 done at step 20 in ([0-9]+:)?[0-9.]+s? \| word loss' plain.log || fail "no epoch line"
grep -qE '^trained 25 steps \(0 -> 25 of 25\) in ([0-9]+:)?[0-9.]+s?$' plain.log || fail "no end summary"
grep -qE '^eval test step 10 \| word loss' plain.log || fail "eval line"
grep -A3 '^results on synth.h5 /test at step 25:' plain.log | grep -qE '^  speaker +[0-9.]+ +[0-9.]+ +[0-9]+$' \
  || fail "no results table"
if grep -q $'\r' plain.log; then fail "carriage returns in a log"; fi
pass "a log gets plain lines with elapsed and ETA, epoch lines, an end summary and a results table"

JTRAIN_PROGRESS=bar jt_mpirun -np 2 -x JTRAIN_PROGRESS "$JTRAIN" train "$cfg" --set checkpoint.dir=bar \
  "${common[@]}" > bar.log 2>&1 || { cat bar.log; fail "bar run"; }
grep -q $'\r\033\\[Kepoch 1/3 \\[' bar.log || { cat -v bar.log | tail; fail "no live bar"; }
tr '\r' '\n' < bar.log | grep -qE '^.\[Kepoch 2/3 \[=+\] 10/10 [0-9:.s]+<[0-9:.s]+ [0-9]+ samples/s \| word loss' \
  || fail "the bar lacks its parts"
if grep -qE '^epoch 1 step 5/25' bar.log; then fail "plain step lines on a terminal"; fi
grep -qE '^trained 25 steps' bar.log || fail "no end summary after the bar"
pass "a terminal gets a live bar per epoch"

"$JT_PYTHON" - plain/metrics.jsonl <<'PY' || fail "metrics records"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in recs if r["type"] == "train"]
evals = [r for r in recs if r["type"] == "eval"]
epochs = [r for r in recs if r["type"] == "epoch"]
assert [r["step"] for r in train] == [5, 10, 15, 20, 25], train
for r in train:
    assert r["lr"] == 0.001 and r["elapsed_s"] >= 0 and r["wall"] > 1.7e9, r
assert [r["step"] for r in evals] == [10, 20, 25] and all("elapsed_s" in r for r in evals), evals
assert [(r["epoch"], r["step"]) for r in epochs] == [(1, 10), (2, 20)], epochs
for r in epochs:
    assert set(r["heads"]) == {"word", "speaker"} and r["samples_per_s"] > 0 and r["seconds"] >= 0, r
assert train[0]["epoch"] == 1 and train[1]["epoch"] == 1 and train[2]["epoch"] == 2, train
PY
pass "metrics: lr, elapsed_s, wall; epoch records 1-based"

jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=plain "${common[@]}" --set train.steps=35 \
  --resume plain/ckpt-00000025.h5 > resume.log 2>&1 || { cat resume.log; fail "resume"; }
grep -q "resumed from plain/ckpt-00000025.h5 at step 25 (next: epoch 3, batch 6 of 10), written by 2 ranks" \
  resume.log || { grep resumed resume.log; fail "resume line"; }
grep -qE '^epoch 3 step 30/35' resume.log || fail "progress after resume"
pass "the resume line counts epochs and batches from 1, like the progress lines"

jt_mpirun -np 1 "$JTRAIN" train "$cfg" --set checkpoint.dir=one --set train.steps=3 > one.log 2>&1 \
  || { cat one.log; fail "np 1"; }
grep -qE '^parameters checksum [0-9a-f]{16} \(1 rank\)$' one.log || fail "np 1 checksum line"
if grep -q "all 1 ranks" one.log; then fail "'all 1 ranks'"; fi
pass "one rank: no 'all 1 ranks'"

if ! "$JT_PYTHON" -c 'import matplotlib' 2>/dev/null; then
  echo "SKIP: jtrain-plot not tested: $JT_PYTHON has no matplotlib (scripts/setup --with-plot)"
  exit 77
fi
"$JT_SRC/scripts/jtrain-plot" plain > plot.log 2>&1 || { cat plot.log; fail "jtrain-plot"; }
"$JT_PYTHON" -c 'import sys; b = open(sys.argv[1], "rb").read(8); sys.exit(b != b"\x89PNG\r\n\x1a\n")' \
  plain/metrics.png || fail "no PNG at plain/metrics.png"
"$JT_SRC/scripts/jtrain-plot" plain/metrics.jsonl --out other.png > plot2.log 2>&1 || fail "plot --out"
[ -s other.png ] || fail "no other.png"
expect_exit 1 "no such file" -- "$JT_SRC/scripts/jtrain-plot" nowhere
pass "jtrain-plot writes a PNG"
