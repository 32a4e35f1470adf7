#!/usr/bin/env bash
# Signals everywhere (README "Stopping") and the status file of the run folder:
# - SIGINT to a single process (no mpirun) in the loop: checkpoint, exit 75, status "stopped";
# - SIGTERM during start-up or the final evaluation ends every rank at once with exit 75 and
#   writes no checkpoint (nothing newer to save), status "stopped" at the newest checkpoint;
# - a second Ctrl-C (SIGINT) while the first is being handled ends the process with 130;
# - status says "running" during a run and "finished" after it, "failed S CODE" on an error.
source "$(dirname "$0")/../testlib.sh"
make_synth synth.h5 600 200
cfg="$FIX/tiny-separate.yaml"
export JT_MPI_TIMEOUT=90

# wait_for FILE PATTERN [SECONDS]: until PATTERN shows up in FILE, or fail.
wait_for() {
  local i
  for i in $(seq 1 $(( ${3:-30} * 5 ))); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  cat "$1" >&2
  fail "no /$2/ in $1 after ${3:-30} s"
}

# pids_of DIR: the jtrain processes training into checkpoint.dir DIR.
pids_of() { pgrep -f "^$JTRAIN train .*checkpoint.dir=$1( |$)" || true; }

# bg NAME CMD...: runs CMD in the background; NAME.rc gets its exit code, NAME.log its output.
bg() {
  local name="$1"; shift
  ( rc=0; "$@" > "$name.log" 2>&1 || rc=$?; echo "$rc" > "$name.rc" ) &
}

# finished_within NAME SECONDS: NAME's command ended within SECONDS; prints its exit code.
finished_within() {
  local i
  for i in $(seq 1 $(( $2 * 10 ))); do
    [ -f "$1.rc" ] && { cat "$1.rc"; return 0; }
    sleep 0.1
  done
  cat "$1.log" >&2
  fail "$1 did not end within $2 s"
}

# 1. Ctrl-C on a single process (no mpirun) during training: checkpoint, exit 75, resumable.
bg int "$JTRAIN" train "$cfg" --set checkpoint.dir=int --set train.steps=100000 \
  --set log.every_steps=10
wait_for int.log "step 20/"
grep -qx "running 0" int/status || fail "status during the run: $(cat int/status)"
kill -INT $(pids_of int)
rc=$(finished_within int 20)
[ "$rc" = 75 ] || { cat int.log; fail "SIGINT: exit $rc, not 75"; }
step=$(sed -n 's/.*stopped by a signal at step \([0-9]*\) (SIGINT).*/\1/p' int.log)
[ -n "$step" ] || { cat int.log; fail "no stop line naming SIGINT"; }
[ -f "int/$(printf 'ckpt-%08d.h5' "$step")" ] || fail "no checkpoint at step $step"
grep -qx "stopped $step SIGINT" int/status || fail "status after SIGINT: $(cat int/status)"
pass "Ctrl-C on one process: checkpoint at step $step, exit 75, status '$(cat int/status)'"

# 1b. SIGUSR1 and then SIGTERM at once (a SLURM time limit: the template forwards SIGUSR1, SLURM
#     sends SIGTERM): the second signal does not cut the stop short.
bg two jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=two --set train.steps=100000 \
  --set log.every_steps=10
wait_for two.log "step 20/"
kill -USR1 $(pids_of two); kill -TERM $(pids_of two)
rc=$(finished_within two 30)
[ "$rc" = 75 ] || { cat two.log; fail "SIGUSR1 + SIGTERM: exit $rc, not 75"; }
grep -q "stopped by a signal at step [0-9]* (SIGUSR1)" two.log || { cat two.log; fail "no stop line"; }
grep -q "^stopped [0-9]* SIGUSR1$" two/status || fail "status after SIGUSR1 + SIGTERM: $(cat two/status)"
pass "a second signal while stopping is ignored: '$(cat two/status)'"

# 2. SIGTERM to every rank (as srun delivers it) while rank 0 hangs in start-up: exit 75 at
#    once; the status names the newest checkpoint's step (none yet: 0).
t0=$(date +%s.%N)
JTRAIN_TEST_FAULT=0:init:stall bg up jt_mpirun -np 2 "$JTRAIN" train "$cfg" \
  --set checkpoint.dir=up
for _ in $(seq 1 50); do [ "$(pids_of up | wc -l)" = 2 ] && break; sleep 0.2; done
sleep 2 # both ranks are now in start-up: rank 0 stalled, rank 1 waiting for it
kill -TERM $(pids_of up)
t1=$(date +%s.%N)
rc=$(finished_within up 10)
dt=$(echo "$(date +%s.%N) - $t1" | bc)
[ "$rc" = 75 ] || { cat up.log; fail "SIGTERM in start-up: exit $rc, not 75"; }
grep -q "stopped by SIGTERM outside the training loop" up.log || { cat up.log; fail "no message"; }
grep -qx "stopped 0 SIGTERM" up/status || fail "status after SIGTERM in start-up: $(cat up/status)"
ls up/ckpt-*.h5 >/dev/null 2>&1 && fail "a checkpoint was written during start-up"
pass "SIGTERM during start-up: exit 75 after $dt s, status '$(cat up/status)'"

# 3. SIGTERM during the final evaluation: the final checkpoint is already there; exit 75 at once.
JTRAIN_TEST_FAULT=0:eval:stall bg ev jt_mpirun -np 2 "$JTRAIN" train "$cfg" \
  --set checkpoint.dir=ev --set train.steps=20
wait_for ev.log "checkpoint ev/ckpt-00000020.h5"
sleep 1
kill -TERM $(pids_of ev)
rc=$(finished_within ev 10)
[ "$rc" = 75 ] || { cat ev.log; fail "SIGTERM in the final evaluation: exit $rc, not 75"; }
grep -qx "stopped 20 SIGTERM" ev/status || fail "status: $(cat ev/status)"
jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=ev --set train.steps=20 \
  --resume auto > ev2.log 2>&1 || { cat ev2.log; fail "resume after the stop in evaluation"; }
grep -q "^eval test step 20 |" ev2.log || { cat ev2.log; fail "the resumed run did not evaluate"; }
grep -qx "finished 20" ev/status || fail "status after the resumed run: $(cat ev/status)"
pass "SIGTERM during the final evaluation: exit 75; the resumed run evaluates and finishes"

# 4. A second Ctrl-C while the first one waits for the step to end: exit 130 at once.
JTRAIN_TEST_FAULT=0:5:stall bg int2 "$JTRAIN" train "$cfg" --set checkpoint.dir=int2 \
  --set train.steps=100
for _ in $(seq 1 50); do [ -n "$(pids_of int2)" ] && break; sleep 0.2; done
sleep 2
kill -INT $(pids_of int2)
sleep 0.5
[ -f int2.rc ] && { cat int2.log; fail "the first SIGINT ended a stalled step"; }
kill -INT $(pids_of int2)
rc=$(finished_within int2 5)
[ "$rc" = 130 ] || { cat int2.log; fail "second SIGINT: exit $rc, not 130"; }
pass "a second Ctrl-C ends the process at once (exit 130)"

# 5. Errors are recorded: a diverging run (exit 5) leaves "failed S 5".
rc=0
"$JTRAIN" train "$cfg" --set checkpoint.dir=nan --set train.optimizer.lr=1e30 > nan.log 2>&1 \
  || rc=$?
[ "$rc" = 5 ] || { cat nan.log; fail "lr 1e30: exit $rc, not 5"; }
grep -q "^failed [0-9]* 5$" nan/status || fail "status after exit 5: $(cat nan/status)"
pass "an error exit leaves status '$(cat nan/status)'"
