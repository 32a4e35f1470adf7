/* config.h - the run's YAML config (docs/config.md), strictly parsed with libyaml.
 *
 * An unknown key, a duplicate key, a wrong type, a bad number or a missing required key is
 * JT_EUSAGE with one line in err:
 *     <file>:<line>: <dotted.key>: <expected ...>, found <...>
 * e.g. "configs/x.yaml:14: train.optimizer.lr: expected a number > 0, found 'fast'". A value
 * that came from an override shows "--set" in place of the line. Numbers must be plain YAML
 * scalars (a quoted "1e-3" is a string) that parse whole and lie in range; `key:` with nothing
 * (null) is never a value.
 *
 * `--set a.b.c=value` overrides are applied, in order, to the YAML document before validation,
 * so they are checked exactly like the file: the key path walks mappings from the top (missing
 * mappings on the way are created); the last key's value is replaced, or the key is added (an
 * unknown key added this way is reported like one in the file). The value is parsed as YAML, so
 * scalars, lists and mappings all work: `--set model.heads.item.weight=0.7`,
 * `--set 'model.blocks.b.layers=[flatten, {dense: {units: 64}}]'`; quote a string that YAML
 * would read otherwise (`--set 'data.file="a: b.h5"'`). An override without '=', with an empty
 * key component, or whose path goes through a non-mapping is JT_EUSAGE naming "--set <arg>".
 * (Keys cannot contain '.'; list items cannot be addressed one by one: replace the list.) */
#ifndef JTRAIN_CONFIG_H
#define JTRAIN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "jtrain/common.h"
#include "jtrain/layer.h"
#include "jtrain/optim.h"

#define JT_PATH_MAX 1024
/* Limits on a model config (README "Config"), far above real models, so that every check of a
 * config and the model built from it stays fast; heads and arrays are what the trainer can
 * carry (each head's metrics ride in the gradient buffer's 64-float control tail; a batch holds
 * at most 16 arrays). */
#define JT_CONFIG_MAX_BLOCKS 256
#define JT_CONFIG_MAX_HEADS 12
#define JT_CONFIG_MAX_LAYERS 1024 /* in all blocks and heads together */
#define JT_CONFIG_MAX_ARRAYS 16   /* data set arrays: block inputs and head targets */
/* A run's length: steps stay exact in a double (JSON readers of the metrics), and epochs times
 * steps per epoch cannot wrap around (jt_config_total_steps). */
#define JT_CONFIG_MAX_STEPS (1L << 53)
#define JT_CONFIG_MAX_EPOCHS 1000000000L

typedef struct {
    char kind[32];        /* a layer kind, e.g. "conv2d" */
    jt_layer_opts opts;   /* parsed with jt_layer_opts_parse */
    int line;             /* line of the kind in the file; 0 when it came from --set */
} jt_layer_cfg;

typedef struct {
    char name[JT_NAME_MAX];
    char input[JT_NAME_MAX];   /* a data set array name or another block's name */
    jt_layer_cfg *layers;      /* at least one */
    size_t n_layers;
    int line;                  /* line of the block's name; 0 when it came from --set */
} jt_block_cfg;

typedef struct {
    char name[JT_NAME_MAX];
    char input[JT_NAME_MAX];   /* a block name */
    char target[JT_NAME_MAX];  /* a label array name */
    double weight;             /* default 1.0 */
    jt_layer_cfg *layers;      /* optional extra layers before the projection jtrain adds */
    size_t n_layers;
    int line;                  /* line of the head's name; 0 when it came from --set */
} jt_head_cfg;

/* train.balance.method (README "Multi-task training"): how the heads' loss weights are set. */
typedef enum {
    JT_BALANCE_FIXED = 0,   /* the heads' config weights, unchanged (default) */
    JT_BALANCE_UNCERTAINTY, /* Kendall, Gal & Cipolla 2018: learned log-variance s_i per head */
    JT_BALANCE_DWA,         /* Liu, Johns & Davison 2019: dynamic weight average */
    JT_BALANCE_GRADNORM,    /* Chen et al. 2018: weights trained to balance gradient norms */
} jt_balance_method;

/* train.schedule.name: the learning rate over optimizer steps (schedule.h). */
typedef enum { JT_SCHED_CONSTANT = 0, JT_SCHED_COSINE, JT_SCHED_STEP, JT_SCHED_LINEAR } jt_sched_name;

typedef struct {
    jt_sched_name name;   /* default constant */
    long warmup_steps;    /* >= 0; default 0 */
    double min_lr;        /* >= 0 and < train.optimizer.lr; default 0 (cosine, linear) */
    long step_size;       /* > 0; required for step, not allowed for the others */
    double gamma;         /* in (0, 1]; default 0.1 (step) */
} jt_schedule_cfg;

/* What checkpoint.best and train.early_stop watch: one number of the evaluation of data.eval.
 * "HEAD.accuracy", "HEAD.loss" (HEAD a head's name) or "loss" (the sum over heads of the
 * config weight times the head's mean loss). */
typedef enum { JT_METRIC_NONE = 0, JT_METRIC_ACCURACY, JT_METRIC_LOSS } jt_metric_kind;
typedef struct {
    jt_metric_kind kind; /* JT_METRIC_NONE: not set (the feature is off) */
    int head;            /* index into heads, or -1 for "loss" (the weighted total) */
    int maximize;        /* mode: max (1) or min (0); default max for accuracy, min for loss */
    char text[2 * JT_NAME_MAX]; /* as written, e.g. "speaker.accuracy" */
} jt_metric_cfg;

typedef struct {
    char source[JT_PATH_MAX];  /* the config file (or "<string>") */
    struct {
        char file[JT_PATH_MAX]; /* required */
        char train[JT_NAME_MAX]; /* default "train" */
        char eval[JT_NAME_MAX];  /* default "test" */
    } data;
    jt_block_cfg *blocks; /* in file order; at least one. Names: [A-Za-z0-9_-]+, unique among
                             blocks and heads; a block's input may be another block, without
                             cycles (a block listed later is allowed) */
    size_t n_blocks;
    jt_head_cfg *heads;   /* in file order; at least one; input must name a block */
    size_t n_heads;
    struct {
        long epochs;       /* exactly one of epochs / steps is given (> 0), the other is 0;
                              epochs <= JT_CONFIG_MAX_EPOCHS, steps <= JT_CONFIG_MAX_STEPS */
        long steps;
        long batch_size;   /* global, required, > 0 */
        uint64_t seed;     /* default 1; any value in [0, 2^64 - 1] */
        /* train.optimizer: name (default and only value "adam"), lr > 0, beta1 and beta2 in
         * [0, 1), eps > 0, weight_decay >= 0; defaults from jt_adam_default_opts() */
        jt_adam_opts adam;
        double clip_norm;  /* >= 0; default 0 = off */
        long eval_every;   /* >= 0; default 0 = only at the end */
        long threads;      /* OpenBLAS threads per rank, in [0, 4096]; default 0 = 1 when N > 1,
                              else OpenBLAS' own */
        double watchdog_s; /* >= 0 seconds; default 600; 0 = off: how long a rank may wait in a
                              collective for a peer that stopped or is stuck (watchdog.h) */
        long accumulate;   /* micro-batches of batch_size per optimizer step, in [1, 2^20];
                              default 1. An optimizer step never spans two epochs (the last
                              one of an epoch may have fewer micro-batches), so it uses the same
                              rows as one batch of accumulate x batch_size */
        jt_schedule_cfg schedule; /* train.schedule */
        struct {
            jt_balance_method method; /* default fixed */
            double temperature;       /* dwa: T > 0, default 2 */
            long window;              /* dwa: steps per loss window, >= 0; 0 (default) = epoch */
            double alpha;             /* gradnorm: asymmetry >= 0, default 1.5 */
        } balance;
        int pcgrad;        /* train.pcgrad: false (default) / true */
        struct {
            jt_metric_cfg metric; /* kind NONE: no early stopping */
            long patience;        /* >= 1, required with metric: evaluations without improvement */
        } early_stop;
    } train;
    struct {
        char dir[JT_PATH_MAX]; /* default "runs/<config file name without its extension>"
                                  ("runs/run" when the source is not a file name) */
        long every_steps;      /* >= 0; default 0 = only at the end (and on signals) */
        long keep;             /* >= 1; default 3 */
        jt_metric_cfg best;    /* checkpoint.best: kind NONE = off; else the best evaluated
                                  checkpoint is kept (a `best` pointer, never pruned) */
    } checkpoint;
    struct {
        long every_steps;          /* > 0; default 50 */
        char metrics[JT_PATH_MAX]; /* default "<checkpoint.dir>/metrics.jsonl" */
        char trace[JT_PATH_MAX];   /* timeline (trace.h), each rank writes it with ".rank<R>"
                                      before the extension; default "" = off */
    } log;
} jt_config;

/* Reads and validates the file at path, applying the n_sets overrides "a.b=value" in order.
 * On failure returns JT_EUSAGE (also for a missing or unreadable file, named in the message),
 * writes one message (file, line, key) into err and leaves c zeroed. On success the caller
 * owns c and frees it with jt_config_free. */
jt_status jt_config_load(jt_config *c, const char *path, const char *const *sets, size_t n_sets,
                         char *err, size_t errlen);
/* Same, from a NUL-terminated string in memory; `source` names it in messages and gives the
 * default checkpoint.dir (e.g. a checkpoint's path; NULL means "<string>"). */
jt_status jt_config_parse(jt_config *c, const char *text, const char *source,
                          const char *const *sets, size_t n_sets, char *err, size_t errlen);
/* The resolved config (every default filled in) as YAML text that jt_config_parse reads back to
 * an equal config (doubles bit-exact: the shortest of %.1g..%.17g that reads back exactly).
 * Layer settings are written in config syntax with the kind's key names: numeric settings only
 * when set (nonzero), padding and return_sequences always. Emitting the same config twice gives
 * the same text. Caller frees with free(); NULL only when memory runs out. */
char *jt_config_to_yaml(const jt_config *c);
/* The run's length in steps: train.steps, or train.epochs x steps_per_epoch (the training
 * split's batches per epoch). JT_EUSAGE with a message naming train.epochs when that product
 * exceeds JT_CONFIG_MAX_STEPS (checked without overflow), leaving *total 0. */
jt_status jt_config_total_steps(const jt_config *c, uint64_t steps_per_epoch, uint64_t *total,
                                char *err, size_t errlen);
/* NULL-safe; leaves c zeroed. */
void jt_config_free(jt_config *c);

#endif
