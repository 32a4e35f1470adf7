/* optim.c - AdamW (Loshchilov & Hutter 2019) with the exact semantics of torch.optim.AdamW
 * (amsgrad off, maximize off), and global-norm gradient clipping.
 *
 * torch's update, which this follows term by term:
 *   w *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   w -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * The bias-correction factors are computed in double once per step; the element loop is float
 * (the parameters are float32), one pass over the four buffers, vectorised (JT_HOT; sqrtf is
 * inlined since the build has -fno-math-errno) with the same IEEE operations per element as the
 * scalar loop.
 *
 * The gradient norm is summed in double over JT_NORM_LANES interleaved partial sums, added in a
 * fixed order at the end: the result depends only on the buffer, not on the CPU or the clone,
 * so every rank computes the same norm from the same reduced gradient. */
#include "jtrain/optim.h"

#include <math.h>

#include "jtrain/common.h"
#include "simd.h"

#define JT_NORM_LANES 16

jt_adam_opts jt_adam_default_opts(void) {
    jt_adam_opts o = {1e-3, 0.9, 0.999, 1e-8, 0.0};
    return o;
}

// w, g, m, v: (n); m and v are updated in place
JT_HOT
static void adam_loop(float *restrict w, const float *restrict g, float *restrict m,
                      float *restrict v, size_t n, float b1, float c1, float b2, float c2,
                      float decay, float step_size, float inv_bc2_sqrt, float eps) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + c1 * gi;
        float vi = b2 * v[i] + c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) * inv_bc2_sqrt + eps;
        w[i] = w[i] * decay - step_size * mi / denom;
    }
}

void jt_adam_step(float *w, const float *g, float *m, float *v, size_t n, const jt_adam_opts *o,
                  uint64_t t) {
    JT_CHECK(t >= 1, "Adam step count starts at 1, got %llu", (unsigned long long)t);
    double bc1 = 1.0 - pow(o->beta1, (double)t), bc2 = 1.0 - pow(o->beta2, (double)t);
    const float decay = (float)(1.0 - o->lr * o->weight_decay);
    const float step_size = (float)(o->lr / bc1);
    const float inv_bc2_sqrt = (float)(1.0 / sqrt(bc2));
    const float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    const float c1 = (float)(1.0 - o->beta1), c2 = (float)(1.0 - o->beta2);
    adam_loop(w, g, m, v, n, b1, c1, b2, c2, decay, step_size, inv_bc2_sqrt, eps);
}

// g: (n) -> sum of squares in JT_NORM_LANES partial sums, lane j over elements i = j mod lanes
JT_HOT
static double sum_squares(const float *restrict g, size_t n) {
    double acc[JT_NORM_LANES] = {0};
    size_t i = 0;
    for (; i + JT_NORM_LANES <= n; i += JT_NORM_LANES)
        for (size_t j = 0; j < JT_NORM_LANES; j++) acc[j] += (double)g[i + j] * (double)g[i + j];
    for (size_t j = 0; i < n; i++, j++) acc[j] += (double)g[i] * (double)g[i];
    double s = 0.0;
    for (size_t j = 0; j < JT_NORM_LANES; j++) s += acc[j];
    return s;
}

double jt_grad_norm(const float *g, size_t n) { return sqrt(sum_squares(g, n)); }

JT_HOT
static void scale(float *g, size_t n, float s) {
    for (size_t i = 0; i < n; i++) g[i] *= s;
}

double jt_clip_grad_norm(float *g, size_t n, double max_norm) {
    double norm = jt_grad_norm(g, n);
    if (max_norm > 0.0 && norm > max_norm) {
        scale(g, n, (float)(max_norm / norm));
    }
    return norm;
}
