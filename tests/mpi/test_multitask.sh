#!/usr/bin/env bash
# Multi-task training (README "Multi-task training") on the shared-trunk model:
#   - each of uncertainty, dwa, gradnorm, pcgrad and accumulation with a cosine schedule: a run
#     resumed from its step-15 checkpoint ends bitwise equal (parameters, Adam, balancing) to the
#     uninterrupted run, and 1, 2 and 3 ranks agree up to summation order;
#   - accumulate k x batch B equals one batch of k*B (up to summation order);
#   - telemetry, weights and lr in the JSONL; the schedule follows its formula;
#   - checkpoint.best points at the best evaluation's checkpoint and survives pruning;
#     train.early_stop stops with exit 0 and a line;
#   - pcgrad or gradnorm on a model without a shared block is a usage error (exit 2).
source "$(dirname "$0")/../testlib.sh"
make_synth synth.h5 600 200
cfg="$FIX/tiny-shared.yaml"
common=(--set train.steps=30 --set log.every_steps=5 --set checkpoint.every_steps=15)

run() { # run NAME NP ARGS...: train into folder NAME, log NAME.log
  local name="$1" np="$2"; shift 2
  jt_mpirun -np "$np" "$JTRAIN" train "$cfg" --set checkpoint.dir="$name" "${common[@]}" "$@" \
    > "$name.log" 2>&1 || { cat "$name.log"; fail "$name: exit $?"; }
}

declare -A methods=(
  [uncertainty]="--set train.balance.method=uncertainty"
  [dwa]="--set train.balance={method: dwa, window: 4, temperature: 2}"
  [gradnorm]="--set train.balance={method: gradnorm, alpha: 1.5}"
  [pcgrad]="--set train.pcgrad=true"
  [accum]="--set train.accumulate=3 --set train.batch_size=16 --set train.schedule={name: cosine, warmup_steps: 4, min_lr: 1.0e-5}"
)
for name in uncertainty dwa gradnorm pcgrad accum; do
  # shellcheck disable=SC2206
  args=(${methods[$name]})
  # re-join "--set key={...}" words that the split above cut at spaces
  joined=()
  for a in "${args[@]}"; do
    if [ "${#joined[@]}" -gt 0 ] && [[ "${joined[-1]}" == *"{"* && "${joined[-1]}" != *"}" ]]; then
      joined[-1]="${joined[-1]} $a"
    else
      joined+=("$a")
    fi
  done
  run "$name-np2" 2 "${joined[@]}"
  jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir="$name-res" "${common[@]}" \
    "${joined[@]}" --resume "$name-np2/ckpt-00000015.h5" > "$name-res.log" 2>&1 \
    || { cat "$name-res.log"; fail "$name: resume"; }
  params_equal "$name-np2/ckpt-00000030.h5" "$name-res/ckpt-00000030.h5" 0 --adam \
    || fail "$name: resumed run differs from the uninterrupted one"
  "$JT_PYTHON" - "$name-np2/ckpt-00000030.h5" "$name-res/ckpt-00000030.h5" <<'EOF' \
    || fail "$name: /state/run differs after resume"
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r")["state/run"][()] for p in sys.argv[1:3])
sys.exit(0 if a.tobytes() == b.tobytes() else 1)
EOF
  run "$name-np1" 1 "${joined[@]}"
  run "$name-np3" 3 "${joined[@]}"
  params_equal "$name-np2/ckpt-00000030.h5" "$name-np1/ckpt-00000030.h5" 2e-4 \
    || fail "$name: np 1 and 2 disagree"
  params_equal "$name-np2/ckpt-00000030.h5" "$name-np3/ckpt-00000030.h5" 2e-4 \
    || fail "$name: np 2 and 3 disagree"
  pass "$name: bitwise resume at step 15; np 1/2/3 agree"
done

# The weights move (uncertainty, dwa, gradnorm), PCGrad projects, telemetry and lr are logged.
"$JT_PYTHON" - <<'EOF' || fail "metrics records"
import json, math
def train(name):
    return [r for r in map(json.loads, open(f"{name}-np2/metrics.jsonl")) if r["type"] == "train"]
for name in ["uncertainty", "dwa", "gradnorm"]:
    recs = train(name)
    w0, w1 = recs[0]["weights"], recs[-1]["weights"]
    assert set(w0) == {"word", "speaker"}, w0
    assert any(abs(w0[h] - w1[h]) > 1e-4 for h in w0), (name, w0, w1)
    if name == "gradnorm":  # renormalised to the sum of the config weights
        for r in recs:
            assert abs(sum(r["weights"].values()) - 1.0) < 1e-5, r["weights"]
for name in ["uncertainty", "dwa", "gradnorm", "pcgrad", "accum"]:
    for r in train(name):
        g = r["grad"]["trunk"]
        assert set(g["norm"]) == {"word", "speaker"} and all(v > 0 for v in g["norm"].values()), g
        c = g["cosine"]["word/speaker"]
        assert -1.0 <= c <= 1.0, c
        assert r["lr"] > 0
# the heads conflict now and then on this model: PCGrad must have projected
assert sum(r["pcgrad_projections"] for r in train("pcgrad")) > 0, train("pcgrad")
# the cosine schedule with warmup: lr of the step logged (0-based t = step - 1), T = 30
base, W, T, lo = 1e-3, 4, 30, 1e-5
for r in train("accum"):
    t = r["step"] - 1
    want = base * (t + 1) / W if t < W else \
        lo + (base - lo) * (1 + math.cos(math.pi * (t - W) / (T - W))) / 2
    assert abs(r["lr"] - want) <= 1e-9 * want, (t, r["lr"], want)
print("metrics ok")
EOF
grep -q "cos trunk" pcgrad-np2.log || fail "no cosine in the progress line"
pass "weights move, telemetry and lr are logged, the schedule follows its formula"

# accumulate 3 x 16 == one batch of 48, up to summation order
run acc3 2 --set train.accumulate=3 --set train.batch_size=16
run big48 2 --set train.batch_size=48
params_equal acc3/ckpt-00000030.h5 big48/ckpt-00000030.h5 5e-5 \
  || fail "accumulate 3 x 16 differs from batch 48"
grep -q "steps per epoch of 48 (3 micro-batches of 16)" acc3.log || fail "no accumulation line"
pass "accumulate 3 x 16 equals batch 48"

# best checkpoint, kept by keep 1; eval of the best pointer
run best 2 --set train.eval_every=5 --set checkpoint.keep=1 \
  --set "checkpoint.best={metric: word.accuracy}"
[ -f best/best ] || fail "no best pointer"
target="best/$(cat best/best)"
[ -f "$target" ] || fail "best names a missing file: $target"
"$JT_PYTHON" - best.log "$target" <<'EOF' || fail "best is not the best evaluation"
import re, sys
evals = [(int(m.group(1)), float(m.group(2))) for m in
         re.finditer(r"eval test step (\d+) \|.*? word loss \S+ acc (\S+)", open(sys.argv[1]).read())]
best = max(evals, key=lambda e: (e[1], -e[0]))  # the first of the highest
step = int(re.search(r"ckpt-(\d+)\.h5", sys.argv[2]).group(1))
assert step == best[0], (step, evals)
EOF
"$JTRAIN" eval best/best --data synth.h5 > best-eval.log 2>&1 || { cat best-eval.log; fail "eval best"; }
pass "best points at the best evaluation ($target) and survives keep 1"

# early stop: with lr 1e-30 nothing improves after the first evaluation
rc=0
jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=early "${common[@]}" \
  --set train.eval_every=5 --set train.optimizer.lr=1.0e-30 \
  --set "train.early_stop={metric: speaker.accuracy, patience: 2}" > early.log 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat early.log; fail "early stop exited $rc"; }
grep -q "early stop at step 15 of 30: speaker.accuracy has not improved for 2 evaluations" early.log \
  || { cat early.log; fail "no early-stop line"; }
[ "$(cat early/status)" = "finished 15" ] || fail "status after early stop: $(cat early/status)"
[ -f early/ckpt-00000015.h5 ] || fail "no checkpoint at the early stop"
pass "early stop after 2 evaluations without improvement: exit 0 at step 15"

# usage errors
expect_exit 2 "train.pcgrad needs a block that feeds several heads" -- \
  jt_mpirun -np 1 "$JTRAIN" train "$FIX/tiny-separate.yaml" --set checkpoint.dir=sep \
  --set train.pcgrad=true
expect_exit 2 "gradnorm needs a block that feeds several heads" -- \
  jt_mpirun -np 1 "$JTRAIN" train "$FIX/tiny-separate.yaml" --set checkpoint.dir=sep2 \
  --set train.balance.method=gradnorm
pass "pcgrad and gradnorm without a shared block: exit 2"
