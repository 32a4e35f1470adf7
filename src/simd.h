/* simd.h - private to src/: JT_HOT marks a hot loop (elementwise kernels, Adam, im2col, pooling,
 * gate math) that GCC compiles three times, for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and
 * the baseline, and picks among once at load time (target_clones, an ifunc). The binary thus
 * stays safe on any x86-64 CPU while the loops run vectorised where the CPU allows.
 *
 * Results do not depend on the clone: the build uses -ffp-contract=off (no fused multiply-add
 * unless written) and no reassociation, so a vectorised elementwise loop computes each element
 * with the same IEEE operations as the scalar one, and reductions stay in source order. That
 * keeps replicas bitwise identical across nodes with different CPUs.
 *
 * Off (empty) for other compilers and targets, and when the whole build is already tuned for
 * the build machine (cmake -DJTRAIN_NATIVE=ON defines JT_NATIVE). */
#ifndef JTRAIN_SIMD_H
#define JTRAIN_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    !defined(JT_NATIVE) && !defined(__SANITIZE_ADDRESS__)
#define JT_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define JT_HOT
#endif

#endif
