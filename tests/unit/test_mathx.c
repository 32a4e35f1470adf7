/* test_mathx.c - jtrain/mathx.h: jt_expf, jt_tanhf, jt_sigmoidf and their array forms.
 *
 * Against libm in double: every 251st float bit pattern (17M arguments, all binades) plus a dense
 * sweep of the range where the functions are neither 0, 1 nor saturated; the error is counted
 * in ulps of the correctly rounded float result (a subnormal result: ulps of 2^-149). The
 * bounds below are the measured maxima rounded up a little, so a worse polynomial or a lost
 * range-reduction term fails. The array forms (vectorised clones in the library) must give
 * bitwise the scalar inline value (built here without the library's flags), also in place and
 * for every length and alignment of a tail; special values: NaN, +-inf, +-0, saturation. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jtrain/common.h"
#include "jtrain/mathx.h"

enum { F_EXP, F_TANH, F_SIGMOID, N_FUNCS };
static const char *const NAMES[N_FUNCS] = {"exp", "tanh", "sigmoid"};

static float scalar(int f, float x) {
    return f == F_EXP ? jt_expf(x) : f == F_TANH ? jt_tanhf(x) : jt_sigmoidf(x);
}

static void array(int f, size_t n, const float *x, float *y) {
    if (f == F_EXP) jt_exp_array(n, x, y);
    else if (f == F_TANH) jt_tanh_array(n, x, y);
    else jt_sigmoid_array(n, x, y);
}

static double reference(int f, double x) {
    return f == F_EXP ? exp(x) : f == F_TANH ? tanh(x) : 1.0 / (1.0 + exp(-x));
}

/* |got - want| in units of the last place of the float nearest to want. */
static double ulp_err(float got, double want) {
    double a = fabs(want);
    if (a > FLT_MAX) return got == (float)want ? 0.0 : INFINITY;
    double ulp = a < FLT_MIN ? ldexp(1.0, -149) : ldexp(1.0, ilogb(a) - 23);
    return fabs((double)got - want) / ulp;
}

typedef struct {
    double ulp, rel; /* worst ulp error anywhere, worst relative error over normal results */
    float at;        /* the argument of the worst ulp error */
    size_t mismatches; /* array value != scalar value (bitwise) */
    size_t count;
} acc;

/* Checks a batch of arguments: array vs scalar bitwise, both vs libm. */
static void check_batch(int f, const float *x, float *y, size_t n, acc *a) {
    array(f, n, x, y);
    for (size_t k = 0; k < n; k++) {
        float s = scalar(f, x[k]);
        if (isnan(x[k])) {
            if (!isnan(y[k]) || !isnan(s)) a->mismatches++;
            continue;
        }
        if (jt_float_bits(s) != jt_float_bits(y[k])) a->mismatches++;
        double want = reference(f, x[k]);
        double e = ulp_err(y[k], want);
        if (e > a->ulp) a->ulp = e, a->at = x[k];
        if (fabs(want) >= FLT_MIN && fabs(want) <= FLT_MAX)
            a->rel = fmax(a->rel, fabs((double)y[k] - want) / fabs(want));
        a->count++;
    }
}

static void test_accuracy(void **state) {
    (void)state;
    /* measured 0.97, 2.45, 2.33 ulp and 8.1e-8, 1.7e-7, 1.8e-7 relative; the values do not
     * depend on the CPU (the clones are bitwise equal), so the bounds can be tight: a
     * coefficient of the polynomial off by 1e-6 already fails */
    const double max_ulp[N_FUNCS] = {1.1, 2.55, 2.45}, max_rel[N_FUNCS] = {1e-7, 1.8e-7, 1.9e-7};
    /* the interesting ranges: exp to over/underflow, tanh and sigmoid to saturation */
    const float lo[N_FUNCS] = {-104.0f, -10.0f, -104.0f}, hi[N_FUNCS] = {89.0f, 10.0f, 20.0f};
    enum { B = 4096 };
    float *x = jt_alloc_floats(B), *y = jt_alloc_floats(B);
    for (int f = 0; f < N_FUNCS; f++) {
        acc a = {0};
        size_t m = 0;
        for (uint64_t b = 0; b < ((uint64_t)1 << 32); b += 251) { /* every binade, both signs */
            x[m++] = jt_bits_float((uint32_t)b);
            if (m == B) check_batch(f, x, y, m, &a), m = 0;
        }
        for (double v = lo[f]; v < hi[f]; v += 3.1e-5) { /* dense where it matters */
            x[m++] = (float)v;
            if (m == B) check_batch(f, x, y, m, &a), m = 0;
        }
        check_batch(f, x, y, m, &a);
        print_message("    %-7s max %.2f ulp (at %.9g), max rel %.2e over %zu args\n", NAMES[f],
                      a.ulp, a.at, a.rel, a.count);
        assert_int_equal(a.mismatches, 0);
        assert_true(a.ulp <= max_ulp[f]);
        assert_true(a.rel <= max_rel[f]);
    }
    jt_free_aligned(x);
    jt_free_aligned(y);
}

static void test_special_values(void **state) {
    (void)state;
    assert_true(isnan(jt_expf(NAN)) && isnan(jt_tanhf(NAN)) && isnan(jt_sigmoidf(NAN)));
    assert_true(isnan(jt_expf(-NAN)) && isnan(jt_tanhf(-NAN)) && isnan(jt_sigmoidf(-NAN)));
    assert_true(jt_expf(INFINITY) == INFINITY && jt_expf(-INFINITY) == 0.0f);
    assert_true(jt_expf(89.0f) == INFINITY && jt_expf(88.72f) < INFINITY);
    assert_true(jt_expf(-104.0f) == 0.0f && jt_expf(-103.0f) > 0.0f); /* subnormal, not flushed */
    assert_true(jt_expf(0.0f) == 1.0f && jt_expf(-0.0f) == 1.0f);
    assert_true(jt_tanhf(INFINITY) == 1.0f && jt_tanhf(-INFINITY) == -1.0f);
    assert_true(jt_tanhf(9.1f) == 1.0f && jt_tanhf(-9.1f) == -1.0f && jt_tanhf(1e30f) == 1.0f);
    assert_true(jt_tanhf(0.0f) == 0.0f && !signbit(jt_tanhf(0.0f)) && signbit(jt_tanhf(-0.0f)));
    assert_true(jt_tanhf(1e-30f) == 1e-30f && jt_tanhf(-1e-30f) == -1e-30f);
    assert_true(jt_sigmoidf(INFINITY) == 1.0f && jt_sigmoidf(-INFINITY) == 0.0f);
    assert_true(jt_sigmoidf(17.0f) == 1.0f && jt_sigmoidf(0.0f) == 0.5f);
    assert_true(jt_sigmoidf(-90.0f) > 0.0f && jt_sigmoidf(-200.0f) == 0.0f);
    /* the same through the vectorised clones, with the specials mid-vector */
    float x[37], y[37];
    for (int k = 0; k < 37; k++) x[k] = 0.37f * (float)(k - 18);
    x[3] = NAN, x[20] = INFINITY, x[21] = -INFINITY, x[35] = -0.0f;
    for (int f = 0; f < N_FUNCS; f++) {
        array(f, 37, x, y);
        for (int k = 0; k < 37; k++) {
            float s = scalar(f, x[k]);
            assert_true(k == 3 ? isnan(y[k]) : jt_float_bits(y[k]) == jt_float_bits(s));
        }
    }
}

/* Every length 0..67 at every offset 0..15 (the vector loop's head and tail), and in place. */
static void test_array_lengths(void **state) {
    (void)state;
    float *x = jt_alloc_floats(96), *y = jt_alloc_floats(96), *z = jt_alloc_floats(96);
    for (int k = 0; k < 96; k++) x[k] = 0.9f * (float)k - 40.0f;
    for (int f = 0; f < N_FUNCS; f++)
        for (size_t off = 0; off < 16; off++)
            for (size_t n = 0; n < 68; n++) {
                for (int k = 0; k < 96; k++) y[k] = -7.0f;
                array(f, n, x + off, y + off);
                for (size_t k = 0; k < 96; k++) {
                    int inside = k >= off && k < off + n;
                    float want = inside ? scalar(f, x[k]) : -7.0f;
                    assert_true(jt_float_bits(y[k]) == jt_float_bits(want));
                }
                memcpy(z, x, 96 * sizeof(float));
                array(f, n, z + off, z + off);
                assert_memory_equal(z + off, y + off, n * sizeof(float));
            }
    jt_free_aligned(x);
    jt_free_aligned(y);
    jt_free_aligned(z);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_special_values),
        cmocka_unit_test(test_array_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
