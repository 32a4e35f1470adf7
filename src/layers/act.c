/* layers/act.c - elementwise layers: relu, tanh, sigmoid, and inverted dropout.
 *
 * The output shape is the input shape. relu/tanh/sigmoid have no workspace; their backward
 * uses the saved output y (relu' = [y > 0], tanh' = 1 - y^2, sigmoid' = y (1 - y)).
 * dropout (torch.nn.Dropout semantics): at training time each element is kept with
 * probability 1 - rate and scaled by 1 / (1 - rate); at evaluation it is the identity. The
 * mask of row i comes from jt_rng_seed(seed, JT_RNG_DROPOUT, step, rows[i], layer_index), so it
 * depends on the global sample, never on rank or position in the batch. Workspace: the mask,
 * max_n * size floats (0 or 1 / (1 - rate)), written by forward and read by backward. */
#include <math.h>
#include <string.h>

#include "jtrain/mathx.h"
#include "kinds.h"
#include "simd.h"

static jt_status act_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    (void)p, (void)err, (void)errlen;
    l->out = l->in;
    l->ws_floats = 0;
    return JT_OK;
}

// x, y: (m); y may be x
JT_HOT static void relu_loop(const float *x, float *y, size_t m) {
    for (size_t i = 0; i < m; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// y, dy, dx: (m); dx may be dy
JT_HOT static void relu_backward_loop(const float *y, const float *dy, float *dx, size_t m) {
    for (size_t i = 0; i < m; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// x, y: (n, size)
static void relu_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    relu_loop(x, y, n * jt_shape_size(&l->in));
}

static void relu_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                          size_t n, const jt_ctx *ctx) {
    (void)x, (void)ctx;
    if (!dx) return;
    relu_backward_loop(y, dy, dx, n * jt_shape_size(&l->in));
}

static void tanh_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    size_t m = n * jt_shape_size(&l->in);
    for (size_t i = 0; i < m; i++) y[i] = jt_tanhf(x[i]);
}

static void tanh_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                          size_t n, const jt_ctx *ctx) {
    (void)x, (void)ctx;
    if (!dx) return;
    size_t m = n * jt_shape_size(&l->in);
    for (size_t i = 0; i < m; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

static void sigmoid_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    size_t m = n * jt_shape_size(&l->in);
    for (size_t i = 0; i < m; i++) y[i] = jt_sigmoidf(x[i]);
}

static void sigmoid_backward(jt_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, size_t n, const jt_ctx *ctx) {
    (void)x, (void)ctx;
    if (!dx) return;
    size_t m = n * jt_shape_size(&l->in);
    for (size_t i = 0; i < m; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

static jt_status dropout_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    (void)p;
    if (!(l->opt.rate >= 0.0 && l->opt.rate < 1.0))
        return jt_layer_err(l, err, errlen, "setting 'rate' must be in [0, 1), got %g", l->opt.rate);
    l->out = l->in;
    l->ws_floats = jt_size_mul(l->max_n, jt_shape_size(&l->in));
    return JT_OK;
}

static int dropout_active(const jt_layer *l, const jt_ctx *ctx) {
    return ctx && ctx->train && l->opt.rate > 0.0;
}

// x, y, mask (ws): (n, size)
static void dropout_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    size_t m = jt_shape_size(&l->in);
    if (!dropout_active(l, ctx)) {
        if (x != y) memmove(y, x, n * m * sizeof(float));
        return;
    }
    JT_CHECK(n <= l->max_n, "layer %s: batch %zu > max_n %zu", l->name, n, l->max_n);
    JT_CHECK(ctx->rows != NULL, "layer %s: dropout at training time needs ctx->rows", l->name);
    float rate = (float)l->opt.rate, keep_scale = (float)(1.0 / (1.0 - l->opt.rate));
    for (size_t i = 0; i < n; i++) {
        jt_rng r;
        jt_rng_seed(&r, ctx->seed, JT_RNG_DROPOUT, ctx->step, ctx->rows[i], ctx->layer_index);
        float *mask = l->ws + i * m;
        for (size_t j = 0; j < m; j++) {
            mask[j] = jt_rng_uniform(&r) >= rate ? keep_scale : 0.0f;
            y[i * m + j] = x[i * m + j] * mask[j];
        }
    }
}

static void dropout_backward(jt_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, size_t n, const jt_ctx *ctx) {
    (void)x, (void)y;
    if (!dx) return;
    size_t m = n * jt_shape_size(&l->in);
    if (!dropout_active(l, ctx)) {
        if (dx != dy) memmove(dx, dy, m * sizeof(float));
        return;
    }
    for (size_t i = 0; i < m; i++) dx[i] = dy[i] * l->ws[i];
}

const jt_layer_ops jt_layer_relu = {
    .kind = "relu", .keys = {NULL}, .setup = act_setup, .init = NULL,
    .forward = relu_forward, .backward = relu_backward,
};
const jt_layer_ops jt_layer_tanh = {
    .kind = "tanh", .keys = {NULL}, .setup = act_setup, .init = NULL,
    .forward = tanh_forward, .backward = tanh_backward,
};
const jt_layer_ops jt_layer_sigmoid = {
    .kind = "sigmoid", .keys = {NULL}, .setup = act_setup, .init = NULL,
    .forward = sigmoid_forward, .backward = sigmoid_backward,
};
const jt_layer_ops jt_layer_dropout = {
    .kind = "dropout", .keys = {"rate", NULL}, .setup = dropout_setup, .init = NULL,
    .forward = dropout_forward, .backward = dropout_backward,
};
