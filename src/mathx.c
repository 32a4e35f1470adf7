/* mathx.c - the array forms of jtrain/mathx.h's exp, tanh and sigmoid. Each applies the inline
 * scalar function, so an element gets bitwise the value jt_expf / jt_tanhf / jt_sigmoidf give
 * it; JT_HOT compiles the loops for AVX-512 and AVX2 too (16 / 8 lanes per instruction). */
#include "jtrain/mathx.h"

#include "simd.h"

// x: (n) -> y: (n), y may be x
JT_HOT void jt_exp_array(size_t n, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = jt_expf(x[i]);
}

JT_HOT void jt_tanh_array(size_t n, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = jt_tanhf(x[i]);
}

JT_HOT void jt_sigmoid_array(size_t n, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = jt_sigmoidf(x[i]);
}
