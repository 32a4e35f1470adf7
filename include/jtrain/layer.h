/* layer.h - a layer kind is a setup/init/forward/backward table behind a name
 * (docs/design.md "Rules of the house").
 *
 * Shapes are per sample (the batch dimension N is separate): an image is (C, H, W), a sequence
 * (T, F), a vector (F). Tensors are float32, row-major, batch first: x is (n, in...), y is
 * (n, out...). Contracts every kind keeps:
 *   - setup computes l->out from l->in and l->opt, registers parameters with jt_params_add
 *     (view names "<layer name>.<param>") and sets l->ws_floats, the workspace it needs for up to
 *     l->max_n samples. It never touches data. Bad settings return JT_EUSAGE with a message.
 *   - forward and backward never allocate; whatever forward saves for backward goes in l->ws.
 *   - backward ADDS into parameter gradients (l->dW[i]) and into ctx->daux, and OVERWRITES dx
 *     (dx may be NULL when nobody needs it). Gradients are zeroed once per step by the model.
 */
#ifndef JTRAIN_LAYER_H
#define JTRAIN_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "jtrain/common.h"
#include "jtrain/params.h"
#include "jtrain/rng.h"

#define JT_SHAPE_MAX_DIMS 4
#define JT_LAYER_MAX_PARAMS 16

typedef struct {
    int ndim;
    size_t d[JT_SHAPE_MAX_DIMS];
} jt_shape;

size_t jt_shape_size(const jt_shape *s);
/* Writes e.g. "(32, 14, 14)" into buf. */
void jt_shape_format(const jt_shape *s, char *buf, size_t len);

/* A layer's settings as written in the config; 0 / "" means "not given". */
typedef struct {
    long units;            /* dense, gru, lstm, attention dims */
    long filters;          /* conv2d, conv1d */
    long kernel;           /* conv2d, conv1d */
    long stride;           /* conv2d, conv1d (default 1), pools (default size) */
    int padding_same;      /* conv2d, conv1d: 0 valid, 1 same */
    long size;             /* maxpool2d, pool1d */
    double rate;           /* dropout */
    long heads;            /* multi-head attention */
    int return_sequences;  /* gru, lstm: 1 whole sequence (n, T, units), 0 last state (n, units) */
    char context[JT_NAME_MAX]; /* cross-attention: the block whose output is attended over */
    /* set by the model, not by the config: */
    long vocab;            /* attn_decoder: output vocabulary size V (the target's `vocab`) */
    long length;           /* attn_decoder: output sequence length L (the target's [N, L]) */
    int fused_relu;        /* conv2d: applies the relu that follows it (src/layers/conv2d.h) */
    long fused_pool;       /* conv2d with fused_relu: the max-pool window (= stride) it also
                            * applies, or 0 */
} jt_layer_opts;

/* The settings a config can give a layer (each kind accepts those its ops->keys lists). One
 * table of them (jt_layer_setting_find) drives both reading them (jt_layer_opts_parse) and
 * writing them back (jt_config_to_yaml), so the two cannot disagree. */
typedef enum {
    JT_SETTING_INT,  /* long in [lo, hi]; 0 means not given (then not written back) */
    JT_SETTING_RATE, /* double in [0, 1), below 1 as a float too; 0 means not given (not written) */
    JT_SETTING_WORD, /* int 0 or 1, written as words[0] or words[1] (always written back) */
    JT_SETTING_NAME, /* char[JT_NAME_MAX], a block name; "" means not given */
} jt_setting_type;

typedef struct {
    const char *key;      /* as in the config, e.g. "units" */
    jt_setting_type type;
    size_t offset;        /* of its field in jt_layer_opts (offsetof) */
    long lo, hi;          /* JT_SETTING_INT: the accepted range */
    const char *words[2]; /* JT_SETTING_WORD: the config's words for 0 and 1 */
    const char *expect;   /* JT_SETTING_RATE, _WORD, _NAME: what a value must be, for messages */
} jt_layer_setting;

/* The setting called key, or NULL (pointer into a static table). */
const jt_layer_setting *jt_layer_setting_find(const char *key);

/* One "key: value" of a layer's settings in the config, with its line for messages. */
typedef struct {
    char key[32];
    char value[256];
    int line;
} jt_layer_kv;

/* Run-time context of one forward/backward pass. */
typedef struct {
    int train;             /* 1 while training (dropout on), 0 at evaluation */
    uint64_t seed;         /* run seed, for per-sample random streams (dropout) */
    uint64_t step;         /* global step, for per-sample random streams */
    const uint64_t *rows;  /* global sample index of each of the n rows (dropout streams) */
    size_t layer_index;    /* index of the layer in the model, for per-layer streams */
    const float *aux;      /* second input (cross-attention context), shape l->aux, or NULL */
    float *daux;           /* its gradient: backward ADDS into it; NULL if not needed */
    const int32_t *tokens; /* attn_decoder: target sequences (n, L), -1 padded (teacher forcing) */
} jt_ctx;

typedef struct jt_layer jt_layer;

typedef struct {
    const char *kind;
    const char *keys[8];   /* settings this kind accepts (NULL-terminated) */
    jt_status (*setup)(jt_layer *l, jt_params *p, char *err, size_t errlen);
    void (*init)(jt_layer *l, jt_rng *rng); /* NULL when the kind has no parameters */
    void (*forward)(jt_layer *l, const float *x, float *y, size_t n, const jt_ctx *ctx);
    void (*backward)(jt_layer *l, const float *x, const float *y, const float *dy, float *dx,
                     size_t n, const jt_ctx *ctx);
} jt_layer_ops;

struct jt_layer {
    const jt_layer_ops *ops;
    char name[JT_VIEW_NAME_MAX]; /* "<block>.<index>.<kind>", unique in the model */
    jt_layer_opts opt;
    jt_shape in, out;
    jt_shape aux;                /* shape of ctx->aux for layers that take a context, else ndim 0 */
    size_t max_n;
    size_t view[JT_LAYER_MAX_PARAMS];
    int n_params;
    float *W[JT_LAYER_MAX_PARAMS], *dW[JT_LAYER_MAX_PARAMS]; /* bound by jt_layer_bind */
    float *ws;                   /* workspace, ws_floats floats, owned by the model */
    size_t ws_floats;
};

/* The kind called name, or NULL. */
const jt_layer_ops *jt_layer_find(const char *kind);
/* NULL-terminated list of all kinds, for --help and summary. */
const jt_layer_ops *const *jt_layer_kinds(void);

/* Parses the config settings of one layer of kind `kind` into opts (zeroed first). An unknown
 * kind, a key the kind does not accept, or a bad value returns JT_EUSAGE and writes a message
 * naming the key into err. */
jt_status jt_layer_opts_parse(const char *kind, const jt_layer_kv *kv, size_t n_kv,
                              jt_layer_opts *opts, char *err, size_t errlen);

/* Fills l (kind, name, opts, in shape, max_n) and calls the kind's setup. */
jt_status jt_layer_setup(jt_layer *l, const char *kind, const char *name,
                         const jt_layer_opts *opts, const jt_shape *in, const jt_shape *aux,
                         size_t max_n, jt_params *p, char *err, size_t errlen);
/* Points l->W / l->dW at the allocated parameter buffers. */
void jt_layer_bind(jt_layer *l, const jt_params *p);

/* Initialisers used by kinds: He-normal (std sqrt(2/fan_in)) and Glorot-uniform. */
void jt_init_he_normal(float *w, size_t n, size_t fan_in, jt_rng *rng);
void jt_init_glorot_uniform(float *w, size_t n, size_t fan_in, size_t fan_out, jt_rng *rng);

#endif
