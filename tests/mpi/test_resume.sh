#!/usr/bin/env bash
# A run of 2k steps and a run of k steps resumed for k more end with bitwise-identical
# parameters and Adam state (same N, same threads), also when the stop comes from SIGUSR1 (exit
# 75), and a checkpoint resumes on a different number of ranks.
source "$(dirname "$0")/../testlib.sh"
make_synth synth.h5 600 200
cfg="$FIX/tiny-separate.yaml"

jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=full --set train.steps=30 \
  > full.log 2>&1 || { cat full.log; fail "uninterrupted run"; }
jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=part --set train.steps=15 \
  > part1.log 2>&1 || { cat part1.log; fail "first half"; }
jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=part --set train.steps=30 \
  --resume auto > part2.log 2>&1 || { cat part2.log; fail "resumed half"; }
grep -q "resumed from part/ckpt-00000015.h5 at step 15" part2.log || fail "did not resume at 15"
params_equal full/ckpt-00000030.h5 part/ckpt-00000030.h5 0 --adam || fail "params or Adam differ"
pass "resume is bitwise identical to the uninterrupted run"

# Resume from an explicit path on 1 rank: runs (same trajectory up to summation order).
jt_mpirun -np 1 "$JTRAIN" train "$cfg" --set checkpoint.dir=np1 --set train.steps=30 \
  --resume part/ckpt-00000015.h5 > np1.log 2>&1 || { cat np1.log; fail "resume on 1 rank"; }
params_equal full/ckpt-00000030.h5 np1/ckpt-00000030.h5 2e-4 || fail "np1 resume drifted"
pass "a 2-rank checkpoint resumes on 1 rank"

# SIGUSR1: checkpoint, exit 75, then --resume auto finishes bitwise like the full run.
rm -rf sig
( rc=0; jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=sig --set train.steps=3000 \
    --set checkpoint.every_steps=0 > sig1.log 2>&1 || rc=$?; echo "$rc" > sig1.rc ) &
for _ in $(seq 1 100); do grep -q "step 10/" sig1.log 2>/dev/null && break; sleep 0.2; done
pkill -USR1 -f "^$JTRAIN train $cfg --set checkpoint.dir=sig " || fail "no process to signal"
wait
[ "$(cat sig1.rc)" = 75 ] || { cat sig1.log; fail "signal run exited $(cat sig1.rc), not 75"; }
grep -q "stopped by a signal at step" sig1.log || fail "no stop message"
stopped=$(sed -n 's/.*stopped by a signal at step \([0-9]*\).*/\1/p' sig1.log)
jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=sig --set train.steps=$((stopped + 10)) \
  --resume auto > sig2.log 2>&1 || { cat sig2.log; fail "resume after signal"; }
jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=sigref --set train.steps=$((stopped + 10)) \
  --set checkpoint.every_steps=0 > sigref.log 2>&1 || fail "reference run"
last=$(printf "ckpt-%08d.h5" $((stopped + 10)))
params_equal "sig/$last" "sigref/$last" 0 --adam || fail "signal+resume differs"
pass "SIGUSR1 at step $stopped: exit 75, resume bitwise identical"
