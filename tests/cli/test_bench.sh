#!/usr/bin/env bash
# scripts/bench, smoke: the trace reader reads what jtrain's log.trace writes (when jtrain has
# it), then a tiny bench of model A (jtrain np 1/2 against torch 1 thread / DDP) must exit 0 and
# print the table row with numbers, the OpenBLAS kernel and the load line. The numbers
# themselves are not checked (a shared machine). Exit 77 (skip) without torch.
source "$JT_SRC/tests/testlib.sh"

# 1. phase shares from a real trace (3 steps, 2 ranks)
make_synth d.h5 256 64
if "$JTRAIN" train "$JT_SRC/datasets/bench/model-a.yaml" --set data.file=d.h5 --set train.epochs=0 \
     --set train.steps=1 --set log.trace=probe.json --set checkpoint.dir=probe >/dev/null 2>probe.err; then
  jt_mpirun -np 2 "$JTRAIN" train "$JT_SRC/datasets/bench/model-a.yaml" --set data.file=d.h5 \
    --set train.epochs=0 --set train.steps=3 --set train.batch_size=32 --set checkpoint.dir=run \
    --set log.trace=trace.json > train.log 2>&1 || { cat train.log; fail "traced training"; }
  "$PY" "$JT_SRC/scripts/bench_report.py" trace trace.rank*.json --warmup 1 > shares.txt \
    || { cat shares.txt; fail "bench_report.py trace cannot read jtrain's trace"; }
  grep -Eq '^rank 0 \(2 steps, [0-9.]+ ms/step\): .*forward [0-9.]+%' shares.txt \
    && grep -q '^rank 1 ' shares.txt && grep -q 'allreduce in flight' shares.txt \
    || { cat shares.txt; fail "phase shares lack ranks, forward or allreduce"; }
  pass "phase shares from jtrain's log.trace: $(head -c 120 shares.txt)..."
else
  grep -q 'log.trace' probe.err || { cat probe.err; fail "jtrain cannot train one step"; }
  pass "jtrain has no log.trace yet: phase shares not checked"
fi

# 2. the bench itself
"$PY" -c 'import torch, yaml' 2>/dev/null || { echo "SKIP: $PY cannot import torch and yaml (scripts/setup --with-torch)"; exit 77; }
rc=0
"$JT_SRC/scripts/bench" --jtrain "$JTRAIN" --only a --steps 30 --warmup 10 --repeats 1 --no-trace \
  --timeout 120 --keep "$JT_TMP/bench" > bench.md 2> bench.err || rc=$?
[ "$rc" = 0 ] || { cat bench.md bench.err; fail "scripts/bench exited $rc"; }
num='[0-9]+(\.[0-9]+)?'
grep -Eq "^\| A: .* \| $num \| $num \| $num \| $num \| $num \| $num \| $num \($num\) \| " bench.md \
  || { cat bench.md; fail "no table row with numbers for model A"; }
grep -Eq "^## OPENBLAS_CORETYPE unset: jtrain's OpenBLAS kernel [A-Za-z0-9]+ " bench.md \
  || { cat bench.md; fail "no OpenBLAS kernel line"; }
grep -Eq '^load: loadavg ' bench.md || { cat bench.md; fail "no load line"; }
grep -Eq '^phase shares: ' bench.md || { cat bench.md; fail "no phase shares line"; }
pass "scripts/bench --only a: table, kernel, load"
