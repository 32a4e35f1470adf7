/* layers/gru_cell.c - the vectorised GRU step of gru_cell.h (torch.nn.GRUCell formulas, gate
 * order r, z, n). Each row is one loop over u with the three gate blocks read as contiguous
 * streams; the optional inputs (h0, dh0) are constant flags of an inlined row function,
 * so every variant compiles to its own branch-free vector loop (no per-element NULL checks). */
#include "gru_cell.h"

#include "jtrain/mathx.h"
#include "simd.h"

/* The row functions must inline into each JT_HOT clone: their has_* flags then fold to
 * constants, and the loop is vectorised for the clone's target. */
#define ROW_INLINE static inline __attribute__((always_inline))

// g: (3U) gi -> gates; gh: (3U); h0: (U) if has_h0; hn, h1: (U)
ROW_INLINE void fwd_row(size_t U, float *restrict g, const float *restrict gh,
                        const float *restrict h0, float *restrict hn, float *restrict h1,
                        int has_h0) {
    for (size_t u = 0; u < U; u++) {
        float r = jt_sigmoidf(g[u] + gh[u]);
        float z = jt_sigmoidf(g[U + u] + gh[U + u]);
        float nn = jt_tanhf(g[2 * U + u] + r * gh[2 * U + u]);
        g[u] = r;
        g[U + u] = z;
        g[2 * U + u] = nn;
        hn[u] = gh[2 * U + u];
        h1[u] = (1.0f - z) * nn + z * (has_h0 ? h0[u] : 0.0f);
    }
}

JT_HOT void jt_gru_step_forward(size_t n, size_t U, const jt_gru_fwd *s) {
    for (size_t i = 0; i < n; i++) {
        float *g = s->g + i * s->ldg, *hn = s->hn + i * s->ldhn, *h1 = s->h1 + i * s->ldh1;
        const float *gh = s->gh + i * s->ldgh;
        if (s->h0) fwd_row(U, g, gh, s->h0 + i * s->ldh0, hn, h1, 1);
        else fwd_row(U, g, gh, NULL, hn, h1, 0);
    }
}

/* d = dL/dh'; da_* are the gradients of the gates' pre-activations:
 *   da_n = d (1 - z) (1 - n^2),  da_z = d (h - n) z (1 - z),  da_r = da_n gh_n r (1 - r),
 *   dL/dgh = (da_r, da_z, da_n r),  dL/dgi_n = da_n,  dL/dh (direct) = d z. */
ROW_INLINE void bwd_row(size_t U, const float *restrict g, const float *restrict hn,
                        const float *restrict h0, const float *restrict d, float *restrict dgh,
                        float *restrict dgn, float *restrict dh0, int has_h0, int has_dh0) {
    for (size_t u = 0; u < U; u++) {
        float r = g[u], z = g[U + u], nn = g[2 * U + u];
        float dan = d[u] * (1.0f - z) * (1.0f - nn * nn);
        float daz = d[u] * ((has_h0 ? h0[u] : 0.0f) - nn) * z * (1.0f - z);
        float dar = dan * hn[u] * r * (1.0f - r);
        dgh[u] = dar;
        dgh[U + u] = daz;
        dgh[2 * U + u] = dan * r;
        dgn[u] = dan;
        if (has_dh0) dh0[u] = d[u] * z;
    }
}

JT_HOT void jt_gru_step_backward(size_t n, size_t U, const jt_gru_bwd *s) {
    int has_h0 = s->h0 != NULL, has_dh0 = s->dh0 != NULL;
    for (size_t i = 0; i < n; i++) {
        const float *g = s->g + i * s->ldg, *hn = s->hn + i * s->ldhn, *d = s->d + i * s->ldd;
        const float *h0 = has_h0 ? s->h0 + i * s->ldh0 : NULL;
        float *dgh = s->dgh + i * s->lddgh, *dgn = s->dgn + i * s->lddgn;
        float *dh0 = has_dh0 ? s->dh0 + i * s->lddh0 : NULL;
        if (has_h0 && has_dh0) bwd_row(U, g, hn, h0, d, dgh, dgn, dh0, 1, 1);
        else if (has_h0) bwd_row(U, g, hn, h0, d, dgh, dgn, NULL, 1, 0);
        else if (has_dh0) bwd_row(U, g, hn, NULL, d, dgh, dgn, dh0, 0, 1);
        else bwd_row(U, g, hn, NULL, d, dgh, dgn, NULL, 0, 0);
    }
}
