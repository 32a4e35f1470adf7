#!/usr/bin/env bash
# Builds a tiny AVFM (datasets/avfm/build) and checks it against the data set contract
# (docs/data-format.md) and the AVFM layout (datasets/avfm/README.md): shapes, dtypes,
# attributes, label ranges, caption format, non-degenerate audio, and reproducibility (same seed
# -> identical arrays whatever --jobs; another seed -> different arrays).
# Env: JT_SRC (source dir), JT_TMP (scratch dir), JT_PYTHON (a python candidate).
# Exit 77 (skip) when numpy/h5py, the espeak-ng library or Fashion-MNIST are missing.
set -u
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the source tree
src=${JT_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
tmp=${JT_TMP:-/tmp/jt-test-avfm-$$}
mkdir -p "$tmp" || { echo "FAIL: cannot create $tmp"; exit 1; }
fm=${JT_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}

py=
for c in "${JT_PYTHON:-}" /usr/bin/python3 python3; do
    [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import numpy, h5py' >/dev/null 2>&1; then py=$c; break; fi
done
[ -n "$py" ] || { echo "SKIP: no Python that imports numpy and h5py"; exit 77; }
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [ -r "$fm/$f" ] || { echo "SKIP: Fashion-MNIST not found ($fm/$f; apt-get install dataset-fashion-mnist)"; exit 77; }
done
"$py" -c 'import ctypes, ctypes.util, os
ctypes.CDLL(os.environ.get("JT_ESPEAK_LIB") or ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1")' \
    >/dev/null 2>&1 || { echo "SKIP: libespeak-ng not loadable (apt-get install libespeak-ng1)"; exit 77; }

build="$src/datasets/avfm/build"
export JT_PYTHON=$py
run() {  # run OUT SEED JOBS
    if ! "$build" --train 200 --test 50 --block-rows 80 --seed "$2" --jobs "$3" --out "$1" 2>"$1.log"; then
        echo "FAIL: build --seed $2 --jobs $3 failed:"; cat "$1.log"; exit 1
    fi
}
run "$tmp/a.h5" 7 2
run "$tmp/b.h5" 7 1
run "$tmp/c.h5" 8 2

# Usage errors exit 2; a missing Fashion-MNIST is a data error (3).
"$build" --size huge --out "$tmp/x.h5" 2>/dev/null; rc=$?
[ $rc -eq 2 ] || { echo "FAIL: --size huge exited $rc, expected 2"; exit 1; }
"$build" --train 10 --test 10 --fmnist "$tmp/nowhere" --out "$tmp/x.h5" 2>"$tmp/x.log"; rc=$?
[ $rc -eq 3 ] && grep -q nowhere "$tmp/x.log" || { echo "FAIL: missing --fmnist exited $rc, expected 3 naming it"; cat "$tmp/x.log"; exit 1; }
[ ! -e "$tmp/x.h5" ] || { echo "FAIL: a failed build left $tmp/x.h5"; exit 1; }

"$py" - "$tmp/a.h5" "$tmp/b.h5" "$tmp/c.h5" <<'EOF'
import sys
import h5py
import numpy as np

fails = []
def check(ok, what):
    if not ok:
        fails.append(what)

def strs(v):
    return [s.decode() if isinstance(s, bytes) else str(s) for s in v]

def arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out

a_path, b_path, c_path = sys.argv[1:4]
with h5py.File(a_path, "r") as f:
    check(f.attrs.get("jtrain_format") in ("dataset", b"dataset"), "root jtrain_format")
    v = f.attrs.get("version")
    check(v is not None and np.issubdtype(np.asarray(v).dtype, np.integer) and int(v) == 1, "root version == 1 (int)")
    check(len(str(f.attrs.get("description", ""))) > 20, "root description")
    train_mean = f["train/audio"].attrs["mean"]
    for split, n in (("train", 200), ("test", 50)):
        g = f[split]
        im, au = g["image"], g["audio"]
        check(im.shape == (n, 28, 28) and im.dtype == np.uint8, "%s/image uint8 [%d,28,28]" % (split, n))
        check(abs(float(im.attrs["scale"]) - 1 / 255) < 1e-9 and float(im.attrs["offset"]) == 0, "%s/image scale/offset" % split)
        check(im.compression == "gzip" and au.compression == "gzip", "%s gzip" % split)
        check(au.shape == (n, 32, 40) and au.dtype == np.float32, "%s/audio float32 [%d,32,40]" % (split, n))
        for k in ("mean", "std"):
            x = au.attrs[k]
            check(x.dtype == np.float32 and x.shape == (40,) and np.all(np.isfinite(x)), "%s/audio %s float32[40]" % (split, k))
        check(np.all(au.attrs["std"] > 0), "%s/audio std > 0" % split)
        check(np.array_equal(au.attrs["mean"], train_mean), "%s/audio mean is the train mean" % split)
        want = {"sample_rate": 16000, "win_ms": 25, "hop_ms": 10, "n_fft": 512, "n_mels": 40, "frames": 32}
        for k, val in want.items():
            check(k in au.attrs and float(au.attrs[k]) == val, "%s/audio attr %s == %s" % (split, k, val))
        x = au[()]
        check(np.all(np.isfinite(x)), "%s/audio finite" % split)
        check(np.all(x.reshape(-1, 40).std(axis=0) > 0.1), "%s/audio per-band std > 0.1" % split)
        check(np.all(x.reshape(n, -1).std(axis=1) > 0.1), "%s/audio no constant clip" % split)
        check(len(np.unique(x.reshape(n, -1), axis=0)) == n, "%s/audio clips distinct" % split)
        nclasses = {"label": 10, "word": 10, "speaker": 16}
        for name, k in nclasses.items():
            d = g[name]
            check(d.shape == (n,) and d.dtype == np.int32, "%s/%s int32 [%d]" % (split, name, n))
            cl = strs(d.attrs["classes"])
            check(len(cl) == k and len(set(cl)) == k, "%s/%s has %d distinct classes" % (split, name, k))
            check(d[()].min() >= 0 and d[()].max() < k, "%s/%s in range" % (split, name))
        lab = g["label"][()]
        check(np.array_equal(g["word"][()], lab), "%s/word == label" % split)
        check(np.array_equal(np.bincount(lab, minlength=10), np.full(10, n // 10)), "%s stratified" % split)
        sp = np.bincount(g["speaker"][()], minlength=16)
        check(sp.max() - sp.min() <= 10, "%s speakers balanced (%s)" % (split, sp.tolist()))
        gr = g["group"]
        gcl = strs(gr.attrs["classes"])
        check(gr.dtype == np.int32 and 3 <= len(gcl) <= 4 and gr[()].min() >= 0 and gr[()].max() < len(gcl), "%s/group" % split)
        for c in range(10):  # group is a function of the label
            check(len(np.unique(gr[()][lab == c])) <= 1, "%s/group is a function of label" % split)
        cap = g["caption"]
        vocab = strs(cap.attrs["vocab"])
        check(vocab[0] == "<end>", "%s/caption vocab[0] == <end>" % split)
        check(cap.dtype == np.int32 and cap.ndim == 2 and cap.shape[0] == n, "%s/caption int32 [N, L]" % split)
        classes = strs(g["label"].attrs["classes"])
        for row, c in zip(cap[()], lab):
            ends = np.flatnonzero(row == 0)
            if len(ends) == 0:
                check(False, "%s/caption has no end token" % split); break
            e = ends[0]
            ok = np.all(row[:e] > 0) and np.all(row[:e] < len(vocab)) and np.all(row[e + 1:] == -1)
            text = "".join(vocab[i] for i in row[:e])
            check(ok and text == classes[c].lower(), "%s/caption spells the class (%r)" % (split, text))
            if fails:
                break
        for m in ("rate", "pitch", "snr_db", "gain_db", "offset_s", "tilt"):
            d = g["meta/" + m]
            check(d.shape == (n,) and d.dtype == np.float32 and np.all(np.isfinite(d[()])), "%s/meta/%s float32 [N]" % (split, m))
        snr = g["meta/snr_db"][()]
        check(snr.min() >= -10 and snr.max() <= 5, "%s snr range" % split)
        check(g["meta/offset_s"][()].min() >= 0 and g["meta/offset_s"][()].max() < 1, "%s offset range" % split)

a, b, c = arrays(a_path), arrays(b_path), arrays(c_path)
check(sorted(a) == sorted(b), "same array names")
for k in a:
    check(np.array_equal(a[k], b[k]), "same seed, --jobs 2 vs 1: %s identical" % k)
check(not np.array_equal(a["train/audio"], c["train/audio"]), "another seed changes the audio")
check(not np.array_equal(a["train/image"], c["train/image"]), "another seed changes the rows")

if fails:
    for f in fails[:20]:
        print("FAIL:", f)
    sys.exit(1)
print("ok: avfm tiny build checked")
EOF
rc=$?
[ $rc -eq 0 ] || exit $rc

# jtrain itself accepts the build: every recipe's model builds on it (summary reads the
# layout) and the default recipe trains a few steps on it under mpiexec, then evaluates.
if [ -n "${JTRAIN:-}" ]; then
    source "$src/scripts/lib.sh"
    cd "$tmp" || exit 1
    for recipe in separate separate-cnn shared attention; do
        # the recipe's data.file, pointed at the tiny build
        cfg="$tmp/$recipe.yaml"
        sed "s|file: datasets/avfm/avfm-small.h5|file: $tmp/a.h5|" "$src/datasets/avfm/$recipe.yaml" > "$cfg"
        "$JTRAIN" summary "$cfg" > "$recipe.summary" 2>&1 \
            || { cat "$recipe.summary"; echo "FAIL: jtrain summary $recipe on the build"; exit 1; }
    done
    OPENBLAS_NUM_THREADS=1 jt_mpirun -np 2 "$JTRAIN" train "$tmp/attention.yaml" \
        --set train.epochs=0 --set train.steps=3 --set train.batch_size=16 --set checkpoint.dir="$tmp/run" --overwrite > train.log 2>&1 \
        || { cat train.log; echo "FAIL: jtrain train on the build"; exit 1; }
    grep -q "eval test step 3 | item loss" train.log || { cat train.log; echo "FAIL: no eval"; exit 1; }
    echo "ok: jtrain builds every recipe on the build and trains the attention recipe on it"
fi
