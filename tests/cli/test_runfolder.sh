#!/usr/bin/env bash
# Run folders never lose work (README "Checkpoints"):
# - a fresh train into a checkpoint.dir that holds checkpoints is refused (exit 2) and says
#   what to do; --overwrite starts over (old checkpoints gone, metrics restarted);
# - on resume the metrics are appended, each run opening with a "start" record;
# - log.metrics follows checkpoint.dir unless set (the AVFM recipe does not pin it);
# - `latest` and the run folder are accepted wherever a checkpoint path is (eval, summary,
#   --resume).
source "$(dirname "$0")/../testlib.sh"
make_synth synth.h5 600 200
cfg="$FIX/tiny-separate.yaml"
train() { "$JTRAIN" train "$cfg" "$@"; }

train --set checkpoint.dir=run --set train.steps=20 > a.log 2>&1 || { cat a.log; fail "first run"; }
[ "$(grep -c '"type": "train"' run/metrics.jsonl)" = 4 ] || fail "first run: 4 train records"

# A second fresh run into the same folder: refused, nothing touched.
before=$(md5sum run/metrics.jsonl run/ckpt-*.h5 run/latest)
expect_exit 2 "checkpoint.dir run already holds 2 checkpoints .*--resume auto.*--overwrite" -- \
  "$JTRAIN" train "$cfg" --set checkpoint.dir=run --set train.steps=20
[ "$before" = "$(md5sum run/metrics.jsonl run/ckpt-*.h5 run/latest)" ] \
  || fail "the refused run changed the folder"

# Resume appends: the history of both runs is in the metrics, each opened by a start record.
train --set checkpoint.dir=run --set train.steps=40 --resume auto > b.log 2>&1 \
  || { cat b.log; fail "resume"; }
[ "$(grep -c '"type": "train"' run/metrics.jsonl)" = 8 ] || { cat run/metrics.jsonl; fail "resume truncated the metrics"; }
[ "$(grep -c '"type": "start"' run/metrics.jsonl)" = 2 ] || fail "no start record per run"
grep -q '"type": "start", "step": 20, "ranks": 1, "resumed": true' run/metrics.jsonl \
  || { cat run/metrics.jsonl; fail "the resumed run's start record"; }
pass "resume appends to the metrics (8 train records, 2 start records)"

# --overwrite starts over: old checkpoints removed, metrics restarted.
train --set checkpoint.dir=run --set train.steps=10 --overwrite > c.log 2>&1 \
  || { cat c.log; fail "--overwrite"; }
grep -q "removed 3 checkpoints of the earlier run" c.log || { cat c.log; fail "no --overwrite line"; }
[ "$(ls run/ckpt-*.h5)" = "run/ckpt-00000010.h5" ] || fail "--overwrite left $(ls run/ckpt-*.h5)"
[ "$(grep -c '"type": "start"' run/metrics.jsonl)" = 1 ] || fail "--overwrite kept old metrics"
expect_exit 2 "exclude each other" -- "$JTRAIN" train "$cfg" --resume auto --overwrite
pass "--overwrite replaces the earlier run"

# `latest` and the folder are checkpoints everywhere.
"$JTRAIN" eval run/ckpt-00000010.h5 --json > e1.json || fail "eval of the file"
"$JTRAIN" eval run/latest --json | sed 's|"checkpoint": "[^"]*"||' > e2.json || fail "eval latest"
"$JTRAIN" eval run --json | sed 's|"checkpoint": "[^"]*"||' > e3.json || fail "eval run folder"
sed -i 's|"checkpoint": "[^"]*"||' e1.json
cmp -s e1.json e2.json && cmp -s e1.json e3.json || { cat e1.json e2.json e3.json; fail "eval results differ"; }
"$JTRAIN" summary run/latest > s1.txt && "$JTRAIN" summary run > s2.txt || fail "summary of a run"
grep -q "image_net" s1.txt && grep -q "image_net" s2.txt || fail "summary prints no model"
train --set checkpoint.dir=other --set train.steps=20 --resume run/latest > d.log 2>&1 \
  || { cat d.log; fail "--resume run/latest"; }
grep -q "resumed from run/ckpt-00000010.h5 at step 10" d.log || { cat d.log; fail "did not resume from latest"; }
train --set checkpoint.dir=other2 --set train.steps=20 --resume run > d2.log 2>&1 \
  || { cat d2.log; fail "--resume run"; }
params_equal other/ckpt-00000020.h5 other2/ckpt-00000020.h5 0 --adam || fail "resume from folder differs"
expect_exit 4 "nothere" -- "$JTRAIN" eval nothere/latest
pass "latest and the run folder are accepted by eval, summary and --resume"

# The AVFM recipe's metrics follow checkpoint.dir (no pinned log.metrics).
"$JTRAIN" train "$JT_SRC/datasets/avfm/separate.yaml" --set data.file=synth.h5 \
  --set checkpoint.dir=avfm --set train.epochs=0 --set train.steps=1 > f.log 2>&1 \
  || { cat f.log; fail "the AVFM recipe on synth data"; }
grep -q "metrics: avfm/metrics.jsonl" f.log || { grep metrics f.log; fail "recipe metrics do not follow checkpoint.dir"; }
[ -s avfm/metrics.jsonl ] || fail "no avfm/metrics.jsonl"
pass "the AVFM recipe writes its metrics into checkpoint.dir"

# Checkpoints that cannot hurt (README "Checkpoints"), end to end.
# A step that makes the parameters Inf (lr 3e38 is the largest float, so lr / (1 - beta1^t),
# Adam's step size, is Inf): exit 5, latest stays.
train --set checkpoint.dir=inf --set train.steps=10 > g.log 2>&1 || { cat g.log; fail "inf: first run"; }
expect_exit 5 "not written.*is (inf|nan|-inf).*previous latest stays" -- \
  "$JTRAIN" train "$cfg" --set checkpoint.dir=inf --set train.steps=11 \
  --set train.optimizer.lr=3e38 --resume auto
[ "$(cat inf/latest)" = ckpt-00000010.h5 ] && [ ! -e inf/ckpt-00000011.h5 ] \
  || fail "a non-finite checkpoint was published: $(ls inf)"
grep -q "^failed 11 5$" inf/status || fail "status after exit 5: $(cat inf/status)"

# A damaged newest checkpoint: --resume auto warns, takes the one before, and goes on; a stale
# temp file of a dead writer is removed at start.
train --set checkpoint.dir=fb --set train.steps=20 > fb.log 2>&1 || { cat fb.log; fail "fb run"; }
head -c 5000 fb/ckpt-00000020.h5 > fb/x && mv fb/x fb/ckpt-00000020.h5
touch fb/.ckpt-00000030.h5.tmp."$(hostname)".4194304999 # a pid that cannot exist
train --set checkpoint.dir=fb --set train.steps=25 --resume auto > h.log 2>&1 \
  || { cat h.log; fail "fallback resume"; }
grep -q "warning: skipping fb/ckpt-00000020.h5" h.log || { cat h.log; fail "no warning naming the damaged file"; }
grep -q "resumed from fb/ckpt-00000010.h5 at step 10" h.log || { cat h.log; fail "did not fall back to 10"; }
grep -q "removed 1 stale temporary file" h.log || { cat h.log; fail "stale temp file not removed"; }
[ ! -e fb/.ckpt-00000030.h5.tmp."$(hostname)".4194304999 ] || fail "the stale temp file is still there"
pass "no Inf checkpoint is published (exit 5); --resume auto skips a damaged newest checkpoint"

# A set-up error is recorded with its own exit code (a missing data set: 3).
expect_exit 3 "nothere.h5" -- "$JTRAIN" train "$cfg" --set checkpoint.dir=setupfail \
  --set data.file=nothere.h5
grep -qx "failed 0 3" setupfail/status || fail "status after a set-up error: $(cat setupfail/status)"
pass "a set-up error leaves status 'failed 0 3'"
