/* rng.h - explicit random number states (xoshiro256**), never global.
 *
 * Every stream is derived from (seed, purpose, a, b, c), e.g. (seed, JT_RNG_SHUFFLE, epoch, 0, 0)
 * or (seed, JT_RNG_DROPOUT, step, global row, layer), never the rank, so a run repeats bit for bit
 * on any number of ranks. */
#ifndef JTRAIN_RNG_H
#define JTRAIN_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} jt_rng;

enum { JT_RNG_INIT = 1, JT_RNG_SHUFFLE = 2, JT_RNG_DROPOUT = 3, JT_RNG_SYNTH = 4, JT_RNG_TEST = 5, JT_RNG_PCGRAD = 6 };

/* Seeds r from (seed, purpose, a, b, c) through splitmix64; distinct tuples give unrelated streams. */
void jt_rng_seed(jt_rng *r, uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b, uint64_t c);
uint64_t jt_rng_u64(jt_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float jt_rng_uniform(jt_rng *r);
/* Standard normal (Box-Muller, double precision inside). */
float jt_rng_normal(jt_rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t jt_rng_below(jt_rng *r, uint64_t n);
/* perm[i] = i, then a Fisher-Yates shuffle. */
void jt_rng_permutation(jt_rng *r, uint64_t *perm, size_t n);

#endif
