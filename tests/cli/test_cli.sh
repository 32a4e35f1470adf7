#!/usr/bin/env bash
# The command line and its exit codes (docs/cli.md): help/version, usage errors (2), config
# errors naming the key (2), data set errors naming the array (3, within seconds), checkpoint
# errors (4), eval --json, summary of a config and of a checkpoint.
source "$(dirname "$0")/../testlib.sh"
make_synth synth.h5 300 100
cfg="$FIX/tiny-shared.yaml"

"$JTRAIN" --help | grep -q "jtrain train CONFIG" || fail "--help"
"$JTRAIN" --version | grep -qE "^jtrain [0-9]+\.[0-9]+" || fail "--version"
expect_exit 2 "unknown command" -- "$JTRAIN" frobnicate
expect_exit 2 "unknown option" -- "$JTRAIN" train "$cfg" --frob
expect_exit 2 "needs a CONFIG" -- "$JTRAIN" train

# Config errors: each names the file, the line and the key.
sed 's/^  seed: 5/  seed: 5\n  sede: 6/' "$cfg" > unknown.yaml
expect_exit 2 "unknown.yaml:[0-9]+: train.sede" -- "$JTRAIN" train unknown.yaml
sed 's/batch_size: 32/batch_size: [32]/' "$cfg" > wrongtype.yaml
expect_exit 2 "wrongtype.yaml:[0-9]+: train.batch_size" -- "$JTRAIN" train wrongtype.yaml
sed 's/batch_size: 32/batch_size: 32x/' "$cfg" > badnum.yaml
expect_exit 2 "badnum.yaml:[0-9]+: train.batch_size" -- "$JTRAIN" train badnum.yaml
grep -v "batch_size" "$cfg" > missing.yaml
expect_exit 2 "missing.yaml:[0-9]+: train.batch_size" -- "$JTRAIN" train missing.yaml
expect_exit 2 "train.optimizer.lr" -- "$JTRAIN" train "$cfg" --set train.optimizer.lr=fast
expect_exit 2 "no-such.yaml" -- "$JTRAIN" train no-such.yaml
# Under MPI a config error is the same exit 2 on every rank, reported once.
expect_exit 2 "train.sede" -- bash -c "source '$JT_SRC/scripts/lib.sh'; jt_mpirun -np 2 '$JTRAIN' train unknown.yaml"
[ "$(grep -c 'train.sede' err.txt)" = 1 ] || fail "config error reported more than once"
expect_exit 2 "unknown option" -- bash -c "source '$JT_SRC/scripts/lib.sh'; jt_mpirun -np 2 '$JTRAIN' train '$cfg' --frob"
[ "$(grep -c 'unknown option' err.txt)" = 1 ] || fail "usage error reported more than once"

# Data set errors: exit 3, naming the file and the array, within seconds.
data_err() { # PATTERN FILE
  local t0; t0=$(date +%s)
  expect_exit 3 "$1" -- "$JTRAIN" train "$cfg" --set data.file="$2" --set checkpoint.dir=r
  [ $(( $(date +%s) - t0 )) -le 10 ] || fail "data error took more than 10 s"
}
data_err "no-such.h5" no-such.h5
echo "not hdf5" > text.h5
data_err "text.h5.*HDF5" text.h5
"$PY" - <<'PY'
import h5py, numpy as np, shutil
def variant(name, fn):
    shutil.copy("synth.h5", name)
    with h5py.File(name, "r+") as f:
        fn(f)
variant("noarray.h5", lambda f: f.__delitem__("train/speaker"))
def wrongshape(f):
    del f["train/audio"]; f["train/audio"] = np.zeros((300,), np.float32)
variant("wrongshape.h5", wrongshape)
def evalshape(f):
    del f["test/audio"]; f["test/audio"] = np.zeros((100, 1280), np.float32)
variant("evalshape.h5", evalshape)
def mismatch(f):
    del f["train/word"]; f["train/word"] = np.zeros((299,), np.int32)
    f["train/word"].attrs["classes"] = f["train/label"].attrs["classes"]
variant("mismatch.h5", mismatch)
def wrongdtype(f):
    del f["train/audio"]; f["train/audio"] = np.zeros((300, 32, 40), np.float64)
variant("wrongdtype.h5", wrongdtype)
def outofrange(f):
    f["train/word"][17] = 10
variant("outofrange.h5", outofrange)
def shortsplit(f):
    for k in list(f["train"].keys()):
        d = f["train"][k][:1]; attrs = dict(f["train"][k].attrs)
        del f["train"][k]; f["train"][k] = d
        for a, v in attrs.items(): f["train"][k].attrs[a] = v
variant("short.h5", shortsplit)
PY
data_err "noarray.h5.*speaker" noarray.h5
data_err "wrongshape.h5.*audio" wrongshape.h5
data_err "evalshape.h5.*test/audio.*\(1280\).*\(32, 40\)" evalshape.h5
data_err "mismatch.h5.*word" mismatch.h5
data_err "wrongdtype.h5.*audio" wrongdtype.h5
data_err "outofrange.h5.*word.*17.*10" outofrange.h5
expect_exit 3 "short.h5.*fewer than the 2 ranks" -- bash -c \
  "source '$JT_SRC/scripts/lib.sh'; jt_mpirun -np 2 '$JTRAIN' train '$cfg' --set data.file=short.h5"

# A real run, then eval --json and summary.
"$JTRAIN" train "$cfg" --set checkpoint.dir=run > train.log 2>&1 || { cat train.log; fail "train"; }
grep -qE "^epoch [0-9]+ step 5/20 \| word loss [0-9.]+ acc [0-9.]+ \| speaker loss" train.log \
  || fail "no progress line"
grep -q '"type": "train"' run/metrics.jsonl || fail "no metrics JSONL"
"$JTRAIN" eval run/ckpt-00000020.h5 --json > eval.json || fail "eval"
"$PY" -c "
import json; d = json.load(open('eval.json'))
for h in ('word', 'speaker'):
    e = d['heads'][h]; assert 0 <= e['accuracy'] <= 1 and e['n'] > 0 and e['loss'] > 0, e
" || { cat eval.json; fail "eval --json is not the documented JSON"; }
"$JTRAIN" eval run/ckpt-00000020.h5 --split train | grep -q "^word " || fail "eval --split"
"$JTRAIN" summary "$cfg" | grep -q "total parameters" || fail "summary of a config"
"$JTRAIN" summary run/ckpt-00000020.h5 | grep -q "trunk.0.flatten" || fail "summary of a checkpoint"
expect_exit 4 "no-such-ckpt.h5" -- "$JTRAIN" eval no-such-ckpt.h5
expect_exit 4 "train.batch_size 32.*says 5 and 16" -- "$JTRAIN" train "$cfg" --set checkpoint.dir=run3 \
  --set train.batch_size=16 --resume run/ckpt-00000020.h5
expect_exit 4 "trunk.1.dense.W.*shape" -- "$JTRAIN" train "$cfg" --set checkpoint.dir=run2 \
  --set 'model.blocks.trunk.layers=[flatten, {dense: {units: 8}}, relu]' --resume run/ckpt-00000020.h5
# Last, as it damages the checkpoint: a changed value fails its section checksum.
"$PY" -c "import h5py; f=h5py.File('run/ckpt-00000020.h5','r+'); f['params/trunk.1.dense.W'][0,0] += 1"
expect_exit 4 "checksum" -- "$JTRAIN" eval run/ckpt-00000020.h5
