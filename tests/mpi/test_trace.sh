#!/usr/bin/env bash
# log.trace: 2 ranks of a two-branch model (architecture 3) write trace.rank0.json and
# trace.rank1.json, Chrome trace-event JSON that parses, with pid = rank, every phase of every
# step once (data wait, forward, loss, backward of each chain, gradient wait, optimizer), the
# checkpoints and the final eval, one event per allreduce bucket and step, compute events in
# sequence; and the first bucket (speaker + item + audio_net) starts before image_net's backward
# on every rank and is in flight during it - the overlap - on some rank in most steps, in both
# reduction modes. Without log.trace no file.
source "$(dirname "$0")/../testlib.sh"
make_synth synth.h5 600 200
cfg="$FIX/tiny-separate.yaml"

for mode in shm mpi; do
  JTRAIN_ALLREDUCE=$mode JTRAIN_BUCKET_KB=16 jt_mpirun -np 2 "$JTRAIN" train "$cfg" \
    --set checkpoint.dir=ck-$mode --set train.steps=20 --set log.trace=tr-$mode/trace.json \
    > $mode.log 2>&1 || { cat $mode.log; fail "$mode run"; }
  grep -q "2 buckets, overlapping backward; timeline in tr-$mode/trace.json" $mode.log \
    || fail "$mode: $(grep 'gradient sum' $mode.log)"
  "$PY" - "tr-$mode" <<'PYEOF' || fail "$mode: trace check"
import json, sys
d = sys.argv[1]
per_step = ["data wait", "forward", "loss", "backward speaker", "backward item",
            "backward audio_net", "backward image_net", "gradient wait", "optimizer"]
buckets = ["allreduce speaker+item+audio_net", "allreduce image_net"]
overlap = {}  # (rank, step): the first bucket in flight while image_net computes its backward
for rank in (0, 1):
    evs = json.load(open(f"{d}/trace.rank{rank}.json"))["traceEvents"]
    assert all(e["pid"] == rank for e in evs), "pid is not the rank"
    meta = {(e["tid"], e["args"]["name"]) for e in evs if e["ph"] == "M"}
    assert {(0, f"rank {rank}"), (0, "compute"), (1, "allreduce")} <= meta, meta
    x = [e for e in evs if e["ph"] == "X"]
    assert all(e["ts"] >= 0 and e["dur"] >= 0 for e in x)
    for s in range(20):
        names = sorted(e["name"] for e in x if e["args"]["step"] == s and e["tid"] == 0
                       and e["name"] not in ("prefetch", "checkpoint", "eval"))
        assert names == sorted(per_step), (rank, s, names)
        b = sorted(e["name"] for e in x if e["args"]["step"] == s and e["tid"] == 1)
        assert b == sorted(buckets), (rank, s, b)
    assert sum(e["name"] == "checkpoint" for e in x) == 2  # every 10 steps
    assert sum(e["name"] == "eval" for e in x) == 1
    comp = sorted((e["ts"], e["dur"]) for e in x if e["tid"] == 0)
    for (t0, d0), (t1, _) in zip(comp, comp[1:]):
        assert t1 >= t0 + d0 - 1e-3, ("compute events overlap", t0, d0, t1)
    for s in range(20):
        ev = {e["name"]: e for e in x if e["args"]["step"] == s}
        a, bw = ev[buckets[0]], ev["backward image_net"]
        assert a["ts"] <= bw["ts"], ("the first bucket starts after image_net's backward", rank, s)
        overlap[rank, s] = a["ts"] < bw["ts"] + bw["dur"] and a["ts"] + a["dur"] > bw["ts"]
    print(f"rank {rank}: {len(x)} events, overlap in {sum(overlap[rank, s] for s in range(20))}/20 steps")
# The rank that starts the bucket first cannot see it done before its next progress call, at the
# end of image_net's backward; the later one may find it done at once if the other was waiting.
both = sum(overlap[0, s] or overlap[1, s] for s in range(20))
assert both >= 15, f"the first bucket overlaps image_net's backward on some rank in only {both} of 20 steps"
PYEOF
  pass "$mode: trace parses, every phase per step, allreduce overlaps backward"
done

jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=off --set train.steps=3 > off.log 2>&1 \
  || { cat off.log; fail "run without trace"; }
[ -z "$(find . -name '*.rank*' -newer off.log)" ] || fail "a trace file without log.trace"
grep -q "timeline" off.log && fail "mentions a timeline without log.trace"
expect_exit 2 "log.trace" -- "$JTRAIN" train "$cfg" --set checkpoint.dir=bad --set log.trace=
expect_exit 2 "cannot write log.trace /proc/x/t.rank0.json" -- "$JTRAIN" train "$cfg" \
  --set checkpoint.dir=bad --set log.trace=/proc/x/t.json
