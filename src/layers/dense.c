/* layers/dense.c - fully connected layer, y = x W^T + b (torch.nn.Linear).
 *
 * Parameters: "<name>.W" (units, F), row-major like torch.nn.Linear.weight; "<name>.b" (units).
 * Input (F) -> output (units); input (T, F) -> output (T, units), the same W applied at every
 * time step (the batch and time dimensions are folded into n*T rows). Every product is one
 * sgemm over all rows (prims.h). No workspace. */
#include <limits.h>
#include <string.h>

#include "kinds.h"
#include "prims.h"

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
    jt_rows_fill(y, U, l->W[1], rows, U);
    jt_gemm_abt(rows, U, F, 1.0f, x, F, l->W[0], F, 1.0f, y, U);
}

// dy: (rows, units) -> dW (units, F) += dy^T x; db += sum_rows dy; dx (rows, F) = dy W
static void dense_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                           size_t n, const jt_ctx *ctx) {
    (void)y, (void)ctx;
    size_t rows = dense_rows(l, n), U = (size_t)l->opt.units, F = l->in.d[l->in.ndim - 1];
    jt_gemm_atb(U, F, rows, 1.0f, dy, U, x, F, 1.0f, l->dW[0], F);
    jt_colsum_add(l->dW[1], dy, U, rows, U);
    if (dx) jt_gemm_ab(rows, F, U, 1.0f, dy, U, l->W[0], F, 0.0f, dx, F);
}

const jt_layer_ops jt_layer_dense = {
    .kind = "dense",
    .keys = {"units", NULL},
    .setup = dense_setup,
    .init = dense_init,
    .forward = dense_forward,
    .backward = dense_backward,
};
