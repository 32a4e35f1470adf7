/* reduce_check.c - run under mpiexec by test_reduce.sh: checks the gradient sum (jt_comm_reducer).
 *
 * `reduce_check MODE EXPECT` with MODE shm|mpi|auto and EXPECT exact|close. Every rank fills a
 * buffer with values that are a pure function of (rank, round, index), so each rank can compute
 * what the sum must be. For several bucket layouts (one bucket; buckets of 1 to ~70k floats in
 * a shuffled-size order; buckets with gaps between them) and several rounds, with rank-dependent
 * delays and progress calls between the starts, it checks that
 *   - every float inside a bucket is the sum over ranks: bitwise equal to the left-to-right sum
 *     x_0 + x_1 + ... in node order (exact: one node, or the two "nodes" of
 *     JTRAIN_TEST_NODE_SIZE, whose leader sum a+b = b+a), else within 1e-6 relative (close);
 *   - every float outside the buckets is untouched;
 *   - the buckets are bitwise the same on every rank;
 *   - each bucket's start/done times are ordered.
 * Prints the reducer's description and exits 0; any failure prints one line and aborts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jtrain/comm.h"

#define CHECK(c, ...)                                                                        \
    do {                                                                                     \
        if (!(c)) {                                                                          \
            fprintf(stderr, "reduce_check rank %d: ", jt_comm_rank());                     \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fprintf(stderr, "\n");                                                           \
            jt_comm_abort(1);                                                                \
        }                                                                                    \
    } while (0)

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* Rank r's value at index i in round t: magnitudes from 1e-3 to 1e3, so sums round. */
static float value(int r, int t, size_t i) {
    uint64_t h = mix(((uint64_t)r << 48) ^ ((uint64_t)t << 40) ^ (uint64_t)i);
    float u = (float)(h >> 40) / (float)(1u << 24) * 2.0f - 1.0f;
    return u * powf(10.0f, (float)((h >> 8) % 7) - 3.0f);
}

/* The sum the reducer must produce: node sums left to right, then node sums left to right
 * (nodes of node_size consecutive ranks; node_size = world for one node). */
static float expected(int world, int node_size, int t, size_t i) {
    float total = 0;
    for (int n0 = 0; n0 < world; n0 += node_size) {
        float s = value(n0, t, i);
        for (int r = n0 + 1; r < world && r < n0 + node_size; r++) s += value(r, t, i);
        total = n0 == 0 ? s : total + s;
    }
    return total;
}

/* FNV-1a of the bytes of the floats inside buckets (outside, each rank keeps its own). */
static uint64_t fnv(const float *b, const int *inside, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        if (!inside[i]) continue;
        const unsigned char *p = (const unsigned char *)&b[i];
        for (size_t k = 0; k < sizeof(float); k++) {
            h ^= p[k];
            h *= 0x100000001b3ULL;
        }
    }
    return h;
}

static void pause_us(long us) {
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    jt_comm_init(&argc, &argv);
    int rank = jt_comm_rank(), world = jt_comm_size();
    CHECK(argc == 3, "usage: reduce_check shm|mpi|auto exact|close");
    jt_reduce_mode mode = strcmp(argv[1], "shm") == 0   ? JT_REDUCE_SHM
                          : strcmp(argv[1], "mpi") == 0 ? JT_REDUCE_MPI
                                                        : JT_REDUCE_AUTO;
    int exact = strcmp(argv[2], "exact") == 0;
    const char *ns = getenv("JTRAIN_TEST_NODE_SIZE");
    int node_size = ns ? atoi(ns) : world;
    if (node_size < 1 || node_size > world) node_size = world;

    const size_t n = 300017;
    float *buf = malloc(n * sizeof(float));
    size_t *lo = malloc(64 * sizeof(size_t)), *hi = malloc(64 * sizeof(size_t));
    int *inside = malloc(n * sizeof(int));
    CHECK(buf && lo && hi && inside, "out of memory");
    for (int layout = 0; layout < 3; layout++) {
        size_t nb = 0;
        if (layout == 0) { /* one bucket, all of it */
            lo[0] = 0;
            hi[0] = n;
            nb = 1;
        } else { /* layout 1 tiles [0, n); layout 2 leaves a gap after each bucket */
            size_t at = n;
            for (uint64_t k = 1; at > 0 && nb < 64; k++) { /* from the end down, as backward */
                size_t len = 1 + mix(k * 7 + (uint64_t)layout) % 70000;
                if (nb == 63 || len > at) len = at;
                size_t gap = layout == 2 && len > 3 ? len / 3 : 0;
                hi[nb] = at - gap;
                lo[nb] = at - len;
                at -= len;
                nb++;
            }
        }
        memset(inside, 0, n * sizeof(int));
        for (size_t b = 0; b < nb; b++)
            for (size_t i = lo[b]; i < hi[b]; i++) inside[i]++;
        for (size_t i = 0; i < n; i++) CHECK(inside[i] <= 1, "layout %d overlaps", layout);
        jt_comm_reducer *red = jt_comm_reducer_new(buf, n, lo, hi, nb, mode);
        for (int t = 0; t < 4; t++) {
            for (size_t i = 0; i < n; i++) buf[i] = value(rank, t, i);
            for (size_t b = 0; b < nb; b++) {
                /* skew between ranks: rank r lags on some buckets */
                if ((b + (size_t)rank + (size_t)t) % 5 == 0) pause_us(200 * (rank + 1));
                jt_comm_reducer_start(red);
                jt_comm_reducer_progress(red);
            }
            jt_comm_reducer_wait(red);
            for (size_t i = 0; i < n; i++) {
                float want = inside[i] ? expected(world, node_size, t, i) : value(rank, t, i);
                if (exact || !inside[i])
                    CHECK(memcmp(&buf[i], &want, sizeof want) == 0,
                          "%s layout %d round %d [%zu]: %.9g, want %.9g", argv[1], layout, t, i,
                          (double)buf[i], (double)want);
                else
                    CHECK(fabsf(buf[i] - want) <= 1e-6f * (fabsf(want) + 1e-3f) * (float)world,
                          "%s layout %d round %d [%zu]: %.9g, want %.9g", argv[1], layout, t, i,
                          (double)buf[i], (double)want);
            }
            CHECK(jt_comm_same_u64(fnv(buf, inside, n)), "layout %d round %d: ranks differ", layout, t);
            for (size_t b = 0; b < nb; b++) {
                double t0, t1;
                jt_comm_reducer_times(red, b, &t0, &t1);
                CHECK(t0 > 0 && t1 >= t0, "bucket %zu: times %f %f", b, t0, t1);
            }
        }
        if (rank == 0 && layout == 0) printf("%s\n", jt_comm_reducer_describe(red));
        jt_comm_reducer_free(red);
    }
    free(buf);
    free(lo);
    free(hi);
    free(inside);
    jt_comm_finalize();
    return 0;
}
