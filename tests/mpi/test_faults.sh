#!/usr/bin/env bash
# Faults under mpiexec: a rank that fails or dies makes the job exit non-zero with no hang; a
# data error on one rank's shard stops every rank with exit 3; a checkpoint interrupted
# mid-write leaves the previous one intact and loadable; an unwritable checkpoint dir is exit 4;
# a diverging run is exit 5; SIGUSR1 sent to mpirun stops the job with a checkpoint and exit 75.
source "$(dirname "$0")/../testlib.sh"
make_synth synth.h5 600 200
cfg="$FIX/tiny-separate.yaml"
export JT_MPI_TIMEOUT=60

run2() { jt_mpirun -np 2 "$JTRAIN" train "$cfg" "$@"; }

# A rank hits an internal error: every rank is aborted, non-zero exit, well before the timeout.
t0=$(date +%s); rc=0
JTRAIN_TEST_FAULT=1:3:fatal run2 --set checkpoint.dir=f1 > f1.log 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { cat f1.log; fail "fatal on rank 1: exit $rc"; }
grep -q "rank 1: internal error" f1.log || { cat f1.log; fail "no message naming rank 1"; }
[ $(( $(date +%s) - t0 )) -lt 30 ] || fail "fatal error took too long to stop the job"
pass "an internal error on rank 1 stops the job (exit $rc)"

# A rank dies without a word (SIGKILL): the job still ends, non-zero, no hang.
t0=$(date +%s); rc=0
JTRAIN_TEST_FAULT=1:3:crash run2 --set checkpoint.dir=f2 > f2.log 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { cat f2.log; fail "crash of rank 1: exit $rc"; }
[ $(( $(date +%s) - t0 )) -lt 30 ] || fail "crash took too long to stop the job"
pass "a rank killed mid-run ends the job (exit $rc)"

# A label out of range in the second half of the file: only rank 1 sees it; all exit 3.
cp synth.h5 badlabel.h5
"$PY" -c "import h5py; f=h5py.File('badlabel.h5','r+'); f['train/speaker'][590]=99"
expect_exit 3 "rank 1: .*speaker.*590.*99" -- bash -c \
  "source '$JT_SRC/scripts/lib.sh'; jt_mpirun -np 2 '$JTRAIN' train '$cfg' --set data.file=badlabel.h5 --set checkpoint.dir=f3"

# Crash in the middle of writing checkpoint 30: latest still names 20, which loads and resumes.
run2 --set checkpoint.dir=ck --set train.steps=20 > ck1.log 2>&1 || fail "first run"
rc=0
JTRAIN_TEST_CKPT_CRASH=mid-write run2 --set checkpoint.dir=ck --set train.steps=30 \
  --resume auto > ck2.log 2>&1 || rc=$?
[ "$rc" -ne 0 ] || { cat ck2.log; fail "the crashing writer exited 0"; }
[ "$(cat ck/latest)" = "ckpt-00000020.h5" ] || fail "latest moved to $(cat ck/latest)"
[ ! -e ck/ckpt-00000030.h5 ] || fail "a partial checkpoint 30 was published"
"$JTRAIN" eval ck/ckpt-00000020.h5 --json > ev.json || fail "checkpoint 20 does not load"
run2 --set checkpoint.dir=ck --set train.steps=30 --resume auto > ck3.log 2>&1 \
  || { cat ck3.log; fail "resume after the crash"; }
grep -q "resumed from ck/ckpt-00000020.h5" ck3.log || fail "did not resume from 20"
pass "a crash mid-write keeps the previous checkpoint (exit $rc), resume works"

# The checkpoint directory cannot be created: exit 4 on every rank, naming the path.
touch notadir
expect_exit 4 "notadir" -- bash -c \
  "source '$JT_SRC/scripts/lib.sh'; jt_mpirun -np 2 '$JTRAIN' train '$cfg' --set checkpoint.dir=notadir/sub"

# A learning rate that blows up: exit 5 (NaN/Inf), all ranks.
expect_exit 5 "NaN/Inf" -- bash -c \
  "source '$JT_SRC/scripts/lib.sh'; jt_mpirun -np 2 '$JTRAIN' train '$cfg' --set train.optimizer.lr=1e30 --set checkpoint.dir=nan"

# SIGUSR1 to mpirun itself (not the ranks): Open MPI forwards it, the ranks checkpoint, and the
# job exits 75 (README "Stopping").
( rc=0; jt_mpirun -np 2 "$JTRAIN" train "$cfg" --set checkpoint.dir=usr1 --set train.steps=100000 \
    > usr1.log 2>&1 || rc=$?; echo "$rc" > usr1.rc ) &
for _ in $(seq 1 100); do grep -q "step 10/" usr1.log 2>/dev/null && break; sleep 0.2; done
pkill -USR1 -f "^mpirun .*checkpoint.dir=usr1 " || fail "no mpirun to signal"
wait
[ "$(cat usr1.rc)" = 75 ] || { tail usr1.log; fail "SIGUSR1 to mpirun: exit $(cat usr1.rc), not 75"; }
[ -f "usr1/$(cat usr1/latest)" ] || fail "no checkpoint after SIGUSR1 to mpirun"
pass "SIGUSR1 to mpirun: checkpoint $(cat usr1/latest), exit 75"
