/* layers/lstm.c - long short-term memory over a time-major sequence (torch.nn.LSTM semantics,
 * one layer, unidirectional, batch_first, h0 = c0 = 0):
 *
 *   i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
 *   f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
 *   g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
 *   o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
 *   c_t = f_t * c_{t-1} + i_t * g_t
 *   h_t = o_t * tanh(c_t)
 *
 * Settings: units U (required), return_sequences (default false).
 * Input (T, F) -> output (U) (the last state h_T) or (T, U) with return_sequences.
 * Parameters, in PyTorch's layout (gate blocks stacked in the order i, f, g, o):
 *   "<name>.W_ih" (4U, F), "<name>.W_hh" (4U, U), "<name>.b_ih" (4U), "<name>.b_hh" (4U).
 * Init: Glorot-uniform weights (per gate block), biases zero except the forget-gate block of
 * b_ih, which starts at 1.0 (Jozefowicz et al. 2015) so that early training keeps memory.
 *
 * Products: forward, the input side of all samples and steps is one sgemm ((n*T, F) x (F, 4U));
 * each step adds h_{t-1} W_hh^T into its rows of that matrix with one sgemm over the batch.
 * Backward, the step loop does only what the recurrence needs (the element-wise cell and
 * dh_{t-1} = dg_t W_hh, one sgemm per step, plus the bias sums of the step's rows while they are
 * in cache) and keeps every step's gate gradients, so dW_hh, dW_ih and dx are one sgemm each
 * over all steps afterwards. The element-wise steps are vectorised (JT_HOT) loops over each
 * row's U units.
 * Workspace (floats, for max_n samples; rows (sample, step)):
 *   G    n*T*4U    pre-activations, then the activated gates (i, f, g, o)
 *   DG   n*T*4U    gradient w.r.t. the pre-activations
 *   C    n*T*U     c_t
 *   H    n*T*U     h_{t-1}: row (i, t) is the state step t starts from, row (i, 0) = 0 (the
 *                  last state h_T goes straight to y: backward does not need it)
 *   DH   2*n*U     dL/dh_{t-1} of the current step and of the next one
 *   DC   n*U       running dL/dc_t */
#include <string.h>

#include "jtrain/mathx.h"
#include "kinds.h"
#include "prims.h"
#include "simd.h"

typedef struct {
    size_t T, F, U;
    float *G, *DG, *C, *H, *DH, *DC;
} lstm_ws;

/* The layout depends on max_n only, so it is the same for every batch size. */
static lstm_ws lstm_layout(const jt_layer *l) {
    lstm_ws w;
    w.T = l->in.d[0];
    w.F = l->in.d[1];
    w.U = (size_t)l->opt.units;
    size_t T = w.T, U = w.U, n = l->max_n;
    w.G = l->ws;
    w.DG = w.G + n * T * 4 * U;
    w.C = w.DG + n * T * 4 * U;
    w.H = w.C + n * T * U;
    w.DH = w.H + n * T * U;
    w.DC = w.DH + 2 * n * U;
    return w;
}

static jt_status lstm_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    jt_status st = jt_rnn_setup(l, p, 4, err, errlen);
    if (st != JT_OK) return st;
    size_t T = l->in.d[0], U = (size_t)l->opt.units, n = l->max_n;
    l->ws_floats = n * T * (4 + 4 + 1 + 1) * U + 2 * n * U + n * U;
    return JT_OK;
}

static void lstm_init(jt_layer *l, jt_rng *rng) {
    size_t F = l->in.d[1], U = (size_t)l->opt.units;
    for (size_t g = 0; g < 4; g++) {
        jt_init_glorot_uniform(l->W[0] + g * U * F, U * F, F, U, rng);
        jt_init_glorot_uniform(l->W[1] + g * U * U, U * U, U, U, rng);
    }
    memset(l->W[2], 0, 4 * U * sizeof(float));
    memset(l->W[3], 0, 4 * U * sizeof(float));
    for (size_t u = 0; u < U; u++) l->W[2][U + u] = 1.0f;
}

/* ---- the element-wise steps. The row functions inline into each JT_HOT clone, where their
 * has_* flags are constants: each variant is its own branch-free vector loop ---- */
#define ROW_INLINE static inline __attribute__((always_inline))

// g: (4U) pre-activations -> gates (i, f, g, o); c0: (U) c_{t-1} if has_c0; c1, h1: (U) out
ROW_INLINE void cell_fwd_row(size_t U, float *restrict g, const float *restrict c0,
                             float *restrict c1, float *restrict h1, int has_c0) {
    for (size_t u = 0; u < U; u++) {
        float ig = jt_sigmoidf(g[u]), fg = jt_sigmoidf(g[U + u]);
        float gg = jt_tanhf(g[2 * U + u]), og = jt_sigmoidf(g[3 * U + u]);
        g[u] = ig;
        g[U + u] = fg;
        g[2 * U + u] = gg;
        g[3 * U + u] = og;
        float c = has_c0 ? fg * c0[u] + ig * gg : ig * gg;
        c1[u] = c;
        h1[u] = og * jt_tanhf(c);
    }
}

// n rows: g (n, 4U) ld ldg; c0 (n, U) ld ldc or NULL for zeros; c1 (n, U) ld ldc; h1 ld ldh
JT_HOT static void cell_forward(size_t n, size_t U, float *g, size_t ldg, const float *c0,
                                float *c1, size_t ldc, float *h1, size_t ldh) {
    for (size_t i = 0; i < n; i++) {
        if (c0) cell_fwd_row(U, g + i * ldg, c0 + i * ldc, c1 + i * ldc, h1 + i * ldh, 1);
        else cell_fwd_row(U, g + i * ldg, NULL, c1 + i * ldc, h1 + i * ldh, 0);
    }
}

/* dh = dL/dh_t, dc = dL/dc_t from step t + 1 (zero at the last step: has_dc = 0), tc = tanh(c_t):
 *   dc' = dc + dh o (1 - tc^2);  da_i = dc' g i (1 - i),  da_f = dc' c_{t-1} f (1 - f),
 *   da_g = dc' i (1 - g^2),  da_o = dh tc o (1 - o);  dL/dc_{t-1} = dc' f. */
ROW_INLINE void cell_bwd_row(size_t U, const float *restrict g, const float *restrict c0,
                             const float *restrict c1, const float *restrict dh, float *restrict dc,
                             float *restrict dg, int has_c0, int has_dc) {
    for (size_t u = 0; u < U; u++) {
        float ig = g[u], fg = g[U + u], gg = g[2 * U + u], og = g[3 * U + u];
        float tc = jt_tanhf(c1[u]);
        float dct = dh[u] * og * (1.0f - tc * tc);
        float d = has_dc ? dc[u] + dct : dct;
        dg[u] = d * gg * ig * (1.0f - ig);
        dg[U + u] = has_c0 ? d * c0[u] * fg * (1.0f - fg) : 0.0f;
        dg[2 * U + u] = d * ig * (1.0f - gg * gg);
        dg[3 * U + u] = dh[u] * tc * og * (1.0f - og);
        dc[u] = d * fg;
    }
}

// n rows: g, dg (n, 4U) ld ldg; c0 (or NULL), c1 (n, U) ld ldc; dh (n, U) ld ldh; dc (n, U)
JT_HOT static void cell_backward(size_t n, size_t U, const float *g, float *dg, size_t ldg,
                                 const float *c0, const float *c1, size_t ldc, const float *dh,
                                 size_t ldh, float *dc, int has_dc) {
    for (size_t i = 0; i < n; i++) {
        const float *gi = g + i * ldg, *c1i = c1 + i * ldc, *dhi = dh + i * ldh;
        float *dgi = dg + i * ldg, *dci = dc + i * U;
        if (c0 && has_dc) cell_bwd_row(U, gi, c0 + i * ldc, c1i, dhi, dci, dgi, 1, 1);
        else if (c0) cell_bwd_row(U, gi, c0 + i * ldc, c1i, dhi, dci, dgi, 1, 0);
        else if (has_dc) cell_bwd_row(U, gi, NULL, c1i, dhi, dci, dgi, 0, 1);
        else cell_bwd_row(U, gi, NULL, c1i, dhi, dci, dgi, 0, 0);
    }
}

// x: (n, T, F) -> y: (n, U) or (n, T, U)
static void lstm_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    lstm_ws w = lstm_layout(l);
    size_t T = w.T, F = w.F, U = w.U, U4 = 4 * U;
    const float *W_ih = l->W[0], *W_hh = l->W[1], *b_ih = l->W[2], *b_hh = l->W[3];
    /* G (n*T, 4U) = X W_ih^T + b_ih + b_hh */
    for (size_t k = 0; k < U4; k++) w.G[k] = b_ih[k] + b_hh[k];
    jt_rows_fill(w.G + U4, U4, w.G, n * T - 1, U4);
    jt_gemm_abt(n * T, U4, F, 1.0f, x, F, W_ih, F, 1.0f, w.G, U4);
    for (size_t i = 0; i < n; i++) memset(w.H + i * T * U, 0, U * sizeof(float)); /* h_{-1} */
    for (size_t t = 0; t < T; t++) {
        /* rows (i, t) of G (stride T*4U) += h_{t-1} W_hh^T (h_{t-1}: rows (i, t) of H) */
        if (t > 0)
            jt_gemm_abt(n, U4, U, 1.0f, w.H + t * U, T * U, W_hh, U, 1.0f, w.G + t * U4, T * U4);
        /* h_t: into H's rows (i, t + 1), the last one into y's rows */
        int last = t + 1 == T, rs = l->opt.return_sequences;
        float *h1 = !last ? w.H + (t + 1) * U : rs ? y + t * U : y;
        cell_forward(n, U, w.G + t * U4, T * U4, t ? w.C + (t - 1) * U : NULL, w.C + t * U,
                     T * U, h1, !last || rs ? T * U : U);
    }
    if (l->opt.return_sequences) /* y's rows (i, t) = h_t = H's rows (i, t + 1), t < T - 1 */
        for (size_t i = 0; i < n; i++)
            memcpy(y + i * T * U, w.H + (i * T + 1) * U, (T - 1) * U * sizeof(float));
}

// dy: (n, U) or (n, T, U) -> dx: (n, T, F); BPTT through the saved gates and cell states
static void lstm_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                          size_t n, const jt_ctx *ctx) {
    (void)y, (void)ctx;
    lstm_ws w = lstm_layout(l);
    size_t T = w.T, F = w.F, U = w.U, U4 = 4 * U;
    const float *W_ih = l->W[0], *W_hh = l->W[1];
    float *dW_ih = l->dW[0], *dW_hh = l->dW[1], *db_ih = l->dW[2], *db_hh = l->dW[3];
    int rs = l->opt.return_sequences;
    /* dL/dh_t of the step: dy itself at the last step, then DH[t % 2] (written by step t + 1)
     * plus dy's step-t rows */
    for (size_t t = T; t-- > 0;) {
        size_t ldd;
        const float *d = jt_rnn_step_grad(dy, w.DH, t, T, n, U, rs, &ldd);
        float *dg = w.DG + t * U4;
        cell_backward(n, U, w.G + t * U4, dg, T * U4, t ? w.C + (t - 1) * U : NULL, w.C + t * U,
                      T * U, d, ldd, w.DC, t + 1 < T);
        /* the bias gradients from the step's rows while they are in cache */
        jt_colsum_add(db_ih, dg, T * U4, n, U4);
        jt_colsum_add(db_hh, dg, T * U4, n, U4);
        /* dL/dh_{t-1} (n, U) = dg_t W_hh (dg_t: rows (i, t) of DG) */
        if (t)
            jt_gemm_ab(n, U, U4, 1.0f, dg, T * U4, W_hh, U, 0.0f, w.DH + ((t + 1) % 2) * n * U, U);
    }
    /* all steps at once (DG, H, X rows (sample, step)): dW_hh (4U, U) += DG^T H;
     * dW_ih (4U, F) += DG^T X; dx (n*T, F) = DG W_ih */
    size_t nT = n * T;
    jt_gemm_atb(U4, U, nT, 1.0f, w.DG, U4, w.H, U, 1.0f, dW_hh, U);
    jt_gemm_atb(U4, F, nT, 1.0f, w.DG, U4, x, F, 1.0f, dW_ih, F);
    if (dx) jt_gemm_ab(nT, F, U4, 1.0f, w.DG, U4, W_ih, F, 0.0f, dx, F);
}

const jt_layer_ops jt_layer_lstm = {
    .kind = "lstm",
    .keys = {"units", "return_sequences", NULL},
    .setup = lstm_setup,
    .init = lstm_init,
    .forward = lstm_forward,
    .backward = lstm_backward,
};
