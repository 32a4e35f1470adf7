/* mathx.h - exp, tanh and sigmoid in float for every layer kind, as scalar inline functions and
 * as array functions that run vectorised (AVX-512 / AVX2 clones picked at load time).
 *
 * Why not libm: glibc's expf/tanhf are scalar calls, so a loop calling them cannot vectorise,
 * and tanhf goes through expm1f (~25 ns). These are branch-free (selects only), so GCC
 * vectorises any loop that calls them.
 *
 * One formula, two entry points: the array functions (src/mathx.c) apply exactly the inline
 * scalar functions below, and the build never contracts a*b+c into an FMA (-ffp-contract=off,
 * also the default of ISO C mode), so jt_tanhf(x) and jt_tanh_array give bitwise the same value
 * on every CPU and in every layer (gru, lstm, attention, decoder, the activation layers).
 *
 * Accuracy against libm in double, every float with 2^-26 <= |x| <= 104 (10 for tanh) checked
 * once (max error in ulps of the float result, and relative where the result is normal), and
 * tests/unit/test_mathx.c checks a stride of all float bit patterns plus dense sweeps:
 *   jt_expf     0.99 ulp (8.2e-8)   0 below x = -103.97 (true value under half the least
 *                                   subnormal), +inf above 88.72, subnormal results in between
 *   jt_tanhf    2.50 ulp (1.8e-7)   exactly +-1 for |x| >= 8.665, tanh(+-0) = +-0
 *   jt_sigmoidf 2.40 ulp (1.8e-7)   exactly 1 for x >= 16.64, exp(x) (subnormal, then 0) below
 * and NaN in, NaN out for all three. */
#ifndef JTRAIN_MATHX_H
#define JTRAIN_MATHX_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

static inline uint32_t jt_float_bits(float f) {
    union {
        float f;
        uint32_t u;
    } c = {.f = f};
    return c.u;
}

static inline float jt_bits_float(uint32_t u) {
    union {
        uint32_t u;
        float f;
    } c = {.u = u};
    return c.f;
}

/* exp(x), branch-free. Range reduction and polynomial are Cephes expf.c (S. L. Moshier, Cephes
 * Math Library 2.2, 1992; netlib.org/cephes): x = k ln2 + r with k = round(x log2(e)) and
 * ln2 = C1 + C2 in two parts (Cody-Waite: k*C1 is exact for |k| < 2^15), |r| <= ln2/2, and
 * exp(r) = 1 + r + r^2 P(r) with Cephes' degree-5 minimax P. k is rounded by adding 1.5*2^23
 * (its low mantissa bits are then k) instead of floorf, which would not vectorise. 2^k is built
 * in the exponent bits as 2^(k/2) * 2^(k - k/2), so k from -150 to 128 neither overflows the
 * exponent field nor flushes: subnormal results are rounded once, exp(x > 88.72) is +inf. The
 * clamps keep k in that range; a NaN passes them (comparisons are false) and stays NaN. */
static inline float jt_expf(float x) {
    x = x > 88.8f ? 88.8f : x;
    x = x < -104.0f ? -104.0f : x;
    float kf = x * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23 */
    int32_t k = (int32_t)(jt_float_bits(kf) - 0x4B400000u);
    kf -= 12582912.0f;
    float r = x - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t k1 = k / 2, k2 = k - k1;
    float s1 = jt_bits_float((uint32_t)(k1 + 127) << 23);
    float s2 = jt_bits_float((uint32_t)(k2 + 127) << 23);
    return p * s1 * s2;
}

/* tanh(x) (torch.tanh). For |x| < 1/4 the Taylor series to x^11 (the x^13 term is below 2^-28
 * relative there); above, tanh|x| = (1 - e) / (1 + e) with e = exp(-2|x|) in (0, 0.61], which
 * never overflows and loses at most a factor 1.6 of exp's error to the subtraction. */
static inline float jt_tanhf(float x) {
    float a = fabsf(x), x2 = x * x;
    float s = x * (1.0f + x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 +
                   x2 * (62.0f / 2835 + x2 * (-1382.0f / 155925))))));
    float e = jt_expf(-2.0f * a);
    float b = copysignf((1.0f - e) / (1.0f + e), x);
    return a < 0.25f ? s : b;
}

/* sigmoid(x) = 1 / (1 + exp(-x)) (torch.sigmoid), as 1 / (1 + e) for x >= 0 and e / (1 + e)
 * below, e = exp(-|x|) in (0, 1]: no overflow, and full relative accuracy for x < 0. */
static inline float jt_sigmoidf(float x) {
    float e = jt_expf(-fabsf(x));
    return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}

/* y[i] = jt_expf(x[i]) (resp. jt_tanhf, jt_sigmoidf) for i < n. y may equal x (in place);
 * otherwise the arrays must not overlap. */
void jt_exp_array(size_t n, const float *x, float *y);
void jt_tanh_array(size_t n, const float *x, float *y);
void jt_sigmoid_array(size_t n, const float *x, float *y);

#endif
