/* layers/attention.c - attention kinds: attention_pool, self_attention, cross_attention.
 *
 * Each kind reads its input (and cross_attention its context) as a set of vectors: a sequence
 * (T, F) is T vectors of F; a feature map (C, H, W) is H*W vectors of C (transposed internally
 * into the workspace, and the gradient transposed back; jt_seq_view in prims.h). Every matrix
 * product is a cblas call through prims.h; attention_pool's scoring is jt_addattn, the step the
 * decoder uses too.
 *
 * attention_pool {units A = F}: additive (Bahdanau et al. 2015) attention pooling with a learned
 *   query v, as the word/sentence attention of Yang et al. 2016 (Hierarchical Attention Networks):
 *     p_t = tanh(W x_t + b),  e_t = v . p_t,  a = softmax_t(e),  y = sum_t a_t x_t
 *   (T, F) or (C, H, W) -> (F). Parameters "<name>.W" (A, F), "<name>.b" (A), "<name>.v" (A).
 *   Each task owning one attention_pool looks at the same shared vectors its own way.
 *
 * self_attention {heads h = 1, units D = F} and cross_attention {heads, units, context}:
 *   multi-head scaled dot-product attention, the semantics of torch.nn.MultiheadAttention
 *   (separate q/k/v projections, kdim = vdim = context size, no dropout, no mask):
 *     Q = Xq Wq^T + bq,  K = Xkv Wk^T + bk,  V = Xkv Wv^T + bv          (rows of D = h * dk)
 *     O_j = softmax(Q_j K_j^T / sqrt(dk)) V_j  for each head j (columns j*dk .. (j+1)*dk)
 *     Y = O Wo^T + bo
 *   self_attention: Xq = Xkv = x, (T, F) or (C, H, W) -> (T, D) (T = H*W for a feature map).
 *   cross_attention: Xq = x, (T, F) or (C, H, W) -> (T, D), or a vector (F) -> (D) (T = 1);
 *   Xkv = ctx->aux, per-sample shape l->aux: (S, G) or (C, H, W) as S = H*W vectors of G = C.
 *   Backward ADDS the context's gradient into ctx->daux (when it is not NULL).
 *   Parameters "<name>.Wq" (D, F), ".bq" (D), ".Wk" (D, G), ".bk" (D), ".Wv" (D, G), ".bv" (D),
 *   ".Wo" (D, D), ".bo" (D); G = F for self_attention. Glorot-uniform weights, zero biases.
 *   Workspace: Q, K, V, O and their gradients, the probabilities (n, h, T, S), one (T, S)
 *   scratch, and the transposed copies of feature-map inputs; see mha_layout. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "kinds.h"
#include "prims.h"

static jt_status bad_input(jt_layer *l, const jt_shape *s, const char *what, char *err,
                           size_t errlen) {
    char buf[64];
    jt_shape_format(s, buf, sizeof buf);
    return jt_layer_err(l, err, errlen, "%s needs %s, got %s", l->ops->kind, what, buf);
}

/* Workspace layout helper: the next `count` floats from base (NULL when only sizing). */
#define JT_TAKE(ptr, count) (ptr = base ? base + off : NULL, off = jt_size_add(off, (count)))

/* ---- attention_pool ---- */

typedef struct {
    size_t T, F, A;
    int chw;
    float *X, *P, *a, *dP, *dX; /* X, dX: transposed input and its gradient (feature maps only) */
} apool_ws;

/* Lays out the workspace from base (NULL: only sizes); returns its size in floats. */
static size_t apool_layout(const jt_layer *l, float *base, apool_ws *w) {
    size_t n = l->max_n, off = 0;
    jt_seq_view(&l->in, 0, &w->T, &w->F, &w->chw);
    w->A = l->opt.units > 0 ? (size_t)l->opt.units : w->F;
    size_t nt = n * w->T;
    JT_TAKE(w->X, w->chw ? nt * w->F : 0);
    JT_TAKE(w->dX, w->chw ? nt * w->F : 0);
    JT_TAKE(w->P, nt * w->A);
    JT_TAKE(w->dP, nt * w->A);
    JT_TAKE(w->a, 2 * nt); /* a, then da */
    return off;
}

static jt_status apool_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    size_t T, F;
    int chw;
    if (jt_seq_view(&l->in, 0, &T, &F, &chw) != 0)
        return bad_input(l, &l->in, "a sequence (T, F) or a feature map (C, H, W)", err, errlen);
    apool_ws w;
    size_t A = l->opt.units > 0 ? (size_t)l->opt.units : F;
    if (T > INT_MAX / l->max_n || A > INT_MAX)
        return jt_layer_err(l, err, errlen, "input too large for one sgemm");
    l->out.ndim = 1;
    l->out.d[0] = F;
    size_t wshape[2] = {A, F};
    jt_layer_add_param(l, p, "W", 2, wshape);
    jt_layer_add_param(l, p, "b", 1, &A);
    jt_layer_add_param(l, p, "v", 1, &A);
    l->ws_floats = apool_layout(l, NULL, &w);
    return JT_OK;
}

static void apool_init(jt_layer *l, jt_rng *rng) {
    apool_ws w;
    apool_layout(l, NULL, &w);
    jt_init_glorot_uniform(l->W[0], w.A * w.F, w.F, w.A, rng);
    memset(l->W[1], 0, w.A * sizeof(float));
    jt_init_glorot_uniform(l->W[2], w.A, w.A, 1, rng);
}

/* The additive attention step over X (n, T, F) with the layer's v and the workspace's P, a, e. */
static jt_addattn apool_step(const jt_layer *l, const apool_ws *w, const float *X, size_t n) {
    jt_addattn s = {.n = n, .T = w->T, .A = w->A, .F = w->F, .X = X, .v = l->W[2], .P = w->P,
                    .alpha = w->a, .ld_alpha = w->T, .e = w->a + l->max_n * w->T};
    return s;
}

// x: (n, T, F) (or (n, F, T) for a feature map) -> y: (n, F)
static void apool_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    apool_ws w;
    apool_layout(l, l->ws, &w);
    size_t F = w.F, A = w.A, nt = n * w.T;
    const float *X = x;
    if (w.chw) {
        jt_chw_to_rows(x, w.X, n, F, w.T);
        X = w.X;
    }
    /* keys K (n*T, A) = X W^T + b, in P; then P = tanh(K), a = softmax(P v), y_i = X_i^T a_i */
    jt_rows_fill(w.P, A, l->W[1], nt, A);
    jt_gemm_abt(nt, A, F, 1.0f, X, F, l->W[0], F, 1.0f, w.P, A);
    jt_addattn s = apool_step(l, &w, X, n);
    jt_addattn_forward(&s, w.P, NULL, 0, y, F);
}

static void apool_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                           size_t n, const jt_ctx *ctx) {
    (void)y, (void)ctx;
    apool_ws w;
    apool_layout(l, l->ws, &w);
    size_t F = w.F, A = w.A, nt = n * w.T;
    const float *X = w.chw ? w.X : x;
    float *dX = dx ? (w.chw ? w.dX : dx) : NULL;
    /* dX = a_t dy_i, dv += P^T de, dP = dL/dK; then dW += dP^T X, db += sum dP, dX += dP W */
    jt_addattn s = apool_step(l, &w, X, n);
    jt_addattn_backward(&s, dy, F, dX, 0, l->dW[2], w.dP, 0, NULL);
    jt_gemm_atb(A, F, nt, 1.0f, w.dP, A, X, F, 1.0f, l->dW[0], F);
    jt_colsum_add(l->dW[1], w.dP, A, nt, A);
    if (!dx) return;
    jt_gemm_ab(nt, F, A, 1.0f, w.dP, A, l->W[0], F, 1.0f, dX, F);
    if (w.chw) jt_rows_to_chw(dX, dx, n, F, w.T, 0);
}

const jt_layer_ops jt_layer_attention_pool = {
    .kind = "attention_pool",
    .keys = {"units", NULL},
    .setup = apool_setup,
    .init = apool_init,
    .forward = apool_forward,
    .backward = apool_backward,
};

/* ---- multi-head attention: self_attention and cross_attention ---- */

enum { P_WQ, P_BQ, P_WK, P_BK, P_WV, P_BV, P_WO, P_BO };

typedef struct {
    int cross;       /* 1: keys/values from ctx->aux */
    size_t T, F;     /* queries: T vectors of F */
    size_t S, G;     /* keys/values: S vectors of G (self: S = T, G = F) */
    size_t D, H, dk; /* model dim, heads, dim per head */
    int q_chw, kv_chw;
    float *Xq, *Xkv, *dXq, *dXkv; /* transposed inputs and their gradients (feature maps) */
    float *Q, *K, *V, *O, *dQ, *dK, *dV, *dO, *P, *dA;
} mha_ws;

/* Reads the geometry of l; returns 0 if the input (and context) shapes are accepted. */
static int mha_geometry(const jt_layer *l, mha_ws *w) {
    memset(w, 0, sizeof *w);
    w->cross = strcmp(l->ops->kind, "cross_attention") == 0;
    if (jt_seq_view(&l->in, w->cross, &w->T, &w->F, &w->q_chw) != 0) return -1;
    if (w->cross) {
        if (jt_seq_view(&l->aux, 0, &w->S, &w->G, &w->kv_chw) != 0) return -2;
    } else {
        w->S = w->T, w->G = w->F, w->kv_chw = w->q_chw;
    }
    w->D = l->opt.units > 0 ? (size_t)l->opt.units : w->F;
    w->H = l->opt.heads > 0 ? (size_t)l->opt.heads : 1;
    w->dk = w->D / w->H;
    return 0;
}

/* Lays out the workspace from base (NULL: only sizes); returns its size in floats. */
static size_t mha_layout(const jt_layer *l, float *base, mha_ws *w) {
    mha_geometry(l, w);
    size_t n = l->max_n, off = 0, nq = n * w->T, nkv = n * w->S;
    JT_TAKE(w->Xq, w->q_chw ? nq * w->F : 0);
    JT_TAKE(w->dXq, w->q_chw ? nq * w->F : 0);
    JT_TAKE(w->Xkv, w->cross && w->kv_chw ? nkv * w->G : 0);
    JT_TAKE(w->dXkv, w->cross && w->kv_chw ? nkv * w->G : 0);
    if (!w->cross) w->Xkv = w->Xq;
    JT_TAKE(w->Q, nq * w->D);
    JT_TAKE(w->dQ, nq * w->D);
    JT_TAKE(w->O, nq * w->D);
    JT_TAKE(w->dO, nq * w->D);
    JT_TAKE(w->K, nkv * w->D);
    JT_TAKE(w->dK, nkv * w->D);
    JT_TAKE(w->V, nkv * w->D);
    JT_TAKE(w->dV, nkv * w->D);
    JT_TAKE(w->P, jt_size_mul(jt_size_mul(nq, w->H), w->S)); /* may overflow: saturates */
    JT_TAKE(w->dA, w->T * w->S);
    return off;
}
#undef JT_TAKE

static jt_status mha_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    mha_ws w;
    int cross = strcmp(l->ops->kind, "cross_attention") == 0;
    if (cross && (l->opt.context[0] == '\0' || l->aux.ndim == 0))
        return jt_layer_err(l, err, errlen,
                            "setting 'context' (the block attended over) is required");
    int g = mha_geometry(l, &w);
    if (g == -1)
        return bad_input(l, &l->in,
                         cross ? "a vector (F), a sequence (T, F) or a feature map (C, H, W)"
                               : "a sequence (T, F) or a feature map (C, H, W)",
                         err, errlen);
    if (g == -2)
        return bad_input(l, &l->aux, "a context (S, G) or a feature map (C, H, W)", err, errlen);
    if (w.D % w.H != 0)
        return jt_layer_err(l, err, errlen, "units %zu is not divisible by heads %zu", w.D, w.H);
    size_t n = l->max_n, TS = w.T * w.S;
    if (w.T > INT_MAX / n || w.S > INT_MAX / n || w.D > INT_MAX / (n * (w.T > w.S ? w.T : w.S)) ||
        TS > INT_MAX)
        return jt_layer_err(l, err, errlen, "input too large for one sgemm");
    if (l->in.ndim == 1) {
        l->out.ndim = 1;
        l->out.d[0] = w.D;
    } else {
        l->out.ndim = 2;
        l->out.d[0] = w.T;
        l->out.d[1] = w.D;
    }
    size_t sq[2] = {w.D, w.F}, skv[2] = {w.D, w.G}, so[2] = {w.D, w.D};
    jt_layer_add_param(l, p, "Wq", 2, sq);
    jt_layer_add_param(l, p, "bq", 1, &w.D);
    jt_layer_add_param(l, p, "Wk", 2, skv);
    jt_layer_add_param(l, p, "bk", 1, &w.D);
    jt_layer_add_param(l, p, "Wv", 2, skv);
    jt_layer_add_param(l, p, "bv", 1, &w.D);
    jt_layer_add_param(l, p, "Wo", 2, so);
    jt_layer_add_param(l, p, "bo", 1, &w.D);
    l->ws_floats = mha_layout(l, NULL, &w);
    return JT_OK;
}

static void mha_init(jt_layer *l, jt_rng *rng) {
    mha_ws w;
    mha_geometry(l, &w);
    jt_init_glorot_uniform(l->W[P_WQ], w.D * w.F, w.F, w.D, rng);
    jt_init_glorot_uniform(l->W[P_WK], w.D * w.G, w.G, w.D, rng);
    jt_init_glorot_uniform(l->W[P_WV], w.D * w.G, w.G, w.D, rng);
    jt_init_glorot_uniform(l->W[P_WO], w.D * w.D, w.D, w.D, rng);
    memset(l->W[P_BQ], 0, w.D * sizeof(float));
    memset(l->W[P_BK], 0, w.D * sizeof(float));
    memset(l->W[P_BV], 0, w.D * sizeof(float));
    memset(l->W[P_BO], 0, w.D * sizeof(float));
}

// x: (n, T, F) queries, ctx->aux: (n, S, G) keys/values (self: x) -> y: (n, T, D)
static void mha_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    mha_ws w;
    mha_layout(l, l->ws, &w);
    size_t T = w.T, S = w.S, D = w.D, dk = w.dk;
    const float *Xq = x, *Xkv = x;
    if (w.q_chw) jt_chw_to_rows(x, w.Xq, n, w.F, T), Xq = w.Xq;
    if (w.cross) {
        JT_CHECK(ctx && ctx->aux, "layer %s: cross_attention run without its context", l->name);
        Xkv = ctx->aux;
        if (w.kv_chw) jt_chw_to_rows(ctx->aux, w.Xkv, n, w.G, S), Xkv = w.Xkv;
    } else {
        Xkv = Xq;
    }
    jt_rows_fill(w.Q, D, l->W[P_BQ], n * T, D);
    jt_gemm_abt(n * T, D, w.F, 1.0f, Xq, w.F, l->W[P_WQ], w.F, 1.0f, w.Q, D);
    jt_rows_fill(w.K, D, l->W[P_BK], n * S, D);
    jt_gemm_abt(n * S, D, w.G, 1.0f, Xkv, w.G, l->W[P_WK], w.G, 1.0f, w.K, D);
    jt_rows_fill(w.V, D, l->W[P_BV], n * S, D);
    jt_gemm_abt(n * S, D, w.G, 1.0f, Xkv, w.G, l->W[P_WV], w.G, 1.0f, w.V, D);
    float scale = (float)(1.0 / sqrt((double)dk));
    for (size_t i = 0; i < n; i++)
        for (size_t h = 0; h < w.H; h++) {
            /* head h of sample i: columns h*dk.. of rows i*T.. (Q, O) and i*S.. (K, V) */
            const float *Qh = w.Q + i * T * D + h * dk, *Kh = w.K + i * S * D + h * dk;
            const float *Vh = w.V + i * S * D + h * dk;
            float *Ph = w.P + (i * w.H + h) * T * S, *Oh = w.O + i * T * D + h * dk;
            // Ph (T, S) = softmax(Qh Kh^T * scale); Oh (T, dk) = Ph Vh
            jt_gemm_abt(T, S, dk, scale, Qh, D, Kh, D, 0.0f, Ph, S);
            jt_softmax_rows(Ph, S, Ph, S, T, S);
            jt_gemm_ab(T, dk, S, 1.0f, Ph, S, Vh, D, 0.0f, Oh, D);
        }
    jt_rows_fill(y, D, l->W[P_BO], n * T, D);
    jt_gemm_abt(n * T, D, D, 1.0f, w.O, D, l->W[P_WO], D, 1.0f, y, D);
}

static void mha_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                         size_t n, const jt_ctx *ctx) {
    (void)y;
    mha_ws w;
    mha_layout(l, l->ws, &w);
    size_t T = w.T, S = w.S, D = w.D, dk = w.dk, F = w.F, G = w.G;
    const float *Xq = w.q_chw ? w.Xq : x;
    const float *Xkv = w.cross ? (w.kv_chw ? w.Xkv : ctx->aux) : Xq;
    /* dWo += dY^T O; dbo += sum dY; dO = dY Wo */
    jt_gemm_atb(D, D, n * T, 1.0f, dy, D, w.O, D, 1.0f, l->dW[P_WO], D);
    jt_colsum_add(l->dW[P_BO], dy, D, n * T, D);
    jt_gemm_ab(n * T, D, D, 1.0f, dy, D, l->W[P_WO], D, 0.0f, w.dO, D);
    float scale = (float)(1.0 / sqrt((double)dk));
    for (size_t i = 0; i < n; i++)
        for (size_t h = 0; h < w.H; h++) {
            size_t q0 = i * T * D + h * dk, k0 = i * S * D + h * dk;
            const float *Ph = w.P + (i * w.H + h) * T * S;
            // dA (T, S) = dOh Vh^T; dVh (S, dk) = Ph^T dOh
            jt_gemm_abt(T, S, dk, 1.0f, w.dO + q0, D, w.V + k0, D, 0.0f, w.dA, S);
            jt_gemm_atb(S, dk, T, 1.0f, Ph, S, w.dO + q0, D, 0.0f, w.dV + k0, D);
            // dS = scale * softmax'(dA); dQh (T, dk) = dS Kh; dKh (S, dk) = dS^T Qh
            jt_softmax_rows_backward(Ph, S, w.dA, S, T, S, scale);
            jt_gemm_ab(T, dk, S, 1.0f, w.dA, S, w.K + k0, D, 0.0f, w.dQ + q0, D);
            jt_gemm_atb(S, dk, T, 1.0f, w.dA, S, w.Q + q0, D, 0.0f, w.dK + k0, D);
        }
    jt_gemm_atb(D, F, n * T, 1.0f, w.dQ, D, Xq, F, 1.0f, l->dW[P_WQ], F);
    jt_colsum_add(l->dW[P_BQ], w.dQ, D, n * T, D);
    jt_gemm_atb(D, G, n * S, 1.0f, w.dK, D, Xkv, G, 1.0f, l->dW[P_WK], G);
    jt_colsum_add(l->dW[P_BK], w.dK, D, n * S, D);
    jt_gemm_atb(D, G, n * S, 1.0f, w.dV, D, Xkv, G, 1.0f, l->dW[P_WV], G);
    jt_colsum_add(l->dW[P_BV], w.dV, D, n * S, D);
    /* dXq = dQ Wq (+ dK Wk + dV Wv for self-attention) */
    if (dx) {
        float *dXq = w.q_chw ? w.dXq : dx;
        jt_gemm_ab(n * T, F, D, 1.0f, w.dQ, D, l->W[P_WQ], F, 0.0f, dXq, F);
        if (!w.cross) {
            jt_gemm_ab(n * S, G, D, 1.0f, w.dK, D, l->W[P_WK], G, 1.0f, dXq, G);
            jt_gemm_ab(n * S, G, D, 1.0f, w.dV, D, l->W[P_WV], G, 1.0f, dXq, G);
        }
        if (w.q_chw) jt_rows_to_chw(dXq, dx, n, F, T, 0);
    }
    /* cross: daux += dK Wk + dV Wv */
    if (w.cross && ctx->daux) {
        float *dXkv = w.kv_chw ? w.dXkv : ctx->daux;
        float beta = w.kv_chw ? 0.0f : 1.0f;
        jt_gemm_ab(n * S, G, D, 1.0f, w.dK, D, l->W[P_WK], G, beta, dXkv, G);
        jt_gemm_ab(n * S, G, D, 1.0f, w.dV, D, l->W[P_WV], G, 1.0f, dXkv, G);
        if (w.kv_chw) jt_rows_to_chw(dXkv, ctx->daux, n, G, S, 1);
    }
}

const jt_layer_ops jt_layer_self_attention = {
    .kind = "self_attention",
    .keys = {"heads", "units", NULL},
    .setup = mha_setup,
    .init = mha_init,
    .forward = mha_forward,
    .backward = mha_backward,
};

const jt_layer_ops jt_layer_cross_attention = {
    .kind = "cross_attention",
    .keys = {"heads", "units", "context", NULL},
    .setup = mha_setup,
    .init = mha_init,
    .forward = mha_forward,
    .backward = mha_backward,
};
