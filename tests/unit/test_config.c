/* test_config.c - the config parser: the example of docs/config.md
 * (tests/fixtures/config/avfm-separate.yaml), defaults, every class of error (each test checks
 * the status AND that the message names the file, the line and the dotted key), --set
 * overrides, and the jt_config_to_yaml round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jtrain/config.h"

#define SRC "configs/x.yaml"

/* A config with every section and key; line numbers below refer to it. */
static const char *const FULL_LINES[] = {
    /*  1 */ "data:",
    /*  2 */ "  file: d.h5",
    /*  3 */ "  train: train",
    /*  4 */ "  eval: test",
    /*  5 */ "model:",
    /*  6 */ "  blocks:",
    /*  7 */ "    trunk:",
    /*  8 */ "      input: image",
    /*  9 */ "      layers:",
    /* 10 */ "        - flatten",
    /* 11 */ "        - dense: {units: 16}",
    /* 12 */ "  heads:",
    /* 13 */ "    a:",
    /* 14 */ "      input: trunk",
    /* 15 */ "      target: label",
    /* 16 */ "      weight: 0.5",
    /* 17 */ "train:",
    /* 18 */ "  steps: 10",
    /* 19 */ "  batch_size: 8",
    /* 20 */ "  seed: 7",
    /* 21 */ "  optimizer:",
    /* 22 */ "    name: adam",
    /* 23 */ "    lr: 0.01",
    /* 24 */ "  clip_norm: 1.5",
    /* 25 */ "  eval_every: 5",
    /* 26 */ "  threads: 2",
    /* 27 */ "checkpoint:",
    /* 28 */ "  dir: /tmp/r",
    /* 29 */ "  every_steps: 5",
    /* 30 */ "  keep: 2",
    /* 31 */ "log:",
    /* 32 */ "  every_steps: 10",
    /* 33 */ "  metrics: /tmp/m.jsonl",
    NULL,
};

/* Only the required keys. */
static const char *MIN = "data:\n"
                         "  file: d.h5\n"
                         "model:\n"
                         "  blocks:\n"
                         "    trunk: {input: image, layers: [flatten]}\n"
                         "  heads:\n"
                         "    a: {input: trunk, target: label}\n"
                         "train:\n"
                         "  steps: 10\n"
                         "  batch_size: 8\n";

/* FULL with edits: line `replace` (1-based) becomes `with` (NULL: removed; lines may hold
 * "\n"), and `insert` goes after line `after` (0: no insertion). Caller frees. */
static char *full_edit(int replace, const char *with, int after, const char *insert) {
    size_t cap = 4096;
    char *s = calloc(cap, 1);
    assert_non_null(s);
    for (int i = 0; FULL_LINES[i]; i++) {
        int line = i + 1;
        const char *l = FULL_LINES[i];
        if (line == replace) l = with;
        if (l) {
            strcat(s, l);
            strcat(s, "\n");
        }
        if (line == after && insert) {
            strcat(s, insert);
            strcat(s, "\n");
        }
        assert_true(strlen(s) < cap - 512);
    }
    return s;
}

static char *full_text(void) { return full_edit(0, NULL, 0, NULL); }

/* Parses text with overrides and expects JT_EUSAGE with a one-line message that contains every
 * non-NULL needle. */
static void expect_error(const char *text, const char *const *sets, size_t n_sets, const char *n1,
                         const char *n2, const char *n3) {
    jt_config c;
    char err[1024] = "";
    jt_status st = jt_config_parse(&c, text, SRC, sets, n_sets, err, sizeof err);
    if (st != JT_EUSAGE) fail_msg("expected JT_EUSAGE, got %d (err '%s')", (int)st, err);
    assert_null(strchr(err, '\n'));
    const char *needles[] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        if (needles[i] && !strstr(err, needles[i]))
            fail_msg("error '%s' does not contain '%s'", err, needles[i]);
    assert_null(c.blocks); /* left zeroed */
    assert_int_equal(c.n_heads, 0);
}

static void expect_full_error(int replace, const char *with, int after, const char *insert,
                              const char *n1, const char *n2, const char *n3) {
    char *text = full_edit(replace, with, after, insert);
    expect_error(text, NULL, 0, n1, n2, n3);
    free(text);
}

static void parse_ok(jt_config *c, const char *text, const char *const *sets, size_t n_sets) {
    char err[1024] = "";
    jt_status st = jt_config_parse(c, text, SRC, sets, n_sets, err, sizeof err);
    if (st != JT_OK) fail_msg("parse failed: %s", err);
}

static void test_design_example(void **state) {
    (void)state;
    jt_config c;
    char err[1024] = "";
    const char *path = JT_SOURCE_DIR "/tests/fixtures/config/avfm-separate.yaml";
    jt_status st = jt_config_load(&c, path, NULL, 0, err, sizeof err);
    if (st != JT_OK) fail_msg("%s", err);
    assert_string_equal(c.source, path);
    assert_string_equal(c.data.file, "datasets/avfm/avfm-small.h5");
    assert_string_equal(c.data.train, "train");
    assert_string_equal(c.data.eval, "test");
    assert_int_equal(c.n_blocks, 2);
    assert_string_equal(c.blocks[0].name, "image_net");
    assert_string_equal(c.blocks[0].input, "image");
    assert_int_equal(c.blocks[0].line, 7);
    assert_int_equal(c.blocks[0].n_layers, 6);
    const char *kinds[] = {"conv2d", "relu", "maxpool2d", "flatten", "dense", "relu"};
    for (int i = 0; i < 6; i++) {
        assert_string_equal(c.blocks[0].layers[i].kind, kinds[i]);
        assert_int_equal(c.blocks[0].layers[i].line, 10 + i);
    }
    assert_int_equal(c.blocks[0].layers[0].opts.filters, 32);
    assert_int_equal(c.blocks[0].layers[0].opts.kernel, 3);
    assert_int_equal(c.blocks[0].layers[0].opts.stride, 0);
    assert_int_equal(c.blocks[0].layers[2].opts.size, 2);
    assert_int_equal(c.blocks[0].layers[4].opts.units, 128);
    assert_string_equal(c.blocks[1].name, "audio_net");
    assert_string_equal(c.blocks[1].input, "audio");
    assert_int_equal(c.blocks[1].n_layers, 1);
    assert_string_equal(c.blocks[1].layers[0].kind, "gru");
    assert_int_equal(c.blocks[1].layers[0].opts.units, 128);
    assert_int_equal(c.blocks[1].layers[0].opts.return_sequences, 0);
    assert_int_equal(c.n_heads, 2);
    assert_string_equal(c.heads[0].name, "item");
    assert_string_equal(c.heads[0].input, "image_net");
    assert_string_equal(c.heads[0].target, "label");
    assert_true(c.heads[0].weight == 0.5);
    assert_int_equal(c.heads[0].n_layers, 0);
    assert_int_equal(c.heads[0].line, 21);
    assert_string_equal(c.heads[1].name, "speaker");
    assert_string_equal(c.heads[1].input, "audio_net");
    assert_string_equal(c.heads[1].target, "speaker");
    assert_true(c.heads[1].weight == 0.5);
    assert_int_equal(c.train.epochs, 5);
    assert_int_equal(c.train.steps, 0);
    assert_int_equal(c.train.batch_size, 128);
    assert_int_equal(c.train.seed, 1);
    assert_true(c.train.adam.lr == 1.0e-3);
    assert_true(c.train.adam.beta1 == 0.9);
    assert_true(c.train.adam.beta2 == 0.999);
    assert_true(c.train.adam.eps == 1.0e-8);
    assert_true(c.train.adam.weight_decay == 0.0);
    assert_true(c.train.clip_norm == 0.0);
    assert_string_equal(c.checkpoint.dir, "runs/avfm-separate");
    assert_int_equal(c.checkpoint.every_steps, 500);
    assert_int_equal(c.checkpoint.keep, 3);
    assert_int_equal(c.log.every_steps, 50);
    assert_string_equal(c.log.metrics, "runs/avfm-separate/metrics.jsonl");
    jt_config_free(&c);
    assert_null(c.blocks);
    jt_config_free(&c); /* twice is fine */
    jt_config_free(NULL);
}

static void test_defaults(void **state) {
    (void)state;
    jt_config c;
    char err[512];
    jt_status st = jt_config_parse(&c, MIN, "configs/min-run.v2.yaml", NULL, 0, err, sizeof err);
    if (st != JT_OK) fail_msg("%s", err);
    jt_adam_opts a = jt_adam_default_opts();
    assert_string_equal(c.data.train, "train");
    assert_string_equal(c.data.eval, "test");
    assert_int_equal(c.train.steps, 10);
    assert_int_equal(c.train.epochs, 0);
    assert_int_equal(c.train.seed, 1);
    assert_true(c.train.adam.lr == a.lr && c.train.adam.beta1 == a.beta1 &&
                c.train.adam.beta2 == a.beta2 && c.train.adam.eps == a.eps &&
                c.train.adam.weight_decay == a.weight_decay);
    assert_true(c.train.adam.lr == 1e-3);
    assert_true(c.train.clip_norm == 0.0);
    assert_int_equal(c.train.eval_every, 0);
    assert_int_equal(c.train.threads, 0);
    assert_true(c.train.watchdog_s == 600.0);
    assert_true(c.heads[0].weight == 1.0);
    assert_string_equal(c.checkpoint.dir, "runs/min-run.v2");
    assert_int_equal(c.checkpoint.every_steps, 0);
    assert_int_equal(c.checkpoint.keep, 3);
    assert_int_equal(c.log.every_steps, 50);
    assert_string_equal(c.log.metrics, "runs/min-run.v2/metrics.jsonl");
    jt_config_free(&c);

    /* metrics follows an explicit checkpoint.dir; a source that is no file name gives runs/run */
    const char *set = "checkpoint.dir=/tmp/r";
    st = jt_config_parse(&c, MIN, NULL, &set, 1, err, sizeof err);
    if (st != JT_OK) fail_msg("%s", err);
    assert_string_equal(c.source, "<string>");
    assert_string_equal(c.checkpoint.dir, "/tmp/r");
    assert_string_equal(c.log.metrics, "/tmp/r/metrics.jsonl");
    jt_config_free(&c);
    st = jt_config_parse(&c, MIN, NULL, NULL, 0, err, sizeof err);
    assert_int_equal(st, JT_OK);
    assert_string_equal(c.checkpoint.dir, "runs/run");
    jt_config_free(&c);
}

static void test_full_values(void **state) {
    (void)state;
    jt_config c;
    char *text = full_edit(0, NULL, 26, "  watchdog_s: 20.5");
    parse_ok(&c, text, NULL, 0);
    assert_true(c.train.watchdog_s == 20.5);
    assert_int_equal(c.train.seed, 7);
    assert_true(c.train.adam.lr == 0.01);
    assert_true(c.train.adam.beta2 == 0.999); /* default kept beside a given lr */
    assert_true(c.train.clip_norm == 1.5);
    assert_int_equal(c.train.eval_every, 5);
    assert_int_equal(c.train.threads, 2);
    assert_int_equal(c.checkpoint.every_steps, 5);
    assert_int_equal(c.checkpoint.keep, 2);
    assert_int_equal(c.log.every_steps, 10);
    assert_string_equal(c.log.metrics, "/tmp/m.jsonl");
    assert_true(c.heads[0].weight == 0.5);
    jt_config_free(&c);
    free(text);
}

static void test_unknown_keys(void **state) {
    (void)state;
    expect_full_error(0, NULL, 33, "bogus: 1", SRC ":34:", "bogus: unknown key", "data, model");
    expect_full_error(0, NULL, 2, "  fiel: x.h5", SRC ":3:", "data.fiel: unknown key", NULL);
    expect_full_error(0, NULL, 5, "  blockz: {}", SRC ":6:", "model.blockz", NULL);
    expect_full_error(0, NULL, 8, "      inputs: x", SRC ":9:", "model.blocks.trunk.inputs", NULL);
    expect_full_error(0, NULL, 15, "      targets: y", SRC ":16:", "model.heads.a.targets", NULL);
    expect_full_error(0, NULL, 17, "  batchsize: 8", SRC ":18:", "train.batchsize", NULL);
    expect_full_error(0, NULL, 22, "    momentum: 0.9", SRC ":23:", "train.optimizer.momentum", NULL);
    expect_full_error(0, NULL, 27, "  dirr: x", SRC ":28:", "checkpoint.dirr", NULL);
    expect_full_error(0, NULL, 31, "  every: 3", SRC ":32:", "log.every: unknown key", NULL);
}

static void test_wrong_types(void **state) {
    (void)state;
    expect_full_error(19, "  batch_size: [8]", 0, NULL, SRC ":19:", "train.batch_size",
                      "expected an integer >= 1, found a list");
    expect_full_error(2, "  file: {a: 1}", 0, NULL, SRC ":2:", "data.file", "found a mapping");
    expect_full_error(2, "  file:", 0, NULL, SRC ":2:", "data.file", "found nothing");
    expect_full_error(23, "    lr: fast", 0, NULL, SRC ":23: train.optimizer.lr: expected a number > 0, found 'fast'",
                      NULL, NULL);
    expect_full_error(16, "      weight: '0.5'", 0, NULL, SRC ":16:", "model.heads.a.weight",
                      "quoted string");
    expect_error("data: {file: d.h5}\nmodel:\n  blocks:\n    t: {input: x, layers: relu}\n", NULL, 0,
                 SRC ":4:", "model.blocks.t.layers", "expected a list of layers, found 'relu'");
    char with_ckpt[1024];
    snprintf(with_ckpt, sizeof with_ckpt, "%scheckpoint: 3\n", MIN);
    expect_error(with_ckpt, NULL, 0, SRC ":11: checkpoint: expected a mapping, found '3'", NULL, NULL);
    expect_full_error(22, "    name: sgd", 0, NULL, SRC ":22:", "train.optimizer.name", "adam");
    expect_error("- a\n- b\n", NULL, 0, SRC ":1:", "expected a mapping", NULL);
}

static void test_bad_numbers(void **state) {
    (void)state;
    expect_full_error(19, "  batch_size: 12x", 0, NULL, SRC ":19:", "train.batch_size", "'12x'");
    expect_full_error(19, "  batch_size: -1", 0, NULL, SRC ":19:", "train.batch_size", "'-1'");
    expect_full_error(19, "  batch_size: 0", 0, NULL, SRC ":19:", "train.batch_size", NULL);
    expect_full_error(19, "  batch_size: 1.5", 0, NULL, SRC ":19:", "train.batch_size", NULL);
    expect_full_error(23, "    lr: 1e999", 0, NULL, SRC ":23:", "train.optimizer.lr", "'1e999'");
    expect_full_error(23, "    lr: 0", 0, NULL, SRC ":23:", "train.optimizer.lr", NULL);
    expect_full_error(23, "    lr: .nan", 0, NULL, SRC ":23:", "train.optimizer.lr", NULL);
    expect_full_error(23, "    beta1: 1.0", 0, NULL, SRC ":23:", "train.optimizer.beta1", "[0, 1)");
    expect_full_error(16, "      weight: -0.5", 0, NULL, SRC ":16:", "model.heads.a.weight", ">= 0");
    expect_full_error(20, "  seed: -1", 0, NULL, SRC ":20:", "train.seed", NULL);
    expect_full_error(20, "  seed: 18446744073709551616", 0, NULL, SRC ":20:", "train.seed", NULL);
    expect_full_error(24, "  clip_norm: -1", 0, NULL, SRC ":24:", "train.clip_norm", NULL);
    expect_full_error(0, NULL, 26, "  watchdog_s: -1", SRC ":27:", "train.watchdog_s",
                      "expected a number >= 0, found '-1'");
    expect_full_error(0, NULL, 26, "  watchdog_s: off", SRC ":27:", "train.watchdog_s", "'off'");
    expect_full_error(0, NULL, 26, "  watchdog_s: .inf", SRC ":27:", "train.watchdog_s", NULL);
    expect_full_error(30, "  keep: 0", 0, NULL, SRC ":30:", "checkpoint.keep", NULL);
    expect_full_error(32, "  every_steps: 0", 0, NULL, SRC ":32:", "log.every_steps", NULL);
    expect_full_error(29, "  every_steps: -5", 0, NULL, SRC ":29:", "checkpoint.every_steps", NULL);
    expect_full_error(18, "  steps: 0", 0, NULL, SRC ":18:", "train.steps", NULL);

    jt_config c; /* the largest seed is fine */
    char *text = full_edit(20, "  seed: 18446744073709551615", 0, NULL);
    parse_ok(&c, text, NULL, 0);
    assert_true(c.train.seed == UINT64_MAX);
    jt_config_free(&c);
    free(text);
}

static void test_missing_keys(void **state) {
    (void)state;
    expect_full_error(2, NULL, 0, NULL, SRC ":1:", "data.file: required key is missing", NULL);
    expect_full_error(19, NULL, 0, NULL, SRC ":17:", "train.batch_size: required key", NULL);
    expect_full_error(18, NULL, 0, NULL, SRC ":17:", "train.epochs: required key", "train.steps");
    expect_full_error(15, NULL, 0, NULL, SRC ":13:", "model.heads.a.target: required key", NULL);
    expect_full_error(8, NULL, 0, NULL, SRC ":7:", "model.blocks.trunk.input: required key", NULL);
    /* whole sections / mappings gone */
    expect_full_error(6, "  blocks_gone: 1\n  heads:\n    a: {input: trunk, target: label}", 12,
                      NULL, SRC ":6:", "model.blocks_gone", NULL);
    expect_error("data: {file: d.h5}\nmodel:\n  heads: {a: {input: t, target: l}}\n"
                 "train: {steps: 1, batch_size: 1}\n",
                 NULL, 0, SRC ":2:", "model.blocks: required key", NULL);
    expect_error("data: {file: d.h5}\nmodel:\n  blocks: {t: {input: x, layers: [relu]}}\n"
                 "train: {steps: 1, batch_size: 1}\n",
                 NULL, 0, SRC ":2:", "model.heads: required key", NULL);
    expect_error("model:\n  blocks: {t: {input: x, layers: [relu]}}\n", NULL, 0, SRC ":1:",
                 "data.file: required key", NULL);
    expect_error("data: {file: d.h5}\nmodel:\n  blocks: {t: {input: x, layers: [relu]}}\n"
                 "  heads: {a: {input: t, target: l}}\n",
                 NULL, 0, SRC ":1:", "train.batch_size: required key", NULL);
    expect_error("", NULL, 0, SRC, "data.file: required key", NULL);
    expect_error("# only a comment\n", NULL, 0, SRC, "data.file: required key", NULL);
    expect_error("data: {file: d.h5}\nmodel:\n  blocks: {t: {input: x, layers: []}}\n", NULL, 0,
                 SRC ":3:", "model.blocks.t.layers: expected at least one layer", NULL);
    expect_error("data: {file: d.h5}\nmodel:\n  blocks: {}\n", NULL, 0, SRC ":3:",
                 "model.blocks: expected at least one block", NULL);
}

static void test_epochs_and_steps(void **state) {
    (void)state;
    expect_full_error(0, NULL, 17, "  epochs: 3", SRC ":19: train.steps", "train.epochs", "not both");
    expect_full_error(0, NULL, 18, "  epochs: 3", SRC ":19: train.epochs", "train.steps", "not both");
    /* 0 switches one off, so an override can swap a recipe's epochs for steps */
    const char *swap[] = {"train.epochs=2", "train.steps=0"};
    jt_config c;
    parse_ok(&c, MIN, swap, 2);
    assert_int_equal(c.train.epochs, 2);
    assert_int_equal(c.train.steps, 0);
    jt_config_free(&c);
    const char *none[] = {"train.steps=0"};
    expect_error(MIN, none, 1, "train.epochs", "must be > 0", NULL);
}

static void test_duplicates_and_names(void **state) {
    (void)state;
    expect_full_error(0, NULL, 19, "  batch_size: 16", SRC ":20:", "train.batch_size: duplicate key",
                      "line 19");
    expect_full_error(0, NULL, 16, "  blocks: {}", SRC ":17:", "model.blocks: duplicate key", NULL);
    expect_full_error(13, "    trunk:", 0, NULL, SRC ":13:", "model.heads.trunk", "block's name");
    expect_full_error(7, "    tr unk:", 0, NULL, SRC ":7:", "model.blocks.tr unk", "bad name");
    expect_full_error(14, "      input: image", 0, NULL, SRC ":14:", "model.heads.a.input",
                      "not a block");
    expect_full_error(8, "      input: trunk", 0, NULL, SRC ":8:", "model.blocks.trunk.input",
                      "own output");
    expect_full_error(0, NULL, 11, "        - dense: {units: 4, units: 5}", SRC ":12:",
                      "model.blocks.trunk.layers[2].dense.units: duplicate key", NULL);
}

static void test_yaml_syntax(void **state) {
    (void)state;
    expect_error("data:\n  file: d.h5\n    bad: indent\n", NULL, 0, SRC ":3:", "YAML syntax error",
                 NULL);
    expect_error("data:\n  file: [a, b\nmodel: x\n", NULL, 0, SRC ":", "YAML syntax error", NULL);
    expect_full_error(0, NULL, 33, "---\ndata: {file: y.h5}", SRC ":35:", "second", NULL);
}

static void test_layers(void **state) {
    (void)state;
    expect_full_error(10, "        - flaten", 0, NULL, SRC ":10:",
                      "model.blocks.trunk.layers[0].flaten", "unknown layer kind");
    expect_full_error(11, "        - dense: {unit: 16}", 0, NULL, SRC ":11:",
                      "model.blocks.trunk.layers[1].dense.unit", "no setting 'unit'");
    expect_full_error(11, "        - dense:\n            units: 16\n            bias: 0", 0, NULL,
                      SRC ":13:", "model.blocks.trunk.layers[1].dense.bias", NULL);
    expect_full_error(11, "        - dense: {units: -3}", 0, NULL, SRC ":11:",
                      "model.blocks.trunk.layers[1].dense.units", "'-3'");
    expect_full_error(11, "        - dense: {units: {a: 1}}", 0, NULL, SRC ":11:",
                      "layers[1].dense.units", "found a mapping");
    expect_full_error(11, "        - dense: 16", 0, NULL, SRC ":11:", "layers[1].dense",
                      "mapping of the layer's settings");
    expect_full_error(11, "        - {dense: {units: 3}, relu: {}}", 0, NULL, SRC ":11:",
                      "model.blocks.trunk.layers[1]", "one-key mapping");
    expect_full_error(0, NULL, 16, "      layers: [relu, {dropout: {rate: 1.5}}]", SRC ":17:",
                      "model.heads.a.layers[1].dropout.rate", NULL);

    /* settings of several kinds parse */
    jt_config c;
    char *text = full_edit(11,
                           "        - conv2d: {filters: 4, kernel: 3, stride: 2, padding: same}\n"
                           "        - flatten:\n"
                           "        - dropout: {rate: 0.25}",
                           0, NULL);
    parse_ok(&c, text, NULL, 0);
    assert_int_equal(c.blocks[0].n_layers, 4);
    assert_int_equal(c.blocks[0].layers[1].opts.stride, 2);
    assert_int_equal(c.blocks[0].layers[1].opts.padding_same, 1);
    assert_string_equal(c.blocks[0].layers[2].kind, "flatten");
    assert_true(c.blocks[0].layers[3].opts.rate == 0.25);
    jt_config_free(&c);
    free(text);
}

static void test_set_overrides(void **state) {
    (void)state;
    jt_config c;
    char *text = full_text();
    const char *sets[] = {"train.optimizer.lr=3e-4", "data.file=x.h5", "model.heads.a.weight=0.7",
                          "checkpoint.dir=/tmp/r2", "train.steps=20", "train.steps=30"};
    parse_ok(&c, text, sets, 6);
    assert_true(c.train.adam.lr == 3e-4);
    assert_string_equal(c.data.file, "x.h5");
    assert_true(c.heads[0].weight == 0.7);
    assert_string_equal(c.checkpoint.dir, "/tmp/r2");
    assert_int_equal(c.train.steps, 30); /* the last override wins */
    jt_config_free(&c);

    /* keys absent from the file are added, with any missing mappings on the way */
    const char *add[] = {"model.heads.a.weight=0.25", "train.optimizer.beta1=0.5",
                         "model.blocks.trunk.layers=[flatten, {dense: {units: 4}}]",
                         "data.eval='null'"};
    parse_ok(&c, MIN, add, 4);
    assert_true(c.heads[0].weight == 0.25);
    assert_true(c.train.adam.beta1 == 0.5);
    assert_int_equal(c.blocks[0].n_layers, 2);
    assert_int_equal(c.blocks[0].layers[1].opts.units, 4);
    assert_string_equal(c.data.eval, "null");
    assert_int_equal(c.blocks[0].layers[0].line, 0); /* made by --set */
    jt_config_free(&c);

    /* validated like the file, located as --set */
    const char *unknown = "train.optimiser.lr=1";
    expect_error(text, &unknown, 1, SRC ":--set:", "train.optimiser: unknown key", NULL);
    const char *bad = "train.optimizer.lr=fast";
    expect_error(text, &bad, 1, SRC ":--set: train.optimizer.lr: expected a number > 0, found 'fast'",
                 NULL, NULL);
    const char *both = "train.epochs=2";
    expect_error(text, &both, 1, SRC ":--set: train.epochs", "not both", NULL);
    const char *empty = "data.file=";
    expect_error(text, &empty, 1, SRC ":--set:", "data.file", "found nothing");

    /* malformed overrides name themselves */
    const char *noeq = "train.lr";
    expect_error(text, &noeq, 1, "--set train.lr:", "KEY=VALUE", NULL);
    const char *nokey = "=3";
    expect_error(text, &nokey, 1, "--set =3:", NULL, NULL);
    const char *dots = "train..lr=3";
    expect_error(text, &dots, 1, "--set train..lr=3:", NULL, NULL);
    const char *through = "data.file.x=1";
    expect_error(text, &through, 1, "--set data.file.x=1:", "'data.file' is not a mapping", NULL);
    const char *badval = "train.steps=[1,";
    expect_error(text, &badval, 1, "--set train.steps=[1,:", "not valid YAML", NULL);
    free(text);
}

static void assert_layers_equal(const jt_layer_cfg *a, const jt_layer_cfg *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(a[i].kind, b[i].kind);
        assert_int_equal(a[i].opts.units, b[i].opts.units);
        assert_int_equal(a[i].opts.filters, b[i].opts.filters);
        assert_int_equal(a[i].opts.kernel, b[i].opts.kernel);
        assert_int_equal(a[i].opts.stride, b[i].opts.stride);
        assert_int_equal(a[i].opts.padding_same, b[i].opts.padding_same);
        assert_int_equal(a[i].opts.size, b[i].opts.size);
        assert_true(a[i].opts.rate == b[i].opts.rate);
        assert_int_equal(a[i].opts.heads, b[i].opts.heads);
        assert_int_equal(a[i].opts.return_sequences, b[i].opts.return_sequences);
        assert_string_equal(a[i].opts.context, b[i].opts.context);
    }
}

static void assert_metric_equal(const jt_metric_cfg *a, const jt_metric_cfg *b) {
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->head, b->head);
    assert_int_equal(a->maximize, b->maximize);
    assert_string_equal(a->text, b->text);
}

static void assert_config_equal(const jt_config *a, const jt_config *b) {
    assert_string_equal(a->data.file, b->data.file);
    assert_string_equal(a->data.train, b->data.train);
    assert_string_equal(a->data.eval, b->data.eval);
    assert_int_equal(a->n_blocks, b->n_blocks);
    for (size_t i = 0; i < a->n_blocks; i++) {
        assert_string_equal(a->blocks[i].name, b->blocks[i].name);
        assert_string_equal(a->blocks[i].input, b->blocks[i].input);
        assert_int_equal(a->blocks[i].n_layers, b->blocks[i].n_layers);
        assert_layers_equal(a->blocks[i].layers, b->blocks[i].layers, a->blocks[i].n_layers);
    }
    assert_int_equal(a->n_heads, b->n_heads);
    for (size_t i = 0; i < a->n_heads; i++) {
        assert_string_equal(a->heads[i].name, b->heads[i].name);
        assert_string_equal(a->heads[i].input, b->heads[i].input);
        assert_string_equal(a->heads[i].target, b->heads[i].target);
        assert_true(a->heads[i].weight == b->heads[i].weight);
        assert_int_equal(a->heads[i].n_layers, b->heads[i].n_layers);
        assert_layers_equal(a->heads[i].layers, b->heads[i].layers, a->heads[i].n_layers);
    }
    assert_int_equal(a->train.epochs, b->train.epochs);
    assert_int_equal(a->train.steps, b->train.steps);
    assert_int_equal(a->train.batch_size, b->train.batch_size);
    assert_true(a->train.seed == b->train.seed);
    assert_memory_equal(&a->train.adam, &b->train.adam, sizeof a->train.adam);
    assert_true(a->train.clip_norm == b->train.clip_norm);
    assert_int_equal(a->train.eval_every, b->train.eval_every);
    assert_int_equal(a->train.threads, b->train.threads);
    assert_true(a->train.watchdog_s == b->train.watchdog_s);
    assert_int_equal(a->train.accumulate, b->train.accumulate);
    assert_int_equal(a->train.schedule.name, b->train.schedule.name);
    assert_int_equal(a->train.schedule.warmup_steps, b->train.schedule.warmup_steps);
    assert_true(a->train.schedule.min_lr == b->train.schedule.min_lr);
    assert_int_equal(a->train.schedule.step_size, b->train.schedule.step_size);
    assert_true(a->train.schedule.gamma == b->train.schedule.gamma);
    assert_int_equal(a->train.balance.method, b->train.balance.method);
    assert_true(a->train.balance.temperature == b->train.balance.temperature);
    assert_int_equal(a->train.balance.window, b->train.balance.window);
    assert_true(a->train.balance.alpha == b->train.balance.alpha);
    assert_int_equal(a->train.pcgrad, b->train.pcgrad);
    assert_metric_equal(&a->train.early_stop.metric, &b->train.early_stop.metric);
    assert_int_equal(a->train.early_stop.patience, b->train.early_stop.patience);
    assert_metric_equal(&a->checkpoint.best, &b->checkpoint.best);
    assert_string_equal(a->checkpoint.dir, b->checkpoint.dir);
    assert_int_equal(a->checkpoint.every_steps, b->checkpoint.every_steps);
    assert_int_equal(a->checkpoint.keep, b->checkpoint.keep);
    assert_int_equal(a->log.every_steps, b->log.every_steps);
    assert_string_equal(a->log.metrics, b->log.metrics);
}

/* parse -> dump -> parse gives an equal config, and dumping again gives the same text. */
static void round_trip(const char *text, const char *const *sets, size_t n_sets) {
    jt_config a, b;
    parse_ok(&a, text, sets, n_sets);
    char *y1 = jt_config_to_yaml(&a);
    assert_non_null(y1);
    char err[1024] = "";
    if (jt_config_parse(&b, y1, "resolved.yaml", NULL, 0, err, sizeof err) != JT_OK)
        fail_msg("resolved config does not parse: %s\n%s", err, y1);
    assert_config_equal(&a, &b);
    char *y2 = jt_config_to_yaml(&b);
    assert_non_null(y2);
    assert_string_equal(y1, y2);
    free(y1);
    free(y2);
    jt_config_free(&a);
    jt_config_free(&b);
}

static void test_round_trip(void **state) {
    (void)state;
    char *text = full_text();
    round_trip(text, NULL, 0);
    free(text);
    round_trip(MIN, NULL, 0);

    /* awkward strings, every layer setting, doubles that need 17 digits, the largest seed */
    const char *all[] = {
        "data.file=\"my data: v2 #1.h5\"",
        "data.eval='null'",
        "data.train=\"\\u00e9t\\u00e9\"",
        "model.heads.a.weight=0.30000000000000004",
        "model.blocks.trunk.layers=[{conv1d: {filters: 4, kernel: 5, stride: 2, padding: same}},"
        " {gru: {units: 8, return_sequences: true}}, {dropout: {rate: 0.1}},"
        " {self_attention: {heads: 2, units: 8}}, {maxpool1d: {size: 2}}, layernorm]",
        "model.blocks.ctx={input: audio, layers: [{lstm: {units: 3, return_sequences: false}}]}",
        "model.heads.a.layers=[{cross_attention: {heads: 1, units: 8, context: ctx}},"
        " {attention_pool: {units: 4}}, {dense: {units: 7}}, relu]",
        /* a whole section replaced by one flow mapping */
        "train={epochs: 3, batch_size: 5, seed: 18446744073709551615,"
        " optimizer: {lr: 0.1, eps: 3.0000000000000004e-9, weight_decay: 1e-300}}",
    };
    round_trip(MIN, all, 8);
    const char *off = "train.watchdog_s=0", *frac = "train.watchdog_s=0.1";
    round_trip(MIN, &off, 1);
    round_trip(MIN, &frac, 1);

    jt_config c;
    parse_ok(&c, MIN, all, 8);
    assert_string_equal(c.data.file, "my data: v2 #1.h5");
    assert_string_equal(c.data.train, "\xc3\xa9t\xc3\xa9");
    assert_true(c.train.seed == UINT64_MAX);
    assert_true(c.train.adam.eps == 3.0000000000000004e-9);
    assert_true(c.heads[0].weight == 0.30000000000000004);
    assert_int_equal(c.blocks[0].layers[1].opts.return_sequences, 1);
    assert_string_equal(c.heads[0].layers[0].opts.context, "ctx");
    char *y = jt_config_to_yaml(&c);
    assert_non_null(y);
    /* layer settings come back in config syntax, only those that are set */
    assert_non_null(strstr(y, "- conv1d: {filters: 4, kernel: 5, stride: 2, padding: same}"));
    assert_non_null(strstr(y, "- gru: {units: 8, return_sequences: true}"));
    assert_non_null(strstr(y, "- maxpool1d: {size: 2}"));
    assert_non_null(strstr(y, "- layernorm\n"));
    assert_non_null(strstr(y, "weight: 0.30000000000000004"));
    assert_non_null(strstr(y, "lr: 0.1,"));
    free(y);
    jt_config_free(&c);
    const char *hundred = "model.heads.a.weight=100"; /* whole numbers in full, not 1e+02 */
    round_trip(MIN, &hundred, 1);
    parse_ok(&c, MIN, &hundred, 1);
    y = jt_config_to_yaml(&c);
    assert_non_null(y);
    assert_non_null(strstr(y, "weight: 100\n"));
    free(y);
    jt_config_free(&c);
    parse_ok(&c, MIN, NULL, 0); /* the default is emitted, as every key is */
    y = jt_config_to_yaml(&c);
    assert_non_null(y);
    assert_non_null(strstr(y, "  watchdog_s: 600\n"));
    free(y);
    jt_config_free(&c);
}

/* Two heads, evaluations every 10 steps, lr 0.01; the multi-task keys go after line 12 (mt()). */
static const char *MT = "data: {file: d.h5}\n"                               /*  1 */
                        "model:\n"                                          /*  2 */
                        "  blocks:\n"                                       /*  3 */
                        "    trunk: {input: image, layers: [flatten]}\n"    /*  4 */
                        "  heads:\n"                                        /*  5 */
                        "    item: {input: trunk, target: label}\n"         /*  6 */
                        "    speaker: {input: trunk, target: spk}\n"        /*  7 */
                        "train:\n"                                          /*  8 */
                        "  steps: 100\n"                                    /*  9 */
                        "  batch_size: 8\n"                                 /* 10 */
                        "  eval_every: 10\n"                                /* 11 */
                        "  optimizer: {lr: 0.01}\n";                        /* 12 */

/* MT followed by `tail` (its first line is line 13). Caller frees. */
static char *mt(const char *tail) {
    size_t n = strlen(MT) + strlen(tail) + 2;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s%s\n", MT, tail);
    return s;
}

/* MT + tail must fail with a message containing the needles. */
static void expect_mt_error(const char *tail, const char *n1, const char *n2, const char *n3) {
    char *text = mt(tail);
    expect_error(text, NULL, 0, n1, n2, n3);
    free(text);
}

/* Every key of the multi-task features, lines 13 to 19. */
static const char *MT_ALL =
    "  accumulate: 4\n"                                                /* 13 */
    "  schedule: {name: cosine, warmup_steps: 5, min_lr: 1e-5}\n"      /* 14 */
    "  balance: {method: dwa, temperature: 3, window: 20}\n"           /* 15 */
    "  pcgrad: true\n"                                                 /* 16 */
    "  early_stop: {metric: speaker.accuracy, patience: 3}\n"          /* 17 */
    "checkpoint:\n"                                                    /* 18 */
    "  best: {metric: item.loss}";                                     /* 19 */

static void test_multitask_defaults(void **state) {
    (void)state;
    jt_config c;
    parse_ok(&c, MIN, NULL, 0);
    assert_int_equal(c.train.accumulate, 1);
    assert_int_equal(c.train.schedule.name, JT_SCHED_CONSTANT);
    assert_int_equal(c.train.schedule.warmup_steps, 0);
    assert_true(c.train.schedule.min_lr == 0.0);
    assert_int_equal(c.train.schedule.step_size, 0);
    assert_true(c.train.schedule.gamma == 0.1);
    assert_int_equal(c.train.balance.method, JT_BALANCE_FIXED);
    assert_true(c.train.balance.temperature == 2.0);
    assert_int_equal(c.train.balance.window, 0);
    assert_true(c.train.balance.alpha == 1.5);
    assert_int_equal(c.train.pcgrad, 0);
    assert_int_equal(c.train.early_stop.metric.kind, JT_METRIC_NONE);
    assert_int_equal(c.train.early_stop.patience, 0);
    assert_int_equal(c.checkpoint.best.kind, JT_METRIC_NONE);
    /* the resolved config shows them all, only the keys the name / method allows; early_stop
     * and best (off) not at all */
    char *y = jt_config_to_yaml(&c);
    assert_non_null(y);
    assert_non_null(strstr(y, "  accumulate: 1\n"));
    assert_non_null(strstr(y, "  schedule: {name: constant, warmup_steps: 0}\n"));
    assert_non_null(strstr(y, "  balance: {method: fixed}\n"));
    assert_non_null(strstr(y, "  pcgrad: false\n"));
    assert_null(strstr(y, "early_stop"));
    assert_null(strstr(y, "best"));
    free(y);
    jt_config_free(&c);
    /* the default mode follows the metric: max for accuracy, min for a loss */
    const char *sets[] = {"checkpoint.best={metric: loss}", "train.eval_every=1",
                          "train.early_stop={metric: a.accuracy, patience: 1}"};
    parse_ok(&c, MIN, sets, 3);
    assert_int_equal(c.checkpoint.best.kind, JT_METRIC_LOSS);
    assert_int_equal(c.checkpoint.best.head, -1);
    assert_int_equal(c.checkpoint.best.maximize, 0);
    assert_string_equal(c.checkpoint.best.text, "loss");
    assert_int_equal(c.train.early_stop.metric.kind, JT_METRIC_ACCURACY);
    assert_int_equal(c.train.early_stop.metric.head, 0);
    assert_int_equal(c.train.early_stop.metric.maximize, 1);
    assert_int_equal(c.train.early_stop.patience, 1);
    jt_config_free(&c);
}

static void test_multitask_values(void **state) {
    (void)state;
    jt_config c;
    char *text = mt(MT_ALL);
    parse_ok(&c, text, NULL, 0);
    assert_int_equal(c.train.accumulate, 4);
    assert_int_equal(c.train.schedule.name, JT_SCHED_COSINE);
    assert_int_equal(c.train.schedule.warmup_steps, 5);
    assert_true(c.train.schedule.min_lr == 1e-5);
    assert_int_equal(c.train.balance.method, JT_BALANCE_DWA);
    assert_true(c.train.balance.temperature == 3.0);
    assert_int_equal(c.train.balance.window, 20);
    assert_int_equal(c.train.pcgrad, 1);
    assert_int_equal(c.train.early_stop.metric.kind, JT_METRIC_ACCURACY);
    assert_int_equal(c.train.early_stop.metric.head, 1);
    assert_int_equal(c.train.early_stop.metric.maximize, 1);
    assert_string_equal(c.train.early_stop.metric.text, "speaker.accuracy");
    assert_int_equal(c.train.early_stop.patience, 3);
    assert_int_equal(c.checkpoint.best.kind, JT_METRIC_LOSS);
    assert_int_equal(c.checkpoint.best.head, 0);
    assert_int_equal(c.checkpoint.best.maximize, 0);
    assert_string_equal(c.checkpoint.best.text, "item.loss");
    jt_config_free(&c);

    /* the other schedules, methods and metrics; a mode against the metric's direction is the
     * user's choice */
    const char *sets[] = {"train.schedule={name: step, warmup_steps: 0, step_size: 7, gamma: 0.5}",
                          "train.balance={method: gradnorm, alpha: 0}",
                          "train.pcgrad=false",
                          "train.accumulate=1048576",
                          "train.early_stop={metric: loss, mode: max, patience: 1}",
                          "checkpoint.best={metric: speaker.accuracy, mode: min}"};
    parse_ok(&c, text, sets, 6);
    assert_int_equal(c.train.schedule.name, JT_SCHED_STEP);
    assert_int_equal(c.train.schedule.step_size, 7);
    assert_true(c.train.schedule.gamma == 0.5);
    assert_true(c.train.schedule.min_lr == 0.0);
    assert_int_equal(c.train.balance.method, JT_BALANCE_GRADNORM);
    assert_true(c.train.balance.alpha == 0.0);
    assert_true(c.train.balance.temperature == 2.0); /* dwa's keys back to their defaults */
    assert_int_equal(c.train.balance.window, 0);
    assert_int_equal(c.train.pcgrad, 0);
    assert_int_equal(c.train.accumulate, 1L << 20);
    assert_int_equal(c.train.early_stop.metric.kind, JT_METRIC_LOSS);
    assert_int_equal(c.train.early_stop.metric.head, -1);
    assert_int_equal(c.train.early_stop.metric.maximize, 1);
    assert_int_equal(c.checkpoint.best.kind, JT_METRIC_ACCURACY);
    assert_int_equal(c.checkpoint.best.head, 1);
    assert_int_equal(c.checkpoint.best.maximize, 0);
    jt_config_free(&c);

    const char *more[] = {"train.schedule={name: linear, min_lr: 0.001}",
                          "train.balance.method=uncertainty", "train.balance.temperature=null",
                          "train.balance.window=null"};
    /* a null is never a value, so dwa's keys cannot be blanked out: replace the mapping. The
     * key is the file's (line 15); --set replaced only its value */
    expect_error(text, more, 4, SRC ":15: train.balance.temperature", "only for method dwa",
                 "the method is uncertainty");
    const char *more2[] = {"train.schedule={name: linear, min_lr: 0.001}",
                           "train.balance={method: uncertainty}",
                           "train.schedule.gamma=1"};
    expect_error(text, more2, 3, SRC ":--set: train.schedule.gamma", "only for schedule step",
                 NULL);
    parse_ok(&c, text, more2, 2);
    assert_int_equal(c.train.schedule.name, JT_SCHED_LINEAR);
    assert_int_equal(c.train.schedule.warmup_steps, 0);
    assert_true(c.train.schedule.min_lr == 0.001);
    assert_int_equal(c.train.balance.method, JT_BALANCE_UNCERTAINTY);
    jt_config_free(&c);
    const char *gamma1 = "train.schedule={name: step, step_size: 1, gamma: 1}";
    parse_ok(&c, text, &gamma1, 1);
    assert_true(c.train.schedule.gamma == 1.0);
    jt_config_free(&c);
    free(text);
}

static void test_multitask_errors(void **state) {
    (void)state;
    /* train.accumulate */
    expect_mt_error("  accumulate: 0",
                    SRC ":13: train.accumulate: expected an integer in [1, 1048576], found '0'",
                    NULL, NULL);
    expect_mt_error("  accumulate: 1048577", SRC ":13:", "train.accumulate", "'1048577'");
    expect_mt_error("  accumulate: 2.5", SRC ":13:", "train.accumulate", "'2.5'");

    /* train.schedule */
    expect_mt_error("  schedule: cosine",
                    SRC ":13: train.schedule: expected a mapping, found 'cosine'", NULL, NULL);
    expect_mt_error("  schedule: {name: exp}",
                    SRC ":13: train.schedule.name: expected one of constant, cosine, step, "
                        "linear, found 'exp'",
                    NULL, NULL);
    expect_mt_error("  schedule: {warmup: 3}", SRC ":13:", "train.schedule.warmup: unknown key",
                    NULL);
    expect_mt_error("  schedule: {warmup_steps: -1}", SRC ":13:",
                    "train.schedule.warmup_steps: expected an integer in [0,", "'-1'");
    expect_mt_error("  schedule:\n    name: constant\n    min_lr: 0.001", SRC ":15:",
                    "train.schedule.min_lr: only for schedules cosine and linear",
                    "the schedule is constant");
    expect_mt_error("  schedule: {min_lr: 0}", SRC ":13:",
                    "train.schedule.min_lr: only for schedules cosine and linear", NULL);
    expect_mt_error("  schedule: {name: step, step_size: 2, min_lr: 0.001}", SRC ":13:",
                    "train.schedule.min_lr: only for", "the schedule is step");
    expect_mt_error("  schedule: {name: cosine, min_lr: 0.01}",
                    SRC ":13: train.schedule.min_lr: expected a number < train.optimizer.lr "
                        "(0.01), found '0.01'",
                    NULL, NULL);
    expect_mt_error("  schedule: {name: linear, min_lr: -1e-5}", SRC ":13:",
                    "train.schedule.min_lr: expected a number >= 0", "'-1e-5'");
    expect_mt_error("  schedule:\n    name: step\n    gamma: 0.5", SRC ":13:",
                    "train.schedule.step_size: required key is missing", NULL);
    expect_mt_error("  schedule: {name: step, step_size: 0}", SRC ":13:",
                    "train.schedule.step_size: expected an integer in [1,", "'0'");
    expect_mt_error("  schedule:\n    name: cosine\n    step_size: 7", SRC ":15:",
                    "train.schedule.step_size: only for schedule step", "the schedule is cosine");
    expect_mt_error("  schedule: {name: linear, gamma: 0.5}", SRC ":13:",
                    "train.schedule.gamma: only for schedule step", NULL);
    expect_mt_error("  schedule: {name: step, step_size: 2, gamma: 0}", SRC ":13:",
                    "train.schedule.gamma: expected a number in (0, 1], found '0'", NULL);
    expect_mt_error("  schedule: {name: step, step_size: 2, gamma: 1.5}", SRC ":13:",
                    "train.schedule.gamma", "(0, 1]");
    /* min_lr is checked against the lr in force, also one lowered by --set */
    char *text = mt("  schedule: {name: cosine, min_lr: 0.001}");
    const char *low = "train.optimizer.lr=0.0005";
    expect_error(text, &low, 1, SRC ":13: train.schedule.min_lr", "< train.optimizer.lr (0.0005)",
                 "'0.001'");
    free(text);

    /* train.balance */
    expect_mt_error("  balance: {method: mgda}",
                    SRC ":13: train.balance.method: expected one of fixed, uncertainty, dwa, "
                        "gradnorm, found 'mgda'",
                    NULL, NULL);
    expect_mt_error("  balance: {method: dwa, alpha: 1}",
                    SRC ":13: train.balance.alpha: only for method gradnorm", "the method is dwa",
                    NULL);
    expect_mt_error("  balance:\n    alpha: 1",
                    SRC ":14: train.balance.alpha: only for method gradnorm", "the method is fixed",
                    NULL);
    expect_mt_error("  balance: {method: gradnorm, temperature: 2}",
                    SRC ":13: train.balance.temperature: only for method dwa", NULL, NULL);
    expect_mt_error("  balance: {method: uncertainty, window: 5}",
                    SRC ":13: train.balance.window: only for method dwa", NULL, NULL);
    expect_mt_error("  balance: {method: dwa, temperature: 0}",
                    SRC ":13: train.balance.temperature: expected a number > 0, found '0'", NULL,
                    NULL);
    expect_mt_error("  balance: {method: dwa, window: -1}", SRC ":13:", "train.balance.window",
                    "'-1'");
    expect_mt_error("  balance: {method: gradnorm, alpha: -0.5}",
                    SRC ":13: train.balance.alpha: expected a number >= 0, found '-0.5'", NULL,
                    NULL);
    expect_mt_error("  balance: {method: dwa, temp: 2}", SRC ":13:",
                    "train.balance.temp: unknown key", NULL);
    expect_mt_error("  balance: [dwa]", SRC ":13: train.balance: expected a mapping, found a list",
                    NULL, NULL);

    /* train.pcgrad: the YAML words true and false only */
    expect_mt_error("  pcgrad: yes", SRC ":13: train.pcgrad: expected true or false, found 'yes'",
                    NULL, NULL);
    expect_mt_error("  pcgrad: 1", SRC ":13: train.pcgrad: expected true or false, found '1'", NULL,
                    NULL);
    expect_mt_error("  pcgrad: \"true\"", SRC ":13: train.pcgrad", "the quoted string 'true'",
                    NULL);
    expect_mt_error("  pcgrad:", SRC ":13: train.pcgrad: expected true or false, found nothing",
                    NULL, NULL);

    /* train.early_stop */
    expect_mt_error("  early_stop: {patience: 3}",
                    SRC ":13: train.early_stop.metric: required key is missing", NULL, NULL);
    expect_mt_error("  early_stop: {metric: loss}",
                    SRC ":13: train.early_stop.patience: required key is missing", NULL, NULL);
    expect_mt_error("  early_stop:", SRC ":13: train.early_stop.metric: required key is missing",
                    NULL, NULL);
    expect_mt_error("  early_stop: {metric: loss, patience: 0}",
                    SRC ":13: train.early_stop.patience: expected an integer >= 1, found '0'", NULL,
                    NULL);
    expect_mt_error("  early_stop:\n    metric: speker.accuracy\n    patience: 2",
                    SRC ":14: train.early_stop.metric: 'speker' is not a head of model.heads "
                        "(heads: item, speaker)",
                    NULL, NULL);
    expect_mt_error("  early_stop: {metric: item.f1, patience: 2}",
                    SRC ":13: train.early_stop.metric: expected HEAD.accuracy, HEAD.loss",
                    "found 'item.f1'", NULL);
    expect_mt_error("  early_stop: {metric: accuracy, patience: 2}",
                    SRC ":13: train.early_stop.metric: expected HEAD.accuracy", "found 'accuracy'",
                    NULL);
    expect_mt_error("  early_stop: {metric: item.loss.loss, patience: 2}",
                    SRC ":13: train.early_stop.metric", "found 'item.loss.loss'", NULL);
    expect_mt_error("  early_stop: {metric: loss, patience: 2, mode: up}",
                    SRC ":13: train.early_stop.mode: expected one of max, min, found 'up'", NULL,
                    NULL);
    expect_mt_error("  early_stop: {metric: loss, patience: 2, delta: 0.1}", SRC ":13:",
                    "train.early_stop.delta: unknown key", "metric, mode, patience");
    expect_mt_error("  early_stop: loss",
                    SRC ":13: train.early_stop: expected a mapping, found 'loss'", NULL, NULL);

    /* checkpoint.best */
    expect_mt_error("checkpoint:\n  best: {mode: max}",
                    SRC ":14: checkpoint.best.metric: required key is missing", NULL, NULL);
    expect_mt_error("checkpoint:\n  best: {metric: voice.loss}",
                    SRC ":14: checkpoint.best.metric: 'voice' is not a head",
                    "heads: item, speaker", NULL);
    expect_mt_error("checkpoint:\n  best: {metric: loss, mode: lowest}",
                    SRC ":14: checkpoint.best.mode: expected one of max, min", NULL, NULL);
    expect_mt_error("checkpoint:\n  best: {metric: loss, patience: 2}", SRC ":14:",
                    "checkpoint.best.patience: unknown key", "metric, mode");
    expect_mt_error("checkpoint:\n  best: {metric: \"\"}",
                    SRC ":14: checkpoint.best.metric: expected a string", NULL, NULL);

    /* both need evaluations during the run */
    const char *noeval = "train.eval_every=0";
    text = mt(MT_ALL);
    expect_error(text, &noeval, 1,
                 SRC ":17: train.early_stop: needs train.eval_every > 0: the metric comes from "
                     "the evaluations",
                 NULL, NULL);
    free(text);
    text = mt("checkpoint:\n  best: {metric: item.accuracy}");
    expect_error(text, &noeval, 1, SRC ":14: checkpoint.best: needs train.eval_every > 0", NULL,
                 NULL);
    free(text);
}

static void test_multitask_round_trip(void **state) {
    (void)state;
    char *text = mt(MT_ALL);
    round_trip(text, NULL, 0);
    jt_config c;
    parse_ok(&c, text, NULL, 0);
    char *y = jt_config_to_yaml(&c);
    assert_non_null(y);
    assert_non_null(strstr(y, "  accumulate: 4\n"));
    assert_non_null(strstr(y, "  schedule: {name: cosine, warmup_steps: 5, min_lr: 1e-05}\n"));
    assert_non_null(strstr(y, "  balance: {method: dwa, temperature: 3, window: 20}\n"));
    assert_non_null(strstr(y, "  pcgrad: true\n"));
    assert_non_null(
        strstr(y, "  early_stop: {metric: speaker.accuracy, mode: max, patience: 3}\n"));
    assert_non_null(strstr(y, "  best: {metric: item.loss, mode: min}\n"));
    free(y);
    jt_config_free(&c);

    /* each schedule and method, both metric forms, a mode against the direction, doubles that
     * need 17 digits */
    const char *step[] = {"train.schedule={name: step, warmup_steps: 3, step_size: 7,"
                          " gamma: 0.30000000000000004}",
                          "train.balance={method: gradnorm, alpha: 0.1}",
                          "train.early_stop={metric: loss, mode: max, patience: 9}",
                          "checkpoint.best={metric: speaker.loss}"};
    round_trip(text, step, 4);
    const char *lin[] = {"train.schedule={name: linear, min_lr: 0.0012345678901234567}",
                         "train.balance={method: uncertainty}", "train.pcgrad=false",
                         "checkpoint.best={metric: loss, mode: max}"};
    round_trip(text, lin, 4);
    const char *cons[] = {"train.schedule={name: constant, warmup_steps: 100}",
                          "train.balance={method: fixed}",
                          "train.early_stop={metric: item.accuracy, mode: min, patience: 1}"};
    round_trip(text, cons, 3);
    const char *cos0[] = {"train.schedule={name: cosine}", "train.balance={method: dwa}"};
    round_trip(text, cos0, 2);
    free(text);
}

static void test_load_errors(void **state) {
    (void)state;
    jt_config c;
    char err[512] = "";
    jt_status st = jt_config_load(&c, "/nonexistent/dir/cfg.yaml", NULL, 0, err, sizeof err);
    assert_int_equal(st, JT_EUSAGE);
    assert_non_null(strstr(err, "/nonexistent/dir/cfg.yaml"));
    assert_null(c.blocks);
    st = jt_config_load(&c, JT_SOURCE_DIR "/tests/fixtures", NULL, 0, err, sizeof err);
    assert_int_equal(st, JT_EUSAGE);
    assert_non_null(strstr(err, "tests/fixtures"));
    /* a file's errors name the file */
    const char *set = "train.batch_size=0";
    const char *path = JT_SOURCE_DIR "/tests/fixtures/config/avfm-separate.yaml";
    st = jt_config_load(&c, path, &set, 1, err, sizeof err);
    assert_int_equal(st, JT_EUSAGE);
    assert_non_null(strstr(err, "avfm-separate.yaml:--set: train.batch_size"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_design_example),  cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_values),     cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_wrong_types),     cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_missing_keys),    cmocka_unit_test(test_epochs_and_steps),
        cmocka_unit_test(test_duplicates_and_names), cmocka_unit_test(test_yaml_syntax),
        cmocka_unit_test(test_layers),          cmocka_unit_test(test_set_overrides),
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_multitask_defaults), cmocka_unit_test(test_multitask_values),
        cmocka_unit_test(test_multitask_errors),   cmocka_unit_test(test_multitask_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
