/* train.h - the `train` and `eval` commands: a run of DESIGN.md "What a run does".
 * Both are collective: every rank calls them and every rank returns the same status. */
#ifndef JTRAIN_TRAIN_H
#define JTRAIN_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "jtrain/common.h"
#include "jtrain/data.h"
#include "jtrain/model.h"

typedef struct {
    const char *config_path;
    const char *const *sets; /* --set overrides */
    size_t n_sets;
    const char *resume;      /* NULL, "auto" (latest in checkpoint.dir, if any) or a path */
} jt_train_args;

/* Trains as the config says; prints the resolved config, progress and final per-head eval. */
jt_status jt_train_run(const jt_train_args *args);

typedef struct {
    double loss_sum, labelled, correct; /* summed over all ranks */
} jt_head_eval;

/* Evaluates m on this rank's shard of split (all rows, in chunks of m->max_n) and sums the
 * per-head metrics over ranks into out[h] (exact: each row is in one shard). Collective. */
void jt_evaluate(jt_model *m, const jt_split *split, jt_head_eval *out);

/* `jtrain eval CKPT [--data FILE] [--split NAME] [--json]`. */
jt_status jt_eval_run(const char *ckpt, const char *data, const char *split, int json);

/* `jtrain summary CONFIG|CHECKPOINT`: layers, shapes and parameter counts (single process). */
jt_status jt_summary_run(const char *path);

#endif
