/* layers/gru_cell.h - the element-wise part of one GRU step over a batch, shared by the gru
 * layer and the attention decoder (PyTorch torch.nn.GRU / GRUCell semantics, gate order r, z, n):
 *   r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r * gh_n),
 *   h' = (1 - z) * n + z * h,
 * with gi = W_ih x + b_ih and gh = W_hh h + b_hh. The matrix products that make gi and gh are
 * the callers' (sgemm over the batch). The step functions (gru_cell.c) are vectorised (JT_HOT)
 * and take row strides, so callers can point them into (sample, step) layouts. Private to src/. */
#ifndef JTRAIN_GRU_CELL_H
#define JTRAIN_GRU_CELL_H

#include <stddef.h>
#include <string.h>

/* The buffers of one forward step over n rows; each matrix is row-major with its own row
 * stride ld* (in floats). */
typedef struct {
    float *g;         /* (n, 3U): in gi, out the gate values (r, z, n) */
    size_t ldg;
    const float *gh;  /* (n, 3U): W_hh h + b_hh */
    size_t ldgh;
    const float *h0;  /* (n, U): the previous state h, or NULL for zeros */
    size_t ldh0;
    float *hn;        /* (n, U) out: gh_n = W_hn h + b_hn (backward needs it) */
    size_t ldhn;
    float *h1;        /* (n, U) out: the new state h' */
    size_t ldh1;
} jt_gru_fwd;

/* The buffers of one backward step over n rows (g, hn, h0 as the forward step left them). */
typedef struct {
    const float *g;   /* (n, 3U) gate values */
    size_t ldg;
    const float *hn;  /* (n, U) gh_n */
    size_t ldhn;
    const float *h0;  /* (n, U) previous state, or NULL for zeros */
    size_t ldh0;
    const float *d;   /* (n, U) dL/dh' */
    size_t ldd;
    float *dgh;       /* (n, 3U) out: dL/dgh = (da_r, da_z, da_n * r); dL/dgi_r, dL/dgi_z are
                       * the same values (da_* = dL/d of the gate's pre-activation) */
    size_t lddgh;
    float *dgn;       /* (n, U) out: dL/dgi_n = da_n */
    size_t lddgn;
    float *dh0;       /* (n, U) out: z * dL/dh', the direct part of dL/dh (the part through
                       * W_hh is the caller's product), or NULL when not needed */
    size_t lddh0;
} jt_gru_bwd;

void jt_gru_step_forward(size_t n, size_t U, const jt_gru_fwd *s);
void jt_gru_step_backward(size_t n, size_t U, const jt_gru_bwd *s);

/* One sample (the attention decoder's per-row calls). g: (3U) gi in, gates out; gh: (3U)
 * including b_hh; h0: (U) or NULL for zeros; hn: (U) receives gh_n; h1: (U) the new state. */
static inline void jt_gru_cell_forward(size_t U, float *g, const float *gh, const float *h0,
                                       float *hn, float *h1) {
    jt_gru_fwd s = {.g = g, .gh = gh, .h0 = h0, .hn = hn, .h1 = h1};
    jt_gru_step_forward(1, U, &s);
}

/* One sample: given d = dL/dh' (U), writes dgi (3U) = dL/dgi, dgh (3U) = dL/dgh and dh0 (U) =
 * z * d (the direct part of dL/dh). */
static inline void jt_gru_cell_backward(size_t U, const float *g, const float *hn,
                                        const float *h0, const float *d, float *dgi, float *dgh,
                                        float *dh0) {
    jt_gru_bwd s = {.g = g, .hn = hn, .h0 = h0, .d = d, .dgh = dgh, .dgn = dgi + 2 * U,
                    .dh0 = dh0};
    jt_gru_step_backward(1, U, &s);
    memcpy(dgi, dgh, 2 * U * sizeof(float));
}

#endif
