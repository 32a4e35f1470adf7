"""jtrain_convert - turns a user's images, WAV files and a CSV of labels into a jtrain data set
file (docs/data-format.md); run it through scripts/jtrain-convert. `--help` has the usage,
datasets/README.md the input format.

Audio goes through the same log-mel front end as AVFM (scripts/jtrain_audio.py). Every error
names the file (and the CSV line) and exits with 3 (data) or 2 (usage); nothing is written
unless the whole input is consistent (the output is written to a temporary file and renamed).
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


def read_png(path):
    try:
        from PIL import Image
    except ImportError:
        raise DataError("PNG images need python3-pil (Pillow), which is not installed; "
                        "use .npy or .pgm images, or an .npy/.idx array")
    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except Exception as e:  # Pillow raises many kinds
        raise DataError("cannot decode PNG (%s)" % e)


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


def read_image_file(path):
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return np.load(path, allow_pickle=False)
    if ext in (".pgm", ".pnm"):
        return read_pgm(path)
    if ext == ".png":
        return read_png(path)
    raise DataError("unsupported image type %r (use .npy, .pgm, or .png with python3-pil)" % ext)


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


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Convert images, WAV files and a CSV of labels into a jtrain "
                                            "data set file (HDF5).",
                                epilog="""
CSV: UTF-8, a header row, one row per sample. Columns:
  image   an image file in --images DIR (.npy [H,W] or [C,H,W], .pgm P2/P5, .png with python3-pil),
          or, with --images FILE.npy|FILE.idx[.gz], a row index into that array (if the column is
          absent, CSV row i is array row i)
  audio   a WAV file (PCM 8/16/24/32-bit, mono or multi-channel, any rate), relative to --audio-dir
  split   train | test | val (name it with --split-column; or use --test-fraction)
  any other column is a label: names, or non-negative integers; an empty cell means no label (-1)
Exit codes: 0 ok, 2 usage, 3 bad input data (the message names the file and line).""")
    p.add_argument("--csv", required=True, help="the CSV of samples and labels")
    p.add_argument("--out", required=True, help="the HDF5 file to write")
    p.add_argument("--images", help="a folder of image files, or one .npy / .idx[.gz] array [N, ...]")
    p.add_argument("--audio-dir", help="folder the audio column is relative to (default: the CSV's folder)")
    p.add_argument("--split-column", help="column holding train/test/val (default: 'split' if present)")
    p.add_argument("--test-fraction", type=float, help="random test fraction when there is no split column "
                                                        "(default 0.2)")
    p.add_argument("--seed", type=int, default=1, help="seed of the random split (default 1)")
    p.add_argument("--clip-seconds", type=float, default=ja.CLIP_SECONDS,
                   help="clips are zero-padded or cut at the end to this length (default 1.0)")
    p.add_argument("--classes", action="append", default=[], metavar="COLUMN=A,B,...",
                   help="fix the class names and order of a label column (repeatable)")
    p.add_argument("--channels-last", action="store_true", help="3-D images are [H, W, C]")
    p.add_argument("--description", default="converted with jtrain scripts/jtrain-convert")
    a = p.parse_args(argv)
    if a.test_fraction is not None and not 0.0 < a.test_fraction < 1.0:
        p.error("--test-fraction must be between 0 and 1")
    if a.clip_seconds * ja.SAMPLE_RATE < 400 + 160 * (ja.FRAMES - 1):
        p.error("--clip-seconds must give at least %d frames (>= 0.335 s)" % ja.FRAMES)
    fixed = {}
    for c in a.classes:
        col, eq, names = c.partition("=")
        if not eq or not col or not names:
            p.error("--classes wants COLUMN=A,B,...; got %r" % c)
        fixed[col] = [n.strip() for n in names.split(",")]
    a.fixed = fixed
    return a


def load_images(a, rows, header):
    if a.images is None:
        if "image" in header:
            raise UsageError("the CSV has an image column: pass --images DIR or --images FILE")
        return None
    if os.path.isdir(a.images):
        if "image" not in header:
            raise UsageError("--images is a folder: the CSV needs an image column naming the files")
        imgs = []
        for line, r in rows:
            path = os.path.join(a.images, r["image"])
            try:
                img = image_layout(read_image_file(path), a.channels_last)
            except DataError as e:
                raise DataError("%s:%d: %s: %s" % (a.csv, line, path, e))
            except (OSError, ValueError) as e:
                raise DataError("%s:%d: %s: cannot read (%s)" % (a.csv, line, path,
                                                                getattr(e, "strerror", None) or e))
            if imgs and (img.shape != imgs[0].shape or img.dtype != imgs[0].dtype):
                raise DataError("%s:%d: %s: image %s %s, but the first image is %s %s"
                                % (a.csv, line, path, img.dtype, img.shape, imgs[0].dtype, imgs[0].shape))
            imgs.append(img)
        return np.stack(imgs)
    if not os.path.exists(a.images):
        raise DataError("%s: no such file or folder" % a.images)
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


def load_audio(a, rows, header):
    if "audio" not in header:
        return None
    base = a.audio_dir or os.path.dirname(os.path.abspath(a.csv))
    n = int(round(a.clip_seconds * ja.SAMPLE_RATE))
    out = np.empty((len(rows), ja.FRAMES, ja.N_MELS), np.float32)
    batch, where = [], []
    for i, (line, r) in enumerate(rows):
        path = os.path.join(base, r["audio"])
        if not r["audio"]:
            raise DataError("%s:%d: empty audio cell" % (a.csv, line))
        if not os.path.isfile(path):
            raise DataError("%s:%d: audio file %s not found" % (a.csv, line, path))
        try:
            x, rate = ja.read_wav(path)
        except ValueError as e:
            raise DataError("%s:%d: %s: %s" % (a.csv, line, path, e))
        except OSError as e:
            raise DataError("%s:%d: %s: cannot read (%s)" % (a.csv, line, path, e.strerror))
        if not np.all(np.isfinite(x)):
            raise DataError("%s:%d: %s: non-finite samples" % (a.csv, line, path))
        batch.append(ja.fit_clip(ja.resample(x, rate), n))
        where.append(i)
        if len(batch) == 256 or i == len(rows) - 1:
            out[np.asarray(where)] = ja.logmel(np.stack(batch))
            batch, where = [], []
    return out


def main(argv):
    a = parse_args(argv)
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
        frac = 0.2 if a.test_fraction is None else a.test_fraction
        n_test = int(round(frac * len(rows)))
        if n_test < 1 or n_test >= len(rows):
            raise DataError("%s: %d rows cannot be split with --test-fraction %g into non-empty train "
                            "and test" % (a.csv, len(rows), frac))
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([a.seed, 7])))
        split = np.full(len(rows), "train", dtype=object)
        split[rng.choice(len(rows), size=n_test, replace=False)] = "test"
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
    images = load_images(a, rows, header)
    audio = load_audio(a, rows, header)
    if images is None and audio is None:
        raise UsageError("nothing to convert: the CSV needs an image or an audio column (or pass --images FILE)")

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
                for c in label_cols:
                    ds = g.create_dataset(c, data=labels[c][0][rows_s], chunks=(min(n, 65536),), **gz)
                    ds.attrs.create("classes", np.array(labels[c][1], dtype=object),
                                    dtype=h5py.string_dtype("utf-8"))
                m = g.create_group("meta")
                m.create_dataset("csv_line", data=np.asarray([rows[i][0] for i in rows_s], np.int32))
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
        ", ".join("%s (%d classes)" % (c, len(labels[c][1])) for c in label_cols) or "none"))
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
