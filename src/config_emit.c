/* config_emit.c - jt_config_to_yaml: the resolved config (every default filled in) as YAML, with
 * libyaml's emitter so that any string is quoted correctly.
 *
 * Invariant: jt_config_parse reads the text back to an equal jt_config (same strings, same
 * integers, bit-identical doubles): doubles are written with the fewest digits (up to 17, as
 * %.17g) that strtod reads back exactly, whole numbers up to 1e15 in full (600, not 6e+02). Layer settings are written back in config syntax with
 * the kind's own key names: numbers only when set (0 means "not given", the kind's default),
 * padding and return_sequences always, as the word the config accepts. train.schedule and
 * train.balance are always written, with only the keys their name / method allows (any other
 * would be refused on reading back); train.early_stop and checkpoint.best only when set. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "jtrain/config.h"

typedef struct {
    char *buf;
    size_t len, cap;
} jt_outbuf;

typedef struct {
    yaml_emitter_t em;
    int ok;
} jt_emit;

static int out_write(void *data, unsigned char *bytes, size_t size) {
    jt_outbuf *o = data;
    if (o->len + size + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (o->len + size + 1 > cap) cap *= 2;
        char *grown = realloc(o->buf, cap);
        if (!grown) return 0;
        o->buf = grown;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, bytes, size);
    o->len += size;
    o->buf[o->len] = '\0';
    return 1;
}

/* Emits ev (libyaml destroys it either way); `made` is the result of its initialiser. */
static void emit(jt_emit *e, yaml_event_t *ev, int made) {
    if (!made) {
        e->ok = 0;
        return;
    }
    if (!e->ok) {
        yaml_event_delete(ev);
        return;
    }
    if (!yaml_emitter_emit(&e->em, ev)) e->ok = 0;
}

static void scalar_styled(jt_emit *e, const char *s, yaml_scalar_style_t style) {
    yaml_event_t ev;
    int made = yaml_scalar_event_initialize(&ev, NULL, NULL, (const yaml_char_t *)s,
                                            (int)strlen(s), 1, 1, style);
    emit(e, &ev, made);
}

/* A string value: plain when YAML would read it back as the same string (libyaml itself falls
 * back to quotes for text plain style cannot hold), double-quoted when plain would read as
 * null. */
static void scalar_str(jt_emit *e, const char *s) {
    int nullish = !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
                  !strcmp(s, "NULL");
    scalar_styled(e, s, nullish ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_PLAIN_SCALAR_STYLE);
}

static void map_start(jt_emit *e, int flow) {
    yaml_event_t ev;
    int made = yaml_mapping_start_event_initialize(
        &ev, NULL, NULL, 1, flow ? YAML_FLOW_MAPPING_STYLE : YAML_BLOCK_MAPPING_STYLE);
    emit(e, &ev, made);
}

static void map_end(jt_emit *e) {
    yaml_event_t ev;
    emit(e, &ev, yaml_mapping_end_event_initialize(&ev));
}

static void seq_start(jt_emit *e) {
    yaml_event_t ev;
    emit(e, &ev, yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE));
}

static void seq_end(jt_emit *e) {
    yaml_event_t ev;
    emit(e, &ev, yaml_sequence_end_event_initialize(&ev));
}

static void key(jt_emit *e, const char *k) { scalar_styled(e, k, YAML_PLAIN_SCALAR_STYLE); }

static void kv_str(jt_emit *e, const char *k, const char *v) {
    key(e, k);
    scalar_str(e, v);
}

static void kv_long(jt_emit *e, const char *k, long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", v);
    key(e, k);
    scalar_styled(e, buf, YAML_PLAIN_SCALAR_STYLE);
}

/* The shortest %.Ng (N <= 17) that strtod reads back to exactly x. */
static void kv_double(jt_emit *e, const char *k, double x) {
    char buf[40];
    if (x >= -1e15 && x <= 1e15 && x == (double)(long long)x) { /* 600, not 6e+02 */
        snprintf(buf, sizeof buf, "%.0f", x);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, x);
            if (strtod(buf, NULL) == x) break;
        }
    }
    key(e, k);
    scalar_styled(e, buf, YAML_PLAIN_SCALAR_STYLE);
}

/* Number of settings of l that are written (see the file comment), from the table of settings
 * (jt_layer_setting_find) that parsing uses too. */
static int emit_settings(jt_emit *e, const jt_layer_cfg *l, int count_only) {
    const jt_layer_ops *ops = jt_layer_find(l->kind);
    JT_CHECK(ops != NULL, "config holds unknown layer kind '%s'", l->kind);
    int n = 0;
    for (int i = 0; i < 8 && ops->keys[i]; i++) {
        const jt_layer_setting *s = jt_layer_setting_find(ops->keys[i]);
        JT_CHECK(s != NULL, "layer kind %s has setting '%s' that config_emit.c cannot write",
                 l->kind, ops->keys[i]);
        const char *field = (const char *)&l->opts + s->offset;
        switch (s->type) {
        case JT_SETTING_INT:
            if (*(const long *)field == 0) continue;
            if (!count_only) kv_long(e, s->key, *(const long *)field);
            break;
        case JT_SETTING_RATE:
            if (*(const double *)field == 0) continue;
            if (!count_only) kv_double(e, s->key, *(const double *)field);
            break;
        case JT_SETTING_WORD:
            if (!count_only) kv_str(e, s->key, s->words[*(const int *)field ? 1 : 0]);
            break;
        case JT_SETTING_NAME:
            if (!field[0]) continue;
            if (!count_only) kv_str(e, s->key, field);
            break;
        }
        n++;
    }
    return n;
}

static void emit_layers(jt_emit *e, const jt_layer_cfg *ls, size_t n) {
    key(e, "layers");
    seq_start(e);
    for (size_t i = 0; i < n; i++) {
        if (emit_settings(e, &ls[i], 1) == 0) {
            scalar_str(e, ls[i].kind);
            continue;
        }
        map_start(e, 0);
        key(e, ls[i].kind);
        map_start(e, 1);
        emit_settings(e, &ls[i], 0);
        map_end(e);
        map_end(e);
    }
    seq_end(e);
}

/* The metric and mode keys of checkpoint.best / train.early_stop (mode always). */
static void emit_metric(jt_emit *e, const jt_metric_cfg *m) {
    kv_str(e, "metric", m->text);
    kv_str(e, "mode", m->maximize ? "max" : "min");
}

static void emit_config(jt_emit *e, const jt_config *c) {
    yaml_event_t ev;
    emit(e, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
    emit(e, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
    map_start(e, 0);

    key(e, "data");
    map_start(e, 0);
    kv_str(e, "file", c->data.file);
    kv_str(e, "train", c->data.train);
    kv_str(e, "eval", c->data.eval);
    map_end(e);

    key(e, "model");
    map_start(e, 0);
    key(e, "blocks");
    map_start(e, 0);
    for (size_t i = 0; i < c->n_blocks; i++) {
        key(e, c->blocks[i].name);
        map_start(e, 0);
        kv_str(e, "input", c->blocks[i].input);
        emit_layers(e, c->blocks[i].layers, c->blocks[i].n_layers);
        map_end(e);
    }
    map_end(e);
    key(e, "heads");
    map_start(e, 0);
    for (size_t i = 0; i < c->n_heads; i++) {
        const jt_head_cfg *h = &c->heads[i];
        key(e, h->name);
        map_start(e, 0);
        kv_str(e, "input", h->input);
        kv_str(e, "target", h->target);
        kv_double(e, "weight", h->weight);
        if (h->n_layers) emit_layers(e, h->layers, h->n_layers);
        map_end(e);
    }
    map_end(e);
    map_end(e);

    key(e, "train");
    map_start(e, 0);
    if (c->train.steps > 0)
        kv_long(e, "steps", c->train.steps);
    else
        kv_long(e, "epochs", c->train.epochs);
    kv_long(e, "batch_size", c->train.batch_size);
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, c->train.seed);
    key(e, "seed");
    scalar_styled(e, seed, YAML_PLAIN_SCALAR_STYLE);
    key(e, "optimizer");
    map_start(e, 1);
    kv_str(e, "name", "adam");
    kv_double(e, "lr", c->train.adam.lr);
    kv_double(e, "beta1", c->train.adam.beta1);
    kv_double(e, "beta2", c->train.adam.beta2);
    kv_double(e, "eps", c->train.adam.eps);
    kv_double(e, "weight_decay", c->train.adam.weight_decay);
    map_end(e);
    kv_double(e, "clip_norm", c->train.clip_norm);
    kv_long(e, "eval_every", c->train.eval_every);
    kv_long(e, "threads", c->train.threads);
    kv_double(e, "watchdog_s", c->train.watchdog_s);
    kv_long(e, "accumulate", c->train.accumulate);
    /* schedule and balance: always, with only the keys their name / method allows */
    static const char *const sched[] = {"constant", "cosine", "step", "linear"};
    static const char *const balance[] = {"fixed", "uncertainty", "dwa", "gradnorm"};
    const jt_schedule_cfg *s = &c->train.schedule;
    key(e, "schedule");
    map_start(e, 1);
    kv_str(e, "name", sched[s->name]);
    kv_long(e, "warmup_steps", s->warmup_steps);
    if (s->name == JT_SCHED_COSINE || s->name == JT_SCHED_LINEAR) kv_double(e, "min_lr", s->min_lr);
    if (s->name == JT_SCHED_STEP) {
        kv_long(e, "step_size", s->step_size);
        kv_double(e, "gamma", s->gamma);
    }
    map_end(e);
    key(e, "balance");
    map_start(e, 1);
    kv_str(e, "method", balance[c->train.balance.method]);
    if (c->train.balance.method == JT_BALANCE_DWA) {
        kv_double(e, "temperature", c->train.balance.temperature);
        kv_long(e, "window", c->train.balance.window);
    }
    if (c->train.balance.method == JT_BALANCE_GRADNORM)
        kv_double(e, "alpha", c->train.balance.alpha);
    map_end(e);
    key(e, "pcgrad");
    scalar_styled(e, c->train.pcgrad ? "true" : "false", YAML_PLAIN_SCALAR_STYLE);
    if (c->train.early_stop.metric.kind != JT_METRIC_NONE) { /* off: no key (metric is required) */
        key(e, "early_stop");
        map_start(e, 1);
        emit_metric(e, &c->train.early_stop.metric);
        kv_long(e, "patience", c->train.early_stop.patience);
        map_end(e);
    }
    map_end(e);

    key(e, "checkpoint");
    map_start(e, 0);
    kv_str(e, "dir", c->checkpoint.dir);
    kv_long(e, "every_steps", c->checkpoint.every_steps);
    kv_long(e, "keep", c->checkpoint.keep);
    if (c->checkpoint.best.kind != JT_METRIC_NONE) { /* off: no key (metric is required) */
        key(e, "best");
        map_start(e, 1);
        emit_metric(e, &c->checkpoint.best);
        map_end(e);
    }
    map_end(e);

    key(e, "log");
    map_start(e, 0);
    kv_long(e, "every_steps", c->log.every_steps);
    kv_str(e, "metrics", c->log.metrics);
    if (c->log.trace[0]) kv_str(e, "trace", c->log.trace); /* off: no key (it cannot be "") */
    map_end(e);

    map_end(e);
    emit(e, &ev, yaml_document_end_event_initialize(&ev, 1));
    emit(e, &ev, yaml_stream_end_event_initialize(&ev));
}

char *jt_config_to_yaml(const jt_config *c) {
    jt_outbuf o = {0};
    jt_emit e;
    const char *header = "# jtrain " JT_VERSION " resolved config (every default filled in)\n";
    if (!c || !out_write(&o, (unsigned char *)header, strlen(header))) goto fail;
    if (!yaml_emitter_initialize(&e.em)) goto fail;
    e.ok = 1;
    yaml_emitter_set_output(&e.em, out_write, &o);
    yaml_emitter_set_unicode(&e.em, 1);
    yaml_emitter_set_width(&e.em, -1);
    yaml_emitter_set_indent(&e.em, 2);
    emit_config(&e, c);
    if (e.ok && !yaml_emitter_flush(&e.em)) e.ok = 0;
    yaml_emitter_delete(&e.em);
    if (!e.ok) goto fail;
    return o.buf;
fail:
    free(o.buf);
    return NULL;
}
