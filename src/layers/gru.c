/* layers/gru.c - gated recurrent unit over a time-major sequence (torch.nn.GRU semantics,
 * one layer, unidirectional, batch_first, h0 = 0):
 *
 *   r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
 *   z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
 *   n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
 *   h_t = (1 - z_t) * n_t + z_t * h_{t-1}
 *
 * Settings: units U (required), return_sequences (default false).
 * Input (T, F) -> output (U) (the last state h_T) or (T, U) with return_sequences.
 * Parameters, in PyTorch's layout (gate blocks stacked in the order r, z, n):
 *   "<name>.W_ih" (3U, F), "<name>.W_hh" (3U, U), "<name>.b_ih" (3U), "<name>.b_hh" (3U).
 * Init: Glorot-uniform weights (W_hh per gate block with fan_in = fan_out = U), zero biases.
 *
 * Products: forward, the input side of all samples and steps is one sgemm ((n*T, F) x (F, 3U))
 * and each step one sgemm h_{t-1} W_hh^T over the batch. Backward, the step loop does only what
 * the recurrence needs (the element-wise cell and dh_{t-1} += dgh_t W_hh, one sgemm per step,
 * plus the bias sums of the step's rows while they are in cache); it keeps every step's gate
 * gradients, so dW_hh, dW_ih and dx are each one sgemm over all steps afterwards (two for the
 * input side, which reads the n block's gradient from its own columns). The element-wise cell
 * is gru_cell.c's vectorised step.
 * Workspace (floats, for max_n samples; rows (sample, step) unless said):
 *   G    n*T*3U  input-side pre-activations, then the activated gates (r, z, n)
 *   HN   n*T*U   W_hn h_{t-1} + b_hn
 *   H    n*T*U   h_{t-1}: row (i, t) is the state step t starts from, row (i, 0) = 0 (the last
 *                state h_T goes straight to y: backward does not need it)
 *   DG   n*T*4U  gate gradients (da_r, da_z, da_n * r | da_n): the first 3U are dL/d(W_hh h +
 *                b_hh), and (da_r, da_z, da_n) = dL/d(W_ih x + b_ih)
 *   HG   n*3U    one step's W_hh h_{t-1} + b_hh
 *   DH   2*n*U   dL/dh_{t-1} of the current step and of the next one */
#include <string.h>

#include "gru_cell.h"
#include "kinds.h"
#include "prims.h"
#include "simd.h"

typedef struct {
    size_t T, F, U;
    float *G, *HN, *H, *DG, *HG, *DH;
} gru_ws;

/* The layout depends on max_n only, so it is the same for every batch size. */
static gru_ws gru_layout(const jt_layer *l) {
    gru_ws w;
    w.T = l->in.d[0];
    w.F = l->in.d[1];
    w.U = (size_t)l->opt.units;
    size_t T = w.T, U = w.U, n = l->max_n;
    w.G = l->ws;
    w.HN = w.G + n * T * 3 * U;
    w.H = w.HN + n * T * U;
    w.DG = w.H + n * T * U;
    w.HG = w.DG + n * T * 4 * U;
    w.DH = w.HG + n * 3 * U;
    return w;
}

static jt_status gru_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    jt_status st = jt_rnn_setup(l, p, 3, err, errlen);
    if (st != JT_OK) return st;
    size_t T = l->in.d[0], U = (size_t)l->opt.units, n = l->max_n;
    l->ws_floats = n * T * (3 + 1 + 1 + 4) * U + n * 3 * U + 2 * n * U;
    return JT_OK;
}

static void gru_init(jt_layer *l, jt_rng *rng) {
    size_t F = l->in.d[1], U = (size_t)l->opt.units;
    for (size_t g = 0; g < 3; g++) {
        jt_init_glorot_uniform(l->W[0] + g * U * F, U * F, F, U, rng);
        jt_init_glorot_uniform(l->W[1] + g * U * U, U * U, U, U, rng);
    }
    memset(l->W[2], 0, 3 * U * sizeof(float));
    memset(l->W[3], 0, 3 * U * sizeof(float));
}

// x: (n, T, F) -> y: (n, U) or (n, T, U)
static void gru_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    gru_ws w = gru_layout(l);
    size_t T = w.T, F = w.F, U = w.U, U3 = 3 * U;
    const float *W_ih = l->W[0], *W_hh = l->W[1], *b_ih = l->W[2], *b_hh = l->W[3];
    /* G (n*T, 3U) = X W_ih^T + b_ih: the input-side pre-activations of every step at once */
    jt_rows_fill(w.G, U3, b_ih, n * T, U3);
    jt_gemm_abt(n * T, U3, F, 1.0f, x, F, W_ih, F, 1.0f, w.G, U3);
    for (size_t i = 0; i < n; i++) memset(w.H + i * T * U, 0, U * sizeof(float)); /* h_{-1} */
    for (size_t t = 0; t < T; t++) {
        /* HG (n, 3U) = h_{t-1} W_hh^T + b_hh (h_{t-1}: rows (i, t) of H; zero at t = 0) */
        jt_rows_fill(w.HG, U3, b_hh, n, U3);
        if (t) jt_gemm_abt(n, U3, U, 1.0f, w.H + t * U, T * U, W_hh, U, 1.0f, w.HG, U3);
        /* h_t: into H's rows (i, t + 1), the last one into y's rows */
        int last = t + 1 == T, rs = l->opt.return_sequences;
        jt_gru_fwd s = {.g = w.G + t * U3, .ldg = T * U3, .gh = w.HG, .ldgh = U3,
                        .h0 = t ? w.H + t * U : NULL, .ldh0 = T * U,
                        .hn = w.HN + t * U, .ldhn = T * U,
                        .h1 = !last ? w.H + (t + 1) * U : rs ? y + t * U : y,
                        .ldh1 = !last || rs ? T * U : U};
        jt_gru_step_forward(n, U, &s);
    }
    if (l->opt.return_sequences) /* y's rows (i, t) = h_t = H's rows (i, t + 1), t < T - 1 */
        for (size_t i = 0; i < n; i++)
            memcpy(y + i * T * U, w.H + (i * T + 1) * U, (T - 1) * U * sizeof(float));
}

// dy: (n, U) or (n, T, U) -> dx: (n, T, F); BPTT through the saved gates
static void gru_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                         size_t n, const jt_ctx *ctx) {
    (void)y, (void)ctx;
    gru_ws w = gru_layout(l);
    size_t T = w.T, F = w.F, U = w.U, U3 = 3 * U, U4 = 4 * U;
    const float *W_ih = l->W[0], *W_hh = l->W[1];
    float *dW_ih = l->dW[0], *dW_hh = l->dW[1], *db_ih = l->dW[2], *db_hh = l->dW[3];
    int rs = l->opt.return_sequences;
    /* dL/dh_t of the step: dy itself at the last step, then the running sum of the direct part
     * (z d) and the product (DH[t % 2], written by step t + 1) plus dy's step-t rows */
    for (size_t t = T; t-- > 0;) {
        size_t ldd;
        const float *d = jt_rnn_step_grad(dy, w.DH, t, T, n, U, rs, &ldd);
        float *dhp = t ? w.DH + ((t + 1) % 2) * n * U : NULL; /* dL/dh_{t-1} */
        float *dg = w.DG + t * U4;
        jt_gru_bwd s = {.g = w.G + t * U3, .ldg = T * U3, .hn = w.HN + t * U, .ldhn = T * U,
                        .h0 = t ? w.H + t * U : NULL, .ldh0 = T * U, .d = d, .ldd = ldd,
                        .dgh = dg, .lddgh = T * U4, .dgn = dg + U3, .lddgn = T * U4,
                        .dh0 = dhp, .lddh0 = U};
        jt_gru_step_backward(n, U, &s);
        /* the bias gradients from the step's rows while they are in cache */
        jt_colsum_add(db_hh, dg, T * U4, n, U3);
        jt_colsum_add(db_ih, dg, T * U4, n, 2 * U);
        jt_colsum_add(db_ih + 2 * U, dg + U3, T * U4, n, U);
        /* dL/dh_{t-1} (n, U) += dgh_t W_hh (dgh_t: rows (i, t) of DG, 3U wide) */
        if (t) jt_gemm_ab(n, U, U3, 1.0f, dg, T * U4, W_hh, U, 1.0f, dhp, U);
    }
    /* all steps at once (DG, H, X rows (sample, step)): dW_hh (3U, U) += DG[:, :3U]^T H;
     * dW_ih (3U, F) += [DG[:, :2U] DG[:, 3U:]]^T X; dx = the same columns times W_ih */
    size_t nT = n * T;
    jt_gemm_atb(U3, U, nT, 1.0f, w.DG, U4, w.H, U, 1.0f, dW_hh, U);
    jt_gemm_atb(2 * U, F, nT, 1.0f, w.DG, U4, x, F, 1.0f, dW_ih, F);
    jt_gemm_atb(U, F, nT, 1.0f, w.DG + U3, U4, x, F, 1.0f, dW_ih + 2 * U * F, F);
    if (dx) {
        jt_gemm_ab(nT, F, 2 * U, 1.0f, w.DG, U4, W_ih, F, 0.0f, dx, F);
        jt_gemm_ab(nT, F, U, 1.0f, w.DG + U3, U4, W_ih + 2 * U * F, F, 1.0f, dx, F);
    }
}

const jt_layer_ops jt_layer_gru = {
    .kind = "gru",
    .keys = {"units", "return_sequences", NULL},
    .setup = gru_setup,
    .init = gru_init,
    .forward = gru_forward,
    .backward = gru_backward,
};
