#!/usr/bin/env bash
# The watchdog (train.watchdog_s, README "Stopping"): a rank that stops (SIGSTOP) or hangs
# without progress ends the job with exit 7 within a bounded time, the message naming it and its
# last completed step, and no process is left behind; a slow but progressing rank is never
# killed; watchdog_s 0 turns it off; many short runs in a row shut it down without a hang.
source "$(dirname "$0")/../testlib.sh"
make_synth synth.h5 600 200
cfg="$FIX/tiny-separate.yaml"
export JT_MPI_TIMEOUT=90

# Every rank process a job started, to check that none survives and to clean up on failure.
all_pids=()
cleanup() {
  local pid
  for pid in "${all_pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# start NAME NP [ARGS...]: a long run (checkpoint.dir NAME, a log line per step) in the
# background; NAME.log gets its output, NAME.rc its exit code; job_pid is the subshell's pid.
start() {
  local name="$1" np="$2"
  shift 2
  ( rc=0
    jt_mpirun -np "$np" "$JTRAIN" train "$cfg" --set checkpoint.dir="$name" \
      --set train.steps=1000000 --set log.every_steps=1 "$@" > "$name.log" 2>&1 || rc=$?
    echo "$rc" > "$name.rc" ) &
  job_pid=$!
}

# rank_pids NAME: the pids of the job's ranks, in rank order (each jtrain process whose
# arguments hold checkpoint.dir=NAME; its rank from OMPI_COMM_WORLD_RANK in its environment).
rank_pids() {
  local pid r out=()
  for pid in $(pgrep -x jtrain || true); do
    tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qx "checkpoint.dir=$1" || continue
    r=$(tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
    [ -n "$r" ] && out[r]=$pid
  done
  echo "${out[@]}"
}

# wait_step NAME STEP NP: waits (at most 60 s) until rank 0 logged STEP, then sets pids to the
# job's NP rank pids.
wait_step() {
  local i
  for i in $(seq 1 600); do
    grep -q "step $2/" "$1.log" 2>/dev/null && break
    [ -e "$1.rc" ] && { cat "$1.log"; fail "$1: the job ended before step $2"; }
    sleep 0.1
  done
  grep -q "step $2/" "$1.log" || { cat "$1.log"; fail "$1: no step $2 within 60 s"; }
  read -r -a pids <<< "$(rank_pids "$1")"
  [ "${#pids[@]}" -eq "$3" ] || { cat "$1.log"; fail "$1: found ${#pids[@]} of $3 rank pids"; }
  all_pids+=("${pids[@]}")
}

# finish NAME WANT_RC: waits for the job; checks its exit code and that no rank survives.
finish() {
  wait "$job_pid" || true
  local rc pid i
  rc=$(cat "$1.rc")
  [ "$rc" = "$2" ] || { cat "$1.log"; fail "$1: exit $rc, expected $2"; }
  for pid in "${pids[@]}"; do
    for i in $(seq 1 50); do
      [ -e "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || break
      sleep 0.1
    done
    [ -e "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] \
      && { ps -o pid,stat,cmd -p "$pid"; fail "$1: rank process $pid survived the job"; }
  done
  return 0
}

# check_culprit NAME RANK WHY: the watchdog's line names RANK and WHY, and a last completed step
# "N" or "N or N+1" within one of the last step rank 0 logged before it (a rank killed by the
# abort may be continued and log another step or two first).
check_culprit() {
  local line lo hi last
  line=$(grep -m1 "jtrain: watchdog: rank $2 did not arrive at " "$1.log") \
    || { cat "$1.log"; fail "$1: no watchdog line naming rank $2"; }
  echo "$line" | grep -q "$3" || { cat "$1.log"; fail "$1: the line lacks /$3/: $line"; }
  lo=$(echo "$line" | sed -n 's/.*its last completed step is \([0-9]*\)\( or [0-9]*\)\{0,1\}$/\1/p')
  hi=$(echo "$line" | sed -n 's/.*its last completed step is [0-9]* or \([0-9]*\)$/\1/p')
  hi=${hi:-$lo}
  last=$(sed '/jtrain: watchdog:/q' "$1.log" | grep -o "step [0-9]*/" | tail -1 | tr -dc 0-9)
  [ -n "$lo" ] && [ "$lo" -ge $((last - 1)) ] && [ "$hi" -le $((last + 1)) ] \
    && [ "$hi" -le $((lo + 1)) ] \
    || { cat "$1.log"; fail "$1: last completed step '$lo'..'$hi', rank 0 last logged $last"; }
  if grep "jtrain: watchdog: rank" "$1.log" | grep -vq "rank $2 did not"; then
    cat "$1.log"; fail "$1: another rank was blamed too"
  fi
}

# (a) SIGSTOP on rank 1 with the issue's watchdog_s 20: exit 7 within ~30 s naming rank 1.
start wd-a 2 --set train.watchdog_s=20
wait_step wd-a 30 2
kill -STOP "${pids[1]}"
t0=$(date +%s.%N)
finish wd-a 7
dt=$(printf "%.1f" "$(echo "$(date +%s.%N) - $t0" | bc)")
check_culprit wd-a 1 "no heartbeat"
[ "$(echo "$dt <= 30" | bc)" = 1 ] || { cat wd-a.log; fail "wd-a: exit 7 only after $dt s"; }
pass "SIGSTOP of rank 1 (watchdog_s 20): exit 7 after $dt s naming rank 1, no process left"

# (b) SIGSTOP on rank 0, which cannot report itself: rank 1 does.
start wd-b 2 --set train.watchdog_s=5
wait_step wd-b 30 2
kill -STOP "${pids[0]}"
t0=$(date +%s.%N)
finish wd-b 7
dt=$(printf "%.1f" "$(echo "$(date +%s.%N) - $t0" | bc)")
check_culprit wd-b 0 "no heartbeat"
[ "$(echo "$dt <= 15" | bc)" = 1 ] || { cat wd-b.log; fail "wd-b: exit 7 only after $dt s"; }
pass "SIGSTOP of rank 0 (watchdog_s 5): exit 7 after $dt s naming rank 0"

# (c) np 3 (oversubscribed), SIGSTOP on the last rank.
start wd-c 3 --set train.watchdog_s=5
wait_step wd-c 30 3
kill -STOP "${pids[2]}"
t0=$(date +%s.%N)
finish wd-c 7
dt=$(printf "%.1f" "$(echo "$(date +%s.%N) - $t0" | bc)")
check_culprit wd-c 2 "no heartbeat"
[ "$(echo "$dt <= 15" | bc)" = 1 ] || { cat wd-c.log; fail "wd-c: exit 7 only after $dt s"; }
pass "np 3, SIGSTOP of rank 2 (watchdog_s 5): exit 7 after $dt s naming rank 2"

# (d) rank 1 hangs without progress (a stuck system call, 15 s): its heartbeats go on, but it is
# stuck while rank 0 waits for it.
JTRAIN_TEST_FAULT=1:20:stall start wd-d 2 --set train.watchdog_s=5
wait_step wd-d 19 2
t0=$(date +%s.%N)
finish wd-d 7
dt=$(printf "%.1f" "$(echo "$(date +%s.%N) - $t0" | bc)")
check_culprit wd-d 1 "no progress"
[ "$(echo "$dt <= 12" | bc)" = 1 ] || { cat wd-d.log; fail "wd-d: exit 7 only after $dt s"; }
pass "rank 1 stuck without progress (watchdog_s 5): exit 7 after $dt s naming rank 1"

# (e) rank 1 works for 15 s (3 x watchdog_s) but reports progress, like a long checkpoint:
# rank 0 waits for it all that time, and the run still finishes.
t0=$(date +%s.%N)
rc=0
JTRAIN_TEST_FAULT=1:20:slow jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=wd-e \
  --set train.steps=30 --set train.watchdog_s=5 > wd-e.log 2>&1 || rc=$?
dt=$(printf "%.1f" "$(echo "$(date +%s.%N) - $t0" | bc)")
[ "$rc" = 0 ] || { cat wd-e.log; fail "wd-e: a slow but progressing rank: exit $rc"; }
[ "$(echo "$dt >= 15" | bc)" = 1 ] || { cat wd-e.log; fail "wd-e: the slow rank took only $dt s"; }
! grep -q watchdog: wd-e.log || { cat wd-e.log; fail "wd-e: the watchdog spoke"; }
pass "a slow but progressing rank 1 (15 s, watchdog_s 5) is not killed (exit 0 after $dt s)"

# (f) watchdog_s 0 is off: an 8 s stall only delays the run.
rc=0
JTRAIN_TEST_FAULT=1:10:stall jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=wd-f \
  --set train.steps=20 --set train.watchdog_s=0 > wd-f.log 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat wd-f.log; fail "wd-f: watchdog_s 0 with an 8 s stall: exit $rc"; }
grep -q "step 20/20" wd-f.log || { cat wd-f.log; fail "wd-f: the run did not finish"; }
pass "watchdog_s 0: an 8 s stall only delays the run"

# (g) Shutdown: short runs in a row (np 2 and 3) end cleanly, none hangs in MPI_Finalize.
for i in $(seq 1 8); do
  np=$((2 + i % 2))
  rc=0
  JT_MPI_TIMEOUT=30 jt_mpirun -np "$np" "$JTRAIN" train "$cfg" --set checkpoint.dir="wd-g$i" \
    --set train.steps=2 --set train.watchdog_s=1 > "wd-g$i.log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { cat "wd-g$i.log"; fail "short run $i (np $np): exit $rc"; }
done
pass "8 short runs in a row (np 2 and 3, watchdog on) end cleanly"
