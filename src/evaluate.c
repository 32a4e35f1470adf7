/* evaluate.c - exact evaluation over a split (each rank its own shard, sums reduced) and the
 * `eval` and `summary` commands, which rebuild a model from a checkpoint or a config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if p does not start one. */
static size_t utf8_len(const unsigned char *p) {
    if (p[0] < 0x80) return 1;
    size_t n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    if (p[0] >= 0xf8) n = 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    /* no overlong forms, surrogates or code points past U+10FFFF */
    if ((n == 3 && p[0] == 0xe0 && p[1] < 0xa0) || (n == 3 && p[0] == 0xed && p[1] >= 0xa0) ||
        (n == 4 && p[0] == 0xf0 && p[1] < 0x90) || (n == 4 && p[0] == 0xf4 && p[1] >= 0x90))
        return 0;
    return n;
}

/* s as a JSON string (RFC 8259): quotes, backslashes and control characters escaped, and a byte
 * that is not UTF-8 (a path may hold any byte) as U+FFFD, so the output always parses. */
static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_len(p);
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
        else if (n == 0) fputs("\\ufffd", f);
        else fwrite(p, 1, n, f);
        p += n ? n : 1;
    }
    fputc('"', f);
}

void jt_head_eval_print(const jt_model *m, const jt_head_eval *ev, FILE *out, FILE *json) {
    for (size_t h = 0; h < m->n_heads; h++) {
        const jt_chain *c = &m->chains[m->n_blocks + h];
        double n = ev[h].labelled;
        double loss = n > 0 ? ev[h].loss_sum / n : 0.0, acc = n > 0 ? ev[h].correct / n : 0.0;
        double seq = ev[h].seq_rows > 0 ? ev[h].seq_exact / ev[h].seq_rows : 0.0;
        if (out) {
            /* no labelled row: there is no loss or accuracy to show, and 0 would read as one */
            if (n > 0) fprintf(out, " | %s loss %.4f acc %.4f", c->name, loss, acc);
            else fprintf(out, " | %s n 0, no labels", c->name);
            if (c->seq_len && n > 0) fprintf(out, " seq %.4f", seq);
        }
        if (json) {
            fprintf(json, "%s", h ? ", " : "");
            json_string(json, c->name);
            if (n > 0)
                fprintf(json, ": {\"loss\": %.6f, \"accuracy\": %.6f", loss, acc);
            else
                fprintf(json, ": {\"loss\": null, \"accuracy\": null");
            fprintf(json, ", \"n\": %.0f, \"correct\": %.0f", n, ev[h].correct);
            if (c->seq_len) {
                if (ev[h].seq_rows > 0) fprintf(json, ", \"sequence_accuracy\": %.6f", seq);
                else fprintf(json, ", \"sequence_accuracy\": null");
                fprintf(json, ", \"sequences\": %.0f", ev[h].seq_rows);
            }
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

jt_status jt_trained_open(jt_trained *t, const char *ckpt_arg, const char *data,
                          const char *split, size_t max_n) {
    char err[2048] = "";
    memset(t, 0, sizeof *t);
    jt_status st = jt_comm_agree_report(jt_ckpt_resolve(ckpt_arg, t->ckpt, sizeof t->ckpt, err,
                                                        sizeof err), err);
    if (st == JT_OK)
        st = jt_comm_agree_report(jt_ckpt_read_state(t->ckpt, &t->cs, err, sizeof err), err);
    if (st == JT_OK) {
        st = jt_config_parse(&t->cfg, t->cs.config_text, t->ckpt, NULL, 0, err, sizeof err);
        st = jt_comm_agree_report(st == JT_OK ? JT_OK : JT_ECKPT, err);
    }
    if (st == JT_OK) {
        t->data = data ? data : t->cfg.data.file;
        t->split_name = split ? split : t->cfg.data.eval;
        st = jt_comm_agree_report(jt_model_open_split(&t->cfg, t->data, t->split_name,
                                                      jt_comm_rank(), jt_comm_size(), 0,
                                                      &t->split, err, sizeof err), err);
    }
    if (st == JT_OK)
        st = jt_comm_agree_report(jt_model_build(&t->model, &t->cfg, &t->split, max_n, err,
                                                 sizeof err), err);
    if (st == JT_OK) {
        jt_ckpt_state_free(&t->cs); /* the load reads it again, with the weights */
        st = jt_comm_agree_report(jt_ckpt_load(t->ckpt, &t->model.params, &t->cs, err,
                                               sizeof err), err);
    }
    if (st != JT_OK) jt_trained_close(t);
    return st;
}

void jt_trained_close(jt_trained *t) {
    if (!t) return;
    jt_model_free(&t->model);
    jt_data_close(&t->split);
    jt_config_free(&t->cfg);
    jt_ckpt_state_free(&t->cs);
    memset(t, 0, sizeof *t);
}

jt_status jt_eval_run(const char *ckpt_arg, const char *data, const char *split_name, int json) {
    jt_trained t;
    jt_status st = jt_trained_open(&t, ckpt_arg, data, split_name, 256);
    if (st != JT_OK) return st;
    jt_model *m = &t.model;
    jt_head_eval *ev = jt_xcalloc(m->n_heads, sizeof *ev);
    jt_evaluate(m, &t.split, ev, NULL);
    if (jt_comm_rank() == 0) {
        if (json) {
            printf("{\"checkpoint\": ");
            json_string(stdout, t.ckpt);
            printf(", \"data\": ");
            json_string(stdout, t.data);
            printf(", \"split\": ");
            json_string(stdout, t.split_name);
            printf(", \"step\": %llu, \"heads\": {", (unsigned long long)t.cs.step);
            jt_head_eval_print(m, ev, NULL, stdout);
            printf("}}\n");
        } else {
            for (size_t h = 0; h < m->n_heads; h++) {
                const jt_head_eval *e = &ev[h];
                const jt_chain *c = &m->chains[m->n_blocks + h];
                double n = e->labelled;
                if (n > 0)
                    printf("%-12s loss %.4f  accuracy %.4f  (%.0f/%.0f)", c->name,
                           e->loss_sum / n, e->correct / n, e->correct, n);
                else
                    printf("%-12s n 0, no labels", c->name);
                if (c->seq_len && e->seq_rows > 0)
                    printf("  sequence accuracy %.4f (%.0f/%.0f)", e->seq_exact / e->seq_rows,
                           e->seq_exact, e->seq_rows);
                printf("\n");
            }
        }
        fflush(stdout);
    }
    free(ev);
    jt_trained_close(&t);
    return st;
}

/* A checkpoint is a .h5 file, a `latest` pointer or a run folder; anything else a config. */
static int is_checkpoint_path(const char *path) {
    size_t len = strlen(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    struct stat sb;
    return (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) || strcmp(base, "latest") == 0 ||
           strcmp(base, "best") == 0 ||
           (len > 3 && strcmp(path + len - 3, ".h5") == 0);
}

/* A split of metadata only (no rows), from a checkpoint's data layout: enough to build its
 * model. arrays: room for JT_CKPT_MAX_ARRAYS. */
static void layout_split(const jt_ckpt_state *cs, jt_split *s, jt_array *arrays) {
    memset(s, 0, sizeof *s);
    memset(arrays, 0, JT_CKPT_MAX_ARRAYS * sizeof *arrays);
    for (size_t i = 0; i < cs->n_layout && i < JT_CKPT_MAX_ARRAYS; i++) {
        const jt_ckpt_array *l = &cs->layout[i];
        jt_array *a = &arrays[i];
        snprintf(a->name, sizeof a->name, "%s", l->name);
        a->role = l->role ? JT_ARRAY_LABEL : JT_ARRAY_INPUT;
        a->shape.ndim = l->ndim;
        a->row_elems = 1;
        for (int k = 0; k < l->ndim; k++) {
            a->shape.d[k] = (size_t)l->shape[k];
            a->row_elems *= (size_t)l->shape[k];
        }
        a->n_classes = (size_t)l->n_classes;
    }
    s->arrays = arrays;
    s->n_arrays = cs->n_layout < JT_CKPT_MAX_ARRAYS ? cs->n_layout : JT_CKPT_MAX_ARRAYS;
    snprintf(s->path, sizeof s->path, "%s", "(layout)");
}

jt_status jt_summary_run(const char *arg) {
    jt_array fake[JT_CKPT_MAX_ARRAYS];
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
    const char *from = cfg.data.file;
    if (is_ckpt && cs.n_layout > 0 && access(cfg.data.file, F_OK) != 0) {
        layout_split(&cs, &split, fake);
        from = "the checkpoint's layout; the data file is not here";
    } else {
        st = jt_model_open_data(&cfg, cfg.data.file, cfg.data.train, 0, 0, &split, err, sizeof err);
        if (st != JT_OK) goto cleanup;
    }
    st = jt_model_build(&m, &cfg, &split, 1, err, sizeof err);
    if (st != JT_OK) goto cleanup;
    printf("model of %s (data %s: %s)\n", path, cfg.data.file, from == cfg.data.file ? "read" : from);
    jt_model_print_summary(&m, stdout);
cleanup:
    if (split.arrays == fake) memset(&split, 0, sizeof split); /* not jt_data_close's */
    if (st != JT_OK) jt_errorf("%s", err);
    jt_model_free(&m);
    jt_data_close(&split);
    jt_config_free(&cfg);
    jt_ckpt_state_free(&cs);
    return st;
}
