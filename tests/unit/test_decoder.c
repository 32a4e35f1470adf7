/* test_decoder.c - the attn_decoder kind (src/layers/decoder.c).
 *
 * Gradient checks with central differences (their own loop here, because the decoder needs
 * ctx->tokens, which tu_gradcheck_layer does not set): the input and every parameter in train
 * mode with -1 padded tokens, for (T, F), (C, H, W) and (F) inputs, plus the overwrite/accumulate
 * contracts and dx == NULL. The forward against a naive reference in double, with teacher forcing
 * and with greedy decoding (eval mode, no tokens); a feature map against the same vectors
 * transposed to (T, F); setup errors and settings. */
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
#include "testutil.h"

enum { NT = 5, NF = 3, NL = 4, NV = 6, NU = 8 };

/* -1 padded targets of 3 samples; sample 1 feeds a -1 (as token 0) at step 3 */
static const int32_t k_tokens[3 * NL] = {2, 5, 1, 0, 3, 0, -1, -1, 4, 3, 1, 2};

static jt_shape S1(size_t a) { return tu_shape(1, (size_t[]){a}); }
static jt_shape S2(size_t a, size_t b) { return tu_shape(2, (size_t[]){a, b}); }
static jt_shape S3(size_t a, size_t b, size_t c) { return tu_shape(3, (size_t[]){a, b, c}); }

static jt_layer_opts dec_opts(long units, long vocab, long length) {
    jt_layer_opts o;
    memset(&o, 0, sizeof o);
    o.units = units;
    o.vocab = vocab;
    o.length = length;
    return o;
}

/* A built decoder (tu_layer_build) with the test's settings and name. */
static void dl_build(tu_layer *t, jt_shape in, size_t max_n, uint64_t seed) {
    jt_layer_opts o = dec_opts(NU, NV, NL);
    tu_layer_build(t, "attn_decoder", "cap.0.attn_decoder", &o, in, NULL, max_n, seed);
}

static jt_ctx make_ctx(int train, const int32_t *tokens) {
    jt_ctx c;
    memset(&c, 0, sizeof c);
    c.train = train;
    c.tokens = tokens;
    return c;
}

/* ---- finite-difference gradient check ---- */

/* L = sum(y * R) in double after a train-mode forward. */
static double dl_objective(tu_layer *t, const float *x, float *y, const float *R, size_t n,
                           const jt_ctx *c) {
    t->l.ops->forward(&t->l, x, y, n, c);
    double L = 0;
    for (size_t k = 0; k < n * NL * NV; k++) L += (double)y[k] * R[k];
    return L;
}

/* Worst |a - f| / max(|a| + |f|, 1e-2) over the entries of tensor v (m floats). */
static double fd_compare(tu_layer *t, float *v, const double *grad, size_t m, const float *x,
                         float *y, const float *R, size_t n, const jt_ctx *c) {
    const double eps = 1e-2;
    double worst = 0;
    for (size_t k = 0; k < m; k++) {
        float v0 = v[k], vp = (float)(v0 + eps), vm = (float)(v0 - eps);
        v[k] = vp;
        double Lp = dl_objective(t, x, y, R, n, c);
        v[k] = vm;
        double Lm = dl_objective(t, x, y, R, n, c);
        v[k] = v0;
        double fd = (Lp - Lm) / ((double)vp - (double)vm);
        double e = fabs(grad[k] - fd) / fmax(fabs(grad[k]) + fabs(fd), 1e-2);
        if (e > worst) worst = e;
    }
    return worst;
}

/* With one vector (T = 1) alpha is 1 whatever the scores, so the attention parameters W_a, U_a,
 * b_a and v rightly get no gradient; attn_live = 0 says so. */
static void gradcheck(jt_shape in, size_t n, uint64_t seed, int attn_live) {
    tu_layer t;
    dl_build(&t, in, n + 2, seed); /* max_n > n: the layout must not depend on n */
    size_t in_sz = jt_shape_size(&in), nx = n * in_sz, ny = n * NL * NV, np = t.p.total;
    float *x = tu_rand_floats(nx, seed + 1), *R = tu_rand_floats(ny, seed + 2);
    float *y = jt_alloc_floats(ny), *dx = jt_alloc_floats(nx);
    double *gx = calloc(nx, sizeof *gx), *gw = calloc(np, sizeof *gw);
    assert_true(gx && gw);
    jt_ctx c = make_ctx(1, k_tokens);

    dl_objective(&t, x, y, R, n, &c);
    memset(t.p.g, 0, np * sizeof(float));
    t.l.ops->backward(&t.l, x, y, R, dx, n, &c);
    for (size_t k = 0; k < nx; k++) gx[k] = dx[k];
    for (size_t k = 0; k < np; k++) gw[k] = t.p.g[k];
    /* contracts: dx overwritten (pre-filled garbage), dW accumulated, dx may be NULL */
    dl_objective(&t, x, y, R, n, &c);
    for (size_t k = 0; k < nx; k++) dx[k] = 123.0f;
    t.l.ops->backward(&t.l, x, y, R, dx, n, &c);
    for (size_t k = 0; k < nx; k++)
        if (fabs(dx[k] - gx[k]) > 1e-6 * (1 + fabs(gx[k])))
            fail_msg("dx[%zu] not overwritten: %g vs %g", k, dx[k], gx[k]);
    t.l.ops->backward(&t.l, x, y, R, NULL, n, &c);
    for (size_t k = 0; k < np; k++)
        if (fabs(t.p.g[k] - 3 * gw[k]) > 1e-5 * (1 + fabs(gw[k])))
            fail_msg("gradient %zu does not accumulate: %g vs 3 * %g", k, t.p.g[k], gw[k]);

    double tol = 1e-2, e = fd_compare(&t, x, gx, nx, x, y, R, n, &c), worst_w = 0;
    if (!(e < tol)) fail_msg("dx: error %.3g", e);
    double err_dx = e;
    int nonzero_dx = 0;
    for (size_t k = 0; k < nx; k++) nonzero_dx += fabs(gx[k]) > 1e-6;
    assert_true(nonzero_dx > (int)(nx / 2));
    assert_int_equal(t.p.n_views, 11);
    for (size_t v = 0; v < t.p.n_views; v++) {
        size_t off = t.p.views[v].offset, m = t.p.views[v].size;
        e = fd_compare(&t, t.p.w + off, gw + off, m, x, y, R, n, &c);
        if (!(e < tol)) fail_msg("%s: error %.3g", t.p.views[v].name, e);
        worst_w = fmax(worst_w, e);
        double mag = 0;
        for (size_t k = 0; k < m; k++) mag += fabs(gw[off + k]);
        int attn = v >= 1 && v <= 4; /* W_a, U_a, b_a, v */
        if (!(mag > 0) && (attn_live || !attn))
            fail_msg("%s: gradient is all zero", t.p.views[v].name);
    }
    print_message("attn_decoder gradcheck: worst error dx %.2g, parameters %.2g\n", err_dx,
                  worst_w);
    free(gx);
    free(gw);
    jt_free_aligned(x);
    jt_free_aligned(R);
    jt_free_aligned(y);
    jt_free_aligned(dx);
    tu_layer_free(&t);
}

static void test_grad_sequence(void **state) {
    (void)state;
    gradcheck(S2(NT, NF), 3, 11, 1);
}

static void test_grad_feature_map(void **state) {
    (void)state;
    gradcheck(S3(NF, 2, 3), 2, 12, 1);
}

static void test_grad_vector(void **state) {
    (void)state;
    gradcheck(S1(NF), 2, 13, 0);
}

/* ---- reference forward in double ---- */

static double sigm(double a) { return 1.0 / (1.0 + exp(-a)); }

/* y (n, L, V) of the model in the header of layers/decoder.c; x: (n, T, F) rows. Teacher
 * forcing with tokens, or greedy (tokens NULL). fed (n, L) gets the token fed at each step;
 * margin gets the smallest gap between the best and second-best logit fed back greedily. */
static void ref_forward(const tu_layer *t, const float *x, size_t n, size_t T, size_t F,
                        const int32_t *tokens, double *y, int *fed, double *margin) {
    const size_t U = NU, E = NU, A = NU, V = NV, L = NL;
    const float *emb = tu_layer_param(t, "emb"), *Wa = tu_layer_param(t, "W_a");
    const float *Ua = tu_layer_param(t, "U_a"), *ba = tu_layer_param(t, "b_a");
    const float *v = tu_layer_param(t, "v"), *Wih = tu_layer_param(t, "W_ih");
    const float *Whh = tu_layer_param(t, "W_hh"), *bih = tu_layer_param(t, "b_ih");
    const float *bhh = tu_layer_param(t, "b_hh"), *Wo = tu_layer_param(t, "W_o");
    const float *bo = tu_layer_param(t, "b_o");
    double h[NU], hn[NU], e[64], c[64], u[NU + 64], gi[3 * NU], gh[3 * NU], o[NU + 64];
    assert_true(T <= 64 && F <= 64);
    *margin = INFINITY;
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * T * F;
        for (size_t k = 0; k < U; k++) h[k] = 0;
        for (size_t s = 0; s < L; s++) {
            int tok = (int)V;
            if (s > 0 && tokens) {
                tok = tokens[i * L + s - 1] < 0 ? 0 : tokens[i * L + s - 1];
            } else if (s > 0) {
                const double *yp = y + (i * L + s - 1) * V;
                int b = 0, b2 = -1;
                for (int k = 1; k < (int)V; k++)
                    if (yp[k] > yp[b]) b = k;
                for (int k = 0; k < (int)V; k++)
                    if (k != b && (b2 < 0 || yp[k] > yp[b2])) b2 = k;
                if (yp[b] - yp[b2] < *margin) *margin = yp[b] - yp[b2];
                tok = b;
            }
            fed[i * L + s] = tok;
            double mx = -INFINITY, sum = 0;
            for (size_t p = 0; p < T; p++) {
                e[p] = 0;
                for (size_t a = 0; a < A; a++) {
                    double q = ba[a];
                    for (size_t f = 0; f < F; f++) q += (double)Wa[a * F + f] * xi[p * F + f];
                    for (size_t k = 0; k < U; k++) q += (double)Ua[a * U + k] * h[k];
                    e[p] += v[a] * tanh(q);
                }
                mx = fmax(mx, e[p]);
            }
            for (size_t p = 0; p < T; p++) sum += (e[p] = exp(e[p] - mx));
            for (size_t f = 0; f < F; f++) {
                c[f] = 0;
                for (size_t p = 0; p < T; p++) c[f] += e[p] / sum * xi[p * F + f];
            }
            for (size_t k = 0; k < E; k++) u[k] = emb[(size_t)tok * E + k];
            for (size_t f = 0; f < F; f++) u[E + f] = c[f];
            for (size_t k = 0; k < 3 * U; k++) {
                gi[k] = bih[k];
                gh[k] = bhh[k];
                for (size_t j = 0; j < E + F; j++) gi[k] += (double)Wih[k * (E + F) + j] * u[j];
                for (size_t j = 0; j < U; j++) gh[k] += (double)Whh[k * U + j] * h[j];
            }
            for (size_t k = 0; k < U; k++) {
                double r = sigm(gi[k] + gh[k]), z = sigm(gi[U + k] + gh[U + k]);
                double nn = tanh(gi[2 * U + k] + r * gh[2 * U + k]);
                hn[k] = (1 - z) * nn + z * h[k];
            }
            for (size_t k = 0; k < U; k++) o[k] = h[k] = hn[k];
            for (size_t f = 0; f < F; f++) o[U + f] = c[f];
            for (size_t k = 0; k < V; k++) {
                double acc = bo[k];
                for (size_t j = 0; j < U + F; j++) acc += (double)Wo[k * (U + F) + j] * o[j];
                y[(i * L + s) * V + k] = acc;
            }
        }
    }
}

static void expect_close(const float *got, const double *want, size_t n, double tol) {
    for (size_t k = 0; k < n; k++)
        if (!(fabs(got[k] - want[k]) <= tol * (1.0 + fabs(want[k]))))
            fail_msg("entry %zu: got %.7g, want %.7g", k, got[k], want[k]);
}

static void test_forward_teacher_forcing(void **state) {
    (void)state;
    const size_t n = 3, ny = n * NL * NV;
    tu_layer t;
    dl_build(&t, S2(NT, NF), 4, 21);
    float *x = tu_rand_floats(n * NT * NF, 22), *y = jt_alloc_floats(ny);
    double want[3 * NL * NV], margin;
    int fed[3 * NL];
    jt_ctx c = make_ctx(1, k_tokens);
    t.l.ops->forward(&t.l, x, y, n, &c);
    ref_forward(&t, x, n, NT, NF, k_tokens, want, fed, &margin);
    expect_close(y, want, ny, 1e-4);
    assert_int_equal(fed[0], NV);           /* START at step 0 */
    assert_int_equal(fed[1 * NL + 3], 0);   /* a -1 previous token is fed as <end> */
    /* the tokens matter: other targets give other logits from step 1 on */
    int32_t other[3 * NL];
    for (size_t k = 0; k < 3 * NL; k++) other[k] = (k_tokens[k] + 1) % NV;
    float *y2 = jt_alloc_floats(ny);
    c.tokens = other;
    t.l.ops->forward(&t.l, x, y2, n, &c);
    double diff0 = 0, diff1 = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < NV; k++) {
            diff0 += fabs(y[i * NL * NV + k] - y2[i * NL * NV + k]);
            diff1 += fabs(y[i * NL * NV + NV + k] - y2[i * NL * NV + NV + k]);
        }
    assert_true(diff0 == 0.0 && diff1 > 1e-3);
    jt_free_aligned(x);
    jt_free_aligned(y);
    jt_free_aligned(y2);
    tu_layer_free(&t);
}

static void test_forward_greedy(void **state) {
    (void)state;
    const size_t n = 3, ny = n * NL * NV;
    tu_layer t;
    dl_build(&t, S2(NT, NF), 3, 31);
    float *x = tu_rand_floats(n * NT * NF, 32), *y = jt_alloc_floats(ny);
    double want[3 * NL * NV], margin;
    int fed[3 * NL];
    jt_ctx c = make_ctx(0, NULL);
    t.l.ops->forward(&t.l, x, y, n, &c);
    ref_forward(&t, x, n, NT, NF, NULL, want, fed, &margin);
    assert_true(margin > 1e-3); /* no near ties: float and double pick the same tokens */
    expect_close(y, want, ny, 1e-4);
    /* the greedy feed is not a constant, so feeding a fixed token would be caught */
    int distinct = 0;
    for (size_t k = 0; k < n * NL; k++)
        if (k % NL && fed[k] != fed[1]) distinct = 1;
    assert_true(distinct);
    /* eval ignores tokens even when they are given */
    float *y2 = jt_alloc_floats(ny);
    c.tokens = k_tokens;
    t.l.ops->forward(&t.l, x, y2, n, &c);
    for (size_t k = 0; k < ny; k++) assert_true(y2[k] == y[k]);
    /* teacher forcing with the greedy tokens reproduces the greedy logits */
    int32_t tf[3 * NL];
    for (size_t i = 0; i < n; i++)
        for (size_t s = 0; s < NL; s++) tf[i * NL + s] = s + 1 < NL ? fed[i * NL + s + 1] : 0;
    c = make_ctx(1, tf);
    t.l.ops->forward(&t.l, x, y2, n, &c);
    expect_close(y2, want, ny, 1e-4);
    jt_free_aligned(x);
    jt_free_aligned(y);
    jt_free_aligned(y2);
    tu_layer_free(&t);
}

/* ---- a feature map is its H*W vectors of C ---- */

static void test_feature_map_equals_sequence(void **state) {
    (void)state;
    const size_t n = 2, C = NF, H = 2, W = 3, T = H * W, ny = n * NL * NV;
    tu_layer a, b;
    dl_build(&a, S3(C, H, W), n, 41);
    dl_build(&b, S2(T, C), n, 41);
    assert_int_equal(a.p.total, b.p.total);
    assert_memory_equal(a.p.w, b.p.w, a.p.total * sizeof(float));
    float *xc = tu_rand_floats(n * C * T, 42), *xs = jt_alloc_floats(n * T * C);
    for (size_t i = 0; i < n; i++)
        for (size_t ch = 0; ch < C; ch++)
            for (size_t s = 0; s < T; s++) xs[(i * T + s) * C + ch] = xc[(i * C + ch) * T + s];
    float *ya = jt_alloc_floats(ny), *yb = jt_alloc_floats(ny), *dy = tu_rand_floats(ny, 43);
    float *dxa = jt_alloc_floats(n * C * T), *dxb = jt_alloc_floats(n * T * C);
    jt_ctx c = make_ctx(1, k_tokens);
    a.l.ops->forward(&a.l, xc, ya, n, &c);
    b.l.ops->forward(&b.l, xs, yb, n, &c);
    for (size_t k = 0; k < ny; k++) assert_true(fabsf(ya[k] - yb[k]) <= 1e-5f);
    a.l.ops->backward(&a.l, xc, ya, dy, dxa, n, &c);
    b.l.ops->backward(&b.l, xs, yb, dy, dxb, n, &c);
    for (size_t i = 0; i < n; i++)
        for (size_t ch = 0; ch < C; ch++)
            for (size_t s = 0; s < T; s++)
                assert_true(fabsf(dxa[(i * C + ch) * T + s] - dxb[(i * T + s) * C + ch]) <= 1e-5f);
    for (size_t k = 0; k < a.p.total; k++) assert_true(fabsf(a.p.g[k] - b.p.g[k]) <= 1e-5f);
    jt_free_aligned(xc);
    jt_free_aligned(xs);
    jt_free_aligned(ya);
    jt_free_aligned(yb);
    jt_free_aligned(dy);
    jt_free_aligned(dxa);
    jt_free_aligned(dxb);
    tu_layer_free(&a);
    tu_layer_free(&b);
}

/* ---- setup and settings ---- */

static void expect_setup_error(jt_layer_opts o, jt_shape in, const char *needle) {
    jt_params p;
    jt_layer l;
    char err[512] = "";
    jt_params_init(&p);
    jt_status st = jt_layer_setup(&l, "attn_decoder", "cap.0.attn_decoder", &o, &in, NULL, 4, &p,
                                  err, sizeof err);
    if (st != JT_EUSAGE) fail_msg("expected JT_EUSAGE (%s), got %d", needle, (int)st);
    if (!strstr(err, needle)) fail_msg("message '%s' lacks '%s'", err, needle);
    jt_params_free(&p);
}

static void test_setup(void **state) {
    (void)state;
    expect_setup_error(dec_opts(0, NV, NL), S2(NT, NF), "units");
    expect_setup_error(dec_opts(NU, 0, NL), S2(NT, NF), "vocab");
    expect_setup_error(dec_opts(NU, NV, 0), S2(NT, NF), "length");
    expect_setup_error(dec_opts(NU, NV, NL), tu_shape(4, (size_t[]){2, 3, 4, 5}), "(2, 3, 4, 5)");
    expect_setup_error(dec_opts(NU, NV, NL), S2(0, NF), "attn_decoder needs");

    tu_layer t;
    dl_build(&t, S3(16, 7, 7), 2, 1);
    assert_int_equal(t.l.out.ndim, 2);
    assert_int_equal(t.l.out.d[0], NL);
    assert_int_equal(t.l.out.d[1], NV);
    static const char *names[] = {"emb", "W_a", "U_a", "b_a", "v", "W_ih",
                                  "W_hh", "b_ih", "b_hh", "W_o", "b_o"};
    static const size_t sizes[] = {(NV + 1) * NU, NU * 16, NU * NU, NU, NU, 3 * NU * (NU + 16),
                                   3 * NU * NU, 3 * NU, 3 * NU, NV * (NU + 16), NV};
    assert_int_equal(t.p.n_views, 11);
    for (size_t v = 0; v < 11; v++) {
        char full[2 * JT_VIEW_NAME_MAX];
        snprintf(full, sizeof full, "cap.0.attn_decoder.%s", names[v]);
        assert_string_equal(t.p.views[v].name, full);
        assert_int_equal(t.p.views[v].size, sizes[v]);
    }
    tu_layer_free(&t);

    jt_layer_opts o;
    char err[256] = "";
    jt_layer_kv ok[] = {{"units", "32", 4}};
    assert_int_equal(jt_layer_opts_parse("attn_decoder", ok, 1, &o, err, sizeof err), JT_OK);
    assert_true(o.units == 32 && o.vocab == 0 && o.length == 0);
    jt_layer_kv bad[] = {{"heads", "2", 5}};
    assert_int_equal(jt_layer_opts_parse("attn_decoder", bad, 1, &o, err, sizeof err), JT_EUSAGE);
    assert_non_null(strstr(err, "heads"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_sequence),
        cmocka_unit_test(test_grad_feature_map),
        cmocka_unit_test(test_grad_vector),
        cmocka_unit_test(test_forward_teacher_forcing),
        cmocka_unit_test(test_forward_greedy),
        cmocka_unit_test(test_feature_map_equals_sequence),
        cmocka_unit_test(test_setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
