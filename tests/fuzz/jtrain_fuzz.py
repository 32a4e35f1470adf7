#!/usr/bin/env python3
"""jtrain_fuzz.py - a mutation fuzzer for jtrain's untrusted inputs: data sets, configs, checkpoints.

Every mutant of a valid seed file (byte flips, interesting bytes, truncation, deleted or repeated
spans; for configs also line edits, extreme numbers and deep nesting) is given to a jtrain
command under a hard timeout:
  data    jtrain train CFG            (CFG: a tiny two-head model on the mutant data set)
  config  jtrain train MUTANT         (on the seed data set)
  ckpt    jtrain eval MUTANT --data SEED   (the mutant of a checkpoint of the tiny model)
jtrain must answer every input within the timeout with exit 0, 2, 3 or 4 and, when it fails, a
`jtrain: ` line on stderr. Anything else is a finding:
  crash  died by a signal (or exit >= 128: a shell-reported signal), or exit 1 (internal error)
  hang   did not end within the timeout (a config that is still training is not a hang: it
         printed progress lines and was only told to train for long)
  dump   a raw library error dump (HDF5-DIAG, libyaml, MPI's signal report, a sanitizer
         report) or no `jtrain: ` line on failure
Findings are kept in OUT/<kind>-<target>-<sha1>.<ext> with a .txt beside each (the command,
the exit code, stderr). Mutants are drawn from --seed alone, so a run is reproducible whatever
--jobs is. Standard library only: any python3 runs it.

  python3 tests/fuzz/jtrain_fuzz.py --jtrain build/jtrain --target data --minutes 10 --out F
  python3 tests/fuzz/jtrain_fuzz.py --jtrain build/jtrain --target config --count 300 --seed 1
  python3 tests/fuzz/jtrain_fuzz.py --jtrain build/jtrain --replay tests/fuzz/regressions
Replay: every file in the folder (not .txt, not .md) must now be handled (no finding); its
target is in its name (<kind>-<target>-...), else .yaml is a config and .h5 a data set; a
config names its data set as @DATA@. Exit status: 0 when nothing was found (or every replayed
input is handled), 1 otherwise, 2 on a usage error.
"""
import argparse
import concurrent.futures
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
TARGETS = ("data", "config", "ckpt")
GOOD_EXITS = {0, 2, 3, 4}
DUMP_MARKERS = (b"HDF5-DIAG", b"#000:", b"libyaml", b"Segmentation fault",
                b"*** Process received signal", b"AddressSanitizer", b"runtime error:",
                b"internal error")

# The config every data mutant is trained with, the seed config of config mutants and the model
# of the checkpoint seed. Tiny: two steps of a two-head model on the seed data set.
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
# The seed data set: small, so that most mutations land in HDF5 metadata (~45 of its 80 KB).
SYNTH_ARGS = ["--train", "4", "--test", "2", "--seed", "3"]

# What jtrain says when its isolated reader of a file (h5util.h) crashed or hung inside
# HDF5: the input is handled, but it is one that would have killed (or hung) a jtrain without
# the isolation.
ISOLATED = re.compile(rb"HDF5 crashed while reading it|HDF5 failed while reading it|"
                      rb"HDF5 did not finish reading it|reading it was killed")

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


def jtrain_env():
    """Single-process Open MPI without the slow start-up of a singleton: no orted
    (ess_singleton_isolated) and no probing of network transports (pml ob1, btl self,vader):
    ~0.1 s a run instead of ~0.8 s. jtrain's limit for one step of the isolated reader of
    a file goes down from 20 s to 5 s, so a file that hangs HDF5 is answered (exit 3) well
    within the fuzzer's timeout."""
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_MCA_btl="self,vader",
                OMPI_MCA_pml="ob1", OMPI_MCA_ess_singleton_isolated="1",
                OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                JTRAIN_H5_SCAN_TIMEOUT="5")


class Runner:
    """Runs jtrain on one input at a time in its own folder (one per worker)."""

    def __init__(self, jtrain, timeout, work, seed_data):
        self.jtrain = os.path.abspath(jtrain)
        self.timeout = timeout
        self.work = work
        self.seed_data = seed_data
        os.makedirs(os.path.join(work, "ompi"), exist_ok=True)
        # Isolated singletons share one Open MPI session folder unless told otherwise, and
        # one run's clean-up then breaks the MPI_Init of a run beside it.
        self.env = dict(jtrain_env(), OMPI_MCA_orte_tmpdir_base=os.path.join(work, "ompi"))

    def run(self, target, path):
        """Runs jtrain on one input file; returns (verdict, rc, stderr, argv, seconds)."""
        ckpt = os.path.join(self.work, "ckpt")
        shutil.rmtree(ckpt, ignore_errors=True)
        if target == "data":
            cfg = os.path.join(self.work, "cfg.yaml")
            with open(cfg, "w") as f:
                f.write(BASE_CONFIG.format(data=path, ckpt=ckpt))
            argv = [self.jtrain, "train", cfg]
        elif target == "config":
            argv = [self.jtrain, "train", path, "--set", "checkpoint.dir=" + ckpt]
        else:
            argv = [self.jtrain, "eval", path, "--data", self.seed_data]
        t0 = time.monotonic()
        try:
            p = subprocess.run(argv, cwd=self.work, env=self.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            dt = time.monotonic() - t0
            if target == "config" and re.search(rb"^epoch \d+ step ", e.stdout or b"", re.M):
                return "ok", "training", (e.stderr or b""), argv, dt  # told to train for long
            return "hang", None, (e.stderr or b""), argv, dt
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


def make_seed_data(jtrain, work):
    data = os.path.join(work, "seed.h5")
    if not os.path.exists(data):
        subprocess.run([jtrain, "synth", data] + SYNTH_ARGS, check=True,
                       stdout=subprocess.DEVNULL, env=jtrain_env())
    return data


def make_seed(runner, target):
    """The seed input of target: the seed data set, the base config on it, or a checkpoint of
    the base config. Returns (bytes, extension)."""
    work = runner.work
    if target == "data":
        with open(runner.seed_data, "rb") as f:
            return f.read(), ".h5"
    if target == "config":
        return BASE_CONFIG.format(data=runner.seed_data, ckpt="ckpt").encode(), ".yaml"
    cfg = os.path.join(work, "seed-ckpt.yaml")
    run_dir = os.path.join(work, "seed-run")
    with open(cfg, "w") as f:
        f.write(BASE_CONFIG.format(data=runner.seed_data, ckpt=run_dir))
    subprocess.run([runner.jtrain, "train", cfg, "--overwrite"], check=True, cwd=work,
                   stdout=subprocess.DEVNULL, env=runner.env)
    with open(os.path.join(run_dir, "ckpt-00000002.h5"), "rb") as f:
        return f.read(), ".h5"


def keep(out, verdict, target, blob, ext, rc, err, argv, dt):
    os.makedirs(out, exist_ok=True)
    name = "%s-%s-%s" % (verdict, target, hashlib.sha1(blob).hexdigest()[:16])
    with open(os.path.join(out, name + ext), "wb") as f:
        f.write(blob)
    with open(os.path.join(out, name + ".txt"), "w") as f:
        f.write("command: %s\nexit: %s\nseconds: %.2f\nstderr:\n" % (" ".join(argv), rc, dt))
        f.write(err.decode("utf-8", "replace")[-4000:])
    return name


def mutants(rng, target, seed_blob, limit, deadline):
    """The mutants, in an order fixed by rng alone."""
    n = 0
    while (deadline is not None and time.monotonic() < deadline) or \
            (deadline is None and n < limit):
        if target == "config":
            yield n, mutate_text(rng, seed_blob.decode()).encode("utf-8", "surrogateescape")
        else:
            yield n, mutate_bytes(rng, seed_blob)
        n += 1


def fuzz(args):
    work = tempfile.mkdtemp(prefix="jtrain-fuzz.")
    try:
        return fuzz_in(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fuzz_in(args, work):
    t_start = time.monotonic()
    seed_data = make_seed_data(args.jtrain, work)
    runners = [Runner(args.jtrain, args.timeout, os.path.join(work, "w%d" % k), seed_data)
               for k in range(args.jobs)]
    seed_blob, ext = make_seed(runners[0], args.target)
    seed_path = write(runners[0].work, "seed-input" + ext, seed_blob)
    verdict, rc, err, _, _ = runners[0].run(args.target, seed_path)
    if verdict != "ok" or rc != 0:
        print("fuzz: the seed input itself fails (%s, exit %s):\n%s" % (verdict, rc,
              err.decode("utf-8", "replace")), file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    deadline = time.monotonic() + 60 * args.minutes if args.minutes else None
    counts, findings, times = {}, [], []
    free = list(runners)
    lock = threading.Lock()

    def one(runner, i, blob):
        path = write(runner.work, "mutant" + ext, blob)
        return (i, blob) + runner.run(args.target, path)

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        pending = {}

        def collect(done):
            for fut in done:
                runner = pending.pop(fut)
                free.append(runner)
                i, blob, verdict, rc, err, argv, dt = fut.result()
                with lock:
                    key = verdict if verdict != "ok" else "exit %s" % rc
                    if verdict == "ok" and ISOLATED.search(err):
                        key += " (HDF5 crashed or hung in jtrain's isolated reader)"
                        if args.keep_isolated:
                            keep(args.out, "isolated", args.target, blob, ext, rc, err, argv, dt)
                    counts[key] = counts.get(key, 0) + 1
                    times.append((dt, i, key))
                    if verdict != "ok":
                        name = keep(args.out, verdict, args.target, blob, ext, rc, err, argv, dt)
                        findings.append(name)
                        print("fuzz: mutant %d: %s (exit %s, %.1f s): kept %s" % (
                            i, verdict, rc, dt, name), flush=True)

        for i, blob in mutants(rng, args.target, seed_blob, args.count, deadline):
            if not free:
                done, _ = concurrent.futures.wait(pending,
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
                collect(done)
            runner = free.pop()
            pending[pool.submit(one, runner, i, blob)] = runner
        collect(concurrent.futures.wait(pending)[0])
    n = len(times)
    times.sort(reverse=True)
    summary = ", ".join("%s %d" % kv for kv in sorted(counts.items()))
    med = times[n // 2][0] if n else 0.0
    worst = "; ".join("%.2f s (mutant %d, %s)" % t for t in times[:3])
    print("fuzz: %d %s mutants (seed %d, %d jobs, %.0f s): %s; median %.2f s, slowest %s; "
          "%d finding%s%s" % (n, args.target, args.seed, args.jobs, time.monotonic() - t_start,
                              summary, med, worst or "-", len(findings),
                              "" if len(findings) == 1 else "s",
                              " in " + args.out if findings else ""))
    return 1 if findings else 0


def replay_target(name):
    m = re.match(r"^[a-z]+-(%s)-" % "|".join(TARGETS), name)
    if m:
        return m.group(1)
    return "config" if name.endswith((".yaml", ".yml")) else "data"


def replay(args):
    """Every input in the regression folder must now be handled (no finding)."""
    work = tempfile.mkdtemp(prefix="jtrain-replay.")
    try:
        seed_data = make_seed_data(args.jtrain, work)
        runner = Runner(args.jtrain, args.timeout, os.path.join(work, "w"), seed_data)
        bad, n = 0, 0
        for root, _, files in os.walk(args.replay):
            for f in sorted(files):
                if f.endswith((".txt", ".md")) or f.startswith("."):
                    continue
                target = replay_target(f)
                with open(os.path.join(root, f), "rb") as src:
                    blob = src.read()
                if target == "config":  # configs name their data set by a placeholder
                    blob = blob.replace(b"@DATA@", seed_data.encode())
                path = write(runner.work, "input" + os.path.splitext(f)[1], blob)
                verdict, rc, err, _, dt = runner.run(target, path)
                n += 1
                lines = [l for l in err.decode("utf-8", "replace").splitlines()
                         if l.startswith("jtrain: ")]
                if verdict != "ok":
                    bad += 1
                    print("replay: %s: %s (exit %s, %.1f s)\n%s" % (
                        f, verdict, rc, dt, err.decode("utf-8", "replace")[-2000:]))
                else:
                    print("replay: %s: exit %s in %.2f s: %s" % (
                        f, rc, dt, lines[-1][:200] if lines else "(no error)"))
        print("replay: %d input%s, %d not handled" % (n, "" if n == 1 else "s", bad))
        return 1 if bad else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write(work, name, blob):
    path = os.path.join(work, name)
    with open(path, "wb") as f:
        f.write(blob)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jtrain", default=os.path.join(SRC, "build", "jtrain"))
    ap.add_argument("--target", choices=TARGETS, default="data")
    ap.add_argument("--count", type=int, default=300, help="mutants (without --minutes)")
    ap.add_argument("--minutes", type=float, default=0, help="run for this long instead")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    ap.add_argument("--timeout", type=float, default=30, help="seconds per run")
    ap.add_argument("--out", default="fuzz-findings", help="where findings are kept")
    ap.add_argument("--replay", help="replay every input under this folder instead")
    ap.add_argument("--keep-isolated", action="store_true",
                    help="also keep inputs that crashed HDF5 in jtrain's isolated reader "
                         "(handled, exit 3/4; candidates for the regression folder)")
    args = ap.parse_args()
    if not os.access(args.jtrain, os.X_OK):
        ap.error("no jtrain binary at %s (build first, or pass --jtrain)" % args.jtrain)
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    args.jtrain = os.path.abspath(args.jtrain)
    sys.exit(replay(args) if args.replay else fuzz(args))


if __name__ == "__main__":
    main()
