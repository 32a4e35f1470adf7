/* comm.h - every MPI call of jtrain lives behind this module (DESIGN.md).
 *
 * Every collective here must be reached by every rank in the same order. Counts are element
 * counts; buffers longer than INT_MAX elements are sent in chunks. */
#ifndef JTRAIN_COMM_H
#define JTRAIN_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "jtrain/common.h"

/* MPI_Init (thread level FUNNELED); installs jt_comm_abort as the fatal-error handler. */
void jt_comm_init(int *argc, char ***argv);
void jt_comm_finalize(void);
int jt_comm_rank(void);
int jt_comm_size(void);
/* MPI_Abort(MPI_COMM_WORLD, code): stops every rank. */
void jt_comm_abort(int code) __attribute__((noreturn));

/* In-place sums over all ranks. */
void jt_comm_sum_f32(float *buf, size_t n);
void jt_comm_sum_f64(double *buf, size_t n);
void jt_comm_sum_u64(uint64_t *buf, size_t n);
/* Returns the largest status of all ranks (JT_OK only if every rank is OK). Use it after every
 * step that may fail on one rank only, so all ranks fail together instead of hanging. If first
 * is not NULL it receives the lowest failing rank (-1 if none), the one that should report. */
jt_status jt_comm_agree(jt_status st, int *first);
/* jt_comm_agree, and the lowest failing rank prints err (one line, not one per rank). */
jt_status jt_comm_agree_report(jt_status st, const char *err);
/* 1 if v is the same on every rank. */
int jt_comm_same_u64(uint64_t v);

/* A non-blocking all-to-all of fixed-size records (the batch exchange). send holds, for each
 * destination rank d, scount[d] records starting at record sdispl[d]; likewise recv. Alongside
 * it, sum[0..n_sum) is summed in place over all ranks (the batch's global label counts), so the
 * step that consumes the batch needs no extra round trip. Both complete in jt_comm_xfer_wait. */
typedef struct jt_comm_xfer jt_comm_xfer;
jt_comm_xfer *jt_comm_xfer_new(size_t record_bytes);
void jt_comm_xfer_start(jt_comm_xfer *x, const void *send, const size_t *scount,
                        const size_t *sdispl, void *recv, const size_t *rcount,
                        const size_t *rdispl, uint64_t *sum, size_t n_sum);
void jt_comm_xfer_wait(jt_comm_xfer *x);
void jt_comm_xfer_free(jt_comm_xfer *x);

#endif
