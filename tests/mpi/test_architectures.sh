#!/usr/bin/env bash
# Each of the three architectures of docs/design.md trains from its config alone under mpiexec
# -np 2 on synthetic data and reaches clearly-above-chance test accuracy on every head (jtrain
# eval --json).
source "$(dirname "$0")/../testlib.sh"
make_synth synth.h5 1200 400

# check_acc CKPT HEAD[:FIELD] MIN ...: each head's test accuracy (or FIELD, e.g.
# sequence_accuracy) is at least MIN.
check_acc() {
  local ck="$1"; shift
  "$JTRAIN" eval "$ck" --json > eval.json || fail "eval $ck"
  "$PY" - "$@" <<'PY' || { cat eval.json; fail "accuracy below the bar for $ck"; }
import json, sys
d = json.load(open("eval.json"))["heads"]
args = sys.argv[1:]
ok = True
for spec, bar in zip(args[::2], args[1::2]):
    name, _, field = spec.partition(":")
    acc = d[name][field or "accuracy"]
    print(f"  {name}: test {field or 'accuracy'} {acc:.3f} (bar {bar})")
    ok &= acc >= float(bar)
sys.exit(0 if ok else 1)
PY
}

for arch in arch3-separate arch1-shared arch2-attention; do
  jt_mpirun -np 2 "$JTRAIN" train "$FIX/$arch.yaml" --set checkpoint.dir="$arch" > "$arch.log" 2>&1 \
    || { cat "$arch.log"; fail "$arch did not train"; }
  tail -2 "$arch.log"
done
# chance: item/word 0.10, speaker 0.0625
check_acc arch3-separate/ckpt-*.h5 item 0.6 speaker 0.4
check_acc arch1-shared/ckpt-*.h5 word 0.6 speaker 0.4
# chance: caption exact sequence ~0 (10 names of up to 12 characters)
check_acc arch2-attention/ckpt-*.h5 item 0.5 caption 0.4 caption:sequence_accuracy 0.3 word 0.5
pass "architectures 1, 2 and 3 train above chance on 2 ranks"
