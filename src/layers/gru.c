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
 * The input-to-hidden products of all samples and steps are one sgemm ((n*T, F) x (F, 3U));
 * the hidden-to-hidden product is one sgemm per step over the batch. Forward saves the
 * activated gates, W_hn h + b_hn and every state in the workspace; backward is BPTT over them.
 * Workspace (floats, for max_n samples):
 *   G    n*T*3U   activated gates (r, z, n), rows (sample, step)
 *   HN   n*T*U    W_hn h_{t-1} + b_hn, rows (sample, step)
 *   H    (T+1)*n*U states, time-major: H[t] is the (n, U) batch of h_{t-1}, H[0] = 0
 *   DG   n*T*3U   gradient w.r.t. the input-side pre-activations, rows (sample, step)
 *   HG   n*3U     per-step hidden-side pre-activations (forward) / their gradient (backward)
 *   DH   2*n*U    running dL/dh_t and dL/dh_{t-1} */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "gru_cell.h"
#include "kinds.h"

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
    w.DG = w.H + (T + 1) * n * U;
    w.HG = w.DG + n * T * 3 * U;
    w.DH = w.HG + n * 3 * U;
    return w;
}

static jt_status gru_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    if (l->opt.units <= 0) return jt_layer_err(l, err, errlen, "setting 'units' is required");
    if (l->in.ndim != 2) {
        char s[64];
        jt_shape_format(&l->in, s, sizeof s);
        return jt_layer_err(l, err, errlen, "gru needs a (T, F) input, got %s", s);
    }
    size_t T = l->in.d[0], F = l->in.d[1], U = (size_t)l->opt.units, n = l->max_n;
    if (T == 0 || F == 0) return jt_layer_err(l, err, errlen, "empty input");
    if (F > INT_MAX / 3 || U > INT_MAX / 3 || T > INT_MAX / n / 3 / U || n * T > INT_MAX / F)
        return jt_layer_err(l, err, errlen, "input too large for one sgemm");
    if (l->opt.return_sequences) {
        l->out.ndim = 2;
        l->out.d[0] = T;
        l->out.d[1] = U;
    } else {
        l->out.ndim = 1;
        l->out.d[0] = U;
    }
    size_t s_ih[2] = {3 * U, F}, s_hh[2] = {3 * U, U}, s_b = 3 * U;
    jt_layer_add_param(l, p, "W_ih", 2, s_ih);
    jt_layer_add_param(l, p, "W_hh", 2, s_hh);
    jt_layer_add_param(l, p, "b_ih", 1, &s_b);
    jt_layer_add_param(l, p, "b_hh", 1, &s_b);
    l->ws_floats = n * T * 3 * U * 2 + n * T * U + (T + 1) * n * U + n * 3 * U + 2 * n * U;
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
    for (size_t r = 0; r < n * T; r++) memcpy(w.G + r * U3, b_ih, U3 * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(n * T), (int)U3, (int)F, 1.0f, x,
                (int)F, W_ih, (int)F, 1.0f, w.G, (int)U3);
    memset(w.H, 0, n * U * sizeof(float));
    for (size_t t = 0; t < T; t++) {
        const float *hp = w.H + t * n * U; /* h_{t-1}: (n, U) */
        float *hc = w.H + (t + 1) * n * U;
        /* HG (n, 3U) = h_{t-1} W_hh^T + b_hh */
        for (size_t i = 0; i < n; i++) memcpy(w.HG + i * U3, b_hh, U3 * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)U3, (int)U, 1.0f, hp,
                    (int)U, W_hh, (int)U, 1.0f, w.HG, (int)U3);
        for (size_t i = 0; i < n; i++) {
            float *g = w.G + (i * T + t) * U3, *hn = w.HN + (i * T + t) * U;
            jt_gru_cell_forward(U, g, w.HG + i * U3, hp + i * U, hn, hc + i * U);
        }
    }
    if (l->opt.return_sequences) {
        for (size_t i = 0; i < n; i++)
            for (size_t t = 0; t < T; t++)
                memcpy(y + (i * T + t) * U, w.H + ((t + 1) * n + i) * U, U * sizeof(float));
    } else {
        memcpy(y, w.H + T * n * U, n * U * sizeof(float));
    }
}

// dy: (n, U) or (n, T, U) -> dx: (n, T, F); BPTT through the saved gates
static void gru_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                         size_t n, const jt_ctx *ctx) {
    (void)y, (void)ctx;
    gru_ws w = gru_layout(l);
    size_t T = w.T, F = w.F, U = w.U, U3 = 3 * U;
    const float *W_ih = l->W[0], *W_hh = l->W[1];
    float *dW_ih = l->dW[0], *dW_hh = l->dW[1], *db_ih = l->dW[2], *db_hh = l->dW[3];
    float *dh = w.DH, *dhp = w.DH + n * U;
    if (l->opt.return_sequences) memset(dh, 0, n * U * sizeof(float));
    else memcpy(dh, dy, n * U * sizeof(float));
    for (size_t t = T; t-- > 0;) {
        const float *hp = w.H + t * n * U;
        if (l->opt.return_sequences)
            for (size_t i = 0; i < n; i++)
                for (size_t u = 0; u < U; u++) dh[i * U + u] += dy[(i * T + t) * U + u];
        for (size_t i = 0; i < n; i++) {
            const float *g = w.G + (i * T + t) * U3, *hn = w.HN + (i * T + t) * U;
            const float *h0 = hp + i * U, *d = dh + i * U;
            float *dg = w.DG + (i * T + t) * U3, *dhg = w.HG + i * U3, *dp = dhp + i * U;
            jt_gru_cell_backward(U, g, hn, h0, d, dg, dhg, dp);
        }
        /* dW_hh (3U, U) += HG^T h_{t-1}; db_hh += sum HG; dh_{t-1} += HG W_hh */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)U3, (int)U, (int)n, 1.0f, w.HG,
                    (int)U3, hp, (int)U, 1.0f, dW_hh, (int)U);
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < U3; k++) db_hh[k] += w.HG[i * U3 + k];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)U, (int)U3, 1.0f, w.HG,
                    (int)U3, W_hh, (int)U, 1.0f, dhp, (int)U);
        float *tmp = dh;
        dh = dhp;
        dhp = tmp;
    }
    /* dW_ih (3U, F) += DG^T X; db_ih += sum DG; dx (n*T, F) = DG W_ih */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)U3, (int)F, (int)(n * T), 1.0f, w.DG,
                (int)U3, x, (int)F, 1.0f, dW_ih, (int)F);
    for (size_t r = 0; r < n * T; r++)
        for (size_t k = 0; k < U3; k++) db_ih[k] += w.DG[r * U3 + k];
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(n * T), (int)F, (int)U3, 1.0f,
                    w.DG, (int)U3, W_ih, (int)F, 0.0f, dx, (int)F);
}

const jt_layer_ops jt_layer_gru = {
    .kind = "gru",
    .keys = {"units", "return_sequences", NULL},
    .setup = gru_setup,
    .init = gru_init,
    .forward = gru_forward,
    .backward = gru_backward,
};
