#!/usr/bin/env bash
# The SLURM templates (scripts/slurm) on a real one-node SLURM cluster (tests/slurm/cluster.sh,
# started here and stopped at exit): a job is preempted, checkpoints, requeues itself, resumes
# and ends bitwise equal (parameters and Adam state) to an uninterrupted mpirun run:
#   1. jtrain.sbatch (srun), preempted with `scancel --signal=USR1` (reaches the tasks);
#   2. jtrain-mpirun.sbatch, preempted with `scancel --full --signal=USR1` (the batch shell,
#      mpirun and the ranks);
#   3. jtrain.sbatch under `--time=1 --signal=B:USR1@50`: the warning signal reaches the batch
#      shell only, which passes it on;
#   4. jtrain.sbatch cancelled by a plain `scancel`: the ranks checkpoint, the job is not requeued.
# Needs root (slurmd, munged); installs slurm-wlm and munge when missing (scripts/setup
# --with-slurm). Skips (77) otherwise, saying why. Every wait has a deadline; on a failure the
# job's output and the daemons' logs are printed.
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: the SLURM test needs root: it installs slurm-wlm and munge and starts slurmctld," \
       "slurmd and munged for a private one-node cluster"
  exit 77
fi
source "$(dirname "$0")/../testlib.sh"
export JT_MPI_TIMEOUT=300
for b in sbatch srun scontrol squeue scancel slurmctld slurmd munged; do
  if ! command -v "$b" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$b" ]; then
    "$JT_SRC/scripts/setup" --with-slurm || fail "scripts/setup --with-slurm"
    break
  fi
done
t_test=$(date +%s)
cluster="$JT_TMP-cluster" # beside JT_TMP, which testlib.sh empties on the next run
"$JT_SRC/tests/slurm/cluster.sh" start "$cluster" || fail "could not start the SLURM cluster"
trap '"$JT_SRC/tests/slurm/cluster.sh" stop "$cluster"' EXIT
export SLURM_CONF="$cluster/slurm.conf"
export JTRAIN
tmpl="$JT_SRC/scripts/slurm"

make_synth synth.h5 600 200
cfg="$FIX/tiny-separate.yaml"
steps=4000 # a step takes 0.3-5 ms here (2 ranks; slower when the machine is busy)
args=(--set "train.steps=$steps" --set log.every_steps=250 --set checkpoint.every_steps=0)

# sfail MSG: prints what the jobs wrote and the daemons' logs, then fails.
sfail() {
  local f
  {
    for f in *.out; do [ -f "$f" ] && { echo "----- $f"; grep -v '^epoch\|^  ' "$f" | tail -n 40; }; done
    squeue -t all -o '%i %j %T %r %M' 2>&1 | tail -n 10
    "$JT_SRC/tests/slurm/cluster.sh" logs "$cluster"
  } >&2
  fail "$*"
}
# wait_for FILE PATTERN SECONDS: until PATTERN (ERE) shows up in FILE, or sfail.
wait_for() {
  local deadline=$((SECONDS + $3))
  until grep -qE -- "$2" "$1" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || sfail "no /$2/ in $1 after $3 s"
    sleep 0.2
  done
}
# job_state JOB: its state (COMPLETED, RUNNING, PENDING, ...); jobs stay listed for MinJobAge.
job_state() { squeue -h -t all -j "$1" -o %T 2>/dev/null || true; }
# wait_state JOB STATE SECONDS: until JOB is in STATE, or sfail.
wait_state() {
  local deadline=$((SECONDS + $3))
  until [ "$(job_state "$1")" = "$2" ]; do
    [ "$SECONDS" -lt "$deadline" ] || sfail "job $1 is '$(job_state "$1")', not $2, after $3 s"
    sleep 0.2
  done
}
# submit NAME TEMPLATE [sbatch options] -- jtrain ARGS: prints the job id; output NAME.out,
# run folder NAME.
submit() {
  local name="$1" t="$2" opts=()
  shift 2
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  JTRAIN_RUN_DIR="$name" sbatch --parsable -n 2 -J "$name" -o "$JT_TMP/$name.out" \
    -D "$JT_TMP" "${opts[@]}" "$t" "$@" || sfail "sbatch $name"
}
now() { date +%s.%N; }
dt() { printf '%.1f' "$(echo "$2 - $1" | bc)"; }
# stop_step NAME JOB SIGNAL: the step at which NAME.out says JOB stopped for SIGNAL and was
# requeued; 0 when the signal came before jtrain started; empty if neither.
stop_step() {
  local s
  s=$(sed -n "s/.*: stopped at step \([0-9]*\) by $3; requeued job $2 (restart 1)$/\1/p" "$1.out")
  if [ -z "$s" ] && grep -q "sbatch: got $3; jtrain's status is '[a-z 0-9]*' (launcher exit [0-9]*); requeued job $2 (restart 1)$" "$1.out"; then
    s=0
  fi
  echo "$s"
}
# check_attempts NAME JOB SIGNAL STEPS: NAME.out holds two attempts of JOB (appended), the stop
# by SIGNAL, the requeue, the resume, and the run finished at STEPS; prints the stop step.
check_attempts() {
  local out="$1.out" s
  [ "$(grep -c "^jtrain.sbatch: job $2 (restart [01])\|^jtrain-mpirun.sbatch: job $2 (restart [01])" "$out")" = 2 ] \
    || sfail "$out: not exactly two attempts of job $2"
  s=$(stop_step "$1" "$2" "$3")
  [ -n "$s" ] || sfail "$out: no 'stopped at step S by $3; requeued job $2 (restart 1)'"
  if [ "$s" -gt 0 ]; then
    grep -q "^resumed from $1/ckpt-$(printf %08d "$s").h5 at step $s " "$out" \
      || sfail "$out: the second attempt did not resume at step $s"
  fi
  grep -q ": finished at step $4 (restart 1); exit 0$" "$out" || sfail "$out: not finished at $4"
  grep -qx "finished $4" "$1/status" || sfail "$1/status: $(cat "$1/status")"
  echo "$s"
}

# The two templates are the same script but for the launcher (the line naming the template).
d="$(diff "$tmpl/jtrain.sbatch" "$tmpl/jtrain-mpirun.sbatch" | grep '^[<>]' || true)"
[ "$(wc -l <<< "$d")" = 2 ] && grep -q '^> template="jtrain-mpirun.sbatch" ' <<< "$d" \
  || fail "jtrain.sbatch and jtrain-mpirun.sbatch differ in more than the template line: $d"

# The reference: the same steps on 2 ranks, uninterrupted, under plain mpirun.
t0=$(now)
jt_mpirun -np 2 "$JTRAIN" train "$cfg" "${args[@]}" --set checkpoint.dir=ref > ref.log 2>&1 \
  || { cat ref.log; fail "reference run"; }
last="ckpt-$(printf %08d $steps).h5"
pass "reference: $steps steps uninterrupted in $(dt "$t0" "$(now)") s"

# preempt_case NAME TEMPLATE SIGNAL SCANCEL-OPTIONS...: submit, preempt a quarter of the way,
# wait for the requeue and the end, compare with the reference.
preempt_case() {
  local name="$1" t="$2" sig="$3" j t1 t2 t3 t4 s
  shift 3
  t1=$(now)
  j=$(submit "$name" "$tmpl/$t" -- "$cfg" "${args[@]}")
  wait_for "$name.out" "step $((steps / 4))/" 120
  t2=$(now)
  scancel "$@" "$j" || sfail "scancel $* $j"
  wait_for "$name.out" "requeued job $j \(restart 1\)" 60
  t3=$(now)
  wait_for "$name.out" "sbatch: job $j \(restart 1\) on" 60
  t4=$(now)
  wait_state "$j" COMPLETED 300
  s=$(check_attempts "$name" "$j" "$sig" "$steps")
  params_equal "ref/$last" "$name/$last" 0 --adam || sfail "$name: final checkpoint differs"
  pass "$t, scancel $* at step $s: requeued $(dt "$t2" "$t3") s after the signal, restarted" \
       "$(dt "$t3" "$t4") s later, finished $(dt "$t4" "$(now)") s after that; bitwise equal" \
       "to the reference (job total $(dt "$t1" "$(now)") s)"
}

preempt_case srun jtrain.sbatch SIGUSR1 --signal=USR1
preempt_case mpirun jtrain-mpirun.sbatch SIGUSR1 --full --signal=USR1

# 3. Time limit: --signal=B:USR1@50 with --time=1 asks for SIGUSR1 50 s before the end; SLURM
#    checks every 30 s, so it comes at the first check after the start (0-30 s in). The run is
#    open-ended (train.steps 10^8) so it is surely training then; once the job is requeued, the
#    test holds it, sets train.steps to the stop step + 1000 and lifts the time limit, so the
#    second attempt finishes; the reference trains that many steps uninterrupted.
sed 's/^  steps: .*/  steps: 100000000/' "$cfg" > time.yaml
grep -q "steps: 100000000" time.yaml || fail "time.yaml"
t1=$(now)
j=$(submit time "$tmpl/jtrain.sbatch" --time=1 --signal=B:USR1@50 -- time.yaml --set log.every_steps=250 \
  --set checkpoint.every_steps=0)
wait_for time.out "requeued job $j \(restart 1\)" 120
t2=$(now)
scontrol hold "$j" || sfail "scontrol hold $j"
grep -q "sbatch: job $j (restart 1) on" time.out && sfail "the requeued job started before it was held"
grep -q "jtrain.sbatch: got SIGUSR1" time.out || sfail "the batch shell did not get SIGUSR1"
s=$(stop_step time "$j" SIGUSR1)
[ -n "$s" ] || sfail "time.out: no stop by SIGUSR1"
tsteps=$((s + 1000))
sed -i "s/^  steps: .*/  steps: $tsteps/" time.yaml
scontrol update JobId="$j" TimeLimit=10 || sfail "scontrol update $j TimeLimit=10"
scontrol release "$j" || sfail "scontrol release $j"
wait_state "$j" COMPLETED 300
s2=$(check_attempts time "$j" SIGUSR1 "$tsteps")
[ "$s2" = "$s" ] || sfail "time.out: stop step $s2, not $s"
t3=$(now)
jt_mpirun -np 2 "$JTRAIN" train time.yaml --set log.every_steps=250 --set checkpoint.every_steps=0 \
  --set checkpoint.dir=tref > tref.log 2>&1 || { cat tref.log; fail "reference run of $tsteps steps"; }
tlast="ckpt-$(printf %08d $tsteps).h5"
params_equal "tref/$tlast" "time/$tlast" 0 --adam || sfail "time: final checkpoint differs"
pass "--time=1 --signal=B:USR1@50: SIGUSR1 to the batch shell, stopped at step $s and requeued" \
     "$(dt "$t1" "$t2") s after submission, finished at $tsteps; bitwise equal to an uninterrupted" \
     "run (job $(dt "$t1" "$t3") s)"

# 4. A plain scancel cancels: SIGTERM reaches the tasks (and the batch shell), they checkpoint,
#    and the template does not requeue a cancelled job.
t1=$(now)
j=$(submit cancel "$tmpl/jtrain.sbatch" -- "$cfg" --set train.steps=100000000 --set log.every_steps=250 \
  --set checkpoint.every_steps=0)
wait_for cancel.out "step 1000/" 120
scancel "$j" || sfail "scancel $j"
wait_state "$j" CANCELLED 60
wait_for cancel.out "was cancelled: not requeued" 30
# The status names SIGTERM, or SIGUSR1 when the one the template passes on came last.
s=$(sed -n 's/^stopped \([0-9]*\) SIG\(TERM\|USR1\)$/\1/p' cancel/status)
[ -n "$s" ] || sfail "cancel/status: '$(cat cancel/status)', not 'stopped S SIGTERM|SIGUSR1'"
grep -q "^jtrain.sbatch: got SIGTERM" cancel.out || sfail "the batch shell got no SIGTERM"
[ -f "cancel/ckpt-$(printf %08d "$s").h5" ] || sfail "no checkpoint at step $s after scancel"
sleep 6 # longer than the requeue delay (cred_expire=5): the job must stay cancelled
[ "$(job_state "$j")" = CANCELLED ] || sfail "job $j is $(job_state "$j") after scancel"
[ "$(grep -c "job $j (restart" cancel.out)" = 1 ] || sfail "the cancelled job ran again"
pass "plain scancel: SIGTERM, checkpoint at step $s, the job stays cancelled" \
     "($(dt "$t1" "$(now)") s)"

echo "SLURM test: $(( $(date +%s) - t_test )) s"
