/* layers/prims.h - private to src/layers/: the primitives the layer kinds share, so each piece
 * of arithmetic is written (and tested, tests/unit/test_prims.c) once:
 *   - matrix products: checked cblas wrappers (sizes are size_t; each dimension and leading
 *     dimension is checked against INT_MAX, the range of a cblas int, and aborts beyond it);
 *   - row helpers: bias fill, column sums, row softmax and its backward;
 *   - sequence views: a layer input read as T vectors of F ((T, F), (C, H, W) as H*W vectors of
 *     C, or one vector) and the transposes between (C, H*W) and (H*W, C);
 *   - the additive (Bahdanau) attention step of attention_pool and attn_decoder.
 *
 * Layouts: every matrix is float32, row-major; "(m, k) with leading dimension ld" means element
 * (r, c) is at p[r * ld + c], ld >= k. Results of the row helpers do not depend on the CPU:
 * their vectorised clones (simd.h) compute each element with the same operations in the same
 * order as the scalar code; the products are OpenBLAS's, whose order is its own. */
#ifndef JTRAIN_LAYERS_PRIMS_H
#define JTRAIN_LAYERS_PRIMS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "jtrain/layer.h"

/* ---- matrix products: C (m, n) = alpha * op(A) op(B) + beta * C ----
 * beta = 0 overwrites C (its old contents, even NaN, are ignored); beta = 1 adds into it.
 * In layer terms, with x (rows, in), W (out, in), y and d (rows, out):
 *   forward       y  = x W^T    jt_gemm_abt(rows, out, in, 1, x, ldx, W, ldw, 0|1, y, ldy)
 *   weight grad   dW += d^T x   jt_gemm_atb(out, in, rows, 1, d, ldd, x, ldx, 1, dW, ldw)
 *   input grad    dx = d W      jt_gemm_ab(rows, in, out, 1, d, ldd, W, ldw, 0|1, dx, lddx)
 * Sizes may be 0 (then nothing is computed, but C is still scaled by beta as BLAS does). */

/* C (m, n) = alpha A B^T + beta C; A (m, k) ld lda, B (n, k) ld ldb, C ld ldc. */
void jt_gemm_abt(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                 const float *b, size_t ldb, float beta, float *c, size_t ldc);
/* C (m, n) = alpha A^T B + beta C; A (k, m) ld lda, B (k, n) ld ldb, C ld ldc. */
void jt_gemm_atb(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                 const float *b, size_t ldb, float beta, float *c, size_t ldc);
/* C (m, n) = alpha A B + beta C; A (m, k) ld lda, B (k, n) ld ldb, C ld ldc. */
void jt_gemm_ab(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                const float *b, size_t ldb, float beta, float *c, size_t ldc);
/* y (m) = alpha A x + beta y; A (m, n) ld lda, x (n); x and y contiguous. */
void jt_gemv(size_t m, size_t n, float alpha, const float *a, size_t lda, const float *x,
             float beta, float *y);
/* y (n) = alpha A^T x + beta y; A (m, n) ld lda, x (m); x and y contiguous. */
void jt_gemv_t(size_t m, size_t n, float alpha, const float *a, size_t lda, const float *x,
               float beta, float *y);
/* A (m, n) += alpha x y^T (rank-one update); A ld lda, x (m), y (n) contiguous. */
void jt_ger(size_t m, size_t n, float alpha, const float *x, const float *y, float *a,
            size_t lda);

/* ---- rows ---- */

/* Every row of y (rows, cols) ld ldy = b (cols): the bias, before a product with beta = 1. */
void jt_rows_fill(float *y, size_t ldy, const float *b, size_t rows, size_t cols);
/* db (cols) += sum over r of d (rows, cols) ld ldd, rows added in order r = 0, 1, ...:
 * a bias gradient. */
void jt_colsum_add(float *db, const float *d, size_t ldd, size_t rows, size_t cols);
/* p (rows, cols) ld ldp = softmax of each row of x (rows, cols) ld ldx, max-subtracted, the sum
 * taken in double (torch.softmax(x, dim=-1)). p may be x (in place). cols >= 1. */
void jt_softmax_rows(const float *x, size_t ldx, float *p, size_t ldp, size_t rows, size_t cols);
/* Backward of jt_softmax_rows, in place: for each row, d = p * (d - sum_c d_c p_c) * scale
 * (the softmax Jacobian applied to d = dL/dp, then times scale; the sum in double).
 * p and d (rows, cols) with leading dimensions ldp and ldd. */
void jt_softmax_rows_backward(const float *p, size_t ldp, float *d, size_t ldd, size_t rows,
                              size_t cols, float scale);

/* ---- sequence views ---- */

/* Reads the per-sample shape s as T vectors of F: (T, F) as is; (C, H, W) as T = H*W vectors of
 * F = C, *chw = 1 (stored channel-major, so the caller transposes with jt_chw_to_rows); and,
 * when allow_vec, one vector (F) as T = 1. Returns 0 when s is such a shape with T, F in
 * 1..INT_MAX, else -1 (then *T = *F = 0, *chw = 0). */
int jt_seq_view(const jt_shape *s, int allow_vec, size_t *T, size_t *F, int *chw);
/* dst (n, T, C) = src (n, C, T) transposed per sample (a feature map's H*W vectors as rows). */
void jt_chw_to_rows(const float *src, float *dst, size_t n, size_t C, size_t T);
/* dst (n, C, T) = (add ? dst + : ) src (n, T, C) transposed per sample (the gradient back). */
void jt_rows_to_chw(const float *src, float *dst, size_t n, size_t C, size_t T, int add);

/* ---- additive attention (Bahdanau et al. 2015, eq. (5)-(6); Yang et al. 2016) ----
 * For each of n samples i with T vectors X_i (T, F), keys K_i (T, A) (the caller's projection
 * of X_i, W x_t, plus any constant bias) and a query q_i (A) (U h + b in the decoder; none in
 * attention_pool, whose bias sits in K):
 *   P_i = tanh(K_i + q_i) (T, A),  e_i = P_i v (T),  alpha_i = softmax(e_i),  c_i = X_i^T alpha_i
 * Forward keeps P for backward: the tanh is the costliest part of the step (a vectorised clone
 * still spends ~0.7 ns an element), so recomputing it costs more than reading it back. The
 * buffers one step reads and writes: */
typedef struct {
    size_t n, T, A, F;  /* samples, vectors per sample, attention size, vector size */
    const float *X;     /* (n, T, F) contiguous: the attended vectors */
    const float *v;     /* (A): the scoring vector */
    float *P;           /* (n, T, A) contiguous: tanh(K + q), written by forward, read by
                         * backward */
    float *alpha;       /* (n, T), row i at alpha + i * ld_alpha: the attention weights */
    size_t ld_alpha;
    float *e;           /* (n * T) scratch: the scores (forward), dL/de (backward) */
} jt_addattn;

/* The forward step: P = tanh(K + q) with K (n, T, A) contiguous and q (n, A) with leading
 * dimension ldq (ldq = 0: one query for every sample), or q = NULL for P = tanh(K) (K may then
 * be s->P: in place); then e, alpha and the contexts c (n, F) with leading dimension ldc
 * (c_i = X_i^T alpha_i, one sgemv per sample). P stays for backward. */
void jt_addattn_forward(const jt_addattn *s, const float *K, const float *q, size_t ldq, float *c,
                        size_t ldc);
/* Backward of one step given dc (n, F) ld lddc = dL/dc and s->P, s->alpha as forward left them:
 *   dalpha_i = X_i dc_i, de = softmax backward of dalpha (kept in s->e),
 *   dX_i (T, F) += alpha_i dc_i^T when dX_add (an sger), = when not; dX NULL: skipped
 *   dv (A) += P^T de
 *   G = dL/d(K + q) = de v^T * (1 - P^2) (n, T, A): dK += G when dK_add, = G when not;
 *   dq (n, A) contiguous = sum over t of G_i (overwritten; dq NULL: skipped). */
void jt_addattn_backward(const jt_addattn *s, const float *dc, size_t lddc, float *dX, int dX_add,
                         float *dv, float *dK, int dK_add, float *dq);

/* ---- recurrent layers ---- */

/* The setup gru and lstm share (torch.nn.GRU / LSTM layouts): checks the (T, F) input and the
 * sizes for one sgemm over max_n * T rows, sets l->out to (units) or, with return_sequences,
 * (T, units), and registers W_ih (gates*U, F), W_hh (gates*U, U), b_ih and b_hh (gates*U).
 * The caller sets l->ws_floats. JT_EUSAGE with a message on a bad setting or shape. */
jt_status jt_rnn_setup(jt_layer *l, jt_params *p, size_t gates, char *err, size_t errlen);
/* BPTT of a recurrent layer over n rows, U units, T steps: dL/dh_t at step t. At the last
 * step it is dy's rows (dy: (n, T, U) with return_sequences, else (n, U)); before that it is
 * DH + (t % 2) n U, which step t + 1 filled with its part, plus (return_sequences) dy's step-t
 * rows, added here. *ldd receives the rows' leading dimension. */
const float *jt_rnn_step_grad(const float *dy, float *DH, size_t t, size_t T, size_t n, size_t U,
                              int return_sequences, size_t *ldd);

/* Branch-free selects for the short pooled-row loops of conv2d.c and pool.c: scalar code over
 * random data would mispredict a branch about every other time. */

/* v when c is 1, +0.0f when c is 0 */
static inline float jt_keep_if(float v, uint32_t c) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    bits &= 0u - c;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* k when c is 1, else j */
static inline uint32_t jt_pick_u32(uint32_t c, uint32_t k, uint32_t j) {
    return j ^ ((j ^ k) & (0u - c));
}

#endif
