/* predict.c - `jtrain predict CHECKPOINT [--data FILE] [--split NAME] --out OUT.h5`: every
 * head's logits and predicted classes for every row of a split, in data-set order.
 *
 * Each rank runs the evaluation forward (jt_evaluate's: greedy decoding for sequence heads, in
 * chunks of the same size) over its shard, rows [begin, end) of the split, so the predictions
 * are exactly those `eval` counts. Rank 0 creates the output next to OUT (OUT.tmp.<pid>) with
 * full-size data sets; then the ranks write their rows in turn, rank 0 first, each followed by
 * a status check that all ranks join (so a failure on one rank stops all, and no two ranks
 * have the file open at once); rank 0 renames the file to OUT at the end.
 *
 * Output layout, per head H:
 *   /H/logits  float32 (N, C) for a class head, (N, L, V) for a sequence head
 *   /H/pred    int32 (N): the argmax class (the first of equal maxima, as eval counts), or
 *              (N, L): the greedy tokens
 *   attribute classes on /H: the target's class (or vocabulary) names
 * Root attributes: checkpoint, data, split (strings), step (uint64). */
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jtrain/ckpt.h"
#include "jtrain/comm.h"
#include "jtrain/h5util.h"
#include "jtrain/train.h"

#define PREDICT_CHUNK 256 /* rows per forward: jt_eval_run's max_n, so logits are the same */

/* Rows per sample of head h's logits (C, or L x V) and of its predictions (1 or L). */
static size_t logit_elems(const jt_chain *c) { return c->seq_len ? c->seq_len * c->n_classes : c->n_classes; }
static size_t pred_elems(const jt_chain *c) { return c->seq_len ? c->seq_len : 1; }

/* Rank 0: the output file with every head's data sets sized for the whole split. */
static jt_status create_output(const char *tmp, const jt_model *m, const jt_split *s,
                               const char *ckpt, uint64_t step, char *err, size_t errlen) {
    char why[512];
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, jt_h5_reason(why, sizeof why));
        return JT_EUSAGE;
    }
    int bad = jt_h5_attr_write_string(f, "checkpoint", ckpt) < 0 ||
              jt_h5_attr_write_string(f, "data", s->path) < 0 ||
              jt_h5_attr_write_string(f, "split", s->split) < 0 ||
              jt_h5_attr_write_u64(f, "step", step) < 0;
    for (size_t h = 0; h < m->n_heads && !bad; h++) {
        const jt_chain *c = &m->chains[m->n_blocks + h];
        const jt_array *t = &s->arrays[c->target_array];
        hid_t g = H5Gcreate2(f, c->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t ld[3] = {s->n, c->seq_len ? c->seq_len : c->n_classes, c->n_classes};
        hsize_t pd[2] = {s->n, c->seq_len};
        hid_t ls = H5Screate_simple(c->seq_len ? 3 : 2, ld, NULL);
        hid_t ps = H5Screate_simple(c->seq_len ? 2 : 1, pd, NULL);
        hid_t dl = g < 0 ? -1 : H5Dcreate2(g, "logits", H5T_IEEE_F32LE, ls, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hid_t dp = g < 0 ? -1 : H5Dcreate2(g, "pred", H5T_STD_I32LE, ps, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        bad = dl < 0 || dp < 0 ||
              (t->classes && jt_h5_attr_write_strings(g, "classes", (const char *const *)t->classes,
                                                      t->n_classes) < 0);
        if (dl >= 0) H5Dclose(dl);
        if (dp >= 0) H5Dclose(dp);
        H5Sclose(ls);
        H5Sclose(ps);
        if (g >= 0) H5Gclose(g);
    }
    if (bad) snprintf(err, errlen, "cannot write %s: %s", tmp, jt_h5_reason(why, sizeof why));
    if (H5Fclose(f) < 0 && !bad) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, jt_h5_reason(why, sizeof why));
        bad = 1;
    }
    return bad ? JT_EUSAGE : JT_OK;
}

/* This rank's rows of every head into the file. */
static jt_status write_rows(const char *tmp, const jt_model *m, const jt_split *s,
                            float *const *logits, int32_t *const *pred, char *err, size_t errlen) {
    char why[512];
    hid_t f = H5Fopen(tmp, H5F_ACC_RDWR, H5P_DEFAULT);
    int bad = f < 0;
    size_t rows = s->end - s->begin;
    for (size_t h = 0; h < m->n_heads && !bad && rows > 0; h++) {
        const jt_chain *c = &m->chains[m->n_blocks + h];
        char path[2 * JT_NAME_MAX];
        snprintf(path, sizeof path, "%s/logits", c->name);
        hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
        bad = d < 0 || jt_h5_write_rows(d, H5T_NATIVE_FLOAT, s->begin, rows, logits[h]) < 0;
        if (d >= 0) H5Dclose(d);
        snprintf(path, sizeof path, "%s/pred", c->name);
        d = bad ? -1 : H5Dopen2(f, path, H5P_DEFAULT);
        bad = bad || d < 0 || jt_h5_write_rows(d, H5T_NATIVE_INT32, s->begin, rows, pred[h]) < 0;
        if (d >= 0) H5Dclose(d);
    }
    if (f >= 0 && H5Fclose(f) < 0) bad = 1;
    if (bad) snprintf(err, errlen, "rank %d: cannot write its rows [%zu, %zu) into %s: %s",
                      jt_comm_rank(), s->begin, s->end, tmp, jt_h5_reason(why, sizeof why));
    return bad ? JT_EUSAGE : JT_OK;
}

/* Forward over this rank's shard; each head's logits and argmax predictions. */
static void run_forward(jt_model *m, const jt_split *s, float **logits, int32_t **pred) {
    const void *ptr[JT_MODEL_MAX_ARRAYS];
    size_t rows = s->end - s->begin;
    for (size_t off = 0; off < rows; off += m->max_n) {
        size_t n = rows - off < m->max_n ? rows - off : m->max_n;
        for (size_t a = 0; a < s->n_arrays; a++)
            ptr[a] = (const unsigned char *)s->arrays[a].data + off * jt_array_row_bytes(&s->arrays[a]);
        jt_model_forward(m, ptr, NULL, n, 0, 0);
        for (size_t h = 0; h < m->n_heads; h++) {
            const jt_chain *c = &m->chains[m->n_blocks + h];
            size_t le = logit_elems(c), pe = pred_elems(c), V = c->n_classes;
            const float *z = c->act[c->n_layers - 1];
            memcpy(logits[h] + off * le, z, n * le * sizeof(float));
            for (size_t i = 0; i < n * pe; i++) { /* one argmax per row or per token */
                const float *zi = z + i * V;
                size_t best = 0;
                for (size_t v = 1; v < V; v++)
                    if (zi[v] > zi[best]) best = v;
                pred[h][off * pe + i] = (int32_t)best;
            }
        }
        jt_progress();
    }
}

jt_status jt_predict_run(const char *ckpt_arg, const char *data, const char *split_name,
                         const char *out) {
    char err[2048] = "", tmp[JT_PATH_MAX + 32] = "";
    float *logits[JT_MODEL_MAX_ARRAYS] = {0};
    int32_t *pred[JT_MODEL_MAX_ARRAYS] = {0};
    int rank = jt_comm_rank(), world = jt_comm_size();
    jt_h5_quiet();
    jt_trained t;
    jt_status st = jt_trained_open(&t, ckpt_arg, data, split_name, PREDICT_CHUNK);
    if (st != JT_OK) return st;
    jt_model *m = &t.model;
    size_t rows = t.split.end - t.split.begin;
    for (size_t h = 0; h < m->n_heads; h++) {
        const jt_chain *c = &m->chains[m->n_blocks + h];
        logits[h] = jt_xcalloc(rows * logit_elems(c) + 1, sizeof(float));
        pred[h] = jt_xcalloc(rows * pred_elems(c) + 1, sizeof(int32_t));
    }
    run_forward(m, &t.split, logits, pred);

    { /* rank 0's temp file name, the same on every rank */
        uint64_t pid = rank == 0 ? (uint64_t)getpid() : 0;
        jt_comm_sum_u64(&pid, 1);
        snprintf(tmp, sizeof tmp, "%s.tmp.%llu", out, (unsigned long long)pid);
    }
    if (rank == 0) st = create_output(tmp, m, &t.split, t.ckpt, t.cs.step, err, sizeof err);
    st = jt_comm_agree_report(st, err);
    for (int r = 0; r < world && st == JT_OK; r++)
        st = jt_comm_agree_report(r == rank ? write_rows(tmp, m, &t.split, logits, pred, err,
                                                         sizeof err)
                                            : JT_OK, err);
    if (st == JT_OK && rank == 0 && rename(tmp, out) != 0) {
        snprintf(err, sizeof err, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
        st = JT_EUSAGE;
    }
    st = jt_comm_agree_report(st, err);
    if (st == JT_OK && rank == 0)
        printf("wrote %s: %zu rows of %s /%s, %zu head%s, from %s (step %llu)\n", out,
               t.split.n, t.data, t.split_name, m->n_heads, m->n_heads > 1 ? "s" : "", t.ckpt,
               (unsigned long long)t.cs.step);
    if (st != JT_OK && rank == 0) unlink(tmp);
    for (size_t h = 0; h < JT_MODEL_MAX_ARRAYS; h++) {
        free(logits[h]);
        free(pred[h]);
    }
    jt_trained_close(&t);
    return st;
}
