/* layers/norm.c - layer normalisation over the last axis (torch.nn.LayerNorm(F), eps 1e-5):
 *
 *   y = (x - mean(x)) / sqrt(var(x) + eps) * gain + bias,   var biased (divides by F)
 *
 * Input (F) or (T, F) -> same shape; each of the n*T rows of F is normalised on its own.
 * Parameters: "<name>.gain" (F), init 1; "<name>.bias" (F), init 0.
 * Workspace: n*T*F floats (x_hat, saved for backward) + n*T (1 / sqrt(var + eps)).
 * Mean and variance are accumulated in double (in order: these sums stay scalar; the elementwise
 * loops are vectorised clones, JT_HOT). Backward (Ba et al. 2016, as PyTorch):
 *   dx_hat = dy * gain
 *   dx = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)) */
#include <math.h>
#include <string.h>

#include "kinds.h"
#include "prims.h"
#include "simd.h"

#define JT_LN_EPS 1e-5

static jt_status layernorm_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    if (l->in.ndim != 1 && l->in.ndim != 2) {
        char s[64];
        jt_shape_format(&l->in, s, sizeof s);
        return jt_layer_err(l, err, errlen,
                            "layernorm normalises the last axis of (F) or (T, F), got %s", s);
    }
    size_t F = l->in.d[l->in.ndim - 1];
    size_t rows = jt_size_mul(l->max_n, l->in.ndim == 2 ? l->in.d[0] : 1);
    if (F == 0 || rows == 0) return jt_layer_err(l, err, errlen, "empty input");
    l->out = l->in;
    jt_layer_add_param(l, p, "gain", 1, &F);
    jt_layer_add_param(l, p, "bias", 1, &F);
    l->ws_floats = jt_size_add(jt_size_mul(rows, F), rows);
    return JT_OK;
}

static void layernorm_init(jt_layer *l, jt_rng *rng) {
    (void)rng;
    size_t F = l->in.d[l->in.ndim - 1];
    for (size_t f = 0; f < F; f++) l->W[0][f] = 1.0f;
    memset(l->W[1], 0, F * sizeof(float));
}

static size_t ln_rows(const jt_layer *l, size_t n) {
    return n * (l->in.ndim == 2 ? l->in.d[0] : 1);
}

// x: (rows, F) -> y: (rows, F); ws: x_hat (rows, F), rstd (rows)
JT_HOT static void layernorm_forward(jt_layer *l, const float *x, float *y, size_t n,
                                     const jt_ctx *ctx) {
    (void)ctx;
    size_t F = l->in.d[l->in.ndim - 1], rows = ln_rows(l, n);
    float *xhat = l->ws, *rstd = l->ws + ln_rows(l, l->max_n) * F;
    const float *gain = l->W[0], *bias = l->W[1];
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * F;
        double mean = 0, var = 0;
        for (size_t f = 0; f < F; f++) mean += xr[f];
        mean /= (double)F;
        for (size_t f = 0; f < F; f++) var += (xr[f] - mean) * (xr[f] - mean);
        var /= (double)F;
        float rs = (float)(1.0 / sqrt(var + JT_LN_EPS));
        rstd[r] = rs;
        for (size_t f = 0; f < F; f++) {
            float h = (float)(xr[f] - mean) * rs;
            xhat[r * F + f] = h;
            y[r * F + f] = h * gain[f] + bias[f];
        }
    }
}

// dy: (rows, F) -> dgain, dbias (F) +=; dx: (rows, F)
JT_HOT static void layernorm_backward(jt_layer *l, const float *x, const float *y,
                                      const float *dy, float *dx, size_t n, const jt_ctx *ctx) {
    (void)x, (void)y, (void)ctx;
    size_t F = l->in.d[l->in.ndim - 1], rows = ln_rows(l, n);
    const float *xhat = l->ws, *rstd = l->ws + ln_rows(l, l->max_n) * F;
    const float *gain = l->W[0];
    float *dgain = l->dW[0];
    jt_colsum_add(l->dW[1], dy, F, rows, F);
    for (size_t r = 0; r < rows; r++) {
        const float *h = xhat + r * F, *d = dy + r * F;
        for (size_t f = 0; f < F; f++) dgain[f] += d[f] * h[f];
        if (!dx) continue;
        double s1 = 0, s2 = 0; /* sums of dx_hat and dx_hat * x_hat */
        for (size_t f = 0; f < F; f++) {
            float dh = d[f] * gain[f];
            s1 += dh;
            s2 += dh * h[f];
        }
        float m1 = (float)(s1 / (double)F), m2 = (float)(s2 / (double)F);
        for (size_t f = 0; f < F; f++)
            dx[r * F + f] = rstd[r] * (d[f] * gain[f] - m1 - h[f] * m2);
    }
}

const jt_layer_ops jt_layer_layernorm = {
    .kind = "layernorm",
    .keys = {NULL},
    .setup = layernorm_setup,
    .init = layernorm_init,
    .forward = layernorm_forward,
    .backward = layernorm_backward,
};
