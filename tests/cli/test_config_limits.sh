#!/usr/bin/env bash
# Configs that once took minutes, hours or all the memory (issue 9) are each answered within
# seconds with exit 2 and a line that says why: 300k blocks, nesting 100k deep, 16 MB of values,
# comments or escapes, alias bombs, a 1e6-unit layer, a batch of 1e8, 2^60 epochs, lr 1e300, a
# bad UTF-8 byte (on its own line), too many heads or data arrays. Each run must take less than
# LIMIT_S seconds (generous: the machine is shared; the config is read in < 0.5 s).
source "$(dirname "$0")/../testlib.sh"
make_synth synth.h5 300 100
base="$FIX/tiny-shared.yaml"
LIMIT_S=5

# fast_exit CODE PATTERN -- CMD...: expect_exit, and within LIMIT_S seconds.
fast_exit() {
  local t0 t1
  t0=$(date +%s%N)
  expect_exit "$@"
  t1=$(date +%s%N)
  local ms=$(( (t1 - t0) / 1000000 ))
  [ "$ms" -le $(( LIMIT_S * 1000 )) ] || fail "took $ms ms (limit $LIMIT_S s): ${*: -1}"
  echo "   $ms ms"
}
train() { "$JTRAIN" train "$@" --set checkpoint.dir=run --overwrite; }

"$PY" - "$base" <<'PY'
import sys
base = open(sys.argv[1]).read()
MAX = 16 * 1024 * 1024
def w(name, text):
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    assert len(data) <= MAX or name == "toobig.yaml", (name, len(data))
    open(name, "wb").write(data)
head = "data: {file: synth.h5}\nmodel:\n  blocks:\n"
tail = "  heads:\n    h: {input: b0, target: word}\ntrain: {steps: 2, batch_size: 8}\n"
w("blocks300k.yaml", head + "".join("    b%d: {input: audio, layers: [flatten]}\n" % i
                                    for i in range(300000)) + tail)             # 13.7 MB
w("blocks12k.yaml", head + "".join("    b%d: {input: audio, layers: [flatten]}\n" % i
                                   for i in range(12000)) + tail)              # 84k values: under the limit
w("deep100k.yaml", base + "extra: " + "[" * 100000 + "\n")
w("deepmap.yaml", base + "extra: " + "{a: " * 100000 + "\n")
room = MAX - len(base) - 64
w("values16m.yaml", base + "extra: [" + "0," * (room // 2 - 8) + "0]\n")
w("scalar16m.yaml", base + "bogus: " + "x" * (room - 16) + "\n")               # read to the end
w("comments16m.yaml", base + ("#" + "c" * 98 + "\n") * (room // 100 - 1) + "bogus: 1\n")
w("escapes16m.yaml", base + 'bogus: "' + "\\u00e9" * (room // 6 - 4) + '"\n')
w("toobig.yaml", base + "#" * MAX + "\n")
lol = "".join("  a%d: &a%d [*a%d, *a%d]\n" % (i, i, i - 1, i - 1) for i in range(1, 40))
w("laughs.yaml", base + "x:\n  a0: &a0 [x, x]\n" + lol)                       # 2^40 values
L = "[" + ", ".join(["flatten"] * 10000) + "]"
w("aliasbomb.yaml", head + "    b0: {input: audio, layers: &L %s}\n" % L +
  "".join("    b%d: {input: audio, layers: *L}\n" % i for i in range(1, 200)) + tail)
w("aliasloop.yaml", base.replace("  file: synth.h5", "  file: &f [*f]"))
lines = base.encode().split(b"\n")
lines[2] += b" \xff"                                                            # line 3
w("badutf8.yaml", b"\n".join(lines))
w("heads13.yaml", base.replace("  heads:\n", "  heads:\n" + "".join(
    "    x%d: {input: trunk, target: word}\n" % i for i in range(11))))
w("arrays17.yaml", base.replace("  heads:\n", "".join(
    "    i%d: {input: a%d, layers: [relu]}\n" % (i, i) for i in range(17)) + "  heads:\n"))
PY

# Parsing: bounded before libyaml builds anything deep or large.
fast_exit 2 "blocks300k.yaml:[0-9]+: the config has more than 100000 values" -- train blocks300k.yaml
fast_exit 2 "blocks12k.yaml:4: model.blocks: 12000 blocks, more than the limit of 256" -- train blocks12k.yaml
fast_exit 2 "deep100k.yaml:23: the config nests deeper than 64 levels" -- train deep100k.yaml
fast_exit 2 "deepmap.yaml:23: the config nests deeper than 64 levels" -- train deepmap.yaml
fast_exit 2 "values16m.yaml:23: the config has more than 100000 values" -- train values16m.yaml
fast_exit 2 "scalar16m.yaml:23: bogus: unknown key" -- train scalar16m.yaml
fast_exit 2 "comments16m.yaml:[0-9]{6}: bogus: unknown key" -- train comments16m.yaml
fast_exit 2 "escapes16m.yaml:23: bogus: unknown key" -- train escapes16m.yaml
fast_exit 2 "toobig.yaml: not a config: larger than 16777216 bytes" -- train toobig.yaml
fast_exit 2 "laughs.yaml:[0-9]+: the config has more than 100000 values \(an alias counts" -- train laughs.yaml
fast_exit 2 "aliasbomb.yaml:[0-9]+: the config has more than 100000 values" -- train aliasbomb.yaml
fast_exit 2 "aliasloop.yaml:3: alias \*f is inside the node it repeats" -- train aliasloop.yaml
fast_exit 2 "badutf8.yaml:3: YAML syntax error: invalid leading UTF-8 octet" -- train badutf8.yaml
fast_exit 2 "heads13.yaml:[0-9]+: model.heads: 13 heads, more than the limit of 12" -- train heads13.yaml
fast_exit 2 "arrays17.yaml:[0-9]+: model.blocks.i15.input: 'a15' would be data set array number 17" \
  -- train arrays17.yaml

# Numbers: floats that hold as float32, a run length that cannot wrap.
fast_exit 2 "tiny-shared.yaml:--set: train.optimizer.lr: expected a number > 0 that a float holds.*found '1e300'" \
  -- train "$base" --set train.optimizer.lr=1e300 --set data.file=synth.h5
fast_exit 2 "train.epochs: expected an integer in \[0, 1000000000\], found '1152921504606846976'" \
  -- train "$base" --set train.steps=0 --set train.epochs=1152921504606846976 --set data.file=synth.h5
fast_exit 2 "train.batch_size: expected an integer >= 1, found '1e8'" \
  -- train "$base" --set train.batch_size=1e8 --set data.file=synth.h5

# Sizes: refused before allocating, with the estimate and the machine's memory (the 1e6-unit
# model needs 49 GiB: on a 16 GiB machine, or any machine with less free).
export JTRAIN_TEST_MEM_MB=16384
fast_exit 2 "the model needs about 59.0 GiB per rank for batch 32 \(32 rows per rank\): parameters 29.0 GiB \(weights, gradients, Adam m and v, per-head gradients of shared blocks\).*largest layer is trunk.1.dense.*16.0 GiB available of 16.0 GiB" \
  -- train "$base" --set data.file=synth.h5 --set 'model.blocks.trunk.layers=[flatten, {dense: {units: 1000000}}, relu]'
unset JTRAIN_TEST_MEM_MB
JTRAIN_TEST_MEM_MB=1 fast_exit 2 "the model needs about [0-9.]+ MiB per rank for batch 256 \(256 rows per rank\).*available of" \
  -- train "$base" --set data.file=synth.h5 --set train.batch_size=256
# A batch larger than the split is the whole split (a warning), sized for the split's rows, not
# for the setting (batch 1e8 used to end in an out-of-memory abort, 1e6 took 13 GB and 35 s).
fast_exit 0 "warning: train.batch_size 100000000 is larger than the [0-9]+ rows of synth.h5 /train" \
  -- train "$base" --set data.file=synth.h5 --set train.batch_size=100000000 --set train.steps=2
# Under MPI: the same exit 2 on every rank, reported once, no MPI_ABORT banner (mpirun itself
# takes 1-3 s to start here, hence the longer limit).
JTRAIN_TEST_MEM_MB=1 LIMIT_S=10 fast_exit 2 "needs about .* for batch 256 \(128 rows per rank\)" -- bash -c \
  "source '$JT_SRC/scripts/lib.sh'; jt_mpirun -np 2 '$JTRAIN' train '$base' --set data.file=synth.h5 --set checkpoint.dir=run --set train.batch_size=256 --overwrite"
[ "$(grep -c 'needs about' err.txt)" = 1 ] || fail "the memory error is reported more than once"
if grep -q "MPI_ABORT" err.txt; then fail "an MPI_ABORT banner"; fi
rm -f ./*.yaml
