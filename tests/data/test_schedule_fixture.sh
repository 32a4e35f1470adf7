#!/usr/bin/env bash
# The committed torch learning-rate fixture (tests/fixtures/schedule/torch_lr.txt, checked by
# unit.test_schedule) is exactly what scripts/make-schedule-fixture makes with this machine's
# torch: regenerate it into the scratch folder and compare line by line (the same cases and
# fields, every rate within 1e-12 relative), so the fixture cannot drift from torch's
# schedulers. Exit 77 (skip) without torch.
source "$JT_SRC/tests/testlib.sh"
"$PY" -c 'import torch' 2>/dev/null \
  || { echo "SKIP: $PY cannot import torch (scripts/setup --with-torch)"; exit 77; }
"$PY" "$JT_SRC/scripts/make-schedule-fixture" --out regen.txt > regen.log 2>&1 \
  || { cat regen.log; fail "make-schedule-fixture failed"; }
"$PY" - "$JT_SRC/tests/fixtures/schedule/torch_lr.txt" regen.txt <<'PYEOF' || fail "the committed fixture differs from what the script makes"
import sys
def cases(path):
    with open(path) as f:
        return [l.split() for l in f if l.strip() and not l.startswith("#")]
a, b = cases(sys.argv[1]), cases(sys.argv[2])
bad = []
if len(a) != len(b):
    bad.append(f"{len(a)} cases committed, {len(b)} made")
for i, (x, y) in enumerate(zip(a, b)):
    if x[:7] != y[:7] or len(x) != len(y):
        bad.append(f"case {i + 1}: fields {' '.join(x[:7])} / {' '.join(y[:7])}")
        continue
    for t, (p, q) in enumerate(zip(x[7:], y[7:])):
        p, q = float(p), float(q)
        if abs(p - q) > 1e-12 * abs(q):
            bad.append(f"case {i + 1} ({' '.join(x[:7])}) step {t}: {p!r} committed, {q!r} made")
if bad:
    print("\n".join(bad[:10]))
    sys.exit(1)
print(f"{len(a)} schedules equal")
PYEOF
pass "the torch schedule fixture regenerates from its script"
