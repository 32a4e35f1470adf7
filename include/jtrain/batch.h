/* batch.h - global batches drawn from one permutation per epoch, whatever the number of ranks.
 *
 * docs/design.md "N-invariant global batches": epoch e has one permutation perm of the
 * split's n rows, drawn from (seed, e); batch t is rows perm[t*B, min((t+1)*B, n)); rank r
 * trains on the r-th part of it (the remainder spread over the first ranks). A row that lives
 * in another rank's shard is sent by its owner in a non-blocking all-to-all of fixed-size
 * records (every array of the split, one row each), started one batch ahead so it overlaps the
 * current step. The global number of labelled rows of each label array travels with it (a
 * non-blocking sum). */
#ifndef JTRAIN_BATCH_H
#define JTRAIN_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "jtrain/comm.h"
#include "jtrain/data.h"

#define JT_BATCH_MAX_ARRAYS 16

/* One rank's part of a global batch. Pointers stay valid until the next jt_batcher_next. */
typedef struct {
    uint64_t epoch, epoch_step; /* its position */
    size_t n;                   /* rows on this rank (may be 0) */
    const uint64_t *rows;       /* their global row indices in the split */
    const void *array[JT_BATCH_MAX_ARRAYS]; /* per split array: n * row_elems floats or int32 */
    uint64_t labelled[JT_BATCH_MAX_ARRAYS]; /* label arrays: labelled rows in the GLOBAL batch */
    size_t global_n;            /* rows in the global batch */
} jt_batch;

typedef struct {
    const jt_split *split;
    size_t batch_size;          /* global B */
    uint64_t seed;
    int rank, world;
    size_t steps_per_epoch;     /* ceil(n / B): the last batch of an epoch may be smaller */
    size_t max_local;           /* ceil(min(B, rows of the split) / world) */
    size_t record_bytes;
    uint64_t *perm;             /* permutation of perm_epoch */
    uint64_t perm_epoch;
    size_t *owner_begin;        /* world + 1 shard boundaries */
    /* two slots: one being consumed, one in flight */
    struct {
        jt_batch b;
        uint64_t *rows;
        unsigned char *send, *recv;
        void *array[JT_BATCH_MAX_ARRAYS];
        size_t *scount, *sdispl, *rcount, *rdispl;
        jt_comm_xfer *xfer;
        int in_flight;
    } slot[2];
    int cur;                    /* slot of the batch handed out last */
} jt_batcher;

/* The bytes jt_batcher_init allocates for split and global batch size B with at most max_local
 * rows per rank (without the few per-rank counters), saturating at SIZE_MAX: for the memory
 * check before a model is built (jt_model_build). */
size_t jt_batcher_bytes(const jt_split *split, size_t batch_size, size_t max_local);
/* Sizes every buffer for split (this rank's shard of it) and global batch size B. */
void jt_batcher_init(jt_batcher *bt, const jt_split *split, size_t batch_size, uint64_t seed);
/* Position (epoch, epoch_step) that follows the given one. */
void jt_batcher_advance(const jt_batcher *bt, uint64_t *epoch, uint64_t *epoch_step);
/* Starts fetching batch (epoch, epoch_step) into the free slot. Collective. */
void jt_batcher_prefetch(jt_batcher *bt, uint64_t epoch, uint64_t epoch_step);
/* Completes the prefetched batch and returns it. Collective. */
const jt_batch *jt_batcher_next(jt_batcher *bt);
/* Global rows of batch (epoch, epoch_step) that rank r trains on: writes *count rows into
 * out (room for max_local). Pure function of the position, used by tests too. */
void jt_batcher_rows(jt_batcher *bt, uint64_t epoch, uint64_t epoch_step, int r, uint64_t *out,
                     size_t *count);
/* Labelled units (rows of a class label, tokens of a sequence label, as jt_batch.labelled
 * counts them) of every label array over batches first .. first+count-1 of epoch, among the
 * rows THIS rank's shard holds: out[a] for split array a (0 for inputs). Summed over ranks
 * (jt_comm_sum_u64) it is the global count of those batches, known before any of them is
 * trained: gradient accumulation normalises by it. Local; first + count <= steps_per_epoch. */
void jt_batcher_count_labelled(jt_batcher *bt, uint64_t epoch, uint64_t first, uint64_t count,
                               uint64_t *out);
/* NULL-safe; waits for anything in flight. */
void jt_batcher_free(jt_batcher *bt);

#endif
