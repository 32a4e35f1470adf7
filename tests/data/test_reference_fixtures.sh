#!/usr/bin/env bash
# The committed PyTorch reference fixtures (tests/fixtures/reference, checked by
# unit.test_reference) are exactly what scripts/make-reference-fixtures makes: regenerate them
# into a scratch folder and compare every dataset and attribute (values within 1e-6 relative:
# torch's float64 kernels may round differently on another CPU before the float32 store), so a
# fixture cannot drift from its script. A gradient marked invariant (0 but for roundoff: the loss
# does not depend on that parameter) is pure float64 noise that differs across CPUs, so it is
# measured against the file's largest gradient, as unit.test_reference measures it. Exit 77
# (skip) without torch.
source "$JT_SRC/tests/testlib.sh"
"$PY" -c 'import torch, yaml' 2>/dev/null \
  || { echo "SKIP: $PY cannot import torch and yaml (scripts/setup --with-torch)"; exit 77; }
"$PY" "$JT_SRC/scripts/make-reference-fixtures" --out regen > regen.log 2>&1 \
  || { cat regen.log; fail "make-reference-fixtures failed"; }
n=0
for f in "$JT_SRC"/tests/fixtures/reference/*.h5; do
  "$PY" - "$f" "regen/$(basename "$f")" <<'PYEOF' || fail "$(basename "$f") differs from what the script makes"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
bad = []
big = max(float(np.abs(d[()]).max(initial=0)) for d in b["grads"].values())
def same_attrs(x, y, name):
    if sorted(x.attrs) != sorted(y.attrs):
        bad.append(name + " attrs")
    for k in x.attrs:
        if k in y.attrs and not np.array_equal(np.asarray(x.attrs[k]), np.asarray(y.attrs[k])):
            bad.append(f"{name} attr {k}")
def walk(name, obj):
    other = b.get(name)
    if other is None or type(other) is not type(obj):
        bad.append(name + " missing")
        return
    same_attrs(obj, other, name)
    if isinstance(obj, h5py.Dataset):
        x, y = obj[()], other[()]
        if x.shape != y.shape or x.dtype != y.dtype:
            bad.append(f"{name} shape/dtype")
        elif x.dtype.kind == "f":
            scale = big if obj.attrs.get("invariant") == 1 else float(np.abs(y).max(initial=0))
            if not np.allclose(x, y, rtol=1e-6, atol=1e-6 * max(1e-30, scale)):
                bad.append(f"{name} max diff {float(np.abs(x - y).max()):.3g}")
        elif not np.array_equal(x, y):
            bad.append(name)
same_attrs(a, b, "/")
a.visititems(walk)
b.visititems(lambda n, o: a.get(n) is None and bad.append(n + " extra"))
if bad:
    print(sys.argv[1], "differs:", "; ".join(bad[:10]))
    sys.exit(1)
PYEOF
  n=$((n + 1))
done
[ "$n" -ge 6 ] || fail "only $n fixtures in tests/fixtures/reference"
[ "$(ls regen/*.h5 | wc -l)" = "$n" ] || fail "the script makes fixtures that are not committed"
pass "$n reference fixtures regenerate from their script"
