#!/usr/bin/env bash
# scripts/jtrain-convert --folders and PNG/JPEG images:
#  without PIL: a class-folder tree (train/ and test/, images/<class>/*.npy paired by stem with
#  audio/<class>/*.wav) converts with the right rows, labels, classes and meta; image-only and
#  audio-only trees split by --test-fraction; bad trees (an unpaired file, a stem twice, a file
#  outside a class folder, an unknown file type, a class missing from train, options that do
#  not go together) fail with exit 3 or 2 naming the file; with PIL hidden, a PNG is exit 3
#  telling to install python3-pil (scripts/setup --with-pil); `jtrain train` takes the output.
#  with PIL (python3-pil; scripts/test installs it): grey and RGB PNG and JPEG (also .jpeg,
#  .JPG, RGBA, 16-bit grey) through folders and through the CSV; --channels 1|3 and the error
#  for a colour image in a grey set; --size and the error for a different size; a damaged PNG;
#  `jtrain train` on RGB PNGs paired with audio.
# Env: JT_SRC, JT_TMP, JT_PYTHON, JTRAIN (default build/jtrain).
# Exit 77 (skip) when no Python imports numpy and h5py, or, after the checks that need no PIL,
# when PIL is missing (the reason is printed).
set -u
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the source tree
export OPENBLAS_NUM_THREADS=1
src=${JT_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
tmp=${JT_TMP:-/tmp/jt-test-convert-folders-$$}
jtrain=${JTRAIN:-$src/build/jtrain}
rm -rf "$tmp" && mkdir -p "$tmp" || { echo "FAIL: cannot create $tmp"; exit 1; }
py=
for c in "${JT_PYTHON:-}" /usr/bin/python3 python3; do
    [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import numpy, h5py' >/dev/null 2>&1; then py=$c; break; fi
done
[ -n "$py" ] || { echo "SKIP: no Python that imports numpy and h5py"; exit 77; }
[ -x "$jtrain" ] || { echo "FAIL: no jtrain binary at $jtrain (set JTRAIN)"; exit 1; }
jtrain="$(cd "$(dirname "$jtrain")" && pwd)/$(basename "$jtrain")"   # train() runs in $tmp
export JT_PYTHON=$py
conv="$src/scripts/jtrain-convert"
fail() { echo "FAIL: $*"; exit 1; }
convert() {  # convert LOG ARGS...: must succeed
    local log=$1; shift
    "$conv" "$@" >"$log" 2>&1 || { cat "$log"; fail "jtrain-convert $* failed"; }
}
expect() {  # expect CODE WHAT NEEDLE -- ARGS...: exit CODE, NEEDLE on stderr, no output file
    local code=$1 what=$2 needle=$3; shift 4
    rm -f "$tmp/bad.h5"
    "$conv" "$@" --out "$tmp/bad.h5" >"$tmp/bad.out" 2>"$tmp/bad.err"; local rc=$?
    [ $rc -eq "$code" ] || { cat "$tmp/bad.err"; fail "$what: exit $rc, expected $code"; }
    grep -qF -- "$needle" "$tmp/bad.err" || { cat "$tmp/bad.err"; fail "$what: stderr does not name $needle"; }
    [ ! -e "$tmp/bad.h5" ] || fail "$what: an output file was written"
}
train() {  # train DATA.h5 IMAGE_DIMS WHAT: jtrain trains 3 steps on image_class and audio_class
    cat >"$tmp/train.yaml" <<EOF
data:
  file: $1
model:
  blocks:
    image_net:
      input: image
      layers:
        - conv2d: {filters: 4, kernel: 3, stride: 2}
        - relu
        - flatten
        - dense: {units: 8}
        - relu
    audio_net:
      input: audio
      layers:
        - flatten
        - dense: {units: 8}
        - tanh
  heads:
    item:    {input: image_net, target: image_class}
    speaker: {input: audio_net, target: audio_class}
train:
  steps: 3
  batch_size: 8
  optimizer: {name: adam, lr: 1.0e-3}
checkpoint:
  dir: $tmp/run-$2
log:
  every_steps: 1
EOF
    rm -rf "$tmp/run-$2"
    (cd "$tmp" && "$jtrain" train "$tmp/train.yaml") >"$tmp/train-$2.log" 2>&1 \
        || { cat "$tmp/train-$2.log"; fail "jtrain train on the $3 output failed"; }
    [ -e "$tmp/run-$2/ckpt-00000003.h5" ] || { cat "$tmp/train-$2.log"; fail "$3: no checkpoint after 3 steps"; }
    echo "ok: jtrain train ran 3 steps on the $3 output"
}

# ------------------------------------------------------------------ without PIL
# pairs/{train,test}/images/{cat,dog,fox}/sNN.npy + audio/{alice,bob}/sNN.wav: 24 train rows,
# 6 test rows; stem sNN: image class NN % 3, audio class NN % 2. flat/images/{a,b,c}: 5 .npy
# each; flat_audio/audio/{x,y}: 4 WAVs each.
"$py" - "$tmp" <<'EOF' || fail "could not make the input"
import os, sys, wave
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
def wav(path, i, rate=16000):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t = np.arange(int(rate * 0.6)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate); w.writeframes(pcm.tobytes())
def npy(path, shape=(8, 8)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, rng.integers(0, 256, size=shape, dtype=np.uint8))
for i in range(30):
    part = "test" if i >= 24 else "train"
    npy("%s/pairs/%s/images/%s/s%02d.npy" % (d, part, ["cat", "dog", "fox"][i % 3], i))
    wav("%s/pairs/%s/audio/%s/s%02d.wav" % (d, part, ["alice", "bob"][i % 2], i), i)
for c in "abc":
    for j in range(5):
        npy("%s/flat/images/%s/%s%d.npy" % (d, c, c, j), (6, 7))
for c in "xy":
    for j in range(4):
        wav("%s/flat_audio/audio/%s/%d.wav" % (d, c, j), j)
EOF

convert "$tmp/pairs.log" --folders "$tmp/pairs" --out "$tmp/pairs.h5"
convert "$tmp/flat.log" --folders "$tmp/flat" --test-fraction 0.2 --out "$tmp/flat.h5"
convert "$tmp/flat_audio.log" --folders "$tmp/flat_audio" --test-fraction 0.25 --out "$tmp/flat_audio.h5"
"$py" - "$tmp" <<'EOF' || exit 1
import os, sys
import h5py
import numpy as np
d = sys.argv[1]
fails = []
def check(ok, what):
    if not ok:
        fails.append(what)
def strs(v):
    return [s.decode() if isinstance(s, bytes) else str(s) for s in v]
with h5py.File(d + "/pairs.h5", "r") as f:
    check(f.attrs["jtrain_format"] in ("dataset", b"dataset") and int(f.attrs["version"]) == 1, "root attributes")
    for part, idx in (("train", range(24)), ("test", range(24, 30))):
        g = f[part]
        want = np.stack([np.load("%s/pairs/%s/images/%s/s%02d.npy" % (d, part, ["cat", "dog", "fox"][i % 3], i)) for i in idx])
        check(g["image"].dtype == np.uint8 and np.array_equal(g["image"][()], want), "pairs %s images in stem order" % part)
        check(strs(g["image_class"].attrs["classes"]) == ["cat", "dog", "fox"], "pairs image classes")
        check(strs(g["audio_class"].attrs["classes"]) == ["alice", "bob"], "pairs audio classes")
        check(list(g["image_class"][()]) == [i % 3 for i in idx], "pairs %s image_class" % part)
        check(list(g["audio_class"][()]) == [i % 2 for i in idx], "pairs %s audio_class" % part)
        check(g["audio"].shape == (len(idx), 32, 40), "pairs %s audio [N,32,40]" % part)
        check(strs(g["meta/image_file"][()]) == ["%s/images/%s/s%02d.npy" % (part, ["cat", "dog", "fox"][i % 3], i) for i in idx],
              "pairs %s meta/image_file" % part)
        check(strs(g["meta/audio_file"][()]) == ["%s/audio/%s/s%02d.wav" % (part, ["alice", "bob"][i % 2], i) for i in idx],
              "pairs %s meta/audio_file" % part)
    check("val" not in f, "no val split")
with h5py.File(d + "/flat.h5", "r") as f:
    check((f["train/image"].shape, f["test/image"].shape) == ((12, 6, 7), (3, 6, 7)), "flat: 15 rows, --test-fraction 0.2")
    check("audio" not in f["train"] and "audio_class" not in f["train"], "flat: image only")
    for part in ("train", "test"):
        g = f[part]
        classes = strs(g["image_class"].attrs["classes"])
        files = strs(g["meta/image_file"][()])
        check(classes == ["a", "b", "c"], "flat classes")
        check([classes[c] for c in g["image_class"][()]] == [p.split("/")[1] for p in files], "flat %s labels = folders" % part)
        check(np.array_equal(g["image"][()], np.stack([np.load(d + "/flat/" + p) for p in files])), "flat %s images = files" % part)
with h5py.File(d + "/flat_audio.h5", "r") as f:
    check((f["train/audio"].shape[0], f["test/audio"].shape[0]) == (6, 2), "flat_audio: 8 rows, --test-fraction 0.25")
    check("image" not in f["train"] and strs(f["train/audio_class"].attrs["classes"]) == ["x", "y"], "flat_audio: audio only")
if fails:
    for x in fails:
        print("FAIL:", x)
    sys.exit(1)
EOF
echo "ok: class folders (paired, image-only, audio-only) convert"

bad() {  # bad NAME: a fresh copy of pairs/ at $tmp/NAME
    rm -rf "$tmp/$1" && cp -r "$tmp/pairs" "$tmp/$1"
}
bad unpaired && cp "$tmp/pairs/train/audio/bob/s01.wav" "$tmp/unpaired/train/audio/bob/s99.wav"
expect 3 "unpaired WAV" "train/audio/bob/s99.wav: unpaired" -- --folders "$tmp/unpaired"
bad unpaired2 && rm "$tmp/unpaired2/test/audio/alice/s24.wav"
expect 3 "unpaired image" "test/images/cat/s24.npy: unpaired" -- --folders "$tmp/unpaired2"
bad dup && cp "$tmp/pairs/train/images/cat/s00.npy" "$tmp/dup/train/images/dog/s00.npy"
expect 3 "stem twice" "dog/s00.npy: two image files" -- --folders "$tmp/dup"
bad stray && echo hi >"$tmp/stray/train/images/notes.txt"
expect 3 "file outside a class folder" "images/notes.txt: a file outside a class folder" -- --folders "$tmp/stray"
bad type && echo x >"$tmp/type/train/images/cat/s00.gif"
expect 3 "unsupported type" "s00.gif: unsupported file type" -- --folders "$tmp/type"
bad deep && mkdir "$tmp/deep/train/images/cat/sub"
expect 3 "folder in a class folder" "images/cat/sub: a folder inside a class folder" -- --folders "$tmp/deep"
bad newclass && mkdir "$tmp/newclass/test/images/zebra" && mv "$tmp/newclass/test/images/cat/s24.npy" "$tmp/newclass/test/images/zebra/"
expect 3 "class only in test" "class 'zebra' has files in test/ but none in train/" -- --folders "$tmp/newclass"
bad empty && mkdir "$tmp/empty/train/images/gnu"
expect 3 "empty train class" "images/gnu: empty class folder" -- --folders "$tmp/empty"
bad notest && rm -r "$tmp/notest/test"
expect 3 "no test folder" "no test/ folder" -- --folders "$tmp/notest"
expect 3 "--classes misses a folder" "class 'fox' is not one of the classes" -- --folders "$tmp/pairs" --classes image_class=cat,dog
expect 2 "--test-fraction with train/ and test/" "drop --test-fraction" -- --folders "$tmp/pairs" --test-fraction 0.3
expect 2 "--images with --folders" "--images goes with --csv" -- --folders "$tmp/pairs" --images "$tmp/pairs"
expect 2 "--csv and --folders" "not allowed with" -- --folders "$tmp/pairs" --csv x.csv
expect 3 "no such folder" "nowhere: no such folder" -- --folders "$tmp/nowhere"
echo "ok: bad class folders fail naming the file"

# A PNG without PIL (hidden by a PIL package that cannot be imported): exit 3 naming the file
# and telling how to install PIL, through --folders and through a CSV.
mkdir -p "$tmp/nopil/PIL" "$tmp/pngonly/images/a" "$tmp/pngonly/images/b"
echo 'raise ImportError("PIL hidden by the test")' >"$tmp/nopil/PIL/__init__.py"
printf 'not read' >"$tmp/pngonly/images/a/x.png"; printf 'not read' >"$tmp/pngonly/images/b/y.jpg"
printf 'image,label\nimages/a/x.png,0\nimages/b/y.jpg,1\n' >"$tmp/pngonly/list.csv"
PYTHONPATH="$tmp/nopil" expect 3 "PNG without PIL" "install it with \`apt-get install python3-pil\` or \`scripts/setup --with-pil\`" \
    -- --folders "$tmp/pngonly" --test-fraction 0.5
grep -qF "images/a/x.png" "$tmp/bad.err" || { cat "$tmp/bad.err"; fail "PNG without PIL: the file is not named"; }
PYTHONPATH="$tmp/nopil" expect 3 "PNG without PIL (CSV)" "list.csv:2: $tmp/pngonly/images/a/x.png: PNG and JPEG images need PIL" \
    -- --csv "$tmp/pngonly/list.csv" --images "$tmp/pngonly" --test-fraction 0.5
echo "ok: PNG/JPEG without PIL: exit 3, install python3-pil or scripts/setup --with-pil"

train "$tmp/pairs.h5" npy "class-folder (.npy + WAV)"

# ------------------------------------------------------------------ with PIL
if ! "$py" -c 'import PIL.Image' >/dev/null 2>&1; then
    echo "SKIP: the PNG/JPEG part needs PIL, which $py cannot import (apt-get install python3-pil, or scripts/setup --with-pil)"
    exit 77
fi

# rgb/{train,test}/images/{cat,dog,fox}/sNN.png (RGB 8x8) + audio (the WAVs of pairs/);
# grey/images/{a,b}: L PNGs; jpg/images/{a,b}: RGB JPEGs (.jpg, .jpeg, .JPG); mixed/images:
# grey PNGs, then one RGB PNG (first in order: a/0.png is grey); sizes/images: 8x8 and one 12x10;
# odd/images: RGBA, 16-bit grey; a CSV over the grey PNGs.
"$py" - "$tmp" <<'EOF' || fail "could not make the PNG/JPEG input"
import os, shutil, sys
import numpy as np
from PIL import Image
d = sys.argv[1]
rng = np.random.default_rng(1)
def save(path, arr, **kw):  # saves d/PATH and its pixels as d/want/PATH.want.npy
    for f in (d + "/" + path, "%s/want/%s.want.npy" % (d, path)):
        os.makedirs(os.path.dirname(f), exist_ok=True)
    Image.fromarray(arr).save(d + "/" + path, **kw)
    np.save("%s/want/%s.want.npy" % (d, path), arr)
for i in range(30):
    part = "test" if i >= 24 else "train"
    save("rgb/%s/images/%s/s%02d.png" % (part, ["cat", "dog", "fox"][i % 3], i),
         rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8))
shutil.copytree(d + "/pairs/train/audio", d + "/rgb/train/audio")
shutil.copytree(d + "/pairs/test/audio", d + "/rgb/test/audio")
y, x = np.mgrid[0:16, 0:16]
for c in "ab":
    for j in range(4):
        save("grey/images/%s/%d.png" % (c, j), rng.integers(0, 256, size=(9, 7), dtype=np.uint8))
        # smooth images, which JPEG keeps close
        img = np.stack([(x * 8 + 40 * j) % 256, (y * 8) % 256, np.full_like(x, 100 + 50 * (c == "b"))], -1)
        save("jpg/images/%s/%d%s" % (c, j, [".jpg", ".jpeg", ".JPG", ".jpg"][j]), img.astype(np.uint8), quality=95)
        save("mixed/images/%s/%d.png" % (c, j), rng.integers(0, 256, size=(5, 5), dtype=np.uint8))
        save("sizes/images/%s/%d.png" % (c, j), rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8))
save("mixed/images/b/9.png", rng.integers(0, 256, size=(5, 5, 3), dtype=np.uint8))
save("sizes/images/b/9.png", rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8))
save("odd/images/a/rgba.png", rng.integers(0, 256, size=(6, 6, 4), dtype=np.uint8))
save("odd/images/b/rgb.png", rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8))
ramp = np.arange(36, dtype=np.uint16).reshape(6, 6)
save("odd16/images/a/g16.png", ramp * 1000)    # 16-bit grey
save("odd16/images/a/h16.png", ramp * 1500)
save("odd16/images/b/k16.png", ramp * 700)
with open(d + "/grey/list.csv", "w") as f:
    f.write("image,label,split\n")
    for c in "ab":
        for j in range(4):
            f.write("images/%s/%d.png,%s,%s\n" % (c, j, c, "test" if j == 3 else "train"))
EOF

convert "$tmp/rgb.log" --folders "$tmp/rgb" --out "$tmp/rgb.h5"
convert "$tmp/grey.log" --folders "$tmp/grey" --test-fraction 0.25 --out "$tmp/grey.h5"
convert "$tmp/grey3.log" --folders "$tmp/grey" --test-fraction 0.25 --channels 3 --out "$tmp/grey3.h5"
convert "$tmp/greycsv.log" --csv "$tmp/grey/list.csv" --images "$tmp/grey" --out "$tmp/greycsv.h5"
convert "$tmp/jpg.log" --folders "$tmp/jpg" --test-fraction 0.25 --out "$tmp/jpg.h5"
convert "$tmp/jpg1.log" --folders "$tmp/jpg" --test-fraction 0.25 --channels 1 --out "$tmp/jpg1.h5"
convert "$tmp/mixed3.log" --folders "$tmp/mixed" --test-fraction 0.3 --channels 3 --out "$tmp/mixed3.h5"
convert "$tmp/mixed1.log" --folders "$tmp/mixed" --test-fraction 0.3 --channels 1 --out "$tmp/mixed1.h5"
convert "$tmp/sizes.log" --folders "$tmp/sizes" --test-fraction 0.3 --size 8x8 --out "$tmp/sizes.h5"
convert "$tmp/odd.log" --folders "$tmp/odd" --test-fraction 0.5 --out "$tmp/odd.h5"
convert "$tmp/odd16.log" --folders "$tmp/odd16" --test-fraction 0.3 --out "$tmp/odd16.h5"
"$py" - "$tmp" <<'EOF' || exit 1
import os, sys
import h5py
import numpy as np
from PIL import Image
d = sys.argv[1]
fails = []
def check(ok, what):
    if not ok:
        fails.append(what)
def strs(v):
    return [s.decode() if isinstance(s, bytes) else str(s) for s in v]
def rows(path):
    """(images, files, image_class names) over train then test."""
    with h5py.File(path, "r") as f:
        ims, files, names = [], [], []
        for part in ("train", "test"):
            g = f[part]
            ims.append(g["image"][()])
            classes = strs(g["image_class"].attrs["classes"])
            files += strs(g["meta/image_file"][()])
            names += [classes[c] for c in g["image_class"][()]]
            check(g["image"].dtype == np.uint8 and abs(float(g["image"].attrs["scale"]) - 1 / 255) < 1e-9
                  or g["image"].dtype == np.float32 and "mean" in g["image"].attrs, "%s %s image dtype/attrs" % (path, part))
        return np.concatenate(ims), files, names
def want(root, rel):
    return np.load("%s/want/%s/%s.want.npy" % (d, root, rel))
def chw(a):
    return a.transpose(2, 0, 1) if a.ndim == 3 else a

im, files, names = rows(d + "/rgb.h5")
check(im.shape == (30, 3, 8, 8), "rgb: [30, 3, 8, 8]")
check(all(np.array_equal(x, chw(want("rgb", p))) for x, p in zip(im, files)), "rgb: PNG pixels round-trip as [3, H, W]")
check(names == [p.split("/")[2] for p in files], "rgb: labels = class folders")
with h5py.File(d + "/rgb.h5", "r") as f:
    check(f["train/audio"].shape == (24, 32, 40) and f["test/audio"].shape == (6, 32, 40), "rgb: paired audio")
im, files, names = rows(d + "/grey.h5")
check(im.shape == (8, 9, 7) and all(np.array_equal(x, want("grey", p)) for x, p in zip(im, files)), "grey PNG: [N, H, W] exact")
check(names == [p.split("/")[1] for p in files], "grey: labels = class folders")
im3, files3, _ = rows(d + "/grey3.h5")
check(im3.shape == (8, 3, 9, 7) and files3 == files and all(np.array_equal(x, np.stack([want("grey", p)] * 3)) for x, p in zip(im3, files)),
      "grey PNG --channels 3: repeated into 3 channels")
with h5py.File(d + "/greycsv.h5", "r") as f:
    check(f["train/image"].shape == (6, 9, 7) and f["test/image"].shape == (2, 9, 7), "grey PNG through the CSV")
    lab = strs(f["train/label"].attrs["classes"])
    check(np.array_equal(f["test/image"][()], np.stack([want("grey", "images/%s/3.png" % c) for c in "ab"])), "CSV PNG pixels")
im, files, names = rows(d + "/jpg.h5")
check(im.shape == (8, 3, 16, 16), "jpg: [8, 3, 16, 16] (.jpg .jpeg .JPG)")
err = max(np.abs(x.astype(int) - chw(want("jpg", p)).astype(int)).mean() for x, p in zip(im, files))
check(err < 4, "jpg: close to the original (mean abs error %.2f)" % err)
im1, files1, _ = rows(d + "/jpg1.h5")
ref = np.stack([np.asarray(Image.open(d + "/jpg/" + p).convert("L")) for p in files1])
check(im1.shape == (8, 16, 16) and np.array_equal(im1, ref), "jpg --channels 1: PIL's grey")
im, files, _ = rows(d + "/mixed3.h5")
check(im.shape == (9, 3, 5, 5), "mixed --channels 3: [9, 3, 5, 5]")
for x, p in zip(im, files):
    w = want("mixed", p)
    check(np.array_equal(x, chw(w) if w.ndim == 3 else np.stack([w] * 3)), "mixed --channels 3: %s" % p)
im, files, _ = rows(d + "/mixed1.h5")
check(im.shape == (9, 5, 5), "mixed --channels 1: [9, 5, 5]")
k = files.index("images/b/9.png")
check(np.array_equal(im[k], np.asarray(Image.open(d + "/mixed/images/b/9.png").convert("L"))), "mixed --channels 1: RGB to grey")
im, files, _ = rows(d + "/sizes.h5")
check(im.shape == (9, 3, 8, 8), "sizes --size 8x8: [9, 3, 8, 8]")
k = files.index("images/b/9.png")
check(not np.array_equal(im[k], 0) and all(np.array_equal(x, chw(want("sizes", p))) for x, p in zip(im, files) if p != "images/b/9.png"),
      "sizes: only the odd image is resized")
im, files, _ = rows(d + "/odd.h5")
k = files.index("images/a/rgba.png")
check(im.shape == (2, 3, 6, 6) and np.array_equal(im[k], chw(want("odd", "images/a/rgba.png")[..., :3])), "RGBA: alpha dropped")
im, files, _ = rows(d + "/odd16.h5")
k = files.index("images/a/g16.png")
check(im.dtype == np.float32 and im.shape == (3, 6, 6) and np.array_equal(im[k], np.arange(36).reshape(6, 6) * 1000.0),
      "16-bit grey PNG: float32 values kept")
if fails:
    for x in fails:
        print("FAIL:", x)
    sys.exit(1)
EOF
echo "ok: PNG and JPEG (grey, RGB, RGBA, 16-bit; --channels, --size; folders and CSV) convert"

expect 3 "colour image in a grey set" "mixed/images/b/9.png: a colour image (mode RGB), but the data set is grey-scale" \
    -- --folders "$tmp/mixed" --test-fraction 0.3
grep -qF -- "--channels 3" "$tmp/bad.err" || { cat "$tmp/bad.err"; fail "colour in grey: no --channels hint"; }
expect 3 "another size" "sizes/images/b/9.png: image uint8 (3, 12, 10), but the first image" \
    -- --folders "$tmp/sizes" --test-fraction 0.3
grep -qF -- "--size 8x8" "$tmp/bad.err" || { cat "$tmp/bad.err"; fail "another size: no --size hint"; }
rm -rf "$tmp/broken" && cp -r "$tmp/grey" "$tmp/broken" && head -c 40 "$tmp/grey/images/a/1.png" >"$tmp/broken/images/a/1.png"
expect 3 "damaged PNG" "broken/images/a/1.png: cannot decode the image" -- --folders "$tmp/broken"
expect 2 "bad --size" "--size wants HxW" -- --folders "$tmp/grey" --size 8by8
expect 2 "bad --channels" "--channels" -- --folders "$tmp/grey" --channels 2
echo "ok: bad PNG/JPEG input fails naming the file"

train "$tmp/rgb.h5" rgb "RGB PNG + WAV class-folder"
echo "ok: jtrain-convert --folders and PNG/JPEG checked"
