# tests/testlib.sh - sourced by the shell tests. CTest passes JTRAIN (the binary), JT_SRC (the
# source tree) and JT_TMP (a scratch directory for this test). Every mpirun goes through
# jt_mpirun, which runs under a hard timeout.
set -euo pipefail
: "${JTRAIN:?JTRAIN must name the jtrain binary}" "${JT_SRC:?}" "${JT_TMP:?}"
source "$JT_SRC/scripts/lib.sh"
export OPENBLAS_NUM_THREADS=1
export JT_MPI_TIMEOUT="${JT_MPI_TIMEOUT:-120}"
rm -rf "$JT_TMP"
mkdir -p "$JT_TMP"
cd "$JT_TMP"
FIX="$JT_SRC/tests/fixtures"

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# make_synth FILE [TRAIN] [TEST]: a synthetic data set (jtrain synth, seed 3).
make_synth() {
  "$JTRAIN" synth "$1" --train "${2:-600}" --test "${3:-200}" --seed 3 >/dev/null
}

# expect_exit CODE PATTERN -- CMD...: CMD must exit with CODE and print PATTERN on stderr.
expect_exit() {
  local want="$1" pat="$2"; shift 3
  local rc=0
  "$@" >out.txt 2>err.txt || rc=$?
  if [ "$rc" != "$want" ]; then
    cat out.txt err.txt >&2
    fail "expected exit $want, got $rc: $*"
  fi
  if ! grep -qE -- "$pat" err.txt; then
    cat err.txt >&2
    fail "stderr lacks /$pat/: $*"
  fi
  pass "exit $want /$pat/: ${*: -3}"
}

PY="$(jt_python)" || exit 77

# params_equal A B [DELTA [--adam]]: the parameters of two checkpoints (and with --adam, Adam's
# moments) are equal: bitwise without DELTA, else within DELTA.
params_equal() {
  "$PY" "$JT_SRC/tests/ckpt_compare.py" "$1" "$2" --delta "${3:-0}" ${4:-}
}
