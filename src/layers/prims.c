/* layers/prims.c - the shared primitives of the layer kinds (see prims.h for the contracts).
 *
 * Invariants: every cblas call goes through a wrapper here that checks its sizes against
 * INT_MAX (a broken check is a bug in a kind's setup, so it aborts); the elementwise loops are
 * JT_HOT (vectorised clones) and compute each element as the scalar code would, in the same
 * order, so their results do not depend on the CPU; no function allocates. */
#include "prims.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "jtrain/common.h"
#include "jtrain/mathx.h"
#include "kinds.h"
#include "simd.h"

/* ---- matrix products ---- */

/* Aborts unless every size fits a cblas int and each leading dimension covers its rows. */
static void check_gemm(const char *what, size_t m, size_t n, size_t k, size_t lda, size_t amin,
                       size_t ldb, size_t bmin, size_t ldc) {
    JT_CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
                 ldc <= INT_MAX,
             "%s: size over INT_MAX (m %zu, n %zu, k %zu, ld %zu %zu %zu)", what, m, n, k, lda,
             ldb, ldc);
    JT_CHECK(lda >= (amin ? amin : 1) && ldb >= (bmin ? bmin : 1) && ldc >= (n ? n : 1),
             "%s: leading dimension too small (m %zu, n %zu, k %zu, ld %zu %zu %zu)", what, m, n,
             k, lda, ldb, ldc);
}

void jt_gemm_abt(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                 const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    check_gemm("jt_gemm_abt", m, n, k, lda, k, ldb, k, ldc);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, alpha, a,
                (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void jt_gemm_atb(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                 const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    check_gemm("jt_gemm_atb", m, n, k, lda, m, ldb, n, ldc);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)n, (int)k, alpha, a,
                (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void jt_gemm_ab(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    check_gemm("jt_gemm_ab", m, n, k, lda, k, ldb, n, ldc);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, alpha, a,
                (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void jt_gemv(size_t m, size_t n, float alpha, const float *a, size_t lda, const float *x,
             float beta, float *y) {
    check_gemm("jt_gemv", m, n, 1, lda, n, 1, 1, n ? n : 1);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)n, alpha, a, (int)lda, x, 1, beta, y, 1);
}

void jt_gemv_t(size_t m, size_t n, float alpha, const float *a, size_t lda, const float *x,
               float beta, float *y) {
    check_gemm("jt_gemv_t", m, n, 1, lda, n, 1, 1, n ? n : 1);
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)m, (int)n, alpha, a, (int)lda, x, 1, beta, y, 1);
}

void jt_ger(size_t m, size_t n, float alpha, const float *x, const float *y, float *a,
            size_t lda) {
    check_gemm("jt_ger", m, n, 1, lda, n, 1, 1, n ? n : 1);
    cblas_sger(CblasRowMajor, (int)m, (int)n, alpha, x, 1, y, 1, a, (int)lda);
}

/* ---- rows ---- */

// y: (rows, cols) ld ldy <- b: (cols) in every row
void jt_rows_fill(float *y, size_t ldy, const float *b, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) memcpy(y + r * ldy, b, cols * sizeof(float));
}

// db: (cols) += column sums of d: (rows, cols) ld ldd; vectorised across columns
JT_HOT // d: (rows, cols) contiguous += s: (rows, cols) ld lds
JT_HOT static void rows_add(float *d, const float *s, size_t lds, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) d[r * cols + c] += s[r * lds + c];
}

void jt_colsum_add(float *db, const float *d, size_t ldd, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        const float *dr = d + r * ldd;
        for (size_t c = 0; c < cols; c++) db[c] += dr[c];
    }
}

// x: (rows, cols) ld ldx -> p: (rows, cols) ld ldp, each row softmaxed
void jt_softmax_rows(const float *x, size_t ldx, float *p, size_t ldp, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *pr = p + r * ldp, m = xr[0];
        for (size_t c = 1; c < cols; c++) m = xr[c] > m ? xr[c] : m;
        double s = 0;
        for (size_t c = 0; c < cols; c++) s += (pr[c] = expf(xr[c] - m));
        float inv = (float)(1.0 / s);
        for (size_t c = 0; c < cols; c++) pr[c] *= inv;
    }
}

// p, d: (rows, cols) with ld ldp, ldd; d <- p * (d - <d, p>) * scale per row
void jt_softmax_rows_backward(const float *p, size_t ldp, float *d, size_t ldd, size_t rows,
                              size_t cols, float scale) {
    for (size_t r = 0; r < rows; r++) {
        const float *pr = p + r * ldp;
        float *dr = d + r * ldd;
        double s = 0;
        for (size_t c = 0; c < cols; c++) s += (double)dr[c] * pr[c];
        float sf = (float)s;
        for (size_t c = 0; c < cols; c++) dr[c] = pr[c] * (dr[c] - sf) * scale;
    }
}

/* ---- sequence views ---- */

int jt_seq_view(const jt_shape *s, int allow_vec, size_t *T, size_t *F, int *chw) {
    *T = *F = 0;
    *chw = 0;
    if (s->ndim == 1 && allow_vec) *T = 1, *F = s->d[0];
    else if (s->ndim == 2) *T = s->d[0], *F = s->d[1];
    else if (s->ndim == 3) *T = s->d[1] * s->d[2], *F = s->d[0], *chw = 1;
    else return -1;
    if (*T > 0 && *F > 0 && *T <= INT_MAX && *F <= INT_MAX) return 0;
    *T = *F = 0;
    *chw = 0;
    return -1;
}

// src: (n, C, T) -> dst: (n, T, C)
void jt_chw_to_rows(const float *src, float *dst, size_t n, size_t C, size_t T) {
    for (size_t i = 0; i < n; i++) {
        const float *s = src + i * C * T;
        float *d = dst + i * T * C;
        for (size_t c = 0; c < C; c++)
            for (size_t t = 0; t < T; t++) d[t * C + c] = s[c * T + t];
    }
}

// src: (n, T, C) -> dst: (n, C, T), overwritten (add = 0) or added to (add = 1)
void jt_rows_to_chw(const float *src, float *dst, size_t n, size_t C, size_t T, int add) {
    for (size_t i = 0; i < n; i++) {
        const float *s = src + i * T * C;
        float *d = dst + i * C * T;
        if (add) {
            for (size_t c = 0; c < C; c++)
                for (size_t t = 0; t < T; t++) d[c * T + t] += s[t * C + c];
        } else {
            for (size_t c = 0; c < C; c++)
                for (size_t t = 0; t < T; t++) d[c * T + t] = s[t * C + c];
        }
    }
}

/* ---- additive attention ---- */

// K: (n, T, A), q: (n, A) ld ldq or NULL -> P: (n, T, A) = tanh(K + q)
JT_HOT static void addattn_hidden(const jt_addattn *s, const float *K, const float *q,
                                  size_t ldq) {
    size_t T = s->T, A = s->A;
    float *P = s->P;
    if (!q) {
        for (size_t k = 0; k < s->n * T * A; k++) P[k] = jt_tanhf(K[k]);
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        const float *qi = q + i * ldq;
        for (size_t t = 0; t < T; t++) {
            const float *kr = K + (i * T + t) * A;
            float *pr = P + (i * T + t) * A;
            for (size_t a = 0; a < A; a++) pr[a] = jt_tanhf(kr[a] + qi[a]);
        }
    }
}

// -> P: (n, T, A), e: (n*T), alpha: (n, T) ld ld_alpha, c: (n, F) ld ldc
void jt_addattn_forward(const jt_addattn *s, const float *K, const float *q, size_t ldq, float *c,
                        size_t ldc) {
    size_t n = s->n, T = s->T, A = s->A, F = s->F;
    addattn_hidden(s, K, q, ldq);
    jt_gemv(n * T, A, 1.0f, s->P, A, s->v, 0.0f, s->e);
    jt_softmax_rows(s->e, T, s->alpha, s->ld_alpha, n, T);
    for (size_t i = 0; i < n; i++)
        jt_gemv_t(T, F, 1.0f, s->X + i * T * F, F, s->alpha + i * s->ld_alpha, 0.0f, c + i * ldc);
}

/* G = de v^T * (1 - P^2) per row of P: dK (+)= G, dq_i = sum_t G_i,t.
 * e: (n*T), v: (A), P, dK: (n, T, A), dq: (n, A) or NULL */
JT_HOT static void addattn_dkey(size_t n, size_t T, size_t A, const float *e, const float *v,
                                const float *P, float *dK, int dK_add, float *dq) {
    for (size_t i = 0; i < n; i++) {
        float *dqi = dq ? dq + i * A : NULL;
        if (dqi) memset(dqi, 0, A * sizeof(float));
        for (size_t t = 0; t < T; t++) {
            float de = e[i * T + t];
            const float *pr = P + (i * T + t) * A;
            float *dk = dK + (i * T + t) * A;
            if (dK_add && dqi) {
                for (size_t a = 0; a < A; a++) {
                    float g = de * v[a] * (1.0f - pr[a] * pr[a]);
                    dk[a] += g;
                    dqi[a] += g;
                }
            } else if (dK_add) {
                for (size_t a = 0; a < A; a++) dk[a] += de * v[a] * (1.0f - pr[a] * pr[a]);
            } else {
                for (size_t a = 0; a < A; a++) dk[a] = de * v[a] * (1.0f - pr[a] * pr[a]);
                if (dqi)
                    for (size_t a = 0; a < A; a++) dqi[a] += dk[a];
            }
        }
    }
}

// dc: (n, F) ld lddc -> dX: (n, T, F), dv: (A), dK: (n, T, A), dq: (n, A)
void jt_addattn_backward(const jt_addattn *s, const float *dc, size_t lddc, float *dX, int dX_add,
                         float *dv, float *dK, int dK_add, float *dq) {
    size_t n = s->n, T = s->T, A = s->A, F = s->F;
    for (size_t i = 0; i < n; i++) {
        const float *dci = dc + i * lddc, *al = s->alpha + i * s->ld_alpha;
        jt_gemv(T, F, 1.0f, s->X + i * T * F, F, dci, 0.0f, s->e + i * T);
        if (!dX) continue;
        float *dXi = dX + i * T * F;
        if (dX_add) {
            jt_ger(T, F, 1.0f, al, dci, dXi, F);
        } else {
            for (size_t t = 0; t < T; t++)
                for (size_t f = 0; f < F; f++) dXi[t * F + f] = al[t] * dci[f];
        }
    }
    jt_softmax_rows_backward(s->alpha, s->ld_alpha, s->e, T, n, T, 1.0f);
    jt_gemv_t(n * T, A, 1.0f, s->P, A, s->e, 1.0f, dv);
    addattn_dkey(n, T, A, s->e, s->v, s->P, dK, dK_add, dq);
}

jt_status jt_rnn_setup(jt_layer *l, jt_params *p, size_t gates, char *err, size_t errlen) {
    if (l->opt.units <= 0) return jt_layer_err(l, err, errlen, "setting 'units' is required");
    if (l->in.ndim != 2) {
        char s[64];
        jt_shape_format(&l->in, s, sizeof s);
        return jt_layer_err(l, err, errlen, "%s needs a (T, F) input, got %s", l->ops->kind, s);
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
    size_t s_ih[2] = {gates * U, F}, s_hh[2] = {gates * U, U}, s_b = gates * U;
    jt_layer_add_param(l, p, "W_ih", 2, s_ih);
    jt_layer_add_param(l, p, "W_hh", 2, s_hh);
    jt_layer_add_param(l, p, "b_ih", 1, &s_b);
    jt_layer_add_param(l, p, "b_hh", 1, &s_b);
    return JT_OK;
}

const float *jt_rnn_step_grad(const float *dy, float *DH, size_t t, size_t T, size_t n, size_t U,
                              int return_sequences, size_t *ldd) {
    if (t + 1 == T) {
        *ldd = return_sequences ? T * U : U;
        return return_sequences ? dy + t * U : dy;
    }
    float *dh = DH + (t % 2) * n * U;
    if (return_sequences) rows_add(dh, dy + t * U, T * U, n, U);
    *ldd = U;
    return dh;
}
