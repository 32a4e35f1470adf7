/* layers/decoder.c - attn_decoder: a GRU sequence decoder with additive attention over the
 * encoder's vectors (the captioning head of architecture 2, docs/design.md "Architectures"),
 * trained with teacher forcing and run greedily at evaluation.
 *
 * Settings: units U (required); the embedding size E and the attention size A are both U.
 * Set by the model (not the config): opt.vocab V and opt.length L; setup fails without them.
 * Input: the encoder's vectors, (T, F), or a feature map (C, H, W) read as T = H*W vectors of
 * F = C (transposed internally, as the attention kinds do), or one vector (F) as T = 1.
 * Output: (L, V) logits per sample; logits_t scores the token at position t.
 *
 * Per sample, with h_0 = 0 (a plain zero start state: the first attention query is then b_a
 * alone, and the context c_0 still gives step 0 the whole image):
 *   y_in_t = START (index V) at t = 0; else tokens[t-1] in training (teacher forcing, a -1
 *            padding token is fed as 0 "<end>"), and argmax_k logits_{t-1,k} at evaluation
 *            (greedy decoding; ctx->tokens may then be NULL)
 *   e_{t,s} = v . tanh(W_a x_s + U_a h_{t-1} + b_a)      Bahdanau et al. 2015, eq. (6) / A.1.2
 *   alpha_t = softmax_s(e_t),  c_t = sum_s alpha_{t,s} x_s                       eq. (5), (6)
 *   h_t     = GRUCell([emb(y_in_t); c_t], h_{t-1})   torch.nn.GRUCell (gates r, z, n):
 *             r = sigmoid(W_ir u + b_ir + W_hr h + b_hr),  z = sigmoid(W_iz u + b_iz + W_hz h + b_hz)
 *             n = tanh(W_in u + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h
 *   logits_t = W_o [h_t; c_t] + b_o
 * Backward is BPTT over the training (teacher-forced) forward; tokens get no gradient. dx gets
 * the gradients through the attention keys W_a x_s and through the context sums.
 *
 * Parameters ("<name>.<p>"): emb (V+1, E), W_a (A, F), U_a (A, U), b_a (A), v (A),
 * W_ih (3U, E+F), W_hh (3U, U), b_ih (3U), b_hh (3U) (PyTorch's gate order r, z, n),
 * W_o (V, U+F), b_o (V). Init: emb normal(0, 0.1), Glorot-uniform weights (per gate block for
 * the GRU), zero biases.
 *
 * The attention of each step is jt_addattn (prims.h), the step attention_pool uses too. Every
 * matrix product is a cblas call (prims.h): the keys W_a x_s of all samples and positions are one
 * sgemm; each step's query, GRU products and logits are one sgemm over the batch (strided rows
 * of the per-step buffers); the weight gradients of W_o, W_ih and W_a are one sgemm each over
 * all steps. Workspace: see dec_layout. It depends on max_n only, so it is the same for every
 * batch size; forward keeps Q, P, AL, Z, G, HN, O and IDX for backward. */
#include <limits.h>
#include <string.h>

#include "gru_cell.h"
#include "kinds.h"
#include "prims.h"

enum { P_EMB, P_WA, P_UA, P_BA, P_V, P_WIH, P_WHH, P_BIH, P_BHH, P_WO, P_BO };

typedef struct {
    size_t T, F, U, E, A, V, L;
    int chw;
    float *XT;  /* N*T*F      transposed input (feature maps only) */
    float *K;   /* N*T*A      keys W_a x_s, rows (sample, position) */
    float *Q;   /* N*L*A      queries U_a h_{t-1} + b_a, rows (sample, step) */
    float *P;   /* L*N*T*A    tanh(K + Q_t) of every step t (slot t: N*T*A), kept for backward */
    float *AL;  /* N*L*T      attention weights alpha, rows (sample, step) */
    float *Z;   /* N*L*(E+F)  GRU inputs [emb(y_in); c], rows (sample, step) */
    float *G;   /* N*L*3U     activated gates (r, z, n), rows (sample, step) */
    float *HN;  /* N*L*U      W_hn h_{t-1} + b_hn */
    float *O;   /* N*L*(U+F)  [h_t; c_t], the output layer's inputs; h_{t-1} is read from here */
    float *IDX; /* N*L        input token of each step (as float; exact below 2^24) */
    float *S;   /* N*T        scratch: scores e (forward), dL/dalpha (backward) */
    float *GH;  /* N*3U       scratch: hidden-side pre-activations / their gradient */
    float *DO;  /* N*L*(U+F)  dL/d[h_t; c_t] from the logits */
    float *DGI; /* N*L*3U     dL/d input-side pre-activations */
    float *DZ;  /* N*(E+F)    dL/d GRU input of one step */
    float *DK;  /* N*T*A      dL/dK summed over steps */
    float *DX;  /* N*T*F      dL/dx, rows (sample, position) */
    float *DQ;  /* N*A        dL/dQ_t */
    float *DH;  /* 2*N*U      running dL/dh_t and dL/dh_{t-1} */
} dec_ws;

#define JT_TAKE(ptr, count) (ptr = base ? base + off : NULL, off = jt_size_add(off, (count)))

/* Lays out the workspace from base (NULL: only sizes); returns its size in floats. */
static size_t dec_layout(const jt_layer *l, float *base, dec_ws *w) {
    size_t off = 0, N = l->max_n;
    jt_seq_view(&l->in, 1, &w->T, &w->F, &w->chw);
    w->U = w->E = w->A = (size_t)l->opt.units;
    w->V = (size_t)l->opt.vocab;
    w->L = (size_t)l->opt.length;
    size_t T = w->T, F = w->F, U = w->U, E = w->E, A = w->A, L = w->L;
    JT_TAKE(w->XT, w->chw ? N * T * F : 0);
    JT_TAKE(w->K, N * T * A);
    JT_TAKE(w->Q, N * L * A);
    JT_TAKE(w->P, L * N * T * A);
    JT_TAKE(w->AL, N * L * T);
    JT_TAKE(w->Z, N * L * (E + F));
    JT_TAKE(w->G, N * L * 3 * U);
    JT_TAKE(w->HN, N * L * U);
    JT_TAKE(w->O, N * L * (U + F));
    JT_TAKE(w->IDX, N * L);
    JT_TAKE(w->S, N * T);
    JT_TAKE(w->GH, N * 3 * U);
    JT_TAKE(w->DO, N * L * (U + F));
    JT_TAKE(w->DGI, N * L * 3 * U);
    JT_TAKE(w->DZ, N * (E + F));
    JT_TAKE(w->DK, N * T * A);
    JT_TAKE(w->DX, N * T * F);
    JT_TAKE(w->DQ, N * A);
    JT_TAKE(w->DH, 2 * N * U);
    return off;
}

static jt_status dec_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    size_t T, F;
    int chw;
    if (l->opt.units <= 0) return jt_layer_err(l, err, errlen, "setting 'units' is required");
    if (l->opt.vocab <= 0 || l->opt.length <= 0)
        return jt_layer_err(l, err, errlen,
                            "needs the vocabulary size and sequence length of a sequence target "
                            "(vocab %ld, length %ld): use it as the last layer of a head whose "
                            "target is a [N, L] token array", l->opt.vocab, l->opt.length);
    if (jt_seq_view(&l->in, 1, &T, &F, &chw) != 0) {
        char s[64];
        jt_shape_format(&l->in, s, sizeof s);
        return jt_layer_err(l, err, errlen,
                            "attn_decoder needs a sequence (T, F), a feature map (C, H, W) or a "
                            "vector (F), got %s", s);
    }
    size_t U = (size_t)l->opt.units, V = (size_t)l->opt.vocab, L = (size_t)l->opt.length;
    size_t N = l->max_n, E = U, A = U;
    /* every sgemm dimension and leading dimension must fit an int */
    size_t big = L * (U + F) > L * 3 * U ? L * (U + F) : L * 3 * U;
    if (T > INT_MAX / N / (A + F) || L > INT_MAX / N / (V + 3 * U + F + E) ||
        big > INT_MAX / N || V >= (1u << 24))
        return jt_layer_err(l, err, errlen, "sizes too large for one sgemm");
    l->out.ndim = 2;
    l->out.d[0] = L;
    l->out.d[1] = V;
    size_t s_emb[2] = {V + 1, E}, s_wa[2] = {A, F}, s_ua[2] = {A, U};
    size_t s_ih[2] = {3 * U, E + F}, s_hh[2] = {3 * U, U}, s_o[2] = {V, U + F}, U3 = 3 * U;
    jt_layer_add_param(l, p, "emb", 2, s_emb);
    jt_layer_add_param(l, p, "W_a", 2, s_wa);
    jt_layer_add_param(l, p, "U_a", 2, s_ua);
    jt_layer_add_param(l, p, "b_a", 1, &A);
    jt_layer_add_param(l, p, "v", 1, &A);
    jt_layer_add_param(l, p, "W_ih", 2, s_ih);
    jt_layer_add_param(l, p, "W_hh", 2, s_hh);
    jt_layer_add_param(l, p, "b_ih", 1, &U3);
    jt_layer_add_param(l, p, "b_hh", 1, &U3);
    jt_layer_add_param(l, p, "W_o", 2, s_o);
    jt_layer_add_param(l, p, "b_o", 1, &V);
    dec_ws w;
    l->ws_floats = dec_layout(l, NULL, &w);
    return JT_OK;
}

static void dec_init(jt_layer *l, jt_rng *rng) {
    dec_ws w;
    dec_layout(l, NULL, &w);
    size_t F = w.F, U = w.U, E = w.E, A = w.A, V = w.V;
    for (size_t k = 0; k < (V + 1) * E; k++) l->W[P_EMB][k] = 0.1f * jt_rng_normal(rng);
    jt_init_glorot_uniform(l->W[P_WA], A * F, F, A, rng);
    jt_init_glorot_uniform(l->W[P_UA], A * U, U, A, rng);
    memset(l->W[P_BA], 0, A * sizeof(float));
    jt_init_glorot_uniform(l->W[P_V], A, A, 1, rng);
    for (size_t g = 0; g < 3; g++) {
        jt_init_glorot_uniform(l->W[P_WIH] + g * U * (E + F), U * (E + F), E + F, U, rng);
        jt_init_glorot_uniform(l->W[P_WHH] + g * U * U, U * U, U, U, rng);
    }
    memset(l->W[P_BIH], 0, 3 * U * sizeof(float));
    memset(l->W[P_BHH], 0, 3 * U * sizeof(float));
    jt_init_glorot_uniform(l->W[P_WO], V * (U + F), U + F, V, rng);
    memset(l->W[P_BO], 0, V * sizeof(float));
}

/* The additive attention step of step t: X (n, T, F), weights into AL's step-t rows. */
static jt_addattn dec_step(const jt_layer *l, const dec_ws *w, const float *X, size_t n,
                           size_t t) {
    jt_addattn s = {.n = n, .T = w->T, .A = w->A, .F = w->F, .X = X, .v = l->W[P_V],
                    .P = w->P + t * l->max_n * w->T * w->A,
                    .alpha = w->AL + t * w->T, .ld_alpha = w->L * w->T, .e = w->S};
    return s;
}

/* The token fed at step t > 0 to sample i: teacher forcing or greedy (see the top). */
static size_t next_token(const jt_layer *l, const dec_ws *w, const float *y, size_t i, size_t t,
                         const jt_ctx *ctx) {
    size_t V = w->V, L = w->L;
    if (ctx->train) {
        int32_t tok = ctx->tokens[i * L + t - 1];
        JT_CHECK(tok < (int32_t)V, "layer %s: token %d of sample %zu is outside the vocabulary "
                 "of %zu", l->name, (int)tok, i, V);
        return tok < 0 ? 0 : (size_t)tok;
    }
    const float *prev = y + (i * L + t - 1) * V;
    size_t best = 0;
    for (size_t k = 1; k < V; k++)
        if (prev[k] > prev[best]) best = k;
    return best;
}

// x: (n, T, F) (or (n, F, T) for a feature map) -> y: (n, L, V)
static void dec_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    dec_ws w;
    dec_layout(l, l->ws, &w);
    JT_CHECK(n <= l->max_n, "layer %s: batch %zu > max_n %zu", l->name, n, l->max_n);
    JT_CHECK(!ctx->train || ctx->tokens, "layer %s: training needs ctx->tokens", l->name);
    size_t T = w.T, F = w.F, U = w.U, E = w.E, A = w.A, V = w.V, L = w.L, U3 = 3 * U;
    size_t ldZ = L * (E + F), ldO = L * (U + F), ldG = L * U3;
    const float *X = x;
    if (w.chw) {
        jt_chw_to_rows(x, w.XT, n, F, T);
        X = w.XT;
    }
    /* K (n*T, A) = X W_a^T: the keys of every sample and position at once */
    jt_gemm_abt(n * T, A, F, 1.0f, X, F, l->W[P_WA], F, 0.0f, w.K, A);
    for (size_t t = 0; t < L; t++) {
        const float *hp = t ? w.O + (t - 1) * (U + F) : NULL; /* h_{t-1}: (n, U), stride ldO */
        /* Q_t (n, A) = h_{t-1} U_a^T + b_a; with h_0 = 0 it is b_a */
        jt_rows_fill(w.Q + t * A, L * A, l->W[P_BA], n, A);
        if (hp) jt_gemm_abt(n, A, U, 1.0f, hp, ldO, l->W[P_UA], U, 1.0f, w.Q + t * A, L * A);
        /* alpha_t = softmax_s(v . tanh(K_s + Q_t)); c_t (F) = X_i^T alpha_t into Z_t = [emb; c] */
        jt_addattn s = dec_step(l, &w, X, n, t);
        jt_addattn_forward(&s, w.K, w.Q + t * A, L * A, w.Z + t * (E + F) + E, ldZ);
        for (size_t i = 0; i < n; i++) {
            /* O_t gets c_t after h_t; Z_t gets the embedding of the step's input token */
            float *z = w.Z + (i * L + t) * (E + F);
            memcpy(w.O + (i * L + t) * (U + F) + U, z + E, F * sizeof(float));
            size_t tok = t == 0 ? V : next_token(l, &w, y, i, t, ctx);
            w.IDX[i * L + t] = (float)tok;
            memcpy(z, l->W[P_EMB] + tok * E, E * sizeof(float));
        }
        /* input side G_t (n, 3U) = Z_t W_ih^T + b_ih; hidden side GH = h_{t-1} W_hh^T + b_hh */
        float *g0 = w.G + t * U3;
        jt_rows_fill(g0, ldG, l->W[P_BIH], n, U3);
        jt_gemm_abt(n, U3, E + F, 1.0f, w.Z + t * (E + F), ldZ, l->W[P_WIH], E + F, 1.0f, g0, ldG);
        jt_rows_fill(w.GH, U3, l->W[P_BHH], n, U3);
        if (hp) jt_gemm_abt(n, U3, U, 1.0f, hp, ldO, l->W[P_WHH], U, 1.0f, w.GH, U3);
        for (size_t i = 0; i < n; i++) {
            float *g = w.G + (i * L + t) * U3, *hn = w.HN + (i * L + t) * U;
            jt_gru_cell_forward(U, g, w.GH + i * U3, hp ? hp + i * ldO : NULL, hn,
                                w.O + (i * L + t) * (U + F));
        }
        /* logits_t (n, V) = O_t W_o^T + b_o, written into y's step-t rows */
        jt_rows_fill(y + t * V, L * V, l->W[P_BO], n, V);
        jt_gemm_abt(n, V, U + F, 1.0f, w.O + t * (U + F), ldO, l->W[P_WO], U + F, 1.0f, y + t * V,
                    L * V);
    }
}

// dy: (n, L, V) -> dx: (n, T, F) (or (n, F, T)); BPTT over the teacher-forced forward
static void dec_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                         size_t n, const jt_ctx *ctx) {
    (void)y, (void)ctx;
    dec_ws w;
    dec_layout(l, l->ws, &w);
    size_t T = w.T, F = w.F, U = w.U, E = w.E, A = w.A, V = w.V, L = w.L, U3 = 3 * U;
    size_t ldO = L * (U + F), ldG = L * U3;
    const float *X = w.chw ? w.XT : x;
    /* dL/dx in rows (sample, position): straight into dx for a sequence, else transposed last;
     * none at all when nobody needs dx */
    float *DX = dx ? (w.chw ? w.DX : dx) : NULL;
    /* output layer, all steps at once: dW_o += dy^T O; db_o += sum dy; DO = dy W_o */
    jt_gemm_atb(V, U + F, n * L, 1.0f, dy, V, w.O, U + F, 1.0f, l->dW[P_WO], U + F);
    jt_colsum_add(l->dW[P_BO], dy, V, n * L, V);
    jt_gemm_ab(n * L, U + F, V, 1.0f, dy, V, l->W[P_WO], U + F, 0.0f, w.DO, U + F);
    memset(w.DK, 0, n * T * A * sizeof(float));
    if (DX) memset(DX, 0, n * T * F * sizeof(float));
    float *dh = w.DH, *dhp = w.DH + n * U;
    memset(dh, 0, n * U * sizeof(float));
    for (size_t t = L; t-- > 0;) {
        const float *hp = t ? w.O + (t - 1) * (U + F) : NULL;
        /* GRU cell: dh_t -> input-side DGI_t, hidden-side GH, dh_{t-1} (direct part) */
        for (size_t i = 0; i < n; i++) {
            const float *g = w.G + (i * L + t) * U3, *hn = w.HN + (i * L + t) * U;
            const float *dot = w.DO + (i * L + t) * (U + F);
            float *d = dh + i * U, *dgi = w.DGI + (i * L + t) * U3, *dgh = w.GH + i * U3;
            float *dp = dhp + i * U;
            for (size_t u = 0; u < U; u++) d[u] += dot[u];
            jt_gru_cell_backward(U, g, hn, hp ? hp + i * ldO : NULL, d, dgi, dgh, dp);
        }
        jt_colsum_add(l->dW[P_BHH], w.GH, U3, n, U3);
        if (hp) {
            jt_gemm_atb(U3, U, n, 1.0f, w.GH, U3, hp, ldO, 1.0f, l->dW[P_WHH], U);
            jt_gemm_ab(n, U, U3, 1.0f, w.GH, U3, l->W[P_WHH], U, 1.0f, dhp, U);
        }
        /* DZ (n, E+F) = DGI_t W_ih: the embedding's and the context's gradients */
        jt_gemm_ab(n, E + F, U3, 1.0f, w.DGI + t * U3, ldG, l->W[P_WIH], E + F, 0.0f, w.DZ, E + F);
        for (size_t i = 0; i < n; i++) {
            float *dz = w.DZ + i * (E + F), *de = l->dW[P_EMB] + (size_t)w.IDX[i * L + t] * E;
            const float *dot = w.DO + (i * L + t) * (U + F) + U;
            for (size_t k = 0; k < E; k++) de[k] += dz[k];
            float *dc = dz + E; /* dL/dc_t = logits' part + GRU input's part */
            for (size_t f = 0; f < F; f++) dc[f] += dot[f];
        }
        /* the attention step: DX += alpha dc^T, dv, DK += dL/dK, DQ = dL/dQ_t */
        jt_addattn s = dec_step(l, &w, X, n, t);
        jt_addattn_backward(&s, w.DZ + E, E + F, DX, 1, l->dW[P_V], w.DK, 1, w.DQ);
        /* Q_t = h_{t-1} U_a^T + b_a */
        jt_colsum_add(l->dW[P_BA], w.DQ, A, n, A);
        if (hp) {
            jt_gemm_atb(A, U, n, 1.0f, w.DQ, A, hp, ldO, 1.0f, l->dW[P_UA], U);
            jt_gemm_ab(n, U, A, 1.0f, w.DQ, A, l->W[P_UA], U, 1.0f, dhp, U);
        }
        float *tmp = dh;
        dh = dhp;
        dhp = tmp;
    }
    /* all steps at once: dW_ih += DGI^T Z; db_ih += sum DGI; dW_a += DK^T X; DX += DK W_a */
    jt_gemm_atb(U3, E + F, n * L, 1.0f, w.DGI, U3, w.Z, E + F, 1.0f, l->dW[P_WIH], E + F);
    jt_colsum_add(l->dW[P_BIH], w.DGI, U3, n * L, U3);
    jt_gemm_atb(A, F, n * T, 1.0f, w.DK, A, X, F, 1.0f, l->dW[P_WA], F);
    if (!DX) return;
    jt_gemm_ab(n * T, F, A, 1.0f, w.DK, A, l->W[P_WA], F, 1.0f, DX, F);
    if (w.chw) jt_rows_to_chw(DX, dx, n, F, T, 0);
}

const jt_layer_ops jt_layer_attn_decoder = {
    .kind = "attn_decoder",
    .keys = {"units", NULL},
    .setup = dec_setup,
    .init = dec_init,
    .forward = dec_forward,
    .backward = dec_backward,
};
