/* test_loss_optim.c - softmax cross-entropy (values, masking, scale, stability, finite
 * differences) and AdamW (hand-computed steps, decoupled weight decay) with gradient clipping. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jtrain/loss.h"
#include "jtrain/optim.h"
#include "testutil.h"

/* ---- softmax cross-entropy ---- */

/* -log softmax(z)[y] and softmax, in double, the plain way (fine for small logits). */
static double ref_xent(const float *z, size_t C, int y, double *p) {
    double s = 0;
    for (size_t c = 0; c < C; c++) s += exp((double)z[c]);
    for (size_t c = 0; c < C; c++) p[c] = exp((double)z[c]) / s;
    return -log(p[y]);
}

static void test_xent_values(void **state) {
    (void)state;
    enum { N = 4, C = 3 };
    float z[N * C] = {1.0f, 2.0f, 0.5f,  /* label 1: argmax 1, correct */
                      0.3f, -1.0f, 2.0f, /* masked */
                      -0.5f, 0.0f, 0.7f, /* label 0: argmax 2, wrong */
                      3.0f, 1.0f, -2.0f};/* label 0: correct */
    int32_t y[N] = {1, -1, 0, 0};
    float dz[N * C];
    for (int k = 0; k < N * C; k++) dz[k] = 99.0f; /* must be overwritten, masked row too */
    const float scale = 0.25f;
    jt_xent_stats st = jt_softmax_xent(z, y, N, C, scale, dz);
    double want = 0, p[C];
    for (int i = 0; i < N; i++) {
        if (y[i] < 0) {
            for (int c = 0; c < C; c++) assert_true(dz[i * C + c] == 0.0f);
            continue;
        }
        want += ref_xent(z + i * C, C, y[i], p);
        for (int c = 0; c < C; c++) {
            double g = scale * (p[c] - (c == y[i]));
            assert_true(fabs(dz[i * C + c] - g) < 1e-7);
        }
    }
    assert_true(fabs(st.loss_sum - want) < 1e-6 * want);
    assert_int_equal(st.labelled, 3);
    assert_int_equal(st.correct, 2);
    /* a hand value: logits (0, 0), label 0 -> log 2 */
    float z2[2] = {0, 0};
    int32_t y2 = 0;
    st = jt_softmax_xent(z2, &y2, 1, 2, 1.0f, NULL);
    assert_true(fabs(st.loss_sum - log(2.0)) < 1e-12);
}

static void test_xent_all_masked_and_stable(void **state) {
    (void)state;
    float z[6] = {1, 2, 3, 4, 5, 6}, dz[6];
    int32_t y[2] = {-1, -1};
    jt_xent_stats st = jt_softmax_xent(z, y, 2, 3, 1.0f, dz);
    assert_int_equal(st.labelled, 0);
    assert_int_equal(st.correct, 0);
    assert_true(st.loss_sum == 0.0);
    for (int k = 0; k < 6; k++) assert_true(dz[k] == 0.0f);
    /* logits whose exp overflows float and double: the loss stays finite and exact */
    float big[3] = {1000.0f, 0.0f, -1000.0f};
    int32_t lab = 1;
    st = jt_softmax_xent(big, &lab, 1, 3, 1.0f, dz);
    assert_true(isfinite(st.loss_sum));
    assert_true(fabs(st.loss_sum - 1000.0) < 1e-9);
    assert_true(fabs(dz[0] - 1.0f) < 1e-7 && fabs(dz[1] + 1.0f) < 1e-7 && dz[2] == 0.0f);
    lab = 0;
    st = jt_softmax_xent(big, &lab, 1, 3, 1.0f, dz);
    assert_true(st.loss_sum >= 0.0 && st.loss_sum < 1e-12);
    assert_int_equal(st.correct, 1);
}

/* d(scale * loss_sum)/dz by central differences in double, against dlogits. */
static void test_xent_gradcheck(void **state) {
    (void)state;
    enum { N = 5, C = 7 };
    float z[N * C], dz[N * C];
    int32_t y[N] = {3, -1, 0, 6, 2};
    jt_rng r;
    jt_rng_seed(&r, 1, JT_RNG_TEST, 0, 0, 0);
    tu_fill_uniform(z, N * C, -3.0f, 3.0f, &r);
    const float scale = 0.37f;
    jt_softmax_xent(z, y, N, C, scale, dz);
    double fd[N * C], an[N * C];
    for (int k = 0; k < N * C; k++) {
        float v = z[k], vp = v + 1e-2f, vm = v - 1e-2f;
        z[k] = vp;
        double Lp = scale * jt_softmax_xent(z, y, N, C, scale, NULL).loss_sum;
        z[k] = vm;
        double Lm = scale * jt_softmax_xent(z, y, N, C, scale, NULL).loss_sum;
        z[k] = v;
        fd[k] = (Lp - Lm) / ((double)vp - (double)vm);
        an[k] = dz[k];
    }
    assert_true(tu_max_rel_err(an, fd, N * C) < 1e-3);
}

/* ---- AdamW ---- */

static void test_adam_defaults(void **state) {
    (void)state;
    jt_adam_opts o = jt_adam_default_opts();
    assert_true(o.lr == 1e-3 && o.beta1 == 0.9 && o.beta2 == 0.999 && o.eps == 1e-8 &&
                o.weight_decay == 0.0);
}

/* Three steps of torch.optim.AdamW written out in double. */
static void adam_ref(double *w, const double g[3][4], int steps, double lr, double b1, double b2,
                     double eps, double wd) {
    double m[4] = {0}, v[4] = {0};
    for (int t = 1; t <= steps; t++)
        for (int i = 0; i < 4; i++) {
            w[i] -= lr * wd * w[i];
            m[i] = b1 * m[i] + (1 - b1) * g[t - 1][i];
            v[i] = b2 * v[i] + (1 - b2) * g[t - 1][i] * g[t - 1][i];
            double mhat = m[i] / (1 - pow(b1, t)), vhat = v[i] / (1 - pow(b2, t));
            w[i] -= lr * mhat / (sqrt(vhat) + eps);
        }
}

static void test_adam_steps(void **state) {
    (void)state;
    const double g[3][4] = {{0.5, -1.0, 2e-3, 0.0}, {0.3, -0.2, -4e-3, 0.1}, {-0.7, 0.4, 1e-3, 0.2}};
    const double w0[4] = {1.0, -0.5, 0.25, 2.0};
    for (int with_wd = 0; with_wd < 2; with_wd++) {
        jt_adam_opts o = {.lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6,
                          .weight_decay = with_wd ? 0.1 : 0.0};
        float w[4], m[4] = {0}, v[4] = {0}, gf[4];
        for (int i = 0; i < 4; i++) w[i] = (float)w0[i];
        for (int t = 1; t <= 3; t++) {
            for (int i = 0; i < 4; i++) gf[i] = (float)g[t - 1][i];
            jt_adam_step(w, gf, m, v, 4, &o, (uint64_t)t);
            double ref[4];
            memcpy(ref, w0, sizeof ref);
            adam_ref(ref, g, t, o.lr, o.beta1, o.beta2, o.eps, o.weight_decay);
            for (int i = 0; i < 4; i++)
                if (fabs(w[i] - ref[i]) > 1e-6 * fmax(1.0, fabs(ref[i])))
                    fail_msg("wd %d step %d w[%d] = %.9g, want %.9g", with_wd, t, i, (double)w[i], ref[i]);
        }
        /* after step 1 every entry with g != 0 moved by about lr (Adam's first step is lr * sign) */
        if (!with_wd) {
            float w1[4], m1[4] = {0}, v1[4] = {0};
            for (int i = 0; i < 4; i++) w1[i] = (float)w0[i], gf[i] = (float)g[0][i];
            jt_adam_step(w1, gf, m1, v1, 4, &o, 1);
            for (int i = 0; i < 3; i++)
                assert_true(fabs(fabs(w1[i] - w0[i]) - 0.01) < 5e-4);
            assert_true(w1[3] == (float)w0[3]);
        }
    }
}

static void test_adam_decoupled_decay(void **state) {
    (void)state;
    /* zero gradient: AdamW only shrinks w by (1 - lr*wd); L2-in-the-gradient Adam would move it
     * by about lr. */
    jt_adam_opts o = jt_adam_default_opts();
    o.lr = 0.1;
    o.weight_decay = 0.5;
    float w[2] = {2.0f, -4.0f}, g[2] = {0, 0}, m[2] = {0}, v[2] = {0};
    jt_adam_step(w, g, m, v, 2, &o, 1);
    assert_true(fabs(w[0] - 2.0 * 0.95) < 1e-6 && fabs(w[1] + 4.0 * 0.95) < 1e-6);
    assert_true(m[0] == 0.0f && v[1] == 0.0f);
}

static void test_clip_grad_norm(void **state) {
    (void)state;
    float g[3] = {3.0f, 0.0f, -4.0f};
    assert_true(fabs(jt_grad_norm(g, 3) - 5.0) < 1e-12);
    assert_true(fabs(jt_clip_grad_norm(g, 3, 10.0) - 5.0) < 1e-12); /* below: untouched */
    assert_true(g[0] == 3.0f && g[2] == -4.0f);
    assert_true(fabs(jt_clip_grad_norm(g, 3, 0.0) - 5.0) < 1e-12); /* off */
    assert_true(g[0] == 3.0f);
    assert_true(fabs(jt_clip_grad_norm(g, 3, 1.0) - 5.0) < 1e-12); /* returns the norm before */
    assert_true(fabs(g[0] - 0.6) < 1e-7 && g[1] == 0.0f && fabs(g[2] + 0.8) < 1e-7);
    assert_true(fabs(jt_grad_norm(g, 3) - 1.0) < 1e-6);
    /* accumulated in double: many small entries whose float sum of squares would drift */
    size_t n = 1000000;
    float *big = malloc(n * sizeof *big);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++) big[i] = 1e-3f;
    assert_true(fabs(jt_grad_norm(big, n) - sqrt((double)n) * (double)1e-3f) < 1e-9);
    free(big);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xent_values),
        cmocka_unit_test(test_xent_all_masked_and_stable),
        cmocka_unit_test(test_xent_gradcheck),
        cmocka_unit_test(test_adam_defaults),
        cmocka_unit_test(test_adam_steps),
        cmocka_unit_test(test_adam_decoupled_decay),
        cmocka_unit_test(test_clip_grad_norm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
