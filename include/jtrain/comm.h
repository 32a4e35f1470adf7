/* comm.h - every MPI call of jtrain lives behind this module (docs/design.md "Rules of the house").
 *
 * Every collective here must be reached by every rank in the same order. Counts are element
 * counts; buffers longer than INT_MAX elements are sent in chunks. */
#ifndef JTRAIN_COMM_H
#define JTRAIN_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "jtrain/common.h"

/* MPI_Init asking for thread level MULTIPLE (the watchdog's thread uses the side channel below
 * while the main thread runs collectives); installs jt_comm_abort as the fatal-error handler. */
void jt_comm_init(int *argc, char ***argv);
/* 1 if MPI granted MPI_THREAD_MULTIPLE to this process. */
int jt_comm_thread_multiple(void);
void jt_comm_finalize(void);
int jt_comm_rank(void);
int jt_comm_size(void);
/* MPI_Abort(MPI_COMM_WORLD, code): stops every rank. */
void jt_comm_abort(int code) __attribute__((noreturn));

/* In-place sums over all ranks. */
void jt_comm_sum_f32(float *buf, size_t n);
void jt_comm_sum_f64(double *buf, size_t n);
void jt_comm_sum_u64(uint64_t *buf, size_t n);
/* Every blocking wait below (the collectives, jt_comm_xfer_wait, jt_comm_reducer_wait, the
 * reducer's set-up and tear-down) is announced to the watchdog (watchdog.h: jt_watch_enter and
 * jt_watch_leave), so it can tell a rank waiting for its peers from one that is busy. */

/* Returns the largest status of all ranks (JT_OK only if every rank is OK). Use it after every
 * step that may fail on one rank only, so all ranks fail together instead of hanging. If first
 * is not NULL it receives the lowest failing rank (-1 if none), the one that should report. */
jt_status jt_comm_agree(jt_status st, int *first);
/* jt_comm_agree, and the lowest failing rank prints err (one line, not one per rank). */
jt_status jt_comm_agree_report(jt_status st, const char *err);
/* 1 if v is the same on every rank. */
int jt_comm_same_u64(uint64_t v);
/* The smallest v over all ranks (e.g. a common time origin for traces). */
double jt_comm_min_f64(double v);

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
/* Seconds this process has spent blocked in jt_comm_xfer_wait since it started. */
double jt_comm_xfer_wait_seconds(void);
/* Lets MPI move every started exchange (and nothing else) forward without blocking. Open MPI has
 * no progress thread: a non-blocking collective only advances inside MPI calls, so the trainer
 * calls this between phases of a step. Local, not collective. */
void jt_comm_poll(void);

/* The gradient sum: a float buffer summed in place over all ranks, in buckets (disjoint ranges
 * of it) that are started one by one as their values become final and completed together, so
 * the sum of the first buckets overlaps the computation of the next ones.
 *
 * Modes (rank 0's choice is used by every rank):
 * - JT_REDUCE_SHM: on each node, through one MPI-3 shared-memory window: a started bucket is
 *   copied into this rank's segment; once every rank of the node has copied it, each rank sums
 *   its fixed share (1/N of the bucket) over the node's segments in rank order into a result
 *   area; once every share is summed, each rank copies the result back. Synchronisation is by
 *   per-rank counters in the window (C11 release/acquire atomics), so no MPI call is needed
 *   and a bucket moves on whenever any rank of the node calls start, progress or wait. With
 *   several nodes, one leader per node then sums the node results with MPI_Iallreduce (buckets
 *   in order) and the others copy its result. Every rank gets bitwise the same sum; on one node
 *   each element is x_0 + x_1 + ... + x_{N-1} left to right, whatever the bucketing.
 * - JT_REDUCE_MPI: one MPI_Iallreduce per bucket on MPI_COMM_WORLD; with a single bucket, one
 *   blocking MPI_Allreduce in wait (Open MPI 4.1's is much faster than its MPI_Iallreduce).
 * - JT_REDUCE_AUTO: SHM when some node holds two or more ranks, else MPI.
 * With one rank in all, nothing is summed. Progress is driven by the caller's thread (no other
 * thread touches these requests): start and progress never block, wait spins until every bucket is done
 * (yielding the CPU between polls only when the node has more ranks than CPUs), polling started
 * exchanges meanwhile.
 * Test hook: JTRAIN_TEST_NODE_SIZE=K makes "nodes" of K consecutive ranks instead of asking MPI
 * which ranks share memory, so the multi-node path runs on one machine. */
typedef enum { JT_REDUCE_AUTO = 0, JT_REDUCE_SHM, JT_REDUCE_MPI, JT_REDUCE_NONE } jt_reduce_mode;
typedef struct jt_comm_reducer jt_comm_reducer;

/* The mode a reducer asked for `mode` would use: rank 0's request, AUTO resolved, NONE on one
 * rank. Collective. */
jt_reduce_mode jt_comm_reduce_mode(jt_reduce_mode mode);
/* A reducer for buf[0, n) (which must stay allocated until jt_comm_reducer_free) with n_buckets
 * buckets [begin[i], end[i]), disjoint, each at most INT_MAX floats. Collective. */
jt_comm_reducer *jt_comm_reducer_new(float *buf, size_t n, const size_t *begin, const size_t *end,
                                     size_t n_buckets, jt_reduce_mode mode);
/* Starts the next bucket (0, 1, ... in order, each once per round): its floats in buf must be
 * final. Also moves earlier buckets on. Never blocks. */
void jt_comm_reducer_start(jt_comm_reducer *r);
/* Moves started buckets on without blocking; polls started exchanges. */
void jt_comm_reducer_progress(jt_comm_reducer *r);
/* After every bucket is started: waits until buf holds the sum over all ranks, ending the round. */
void jt_comm_reducer_wait(jt_comm_reducer *r);
/* When bucket i of the last completed round was started and when its sum was back in buf
 * (jt_now seconds). */
void jt_comm_reducer_times(const jt_comm_reducer *r, size_t i, double *started, double *done);
/* A short description of the sum in use ("shm, 1 node of 2 ranks"). */
const char *jt_comm_reducer_describe(const jt_comm_reducer *r);
/* Collective; NULL-safe. */
void jt_comm_reducer_free(jt_comm_reducer *r);

/* A side channel for one helper thread (the watchdog's): its own duplicate of MPI_COMM_WORLD on
 * which that thread alone exchanges small messages with non-blocking point-to-point calls while
 * the main thread runs collectives on MPI_COMM_WORLD. Needs MPI_THREAD_MULTIPLE. At most one
 * send per destination is in flight: a send to a peer whose previous one has not completed is
 * refused (a stopped peer costs one buffered message, not a growing queue). */
typedef struct jt_comm_side jt_comm_side;
/* Collective, main thread. Messages are at most max_bytes long. */
jt_comm_side *jt_comm_side_new(size_t max_bytes);
/* Starts sending buf[0, bytes) to dest with tag (>= 0) and returns 1, or returns 0 (nothing
 * sent) while the previous send to dest is in flight. Never blocks; buf may be reused at once. */
int jt_comm_side_send(jt_comm_side *s, int dest, int tag, const void *buf, size_t bytes);
/* Receives one message that has arrived, if any: returns 1 and sets *src, *tag and *bytes;
 * else 0. Never blocks. Messages from one sender arrive in the order they were sent. */
int jt_comm_side_recv(jt_comm_side *s, int *src, int *tag, void *buf, size_t cap, size_t *bytes);
/* 1 when no send is in flight any more. Never blocks. */
int jt_comm_side_idle(jt_comm_side *s);
/* Collective, main thread, after the helper thread has stopped using it with every send
 * completed and every message sent to it received (checked). NULL-safe. */
void jt_comm_side_free(jt_comm_side *s);

#endif
