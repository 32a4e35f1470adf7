"""jtrain_audio - the log-mel front end shared by datasets/avfm/build and scripts/jtrain-convert.

Every audio array jtrain reads was made here, so a model trained on AVFM sees the same features
as one trained on a user's WAV files. Needs numpy only.

Pipeline (the defaults are the AVFM settings; they are stored as attributes on /<split>/audio):
  waveform (any rate) -> resample to 16 kHz (Kaiser-windowed sinc, below) -> pad/crop to a fixed
  clip length -> frames of 25 ms (400 samples), hop 10 ms (160), periodic Hann window, zero-padded
  to a 512-point FFT -> power spectrum -> 40 triangular mel filters (HTK mel scale, 0..8 kHz, as
  in HTK/Kaldi, unnormalised) -> frames pooled to 32 by averaging the mel energies over 32
  contiguous, nearly equal groups of frames -> natural log (floor 1e-10) -> rounded to 11
  significant bits (float16's precision, float32's range; an error below 0.1 %, far under the
  data's noise) so that gzip compresses the array about 2x -> float32 [32, 40], time-major.

Resampling: band-limited interpolation with a Kaiser-windowed sinc (32 zero crossings each side,
beta 8.6, so about 80 dB stopband and a transition 17 % of the cutoff wide), the method of
Smith's "Digital Audio Resampling" (also resampy's). The cutoff is 0.92 x the lower Nyquist
frequency, which puts the stopband edge at that Nyquist frequency: nothing aliases, and from
22.05 kHz to 16 kHz the response is flat to about 6.7 kHz and -6 dB at 7.36 kHz. For a rational ratio out/in = L/M with L <= 4096 the
filter is tabulated once per output phase, in a matrix that maps each block of M input samples
to L output samples, so resampling a clip is one sgemm; other ratios compute the taps per sample.
"""

import math
import wave

import numpy as np

SAMPLE_RATE = 16000
WIN_MS = 25.0
HOP_MS = 10.0
N_FFT = 512
N_MELS = 40
FRAMES = 32
CLIP_SECONDS = 1.0
LOG_FLOOR = 1e-10
MANTISSA_BITS = 10

_ZEROS = 32         # sinc zero crossings on each side of the resampling filter
_BETA = 8.6         # Kaiser window shape
_ROLLOFF = 0.92     # cutoff as a fraction of the lower Nyquist frequency
_MAX_PHASES = 4096  # tabulate the filter per phase only up to this many phases
_MAX_TABLE = 1 << 22  # and only if the block matrix has at most this many entries

_table_cache = {}
_mel_cache = {}


def params():
    """The front end's settings, as stored in the attributes of an audio array."""
    return {
        "sample_rate": SAMPLE_RATE, "win_ms": WIN_MS, "hop_ms": HOP_MS, "n_fft": N_FFT,
        "n_mels": N_MELS, "frames": FRAMES, "clip_seconds": CLIP_SECONDS,
    }


def _resample_weights(frac, cutoff, half):
    """Filter taps for input offsets -half+1..half relative to floor(position).

    frac: (n,) fractional part of each output sample's position in input samples.
    cutoff: cycles per input sample. Returns (n, 2*half) float64 weights.
    """
    k = np.arange(-half + 1, half + 1, dtype=np.float64)
    t = k[None, :] - frac[:, None]                 # distance of each tap from the position
    h = 2.0 * cutoff * np.sinc(2.0 * cutoff * t)
    reach = _ZEROS / (2.0 * cutoff)                # filter half-length in input samples
    u = np.clip(t / reach, -1.0, 1.0)
    h *= np.i0(_BETA * np.sqrt(1.0 - u * u)) / np.i0(_BETA)
    h[np.abs(t) >= reach] = 0.0
    return h


def resample(x, sr_in, sr_out=SAMPLE_RATE):
    """Resamples a 1-D waveform from sr_in to sr_out Hz (see the module comment).

    Returns float32 of length ceil(len(x) * sr_out / sr_in); x is not modified.
    """
    x = np.asarray(x, dtype=np.float32)
    sr_in, sr_out = int(sr_in), int(sr_out)
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError("sample rates must be positive, got %d -> %d" % (sr_in, sr_out))
    if sr_in == sr_out or x.size == 0:
        return x.copy()
    g = math.gcd(sr_in, sr_out)
    L, M = sr_out // g, sr_in // g                 # out/in = L/M
    cutoff = 0.5 * min(1.0, L / M) * _ROLLOFF
    half = int(math.ceil(_ZEROS / (2.0 * cutoff))) + 1
    n_out = -(-x.size * L // M)
    taps = 2 * half
    if L <= _MAX_PHASES and L * (M + taps) <= _MAX_TABLE:
        # Output n = b*L + p reads inputs b*M + floor(p*M/L) + (-half+1 .. half): one matrix
        # W (M + taps, L) maps each block of input (stride M) to L outputs, so the whole clip is
        # one product (n_blocks, M + taps) @ W.
        key = (sr_in, sr_out)
        w = _table_cache.get(key)
        if w is None:
            p = np.arange(L)
            table = _resample_weights(p * M % L / L, cutoff, half)
            w = np.zeros((M + taps, L), np.float32)
            rows = (p * M // L)[:, None] + 1 + np.arange(taps)[None, :]
            w[rows, p[:, None]] = table
            _table_cache[key] = w
        n_blocks = -(-n_out // L)
        padded = np.zeros((n_blocks - 1) * M + M + taps, np.float32)
        padded[half:half + x.size] = x
        blocks = np.ascontiguousarray(   # a copy: BLAS needs contiguous rows
            np.lib.stride_tricks.sliding_window_view(padded, M + taps)[::M][:n_blocks])
        return (blocks @ w).reshape(-1)[:n_out].astype(np.float32)
    n = np.arange(n_out, dtype=np.int64)
    base = (n * M) // L                            # floor of the input position
    w = _resample_weights((n * M % L) / L, cutoff, half).astype(np.float32)
    padded = np.concatenate([np.zeros(half, np.float32), x, np.zeros(half + 1, np.float32)])
    idx = base[:, None] + np.arange(1, taps + 1)[None, :]   # = base + k + half
    return np.einsum("ij,ij->i", padded[idx], w).astype(np.float32)


def fit_clip(x, n=int(round(CLIP_SECONDS * SAMPLE_RATE))):
    """Zero-pads at the end, or crops the end, to exactly n samples."""
    out = np.zeros(n, np.float32)
    m = min(n, x.size)
    out[:m] = x[:m]
    return out


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0, fmax=None):
    """(n_fft//2+1, n_mels) float32 triangular filters on the HTK mel scale, peak 1."""
    fmax = sr / 2.0 if fmax is None else fmax
    key = (sr, n_fft, n_mels, fmin, fmax)
    fb = _mel_cache.get(key)
    if fb is None:
        edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
        freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
        lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
        rise = (freqs[None, :] - lo) / (mid - lo)
        fall = (hi - freqs[None, :]) / (hi - mid)
        fb = np.maximum(0.0, np.minimum(rise, fall)).T.astype(np.float32)
        _mel_cache[key] = fb
    return fb


def logmel(clips):
    """Log-mel features of 16 kHz clips.

    clips: (B, S) float32, S >= one window. Returns (B, FRAMES, N_MELS) float32, time-major.
    """
    clips = np.asarray(clips, dtype=np.float32)
    if clips.ndim == 1:
        clips = clips[None, :]
    win = int(round(WIN_MS * SAMPLE_RATE / 1000.0))
    hop = int(round(HOP_MS * SAMPLE_RATE / 1000.0))
    n_frames = 1 + (clips.shape[1] - win) // hop
    if n_frames < FRAMES:
        raise ValueError("clip of %d samples gives %d frames, fewer than %d"
                         % (clips.shape[1], n_frames, FRAMES))
    starts = np.arange(n_frames) * hop
    frames = clips[:, starts[:, None] + np.arange(win)[None, :]]          # (B, T, win)
    hann = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)).astype(np.float32)
    spec = np.fft.rfft(frames * hann, n=N_FFT, axis=-1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)          # (B, T, n_fft/2+1)
    mel = power @ mel_filterbank()                                        # (B, T, n_mels)
    bounds = np.linspace(0, n_frames, FRAMES + 1).round().astype(np.int64)
    pooled = np.add.reduceat(mel, bounds[:-1], axis=1) / np.diff(bounds)[None, :, None]
    return round_mantissa(np.log(np.maximum(pooled, LOG_FLOOR)).astype(np.float32))


def round_mantissa(x, bits=MANTISSA_BITS):
    """float32 x rounded (to nearest, ties to even) to `bits` explicit mantissa bits.

    The low 23 - bits bits become zero, which gzip with HDF5's shuffle filter compresses well.
    Finite inputs stay finite (the exponent can only grow by one step, far below float32's max).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    drop = 23 - bits
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + ((1 << (drop - 1)) - 1) + ((u >> drop) & 1)) >> drop << drop
    return u.astype(np.uint32).view(np.float32).reshape(x.shape)


def band_stats(audio):
    """Per-band mean and std (float32, length n_mels) over all rows and frames of audio [N,T,F].

    Accumulates in float64 over blocks of rows. A band with std 0 gets std 1, so that
    (x - mean) / std stays finite.
    """
    f = audio.shape[-1]
    s = np.zeros(f, np.float64)
    s2 = np.zeros(f, np.float64)
    count = 0
    for a in range(0, audio.shape[0], 4096):
        block = np.asarray(audio[a:a + 4096], dtype=np.float64).reshape(-1, f)
        s += block.sum(axis=0)
        s2 += (block * block).sum(axis=0)
        count += block.shape[0]
    if count == 0:
        raise ValueError("no rows to compute the audio mean/std from")
    mean = s / count
    std = np.sqrt(np.maximum(s2 / count - mean * mean, 0.0))
    std[std == 0.0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def read_wav(path):
    """Reads a PCM WAV file with Python's wave module: 8/16/24/32-bit integer, mono or
    multi-channel (channels are averaged). Returns (float32 in [-1, 1), sample rate).
    Raises ValueError with the reason (the caller adds the file name).
    """
    try:
        with wave.open(str(path), "rb") as w:
            ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError) as e:
        raise ValueError("not a PCM WAV file (%s)" % e)
    if ch < 1 or rate <= 0:
        raise ValueError("bad header: %d channels, %d Hz" % (ch, rate))
    n = len(raw) // (width * ch)
    raw = raw[: n * width * ch]
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = (np.frombuffer(raw, "<i4").astype(np.float64) / 2.0 ** 31).astype(np.float32)
    else:
        raise ValueError("unsupported sample width of %d bytes" % width)
    if n == 0:
        raise ValueError("no audio frames")
    return x.reshape(n, ch).mean(axis=1).astype(np.float32), rate


def write_audio(group, name, audio, mean, std, clip_seconds=CLIP_SECONDS, compression=4):
    """Writes audio [N, T, F] float32 to an h5py group with the front-end attributes and the
    given per-band mean/std (the train split's, on every split)."""
    rows = max(1, min(audio.shape[0], 128))   # 655 KB chunks: under HDF5's 1 MiB chunk cache
    ds = group.create_dataset(name, data=audio, dtype=np.float32, chunks=(rows,) + audio.shape[1:],
                              compression="gzip", compression_opts=compression, shuffle=True)
    ds.attrs["mean"] = np.asarray(mean, np.float32)
    ds.attrs["std"] = np.asarray(std, np.float32)
    p = params()
    p["clip_seconds"] = float(clip_seconds)
    for k, v in p.items():
        ds.attrs[k] = np.float32(v) if isinstance(v, float) else np.int32(v)
    return ds
