/* rng.c - xoshiro256** (Blackman & Vigna 2018) seeded through splitmix64.
 * No global state: every stream is a jt_rng value derived from a tuple. */
#include "jtrain/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void jt_rng_seed(jt_rng *r, uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b, uint64_t c) {
    uint64_t x = seed;
    const uint64_t parts[4] = {purpose, a, b, c};
    for (int i = 0; i < 4; i++) {
        x ^= splitmix64(&x) + parts[i] * 0xd1342543de82ef95ULL;
    }
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

uint64_t jt_rng_u64(jt_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float jt_rng_uniform(jt_rng *r) { return (float)(jt_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float jt_rng_normal(jt_rng *r) {
    double u1 = ((double)(jt_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(jt_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2));
}

uint64_t jt_rng_below(jt_rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = jt_rng_u64(r);
    while (x >= limit);
    return x % n;
}

void jt_rng_permutation(jt_rng *r, uint64_t *perm, size_t n) {
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)jt_rng_below(r, i);
        uint64_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}
