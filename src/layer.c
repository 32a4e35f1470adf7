/* layer.c - the registry of layer kinds, settings parsing, setup/bind and initialisers.
 *
 * The registry is one static array (below); each kind lives in its own src/layer_*.c.
 * Settings are parsed strictly: only the keys a kind lists in ops->keys, every value checked
 * whole and in range, so a typo in a config is an error that names the key and the line. */
#include "jtrain/layer.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "layers/kinds.h"

static const jt_layer_ops *const g_kinds[] = {
    &jt_layer_dense,
    &jt_layer_conv2d,
    &jt_layer_maxpool2d,
    &jt_layer_flatten,
    &jt_layer_relu,
    &jt_layer_tanh,
    &jt_layer_sigmoid,
    &jt_layer_dropout,
    /* ---- recurrent / attention kinds: add `&jt_layer_<kind>,` here ---- */
    &jt_layer_gru,
    &jt_layer_lstm,
    &jt_layer_conv1d,
    &jt_layer_maxpool1d,
    &jt_layer_avgpool1d,
    &jt_layer_meanpool_time,
    &jt_layer_layernorm,
    &jt_layer_attention_pool,
    &jt_layer_self_attention,
    &jt_layer_cross_attention,
    &jt_layer_attn_decoder,

    /* ---- end of kinds ---- */
    NULL,
};

const jt_layer_ops *jt_layer_find(const char *kind) {
    if (!kind) return NULL;
    for (size_t i = 0; g_kinds[i]; i++)
        if (strcmp(g_kinds[i]->kind, kind) == 0) return g_kinds[i];
    return NULL;
}

const jt_layer_ops *const *jt_layer_kinds(void) { return g_kinds; }

size_t jt_shape_size(const jt_shape *s) {
    size_t n = 1;
    for (int i = 0; i < s->ndim; i++) n = jt_size_mul(n, s->d[i]);
    return n;
}

void jt_shape_format(const jt_shape *s, char *buf, size_t len) {
    if (!buf || len == 0) return;
    size_t used = 0;
    int w = snprintf(buf, len, "(");
    for (int i = 0; i < s->ndim && w >= 0; i++) {
        used += (size_t)w;
        if (used >= len) return;
        w = snprintf(buf + used, len - used, i ? ", %zu" : "%zu", s->d[i]);
    }
    if (w < 0) return;
    used += (size_t)w;
    if (used >= len) return;
    snprintf(buf + used, len - used, ")");
}

/* Appends ", "-separated items to buf (for lists of kinds or keys in messages). */
static void append_list(char *buf, size_t len, const char *item, int first) {
    size_t used = strlen(buf);
    if (used < len) snprintf(buf + used, len - used, "%s%s", first ? "" : ", ", item);
}

static int kind_accepts(const jt_layer_ops *ops, const char *key) {
    for (int i = 0; i < 8 && ops->keys[i]; i++)
        if (strcmp(ops->keys[i], key) == 0) return 1;
    return 0;
}

/* Limits on integer settings: big enough for any model that fits in memory, small enough that
 * products of them cannot overflow size_t on the way to a real size check. */
#define JT_MAX_UNITS (1L << 24)
#define JT_MAX_WINDOW 4096L

#define JT_OPT(field) offsetof(jt_layer_opts, field)

static const jt_layer_setting g_settings[] = {
    {"units", JT_SETTING_INT, JT_OPT(units), 1, JT_MAX_UNITS, {NULL, NULL}, NULL},
    {"filters", JT_SETTING_INT, JT_OPT(filters), 1, JT_MAX_UNITS, {NULL, NULL}, NULL},
    {"kernel", JT_SETTING_INT, JT_OPT(kernel), 1, JT_MAX_WINDOW, {NULL, NULL}, NULL},
    {"stride", JT_SETTING_INT, JT_OPT(stride), 1, JT_MAX_WINDOW, {NULL, NULL}, NULL},
    {"size", JT_SETTING_INT, JT_OPT(size), 1, JT_MAX_WINDOW, {NULL, NULL}, NULL},
    {"heads", JT_SETTING_INT, JT_OPT(heads), 1, JT_MAX_WINDOW, {NULL, NULL}, NULL},
    {"rate", JT_SETTING_RATE, JT_OPT(rate), 0, 0, {NULL, NULL}, "a number in [0, 1)"},
    {"padding", JT_SETTING_WORD, JT_OPT(padding_same), 0, 1, {"valid", "same"},
     "'valid' or 'same'"},
    {"return_sequences", JT_SETTING_WORD, JT_OPT(return_sequences), 0, 1, {"false", "true"},
     "true or false"},
    {"context", JT_SETTING_NAME, JT_OPT(context), 0, 0, {NULL, NULL},
     "a block name (1 to 63 characters)"},
};

const jt_layer_setting *jt_layer_setting_find(const char *key) {
    for (size_t i = 0; key && i < sizeof g_settings / sizeof g_settings[0]; i++)
        if (strcmp(g_settings[i].key, key) == 0) return &g_settings[i];
    return NULL;
}

/* Stores kv's value in the field of o that the table names, or writes a message. */
static jt_status parse_one(const char *kind, const jt_layer_kv *kv, jt_layer_opts *o, char *err,
                           size_t errlen) {
    const char *v = kv->value;
    const jt_layer_setting *s = jt_layer_setting_find(kv->key);
    JT_CHECK(s != NULL, "layer kind %s lists key '%s' that no parser knows", kind, kv->key);
    char *field = (char *)o + s->offset;
    switch (s->type) {
    case JT_SETTING_INT:
        if (jt_parse_long(v, s->lo, s->hi, (long *)field) == 0) return JT_OK;
        snprintf(err, errlen, "layer '%s': setting '%s' must be an integer in [%ld, %ld], got '%s' (line %d)",
                 kind, s->key, s->lo, s->hi, v, kv->line);
        return JT_EUSAGE;
    case JT_SETTING_RATE: {
        double r;
        if (jt_parse_double(v, &r) == 0 && r >= 0.0 && (float)r < 1.0f) { /* < 1 as a float too */
            *(double *)field = r;
            return JT_OK;
        }
        break;
    }
    case JT_SETTING_WORD:
        for (int w = 0; w < 2; w++)
            if (strcmp(v, s->words[w]) == 0) {
                *(int *)field = w;
                return JT_OK;
            }
        break;
    case JT_SETTING_NAME: {
        size_t len = strlen(v);
        if (len > 0 && len < JT_NAME_MAX) {
            memcpy(field, v, len + 1);
            return JT_OK;
        }
        break;
    }
    }
    snprintf(err, errlen, "layer '%s': setting '%s' must be %s, got '%s' (line %d)", kind, s->key,
             s->expect, v, kv->line);
    return JT_EUSAGE;
}

jt_status jt_layer_opts_parse(const char *kind, const jt_layer_kv *kv, size_t n_kv,
                              jt_layer_opts *opts, char *err, size_t errlen) {
    memset(opts, 0, sizeof *opts);
    const jt_layer_ops *ops = jt_layer_find(kind);
    if (!ops) {
        char list[512] = "";
        for (size_t i = 0; g_kinds[i]; i++) append_list(list, sizeof list, g_kinds[i]->kind, i == 0);
        if (n_kv > 0)
            snprintf(err, errlen, "unknown layer kind '%s' (line %d); valid kinds: %s",
                     kind ? kind : "", kv[0].line, list);
        else
            snprintf(err, errlen, "unknown layer kind '%s'; valid kinds: %s", kind ? kind : "", list);
        return JT_EUSAGE;
    }
    for (size_t i = 0; i < n_kv; i++) {
        if (!kind_accepts(ops, kv[i].key)) {
            char list[256] = "";
            for (int j = 0; j < 8 && ops->keys[j]; j++) append_list(list, sizeof list, ops->keys[j], j == 0);
            snprintf(err, errlen, "layer '%s' has no setting '%s' (line %d); it accepts: %s", kind,
                     kv[i].key, kv[i].line, list[0] ? list : "no settings");
            return JT_EUSAGE;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(kv[j].key, kv[i].key) == 0) {
                snprintf(err, errlen, "layer '%s': setting '%s' given twice (lines %d and %d)", kind,
                         kv[i].key, kv[j].line, kv[i].line);
                return JT_EUSAGE;
            }
        }
        jt_status st = parse_one(kind, &kv[i], opts, err, errlen);
        if (st != JT_OK) return st;
    }
    return JT_OK;
}

/* Sizes saturate at SIZE_MAX (jt_size_mul) instead of wrapping around, so a layer whose
 * parameters, output for max_n rows or workspace overflowed is refused here, by name, before
 * the model adds up its memory (jt_model_build). */
static jt_status check_sizes(const jt_layer *l, const jt_params *p, char *err, size_t errlen) {
    const char *what = NULL;
    for (int i = 0; i < l->n_params; i++)
        if (jt_size_mul(p->views[l->view[i]].size, 4 * sizeof(float)) == SIZE_MAX) what = "parameters";
    if (!what && jt_size_mul(p->total, 4 * sizeof(float)) == SIZE_MAX)
        what = "parameters, with those of the layers before it,";
    if (jt_size_mul(jt_size_mul(l->max_n, jt_shape_size(&l->out)), 2 * sizeof(float)) == SIZE_MAX)
        what = "outputs";
    if (jt_size_mul(l->ws_floats, sizeof(float)) == SIZE_MAX) what = "workspace";
    if (what)
        return jt_layer_err(l, err, errlen, "its %s for %zu rows per rank would take more than "
                            "2^64 bytes", what, l->max_n);
    return JT_OK;
}

jt_status jt_layer_setup(jt_layer *l, const char *kind, const char *name,
                         const jt_layer_opts *opts, const jt_shape *in, const jt_shape *aux,
                         size_t max_n, jt_params *p, char *err, size_t errlen) {
    memset(l, 0, sizeof *l);
    l->ops = jt_layer_find(kind);
    if (!l->ops) {
        snprintf(err, errlen, "unknown layer kind '%s'", kind ? kind : "");
        return JT_EUSAGE;
    }
    if (strlen(name) >= sizeof l->name - 8) {
        snprintf(err, errlen, "layer name too long: '%s'", name);
        return JT_EUSAGE;
    }
    snprintf(l->name, sizeof l->name, "%s", name);
    if (opts) l->opt = *opts;
    l->in = *in;
    if (aux) l->aux = *aux;
    l->max_n = max_n;
    JT_CHECK(in->ndim >= 1 && in->ndim <= JT_SHAPE_MAX_DIMS, "layer %s: bad input ndim %d", name,
             in->ndim);
    JT_CHECK(max_n > 0, "layer %s: max_n is 0", name);
    jt_status st = l->ops->setup(l, p, err, errlen);
    return st == JT_OK ? check_sizes(l, p, err, errlen) : st;
}

void jt_layer_bind(jt_layer *l, const jt_params *p) {
    for (int i = 0; i < l->n_params; i++) {
        l->W[i] = jt_params_w(p, l->view[i]);
        l->dW[i] = jt_params_g(p, l->view[i]);
    }
}

void jt_layer_add_param(jt_layer *l, jt_params *p, const char *pname, int ndim,
                        const size_t *shape) {
    JT_CHECK(l->n_params < JT_LAYER_MAX_PARAMS, "layer %s: too many parameters", l->name);
    char full[JT_VIEW_NAME_MAX];
    int w = snprintf(full, sizeof full, "%s.%s", l->name, pname);
    JT_CHECK(w > 0 && (size_t)w < sizeof full, "parameter name too long: %s.%s", l->name, pname);
    l->view[l->n_params++] = jt_params_add(p, full, ndim, shape);
}

jt_status jt_layer_err(const jt_layer *l, char *err, size_t errlen, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "layer '%s' (%s): %s", l->name, l->ops->kind, msg);
    return JT_EUSAGE;
}

void jt_init_he_normal(float *w, size_t n, size_t fan_in, jt_rng *rng) {
    double std = sqrt(2.0 / (double)(fan_in ? fan_in : 1));
    for (size_t i = 0; i < n; i++) w[i] = (float)(std * jt_rng_normal(rng));
}

void jt_init_glorot_uniform(float *w, size_t n, size_t fan_in, size_t fan_out, jt_rng *rng) {
    double limit = sqrt(6.0 / (double)(fan_in + fan_out ? fan_in + fan_out : 1));
    for (size_t i = 0; i < n; i++) w[i] = (float)(limit * (2.0 * jt_rng_uniform(rng) - 1.0));
}
