/* layers/pool.c - 2-D max pooling (torch.nn.MaxPool2d without padding).
 *
 * Input (C, H, W), or (H, W) with output (OH, OW); window `size` (default 2), stride (default
 * size), valid windows only: OH = (H - size) / stride + 1. Ties go to the first maximum in
 * row-major window order.
 * Workspace: max_n * out_size floats' worth of int32_t, the flat input index (within its
 * sample) of each output's maximum, written by forward and read by backward. The storage comes
 * from the model's float allocation; it is only ever accessed as int32_t here (a store through
 * int32_t gives the allocated storage that type, C11 6.5p6). */
#include <limits.h>
#include <string.h>

#include "kinds.h"

typedef struct {
    size_t C, H, W, P, S, OH, OW;
} pool_geom;

static pool_geom pool_geometry(const jt_layer *l) {
    pool_geom g;
    int two = l->in.ndim == 2;
    g.C = two ? 1 : l->in.d[0];
    g.H = l->in.d[two ? 0 : 1];
    g.W = l->in.d[two ? 1 : 2];
    g.P = l->opt.size > 0 ? (size_t)l->opt.size : 2;
    g.S = l->opt.stride > 0 ? (size_t)l->opt.stride : g.P;
    g.OH = g.H >= g.P ? (g.H - g.P) / g.S + 1 : 0;
    g.OW = g.W >= g.P ? (g.W - g.P) / g.S + 1 : 0;
    return g;
}

static jt_status pool_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    (void)p;
    if (l->in.ndim != 2 && l->in.ndim != 3) {
        char s[64];
        jt_shape_format(&l->in, s, sizeof s);
        return jt_layer_err(l, err, errlen, "input %s: maxpool2d takes (C, H, W) or (H, W)", s);
    }
    pool_geom g = pool_geometry(l);
    if (g.OH == 0 || g.OW == 0)
        return jt_layer_err(l, err, errlen, "window %zu is larger than the input (%zu, %zu)", g.P,
                            g.H, g.W);
    if (g.C * g.H * g.W > INT32_MAX)
        return jt_layer_err(l, err, errlen, "input too large for int32 argmax indices");
    l->out = l->in;
    l->out.d[l->in.ndim - 2] = g.OH;
    l->out.d[l->in.ndim - 1] = g.OW;
    l->ws_floats = l->max_n * g.C * g.OH * g.OW;
    return JT_OK;
}

// x: (n, C, H, W) -> y: (n, C, OH, OW), argmax (in ws): (n, C, OH, OW) flat indices into x_i
static void pool_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    JT_CHECK(n <= l->max_n, "layer %s: batch %zu > max_n %zu", l->name, n, l->max_n);
    pool_geom g = pool_geometry(l);
    size_t in_sz = g.C * g.H * g.W, out_sz = g.C * g.OH * g.OW;
    int32_t *arg = (int32_t *)(void *)l->ws;
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * in_sz;
        size_t o = i * out_sz;
        for (size_t c = 0; c < g.C; c++)
            for (size_t oh = 0; oh < g.OH; oh++)
                for (size_t ow = 0; ow < g.OW; ow++, o++) {
                    size_t best = (c * g.H + oh * g.S) * g.W + ow * g.S;
                    for (size_t a = 0; a < g.P; a++)
                        for (size_t b = 0; b < g.P; b++) {
                            size_t k = (c * g.H + oh * g.S + a) * g.W + ow * g.S + b;
                            if (xi[k] > xi[best]) best = k;
                        }
                    y[o] = xi[best];
                    arg[o] = (int32_t)best;
                }
    }
}

// dy: (n, C, OH, OW) -> dx: (n, C, H, W), each dy routed to its window's maximum
static void pool_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                          size_t n, const jt_ctx *ctx) {
    (void)x, (void)y, (void)ctx;
    if (!dx) return;
    pool_geom g = pool_geometry(l);
    size_t in_sz = g.C * g.H * g.W, out_sz = g.C * g.OH * g.OW;
    const int32_t *arg = (const int32_t *)(const void *)l->ws;
    memset(dx, 0, n * in_sz * sizeof(float));
    for (size_t i = 0; i < n; i++)
        for (size_t o = 0; o < out_sz; o++) dx[i * in_sz + (size_t)arg[i * out_sz + o]] += dy[i * out_sz + o];
}

const jt_layer_ops jt_layer_maxpool2d = {
    .kind = "maxpool2d",
    .keys = {"size", "stride", NULL},
    .setup = pool_setup,
    .init = NULL,
    .forward = pool_forward,
    .backward = pool_backward,
};
