/* comm.c - the only module that calls MPI.
 *
 * Invariants: every collective is reached by every rank in the same order; counts passed to
 * MPI are element counts and never exceed INT_MAX (long buffers go in chunks); a fatal error
 * anywhere ends in MPI_Abort so no rank waits forever; every blocking wait is bracketed by
 * jt_watch_enter / jt_watch_leave (the watchdog sees who waits); only the main thread touches
 * MPI_COMM_WORLD and its requests, the watchdog's thread only its side channel. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "jtrain/comm.h"

#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jtrain/watchdog.h"
#if defined(__SSE__)
#include <immintrin.h>
#endif

static int g_initialised = 0;
static int g_provided = MPI_THREAD_SINGLE;

static void abort_handler(int code) { jt_comm_abort(code); }

void jt_comm_init(int *argc, char ***argv) {
    MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &g_provided);
    g_initialised = 1;
    jt_log_set_rank(jt_comm_rank(), jt_comm_size());
    jt_set_abort_handler(abort_handler);
}

int jt_comm_thread_multiple(void) { return g_provided >= MPI_THREAD_MULTIPLE; }

void jt_comm_finalize(void) {
    if (!g_initialised) return;
    MPI_Finalize();
    g_initialised = 0;
}

int jt_comm_rank(void) {
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int jt_comm_size(void) {
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

void jt_comm_abort(int code) {
    if (g_initialised) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

/* In-place allreduce of n elements in chunks of at most INT_MAX elements. */
static void sum_chunked(void *buf, size_t n, MPI_Datatype type, size_t elem_bytes) {
    char *p = buf;
    jt_watch_enter("a sum over ranks");
    while (n > 0) {
        int count = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        MPI_Allreduce(MPI_IN_PLACE, p, count, type, MPI_SUM, MPI_COMM_WORLD);
        p += (size_t)count * elem_bytes;
        n -= (size_t)count;
    }
    jt_watch_leave();
}

void jt_comm_sum_f32(float *buf, size_t n) { sum_chunked(buf, n, MPI_FLOAT, sizeof(float)); }
void jt_comm_sum_f64(double *buf, size_t n) { sum_chunked(buf, n, MPI_DOUBLE, sizeof(double)); }
void jt_comm_sum_u64(uint64_t *buf, size_t n) {
    sum_chunked(buf, n, MPI_UINT64_T, sizeof(uint64_t));
}

jt_status jt_comm_agree(jt_status st, int *first) {
    int mine[2] = {(int)st, st != JT_OK ? -jt_comm_rank() : INT_MIN}, worst[2] = {0, 0};
    jt_watch_enter("a status check");
    MPI_Allreduce(mine, worst, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    jt_watch_leave();
    if (first) *first = worst[1] == INT_MIN ? -1 : -worst[1];
    return (jt_status)worst[0];
}

jt_status jt_comm_agree_report(jt_status st, const char *err) {
    int first = -1;
    jt_status all = jt_comm_agree(st, &first);
    if (st != JT_OK && first == jt_comm_rank()) jt_errorf("%s", err);
    return all;
}

int jt_comm_same_u64(uint64_t v) {
    uint64_t lo = v, hi = v;
    jt_watch_enter("a comparison across ranks");
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    jt_watch_leave();
    return lo == hi;
}

double jt_comm_min_f64(double v) {
    jt_watch_enter("a minimum over ranks");
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    jt_watch_leave();
    return v;
}

struct jt_comm_xfer {
    MPI_Datatype record;
    MPI_Request req[2];
    int active;
    int *sc, *sd, *rc, *rd; /* per-rank counts and displacements, in records */
    jt_comm_xfer *next_active; /* the list jt_comm_poll walks */
};

/* Started exchanges, for jt_comm_poll (the batcher has two, at most one in flight). */
static jt_comm_xfer *g_active = NULL;
static double g_xfer_wait = 0;

static void unlink_active(jt_comm_xfer *x) {
    for (jt_comm_xfer **p = &g_active; *p; p = &(*p)->next_active)
        if (*p == x) {
            *p = x->next_active;
            break;
        }
    x->next_active = NULL;
}

void jt_comm_poll(void) {
    for (jt_comm_xfer *x = g_active; x; x = x->next_active) {
        int flag = 0;
        MPI_Testall(2, x->req, &flag, MPI_STATUSES_IGNORE);
    }
}

double jt_comm_xfer_wait_seconds(void) { return g_xfer_wait; }

jt_comm_xfer *jt_comm_xfer_new(size_t record_bytes) {
    JT_CHECK(record_bytes > 0 && record_bytes <= (size_t)INT_MAX, "bad record size %zu",
             record_bytes);
    jt_comm_xfer *x = jt_xcalloc(1, sizeof *x);
    MPI_Type_contiguous((int)record_bytes, MPI_BYTE, &x->record);
    MPI_Type_commit(&x->record);
    size_t world = (size_t)jt_comm_size();
    x->sc = jt_xcalloc(world, sizeof(int));
    x->sd = jt_xcalloc(world, sizeof(int));
    x->rc = jt_xcalloc(world, sizeof(int));
    x->rd = jt_xcalloc(world, sizeof(int));
    return x;
}

static int to_int(size_t v) {
    JT_CHECK(v <= (size_t)INT_MAX, "record count %zu exceeds INT_MAX", v);
    return (int)v;
}

void jt_comm_xfer_start(jt_comm_xfer *x, const void *send, const size_t *scount,
                        const size_t *sdispl, void *recv, const size_t *rcount,
                        const size_t *rdispl, uint64_t *sum, size_t n_sum) {
    JT_CHECK(!x->active, "exchange started twice");
    int world = jt_comm_size();
    for (int r = 0; r < world; r++) {
        x->sc[r] = to_int(scount[r]);
        x->sd[r] = to_int(sdispl[r]);
        x->rc[r] = to_int(rcount[r]);
        x->rd[r] = to_int(rdispl[r]);
    }
    MPI_Ialltoallv(send, x->sc, x->sd, x->record, recv, x->rc, x->rd, x->record, MPI_COMM_WORLD,
                   &x->req[0]);
    x->req[1] = MPI_REQUEST_NULL;
    if (n_sum > 0)
        MPI_Iallreduce(MPI_IN_PLACE, sum, to_int(n_sum), MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD,
                       &x->req[1]);
    x->active = 1;
    x->next_active = g_active;
    g_active = x;
}

void jt_comm_xfer_wait(jt_comm_xfer *x) {
    if (!x->active) return;
    double t0 = jt_now();
    jt_watch_enter("the batch exchange");
    MPI_Waitall(2, x->req, MPI_STATUSES_IGNORE);
    jt_watch_leave();
    g_xfer_wait += jt_now() - t0;
    x->active = 0;
    unlink_active(x);
}

void jt_comm_xfer_free(jt_comm_xfer *x) {
    if (!x) return;
    jt_comm_xfer_wait(x);
    MPI_Type_free(&x->record);
    free(x->sc);
    free(x->sd);
    free(x->rc);
    free(x->rd);
    free(x);
}

/* ---- the gradient sum (comm.h: jt_comm_reducer) ---- */

/* A bucket's way through a round. SHM: copied in (PUBLISHED), own share summed (REDUCED), then
 * on several nodes the leader's MPI_Iallreduce (LEADER_SUM) or the wait for it (AWAIT_LEADER),
 * then copied out (DONE). MPI: PUBLISHED while its MPI_Iallreduce is in flight. */
enum { B_IDLE, B_PUBLISHED, B_REDUCED, B_LEADER_SUM, B_AWAIT_LEADER, B_DONE };

typedef _Atomic uint64_t jt_counter;
/* Counters shared between processes must be lock-free (a lock would live in one process). */
_Static_assert(ATOMIC_LONG_LOCK_FREE == 2 && sizeof(unsigned long) == sizeof(uint64_t),
               "64-bit atomics are not lock-free on this target");

struct jt_comm_reducer {
    jt_reduce_mode mode;
    float *buf;
    size_t n, nb;
    size_t *lo, *hi;      /* buckets */
    int *state;
    double *t_start, *t_done;
    size_t next;          /* next bucket to start in this round */
    uint64_t round;       /* rounds started so far; the counters below hold round numbers */
    MPI_Request *req;     /* MPI mode: per bucket; SHM: the leader's per bucket */
    char what[96];
    /* SHM */
    MPI_Comm node, leaders; /* leaders: MPI_COMM_NULL unless node leader of a multi-node job */
    MPI_Win win;
    int node_rank, node_size, n_nodes;
    int oversubscribed;   /* more ranks on the node than CPUs they may run on together */
    float **seg;          /* per node rank: its copy of buf (same offsets) */
    const float **terms;  /* scratch for sum_share: the node_size terms */
    float *res;           /* the node's sum (in node rank 0's part of the window) */
    /* per node rank: pub[b] = last round it copied bucket b in; red[b] = last round it summed
     * its share of b; fin[b] (leader) = last round the all-node sum of b is in res */
    jt_counter **pub, **red, **fin;
    size_t next_leader;   /* leader: next bucket to hand to MPI_Iallreduce (in order) */
};

static size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

/* Node rank j's share of [lo, hi): a 1/size part, cut at multiples of 16 floats (64 bytes) so
 * that two ranks never write the same cache line of the result. */
static void share_of(size_t lo, size_t hi, int j, int size, size_t *a, size_t *z) {
    size_t len = hi - lo;
    size_t cut0 = j == 0 ? 0 : len * (size_t)j / (size_t)size / 16 * 16;
    size_t cut1 = j + 1 == size ? len : len * (size_t)(j + 1) / (size_t)size / 16 * 16;
    *a = lo + cut0;
    *z = lo + (cut1 > cut0 ? cut1 : cut0);
}

/* Streaming (non-temporal) stores for what another core reads next: the lines of a segment or
 * of the result were last read by another rank's core, and an ordinary store must first fetch
 * each of them back and invalidate the other copy. Measured on this project's VM (2.4 MB per
 * rank, 2 ranks): copying in 270 -> 62 us, summing a share 430 -> 94 us. Stores are weakly
 * ordered: stream_fence() must precede the release of the counter that publishes them. */
#if defined(__SSE__)
static void stream4(float *dst, __m128 v) { _mm_stream_ps(dst, v); }
static void stream_fence(void) { _mm_sfence(); }
#define JT_STREAM 1
#else
static void stream_fence(void) {}
#define JT_STREAM 0
#endif

/* dst[0, n) = src[0, n) through streaming stores. */
static void copy_stream(float *dst, const float *src, size_t n) {
    size_t i = 0;
#if JT_STREAM
    for (; i < n && ((uintptr_t)(dst + i) & 15); i++) dst[i] = src[i];
    for (; i + 4 <= n; i += 4) stream4(dst + i, _mm_loadu_ps(src + i));
#endif
    for (; i < n; i++) dst[i] = src[i];
}

/* Sums this rank's share [a, z) of a bucket in one pass: x_0 + x_1 + ... + x_{N-1} left to
 * right, x_j from node rank j's segment, except this rank's own values, read from buf (they are
 * never copied: only the other shares are). The sum goes to the result area (streamed: others
 * read it) and, on one node, where it is final, into buf as well. */
static void sum_share(jt_comm_reducer *r, size_t a, size_t z) {
    size_t len = z - a, i = 0;
    int k = r->node_size, to_buf = r->n_nodes == 1;
    float *res = r->res + a, *own = r->buf + a; /* own is one of the terms */
    const float **x = r->terms;
    for (int j = 0; j < k; j++) x[j] = (j == r->node_rank ? r->buf : r->seg[j]) + a;
#if JT_STREAM
    for (; i < len && ((uintptr_t)(res + i) & 15); i++) {
        float s = x[0][i];
        for (int j = 1; j < k; j++) s += x[j][i];
        res[i] = s;
        if (to_buf) own[i] = s;
    }
    for (; i + 4 <= len; i += 4) {
        __m128 v = _mm_loadu_ps(x[0] + i);
        for (int j = 1; j < k; j++) v = _mm_add_ps(v, _mm_loadu_ps(x[j] + i));
        stream4(res + i, v);
        if (to_buf) _mm_storeu_ps(own + i, v);
    }
#endif
    for (; i < len; i++) {
        float s = x[0][i];
        for (int j = 1; j < k; j++) s += x[j][i];
        res[i] = s;
        if (to_buf) own[i] = s;
    }
}

static int all_reached(jt_counter *const *c, int k, size_t b, uint64_t round) {
    for (int j = 0; j < k; j++)
        if (atomic_load_explicit(&c[j][b], memory_order_acquire) < round) return 0;
    return 1;
}

/* Copies [lo, a) and [z, hi) of from into to: a bucket but for this rank's share [a, z). */
static void copy_but_share(float *to, const float *from, size_t lo, size_t a, size_t z,
                           size_t hi) {
    memcpy(to + lo, from + lo, (a - lo) * sizeof(float));
    memcpy(to + z, from + z, (hi - z) * sizeof(float));
}

/* The same into this rank's segment, which the others read next. */
static void publish_but_share(float *to, const float *from, size_t lo, size_t a, size_t z,
                              size_t hi) {
    copy_stream(to + lo, from + lo, a - lo);
    copy_stream(to + z, from + z, hi - z);
    stream_fence();
}

static void bucket_done(jt_comm_reducer *r, size_t b) {
    if (r->mode == JT_REDUCE_SHM) {
        size_t a, z;
        share_of(r->lo[b], r->hi[b], r->node_rank, r->node_size, &a, &z);
        if (r->n_nodes > 1) a = z; /* the leaders' sum changed every share */
        copy_but_share(r->buf, r->res, r->lo[b], a, z, r->hi[b]);
    }
    r->state[b] = B_DONE;
    r->t_done[b] = jt_now();
}

/* SHM: moves every started bucket as far as it goes without waiting. 1 when the round is done. */
static int shm_advance(jt_comm_reducer *r) {
    int all = r->next == r->nb;
    int me = r->node_rank;
    for (size_t b = 0; b < r->next; b++) {
        if (r->state[b] == B_PUBLISHED && all_reached(r->pub, r->node_size, b, r->round)) {
            size_t a, z;
            share_of(r->lo[b], r->hi[b], me, r->node_size, &a, &z);
            sum_share(r, a, z);
            stream_fence();
            atomic_store_explicit(&r->red[me][b], r->round, memory_order_release);
            r->state[b] = B_REDUCED;
        }
        if (r->state[b] == B_REDUCED && all_reached(r->red, r->node_size, b, r->round)) {
            if (r->n_nodes == 1) {
                bucket_done(r, b);
            } else if (r->leaders == MPI_COMM_NULL) {
                r->state[b] = B_AWAIT_LEADER;
            } else if (r->next_leader == b) { /* every leader starts them in the same order */
                MPI_Iallreduce(MPI_IN_PLACE, r->res + r->lo[b], (int)(r->hi[b] - r->lo[b]),
                               MPI_FLOAT, MPI_SUM, r->leaders, &r->req[b]);
                r->next_leader++;
                r->state[b] = B_LEADER_SUM;
            }
        }
        if (r->state[b] == B_LEADER_SUM) {
            int flag = 0;
            MPI_Test(&r->req[b], &flag, MPI_STATUS_IGNORE);
            if (flag) {
                atomic_store_explicit(&r->fin[me][b], r->round, memory_order_release);
                bucket_done(r, b);
            }
        }
        if (r->state[b] == B_AWAIT_LEADER &&
            atomic_load_explicit(&r->fin[0][b], memory_order_acquire) >= r->round)
            bucket_done(r, b);
        all &= r->state[b] == B_DONE;
    }
    return all;
}

/* MPI: records the completion of every finished bucket. 1 when the round is done. */
static int mpi_advance(jt_comm_reducer *r) {
    if (r->nb == 1) return 0; /* its blocking sum runs in wait */
    int all = r->next == r->nb;
    for (size_t b = 0; b < r->next; b++) {
        if (r->state[b] == B_PUBLISHED) {
            int flag = 0;
            MPI_Test(&r->req[b], &flag, MPI_STATUS_IGNORE);
            if (flag) bucket_done(r, b);
        }
        all &= r->state[b] == B_DONE;
    }
    return all;
}

/* The number of CPUs the node's ranks may run on together: the union of their affinity masks
 * (a SLURM cpuset or a binding may give the job fewer than the node has). Collective on node. */
static int node_cpus(MPI_Comm node) {
    cpu_set_t mine;
    CPU_ZERO(&mine);
    if (sched_getaffinity(0, sizeof mine, &mine) != 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        for (long i = 0; i < n && i < CPU_SETSIZE; i++) CPU_SET((int)i, &mine);
    }
    cpu_set_t all;
    MPI_Allreduce(&mine, &all, (int)sizeof mine, MPI_BYTE, MPI_BOR, node);
    return CPU_COUNT(&all);
}

static void setup_shm(jt_comm_reducer *r) {
    MPI_Comm_rank(r->node, &r->node_rank);
    MPI_Comm_size(r->node, &r->node_size);
    int cpus = node_cpus(r->node);
    r->oversubscribed = cpus > 0 && r->node_size > cpus;
    int is_leader = r->node_rank == 0, world_rank = jt_comm_rank();
    MPI_Allreduce(&is_leader, &r->n_nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Comm_split(MPI_COMM_WORLD, is_leader ? 0 : MPI_UNDEFINED, world_rank, &r->leaders);
    if (r->n_nodes == 1 && r->leaders != MPI_COMM_NULL) MPI_Comm_free(&r->leaders);

    /* Each rank's part: its counters (3 * nb, page-rounded), its copy of buf; rank 0's part
     * also holds the result. Non-contiguous: every part starts on its own pages. */
    size_t flag_bytes = round_up(3 * r->nb * sizeof(jt_counter), 4096);
    size_t data_bytes = round_up(r->n * sizeof(float), 4096);
    /* + a page: Open MPI does not page-align the parts; each is aligned below */
    size_t mine = 4096 + flag_bytes + data_bytes + (r->node_rank == 0 ? data_bytes : 0);
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true");
    void *base = NULL;
    MPI_Win_allocate_shared((MPI_Aint)mine, 1, info, r->node, &base, &r->win);
    MPI_Info_free(&info);
    size_t k = (size_t)r->node_size;
    r->seg = jt_xcalloc(k, sizeof *r->seg);
    r->terms = jt_xcalloc(k, sizeof *r->terms);
    r->pub = jt_xcalloc(k, sizeof *r->pub);
    r->red = jt_xcalloc(k, sizeof *r->red);
    r->fin = jt_xcalloc(k, sizeof *r->fin);
    for (int j = 0; j < r->node_size; j++) {
        MPI_Aint size = 0;
        int disp = 0;
        char *p = NULL;
        MPI_Win_shared_query(r->win, j, &size, &disp, &p);
        JT_CHECK(p && (size_t)size >= 4096 + flag_bytes + data_bytes,
                 "shared window part %d: %ld bytes", j, (long)size);
        /* page-align: the mapping is page-aligned in every process, so all compute the same
         * layout */
        p += (4096 - (uintptr_t)p % 4096) % 4096;
        r->pub[j] = (jt_counter *)p;
        r->red[j] = r->pub[j] + r->nb;
        r->fin[j] = r->red[j] + r->nb;
        r->seg[j] = (float *)(p + flag_bytes);
        if (j == 0) r->res = (float *)(p + flag_bytes + data_bytes);
    }
    for (size_t b = 0; b < 3 * r->nb; b++) atomic_init(&r->pub[r->node_rank][b], 0);
    MPI_Barrier(r->node); /* every rank's counters are zero before anyone reads them */
    int largest = 0;
    MPI_Allreduce(&r->node_size, &largest, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (r->n_nodes == 1)
        snprintf(r->what, sizeof r->what, "shm, 1 node of %d ranks", r->node_size);
    else
        snprintf(r->what, sizeof r->what, "shm on %d nodes (up to %d ranks each), leaders MPI_Iallreduce",
                 r->n_nodes, largest);
}

/* The ranks that share memory with this one (or JTRAIN_TEST_NODE_SIZE consecutive ranks). */
static void split_nodes(MPI_Comm *node) {
    const char *k = getenv("JTRAIN_TEST_NODE_SIZE");
    long ks = 0;
    int rank = jt_comm_rank();
    if (k && jt_parse_long(k, 1, INT_MAX, &ks) == 0)
        MPI_Comm_split(MPI_COMM_WORLD, (int)(rank / ks), rank, node);
    else
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, node);
}

static jt_reduce_mode reduce_mode(jt_reduce_mode mode) {
    int m = (int)mode;
    MPI_Bcast(&m, 1, MPI_INT, 0, MPI_COMM_WORLD);
    mode = (jt_reduce_mode)m;
    if (jt_comm_size() == 1) return JT_REDUCE_NONE;
    if (mode != JT_REDUCE_AUTO) return mode;
    MPI_Comm node;
    split_nodes(&node);
    int size = 0, largest = 0;
    MPI_Comm_size(node, &size);
    MPI_Comm_free(&node);
    MPI_Allreduce(&size, &largest, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return largest >= 2 ? JT_REDUCE_SHM : JT_REDUCE_MPI;
}

jt_reduce_mode jt_comm_reduce_mode(jt_reduce_mode mode) {
    jt_watch_enter("the choice of the gradient sum");
    mode = reduce_mode(mode);
    jt_watch_leave();
    return mode;
}

jt_comm_reducer *jt_comm_reducer_new(float *buf, size_t n, const size_t *begin, const size_t *end,
                                     size_t n_buckets, jt_reduce_mode mode) {
    JT_CHECK(n_buckets > 0, "a reducer needs a bucket");
    jt_comm_reducer *r = jt_xcalloc(1, sizeof *r);
    r->buf = buf;
    r->n = n;
    r->nb = n_buckets;
    r->lo = jt_xcalloc(n_buckets, sizeof(size_t));
    r->hi = jt_xcalloc(n_buckets, sizeof(size_t));
    r->state = jt_xcalloc(n_buckets, sizeof(int));
    r->t_start = jt_xcalloc(n_buckets, sizeof(double));
    r->t_done = jt_xcalloc(n_buckets, sizeof(double));
    r->req = jt_xcalloc(n_buckets, sizeof(MPI_Request));
    for (size_t b = 0; b < n_buckets; b++) {
        JT_CHECK(begin[b] <= end[b] && end[b] <= n && end[b] - begin[b] <= (size_t)INT_MAX,
                 "bucket %zu [%zu, %zu) of %zu floats", b, begin[b], end[b], n);
        r->lo[b] = begin[b];
        r->hi[b] = end[b];
        r->req[b] = MPI_REQUEST_NULL;
    }
    r->node = r->leaders = MPI_COMM_NULL;
    r->win = MPI_WIN_NULL;
    jt_watch_enter("the set-up of the gradient sum");
    mode = reduce_mode(mode);
    if (mode == JT_REDUCE_SHM) split_nodes(&r->node);
    r->mode = mode;
    if (mode == JT_REDUCE_SHM) setup_shm(r);
    else if (mode == JT_REDUCE_MPI)
        snprintf(r->what, sizeof r->what, "%s", n_buckets > 1 ? "mpi, MPI_Iallreduce per bucket"
                                                              : "mpi, blocking MPI_Allreduce");
    else snprintf(r->what, sizeof r->what, "none (1 rank)");
    jt_watch_leave();
    return r;
}

void jt_comm_reducer_start(jt_comm_reducer *r) {
    JT_CHECK(r->next < r->nb, "bucket %zu started, but there are %zu", r->next, r->nb);
    size_t b = r->next++;
    if (b == 0) r->round++;
    r->t_start[b] = jt_now();
    size_t lo = r->lo[b], len = r->hi[b] - r->lo[b];
    switch (r->mode) {
    case JT_REDUCE_SHM: {
        size_t a, z; /* this rank sums its own share from buf: the others need the rest */
        share_of(lo, r->hi[b], r->node_rank, r->node_size, &a, &z);
        publish_but_share(r->seg[r->node_rank], r->buf, lo, a, z, r->hi[b]);
        atomic_store_explicit(&r->pub[r->node_rank][b], r->round, memory_order_release);
        r->state[b] = B_PUBLISHED;
        shm_advance(r);
        break;
    }
    case JT_REDUCE_MPI:
        /* One bucket (no overlap wanted): summed in wait by the blocking MPI_Allreduce, which
         * in Open MPI 4.1 is several times faster than MPI_Iallreduce (bench_allreduce). */
        if (r->nb > 1)
            MPI_Iallreduce(MPI_IN_PLACE, r->buf + lo, (int)len, MPI_FLOAT, MPI_SUM,
                           MPI_COMM_WORLD, &r->req[b]);
        r->state[b] = B_PUBLISHED;
        mpi_advance(r);
        break;
    default:
        bucket_done(r, b);
    }
    jt_comm_poll();
}

void jt_comm_reducer_progress(jt_comm_reducer *r) {
    if (r->mode == JT_REDUCE_SHM) shm_advance(r);
    else if (r->mode == JT_REDUCE_MPI) mpi_advance(r);
    jt_comm_poll();
}

void jt_comm_reducer_wait(jt_comm_reducer *r) {
    JT_CHECK(r->next == r->nb, "wait after %zu of %zu buckets", r->next, r->nb);
    jt_watch_enter("the gradient sum");
    if (r->mode == JT_REDUCE_SHM) {
        /* Spin, as Open MPI does. With more ranks on the node than CPUs, the rank waited for
         * may need this CPU: give it away between polls (Open MPI's yield_when_idle). Not
         * otherwise: on a busy machine a yield hands the CPU to another job for a whole time
         * slice, and the other ranks then wait for this one (measured: +1-3 ms per step). */
        for (unsigned spins = 1; !shm_advance(r); spins++) {
            jt_comm_poll();
            if (r->oversubscribed && spins % 16 == 0) sched_yield();
        }
    } else if (r->mode == JT_REDUCE_MPI && r->nb == 1) {
        MPI_Allreduce(MPI_IN_PLACE, r->buf + r->lo[0], (int)(r->hi[0] - r->lo[0]), MPI_FLOAT,
                      MPI_SUM, MPI_COMM_WORLD);
        bucket_done(r, 0);
    } else if (r->mode == JT_REDUCE_MPI) {
        int idx[64];
        for (;;) {
            int count = 0;
            /* MPI_Waitsome on the whole array so each bucket's completion time is its own */
            if (r->nb <= 64) {
                MPI_Waitsome((int)r->nb, r->req, &count, idx, MPI_STATUSES_IGNORE);
                if (count == MPI_UNDEFINED) break;
                for (int i = 0; i < count; i++) bucket_done(r, (size_t)idx[i]);
            } else {
                mpi_advance(r);
                MPI_Waitall((int)r->nb, r->req, MPI_STATUSES_IGNORE);
                break;
            }
        }
        for (size_t b = 0; b < r->nb; b++)
            if (r->state[b] != B_DONE) bucket_done(r, b);
    }
    jt_watch_leave();
    for (size_t b = 0; b < r->nb; b++) {
        JT_CHECK(r->state[b] == B_DONE, "bucket %zu not done", b);
        r->state[b] = B_IDLE;
    }
    r->next = 0;
    r->next_leader = 0;
}

void jt_comm_reducer_times(const jt_comm_reducer *r, size_t i, double *started, double *done) {
    JT_CHECK(i < r->nb, "bucket %zu of %zu", i, r->nb);
    *started = r->t_start[i];
    *done = r->t_done[i];
}

const char *jt_comm_reducer_describe(const jt_comm_reducer *r) { return r->what; }

void jt_comm_reducer_free(jt_comm_reducer *r) {
    if (!r) return;
    jt_watch_enter("the tear-down of the gradient sum");
    if (r->win != MPI_WIN_NULL) MPI_Win_free(&r->win);
    if (r->leaders != MPI_COMM_NULL) MPI_Comm_free(&r->leaders);
    if (r->node != MPI_COMM_NULL) MPI_Comm_free(&r->node);
    jt_watch_leave();
    free(r->seg);
    free(r->terms);
    free(r->pub);
    free(r->red);
    free(r->fin);
    free(r->lo);
    free(r->hi);
    free(r->state);
    free(r->t_start);
    free(r->t_done);
    free(r->req);
    free(r);
}

/* ---- the side channel (comm.h: jt_comm_side) ---- */

struct jt_comm_side {
    MPI_Comm comm;
    int size;
    size_t max_bytes;
    MPI_Request *req; /* per destination: the send in flight, or MPI_REQUEST_NULL */
    char *out;        /* per destination: that send's buffer, max_bytes each */
};

jt_comm_side *jt_comm_side_new(size_t max_bytes) {
    JT_CHECK(jt_comm_thread_multiple(), "a side channel needs MPI_THREAD_MULTIPLE");
    JT_CHECK(max_bytes > 0 && max_bytes <= (size_t)INT_MAX, "side message of %zu bytes",
             max_bytes);
    jt_comm_side *s = jt_xcalloc(1, sizeof *s);
    MPI_Comm_dup(MPI_COMM_WORLD, &s->comm);
    MPI_Comm_size(s->comm, &s->size);
    s->max_bytes = max_bytes;
    s->req = jt_xcalloc((size_t)s->size, sizeof *s->req);
    for (int i = 0; i < s->size; i++) s->req[i] = MPI_REQUEST_NULL;
    s->out = jt_xcalloc((size_t)s->size, max_bytes);
    return s;
}

int jt_comm_side_send(jt_comm_side *s, int dest, int tag, const void *buf, size_t bytes) {
    JT_CHECK(dest >= 0 && dest < s->size && tag >= 0 && bytes <= s->max_bytes,
             "side send of %zu bytes to %d", bytes, dest);
    int done = 0;
    MPI_Test(&s->req[dest], &done, MPI_STATUS_IGNORE); /* true for MPI_REQUEST_NULL */
    if (!done) return 0;
    char *out = s->out + (size_t)dest * s->max_bytes;
    memcpy(out, buf, bytes);
    MPI_Isend(out, (int)bytes, MPI_BYTE, dest, tag, s->comm, &s->req[dest]);
    return 1;
}

int jt_comm_side_recv(jt_comm_side *s, int *src, int *tag, void *buf, size_t cap, size_t *bytes) {
    int flag = 0, count = 0;
    MPI_Message msg;
    MPI_Status st;
    /* matched probe: the message cannot be taken by another receive in between */
    MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, s->comm, &flag, &msg, &st);
    if (!flag) return 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    JT_CHECK(count >= 0 && (size_t)count <= cap, "side message of %d bytes, room for %zu", count,
             cap);
    MPI_Mrecv(buf, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    *src = st.MPI_SOURCE;
    *tag = st.MPI_TAG;
    *bytes = (size_t)count;
    return 1;
}

int jt_comm_side_idle(jt_comm_side *s) {
    int done = 0;
    MPI_Testall(s->size, s->req, &done, MPI_STATUSES_IGNORE);
    return done;
}

void jt_comm_side_free(jt_comm_side *s) {
    if (!s) return;
    JT_CHECK(jt_comm_side_idle(s), "side channel freed with a send in flight");
    int flag = 0;
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, s->comm, &flag, MPI_STATUS_IGNORE);
    JT_CHECK(!flag, "side channel freed with a message not received");
    MPI_Comm_free(&s->comm);
    free(s->req);
    free(s->out);
    free(s);
}
