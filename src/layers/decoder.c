/* layers/decoder.c - attn_decoder: a GRU sequence decoder with additive attention over the
 * encoder's vectors (the captioning head of DESIGN.md, architecture 2), trained with teacher
 * forcing and run greedily at evaluation.
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
 * Every matrix product is a cblas call: the keys W_a x_s of all samples and positions are one
 * sgemm; each step's query, GRU products and logits are one sgemm over the batch (strided rows
 * of the per-step buffers); the weight gradients of W_o, W_ih and W_a are one sgemm each over
 * all steps. Workspace: see dec_layout. It depends on max_n only, so it is the same for every
 * batch size; forward keeps Q, AL, Z, G, HN, O and IDX for backward. */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "gru_cell.h"
#include "jtrain/mathx.h"
#include "kinds.h"

enum { P_EMB, P_WA, P_UA, P_BA, P_V, P_WIH, P_WHH, P_BIH, P_BHH, P_WO, P_BO };

typedef struct {
    size_t T, F, U, E, A, V, L;
    int chw;
    float *XT;  /* N*T*F      transposed input (feature maps only) */
    float *K;   /* N*T*A      keys W_a x_s, rows (sample, position) */
    float *Q;   /* N*L*A      queries U_a h_{t-1} + b_a, rows (sample, step) */
    float *P;   /* N*T*A      scratch: tanh(K + Q_t) of one step, then its gradient */
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

/* Reads shape s as T vectors of F; chw = 1 for a (C, H, W) feature map. 0 when accepted. */
static int dec_seq_view(const jt_shape *s, size_t *T, size_t *F, int *chw) {
    *chw = 0;
    if (s->ndim == 1) *T = 1, *F = s->d[0];
    else if (s->ndim == 2) *T = s->d[0], *F = s->d[1];
    else if (s->ndim == 3) *T = s->d[1] * s->d[2], *F = s->d[0], *chw = 1;
    else return -1;
    return *T > 0 && *F > 0 ? 0 : -1;
}

#define JT_TAKE(ptr, count) (ptr = base ? base + off : NULL, off += (count))

/* Lays out the workspace from base (NULL: only sizes); returns its size in floats. */
static size_t dec_layout(const jt_layer *l, float *base, dec_ws *w) {
    size_t off = 0, N = l->max_n;
    dec_seq_view(&l->in, &w->T, &w->F, &w->chw);
    w->U = w->E = w->A = (size_t)l->opt.units;
    w->V = (size_t)l->opt.vocab;
    w->L = (size_t)l->opt.length;
    size_t T = w->T, F = w->F, U = w->U, E = w->E, A = w->A, L = w->L;
    JT_TAKE(w->XT, w->chw ? N * T * F : 0);
    JT_TAKE(w->K, N * T * A);
    JT_TAKE(w->Q, N * L * A);
    JT_TAKE(w->P, N * T * A);
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
    if (dec_seq_view(&l->in, &T, &F, &chw) != 0) {
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

// C (m, k_out) (+)= A (m, k_in) (row stride lda) B^T with B (k_out, k_in); C row stride ldc
static void gemm_abt(const float *a, size_t lda, const float *b, float *c, size_t ldc, size_t m,
                     size_t k_in, size_t k_out, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)k_out, (int)k_in, 1.0f, a,
                (int)lda, b, (int)k_in, beta, c, (int)ldc);
}

// C (m, k_in) (+)= D (m, k_out) (row stride ldd) B with B (k_out, k_in); C row stride ldc
static void gemm_ab(const float *d, size_t ldd, const float *b, float *c, size_t ldc, size_t m,
                    size_t k_in, size_t k_out, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)k_in, (int)k_out, 1.0f, d,
                (int)ldd, b, (int)k_in, beta, c, (int)ldc);
}

// dW (k_out, k_in) += D (m, k_out)^T A (m, k_in); D, A with row strides ldd, lda
static void gemm_dw(const float *d, size_t ldd, const float *a, size_t lda, float *dW, size_t m,
                    size_t k_in, size_t k_out) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k_out, (int)k_in, (int)m, 1.0f, d,
                (int)ldd, a, (int)lda, 1.0f, dW, (int)k_in);
}

// rows of y (m, cols), row stride ld, = b
static void fill_rows(float *y, size_t ld, const float *b, size_t m, size_t cols) {
    for (size_t r = 0; r < m; r++) memcpy(y + r * ld, b, cols * sizeof(float));
}

// db (cols) += column sums of d (m, cols), row stride ld
static void add_colsum(float *db, const float *d, size_t ld, size_t m, size_t cols) {
    for (size_t r = 0; r < m; r++)
        for (size_t c = 0; c < cols; c++) db[c] += d[r * ld + c];
}


/* P (n, T, A) = tanh(K + Q_t) with Q_t the step-t rows of Q (n, L, A). */
static void attn_hidden(const dec_ws *w, size_t n, size_t t) {
    size_t T = w->T, A = w->A;
    for (size_t i = 0; i < n; i++) {
        const float *q = w->Q + (i * w->L + t) * A;
        for (size_t s = 0; s < T; s++) {
            const float *k = w->K + (i * T + s) * A;
            float *pp = w->P + (i * T + s) * A;
            for (size_t a = 0; a < A; a++) pp[a] = jt_tanhf(k[a] + q[a]);
        }
    }
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
        for (size_t i = 0; i < n; i++)
            for (size_t f = 0; f < F; f++)
                for (size_t s = 0; s < T; s++) w.XT[(i * T + s) * F + f] = x[(i * F + f) * T + s];
        X = w.XT;
    }
    /* K (n*T, A) = X W_a^T: the keys of every sample and position at once */
    gemm_abt(X, F, l->W[P_WA], w.K, A, n * T, F, A, 0.0f);
    for (size_t t = 0; t < L; t++) {
        const float *hp = t ? w.O + (t - 1) * (U + F) : NULL; /* h_{t-1}: (n, U), stride ldO */
        /* Q_t (n, A) = h_{t-1} U_a^T + b_a; with h_0 = 0 it is b_a */
        fill_rows(w.Q + t * A, L * A, l->W[P_BA], n, A);
        if (hp) gemm_abt(hp, ldO, l->W[P_UA], w.Q + t * A, L * A, n, U, A, 1.0f);
        /* e (n, T) = tanh(K + Q_t) v; alpha_t = softmax over each sample's T positions */
        attn_hidden(&w, n, t);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)(n * T), (int)A, 1.0f, w.P, (int)A,
                    l->W[P_V], 1, 0.0f, w.S, 1);
        for (size_t i = 0; i < n; i++) {
            const float *e = w.S + i * T;
            float *al = w.AL + (i * L + t) * T, m = e[0];
            for (size_t s = 1; s < T; s++) m = e[s] > m ? e[s] : m;
            double sum = 0;
            for (size_t s = 0; s < T; s++) sum += (al[s] = expf(e[s] - m));
            float inv = (float)(1.0 / sum);
            for (size_t s = 0; s < T; s++) al[s] *= inv;
            /* Z_t = [emb(y_in); c_t] with c_t (F) = X_i^T alpha; O_t gets c_t after h_t */
            float *z = w.Z + (i * L + t) * (E + F);
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)T, (int)F, 1.0f, X + i * T * F, (int)F,
                        al, 1, 0.0f, z + E, 1);
            memcpy(w.O + (i * L + t) * (U + F) + U, z + E, F * sizeof(float));
            size_t tok = t == 0 ? V : next_token(l, &w, y, i, t, ctx);
            w.IDX[i * L + t] = (float)tok;
            memcpy(z, l->W[P_EMB] + tok * E, E * sizeof(float));
        }
        /* input side G_t (n, 3U) = Z_t W_ih^T + b_ih; hidden side GH = h_{t-1} W_hh^T + b_hh */
        float *g0 = w.G + t * U3;
        fill_rows(g0, ldG, l->W[P_BIH], n, U3);
        gemm_abt(w.Z + t * (E + F), ldZ, l->W[P_WIH], g0, ldG, n, E + F, U3, 1.0f);
        fill_rows(w.GH, U3, l->W[P_BHH], n, U3);
        if (hp) gemm_abt(hp, ldO, l->W[P_WHH], w.GH, U3, n, U, U3, 1.0f);
        for (size_t i = 0; i < n; i++) {
            float *g = w.G + (i * L + t) * U3, *hn = w.HN + (i * L + t) * U;
            jt_gru_cell_forward(U, g, w.GH + i * U3, hp ? hp + i * ldO : NULL, hn,
                                w.O + (i * L + t) * (U + F));
        }
        /* logits_t (n, V) = O_t W_o^T + b_o, written into y's step-t rows */
        fill_rows(y + t * V, L * V, l->W[P_BO], n, V);
        gemm_abt(w.O + t * (U + F), ldO, l->W[P_WO], y + t * V, L * V, n, U + F, V, 1.0f);
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
    const float *v = l->W[P_V];
    /* output layer, all steps at once: dW_o += dy^T O; db_o += sum dy; DO = dy W_o */
    gemm_dw(dy, V, w.O, U + F, l->dW[P_WO], n * L, U + F, V);
    add_colsum(l->dW[P_BO], dy, V, n * L, V);
    gemm_ab(dy, V, l->W[P_WO], w.DO, U + F, n * L, U + F, V, 0.0f);
    memset(w.DK, 0, n * T * A * sizeof(float));
    memset(w.DX, 0, n * T * F * sizeof(float));
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
        add_colsum(l->dW[P_BHH], w.GH, U3, n, U3);
        if (hp) {
            gemm_dw(w.GH, U3, hp, ldO, l->dW[P_WHH], n, U, U3);
            gemm_ab(w.GH, U3, l->W[P_WHH], dhp, U, n, U, U3, 1.0f);
        }
        /* DZ (n, E+F) = DGI_t W_ih: the embedding's and the context's gradients */
        gemm_ab(w.DGI + t * U3, ldG, l->W[P_WIH], w.DZ, E + F, n, E + F, U3, 0.0f);
        for (size_t i = 0; i < n; i++) {
            float *dz = w.DZ + i * (E + F), *de = l->dW[P_EMB] + (size_t)w.IDX[i * L + t] * E;
            const float *dot = w.DO + (i * L + t) * (U + F) + U;
            for (size_t k = 0; k < E; k++) de[k] += dz[k];
            float *dc = dz + E; /* dL/dc_t = logits' part + GRU input's part */
            for (size_t f = 0; f < F; f++) dc[f] += dot[f];
            /* c = X_i^T alpha: dalpha (T) = X_i dc; dX_i += alpha dc^T */
            const float *al = w.AL + (i * L + t) * T;
            float *da = w.S + i * T;
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)T, (int)F, 1.0f, X + i * T * F, (int)F,
                        dc, 1, 0.0f, da, 1);
            cblas_sger(CblasRowMajor, (int)T, (int)F, 1.0f, al, 1, dc, 1, w.DX + i * T * F,
                       (int)F);
            /* softmax Jacobian: de_s = alpha_s (dalpha_s - sum_r alpha_r dalpha_r) */
            double sum = 0;
            for (size_t s = 0; s < T; s++) sum += (double)al[s] * da[s];
            for (size_t s = 0; s < T; s++) da[s] = al[s] * (da[s] - (float)sum);
        }
        /* e = tanh(K + Q_t) v: dv += P^T de; P <- dL/d(K + Q_t) = de v (1 - P^2) */
        attn_hidden(&w, n, t);
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)(n * T), (int)A, 1.0f, w.P, (int)A, w.S, 1,
                    1.0f, l->dW[P_V], 1);
        memset(w.DQ, 0, n * A * sizeof(float));
        for (size_t i = 0; i < n; i++) {
            float *dq = w.DQ + i * A;
            for (size_t s = 0; s < T; s++) {
                float de = w.S[i * T + s];
                float *pp = w.P + (i * T + s) * A, *dk = w.DK + (i * T + s) * A;
                for (size_t a = 0; a < A; a++) {
                    float d = de * v[a] * (1.0f - pp[a] * pp[a]);
                    dk[a] += d;
                    dq[a] += d;
                }
            }
        }
        /* Q_t = h_{t-1} U_a^T + b_a */
        add_colsum(l->dW[P_BA], w.DQ, A, n, A);
        if (hp) {
            gemm_dw(w.DQ, A, hp, ldO, l->dW[P_UA], n, U, A);
            gemm_ab(w.DQ, A, l->W[P_UA], dhp, U, n, U, A, 1.0f);
        }
        float *tmp = dh;
        dh = dhp;
        dhp = tmp;
    }
    /* all steps at once: dW_ih += DGI^T Z; db_ih += sum DGI; dW_a += DK^T X; DX += DK W_a */
    gemm_dw(w.DGI, U3, w.Z, E + F, l->dW[P_WIH], n * L, E + F, U3);
    add_colsum(l->dW[P_BIH], w.DGI, U3, n * L, U3);
    gemm_dw(w.DK, A, X, F, l->dW[P_WA], n * T, F, A);
    if (!dx) return;
    gemm_ab(w.DK, A, l->W[P_WA], w.DX, F, n * T, F, A, 1.0f);
    if (w.chw) {
        for (size_t i = 0; i < n; i++)
            for (size_t f = 0; f < F; f++)
                for (size_t s = 0; s < T; s++) dx[(i * F + f) * T + s] = w.DX[(i * T + s) * F + f];
    } else {
        memcpy(dx, w.DX, n * T * F * sizeof(float));
    }
}

const jt_layer_ops jt_layer_attn_decoder = {
    .kind = "attn_decoder",
    .keys = {"units", NULL},
    .setup = dec_setup,
    .init = dec_init,
    .forward = dec_forward,
    .backward = dec_backward,
};
