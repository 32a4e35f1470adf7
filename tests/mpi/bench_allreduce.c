/* bench_allreduce.c - the gradient sum's cost, plain MPI against the shared-memory reducer.
 *
 * `mpirun -np N bench_allreduce [FLOATS [REPS [METHOD]]]` (default 1200000 floats, 100
 * repetitions, all methods) times, interleaved in every repetition so machine noise hits all
 * alike (and each finds caches as another method left them, as in training), after a barrier
 * each; METHOD runs one of them alone (warm caches):
 *   allreduce   MPI_Allreduce of the whole buffer (jt_comm_sum_f32: jtrain before issue 7)
 *   mpi-1       jt_comm_reducer in MPI mode, one bucket (MPI_Iallreduce + wait)
 *   shm-1       jt_comm_reducer in SHM mode, one bucket (copy in, sum a share, copy out)
 *   mpi-256k    MPI mode in buckets of 64k floats (256 KB), started one after the other
 *   shm-256k    SHM mode in the same buckets
 * and prints the median, 10th and 90th percentile of each on rank 0, in microseconds (time
 * until this rank holds the sum). Not a test: a benchmark (scripts/bench-allreduce runs it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jtrain/comm.h"

#define N_METHODS 5

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    jt_comm_init(&argc, &argv);
    int rank = jt_comm_rank();
    size_t n = argc > 1 ? (size_t)atol(argv[1]) : 1200000;
    int reps = argc > 2 ? atoi(argv[2]) : 100;
    const char *only = argc > 3 ? argv[3] : NULL;
    if (n == 0 || reps < 1) {
        if (rank == 0) fprintf(stderr, "usage: bench_allreduce [FLOATS [REPS]]\n");
        jt_comm_finalize();
        return 2;
    }
    float *buf = jt_alloc_floats(n);
    size_t one_lo = 0, one_hi = n;
    size_t nb = (n + 65535) / 65536;
    size_t *lo = jt_xcalloc(nb, sizeof(size_t)), *hi = jt_xcalloc(nb, sizeof(size_t));
    for (size_t b = 0; b < nb; b++) { /* from the end down, as backward finishes them */
        hi[b] = n - b * 65536;
        lo[b] = hi[b] >= 65536 ? hi[b] - 65536 : 0;
    }
    jt_comm_reducer *red[N_METHODS] = {
        NULL, jt_comm_reducer_new(buf, n, &one_lo, &one_hi, 1, JT_REDUCE_MPI),
        jt_comm_reducer_new(buf, n, &one_lo, &one_hi, 1, JT_REDUCE_SHM),
        jt_comm_reducer_new(buf, n, lo, hi, nb, JT_REDUCE_MPI),
        jt_comm_reducer_new(buf, n, lo, hi, nb, JT_REDUCE_SHM)};
    const char *name[N_METHODS] = {"allreduce", "mpi-1", "shm-1", "mpi-256k", "shm-256k"};
    double *t = jt_xcalloc((size_t)(N_METHODS * reps), sizeof(double));
    for (int r = -5; r < reps; r++) { /* 5 warm-up rounds */
        for (int k = 0; k < N_METHODS; k++) {
            if (only && strcmp(only, name[k]) != 0) continue;
            for (size_t i = 0; i < n; i++) buf[i] = (float)((i + (size_t)rank) % 97) * 0.25f;
            jt_comm_agree(JT_OK, NULL); /* barrier */
            double t0 = jt_now();
            if (k == 0) {
                jt_comm_sum_f32(buf, n);
            } else {
                size_t count = k >= 3 ? nb : 1;
                for (size_t b = 0; b < count; b++) jt_comm_reducer_start(red[k]);
                jt_comm_reducer_wait(red[k]);
            }
            if (r >= 0) t[k * reps + r] = (jt_now() - t0) * 1e6;
        }
    }
    if (rank == 0) {
        printf("sum of %zu floats (%.1f MB) over %d ranks, %d repetitions; us until the sum is "
               "back (median [p10, p90]); shm: %s\n", n, (double)n * 4 / 1e6, jt_comm_size(),
               reps, jt_comm_reducer_describe(red[2]));
        for (int k = 0; k < N_METHODS; k++) {
            if (only && strcmp(only, name[k]) != 0) continue;
            double *v = t + k * reps;
            qsort(v, (size_t)reps, sizeof(double), cmp_double);
            printf("  %-10s %8.0f  [%.0f, %.0f]\n", name[k], v[reps / 2], v[reps / 10],
                   v[reps * 9 / 10]);
        }
    }
    for (int k = 1; k < N_METHODS; k++) jt_comm_reducer_free(red[k]);
    free(t);
    free(lo);
    free(hi);
    jt_free_aligned(buf);
    jt_comm_finalize();
    return 0;
}
