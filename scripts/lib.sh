# scripts/lib.sh - shared by the scripts and the shell tests (source it).
# jt_mpirun: mpirun with the flags this machine needs (root, more ranks than cores), under a
#   hard timeout (JT_MPI_TIMEOUT seconds, default 300) so a hang fails instead of stalling.
# jt_python: a Python that imports numpy and h5py (Debian's), or a clear error.

jt_mpirun() {
  local flags=()
  if [ "$(id -u)" -eq 0 ]; then flags+=(--allow-run-as-root); fi
  flags+=(--oversubscribe --bind-to none)
  timeout -k 10 "${JT_MPI_TIMEOUT:-300}" mpirun "${flags[@]}" "$@"
}

jt_python() {
  local cand
  for cand in ${JT_PYTHON:-} /usr/bin/python3 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import numpy, h5py' 2>/dev/null; then
      echo "$cand"
      return 0
    fi
  done
  echo "jtrain: no Python with numpy and h5py found (tried ${JT_PYTHON:-} /usr/bin/python3 python3);" \
       "install python3-numpy python3-h5py (scripts/setup)" >&2
  return 1
}

# jt_build [DIR]: configures and builds into DIR (default build/) and prints the binary's path.
jt_build() {
  local src dir
  src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  dir="${1:-$src/build}"
  cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$dir" -j "$(nproc)" >&2
  echo "$dir/jtrain"
}
