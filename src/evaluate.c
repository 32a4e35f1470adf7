/* evaluate.c - exact evaluation over a split (each rank its own shard, sums reduced) and the
 * `eval` and `summary` commands, which rebuild a model from a checkpoint or a config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jtrain/ckpt.h"
#include "jtrain/comm.h"
#include "jtrain/config.h"
#include "jtrain/train.h"

void jt_head_eval_add(double *acc, const jt_xent_stats *st, size_t n_heads) {
    for (size_t h = 0; h < n_heads; h++) {
        double *a = acc + JT_HEAD_EVAL_FIELDS * h;
        a[0] += st[h].loss_sum;
        a[1] += (double)st[h].labelled;
        a[2] += (double)st[h].correct;
        a[3] += (double)st[h].seq_rows;
        a[4] += (double)st[h].seq_exact;
    }
}

void jt_head_eval_unpack(const double *acc, size_t n_heads, jt_head_eval *out) {
    for (size_t h = 0; h < n_heads; h++) {
        const double *a = acc + JT_HEAD_EVAL_FIELDS * h;
        out[h] = (jt_head_eval){a[0], a[1], a[2], a[3], a[4]};
    }
}

void jt_head_eval_print(const jt_model *m, const jt_head_eval *ev, FILE *out, FILE *json) {
    for (size_t h = 0; h < m->n_heads; h++) {
        const jt_chain *c = &m->chains[m->n_blocks + h];
        double n = ev[h].labelled;
        double loss = n > 0 ? ev[h].loss_sum / n : 0.0, acc = n > 0 ? ev[h].correct / n : 0.0;
        double seq = ev[h].seq_rows > 0 ? ev[h].seq_exact / ev[h].seq_rows : 0.0;
        if (out) {
            fprintf(out, " | %s loss %.4f acc %.4f", c->name, loss, acc);
            if (c->seq_len) fprintf(out, " seq %.4f", seq);
        }
        if (json) {
            fprintf(json, "%s\"%s\": {\"loss\": %.6f, \"accuracy\": %.6f, \"n\": %.0f, "
                    "\"correct\": %.0f", h ? ", " : "", c->name, loss, acc, n, ev[h].correct);
            if (c->seq_len)
                fprintf(json, ", \"sequence_accuracy\": %.6f, \"sequences\": %.0f", seq,
                        ev[h].seq_rows);
            fprintf(json, "}");
        }
    }
}

int jt_evaluate(jt_model *m, const jt_split *split, jt_head_eval *out, const volatile int *stop) {
    size_t nh = m->n_heads;
    double *acc = jt_xcalloc(JT_HEAD_EVAL_FIELDS * nh + 1, sizeof(double));
    const void *ptr[JT_MODEL_MAX_ARRAYS];
    jt_xent_stats st[JT_MODEL_MAX_ARRAYS];
    size_t rows = split->end - split->begin;
    int complete = 1;
    for (size_t off = 0; off < rows; off += m->max_n) {
        if (stop && *stop) {
            complete = 0;
            break;
        }
        size_t n = rows - off < m->max_n ? rows - off : m->max_n;
        for (size_t a = 0; a < split->n_arrays; a++) {
            size_t bytes = jt_array_row_bytes(&split->arrays[a]);
            ptr[a] = (const unsigned char *)split->arrays[a].data + off * bytes;
        }
        jt_model_forward(m, ptr, NULL, n, 0, 0);
        jt_model_loss(m, ptr, n, NULL, 0, st);
        jt_head_eval_add(acc, st, nh);
        jt_progress();
    }
    acc[JT_HEAD_EVAL_FIELDS * nh] = complete ? 0.0 : 1.0; /* rides in the sum */
    jt_comm_sum_f64(acc, JT_HEAD_EVAL_FIELDS * nh + 1);
    jt_head_eval_unpack(acc, nh, out);
    complete = acc[JT_HEAD_EVAL_FIELDS * nh] == 0.0;
    free(acc);
    return complete;
}

jt_status jt_eval_run(const char *ckpt_arg, const char *data, const char *split_name, int json) {
    char err[2048] = "", ckpt[JT_PATH_MAX] = "";
    jt_ckpt_state cs;
    memset(&cs, 0, sizeof cs);
    jt_config cfg;
    memset(&cfg, 0, sizeof cfg);
    jt_split split;
    memset(&split, 0, sizeof split);
    jt_model m;
    memset(&m, 0, sizeof m);
    jt_head_eval *ev = NULL;
    int rank = jt_comm_rank(), world = jt_comm_size();

    jt_status st = jt_comm_agree_report(jt_ckpt_resolve(ckpt_arg, ckpt, sizeof ckpt, err,
                                                        sizeof err), err);
    if (st != JT_OK) goto cleanup;
    st = jt_comm_agree_report(jt_ckpt_read_state(ckpt, &cs, err, sizeof err), err);
    if (st != JT_OK) goto cleanup;
    st = jt_config_parse(&cfg, cs.config_text, ckpt, NULL, 0, err, sizeof err);
    if ((st = jt_comm_agree_report(st == JT_OK ? JT_OK : JT_ECKPT, err)) != JT_OK) goto cleanup;
    const char *path = data ? data : cfg.data.file;
    const char *sname = split_name ? split_name : cfg.data.eval;
    st = jt_comm_agree_report(
        jt_model_open_data(&cfg, path, sname, rank, world, &split, err, sizeof err), err);
    if (st != JT_OK) goto cleanup;
    st = jt_comm_agree_report(jt_model_build(&m, &cfg, &split, 256, err, sizeof err), err);
    if (st != JT_OK) goto cleanup;
    st = jt_comm_agree_report(jt_ckpt_load(ckpt, &m.params, &cs, err, sizeof err), err);
    if (st != JT_OK) goto cleanup;
    ev = jt_xcalloc(m.n_heads, sizeof *ev);
    jt_evaluate(&m, &split, ev, NULL);
    if (rank == 0) {
        if (json) printf("{\"checkpoint\": \"%s\", \"data\": \"%s\", \"split\": \"%s\", "
                         "\"step\": %llu, \"heads\": {", ckpt, path, sname,
                         (unsigned long long)cs.step);
        if (json) {
            jt_head_eval_print(&m, ev, NULL, stdout);
            printf("}}\n");
        } else {
            for (size_t h = 0; h < m.n_heads; h++) {
                const jt_head_eval *e = &ev[h];
                const jt_chain *c = &m.chains[m.n_blocks + h];
                double n = e->labelled;
                printf("%-12s loss %.4f  accuracy %.4f  (%.0f/%.0f)", c->name,
                       n > 0 ? e->loss_sum / n : 0.0, n > 0 ? e->correct / n : 0.0, e->correct, n);
                if (c->seq_len)
                    printf("  sequence accuracy %.4f (%.0f/%.0f)",
                           e->seq_rows > 0 ? e->seq_exact / e->seq_rows : 0.0, e->seq_exact,
                           e->seq_rows);
                printf("\n");
            }
        }
        fflush(stdout);
    }
cleanup:
    free(ev);
    jt_model_free(&m);
    jt_data_close(&split);
    jt_config_free(&cfg);
    jt_ckpt_state_free(&cs);
    return st;
}

/* A checkpoint is a .h5 file, a `latest` pointer or a run folder; anything else a config. */
static int is_checkpoint_path(const char *path) {
    size_t len = strlen(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    struct stat sb;
    return (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) || strcmp(base, "latest") == 0 ||
           (len > 3 && strcmp(path + len - 3, ".h5") == 0);
}

jt_status jt_summary_run(const char *arg) {
    char err[2048] = "", path[JT_PATH_MAX] = "";
    jt_config cfg;
    memset(&cfg, 0, sizeof cfg);
    jt_ckpt_state cs;
    memset(&cs, 0, sizeof cs);
    jt_split split;
    memset(&split, 0, sizeof split);
    jt_model m;
    memset(&m, 0, sizeof m);
    int is_ckpt = is_checkpoint_path(arg);
    jt_status st = JT_OK;
    snprintf(path, sizeof path, "%s", arg);
    if (is_ckpt) st = jt_ckpt_resolve(arg, path, sizeof path, err, sizeof err);
    if (st != JT_OK) {
        goto cleanup;
    } else if (is_ckpt) {
        st = jt_ckpt_read_state(path, &cs, err, sizeof err);
        if (st == JT_OK && jt_config_parse(&cfg, cs.config_text, path, NULL, 0, err,
                                           sizeof err) != JT_OK)
            st = JT_ECKPT;
    } else {
        st = jt_config_load(&cfg, path, NULL, 0, err, sizeof err);
    }
    if (st != JT_OK) goto cleanup;
    st = jt_model_open_data(&cfg, cfg.data.file, cfg.data.train, 0, 0, &split, err, sizeof err);
    if (st != JT_OK) goto cleanup;
    st = jt_model_build(&m, &cfg, &split, 1, err, sizeof err);
    if (st != JT_OK) goto cleanup;
    printf("model of %s (data %s)\n", path, cfg.data.file);
    jt_model_print_summary(&m, stdout);
cleanup:
    if (st != JT_OK) jt_errorf("%s", err);
    jt_model_free(&m);
    jt_data_close(&split);
    jt_config_free(&cfg);
    jt_ckpt_state_free(&cs);
    return st;
}
