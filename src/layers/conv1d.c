/* layers/conv1d.c - 1-D convolution and pooling over the time axis of a (T, F) sequence.
 *
 * conv1d {filters, kernel, stride = 1, padding = valid}: (T, F) -> (T', filters), the
 *   cross-correlation of torch.nn.Conv1d applied to the transposed (F, T) input. padding valid:
 *   T' = (T - k) / s + 1; padding same (TensorFlow "SAME", as conv2d): T' = ceil(T / s), with
 *   pad_total = max((T' - 1) * s + k - T, 0) split pad_total / 2 before and the rest after.
 *   Parameters: "<name>.W" (filters, k, F) - time-major, so one window of the input is k*F
 *   contiguous floats (torch's weight (filters, F, k) transposed on its last two axes);
 *   "<name>.b" (filters). He-normal init (fan_in k*F), zero bias.
 *   im2col over the whole batch, then one sgemm: (n*T', k*F) x (k*F, filters).
 *   Workspace: 2 * n*T'*k*F floats (the columns, kept from forward for dW, and their gradient).
 * maxpool1d {size, stride = size}: (T, F) -> (T', F), T' = (T - size) / stride + 1, the max of
 *   each window per feature (torch.nn.MaxPool1d); backward routes to the first maximum,
 *   recomputed from x. No workspace.
 * avgpool1d {size, stride = size}: the same windows, averaged (torch.nn.AvgPool1d).
 * meanpool_time: (T, F) -> (F), the mean over all steps (a global average pool over time). */
#include <limits.h>
#include <string.h>

#include "kinds.h"
#include "prims.h"
#include "simd.h"

static jt_status need_seq(jt_layer *l, const char *what, char *err, size_t errlen) {
    if (l->in.ndim == 2 && l->in.d[0] > 0 && l->in.d[1] > 0) return JT_OK;
    char s[64];
    jt_shape_format(&l->in, s, sizeof s);
    return jt_layer_err(l, err, errlen, "%s needs a (T, F) input, got %s", what, s);
}

/* ---- conv1d ---- */

typedef struct {
    size_t T, F, K, S, OT, pad, nf, kf; /* pad: rows of zeros before the first step */
} c1_geom;

static c1_geom c1_geometry(const jt_layer *l) {
    c1_geom g;
    g.T = l->in.d[0];
    g.F = l->in.d[1];
    g.K = (size_t)l->opt.kernel;
    g.S = l->opt.stride > 0 ? (size_t)l->opt.stride : 1;
    g.nf = (size_t)l->opt.filters;
    g.kf = g.K * g.F;
    if (l->opt.padding_same) {
        g.OT = (g.T + g.S - 1) / g.S;
        size_t span = (g.OT - 1) * g.S + g.K;
        g.pad = span > g.T ? (span - g.T) / 2 : 0;
    } else {
        g.OT = g.T >= g.K ? (g.T - g.K) / g.S + 1 : 0;
        g.pad = 0;
    }
    return g;
}

static jt_status conv1d_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    if (l->opt.filters <= 0) return jt_layer_err(l, err, errlen, "setting 'filters' is required");
    if (l->opt.kernel <= 0) return jt_layer_err(l, err, errlen, "setting 'kernel' is required");
    jt_status st = need_seq(l, "conv1d", err, errlen);
    if (st != JT_OK) return st;
    c1_geom g = c1_geometry(l);
    if (g.OT == 0)
        return jt_layer_err(l, err, errlen, "kernel %zu is longer than the sequence (T = %zu)",
                            g.K, g.T);
    if (g.kf > INT_MAX || g.nf > INT_MAX || g.OT > INT_MAX / l->max_n ||
        g.kf > INT_MAX / (g.OT * l->max_n) || g.T * g.F > INT_MAX)
        return jt_layer_err(l, err, errlen, "input too large for im2col");
    l->out.ndim = 2;
    l->out.d[0] = g.OT;
    l->out.d[1] = g.nf;
    size_t wshape[3] = {g.nf, g.K, g.F};
    jt_layer_add_param(l, p, "W", 3, wshape);
    jt_layer_add_param(l, p, "b", 1, &g.nf);
    l->ws_floats = 2 * l->max_n * g.OT * g.kf;
    return JT_OK;
}

static void conv1d_init(jt_layer *l, jt_rng *rng) {
    c1_geom g = c1_geometry(l);
    jt_init_he_normal(l->W[0], g.nf * g.kf, g.kf, rng);
    memset(l->W[1], 0, g.nf * sizeof(float));
}

// x: (n, T, F) -> col: (n*T', K*F); row (i, t) is the window of steps t*S - pad .. + K
static void c1_im2col(const c1_geom *g, const float *x, float *col, size_t n) {
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < g->OT; t++) {
            float *row = col + (i * g->OT + t) * g->kf;
            for (size_t k = 0; k < g->K; k++) {
                size_t s = t * g->S + k; /* step in padded coordinates */
                float *dst = row + k * g->F;
                if (s < g->pad || s - g->pad >= g->T) memset(dst, 0, g->F * sizeof(float));
                else memcpy(dst, x + (i * g->T + s - g->pad) * g->F, g->F * sizeof(float));
            }
        }
}

// dcol: (n*T', K*F) -> dx: (n, T, F), overwritten (windows that overlap add up)
JT_HOT static void c1_col2im(const c1_geom *g, const float *dcol, float *dx, size_t n) {
    memset(dx, 0, n * g->T * g->F * sizeof(float));
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < g->OT; t++) {
            const float *row = dcol + (i * g->OT + t) * g->kf;
            for (size_t k = 0; k < g->K; k++) {
                size_t s = t * g->S + k;
                if (s < g->pad || s - g->pad >= g->T) continue;
                float *dst = dx + (i * g->T + s - g->pad) * g->F;
                for (size_t f = 0; f < g->F; f++) dst[f] += row[k * g->F + f];
            }
        }
}

// x: (n, T, F), W: (filters, K*F), b: (filters) -> y: (n*T', filters) = col W^T + b
static void conv1d_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    c1_geom g = c1_geometry(l);
    float *col = l->ws;
    size_t rows = n * g.OT;
    c1_im2col(&g, x, col, n);
    jt_rows_fill(y, g.nf, l->W[1], rows, g.nf);
    jt_gemm_abt(rows, g.nf, g.kf, 1.0f, col, g.kf, l->W[0], g.kf, 1.0f, y, g.nf);
}

// dy: (n*T', filters) -> dW += dy^T col; db += sum dy; dcol = dy W -> dx by col2im
static void conv1d_backward(jt_layer *l, const float *x, const float *y, const float *dy,
                            float *dx, size_t n, const jt_ctx *ctx) {
    (void)x, (void)y, (void)ctx;
    c1_geom g = c1_geometry(l);
    const float *col = l->ws; /* saved by forward */
    float *dcol = l->ws + l->max_n * g.OT * g.kf;
    size_t rows = n * g.OT;
    jt_gemm_atb(g.nf, g.kf, rows, 1.0f, dy, g.nf, col, g.kf, 1.0f, l->dW[0], g.kf);
    jt_colsum_add(l->dW[1], dy, g.nf, rows, g.nf);
    if (!dx) return;
    jt_gemm_ab(rows, g.kf, g.nf, 1.0f, dy, g.nf, l->W[0], g.kf, 0.0f, dcol, g.kf);
    c1_col2im(&g, dcol, dx, n);
}

const jt_layer_ops jt_layer_conv1d = {
    .kind = "conv1d",
    .keys = {"filters", "kernel", "stride", "padding", NULL},
    .setup = conv1d_setup,
    .init = conv1d_init,
    .forward = conv1d_forward,
    .backward = conv1d_backward,
};

/* ---- maxpool1d / avgpool1d ---- */

static size_t pool_size(const jt_layer *l) { return (size_t)l->opt.size; }
static size_t pool_stride(const jt_layer *l) {
    return l->opt.stride > 0 ? (size_t)l->opt.stride : (size_t)l->opt.size;
}

static jt_status pool1d_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    (void)p;
    if (l->opt.size <= 0) return jt_layer_err(l, err, errlen, "setting 'size' is required");
    jt_status st = need_seq(l, l->ops->kind, err, errlen);
    if (st != JT_OK) return st;
    size_t T = l->in.d[0], K = pool_size(l);
    if (K > T)
        return jt_layer_err(l, err, errlen, "size %zu is longer than the sequence (T = %zu)", K, T);
    l->out.ndim = 2;
    l->out.d[0] = (T - K) / pool_stride(l) + 1;
    l->out.d[1] = l->in.d[1];
    l->ws_floats = 0;
    return JT_OK;
}

// x: (n, T, F) -> y: (n, T', F), max over each window of K steps
static void maxpool1d_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    size_t T = l->in.d[0], F = l->in.d[1], OT = l->out.d[0], K = pool_size(l), S = pool_stride(l);
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < OT; t++) {
            float *dst = y + (i * OT + t) * F;
            const float *src = x + (i * T + t * S) * F;
            memcpy(dst, src, F * sizeof(float));
            for (size_t k = 1; k < K; k++)
                for (size_t f = 0; f < F; f++)
                    if (src[k * F + f] > dst[f]) dst[f] = src[k * F + f];
        }
}

static void maxpool1d_backward(jt_layer *l, const float *x, const float *y, const float *dy,
                               float *dx, size_t n, const jt_ctx *ctx) {
    (void)y, (void)ctx;
    if (!dx) return;
    size_t T = l->in.d[0], F = l->in.d[1], OT = l->out.d[0], K = pool_size(l), S = pool_stride(l);
    memset(dx, 0, n * T * F * sizeof(float));
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < OT; t++) {
            const float *src = x + (i * T + t * S) * F;
            for (size_t f = 0; f < F; f++) {
                size_t best = 0;
                for (size_t k = 1; k < K; k++)
                    if (src[k * F + f] > src[best * F + f]) best = k;
                dx[(i * T + t * S + best) * F + f] += dy[(i * OT + t) * F + f];
            }
        }
}

const jt_layer_ops jt_layer_maxpool1d = {
    .kind = "maxpool1d",
    .keys = {"size", "stride", NULL},
    .setup = pool1d_setup,
    .init = NULL,
    .forward = maxpool1d_forward,
    .backward = maxpool1d_backward,
};

// x: (n, T, F) -> y: (n, T', F), mean over each window of K steps
static void avgpool1d_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    size_t T = l->in.d[0], F = l->in.d[1], OT = l->out.d[0], K = pool_size(l), S = pool_stride(l);
    float inv = 1.0f / (float)K;
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < OT; t++) {
            float *dst = y + (i * OT + t) * F;
            const float *src = x + (i * T + t * S) * F;
            memset(dst, 0, F * sizeof(float));
            for (size_t k = 0; k < K; k++)
                for (size_t f = 0; f < F; f++) dst[f] += src[k * F + f];
            for (size_t f = 0; f < F; f++) dst[f] *= inv;
        }
}

static void avgpool1d_backward(jt_layer *l, const float *x, const float *y, const float *dy,
                               float *dx, size_t n, const jt_ctx *ctx) {
    (void)x, (void)y, (void)ctx;
    if (!dx) return;
    size_t T = l->in.d[0], F = l->in.d[1], OT = l->out.d[0], K = pool_size(l), S = pool_stride(l);
    float inv = 1.0f / (float)K;
    memset(dx, 0, n * T * F * sizeof(float));
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < OT; t++)
            for (size_t k = 0; k < K; k++)
                for (size_t f = 0; f < F; f++)
                    dx[(i * T + t * S + k) * F + f] += inv * dy[(i * OT + t) * F + f];
}

const jt_layer_ops jt_layer_avgpool1d = {
    .kind = "avgpool1d",
    .keys = {"size", "stride", NULL},
    .setup = pool1d_setup,
    .init = NULL,
    .forward = avgpool1d_forward,
    .backward = avgpool1d_backward,
};

/* ---- meanpool_time ---- */

static jt_status meanpool_time_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    (void)p;
    jt_status st = need_seq(l, "meanpool_time", err, errlen);
    if (st != JT_OK) return st;
    l->out.ndim = 1;
    l->out.d[0] = l->in.d[1];
    l->ws_floats = 0;
    return JT_OK;
}

// x: (n, T, F) -> y: (n, F) = mean over t
static void meanpool_time_forward(jt_layer *l, const float *x, float *y, size_t n,
                                  const jt_ctx *ctx) {
    (void)ctx;
    size_t T = l->in.d[0], F = l->in.d[1];
    float inv = 1.0f / (float)T;
    for (size_t i = 0; i < n; i++) {
        float *dst = y + i * F;
        memset(dst, 0, F * sizeof(float));
        for (size_t t = 0; t < T; t++)
            for (size_t f = 0; f < F; f++) dst[f] += x[(i * T + t) * F + f];
        for (size_t f = 0; f < F; f++) dst[f] *= inv;
    }
}

static void meanpool_time_backward(jt_layer *l, const float *x, const float *y, const float *dy,
                                   float *dx, size_t n, const jt_ctx *ctx) {
    (void)x, (void)y, (void)ctx;
    if (!dx) return;
    size_t T = l->in.d[0], F = l->in.d[1];
    float inv = 1.0f / (float)T;
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < T; t++)
            for (size_t f = 0; f < F; f++) dx[(i * T + t) * F + f] = inv * dy[i * F + f];
}

const jt_layer_ops jt_layer_meanpool_time = {
    .kind = "meanpool_time",
    .keys = {NULL},
    .setup = meanpool_time_setup,
    .init = NULL,
    .forward = meanpool_time_forward,
    .backward = meanpool_time_backward,
};
