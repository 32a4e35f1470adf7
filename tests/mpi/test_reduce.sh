#!/usr/bin/env bash
# The gradient sum (comm.h jt_comm_reducer, reduce_check.c does the checks on each run): in the
# shared-memory mode every summed float is bitwise the left-to-right sum over ranks on 1-3
# ranks, also through the multi-node path (JTRAIN_TEST_NODE_SIZE makes "nodes" on one machine);
# the MPI mode is right up to rounding; floats outside the buckets are untouched; every rank
# holds bitwise the same sum. Then whole runs: on 2 ranks the sum is x0 + x1 whatever the mode
# and the bucketing, so shm with one bucket, shm with many small buckets overlapping backward,
# MPI_Iallreduce buckets and one blocking MPI_Allreduce end with bitwise-identical parameters;
# so do 3 ranks on one node and on two "nodes" ((x0 + x1) + x2 both ways). A bad switch value
# is a usage error.
source "$(dirname "$0")/../testlib.sh"
bin="$(dirname "$JTRAIN")/reduce_check"
[ -x "$bin" ] || fail "missing $bin"

check() { # NP MODE EXPECT [NODE_SIZE]
  local out
  out=$(JTRAIN_TEST_NODE_SIZE="${4:-}" jt_mpirun -np "$1" "$bin" "$2" "$3" 2>&1) \
    || { echo "$out" >&2; fail "reduce_check np $1 $2 $3 node size ${4:-all}"; }
  echo "np $1 $2 ${4:+node size $4 }-> $(echo "$out" | tail -1)"
  [ -z "${5:-}" ] || echo "$out" | grep -q "$5" || fail "np $1 $2: not '$5': $out"
}
check 1 shm exact "" "none"
check 2 shm exact "" "shm, 1 node of 2"
check 3 shm exact "" "shm, 1 node of 3"
check 2 auto exact "" "shm, 1 node of 2"
check 2 mpi close "" "mpi"
check 3 mpi close "" "mpi"
check 3 shm exact 2 "shm on 2 nodes"
check 2 shm exact 1 "shm on 2 nodes"
check 3 shm close 1 "shm on 3 nodes"
check 2 auto exact 1 "mpi"   # one rank per node: nothing to share
pass "reducer sums right and identically on every rank"

make_synth synth.h5 600 200
cfg="$FIX/tiny-separate.yaml"
run() { # NAME NP [ENV...]: a 12-step run into checkpoint dir NAME
  local name="$1" np="$2"; shift 2
  env "$@" bash -c "source '$JT_SRC/scripts/lib.sh'; jt_mpirun -np $np '$JTRAIN' train '$cfg' \
    --set checkpoint.dir=$name --set train.steps=12" > "$name.log" 2>&1 \
    || { cat "$name.log"; fail "run $name"; }
}
run shm1 2 JTRAIN_ALLREDUCE=shm JTRAIN_BUCKET_KB=0
grep -q "gradient sum: shm, 1 node of 2 ranks, 1 bucket" shm1.log || fail "shm1: $(grep gradient shm1.log)"
run shm_many 2 JTRAIN_ALLREDUCE=shm JTRAIN_BUCKET_KB=1
grep -q "gradient sum: shm, 1 node of 2 ranks, 3 buckets, overlapping backward" shm_many.log \
  || fail "shm_many: $(grep gradient shm_many.log)"
run mpi 2 JTRAIN_ALLREDUCE=mpi JTRAIN_BUCKET_KB=1
grep -q "gradient sum: mpi, MPI_Iallreduce per bucket, 3 buckets" mpi.log || fail "mpi: $(grep gradient mpi.log)"
run mpi1 2 JTRAIN_ALLREDUCE=mpi   # no JTRAIN_BUCKET_KB: one bucket by default in this mode
grep -q "gradient sum: mpi, blocking MPI_Allreduce, 1 bucket" mpi1.log || fail "mpi1: $(grep gradient mpi1.log)"
params_equal shm1/ckpt-00000012.h5 shm_many/ckpt-00000012.h5 0 --adam || fail "buckets change the sum"
params_equal shm1/ckpt-00000012.h5 mpi/ckpt-00000012.h5 0 --adam || fail "shm and mpi differ on 2 ranks"
params_equal shm1/ckpt-00000012.h5 mpi1/ckpt-00000012.h5 0 --adam || fail "shm and blocking mpi differ"
pass "2 ranks: shm one bucket = shm overlapped buckets = mpi buckets = blocking mpi, bitwise"
run np3 3 JTRAIN_BUCKET_KB=1
run np3_nodes 3 JTRAIN_BUCKET_KB=1 JTRAIN_TEST_NODE_SIZE=2
grep -q "shm on 2 nodes" np3_nodes.log || fail "np3_nodes: $(grep gradient np3_nodes.log)"
params_equal np3/ckpt-00000012.h5 np3_nodes/ckpt-00000012.h5 0 --adam || fail "two nodes differ"
pass "3 ranks: one node = two nodes, bitwise"

expect_exit 2 "JTRAIN_ALLREDUCE=nccl: expected auto, shm or mpi" -- env JTRAIN_ALLREDUCE=nccl \
  bash -c "source '$JT_SRC/scripts/lib.sh'; jt_mpirun -np 2 '$JTRAIN' train '$cfg' --set checkpoint.dir=bad"
expect_exit 2 "JTRAIN_BUCKET_KB=-1" -- env JTRAIN_BUCKET_KB=-1 "$JTRAIN" train "$cfg" --set checkpoint.dir=bad
