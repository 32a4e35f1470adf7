/* batch.c - the global batch (docs/design.md "N-invariant global batches") and the exchange
 * of rows between shards.
 *
 * Invariants: every rank computes the same permutation and the same split of each global batch
 * (a pure function of seed, epoch, step, n, B and world), so sender and receiver agree on the
 * order of records without sending indices; each row of an epoch is in exactly one batch part. */
#include "jtrain/batch.h"

#include <stdlib.h>
#include <string.h>

#include "jtrain/common.h"
#include "jtrain/rng.h"


size_t jt_batcher_bytes(const jt_split *split, size_t batch_size, size_t max_local) {
    size_t record = 0;
    for (size_t a = 0; a < split->n_arrays; a++)
        record = jt_size_add(record, jt_array_row_bytes(&split->arrays[a]));
    /* per slot: rows, send (min(B, n) records), recv and the arrays (max_local records each) */
    size_t send = batch_size < split->n ? batch_size : split->n;
    size_t slot = jt_size_add(jt_size_mul(max_local, sizeof(uint64_t)),
                              jt_size_mul(jt_size_add(send, jt_size_mul(2, max_local)), record));
    return jt_size_add(jt_size_mul(split->n, sizeof(uint64_t)), jt_size_mul(2, slot));
}

void jt_batcher_init(jt_batcher *bt, const jt_split *split, size_t batch_size, uint64_t seed) {
    memset(bt, 0, sizeof *bt);
    JT_CHECK(split->n_arrays <= JT_BATCH_MAX_ARRAYS, "too many arrays (%zu)", split->n_arrays);
    JT_CHECK(batch_size > 0 && split->n > 0, "empty batch or split");
    bt->split = split;
    bt->batch_size = batch_size;
    bt->seed = seed;
    bt->rank = jt_comm_rank();
    bt->world = jt_comm_size();
    bt->steps_per_epoch = (split->n + batch_size - 1) / batch_size;
    /* no batch holds more than the split's rows: a batch_size beyond them allocates nothing */
    size_t most = batch_size < split->n ? batch_size : split->n;
    bt->max_local = (most + (size_t)bt->world - 1) / (size_t)bt->world;
    for (size_t a = 0; a < split->n_arrays; a++)
        bt->record_bytes += jt_array_row_bytes(&split->arrays[a]);
    bt->perm = jt_xcalloc(split->n, sizeof *bt->perm);
    bt->perm_epoch = UINT64_MAX;
    bt->owner_begin = jt_xcalloc((size_t)bt->world + 1, sizeof(size_t));
    for (int r = 0; r <= bt->world; r++)
        bt->owner_begin[r] = jt_data_shard_begin(split->n, bt->world, r);
    size_t w = (size_t)bt->world;
    for (int s = 0; s < 2; s++) {
        bt->slot[s].rows = jt_xcalloc(bt->max_local, sizeof(uint64_t));
        /* this rank owns at most min(B, shard) rows of one batch */
        bt->slot[s].send = jt_xcalloc(most, bt->record_bytes);
        bt->slot[s].recv = jt_xcalloc(bt->max_local, bt->record_bytes);
        for (size_t a = 0; a < split->n_arrays; a++)
            bt->slot[s].array[a] =
                jt_xcalloc(bt->max_local, jt_array_row_bytes(&split->arrays[a]));
        bt->slot[s].scount = jt_xcalloc(w, sizeof(size_t));
        bt->slot[s].sdispl = jt_xcalloc(w, sizeof(size_t));
        bt->slot[s].rcount = jt_xcalloc(w, sizeof(size_t));
        bt->slot[s].rdispl = jt_xcalloc(w, sizeof(size_t));
        bt->slot[s].xfer = jt_comm_xfer_new(bt->record_bytes);
    }
    bt->cur = 1; /* the first prefetch goes to slot 0 */
}

void jt_batcher_advance(const jt_batcher *bt, uint64_t *epoch, uint64_t *epoch_step) {
    if (++*epoch_step >= bt->steps_per_epoch) {
        *epoch_step = 0;
        ++*epoch;
    }
}

static void ensure_perm(jt_batcher *bt, uint64_t epoch) {
    if (bt->perm_epoch == epoch) return;
    jt_rng r;
    jt_rng_seed(&r, bt->seed, JT_RNG_SHUFFLE, epoch, 0, 0);
    jt_rng_permutation(&r, bt->perm, bt->split->n);
    bt->perm_epoch = epoch;
}

/* Offset and count of rank r's part of a global batch of gn rows. */
static void part_of(size_t gn, int world, int r, size_t *off, size_t *cnt) {
    size_t w = (size_t)world, q = gn / w, rem = gn % w, rr = (size_t)r;
    *cnt = q + (rr < rem ? 1 : 0);
    *off = rr * q + (rr < rem ? rr : rem);
}

static size_t global_n(const jt_batcher *bt, uint64_t epoch_step) {
    size_t start = (size_t)epoch_step * bt->batch_size;
    size_t left = bt->split->n - start;
    return left < bt->batch_size ? left : bt->batch_size;
}

void jt_batcher_rows(jt_batcher *bt, uint64_t epoch, uint64_t epoch_step, int r, uint64_t *out,
                     size_t *count) {
    JT_CHECK(epoch_step < bt->steps_per_epoch, "step %llu past the epoch",
             (unsigned long long)epoch_step);
    ensure_perm(bt, epoch);
    size_t off, cnt, gn = global_n(bt, epoch_step);
    part_of(gn, bt->world, r, &off, &cnt);
    memcpy(out, bt->perm + (size_t)epoch_step * bt->batch_size + off, cnt * sizeof *out);
    *count = cnt;
}

void jt_batcher_count_labelled(jt_batcher *bt, uint64_t epoch, uint64_t first, uint64_t count,
                               uint64_t *out) {
    JT_CHECK(first + count <= bt->steps_per_epoch, "batches %llu+%llu past the epoch",
             (unsigned long long)first, (unsigned long long)count);
    const jt_split *sp = bt->split;
    memset(out, 0, sp->n_arrays * sizeof *out);
    if (count == 0) return;
    ensure_perm(bt, epoch);
    size_t lo = (size_t)first * bt->batch_size;
    size_t hi = (size_t)(first + count) * bt->batch_size;
    if (hi > sp->n) hi = sp->n;
    for (size_t i = lo; i < hi; i++) {
        uint64_t row = bt->perm[i];
        if (row < sp->begin || row >= sp->end) continue;
        for (size_t a = 0; a < sp->n_arrays; a++) {
            const jt_array *arr = &sp->arrays[a];
            if (arr->role != JT_ARRAY_LABEL) continue;
            const int32_t *lab = (const int32_t *)arr->data + (row - sp->begin) * arr->row_elems;
            for (size_t k = 0; k < arr->row_elems; k++) out[a] += lab[k] >= 0;
        }
    }
}

static int owner_of(const jt_batcher *bt, uint64_t row) {
    int lo = 0, hi = bt->world - 1; /* largest r with owner_begin[r] <= row */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (bt->owner_begin[mid] <= row) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Copies global row `row` (owned by this rank) of every array into one record. */
static void pack_row(const jt_batcher *bt, uint64_t row, unsigned char *rec) {
    const jt_split *s = bt->split;
    size_t local = (size_t)row - s->begin;
    for (size_t a = 0; a < s->n_arrays; a++) {
        size_t bytes = jt_array_row_bytes(&s->arrays[a]);
        memcpy(rec, (const unsigned char *)s->arrays[a].data + local * bytes, bytes);
        rec += bytes;
    }
}

void jt_batcher_prefetch(jt_batcher *bt, uint64_t epoch, uint64_t epoch_step) {
    int s = 1 - bt->cur;
    JT_CHECK(!bt->slot[s].in_flight, "prefetch while a batch is in flight");
    const jt_split *sp = bt->split;
    size_t gn = global_n(bt, epoch_step);
    size_t w = (size_t)bt->world;
    ensure_perm(bt, epoch);
    const uint64_t *batch = bt->perm + (size_t)epoch_step * bt->batch_size;
    jt_batch *b = &bt->slot[s].b;
    memset(b, 0, sizeof *b);
    b->epoch = epoch;
    b->epoch_step = epoch_step;
    b->global_n = gn;

    /* Send side: for each destination's part, in order, the rows this rank owns. Also count
     * this rank's labelled rows of the whole batch, to be summed over ranks. */
    size_t *sc = bt->slot[s].scount, *sd = bt->slot[s].sdispl;
    size_t nsend = 0;
    for (size_t d = 0; d < w; d++) {
        size_t off, cnt;
        part_of(gn, bt->world, (int)d, &off, &cnt);
        sd[d] = nsend;
        sc[d] = 0;
        for (size_t i = off; i < off + cnt; i++) {
            uint64_t row = batch[i];
            if (row < sp->begin || row >= sp->end) continue;
            pack_row(bt, row, bt->slot[s].send + nsend * bt->record_bytes);
            for (size_t a = 0; a < sp->n_arrays; a++) {
                const jt_array *arr = &sp->arrays[a];
                if (arr->role != JT_ARRAY_LABEL) continue;
                const int32_t *lab = (const int32_t *)arr->data + (row - sp->begin) * arr->row_elems;
                /* a row counts as labelled for a class label if its label is >= 0; for a
                 * sequence label, every token >= 0 counts (per-token loss) */
                for (size_t k = 0; k < arr->row_elems; k++) b->labelled[a] += lab[k] >= 0;
            }
            nsend++;
            sc[d]++;
        }
    }
    /* Receive side: my part, grouped by owner in order. */
    size_t off, cnt;
    part_of(gn, bt->world, bt->rank, &off, &cnt);
    memcpy(bt->slot[s].rows, batch + off, cnt * sizeof(uint64_t));
    size_t *rc = bt->slot[s].rcount, *rd = bt->slot[s].rdispl;
    memset(rc, 0, w * sizeof *rc);
    for (size_t i = 0; i < cnt; i++) rc[owner_of(bt, batch[off + i])]++;
    for (size_t r = 0, acc = 0; r < w; r++) {
        rd[r] = acc;
        acc += rc[r];
    }
    b->n = cnt;
    b->rows = bt->slot[s].rows;
    jt_comm_xfer_start(bt->slot[s].xfer, bt->slot[s].send, sc, sd, bt->slot[s].recv, rc, rd,
                       b->labelled, sp->n_arrays);
    bt->slot[s].in_flight = 1;
}

const jt_batch *jt_batcher_next(jt_batcher *bt) {
    int s = 1 - bt->cur;
    JT_CHECK(bt->slot[s].in_flight, "jt_batcher_next without a prefetch");
    jt_comm_xfer_wait(bt->slot[s].xfer);
    bt->slot[s].in_flight = 0;
    bt->cur = s;
    /* Unpack records (grouped by owner) into per-array rows in batch order. */
    const jt_split *sp = bt->split;
    jt_batch *b = &bt->slot[s].b;
    size_t w = (size_t)bt->world;
    size_t cursor[256];
    size_t *cur = w <= 256 ? cursor : jt_xcalloc(w, sizeof *cur);
    for (size_t r = 0; r < w; r++) cur[r] = bt->slot[s].rdispl[r];
    for (size_t i = 0; i < b->n; i++) {
        int o = owner_of(bt, b->rows[i]);
        const unsigned char *rec = bt->slot[s].recv + cur[o]++ * bt->record_bytes;
        for (size_t a = 0; a < sp->n_arrays; a++) {
            size_t bytes = jt_array_row_bytes(&sp->arrays[a]);
            memcpy((unsigned char *)bt->slot[s].array[a] + i * bytes, rec, bytes);
            rec += bytes;
        }
    }
    if (cur != cursor) free(cur);
    for (size_t a = 0; a < sp->n_arrays; a++) b->array[a] = bt->slot[s].array[a];
    return b;
}

void jt_batcher_free(jt_batcher *bt) {
    if (!bt || !bt->split) return;
    for (int s = 0; s < 2; s++) {
        jt_comm_xfer_free(bt->slot[s].xfer);
        free(bt->slot[s].rows);
        free(bt->slot[s].send);
        free(bt->slot[s].recv);
        for (size_t a = 0; a < bt->split->n_arrays; a++) free(bt->slot[s].array[a]);
        free(bt->slot[s].scount);
        free(bt->slot[s].sdispl);
        free(bt->slot[s].rcount);
        free(bt->slot[s].rdispl);
    }
    free(bt->perm);
    free(bt->owner_begin);
    memset(bt, 0, sizeof *bt);
}
