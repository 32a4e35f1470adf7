/* test_multitask.c - the arithmetic of multi-task training (multitask.h): uncertainty weighting
 * (finite differences), gradnorm (finite differences on a small shared linear layer,
 * renormalisation), dwa (hand-computed weights), the gradient statistics (hand-computed norms
 * and cosines) and PCGrad (hand-computed projections, the order drawn from the PCGRAD stream,
 * a double-precision reference on random vectors). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jtrain/multitask.h"
#include "jtrain/rng.h"
#include "testutil.h"

/* |a - b| <= tol * max(|a|, |b|, 1e-300)? */
static int close_rel(double a, double b, double tol) {
    double m = fmax(fabs(a), fabs(b));
    return fabs(a - b) <= tol * fmax(m, 1e-300);
}

/* ---- uncertainty ---- */

/* The combined loss sum_i exp(-s_i) base_i L_i + s_i in double, s in double. */
static double ref_uncertainty_loss(const double *s, const double *base, const double *L,
                                   size_t H) {
    double t = 0;
    for (size_t i = 0; i < H; i++) t += exp(-s[i]) * base[i] * L[i] + s[i];
    return t;
}

static void test_uncertainty(void **state) {
    (void)state;
    enum { H = 4 };
    const float s[H] = {0.0f, -0.7f, 1.3f, 0.25f};
    const double base[H] = {1.0, 0.5, 2.0, 1.5};
    const double L[H] = {0.9, 2.3, 0.05, 1.1};
    double w[H];
    jt_mt_uncertainty_weights(s, base, H, w);
    for (size_t i = 0; i < H; i++) assert_true(close_rel(w[i], exp(-(double)s[i]) * base[i], 1e-15));

    double sd[H];
    for (size_t i = 0; i < H; i++) sd[i] = s[i];
    double want = ref_uncertainty_loss(sd, base, L, H);
    assert_true(close_rel(jt_mt_uncertainty_loss(s, base, L, H), want, 1e-14));

    float ds[H];
    jt_mt_uncertainty_grad(s, base, L, H, ds);
    const double h = 1e-5;
    double an[H], fd[H];
    for (size_t i = 0; i < H; i++) {
        double keep = sd[i];
        sd[i] = keep + h;
        double fp = ref_uncertainty_loss(sd, base, L, H);
        sd[i] = keep - h;
        double fm = ref_uncertainty_loss(sd, base, L, H);
        sd[i] = keep;
        fd[i] = (fp - fm) / (2 * h);
        an[i] = ds[i];
        assert_true(close_rel(an[i], 1.0 - w[i] * L[i], 1e-7)); /* the documented closed form */
    }
    double err = tu_max_rel_err(an, fd, H);
    assert_true(err < 1e-6);
}

/* ---- gradnorm ---- */

/* A shared linear layer y = W x (W: 2 x 3, row-major) and head losses
 * L_i = 0.5 ||W x - t_i||^2, so grad_W L_i = (W x - t_i) x^T. */
enum { GN_H = 3, GN_O = 2, GN_I = 3 };
static const double gn_x[GN_I] = {0.7, -1.2, 0.4};
static const double gn_t[GN_H][GN_O] = {{1.0, -0.5}, {-2.0, 0.3}, {0.2, 2.5}};

static void gn_grad(const double *W, size_t i, double *gW, double *loss) {
    double l = 0;
    for (size_t o = 0; o < GN_O; o++) {
        double y = 0;
        for (size_t k = 0; k < GN_I; k++) y += W[o * GN_I + k] * gn_x[k];
        double e = y - gn_t[i][o];
        l += 0.5 * e * e;
        for (size_t k = 0; k < GN_I; k++) gW[o * GN_I + k] = e * gn_x[k];
    }
    *loss = l;
}

/* G_i(w) = || grad_W (w_i L_i) || as the norm of the weighted gradient itself. */
static void gn_G(const double *W, const double *w, double *G) {
    for (size_t i = 0; i < GN_H; i++) {
        double gW[GN_O * GN_I], l, sq = 0;
        gn_grad(W, i, gW, &l);
        for (size_t k = 0; k < GN_O * GN_I; k++) sq += (w[i] * gW[k]) * (w[i] * gW[k]);
        G[i] = sqrt(sq);
    }
}

static double gn_objective(const double *W, const double *w, const double *target) {
    double G[GN_H], f = 0;
    gn_G(W, w, G);
    for (size_t i = 0; i < GN_H; i++) f += fabs(G[i] - target[i]);
    return f;
}

static void test_gradnorm_grad(void **state) {
    (void)state;
    const double W[GN_O * GN_I] = {0.3, -0.8, 1.1, 0.5, 0.2, -0.6};
    const double W0[GN_O * GN_I] = {0.0, 0.1, -0.2, 0.4, -0.3, 0.2}; /* "the first step" */
    const float wf[GN_H] = {1.2f, 0.6f, 1.2f};
    const double alpha = 1.5;
    double w[GN_H], gnorm[GN_H], L[GN_H], L0[GN_H];
    for (size_t i = 0; i < GN_H; i++) {
        double gW[GN_O * GN_I], sq = 0;
        gn_grad(W0, i, gW, &L0[i]);
        gn_grad(W, i, gW, &L[i]);
        for (size_t k = 0; k < GN_O * GN_I; k++) sq += gW[k] * gW[k];
        gnorm[i] = sqrt(sq);
        w[i] = wf[i];
    }
    /* the target, a constant: mean(G) * (Lt_i / mean(Lt))^alpha at the unperturbed w */
    double G[GN_H], target[GN_H], meanG = 0, Lt[GN_H], meanLt = 0;
    gn_G(W, w, G);
    for (size_t i = 0; i < GN_H; i++) {
        meanG += G[i] / GN_H;
        Lt[i] = L[i] / L0[i];
        meanLt += Lt[i] / GN_H;
    }
    int pos = 0, neg = 0;
    for (size_t i = 0; i < GN_H; i++) {
        target[i] = meanG * pow(Lt[i] / meanLt, alpha);
        assert_true(fabs(G[i] - target[i]) > 1e-2); /* away from the kink of |.| */
        pos += G[i] > target[i];
        neg += G[i] < target[i];
    }
    assert_true(pos > 0 && neg > 0); /* both signs are exercised */

    float dw[GN_H];
    double Lg = jt_mt_gradnorm_grad(wf, gnorm, L, L0, GN_H, alpha, dw);
    assert_true(close_rel(Lg, gn_objective(W, w, target), 1e-12));

    const double h = 1e-6;
    double an[GN_H], fd[GN_H];
    for (size_t i = 0; i < GN_H; i++) {
        double keep = w[i];
        w[i] = keep + h;
        double fp = gn_objective(W, w, target);
        w[i] = keep - h;
        double fm = gn_objective(W, w, target);
        w[i] = keep;
        fd[i] = (fp - fm) / (2 * h);
        an[i] = dw[i];
        assert_true(fabs(fabs(an[i]) - gnorm[i]) <= 1e-7 * gnorm[i]); /* +-gnorm_i */
    }
    assert_true(tu_max_rel_err(an, fd, GN_H) < 1e-6);

    /* balanced: every G_i equals its target -> L_grad 0 and dw 0 (sign(0) = 0) */
    const float w1[2] = {1.0f, 2.0f};
    const double gn1[2] = {2.0, 1.0}, Lb[2] = {0.5, 0.5}, L0b[2] = {1.0, 1.0};
    float dw1[2] = {9, 9};
    assert_true(jt_mt_gradnorm_grad(w1, gn1, Lb, L0b, 2, 1.0, dw1) == 0.0);
    assert_true(dw1[0] == 0.0f && dw1[1] == 0.0f);

    /* hand case: w = (1, 1), gnorm = (1, 3) -> G = (1, 3), mean 2; L/L0 = (1, 0.5), mean 0.75,
     * r = (4/3, 2/3); alpha = 1: target = (8/3, 4/3); L_grad = 5/3 + 5/3 = 10/3,
     * dw = (-1, +3). A head with L0 = 0 counts Lt = 1. */
    const float w2[2] = {1.0f, 1.0f};
    const double gn2[2] = {1.0, 3.0}, L2[2] = {0.8, 0.5}, L02[2] = {0.8, 1.0};
    float dw2[2];
    assert_true(close_rel(jt_mt_gradnorm_grad(w2, gn2, L2, L02, 2, 1.0, dw2), 10.0 / 3.0, 1e-15));
    assert_true(dw2[0] == -1.0f && dw2[1] == 3.0f);
    const double L03[2] = {0.0, 1.0};
    assert_true(close_rel(jt_mt_gradnorm_grad(w2, gn2, L2, L03, 2, 1.0, dw2), 10.0 / 3.0, 1e-15));
}

static void test_gradnorm_renormalise(void **state) {
    (void)state;
    /* (2, 1, 1) with base (1, 1, 1): sum 4 -> scaled by 3/4 */
    float w[3] = {2.0f, 1.0f, 1.0f};
    const double base[3] = {1.0, 1.0, 1.0};
    jt_mt_gradnorm_renormalise(w, base, 3);
    assert_true(w[0] == 1.5f && w[1] == 0.75f && w[2] == 0.75f);

    /* base (0.5, 2.5): sum 3 */
    float v[2] = {1.0f, 1.0f};
    const double b2[2] = {0.5, 2.5};
    jt_mt_gradnorm_renormalise(v, b2, 2);
    assert_true(v[0] == 1.5f && v[1] == 1.5f);

    /* floor 1e-6 * 3 = 3e-6: a tiny, a negative and a NaN weight are raised to it first */
    float u[4] = {1e-9f, -0.5f, NAN, 2.0f};
    const double b4[4] = {1.0, 0.5, 0.5, 1.0};
    jt_mt_gradnorm_renormalise(u, b4, 4);
    double lo = 3e-6, have = 3 * lo + 2.0, sum = 0;
    for (size_t i = 0; i < 3; i++) {
        assert_true(isfinite(u[i]) && u[i] > 0.0f);
        assert_true(close_rel(u[i], lo * 3.0 / have, 1e-6));
    }
    assert_true(close_rel(u[3], 2.0 * 3.0 / have, 1e-6));
    for (size_t i = 0; i < 4; i++) sum += u[i];
    assert_true(close_rel(sum, 3.0, 1e-6));
}

/* ---- dwa ---- */

static void test_dwa(void **state) {
    (void)state;
    double w[3];
    /* 2 heads, T = 2, base (1, 1): r = (0.5/1, 1/1) = (0.5, 1), r/T = (0.25, 0.5);
     * w0 = 2 e^0.25 / (e^0.25 + e^0.5) = 2 / (1 + e^0.25) = 2 / 2.2840254166877414
     *    = 0.8756469982284039, w1 = 2 / (1 + e^-0.25) = 1.1243530017715961 */
    const double p1a[2] = {0.5, 1.0}, p2a[2] = {1.0, 1.0}, ones[3] = {1, 1, 1};
    jt_mt_dwa_weights(p1a, p2a, 2, ones, 2, 2.0, w);
    assert_true(close_rel(w[0], 0.8756469982284039, 1e-14));
    assert_true(close_rel(w[1], 1.1243530017715961, 1e-14));

    /* 3 heads, T = 1, base (1, 0.5, 2): r = (0.9/1, 0.6/1.2, 1.2/1) = (0.9, 0.5, 1.2);
     * e^0.9 + e^0.5 + e^1.2 = 2.45960311 + 1.64872127 + 3.32011692 = 7.428441304593625;
     * w = base * 3 * e^r / 7.4284413 = (0.9933186560830622, 0.3329207036368288,
     *     2.6816798732865603) */
    const double p1b[3] = {0.9, 0.6, 1.2}, p2b[3] = {1.0, 1.2, 1.0}, bb[3] = {1.0, 0.5, 2.0};
    jt_mt_dwa_weights(p1b, p2b, 2, bb, 3, 1.0, w);
    assert_true(close_rel(w[0], 0.9933186560830622, 1e-14));
    assert_true(close_rel(w[1], 0.3329207036368288, 1e-14));
    assert_true(close_rel(w[2], 2.6816798732865603, 1e-14));
    /* more windows than two change nothing */
    double w5[3];
    jt_mt_dwa_weights(p1b, p2b, 5, bb, 3, 1.0, w5);
    assert_true(memcmp(w, w5, sizeof w) == 0);

    /* fewer than two windows: the base weights, whatever the losses */
    jt_mt_dwa_weights(p1b, p2b, 0, bb, 3, 1.0, w);
    assert_true(w[0] == 1.0 && w[1] == 0.5 && w[2] == 2.0);
    jt_mt_dwa_weights(p1b, p2b, 1, bb, 3, 1.0, w);
    assert_true(w[0] == 1.0 && w[1] == 0.5 && w[2] == 2.0);

    /* a head without labelled rows (loss 0 or not finite in either window) has r = 1:
     * r = (1, 0.8), T = 1: w0 = 2 e / (e + e^0.8) = 1.0996679946249557,
     * w1 = 2 e^0.8 / (e + e^0.8) = 0.9003320053750443 */
    const double p2c[2] = {1.0, 1.0};
    const double p1c[4][2] = {{0.0, 0.8}, {NAN, 0.8}, {INFINITY, 0.8}, {2.0, 0.8}};
    const double p2z[2] = {0.0, 1.0};
    for (size_t k = 0; k < 4; k++) {
        jt_mt_dwa_weights(p1c[k], k == 3 ? p2z : p2c, 2, ones, 2, 1.0, w);
        assert_true(close_rel(w[0], 1.0996679946249557, 1e-14));
        assert_true(close_rel(w[1], 0.9003320053750443, 1e-14));
    }

    /* large ratios and a small T: the shift by the maximum keeps it finite */
    const double p1d[2] = {1e3, 1.0}, p2d[2] = {1.0, 1.0};
    jt_mt_dwa_weights(p1d, p2d, 2, ones, 2, 0.1, w);
    assert_true(close_rel(w[0], 2.0, 1e-14) && w[1] >= 0.0 && w[1] < 1e-300);
}

/* ---- gradient statistics ---- */

static void test_grad_stats(void **state) {
    (void)state;
    enum { H = 6, N = 41 }; /* N > 2 * 16 lanes, with a tail */
    static float v[H][N];
    memset(v, 0, sizeof v);
    v[0][0] = 3, v[0][17] = 4;    /* a = (3, 4) on coordinates 0, 17: norm 5 */
    v[1][40] = 2;                 /* b: orthogonal to a, norm 2 */
    v[2][0] = 6, v[2][17] = 8;    /* 2a: parallel, norm 10 */
    v[3][0] = -3, v[3][17] = -4;  /* -a: opposite, norm 5 */
    /* v[4] = 0 */
    v[5][0] = 1, v[5][17] = 1;    /* (1, 1): norm sqrt 2, a . (1, 1) = 7 */
    const float *g[H];
    for (size_t i = 0; i < H; i++) g[i] = v[i];
    double norm[H], cs[H * H];
    jt_mt_grad_stats(g, H, N, norm, cs);
    const double want_norm[H] = {5, 2, 10, 5, 0, sqrt(2.0)};
    for (size_t i = 0; i < H; i++) assert_true(fabs(norm[i] - want_norm[i]) < 1e-15);
    const double c05 = 7.0 / (5.0 * sqrt(2.0)), c15 = 0.0;
    const double want[H][H] = {
        {1, 0, 1, -1, 0, c05},    {0, 1, 0, 0, 0, c15},      {1, 0, 1, -1, 0, c05},
        {-1, 0, -1, 1, 0, -c05},  {0, 0, 0, 0, 0, 0},        {c05, c15, c05, -c05, 0, 1},
    };
    for (size_t i = 0; i < H; i++)
        for (size_t j = 0; j < H; j++) assert_true(fabs(cs[i * H + j] - want[i][j]) < 1e-15);
}

/* ---- PCGrad ---- */

/* The order of the other heads for head i, as the stream (seed, PCGRAD, step, block, i) draws
 * it: a permutation of the H-1 positions, position p naming head p (p < i) or p + 1. */
static void other_order(uint64_t seed, uint64_t step, uint64_t block, size_t i, size_t H,
                        size_t *order) {
    jt_rng r;
    uint64_t p[16];
    jt_rng_seed(&r, seed, JT_RNG_PCGRAD, step, block, i);
    jt_rng_permutation(&r, p, H - 1);
    for (size_t q = 0; q + 1 < H; q++) order[q] = p[q] < i ? (size_t)p[q] : (size_t)p[q] + 1;
}

static void test_pcgrad_two_heads(void **state) {
    (void)state;
    float work[4], out[2];
    /* g1 = (1, 0), g2 = (-1, 1): g1 . g2 = -1 < 0 -> g1' = g1 - (-1/2) (-1, 1) = (0.5, 0.5);
     * g2 . g1 = -1 < 0 -> g2' = g2 - (-1/1) (1, 0) = (0, 1); out = (0.5, 1.5) */
    const float a[2] = {1, 0}, b[2] = {-1, 1};
    const float *g[2] = {a, b};
    for (uint64_t step = 0; step < 4; step++) {
        assert_int_equal(jt_mt_pcgrad(g, 2, 2, 11, step, 0, work, out), 2);
        assert_true(out[0] == 0.5f && out[1] == 1.5f);
        assert_true(work[0] == 0.5f && work[1] == 0.5f && work[2] == 0.0f && work[3] == 1.0f);
    }
    /* no conflict: g1 = (1, 0), g2 = (1, 1) -> unchanged, out = g1 + g2 */
    const float c[2] = {1, 1};
    const float *g2[2] = {a, c};
    assert_int_equal(jt_mt_pcgrad(g2, 2, 2, 11, 0, 0, work, out), 0);
    assert_true(out[0] == 2.0f && out[1] == 1.0f);
    /* a zero gradient is skipped (and itself stays zero) */
    const float z[2] = {0, 0};
    const float *g3[2] = {a, z};
    assert_int_equal(jt_mt_pcgrad(g3, 2, 2, 11, 0, 0, work, out), 0);
    assert_true(out[0] == 1.0f && out[1] == 0.0f);
    /* one head: out = g1 */
    const float *g4[1] = {b};
    assert_int_equal(jt_mt_pcgrad(g4, 1, 2, 11, 0, 0, work, out), 0);
    assert_true(out[0] == -1.0f && out[1] == 1.0f);
}

static void test_pcgrad_order(void **state) {
    (void)state;
    /* g1 = (1, 0), g2 = (-1, 1), g3 = (0, -1).
     * head 1, order (2, 3): g1.g2 = -1 -> (1,0) + 0.5 (-1,1) = (0.5, 0.5); . g3 = -0.5
     *                       -> (0.5,0.5) + 0.5 (0,-1) = (0.5, 0): 2 projections
     *         order (3, 2): g1.g3 = 0 (none); . g2 = -1 -> (0.5, 0.5): 1 projection
     * head 2, order (1, 3): g2.g1 = -1 -> (-1,1) + (1,0) = (0, 1); . g3 = -1 -> (0, 0)
     *         order (3, 1): g2.g3 = -1 -> (-1,1) + (0,-1) = (-1, 0); . g1 = -1 -> (0, 0)
     *                       2 projections either way
     * head 3, order (1, 2): g3.g1 = 0 (none); . g2 = -1 -> (0,-1) + 0.5 (-1,1) = (-0.5, -0.5)
     *                       1 projection
     *         order (2, 1): g3.g2 = -1 -> (-0.5, -0.5); . g1 = -0.5 -> (-0.5,-0.5) + 0.5 (1,0)
     *                       = (0, -0.5): 2 projections
     * (heads numbered from 1 here, from 0 in the code) */
    const float a[2] = {1, 0}, b[2] = {-1, 1}, c[2] = {0, -1};
    const float *g[3] = {a, b, c};
    const float head0[2][2] = {{0.5f, 0.0f}, {0.5f, 0.5f}};  /* first other head 1 / 2 */
    const size_t proj0[2] = {2, 1};
    const float head2[2][2] = {{-0.5f, -0.5f}, {0.0f, -0.5f}}; /* first other head 0 / 1 */
    const size_t proj2[2] = {1, 2};
    const uint64_t seed = 1234, block = 3;
    int seen[2][2] = {{0, 0}, {0, 0}};
    float work[6], out[2], again[2], work2[6];
    for (uint64_t step = 0; step < 64; step++) {
        size_t o0[2], o2[2];
        other_order(seed, step, block, 0, 3, o0);
        other_order(seed, step, block, 2, 3, o2);
        int k0 = o0[0] == 1 ? 0 : 1, k2 = o2[0] == 0 ? 0 : 1;
        seen[k0][k2] = 1;
        size_t np = jt_mt_pcgrad(g, 3, 2, seed, step, block, work, out);
        assert_int_equal(np, proj0[k0] + 2 + proj2[k2]);
        assert_true(work[0] == head0[k0][0] && work[1] == head0[k0][1]);
        assert_true(work[2] == 0.0f && work[3] == 0.0f);
        assert_true(work[4] == head2[k2][0] && work[5] == head2[k2][1]);
        assert_true(out[0] == head0[k0][0] + head2[k2][0]);
        assert_true(out[1] == head0[k0][1] + head2[k2][1]);
        /* the same (seed, step, block) gives the same result */
        assert_int_equal(jt_mt_pcgrad(g, 3, 2, seed, step, block, work2, again), np);
        assert_true(memcmp(out, again, sizeof out) == 0);
    }
    /* the steps drew every combination of orders, so results differ between steps */
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) assert_true(seen[i][j]);
}

/* A double-precision PCGrad following the documented order; checks, after every projection,
 * that the projected gradient no longer conflicts with g_j. Returns the projection count. */
static size_t ref_pcgrad(const float *const *g, size_t H, size_t n, uint64_t seed,
                         uint64_t step, uint64_t block, double *gp, double *out) {
    size_t count = 0;
    double sq[8];
    for (size_t j = 0; j < H; j++) {
        sq[j] = 0;
        for (size_t k = 0; k < n; k++) sq[j] += (double)g[j][k] * g[j][k];
    }
    for (size_t k = 0; k < n; k++) out[k] = 0;
    for (size_t i = 0; i < H; i++) {
        double *p = gp + i * n;
        for (size_t k = 0; k < n; k++) p[k] = g[i][k];
        size_t order[8];
        other_order(seed, step, block, i, H, order);
        for (size_t q = 0; q + 1 < H; q++) {
            size_t j = order[q];
            if (sq[j] == 0) continue;
            double d = 0;
            for (size_t k = 0; k < n; k++) d += p[k] * g[j][k];
            if (d >= 0) continue;
            for (size_t k = 0; k < n; k++) p[k] -= d / sq[j] * g[j][k];
            count++;
            double d2 = 0, pp = 0;
            for (size_t k = 0; k < n; k++) d2 += p[k] * g[j][k], pp += p[k] * p[k];
            assert_true(d2 >= -1e-12 * sqrt(pp * sq[j]));
        }
        for (size_t k = 0; k < n; k++) out[k] += p[k];
    }
    return count;
}

static double fdot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t k = 0; k < n; k++) s += (double)a[k] * b[k];
    return s;
}

static void test_pcgrad_random(void **state) {
    (void)state;
    enum { N = 1000 };
    jt_rng rng;
    jt_rng_seed(&rng, 99, JT_RNG_TEST, 1, 2, 3);
    static float buf[4][N], work[4 * N], out[N];
    static double gp[4 * N], ref_out[N];
    float u[N];
    tu_fill_uniform(u, N, -1.0f, 1.0f, &rng);
    /* a shared direction with signs that conflict, plus noise */
    const float mix[4] = {1.0f, -0.8f, 0.6f, -1.2f};
    for (size_t h = 0; h < 4; h++) {
        tu_fill_uniform(buf[h], N, -1.0f, 1.0f, &rng);
        for (size_t k = 0; k < N; k++) buf[h][k] += mix[h] * u[k];
    }
    const float *g[4] = {buf[0], buf[1], buf[2], buf[3]};
    for (size_t H = 3; H <= 4; H++) {
        for (uint64_t step = 0; step < 6; step++) {
            size_t np = jt_mt_pcgrad(g, H, N, 5, step, 1, work, out);
            size_t want = ref_pcgrad(g, H, N, 5, step, 1, gp, ref_out);
            assert_int_equal(np, want);
            assert_true(np > 0);
            for (size_t k = 0; k < H * N; k++)
                assert_true(fabs(work[k] - gp[k]) <= 1e-5 * (1.0 + fabs(gp[k])));
            for (size_t k = 0; k < N; k++)
                assert_true(fabs(out[k] - ref_out[k]) <= 1e-5 * (1.0 + fabs(ref_out[k])));
            /* the function's own gp_i: no conflict left with the last g_j it was projected
             * against (nothing changed it afterwards) */
            for (size_t i = 0; i < H; i++) {
                size_t order[4];
                other_order(5, step, 1, i, H, order);
                const float *p = work + i * N;
                /* replay the decisions to find the last projection */
                double pd[N];
                for (size_t k = 0; k < N; k++) pd[k] = g[i][k];
                size_t last = H;
                for (size_t q = 0; q + 1 < H; q++) {
                    size_t j = order[q];
                    double d = 0, s = fdot(g[j], g[j], N);
                    for (size_t k = 0; k < N; k++) d += pd[k] * g[j][k];
                    if (s == 0 || d >= 0) continue;
                    for (size_t k = 0; k < N; k++) pd[k] -= d / s * g[j][k];
                    last = j;
                }
                if (last < H) {
                    double d = fdot(p, g[last], N);
                    double sc = sqrt(fdot(p, p, N) * fdot(g[last], g[last], N));
                    assert_true(d >= -1e-5 * sc);
                }
            }
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uncertainty),
        cmocka_unit_test(test_gradnorm_grad),
        cmocka_unit_test(test_gradnorm_renormalise),
        cmocka_unit_test(test_dwa),
        cmocka_unit_test(test_grad_stats),
        cmocka_unit_test(test_pcgrad_two_heads),
        cmocka_unit_test(test_pcgrad_order),
        cmocka_unit_test(test_pcgrad_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
