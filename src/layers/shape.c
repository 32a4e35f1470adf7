/* layers/shape.c - flatten: any per-sample shape -> (prod of dims). Data are row-major, so this
 * is a copy (memmove, so the model may also run it in place). */
#include <string.h>

#include "kinds.h"

static jt_status flatten_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    (void)p, (void)err, (void)errlen;
    l->out.ndim = 1;
    l->out.d[0] = jt_shape_size(&l->in);
    l->ws_floats = 0;
    return JT_OK;
}

// x: (n, ...) -> y: (n, prod)
static void flatten_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    if (x != y) memmove(y, x, n * l->out.d[0] * sizeof(float));
}

static void flatten_backward(jt_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, size_t n, const jt_ctx *ctx) {
    (void)x, (void)y, (void)ctx;
    if (dx && dx != dy) memmove(dx, dy, n * l->out.d[0] * sizeof(float));
}

const jt_layer_ops jt_layer_flatten = {
    .kind = "flatten",
    .keys = {NULL},
    .setup = flatten_setup,
    .init = NULL,
    .forward = flatten_forward,
    .backward = flatten_backward,
};
