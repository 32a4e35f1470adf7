/* test_prims.c - the shared primitives of the layer kinds (src/layers/prims.h).
 *
 * The GEMM/GEMV/GER wrappers against naive loops in double, with leading dimensions larger than
 * the rows (the padding must stay untouched), alpha and beta (beta = 0 must ignore NaN in C),
 * and the INT_MAX check; bias fill and column sums with strides; row softmax against a naive
 * one and its backward against finite differences; the sequence views and transposes; the
 * additive attention step against a naive loop in double (with a per-sample query, one
 * broadcast query and none) and its backward against central differences of that naive
 * forward, with the add/overwrite contracts; the kept P against jt_tanhf bitwise. */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/layers/prims.h"
#include "jtrain/common.h"
#include "jtrain/mathx.h"
#include "testutil.h"

#define PAD 7.25f /* value of the padding columns between rows: must survive every call */

/* n random floats in [-1, 1) (jt_alloc_floats; free with jt_free_aligned) */
static float *rnd(size_t n, uint64_t seed) { return tu_rand_floats(n ? n : 1, seed); }

/* m rows of cols floats with leading dimension ld: random values, PAD in the gaps */
static float *padded(size_t m, size_t cols, size_t ld, uint64_t seed) {
    float *p = rnd(m * ld, seed);
    for (size_t r = 0; r < m; r++)
        for (size_t c = cols; c < ld; c++) p[r * ld + c] = PAD;
    return p;
}

static void assert_padding(const float *p, size_t m, size_t cols, size_t ld) {
    for (size_t r = 0; r < m; r++)
        for (size_t c = cols; c < ld; c++)
            if (p[r * ld + c] != PAD) fail_msg("padding (%zu, %zu) overwritten", r, c);
}

static void assert_close(double got, double want, double tol, const char *what, size_t k) {
    if (fabs(got - want) > tol * (1.0 + fabs(want)))
        fail_msg("%s[%zu]: %.9g, want %.9g", what, k, got, want);
}

/* ---- matrix products ---- */

/* op(A)(r, c) for A stored (rows, cols) ld lda, transposed or not */
static double at(const float *a, size_t lda, int trans, size_t r, size_t c) {
    return trans ? a[c * lda + r] : a[r * lda + c];
}

/* One product C (m, n) = alpha op(A) op(B) + beta C through the wrapper `which` (0 abt, 1 atb,
 * 2 ab), against a naive double loop, every operand with a padded leading dimension. */
static void check_gemm(int which, size_t m, size_t n, size_t k, float alpha, float beta) {
    int ta = which == 1, tb = which == 0;
    size_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    size_t lda = ac + 3, ldb = bc + 2, ldc = n + 5;
    float *a = padded(ar, ac, lda, 1), *b = padded(br, bc, ldb, 2), *c = padded(m, n, ldc, 3);
    double *want = malloc(m * n * sizeof *want);
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t q = 0; q < k; q++) s += at(a, lda, ta, r, q) * at(b, ldb, tb, q, j);
            want[r * n + j] = alpha * s + (beta != 0.0f ? beta * (double)c[r * ldc + j] : 0.0);
        }
    if (beta == 0.0f) /* BLAS semantics: beta = 0 overwrites, even NaN */
        for (size_t r = 0; r < m; r++)
            for (size_t j = 0; j < n; j++) c[r * ldc + j] = NAN;
    if (which == 0) jt_gemm_abt(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else if (which == 1) jt_gemm_atb(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else jt_gemm_ab(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < n; j++)
            assert_close(c[r * ldc + j], want[r * n + j], 1e-5, "gemm C", r * n + j);
    assert_padding(c, m, n, ldc);
    free(want);
    jt_free_aligned(a);
    jt_free_aligned(b);
    jt_free_aligned(c);
}

static void test_gemm(void **state) {
    (void)state;
    for (int which = 0; which < 3; which++) {
        check_gemm(which, 5, 7, 3, 1.0f, 0.0f);
        check_gemm(which, 9, 4, 11, 1.0f, 1.0f);
        check_gemm(which, 3, 17, 33, 0.25f, 1.0f);
        check_gemm(which, 1, 1, 1, -2.0f, 0.5f);
        check_gemm(which, 40, 24, 70, 1.0f, 0.0f); /* past OpenBLAS's small-matrix paths */
    }
}

static void test_gemv_ger(void **state) {
    (void)state;
    size_t m = 6, n = 9, lda = n + 4;
    float *a = padded(m, n, lda, 4), *x = rnd(n, 5), *xt = rnd(m, 6), *y = rnd(m, 7),
          *yt = rnd(n, 8);
    double want[16];
    for (size_t r = 0; r < m; r++) {
        double s = 0;
        for (size_t c = 0; c < n; c++) s += (double)a[r * lda + c] * x[c];
        want[r] = 0.5 * s + 1.0 * y[r];
    }
    jt_gemv(m, n, 0.5f, a, lda, x, 1.0f, y);
    for (size_t r = 0; r < m; r++) assert_close(y[r], want[r], 1e-6, "gemv y", r);
    for (size_t c = 0; c < n; c++) {
        double s = 0;
        for (size_t r = 0; r < m; r++) s += (double)a[r * lda + c] * xt[r];
        want[c] = s;
        yt[c] = NAN;
    }
    jt_gemv_t(m, n, 1.0f, a, lda, xt, 0.0f, yt);
    for (size_t c = 0; c < n; c++) assert_close(yt[c], want[c], 1e-6, "gemv_t y", c);
    float before[6 * 13];
    memcpy(before, a, sizeof before);
    jt_ger(m, n, 2.0f, xt, x, a, lda);
    for (size_t r = 0; r < m; r++)
        for (size_t c = 0; c < n; c++)
            assert_close(a[r * lda + c], before[r * lda + c] + 2.0 * xt[r] * x[c], 1e-6, "ger A",
                         r * n + c);
    assert_padding(a, m, n, lda);
    jt_free_aligned(a);
    jt_free_aligned(x);
    jt_free_aligned(xt);
    jt_free_aligned(y);
    jt_free_aligned(yt);
}

static jmp_buf g_abort_jump;
static void on_abort(int code) {
    (void)code;
    longjmp(g_abort_jump, 1);
}

/* A size that does not fit a cblas int is an internal error (JT_CHECK), never a silent wrap. */
static void test_gemm_int_max(void **state) {
    (void)state;
    float a[4] = {0}, b[4] = {0}, c[4] = {0};
    size_t big = (size_t)INT_MAX + 1;
    jt_set_abort_handler(on_abort);
    volatile int aborted = 0;
    if (setjmp(g_abort_jump) == 0) jt_gemm_abt(1, 1, big, 1.0f, a, big, b, big, 0.0f, c, 1);
    else aborted++;
    if (setjmp(g_abort_jump) == 0) jt_gemm_ab(2, 2, 2, 1.0f, a, 1, b, 2, 0.0f, c, 2); /* lda < k */
    else aborted++;
    if (setjmp(g_abort_jump) == 0) jt_gemv(big, 1, 1.0f, a, 1, b, 0.0f, c);
    else aborted++;
    jt_set_abort_handler(NULL);
    assert_int_equal(aborted, 3);
}

/* ---- rows ---- */

static void test_rows_fill_colsum(void **state) {
    (void)state;
    size_t rows = 5, cols = 19, ld = 23;
    float *y = padded(rows, cols, ld, 9), *b = rnd(cols, 10);
    jt_rows_fill(y, ld, b, rows, cols);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) assert_true(y[r * ld + c] == b[c]);
    assert_padding(y, rows, cols, ld);
    float *d = padded(rows, cols, ld, 11), *db = rnd(cols, 12);
    for (size_t c = 0; c < cols; c++) {
        float want = db[c]; /* rows added in order: bitwise this sum */
        for (size_t r = 0; r < rows; r++) want += d[r * ld + c];
        float got[32];
        memcpy(got, db, cols * sizeof(float));
        jt_colsum_add(got, d, ld, rows, cols);
        assert_true(got[c] == want);
    }
    jt_free_aligned(y);
    jt_free_aligned(b);
    jt_free_aligned(d);
    jt_free_aligned(db);
}

/* softmax of row x (cols) in double */
static void softmax_ref(const double *x, double *p, size_t cols) {
    double m = x[0], s = 0;
    for (size_t c = 1; c < cols; c++) m = fmax(m, x[c]);
    for (size_t c = 0; c < cols; c++) s += (p[c] = exp(x[c] - m));
    for (size_t c = 0; c < cols; c++) p[c] /= s;
}

static void test_softmax(void **state) {
    (void)state;
    enum { R = 4, C = 9, LD = 12 };
    float *x = padded(R, C, LD, 13), p[R * LD];
    for (size_t k = 0; k < R * LD; k++) p[k] = PAD;
    x[2 * LD + 3] = 80.0f; /* a large logit: max subtraction keeps it finite */
    jt_softmax_rows(x, LD, p, LD, R, C);
    for (size_t r = 0; r < R; r++) {
        double xr[C], pr[C];
        for (size_t c = 0; c < C; c++) xr[c] = x[r * LD + c];
        softmax_ref(xr, pr, C);
        for (size_t c = 0; c < C; c++) assert_close(p[r * LD + c], pr[c], 1e-6, "softmax", c);
    }
    assert_padding(p, R, C, LD);
    /* in place gives the same */
    float q[R * LD];
    memcpy(q, x, sizeof q);
    jt_softmax_rows(q, LD, q, LD, R, C);
    for (size_t r = 0; r < R; r++)
        for (size_t c = 0; c < C; c++) assert_true(q[r * LD + c] == p[r * LD + c]);

    /* backward: d = dL/dp in, scale * dL/dx out, L = sum(Rw * softmax(x)); central differences
     * of the double softmax */
    float *Rw = padded(R, C, LD, 14), d[R * LD];
    const float scale = 0.75f;
    memcpy(d, Rw, sizeof d);
    jt_softmax_rows_backward(p, LD, d, LD, R, C, scale);
    for (size_t r = 0; r < R; r++)
        for (size_t c = 0; c < C; c++) {
            double xr[C], pr[C], L[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                for (size_t j = 0; j < C; j++) xr[j] = x[r * LD + j];
                xr[c] += sgn ? -1e-4 : 1e-4;
                softmax_ref(xr, pr, C);
                L[sgn] = 0;
                for (size_t j = 0; j < C; j++) L[sgn] += Rw[r * LD + j] * pr[j];
            }
            double fd = scale * (L[0] - L[1]) / 2e-4;
            assert_close(d[r * LD + c], fd, 1e-4, "softmax backward", r * C + c);
        }
    assert_padding(d, R, C, LD);
    jt_free_aligned(x);
    jt_free_aligned(Rw);
}

/* ---- sequence views ---- */

static void test_seq_view(void **state) {
    (void)state;
    size_t T = 99, F = 99;
    int chw = 9;
    jt_shape s2 = tu_shape(2, (size_t[]){5, 3}), s3 = tu_shape(3, (size_t[]){4, 2, 3});
    jt_shape s1 = tu_shape(1, (size_t[]){6}), s4 = tu_shape(4, (size_t[]){1, 2, 3, 4});
    jt_shape s0 = tu_shape(2, (size_t[]){0, 3});
    assert_int_equal(jt_seq_view(&s2, 0, &T, &F, &chw), 0);
    assert_true(T == 5 && F == 3 && chw == 0);
    assert_int_equal(jt_seq_view(&s3, 0, &T, &F, &chw), 0);
    assert_true(T == 6 && F == 4 && chw == 1);
    assert_int_equal(jt_seq_view(&s1, 1, &T, &F, &chw), 0);
    assert_true(T == 1 && F == 6 && chw == 0);
    /* rejected shapes leave zeros, never stale values */
    assert_int_equal(jt_seq_view(&s1, 0, &T, &F, &chw), -1);
    assert_true(T == 0 && F == 0 && chw == 0);
    assert_int_equal(jt_seq_view(&s4, 1, &T, &F, &chw), -1);
    assert_int_equal(jt_seq_view(&s0, 1, &T, &F, &chw), -1);
    assert_true(T == 0 && F == 0);

    size_t n = 2, C = 3, TT = 5;
    float *src = rnd(n * C * TT, 15), rows[30], back[30];
    jt_chw_to_rows(src, rows, n, C, TT);
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < C; c++)
            for (size_t t = 0; t < TT; t++)
                assert_true(rows[(i * TT + t) * C + c] == src[(i * C + c) * TT + t]);
    jt_rows_to_chw(rows, back, n, C, TT, 0);
    assert_memory_equal(back, src, n * C * TT * sizeof(float));
    jt_rows_to_chw(rows, back, n, C, TT, 1);
    for (size_t k = 0; k < n * C * TT; k++) assert_true(back[k] == src[k] + src[k]);
    jt_free_aligned(src);
}

/* ---- additive attention ---- */

/* naive forward of sample i in double: alpha (T), c (F), from K, q (or NULL), v, X */
static void addattn_ref(size_t T, size_t A, size_t F, const double *K, const double *q,
                        const double *v, const double *X, double *alpha, double *c) {
    double e[64];
    for (size_t t = 0; t < T; t++) {
        e[t] = 0;
        for (size_t a = 0; a < A; a++) e[t] += v[a] * tanh(K[t * A + a] + (q ? q[a] : 0.0));
    }
    softmax_ref(e, alpha, T);
    for (size_t f = 0; f < F; f++) {
        c[f] = 0;
        for (size_t t = 0; t < T; t++) c[f] += alpha[t] * X[t * F + f];
    }
}

enum { QN_NONE, QN_EACH, QN_SHARED };

/* One attention configuration: forward against the naive loop, backward against central
 * differences of L = sum(R * c) through the naive forward. */
static void check_addattn(size_t n, size_t T, size_t A, size_t F, int qmode) {
    size_t ldq = qmode == QN_EACH ? A + 3 : 0, ldal = T + 2, ldc = F + 1;
    float *X = rnd(n * T * F, 20), *K = rnd(n * T * A, 21), *v = rnd(A, 22);
    float *q = qmode == QN_NONE ? NULL : rnd(qmode == QN_EACH ? n * ldq : A, 23);
    float *al = rnd(n * ldal, 24), *e = rnd(n * T, 25), *c = padded(n, F, ldc, 26);
    float *R = padded(n, F, ldc, 27), *P = rnd(n * T * A, 28);
    for (size_t k = 0; k < n * T * A; k++) K[k] *= 2.0f; /* tanh both near 0 and saturating */
    jt_addattn s = {.n = n, .T = T, .A = A, .F = F, .X = X, .v = v, .P = P, .alpha = al,
                    .ld_alpha = ldal, .e = e};
    jt_addattn_forward(&s, K, q, ldq, c, ldc);
    assert_padding(c, n, F, ldc);

    /* double copies for the reference */
    double *Xd = malloc(n * T * F * sizeof *Xd), *Kd = malloc(n * T * A * sizeof *Kd);
    double *vd = malloc(A * sizeof *vd), *qd = malloc(A * sizeof *qd);
    for (size_t k = 0; k < n * T * F; k++) Xd[k] = X[k];
    for (size_t k = 0; k < n * T * A; k++) Kd[k] = K[k];
    for (size_t k = 0; k < A; k++) vd[k] = v[k];
    double ra[64], rc[64];
#define QROW(i) (q ? q + (i) * ldq : NULL)
#define LOADQ(i) \
    do { \
        if (q) \
            for (size_t j_ = 0; j_ < A; j_++) qd[j_] = QROW(i)[j_]; \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        LOADQ(i);
        addattn_ref(T, A, F, Kd + i * T * A, q ? qd : NULL, vd, Xd + i * T * F, ra, rc);
        for (size_t t = 0; t < T; t++) assert_close(al[i * ldal + t], ra[t], 2e-6, "alpha", t);
        for (size_t f = 0; f < F; f++) assert_close(c[i * ldc + f], rc[f], 2e-6, "c", f);
    }

    /* backward: dX overwritten, dv added, dK added, dq overwritten */
    size_t nq = qmode == QN_EACH ? n * A : (qmode == QN_SHARED ? n * A : 1);
    float *dX = rnd(n * T * F, 30), *dv = rnd(A, 31), *dK = rnd(n * T * A, 32);
    float *dq = rnd(nq, 33);
    float *dX0 = rnd(n * T * F, 30), *dv0 = rnd(A, 31), *dK0 = rnd(n * T * A, 32);
    jt_addattn_backward(&s, R, ldc, dX, 0, dv, dK, 1, q ? dq : NULL);
    /* L(i) = sum_f R_if c_if of sample i, in double, with one input perturbed */
    const double h = 1e-4;
    for (size_t i = 0; i < n; i++) {
        LOADQ(i);
        double *Ki = Kd + i * T * A, *Xi = Xd + i * T * F, dsum[64] = {0};
#define LOSS(out)                                                                    \
    do {                                                                             \
        addattn_ref(T, A, F, Ki, q ? qd : NULL, vd, Xi, ra, rc);                     \
        out = 0;                                                                     \
        for (size_t f = 0; f < F; f++) out += (double)R[i * ldc + f] * rc[f];        \
    } while (0)
#define FD(var, got, what, k)                                                        \
    do {                                                                             \
        double keep = var, Lp, Lm;                                                   \
        var = keep + h;                                                              \
        LOSS(Lp);                                                                    \
        var = keep - h;                                                              \
        LOSS(Lm);                                                                    \
        var = keep;                                                                  \
        assert_close(got, (Lp - Lm) / (2 * h), 2e-4, what, k);                       \
    } while (0)
        for (size_t k = 0; k < T * F; k++) FD(Xi[k], dX[i * T * F + k], "dX", k);
        for (size_t k = 0; k < T * A; k++) {
            FD(Ki[k], dK[i * T * A + k] - dK0[i * T * A + k], "dK", k);
            dsum[k % A] += dK[i * T * A + k] - dK0[i * T * A + k];
        }
        if (q) /* dq_i = sum_t dL/dK_it; the query's own gradient */
            for (size_t a = 0; a < A; a++) {
                FD(qd[a], dq[i * A + a], "dq", a);
                assert_close(dq[i * A + a], dsum[a], 1e-5, "dq = sum dK", a);
            }
    }
#undef FD
    /* dv by its own central differences over all samples at once */
    for (size_t a = 0; a < A; a++) {
        double L[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            double keep = vd[a];
            vd[a] = keep + (sgn ? -h : h);
            L[sgn] = 0;
            for (size_t i = 0; i < n; i++) {
                LOADQ(i);
                double *Ki = Kd + i * T * A, *Xi = Xd + i * T * F, Li;
                LOSS(Li);
                L[sgn] += Li;
            }
            vd[a] = keep;
        }
        assert_close(dv[a] - dv0[a], (L[0] - L[1]) / (2 * h), 2e-4, "dv", a);
    }
#undef LOSS
    /* the add/overwrite contracts: a second backward doubles dK's and dv's increments, dX_add
     * adds alpha dc^T (sger) onto dX, dq and dK without add are overwritten */
    float *dX2 = rnd(n * T * F, 40), *dK2 = rnd(n * T * A, 41), *dv2 = rnd(A, 42);
    memcpy(dX2, dX, n * T * F * sizeof(float));
    memcpy(dv2, dv, A * sizeof(float));
    float *dq1 = rnd(nq, 43);
    memcpy(dq1, dq, nq * sizeof(float));
    jt_addattn_backward(&s, R, ldc, dX2, 1, dv2, dK2, 0, q ? dq : NULL);
    for (size_t k = 0; q && k < nq; k++) assert_close(dq[k], dq1[k], 1e-6, "dq overwrite", k);
    for (size_t k = 0; k < n * T * F; k++) assert_close(dX2[k], 2.0 * dX[k], 1e-6, "dX add", k);
    for (size_t k = 0; k < n * T * A; k++)
        assert_close(dK2[k], (double)dK[k] - dK0[k], 1e-5, "dK overwrite", k);
    for (size_t a = 0; a < A; a++)
        assert_close(dv2[a] - dv0[a], 2.0 * ((double)dv[a] - dv0[a]), 1e-5, "dv add", a);
    jt_addattn_backward(&s, R, ldc, NULL, 0, dv2, dK2, 0, NULL); /* dX, dq skipped: no crash */
#undef LOADQ
#undef QROW
    free(Xd), free(Kd), free(vd), free(qd);
    float *bufs[] = {X, K, v, q, al, e, c, R, P, dX, dv, dK, dq, dX0, dv0, dK0, dX2, dK2, dv2, dq1};
    for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++) jt_free_aligned(bufs[k]);
}

static void test_addattn(void **state) {
    (void)state;
    check_addattn(3, 5, 7, 4, QN_EACH);   /* the decoder: a query per sample */
    check_addattn(2, 6, 37, 3, QN_EACH);  /* an odd attention size */
    check_addattn(2, 4, 32, 5, QN_NONE);  /* attention_pool: the bias in K */
    check_addattn(3, 3, 21, 2, QN_SHARED); /* ldq = 0: one query for every sample */
    check_addattn(2, 1, 16, 3, QN_EACH);  /* one position: alpha = 1 */
}

/* The kept P is jt_tanhf(K + q) bitwise (the vectorised clone computes each element as the
 * scalar function does), and with no query P may be K itself (in place). */
static void test_addattn_tanh_bitwise(void **state) {
    (void)state;
    size_t n = 2, T = 3, A = 45, F = 2;
    float *X = rnd(n * T * F, 50), *K = rnd(n * T * A, 51), *v = rnd(A, 52), *q = rnd(n * A, 53);
    float *P = rnd(n * T * A, 54), al[6], e[6], c[4];
    for (size_t k = 0; k < n * T * A; k++) K[k] *= 3.0f;
    jt_addattn s = {.n = n, .T = T, .A = A, .F = F, .X = X, .v = v, .P = P, .alpha = al,
                    .ld_alpha = T, .e = e};
    jt_addattn_forward(&s, K, q, A, c, F);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < T * A; k++) {
            float want = jt_tanhf(K[i * T * A + k] + q[i * A + k % A]);
            if (memcmp(&P[i * T * A + k], &want, sizeof want) != 0)
                fail_msg("P[%zu, %zu] = %.9g, jt_tanhf gives %.9g", i, k, P[i * T * A + k], want);
        }
    float al2[6];
    memcpy(P, K, n * T * A * sizeof(float));
    s.alpha = al2;
    jt_addattn_forward(&s, P, NULL, 0, c, F);
    for (size_t k = 0; k < n * T * A; k++) {
        float want = jt_tanhf(K[k]);
        assert_memory_equal(&P[k], &want, sizeof want);
    }
    float *bufs[] = {X, K, v, q, P};
    for (size_t k = 0; k < 5; k++) jt_free_aligned(bufs[k]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_gemv_ger),
        cmocka_unit_test(test_gemm_int_max),
        cmocka_unit_test(test_rows_fill_colsum),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_seq_view),
        cmocka_unit_test(test_addattn),
        cmocka_unit_test(test_addattn_tanh_bitwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
