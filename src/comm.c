/* comm.c - the only module that calls MPI.
 *
 * Invariants: every collective is reached by every rank in the same order; counts passed to
 * MPI are element counts and never exceed INT_MAX (long buffers go in chunks); a fatal error
 * anywhere ends in MPI_Abort so no rank waits forever. */
#include "jtrain/comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

static int g_initialised = 0;

static void abort_handler(int code) { jt_comm_abort(code); }

void jt_comm_init(int *argc, char ***argv) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    g_initialised = 1;
    jt_log_set_rank(jt_comm_rank(), jt_comm_size());
    jt_set_abort_handler(abort_handler);
}

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
    while (n > 0) {
        int count = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        MPI_Allreduce(MPI_IN_PLACE, p, count, type, MPI_SUM, MPI_COMM_WORLD);
        p += (size_t)count * elem_bytes;
        n -= (size_t)count;
    }
}

void jt_comm_sum_f32(float *buf, size_t n) { sum_chunked(buf, n, MPI_FLOAT, sizeof(float)); }
void jt_comm_sum_f64(double *buf, size_t n) { sum_chunked(buf, n, MPI_DOUBLE, sizeof(double)); }
void jt_comm_sum_u64(uint64_t *buf, size_t n) {
    sum_chunked(buf, n, MPI_UINT64_T, sizeof(uint64_t));
}

jt_status jt_comm_agree(jt_status st, int *first) {
    int mine[2] = {(int)st, st != JT_OK ? -jt_comm_rank() : INT_MIN}, worst[2] = {0, 0};
    MPI_Allreduce(mine, worst, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
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
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}

struct jt_comm_xfer {
    MPI_Datatype record;
    MPI_Request req[2];
    int active;
    int *sc, *sd, *rc, *rd; /* per-rank counts and displacements, in records */
};

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
}

void jt_comm_xfer_wait(jt_comm_xfer *x) {
    if (!x->active) return;
    MPI_Waitall(2, x->req, MPI_STATUSES_IGNORE);
    x->active = 0;
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
