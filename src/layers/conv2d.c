/* layers/conv2d.c - 2-D convolution (cross-correlation, as torch.nn.Conv2d) by im2col + sgemm.
 *
 * Input (C, H, W), or (H, W) read as C = 1; output (filters, OH, OW). Square kernel k, stride s.
 * padding valid: OH = (H - k) / s + 1. padding same (TensorFlow "SAME"): OH = ceil(H / s), with
 * pad_total = max((OH - 1) * s + k - H, 0) split pad_total / 2 before and the rest after.
 * Parameters: "<name>.W" (filters, C, k, k), "<name>.b" (filters).
 * Workspace: 2 * C*k*k * OH*OW floats, one im2col matrix and its gradient, reused for every
 * sample (forward and backward rebuild the columns from x, so nothing persists between them). */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "kinds.h"

typedef struct {
    size_t C, H, W, F, K, S, OH, OW, pt, pl;
} conv_geom;

static conv_geom conv_geometry(const jt_layer *l) {
    conv_geom g;
    int two = l->in.ndim == 2;
    g.C = two ? 1 : l->in.d[0];
    g.H = l->in.d[two ? 0 : 1];
    g.W = l->in.d[two ? 1 : 2];
    g.F = (size_t)l->opt.filters;
    g.K = (size_t)l->opt.kernel;
    g.S = l->opt.stride > 0 ? (size_t)l->opt.stride : 1;
    if (l->opt.padding_same) {
        g.OH = (g.H + g.S - 1) / g.S;
        g.OW = (g.W + g.S - 1) / g.S;
        size_t ph = (g.OH - 1) * g.S + g.K, pw = (g.OW - 1) * g.S + g.K;
        g.pt = ph > g.H ? (ph - g.H) / 2 : 0;
        g.pl = pw > g.W ? (pw - g.W) / 2 : 0;
    } else {
        g.OH = g.H >= g.K ? (g.H - g.K) / g.S + 1 : 0;
        g.OW = g.W >= g.K ? (g.W - g.K) / g.S + 1 : 0;
        g.pt = g.pl = 0;
    }
    return g;
}

static jt_status conv_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    if (l->opt.filters <= 0) return jt_layer_err(l, err, errlen, "setting 'filters' is required");
    if (l->opt.kernel <= 0) return jt_layer_err(l, err, errlen, "setting 'kernel' is required");
    if (l->in.ndim != 2 && l->in.ndim != 3) {
        char s[64];
        jt_shape_format(&l->in, s, sizeof s);
        return jt_layer_err(l, err, errlen, "input %s: conv2d takes (C, H, W) or (H, W)", s);
    }
    conv_geom g = conv_geometry(l);
    if (g.OH == 0 || g.OW == 0)
        return jt_layer_err(l, err, errlen, "kernel %zu is larger than the input (%zu, %zu)", g.K,
                            g.H, g.W);
    size_t ckk = g.C * g.K * g.K, ohw = g.OH * g.OW;
    if (ckk > INT_MAX / ohw || g.C * g.H * g.W > INT_MAX)
        return jt_layer_err(l, err, errlen, "input too large for im2col");
    l->out.ndim = 3;
    l->out.d[0] = g.F;
    l->out.d[1] = g.OH;
    l->out.d[2] = g.OW;
    size_t wshape[4] = {g.F, g.C, g.K, g.K};
    jt_layer_add_param(l, p, "W", 4, wshape);
    jt_layer_add_param(l, p, "b", 1, &g.F);
    l->ws_floats = 2 * ckk * ohw;
    return JT_OK;
}

static void conv_init(jt_layer *l, jt_rng *rng) {
    conv_geom g = conv_geometry(l);
    jt_init_he_normal(l->W[0], g.F * g.C * g.K * g.K, g.C * g.K * g.K, rng);
    memset(l->W[1], 0, g.F * sizeof(float));
}

// x: (C, H, W) -> col: (C*K*K, OH*OW), zeros where the window hangs over the padding
static void im2col(const conv_geom *g, const float *x, float *col) {
    size_t ohw = g->OH * g->OW;
    for (size_t c = 0; c < g->C; c++)
        for (size_t ki = 0; ki < g->K; ki++)
            for (size_t kj = 0; kj < g->K; kj++) {
                float *row = col + ((c * g->K + ki) * g->K + kj) * ohw;
                for (size_t oh = 0; oh < g->OH; oh++) {
                    long ih = (long)(oh * g->S + ki) - (long)g->pt;
                    float *dst = row + oh * g->OW;
                    if (ih < 0 || ih >= (long)g->H) {
                        memset(dst, 0, g->OW * sizeof(float));
                        continue;
                    }
                    const float *src = x + (c * g->H + (size_t)ih) * g->W;
                    for (size_t ow = 0; ow < g->OW; ow++) {
                        long iw = (long)(ow * g->S + kj) - (long)g->pl;
                        dst[ow] = (iw >= 0 && iw < (long)g->W) ? src[iw] : 0.0f;
                    }
                }
            }
}

// col: (C*K*K, OH*OW) -> dx: (C, H, W), summing overlapping windows; dx is overwritten
static void col2im(const conv_geom *g, const float *col, float *dx) {
    size_t ohw = g->OH * g->OW;
    memset(dx, 0, g->C * g->H * g->W * sizeof(float));
    for (size_t c = 0; c < g->C; c++)
        for (size_t ki = 0; ki < g->K; ki++)
            for (size_t kj = 0; kj < g->K; kj++) {
                const float *row = col + ((c * g->K + ki) * g->K + kj) * ohw;
                for (size_t oh = 0; oh < g->OH; oh++) {
                    long ih = (long)(oh * g->S + ki) - (long)g->pt;
                    if (ih < 0 || ih >= (long)g->H) continue;
                    float *dst = dx + (c * g->H + (size_t)ih) * g->W;
                    const float *src = row + oh * g->OW;
                    for (size_t ow = 0; ow < g->OW; ow++) {
                        long iw = (long)(ow * g->S + kj) - (long)g->pl;
                        if (iw >= 0 && iw < (long)g->W) dst[iw] += src[ow];
                    }
                }
            }
}

// x: (n, C, H, W), W: (F, C*K*K), b: (F) -> y: (n, F, OH, OW); per sample y = W col + b
static void conv_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    conv_geom g = conv_geometry(l);
    size_t ckk = g.C * g.K * g.K, ohw = g.OH * g.OW, in_sz = g.C * g.H * g.W;
    float *col = l->ws;
    for (size_t i = 0; i < n; i++) {
        float *yi = y + i * g.F * ohw;
        im2col(&g, x + i * in_sz, col);
        for (size_t f = 0; f < g.F; f++)
            for (size_t j = 0; j < ohw; j++) yi[f * ohw + j] = l->W[1][f];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g.F, (int)ohw, (int)ckk, 1.0f,
                    l->W[0], (int)ckk, col, (int)ohw, 1.0f, yi, (int)ohw);
    }
}

// dy: (n, F, OH, OW) -> dW += dy_i col_i^T; db += sum dy_i; dcol = W^T dy_i; dx_i = col2im(dcol)
static void conv_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                          size_t n, const jt_ctx *ctx) {
    (void)y, (void)ctx;
    conv_geom g = conv_geometry(l);
    size_t ckk = g.C * g.K * g.K, ohw = g.OH * g.OW, in_sz = g.C * g.H * g.W;
    float *col = l->ws, *dcol = l->ws + ckk * ohw;
    for (size_t i = 0; i < n; i++) {
        const float *dyi = dy + i * g.F * ohw;
        im2col(&g, x + i * in_sz, col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g.F, (int)ckk, (int)ohw, 1.0f,
                    dyi, (int)ohw, col, (int)ohw, 1.0f, l->dW[0], (int)ckk);
        for (size_t f = 0; f < g.F; f++) {
            float s = 0.0f;
            for (size_t j = 0; j < ohw; j++) s += dyi[f * ohw + j];
            l->dW[1][f] += s;
        }
        if (dx) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)ckk, (int)ohw, (int)g.F, 1.0f,
                        l->W[0], (int)ckk, dyi, (int)ohw, 0.0f, dcol, (int)ohw);
            col2im(&g, dcol, dx + i * in_sz);
        }
    }
}

const jt_layer_ops jt_layer_conv2d = {
    .kind = "conv2d",
    .keys = {"filters", "kernel", "stride", "padding", NULL},
    .setup = conv_setup,
    .init = conv_init,
    .forward = conv_forward,
    .backward = conv_backward,
};
