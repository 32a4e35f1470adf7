/* train.h - the `train` and `eval` commands: a run of docs/run.md.
 * Both are collective: every rank calls them and every rank returns the same status. */
#ifndef JTRAIN_TRAIN_H
#define JTRAIN_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "jtrain/ckpt.h"
#include "jtrain/common.h"
#include "jtrain/data.h"
#include "jtrain/model.h"

typedef struct {
    const char *config_path;
    const char *const *sets; /* --set overrides */
    size_t n_sets;
    const char *resume;      /* NULL, "auto" (the newest intact checkpoint in checkpoint.dir, if
                                any) or a checkpoint: a file, a `latest` pointer or a run folder */
    int overwrite;           /* start over in a checkpoint.dir that holds another run */
} jt_train_args;

/* Trains as the config says; prints the resolved config, progress and final per-head eval. */
jt_status jt_train_run(const jt_train_args *args);

/* One head's metrics summed over all ranks. Sequence heads count tokens in labelled/correct
 * (token accuracy) and samples in seq_rows/seq_exact (exact-sequence accuracy). */
typedef struct {
    double loss_sum, labelled, correct, seq_rows, seq_exact;
} jt_head_eval;
#define JT_HEAD_EVAL_FIELDS 5

/* Adds a batch's local stats of every head into acc (JT_HEAD_EVAL_FIELDS doubles per head). */
void jt_head_eval_add(double *acc, const jt_xent_stats *st, size_t n_heads);
/* Unpacks acc (as filled by jt_head_eval_add, then summed over ranks) into out. */
void jt_head_eval_unpack(const double *acc, size_t n_heads, jt_head_eval *out);
/* Prints " | NAME loss L acc A [seq S]" for every head to out, and the same as JSON members
 * ("NAME": {"loss": .., "accuracy": .., "n": .., ["sequence_accuracy": ..]}) to json if not NULL. */
void jt_head_eval_print(const jt_model *m, const jt_head_eval *ev, FILE *out, FILE *json);

/* Evaluates m on this rank's shard of split (all rows, in chunks of m->max_n) and sums the
 * per-head metrics over ranks into out[h] (exact: each row is in one shard). Collective. Calls
 * jt_progress() per chunk. If stop is not NULL and *stop becomes nonzero, this rank skips its
 * remaining chunks (it still joins the sum, so no rank hangs); the result is 0 on every rank
 * when some rank stopped early (out is then partial), else 1. */
int jt_evaluate(jt_model *m, const jt_split *split, jt_head_eval *out, const volatile int *stop);

/* A trained model opened on a split: what eval and predict run. */
typedef struct {
    char ckpt[JT_PATH_MAX];   /* the checkpoint file (resolved) */
    const char *data;         /* the data set file: --data or the config's data.file */
    const char *split_name;   /* --split or the config's data.eval */
    jt_ckpt_state cs;
    jt_config cfg;            /* the checkpoint's config */
    jt_split split;           /* this rank's shard of the split (labels optional) */
    jt_model model;           /* built for max_n rows per pass, with the checkpoint's weights */
} jt_trained;

/* Collective: resolves ckpt_arg (file, latest/best, run folder), reads its config, opens this
 * rank's shard of split (data or split NULL: the config's data.file / data.eval; a split without
 * labels is allowed), builds the model for passes of max_n rows and loads the checkpoint; every
 * step agreed over ranks (the lowest failing rank reports). On failure t is left closed. */
jt_status jt_trained_open(jt_trained *t, const char *ckpt_arg, const char *data,
                          const char *split, size_t max_n);
/* NULL-safe; leaves t zeroed. */
void jt_trained_close(jt_trained *t);

/* `jtrain eval CKPT [--data FILE] [--split NAME] [--json]`. */
jt_status jt_eval_run(const char *ckpt, const char *data, const char *split, int json);

/* `jtrain predict CKPT [--data FILE] [--split NAME] --out OUT.h5` (predict.c): every head's
 * logits and predictions for every row of the split, in data-set order, under any number of
 * ranks; the predictions are those eval counts. Collective. */
jt_status jt_predict_run(const char *ckpt, const char *data, const char *split, const char *out);

/* `jtrain summary CONFIG|CHECKPOINT`: layers, shapes and parameter counts (single process). */
jt_status jt_summary_run(const char *path);

#endif
