/* layers/conv2d.c - 2-D convolution (cross-correlation, as torch.nn.Conv2d), and the fused
 * conv2d -> relu [-> maxpool2d] groups of conv2d.h.
 *
 * Input (C, H, W), or (H, W) read as C = 1; output (F, OH, OW), F = filters. Square kernel K,
 * stride S. padding valid: OH = (H - K) / S + 1. padding same (TensorFlow "SAME"): OH =
 * ceil(H / S), with pad_total = max((OH - 1) * S + K - H, 0) split pad_total / 2 before and the
 * rest after. Parameters: "<name>.W" (F, C, K, K), "<name>.b" (F).
 *
 * Each output is (sum over c, ki, kj of W x) + b: the product first, then the bias, added in an
 * epilogue that moves the product into y's (n, F, OH, OW) layout and, fused, applies relu
 * (torch.relu) and the max-pool (torch.nn.MaxPool2d, stride = window, ties to the first
 * maximum in window order). Two lowerings, picked from the geometry and max_n alone, so every
 * rank picks the same and results do not depend on n's split into blocks:
 *   - direct (K = 3, S = 1, C = 1, where im2col's sgemms have K = 9 and run slowly; measured on
 *     28x28 maps, 32 filters: 10-15% faster than blocks of im2col, 5-30% slower from C = 2 on):
 *     per sample, the input plane padded to (Hp, Wp) = (OH + 2, OW + 2) is read flat; output
 *     p = oh * Wp + ow is sum_k w_k xp[p + ki * Wp + kj], one loop of nine shifted vectors per
 *     filter. Positions with ow >= OW are junk: computed, never read, and given a zero
 *     gradient. Weight and bias gradients are sums in LANES fixed lanes (p mod LANES) over
 *     the whole batch, added up in lane order at the end.
 *   - im2col over blocks of B samples: col (C*K*K, B*OH*OW) holds a block's patches, one sgemm
 *     t (F, B*OH*OW) = W col per block; backward dW += dt col^T, db += row sums of dt,
 *     dcol = W^T dt and col2im. B keeps a block's buffers within BLOCK_FLOATS. When the columns
 *     of all max_n samples fit KEEP_FLOATS, forward keeps them for backward.
 * The fused 2x2 pool over product rows of even length runs as one flat loop per plane (see
 * epi_bias_relu_pool2_flat): pooled rows are short, and loops over them run scalar.
 *
 * Workspace (floats; offsets in conv_plan):
 *   direct:  xp (Hp, Wp) padded input and dxp (Hp, Wp) its gradient (only with padding),
 *            t (OH, Wp) one filter's product or gradient plane, acc (F, 9 + 1, LANES) lanes;
 *   im2col:  col (C*K*K, B*OH*OW), or the columns of all max_n samples block after block when
 *            kept; t (F, B*OH*OW) the product or its gradient; dcol (C*K*K, B*OH*OW) when the
 *            columns are kept (else dcol reuses col);
 *   fused pool: arg (n, F, PH, PW) bytes, each window's argmax a * P + b, from forward to
 *            backward (the storage comes from the float allocation and is only ever accessed
 *            as unsigned char, which may alias anything); for the flat 2x2 loops a scratch of
 *            PH * (rs + PW) floats and as many bytes (rs: the product plane's row stride). */
#include <cblas.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "conv2d.h"
#include "kinds.h"
#include "prims.h"
#include "simd.h"

#define LANES 16
#define BLOCK_FLOATS ((size_t)1 << 18)
#define KEEP_FLOATS ((size_t)1 << 22)

typedef struct {
    size_t C, H, W, F, K, S, OH, OW, pt, pl;
} conv_geom;

typedef struct {
    conv_geom g;
    int direct, keep, relu, pad;
    size_t P, PH, PW;          /* fused max-pool window and its output plane (P = 0: none) */
    int flat2;                 /* P = 2 with even product rows: the flat pool loops below */
    float *ps;                 /* flat2: the pool scratch in the workspace (set per call) */
    size_t B;                  /* im2col: samples per block */
    size_t Hp, Wp, np;         /* direct: padded plane, positions computed per plane */
    size_t o_xp, o_dxp, o_t, o_acc, o_col, o_dcol, o_arg, o_ps, total; /* ws offsets, floats */
} conv_plan;

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

static conv_plan conv_plan_of(const jt_layer *l) {
    conv_plan pl;
    memset(&pl, 0, sizeof pl);
    pl.g = conv_geometry(l);
    const conv_geom *g = &pl.g;
    size_t n = l->max_n ? l->max_n : 1, ckk = g->C * g->K * g->K, ohw = g->OH * g->OW, off = 0;
    pl.relu = l->opt.fused_relu;
    pl.P = pl.relu ? (size_t)l->opt.fused_pool : 0;
    if (pl.P) {
        pl.PH = (g->OH - pl.P) / pl.P + 1;
        pl.PW = (g->OW - pl.P) / pl.P + 1;
    }
    pl.direct = g->K == 3 && g->S == 1 && g->C == 1;
    if (pl.direct) {
        pl.Hp = g->OH + 2;
        pl.Wp = g->OW + 2;
        pl.pad = pl.Hp != g->H || pl.Wp != g->W;
        pl.np = (g->OH - 1) * pl.Wp + g->OW;
        pl.o_xp = off;
        off += pl.pad ? pl.Hp * pl.Wp : 0;
        pl.o_dxp = off;
        off += pl.pad ? pl.Hp * pl.Wp : 0;
        pl.o_t = off;
        off += g->OH * pl.Wp;
        pl.o_acc = off;
        off += g->F * 10 * LANES;
    } else {
        pl.keep = n <= KEEP_FLOATS / (ckk * ohw); /* ckk * ohw <= INT_MAX (setup) */
        size_t per = (ckk * (pl.keep ? 2 : 1) + g->F) * ohw;
        pl.B = BLOCK_FLOATS / per;
        pl.B = pl.B < 1 ? 1 : pl.B > n ? n : pl.B;
        pl.o_col = off;
        off += ckk * ohw * (pl.keep ? n : pl.B);
        pl.o_t = off;
        off += g->F * ohw * pl.B;
        pl.o_dcol = pl.keep ? off : pl.o_col;
        off += pl.keep ? ckk * ohw * pl.B : 0;
    }
    pl.o_arg = off;
    size_t arg_bytes = pl.P ? jt_size_mul(n, g->F * pl.PH * pl.PW) : 0; /* saturates */
    off = jt_size_add(off, arg_bytes / sizeof(float) + (arg_bytes % sizeof(float) != 0));
    size_t rs = pl.direct ? pl.Wp : g->OW; /* row stride of a product plane */
    pl.flat2 = pl.P == 2 && rs % 2 == 0;
    pl.o_ps = off;
    size_t ns = pl.PH * (rs + pl.PW); /* G or pv, then gm; the same count of bytes for K, km */
    off += pl.flat2 ? ns + (ns + sizeof(float) - 1) / sizeof(float) : 0;
    pl.total = off;
    return pl;
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
    /* sgemm sizes are ints: with B * OH * OW <= BLOCK_FLOATS (or B = 1) these bound them all */
    size_t ckk = g.C * g.K * g.K, ohw = g.OH * g.OW;
    if (ckk > INT_MAX / ohw || g.F > INT_MAX / ohw || g.C * g.H * g.W > INT_MAX)
        return jt_layer_err(l, err, errlen, "input too large for im2col");
    l->out.ndim = 3;
    l->out.d[0] = g.F;
    l->out.d[1] = g.OH;
    l->out.d[2] = g.OW;
    size_t wshape[4] = {g.F, g.C, g.K, g.K};
    jt_layer_add_param(l, p, "W", 4, wshape);
    jt_layer_add_param(l, p, "b", 1, &g.F);
    l->ws_floats = conv_plan_of(l).total;
    return JT_OK;
}

static void conv_init(jt_layer *l, jt_rng *rng) {
    conv_geom g = conv_geometry(l);
    jt_init_he_normal(l->W[0], g.F * g.C * g.K * g.K, g.C * g.K * g.K, rng);
    memset(l->W[1], 0, g.F * sizeof(float));
}

/* ---- lane sums (the same result whether a clone runs the lanes as one vector or not) ---- */

// acc: (LANES) += a: (m) split by lane p mod LANES
JT_HOT static void sum_lanes(const float *restrict a, size_t m, float *restrict acc) {
    size_t p = 0;
    for (; p + LANES <= m; p += LANES)
        for (size_t j = 0; j < LANES; j++) acc[j] += a[p + j];
    for (size_t j = 0; p + j < m; j++) acc[j] += a[p + j];
}

static float lanes_total(const float *acc) {
    float s = 0.0f;
    for (size_t j = 0; j < LANES; j++) s += acc[j];
    return s;
}

/* ---- epilogues: a product plane t (OH, OW), rows rs floats apart, into y's layout ---- */

// y: (OH, OW) = t + b
JT_HOT static void epi_bias(const float *restrict t, size_t rs, size_t OH, size_t OW, float b,
                            float *restrict y) {
    for (size_t oh = 0; oh < OH; oh++)
        for (size_t ow = 0; ow < OW; ow++) y[oh * OW + ow] = t[oh * rs + ow] + b;
}

// y: (OH, OW) = relu(t + b)
JT_HOT static void epi_bias_relu(const float *restrict t, size_t rs, size_t OH, size_t OW,
                                 float b, float *restrict y) {
    for (size_t oh = 0; oh < OH; oh++)
        for (size_t ow = 0; ow < OW; ow++) {
            float v = t[oh * rs + ow] + b;
            y[oh * OW + ow] = v > 0.0f ? v : 0.0f;
        }
}

/* max of relu(v0..v3), a 2x2 window in row-major order; *k = the first maximum's position
 * (ties to the first, as maxpool2d), without branches */
static inline float relu_max4(float v0, float v1, float v2, float v3, unsigned char *k) {
    v0 = v0 > 0.0f ? v0 : 0.0f;
    v1 = v1 > 0.0f ? v1 : 0.0f;
    v2 = v2 > 0.0f ? v2 : 0.0f;
    v3 = v3 > 0.0f ? v3 : 0.0f;
    float m = v0;
    uint32_t j = 0, c;
    c = v1 > m, m = v1 > m ? v1 : m, j = jt_pick_u32(c, 1, j);
    c = v2 > m, m = v2 > m ? v2 : m, j = jt_pick_u32(c, 2, j);
    c = v3 > m, m = v3 > m ? v3 : m, j = jt_pick_u32(c, 3, j);
    *k = (unsigned char)j;
    return m;
}

// y: (PH, PW) = max over each 2x2 window (stride 2) of relu(t + b); arg: the first maximum's
// offset a * 2 + b in the window (the scan and ties of maxpool2d, without branches)
JT_HOT static void epi_bias_relu_pool2(const float *restrict t, size_t rs, size_t PH, size_t PW,
                                       float b, float *restrict y, unsigned char *restrict arg) {
    for (size_t ph = 0; ph < PH; ph++) {
        const float *r0 = t + 2 * ph * rs, *r1 = r0 + rs;
        float *yr = y + ph * PW;
        unsigned char *ar = arg + ph * PW;
        for (size_t pw = 0; pw < PW; pw++)
            yr[pw] = relu_max4(r0[2 * pw] + b, r0[2 * pw + 1] + b, r1[2 * pw] + b,
                               r1[2 * pw + 1] + b, &ar[pw]);
    }
}

/* The flat 2x2 pool: with even rows (rs), pair u = (row pair ph, column u - ph rs) covers
 * t[2u], t[2u + 1] and, below them, t[2u + rs], t[2u + rs + 1]. For u - ph rs < PW that is
 * window (ph, u - ph rs); the other pairs of a row pair are junk, computed and dropped, so one
 * long loop the compiler vectorises replaces PH short ones that run scalar. Rows are then
 * copied out of the scratch pv, pk (rows rs apart) into y, arg (rows PW apart). */

// t: product plane, rows rs apart -> y: (PH, PW) pooled relu(t + b), arg: first-maximum offsets
JT_HOT static void epi_bias_relu_pool2_flat(const float *restrict t, size_t rs, size_t PH,
                                            size_t PW, float b, float *restrict y,
                                            unsigned char *restrict arg, float *restrict pv,
                                            unsigned char *restrict pk) {
    size_t nu = (PH - 1) * rs + PW;
    for (size_t u = 0; u < nu; u++)
        pv[u] = relu_max4(t[2 * u] + b, t[2 * u + 1] + b, t[2 * u + rs] + b,
                          t[2 * u + rs + 1] + b, &pk[u]);
    for (size_t ph = 0; ph < PH; ph++) {
        memcpy(y + ph * PW, pv + ph * rs, PW * sizeof(float));
        memcpy(arg + ph * PW, pk + ph * rs, PW);
    }
}

// the same for any window P (stride P)
static void epi_bias_relu_pool(const float *t, size_t rs, size_t P, size_t PH, size_t PW, float b,
                               float *y, unsigned char *arg) {
    for (size_t ph = 0; ph < PH; ph++)
        for (size_t pw = 0; pw < PW; pw++) {
            float m = 0.0f;
            unsigned char k = 0;
            for (size_t a = 0; a < P; a++)
                for (size_t c = 0; c < P; c++) {
                    float v = t[(ph * P + a) * rs + pw * P + c] + b;
                    v = v > 0.0f ? v : 0.0f;
                    if ((a == 0 && c == 0) || v > m) m = v, k = (unsigned char)(a * P + c);
                }
            y[ph * PW + pw] = m;
            arg[ph * PW + pw] = k;
        }
}

/* One (sample, filter) plane t -> its output plane (and argmax plane when pooled). */
static void epilogue(const conv_plan *pl, const float *t, size_t rs, float b, float *y,
                     unsigned char *arg) {
    const conv_geom *g = &pl->g;
    if (pl->flat2)
        epi_bias_relu_pool2_flat(t, rs, pl->PH, pl->PW, b, y, arg, pl->ps,
                                 (unsigned char *)(pl->ps + pl->PH * (rs + pl->PW)));
    else if (pl->P == 2) epi_bias_relu_pool2(t, rs, pl->PH, pl->PW, b, y, arg);
    else if (pl->P) epi_bias_relu_pool(t, rs, pl->P, pl->PH, pl->PW, b, y, arg);
    else if (pl->relu) epi_bias_relu(t, rs, g->OH, g->OW, b, y);
    else epi_bias(t, rs, g->OH, g->OW, b, y);
}

/* ---- gradient planes: dy of one (sample, filter) into dt (OH rows rs apart; columns OW..rs-1,
 * the direct path's junk, zeroed) ---- */

// dt = dy
JT_HOT static void dt_copy(const float *restrict dy, size_t OH, size_t OW, float *restrict dt,
                           size_t rs) {
    for (size_t oh = 0; oh < OH; oh++) {
        for (size_t ow = 0; ow < OW; ow++) dt[oh * rs + ow] = dy[oh * OW + ow];
        for (size_t ow = OW; ow < rs; ow++) dt[oh * rs + ow] = 0.0f;
    }
}

// dt = y > 0 ? dy : 0 (relu's backward, from its output y)
JT_HOT static void dt_relu(const float *restrict dy, const float *restrict y, size_t OH,
                           size_t OW, float *restrict dt, size_t rs) {
    for (size_t oh = 0; oh < OH; oh++) {
        for (size_t ow = 0; ow < OW; ow++)
            dt[oh * rs + ow] = y[oh * OW + ow] > 0.0f ? dy[oh * OW + ow] : 0.0f;
        for (size_t ow = OW; ow < rs; ow++) dt[oh * rs + ow] = 0.0f;
    }
}

// dp, yp: (PH, PW) the pooled gradient and output -> dt zero but at each window's argmax, where
// it is dp when yp > 0 (maxpool2d's backward, then relu's: relu(v) > 0 iff the max yp > 0)
static void dt_relu_pool(const conv_plan *pl, const float *dp, const float *yp,
                         const unsigned char *arg, float *dt, size_t rs) {
    size_t P = pl->P;
    memset(dt, 0, pl->g.OH * rs * sizeof(float));
    for (size_t ph = 0; ph < pl->PH; ph++)
        for (size_t pw = 0; pw < pl->PW; pw++) {
            size_t o = ph * pl->PW + pw;
            if (!(yp[o] > 0.0f)) continue;
            size_t a = arg[o] / P, c = arg[o] % P;
            dt[(ph * P + a) * rs + pw * P + c] = dp[o];
        }
}

// the same for 2x2 windows, writing every window position (no memset), then zeroing what no
// window covers: a last odd row or column, and columns OW..rs-1
JT_HOT static void dt_relu_pool2(const float *restrict dp, const float *restrict yp,
                                 const unsigned char *restrict arg, size_t PH, size_t PW,
                                 size_t OH, float *restrict dt, size_t rs) {
    for (size_t ph = 0; ph < PH; ph++) {
        float *r0 = dt + 2 * ph * rs, *r1 = r0 + rs;
        const float *dr = dp + ph * PW, *yr = yp + ph * PW;
        const unsigned char *ar = arg + ph * PW;
        for (size_t pw = 0; pw < PW; pw++) {
            float d = jt_keep_if(dr[pw], yr[pw] > 0.0f);
            uint32_t k = ar[pw];
            r0[2 * pw] = jt_keep_if(d, k == 0);
            r0[2 * pw + 1] = jt_keep_if(d, k == 1);
            r1[2 * pw] = jt_keep_if(d, k == 2);
            r1[2 * pw + 1] = jt_keep_if(d, k == 3);
        }
        for (size_t w = 2 * PW; w < rs; w++) r0[w] = r1[w] = 0.0f;
    }
    for (size_t h = 2 * PH; h < OH; h++)
        for (size_t w = 0; w < rs; w++) dt[h * rs + w] = 0.0f;
}

// the flat form for even rows rs: each pooled row's gradient (kept where yp > 0) and offsets
// are laid out in G, K as pair u's of its row pair would read them: the top half of the row
// pair (u - ph rs < rs/2) meets window offsets 0, 1, the bottom half 2, 3 (K holds arg - 2
// there, wrapping 0, 1 to 254, 255); pairs of no window get G = 0. Then one flat loop writes
// dt[2u], dt[2u + 1] for every pair u, rows 0 .. 2 PH - 1, and a last odd row is zeroed.
JT_HOT static void dt_relu_pool2_flat(const float *restrict dp, const float *restrict yp,
                                      const unsigned char *restrict arg, size_t PH, size_t PW,
                                      size_t OH, float *restrict dt, size_t rs, float *restrict G,
                                      unsigned char *restrict K) {
    size_t h = rs / 2, m = PH * PW;
    float *gm = G + PH * rs;                 /* flat scratch after G and K */
    unsigned char *km = K + PH * rs;
    for (size_t v = 0; v < m; v++) {
        gm[v] = jt_keep_if(dp[v], yp[v] > 0.0f);
        km[v] = (unsigned char)(arg[v] - 2);
    }
    for (size_t ph = 0; ph < PH; ph++) {
        float *g = G + ph * rs;
        unsigned char *k = K + ph * rs;
        memcpy(g, gm + ph * PW, PW * sizeof(float));
        memcpy(g + h, gm + ph * PW, PW * sizeof(float));
        memcpy(k, arg + ph * PW, PW);
        memcpy(k + h, km + ph * PW, PW);
        for (size_t pw = PW; pw < h; pw++) g[pw] = g[h + pw] = 0.0f, k[pw] = k[h + pw] = 0;
    }
    for (size_t u = 0; u < PH * rs; u++) {
        dt[2 * u] = jt_keep_if(G[u], K[u] == 0);
        dt[2 * u + 1] = jt_keep_if(G[u], K[u] == 1);
    }
    for (size_t w = 2 * PH * rs; w < OH * rs; w++) dt[w] = 0.0f;
}

/* Sample i, filter f's gradient plane from dy (and y, arg) as the fusion mode says. */
static void grad_plane(const conv_plan *pl, const float *y, const float *dy, const unsigned char *arg,
                       size_t i, size_t f, float *dt, size_t rs) {
    const conv_geom *g = &pl->g;
    if (pl->P) {
        size_t o = (i * g->F + f) * pl->PH * pl->PW;
        if (pl->flat2)
            dt_relu_pool2_flat(dy + o, y + o, arg + o, pl->PH, pl->PW, g->OH, dt, rs, pl->ps,
                               (unsigned char *)(pl->ps + pl->PH * (rs + pl->PW)));
        else if (pl->P == 2) dt_relu_pool2(dy + o, y + o, arg + o, pl->PH, pl->PW, g->OH, dt, rs);
        else dt_relu_pool(pl, dy + o, y + o, arg + o, dt, rs);
        return;
    }
    size_t o = (i * g->F + f) * g->OH * g->OW;
    if (pl->relu) dt_relu(dy + o, y + o, g->OH, g->OW, dt, rs);
    else dt_copy(dy + o, g->OH, g->OW, dt, rs);
}

static size_t out_plane(const conv_plan *pl) {
    return pl->P ? pl->PH * pl->PW : pl->g.OH * pl->g.OW;
}

/* ---- direct 3x3 path ---- */

// x: (H, W) -> xp: (Hp, Wp) with x at (pt, pl); the border stays as the caller zeroed it
static void pad_copy(const conv_plan *pl, const float *x, float *xp) {
    const conv_geom *g = &pl->g;
    for (size_t h = 0; h < g->H; h++)
        memcpy(xp + (h + g->pt) * pl->Wp + g->pl, x + h * g->W, g->W * sizeof(float));
}

// xp: plane read flat, rows wp apart, w: (3, 3) -> t[p] = sum over ki, kj in order of
// w[ki][kj] xp[p + ki wp + kj], p < np
JT_HOT static void direct3(const float *restrict xp, size_t wp, const float *restrict w,
                           size_t np, float *restrict t) {
    const float *x0 = xp, *x1 = xp + wp, *x2 = xp + 2 * wp;
    const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6],
                w7 = w[7], w8 = w[8];
    for (size_t p = 0; p < np; p++)
        t[p] = w0 * x0[p] + w1 * x0[p + 1] + w2 * x0[p + 2] + w3 * x1[p] + w4 * x1[p + 1] +
               w5 * x1[p + 2] + w6 * x2[p] + w7 * x2[p + 1] + w8 * x2[p + 2];
}

/* LANES floats as one value (a GCC/clang vector), so the nine accumulators below stay in
 * registers; lane j computes exactly what the scalar loop over p = j (mod LANES) would. */
typedef float lanes_v __attribute__((vector_size(LANES * sizeof(float))));

/* v = LANES floats from p (a macro: a function returning a vector trips -Wpsabi) */
#define LOAD_LANES(v, p) memcpy(&(v), (p), sizeof(lanes_v))

// acc: (9, LANES) += lanes of d[p] xp[p + ki wp + kj] over p < np, k = ki * 3 + kj
JT_HOT static void direct3_dw(const float *restrict d, const float *restrict xp, size_t wp,
                              size_t np, float *restrict acc) {
    const float *x0 = xp, *x1 = xp + wp, *x2 = xp + 2 * wp;
    lanes_v a[9];
    memcpy(a, acc, sizeof a);
    lanes_v a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5], a6 = a[6],
            a7 = a[7], a8 = a[8];
    size_t p = 0;
    for (; p + LANES <= np; p += LANES) {
        lanes_v dv, v0, v1, v2, v3, v4, v5, v6, v7, v8;
        LOAD_LANES(dv, d + p);
        LOAD_LANES(v0, x0 + p), LOAD_LANES(v1, x0 + p + 1), LOAD_LANES(v2, x0 + p + 2);
        LOAD_LANES(v3, x1 + p), LOAD_LANES(v4, x1 + p + 1), LOAD_LANES(v5, x1 + p + 2);
        LOAD_LANES(v6, x2 + p), LOAD_LANES(v7, x2 + p + 1), LOAD_LANES(v8, x2 + p + 2);
        a0 += dv * v0, a1 += dv * v1, a2 += dv * v2;
        a3 += dv * v3, a4 += dv * v4, a5 += dv * v5;
        a6 += dv * v6, a7 += dv * v7, a8 += dv * v8;
    }
    a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3, a[4] = a4, a[5] = a5, a[6] = a6, a[7] = a7;
    a[8] = a8;
    memcpy(acc, a, sizeof a);
    size_t off[9] = {0, 1, 2, wp, wp + 1, wp + 2, 2 * wp, 2 * wp + 1, 2 * wp + 2};
    for (size_t k = 0; k < 9; k++)
        for (size_t j = 0; p + j < np; j++) acc[k * LANES + j] += d[p + j] * xp[p + off[k] + j];
}

// dxp[p + ki wp + kj] += w[ki][kj] d[p] for p < np, k = ki * 3 + kj in order
JT_HOT static void direct3_dx(const float *restrict d, const float *restrict w, size_t wp,
                              size_t np, float *restrict dxp) {
    for (size_t k = 0; k < 9; k++) {
        float *dst = dxp + (k / 3) * wp + k % 3;
        const float wk = w[k];
        for (size_t p = 0; p < np; p++) dst[p] += wk * d[p];
    }
}

// x: (n, 1, H, W) -> y: (n, F, OH, OW), or (n, F, PH, PW) pooled
static void direct_forward(const conv_plan *pl, jt_layer *l, const float *x, float *y, size_t n) {
    const conv_geom *g = &pl->g;
    size_t in_sz = g->H * g->W, osz = out_plane(pl);
    float *xp = l->ws + pl->o_xp, *t = l->ws + pl->o_t;
    unsigned char *arg = (unsigned char *)(l->ws + pl->o_arg); /* fused pool only */
    if (pl->pad) memset(xp, 0, pl->Hp * pl->Wp * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * in_sz;
        if (pl->pad) pad_copy(pl, xi, xp);
        const float *src = pl->pad ? xp : xi;
        for (size_t f = 0; f < g->F; f++) {
            direct3(src, pl->Wp, l->W[0] + f * 9, pl->np, t);
            size_t o = (i * g->F + f) * osz;
            epilogue(pl, t, pl->Wp, l->W[1][f], y + o, pl->P ? arg + o : NULL);
        }
    }
}

// per sample and filter: dt from dy; dW, db lanes += dt against the shifted input; dx += the
// shifted dt times the weights (in the padded plane, then cropped)
static void direct_backward(const conv_plan *pl, jt_layer *l, const float *x, const float *y,
                            const float *dy, float *dx, size_t n) {
    const conv_geom *g = &pl->g;
    size_t in_sz = g->H * g->W, plane = pl->Hp * pl->Wp, per_f = 10 * LANES;
    float *xp = l->ws + pl->o_xp, *dxp = l->ws + pl->o_dxp, *t = l->ws + pl->o_t;
    float *acc = l->ws + pl->o_acc;
    const unsigned char *arg = (const unsigned char *)(l->ws + pl->o_arg);
    memset(acc, 0, g->F * per_f * sizeof(float));
    if (pl->pad) memset(xp, 0, plane * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * in_sz;
        if (pl->pad) pad_copy(pl, xi, xp);
        const float *src = pl->pad ? xp : xi;
        float *dacc = pl->pad ? dxp : dx ? dx + i * in_sz : NULL;
        if (dx) memset(dacc, 0, plane * sizeof(float));
        for (size_t f = 0; f < g->F; f++) {
            grad_plane(pl, y, dy, arg, i, f, t, pl->Wp);
            float *af = acc + f * per_f;
            direct3_dw(t, src, pl->Wp, pl->np, af);
            sum_lanes(t, pl->np, af + 9 * LANES);
            if (dx) direct3_dx(t, l->W[0] + f * 9, pl->Wp, pl->np, dacc);
        }
        if (dx && pl->pad)
            for (size_t h = 0; h < g->H; h++)
                memcpy(dx + i * in_sz + h * g->W, dxp + (h + g->pt) * pl->Wp + g->pl,
                       g->W * sizeof(float));
    }
    for (size_t f = 0; f < g->F; f++) {
        const float *af = acc + f * per_f;
        for (size_t k = 0; k < 9; k++) l->dW[0][f * 9 + k] += lanes_total(af + k * LANES);
        l->dW[1][f] += lanes_total(af + 9 * LANES);
    }
}

/* ---- im2col path ---- */

// x_i: (C, H, W) -> col rows (c, ki, kj), columns [0, OH*OW) of a matrix with ld floats per row;
// zeros where the window hangs over the padding
JT_HOT static void im2col(const conv_geom *g, const float *restrict x, float *restrict col,
                          size_t ld) {
    for (size_t c = 0; c < g->C; c++)
        for (size_t ki = 0; ki < g->K; ki++)
            for (size_t kj = 0; kj < g->K; kj++) {
                float *row = col + ((c * g->K + ki) * g->K + kj) * ld;
                for (size_t oh = 0; oh < g->OH; oh++) {
                    long ih = (long)(oh * g->S + ki) - (long)g->pt;
                    float *dst = row + oh * g->OW;
                    if (ih < 0 || ih >= (long)g->H) {
                        for (size_t ow = 0; ow < g->OW; ow++) dst[ow] = 0.0f;
                        continue;
                    }
                    const float *src = x + (c * g->H + (size_t)ih) * g->W;
                    if (g->S == 1) { /* iw = ow + kj - pl: zeros, a contiguous copy, zeros */
                        long lo = (long)g->pl - (long)kj, hi = (long)g->W + lo;
                        size_t a = lo > 0 ? (size_t)lo : 0;
                        size_t b = hi < (long)g->OW ? (hi > 0 ? (size_t)hi : 0) : g->OW;
                        if (b < a) b = a;
                        for (size_t ow = 0; ow < a; ow++) dst[ow] = 0.0f;
                        for (size_t ow = a; ow < b; ow++) dst[ow] = src[ow - (size_t)lo];
                        for (size_t ow = b; ow < g->OW; ow++) dst[ow] = 0.0f;
                        continue;
                    }
                    for (size_t ow = 0; ow < g->OW; ow++) {
                        long iw = (long)(ow * g->S + kj) - (long)g->pl;
                        dst[ow] = (iw >= 0 && iw < (long)g->W) ? src[iw] : 0.0f;
                    }
                }
            }
}

// col rows (c, ki, kj), columns [0, OH*OW) with ld floats per row -> dx_i: (C, H, W),
// overwritten, overlapping windows summed in (ki, kj) order
JT_HOT static void col2im(const conv_geom *g, const float *restrict col, size_t ld,
                          float *restrict dx) {
    for (size_t c = 0; c < g->C; c++) {
        float *dxc = dx + c * g->H * g->W;
        memset(dxc, 0, g->H * g->W * sizeof(float));
        for (size_t ki = 0; ki < g->K; ki++)
            for (size_t kj = 0; kj < g->K; kj++) {
                const float *row = col + ((c * g->K + ki) * g->K + kj) * ld;
                for (size_t oh = 0; oh < g->OH; oh++) {
                    long ih = (long)(oh * g->S + ki) - (long)g->pt;
                    if (ih < 0 || ih >= (long)g->H) continue;
                    float *dst = dxc + (size_t)ih * g->W;
                    const float *src = row + oh * g->OW;
                    if (g->S == 1) {
                        long lo = (long)g->pl - (long)kj, hi = (long)g->W + lo;
                        size_t a = lo > 0 ? (size_t)lo : 0;
                        size_t b = hi < (long)g->OW ? (hi > 0 ? (size_t)hi : 0) : g->OW;
                        for (size_t ow = a; ow < b; ow++) dst[ow - (size_t)lo] += src[ow];
                        continue;
                    }
                    for (size_t ow = 0; ow < g->OW; ow++) {
                        long iw = (long)(ow * g->S + kj) - (long)g->pl;
                        if (iw >= 0 && iw < (long)g->W) dst[iw] += src[ow];
                    }
                }
            }
    }
}

// x: (n, C, H, W) -> y: (n, F, OH, OW), or (n, F, PH, PW) pooled; per block t = W col
static void gemm_forward(const conv_plan *pl, jt_layer *l, const float *x, float *y, size_t n) {
    const conv_geom *g = &pl->g;
    size_t ckk = g->C * g->K * g->K, ohw = g->OH * g->OW, in_sz = g->C * g->H * g->W;
    size_t osz = out_plane(pl);
    float *t = l->ws + pl->o_t;
    unsigned char *arg = (unsigned char *)(l->ws + pl->o_arg);
    for (size_t s0 = 0; s0 < n; s0 += pl->B) {
        size_t nb = n - s0 < pl->B ? n - s0 : pl->B, ld = nb * ohw;
        float *col = l->ws + pl->o_col + (pl->keep ? s0 * ckk * ohw : 0);
        for (size_t i = 0; i < nb; i++) im2col(g, x + (s0 + i) * in_sz, col + i * ohw, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->F, (int)ld, (int)ckk, 1.0f,
                    l->W[0], (int)ckk, col, (int)ld, 0.0f, t, (int)ld);
        for (size_t i = 0; i < nb; i++)
            for (size_t f = 0; f < g->F; f++) {
                size_t o = ((s0 + i) * g->F + f) * osz;
                epilogue(pl, t + f * ld + i * ohw, g->OW, l->W[1][f], y + o, pl->P ? arg + o : NULL);
            }
    }
}

// per block: dt from dy; db += row sums of dt; dW += dt col^T; dcol = W^T dt, dx = col2im(dcol)
static void gemm_backward(const conv_plan *pl, jt_layer *l, const float *x, const float *y,
                          const float *dy, float *dx, size_t n) {
    const conv_geom *g = &pl->g;
    size_t ckk = g->C * g->K * g->K, ohw = g->OH * g->OW, in_sz = g->C * g->H * g->W;
    float *t = l->ws + pl->o_t;
    const unsigned char *arg = (const unsigned char *)(l->ws + pl->o_arg);
    for (size_t s0 = 0; s0 < n; s0 += pl->B) {
        size_t nb = n - s0 < pl->B ? n - s0 : pl->B, ld = nb * ohw;
        for (size_t i = 0; i < nb; i++)
            for (size_t f = 0; f < g->F; f++)
                grad_plane(pl, y, dy, arg, s0 + i, f, t + f * ld + i * ohw, g->OW);
        for (size_t f = 0; f < g->F; f++) {
            float acc[LANES] = {0};
            sum_lanes(t + f * ld, ld, acc);
            l->dW[1][f] += lanes_total(acc);
        }
        float *col = l->ws + pl->o_col + (pl->keep ? s0 * ckk * ohw : 0);
        if (!pl->keep)
            for (size_t i = 0; i < nb; i++) im2col(g, x + (s0 + i) * in_sz, col + i * ohw, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->F, (int)ckk, (int)ld, 1.0f, t,
                    (int)ld, col, (int)ld, 1.0f, l->dW[0], (int)ckk);
        if (!dx) continue;
        float *dcol = l->ws + pl->o_dcol;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)ckk, (int)ld, (int)g->F, 1.0f,
                    l->W[0], (int)ckk, t, (int)ld, 0.0f, dcol, (int)ld);
        for (size_t i = 0; i < nb; i++) col2im(g, dcol + i * ohw, ld, dx + (s0 + i) * in_sz);
    }
}

/* ---- ops ---- */

static void conv_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    JT_CHECK(n <= l->max_n, "layer %s: batch %zu > max_n %zu", l->name, n, l->max_n);
    conv_plan pl = conv_plan_of(l);
    pl.ps = l->ws + pl.o_ps;
    if (pl.direct) direct_forward(&pl, l, x, y, n);
    else gemm_forward(&pl, l, x, y, n);
}

// dy: the gradient of y (the conv's output, or the fused group's); dW, db += ; dx overwritten
static void conv_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                          size_t n, const jt_ctx *ctx) {
    (void)ctx;
    JT_CHECK(n <= l->max_n, "layer %s: batch %zu > max_n %zu", l->name, n, l->max_n);
    conv_plan pl = conv_plan_of(l);
    pl.ps = l->ws + pl.o_ps;
    if (pl.direct) direct_backward(&pl, l, x, y, dy, dx, n);
    else gemm_backward(&pl, l, x, y, dy, dx, n);
}

const jt_layer_ops jt_layer_conv2d = {
    .kind = "conv2d",
    .keys = {"filters", "kernel", "stride", "padding", NULL},
    .setup = conv_setup,
    .init = conv_init,
    .forward = conv_forward,
    .backward = conv_backward,
};

/* ---- fusion (conv2d.h) ---- */

static void absorbed_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)l, (void)x, (void)y, (void)n, (void)ctx;
}

static void absorbed_backward(jt_layer *l, const float *x, const float *y, const float *dy,
                              float *dx, size_t n, const jt_ctx *ctx) {
    (void)l, (void)x, (void)y, (void)dy, (void)dx, (void)n, (void)ctx;
}

/* A relu or max-pool whose work the conv before it does. */
static const jt_layer_ops absorbed_relu = {
    .kind = "relu", .keys = {NULL}, .forward = absorbed_forward, .backward = absorbed_backward,
};
static const jt_layer_ops absorbed_maxpool2d = {
    .kind = "maxpool2d", .keys = {"size", "stride", NULL},
    .forward = absorbed_forward, .backward = absorbed_backward,
};

size_t jt_layer_fuse(jt_layer *l, size_t n) {
    if (n < 2 || l[0].ops != &jt_layer_conv2d || l[1].ops != &jt_layer_relu) return 0;
    size_t k = 1, P = 0;
    if (n >= 3 && l[2].ops == &jt_layer_maxpool2d && l[2].in.ndim == 3) {
        size_t size = l[2].opt.size > 0 ? (size_t)l[2].opt.size : 2;
        size_t stride = l[2].opt.stride > 0 ? (size_t)l[2].opt.stride : size;
        if (stride == size && size * size <= 255) P = size, k = 2;
    }
    l[0].opt.fused_relu = 1;
    l[0].opt.fused_pool = (long)P;
    l[0].ws_floats = conv_plan_of(&l[0]).total;
    l[1].ops = &absorbed_relu;
    l[1].ws_floats = 0;
    if (k == 2) {
        conv_plan pl = conv_plan_of(&l[0]);
        JT_CHECK(l[2].out.d[1] == pl.PH && l[2].out.d[2] == pl.PW,
                 "layer %s: fused pool shape disagrees with %s", l[0].name, l[2].name);
        l[2].ops = &absorbed_maxpool2d;
        l[2].ws_floats = 0;
    }
    return k;
}

jt_conv2d_lowering jt_conv2d_lowering_of(const jt_layer *l) {
    JT_CHECK(l->ops == &jt_layer_conv2d, "layer %s is no conv2d", l->name);
    conv_plan pl = conv_plan_of(l);
    jt_conv2d_lowering r = {pl.direct, pl.B, pl.keep, pl.relu, pl.P, pl.flat2};
    return r;
}
