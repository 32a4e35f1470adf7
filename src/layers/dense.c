/* layers/dense.c - fully connected layer, y = x W^T + b (torch.nn.Linear).
 *
 * Parameters: "<name>.W" (units, F), row-major like torch.nn.Linear.weight; "<name>.b" (units).
 * Input (F) -> output (units); input (T, F) -> output (T, units), the same W applied at every
 * time step (the batch and time dimensions are folded into n*T rows). Every product is one
 * cblas_sgemm over all rows. No workspace. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "kinds.h"

static jt_status dense_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    if (l->opt.units <= 0) return jt_layer_err(l, err, errlen, "setting 'units' is required");
    if (l->in.ndim != 1 && l->in.ndim != 2) {
        char s[64];
        jt_shape_format(&l->in, s, sizeof s);
        return jt_layer_err(l, err, errlen,
                            "input %s: dense takes (F) or (T, F); add flatten before it", s);
    }
    size_t units = (size_t)l->opt.units, F = l->in.d[l->in.ndim - 1];
    size_t T = l->in.ndim == 2 ? l->in.d[0] : 1;
    if (F == 0 || F > INT_MAX || T > INT_MAX / l->max_n)
        return jt_layer_err(l, err, errlen, "input too large for one sgemm (%zu rows of %zu)",
                            T * l->max_n, F);
    l->out = l->in;
    l->out.d[l->out.ndim - 1] = units;
    size_t wshape[2] = {units, F};
    jt_layer_add_param(l, p, "W", 2, wshape);
    jt_layer_add_param(l, p, "b", 1, &wshape[0]);
    l->ws_floats = 0;
    return JT_OK;
}

static void dense_init(jt_layer *l, jt_rng *rng) {
    size_t units = (size_t)l->opt.units, F = l->in.d[l->in.ndim - 1];
    jt_init_he_normal(l->W[0], units * F, F, rng);
    memset(l->W[1], 0, units * sizeof(float));
}

/* Rows: n samples times T steps (T = 1 for vector input). */
static size_t dense_rows(const jt_layer *l, size_t n) {
    return l->in.ndim == 2 ? n * l->in.d[0] : n;
}

// x: (rows, F), W: (units, F), b: (units) -> y: (rows, units)
static void dense_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    size_t rows = dense_rows(l, n), U = (size_t)l->opt.units, F = l->in.d[l->in.ndim - 1];
    const float *b = l->W[1];
    for (size_t r = 0; r < rows; r++) memcpy(y + r * U, b, U * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)U, (int)F, 1.0f, x,
                (int)F, l->W[0], (int)F, 1.0f, y, (int)U);
}

// dy: (rows, units) -> dW (units, F) += dy^T x; db += sum_rows dy; dx (rows, F) = dy W
static void dense_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                           size_t n, const jt_ctx *ctx) {
    (void)y, (void)ctx;
    size_t rows = dense_rows(l, n), U = (size_t)l->opt.units, F = l->in.d[l->in.ndim - 1];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)U, (int)F, (int)rows, 1.0f, dy,
                (int)U, x, (int)F, 1.0f, l->dW[0], (int)F);
    float *db = l->dW[1];
    for (size_t r = 0; r < rows; r++)
        for (size_t u = 0; u < U; u++) db[u] += dy[r * U + u];
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)F, (int)U, 1.0f, dy,
                    (int)U, l->W[0], (int)F, 0.0f, dx, (int)F);
}

const jt_layer_ops jt_layer_dense = {
    .kind = "dense",
    .keys = {"units", NULL},
    .setup = dense_setup,
    .init = dense_init,
    .forward = dense_forward,
    .backward = dense_backward,
};
