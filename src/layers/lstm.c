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
 * The input-to-hidden products of all samples and steps are one sgemm ((n*T, F) x (F, 4U));
 * each step adds h_{t-1} W_hh^T into its rows of that matrix with one sgemm over the batch.
 * Workspace (floats, for max_n samples):
 *   G    n*T*4U    activated gates (i, f, g, o), rows (sample, step)
 *   DG   n*T*4U    gradient w.r.t. the pre-activations, rows (sample, step)
 *   H, C (T+1)*n*U each, time-major: H[t], C[t] are the (n, U) batch of h_{t-1}, c_{t-1}
 *   DH   2*n*U     running dL/dh_t and dL/dh_{t-1}
 *   DC   n*U       running dL/dc_t */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "jtrain/mathx.h"
#include "kinds.h"

typedef struct {
    size_t T, F, U;
    float *G, *DG, *H, *C, *DH, *DC;
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
    w.H = w.DG + n * T * 4 * U;
    w.C = w.H + (T + 1) * n * U;
    w.DH = w.C + (T + 1) * n * U;
    w.DC = w.DH + 2 * n * U;
    return w;
}

static jt_status lstm_setup(jt_layer *l, jt_params *p, char *err, size_t errlen) {
    if (l->opt.units <= 0) return jt_layer_err(l, err, errlen, "setting 'units' is required");
    if (l->in.ndim != 2) {
        char s[64];
        jt_shape_format(&l->in, s, sizeof s);
        return jt_layer_err(l, err, errlen, "lstm needs a (T, F) input, got %s", s);
    }
    size_t T = l->in.d[0], F = l->in.d[1], U = (size_t)l->opt.units, n = l->max_n;
    if (T == 0 || F == 0) return jt_layer_err(l, err, errlen, "empty input");
    if (F > INT_MAX / 4 || U > INT_MAX / 4 || T > INT_MAX / n / 4 / U || n * T > INT_MAX / F)
        return jt_layer_err(l, err, errlen, "input too large for one sgemm");
    if (l->opt.return_sequences) {
        l->out.ndim = 2;
        l->out.d[0] = T;
        l->out.d[1] = U;
    } else {
        l->out.ndim = 1;
        l->out.d[0] = U;
    }
    size_t s_ih[2] = {4 * U, F}, s_hh[2] = {4 * U, U}, s_b = 4 * U;
    jt_layer_add_param(l, p, "W_ih", 2, s_ih);
    jt_layer_add_param(l, p, "W_hh", 2, s_hh);
    jt_layer_add_param(l, p, "b_ih", 1, &s_b);
    jt_layer_add_param(l, p, "b_hh", 1, &s_b);
    l->ws_floats = 2 * n * T * 4 * U + 2 * (T + 1) * n * U + 3 * n * U;
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


// x: (n, T, F) -> y: (n, U) or (n, T, U)
static void lstm_forward(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx) {
    (void)ctx;
    lstm_ws w = lstm_layout(l);
    size_t T = w.T, F = w.F, U = w.U, U4 = 4 * U;
    const float *W_ih = l->W[0], *W_hh = l->W[1], *b_ih = l->W[2], *b_hh = l->W[3];
    /* G (n*T, 4U) = X W_ih^T + b_ih + b_hh */
    for (size_t r = 0; r < n * T; r++)
        for (size_t k = 0; k < U4; k++) w.G[r * U4 + k] = b_ih[k] + b_hh[k];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(n * T), (int)U4, (int)F, 1.0f, x,
                (int)F, W_ih, (int)F, 1.0f, w.G, (int)U4);
    memset(w.H, 0, n * U * sizeof(float));
    memset(w.C, 0, n * U * sizeof(float));
    for (size_t t = 0; t < T; t++) {
        const float *hp = w.H + t * n * U, *cp = w.C + t * n * U;
        float *hc = w.H + (t + 1) * n * U, *cc = w.C + (t + 1) * n * U;
        /* rows (i, t) of G, stride T*4U: += h_{t-1} W_hh^T */
        if (t > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)U4, (int)U, 1.0f, hp,
                        (int)U, W_hh, (int)U, 1.0f, w.G + t * U4, (int)(T * U4));
        for (size_t i = 0; i < n; i++) {
            float *g = w.G + (i * T + t) * U4;
            for (size_t u = 0; u < U; u++) {
                float ig = jt_sigmoidf(g[u]), fg = jt_sigmoidf(g[U + u]);
                float gg = jt_tanhf(g[2 * U + u]), og = jt_sigmoidf(g[3 * U + u]);
                g[u] = ig;
                g[U + u] = fg;
                g[2 * U + u] = gg;
                g[3 * U + u] = og;
                float c = fg * cp[i * U + u] + ig * gg;
                cc[i * U + u] = c;
                hc[i * U + u] = og * jt_tanhf(c);
            }
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

// dy: (n, U) or (n, T, U) -> dx: (n, T, F); BPTT through the saved gates and cell states
static void lstm_backward(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                          size_t n, const jt_ctx *ctx) {
    (void)y, (void)ctx;
    lstm_ws w = lstm_layout(l);
    size_t T = w.T, F = w.F, U = w.U, U4 = 4 * U;
    const float *W_ih = l->W[0], *W_hh = l->W[1];
    float *dW_ih = l->dW[0], *dW_hh = l->dW[1], *db_ih = l->dW[2], *db_hh = l->dW[3];
    float *dh = w.DH, *dhp = w.DH + n * U, *dc = w.DC;
    if (l->opt.return_sequences) memset(dh, 0, n * U * sizeof(float));
    else memcpy(dh, dy, n * U * sizeof(float));
    memset(dc, 0, n * U * sizeof(float));
    for (size_t t = T; t-- > 0;) {
        const float *hp = w.H + t * n * U, *cp = w.C + t * n * U, *cc = w.C + (t + 1) * n * U;
        if (l->opt.return_sequences)
            for (size_t i = 0; i < n; i++)
                for (size_t u = 0; u < U; u++) dh[i * U + u] += dy[(i * T + t) * U + u];
        for (size_t i = 0; i < n; i++) {
            const float *g = w.G + (i * T + t) * U4;
            float *dg = w.DG + (i * T + t) * U4;
            for (size_t u = 0; u < U; u++) {
                size_t k = i * U + u;
                float ig = g[u], fg = g[U + u], gg = g[2 * U + u], og = g[3 * U + u];
                float tc = jt_tanhf(cc[k]);
                float d = dc[k] + dh[k] * og * (1.0f - tc * tc);
                dg[u] = d * gg * ig * (1.0f - ig);
                dg[U + u] = d * cp[k] * fg * (1.0f - fg);
                dg[2 * U + u] = d * ig * (1.0f - gg * gg);
                dg[3 * U + u] = dh[k] * tc * og * (1.0f - og);
                dc[k] = d * fg;
            }
        }
        /* dW_hh (4U, U) += DG_t^T h_{t-1}; dh_{t-1} = DG_t W_hh (DG_t: rows (i, t), stride T*4U) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)U4, (int)U, (int)n, 1.0f,
                    w.DG + t * U4, (int)(T * U4), hp, (int)U, 1.0f, dW_hh, (int)U);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)U, (int)U4, 1.0f,
                    w.DG + t * U4, (int)(T * U4), W_hh, (int)U, 0.0f, dhp, (int)U);
        float *tmp = dh;
        dh = dhp;
        dhp = tmp;
    }
    /* dW_ih (4U, F) += DG^T X; db_ih, db_hh += sum DG; dx (n*T, F) = DG W_ih */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)U4, (int)F, (int)(n * T), 1.0f, w.DG,
                (int)U4, x, (int)F, 1.0f, dW_ih, (int)F);
    for (size_t r = 0; r < n * T; r++)
        for (size_t k = 0; k < U4; k++) {
            db_ih[k] += w.DG[r * U4 + k];
            db_hh[k] += w.DG[r * U4 + k];
        }
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(n * T), (int)F, (int)U4, 1.0f,
                    w.DG, (int)U4, W_ih, (int)F, 0.0f, dx, (int)F);
}

const jt_layer_ops jt_layer_lstm = {
    .kind = "lstm",
    .keys = {"units", "return_sequences", NULL},
    .setup = lstm_setup,
    .init = lstm_init,
    .forward = lstm_forward,
    .backward = lstm_backward,
};
