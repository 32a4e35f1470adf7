/* multitask.c - loss balancing (uncertainty, dwa, gradnorm), PCGrad and the gradient statistics
 * of multitask.h.
 *
 * Scalars per head are computed in double. The vector kernels (dot product, axpy, sum) are one
 * pass each over the floats; dot products and squared norms are accumulated in double over
 * JT_MT_LANES interleaved partial sums added in a fixed order at the end (as jt_grad_norm in
 * optim.c), so the result depends only on the buffers, never on the CPU or the clone.
 *
 * Choices the header leaves open, fixed here:
 *  - PCGrad's order for head i: jt_rng_permutation of the H-1 positions 0..H-2 from the stream
 *    (seed, JT_RNG_PCGRAD, step, block, i); position value p names head p for p < i and head
 *    p + 1 otherwise (the other heads in ascending order, then shuffled). The projection
 *    coefficient (gp_i . g_j) / ||g_j||^2 is computed in double and applied in float:
 *    gp[k] = gp[k] - c * g_j[k]. After the call work + i * n holds gp_i.
 *  - gradnorm: a head whose first-step loss L0_i is not a positive finite number (no labelled
 *    row in the first step) has Lt_i = 1; if mean(Lt) is not a positive finite number, every
 *    r_i = 1. sign(0) = 0.
 *  - gradnorm renormalisation: the floor is 1e-6 * sum_i base_i; a w_i that is not finite is
 *    raised to the floor too. */
#include "jtrain/multitask.h"

#include <math.h>

#include "jtrain/common.h"
#include "jtrain/config.h"
#include "jtrain/rng.h"
#include "simd.h"

#define JT_MT_LANES 16
/* Largest H jt_mt_pcgrad takes (its permutation lives on the stack). */
#define JT_MT_MAX_HEADS 64
_Static_assert(JT_MT_MAX_HEADS >= JT_CONFIG_MAX_HEADS, "PCGrad must take every configured head");

/* ---- vector kernels ---- */

// a, b: (n) -> sum_k a[k] b[k] in double, lane j over k = j mod lanes
JT_HOT
static double dot(const float *restrict a, const float *restrict b, size_t n) {
    double acc[JT_MT_LANES] = {0};
    size_t k = 0;
    for (; k + JT_MT_LANES <= n; k += JT_MT_LANES)
        for (size_t j = 0; j < JT_MT_LANES; j++) acc[j] += (double)a[k + j] * (double)b[k + j];
    for (size_t j = 0; k < n; k++, j++) acc[j] += (double)a[k] * (double)b[k];
    double s = 0.0;
    for (size_t j = 0; j < JT_MT_LANES; j++) s += acc[j];
    return s;
}

// y -= c * x, y and x: (n)
JT_HOT
static void sub_scaled(float *restrict y, const float *restrict x, size_t n, float c) {
    for (size_t k = 0; k < n; k++) y[k] = y[k] - c * x[k];
}

// y += x, y and x: (n)
JT_HOT
static void add_to(float *restrict y, const float *restrict x, size_t n) {
    for (size_t k = 0; k < n; k++) y[k] = y[k] + x[k];
}

static void copy_floats(float *restrict y, const float *restrict x, size_t n) {
    for (size_t k = 0; k < n; k++) y[k] = x[k];
}

/* ---- uncertainty ---- */

void jt_mt_uncertainty_weights(const float *s, const double *base, size_t H, double *w) {
    for (size_t i = 0; i < H; i++) w[i] = exp(-(double)s[i]) * base[i];
}

double jt_mt_uncertainty_loss(const float *s, const double *base, const double *L, size_t H) {
    double total = 0.0;
    for (size_t i = 0; i < H; i++) total += exp(-(double)s[i]) * base[i] * L[i] + (double)s[i];
    return total;
}

void jt_mt_uncertainty_grad(const float *s, const double *base, const double *L, size_t H,
                            float *ds) {
    for (size_t i = 0; i < H; i++) ds[i] = (float)(1.0 - exp(-(double)s[i]) * base[i] * L[i]);
}

/* ---- dwa ---- */

void jt_mt_dwa_weights(const double *prev1, const double *prev2, int have_windows,
                       const double *base, size_t H, double T, double *w) {
    if (have_windows < 2) {
        for (size_t i = 0; i < H; i++) w[i] = base[i];
        return;
    }
    JT_CHECK(T > 0.0, "dwa temperature must be positive, got %g", T);
    /* w holds r_i / T first, then the weights */
    double top = -INFINITY;
    for (size_t i = 0; i < H; i++) {
        double a = prev1[i], b = prev2[i];
        int labelled = isfinite(a) && isfinite(b) && a != 0.0 && b != 0.0;
        w[i] = (labelled ? a / b : 1.0) / T;
        if (w[i] > top) top = w[i];
    }
    double z = 0.0;
    for (size_t i = 0; i < H; i++) {
        w[i] = exp(w[i] - top);
        z += w[i];
    }
    for (size_t i = 0; i < H; i++) w[i] = base[i] * (double)H * w[i] / z;
}

/* ---- gradnorm ---- */

double jt_mt_gradnorm_grad(const float *w, const double *gnorm, const double *L,
                           const double *L0, size_t H, double alpha, float *dw) {
    if (H == 0) return 0.0;
    double mean_G = 0.0, mean_Lt = 0.0;
    for (size_t i = 0; i < H; i++) {
        mean_G += (double)w[i] * gnorm[i];
        mean_Lt += (isfinite(L0[i]) && L0[i] > 0.0) ? L[i] / L0[i] : 1.0;
    }
    mean_G /= (double)H;
    mean_Lt /= (double)H;
    int ratios = isfinite(mean_Lt) && mean_Lt > 0.0;
    double L_grad = 0.0;
    for (size_t i = 0; i < H; i++) {
        double Lt = (isfinite(L0[i]) && L0[i] > 0.0) ? L[i] / L0[i] : 1.0;
        double r = ratios ? Lt / mean_Lt : 1.0;
        double target = mean_G * pow(r, alpha);
        double d = (double)w[i] * gnorm[i] - target;
        L_grad += fabs(d);
        dw[i] = (float)((double)((d > 0.0) - (d < 0.0)) * gnorm[i]);
    }
    return L_grad;
}

void jt_mt_gradnorm_renormalise(float *w, const double *base, size_t H) {
    double want = 0.0;
    for (size_t i = 0; i < H; i++) want += base[i];
    JT_CHECK(want > 0.0, "gradnorm needs a positive sum of head weights, got %g", want);
    const double lo = 1e-6 * want;
    double have = 0.0;
    for (size_t i = 0; i < H; i++) {
        double wi = w[i];
        if (!(wi >= lo) || !isfinite(wi)) wi = lo;
        w[i] = (float)wi;
        have += wi;
    }
    const double scale = want / have;
    for (size_t i = 0; i < H; i++) w[i] = (float)((double)w[i] * scale);
}

/* ---- gradient statistics ---- */

void jt_mt_grad_stats(const float *const *g, size_t H, size_t n, double *norm, double *cosine) {
    for (size_t i = 0; i < H; i++) norm[i] = sqrt(dot(g[i], g[i], n));
    for (size_t i = 0; i < H; i++) {
        for (size_t j = i; j < H; j++) {
            double c = 0.0;
            if (norm[i] > 0.0 && norm[j] > 0.0) {
                double d = (i == j) ? norm[i] * norm[i] : dot(g[i], g[j], n);
                c = d / (norm[i] * norm[j]);
            }
            cosine[i * H + j] = c;
            cosine[j * H + i] = c;
        }
    }
}

/* ---- PCGrad ---- */

size_t jt_mt_pcgrad(const float *const *g, size_t H, size_t n, uint64_t seed, uint64_t step,
                    uint64_t block, float *work, float *out) {
    JT_CHECK(H <= JT_MT_MAX_HEADS, "PCGrad takes at most %d heads, got %zu", JT_MT_MAX_HEADS,
             H);
    if (H == 0) {
        for (size_t k = 0; k < n; k++) out[k] = 0.0f;
        return 0;
    }
    double sq[JT_MT_MAX_HEADS]; /* ||g_j||^2 of the original gradients */
    uint64_t perm[JT_MT_MAX_HEADS];
    for (size_t j = 0; j < H; j++) sq[j] = dot(g[j], g[j], n);
    size_t projections = 0;
    for (size_t i = 0; i < H; i++) {
        float *gp = work + i * n;
        copy_floats(gp, g[i], n);
        if (H > 1) {
            jt_rng r;
            jt_rng_seed(&r, seed, JT_RNG_PCGRAD, step, block, i);
            jt_rng_permutation(&r, perm, H - 1);
        }
        for (size_t q = 0; q + 1 < H; q++) {
            size_t j = (size_t)perm[q] < i ? (size_t)perm[q] : (size_t)perm[q] + 1;
            if (!(sq[j] > 0.0)) continue;
            double d = dot(gp, g[j], n);
            if (d < 0.0) {
                sub_scaled(gp, g[j], n, (float)(d / sq[j]));
                projections++;
            }
        }
        if (i == 0)
            copy_floats(out, gp, n);
        else
            add_to(out, gp, n);
    }
    return projections;
}
