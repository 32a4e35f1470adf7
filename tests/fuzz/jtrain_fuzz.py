#!/usr/bin/env python3
"""jtrain_fuzz.py - a mutation fuzzer for jtrain's untrusted inputs: data sets and configs.

Every mutant of a valid seed file (byte flips, interesting bytes, truncation, deleted or repeated
spans; for configs also line edits, extreme numbers and deep nesting) is given to a jtrain
command under a hard timeout. jtrain must answer every input within the timeout with exit 0, 2,
3 or 4 and, when it fails, a `jtrain: ` line on stderr. Anything else is a finding:
  crash  died by a signal (or exit >= 128: a shell-reported signal), or exit 1 (internal error)
  hang   did not end within the timeout
  dump   a raw library error dump (HDF5-DIAG, libyaml) or no `jtrain: ` line on failure
Findings are kept in OUT/<kind>-<target>-<sha1>.<ext> with a .txt beside each (the command,
the exit code, stderr). Standard library only: any python3 runs it.

  python3 tests/fuzz/jtrain_fuzz.py --jtrain build/jtrain --target data --minutes 10 --out F
  python3 tests/fuzz/jtrain_fuzz.py --jtrain build/jtrain --target config --count 300 --seed 1
  python3 tests/fuzz/jtrain_fuzz.py --jtrain build/jtrain --replay tests/fuzz/regressions
Exit status: 0 when nothing was found (or every replayed input is handled), 1 otherwise.
"""
import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
GOOD_EXITS = {0, 2, 3, 4}
DUMP_MARKERS = (b"HDF5-DIAG", b"#000:", b"libyaml", b"Segmentation fault")

# The config every data mutant is trained with, and the seed config of config mutants. Tiny:
# two steps of a two-head model on the seed data set.
BASE_CONFIG = """\
data:
  file: {data}
model:
  blocks:
    image_net:
      input: image
      layers:
        - conv2d: {{filters: 2, kernel: 3, stride: 2}}
        - relu
        - flatten
        - dense: {{units: 8}}
    audio_net:
      input: audio
      layers:
        - flatten
        - dense: {{units: 8}}
        - tanh
  heads:
    item:    {{input: image_net, target: label,   weight: 0.5}}
    speaker: {{input: audio_net, target: speaker, weight: 0.5}}
train:
  steps: 2
  batch_size: 8
  seed: 7
  optimizer: {{name: adam, lr: 2.0e-3}}
checkpoint:
  dir: {ckpt}
  every_steps: 0
  keep: 1
log:
  every_steps: 1
"""

INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x10, 0x20, 0x40]
NUMBERS = ["0", "-1", "1e300", "-1e300", "1e-300", "nan", ".inf", "-.inf", "2147483648",
           "9223372036854775807", "18446744073709551616", "1e8", "1000000", "0x10", "1_000",
           "''", "[]", "{}", "~", "3.5", "-0"]


def mutate_bytes(rng, data, hot=4096):
    """One to four byte-level edits; half of them in the first `hot` bytes (HDF5 keeps its
    superblock and most metadata near the start of a small file)."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            break
        lim = min(len(b), hot) if rng.random() < 0.5 else len(b)
        op = rng.random()
        i = rng.randrange(lim)
        if op < 0.35:
            b[i] ^= 1 << rng.randrange(8)
        elif op < 0.6:
            b[i] = rng.choice(INTERESTING)
        elif op < 0.7:
            n = rng.randint(2, 8)
            b[i:i + n] = bytes([rng.choice(INTERESTING)]) * n
        elif op < 0.8:
            del b[rng.randrange(1, len(b)):]  # truncate
        elif op < 0.9:
            n = rng.randint(1, 64)
            del b[i:i + n]
        else:
            n = rng.randint(1, 64)
            b[i:i] = b[i:i + n]
    return bytes(b)


def mutate_text(rng, text):
    """Line and token edits of a YAML config, or byte edits."""
    lines = text.split("\n")
    op = rng.random()
    if op < 0.25:
        return mutate_bytes(rng, text.encode(), hot=len(text)).decode("utf-8", "surrogateescape")
    if op < 0.45:  # a number or scalar replaced
        idx = [i for i, l in enumerate(lines) if ":" in l]
        i = rng.choice(idx)
        key = lines[i].split(":", 1)[0]
        lines[i] = key + ": " + rng.choice(NUMBERS)
    elif op < 0.6:  # a line deleted or repeated
        i = rng.randrange(len(lines))
        if rng.random() < 0.5:
            del lines[i]
        else:
            lines.insert(i, lines[i])
    elif op < 0.7:  # indentation changed
        i = rng.randrange(len(lines))
        lines[i] = " " * rng.choice([0, 1, 3, 6, 8]) + lines[i].lstrip()
    elif op < 0.8:  # deep nesting or a long flow sequence
        i = rng.randrange(len(lines))
        depth = rng.choice([50, 1000, 20000])
        lines[i] = lines[i] + " " + ("[" * depth if rng.random() < 0.5 else "{a: " * depth)
    elif op < 0.9:  # a repeated key or block
        i = rng.randrange(len(lines))
        lines[i:i] = lines[i:i + rng.randint(1, 6)] * rng.randint(2, 50)
    else:  # an odd token
        i = rng.randrange(len(lines))
        lines[i] += rng.choice([" &a", " *a", " !!binary", " <<: *a", " \t", " #", "\x00", "\xff",
                                " %TAG", " ---", " ...", " ? x"])
    return "\n".join(lines)


class Runner:
    def __init__(self, jtrain, timeout, work):
        self.jtrain = os.path.abspath(jtrain)
        self.timeout = timeout
        self.work = work
        self.env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_MCA_btl="self,vader",
                        OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

    def run(self, target, path):
        """Runs jtrain on one input file; returns (verdict, rc, stderr, argv)."""
        ckpt = os.path.join(self.work, "ckpt")
        shutil.rmtree(ckpt, ignore_errors=True)
        if target == "data":
            cfg = os.path.join(self.work, "cfg.yaml")
            with open(cfg, "w") as f:
                f.write(BASE_CONFIG.format(data=path, ckpt=ckpt))
            argv = [self.jtrain, "train", cfg]
        else:
            argv = [self.jtrain, "train", path, "--set", "checkpoint.dir=" + ckpt]
        t0 = time.monotonic()
        try:
            p = subprocess.run(argv, cwd=self.work, env=self.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            return "hang", None, (e.stderr or b""), argv, time.monotonic() - t0
        rc, err = p.returncode, p.stderr
        dt = time.monotonic() - t0
        if rc < 0 or rc >= 128 or rc == 1:
            return "crash", rc, err, argv, dt
        if rc not in GOOD_EXITS:
            return "dump", rc, err, argv, dt
        if any(m in err for m in DUMP_MARKERS):
            return "dump", rc, err, argv, dt
        if rc != 0 and not any(l.startswith(b"jtrain: ") for l in err.splitlines()):
            return "dump", rc, err, argv, dt
        return "ok", rc, err, argv, dt


def make_seeds(runner, work, target):
    """The seed input: a tiny synthetic data set, or the base config on it."""
    data = os.path.join(work, "seed.h5")
    if not os.path.exists(data):
        subprocess.run([runner.jtrain, "synth", data, "--train", "48", "--test", "16", "--seed",
                        "3"], check=True, stdout=subprocess.DEVNULL, env=runner.env)
    if target == "data":
        with open(data, "rb") as f:
            return f.read(), ".h5"
    return BASE_CONFIG.format(data=data, ckpt="ckpt").encode(), ".yaml"


def keep(out, verdict, target, blob, ext, rc, err, argv, dt):
    os.makedirs(out, exist_ok=True)
    name = "%s-%s-%s" % (verdict, target, hashlib.sha1(blob).hexdigest()[:16])
    with open(os.path.join(out, name + ext), "wb") as f:
        f.write(blob)
    with open(os.path.join(out, name + ".txt"), "w") as f:
        f.write("command: %s\nexit: %s\nseconds: %.2f\nstderr:\n" % (" ".join(argv), rc, dt))
        f.write(err.decode("utf-8", "replace")[-4000:])
    return name


def fuzz(args):
    work = tempfile.mkdtemp(prefix="jtrain-fuzz.")
    runner = Runner(args.jtrain, args.timeout, work)
    seed_blob, ext = make_seeds(runner, work, args.target)
    verdict, rc, err, argv, dt = runner.run(args.target, write(work, "seed" + ext + ".in",
                                                              seed_blob))
    if verdict != "ok" or rc != 0:
        print("fuzz: the seed input itself fails (%s, exit %s):\n%s" % (verdict, rc,
              err.decode("utf-8", "replace")), file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    deadline = time.monotonic() + 60 * args.minutes if args.minutes else None
    counts, findings, slowest = {}, [], (0.0, "")
    n = 0
    while (deadline and time.monotonic() < deadline) or (not deadline and n < args.count):
        if args.target == "data":
            blob = mutate_bytes(rng, seed_blob)
        else:
            blob = mutate_text(rng, seed_blob.decode()).encode("utf-8", "surrogateescape")
        path = write(work, "mutant" + ext, blob)
        verdict, rc, err, argv, dt = runner.run(args.target, path)
        n += 1
        key = verdict if verdict != "ok" else "exit %d" % rc
        counts[key] = counts.get(key, 0) + 1
        if dt > slowest[0]:
            slowest = (dt, "exit %s" % rc)
        if verdict != "ok":
            name = keep(args.out, verdict, args.target, blob, ext, rc, err, argv, dt)
            findings.append(name)
            print("fuzz: %s (exit %s, %.1f s): kept %s" % (verdict, rc, dt, name), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    summary = ", ".join("%s %d" % kv for kv in sorted(counts.items()))
    print("fuzz: %d %s mutants (seed %d): %s; slowest %.2f s; %d finding%s%s" % (
        n, args.target, args.seed, summary, slowest[0], len(findings),
        "" if len(findings) == 1 else "s", " in " + args.out if findings else ""))
    return 1 if findings else 0


def replay(args):
    """Every input in the regression folders must now be handled (exit 2/3/4 with a line)."""
    work = tempfile.mkdtemp(prefix="jtrain-replay.")
    runner = Runner(args.jtrain, args.timeout, work)
    bad = 0
    n = 0
    for root, _, files in os.walk(args.replay):
        for f in sorted(files):
            if f.endswith(".txt"):
                continue
            target = "data" if f.endswith(".h5") else "config"
            path = os.path.join(work, "input" + os.path.splitext(f)[1])
            with open(os.path.join(root, f), "rb") as src:
                blob = src.read()
            if target == "config":  # configs name their data set by a placeholder
                blob = blob.replace(b"@DATA@", make_seed_data(runner, work).encode())
            write(work, os.path.basename(path), blob)
            verdict, rc, err, _, dt = runner.run(target, path)
            n += 1
            if verdict != "ok" or rc == 0:
                bad += 1
                print("replay: %s: %s (exit %s, %.1f s)\n%s" % (f, verdict, rc, dt,
                      err.decode("utf-8", "replace")[-2000:]))
            else:
                line = [l for l in err.decode("utf-8", "replace").splitlines()
                        if l.startswith("jtrain: ")][-1]
                print("replay: %s: exit %d in %.1f s: %s" % (f, rc, dt, line[:160]))
    shutil.rmtree(work, ignore_errors=True)
    print("replay: %d input%s, %d not handled" % (n, "" if n == 1 else "s", bad))
    return 1 if bad else 0


def make_seed_data(runner, work):
    data = os.path.join(work, "seed.h5")
    if not os.path.exists(data):
        subprocess.run([runner.jtrain, "synth", data, "--train", "48", "--test", "16", "--seed",
                        "3"], check=True, stdout=subprocess.DEVNULL, env=runner.env)
    return data


def write(work, name, blob):
    path = os.path.join(work, name)
    with open(path, "wb") as f:
        f.write(blob)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jtrain", default=os.path.join(SRC, "build", "jtrain"))
    ap.add_argument("--target", choices=["data", "config"], default="data")
    ap.add_argument("--count", type=int, default=300, help="mutants (without --minutes)")
    ap.add_argument("--minutes", type=float, default=0, help="run for this long instead")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20, help="seconds per run")
    ap.add_argument("--out", default="fuzz-findings", help="where findings are kept")
    ap.add_argument("--replay", help="replay every input under this folder instead")
    args = ap.parse_args()
    if not os.access(args.jtrain, os.X_OK):
        ap.error("no jtrain binary at %s (build first, or pass --jtrain)" % args.jtrain)
    sys.exit(replay(args) if args.replay else fuzz(args))


if __name__ == "__main__":
    main()
