#!/usr/bin/env bash
# Packaging: `cmake --install` of this build into a scratch prefix, then the prefix used as a
# user would: a CMake project outside the tree (tests/fixtures/consumer) that finds jtrain with
# find_package(jtrain) and links jtrain::core; the same main.c compiled with
# `cc $(pkg-config --cflags --libs --static jtrain)`; the installed jtrain binary, the
# jtrain-* commands in bin and share/jtrain, and the AVFM recipes. Every step under a timeout.
source "$(dirname "$0")/../testlib.sh"
BUILD="$(cd "$(dirname "$JTRAIN")" && pwd)"
P="$JT_TMP/prefix"
to() { local s="$1"; shift; timeout -k 10 "$s" "$@"; }   # to SECONDS CMD...
cache() { sed -n "s/^$1:[A-Z]*=//p" "$BUILD/CMakeCache.txt"; }
# run LOG CMD...: CMD must succeed; else its output and a failure.
run() {
  local log="$1"; shift
  if ! "$@" >"$log" 2>&1; then cat "$log" >&2; fail "$*"; fi
}
LIBDIR="$(cache CMAKE_INSTALL_LIBDIR)"
VERSION="$(cache CMAKE_PROJECT_VERSION)"
if [ -z "$LIBDIR" ] || [ -z "$VERSION" ]; then
  fail "no CMAKE_INSTALL_LIBDIR/CMAKE_PROJECT_VERSION in $BUILD/CMakeCache.txt"
fi

run install.log to 300 cmake --install "$BUILD" --prefix "$P"
for f in bin/jtrain "$LIBDIR/libjtrain_core.a" include/jtrain/config.h include/jtrain/comm.h \
         "$LIBDIR/cmake/jtrain/jtrainConfig.cmake" "$LIBDIR/cmake/jtrain/jtrainConfigVersion.cmake" \
         "$LIBDIR/cmake/jtrain/jtrainTargets.cmake" "$LIBDIR/pkgconfig/jtrain.pc" \
         bin/jtrain-convert bin/jtrain-mask-labels \
         share/jtrain/scripts/jtrain-convert share/jtrain/scripts/jtrain_convert.py \
         share/jtrain/scripts/jtrain_audio.py share/jtrain/scripts/jtrain-mask-labels \
         share/jtrain/scripts/jtrain_mask_labels.py share/jtrain/scripts/lib.sh \
         share/jtrain/scripts/jtrain_torch.py \
         share/jtrain/datasets/avfm/build share/jtrain/datasets/avfm/avfm_build.py \
         share/jtrain/datasets/avfm/shared.yaml share/jtrain/datasets/avfm/separate.yaml; do
  [ -e "$P/$f" ] || fail "not installed: $f"
done
for f in "$JT_SRC"/scripts/jtrain-* "$JT_SRC"/scripts/jtrain_*.py "$JT_SRC"/datasets/avfm/*.yaml; do
  rel="${f#"$JT_SRC"/}"
  [ -e "$P/share/jtrain/$rel" ] || fail "not installed: share/jtrain/$rel"
done
for f in "$JT_SRC"/scripts/jtrain-*; do
  [ -x "$P/bin/$(basename "$f")" ] || fail "no bin/$(basename "$f")"
done
pass "installed into the prefix"

# The installed binary.
to 30 "$P/bin/jtrain" --version > version.txt || fail "installed jtrain --version"
grep -qx "jtrain $VERSION.*" version.txt || { cat version.txt >&2; fail "jtrain --version is not $VERSION"; }
to 30 "$P/bin/jtrain" --help > help.txt || fail "installed jtrain --help"
grep -q "jtrain train CONFIG" help.txt || fail "installed jtrain --help prints no usage"
pass "installed jtrain --version: $(cat version.txt)"

# want: what the consumer prints for 2 ranks (main.c: 0.01 * (1 + cos(3 pi / 8)) / 2).
want="ranks 2 heads 2 word speaker schedule cosine lr 0.006913"

# A CMake consumer: find_package(jtrain) from the prefix only (no package registry).
run consumer-configure.log to 300 cmake -S "$FIX/consumer" -B consumer-build \
  -DCMAKE_PREFIX_PATH="$P" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_BUILD_TYPE=Release
found="$(sed -n 's/^jtrain_DIR:PATH=//p' consumer-build/CMakeCache.txt)"
[ "$found" -ef "$P/$LIBDIR/cmake/jtrain" ] || fail "find_package(jtrain) found '$found', not the prefix"
run consumer-build.log to 300 cmake --build consumer-build
run consumer-run.log jt_mpirun -np 2 consumer-build/app
grep -qx "$want" consumer-run.log || { cat consumer-run.log >&2; fail "CMake consumer printed no '$want'"; }
pass "CMake consumer (find_package(jtrain), jtrain::core): $want"

# The same program through pkg-config, statically linked against libjtrain_core.a.
export PKG_CONFIG_PATH="$P/$LIBDIR/pkgconfig"
[ "$(pkg-config --modversion jtrain)" = "$VERSION" ] || fail "pkg-config --modversion jtrain"
flags="$(pkg-config --cflags --libs --static jtrain)" || fail "pkg-config --cflags --libs --static jtrain"
echo "$flags" > pkg-config-flags.txt
# shellcheck disable=SC2086
run pc-build.log to 300 "${CC:-cc}" -std=c11 -o app-pc "$FIX/consumer/main.c" $flags
run pc-run.log jt_mpirun -np 2 ./app-pc
grep -qx "$want" pc-run.log || { cat pc-run.log >&2; fail "pkg-config consumer printed no '$want'"; }
pass "pkg-config consumer (--static): $want"

# The user commands, from bin, from share/jtrain/scripts and through a symlink to bin, run
# from another folder: each finds its Python module and lib.sh.
mkdir -p elsewhere links
for cmd in "$JT_SRC"/scripts/jtrain-*; do
  cmd="$(basename "$cmd")"
  ln -sf "$P/bin/$cmd" "links/$cmd"
  for exe in "$P/bin/$cmd" "$P/share/jtrain/scripts/$cmd" "$JT_TMP/links/$cmd"; do
    (cd elsewhere && to 60 "$exe" --help) > help.txt 2>&1 || { cat help.txt >&2; fail "$exe --help"; }
    grep -qi "usage" help.txt || { cat help.txt >&2; fail "$exe --help prints no usage"; }
  done
  pass "$cmd --help (bin, share/jtrain/scripts, a symlink)"
done
(cd elsewhere && to 60 "$P/share/jtrain/datasets/avfm/build" --help) > help.txt 2>&1 \
  || { cat help.txt >&2; fail "share/jtrain/datasets/avfm/build --help"; }
grep -qi "usage" help.txt || fail "avfm build --help prints no usage"
pass "share/jtrain/datasets/avfm/build --help"
