#!/usr/bin/env bash
# PyTorch interop (scripts/jtrain_torch.py): a checkpoint loads into torch and evaluates as jtrain
# evaluates it. Tiny models of the three architectures (tests/fixtures/arch*.yaml) and one with
# every other layer kind train for an epoch on `jtrain synth` data (arch1 with the uncertainty
# balance, whose balance.* views load() must ignore); then for each, `jtrain eval CKPT --json`
# against `jtrain_torch.py CKPT --eval`: the same heads, checkpoint, data, split and step, `n`,
# `correct` and `sequences` equal exactly, loss, accuracy and sequence_accuracy within 1e-4
# relative. The checkpoint is named by its file, its run folder and its latest file, and one
# evaluation overrides --data and --split. Then load() in Python gives (N, classes) and
# (N, L, vocab) logits. Exit 77 (skip) only when the Python has no torch.
source "$JT_SRC/tests/testlib.sh"
"$PY" -c 'import torch, yaml' 2>/dev/null \
  || { echo "SKIP: $PY cannot import torch and yaml (scripts/setup --with-torch)"; exit 77; }
export OMP_NUM_THREADS=1
TORCH="$JT_SRC/scripts/jtrain_torch.py"
make_synth synth.h5 600 200

# the layer kinds the architectures leave out: lstm, layernorm, self_attention, maxpool1d,
# avgpool1d, meanpool_time, tanh, sigmoid, dropout, conv2d with stride and same padding on (H, W)
cat > kinds.yaml <<'EOF'
data: {file: synth.h5}
model:
  blocks:
    img:
      input: image
      layers: [{conv2d: {filters: 4, kernel: 4, stride: 2, padding: same}}, tanh,
               {maxpool2d: {size: 3, stride: 2}}, flatten, {dropout: {rate: 0.2}},
               {dense: {units: 16}}, sigmoid]
    aud:
      input: audio
      layers: [{maxpool1d: {size: 2}}, {lstm: {units: 12, return_sequences: true}}, layernorm,
               {self_attention: {heads: 2, units: 8}}, {avgpool1d: {size: 3, stride: 2}}]
  heads:
    item: {input: img, target: label, weight: 0.4}
    speaker: {input: aud, target: speaker, weight: 0.3, layers: [meanpool_time]}
    word: {input: aud, target: word, weight: 0.3, layers: [{lstm: {units: 10}}]}
train: {epochs: 1, batch_size: 32, seed: 3, optimizer: {lr: 3.0e-3}}
EOF

train() {  # train NAME CONFIG [--set ...]
  local name="$1" cfg="$2"; shift 2
  "$JTRAIN" train "$cfg" --set checkpoint.dir="$name" --set train.epochs=1 \
    --set log.every_steps=100 "$@" > "$name.log" 2>&1 || { cat "$name.log"; fail "$name did not train"; }
}
train arch3 "$FIX/arch3-separate.yaml"
train arch1 "$FIX/arch1-shared.yaml" --set 'train.balance={method: uncertainty}'
train arch2 "$FIX/arch2-attention.yaml"
train kinds kinds.yaml
"$PY" -c 'import h5py, sys; f = h5py.File(sys.argv[1]); sys.exit(0 if any(k.startswith("balance.") for k in f["params"]) else 1)' \
  arch1/ckpt-*.h5 || fail "arch1's checkpoint has no balance.* view to ignore"

# compare LABEL ARGS...: jtrain eval ARGS --json against jtrain_torch.py ARGS --eval
compare() {
  local label="$1"; shift
  "$JTRAIN" eval "$@" --json > "$label.jtrain.json" 2> "$label.jtrain.err" \
    || { cat "$label.jtrain.err"; fail "jtrain eval $*"; }
  "$PY" "$TORCH" "$@" --eval > "$label.torch.json" 2> "$label.torch.err" \
    || { cat "$label.torch.err"; fail "jtrain_torch.py $* --eval"; }
  "$PY" - "$label.jtrain.json" "$label.torch.json" "$label" <<'PY' || fail "$label: torch disagrees with jtrain"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
bad = []
for k in ("checkpoint", "data", "split", "step"):
    if a[k] != b[k]:
        bad.append(f"{k}: jtrain {a[k]!r}, torch {b[k]!r}")
if list(a["heads"]) != list(b["heads"]):
    bad.append(f"heads: jtrain {list(a['heads'])}, torch {list(b['heads'])}")
worst = 0.0
for h, x in a["heads"].items():
    y = b["heads"].get(h, {})
    if sorted(x) != sorted(y):
        bad.append(f"{h}: fields {sorted(x)} vs {sorted(y)}")
        continue
    for k in ("n", "correct", "sequences"):
        if k in x and x[k] != y[k]:
            bad.append(f"{h}.{k}: jtrain {x[k]}, torch {y[k]}")
    for k in ("loss", "accuracy", "sequence_accuracy"):
        if k not in x:
            continue
        if x[k] is None or y[k] is None:
            if x[k] is not y[k]:
                bad.append(f"{h}.{k}: jtrain {x[k]}, torch {y[k]}")
            continue
        rel = abs(x[k] - y[k]) / max(abs(x[k]), abs(y[k]), 1e-300)
        worst = max(worst, rel)
        if rel > 1e-4:
            bad.append(f"{h}.{k}: jtrain {x[k]}, torch {y[k]} ({rel:.2g} relative)")
    line = ", ".join(f"{k} {x[k]}" for k in x)
    print(f"  {sys.argv[3]} {h}: {line}")
if bad:
    print("\n".join(bad))
    sys.exit(1)
print(f"  {sys.argv[3]}: equal counts, largest relative difference {worst:.2g}")
PY
}
compare arch3 arch3/ckpt-*.h5
compare arch1 arch1
compare arch2 arch2/latest
compare kinds kinds
compare arch2-train arch2 --data synth.h5 --split train
pass "jtrain eval and jtrain_torch.py --eval agree on 4 models (all layer kinds)"

# load() from Python: logits of every head, a sequence head as (N, L, vocab), greedy in eval
PYTHONPATH="$JT_SRC/scripts" "$PY" - <<'PY' || fail "load() from Python"
import torch
from jtrain_torch import load, read_split, data_arrays
m = load("arch2/latest")
assert not m.training and m.step > 0, (m.training, m.step)
inputs, labels = data_arrays(m)
x = read_split(m.data, m.split, inputs)
with torch.no_grad():
    out = m({k: v[:5] for k, v in x.items()})
shapes = {h: tuple(v.shape) for h, v in out.items()}
assert shapes == {"item": (5, 10), "caption": (5, 11, 21), "word": (5, 10)}, shapes
print("  load('arch2/latest'):", shapes)
PY
pass "load() gives each head's logits"

# without the data file, load() builds the model from the checkpoint's /layout: the same logits
mv synth.h5 synth-away.h5
PYTHONPATH="$JT_SRC/scripts" "$PY" - <<'PY' || { mv synth-away.h5 synth.h5; fail "load() without the data"; }
import torch
from jtrain_torch import load, read_split, data_arrays
m = load("arch2/latest")                          # synth.h5 is not here
ref = load("arch2/latest", data="synth-away.h5")  # from the data set's metadata
inputs, _ = data_arrays(ref)
x = read_split("synth-away.h5", "test", inputs)
with torch.no_grad():
    a, b = m({k: v[:5] for k, v in x.items()}), ref({k: v[:5] for k, v in x.items()})
assert all(torch.equal(a[h], b[h]) for h in a), "logits differ"
print("  load() without the data file: the same logits from /layout")
PY
mv synth-away.h5 synth.h5
pass "load() without the data file uses the checkpoint's layout"

# errors are one line and jtrain's exit code: a checkpoint that does not exist (4), a data set
# without the split (3)
rc=0; "$PY" "$TORCH" nowhere --eval > out.txt 2> err.txt || rc=$?
[ "$rc" = 4 ] && grep -q "^jtrain_torch: checkpoint nowhere" err.txt || { cat err.txt; fail "missing checkpoint: exit $rc"; }
rc=0; "$PY" "$TORCH" arch1 --eval --split nosuch > out.txt 2> err.txt || rc=$?
[ "$rc" = 3 ] && grep -q "no split /nosuch" err.txt || { cat err.txt; fail "missing split: exit $rc"; }
pass "errors: exit 4 (checkpoint), 3 (data set)"
