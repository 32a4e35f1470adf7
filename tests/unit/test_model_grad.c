/* test_model_grad.c - whole-model gradient checks along one random direction (as KANN does):
 * what per-layer checks miss (wiring of blocks and heads, a shared trunk receiving the sum of
 * two heads' gradients, cross-attention context gradients, loss weights and masking, sequence
 * heads) shows up as a mismatch between g.d and the central difference of the loss along d.
 * Also: the loss scaling makes the summed gradient of two half-batches equal the gradient of
 * the whole batch (the data-parallel invariant of docs/design.md). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jtrain/config.h"
#include "jtrain/data.h"
#include "jtrain/model.h"
#include "jtrain/rng.h"

#define N 6
#define L 5

/* An in-memory split with the arrays the configs below use: image (8, 8), audio (6, 4),
 * label (4 classes, one row masked), speaker (3 classes), caption (N, L) over 5 tokens. */
typedef struct {
    jt_split s;
    jt_array a[5];
    float image[N * 64], audio[N * 24];
    int32_t label[N], speaker[N], caption[N * L];
} fake_split;

static void fake_init(fake_split *f) {
    memset(f, 0, sizeof *f);
    jt_rng r;
    jt_rng_seed(&r, 9, JT_RNG_TEST, 0, 0, 0);
    for (size_t i = 0; i < N * 64; i++) f->image[i] = jt_rng_uniform(&r);
    for (size_t i = 0; i < N * 24; i++) f->audio[i] = jt_rng_normal(&r);
    for (int i = 0; i < N; i++) {
        f->label[i] = i == 2 ? -1 : i % 4;
        f->speaker[i] = (i * 2) % 3;
        for (int t = 0; t < L; t++) f->caption[i * L + t] = t < 2 + i % 3 ? (i + t) % 4 + 1 : (t == 2 + i % 3 ? 0 : -1);
    }
    const char *names[5] = {"image", "audio", "label", "speaker", "caption"};
    jt_shape shapes[5] = {{2, {8, 8}}, {2, {6, 4}}, {0, {0}}, {0, {0}}, {1, {L}}};
    size_t elems[5] = {64, 24, 1, 1, L}, classes[5] = {0, 0, 4, 3, 5};
    void *data[5] = {f->image, f->audio, f->label, f->speaker, f->caption};
    for (int k = 0; k < 5; k++) {
        snprintf(f->a[k].name, sizeof f->a[k].name, "%s", names[k]);
        f->a[k].role = k < 2 ? JT_ARRAY_INPUT : JT_ARRAY_LABEL;
        f->a[k].shape = shapes[k];
        f->a[k].row_elems = elems[k];
        f->a[k].n_classes = classes[k];
        f->a[k].data = data[k];
    }
    f->s.n = N;
    f->s.begin = 0;
    f->s.end = N;
    f->s.arrays = f->a;
    f->s.n_arrays = 5;
    snprintf(f->s.path, sizeof f->s.path, "fake.h5");
}

static void build(jt_model *m, jt_config *c, const char *yaml, fake_split *f) {
    char err[1024] = "";
    if (jt_config_parse(c, yaml, "model.yaml", NULL, 0, err, sizeof err) != JT_OK)
        fail_msg("config: %s", err);
    fake_init(f);
    if (jt_model_build(m, c, &f->s, N, err, sizeof err) != JT_OK) fail_msg("model: %s", err);
}

static void arrays_of(const fake_split *f, size_t off, const void **ptr) {
    for (size_t k = 0; k < f->s.n_arrays; k++)
        ptr[k] = (const char *)f->a[k].data + off * f->a[k].row_elems * 4;
}

/* The weighted loss of rows [off, off+n) with the global labelled counts of all N rows; with
 * grad, adds its gradient into m->params.g. */
static double loss_of(jt_model *m, const fake_split *f, size_t off, size_t n, int grad) {
    const void *ptr[8];
    arrays_of(f, off, ptr);
    uint64_t labelled[8];
    uint64_t rows[N];
    for (size_t i = 0; i < n; i++) rows[i] = off + i;
    for (size_t h = 0; h < m->n_heads; h++) {
        const jt_chain *c = &m->chains[m->n_blocks + h];
        const jt_array *t = &f->a[c->target_array];
        labelled[h] = 0;
        for (size_t i = 0; i < N * t->row_elems; i++) labelled[h] += ((const int32_t *)t->data)[i] >= 0;
    }
    jt_model_forward(m, ptr, rows, n, 1, 1); /* train mode: teacher forcing */
    jt_xent_stats st[8];
    jt_model_loss(m, ptr, n, labelled, grad, st);
    if (grad) jt_model_backward(m, ptr, rows, n, 1, NULL, NULL);
    double total = 0;
    for (size_t h = 0; h < m->n_heads; h++)
        total += m->chains[m->n_blocks + h].weight * st[h].loss_sum / (double)labelled[h];
    return total;
}

/* g.d against (L(w + eps d) - L(w - eps d)) / (2 eps) for a random unit direction d. */
static void check_direction(const char *yaml) {
    jt_model m;
    jt_config c;
    fake_split f;
    build(&m, &c, yaml, &f);
    jt_params *p = &m.params;
    size_t total = p->total;
    float *w0 = malloc(total * sizeof(float));
    double *d = calloc(total, sizeof(double));
    memcpy(w0, p->w, total * sizeof(float));
    jt_rng r;
    jt_rng_seed(&r, 3, JT_RNG_TEST, 1, 0, 0);
    double norm = 0;
    for (size_t v = 0; v < p->n_views; v++)
        for (size_t i = 0; i < p->views[v].size; i++) {
            size_t k = p->views[v].offset + i;
            d[k] = jt_rng_normal(&r);
            norm += d[k] * d[k];
        }
    norm = sqrt(norm);
    memset(p->g, 0, total * sizeof(float));
    loss_of(&m, &f, 0, N, 1);
    double gd = 0;
    for (size_t k = 0; k < total; k++) gd += (double)p->g[k] * d[k] / norm;
    double best = INFINITY;
    for (double eps = 1e-2; eps >= 1e-3; eps /= 3.1623) { /* float32: pick the best step */
        for (size_t k = 0; k < total; k++) p->w[k] = (float)(w0[k] + eps * d[k] / norm);
        double lp = loss_of(&m, &f, 0, N, 0);
        for (size_t k = 0; k < total; k++) p->w[k] = (float)(w0[k] - eps * d[k] / norm);
        double lm = loss_of(&m, &f, 0, N, 0);
        double fd = (lp - lm) / (2 * eps);
        double rel = fabs(fd - gd) / fmax(1e-4, fabs(fd) + fabs(gd));
        if (rel < best) best = rel;
    }
    print_message("    g.d = %.6g, relative error %.2e\n", gd, best);
    assert_true(fabs(gd) > 1e-4); /* the direction must actually move the loss */
    assert_true(best < 1e-3);
    free(w0);
    free(d);
    jt_model_free(&m);
    jt_config_free(&c);
}

static const char *SHARED =
    "data: {file: fake.h5}\n"
    "model:\n"
    "  blocks:\n"
    "    trunk: {input: image, layers: [{conv2d: {filters: 3, kernel: 3}}, tanh, flatten,"
    " {dense: {units: 8}}, sigmoid]}\n"
    "  heads:\n"
    "    item: {input: trunk, target: label, weight: 0.7}\n"
    "    spk: {input: trunk, target: speaker, weight: 0.3, layers: [{dense: {units: 5}}, tanh]}\n"
    "train: {steps: 1, batch_size: 6}\n";

static const char *SEPARATE =
    "data: {file: fake.h5}\n"
    "model:\n"
    "  blocks:\n"
    "    img: {input: image, layers: [{conv2d: {filters: 2, kernel: 3, stride: 2, padding: same}},"
    " tanh, {maxpool2d: {size: 2}}, flatten]}\n"
    "    aud: {input: audio, layers: [{gru: {units: 4}}]}\n"
    "  heads:\n"
    "    item: {input: img, target: label, weight: 0.5}\n"
    "    spk: {input: aud, target: speaker, weight: 0.5}\n"
    "train: {steps: 1, batch_size: 6}\n";

static const char *ATTENTION =
    "data: {file: fake.h5}\n"
    "model:\n"
    "  blocks:\n"
    "    enc: {input: image, layers: [{conv2d: {filters: 3, kernel: 3, padding: same}}, tanh,"
    " {maxpool2d: {size: 2}}]}\n"
    "    aud: {input: audio, layers: [{conv1d: {filters: 3, kernel: 2}}, tanh,"
    " {cross_attention: {heads: 1, units: 4, context: enc}}, {attention_pool: {units: 3}}]}\n"
    "  heads:\n"
    "    item: {input: enc, target: label, weight: 0.4, layers: [{attention_pool: {units: 4}}]}\n"
    "    cap: {input: enc, target: caption, weight: 0.4, layers: [{attn_decoder: {units: 6}}]}\n"
    "    spk: {input: aud, target: speaker, weight: 0.2}\n"
    "train: {steps: 1, batch_size: 6}\n";

static void test_shared_trunk(void **state) {
    (void)state;
    check_direction(SHARED);
}

static void test_separate(void **state) {
    (void)state;
    check_direction(SEPARATE);
}

static void test_attention_decoder(void **state) {
    (void)state;
    check_direction(ATTENTION);
}

/* Data parallelism: two halves of the batch, each scaled by the global labelled counts,
 * add up to the whole batch's gradient (up to float summation order). */
static void test_halves_sum_to_whole(void **state) {
    (void)state;
    jt_model m;
    jt_config c;
    fake_split f;
    build(&m, &c, SHARED, &f);
    jt_params *p = &m.params;
    float *whole = malloc(p->total * sizeof(float));
    memset(p->g, 0, p->total * sizeof(float));
    double lw = loss_of(&m, &f, 0, N, 1);
    memcpy(whole, p->g, p->total * sizeof(float));
    memset(p->g, 0, p->total * sizeof(float));
    double lh = loss_of(&m, &f, 0, N / 2, 1) + loss_of(&m, &f, N / 2, N - N / 2, 1);
    assert_true(fabs(lw - lh) < 1e-5 * fabs(lw));
    double worst = 0;
    for (size_t k = 0; k < p->total; k++) worst = fmax(worst, fabs(whole[k] - p->g[k]));
    assert_true(worst < 1e-6);
    free(whole);
    jt_model_free(&m);
    jt_config_free(&c);
}

/* A shared block of every kind that keeps state between forward and backward (fused conv2d
 * with relu and max-pool, GRU, LSTM, self-attention, layernorm, dropout, pooling). */
static const char *SHARED_KINDS =
    "data: {file: fake.h5}\n"
    "model:\n"
    "  blocks:\n"
    "    img: {input: image, layers: [{conv2d: {filters: 3, kernel: 3, padding: same}}, relu,"
    " {maxpool2d: {size: 2}}, flatten, {dense: {units: 6}}, {dropout: {rate: 0.3}}, sigmoid]}\n"
    "    seq: {input: audio, layers: [{conv1d: {filters: 4, kernel: 2}}, {gru: {units: 5,"
    " return_sequences: true}}, layernorm, {self_attention: {heads: 1, units: 4}},"
    " {lstm: {units: 3, return_sequences: true}}, {cross_attention: {heads: 1, units: 4,"
    " context: img2}}, meanpool_time]}\n"
    "    img2: {input: image, layers: [{conv2d: {filters: 2, kernel: 3, padding: same}}, tanh,"
    " {maxpool2d: {size: 2}}]}\n"
    "  heads:\n"
    "    item: {input: seq, target: label, weight: 0.7}\n"
    "    spk: {input: seq, target: speaker, weight: 0.3, layers: [{dense: {units: 5}}, tanh]}\n"
    "    cap: {input: img2, target: caption, weight: 0.5, layers: [{attn_decoder: {units: 6}}]}\n"
    "    lab2: {input: img, target: label, weight: 0.2}\n"
    "train: {steps: 1, batch_size: 6}\n";

/* heads_fed, and jt_model_backward_heads: one pass per head adds up to the full backward (up
 * to rounding), so layers keep what backward needs across repeated passes; a head's pass
 * leaves every parameter it does not reach at zero. */
static void check_heads_sum(const char *yaml, const uint32_t *want_fed) {
    jt_model m;
    jt_config c;
    fake_split f;
    build(&m, &c, yaml, &f);
    for (size_t k = 0; k < m.n_chains; k++) assert_int_equal(m.chains[k].heads_fed, want_fed[k]);
    jt_params *p = &m.params;
    float *whole = malloc(p->total * sizeof(float)), *sum = calloc(p->total, sizeof(float));
    memset(p->g, 0, p->total * sizeof(float));
    loss_of(&m, &f, 0, N, 1);
    memcpy(whole, p->g, p->total * sizeof(float));
    const void *ptr[8];
    arrays_of(&f, 0, ptr);
    uint64_t rows[N];
    for (size_t i = 0; i < N; i++) rows[i] = i;
    for (size_t h = 0; h < m.n_heads; h++) {
        memset(p->g, 0, p->total * sizeof(float));
        jt_model_backward_heads(&m, ptr, rows, N, 1, (uint32_t)1 << h, NULL, NULL);
        for (size_t k = 0; k < m.n_chains; k++) {
            const jt_chain *ch = &m.chains[k];
            if (ch->heads_fed >> h & 1) continue;
            for (size_t j = ch->g_begin; j < ch->g_end; j++) assert_true(p->g[j] == 0.0f);
        }
        for (size_t j = 0; j < p->total; j++) sum[j] += p->g[j];
    }
    double worst = 0, scale = 0;
    for (size_t j = 0; j < p->total; j++) {
        worst = fmax(worst, fabs(whole[j] - sum[j]));
        scale = fmax(scale, fabs(whole[j]));
    }
    print_message("    per-head passes vs whole: max |diff| %.2e (max |g| %.2e)\n", worst, scale);
    assert_true(scale > 0);
    assert_true(worst <= 1e-5 * scale);
    free(whole);
    free(sum);
    jt_model_free(&m);
    jt_config_free(&c);
}

static void test_heads_sum_shared(void **state) {
    (void)state;
    const uint32_t fed[] = {3, 1, 2};
    check_heads_sum(SHARED, fed);
}

static void test_heads_sum_kinds(void **state) {
    (void)state;
    /* chains: img, img2, seq (seq attends over img2) | item, spk, cap, lab2 */
    const uint32_t fed[] = {8, 7, 3, 1, 2, 4, 8};
    check_heads_sum(SHARED_KINDS, fed);
}

static void test_heads_sum_attention(void **state) {
    (void)state;
    /* chains: enc (feeds item, cap, and spk through aud's context), aud | item, cap, spk */
    const uint32_t fed[] = {7, 4, 1, 2, 4};
    check_heads_sum(ATTENTION, fed);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_trunk),
        cmocka_unit_test(test_separate),
        cmocka_unit_test(test_attention_decoder),
        cmocka_unit_test(test_halves_sum_to_whole),
        cmocka_unit_test(test_heads_sum_shared),
        cmocka_unit_test(test_heads_sum_kinds),
        cmocka_unit_test(test_heads_sum_attention),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
