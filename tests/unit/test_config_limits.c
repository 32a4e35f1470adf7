/* test_config_limits.c - the bounds of the config parser (issue 9): nesting depth, number of
 * values, aliases and anchors (in the file and in --set values), blocks, heads, layers and data
 * arrays, duplicate keys and block loops in large mappings, numbers that must hold as float32,
 * the run's length, and the line of encoding errors. Each test checks the status and that the
 * message names the file, the line and what was wrong. (Times of the adversarial files are
 * checked end to end by tests/cli/test_config_limits.sh.) */
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

/* A valid config; the generated texts below add to it. */
static const char *BASE = "data:\n"
                          "  file: d.h5\n"
                          "model:\n"
                          "  blocks:\n"
                          "    trunk: {input: image, layers: [flatten, {dense: {units: 16}}]}\n"
                          "  heads:\n"
                          "    a: {input: trunk, target: label}\n"
                          "train:\n"
                          "  steps: 10\n"
                          "  batch_size: 8\n";

/* A growing text buffer. */
typedef struct {
    char *s;
    size_t len, cap;
} text;

static void add(text *t, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int w = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        assert_true(w >= 0);
        if (t->s && t->len + (size_t)w < t->cap) {
            t->len += (size_t)w;
            return;
        }
        t->cap = 2 * (t->cap + (size_t)w + 64);
        t->s = realloc(t->s, t->cap);
        assert_non_null(t->s);
        if (t->len == 0) t->s[0] = '\0';
    }
}

static void add_times(text *t, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) add(t, "%s", s);
}

/* Expects JT_EUSAGE with one line that contains every non-NULL needle. */
static void expect_error(const char *yaml, const char *const *sets, size_t n_sets, const char *n1,
                         const char *n2, const char *n3) {
    jt_config c;
    char err[1024] = "";
    jt_status st = jt_config_parse(&c, yaml, SRC, sets, n_sets, err, sizeof err);
    if (st != JT_EUSAGE) fail_msg("expected JT_EUSAGE, got %d (err '%s')", (int)st, err);
    assert_null(strchr(err, '\n'));
    const char *needles[] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        if (needles[i] && !strstr(err, needles[i]))
            fail_msg("error '%s' does not contain '%s'", err, needles[i]);
    assert_null(c.blocks);
}

static void parse_ok(jt_config *c, const char *yaml, const char *const *sets, size_t n_sets) {
    char err[1024] = "";
    if (jt_config_parse(c, yaml, SRC, sets, n_sets, err, sizeof err) != JT_OK)
        fail_msg("parse failed: %s", err);
}

static void test_depth(void **state) {
    (void)state;
    text t = {0};
    add(&t, "%sextra: ", BASE); /* line 11 */
    add_times(&t, "[", 100000);
    expect_error(t.s, NULL, 0, SRC ":11: the config nests deeper than 64 levels", NULL, NULL);
    t.len = 0;
    add(&t, "%sextra:\n", BASE);
    for (int i = 1; i <= 70; i++) add(&t, "%*sk%d:\n", 2 * i, "", i); /* line 11 + i */
    expect_error(t.s, NULL, 0, SRC ":75: the config nests deeper than 64 levels", NULL, NULL);
    /* 64 levels are fine (then the schema speaks) */
    t.len = 0;
    add(&t, "%sextra: ", BASE);
    add_times(&t, "[", 63);
    add_times(&t, "]", 63);
    expect_error(t.s, NULL, 0, SRC ":11: extra: unknown key", NULL, NULL);
    /* --set values are bounded the same way */
    t.len = 0;
    add(&t, "data.file=");
    add_times(&t, "{a: ", 1000);
    const char *set = t.s;
    expect_error(BASE, &set, 1, "--set data.file={a: {a: ", "the value nests deeper than 64 levels",
                 NULL);
    free(t.s);
}

static void test_node_count(void **state) {
    (void)state;
    text t = {0};
    add(&t, "%sextra: [0", BASE);
    add_times(&t, ",0", 100000 - 2); /* with the base's 22 values: the limit plus 20 */
    add(&t, "]\n");
    expect_error(t.s, NULL, 0, SRC ":11: the config has more than 100000 values", NULL, NULL);
    t.len = 0;
    add(&t, "%sextra: [0", BASE);
    add_times(&t, ",0", 100000 - 40);
    add(&t, "]\n");
    expect_error(t.s, NULL, 0, SRC ":11: extra: unknown key", NULL, NULL);
    /* the file and the overrides count together */
    t.len = 0;
    add(&t, "model.heads.a.layers=[relu");
    add_times(&t, ",relu", 100000 - 30);
    add(&t, "]");
    const char *sets[] = {t.s, t.s};
    expect_error(BASE, sets, 2, "--set model.heads.a.layers=[relu,relu", "the value has more than 100000 values",
                 NULL);
    free(t.s);
}

static void test_aliases(void **state) {
    (void)state;
    /* billion laughs: 30 doublings are 2^30 values once repeated */
    text t = {0};
    add(&t, "%sx:\n  a0: &a0 [x, x]\n", BASE);
    for (int i = 1; i < 30; i++) add(&t, "  a%d: &a%d [*a%d, *a%d]\n", i, i, i - 1, i - 1);
    expect_error(t.s, NULL, 0, SRC ":", "the config has more than 100000 values",
                 "alias counts as the values it repeats");
    /* an alias inside the node it repeats would be a loop */
    expect_error("data: &d {file: *d}\n", NULL, 0, SRC ":1: alias *d is inside the node it repeats",
                 NULL, NULL);
    /* more than 256 anchors */
    t.len = 0;
    add(&t, "%sextra:\n", BASE);
    for (int i = 0; i < 300; i++) add(&t, "  - &a%d x\n", i);
    expect_error(t.s, NULL, 0, SRC ":268: the config has more than 256 anchors", NULL, NULL);
    /* in an override's value too */
    t.len = 0;
    add(&t, "data.file=[&a0 [x, x]");
    for (int i = 1; i < 30; i++) add(&t, ", &a%d [*a%d, *a%d]", i, i - 1, i - 1);
    add(&t, "]");
    const char *set = t.s;
    expect_error(BASE, &set, 1, "--set data.file=", "the value has more than 100000 values", NULL);
    free(t.s);

    /* aliases that stay small are fine: a layer list shared by two blocks */
    jt_config c;
    parse_ok(&c,
             "data: {file: d.h5}\n"
             "model:\n"
             "  blocks:\n"
             "    a: {input: image, layers: &L [flatten, {dense: {units: 4}}]}\n"
             "    b: {input: audio, layers: *L}\n"
             "  heads: {h: {input: a, target: label}}\n"
             "train: {steps: 1, batch_size: 1}\n",
             NULL, 0);
    assert_int_equal(c.blocks[1].n_layers, 2);
    assert_int_equal(c.blocks[1].layers[1].opts.units, 4);
    jt_config_free(&c);
}

static void test_encoding_line(void **state) {
    (void)state;
    expect_error("data:\n  file: d.h5\n  train: tr\xff\n", NULL, 0,
                 SRC ":3: YAML syntax error: invalid leading UTF-8 octet", NULL, NULL);
    expect_error("# a\n# b\n# c\n# d\nx: \xc3\x28\n", NULL, 0, SRC ":5: YAML syntax error", NULL,
                 NULL);
    /* a NUL byte in a file is named with its line too */
    const char *path = "config_limits_nul.yaml";
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite("data:\n  file: x\n\0\n", 1, 18, f);
    fclose(f);
    jt_config c;
    char err[512] = "";
    assert_int_equal(jt_config_load(&c, path, NULL, 0, err, sizeof err), JT_EUSAGE);
    assert_non_null(strstr(err, "config_limits_nul.yaml:3: not a config: contains a NUL byte"));
    remove(path);
}

static void test_model_limits(void **state) {
    (void)state;
    text t = {0};
    add(&t, "data: {file: d.h5}\nmodel:\n  blocks:\n");
    for (int i = 0; i < 257; i++) add(&t, "    b%d: {input: image, layers: [relu]}\n", i);
    add(&t, "  heads: {h: {input: b0, target: label}}\n");
    expect_error(t.s, NULL, 0, SRC ":4: model.blocks: 257 blocks, more than the limit of 256",
                 NULL, NULL);
    t.len = 0;
    add(&t, "data: {file: d.h5}\nmodel:\n  blocks: {b: {input: image, layers: [relu]}}\n  heads:\n");
    for (int i = 0; i < 13; i++) add(&t, "    h%d: {input: b, target: label}\n", i);
    expect_error(t.s, NULL, 0, SRC ":5: model.heads: 13 heads, more than the limit of 12", NULL,
                 NULL);
    t.len = 0;
    add(&t, "data: {file: d.h5}\nmodel:\n  blocks:\n    b: {input: image, layers: [relu");
    add_times(&t, ", relu", 600);
    add(&t, "]}\n  heads: {h: {input: b, target: label, layers: [relu");
    add_times(&t, ", relu", 500);
    add(&t, "]}}\n");
    expect_error(t.s, NULL, 0, SRC ":5: model.heads.h.layers: the model has more than 1024 layers",
                 NULL, NULL);
    /* data set arrays: 16 inputs and targets at most */
    t.len = 0;
    add(&t, "data: {file: d.h5}\nmodel:\n  blocks:\n");
    for (int i = 0; i < 16; i++) add(&t, "    b%d: {input: x%d, layers: [relu]}\n", i, i);
    add(&t, "  heads:\n    h: {input: b0, target: label}\ntrain: {steps: 1, batch_size: 1}\n");
    expect_error(t.s, NULL, 0, SRC ":21: model.heads.h.target", "'label' would be data set array number 17",
                 NULL);
    /* ... where blocks that read blocks do not count */
    t.len = 0;
    add(&t, "data: {file: d.h5}\nmodel:\n  blocks:\n");
    for (int i = 0; i < 40; i++) add(&t, "    b%d: {input: %s%d, layers: [relu]}\n", i, i < 15 ? "x" : "b", i < 15 ? i : i - 1);
    add(&t, "  heads:\n    h: {input: b0, target: label}\ntrain: {steps: 1, batch_size: 1}\n");
    jt_config c;
    parse_ok(&c, t.s, NULL, 0);
    assert_int_equal(c.n_blocks, 40);
    jt_config_free(&c);
    free(t.s);
}

static void test_large_mappings(void **state) {
    (void)state;
    /* a duplicate at the end of 20000 keys, found with the line of the first */
    text t = {0};
    add(&t, "data: {file: d.h5}\nmodel:\n  blocks:\n");
    for (int i = 0; i < 20000; i++) add(&t, "    b%d: 0\n", i);
    add(&t, "    b17: 0\n");
    expect_error(t.s, NULL, 0, SRC ":20004: model.blocks.b17: duplicate key (first given on line 21)",
                 NULL, NULL);
    /* the first wrong key in file order is the one named, whatever the sort found */
    expect_error("data: {file: d.h5, zz: 1, file: e.h5}\n", NULL, 0, SRC ":1: data.zz: unknown key",
                 NULL, NULL);
    expect_error("data: {file: d.h5, train: a, file: e.h5, zz: 1}\n", NULL, 0,
                 SRC ":1: data.file: duplicate key", NULL, NULL);
    /* a loop through 200 blocks: the first block on it (in file order) is named */
    t.len = 0;
    add(&t, "data: {file: d.h5}\nmodel:\n  blocks:\n    free: {input: image, layers: [relu]}\n");
    for (int i = 0; i < 200; i++) add(&t, "    b%d: {input: b%d, layers: [relu]}\n", i, (i + 1) % 200);
    add(&t, "  heads: {h: {input: free, target: label}}\n");
    expect_error(t.s, NULL, 0, SRC ":5: model.blocks.b0.input",
                 "block 'b0' takes its own output as input (through 'b1')", NULL);
    /* a long chain without a loop is fine */
    t.len = 0;
    add(&t, "data: {file: d.h5}\nmodel:\n  blocks:\n");
    for (int i = 0; i < 256; i++)
        add(&t, "    b%d: {input: %s%d, layers: [relu]}\n", i, i < 255 ? "b" : "image", i + 1);
    add(&t, "  heads: {h: {input: b0, target: label}}\ntrain: {steps: 1, batch_size: 1}\n");
    jt_config c;
    parse_ok(&c, t.s, NULL, 0);
    jt_config_free(&c);
    free(t.s);
}

static void test_float_values(void **state) {
    (void)state;
    const char *lr = "train.optimizer.lr=1e300";
    expect_error(BASE, &lr, 1, SRC ":--set: train.optimizer.lr: expected a number > 0 that a float holds",
                 "found '1e300'", NULL);
    const char *tiny = "train.optimizer.eps=1e-50";
    expect_error(BASE, &tiny, 1, "train.optimizer.eps: expected a number > 0 that a float holds", NULL,
                 NULL);
    const char *beta = "train.optimizer.beta2=0.99999999999";
    expect_error(BASE, &beta, 1, "train.optimizer.beta2: expected a number in [0, 1) that stays below 1 as a float",
                 NULL, NULL);
    const char *others[] = {"train.optimizer.weight_decay=1e39", "train.clip_norm=1e39",
                            "model.heads.a.weight=1e39"};
    const char *keys[] = {"train.optimizer.weight_decay", "train.clip_norm", "model.heads.a.weight"};
    for (int i = 0; i < 3; i++)
        expect_error(BASE, &others[i], 1, keys[i], "a number >= 0 that a float holds", "'1e39'");
    const char *rate = "model.blocks.trunk.layers=[{dropout: {rate: 0.99999999999}}]";
    expect_error(BASE, &rate, 1, "model.blocks.trunk.layers[0].dropout.rate", "[0, 1)", NULL);
    /* the largest float and the smallest positive one are fine */
    const char *ok[] = {"train.optimizer.lr=3.4e38", "train.optimizer.eps=1e-45",
                        "train.optimizer.beta2=0.99999994", "model.heads.a.weight=3.4e38"};
    jt_config c;
    parse_ok(&c, BASE, ok, 4);
    assert_true(c.train.adam.lr == 3.4e38);
    jt_config_free(&c);
}

static void test_run_length(void **state) {
    (void)state;
    const char *epochs[] = {"train.steps=0", "train.epochs=1152921504606846976"};
    expect_error(BASE, epochs, 2, SRC ":--set: train.epochs: expected an integer in [0, 1000000000]",
                 NULL, NULL);
    const char *steps = "train.steps=9007199254740993";
    expect_error(BASE, &steps, 1, SRC ":--set: train.steps: expected an integer in [0, 9007199254740992]",
                 NULL, NULL);
    jt_config c;
    char err[256] = "";
    uint64_t total = 7;
    const char *e[] = {"train.steps=0", "train.epochs=1000000000"};
    parse_ok(&c, BASE, e, 2);
    assert_int_equal(jt_config_total_steps(&c, 3, &total, err, sizeof err), JT_OK);
    assert_true(total == 3000000000ULL);
    /* epochs x steps per epoch beyond 2^53, and beyond 2^64 */
    assert_int_equal(jt_config_total_steps(&c, (uint64_t)1 << 30, &total, err, sizeof err), JT_EUSAGE);
    assert_true(total == 0);
    assert_non_null(strstr(err, SRC ": train.epochs: 1000000000 epochs of 1073741824 steps"));
    assert_int_equal(jt_config_total_steps(&c, UINT64_MAX / 2, &total, err, sizeof err), JT_EUSAGE);
    jt_config_free(&c);
    parse_ok(&c, BASE, NULL, 0);
    assert_int_equal(jt_config_total_steps(&c, UINT64_MAX, &total, err, sizeof err), JT_OK);
    assert_true(total == 10); /* train.steps: the data does not matter */
    jt_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_depth),          cmocka_unit_test(test_node_count),
        cmocka_unit_test(test_aliases),        cmocka_unit_test(test_encoding_line),
        cmocka_unit_test(test_model_limits),   cmocka_unit_test(test_large_mappings),
        cmocka_unit_test(test_float_values),   cmocka_unit_test(test_run_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
