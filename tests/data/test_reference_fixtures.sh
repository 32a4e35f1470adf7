#!/usr/bin/env bash
# The committed PyTorch reference fixtures (tests/fixtures/reference, checked by
# unit.test_reference) are exactly what scripts/make-reference-fixtures makes: regenerate them
# into a scratch folder and compare byte for byte, so a fixture cannot drift from its script.
# Exit 77 (skip) without torch.
source "$JT_SRC/tests/testlib.sh"
"$PY" -c 'import torch, yaml' 2>/dev/null \
  || { echo "SKIP: $PY cannot import torch and yaml (scripts/setup --with-torch)"; exit 77; }
"$PY" "$JT_SRC/scripts/make-reference-fixtures" --out regen > regen.log 2>&1 \
  || { cat regen.log; fail "make-reference-fixtures failed"; }
n=0
for f in "$JT_SRC"/tests/fixtures/reference/*.h5; do
  cmp "$f" "regen/$(basename "$f")" || fail "$(basename "$f") differs from what the script makes"
  n=$((n + 1))
done
[ "$n" -ge 6 ] || fail "only $n fixtures in tests/fixtures/reference"
[ "$(ls regen/*.h5 | wc -l)" = "$n" ] || fail "the script makes fixtures that are not committed"
pass "$n reference fixtures regenerate byte for byte"
