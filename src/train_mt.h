/* train_mt.h - private to train.c: the multi-task side of a training step (README "Multi-task
 * training"): the heads' loss weights (train.balance), per-head gradients of the blocks that
 * feed several heads (telemetry, PCGrad, GradNorm), and the trainer's state that a checkpoint
 * carries beyond the optimizer (balancing windows, the best metric, early stopping).
 *
 * A step in "per-head" mode (PCGrad or GradNorm on, or a log step of a model with a shared
 * block) runs backward once per head (jt_model_backward_heads): the head's gradient of the
 * shared blocks' parameters is added into its own buffer (gh), the rest of the gradient into
 * the flat buffer as usual, whose shared ranges are left zero. After the gradient sum, gh is
 * summed over ranks (one more allreduce of heads x shared floats), then the shared ranges are
 * filled with the heads' sum, or with PCGrad's projected sum. Every rank computes the same
 * numbers from the same global sums, so the replicas stay identical. */
#ifndef JTRAIN_TRAIN_MT_H
#define JTRAIN_TRAIN_MT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "jtrain/config.h"
#include "jtrain/model.h"
#include "jtrain/train.h"

/* The best value of one metric seen so far (checkpoint.best, train.early_stop). */
typedef struct {
    int have;
    double value;
    uint64_t step; /* when it was seen */
    uint64_t bad;  /* evaluations since, without improvement */
} jt_mt_tracker;

typedef struct {
    const jt_config *cfg;
    size_t H;
    double base[JT_CONFIG_MAX_HEADS];   /* config weights */
    double weight[JT_CONFIG_MAX_HEADS]; /* this step's effective weights */
    /* blocks that feed several heads, packed: block s has model range [lo, hi) at off[s] */
    size_t n_shared, S;
    size_t *chain, *lo, *hi, *off;
    float *gh;                          /* H x S: each head's gradient of the shared blocks */
    float *work;                        /* PCGrad scratch */
    size_t w_lo, w_hi;                  /* GradNorm's W: the last shared layer, packed */
    /* telemetry of the last per-head step: per shared block, H norms and H x H cosines */
    double *norm, *cosine;
    int have_stats;
    uint64_t projections;               /* PCGrad: conflicting pairs projected, this interval */
    /* dwa */
    double prev1[JT_CONFIG_MAX_HEADS], prev2[JT_CONFIG_MAX_HEADS];
    double cur_sum[JT_CONFIG_MAX_HEADS], cur_lab[JT_CONFIG_MAX_HEADS];
    int dwa_windows;                    /* completed windows, at most 2 */
    /* gradnorm: the first step's losses */
    int have_L0;
    double L0[JT_CONFIG_MAX_HEADS];
    double gradnorm_loss;
    jt_mt_tracker best, early;
} jt_mt;

/* Sets up for cfg and the built model m. JT_EUSAGE naming the key when PCGrad or GradNorm is
 * asked of a model without a block that feeds several heads. */
jt_status jt_mt_init(jt_mt *mt, const jt_config *cfg, jt_model *m, char *err, size_t errlen);
void jt_mt_free(jt_mt *mt);

/* This step's weights into mt->weight and the heads' chains (jt_model_loss scales by them). */
void jt_mt_set_weights(jt_mt *mt, jt_model *m);
/* Whether this step runs one backward pass per head. */
int jt_mt_per_head(const jt_mt *mt, int log_step);
/* At the start of a per-head step: zeroes gh. */
void jt_mt_begin(jt_mt *mt);
/* A micro-batch's backward in per-head mode: one pass per head, adding the shared blocks'
 * part into gh and leaving those ranges of m->params.g zero; the rest adds into g. */
void jt_mt_backward(jt_mt *mt, jt_model *m, const void *const *arrays, const uint64_t *rows,
                    size_t n, uint64_t step);
/* After the gradient sum (g global, ctrl sums global): in per-head mode sums gh over ranks,
 * records the telemetry (log_step) and fills the shared ranges of g; then writes the balance
 * parameters' gradient (uncertainty, gradnorm). L[h]: head h's global mean loss of the step
 * (0 without labels), has[h]: it had labelled rows. */
void jt_mt_after_sum(jt_mt *mt, jt_model *m, uint64_t step, int per_head, int log_step,
                     const double *L, const int *has);
/* After the optimizer step: renormalises GradNorm's weights; feeds DWA's window with the step's
 * global loss sums and labelled counts (window_end: the window closes after this step). */
void jt_mt_after_step(jt_mt *mt, jt_model *m, const double *loss_sum, const double *labelled,
                      int window_end);
/* The combined training loss of the step's mean losses (what the progress line prints). */
double jt_mt_total_loss(const jt_mt *mt, const jt_model *m, const double *L, const int *has);

/* The metric of t's config from an evaluation; NAN when it has no labelled row. */
double jt_mt_metric(const jt_metric_cfg *t, const jt_mt *mt, const jt_head_eval *ev);
/* Feeds a metric value to a tracker: 1 if it improved (or is the first). */
int jt_mt_track(jt_mt_tracker *t, const jt_metric_cfg *cfg, double value, uint64_t step);

/* The state a checkpoint carries (/state/run): jt_mt_state_size doubles. */
size_t jt_mt_state_size(const jt_mt *mt);
void jt_mt_state_save(const jt_mt *mt, double *out);
/* JT_ECKPT when n is neither 0 (a checkpoint without it: start the state fresh) nor the size. */
jt_status jt_mt_state_load(jt_mt *mt, const double *in, size_t n, char *err, size_t errlen);

/* Logging (rank 0): " | lr X | w a 0.50 b 0.50 | cos BLOCK -0.12" for the progress line, and
 * the JSONL members "lr", "weights", "grad" (after the caller's "heads" member). */
void jt_mt_print(const jt_mt *mt, const jt_model *m, double lr, FILE *out);
void jt_mt_json(const jt_mt *mt, const jt_model *m, double lr, FILE *json);

#endif
