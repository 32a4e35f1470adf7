/* test_model_memory.c - sizes before allocation (issue 9): jt_model_build refuses a model that
 * does not fit before allocating it, naming the estimate, its parts, the largest layer and the
 * machine's memory; its estimate of the model's own buffers matches what the build then
 * allocates (measured with glibc's mallinfo2); a layer whose sizes overflow is refused by name;
 * size arithmetic saturates. JTRAIN_TEST_MEM_MB stands in for the machine's memory. */
#define _GNU_SOURCE /* mallinfo2 */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jtrain/config.h"
#include "jtrain/data.h"
#include "jtrain/model.h"

#define N 4
#define L 5

/* Metadata of a split (no rows are read by jt_model_build): image (8, 8), audio (6, 4), label
 * (4 classes), speaker (3 classes), caption (N, L) over 5 tokens. */
typedef struct {
    jt_split s;
    jt_array a[5];
} fake_split;

static void fake_init(fake_split *f) {
    memset(f, 0, sizeof *f);
    const char *names[5] = {"image", "audio", "label", "speaker", "caption"};
    jt_shape shapes[5] = {{2, {8, 8}}, {2, {6, 4}}, {0, {0}}, {0, {0}}, {1, {L}}};
    size_t elems[5] = {64, 24, 1, 1, L}, classes[5] = {0, 0, 4, 3, 5};
    for (int k = 0; k < 5; k++) {
        snprintf(f->a[k].name, sizeof f->a[k].name, "%s", names[k]);
        f->a[k].role = k < 2 ? JT_ARRAY_INPUT : JT_ARRAY_LABEL;
        f->a[k].shape = shapes[k];
        f->a[k].row_elems = elems[k];
        f->a[k].n_classes = classes[k];
    }
    f->s.n = N;
    f->s.end = N;
    f->s.arrays = f->a;
    f->s.n_arrays = 5;
    snprintf(f->s.path, sizeof f->s.path, "fake.h5");
}

/* Every kind with a workspace, fused conv groups, a flatten that shares its buffers. */
static const char *ALL =
    "data: {file: fake.h5}\n"
    "model:\n"
    "  blocks:\n"
    "    enc: {input: image, layers: [{conv2d: {filters: 16, kernel: 3, padding: same}}, relu,"
    " {maxpool2d: {size: 2}}, {conv2d: {filters: 8, kernel: 3}}, tanh]}\n"
    "    aud: {input: audio, layers: [{conv1d: {filters: 8, kernel: 2}}, tanh, {dropout: {rate: 0.1}}, layernorm,"
    " {cross_attention: {heads: 2, units: 8, context: enc}}, {gru: {units: 8, return_sequences: true}},"
    " {lstm: {units: 8, return_sequences: true}}, {self_attention: {heads: 2, units: 8}},"
    " {maxpool1d: {size: 2}}, {attention_pool: {units: 3}}]}\n"
    "  heads:\n"
    "    item: {input: enc, target: label, layers: [flatten, {dense: {units: 32}}, relu]}\n"
    "    cap: {input: enc, target: caption, layers: [{attn_decoder: {units: 6}}]}\n"
    "    spk: {input: aud, target: speaker}\n"
    "train: {steps: 1, batch_size: 1024}\n";

static void parse(jt_config *c, const char *yaml, const char *set) {
    char err[1024] = "";
    if (jt_config_parse(c, yaml, "model.yaml", set ? &set : NULL, set ? 1 : 0, err, sizeof err) != JT_OK)
        fail_msg("config: %s", err);
}

/* The number after `label` in msg, in MiB ("12.5 MiB", "1.2 GiB", "300.0 KiB" or "0 bytes"). */
static double mib_after(const char *msg, const char *label) {
    const char *p = strstr(msg, label);
    if (!p) fail_msg("'%s' not in '%s'", label, msg);
    char unit[8] = "";
    double x = 0;
    if (sscanf(p + strlen(label), "%lf %7s", &x, unit) != 2) fail_msg("no size after '%s'", label);
    return !strncmp(unit, "GiB", 3) ? x * 1024 : !strncmp(unit, "KiB", 3) ? x / 1024
           : !strncmp(unit, "bytes", 5) ? x / 1048576 : x;
}

static void test_refuses_before_allocating(void **state) {
    (void)state;
    jt_config c;
    fake_split f;
    jt_model m;
    char err[1024] = "";
    /* a 1e6-unit dense layer and the projection after it: 68 M weights, 1 GiB with gradients
     * and Adam, 1.5 GiB of checkpoint image */
    parse(&c, "data: {file: fake.h5}\nmodel:\n  blocks:\n"
              "    trunk: {input: image, layers: [flatten, {dense: {units: 1000000}}, relu]}\n"
              "  heads: {item: {input: trunk, target: label}}\ntrain: {steps: 1, batch_size: 32}\n",
          NULL);
    fake_init(&f);
    setenv("JTRAIN_TEST_MEM_MB", "1024", 1);
    struct mallinfo2 before = mallinfo2();
    jt_status st = jt_model_build(&m, &c, &f.s, 16, err, sizeof err);
    struct mallinfo2 after = mallinfo2();
    unsetenv("JTRAIN_TEST_MEM_MB");
    assert_int_equal(st, JT_EUSAGE);
    const char *want[] = {"model.yaml: the model needs about 2.9 GiB per rank for batch 32 (16 rows per rank)",
                          "parameters 1.0 GiB (weights, gradients, Adam m and v) and 1.5 GiB more for "
                          "a checkpoint on rank 0, activations 310.0 MiB, workspaces 0 bytes",
                          "the largest layer is trunk.1.dense (2.5 GiB)",
                          "this machine has 1.0 GiB available of 1.0 GiB (JTRAIN_TEST_MEM_MB)"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(err, want[i])) fail_msg("'%s' lacks '%s'", err, want[i]);
    assert_null(strchr(err, '\n'));
    assert_null(m.chains); /* left zeroed */
    /* nothing large was allocated on the way */
    assert_true(after.uordblks + after.hblkhd < before.uordblks + before.hblkhd + (1u << 20));
    jt_config_free(&c);
}

static void test_estimate_is_the_allocation(void **state) {
    (void)state;
    jt_config c;
    fake_split f;
    jt_model m;
    char err[2048] = "";
    const size_t max_n = 1024;
    parse(&c, ALL, NULL);
    fake_init(&f);
    setenv("JTRAIN_TEST_MEM_MB", "1", 1); /* refused: the message gives the parts */
    assert_int_equal(jt_model_build(&m, &c, &f.s, max_n, err, sizeof err), JT_EUSAGE);
    double est = mib_after(err, "parameters ") + mib_after(err, "activations ") +
                 mib_after(err, "workspaces ");
    print_message("    %s\n", err);
    setenv("JTRAIN_TEST_MEM_MB", "100000", 1);
    struct mallinfo2 before = mallinfo2();
    if (jt_model_build(&m, &c, &f.s, max_n, err, sizeof err) != JT_OK) fail_msg("%s", err);
    struct mallinfo2 after = mallinfo2();
    unsetenv("JTRAIN_TEST_MEM_MB");
    double got = (double)((after.uordblks + after.hblkhd) - (before.uordblks + before.hblkhd)) / 1048576;
    print_message("    estimate %.2f MiB, allocated %.2f MiB\n", est, got);
    assert_true(got > 4);                              /* a model worth measuring */
    assert_true(est >= 0.98 * got && est <= 1.02 * got); /* the same walk, give or take rounding */
    jt_model_free(&m);
    jt_config_free(&c);
}

static void test_fits(void **state) {
    (void)state;
    jt_config c;
    fake_split f;
    jt_model m;
    char err[1024] = "";
    parse(&c, ALL, NULL);
    fake_init(&f);
    setenv("JTRAIN_TEST_MEM_MB", "64", 1);
    jt_status st = jt_model_build(&m, &c, &f.s, 8, err, sizeof err);
    unsetenv("JTRAIN_TEST_MEM_MB");
    if (st != JT_OK) fail_msg("%s", err);
    jt_model_free(&m);
    jt_config_free(&c);
}

static void test_overflow_names_the_layer(void **state) {
    (void)state;
    jt_config c;
    fake_split f;
    jt_model m;
    char err[1024] = "";
    parse(&c, "data: {file: fake.h5}\nmodel:\n  blocks:\n"
              "    trunk: {input: image, layers: [flatten, {dense: {units: 4}}]}\n"
              "  heads: {item: {input: trunk, target: label}}\ntrain: {steps: 1, batch_size: 32}\n",
          NULL);
    fake_init(&f);
    /* 2^60 rows of 64 floats: more than 2^64 bytes */
    assert_int_equal(jt_model_build(&m, &c, &f.s, (size_t)1 << 60, err, sizeof err), JT_EUSAGE);
    if (!strstr(err, "model.yaml:4: trunk.0.flatten: layer 'trunk.0.flatten' (flatten): its outputs for "
                     "1152921504606846976 rows per rank would take more than 2^64 bytes"))
        fail_msg("%s", err);
    jt_config_free(&c);
}

static void test_saturating_sizes(void **state) {
    (void)state;
    assert_true(jt_size_mul(SIZE_MAX / 2, 3) == SIZE_MAX);
    assert_true(jt_size_mul((size_t)1 << 32, (size_t)1 << 31) == (size_t)1 << 63);
    assert_true(jt_size_mul(SIZE_MAX, 0) == 0);
    assert_true(jt_size_add(SIZE_MAX - 1, 2) == SIZE_MAX);
    assert_true(jt_size_add(SIZE_MAX, SIZE_MAX) == SIZE_MAX);
    jt_shape s = {4, {(size_t)1 << 20, (size_t)1 << 20, (size_t)1 << 20, 16}};
    assert_true(jt_shape_size(&s) == SIZE_MAX);
    assert_true(jt_alloc_floats_bytes(SIZE_MAX / 2) == SIZE_MAX);
    assert_true(jt_alloc_floats_bytes(1) == 64);
    assert_true(jt_alloc_floats_bytes((size_t)1 << 20) == (size_t)4 << 20); /* 2 MiB pages */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refuses_before_allocating),
        cmocka_unit_test(test_estimate_is_the_allocation),
        cmocka_unit_test(test_fits),
        cmocka_unit_test(test_overflow_names_the_layer),
        cmocka_unit_test(test_saturating_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
