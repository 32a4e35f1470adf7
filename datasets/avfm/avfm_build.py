"""avfm_build - builds AVFM, "audio-visual Fashion-MNIST" (run it through datasets/avfm/build).

Each sample pairs one Fashion-MNIST image (official split) with a 1 s clip of the image's class
name spoken by one of 16 synthetic espeak-ng speakers, stored as a log-mel spectrogram made by
scripts/jtrain_audio.py. See datasets/avfm/README.md for the layout and how it was made.

Reproducibility: every random draw comes from numpy PCG64 streams seeded with (seed, split,
purpose[, block]). The per-sample nuisance parameters are drawn up front in the main process.
Audio is made in fixed blocks of BLOCK_ROWS rows; each block is synthesised sequentially by a
fresh process with its own espeak-ng instance (espeak-ng keeps state between utterances), so
the arrays depend on the seed and the sizes only, not on --jobs.

Exit codes: 0 ok, 2 usage, 3 data (Fashion-MNIST missing or unreadable, output not writable),
1 environment (espeak-ng library missing or failing).
"""

import os

# One BLAS thread per process: the build runs its own worker processes, and results must not
# depend on how a BLAS splits its work. Set before numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import ctypes
import ctypes.util
import gzip
import multiprocessing as mp
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import jtrain_audio as ja  # noqa: E402
import h5py  # noqa: E402

PROG = "avfm-build"
BLOCK_ROWS = 2000
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
WORDS = ["t-shirt", "trouser", "pullover", "dress", "coat",
         "sandal", "shirt", "sneaker", "bag", "ankle boot"]
# Coarse item groups for a second image task (architecture 1).
GROUPS = ["tops", "trousers and dresses", "footwear", "bags"]
GROUP_OF_CLASS = [0, 1, 0, 1, 0, 2, 0, 2, 3, 2]
# The 8 English accents espeak-ng ships, each with one male and one female voice variant.
SPEAKERS = [
    "en-us+m1", "en-us+f1",
    "en+m2", "en+f2",
    "en-gb-scotland+m3", "en-gb-scotland+f3",
    "en-gb-x-rp+m4", "en-gb-x-rp+f4",
    "en-gb-x-gbclan+m5", "en-gb-x-gbclan+f5",
    "en-gb-x-gbcwmd+m6", "en-gb-x-gbcwmd+Annie",
    "en-029+m7", "en-029+steph",
    "en-us-nyc+m8", "en-us-nyc+belinda",
]
END = "<end>"
SIZES = {"small": (5000, 1000), "full": (60000, 10000)}
SPLIT_ID = {"train": 0, "test": 1}
SPLIT_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}

# Nuisance ranges (per clip).
BASE_RATE = 175.0          # espeak-ng default words per minute
RATE_RANGE = (0.85, 1.15)  # rate multiplier
PITCH_RANGE = (35, 65)     # espeak-ng pitch 0..100, default 50 (50 +- 15)
TILT_RANGE = (-0.6, 0.6)   # a in y[n] = x[n] - a x[n-1]: a > 0 tilts towards highs
SNR_RANGE = (-10.0, 5.0)   # white noise, dB relative to the speech's mean power
GAIN_RANGE = (-6.0, 6.0)   # dB
SPEECH_RMS = 0.05          # speech level before the gain
TRIM_REL = 0.01            # silence trim threshold, relative to the peak
TRIM_MARGIN_S = 0.01


class BuildError(Exception):
    def __init__(self, code, msg):
        Exception.__init__(self, code, msg)   # both in args, so it survives pickling from a worker
        self.code, self.msg = code, msg

    def __str__(self):
        return self.msg


def rng_for(seed, *purpose):
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed] + list(purpose))))


def read_idx_gz(path, ndim):
    """Reads a gzip'd idx file (uint8 data) with ndim dimensions."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise BuildError(3, "%s: cannot read (%s)" % (path, e))
    if len(raw) < 4 + 4 * ndim or raw[0] != 0 or raw[1] != 0 or raw[2] != 8 or raw[3] != ndim:
        raise BuildError(3, "%s: not a uint8 idx file with %d dimensions" % (path, ndim))
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise BuildError(3, "%s: %d data bytes, header says %s" % (path, len(body), dims))
    return np.frombuffer(body, np.uint8).reshape(dims)


def load_split(fm_dir, split):
    img_f, lab_f = (os.path.join(fm_dir, f) for f in SPLIT_FILES[split])
    images = read_idx_gz(img_f, 3)
    labels = read_idx_gz(lab_f, 1)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise BuildError(3, "%s: images %s do not match labels %s" % (fm_dir, images.shape, labels.shape))
    if labels.max() >= len(CLASSES):
        raise BuildError(3, "%s: label %d out of range" % (lab_f, labels.max()))
    return images, labels


def stratified(labels, n, rng):
    """Sorted indices of n rows, n // 10 per class (the remainder to the first classes)."""
    if n >= labels.shape[0]:
        return np.arange(labels.shape[0])
    picks = []
    for c in range(len(CLASSES)):
        want = n // len(CLASSES) + (1 if c < n % len(CLASSES) else 0)
        rows = np.flatnonzero(labels == c)
        if want > rows.size:
            raise BuildError(2, "asked for %d rows of class %d, only %d exist" % (want, c, rows.size))
        picks.append(rng.choice(rows, size=want, replace=False))
    return np.sort(np.concatenate(picks))


def balanced_speakers(labels, rng):
    """Speakers cycled within each class in random order: balanced per class and overall."""
    speaker = np.empty(labels.shape[0], np.int32)
    for c in range(len(CLASSES)):
        rows = np.flatnonzero(labels == c)
        start = int(rng.integers(len(SPEAKERS)))
        speaker[rng.permutation(rows)] = (start + np.arange(rows.size)) % len(SPEAKERS)
    return speaker


def caption_vocab():
    chars = sorted(set("".join(c.lower() for c in CLASSES)))
    return [END] + chars


def captions(labels, vocab):
    index = {ch: i for i, ch in enumerate(vocab)}
    length = max(len(c) for c in CLASSES) + 1
    table = np.full((len(CLASSES), length), -1, np.int32)
    for c, name in enumerate(CLASSES):
        seq = [index[ch] for ch in name.lower()] + [0]
        table[c, :len(seq)] = seq
    return table[labels]


class Espeak:
    """espeak-ng in-process via ctypes, synchronous mode, one utterance at a time."""

    def __init__(self):
        path = os.environ.get("JT_ESPEAK_LIB") or ctypes.util.find_library("espeak-ng") \
            or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as e:
            raise BuildError(1, "cannot load the espeak-ng library %s (%s); on Debian: "
                                "apt-get install libespeak-ng1 espeak-ng-data" % (path, e))
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        # AUDIO_OUTPUT_SYNCHRONOUS = 2; espeakINITIALIZE_DONT_EXIT = 0x8000
        self.rate = self.lib.espeak_Initialize(2, 0, None, 0x8000)
        if self.rate <= 0:
            raise BuildError(1, "espeak_Initialize failed (%d)" % self.rate)
        self.chunks = []
        cbtype = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

        def on_audio(wav, n, events):
            if n > 0 and wav:
                self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self.callback = cbtype(on_audio)      # keep a reference: espeak-ng holds the pointer
        self.lib.espeak_SetSynthCallback(self.callback)

    def say(self, text, voice, rate, pitch):
        """int16 samples at self.rate Hz of text spoken by voice (name) at rate wpm and pitch."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise BuildError(1, "espeak-ng has no voice %r" % voice)
        self.lib.espeak_SetParameter(1, int(rate), 0)     # espeakRATE
        self.lib.espeak_SetParameter(3, int(pitch), 0)    # espeakPITCH
        self.chunks = []
        b = text.encode()
        err = self.lib.espeak_Synth(b, len(b) + 1, 0, 1, 0, 0, None, None)  # POS_CHARACTER, CHARS_AUTO
        if err != 0 or not self.chunks:
            raise BuildError(1, "espeak-ng failed to say %r with %s (error %d)" % (text, voice, err))
        return np.concatenate(self.chunks)


def make_block(job):
    """Audio features of one block of rows; runs in a fresh process (one espeak-ng per block).

    job: (seed, split_id, block, words, speakers, rate, pitch, tilt, snr_db, gain_db, offset_u).
    Returns (audio float32 [n, 32, 40], offset_s float32 [n], truncated count).
    """
    seed, split_id, block, words, speakers, rate, pitch, tilt, snr_db, gain_db, offset_u = job
    tts = Espeak()
    rng = rng_for(seed, split_id, 2, block)
    clip_len = int(round(ja.CLIP_SECONDS * ja.SAMPLE_RATE))
    clips = np.empty((len(words), clip_len), np.float32)
    offset_s = np.empty(len(words), np.float32)
    truncated = 0
    for i in range(len(words)):
        x = tts.say(WORDS[words[i]], SPEAKERS[speakers[i]], rate[i], pitch[i]).astype(np.float32) / 32768.0
        loud = np.flatnonzero(np.abs(x) > TRIM_REL * np.abs(x).max())
        margin = int(TRIM_MARGIN_S * tts.rate)
        x = x[max(0, loud[0] - margin): loud[-1] + margin + 1]
        x = ja.resample(x, tts.rate, ja.SAMPLE_RATE)
        x[1:] -= tilt[i] * x[:-1].copy()
        x *= SPEECH_RMS / max(float(np.sqrt(np.mean(x * x))), 1e-12)
        if x.size > clip_len:
            truncated += 1
            x = x[:clip_len]
        start = int(offset_u[i] * (clip_len - x.size))
        offset_s[i] = start / ja.SAMPLE_RATE
        noise_rms = SPEECH_RMS * 10.0 ** (-snr_db[i] / 20.0)
        clip = rng.standard_normal(clip_len).astype(np.float32) * np.float32(noise_rms)
        clip[start:start + x.size] += x
        clips[i] = clip * np.float32(10.0 ** (gain_db[i] / 20.0))
    audio = np.concatenate([ja.logmel(clips[a:a + 256]) for a in range(0, len(words), 256)])
    return audio, offset_s, truncated


def probe_voices(_):
    tts = Espeak()
    for v in SPEAKERS:
        tts.say("test", v, BASE_RATE, 50)
    return tts.rate


def check_espeak():
    """Fails early if espeak-ng or a voice is missing; in a child process, so that this process
    never initialises espeak-ng (the block workers are forked from it and start fresh)."""
    with mp.get_context("fork").Pool(processes=1) as pool:
        pool.map(probe_voices, [0])


def build_split(split, images, labels, n, seed, jobs, block_rows):
    sid = SPLIT_ID[split]
    rows = stratified(labels, n, rng_for(seed, sid, 0))
    lab = labels[rows].astype(np.int32)
    rng = rng_for(seed, sid, 1)
    meta = {
        "source_index": rows.astype(np.int32),
        "speaker": balanced_speakers(lab, rng),
        "rate": (BASE_RATE * rng.uniform(*RATE_RANGE, size=lab.size)).round().astype(np.float32),
        "pitch": rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1, size=lab.size).astype(np.float32),
        "tilt": rng.uniform(*TILT_RANGE, size=lab.size).astype(np.float32),
        "snr_db": rng.uniform(*SNR_RANGE, size=lab.size).astype(np.float32),
        "gain_db": rng.uniform(*GAIN_RANGE, size=lab.size).astype(np.float32),
        "offset_u": rng.uniform(0.0, 1.0, size=lab.size),
    }
    blocks = []
    for b, a in enumerate(range(0, lab.size, block_rows)):
        s = slice(a, a + block_rows)
        blocks.append((seed, sid, b, lab[s], meta["speaker"][s], meta["rate"][s], meta["pitch"][s],
                       meta["tilt"][s], meta["snr_db"][s], meta["gain_db"][s], meta["offset_u"][s]))
    ctx = mp.get_context("fork")
    with ctx.Pool(processes=max(1, min(jobs, len(blocks))), maxtasksperchild=1) as pool:
        results = pool.map(make_block, blocks, chunksize=1)
    audio = np.concatenate([r[0] for r in results])
    meta["offset_s"] = np.concatenate([r[1] for r in results])
    truncated = sum(r[2] for r in results)
    del meta["offset_u"]
    return images[rows], lab, audio, meta, truncated


def write_strings(obj, name, values):
    obj.attrs.create(name, np.array(values, dtype=object), dtype=h5py.string_dtype("utf-8"))


def write_split(f, split, image, label, audio, meta, mean, std):
    g = f.create_group(split)
    n = label.size
    rows = max(1, min(n, 1024))
    gz = {"compression": "gzip", "compression_opts": 4}
    ds = g.create_dataset("image", data=image, chunks=(rows, 28, 28), **gz)
    ds.attrs["scale"] = np.float32(1.0 / 255.0)
    ds.attrs["offset"] = np.float32(0.0)
    ja.write_audio(g, "audio", audio, mean, std)
    vocab = caption_vocab()
    labels = [("label", label, CLASSES), ("word", label, WORDS),
              ("speaker", meta.pop("speaker"), SPEAKERS),
              ("group", np.asarray(GROUP_OF_CLASS, np.int32)[label], GROUPS)]
    for name, values, classes in labels:
        ds = g.create_dataset(name, data=values.astype(np.int32), chunks=(max(1, min(n, 65536)),), **gz)
        write_strings(ds, "classes", classes)
    cap = captions(label, vocab)
    ds = g.create_dataset("caption", data=cap, chunks=(max(1, min(n, 8192)), cap.shape[1]), **gz)
    write_strings(ds, "vocab", vocab)
    m = g.create_group("meta")
    for name in sorted(meta):
        m.create_dataset(name, data=meta[name], chunks=(max(1, min(n, 65536)),), **gz)
    m["rate"].attrs["units"] = "words per minute (espeak-ng)"
    m["pitch"].attrs["units"] = "espeak-ng pitch, 0..100 (default 50)"
    m["tilt"].attrs["units"] = "a in y[n] = x[n] - a*x[n-1] at 16 kHz"
    m["snr_db"].attrs["units"] = "dB, speech power over white noise power"
    m["gain_db"].attrs["units"] = "dB"
    m["offset_s"].attrs["units"] = "s, start of the (trimmed) word in the 1 s clip"
    m["source_index"].attrs["units"] = "row in the official Fashion-MNIST split"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="datasets/avfm/build", description=(
        "Build AVFM (audio-visual Fashion-MNIST) as a jtrain data set file."))
    p.add_argument("--size", choices=sorted(SIZES), default="small",
                   help="small: stratified 5000 train + 1000 test; full: 60000 + 10000")
    p.add_argument("--train", type=int, help="train rows (overrides --size; stratified)")
    p.add_argument("--test", type=int, help="test rows (overrides --size; stratified)")
    p.add_argument("--out", required=True, help="output HDF5 file (written atomically)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="worker processes (default 2; does not change the output)")
    p.add_argument("--block-rows", type=int, default=BLOCK_ROWS,
                   help="rows per synthesis block (default %d; part of what defines the output)" % BLOCK_ROWS)
    p.add_argument("--fmnist", default=os.environ.get("JT_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"),
                   help="folder with the four Fashion-MNIST *-ubyte.gz files")
    a = p.parse_args(argv)
    n_train, n_test = SIZES[a.size]
    a.n_train = n_train if a.train is None else a.train
    a.n_test = n_test if a.test is None else a.test
    if not (1 <= a.n_train <= 60000) or not (1 <= a.n_test <= 10000):
        p.error("--train must be in 1..60000 and --test in 1..10000")
    if a.jobs < 1:
        p.error("--jobs must be >= 1")
    if a.block_rows < 1:
        p.error("--block-rows must be >= 1")
    if a.seed < 0:
        p.error("--seed must be >= 0")
    return a


def main(argv):
    a = parse_args(argv)
    t0 = time.time()
    check_espeak()
    out = {}
    for split, n in (("train", a.n_train), ("test", a.n_test)):
        images, labels = load_split(a.fmnist, split)
        out[split] = build_split(split, images, labels, n, a.seed, a.jobs, a.block_rows)
        print("%s: %s rows, %d words truncated to 1 s, %.1f s" % (split, n, out[split][4], time.time() - t0),
              file=sys.stderr)
    mean, std = ja.band_stats(out["train"][2])
    tmp = a.out + ".tmp%d" % os.getpid()
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["jtrain_format"] = "dataset"
            f.attrs["version"] = np.int32(1)
            f.attrs["description"] = (
                "AVFM (audio-visual Fashion-MNIST): Fashion-MNIST images (official split, %d train + "
                "%d test rows) paired with their class name spoken by one of 16 synthetic espeak-ng "
                "speakers, as log-mel spectrograms [32 frames, 40 mel bands]; seed %d. "
                "Built by jtrain datasets/avfm/build." % (a.n_train, a.n_test, a.seed))
            f.attrs["seed"] = np.int64(a.seed)
            for split in ("train", "test"):
                image, label, audio, meta, _ = out[split]
                write_split(f, split, image, label, audio, meta, mean, std)
        os.replace(tmp, a.out)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise BuildError(3, "%s: cannot write (%s)" % (a.out, e))
    print("wrote %s (%.1f MiB) in %.1f s" % (a.out, os.path.getsize(a.out) / 2 ** 20, time.time() - t0),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BuildError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        sys.exit(e.code)
    except KeyboardInterrupt:
        sys.exit(130)
