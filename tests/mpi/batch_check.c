/* batch_check.c - run under mpiexec by test_batch.sh: checks the global batch of docs/design.md.
 *
 * An in-memory split whose rows hold their own global index (an input) and a label equal to
 * index % 7, or -1 for every 5th row. For 3 epochs it walks every batch and checks that
 *   - each rank's rows are its part of perm[t*B, (t+1)*B) (jt_batcher_rows);
 *   - the exchanged data of each row is that row's data (the all-to-all delivered it right);
 *   - the global labelled count of each batch is right;
 *   - over an epoch every row is used exactly once across ranks (counts summed over ranks);
 *   - the permutation changes from epoch to epoch and does not depend on the number of ranks
 *     (a fingerprint of epoch 0's first batch is printed for the shell test to compare).
 * Exit status 0 on success; any failure prints one line and aborts every rank. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jtrain/batch.h"
#include "jtrain/comm.h"

#define CHECK(c, ...)                                                                        \
    do {                                                                                     \
        if (!(c)) {                                                                          \
            fprintf(stderr, "batch_check rank %d: ", jt_comm_rank());                      \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fprintf(stderr, "\n");                                                           \
            jt_comm_abort(1);                                                                \
        }                                                                                    \
    } while (0)

int main(int argc, char **argv) {
    jt_comm_init(&argc, &argv);
    int rank = jt_comm_rank(), world = jt_comm_size();
    size_t n = argc > 1 ? (size_t)atol(argv[1]) : 103, B = argc > 2 ? (size_t)atol(argv[2]) : 16;
    jt_split s;
    memset(&s, 0, sizeof s);
    s.n = n;
    s.begin = jt_data_shard_begin(n, world, rank);
    s.end = jt_data_shard_begin(n, world, rank + 1);
    jt_array arr[2];
    memset(arr, 0, sizeof arr);
    snprintf(arr[0].name, sizeof arr[0].name, "x");
    arr[0].role = JT_ARRAY_INPUT;
    arr[0].row_elems = 3;
    snprintf(arr[1].name, sizeof arr[1].name, "y");
    arr[1].role = JT_ARRAY_LABEL;
    arr[1].row_elems = 1;
    size_t rows = s.end - s.begin;
    float *x = calloc(rows * 3 + 1, sizeof(float));
    int32_t *y = calloc(rows + 1, sizeof(int32_t));
    for (size_t i = 0; i < rows; i++) {
        size_t g = s.begin + i;
        x[3 * i] = (float)g;
        x[3 * i + 1] = (float)(g * 2);
        x[3 * i + 2] = -(float)g;
        y[i] = g % 5 == 0 ? -1 : (int32_t)(g % 7);
    }
    arr[0].data = x;
    arr[1].data = y;
    s.arrays = arr;
    s.n_arrays = 2;

    jt_batcher bt;
    jt_batcher_init(&bt, &s, B, 42);
    uint64_t *count = calloc(n, sizeof(uint64_t));
    uint64_t *expect = calloc(bt.max_local, sizeof(uint64_t));
    uint64_t epoch = 0, step = 0, fingerprint = 0, first_batch_e1 = 0;
    size_t total = 3 * bt.steps_per_epoch;
    jt_batcher_prefetch(&bt, epoch, step);
    for (size_t t = 0; t < total; t++) {
        const jt_batch *b = jt_batcher_next(&bt);
        CHECK(b->epoch == epoch && b->epoch_step == step, "batch out of order");
        size_t ne = 0;
        jt_batcher_rows(&bt, epoch, step, rank, expect, &ne);
        CHECK(ne == b->n, "epoch %" PRIu64 " step %" PRIu64 ": %zu rows, expected %zu", epoch,
              step, b->n, ne);
        const float *bx = b->array[0];
        const int32_t *by = b->array[1];
        uint64_t labelled = 0;
        for (size_t i = 0; i < b->n; i++) {
            uint64_t g = b->rows[i];
            CHECK(g == expect[i], "row %zu is %" PRIu64 ", expected %" PRIu64, i, g, expect[i]);
            CHECK(bx[3 * i] == (float)g && bx[3 * i + 1] == (float)(g * 2) &&
                      bx[3 * i + 2] == -(float)g,
                  "row %" PRIu64 ": exchanged input data are wrong", g);
            CHECK(by[i] == (g % 5 == 0 ? -1 : (int32_t)(g % 7)), "row %" PRIu64 ": wrong label", g);
            labelled += by[i] >= 0;
            count[g]++;
            if (epoch == 0 && step == 0) fingerprint += (g + 1) * (g + 1) * (i + 1 + 1000 * (uint64_t)rank);
        }
        jt_comm_sum_u64(&labelled, 1);
        CHECK(labelled == b->labelled[1], "global labelled count %" PRIu64 " != %" PRIu64,
              b->labelled[1], labelled);
        /* the owners' count ahead of time (gradient accumulation) agrees, for this batch and
         * for this batch plus the next one of the epoch */
        uint64_t ahead[2];
        jt_batcher_count_labelled(&bt, epoch, step, 1, ahead);
        jt_comm_sum_u64(ahead, 2);
        CHECK(ahead[0] == 0 && ahead[1] == labelled, "count ahead %" PRIu64 " != %" PRIu64,
              ahead[1], labelled);
        if (step + 2 <= bt.steps_per_epoch) {
            uint64_t one[2], two[2];
            jt_batcher_count_labelled(&bt, epoch, step + 1, 1, one);
            jt_batcher_count_labelled(&bt, epoch, step, 2, two);
            jt_comm_sum_u64(one, 2);
            jt_comm_sum_u64(two, 2);
            CHECK(two[1] == labelled + one[1], "count of two batches %" PRIu64 " != %" PRIu64,
                  two[1], labelled + one[1]);
        }
        if (epoch == 1 && step == 0)
            for (size_t i = 0; i < b->n; i++) first_batch_e1 += b->rows[i];
        uint64_t e = epoch, st = step;
        jt_batcher_advance(&bt, &epoch, &step);
        if (t + 1 < total) jt_batcher_prefetch(&bt, epoch, step);
        if (step == 0) { /* an epoch ended: every row exactly once across ranks */
            jt_comm_sum_u64(count, n);
            for (size_t g = 0; g < n; g++)
                CHECK(count[g] == 1, "epoch %" PRIu64 " (ended at step %" PRIu64 "): row %zu used %" PRIu64 " times",
                      e, st, g, count[g]);
            memset(count, 0, n * sizeof *count);
        }
    }
    /* rows of epoch 0's first batch, independent of how they are split over ranks */
    uint64_t rows_sum = 0;
    {
        uint64_t *all = calloc(B, sizeof(uint64_t));
        size_t off = 0;
        for (int r = 0; r < world; r++) {
            size_t c = 0;
            jt_batcher_rows(&bt, 0, 0, r, all + off, &c);
            off += c;
        }
        for (size_t i = 0; i < off; i++) rows_sum = rows_sum * 1000003ULL + all[i];
        free(all);
    }
    uint64_t e1 = first_batch_e1;
    jt_comm_sum_u64(&e1, 1);
    (void)fingerprint;
    if (rank == 0) printf("first-batch %" PRIu64 " epoch1-sum %" PRIu64 "\n", rows_sum, e1);
    jt_batcher_free(&bt);
    free(count);
    free(expect);
    free(x);
    free(y);
    jt_comm_finalize();
    return 0;
}
