/* config.h - the run's YAML config (DESIGN.md "Config"), strictly parsed with libyaml.
 *
 * An unknown key, a wrong type, a bad number or a missing required key is JT_EUSAGE with a
 * message naming the file, line and key. `--set a.b.c=value` overrides are applied to the
 * document before validation, so they are checked exactly like the file. */
#ifndef JTRAIN_CONFIG_H
#define JTRAIN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "jtrain/common.h"
#include "jtrain/layer.h"
#include "jtrain/optim.h"

#define JT_PATH_MAX 1024

typedef struct {
    char kind[32];        /* a layer kind, e.g. "conv2d" */
    jt_layer_opts opts;   /* parsed with jt_layer_opts_parse */
    int line;
} jt_layer_cfg;

typedef struct {
    char name[JT_NAME_MAX];
    char input[JT_NAME_MAX];   /* a data set array name or another block's name */
    jt_layer_cfg *layers;
    size_t n_layers;
    int line;
} jt_block_cfg;

typedef struct {
    char name[JT_NAME_MAX];
    char input[JT_NAME_MAX];   /* a block name */
    char target[JT_NAME_MAX];  /* a label array name */
    double weight;             /* default 1.0 */
    jt_layer_cfg *layers;      /* optional extra layers before the projection jtrain adds */
    size_t n_layers;
    int line;
} jt_head_cfg;

typedef struct {
    char source[JT_PATH_MAX];  /* the config file (or "<string>") */
    struct {
        char file[JT_PATH_MAX]; /* required */
        char train[JT_NAME_MAX]; /* default "train" */
        char eval[JT_NAME_MAX];  /* default "test" */
    } data;
    jt_block_cfg *blocks; /* in file order; at least one */
    size_t n_blocks;
    jt_head_cfg *heads;   /* in file order; at least one */
    size_t n_heads;
    struct {
        long epochs;       /* exactly one of epochs / steps is > 0 */
        long steps;
        long batch_size;   /* global, required, > 0 */
        uint64_t seed;     /* default 1 */
        jt_adam_opts adam; /* train.optimizer: name (must be "adam"), lr, beta1, beta2, eps, weight_decay */
        double clip_norm;  /* default 0 = off */
        long eval_every;   /* default 0 = only at the end */
        long threads;      /* OpenBLAS threads per rank; default 0 = 1 when N > 1, else OpenBLAS' own */
    } train;
    struct {
        char dir[JT_PATH_MAX]; /* default "runs/<config file stem>" */
        long every_steps;      /* default 0 = only at the end (and on signals) */
        long keep;             /* default 3, >= 1 */
    } checkpoint;
    struct {
        long every_steps;          /* default 50 */
        char metrics[JT_PATH_MAX]; /* default "<checkpoint.dir>/metrics.jsonl" */
    } log;
} jt_config;

/* Reads and validates the file at path, applying the n_sets overrides "a.b=value" in order.
 * On failure returns JT_EUSAGE and writes one message (file, line, key) into err. */
jt_status jt_config_load(jt_config *c, const char *path, const char *const *sets, size_t n_sets,
                         char *err, size_t errlen);
/* Same, from a string in memory; `source` names it in messages (e.g. a checkpoint's path). */
jt_status jt_config_parse(jt_config *c, const char *text, const char *source,
                          const char *const *sets, size_t n_sets, char *err, size_t errlen);
/* The resolved config (every default filled in) as YAML text that jt_config_parse reads back to
 * an equal config. Caller frees. */
char *jt_config_to_yaml(const jt_config *c);
/* NULL-safe; leaves c zeroed. */
void jt_config_free(jt_config *c);

#endif
