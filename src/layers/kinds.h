/* layers/kinds.h - private to src/: the ops table of every layer kind, and small helpers the
 * kinds share (parameter registration, error messages, activation sizes).
 *
 * Adding a kind: define `const jt_layer_ops jt_layer_<kind>` (non-static) in its own
 * src/layers/<file>.c, declare it below and list it in the registry array in src/layer.c. */
#ifndef JTRAIN_LAYER_KINDS_H
#define JTRAIN_LAYER_KINDS_H

#include <stdarg.h>

#include "jtrain/layer.h"

/* ---- kinds (src/layers/dense.c, conv2d.c, pool.c, shape.c, act.c) ---- */
extern const jt_layer_ops jt_layer_dense;
extern const jt_layer_ops jt_layer_conv2d;
extern const jt_layer_ops jt_layer_maxpool2d;
extern const jt_layer_ops jt_layer_flatten;
extern const jt_layer_ops jt_layer_relu;
extern const jt_layer_ops jt_layer_tanh;
extern const jt_layer_ops jt_layer_sigmoid;
extern const jt_layer_ops jt_layer_dropout;
/* ---- recurrent / attention kinds: add their `extern const jt_layer_ops jt_layer_<kind>;` here ---- */
/* src/layers/gru.c, lstm.c, conv1d.c, norm.c, attention.c */
extern const jt_layer_ops jt_layer_gru;
extern const jt_layer_ops jt_layer_lstm;
extern const jt_layer_ops jt_layer_conv1d;
extern const jt_layer_ops jt_layer_maxpool1d;
extern const jt_layer_ops jt_layer_avgpool1d;
extern const jt_layer_ops jt_layer_meanpool_time;
extern const jt_layer_ops jt_layer_layernorm;
extern const jt_layer_ops jt_layer_attention_pool;
extern const jt_layer_ops jt_layer_self_attention;
extern const jt_layer_ops jt_layer_cross_attention;
extern const jt_layer_ops jt_layer_attn_decoder; /* src/layers/decoder.c */

/* ---- end of kinds ---- */

/* Registers parameter "<l->name>.<pname>" with the given shape and records its view in
 * l->view[l->n_params++]. Fatal if the layer already has JT_LAYER_MAX_PARAMS parameters. */
void jt_layer_add_param(jt_layer *l, jt_params *p, const char *pname, int ndim,
                        const size_t *shape);

/* Writes "layer '<name>' (<kind>): <message>" into err and returns JT_EUSAGE. */
jt_status jt_layer_err(const jt_layer *l, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
