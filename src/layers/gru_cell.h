/* layers/gru_cell.h - the element-wise part of one GRU step, shared by the gru layer and the
 * attention decoder (PyTorch torch.nn.GRU / GRUCell semantics, gate order r, z, n):
 *   r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r * gh_n),
 *   h' = (1 - z) * n + z * h.
 * The matrix products that make gi and gh are the callers' (sgemm over the batch). Private to
 * src/. */
#ifndef JTRAIN_GRU_CELL_H
#define JTRAIN_GRU_CELL_H

#include <stddef.h>

#include "jtrain/mathx.h"

/* g: (3U) gi in, the gate values (r, z, n) out; gh: (3U); h0: (U) previous state, or NULL for
 * zeros; hn: (U) receives gh_n (backward needs it); h1: (U) the new state. */
static inline void jt_gru_cell_forward(size_t U, float *g, const float *gh, const float *h0,
                                       float *hn, float *h1) {
    for (size_t u = 0; u < U; u++) {
        float r = jt_sigmoidf(g[u] + gh[u]);
        float z = jt_sigmoidf(g[U + u] + gh[U + u]);
        float nn = jt_tanhf(g[2 * U + u] + r * gh[2 * U + u]);
        g[u] = r;
        g[U + u] = z;
        g[2 * U + u] = nn;
        hn[u] = gh[2 * U + u];
        h1[u] = (1.0f - z) * nn + z * (h0 ? h0[u] : 0.0f);
    }
}

/* Backward of one step given d = dL/dh' (U): writes dgi (3U) = dL/dgi, dgh (3U) = dL/dgh and
 * dh0 (U) = the direct part of dL/dh (z * d; the part through W_hh is the caller's product).
 * g, hn, h0 as saved by the forward step. */
static inline void jt_gru_cell_backward(size_t U, const float *g, const float *hn,
                                        const float *h0, const float *d, float *dgi, float *dgh,
                                        float *dh0) {
    for (size_t u = 0; u < U; u++) {
        float r = g[u], z = g[U + u], nn = g[2 * U + u];
        float dan = d[u] * (1.0f - z) * (1.0f - nn * nn);
        float daz = d[u] * ((h0 ? h0[u] : 0.0f) - nn) * z * (1.0f - z);
        float dar = dan * hn[u] * r * (1.0f - r);
        dgi[u] = dar;
        dgi[U + u] = daz;
        dgi[2 * U + u] = dan;
        dgh[u] = dar;
        dgh[U + u] = daz;
        dgh[2 * U + u] = dan * r;
        dh0[u] = d[u] * z;
    }
}

#endif
