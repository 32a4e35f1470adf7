"""The reporting side of scripts/bench: reads the runs it recorded and prints Markdown tables
(medians over repeats, ratios, page faults per step, phase shares, the machine's load). No torch
needed here.

usage: bench_report.py report DIR [--warmup 20] [--log-every 10] [--trace yes|no|off] [--jtrain BIN]
                              [--baseline BIN] [--env-coretype NAME] ...
       bench_report.py corename BIN     the OpenBLAS kernel that BIN's libopenblas picks in this
                                        environment (OPENBLAS_CORETYPE as set)
       bench_report.py trace FILE...    phase shares of jtrain Chrome traces
       jtrain ... | bench_report.py monitor BIN TAG OUT   copies jtrain's output through and
                                        samples its ranks' page faults at each progress line

DIR holds, per run ID: ID.out/ID.err (stdout/stderr), ID.time ("wall user sys" of the whole
launch), ID.ru.<rank> ("wall user sys minor-faults" of each rank), ID.stat0/ID.stat1 (the
machine's busy, idle and steal jiffies and the 1-minute load before/after), and manifest.tsv
(ID section kind model np steps repeat purpose coretype), ID.faults (jtrain: the ranks' fault
counters at each progress line) or ID.out.<rank> (torch: each rank's JSON line).
"""
import argparse
import collections
import ctypes
import glob
import json
import os
import re
import statistics
import subprocess
import sys

HZ = os.sysconf("SC_CLK_TCK")
# others' average CPU use (cores) above which the machine counts as busy
BUSY_CORES = 0.25
STEAL_SHARE = 0.05


def median(xs):
    return statistics.median(xs) if xs else None


# --- OpenBLAS kernel ----------------------------------------------------------------------------

def openblas_of(binary):
    """The libopenblas path that `binary` loads (ldd), or None."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    except OSError:
        return None
    for line in out.splitlines():
        m = re.search(r"(libopenblas\S*)\s+=>\s+(\S+)", line)
        if m:
            return m.group(2)
    return None


def corename(binary):
    """'KERNEL (config)' of binary's libopenblas as OPENBLAS_CORETYPE is set now."""
    lib = openblas_of(binary)
    if lib is None:
        return "no libopenblas linked"
    try:
        ob = ctypes.CDLL(lib)
        ob.openblas_get_corename.restype = ctypes.c_char_p
        ob.openblas_get_config.restype = ctypes.c_char_p
        return "%s (%s; %s)" % (ob.openblas_get_corename().decode(),
                                ob.openblas_get_config().decode().strip(), os.path.realpath(lib))
    except (OSError, AttributeError) as e:
        return "unknown (%s)" % e


# --- phase shares from jtrain's log.trace -------------------------------------------------------

# events that are not part of a training step's steady state
NOT_STEP = ("checkpoint", "eval")


def phase_shares(files, warmup_steps=0):
    """Where a steady-state step's time goes, per rank, from jtrain's log.trace files (Chrome
    trace-event JSON: {"traceEvents": [...]} or a bare list, possibly cut short; "X" events with
    ts/dur in microseconds, args.step, pid = rank, tid 0 = compute, tid 1 = allreduce).
    Events of steps before warmup_steps and checkpoint/eval events are left out; the rest of the
    compute thread spans the window [first start, last end]. Returns {rank: {"window_us": W,
    "steps": K, "compute": [(name, share of W)], "untraced": share, "allreduce": [(name, share
    of W)]}}: compute shares are disjoint (one thread) so they and "untraced" sum to 1; allreduce
    events overlap the compute ones (that is the point), each counted fully. Raises ValueError
    when there is nothing to read. Reading a trace is this one function: the bench calls only
    it (and format_shares)."""
    events = []
    for path in files:
        with open(path) as f:
            text = f.read().strip()
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:  # an interrupted run leaves the array open
            doc = json.loads(text.rstrip(",") + ("]}" if text.startswith("{") else "]"))
        events += doc["traceEvents"] if isinstance(doc, dict) else doc
    per_rank = collections.defaultdict(list)
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        step = (e.get("args") or {}).get("step")
        if step is not None and step < warmup_steps:
            continue
        if any(e["name"].startswith(x) for x in NOT_STEP):
            continue
        per_rank[e.get("pid", 0)].append((e.get("tid", 0), e["name"], float(e["ts"]),
                                          float(e["dur"]), step))
    if not any(ev for ev in per_rank.values()):
        raise ValueError("no steady-state events in %s" % ", ".join(files))
    out = {}
    for rank, ev in per_rank.items():
        comp = [x for x in ev if x[0] == 0]
        if not comp:
            continue
        t0 = min(x[2] for x in comp)
        window = max(x[2] + x[3] for x in comp) - t0
        shares = {0: collections.Counter(), 1: collections.Counter()}
        for tid, name, _, dur, _ in ev:
            shares[1 if tid else 0][name] += dur / window if window > 0 else 0.0
        steps = {x[4] for x in comp if x[4] is not None}
        out[rank] = {"window_us": window, "steps": len(steps),
                     "compute": shares[0].most_common(),
                     "untraced": max(0.0, 1.0 - sum(shares[0].values())),
                     "allreduce": shares[1].most_common()}
    return out


def format_shares(shares, least=0.005):
    """One line per rank; phases under `least` of the window are summed into "rest"."""
    lines = []
    for rank in sorted(shares):
        s = shares[rank]
        step_ms = s["window_us"] / s["steps"] / 1000 if s["steps"] else 0
        big = [(n, v) for n, v in s["compute"] if v >= least]
        rest = sum(v for n, v in s["compute"] if v < least)
        items = ["%s %.1f%%" % (n, 100 * v) for n, v in big]
        if rest > 0:
            items.append("rest %.1f%%" % (100 * rest))
        line = "rank %s (%d steps, %.2f ms/step): %s, untraced %.1f%%" % (
            rank, s["steps"], step_ms, ", ".join(items), 100 * s["untraced"])
        ar = sum(v for _, v in s["allreduce"])
        if ar >= least:
            line += "; allreduce in flight %.1f%% (%s)" % (
                100 * ar, ", ".join("%s %.1f%%" % (n, 100 * v) for n, v in s["allreduce"]))
        lines.append(line)
    return lines


# --- page faults of jtrain's ranks, sampled at its progress lines -------------------------------

def rank_processes(exe, tag):
    """{rank: pid} of the running processes of `exe` whose environment holds BENCH_RU=tag."""
    exe, out = os.path.realpath(exe), {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.path.realpath("/proc/%s/exe" % pid) != exe:
                continue
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        except OSError:
            continue
        if env.get(b"BENCH_RU") == tag.encode():
            out[int(env.get(b"OMPI_COMM_WORLD_RANK", b"0"))] = int(pid)
    return out


def minflt(pid):
    """Minor faults of a whole process so far (/proc/PID/stat field 10), or None once gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])
    except (OSError, IndexError, ValueError):
        return None


def monitor(exe, tag, out_path):
    """Copies jtrain's stdout through; at each progress line ('epoch E step S/T | ...', printed
    right after step S) reads every rank's minor-fault counter. Writes {"samples": [[S, {rank:
    faults}], ...]} to out_path. The ranks advance in lockstep (one allreduce per step), so rank
    r's counter at rank 0's line is within a step of step S."""
    pat = re.compile(r"^epoch \d+ step (\d+)/\d+ \|")
    pids, samples = {}, []
    for line in sys.stdin:
        sys.stdout.write(line)
        sys.stdout.flush()
        m = pat.match(line)
        if not m:
            continue
        if not pids:
            pids = rank_processes(exe, tag)
        f = {r: minflt(p) for r, p in pids.items()}
        if f and all(v is not None for v in f.values()):
            samples.append([int(m.group(1)), f])
    with open(out_path, "w") as f:
        json.dump({"samples": samples}, f)


def steady_faults(samples, warmup):
    """Per rank, faults per step from the sample at the first progress line at or after the
    warm-up to the last-but-one (the last is followed at once by the final checkpoint, which a
    late read could catch). None if fewer than two samples remain."""
    s = [x for x in samples if x[0] >= warmup][:-1]
    if len(s) < 2 or s[-1][0] == s[0][0]:
        return None
    ranks = sorted(s[0][1], key=int)
    return [(s[-1][1][r] - s[0][1][r]) / (s[-1][0] - s[0][0]) for r in ranks]


# --- the recorded runs --------------------------------------------------------------------------

Run = collections.namedtuple("Run", "id section kind model np steps rep purpose coretype "
                                    "sps intervals faults run_faults wall own_cpu busy_cpu steal "
                                    "load0 load1 info")


def last_fields(path):
    """The numbers on the last line of a /usr/bin/time -o file (it may start with a note)."""
    with open(path) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    return [float(x) for x in lines[-1].split()]


def jtrain_intervals(text, warmup, log_every):
    """samples/s of jtrain's progress lines whose interval starts after the warm-up."""
    out = []
    for m in re.finditer(r"^epoch \d+ step (\d+)/\d+ \|.*\| ([0-9.]+) samples/s$", text, re.M):
        if int(m.group(1)) - log_every >= warmup:
            out.append(float(m.group(2)))
    return out


def load_runs(d, warmup, log_every):
    runs = []
    with open(os.path.join(d, "manifest.tsv")) as f:
        rows = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    for rid, section, kind, model, np_, steps, rep, purpose, coretype in rows:
        p = lambda ext: os.path.join(d, rid + ext)
        with open(p(".out")) as f:
            text = f.read()
        info, faults = {}, None
        if kind == "torch":
            ranks = []
            for path in sorted(glob.glob(p(".out.*")), key=lambda x: int(x.rsplit(".", 1)[1])):
                with open(path) as f:
                    ranks.append(json.loads([l for l in f.read().splitlines() if l.startswith("{")][-1]))
            info = ranks[0]
            intervals = info["intervals"]
            faults = [x["faults_per_step_inprocess"] for x in ranks]
        else:
            intervals = jtrain_intervals(text, warmup, log_every)
            info = {"stdout": text}
            if os.path.exists(p(".faults")):
                with open(p(".faults")) as f:
                    faults = steady_faults(json.load(f)["samples"], warmup)
        run_faults = {}
        for ru in glob.glob(p(".ru.*")):
            run_faults[int(ru.rsplit(".", 1)[1])] = last_fields(ru)[3]
        wall, user, sys_ = last_fields(p(".time"))[:3]
        s0, s1 = last_fields(p(".stat0")), last_fields(p(".stat1"))
        runs.append(Run(rid, section, kind, model, int(np_), int(steps), int(rep), purpose,
                        coretype, median(intervals), intervals, faults,
                        [run_faults[r] for r in sorted(run_faults)], wall, user + sys_,
                        (s1[0] - s0[0]) / HZ, (s1[2] - s0[2]) / HZ, s0[3], s1[3], info))
    return runs


def pick(runs, **kw):
    return [r for r in runs if all(getattr(r, k) == v for k, v in kw.items())]


def sps_median(runs, **kw):
    return median([r.sps for r in pick(runs, purpose="time", **kw) if r.sps is not None])


def faults_per_step(runs, **kw):
    """Per rank, the median over the timed runs of their steady-state minor faults per step."""
    fs = [r.faults for r in pick(runs, purpose="time", **kw) if r.faults]
    if not fs:
        return None
    n = min(len(f) for f in fs)
    return [median([f[i] for f in fs]) for i in range(n)]


def fmt(x, nd=0):
    return "-" if x is None else ("%.*f" % (nd, x))


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def fmt_faults(f):
    return "-" if f is None else " / ".join("%.1f" % x for x in f)


# --- report -------------------------------------------------------------------------------------

MODEL_NAMES = {
    "a": "A: conv 32 3x3, relu, pool, 2 heads dense 128 -> 10 / 16 (1.39M params)",
    "b": "B: conv 32 + pool + conv 64 + pool + dense 128 -> 10; GRU 128 over 32x40 -> 16 (0.29M)",
}


def busy_report(d, runs):
    """Lines on the machine's load and whether it was busy (others' CPU vs the bench's)."""
    lines, busy = [], False
    i0, i1 = last_fields(os.path.join(d, "idle.stat0")), last_fields(os.path.join(d, "idle.stat1"))
    idle_others = (i1[0] - i0[0]) / HZ / 2.0
    wall = sum(r.wall for r in runs)
    others = sum(max(0.0, r.busy_cpu - r.own_cpu) for r in runs)
    steal = sum(r.steal for r in runs)
    ncpu = os.cpu_count() or 1
    worst = max(runs, key=lambda r: (r.busy_cpu - r.own_cpu) / max(r.wall, 1e-9))
    worst_cores = (worst.busy_cpu - worst.own_cpu) / max(worst.wall, 1e-9)
    avg = others / max(wall, 1e-9)
    lines.append("load: loadavg %.2f before the runs, %.2f at the end; other processes used "
                 "%.2f cores before (2 s sample) and %.2f cores on average during the runs "
                 "(worst run %.2f: %s %s np %d); steal %.1f%% of %d cores"
                 % (runs[0].load0, runs[-1].load1, idle_others, avg, worst_cores, worst.kind,
                    worst.model, worst.np, 100 * steal / max(wall * ncpu, 1e-9), ncpu))
    if idle_others > BUSY_CORES or avg > BUSY_CORES or worst_cores > 2 * BUSY_CORES \
            or steal > STEAL_SHARE * wall * ncpu:
        busy = True
        lines.append("**WARNING: the machine was busy** (other processes' CPU above %.2f cores, "
                     "or steal above %.0f%%): the numbers are noisy and np 2 runs compete with "
                     "the other load; rerun on a quiet machine for the record."
                     % (BUSY_CORES, 100 * STEAL_SHARE))
    else:
        lines.append("the machine was quiet during the runs (others below %.2f cores)" % BUSY_CORES)
    return lines, busy


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def report(a):
    runs = load_runs(a.dir, a.warmup, a.log_every)
    if not runs:
        print("bench: no runs recorded", file=sys.stderr)
        return 1
    coretypes = list(dict.fromkeys(r.coretype for r in runs))
    torch_runs = pick(runs, kind="torch")
    out = []
    w = out.append
    w("# jtrain benchmark")
    w("")
    lengths = ", ".join(x for x in (
        "A/B %d steps" % a.steps if pick(runs, section="ab") else "",
        "AVFM %d steps" % a.avfm_steps if pick(runs, section="avfm") else "") if x)
    w("%d repeat(s), alternated; samples/s = median over repeats of each run's median progress "
      "interval (%d steps each) after %d warm-up steps; %s; "
      "OPENBLAS_NUM_THREADS=1; torch: 1 thread per process, glibc malloc tuned "
      "(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 "
      "MALLOC_TOP_PAD_=268435456). Faults/step: minor page faults per step in steady state "
      "(after the warm-up), per rank (rank 0 / rank 1): jtrain's ranks' /proc/PID/stat read at "
      "its progress lines, torch's getrusage in the process."
      % (a.repeats, a.log_every, a.warmup, lengths))
    for ct in coretypes:
        ct_desc = {"unset": "unset", "KEEP": "kept from the environment (%s)" % (a.env_coretype or "unset")}.get(ct, ct)
        try:
            with open(os.path.join(a.dir, "corename." + ct)) as f:
                kernel = f.read().strip()
        except OSError:
            kernel = "unknown"
        w("")
        w("## OPENBLAS_CORETYPE %s: jtrain's OpenBLAS kernel %s" % (ct_desc, kernel))
        tk = {r.info.get("openblas") for r in pick(torch_runs, coretype=ct)}
        if tk:
            w("torch's OpenBLAS kernel: %s; torch twins: %s" % (
                ", ".join(sorted(str(x) for x in tk)),
                ", ".join(sorted({str(r.info.get("twin")) for r in pick(torch_runs, coretype=ct)}))))
        ab = [m for m in ("a", "b") if pick(runs, section="ab", model=m, coretype=ct)]
        if ab:
            w("")
            w("| model | jtrain np 1 | torch 1 thread | ratio | jtrain np 2 | torch DDP 2x1 | "
              "ratio | np2/np1 jtrain (torch) | faults/step jtrain np 1; np 2 | "
              "faults/step torch 1; DDP |")
            w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for m in ab:
                k = dict(section="ab", model=m, coretype=ct)
                j1, t1 = sps_median(runs, kind="jtrain", np=1, **k), sps_median(runs, kind="torch", np=1, **k)
                j2, t2 = sps_median(runs, kind="jtrain", np=2, **k), sps_median(runs, kind="torch", np=2, **k)
                fj = "%s; %s" % (fmt_faults(faults_per_step(runs, kind="jtrain", np=1, **k)),
                                 fmt_faults(faults_per_step(runs, kind="jtrain", np=2, **k)))
                ft = "%s; %s" % (fmt_faults(faults_per_step(runs, kind="torch", np=1, **k)),
                                 fmt_faults(faults_per_step(runs, kind="torch", np=2, **k)))
                w("| %s | %s | %s | %s | %s | %s | %s | %s (%s) | %s | %s |" % (
                    MODEL_NAMES[m], fmt(j1), fmt(t1), fmt(ratio(j1, t1), 2), fmt(j2), fmt(t2),
                    fmt(ratio(j2, t2), 2), fmt(ratio(j2, j1), 2), fmt(ratio(t2, t1), 2), fj, ft))
        rec = list(dict.fromkeys(r.model for r in pick(runs, section="avfm", coretype=ct)))
        if rec:
            has_base = bool(pick(runs, section="avfm", kind="baseline", coretype=ct))
            w("")
            if has_base:
                w("| AVFM recipe (batch 128) | jtrain np 1 | before np 1 | speed-up | jtrain np 2 "
                  "| before np 2 | speed-up | np2/np1 | faults/step np 1; np 2 |")
                w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            else:
                w("| AVFM recipe (batch 128) | jtrain np 1 | jtrain np 2 | np2/np1 | "
                  "faults/step np 1; np 2 |")
                w("| --- | ---: | ---: | ---: | ---: |")
            for r in rec:
                k = dict(section="avfm", model=r, coretype=ct)
                j1, j2 = sps_median(runs, kind="jtrain", np=1, **k), sps_median(runs, kind="jtrain", np=2, **k)
                f = "%s; %s" % (fmt_faults(faults_per_step(runs, kind="jtrain", np=1, **k)),
                                fmt_faults(faults_per_step(runs, kind="jtrain", np=2, **k)))
                if has_base:
                    b1 = sps_median(runs, kind="baseline", np=1, **k)
                    b2 = sps_median(runs, kind="baseline", np=2, **k)
                    w("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                        r, fmt(j1), fmt(b1), fmt(ratio(j1, b1), 2), fmt(j2), fmt(b2),
                        fmt(ratio(j2, b2), 2), fmt(ratio(j2, j1), 2), f))
                else:
                    w("| %s | %s | %s | %s | %s |" % (r, fmt(j1), fmt(j2), fmt(ratio(j2, j1), 2), f))
        # goals of issue 7
        goals = []
        for m, g1, g2 in (("a", 2.0, 3.0), ("b", 1.5, 1.5)):
            k = dict(section="ab", model=m, coretype=ct)
            j1, t1 = sps_median(runs, kind="jtrain", np=1, **k), sps_median(runs, kind="torch", np=1, **k)
            j2, t2 = sps_median(runs, kind="jtrain", np=2, **k), sps_median(runs, kind="torch", np=2, **k)
            for what, val, want in (("np 1 / torch", ratio(j1, t1), g1), ("np 2 / DDP", ratio(j2, t2), g2),
                                    ("np2/np1", ratio(j2, j1), 1.9)):
                if val is not None:
                    goals.append("%s %s %.2f %s %.1f" % (m.upper(), what, val, ">=" if val >= want else "<", want))
        for r in list(dict.fromkeys(x.model for x in pick(runs, section="avfm", coretype=ct))):
            for np_ in (1, 2):
                k = dict(section="avfm", model=r, coretype=ct, np=np_)
                v = ratio(sps_median(runs, kind="jtrain", **k), sps_median(runs, kind="baseline", **k))
                if v is not None:
                    goals.append("%s np %d speed-up %.2f %s 1.5" % (r, np_, v, ">=" if v >= 1.5 else "<"))
        if goals:
            w("")
            w("goals (issue 7): " + "; ".join(goals))
        # phase shares
        w("")
        if a.trace == "no":
            w("phase shares: jtrain has no log.trace yet")
        elif a.trace == "off":
            w("phase shares: not measured (--no-trace)")
        else:
            w("phase shares (jtrain log.trace, steady state, per rank; overlapping events each "
              "count):")
            for r in pick(runs, purpose="trace", coretype=ct):
                files = sorted(glob.glob(os.path.join(a.dir, "trace-%s-np%d-%s*" % (r.model, r.np, ct))))
                try:
                    lines = format_shares(phase_shares(files, a.warmup)) if files else ["no trace file written"]
                except (ValueError, KeyError, json.JSONDecodeError) as e:
                    lines = ["unreadable trace (%s)" % e]
                for line in lines:
                    w("- %s np %d %s" % (r.model, r.np, line))
    # every run, for the noise
    w("")
    w("runs (per repeat):")
    groups = collections.OrderedDict()
    for r in pick(runs, purpose="time"):
        groups.setdefault((r.coretype, r.section, r.model, r.kind, r.np), []).append(r)
    for (ct, _, model, kind, np_), rs in groups.items():
        w("- [%s] %s %s np %d: %s samples/s; faults/step %s; faults of the whole run %s"
          % (ct, model, kind, np_, " ".join(fmt(x.sps) for x in rs),
             ", ".join(fmt_faults(x.faults) for x in rs),
             ", ".join(" / ".join("%d" % f for f in x.run_faults) for x in rs)))
        m = re.search(r"^comm per step \(rank 0\): (.*)$", rs[-1].info.get("stdout", ""), re.M)
        if m:
            w("  comm per step (rank 0, last repeat): %s" % m.group(1))
    # environment
    w("")
    busy_lines, busy = busy_report(a.dir, runs)
    torch_v = sorted({str(r.info.get("torch")) for r in torch_runs})
    w("environment: %s, %d cores; jtrain %s%s; torch %s; OPENBLAS_CORETYPE in the environment: %s"
      % (cpu_model(), os.cpu_count() or 0, a.jtrain, " (baseline %s)" % a.baseline if a.baseline else "",
         ", ".join(torch_v) if torch_v else "not run", a.env_coretype or "unset"))
    for line in busy_lines:
        w(line)
    print("\n".join(out))
    if busy:
        print("bench: WARNING: the machine was busy during the bench (see the load line)",
              file=sys.stderr)
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report")
    r.add_argument("dir")
    r.add_argument("--warmup", type=int, default=20)
    r.add_argument("--log-every", type=int, default=10)
    r.add_argument("--trace", choices=["yes", "no", "off"], default="no")
    r.add_argument("--jtrain", default="")
    r.add_argument("--baseline", default="")
    r.add_argument("--env-coretype", default="")
    r.add_argument("--repeats", type=int, default=0)
    r.add_argument("--steps", type=int, default=0)
    r.add_argument("--avfm-steps", type=int, default=0)
    c = sub.add_parser("corename")
    c.add_argument("binary")
    mo = sub.add_parser("monitor")
    mo.add_argument("exe")
    mo.add_argument("tag")
    mo.add_argument("out")
    t = sub.add_parser("trace")
    t.add_argument("files", nargs="+")
    t.add_argument("--warmup", type=int, default=0)
    a = ap.parse_args()
    if a.cmd == "corename":
        print(corename(a.binary))
        return 0
    if a.cmd == "monitor":
        monitor(a.exe, a.tag, a.out)
        return 0
    if a.cmd == "trace":
        print("\n".join(format_shares(phase_shares(a.files, a.warmup))))
        return 0
    return report(a)


if __name__ == "__main__":
    sys.exit(main())
