/* test_layers.c - the layer registry, settings parsing, shapes, forward passes against naive
 * reference loops, finite-difference gradient checks of every kind, and dropout's per-sample
 * masks. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jtrain/layer.h"
#include "jtrain/mathx.h"
#include "testutil.h"

/* ---- a built layer with its own parameters and workspace ---- */

typedef struct {
    jt_layer l;
    jt_params p;
} th_layer;

static void th_build(th_layer *t, const char *kind, const jt_layer_opts *o, jt_shape in,
                     size_t max_n, uint64_t seed) {
    char err[512] = "";
    jt_params_init(&t->p);
    jt_status st = jt_layer_setup(&t->l, kind, "b.0", o, &in, NULL, max_n, &t->p, err, sizeof err);
    if (st != JT_OK) fail_msg("setup %s: %s", kind, err);
    jt_params_alloc(&t->p);
    jt_layer_bind(&t->l, &t->p);
    t->l.ws = jt_alloc_floats(t->l.ws_floats);
    jt_rng r;
    jt_rng_seed(&r, seed, JT_RNG_INIT, 0, 0, 0);
    if (t->l.ops->init) t->l.ops->init(&t->l, &r);
    /* non-zero biases, so the forward checks see them */
    for (size_t k = 0; k < t->p.total; k++) t->p.w[k] += 0.1f * (jt_rng_uniform(&r) - 0.5f);
}

static void th_free(th_layer *t) {
    jt_free_aligned(t->l.ws);
    jt_params_free(&t->p);
}

static jt_shape S1(size_t a) { return tu_shape(1, (size_t[]){a}); }
static jt_shape S2(size_t a, size_t b) { return tu_shape(2, (size_t[]){a, b}); }
static jt_shape S3(size_t a, size_t b, size_t c) { return tu_shape(3, (size_t[]){a, b, c}); }

static float *rand_floats(size_t n, uint64_t seed) {
    float *x = jt_alloc_floats(n);
    jt_rng r;
    jt_rng_seed(&r, seed, JT_RNG_TEST, 1, 2, 3);
    tu_fill_uniform(x, n, -1.0f, 1.0f, &r);
    return x;
}

/* ---- registry and settings ---- */

static void test_registry(void **state) {
    (void)state;
    const char *mine[] = {"dense", "conv2d", "maxpool2d", "flatten", "relu", "tanh", "sigmoid", "dropout"};
    for (size_t i = 0; i < sizeof mine / sizeof *mine; i++) {
        const jt_layer_ops *o = jt_layer_find(mine[i]);
        assert_non_null(o);
        assert_string_equal(o->kind, mine[i]);
    }
    assert_null(jt_layer_find("conv3d"));
    assert_null(jt_layer_find(NULL));
    size_t count = 0;
    for (const jt_layer_ops *const *k = jt_layer_kinds(); *k; k++) {
        assert_ptr_equal(jt_layer_find((*k)->kind), *k); /* names are unique */
        count++;
    }
    assert_true(count >= 8);
}

static jt_layer_kv kv(const char *k, const char *v, int line) {
    jt_layer_kv r;
    memset(&r, 0, sizeof r);
    snprintf(r.key, sizeof r.key, "%s", k);
    snprintf(r.value, sizeof r.value, "%s", v);
    r.line = line;
    return r;
}

static void test_opts_parse_ok(void **state) {
    (void)state;
    jt_layer_opts o;
    char err[256] = "";
    jt_layer_kv c[] = {kv("filters", "8", 3), kv("kernel", "3", 3), kv("stride", "2", 3),
                       kv("padding", "same", 3)};
    assert_int_equal(jt_layer_opts_parse("conv2d", c, 4, &o, err, sizeof err), JT_OK);
    assert_int_equal(o.filters, 8);
    assert_int_equal(o.kernel, 3);
    assert_int_equal(o.stride, 2);
    assert_int_equal(o.padding_same, 1);
    jt_layer_kv v = kv("padding", "valid", 4);
    assert_int_equal(jt_layer_opts_parse("conv2d", &v, 1, &o, err, sizeof err), JT_OK);
    assert_int_equal(o.padding_same, 0);
    jt_layer_kv d = kv("rate", "0.25", 5);
    assert_int_equal(jt_layer_opts_parse("dropout", &d, 1, &o, err, sizeof err), JT_OK);
    assert_true(o.rate == 0.25);
    assert_int_equal(jt_layer_opts_parse("relu", NULL, 0, &o, err, sizeof err), JT_OK);
    jt_layer_kv p[] = {kv("size", "3", 6), kv("stride", "1", 6)};
    assert_int_equal(jt_layer_opts_parse("maxpool2d", p, 2, &o, err, sizeof err), JT_OK);
    assert_int_equal(o.size, 3);
    assert_int_equal(o.stride, 1);
    /* return_sequences / context belong to the recurrent kinds, when they are registered */
    if (jt_layer_find("gru")) {
        jt_layer_kv g[] = {kv("units", "4", 7), kv("return_sequences", "true", 7)};
        assert_int_equal(jt_layer_opts_parse("gru", g, 2, &o, err, sizeof err), JT_OK);
        assert_int_equal(o.return_sequences, 1);
        g[1] = kv("return_sequences", "yes", 7);
        assert_int_equal(jt_layer_opts_parse("gru", g, 2, &o, err, sizeof err), JT_EUSAGE);
    }
}

static void expect_parse_error(const char *kind, jt_layer_kv *k, size_t n, const char *needle) {
    jt_layer_opts o;
    char err[512] = "";
    assert_int_equal(jt_layer_opts_parse(kind, k, n, &o, err, sizeof err), JT_EUSAGE);
    if (!strstr(err, needle)) fail_msg("message '%s' lacks '%s'", err, needle);
}

static void test_opts_parse_errors(void **state) {
    (void)state;
    jt_layer_kv u = kv("units", "4", 12);
    expect_parse_error("conv2d", &u, 1, "layer 'conv2d' has no setting 'units' (line 12)");
    expect_parse_error("conv2d", &u, 1, "kernel"); /* lists what it accepts */
    expect_parse_error("relu", &u, 1, "no setting 'units'");
    expect_parse_error("conv3d", &u, 1, "unknown layer kind 'conv3d'");
    expect_parse_error("conv3d", &u, 1, "dense, conv2d");
    const char *bad_units[] = {"abc", "0", "-3", "12x", "", "1e3", "99999999999"};
    for (size_t i = 0; i < sizeof bad_units / sizeof *bad_units; i++) {
        jt_layer_kv b = kv("units", bad_units[i], 9);
        expect_parse_error("dense", &b, 1, "'units'");
        expect_parse_error("dense", &b, 1, "line 9");
    }
    jt_layer_kv pad = kv("padding", "full", 2);
    expect_parse_error("conv2d", &pad, 1, "'padding'");
    const char *bad_rate[] = {"1", "1.0", "-0.1", "nan", "inf", "0.5x"};
    for (size_t i = 0; i < sizeof bad_rate / sizeof *bad_rate; i++) {
        jt_layer_kv r = kv("rate", bad_rate[i], 4);
        expect_parse_error("dropout", &r, 1, "'rate'");
    }
    jt_layer_kv k0 = kv("kernel", "0", 3);
    expect_parse_error("conv2d", &k0, 1, "'kernel'");
    jt_layer_kv twice[] = {kv("units", "4", 3), kv("units", "5", 4)};
    expect_parse_error("dense", twice, 2, "given twice");
}

static void expect_setup_error(const char *kind, const jt_layer_opts *o, jt_shape in,
                               const char *needle) {
    jt_layer l;
    jt_params p;
    char err[512] = "";
    jt_params_init(&p);
    assert_int_equal(jt_layer_setup(&l, kind, "net.1", o, &in, NULL, 4, &p, err, sizeof err),
                     JT_EUSAGE);
    if (!strstr(err, needle)) fail_msg("message '%s' lacks '%s'", err, needle);
    jt_params_free(&p);
}

static void test_setup_errors(void **state) {
    (void)state;
    jt_layer_opts none = {0}, dense = {.units = 4}, conv = {.filters = 2, .kernel = 5};
    expect_setup_error("dense", &none, S1(3), "'units'");
    expect_setup_error("dense", &dense, S3(2, 3, 4), "flatten");
    expect_setup_error("conv2d", &none, S3(1, 8, 8), "'filters'");
    jt_layer_opts nok = {.filters = 2};
    expect_setup_error("conv2d", &nok, S3(1, 8, 8), "'kernel'");
    expect_setup_error("conv2d", &conv, S3(1, 4, 4), "larger than the input");
    expect_setup_error("conv2d", &conv, S1(16), "(C, H, W)");
    jt_layer_opts pool = {.size = 5};
    expect_setup_error("maxpool2d", &pool, S3(1, 4, 4), "larger than the input");
    expect_setup_error("nope", &none, S1(3), "unknown layer kind");
}

/* ---- shapes and parameter layout ---- */

static void check_out(const char *kind, const jt_layer_opts *o, jt_shape in, jt_shape want) {
    th_layer t;
    th_build(&t, kind, o, in, 2, 1);
    assert_int_equal(t.l.out.ndim, want.ndim);
    for (int i = 0; i < want.ndim; i++) assert_int_equal(t.l.out.d[i], want.d[i]);
    th_free(&t);
}

static void test_shapes(void **state) {
    (void)state;
    jt_layer_opts c3s2 = {.filters = 4, .kernel = 3, .stride = 2, .padding_same = 1};
    check_out("conv2d", &c3s2, S3(3, 7, 7), S3(4, 4, 4)); /* ceil(7 / 2) */
    check_out("conv2d", &c3s2, S3(3, 8, 6), S3(4, 4, 3));
    jt_layer_opts c3v2 = {.filters = 4, .kernel = 3, .stride = 2};
    check_out("conv2d", &c3v2, S3(3, 7, 8), S3(4, 3, 3));
    jt_layer_opts c3 = {.filters = 5, .kernel = 3};
    check_out("conv2d", &c3, S2(28, 28), S3(5, 26, 26)); /* (H, W) is C = 1 */
    check_out("maxpool2d", &(jt_layer_opts){0}, S3(4, 7, 7), S3(4, 3, 3));
    check_out("maxpool2d", &(jt_layer_opts){.size = 3, .stride = 2}, S2(7, 9), S2(3, 4));
    check_out("flatten", &(jt_layer_opts){0}, S3(2, 3, 4), S1(24));
    check_out("dense", &(jt_layer_opts){.units = 6}, S2(5, 3), S2(5, 6));
    check_out("dropout", &(jt_layer_opts){.rate = 0.5}, S2(5, 3), S2(5, 3));

    th_layer t;
    th_build(&t, "conv2d", &c3s2, S3(3, 7, 7), 2, 1);
    assert_int_equal(t.l.n_params, 2);
    assert_string_equal(t.p.views[t.l.view[0]].name, "b.0.W");
    assert_string_equal(t.p.views[t.l.view[1]].name, "b.0.b");
    assert_int_equal(t.p.views[t.l.view[0]].ndim, 4);
    size_t wsh[4] = {4, 3, 3, 3};
    for (int i = 0; i < 4; i++) assert_int_equal(t.p.views[t.l.view[0]].shape[i], wsh[i]);
    th_free(&t);
    th_build(&t, "dense", &(jt_layer_opts){.units = 6}, S1(3), 2, 1);
    assert_int_equal(t.p.views[t.l.view[0]].shape[0], 6); /* (units, F) */
    assert_int_equal(t.p.views[t.l.view[0]].shape[1], 3);
    assert_int_equal(t.p.views[t.l.view[1]].size, 6);
    th_free(&t);

    char buf[64];
    jt_shape s = S3(32, 14, 14);
    jt_shape_format(&s, buf, sizeof buf);
    assert_string_equal(buf, "(32, 14, 14)");
    s = S1(128);
    jt_shape_format(&s, buf, sizeof buf);
    assert_string_equal(buf, "(128)");
    jt_shape_format(&s, buf, 4); /* truncates, stays terminated */
    assert_true(strlen(buf) < 4);
    assert_int_equal(jt_shape_size(&(jt_shape){3, {2, 3, 4}}), 24);
}

static void test_init_stats(void **state) {
    (void)state;
    size_t n = 20000;
    float *w = jt_alloc_floats(n);
    jt_rng r;
    jt_rng_seed(&r, 3, JT_RNG_INIT, 0, 0, 0);
    jt_init_he_normal(w, n, 50, &r);
    double s2 = 0, mean = 0;
    for (size_t i = 0; i < n; i++) s2 += (double)w[i] * w[i], mean += w[i];
    assert_true(fabs(sqrt(s2 / n) - sqrt(2.0 / 50)) < 0.01);
    assert_true(fabs(mean / n) < 0.01);
    jt_init_glorot_uniform(w, n, 30, 70, &r);
    double lim = sqrt(6.0 / 100), mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(w[i]));
    assert_true(mx <= lim && mx > 0.95 * lim);
    jt_free_aligned(w);
}

/* ---- forward passes against naive references ---- */

static void test_dense_forward(void **state) {
    (void)state;
    const size_t n = 3, T = 4, F = 5, U = 7;
    for (int seq = 0; seq < 2; seq++) {
        th_layer t;
        th_build(&t, "dense", &(jt_layer_opts){.units = (long)U}, seq ? S2(T, F) : S1(F), n, 2);
        size_t rows = seq ? n * T : n;
        float *x = rand_floats(rows * F, 5), *y = jt_alloc_floats(rows * U);
        t.l.ops->forward(&t.l, x, y, n, NULL);
        for (size_t r = 0; r < rows; r++)
            for (size_t u = 0; u < U; u++) {
                double ref = t.l.W[1][u];
                for (size_t f = 0; f < F; f++) ref += (double)x[r * F + f] * t.l.W[0][u * F + f];
                assert_true(fabs(ref - y[r * U + u]) < 1e-5);
            }
        jt_free_aligned(x);
        jt_free_aligned(y);
        th_free(&t);
    }
}

/* Naive convolution with TensorFlow "SAME" padding computed here independently. */
static void conv_ref(const float *x, const float *W, const float *b, double *y, size_t n,
                     size_t C, size_t H, size_t Wd, size_t F, size_t K, size_t S, int same,
                     size_t *OHp, size_t *OWp) {
    size_t OH, OW;
    long pt = 0, pl = 0;
    if (same) {
        OH = (H + S - 1) / S, OW = (Wd + S - 1) / S;
        long th = (long)((OH - 1) * S + K) - (long)H, tw = (long)((OW - 1) * S + K) - (long)Wd;
        pt = th > 0 ? th / 2 : 0;
        pl = tw > 0 ? tw / 2 : 0;
    } else {
        OH = (H - K) / S + 1, OW = (Wd - K) / S + 1;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t f = 0; f < F; f++)
            for (size_t oh = 0; oh < OH; oh++)
                for (size_t ow = 0; ow < OW; ow++) {
                    double s = b[f];
                    for (size_t c = 0; c < C; c++)
                        for (size_t a = 0; a < K; a++)
                            for (size_t e = 0; e < K; e++) {
                                long ih = (long)(oh * S + a) - pt, iw = (long)(ow * S + e) - pl;
                                if (ih < 0 || iw < 0 || ih >= (long)H || iw >= (long)Wd) continue;
                                s += (double)W[((f * C + c) * K + a) * K + e] *
                                     x[((i * C + c) * H + (size_t)ih) * Wd + (size_t)iw];
                            }
                    y[((i * F + f) * OH + oh) * OW + ow] = s;
                }
    *OHp = OH;
    *OWp = OW;
}

static void test_conv2d_forward(void **state) {
    (void)state;
    struct { size_t C, H, W, F, K, S; int same, two; } cases[] = {
        {3, 7, 6, 4, 3, 1, 0, 0}, {2, 7, 7, 3, 3, 2, 1, 0}, {2, 5, 6, 3, 2, 2, 1, 0},
        {1, 6, 6, 2, 4, 1, 1, 0}, {1, 8, 7, 3, 3, 1, 0, 1}, {3, 9, 9, 2, 5, 3, 1, 0},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        size_t C = cases[ci].C, H = cases[ci].H, Wd = cases[ci].W, n = 3;
        jt_layer_opts o = {.filters = (long)cases[ci].F, .kernel = (long)cases[ci].K,
                           .stride = (long)cases[ci].S, .padding_same = cases[ci].same};
        th_layer t;
        th_build(&t, "conv2d", &o, cases[ci].two ? S2(H, Wd) : S3(C, H, Wd), n + 1, 3);
        size_t out = jt_shape_size(&t.l.out);
        float *x = rand_floats(n * C * H * Wd, 7 + ci), *y = jt_alloc_floats(n * out);
        double *ref = calloc(n * out, sizeof *ref);
        t.l.ops->forward(&t.l, x, y, n, NULL);
        size_t OH, OW;
        conv_ref(x, t.l.W[0], t.l.W[1], ref, n, C, H, Wd, cases[ci].F, cases[ci].K, cases[ci].S,
                 cases[ci].same, &OH, &OW);
        assert_int_equal(t.l.out.d[1], OH);
        assert_int_equal(t.l.out.d[2], OW);
        for (size_t k = 0; k < n * out; k++)
            if (fabs(ref[k] - y[k]) > 1e-5) fail_msg("case %zu entry %zu: %g vs %g", ci, k, ref[k], (double)y[k]);
        free(ref);
        jt_free_aligned(x);
        jt_free_aligned(y);
        th_free(&t);
    }
}

static void test_conv2d_same_hand(void **state) {
    (void)state;
    /* 1x3x3 input 1..9, 2x2 kernel of ones, stride 2, same: OH = 2, pad_total 1, all after
     * (TensorFlow puts the odd pad at the end): windows {1,2,4,5}, {3,6}, {7,8}, {9}. */
    th_layer t;
    th_build(&t, "conv2d", &(jt_layer_opts){.filters = 1, .kernel = 2, .stride = 2, .padding_same = 1},
             S2(3, 3), 1, 1);
    for (int k = 0; k < 4; k++) t.l.W[0][k] = 1.0f;
    t.l.W[1][0] = 0.0f;
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, y[4];
    t.l.ops->forward(&t.l, x, y, 1, NULL);
    float want[4] = {12, 9, 15, 9};
    for (int k = 0; k < 4; k++) assert_true(y[k] == want[k]);
    th_free(&t);
}

static void test_maxpool_forward(void **state) {
    (void)state;
    struct { size_t P, S, H, W; } cases[] = {{2, 2, 7, 6}, {3, 2, 7, 9}, {2, 1, 5, 5}};
    for (size_t ci = 0; ci < 3; ci++) {
        size_t C = 3, n = 2, P = cases[ci].P, S = cases[ci].S, H = cases[ci].H, Wd = cases[ci].W;
        th_layer t;
        th_build(&t, "maxpool2d", &(jt_layer_opts){.size = (long)P, .stride = (long)S}, S3(C, H, Wd), n, 1);
        size_t OH = (H - P) / S + 1, OW = (Wd - P) / S + 1;
        assert_int_equal(t.l.out.d[1], OH);
        float *x = rand_floats(n * C * H * Wd, 9 + ci), *y = jt_alloc_floats(n * C * OH * OW);
        t.l.ops->forward(&t.l, x, y, n, NULL);
        for (size_t i = 0; i < n * C; i++)
            for (size_t oh = 0; oh < OH; oh++)
                for (size_t ow = 0; ow < OW; ow++) {
                    float m = -INFINITY;
                    for (size_t a = 0; a < P; a++)
                        for (size_t b = 0; b < P; b++)
                            m = fmaxf(m, x[(i * H + oh * S + a) * Wd + ow * S + b]);
                    assert_true(y[(i * OH + oh) * OW + ow] == m);
                }
        jt_free_aligned(x);
        jt_free_aligned(y);
        th_free(&t);
    }
}

static void test_activations_forward(void **state) {
    (void)state;
    float x[6] = {-100.0f, -1.5f, -0.0f, 0.25f, 2.0f, 100.0f}, y[6];
    th_layer t;
    th_build(&t, "relu", NULL, S1(6), 1, 1);
    t.l.ops->forward(&t.l, x, y, 1, NULL);
    for (int i = 0; i < 6; i++) assert_true(y[i] == (x[i] > 0 ? x[i] : 0.0f));
    th_free(&t);
    th_build(&t, "sigmoid", NULL, S1(6), 1, 1);
    t.l.ops->forward(&t.l, x, y, 1, NULL);
    for (int i = 0; i < 6; i++) assert_true(fabs(y[i] - 1.0 / (1.0 + exp(-(double)x[i]))) < 1e-7);
    th_free(&t);
    th_build(&t, "tanh", NULL, S1(6), 1, 1);
    t.l.ops->forward(&t.l, x, y, 1, NULL);
    for (int i = 0; i < 6; i++) assert_true(fabs(y[i] - tanh((double)x[i])) < 1e-7);
    th_free(&t);
}

/* ---- gradient checks ---- */

static void test_grad_dense(void **state) {
    (void)state;
    tu_gradcheck_layer("dense", &(jt_layer_opts){.units = 4}, &(jt_shape){1, {6}}, 3, NULL);
    tu_gradcheck_layer("dense", &(jt_layer_opts){.units = 3}, &(jt_shape){2, {4, 5}}, 2, NULL);
    tu_gradcheck_layer("dense", &(jt_layer_opts){.units = 2}, &(jt_shape){1, {3}}, 1, NULL);
}

static void test_grad_conv2d(void **state) {
    (void)state;
    tu_gradcheck_layer("conv2d", &(jt_layer_opts){.filters = 3, .kernel = 3},
                       &(jt_shape){3, {2, 6, 5}}, 2, NULL);
    tu_gradcheck_layer("conv2d", &(jt_layer_opts){.filters = 2, .kernel = 3, .stride = 2, .padding_same = 1},
                       &(jt_shape){3, {2, 7, 6}}, 3, NULL);
    tu_gradcheck_layer("conv2d", &(jt_layer_opts){.filters = 2, .kernel = 2, .stride = 2, .padding_same = 1},
                       &(jt_shape){2, {5, 5}}, 2, NULL);
    tu_gradcheck_layer("conv2d", &(jt_layer_opts){.filters = 2, .kernel = 4, .padding_same = 1},
                       &(jt_shape){3, {1, 5, 6}}, 2, NULL);
    tu_gradcheck_layer("conv2d", &(jt_layer_opts){.filters = 2, .kernel = 3, .stride = 2},
                       &(jt_shape){3, {2, 7, 7}}, 2, NULL);
}

static void test_grad_maxpool(void **state) {
    (void)state;
    /* inputs on a shuffled grid 4/(m-1) apart, step 1e-3: no window's maximum can change */
    tu_gradcheck_cfg c = {.eps = 1e-3, .lo = -2.0f, .hi = 2.0f, .distinct = 1};
    tu_gradcheck_layer("maxpool2d", &(jt_layer_opts){0}, &(jt_shape){3, {2, 6, 7}}, 3, &c);
    tu_gradcheck_layer("maxpool2d", &(jt_layer_opts){.size = 3, .stride = 2},
                       &(jt_shape){3, {2, 7, 7}}, 2, &c);
    tu_gradcheck_layer("maxpool2d", &(jt_layer_opts){.size = 2, .stride = 1},
                       &(jt_shape){2, {5, 4}}, 2, &c);
}

static void test_grad_shape_and_acts(void **state) {
    (void)state;
    tu_gradcheck_layer("flatten", NULL, &(jt_shape){3, {2, 3, 4}}, 2, NULL);
    tu_gradcheck_cfg kink = {.eps = 1e-2, .lo = -2.0f, .hi = 2.0f, .min_abs = 2e-2f};
    tu_gradcheck_layer("relu", NULL, &(jt_shape){2, {3, 5}}, 3, &kink);
    tu_gradcheck_cfg wide = {.lo = -3.0f, .hi = 3.0f};
    tu_gradcheck_layer("tanh", NULL, &(jt_shape){1, {12}}, 3, &wide);
    tu_gradcheck_layer("sigmoid", NULL, &(jt_shape){1, {12}}, 3, &wide);
}

static void test_grad_dropout(void **state) {
    (void)state;
    tu_gradcheck_cfg train = {.train = 1};
    tu_gradcheck_layer("dropout", &(jt_layer_opts){.rate = 0.3}, &(jt_shape){2, {4, 5}}, 3, &train);
    tu_gradcheck_cfg eval = {.train = 0};
    tu_gradcheck_layer("dropout", &(jt_layer_opts){.rate = 0.3}, &(jt_shape){1, {8}}, 2, &eval);
}

/* A whole stack along one random direction would catch wiring errors; here each kind's own
 * check must also be able to fail: hand it broken kinds and make sure it notices. */
static void bad_relu_backward(jt_layer *l, const float *x, const float *y, const float *dy,
                              float *dx, size_t n, const jt_ctx *ctx) {
    (void)x, (void)y, (void)ctx;
    memcpy(dx, dy, n * jt_shape_size(&l->in) * sizeof(float)); /* forgets the mask */
}

static void adds_dx_backward(jt_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, size_t n, const jt_ctx *ctx) {
    float *tmp = calloc(n * jt_shape_size(&l->in), sizeof *tmp);
    jt_layer_find("relu")->backward(l, x, y, dy, tmp, n, ctx);
    for (size_t i = 0; i < n * jt_shape_size(&l->in); i++) dx[i] += tmp[i]; /* should overwrite */
    free(tmp);
}

static void zeroes_dw_backward(jt_layer *l, const float *x, const float *y, const float *dy,
                               float *dx, size_t n, const jt_ctx *ctx) {
    memset(l->dW[0], 0, (size_t)l->opt.units * l->in.d[0] * sizeof(float)); /* should add */
    jt_layer_find("dense")->backward(l, x, y, dy, dx, n, ctx);
}

static void test_gradcheck_catches_bugs(void **state) {
    (void)state;
    tu_gradcheck_cfg c = {.min_abs = 2e-2f};
    jt_layer_ops bad = *jt_layer_find("relu");
    bad.backward = bad_relu_backward;
    tu_gradcheck_result r = tu_gradcheck_ops(&bad, NULL, &(jt_shape){1, {10}}, 2, &c);
    assert_true(r.err_dx > 0.5);
    bad.backward = adds_dx_backward;
    r = tu_gradcheck_ops(&bad, NULL, &(jt_shape){1, {10}}, 2, &c);
    assert_int_equal(r.dx_overwritten, 0);
    jt_layer_ops dense = *jt_layer_find("dense");
    dense.backward = zeroes_dw_backward;
    r = tu_gradcheck_ops(&dense, &(jt_layer_opts){.units = 3}, &(jt_shape){1, {4}}, 2, NULL);
    assert_int_equal(r.dw_accumulates, 0);
    r = tu_gradcheck_ops(jt_layer_find("dense"), &(jt_layer_opts){.units = 3}, &(jt_shape){1, {4}}, 2, NULL);
    assert_int_equal(r.n_params, 2);
    assert_true(r.dw_accumulates && r.dx_overwritten && r.err_dw < 1e-2 && r.err_dx < 1e-2);
}

/* ---- dropout semantics ---- */

static void test_dropout_eval_identity(void **state) {
    (void)state;
    th_layer t;
    th_build(&t, "dropout", &(jt_layer_opts){.rate = 0.5}, S1(50), 4, 1);
    float *x = rand_floats(200, 1), *y = jt_alloc_floats(200), *dx = jt_alloc_floats(200);
    uint64_t rows[4] = {1, 2, 3, 4};
    jt_ctx ctx = {.train = 0, .seed = 1, .step = 1, .rows = rows};
    t.l.ops->forward(&t.l, x, y, 4, &ctx);
    assert_memory_equal(x, y, 200 * sizeof(float));
    t.l.ops->backward(&t.l, x, y, x, dx, 4, &ctx);
    assert_memory_equal(x, dx, 200 * sizeof(float));
    jt_free_aligned(x);
    jt_free_aligned(y);
    jt_free_aligned(dx);
    th_free(&t);
}

static void test_dropout_mask(void **state) {
    (void)state;
    const size_t m = 400;
    th_layer t;
    th_build(&t, "dropout", &(jt_layer_opts){.rate = 0.25}, S1(m), 3, 1);
    float *x = rand_floats(3 * m, 2), *y = jt_alloc_floats(3 * m), *x2 = jt_alloc_floats(3 * m),
          *y2 = jt_alloc_floats(3 * m);
    for (size_t k = 0; k < 3 * m; k++) x[k] = 1.0f + fabsf(x[k]); /* no zeros in x */
    uint64_t rows[3] = {5, 9, 13};
    jt_ctx ctx = {.train = 1, .seed = 42, .step = 10, .rows = rows, .layer_index = 4};
    t.l.ops->forward(&t.l, x, y, 3, &ctx);
    size_t dropped = 0;
    for (size_t k = 0; k < 3 * m; k++) {
        if (y[k] == 0.0f) dropped++;
        else assert_true(fabsf(y[k] - x[k] / 0.75f) <= 1e-6f * fabsf(y[k]));
    }
    assert_true(dropped > 3 * m * 0.18 && dropped < 3 * m * 0.32);

    /* the same global row gets the same mask at another batch position and batch size */
    uint64_t rows2[2] = {13, 5};
    memcpy(x2, x + 2 * m, m * sizeof(float));
    memcpy(x2 + m, x, m * sizeof(float));
    jt_ctx ctx2 = ctx;
    ctx2.rows = rows2;
    t.l.ops->forward(&t.l, x2, y2, 2, &ctx2);
    assert_memory_equal(y2, y + 2 * m, m * sizeof(float));
    assert_memory_equal(y2 + m, y, m * sizeof(float));
    /* and different rows, steps or layers get different masks */
    assert_memory_not_equal(y, y + m, m * sizeof(float) / 4);
    ctx2.step = 11;
    t.l.ops->forward(&t.l, x2, y2, 2, &ctx2);
    assert_memory_not_equal(y2, y + 2 * m, m * sizeof(float));
    ctx2.step = 10;
    ctx2.layer_index = 5;
    t.l.ops->forward(&t.l, x2, y2, 2, &ctx2);
    assert_memory_not_equal(y2, y + 2 * m, m * sizeof(float));
    jt_free_aligned(x);
    jt_free_aligned(y);
    jt_free_aligned(x2);
    jt_free_aligned(y2);
    th_free(&t);
}

/* jt_tanhf / jt_sigmoidf against libm in double over a dense sweep of [-20, 20] and tiny
 * arguments: a few ulp at most (mathx.h: 1.8e-7 relative; test_mathx checks them in detail). */
static void test_mathx_accuracy(void **state) {
    (void)state;
    double worst_t = 0, worst_s = 0;
    for (long i = -2000000; i <= 2000000; i++) {
        float v = (float)i * 1e-5f;
        double t = tanh((double)v), sg = 1.0 / (1.0 + exp(-(double)v));
        if (t != 0) worst_t = fmax(worst_t, fabs(jt_tanhf(v) - t) / fabs(t));
        worst_s = fmax(worst_s, fabs(jt_sigmoidf(v) - sg) / sg);
    }
    for (int k = 1; k < 40; k++) { /* tiny and huge magnitudes, both signs */
        float v = ldexpf(1.0f, -k), big = ldexpf(1.0f, k % 8);
        worst_t = fmax(worst_t, fabs(jt_tanhf(-v) - tanh(-(double)v)) / tanh((double)v));
        worst_t = fmax(worst_t, fabs(jt_tanhf(big) - tanh((double)big)) / tanh((double)big));
    }
    print_message("    tanh max rel err %.2e, sigmoid %.2e\n", worst_t, worst_s);
    assert_true(worst_t < 5e-7);
    assert_true(worst_s < 5e-7);
    assert_true(jt_tanhf(0.0f) == 0.0f && jt_tanhf(100.0f) == 1.0f && jt_tanhf(-100.0f) == -1.0f);
    assert_true(jt_sigmoidf(-200.0f) >= 0.0f && jt_sigmoidf(200.0f) == 1.0f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_mathx_accuracy),
        cmocka_unit_test(test_opts_parse_ok),
        cmocka_unit_test(test_opts_parse_errors),
        cmocka_unit_test(test_setup_errors),
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_init_stats),
        cmocka_unit_test(test_dense_forward),
        cmocka_unit_test(test_conv2d_forward),
        cmocka_unit_test(test_conv2d_same_hand),
        cmocka_unit_test(test_maxpool_forward),
        cmocka_unit_test(test_activations_forward),
        cmocka_unit_test(test_grad_dense),
        cmocka_unit_test(test_grad_conv2d),
        cmocka_unit_test(test_grad_maxpool),
        cmocka_unit_test(test_grad_shape_and_acts),
        cmocka_unit_test(test_grad_dropout),
        cmocka_unit_test(test_gradcheck_catches_bugs),
        cmocka_unit_test(test_dropout_eval_identity),
        cmocka_unit_test(test_dropout_mask),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
