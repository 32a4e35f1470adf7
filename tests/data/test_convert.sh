#!/usr/bin/env bash
# scripts/jtrain-convert: a made-up folder of .npy images and WAV files (sine tones) with a CSV
# converts to a valid data set file (images and labels round-trip exactly, audio [N,32,40]
# finite with train mean/std); the resampler keeps in-band tones and removes out-of-band ones;
# bad input (missing WAV, wrong field count, inconsistent label, usage) fails with the right
# exit code and names the file in the message.
# Env: JT_SRC (source dir), JT_TMP (scratch dir), JT_PYTHON (a python candidate).
# Exit 77 (skip) when no Python imports numpy and h5py.
set -u
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the source tree
src=${JT_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
tmp=${JT_TMP:-/tmp/jt-test-convert-$$}
mkdir -p "$tmp" || { echo "FAIL: cannot create $tmp"; exit 1; }
py=
for c in "${JT_PYTHON:-}" /usr/bin/python3 python3; do
    [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import numpy, h5py' >/dev/null 2>&1; then py=$c; break; fi
done
[ -n "$py" ] || { echo "SKIP: no Python that imports numpy and h5py"; exit 77; }
export JT_PYTHON=$py
conv="$src/scripts/jtrain-convert"
d="$tmp/in"
rm -rf "$d" && mkdir -p "$d/img" "$d/wav"

# 24 samples: image i is a 12x10 uint8 pattern; WAV i a tone (mono or stereo, 8/16/22.05/44.1 kHz);
# labels: shape (names), size (integers, one empty = no label), a split column.
"$py" - "$d" <<'EOF' || { echo "FAIL: could not make the input"; exit 1; }
import sys, wave
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
rates = [8000, 16000, 22050, 44100]
shapes = ["circle", "square", "star"]
lines = ["image,audio,shape,size,split"]
for i in range(24):
    np.save("%s/img/%02d.npy" % (d, i), rng.integers(0, 256, size=(12, 10), dtype=np.uint8))
    rate, ch = rates[i % 4], 1 + i % 2
    t = np.arange(int(rate * (0.5 + 0.05 * i))) / rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t)
    pcm = (np.repeat(x[:, None], ch, axis=1) * 32767).astype("<i2")
    with wave.open("%s/wav/%02d.wav" % (d, i), "wb") as w:
        w.setnchannels(ch); w.setsampwidth(2); w.setframerate(rate); w.writeframes(pcm.tobytes())
    size = "" if i == 5 else str(i % 3)
    lines.append("%02d.npy,wav/%02d.wav,%s,%s,%s" % (i, i, shapes[i % 3], size, "test" if i % 4 == 3 else "train"))
open("%s/labels.csv" % d, "w").write("\n".join(lines) + "\n")
EOF

fail() { echo "FAIL: $*"; exit 1; }

"$conv" --csv "$d/labels.csv" --images "$d/img" --out "$tmp/ok.h5" >"$tmp/ok.log" 2>&1 \
    || { cat "$tmp/ok.log"; fail "conversion of valid input failed"; }

"$py" - "$d" "$tmp/ok.h5" "$src/scripts" <<'EOF' || exit 1
import csv, sys
import h5py
import numpy as np
d, out, scripts = sys.argv[1:4]
sys.path.insert(0, scripts)
import jtrain_audio as ja
fails = []
def check(ok, what):
    if not ok:
        fails.append(what)
rows = list(csv.DictReader(open(d + "/labels.csv")))
with h5py.File(out, "r") as f:
    check(f.attrs["jtrain_format"] in ("dataset", b"dataset") and int(f.attrs["version"]) == 1, "root attributes")
    tr_mean = f["train/audio"].attrs["mean"]
    for split in ("train", "test"):
        mine = [r for r in rows if r["split"] == split]
        g = f[split]
        n = len(mine)
        im = g["image"][()]
        want = np.stack([np.load(d + "/img/" + r["image"]) for r in mine])
        check(im.dtype == np.uint8 and np.array_equal(im, want), "%s images round-trip" % split)
        check(abs(float(g["image"].attrs["scale"]) - 1 / 255) < 1e-9, "%s image scale" % split)
        au = g["audio"]
        check(au.shape == (n, 32, 40) and au.dtype == np.float32, "%s audio float32 [%d,32,40]" % (split, n))
        check(np.all(np.isfinite(au[()])), "%s audio finite" % split)
        check(au.attrs["mean"].shape == (40,) and np.array_equal(au.attrs["mean"], tr_mean), "%s audio mean = train's" % split)
        check(np.all(au.attrs["std"] > 0), "%s audio std > 0" % split)
        shapes = [s.decode() if isinstance(s, bytes) else s for s in g["shape"].attrs["classes"]]
        check(shapes == ["circle", "square", "star"], "shape classes sorted names")
        check([shapes[i] for i in g["shape"][()]] == [r["shape"] for r in mine], "%s shape labels round-trip" % split)
        sizes = g["size"][()]
        check(g["size"].dtype == np.int32 and list(sizes) == [int(r["size"]) if r["size"] else -1 for r in mine],
              "%s integer labels kept, empty -> -1" % split)
        check(list(g["meta/csv_line"][()]) == [rows.index(r) + 2 for r in mine], "%s meta/csv_line" % split)
    check(f["train/audio"].shape[0] == 18 and f["test/audio"].shape[0] == 6, "split column honoured")
# The resampler: in-band tones survive at any rate, tones above 8 kHz are removed.
for rate in (8000, 22050, 44100):
    t = np.arange(rate) / rate
    for hz, keep in ((1000, True), (6000, True), (8300, False), (9500, False)):
        if hz >= rate / 2:
            continue
        y = ja.resample(np.sin(2 * np.pi * hz * t).astype(np.float32), rate)
        ref = np.sin(2 * np.pi * hz * np.arange(y.size) / 16000)
        mid = slice(300, -300)
        err = np.sqrt(np.mean((y[mid] - (ref[mid] if keep else 0)) ** 2))
        check(y.size == 16000 and err < 1e-3, "resample %d Hz tone from %d Hz (rms error %.2g)" % (hz, rate, err))
if fails:
    for f in fails:
        print("FAIL:", f)
    sys.exit(1)
EOF

# --test-fraction and an idx/npy array with row indices instead of image files.
"$py" -c "
import numpy as np, sys
np.save('$d/all.npy', np.stack([np.load('$d/img/%02d.npy' % i) for i in range(24)]))
rows = open('$d/labels.csv').read().splitlines()
out = ['image,audio,shape']
for r in rows[1:]:
    f = r.split(',')
    out.append('%d,%s,%s' % (int(f[0][:2]), f[1], f[2]))
open('$d/rows.csv', 'w').write('\n'.join(out) + '\n')
" || fail "could not make rows.csv"
"$conv" --csv "$d/rows.csv" --images "$d/all.npy" --test-fraction 0.25 --out "$tmp/frac.h5" >"$tmp/frac.log" 2>&1 \
    || { cat "$tmp/frac.log"; fail "--test-fraction with an .npy array failed"; }
"$py" -c "
import h5py, numpy as np, sys
f = h5py.File('$tmp/frac.h5', 'r')
n = (f['train/image'].shape[0], f['test/image'].shape[0])
allimg = np.load('$d/all.npy')
got = np.concatenate([f['train/image'][()], f['test/image'][()]])
lines = np.concatenate([f['train/meta/csv_line'][()], f['test/meta/csv_line'][()]])
sys.exit(0 if n == (18, 6) and np.array_equal(got, allimg[lines - 2]) else 1)
" || fail "--test-fraction 0.25 of 24 rows with an .npy array: wrong split or rows"

# Error cases: exit code and the offending file in stderr.
expect() {  # expect CODE WHAT NEEDLE -- ARGS...
    local code=$1 what=$2 needle=$3; shift 4
    "$conv" "$@" --out "$tmp/bad.h5" >"$tmp/bad.out" 2>"$tmp/bad.err"; local rc=$?
    [ $rc -eq "$code" ] || { cat "$tmp/bad.err"; fail "$what: exit $rc, expected $code"; }
    grep -qF -- "$needle" "$tmp/bad.err" || { cat "$tmp/bad.err"; fail "$what: stderr does not name $needle"; }
    [ ! -e "$tmp/bad.h5" ] || fail "$what: an output file was written"
}
sed 's#wav/07.wav#wav/missing.wav#' "$d/labels.csv" >"$d/missing.csv"
expect 3 "missing WAV" "missing.wav" -- --csv "$d/missing.csv" --images "$d/img"
grep -qF "missing.csv:9" "$tmp/bad.err" || { cat "$tmp/bad.err"; fail "missing WAV: no CSV line number"; }
sed '5s/$/,extra/' "$d/labels.csv" >"$d/fields.csv"
expect 3 "wrong field count" "fields.csv:5" -- --csv "$d/fields.csv" --images "$d/img"
sed '4s/,star,/,7,/' "$d/labels.csv" >"$d/mixed.csv"
expect 3 "label mixing names and integers" "mixed.csv:4" -- --csv "$d/mixed.csv" --images "$d/img"
sed '5s/,circle,/,hexagon,/' "$d/labels.csv" >"$d/testonly.csv"   # line 5 is a test row
expect 3 "label only in test" "testonly.csv:5" -- --csv "$d/testonly.csv" --images "$d/img"
expect 3 "label outside --classes" "labels.csv:" -- --csv "$d/labels.csv" --images "$d/img" --classes shape=circle,square
printf 'not a wav' >"$d/wav/broken.wav"
sed 's#wav/03.wav#wav/broken.wav#' "$d/labels.csv" >"$d/broken.csv"
expect 3 "unreadable WAV" "broken.wav" -- --csv "$d/broken.csv" --images "$d/img"
expect 2 "unknown option" "--bogus" -- --csv "$d/labels.csv" --bogus
expect 2 "split column and fraction" "test-fraction" -- --csv "$d/labels.csv" --images "$d/img" --test-fraction 0.5
echo "ok: jtrain-convert checked"
