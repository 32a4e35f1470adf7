#!/usr/bin/env bash
# The global batch of docs/design.md on 1-4 ranks (batch_check.c does the checks on each run):
# right rows and data after the exchange, every sample exactly once per epoch across ranks,
# and the same batches whatever the number of ranks.
source "$(dirname "$0")/../testlib.sh"
bin="$(dirname "$JTRAIN")/batch_check"
[ -x "$bin" ] || fail "missing $bin"
ref=""
for np in 1 2 3 4; do
  for shape in "103 16" "50 7" "64 64"; do
    out=$(jt_mpirun -np "$np" "$bin" $shape) || fail "np $np n/B $shape"
    echo "np $np n/B $shape: $out"
    if [ "$shape" = "103 16" ]; then
      [ -z "$ref" ] && ref="$out"
      [ "$out" = "$ref" ] || fail "np $np gives other batches than np 1: $out vs $ref"
    fi
  done
done
pass "batches identical for np 1-4, every sample once per epoch"
