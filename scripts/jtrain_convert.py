"""jtrain_convert - turns a user's images and WAV files, labelled by a CSV or by class folders,
into a jtrain data set file (docs/data-format.md); run it through scripts/jtrain-convert.
`--help` has the usage, datasets/README.md the input format.

Audio goes through the same log-mel front end as AVFM (scripts/jtrain_audio.py). PNG and JPEG
images are decoded with PIL (python3-pil) when it is installed. Every error names the file (and
the CSV line) and exits with 3 (data) or 2 (usage); nothing is written unless the whole input is
consistent (the output is written to a temporary file and renamed).
"""

import os

# One BLAS thread: the output must not depend on how a BLAS splits its work (and the resampler's
# small products gain nothing from threads). Set before numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import csv
import gzip
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jtrain_audio as ja  # noqa: E402
import h5py  # noqa: E402

PROG = "jtrain-convert"
RESERVED = {"image", "audio", "meta"}
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INT_RE = re.compile(r"^[0-9]+$")


class DataError(Exception):
    pass


class UsageError(Exception):
    pass


# ---------------------------------------------------------------- images

def read_pgm(path):
    """Binary (P5) or ASCII (P2) PGM, 8 or 16 bit; returns uint8 or uint16 [H, W]."""
    with open(path, "rb") as f:
        data = f.read()
    tokens, pos = [], 0
    while len(tokens) < 4:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if pos < len(data) and data[pos:pos + 1] == b"#":
            while pos < len(data) and data[pos:pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace() and data[pos:pos + 1] != b"#":
            pos += 1
        if start == pos:
            raise DataError("truncated PGM header")
        tokens.append(data[start:pos])
    magic = tokens[0]
    try:
        w, h, maxval = (int(t) for t in tokens[1:])
    except ValueError:
        raise DataError("bad PGM header")
    if magic not in (b"P5", b"P2") or w <= 0 or h <= 0 or not 0 < maxval < 65536:
        raise DataError("not a grey-scale PGM (P2/P5) file")
    dtype = np.uint8 if maxval < 256 else np.dtype(">u2")
    if magic == b"P5":
        body = data[pos + 1:]
        need = w * h * np.dtype(dtype).itemsize
        if len(body) < need:
            raise DataError("PGM data truncated: %d bytes, expected %d" % (len(body), need))
        img = np.frombuffer(body[:need], dtype).reshape(h, w)
    else:
        vals = data[pos:].split()
        if len(vals) < w * h:
            raise DataError("PGM data truncated: %d values, expected %d" % (len(vals), w * h))
        img = np.array([int(v) for v in vals[:w * h]]).reshape(h, w)
    return img.astype(np.uint8 if maxval < 256 else np.uint16)


def read_idx(path):
    """An idx file (MNIST format), optionally gzip'd; returns the array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    types = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in types or raw[3] < 1:
        raise DataError("not an idx file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dt = np.dtype(types[raw[2]])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)) * dt.itemsize:
        raise DataError("idx data is %d bytes, the header says %s x %d" % (len(body), dims, dt.itemsize))
    return np.frombuffer(body, dt).reshape(dims).astype(dt.newbyteorder("="))


def read_array_file(path):
    try:
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        return read_idx(path)
    except DataError as e:
        raise DataError("%s: %s" % (path, e))
    except (OSError, ValueError, EOFError) as e:
        raise DataError("%s: cannot read (%s)" % (path, e))


PIL_EXTS = (".png", ".jpg", ".jpeg")
IMAGE_EXTS = (".npy", ".pgm", ".pnm") + PIL_EXTS
GREY8_MODES = {"1", "L", "LA", "La"}                         # to uint8 grey
GREY_HI_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # 16/32-bit grey: to float32


def pil_image():
    """PIL's Image module, or None when PIL is not installed."""
    try:
        from PIL import Image, ImageOps
    except ImportError:
        return None
    return Image, ImageOps


def need_pil():
    """PIL's modules, or the DataError telling how to install it (the caller adds the file)."""
    m = pil_image()
    if m is None:
        raise DataError("PNG and JPEG images need PIL (Debian: python3-pil), which %s cannot import: "
                        "install it with `apt-get install python3-pil` or `scripts/setup --with-pil` "
                        "(or use .npy/.pgm images)" % sys.executable)
    return m


def parse_size(text):
    """"HxW" -> (H, W)."""
    m = re.match(r"^([0-9]+)[xX]([0-9]+)$", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError
    return int(m.group(1)), int(m.group(2))


def image_layout(img, channels_last):
    """[H, W] or [C, H, W] (a [H, W, C] image with --channels-last is transposed)."""
    img = np.asarray(img)
    if img.ndim == 3 and channels_last:
        img = np.transpose(img, (2, 0, 1))
    if img.ndim not in (2, 3) or min(img.shape) < 1:
        raise DataError("image of shape %s: expected [H, W] or [C, H, W]" % (img.shape,))
    if img.dtype.kind not in "uif":
        raise DataError("image of dtype %s: expected integers or floats" % img.dtype)
    return img


def _shape_text(shape):
    return "x".join(str(d) for d in shape)


class ImageReader:
    """Reads the image files of one data set into one layout: [H, W] (grey) or [C, H, W].

    PNG/JPEG (through PIL) become uint8 grey [H, W] or RGB [3, H, W]: `channels` (1 or 3, from
    --channels) or else the first PNG/JPEG's (grey modes 1/L/LA give 1, all others 3). A grey
    image in an RGB data set is repeated into 3 channels (lossless); a colour image in a grey data
    set whose channels were not given is an error (converting it would lose colour silently);
    alpha is dropped; 16/32-bit grey images become float32; EXIF orientation is applied. `size`
    (H, W) resizes PNG/JPEG images (Lanczos) that differ; without it every image must have the
    first one's size. .npy/.pgm files are read as they are (`channels_last`: .npy [H, W, C]).
    Errors are DataError without the file name (the caller adds it and its CSV line).
    """

    def __init__(self, channels=None, size=None, channels_last=False):
        self.channels = channels
        self.channels_given = channels is not None
        self.channels_from = None   # the file that decided the channels
        self.size = size
        self.channels_last = channels_last
        self.first = None           # (path, shape, dtype) of the first image

    def read(self, path):
        ext = os.path.splitext(path)[1].lower()
        if ext in PIL_EXTS:
            img = self._read_pil(path)
        elif ext in (".npy", ".pgm", ".pnm"):
            try:
                img = np.load(path, allow_pickle=False) if ext == ".npy" else read_pgm(path)
            except (OSError, ValueError, EOFError) as e:
                raise DataError("cannot read (%s)" % (getattr(e, "strerror", None) or e))
            img = image_layout(img, self.channels_last)
            if self.size is not None and img.shape[-2:] != self.size:
                raise DataError("image of %s pixels, but --size is %s: --size resizes PNG and JPEG "
                                "images only" % (_shape_text(img.shape[-2:]), _shape_text(self.size)))
        else:
            raise DataError("unsupported image type %r (use .png/.jpg/.jpeg with python3-pil, "
                            ".npy or .pgm)" % ext)
        if self.first is None:
            self.first = (path, img.shape, img.dtype)
        elif img.shape != self.first[1] or img.dtype != self.first[2]:
            hint = ""
            if img.shape[-2:] != self.first[1][-2:] and ext in PIL_EXTS:
                hint = "; pass --size %s to resize PNG/JPEG images to that size" % _shape_text(self.first[1][-2:])
            raise DataError("image %s %s, but the first image (%s) is %s %s%s"
                            % (img.dtype, img.shape, self.first[0], self.first[2], self.first[1], hint))
        return img

    def _read_pil(self, path):
        Image, ImageOps = need_pil()
        try:
            with Image.open(path) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
        except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
            raise DataError("cannot read (%s)" % e.strerror)
        except Exception as e:  # Pillow raises many kinds on damaged files
            raise DataError("cannot decode the image (%s)" % e)
        mode = im.mode
        colour = mode not in GREY8_MODES and mode not in GREY_HI_MODES
        if self.channels is None:
            self.channels = 3 if colour else 1
            self.channels_from = path
        if colour and self.channels == 1 and not self.channels_given:
            raise DataError("a colour image (mode %s), but the data set is grey-scale like its first "
                            "PNG/JPEG image %s: pass --channels 3 to keep colour (grey images are "
                            "repeated into 3 channels) or --channels 1 to convert every image to grey"
                            % (mode, self.channels_from))
        if self.size is not None and (im.height, im.width) != self.size:
            if mode in GREY_HI_MODES:
                im = im.convert("I").convert("F") if mode != "F" else im
            resample = getattr(Image, "Resampling", Image).LANCZOS
            try:
                im = im.resize((self.size[1], self.size[0]), resample)
            except Exception as e:
                raise DataError("cannot resize the image (mode %s) to %s (%s)"
                                % (mode, _shape_text(self.size), e))
        if mode in GREY_HI_MODES:
            if im.mode != "F":
                im = (im if im.mode == "I" else im.convert("I")).convert("F")
            grey = np.asarray(im, dtype=np.float32)
        elif not colour or self.channels == 1:
            grey = np.asarray(im.convert("L"))
        else:
            return np.ascontiguousarray(np.asarray(im.convert("RGB")).transpose(2, 0, 1))
        return grey if self.channels == 1 else np.ascontiguousarray(np.stack([grey] * 3))


def check_pil_for(paths):
    """An early, clear error when PNG/JPEG files are given and PIL is missing: (path, where) pairs."""
    if pil_image() is not None:
        return
    for path, where in paths:
        if os.path.splitext(path)[1].lower() in PIL_EXTS:
            try:
                need_pil()
            except DataError as e:
                raise DataError("%s%s: %s" % (where, path, e))


# ---------------------------------------------------------------- CSV

def read_csv(path):
    """Returns (header, rows), rows = [(line number, {column: value})]."""
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise DataError("%s: cannot open (%s)" % (path, e.strerror))
    rows = []
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if not header:
                raise DataError("%s: empty file (expected a header row)" % path)
            header = [h.strip() for h in header]
            if len(set(header)) != len(header):
                raise DataError("%s:1: duplicate column names in the header" % path)
            for fields in reader:
                if not fields or all(not x.strip() for x in fields):
                    continue
                if len(fields) != len(header):
                    raise DataError("%s:%d: %d fields, the header has %d"
                                    % (path, reader.line_num, len(fields), len(header)))
                rows.append((reader.line_num, {h: v.strip() for h, v in zip(header, fields)}))
        except csv.Error as e:
            raise DataError("%s:%d: %s" % (path, reader.line_num, e))
        except UnicodeDecodeError as e:
            raise DataError("%s: not UTF-8 text (%s)" % (path, e))
    if not rows:
        raise DataError("%s: no data rows" % path)
    return header, rows


def label_classes(csv_path, col, rows, split, fixed):
    """Maps a label column to int32 indices and its class names.

    Empty cells are -1 (no label). Classes are `fixed` if given (a value outside it is an error);
    otherwise, if every value is a non-negative integer, the values are the indices and the
    classes are "0".."max"; otherwise the sorted distinct names. A column that mixes integers and
    names, or a name that appears in test (or val) but never in train, is inconsistent.
    """
    values = [r[col] for _, r in rows]
    present = [v for v in values if v != ""]
    if not present:
        raise DataError("%s: label column %r is empty" % (csv_path, col))
    named = False   # classes are the column's own names (not user-given, not integers)
    if fixed is not None:
        classes = fixed
    elif all(INT_RE.match(v) for v in present):
        top = max(int(v) for v in present)
        if top >= 65536:
            i = next(i for i, v in enumerate(values) if v != "" and int(v) == top)
            raise DataError("%s:%d: label %d in column %r: integer labels are class indices, at most 65535"
                            % (csv_path, rows[i][0], top, col))
        classes = [str(i) for i in range(top + 1)]
    else:
        named = True
        ints = [i for i, v in enumerate(values) if v != "" and INT_RE.match(v)]
        if ints:
            names = next(v for v in values if v != "" and not INT_RE.match(v))
            raise DataError("%s:%d: inconsistent label %r in column %r: other rows hold names (e.g. %r)"
                            % (csv_path, rows[ints[0]][0], values[ints[0]], col, names))
        classes = sorted(set(present))
    index = {c: i for i, c in enumerate(classes)}
    out = np.full(len(values), -1, np.int32)
    for i, v in enumerate(values):
        if v == "":
            continue
        if v not in index:
            if fixed is not None:
                raise DataError("%s:%d: inconsistent label %r in column %r: not one of the classes "
                                "given with --classes" % (csv_path, rows[i][0], v, col))
            out[i] = int(v)  # an integer written with leading zeros, e.g. "07"
        else:
            out[i] = index[v]
    if not named:
        return out, classes   # the user chose the class set: a class may be absent from train
    seen_train = set(out[(split == "train") & (out >= 0)].tolist())
    for i in np.flatnonzero((split != "train") & (out >= 0)):
        if out[i] not in seen_train:
            raise DataError("%s:%d: inconsistent label %r in column %r: it appears in split %r but "
                            "never in train" % (csv_path, rows[i][0], values[i], col, split[i]))
    return out, classes


# ---------------------------------------------------------------- class folders

FOLDER_SPLITS = ("train", "test", "val")
MODALITIES = (("images", IMAGE_EXTS), ("audio", (".wav",)))


def _listdir(path):
    try:
        return sorted(e for e in os.listdir(path) if not e.startswith("."))
    except OSError as e:
        raise DataError("%s: cannot list (%s)" % (path, e.strerror))


def scan_modality(root, rel, exts, need_files):
    """ROOT/REL/<class>/<file>: a sorted list of (class, stem, relative path). Hidden entries are
    skipped; a file outside a class folder, a sub-folder, another file type, or (need_files) an
    empty class folder is an error."""
    out = []
    for cls in _listdir(os.path.join(root, rel)):
        cdir = os.path.join(root, rel, cls)
        if not os.path.isdir(cdir):
            raise DataError("%s: a file outside a class folder (expected %s/<class>/<file>)"
                            % (cdir, os.path.join(root, rel)))
        files = _listdir(cdir)
        if not files and need_files:
            raise DataError("%s: empty class folder (remove it, or add its files)" % cdir)
        for name in files:
            path = os.path.join(cdir, name)
            stem, ext = os.path.splitext(name)
            if os.path.isdir(path):
                raise DataError("%s: a folder inside a class folder (expected %s/<class>/<file>, "
                                "one level of classes)" % (path, os.path.join(root, rel)))
            if ext.lower() not in exts:
                raise DataError("%s: unsupported file type %r in %s/ (expected %s)"
                                % (path, ext, rel.split(os.sep)[-1], " ".join(exts)))
            out.append((cls, stem, os.path.join(rel, cls, name)))
    return out


def pair_by_stem(root, images, audio):
    """Rows of a split holding both images/ and audio/: one image and one WAV with the same stem."""
    for what, files in (("images", images), ("audio", audio)):
        seen = {}
        for cls, stem, rel in files:
            if stem in seen:
                raise DataError("%s and %s: two %s files with the stem %r; with images/ and audio/ "
                                "files are paired by stem, which must be unique within %s/"
                                % (os.path.join(root, seen[stem]), os.path.join(root, rel),
                                   "image" if what == "images" else "audio", stem, what))
            seen[stem] = rel
    by_i = {stem: (cls, rel) for cls, stem, rel in images}
    by_a = {stem: (cls, rel) for cls, stem, rel in audio}
    lone = sorted([(rel, "audio", "%s.wav" % stem) for stem, (_, rel) in by_i.items() if stem not in by_a] +
                  [(rel, "images", "%s.png (or .jpg .jpeg .npy .pgm)" % stem)
                   for stem, (_, rel) in by_a.items() if stem not in by_i])
    if lone:
        rel, other, want = lone[0]
        split_dir = os.path.dirname(os.path.dirname(os.path.dirname(rel)))   # PART of PART/images/CLASS/FILE
        more = " (and %d more unpaired files)" % (len(lone) - 1) if len(lone) > 1 else ""
        raise DataError("%s: unpaired: no %s in any class folder of %s/ (with images/ and audio/, a row "
                        "is the image and the WAV with the same file stem)%s"
                        % (os.path.join(root, rel), want, os.path.join(root, split_dir, other), more))
    return [(by_i[s][0], by_i[s][1], by_a[s][0], by_a[s][1]) for s in sorted(by_i)]


def read_folders(a):
    """--folders ROOT: returns (split, labels, image files, audio files, meta), rows in order."""
    root = a.folders
    if not os.path.isdir(root):
        raise DataError("%s: no such folder" % root)
    split_dirs = [s for s in FOLDER_SPLITS if os.path.isdir(os.path.join(root, s))]
    mod_top = [m for m, _ in MODALITIES if os.path.isdir(os.path.join(root, m))]
    if split_dirs and mod_top:
        raise DataError("%s: holds both %s/ and %s/: put images/ and audio/ either at the top (split "
                        "with --test-fraction) or inside train/ and test/" % (root, split_dirs[0], mod_top[0]))
    if not split_dirs and not mod_top:
        raise DataError("%s: no images/ or audio/ folder (nor train/ and test/ folders holding them); "
                        "expected ROOT/images/<class>/<file> and/or ROOT/audio/<class>/<file>" % root)
    if split_dirs:
        if a.test_fraction is not None:
            raise UsageError("%s has train/ and test/ folders: they are the split, drop --test-fraction" % root)
        for s in ("train", "test"):
            if s not in split_dirs:
                raise DataError("%s: has %s/ but no %s/ folder" % (root, split_dirs[0], s))
        parts = split_dirs
    else:
        parts = [""]
    mods = None
    rows = []       # (split or None, image class, image rel, audio class, audio rel)
    for part in parts:
        have = [m for m, _ in MODALITIES if os.path.isdir(os.path.join(root, part, m))]
        if not have:
            raise DataError("%s: no images/ or audio/ folder" % os.path.join(root, part))
        if mods is None:
            mods = have
        elif have != mods:
            raise DataError("%s: holds %s, but %s holds %s: every split needs the same folders"
                            % (os.path.join(root, part), "/ and ".join(have) + "/",
                               os.path.join(root, parts[0]), "/ and ".join(mods) + "/"))
        need = part in ("", "train")
        found = {m: scan_modality(root, os.path.join(part, m), exts, need) for m, exts in MODALITIES if m in have}
        for m, files in found.items():
            if not files:
                raise DataError("%s: no files in its class folders" % os.path.join(root, part, m))
        if len(have) == 2:
            rows += [(part or None,) + r for r in pair_by_stem(root, found["images"], found["audio"])]
        elif have == ["images"]:
            rows += [(part or None, c, rel, None, None) for c, _, rel in found["images"]]
        else:
            rows += [(part or None, None, None, c, rel) for c, _, rel in found["audio"]]

    if split_dirs:
        split = np.array([r[0] for r in rows], dtype=object)
    else:
        split = random_split(len(rows), a, root)
    labels, meta = {}, {}
    for col, m, name in ((1, "images", a.image_label), (3, "audio", a.audio_label)):
        if m not in mods:
            continue
        values = [r[col] for r in rows]
        fixed = a.fixed.get(name)
        if fixed is not None:
            classes = fixed
        elif split_dirs:    # the classes of train; another split's class must have files in train
            classes = sorted(set(v for v, s in zip(values, split) if s == "train"))
        else:               # every class folder, wherever the random split put its files
            classes = sorted(set(values))
        index = {c: i for i, c in enumerate(classes)}
        for v, r in zip(values, rows):
            if v not in index:
                path = os.path.join(root, os.path.dirname(r[col + 1]))
                if fixed is not None:
                    raise DataError("%s: class %r is not one of the classes given with --classes %s=..."
                                    % (path, v, name))
                raise DataError("%s: class %r has files in %s/ but none in train/" % (path, v, r[0]))
        labels[name] = (np.array([index[v] for v in values], np.int32), list(classes))
        meta["image_file" if m == "images" else "audio_file"] = [r[col + 1] for r in rows]
    images = [(os.path.join(root, r[2]), "") for r in rows] if "images" in mods else None
    audio = [(os.path.join(root, r[4]), "") for r in rows] if "audio" in mods else None
    return split, labels, images, audio, meta


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Convert images and WAV files, labelled by a CSV or by class "
                                            "folders, into a jtrain data set file (HDF5).",
                                epilog="""
Images: .png .jpg .jpeg (through PIL: apt-get install python3-pil, or scripts/setup --with-pil;
  without it such a file is exit 3), .npy [H,W] or [C,H,W], .pgm P2/P5. PNG/JPEG become uint8
  grey [H,W] or RGB [3,H,W]: --channels, or else as the first PNG/JPEG (grey images join an RGB
  set repeated into 3 channels; a colour image in a grey set is an error unless --channels 1 is
  given); alpha is dropped, EXIF orientation applied, 16-bit grey kept as float32. All images
  must have one size, or give --size HxW to resize PNG/JPEG images to it.

CSV (--csv): UTF-8, a header row, one row per sample. Columns:
  image   an image file in --images DIR, or, with --images FILE.npy|FILE.idx[.gz], a row index
          into that array (if the column is absent, CSV row i is array row i)
  audio   a WAV file (PCM 8/16/24/32-bit, mono or multi-channel, any rate), relative to --audio-dir
  split   train | test | val (name it with --split-column; or use --test-fraction)
  any other column is a label: names, or non-negative integers; an empty cell means no label (-1)

Class folders (--folders ROOT instead of --csv):
  ROOT/images/<class>/<stem>.png|.jpg|.jpeg|.npy|.pgm   -> label array image_class (--image-label)
  ROOT/audio/<class>/<stem>.wav                         -> label array audio_class (--audio-label)
  One of the two, or both. With one, each file is a row. With both, each row is the image and the
  WAV with the same file stem, whatever their classes (images/cat/x1.png + audio/alice/x1.wav:
  image_class cat, audio_class alice); a stem must be unique within images/ and within audio/,
  and a file without its partner is an error. Classes are the folder names, sorted (--classes
  NAME=A,B,... fixes them). Split: folders ROOT/train/ and ROOT/test/ (and optionally
  ROOT/val/), each holding images/ and/or audio/ as above (a class of test/ or val/ must have
  files in train/), or else a random --test-fraction (default 0.2) of the rows. Hidden files
  are skipped; another file type, a file outside a class folder, a deeper folder or an empty
  class folder in train is an error. Rows are sorted by class folder and file name (with both:
  by stem); /<split>/meta/image_file and audio_file record each row's files, relative to ROOT.

Exit codes: 0 ok, 2 usage, 3 bad input data (the message names the file and CSV line),
1 no Python with numpy and h5py.""")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", help="the CSV of samples and labels")
    src.add_argument("--folders", metavar="ROOT", help="a folder of class folders (below) instead of a CSV")
    p.add_argument("--out", required=True, help="the HDF5 file to write")
    p.add_argument("--images", help="with --csv: a folder of image files, or one .npy / .idx[.gz] array [N, ...]")
    p.add_argument("--audio-dir", help="with --csv: folder the audio column is relative to (default: the CSV's folder)")
    p.add_argument("--split-column", help="with --csv: column holding train/test/val (default: 'split' if present)")
    p.add_argument("--test-fraction", type=float, help="random test fraction when there is no split column "
                                                        "or train/ and test/ folders (default 0.2)")
    p.add_argument("--seed", type=int, default=1, help="seed of the random split (default 1)")
    p.add_argument("--clip-seconds", type=float, default=ja.CLIP_SECONDS,
                   help="clips are zero-padded or cut at the end to this length (default 1.0)")
    p.add_argument("--classes", action="append", default=[], metavar="COLUMN=A,B,...",
                   help="fix the class names and order of a label column (repeatable)")
    p.add_argument("--channels", type=int, choices=(1, 3),
                   help="PNG/JPEG images become grey (1) or RGB (3) (default: as the first one)")
    p.add_argument("--size", metavar="HxW", help="resize PNG/JPEG images to H x W pixels (default: no "
                                                 "resizing; all images must have one size)")
    p.add_argument("--image-label", default="image_class",
                   help="with --folders: the label array of the images' class folders (default image_class)")
    p.add_argument("--audio-label", default="audio_class",
                   help="with --folders: the label array of the audio's class folders (default audio_class)")
    p.add_argument("--channels-last", action="store_true", help=".npy images (and arrays) are [H, W, C]")
    p.add_argument("--description", default="converted with jtrain scripts/jtrain-convert")
    a = p.parse_args(argv)
    if a.test_fraction is not None and not 0.0 < a.test_fraction < 1.0:
        p.error("--test-fraction must be between 0 and 1")
    if a.clip_seconds * ja.SAMPLE_RATE < 400 + 160 * (ja.FRAMES - 1):
        p.error("--clip-seconds must give at least %d frames (>= 0.335 s)" % ja.FRAMES)
    if a.size is not None:
        try:
            a.size = parse_size(a.size)
        except ValueError:
            p.error("--size wants HxW in pixels, e.g. 28x28; got %r" % a.size)
    if a.folders is not None:
        for opt, val in (("--images", a.images), ("--audio-dir", a.audio_dir), ("--split-column", a.split_column)):
            if val is not None:
                p.error("%s goes with --csv, not --folders" % opt)
        for opt, name in (("--image-label", a.image_label), ("--audio-label", a.audio_label)):
            if not NAME_RE.match(name) or name in RESERVED:
                p.error("%s %r: a label name is letters, digits and _ (not %s)"
                        % (opt, name, ", ".join(sorted(RESERVED))))
        if a.image_label == a.audio_label:
            p.error("--image-label and --audio-label must differ (both are %r)" % a.image_label)
    fixed = {}
    for c in a.classes:
        col, eq, names = c.partition("=")
        if not eq or not col or not names:
            p.error("--classes wants COLUMN=A,B,...; got %r" % c)
        fixed[col] = [n.strip() for n in names.split(",")]
    a.fixed = fixed
    return a


def random_split(n, a, what):
    frac = 0.2 if a.test_fraction is None else a.test_fraction
    n_test = int(round(frac * n))
    if n_test < 1 or n_test >= n:
        raise DataError("%s: %d rows cannot be split with --test-fraction %g into non-empty train "
                        "and test" % (what, n, frac))
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([a.seed, 7])))
    split = np.full(n, "train", dtype=object)
    split[rng.choice(n, size=n_test, replace=False)] = "test"
    return split


def read_image_files(items, reader):
    """items: (path, where) pairs, where = "" or "CSV:LINE: "; returns the stacked images."""
    check_pil_for(items)
    imgs = []
    for path, where in items:
        try:
            imgs.append(reader.read(path))
        except DataError as e:
            raise DataError("%s%s: %s" % (where, path, e))
    return np.stack(imgs)


def load_images(a, rows, header, reader):
    if a.images is None:
        if "image" in header:
            raise UsageError("the CSV has an image column: pass --images DIR or --images FILE")
        return None
    if os.path.isdir(a.images):
        if "image" not in header:
            raise UsageError("--images is a folder: the CSV needs an image column naming the files")
        return read_image_files([(os.path.join(a.images, r["image"]), "%s:%d: " % (a.csv, line))
                                 for line, r in rows], reader)
    if not os.path.exists(a.images):
        raise DataError("%s: no such file or folder" % a.images)
    if a.size is not None or a.channels is not None:
        raise UsageError("--size and --channels apply to PNG/JPEG files, not to the array %s" % a.images)
    arr = read_array_file(a.images)
    if arr.ndim not in (3, 4):
        raise DataError("%s: array of shape %s: expected [N, H, W] or [N, C, H, W]" % (a.images, arr.shape))
    if "image" in header:
        idx = []
        for line, r in rows:
            v = r["image"]
            if not INT_RE.match(v) or int(v) >= arr.shape[0]:
                raise DataError("%s:%d: image %r is not a row of %s (0..%d)"
                                % (a.csv, line, v, a.images, arr.shape[0] - 1))
            idx.append(int(v))
        arr = arr[np.asarray(idx)]
    elif arr.shape[0] != len(rows):
        raise DataError("%s: %d rows, but %s has %d data rows (add an image column of row indices)"
                        % (a.images, arr.shape[0], a.csv, len(rows)))
    if arr.ndim == 4 and a.channels_last:
        arr = np.transpose(arr, (0, 3, 1, 2))
    return np.ascontiguousarray(arr)


def read_audio_files(items, clip_seconds):
    """items: (path, where) pairs; returns log-mel [N, 32, 40] float32."""
    n = int(round(clip_seconds * ja.SAMPLE_RATE))
    out = np.empty((len(items), ja.FRAMES, ja.N_MELS), np.float32)
    batch, where_i = [], []
    for i, (path, where) in enumerate(items):
        if not os.path.isfile(path):
            raise DataError("%saudio file %s not found" % (where, path))
        try:
            x, rate = ja.read_wav(path)
        except ValueError as e:
            raise DataError("%s%s: %s" % (where, path, e))
        except OSError as e:
            raise DataError("%s%s: cannot read (%s)" % (where, path, e.strerror))
        if not np.all(np.isfinite(x)):
            raise DataError("%s%s: non-finite samples" % (where, path))
        batch.append(ja.fit_clip(ja.resample(x, rate), n))
        where_i.append(i)
        if len(batch) == 256 or i == len(items) - 1:
            out[np.asarray(where_i)] = ja.logmel(np.stack(batch))
            batch, where_i = [], []
    return out


def load_audio(a, rows, header):
    if "audio" not in header:
        return None
    base = a.audio_dir or os.path.dirname(os.path.abspath(a.csv))
    for line, r in rows:
        if not r["audio"]:
            raise DataError("%s:%d: empty audio cell" % (a.csv, line))
    return read_audio_files([(os.path.join(base, r["audio"]), "%s:%d: " % (a.csv, line))
                             for line, r in rows], a.clip_seconds)


def read_csv_input(a, reader):
    """--csv: returns (split, labels, images, audio, meta)."""
    for opt, val in (("--image-label", a.image_label != "image_class"),
                     ("--audio-label", a.audio_label != "audio_class")):
        if val:
            raise UsageError("%s goes with --folders; with --csv a label array is named by its column" % opt)
    header, rows = read_csv(a.csv)
    split_col = a.split_column or ("split" if "split" in header else None)
    if split_col is not None and a.test_fraction is not None:
        raise UsageError("give either a split column or --test-fraction, not both")
    if split_col is not None:
        if split_col not in header:
            raise UsageError("%s has no column %r (for --split-column)" % (a.csv, split_col))
        split = np.array([r[split_col] for _, r in rows], dtype=object)
        for (line, r), s in zip(rows, split):
            if s not in ("train", "test", "val"):
                raise DataError("%s:%d: split %r: expected train, test or val" % (a.csv, line, s))
    else:
        split = random_split(len(rows), a, a.csv)
    for s in ("train", "test"):
        if not np.any(split == s):
            raise DataError("%s: the %s split is empty" % (a.csv, s))

    label_cols = [h for h in header if h not in ("image", "audio", split_col)]
    for c in label_cols:
        if not NAME_RE.match(c) or c in RESERVED:
            raise DataError("%s:1: column %r cannot be a label name (letters, digits and _; not %s)"
                            % (a.csv, c, ", ".join(sorted(RESERVED))))
    for c in a.fixed:
        if c not in label_cols:
            raise UsageError("--classes names %r, which is not a label column of %s" % (c, a.csv))
    labels = {c: label_classes(a.csv, c, rows, split, a.fixed.get(c)) for c in label_cols}
    images = load_images(a, rows, header, reader)
    audio = load_audio(a, rows, header)
    if images is None and audio is None:
        raise UsageError("nothing to convert: the CSV needs an image or an audio column (or pass --images FILE)")
    return split, labels, images, audio, {"csv_line": np.asarray([line for line, _ in rows], np.int32)}


def main(argv):
    a = parse_args(argv)
    reader = ImageReader(a.channels, a.size, a.channels_last)
    if a.folders is not None:
        for c in a.fixed:
            if c not in (a.image_label, a.audio_label):
                raise UsageError("--classes names %r; with --folders the label arrays are %s (images) "
                                 "and %s (audio)" % (c, a.image_label, a.audio_label))
        split, labels, image_files, audio_files, meta = read_folders(a)
        for s in ("train", "test"):
            if not np.any(split == s):
                raise DataError("%s: the %s split is empty" % (a.folders, s))
        images = read_image_files(image_files, reader) if image_files is not None else None
        audio = read_audio_files(audio_files, a.clip_seconds) if audio_files is not None else None
    else:
        split, labels, images, audio, meta = read_csv_input(a, reader)

    tr = split == "train"
    if audio is not None:
        a_mean, a_std = ja.band_stats(audio[tr])
    if images is not None and images.dtype != np.uint8:
        images = images.astype(np.float32)
        i_mean = np.float32(images[tr].mean())
        i_std = np.float32(images[tr].std() or 1.0)

    tmp = a.out + ".tmp%d" % os.getpid()
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["jtrain_format"] = "dataset"
            f.attrs["version"] = np.int32(1)
            f.attrs["description"] = a.description
            gz = {"compression": "gzip", "compression_opts": 4}
            for s in ("train", "test", "val"):
                rows_s = np.flatnonzero(split == s)
                if rows_s.size == 0:
                    continue
                g = f.create_group(s)
                n = rows_s.size
                if images is not None:
                    im = images[rows_s]
                    ds = g.create_dataset("image", data=im, chunks=(min(n, 256),) + im.shape[1:], **gz)
                    if im.dtype == np.uint8:
                        ds.attrs["scale"] = np.float32(1.0 / 255.0)
                        ds.attrs["offset"] = np.float32(0.0)
                    else:
                        ds.attrs["mean"] = i_mean
                        ds.attrs["std"] = i_std
                if audio is not None:
                    ja.write_audio(g, "audio", audio[rows_s], a_mean, a_std, a.clip_seconds)
                for c, (values, classes) in labels.items():
                    ds = g.create_dataset(c, data=values[rows_s], chunks=(min(n, 65536),), **gz)
                    ds.attrs.create("classes", np.array(classes, dtype=object),
                                    dtype=h5py.string_dtype("utf-8"))
                m = g.create_group("meta")
                for k, v in meta.items():
                    if isinstance(v, np.ndarray):
                        m.create_dataset(k, data=v[rows_s])
                    else:
                        m.create_dataset(k, data=np.array([v[i] for i in rows_s], dtype=object),
                                         dtype=h5py.string_dtype("utf-8"))
        os.replace(tmp, a.out)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise DataError("%s: cannot write (%s)" % (a.out, e))
    counts = ", ".join("%s %d" % (s, int(np.sum(split == s))) for s in ("train", "test", "val")
                       if np.any(split == s))
    print("%s: wrote %s (%s rows; %s%s; labels: %s)" % (
        PROG, a.out, counts, "image %s %s" % (images.dtype, images.shape[1:]) if images is not None else "no image",
        ", audio [32, 40]" if audio is not None else ", no audio",
        ", ".join("%s (%d classes)" % (c, len(cl)) for c, (_, cl) in labels.items()) or "none"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except UsageError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        sys.exit(2)
    except DataError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        sys.exit(3)
