/* test_seq_layers.c - sequence and attention kinds: gru, lstm, conv1d, maxpool1d, avgpool1d,
 * meanpool_time, layernorm, attention_pool, self_attention, cross_attention.
 *
 * Finite-difference gradient checks (tu_gradcheck_layer: input, every parameter and the context,
 * plus the overwrite/accumulate contracts) for every kind and shape variant; forward passes
 * against naive reference loops (in double) for gru, lstm, conv1d and self_attention; gru and
 * lstm backward against central differences of the double reference; feature
 * maps (C, H, W) against the same data transposed to (H*W, C); and setup's error messages. */
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

static jt_shape S1(size_t a) { return tu_shape(1, (size_t[]){a}); }
static jt_shape S2(size_t a, size_t b) { return tu_shape(2, (size_t[]){a, b}); }
static jt_shape S3(size_t a, size_t b, size_t c) { return tu_shape(3, (size_t[]){a, b, c}); }

static void expect_close(const float *got, const double *want, size_t n, double tol) {
    for (size_t k = 0; k < n; k++)
        if (!(fabs(got[k] - want[k]) <= tol * (1.0 + fabs(want[k]))))
            fail_msg("entry %zu: got %.7g, want %.7g", k, got[k], want[k]);
}

static double sigm(double a) { return 1.0 / (1.0 + exp(-a)); }

/* ---- gradient checks ---- */

static void test_grad_gru(void **state) {
    (void)state;
    jt_shape in = S2(5, 3);
    for (int rs = 0; rs <= 1; rs++) {
        jt_layer_opts o = {.units = 4, .return_sequences = rs};
        tu_gradcheck_layer("gru", &o, &in, 3, NULL);
    }
}

static void test_grad_lstm(void **state) {
    (void)state;
    jt_shape in = S2(5, 3);
    for (int rs = 0; rs <= 1; rs++) {
        jt_layer_opts o = {.units = 4, .return_sequences = rs};
        tu_gradcheck_layer("lstm", &o, &in, 3, NULL);
    }
}

static void test_grad_conv1d(void **state) {
    (void)state;
    jt_layer_opts valid = {.filters = 4, .kernel = 3};
    jt_shape in = S2(7, 3);
    tu_gradcheck_layer("conv1d", &valid, &in, 2, NULL);
    jt_layer_opts same = {.filters = 3, .kernel = 4, .stride = 2, .padding_same = 1};
    tu_gradcheck_layer("conv1d", &same, &in, 3, NULL);
}

static void test_grad_pool1d(void **state) {
    (void)state;
    tu_gradcheck_cfg c = {.distinct = 1}; /* no near ties inside a max window */
    jt_shape in = S2(7, 3);
    jt_layer_opts a = {.size = 2}, b = {.size = 3, .stride = 1};
    tu_gradcheck_layer("maxpool1d", &a, &in, 2, &c);
    tu_gradcheck_layer("maxpool1d", &b, &in, 2, &c);
    tu_gradcheck_layer("avgpool1d", &a, &in, 2, NULL);
    tu_gradcheck_layer("avgpool1d", &b, &in, 2, NULL);
    jt_layer_opts none = {0};
    tu_gradcheck_layer("meanpool_time", &none, &in, 2, NULL);
}

static void test_grad_layernorm(void **state) {
    (void)state;
    jt_layer_opts none = {0};
    jt_shape v = S1(6), s = S2(4, 5);
    tu_gradcheck_layer("layernorm", &none, &v, 3, NULL);
    tu_gradcheck_layer("layernorm", &none, &s, 2, NULL);
}

static void test_grad_attention_pool(void **state) {
    (void)state;
    jt_layer_opts dflt = {0}, u3 = {.units = 3};
    jt_shape seq = S2(5, 4), map = S3(4, 2, 3);
    tu_gradcheck_layer("attention_pool", &dflt, &seq, 3, NULL);
    tu_gradcheck_layer("attention_pool", &u3, &seq, 2, NULL);
    tu_gradcheck_layer("attention_pool", &u3, &map, 2, NULL);
}

static void test_grad_self_attention(void **state) {
    (void)state;
    jt_layer_opts two = {.heads = 2, .units = 6}, one = {0};
    jt_shape seq = S2(5, 4), map = S3(4, 2, 2);
    tu_gradcheck_layer("self_attention", &two, &seq, 2, NULL);
    tu_gradcheck_layer("self_attention", &one, &seq, 2, NULL);
    tu_gradcheck_layer("self_attention", &two, &map, 2, NULL);
}

static void test_grad_cross_attention(void **state) {
    (void)state;
    jt_layer_opts o = {.heads = 2, .units = 4};
    snprintf(o.context, sizeof o.context, "enc");
    /* sequence queries over a sequence context */
    tu_gradcheck_cfg c = {.aux = S2(5, 3)};
    jt_shape q = S2(4, 3);
    tu_gradcheck_layer("cross_attention", &o, &q, 2, &c);
    /* one query vector over a feature-map context */
    c.aux = S3(4, 2, 3);
    jt_shape v = S1(3);
    tu_gradcheck_layer("cross_attention", &o, &v, 3, &c);
    /* feature-map queries over a sequence context */
    c.aux = S2(5, 2);
    jt_shape m = S3(3, 2, 2);
    tu_gradcheck_layer("cross_attention", &o, &m, 2, &c);
}

/* ---- forward passes against naive references ---- */

/* gru: the PyTorch recurrence written out step by step, in double */
static void test_gru_forward_reference(void **state) {
    (void)state;
    const size_t n = 2, T = 4, F = 3, U = 5;
    jt_layer_opts o = {.units = (long)U, .return_sequences = 1};
    tu_layer t;
    tu_layer_build(&t, "gru", "b.0", &o, S2(T, F), NULL, n + 1, 3);
    const float *Wi = tu_layer_param(&t, "W_ih"), *Wh = tu_layer_param(&t, "W_hh");
    const float *bi = tu_layer_param(&t, "b_ih"), *bh = tu_layer_param(&t, "b_hh");
    float *x = tu_rand_floats(n * T * F, 1), *y = jt_alloc_floats(n * T * U);
    double want[2 * 4 * 5];
    jt_ctx ctx = {0};
    t.l.ops->forward(&t.l, x, y, n, &ctx);
    for (size_t i = 0; i < n; i++) {
        double h[5] = {0}, hn[5];
        for (size_t s = 0; s < T; s++) {
            const float *xt = x + (i * T + s) * F;
            for (size_t u = 0; u < U; u++) {
                double a[3], b[3]; /* x-side and h-side pre-activations of r, z, n */
                for (size_t g = 0; g < 3; g++) {
                    a[g] = bi[g * U + u];
                    b[g] = bh[g * U + u];
                    for (size_t f = 0; f < F; f++) a[g] += Wi[(g * U + u) * F + f] * xt[f];
                    for (size_t k = 0; k < U; k++) b[g] += Wh[(g * U + u) * U + k] * h[k];
                }
                double r = sigm(a[0] + b[0]), z = sigm(a[1] + b[1]);
                double nn = tanh(a[2] + r * b[2]);
                hn[u] = (1 - z) * nn + z * h[u];
            }
            memcpy(h, hn, sizeof h);
            for (size_t u = 0; u < U; u++) want[(i * T + s) * U + u] = h[u];
        }
    }
    expect_close(y, want, n * T * U, 1e-5);
    /* return_sequences false: the last state */
    tu_layer t2;
    o.return_sequences = 0;
    tu_layer_build(&t2, "gru", "b.0", &o, S2(T, F), NULL, n, 3);
    float *y2 = jt_alloc_floats(n * U);
    t2.l.ops->forward(&t2.l, x, y2, n, &ctx);
    for (size_t i = 0; i < n; i++) expect_close(y2 + i * U, want + (i * T + T - 1) * U, U, 1e-5);
    jt_free_aligned(x);
    jt_free_aligned(y);
    jt_free_aligned(y2);
    tu_layer_free(&t);
    tu_layer_free(&t2);
}

/* lstm: the PyTorch recurrence written out step by step, in double */
static void test_lstm_forward_reference(void **state) {
    (void)state;
    const size_t n = 2, T = 4, F = 3, U = 3;
    jt_layer_opts o = {.units = (long)U, .return_sequences = 1};
    tu_layer t;
    tu_layer_build(&t, "lstm", "b.0", &o, S2(T, F), NULL, n, 4);
    const float *Wi = tu_layer_param(&t, "W_ih"), *Wh = tu_layer_param(&t, "W_hh");
    const float *bi = tu_layer_param(&t, "b_ih"), *bh = tu_layer_param(&t, "b_hh");
    float *x = tu_rand_floats(n * T * F, 2), *y = jt_alloc_floats(n * T * U);
    double want[2 * 4 * 3];
    jt_ctx ctx = {0};
    t.l.ops->forward(&t.l, x, y, n, &ctx);
    for (size_t i = 0; i < n; i++) {
        double h[3] = {0}, c[3] = {0}, hn[3];
        for (size_t s = 0; s < T; s++) {
            const float *xt = x + (i * T + s) * F;
            for (size_t u = 0; u < U; u++) {
                double a[4];
                for (size_t g = 0; g < 4; g++) {
                    a[g] = (double)bi[g * U + u] + bh[g * U + u];
                    for (size_t f = 0; f < F; f++) a[g] += Wi[(g * U + u) * F + f] * xt[f];
                    for (size_t k = 0; k < U; k++) a[g] += Wh[(g * U + u) * U + k] * h[k];
                }
                c[u] = sigm(a[1]) * c[u] + sigm(a[0]) * tanh(a[2]);
                hn[u] = sigm(a[3]) * tanh(c[u]);
            }
            memcpy(h, hn, sizeof h);
            for (size_t u = 0; u < U; u++) want[(i * T + s) * U + u] = h[u];
        }
    }
    expect_close(y, want, n * T * U, 1e-5);
    jt_free_aligned(x);
    jt_free_aligned(y);
    tu_layer_free(&t);
}

/* gru (G = 3) or lstm (G = 4) in double, written out step by step after torch.nn.GRU / LSTM:
 * p holds the layer's four views in order (W_ih (GU, F), W_hh (GU, U), b_ih, b_hh (GU)), x is
 * (n, T, F); writes y ((n, T, U) with rs, else (n, U)) and returns L = sum y * R. U <= 32. */
static double rnn_reference(int G, const double *p, const double *x, const double *R, size_t n,
                            size_t T, size_t F, size_t U, int rs, double *y) {
    const double *Wi = p, *Wh = Wi + G * U * F, *bi = Wh + G * U * U, *bh = bi + G * U;
    double L = 0;
    for (size_t i = 0; i < n; i++) {
        double h[32] = {0}, c[32] = {0}, hn[32];
        for (size_t s = 0; s < T; s++) {
            const double *xt = x + (i * T + s) * F;
            for (size_t u = 0; u < U; u++) {
                double a[4], b[4]; /* x-side and h-side pre-activations per gate */
                for (int g = 0; g < G; g++) {
                    a[g] = bi[g * U + u];
                    b[g] = bh[g * U + u];
                    for (size_t f = 0; f < F; f++) a[g] += Wi[(g * U + u) * F + f] * xt[f];
                    for (size_t k = 0; k < U; k++) b[g] += Wh[(g * U + u) * U + k] * h[k];
                }
                if (G == 3) {
                    double r = sigm(a[0] + b[0]), z = sigm(a[1] + b[1]);
                    hn[u] = (1 - z) * tanh(a[2] + r * b[2]) + z * h[u];
                } else {
                    c[u] = sigm(a[1] + b[1]) * c[u] + sigm(a[0] + b[0]) * tanh(a[2] + b[2]);
                    hn[u] = sigm(a[3] + b[3]) * tanh(c[u]);
                }
            }
            memcpy(h, hn, sizeof h);
            if (rs || s + 1 == T)
                for (size_t u = 0; u < U; u++) {
                    size_t k = rs ? (i * T + s) * U + u : i * U + u;
                    y[k] = h[u];
                    L += h[u] * R[k];
                }
        }
    }
    return L;
}

/* gru and lstm forward and backward against rnn_reference: y, and dx and every parameter
 * gradient against central differences of the double reference (step 1e-6, so they are exact
 * to ~1e-9, unlike the float checks above), with dy = R. n = 1 and odd U (vector tails), U = 19
 * (a vector body and a tail), max_n = n + 2. */
static void check_rnn_backward(const char *kind, size_t n, size_t U, int rs) {
    const size_t T = 5, F = 3;
    int G = strcmp(kind, "gru") == 0 ? 3 : 4;
    jt_layer_opts o = {.units = (long)U, .return_sequences = rs};
    tu_layer t;
    tu_layer_build(&t, kind, "b.0", &o, S2(T, F), NULL, n + 2, 11);
    size_t ny = rs ? n * T * U : n * U, nx = n * T * F;
    size_t sz[4] = {G * U * F, G * U * U, G * U, G * U}, np = sz[0] + sz[1] + sz[2] + sz[3];
    float *x = tu_rand_floats(nx, 12), *R = tu_rand_floats(ny, 13);
    float *y = jt_alloc_floats(ny), *dx = jt_alloc_floats(nx);
    double *p = calloc(np, sizeof *p), *xd = calloc(nx, sizeof *xd), *Rd = calloc(ny, sizeof *Rd);
    double *yd = calloc(ny, sizeof *yd);
    for (size_t v = 0, k = 0; v < 4; v++)
        for (size_t j = 0; j < sz[v]; j++) p[k++] = t.l.W[v][j];
    for (size_t k = 0; k < nx; k++) xd[k] = x[k], dx[k] = NAN;
    for (size_t k = 0; k < ny; k++) Rd[k] = R[k];
    jt_ctx ctx = {0};
    t.l.ops->forward(&t.l, x, y, n, &ctx);
    t.l.ops->backward(&t.l, x, y, R, dx, n, &ctx);
    rnn_reference(G, p, xd, Rd, n, T, F, U, rs, yd);
    expect_close(y, yd, ny, 1e-5);
    const char *names[5] = {"dW_ih", "dW_hh", "db_ih", "db_hh", "dx"};
    const double h = 1e-6;
    double worst = 0;
    for (size_t v = 0, k = 0; v < 5; v++) { /* the four parameter views, then x */
        size_t m = v < 4 ? sz[v] : nx;
        for (size_t j = 0; j < m; j++, k++) {
            double *q = v < 4 ? &p[k] : &xd[j], keep = *q;
            *q = keep + h;
            double lp = rnn_reference(G, p, xd, Rd, n, T, F, U, rs, yd);
            *q = keep - h;
            double lm = rnn_reference(G, p, xd, Rd, n, T, F, U, rs, yd);
            *q = keep;
            double want = (lp - lm) / (2 * h), got = v < 4 ? t.l.dW[v][j] : dx[j];
            double e = fabs(got - want) / (1.0 + fabs(want));
            worst = fmax(worst, e);
            if (!(e <= 2e-5))
                fail_msg("%s n %zu U %zu rs %d: %s[%zu] got %.7g, want %.7g", kind, n, U, rs,
                         names[v], j, got, want);
        }
    }
    print_message("    %s n %zu U %zu rs %d: max gradient error %.1e\n", kind, n, U, rs, worst);
    free(p), free(xd), free(Rd), free(yd);
    jt_free_aligned(x), jt_free_aligned(R), jt_free_aligned(y), jt_free_aligned(dx);
    tu_layer_free(&t);
}

static void test_rnn_backward_reference(void **state) {
    (void)state;
    for (int rs = 0; rs <= 1; rs++) {
        check_rnn_backward("gru", 1, 19, rs);
        check_rnn_backward("gru", 3, 7, rs);
        check_rnn_backward("lstm", 1, 19, rs);
        check_rnn_backward("lstm", 3, 7, rs);
    }
}

/* conv1d with padding same and stride 2: direct sum over the window, zeros outside */
static void test_conv1d_forward_reference(void **state) {
    (void)state;
    const size_t n = 2, T = 7, F = 3, NF = 4, K = 4, S = 2;
    jt_layer_opts o = {.filters = (long)NF, .kernel = (long)K, .stride = (long)S,
                       .padding_same = 1};
    tu_layer t;
    tu_layer_build(&t, "conv1d", "b.0", &o, S2(T, F), NULL, n, 5);
    const size_t OT = (T + S - 1) / S, pad = ((OT - 1) * S + K - T) / 2;
    assert_int_equal(t.l.out.ndim, 2);
    assert_int_equal(t.l.out.d[0], OT);
    assert_int_equal(t.l.out.d[1], NF);
    const float *W = tu_layer_param(&t, "W"), *b = tu_layer_param(&t, "b");
    float *x = tu_rand_floats(n * T * F, 3), *y = jt_alloc_floats(n * OT * NF);
    double want[2 * 4 * 4];
    jt_ctx ctx = {0};
    t.l.ops->forward(&t.l, x, y, n, &ctx);
    for (size_t i = 0; i < n; i++)
        for (size_t s = 0; s < OT; s++)
            for (size_t m = 0; m < NF; m++) {
                double acc = b[m];
                for (size_t k = 0; k < K; k++) {
                    long step = (long)(s * S + k) - (long)pad;
                    if (step < 0 || step >= (long)T) continue;
                    for (size_t f = 0; f < F; f++)
                        acc += W[(m * K + k) * F + f] * x[(i * T + (size_t)step) * F + f];
                }
                want[(i * OT + s) * NF + m] = acc;
            }
    expect_close(y, want, n * OT * NF, 1e-5);
    jt_free_aligned(x);
    jt_free_aligned(y);
    tu_layer_free(&t);
}

/* self_attention: softmax(Q_h K_h^T / sqrt(dk)) V_h per head, then the output projection */
static void test_self_attention_forward_reference(void **state) {
    (void)state;
    enum { N = 2, T = 4, F = 3, D = 4, H = 2, DK = 2 };
    jt_layer_opts o = {.heads = H, .units = D};
    tu_layer t;
    tu_layer_build(&t, "self_attention", "b.0", &o, S2(T, F), NULL, N, 6);
    const float *Wq = tu_layer_param(&t, "Wq"), *Wk = tu_layer_param(&t, "Wk");
    const float *Wv = tu_layer_param(&t, "Wv"), *Wo = tu_layer_param(&t, "Wo");
    const float *bq = tu_layer_param(&t, "bq"), *bk = tu_layer_param(&t, "bk");
    const float *bv = tu_layer_param(&t, "bv"), *bo = tu_layer_param(&t, "bo");
    float *x = tu_rand_floats(N * T * F, 4), *y = jt_alloc_floats(N * T * D);
    jt_ctx ctx = {0};
    t.l.ops->forward(&t.l, x, y, N, &ctx);
    double want[N * T * D];
    for (size_t i = 0; i < N; i++) {
        double Q[T][D], K[T][D], V[T][D], O[T][D];
        for (size_t s = 0; s < T; s++)
            for (size_t d = 0; d < D; d++) {
                Q[s][d] = bq[d], K[s][d] = bk[d], V[s][d] = bv[d];
                for (size_t f = 0; f < F; f++) {
                    double xv = x[(i * T + s) * F + f];
                    Q[s][d] += Wq[d * F + f] * xv;
                    K[s][d] += Wk[d * F + f] * xv;
                    V[s][d] += Wv[d * F + f] * xv;
                }
            }
        for (size_t h = 0; h < H; h++)
            for (size_t a = 0; a < T; a++) {
                double sc[T], mx = -1e300, sum = 0;
                for (size_t b = 0; b < T; b++) {
                    sc[b] = 0;
                    for (size_t d = 0; d < DK; d++) sc[b] += Q[a][h * DK + d] * K[b][h * DK + d];
                    sc[b] /= sqrt((double)DK);
                    mx = fmax(mx, sc[b]);
                }
                for (size_t b = 0; b < T; b++) sum += (sc[b] = exp(sc[b] - mx));
                for (size_t d = 0; d < DK; d++) {
                    O[a][h * DK + d] = 0;
                    for (size_t b = 0; b < T; b++) O[a][h * DK + d] += sc[b] / sum * V[b][h * DK + d];
                }
            }
        for (size_t s = 0; s < T; s++)
            for (size_t d = 0; d < D; d++) {
                double acc = bo[d];
                for (size_t e = 0; e < D; e++) acc += Wo[d * D + e] * O[s][e];
                want[(i * T + s) * D + d] = acc;
            }
    }
    expect_close(y, want, N * T * D, 1e-5);
    jt_free_aligned(x);
    jt_free_aligned(y);
    tu_layer_free(&t);
}

/* ---- feature maps (C, H, W) are read as H*W vectors of C ---- */

// x: (n, C, P) -> (n, P, C)
static float *transpose_map(const float *x, size_t n, size_t C, size_t P) {
    float *r = jt_alloc_floats(n * C * P);
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < C; c++)
            for (size_t p = 0; p < P; p++) r[(i * P + p) * C + c] = x[(i * C + c) * P + p];
    return r;
}

static void copy_params(tu_layer *dst, const tu_layer *src) {
    assert_int_equal(dst->p.total, src->p.total);
    memcpy(dst->p.w, src->p.w, src->p.total * sizeof(float));
}

static void test_attention_pool_feature_map(void **state) {
    (void)state;
    const size_t n = 3, C = 4, Hh = 2, Ww = 3, P = Hh * Ww;
    jt_layer_opts o = {.units = 5};
    tu_layer map, seq;
    tu_layer_build(&map, "attention_pool", "b.0", &o, S3(C, Hh, Ww), NULL, n, 7);
    tu_layer_build(&seq, "attention_pool", "b.0", &o, S2(P, C), NULL, n, 8);
    assert_int_equal(map.l.out.ndim, 1);
    assert_int_equal(map.l.out.d[0], C);
    copy_params(&seq, &map);
    float *x = tu_rand_floats(n * C * P, 5), *xt = transpose_map(x, n, C, P);
    float *y1 = jt_alloc_floats(n * C), *y2 = jt_alloc_floats(n * C);
    jt_ctx ctx = {0};
    map.l.ops->forward(&map.l, x, y1, n, &ctx);
    seq.l.ops->forward(&seq.l, xt, y2, n, &ctx);
    for (size_t k = 0; k < n * C; k++) assert_float_equal(y1[k], y2[k], 1e-6);
    /* the pooled vector is a convex combination of the input vectors */
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < C; c++) {
            float lo = 1e30f, hi = -1e30f;
            for (size_t p = 0; p < P; p++) {
                float v = xt[(i * P + p) * C + c];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
            assert_true(y1[i * C + c] >= lo - 1e-6f && y1[i * C + c] <= hi + 1e-6f);
        }
    jt_free_aligned(x);
    jt_free_aligned(xt);
    jt_free_aligned(y1);
    jt_free_aligned(y2);
    tu_layer_free(&map);
    tu_layer_free(&seq);
}

static void test_cross_attention_feature_map_context(void **state) {
    (void)state;
    const size_t n = 2, T = 3, F = 4, C = 5, Hh = 2, Ww = 2, P = Hh * Ww, D = 6;
    jt_layer_opts o = {.heads = 3, .units = (long)D};
    snprintf(o.context, sizeof o.context, "image_net");
    jt_shape amap = S3(C, Hh, Ww), aseq = S2(P, C);
    tu_layer a, b;
    tu_layer_build(&a, "cross_attention", "b.0", &o, S2(T, F), &amap, n, 9);
    tu_layer_build(&b, "cross_attention", "b.0", &o, S2(T, F), &aseq, n, 10);
    assert_int_equal(a.l.out.ndim, 2);
    assert_int_equal(a.l.out.d[0], T);
    assert_int_equal(a.l.out.d[1], D);
    copy_params(&b, &a);
    float *x = tu_rand_floats(n * T * F, 11), *ctxm = tu_rand_floats(n * C * P, 12);
    float *ctxs = transpose_map(ctxm, n, C, P);
    float *y1 = jt_alloc_floats(n * T * D), *y2 = jt_alloc_floats(n * T * D);
    jt_ctx c1 = {.aux = ctxm}, c2 = {.aux = ctxs};
    a.l.ops->forward(&a.l, x, y1, n, &c1);
    b.l.ops->forward(&b.l, x, y2, n, &c2);
    for (size_t k = 0; k < n * T * D; k++) assert_float_equal(y1[k], y2[k], 1e-5);
    /* the context gradient comes back in the context's own (C, H, W) layout, added */
    float *dy = tu_rand_floats(n * T * D, 13), *dm = jt_alloc_floats(n * C * P);
    float *ds = jt_alloc_floats(n * C * P);
    for (size_t k = 0; k < n * C * P; k++) dm[k] = 1.0f, ds[k] = 1.0f;
    c1.daux = dm, c2.daux = ds;
    a.l.ops->backward(&a.l, x, y1, dy, NULL, n, &c1);
    b.l.ops->backward(&b.l, x, y2, dy, NULL, n, &c2);
    float *dst = transpose_map(dm, n, C, P);
    for (size_t k = 0; k < n * C * P; k++) assert_float_equal(dst[k], ds[k], 1e-5);
    jt_free_aligned(x);
    jt_free_aligned(ctxm);
    jt_free_aligned(ctxs);
    jt_free_aligned(y1);
    jt_free_aligned(y2);
    jt_free_aligned(dy);
    jt_free_aligned(dm);
    jt_free_aligned(ds);
    jt_free_aligned(dst);
    tu_layer_free(&a);
    tu_layer_free(&b);
}

/* Init: zero biases, except the LSTM forget-gate block of b_ih (1.0); layernorm gain 1. */
static void test_init(void **state) {
    (void)state;
    const size_t U = 3;
    const char *kinds[] = {"lstm", "gru", "layernorm"};
    for (size_t k = 0; k < 3; k++) {
        jt_layer_opts o = {.units = (long)U};
        jt_layer l;
        jt_params p;
        char err[256] = "";
        jt_params_init(&p);
        jt_shape in = k == 2 ? S1(U) : S2(4, 2);
        assert_int_equal(jt_layer_setup(&l, kinds[k], "b.0", k == 2 ? NULL : &o, &in, NULL, 2,
                                        &p, err, sizeof err),
                         JT_OK);
        jt_params_alloc(&p);
        jt_layer_bind(&l, &p);
        jt_rng r;
        jt_rng_seed(&r, 1, JT_RNG_INIT, 0, 0, 0);
        l.ops->init(&l, &r);
        if (k == 2) {
            for (size_t u = 0; u < U; u++) assert_true(l.W[0][u] == 1.0f && l.W[1][u] == 0.0f);
        } else {
            size_t gates = k == 0 ? 4 : 3;
            for (size_t j = 0; j < gates * U; j++) {
                float want = k == 0 && j / U == 1 ? 1.0f : 0.0f; /* lstm forget block */
                assert_true(l.W[2][j] == want && l.W[3][j] == 0.0f);
            }
            assert_true(l.W[0][0] != 0.0f && l.W[1][0] != 0.0f);
        }
        jt_params_free(&p);
    }
}

/* ---- shapes, settings and setup errors ---- */

static void expect_setup_error(const char *kind, const jt_layer_opts *o, jt_shape in,
                               const jt_shape *aux, const char *needle) {
    jt_layer l;
    jt_params p;
    char err[512] = "";
    jt_params_init(&p);
    assert_int_equal(jt_layer_setup(&l, kind, "b.1", o, &in, aux, 4, &p, err, sizeof err),
                     JT_EUSAGE);
    if (!strstr(err, needle)) fail_msg("message '%s' lacks '%s'", err, needle);
    jt_params_free(&p);
}

static void test_setup_errors(void **state) {
    (void)state;
    jt_layer_opts g = {.units = 8};
    expect_setup_error("gru", &g, S3(32, 14, 14), NULL, "gru needs a (T, F) input, got (32, 14, 14)");
    expect_setup_error("lstm", &g, S1(5), NULL, "lstm needs a (T, F) input, got (5)");
    jt_layer_opts none = {0};
    expect_setup_error("gru", &none, S2(4, 3), NULL, "'units' is required");
    jt_layer_opts c = {.filters = 2, .kernel = 5};
    expect_setup_error("conv1d", &c, S2(4, 3), NULL, "longer than the sequence");
    expect_setup_error("conv1d", &c, S3(1, 4, 3), NULL, "conv1d needs a (T, F) input");
    jt_layer_opts mp = {.size = 2};
    expect_setup_error("maxpool1d", &mp, S1(4), NULL, "maxpool1d needs a (T, F) input");
    expect_setup_error("layernorm", &none, S3(2, 3, 4), NULL, "(F) or (T, F)");
    expect_setup_error("attention_pool", &none, S1(4), NULL, "attention_pool needs a sequence");
    jt_layer_opts sa = {.heads = 4, .units = 6};
    expect_setup_error("self_attention", &sa, S2(4, 6), NULL, "not divisible by heads");
    jt_layer_opts ca = {.heads = 1, .units = 4};
    jt_shape aux = S2(3, 2);
    expect_setup_error("cross_attention", &ca, S2(4, 6), &aux, "'context'");
    snprintf(ca.context, sizeof ca.context, "enc");
    expect_setup_error("cross_attention", &ca, S2(4, 6), NULL, "'context'");
    jt_shape bad = S1(7);
    expect_setup_error("cross_attention", &ca, S2(4, 6), &bad, "got (7)");
}

static void test_output_shapes(void **state) {
    (void)state;
    struct {
        const char *kind;
        jt_layer_opts o;
        jt_shape in, out;
    } cases[] = {
        {"gru", {.units = 7}, S2(9, 3), S1(7)},
        {"gru", {.units = 7, .return_sequences = 1}, S2(9, 3), S2(9, 7)},
        {"lstm", {.units = 2, .return_sequences = 1}, S2(9, 3), S2(9, 2)},
        {"conv1d", {.filters = 5, .kernel = 3}, S2(9, 3), S2(7, 5)},
        {"conv1d", {.filters = 5, .kernel = 3, .stride = 2, .padding_same = 1}, S2(9, 3), S2(5, 5)},
        {"maxpool1d", {.size = 2}, S2(9, 3), S2(4, 3)},
        {"avgpool1d", {.size = 3, .stride = 1}, S2(9, 3), S2(7, 3)},
        {"meanpool_time", {0}, S2(9, 3), S1(3)},
        {"layernorm", {0}, S2(9, 3), S2(9, 3)},
        {"attention_pool", {0}, S3(8, 3, 3), S1(8)},
        {"self_attention", {.heads = 2}, S3(8, 3, 3), S2(9, 8)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tu_layer t;
        tu_layer_build(&t, cases[i].kind, "b.0", &cases[i].o, cases[i].in, NULL, 2, 1);
        char got[64], want[64];
        jt_shape_format(&t.l.out, got, sizeof got);
        jt_shape_format(&cases[i].out, want, sizeof want);
        if (strcmp(got, want) != 0) fail_msg("%s: out %s, want %s", cases[i].kind, got, want);
        tu_layer_free(&t);
    }
}

static void test_opts_parse(void **state) {
    (void)state;
    jt_layer_opts o;
    char err[256] = "";
    jt_layer_kv c[] = {{"filters", "8", 1}, {"kernel", "5", 1}, {"stride", "2", 1},
                       {"padding", "same", 1}};
    assert_int_equal(jt_layer_opts_parse("conv1d", c, 4, &o, err, sizeof err), JT_OK);
    assert_true(o.filters == 8 && o.kernel == 5 && o.stride == 2 && o.padding_same == 1);
    jt_layer_kv x[] = {{"heads", "4", 2}, {"units", "64", 2}, {"context", "image_net", 2}};
    assert_int_equal(jt_layer_opts_parse("cross_attention", x, 3, &o, err, sizeof err), JT_OK);
    assert_true(o.heads == 4 && o.units == 64 && strcmp(o.context, "image_net") == 0);
    assert_int_equal(jt_layer_opts_parse("self_attention", x, 3, &o, err, sizeof err), JT_EUSAGE);
    assert_non_null(strstr(err, "context"));
    jt_layer_kv r[] = {{"units", "16", 3}, {"return_sequences", "true", 3}};
    assert_int_equal(jt_layer_opts_parse("lstm", r, 2, &o, err, sizeof err), JT_OK);
    assert_true(o.units == 16 && o.return_sequences == 1);
    assert_int_equal(jt_layer_opts_parse("layernorm", r, 1, &o, err, sizeof err), JT_EUSAGE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_gru),
        cmocka_unit_test(test_grad_lstm),
        cmocka_unit_test(test_grad_conv1d),
        cmocka_unit_test(test_grad_pool1d),
        cmocka_unit_test(test_grad_layernorm),
        cmocka_unit_test(test_grad_attention_pool),
        cmocka_unit_test(test_grad_self_attention),
        cmocka_unit_test(test_grad_cross_attention),
        cmocka_unit_test(test_gru_forward_reference),
        cmocka_unit_test(test_lstm_forward_reference),
        cmocka_unit_test(test_rnn_backward_reference),
        cmocka_unit_test(test_conv1d_forward_reference),
        cmocka_unit_test(test_self_attention_forward_reference),
        cmocka_unit_test(test_attention_pool_feature_map),
        cmocka_unit_test(test_cross_attention_feature_map_context),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_setup_errors),
        cmocka_unit_test(test_output_shapes),
        cmocka_unit_test(test_opts_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
