/* layers/pool.c - 2-D max pooling (torch.nn.MaxPool2d without padding).
 *
 * Input (C, H, W), or (H, W) with output (OH, OW); window `size` (default 2), stride (default
 * size), valid windows only: OH = (H - size) / stride + 1. Ties go to the first maximum in
 * row-major window order. The common 2x2 window with stride 2 runs as plane loops the compiler
 * vectorises (JT_HOT), whose backward writes every dx element once instead of zeroing dx and
 * scattering into it; other windows take the general loops.
 * Workspace: max_n * out_size floats' worth of int32_t, the flat input index (within its
 * sample) of each output's maximum, written by forward and read by backward. The storage comes
 * from the model's float allocation; it is only ever accessed as int32_t here (a store through
 * int32_t gives the allocated storage that type, C11 6.5p6). */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "kinds.h"
#include "prims.h"
#include "simd.h"

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
    l->ws_floats = jt_size_mul(l->max_n, g.C * g.OH * g.OW); /* C*H*W <= INT32_MAX */
    return JT_OK;
}

// one 2x2 window, stride 2 plane: x: (H, W) -> y, arg: (OH, OW); arg = base + the flat index of
// the window's first maximum (base: the plane's offset in its sample)
JT_HOT static void pool2_plane(const float *restrict x, size_t W, size_t OH, size_t OW,
                               int32_t base, float *restrict y, int32_t *restrict arg) {
    for (size_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        int32_t rbase = base + (int32_t)(2 * oh * W);
        for (size_t ow = 0; ow < OW; ow++) {
            float v0 = r0[2 * ow], v1 = r0[2 * ow + 1], v2 = r1[2 * ow], v3 = r1[2 * ow + 1];
            float m = v0;
            uint32_t k = 0, c;
            c = v1 > m, m = v1 > m ? v1 : m, k = jt_pick_u32(c, 1, k);
            c = v2 > m, m = v2 > m ? v2 : m, k = jt_pick_u32(c, (uint32_t)W, k);
            c = v3 > m, m = v3 > m ? v3 : m, k = jt_pick_u32(c, (uint32_t)W + 1, k);
            y[oh * OW + ow] = m;
            arg[oh * OW + ow] = rbase + (int32_t)(2 * ow + k);
        }
    }
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
        if (g.P == 2 && g.S == 2) {
            for (size_t c = 0; c < g.C; c++, o += g.OH * g.OW)
                pool2_plane(xi + c * g.H * g.W, g.W, g.OH, g.OW, (int32_t)(c * g.H * g.W), y + o,
                            arg + o);
            continue;
        }
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

// 2x2 windows, stride 2: dy, arg: (OH, OW) -> dx: (H, W) plane overwritten, dy at each window's
// argmax, zero elsewhere (also in a last row or column no window covers)
JT_HOT static void pool2_plane_backward(const float *restrict dy, const int32_t *restrict arg,
                                        int32_t base, size_t H, size_t W, size_t OH, size_t OW,
                                        float *restrict dx) {
    for (size_t oh = 0; oh < OH; oh++) {
        float *r0 = dx + 2 * oh * W, *r1 = r0 + W;
        int32_t rbase = base + (int32_t)(2 * oh * W);
        for (size_t ow = 0; ow < OW; ow++) {
            int32_t k = arg[oh * OW + ow] - rbase - (int32_t)(2 * ow);
            float d = dy[oh * OW + ow];
            r0[2 * ow] = jt_keep_if(d, k == 0);
            r0[2 * ow + 1] = jt_keep_if(d, k == 1);
            r1[2 * ow] = jt_keep_if(d, k == (int32_t)W);
            r1[2 * ow + 1] = jt_keep_if(d, k == (int32_t)W + 1);
        }
        for (size_t w = 2 * OW; w < W; w++) r0[w] = r1[w] = 0.0f;
    }
    for (size_t h = 2 * OH; h < H; h++)
        for (size_t w = 0; w < W; w++) dx[h * W + w] = 0.0f;
}

// dy: (n, C, OH, OW) -> dx: (n, C, H, W), each dy routed to its window's maximum (summed where
// windows overlap)
static void pool_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                          size_t n, const jt_ctx *ctx) {
    (void)x, (void)y, (void)ctx;
    if (!dx) return;
    pool_geom g = pool_geometry(l);
    size_t in_sz = g.C * g.H * g.W, out_sz = g.C * g.OH * g.OW, plane = g.OH * g.OW;
    const int32_t *arg = (const int32_t *)(const void *)l->ws;
    if (g.P == 2 && g.S == 2) {
        for (size_t i = 0; i < n; i++)
            for (size_t c = 0; c < g.C; c++) {
                size_t o = i * out_sz + c * plane;
                pool2_plane_backward(dy + o, arg + o, (int32_t)(c * g.H * g.W), g.H, g.W, g.OH,
                                     g.OW, dx + i * in_sz + c * g.H * g.W);
            }
        return;
    }
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
