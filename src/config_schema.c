/* config_schema.c - the config schema of docs/config.md: checks the YAML document section
 * by section and fills a jt_config, defaults first, then the values given.
 *
 * Strict by design: every mapping's keys are checked against the section's list (unknown and
 * duplicate keys are errors), numbers must be plain scalars that parse whole and lie in range
 * (a quoted "1e-3" is a string, not a number), and a null (`key:` with nothing) is never a
 * value. Layer settings are checked by the layer module (jt_layer_opts_parse), which knows
 * each kind's keys; this file only locates its verdict (line and dotted key). */
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_doc.h"
#include "jtrain/batch.h"
#include "jtrain/train.h"

/* What the limits of config.h stand for. */
_Static_assert(JT_CONFIG_MAX_HEADS * JT_HEAD_EVAL_FIELDS + 1 <= JT_PARAMS_CTRL,
               "the trainer cannot carry the metrics of JT_CONFIG_MAX_HEADS heads");
_Static_assert(JT_CONFIG_MAX_ARRAYS <= JT_MODEL_MAX_ARRAYS &&
               JT_CONFIG_MAX_ARRAYS <= JT_BATCH_MAX_ARRAYS, "more arrays than a model or batch holds");

#define JT_KEY_MAX 384 /* a dotted key in a message */

typedef enum { JT_RANGE_POS, JT_RANGE_NONNEG, JT_RANGE_UNIT, JT_RANGE_UNIT_POS } jt_range;

static const char *const k_root[] = {"data", "model", "train", "checkpoint", "log", NULL};
static const char *const k_data[] = {"file", "train", "eval", NULL};
static const char *const k_model[] = {"blocks", "heads", NULL};
static const char *const k_block[] = {"input", "layers", NULL};
static const char *const k_head[] = {"input", "target", "weight", "layers", NULL};
static const char *const k_train[] = {"epochs",     "steps",      "batch_size", "seed",
                                      "optimizer",  "clip_norm",  "eval_every", "threads",
                                      "watchdog_s", "accumulate", "schedule",   "balance",
                                      "pcgrad",     "early_stop", NULL};
static const char *const k_optim[] = {"name", "lr", "beta1", "beta2", "eps", "weight_decay", NULL};
static const char *const k_sched[] = {"name", "warmup_steps", "min_lr", "step_size", "gamma", NULL};
static const char *const k_balance[] = {"method", "temperature", "window", "alpha", NULL};
static const char *const k_early[] = {"metric", "mode", "patience", NULL};
static const char *const k_ckpt[] = {"dir", "every_steps", "keep", "best", NULL};
static const char *const k_best[] = {"metric", "mode", NULL};
/* The words of train.schedule.name and train.balance.method, in enum order. */
static const char *const w_sched[] = {"constant", "cosine", "step", "linear", NULL};
static const char *const w_balance[] = {"fixed", "uncertainty", "dwa", "gradnorm", NULL};
static const char *const w_mode[] = {"max", "min", NULL};
static const char *const k_log[] = {"every_steps", "metrics", "trace", NULL};

/* The 1-based index of node n in d->doc (nodes live in one array). */
static int jt_cfg_node_id(const jt_cfg_doc *d, const yaml_node_t *n) {
    return (int)(n - d->doc.nodes.start) + 1;
}

/* The 1-based line of node n in the file, or 0 for a node made by --set. */
static int jt_cfg_line(const jt_cfg_doc *d, const yaml_node_t *n) {
    if (d->first_set_node > 0 && jt_cfg_node_id(d, n) >= d->first_set_node) return 0;
    return (int)n->start_mark.line + 1;
}

/* Writes "<source>:<line>: <key>: <message>" into d->err (line from node n, "--set" for an
 * override's node, omitted when n is NULL) and returns JT_EUSAGE. */
static jt_status jt_cfg_fail(const jt_cfg_doc *d, const yaml_node_t *n, const char *key,
                             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static jt_status jt_cfg_fail(const jt_cfg_doc *d, const yaml_node_t *n, const char *key,
                             const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = n ? jt_cfg_line(d, n) : -1;
    if (line < 0)
        snprintf(d->err, d->errlen, "%s: %s: %s", d->source, key, msg);
    else if (line == 0)
        snprintf(d->err, d->errlen, "%s:--set: %s: %s", d->source, key, msg);
    else
        snprintf(d->err, d->errlen, "%s:%d: %s: %s", d->source, line, key, msg);
    return JT_EUSAGE;
}

static yaml_node_t *node_at(jt_cfg_doc *d, int id) { return yaml_document_get_node(&d->doc, id); }

static const char *text(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static int is_plain(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* YAML's null: an empty plain scalar, ~, or the word null. */
static int is_null(const yaml_node_t *n) {
    if (!is_plain(n)) return 0;
    const char *s = text(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* out = "path.key" (or "key" at the top level); a key too long for messages ends in "...". */
static void join(char *out, const char *path, const char *key) {
    int w = path && *path ? snprintf(out, JT_KEY_MAX, "%s.%s", path, key)
                          : snprintf(out, JT_KEY_MAX, "%s", key);
    if (w >= JT_KEY_MAX) memcpy(out + JT_KEY_MAX - 4, "...", 4);
}

/* "expected <what>, found <a description of n>" at n. */
static jt_status expected(jt_cfg_doc *d, const yaml_node_t *n, const char *key, const char *what) {
    const char *kind = n->type == YAML_MAPPING_NODE ? "a mapping"
                       : n->type == YAML_SEQUENCE_NODE ? "a list"
                       : is_null(n)                   ? "nothing"
                                                      : NULL;
    if (kind) return jt_cfg_fail(d, n, key, "expected %s, found %s", what, kind);
    return jt_cfg_fail(d, n, key, "expected %s, found %s'%.80s'", what,
                       is_plain(n) ? "" : "the quoted string ", text(n));
}

static int in_list(const char *const *list, const char *s) {
    for (size_t i = 0; list[i]; i++)
        if (!strcmp(list[i], s)) return 1;
    return 0;
}

/* A key of a mapping, for sorting: its text and its pair's index. */
typedef struct {
    const char *s;
    size_t i;
} key_ref;

static int key_ref_cmp(const void *a, const void *b) {
    const key_ref *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* For each pair i of mapping n, the index of the first pair whose key equals pair i's (i
 * itself for a key seen first); by sorting the keys, so any mapping takes O(n log n), where
 * comparing each key with all earlier ones took minutes for a mapping of 300k keys. Caller
 * frees. */
static size_t *first_equal_keys(jt_cfg_doc *d, const yaml_node_t *n) {
    size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start), m = 0;
    size_t *first = jt_xcalloc(cnt, sizeof *first);
    key_ref *refs = jt_xcalloc(cnt, sizeof *refs);
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *k = node_at(d, n->data.mapping.pairs.start[i].key);
        first[i] = i;
        if (k->type == YAML_SCALAR_NODE) refs[m++] = (key_ref){text(k), i};
    }
    qsort(refs, m, sizeof *refs, key_ref_cmp);
    for (size_t j = 1; j < m; j++)
        if (strcmp(refs[j].s, refs[j - 1].s) == 0) first[refs[j].i] = first[refs[j - 1].i];
    free(refs);
    return first;
}

/* Checks that n is a mapping (a null counts as an empty one) whose keys are distinct, non-null
 * scalars and, when `allowed` is not NULL, all in it. Keys are checked in order: the message is
 * about the first key that is wrong. */
static jt_status check_map(jt_cfg_doc *d, yaml_node_t *n, const char *path,
                           const char *const *allowed) {
    if (is_null(n)) return JT_OK;
    if (n->type != YAML_MAPPING_NODE) return expected(d, n, path, "a mapping");
    size_t *first = first_equal_keys(d, n);
    jt_status st = JT_OK;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(d, p->key);
        if (k->type != YAML_SCALAR_NODE || is_null(k)) {
            st = expected(d, k, path, "a key");
            break;
        }
        char full[JT_KEY_MAX];
        join(full, path, text(k));
        if (strlen(text(k)) != k->data.scalar.length) {
            st = jt_cfg_fail(d, k, full, "key contains a NUL character");
            break;
        }
        size_t f = first[p - n->data.mapping.pairs.start];
        if (f != (size_t)(p - n->data.mapping.pairs.start)) {
            int line = jt_cfg_line(d, node_at(d, n->data.mapping.pairs.start[f].key));
            if (line > 0) st = jt_cfg_fail(d, k, full, "duplicate key (first given on line %d)", line);
            else st = jt_cfg_fail(d, k, full, "duplicate key");
            break;
        }
        if (allowed && !in_list(allowed, text(k))) {
            char list[256] = "";
            for (size_t i = 0; allowed[i]; i++) {
                size_t used = strlen(list);
                snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", allowed[i]);
            }
            st = jt_cfg_fail(d, k, full, "unknown key; expected one of: %s", list);
            break;
        }
    }
    free(first);
    return st;
}

/* The pair of `key` in mapping n, or NULL (also when n is a null). */
static yaml_node_pair_t *get_pair(jt_cfg_doc *d, yaml_node_t *n, const char *key) {
    if (!n || n->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(d, p->key);
        if (k->type == YAML_SCALAR_NODE && !strcmp(text(k), key)) return p;
    }
    return NULL;
}

/* The value of `key` in mapping n, or NULL. */
static yaml_node_t *get(jt_cfg_doc *d, yaml_node_t *n, const char *key) {
    yaml_node_pair_t *p = get_pair(d, n, key);
    return p ? node_at(d, p->value) : NULL;
}

/* The key node of `key` in mapping n (where a missing key below it is reported), or NULL. */
static yaml_node_t *get_key(jt_cfg_doc *d, yaml_node_t *n, const char *key) {
    yaml_node_pair_t *p = get_pair(d, n, key);
    return p ? node_at(d, p->key) : NULL;
}

/* "<path>.<key>: required key is missing", at `at` (the key of the mapping that lacks it). */
static jt_status missing(jt_cfg_doc *d, yaml_node_t *at, const char *path, const char *key) {
    char full[JT_KEY_MAX];
    join(full, path, key);
    return jt_cfg_fail(d, at, full, "required key is missing");
}

/* Reads map.key (if given) as a string of 1..cap-1 characters into out. */
static jt_status get_string(jt_cfg_doc *d, yaml_node_t *map, const char *path, const char *key,
                            char *out, size_t cap) {
    yaml_node_t *v = get(d, map, key);
    if (!v) return JT_OK;
    char full[JT_KEY_MAX], what[64];
    join(full, path, key);
    snprintf(what, sizeof what, "a string of 1 to %zu characters", cap - 1);
    if (v->type != YAML_SCALAR_NODE || is_null(v)) return expected(d, v, full, what);
    size_t len = strlen(text(v));
    if (len != v->data.scalar.length) return jt_cfg_fail(d, v, full, "contains a NUL character");
    if (len == 0 || len >= cap) return expected(d, v, full, what);
    memcpy(out, text(v), len + 1);
    return JT_OK;
}

/* Reads map.key (if given) as an integer in [lo, hi]. */
static jt_status get_long(jt_cfg_doc *d, yaml_node_t *map, const char *path, const char *key,
                          long lo, long hi, long *out) {
    yaml_node_t *v = get(d, map, key);
    if (!v) return JT_OK;
    char full[JT_KEY_MAX], what[80];
    join(full, path, key);
    if (hi == LONG_MAX)
        snprintf(what, sizeof what, "an integer >= %ld", lo);
    else
        snprintf(what, sizeof what, "an integer in [%ld, %ld]", lo, hi);
    if (!is_plain(v) || is_null(v) || jt_parse_long(text(v), lo, hi, out) != 0)
        return expected(d, v, full, what);
    return JT_OK;
}

/* Reads map.key (if given) as a number in the range r that is also finite and in the range as a
 * float, since jtrain computes in float32: 1e300 would become inf there, 1e-50 zero and
 * 0.99999999999 one. */
static jt_status get_double(jt_cfg_doc *d, yaml_node_t *map, const char *path, const char *key,
                            jt_range r, double *out) {
    yaml_node_t *v = get(d, map, key);
    if (!v) return JT_OK;
    char full[JT_KEY_MAX];
    join(full, path, key);
    const char *what = r == JT_RANGE_POS      ? "a number > 0"
                       : r == JT_RANGE_NONNEG ? "a number >= 0"
                       : r == JT_RANGE_UNIT   ? "a number in [0, 1)"
                                              : "a number in (0, 1]";
    double x;
    if (!is_plain(v) || is_null(v) || jt_parse_double(text(v), &x) != 0)
        return expected(d, v, full, what);
    int ok = r == JT_RANGE_POS      ? x > 0
             : r == JT_RANGE_NONNEG ? x >= 0
             : r == JT_RANGE_UNIT   ? (x >= 0 && x < 1)
                                    : (x > 0 && x <= 1);
    if (!ok) return expected(d, v, full, what);
    float f = (float)x;
    ok = r == JT_RANGE_POS      ? f > 0 && f <= FLT_MAX
         : r == JT_RANGE_NONNEG ? f <= FLT_MAX
         : r == JT_RANGE_UNIT   ? f < 1
                                : f > 0;
    if (!ok)
        return expected(d, v, full,
                        r == JT_RANGE_POS      ? "a number > 0 that a float holds (1.4e-45 to 3.4e+38)"
                        : r == JT_RANGE_NONNEG ? "a number >= 0 that a float holds (at most 3.4e+38)"
                        : r == JT_RANGE_UNIT   ? "a number in [0, 1) that stays below 1 as a float "
                                                 "(at most 0.99999994)"
                                               : "a number in (0, 1] that a float holds (at least "
                                                 "1.4e-45)");
    *out = x;
    return JT_OK;
}

/* Reads map.key (if given) as an unsigned 64-bit integer (decimal digits only). */
static jt_status get_u64(jt_cfg_doc *d, yaml_node_t *map, const char *path, const char *key,
                         uint64_t *out) {
    yaml_node_t *v = get(d, map, key);
    if (!v) return JT_OK;
    char full[JT_KEY_MAX];
    join(full, path, key);
    const char *what = "an integer in [0, 18446744073709551615]";
    if (!is_plain(v) || !isdigit((unsigned char)text(v)[0])) return expected(d, v, full, what);
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(text(v), &end, 10);
    if (errno || *end) return expected(d, v, full, what);
    *out = (uint64_t)x;
    return JT_OK;
}

/* Reads map.key (if given) as one of the words of the NULL-terminated list; *out is its index. */
static jt_status get_word(jt_cfg_doc *d, yaml_node_t *map, const char *path, const char *key,
                          const char *const *words, int *out) {
    yaml_node_t *v = get(d, map, key);
    if (!v) return JT_OK;
    char full[JT_KEY_MAX], what[128] = "one of ";
    join(full, path, key);
    for (size_t i = 0; words[i]; i++) {
        size_t used = strlen(what);
        snprintf(what + used, sizeof what - used, "%s%s", i ? ", " : "", words[i]);
    }
    if (v->type == YAML_SCALAR_NODE && !is_null(v) && strlen(text(v)) == v->data.scalar.length)
        for (int i = 0; words[i]; i++)
            if (!strcmp(text(v), words[i])) {
                *out = i;
                return JT_OK;
            }
    return expected(d, v, full, what);
}

/* Reads map.key (if given) as a YAML boolean: the plain words true or false, nothing else (no
 * yes/no/on/off, no quoted "true"), as the layers' true/false settings. */
static jt_status get_bool(jt_cfg_doc *d, yaml_node_t *map, const char *path, const char *key,
                          int *out) {
    yaml_node_t *v = get(d, map, key);
    if (!v) return JT_OK;
    char full[JT_KEY_MAX];
    join(full, path, key);
    if (is_plain(v) && !strcmp(text(v), "true")) *out = 1;
    else if (is_plain(v) && !strcmp(text(v), "false")) *out = 0;
    else return expected(d, v, full, "true or false");
    return JT_OK;
}

/* "<path>.<key>: only for <what> (<actual>)" at the key, when mapping map has it. */
static jt_status only_for(jt_cfg_doc *d, yaml_node_t *map, const char *path, const char *key,
                          const char *what, const char *actual) {
    yaml_node_t *k = get_key(d, map, key);
    if (!k) return JT_OK;
    char full[JT_KEY_MAX];
    join(full, path, key);
    return jt_cfg_fail(d, k, full, "only for %s (%s)", what, actual);
}

/* Block and head names: [A-Za-z0-9_-]+, shorter than JT_NAME_MAX. */
static jt_status check_name(jt_cfg_doc *d, const yaml_node_t *k, const char *full) {
    const char *s = text(k);
    size_t len = strlen(s);
    int ok = len > 0 && len < JT_NAME_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-';
    if (!ok)
        return jt_cfg_fail(d, k, full, "bad name '%.80s': expected 1 to %d of A-Z a-z 0-9 _ -", s,
                           JT_NAME_MAX - 1);
    return JT_OK;
}

/* Removes the " (line N)" / " (lines N and M)" notes of the layer module's messages: the config
 * message already names the line (and for --set there is none). */
static void strip_line_notes(char *msg) {
    char *p;
    while ((p = strstr(msg, " (line")) != NULL) {
        char *close = strchr(p, ')');
        if (!close) return;
        memmove(p, close + 1, strlen(close + 1) + 1);
    }
}

/* One item of a layers list: "relu" or {conv2d: {filters: 32, kernel: 3}}. */
static jt_status parse_layer(jt_cfg_doc *d, yaml_node_t *item, const char *lpath, jt_layer_cfg *l) {
    yaml_node_t *kn = item, *sn = NULL;
    const char *what = "a layer: a kind (e.g. relu) or a one-key mapping {kind: {settings}}";
    if (item->type == YAML_MAPPING_NODE &&
        item->data.mapping.pairs.top - item->data.mapping.pairs.start == 1) {
        kn = node_at(d, item->data.mapping.pairs.start->key);
        sn = node_at(d, item->data.mapping.pairs.start->value);
    }
    if (kn->type != YAML_SCALAR_NODE || is_null(kn)) return expected(d, kn, lpath, what);

    char kpath[JT_KEY_MAX], msg[512];
    join(kpath, lpath, text(kn));
    l->line = jt_cfg_line(d, kn);
    if (jt_layer_opts_parse(text(kn), NULL, 0, &l->opts, msg, sizeof msg) != JT_OK) {
        strip_line_notes(msg);
        return jt_cfg_fail(d, kn, kpath, "%s", msg);
    }
    snprintf(l->kind, sizeof l->kind, "%s", text(kn)); /* a known kind, so it fits */
    if (!sn || is_null(sn)) return JT_OK;
    if (sn->type != YAML_MAPPING_NODE)
        return expected(d, sn, kpath, "a mapping of the layer's settings, e.g. {units: 128}");
    jt_status st = check_map(d, sn, kpath, NULL);
    if (st != JT_OK) return st;

    size_t n = (size_t)(sn->data.mapping.pairs.top - sn->data.mapping.pairs.start);
    jt_layer_kv *kv = jt_xcalloc(n, sizeof *kv);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *k = node_at(d, sn->data.mapping.pairs.start[i].key);
        yaml_node_t *v = node_at(d, sn->data.mapping.pairs.start[i].value);
        char full[JT_KEY_MAX];
        join(full, kpath, text(k));
        if (strlen(text(k)) >= sizeof kv[i].key) {
            st = jt_cfg_fail(d, k, full, "layer '%s' has no setting '%.80s'", l->kind, text(k));
            goto cleanup;
        }
        if (v->type != YAML_SCALAR_NODE || is_null(v) || strlen(text(v)) >= sizeof kv[i].value) {
            st = expected(d, v, full, "a single value (a number, a word or true/false)");
            goto cleanup;
        }
        snprintf(kv[i].key, sizeof kv[i].key, "%s", text(k));
        snprintf(kv[i].value, sizeof kv[i].value, "%s", text(v));
        kv[i].line = jt_cfg_line(d, k);
    }
    st = jt_layer_opts_parse(l->kind, kv, n, &l->opts, msg, sizeof msg);
    if (st != JT_OK) {
        /* find the setting to blame, for its line and key */
        const yaml_node_t *at = sn;
        char full[JT_KEY_MAX];
        snprintf(full, sizeof full, "%s", kpath);
        for (size_t i = 0; i < n; i++) {
            jt_layer_opts tmp;
            char one[512];
            if (jt_layer_opts_parse(l->kind, &kv[i], 1, &tmp, one, sizeof one) != JT_OK) {
                at = node_at(d, sn->data.mapping.pairs.start[i].key);
                join(full, kpath, kv[i].key);
                snprintf(msg, sizeof msg, "%s", one);
                break;
            }
        }
        strip_line_notes(msg);
        st = jt_cfg_fail(d, at, full, "%s", msg);
    }
cleanup:
    free(kv);
    return st;
}

/* A layers list (a null is an empty list) into *out / *n_out, which the config then owns; the
 * model's layers so far (d->n_layers) stay within JT_CONFIG_MAX_LAYERS. */
static jt_status parse_layers(jt_cfg_doc *d, yaml_node_t *seq, const char *path,
                              jt_layer_cfg **out, size_t *n_out) {
    if (is_null(seq)) return JT_OK;
    if (seq->type != YAML_SEQUENCE_NODE) return expected(d, seq, path, "a list of layers");
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n == 0) return JT_OK;
    d->n_layers += n;
    if (d->n_layers > JT_CONFIG_MAX_LAYERS)
        return jt_cfg_fail(d, seq, path, "the model has more than %zu layers in its blocks and "
                           "heads (the limit)", (size_t)JT_CONFIG_MAX_LAYERS);
    *out = jt_xcalloc(n, sizeof **out);
    *n_out = n;
    for (size_t i = 0; i < n; i++) {
        char lpath[JT_KEY_MAX];
        snprintf(lpath, sizeof lpath, "%s[%zu]", path, i);
        jt_status st = parse_layer(d, node_at(d, seq->data.sequence.items.start[i]), lpath, &(*out)[i]);
        if (st != JT_OK) return st;
    }
    return JT_OK;
}

static jt_status parse_data(jt_config *c, jt_cfg_doc *d, yaml_node_t *root) {
    yaml_node_t *s = get(d, root, "data");
    if (!s) return missing(d, root, "data", "file");
    jt_status st = check_map(d, s, "data", k_data);
    if (st == JT_OK && !get(d, s, "file")) st = missing(d, get_key(d, root, "data"), "data", "file");
    if (st == JT_OK) st = get_string(d, s, "data", "file", c->data.file, sizeof c->data.file);
    if (st == JT_OK) st = get_string(d, s, "data", "train", c->data.train, sizeof c->data.train);
    if (st == JT_OK) st = get_string(d, s, "data", "eval", c->data.eval, sizeof c->data.eval);
    return st;
}

/* The named mapping model.<what> (blocks or heads): non-empty, within its limit, names valid
 * and distinct. */
static jt_status named_map(jt_cfg_doc *d, yaml_node_t *model, yaml_node_t *model_key,
                           const char *what, yaml_node_t **out, size_t *n) {
    char path[32];
    snprintf(path, sizeof path, "model.%s", what);
    yaml_node_t *m = get(d, model, what);
    if (!m) return missing(d, model_key, "model", what);
    jt_status st = check_map(d, m, path, NULL);
    if (st != JT_OK) return st;
    if (is_null(m) || m->data.mapping.pairs.top == m->data.mapping.pairs.start)
        return jt_cfg_fail(d, m, path, "expected at least one %s", what[0] == 'b' ? "block" : "head");
    *n = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
    size_t limit = what[0] == 'b' ? JT_CONFIG_MAX_BLOCKS : JT_CONFIG_MAX_HEADS;
    if (*n > limit)
        return jt_cfg_fail(d, m, path, "%zu %s, more than the limit of %zu", *n, what, limit);
    for (size_t i = 0; i < *n; i++) {
        yaml_node_t *k = node_at(d, m->data.mapping.pairs.start[i].key);
        char full[JT_KEY_MAX];
        join(full, path, text(k));
        st = check_name(d, k, full);
        if (st != JT_OK) return st;
    }
    *out = m;
    return JT_OK;
}

static int name_cmp(const void *name, const void *ref) {
    return strcmp(name, ((const key_ref *)ref)->s);
}

/* The index of the block called name, or -1, from the block names sorted (byname). */
static int find_block(const key_ref *byname, size_t n, const char *name) {
    const key_ref *r = bsearch(name, byname, n, sizeof *byname, name_cmp);
    return r ? (int)r->i : -1;
}

/* model.blocks into c->blocks (at most JT_CONFIG_MAX_BLOCKS); *bm: the mapping. */
static jt_status parse_blocks(jt_config *c, jt_cfg_doc *d, yaml_node_t *s, yaml_node_t *mk,
                              yaml_node_t **bm) {
    jt_status st = named_map(d, s, mk, "blocks", bm, &c->n_blocks);
    if (st != JT_OK) return st;
    c->blocks = jt_xcalloc(c->n_blocks, sizeof *c->blocks);
    for (size_t i = 0; i < c->n_blocks; i++) {
        jt_block_cfg *b = &c->blocks[i];
        yaml_node_t *k = node_at(d, (*bm)->data.mapping.pairs.start[i].key);
        yaml_node_t *v = node_at(d, (*bm)->data.mapping.pairs.start[i].value);
        char path[JT_KEY_MAX], lpath[JT_KEY_MAX];
        snprintf(b->name, sizeof b->name, "%s", text(k));
        b->line = jt_cfg_line(d, k);
        join(path, "model.blocks", b->name);
        join(lpath, path, "layers");
        if ((st = check_map(d, v, path, k_block)) != JT_OK) return st;
        if (!get(d, v, "input")) return missing(d, k, path, "input");
        if (!get(d, v, "layers")) return missing(d, k, path, "layers");
        if ((st = get_string(d, v, path, "input", b->input, sizeof b->input)) != JT_OK) return st;
        st = parse_layers(d, get(d, v, "layers"), lpath, &b->layers, &b->n_layers);
        if (st != JT_OK) return st;
        if (b->n_layers == 0) return jt_cfg_fail(d, get(d, v, "layers"), lpath, "expected at least one layer");
    }
    return JT_OK;
}

/* A block may take another block as input, but the graph must not loop. Each block has at most
 * one input block, so walks that stop at the first block an earlier walk passed visit every
 * block once; a walk that meets its own trail has found a loop. The message names the first
 * block (in file order) on a loop. */
static jt_status check_block_loops(const jt_config *c, jt_cfg_doc *d, yaml_node_t *bm,
                                   const key_ref *byname) {
    size_t n = c->n_blocks;
    int *up = jt_xcalloc(n, sizeof *up);
    size_t *walk = jt_xcalloc(n, sizeof *walk); /* 0, or 1 + the block whose walk passed */
    unsigned char *loop = jt_xcalloc(n, 1);
    for (size_t i = 0; i < n; i++) up[i] = find_block(byname, n, c->blocks[i].input);
    for (size_t i = 0; i < n; i++) {
        int x = (int)i;
        while (x >= 0 && walk[x] == 0) {
            walk[x] = i + 1;
            x = up[x];
        }
        if (x >= 0 && walk[x] == i + 1)
            for (int y = x; !loop[y]; y = up[y]) loop[y] = 1;
    }
    jt_status st = JT_OK;
    for (size_t i = 0; i < n && st == JT_OK; i++) {
        if (!loop[i]) continue;
        char path[JT_KEY_MAX], full[JT_KEY_MAX];
        join(path, "model.blocks", c->blocks[i].name);
        join(full, path, "input");
        st = jt_cfg_fail(d, get(d, node_at(d, bm->data.mapping.pairs.start[i].value), "input"),
                         full, "block '%s' takes its own output as input (through '%s')",
                         c->blocks[i].name, c->blocks[i].input);
    }
    free(up);
    free(walk);
    free(loop);
    return st;
}

/* model.heads into c->heads (at most JT_CONFIG_MAX_HEADS); inputs must be blocks. *out: the
 * mapping. */
static jt_status parse_heads(jt_config *c, jt_cfg_doc *d, yaml_node_t *s, yaml_node_t *mk,
                             const key_ref *byname, yaml_node_t **out) {
    yaml_node_t *hm = NULL;
    jt_status st = named_map(d, s, mk, "heads", &hm, &c->n_heads);
    *out = hm;
    if (st != JT_OK) return st;
    c->heads = jt_xcalloc(c->n_heads, sizeof *c->heads);
    for (size_t i = 0; i < c->n_heads; i++) {
        jt_head_cfg *h = &c->heads[i];
        yaml_node_t *k = node_at(d, hm->data.mapping.pairs.start[i].key);
        yaml_node_t *v = node_at(d, hm->data.mapping.pairs.start[i].value);
        char path[JT_KEY_MAX], lpath[JT_KEY_MAX], ipath[JT_KEY_MAX];
        snprintf(h->name, sizeof h->name, "%s", text(k));
        h->line = jt_cfg_line(d, k);
        h->weight = 1.0;
        join(path, "model.heads", h->name);
        join(lpath, path, "layers");
        join(ipath, path, "input");
        if (find_block(byname, c->n_blocks, h->name) >= 0)
            return jt_cfg_fail(d, k, path, "'%s' is already a block's name; names must be unique", h->name);
        if ((st = check_map(d, v, path, k_head)) != JT_OK) return st;
        if (!get(d, v, "input")) return missing(d, k, path, "input");
        if (!get(d, v, "target")) return missing(d, k, path, "target");
        if ((st = get_string(d, v, path, "input", h->input, sizeof h->input)) != JT_OK) return st;
        if (find_block(byname, c->n_blocks, h->input) < 0)
            return jt_cfg_fail(d, get(d, v, "input"), ipath, "'%s' is not a block of model.blocks",
                               h->input);
        if ((st = get_string(d, v, path, "target", h->target, sizeof h->target)) != JT_OK) return st;
        if ((st = get_double(d, v, path, "weight", JT_RANGE_NONNEG, &h->weight)) != JT_OK) return st;
        yaml_node_t *ls = get(d, v, "layers");
        if (ls && (st = parse_layers(d, ls, lpath, &h->layers, &h->n_layers)) != JT_OK) return st;
    }
    return JT_OK;
}

/* Adds name to the list of distinct names (at most JT_CONFIG_MAX_ARRAYS, so a linear search);
 * returns 0 when that would make it longer than the limit. */
static int add_array(const char **list, size_t *n, const char *name) {
    for (size_t i = 0; i < *n; i++)
        if (strcmp(list[i], name) == 0) return 1;
    if (*n == JT_CONFIG_MAX_ARRAYS) return 0;
    list[(*n)++] = name;
    return 1;
}

/* The data set arrays the model reads (block inputs that are no block, head targets) are at most
 * JT_CONFIG_MAX_ARRAYS; the message names the block or head that needs one too many. */
static jt_status check_arrays(const jt_config *c, jt_cfg_doc *d, const key_ref *byname,
                              yaml_node_t *bm, yaml_node_t *hm) {
    const char *inputs[JT_CONFIG_MAX_ARRAYS], *targets[JT_CONFIG_MAX_ARRAYS];
    size_t ni = 0, nt = 0;
    for (size_t i = 0; i < c->n_blocks + c->n_heads; i++) {
        int head = i >= c->n_blocks;
        size_t j = head ? i - c->n_blocks : i;
        const char *name = head ? c->heads[j].target : c->blocks[j].input;
        if (!head && find_block(byname, c->n_blocks, name) >= 0) continue;
        if (head ? add_array(targets, &nt, name) : add_array(inputs, &ni, name))
            if (ni + nt <= JT_CONFIG_MAX_ARRAYS) continue;
        yaml_node_t *map = head ? hm : bm;
        yaml_node_t *v = node_at(d, map->data.mapping.pairs.start[j].value);
        char path[JT_KEY_MAX], full[JT_KEY_MAX];
        join(path, head ? "model.heads" : "model.blocks", head ? c->heads[j].name : c->blocks[j].name);
        join(full, path, head ? "target" : "input");
        return jt_cfg_fail(d, get(d, v, head ? "target" : "input"), full,
                           "'%s' would be data set array number %d (inputs and targets), more "
                           "than the limit of %d", name, JT_CONFIG_MAX_ARRAYS + 1,
                           JT_CONFIG_MAX_ARRAYS);
    }
    return JT_OK;
}

static jt_status parse_model(jt_config *c, jt_cfg_doc *d, yaml_node_t *root) {
    yaml_node_t *s = get(d, root, "model"), *bm = NULL;
    if (!s) return missing(d, root, "model", "blocks");
    yaml_node_t *mk = get_key(d, root, "model");
    jt_status st = check_map(d, s, "model", k_model);
    if (st == JT_OK) st = parse_blocks(c, d, s, mk, &bm);
    if (st != JT_OK) return st;
    key_ref *byname = jt_xcalloc(c->n_blocks, sizeof *byname);
    for (size_t i = 0; i < c->n_blocks; i++) byname[i] = (key_ref){c->blocks[i].name, i};
    qsort(byname, c->n_blocks, sizeof *byname, key_ref_cmp);
    yaml_node_t *hm = NULL;
    st = check_block_loops(c, d, bm, byname);
    if (st == JT_OK) st = parse_heads(c, d, s, mk, byname, &hm);
    if (st == JT_OK) st = check_arrays(c, d, byname, bm, hm);
    free(byname);
    return st;
}

/* train.schedule (schedule.h): the name first, since it decides which keys are allowed. */
static jt_status parse_schedule(jt_config *c, jt_cfg_doc *d, yaml_node_t *train) {
    yaml_node_t *m = get(d, train, "schedule");
    if (!m) return JT_OK;
    const char *p = "train.schedule";
    jt_schedule_cfg *s = &c->train.schedule;
    int name = JT_SCHED_CONSTANT;
    jt_status st;
    if ((st = check_map(d, m, p, k_sched)) || (st = get_word(d, m, p, "name", w_sched, &name)))
        return st;
    s->name = (jt_sched_name)name;
    char is[48];
    snprintf(is, sizeof is, "the schedule is %s", w_sched[name]);
    int annealed = s->name == JT_SCHED_COSINE || s->name == JT_SCHED_LINEAR;
    if (!annealed && (st = only_for(d, m, p, "min_lr", "schedules cosine and linear", is)))
        return st;
    if (s->name != JT_SCHED_STEP && ((st = only_for(d, m, p, "step_size", "schedule step", is)) ||
                                     (st = only_for(d, m, p, "gamma", "schedule step", is))))
        return st;
    if (s->name == JT_SCHED_STEP && !get(d, m, "step_size"))
        return missing(d, get_key(d, train, "schedule"), p, "step_size");
    if ((st = get_long(d, m, p, "warmup_steps", 0, JT_CONFIG_MAX_STEPS, &s->warmup_steps)) ||
        (st = get_long(d, m, p, "step_size", 1, JT_CONFIG_MAX_STEPS, &s->step_size)) ||
        (st = get_double(d, m, p, "gamma", JT_RANGE_UNIT_POS, &s->gamma)) ||
        (st = get_double(d, m, p, "min_lr", JT_RANGE_NONNEG, &s->min_lr)))
        return st;
    if (s->min_lr >= c->train.adam.lr) {
        char what[96];
        snprintf(what, sizeof what, "a number < train.optimizer.lr (%.9g)", c->train.adam.lr);
        return expected(d, get(d, m, "min_lr"), "train.schedule.min_lr", what);
    }
    return JT_OK;
}

/* train.balance (README "Multi-task training"): the method first, since it decides which keys
 * are allowed. */
static jt_status parse_balance(jt_config *c, jt_cfg_doc *d, yaml_node_t *train) {
    yaml_node_t *m = get(d, train, "balance");
    if (!m) return JT_OK;
    const char *p = "train.balance";
    int method = JT_BALANCE_FIXED;
    jt_status st;
    if ((st = check_map(d, m, p, k_balance)) ||
        (st = get_word(d, m, p, "method", w_balance, &method)))
        return st;
    c->train.balance.method = (jt_balance_method)method;
    char is[48];
    snprintf(is, sizeof is, "the method is %s", w_balance[method]);
    if (method != JT_BALANCE_DWA && ((st = only_for(d, m, p, "temperature", "method dwa", is)) ||
                                     (st = only_for(d, m, p, "window", "method dwa", is))))
        return st;
    if (method != JT_BALANCE_GRADNORM && (st = only_for(d, m, p, "alpha", "method gradnorm", is)))
        return st;
    if ((st = get_double(d, m, p, "temperature", JT_RANGE_POS, &c->train.balance.temperature)) ||
        (st = get_long(d, m, p, "window", 0, JT_CONFIG_MAX_STEPS, &c->train.balance.window)) ||
        (st = get_double(d, m, p, "alpha", JT_RANGE_NONNEG, &c->train.balance.alpha)))
        return st;
    return JT_OK;
}

/* map.metric (required; `at` is the key of map, where a missing one is reported) and map.mode
 * of checkpoint.best or train.early_stop into *out. The heads are parsed already. */
static jt_status parse_metric(const jt_config *c, jt_cfg_doc *d, yaml_node_t *map, yaml_node_t *at,
                              const char *path, jt_metric_cfg *out) {
    char full[JT_KEY_MAX];
    join(full, path, "metric");
    yaml_node_t *v = get(d, map, "metric");
    if (!v) return missing(d, at, path, "metric");
    jt_status st = get_string(d, map, path, "metric", out->text, sizeof out->text);
    if (st != JT_OK) return st;
    const char *form = "HEAD.accuracy, HEAD.loss (HEAD a head of model.heads) or loss";
    const char *dot = strchr(out->text, '.');
    if (!dot) {
        if (strcmp(out->text, "loss") != 0) return expected(d, v, full, form);
        out->kind = JT_METRIC_LOSS;
        out->head = -1;
    } else {
        if (!strcmp(dot + 1, "accuracy")) out->kind = JT_METRIC_ACCURACY;
        else if (!strcmp(dot + 1, "loss")) out->kind = JT_METRIC_LOSS;
        else return expected(d, v, full, form);
        size_t len = (size_t)(dot - out->text);
        out->head = -1;
        for (size_t i = 0; i < c->n_heads; i++)
            if (strlen(c->heads[i].name) == len && !strncmp(c->heads[i].name, out->text, len))
                out->head = (int)i;
        if (out->head < 0) {
            char list[400] = "";
            for (size_t i = 0; i < c->n_heads; i++) {
                size_t used = strlen(list);
                snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", c->heads[i].name);
            }
            return jt_cfg_fail(d, v, full, "'%.*s' is not a head of model.heads (heads: %s)",
                               (int)(len < 80 ? len : 80), out->text, list);
        }
    }
    int mode = out->kind == JT_METRIC_ACCURACY ? 0 : 1; /* w_mode: max, min */
    if ((st = get_word(d, map, path, "mode", w_mode, &mode)) != JT_OK) return st;
    out->maximize = mode == 0;
    return JT_OK;
}

/* "<path>: needs train.eval_every > 0: ..." at `at`. */
static jt_status needs_evals(jt_cfg_doc *d, yaml_node_t *at, const char *path) {
    return jt_cfg_fail(d, at, path,
                       "needs train.eval_every > 0: the metric comes from the evaluations");
}

static jt_status parse_train(jt_config *c, jt_cfg_doc *d, yaml_node_t *root) {
    yaml_node_t *s = get(d, root, "train");
    if (!s) return missing(d, root, "train", "batch_size");
    jt_status st = check_map(d, s, "train", k_train);
    if (st != JT_OK) return st;
    /* Exactly one of epochs / steps is > 0; 0 switches one off, so an override can swap them
     * (--set train.epochs=0 --set train.steps=100). */
    yaml_node_t *e = get(d, s, "epochs"), *n = get(d, s, "steps");
    yaml_node_t *tk = get_key(d, root, "train");
    if ((st = get_long(d, s, "train", "epochs", 0, JT_CONFIG_MAX_EPOCHS, &c->train.epochs)) ||
        (st = get_long(d, s, "train", "steps", 0, JT_CONFIG_MAX_STEPS, &c->train.steps)))
        return st;
    if (c->train.epochs > 0 && c->train.steps > 0) { /* blame the later: an override, or line */
        int steps_last = jt_cfg_node_id(d, n) > jt_cfg_node_id(d, e);
        return jt_cfg_fail(d, steps_last ? n : e, steps_last ? "train.steps" : "train.epochs",
                           "give train.epochs or train.steps, not both (0 switches one off)");
    }
    if (c->train.epochs == 0 && c->train.steps == 0)
        return jt_cfg_fail(d, e ? e : n ? n : tk, "train.epochs",
                           e || n ? "train.epochs or train.steps must be > 0"
                                  : "required key is missing (or give train.steps)");
    if (!get(d, s, "batch_size")) return missing(d, tk, "train", "batch_size");
    if ((st = get_long(d, s, "train", "batch_size", 1, LONG_MAX, &c->train.batch_size)) ||
        (st = get_u64(d, s, "train", "seed", &c->train.seed)) ||
        (st = get_double(d, s, "train", "clip_norm", JT_RANGE_NONNEG, &c->train.clip_norm)) ||
        (st = get_long(d, s, "train", "eval_every", 0, LONG_MAX, &c->train.eval_every)) ||
        (st = get_long(d, s, "train", "threads", 0, 4096, &c->train.threads)) ||
        (st = get_double(d, s, "train", "watchdog_s", JT_RANGE_NONNEG, &c->train.watchdog_s)))
        return st;

    if ((st = get_long(d, s, "train", "accumulate", 1, 1L << 20, &c->train.accumulate)) ||
        (st = get_bool(d, s, "train", "pcgrad", &c->train.pcgrad)))
        return st;

    yaml_node_t *o = get(d, s, "optimizer");
    if (o) {
        const char *p = "train.optimizer";
        jt_adam_opts *a = &c->train.adam;
        char name[JT_NAME_MAX] = "adam";
        if ((st = check_map(d, o, p, k_optim)) ||
            (st = get_string(d, o, p, "name", name, sizeof name)))
            return st;
        if (strcmp(name, "adam") != 0)
            return jt_cfg_fail(d, get(d, o, "name"), "train.optimizer.name",
                               "expected adam (the only optimizer), found '%s'", name);
        if ((st = get_double(d, o, p, "lr", JT_RANGE_POS, &a->lr)) ||
            (st = get_double(d, o, p, "beta1", JT_RANGE_UNIT, &a->beta1)) ||
            (st = get_double(d, o, p, "beta2", JT_RANGE_UNIT, &a->beta2)) ||
            (st = get_double(d, o, p, "eps", JT_RANGE_POS, &a->eps)) ||
            (st = get_double(d, o, p, "weight_decay", JT_RANGE_NONNEG, &a->weight_decay)))
            return st;
    }
    if ((st = parse_schedule(c, d, s)) || (st = parse_balance(c, d, s))) return st;
    yaml_node_t *es = get(d, s, "early_stop");
    if (es) {
        const char *p = "train.early_stop";
        yaml_node_t *ek = get_key(d, s, "early_stop");
        if ((st = check_map(d, es, p, k_early))) return st;
        if ((st = parse_metric(c, d, es, ek, p, &c->train.early_stop.metric))) return st;
        if (!get(d, es, "patience")) return missing(d, ek, p, "patience");
        if ((st = get_long(d, es, p, "patience", 1, LONG_MAX, &c->train.early_stop.patience)))
            return st;
        if (c->train.eval_every == 0) return needs_evals(d, ek, p);
    }
    return JT_OK;
}

/* checkpoint.dir defaults to runs/<stem of the config file> ("run" when the source is not a
 * file name, e.g. "<string>"). */
static jt_status default_dir(jt_config *c, jt_cfg_doc *d) {
    const char *base = strrchr(c->source, '/');
    base = base ? base + 1 : c->source;
    const char *dot = strrchr(base, '.');
    int len = (int)(dot && dot != base ? (size_t)(dot - base) : strlen(base));
    if (len == 0 || base[0] == '<') base = "run", len = 3;
    int w = snprintf(c->checkpoint.dir, sizeof c->checkpoint.dir, "runs/%.*s", len, base);
    if (w < 0 || (size_t)w >= sizeof c->checkpoint.dir)
        return jt_cfg_fail(d, NULL, "checkpoint.dir", "the default (runs/<config name>) is too long; set it");
    return JT_OK;
}

static jt_status parse_output(jt_config *c, jt_cfg_doc *d, yaml_node_t *root) {
    yaml_node_t *s = get(d, root, "checkpoint");
    jt_status st = JT_OK;
    if (s && ((st = check_map(d, s, "checkpoint", k_ckpt)) ||
              (st = get_string(d, s, "checkpoint", "dir", c->checkpoint.dir, sizeof c->checkpoint.dir)) ||
              (st = get_long(d, s, "checkpoint", "every_steps", 0, LONG_MAX, &c->checkpoint.every_steps)) ||
              (st = get_long(d, s, "checkpoint", "keep", 1, LONG_MAX, &c->checkpoint.keep))))
        return st;
    yaml_node_t *b = get(d, s, "best");
    if (b) {
        yaml_node_t *bk = get_key(d, s, "best");
        if ((st = check_map(d, b, "checkpoint.best", k_best)) ||
            (st = parse_metric(c, d, b, bk, "checkpoint.best", &c->checkpoint.best)))
            return st;
        if (c->train.eval_every == 0) return needs_evals(d, bk, "checkpoint.best");
    }
    if (!c->checkpoint.dir[0] && (st = default_dir(c, d)) != JT_OK) return st;

    s = get(d, root, "log");
    if (s && ((st = check_map(d, s, "log", k_log)) ||
              (st = get_long(d, s, "log", "every_steps", 1, LONG_MAX, &c->log.every_steps)) ||
              (st = get_string(d, s, "log", "metrics", c->log.metrics, sizeof c->log.metrics)) ||
              (st = get_string(d, s, "log", "trace", c->log.trace, sizeof c->log.trace))))
        return st;
    if (!c->log.metrics[0]) {
        int w = snprintf(c->log.metrics, sizeof c->log.metrics, "%s/metrics.jsonl", c->checkpoint.dir);
        if (w < 0 || (size_t)w >= sizeof c->log.metrics)
            return jt_cfg_fail(d, NULL, "log.metrics",
                               "the default (<checkpoint.dir>/metrics.jsonl) is too long; set it");
    }
    return JT_OK;
}

jt_status jt_cfg_from_doc(jt_config *c, jt_cfg_doc *d) {
    snprintf(c->data.train, sizeof c->data.train, "train");
    snprintf(c->data.eval, sizeof c->data.eval, "test");
    c->train.seed = 1;
    c->train.adam = jt_adam_default_opts();
    c->train.watchdog_s = 600;
    c->train.accumulate = 1;
    c->train.schedule.gamma = 0.1;
    c->train.balance.temperature = 2;
    c->train.balance.alpha = 1.5;
    c->checkpoint.keep = 3;
    c->log.every_steps = 50;

    yaml_node_t *root = yaml_document_get_root_node(&d->doc);
    if (!root) return jt_cfg_fail(d, NULL, "data.file", "required key is missing (the config is empty)");
    if (root->type != YAML_MAPPING_NODE && !is_null(root))
        return expected(d, root, "(top level)", "a mapping of sections data, model, train, checkpoint, log");
    jt_status st = check_map(d, root, "", k_root);
    if (st == JT_OK && is_null(root))
        st = jt_cfg_fail(d, root, "data.file", "required key is missing (the config is empty)");
    if (st == JT_OK) st = parse_data(c, d, root);
    if (st == JT_OK) st = parse_model(c, d, root);
    if (st == JT_OK) st = parse_train(c, d, root);
    if (st == JT_OK) st = parse_output(c, d, root);
    return st;
}
