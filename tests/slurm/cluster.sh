#!/usr/bin/env bash
# tests/slurm/cluster.sh - a private one-node SLURM cluster for the tests, everything in DIR.
# usage: cluster.sh start DIR    writes DIR/slurm.conf and starts munged (its own key and socket),
#                                slurmctld and slurmd from it; an earlier cluster of the same DIR
#                                is stopped first; waits (bounded) until the node is idle
#        cluster.sh stop DIR     cancels every job of the cluster, stops its daemons (by the pids
#                                in DIR) and waits until they are gone; safe to call twice
#        cluster.sh logs DIR     prints the tails of the daemons' logs (for failures)
# Use the cluster with `export SLURM_CONF=DIR/slurm.conf`. Needs root (slurmd runs jobs as any
# user) and Debian's slurm-wlm and munge (scripts/setup --with-slurm). Nothing here touches the
# system's munged or /etc/slurm: the daemons listen on JT_SLURM_PORT (default 16817) and +1.
# JT_SLURM_CONF_EXTRA: more lines for slurm.conf (e.g. RequeueExit=75).
set -euo pipefail

die() { echo "cluster.sh: $*" >&2; exit 1; }

cmd="${1:-}"
dir="${2:-}"
{ [ -n "$cmd" ] && [ -n "$dir" ]; } || die "usage: cluster.sh start|stop|logs DIR"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
conf="$dir/slurm.conf"
export SLURM_CONF="$conf"

# pid_alive FILE: the pid in FILE names a running process.
pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid FILE: SIGTERM to the pid in FILE, SIGKILL after 15 s, then the file is removed.
stop_pid() {
  local f="$1" pid
  if pid_alive "$f"; then
    pid="$(cat "$f")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "cluster.sh: $f ($pid) ignored SIGTERM for 15 s; SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

logs() {
  local f
  for f in "$dir"/slurmctld.log "$dir"/slurmd.log "$dir"/munged.log; do
    [ -f "$f" ] || continue
    echo "----- tail of $f"
    tail -n 40 "$f"
  done
}

stop() {
  if pid_alive "$dir/slurmctld.pid" && [ -f "$conf" ]; then
    # Jobs first, so that no slurmstepd (which outlives slurmd) keeps running a job.
    scancel --full --quiet --signal=KILL --state=RUNNING --user=root 2>/dev/null || true
    scancel --quiet --user=root 2>/dev/null || true
    for _ in $(seq 1 100); do
      [ -z "$(squeue -h -t running,completing -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  stop_pid "$dir/slurmd.pid"
  stop_pid "$dir/slurmctld.pid"
  stop_pid "$dir/munged.pid"
}

start() {
  [ "$(id -u)" -eq 0 ] || die "must run as root"
  local b
  for b in munged slurmctld slurmd sinfo; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || die "$b not found (scripts/setup --with-slurm)"
  done
  stop
  rm -rf "$dir/state" "$dir/spool" "$dir/munge" "$dir"/*.log
  mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
  chmod 700 "$dir/munge"

  # munged with its own key and socket; it runs as root here (Debian runs it as user munge).
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  local sock="$dir/munge/munge.socket"
  /usr/sbin/munged --force --socket="$sock" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" \
    --seed-file="$dir/munge/munged.seed" --num-threads=2 \
    || { logs; die "munged did not start"; }

  local host cpus mpi=none port="${JT_SLURM_PORT:-16817}"
  host="$(hostname -s)"
  cpus="$(nproc)"
  if ls /usr/lib/*/slurm-wlm/mpi_pmix.so >/dev/null 2>&1; then mpi=pmix; fi
  # Short timers: a requeued job may start again after cred_expire seconds (default 120),
  # a killed job gets KillWait seconds between SIGTERM and SIGKILL, finished jobs stay
  # visible to squeue/scontrol for MinJobAge seconds.
  cat > "$conf" <<EOF
# Written by tests/slurm/cluster.sh: a private one-node test cluster.
ClusterName=jtraintest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock,cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
TmpFS=$dir/spool
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=$mpi
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
MinJobAge=600
KillWait=10
SlurmdTimeout=60
SlurmctldTimeout=60
InactiveLimit=0
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
${JT_SLURM_CONF_EXTRA:-}
EOF
  /usr/sbin/slurmctld -f "$conf" || { logs; die "slurmctld did not start"; }
  /usr/sbin/slurmd -f "$conf" || { logs; die "slurmd did not start"; }
  local state=""
  for _ in $(seq 1 150); do
    state="$(sinfo -h -n "$host" -o %T 2>/dev/null || true)"
    [ "$state" = idle ] && break
    sleep 0.2
  done
  [ "$state" = idle ] || { logs; die "node $host is '${state:-unknown}', not idle, after 30 s"; }
  echo "cluster.sh: one-node cluster up: $host, $cpus CPUs, MpiDefault=$mpi, SLURM_CONF=$conf"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  logs) logs ;;
  *) die "unknown command '$cmd' (start|stop|logs)" ;;
esac
