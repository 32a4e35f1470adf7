/* config.c - loading a config: read the file, parse it into a libyaml document, apply the
 * --set overrides to that document, then hand it to the schema check (config_schema.c).
 *
 * Invariants: every error is JT_EUSAGE with exactly one line in err naming the source, the line
 * (or "--set") and the dotted key; every path frees what it allocated (goto cleanup); on failure
 * the jt_config is left zeroed. Overrides only edit the document, so an overridden value is
 * validated by the same code, with the same messages, as a value from the file. Bounded: before
 * libyaml builds a document, a pass over its events (no tree) refuses texts that nest too deep,
 * hold too many values or multiply them through aliases, so whatever the text within
 * JT_CONFIG_MAX_BYTES, reading it takes well under a second and a bounded amount of memory. */
#include "jtrain/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_doc.h"

/* A config larger than this is certainly a wrong file (a data set, a checkpoint). */
#define JT_CONFIG_MAX_BYTES (16u << 20)
/* Nesting limit when copying an override's value into the document. */
#define JT_SET_MAX_DEPTH 32
/* Limits on the YAML of a config and its overrides, far above any real config (the recipes have
 * ~100 values, 6 levels deep, no anchors) and low enough that the worst text is refused fast:
 * libyaml takes ~1.3 us per value to build a document here (0.13 s for the limit), more per
 * level while scanning deep flow nesting (quadratic: 34 s for 100k '['), and looks anchors up
 * one by one for every alias. Aliases count as the values they repeat. */
#define JT_CONFIG_MAX_DEPTH 64
#define JT_CONFIG_MAX_NODES 100000
#define JT_CONFIG_MAX_ANCHORS 256

/* The 1-based line of byte `offset` of text (libyaml gives only the offset of an encoding
 * error). */
static unsigned long line_at(const char *text, size_t offset) {
    unsigned long line = 1;
    for (size_t i = 0; i < offset && text[i]; i++)
        if (text[i] == '\n' || (text[i] == '\r' && text[i + 1] != '\n')) line++;
    return line;
}

/* Formats a libyaml parser error as "<source>:<line>: YAML syntax error: <problem> <context>". */
static jt_status syntax_error(const jt_cfg_doc *d, const yaml_parser_t *p, const char *text) {
    const yaml_mark_t *mk = p->problem ? &p->problem_mark : &p->context_mark;
    unsigned long line = p->error == YAML_READER_ERROR ? line_at(text, p->problem_offset)
                                                       : (unsigned long)mk->line + 1;
    snprintf(d->err, d->errlen, "%s:%lu: YAML syntax error: %s%s%s", d->source, line,
             p->problem ? p->problem : "cannot parse", p->context ? " " : "",
             p->context ? p->context : "");
    return JT_EUSAGE;
}

/* One open mapping or sequence of the scan. */
typedef struct {
    long anchor;  /* index of its anchor in scan_state, or -1 */
    size_t first; /* values counted before it */
} scan_frame;

/* The anchors of one text (a YAML document's anchors are its own) and their sizes in values. */
typedef struct {
    size_t nodes; /* values so far: the file's and the overrides' */
    size_t n_anchors;
    char *names[JT_CONFIG_MAX_ANCHORS];
    size_t sizes[JT_CONFIG_MAX_ANCHORS];
} scan_state;

/* "<source>:<line>: <message>" for the file, "--set <arg>: <message>" for an override. */
static jt_status scan_fail(const jt_cfg_doc *d, const char *set, const yaml_mark_t *mk,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static jt_status scan_fail(const jt_cfg_doc *d, const char *set, const yaml_mark_t *mk,
                           const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (set) /* an override can be long: its start names it */
        snprintf(d->err, d->errlen, "--set %.60s%s: %s", set, strlen(set) > 60 ? "..." : "", msg);
    else
        snprintf(d->err, d->errlen, "%s:%lu: %s", d->source, (unsigned long)mk->line + 1, msg);
    return JT_EUSAGE;
}

/* Reads the YAML events of text (the config when set is NULL, else the value of override
 * `set`) without building a document, and refuses it when it nests deeper than
 * JT_CONFIG_MAX_DEPTH, when the file and overrides hold more than JT_CONFIG_MAX_NODES values in
 * all (*nodes counts across calls; an alias counts as every value of the node it repeats, so
 * aliases cannot blow a small text up: "billion laughs"), when it defines more than
 * JT_CONFIG_MAX_ANCHORS anchors, or when an alias repeats a node that contains it. Syntax errors
 * are reported here as the loader would report them. */
static jt_status prescan(const jt_cfg_doc *d, const char *text, const char *set, size_t *nodes) {
    const char *what = set ? "value" : "config";
    scan_state scan, *s = &scan;
    yaml_parser_t p;
    scan_frame stack[JT_CONFIG_MAX_DEPTH];
    int depth = 0;
    jt_status st = JT_OK;
    if (!yaml_parser_initialize(&p)) {
        snprintf(d->err, d->errlen, "%s: out of memory", set ? set : d->source);
        return JT_EUSAGE;
    }
    s->nodes = *nodes;
    s->n_anchors = 0;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, strlen(text));
    for (int done = 0; !done && st == JT_OK;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            if (set)
                scan_fail(d, set, &p.problem_mark, "the value is not valid YAML: %s",
                          p.problem ? p.problem : "syntax error");
            else
                syntax_error(d, &p, text);
            st = JT_EUSAGE;
            break;
        }
        const yaml_mark_t *mk = &ev.start_mark;
        const yaml_char_t *anchor = NULL;
        size_t first = s->nodes;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_ALIAS_EVENT: {
            const char *name = (const char *)ev.data.alias.anchor;
            size_t size = 1; /* an undefined alias: the loader reports it */
            for (size_t i = s->n_anchors; i-- > 0;)
                if (strcmp(s->names[i], name) == 0) {
                    size = s->sizes[i];
                    break;
                }
            for (int i = 0; i < depth; i++)
                if (stack[i].anchor >= 0 && strcmp(s->names[stack[i].anchor], name) == 0)
                    st = scan_fail(d, set, mk, "alias *%.80s is inside the node it repeats", name);
            s->nodes += size;
            break;
        }
        case YAML_SCALAR_EVENT:
            anchor = ev.data.scalar.anchor;
            s->nodes++;
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            anchor = ev.type == YAML_SEQUENCE_START_EVENT ? ev.data.sequence_start.anchor
                                                          : ev.data.mapping_start.anchor;
            s->nodes++;
            if (depth == JT_CONFIG_MAX_DEPTH) {
                st = scan_fail(d, set, mk, "the %s nests deeper than %d levels", what,
                               JT_CONFIG_MAX_DEPTH);
                break;
            }
            stack[depth].anchor = -1;
            stack[depth++].first = first;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            if (stack[depth].anchor >= 0)
                s->sizes[stack[depth].anchor] = s->nodes - stack[depth].first;
            break;
        default:
            break;
        }
        if (st == JT_OK && s->nodes > JT_CONFIG_MAX_NODES)
            st = scan_fail(d, set, mk, "the %s has more than %d values (an alias counts as the "
                           "values it repeats)", what, JT_CONFIG_MAX_NODES);
        if (st == JT_OK && anchor) {
            if (s->n_anchors == JT_CONFIG_MAX_ANCHORS) {
                st = scan_fail(d, set, mk, "the %s has more than %d anchors (&name)", what,
                               JT_CONFIG_MAX_ANCHORS);
            } else {
                size_t a = s->n_anchors++;
                s->names[a] = jt_xstrdup((const char *)anchor);
                s->sizes[a] = 1; /* a collection's size is known at its end */
                if (ev.type != YAML_SCALAR_EVENT) stack[depth - 1].anchor = (long)a;
            }
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    for (size_t i = 0; i < s->n_anchors; i++) free(s->names[i]);
    *nodes = s->nodes;
    return st;
}

/* Copies node `id` of src (and everything under it) into dst; returns the new index, or 0 when
 * libyaml runs out of memory or the value nests deeper than JT_SET_MAX_DEPTH. */
static int copy_node(yaml_document_t *dst, yaml_document_t *src, int id, int depth) {
    if (depth > JT_SET_MAX_DEPTH) return 0;
    yaml_node_t *n = yaml_document_get_node(src, id);
    if (!n) return 0;
    if (n->type == YAML_SCALAR_NODE)
        return yaml_document_add_scalar(dst, n->tag, n->data.scalar.value,
                                        (int)n->data.scalar.length, n->data.scalar.style);
    if (n->type == YAML_SEQUENCE_NODE) {
        int s = yaml_document_add_sequence(dst, n->tag, YAML_FLOW_SEQUENCE_STYLE);
        if (!s) return 0;
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            int c = copy_node(dst, src, *it, depth + 1);
            if (!c || !yaml_document_append_sequence_item(dst, s, c)) return 0;
        }
        return s;
    }
    int m = yaml_document_add_mapping(dst, n->tag, YAML_FLOW_MAPPING_STYLE);
    if (!m) return 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        int k = copy_node(dst, src, p->key, depth + 1);
        int v = k ? copy_node(dst, src, p->value, depth + 1) : 0;
        if (!v || !yaml_document_append_mapping_pair(dst, m, k, v)) return 0;
    }
    return m;
}

/* Parses an override's value as a one-document YAML text and copies its root into d->doc.
 * An empty value becomes an empty plain scalar (YAML's null), which the schema then rejects
 * wherever a value is required. *nodes counts values for the limits of prescan. Returns the new
 * node's index, or 0 with err written. */
static int set_value_node(jt_cfg_doc *d, const char *set, const char *value, size_t *nodes) {
    yaml_parser_t p;
    yaml_document_t vd;
    int id = 0, loaded = 0;
    if (prescan(d, value, set, nodes) != JT_OK) return 0;
    if (!yaml_parser_initialize(&p)) {
        snprintf(d->err, d->errlen, "--set %s: out of memory", set);
        return 0;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)value, strlen(value));
    if (!yaml_parser_load(&p, &vd)) {
        snprintf(d->err, d->errlen, "--set %s: the value is not valid YAML: %s", set,
                 p.problem ? p.problem : "syntax error");
        goto cleanup;
    }
    loaded = 1;
    if (!yaml_document_get_root_node(&vd))
        id = yaml_document_add_scalar(&d->doc, NULL, (const yaml_char_t *)"", 0,
                                      YAML_PLAIN_SCALAR_STYLE);
    else
        id = copy_node(&d->doc, &vd, 1, 0);
    if (!id)
        snprintf(d->err, d->errlen, "--set %s: the value is nested too deeply (or out of memory)",
                 set);
cleanup:
    if (loaded) yaml_document_delete(&vd);
    yaml_parser_delete(&p);
    return id;
}

/* The value of key `name` (length len) in mapping node `map`, as a pair pointer, or NULL. */
static yaml_node_pair_t *find_pair(jt_cfg_doc *d, int map, const char *name, size_t len) {
    yaml_node_t *m = yaml_document_get_node(&d->doc, map);
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&d->doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == len &&
            memcmp(k->data.scalar.value, name, len) == 0)
            return p;
    }
    return NULL;
}

/* Applies one "a.b.c=value": walks mappings by key from the root, creating missing mappings on
 * the way, then replaces the last key's value or adds the key (an unknown key added this way is
 * reported by the schema check like one in the file). *nodes: as for set_value_node. */
static jt_status apply_set(jt_cfg_doc *d, const char *set, size_t *nodes) {
    const char *eq = strchr(set, '=');
    if (!eq) {
        snprintf(d->err, d->errlen, "--set %s: expected KEY=VALUE, e.g. --set train.optimizer.lr=3e-4",
                 set);
        return JT_EUSAGE;
    }
    size_t keylen = (size_t)(eq - set);
    if (keylen == 0 || set[0] == '.' || set[keylen - 1] == '.' || memchr(set, ' ', keylen)) {
        snprintf(d->err, d->errlen, "--set %s: bad key '%.*s': expected section.key[.key...]", set,
                 (int)keylen, set);
        return JT_EUSAGE;
    }
    for (size_t i = 1; i < keylen; i++) {
        if (set[i] == '.' && set[i - 1] == '.') {
            snprintf(d->err, d->errlen, "--set %s: bad key '%.*s': empty component", set,
                     (int)keylen, set);
            return JT_EUSAGE;
        }
    }
    int value = set_value_node(d, set, eq + 1, nodes);
    if (!value) return JT_EUSAGE;
    if (!yaml_document_get_root_node(&d->doc) &&
        !yaml_document_add_mapping(&d->doc, NULL, YAML_BLOCK_MAPPING_STYLE))
        goto oom;
    int cur = 1; /* the root is always node 1 */
    const char *comp = set;
    while (comp < eq) {
        const char *dot = memchr(comp, '.', (size_t)(eq - comp));
        const char *end = dot ? dot : eq;
        size_t len = (size_t)(end - comp);
        yaml_node_t *m = yaml_document_get_node(&d->doc, cur);
        if (m->type != YAML_MAPPING_NODE && comp == set) {
            snprintf(d->err, d->errlen, "--set %s: the config is not a mapping of sections", set);
            return JT_EUSAGE;
        }
        if (m->type != YAML_MAPPING_NODE) {
            snprintf(d->err, d->errlen, "--set %s: '%.*s' is not a mapping, so it has no key '%.*s'",
                     set, (int)(comp - 1 - set), set, (int)len, comp);
            return JT_EUSAGE;
        }
        yaml_node_pair_t *p = find_pair(d, cur, comp, len);
        if (!dot) {
            if (p) {
                p->value = value;
                return JT_OK;
            }
            int k = yaml_document_add_scalar(&d->doc, NULL, (const yaml_char_t *)comp, (int)len,
                                             YAML_PLAIN_SCALAR_STYLE);
            if (!k || !yaml_document_append_mapping_pair(&d->doc, cur, k, value)) goto oom;
            return JT_OK;
        }
        if (p) {
            cur = p->value;
        } else {
            int k = yaml_document_add_scalar(&d->doc, NULL, (const yaml_char_t *)comp, (int)len,
                                             YAML_PLAIN_SCALAR_STYLE);
            int sub = k ? yaml_document_add_mapping(&d->doc, NULL, YAML_BLOCK_MAPPING_STYLE) : 0;
            if (!sub || !yaml_document_append_mapping_pair(&d->doc, cur, k, sub)) goto oom;
            cur = sub;
        }
        comp = end + 1;
    }
oom:
    snprintf(d->err, d->errlen, "--set %s: out of memory", set);
    return JT_EUSAGE;
}

jt_status jt_config_parse(jt_config *c, const char *text, const char *source,
                          const char *const *sets, size_t n_sets, char *err, size_t errlen) {
    jt_status st = JT_EUSAGE;
    yaml_parser_t parser;
    jt_cfg_doc d;
    yaml_document_t extra;
    int parser_ok = 0, doc_ok = 0;
    size_t nodes = 0;
    memset(c, 0, sizeof *c);
    memset(&d, 0, sizeof d);
    if (err && errlen) err[0] = '\0';
    char dummy[8];
    d.err = err && errlen ? err : dummy;
    d.errlen = err && errlen ? errlen : sizeof dummy;
    d.source = source && *source ? source : "<string>";
    snprintf(c->source, sizeof c->source, "%s", d.source);
    if (!text) text = "";

    if ((st = prescan(&d, text, NULL, &nodes)) != JT_OK) goto cleanup;
    st = JT_EUSAGE;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(d.err, d.errlen, "%s: out of memory", d.source);
        goto cleanup;
    }
    parser_ok = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&parser, &d.doc)) {
        st = syntax_error(&d, &parser, text);
        goto cleanup;
    }
    doc_ok = 1;
    if (yaml_document_get_root_node(&d.doc)) {
        /* exactly one document: a second one would be silently ignored otherwise */
        if (!yaml_parser_load(&parser, &extra)) {
            st = syntax_error(&d, &parser, text);
            goto cleanup;
        }
        yaml_node_t *r = yaml_document_get_root_node(&extra);
        unsigned long line = r ? (unsigned long)r->start_mark.line + 1 : 0;
        yaml_document_delete(&extra);
        if (r) {
            snprintf(d.err, d.errlen, "%s:%lu: expected one YAML document, found a second one",
                     d.source, line);
            goto cleanup;
        }
    } else {
        /* an empty stream loads as a zeroed document that libyaml cannot add nodes to */
        yaml_document_delete(&d.doc);
        doc_ok = 0;
        if (!yaml_document_initialize(&d.doc, NULL, NULL, NULL, 1, 1)) {
            snprintf(d.err, d.errlen, "%s: out of memory", d.source);
            goto cleanup;
        }
        doc_ok = 1;
    }

    d.first_set_node = (int)(d.doc.nodes.top - d.doc.nodes.start) + 1;
    for (size_t i = 0; i < n_sets; i++) {
        st = apply_set(&d, sets[i] ? sets[i] : "", &nodes);
        if (st != JT_OK) goto cleanup;
    }
    st = jt_cfg_from_doc(c, &d);

cleanup:
    if (doc_ok) yaml_document_delete(&d.doc);
    if (parser_ok) yaml_parser_delete(&parser);
    if (st != JT_OK) jt_config_free(c);
    return st;
}

jt_status jt_config_load(jt_config *c, const char *path, const char *const *sets, size_t n_sets,
                         char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    jt_status st = JT_EUSAGE;
    char *text = NULL;
    size_t n = 0, cap = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open config: %s", path, strerror(errno));
        return JT_EUSAGE;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= JT_CONFIG_MAX_BYTES) {
                snprintf(err, errlen, "%s: not a config: larger than %u bytes", path,
                         JT_CONFIG_MAX_BYTES);
                goto cleanup;
            }
            cap = cap ? 2 * cap : 16384;
            char *grown = realloc(text, cap + 1);
            if (!grown) {
                snprintf(err, errlen, "%s: out of memory reading the config", path);
                goto cleanup;
            }
            text = grown;
        }
        size_t got = fread(text + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read config: %s", path, strerror(errno));
        goto cleanup;
    }
    const char *nul = memchr(text, '\0', n);
    if (nul) {
        text[n] = '\0'; /* line_at stops at the NUL */
        snprintf(err, errlen, "%s:%lu: not a config: contains a NUL byte (a binary file?)", path,
                 line_at(text, (size_t)(nul - text)));
        goto cleanup;
    }
    text[n] = '\0';
    st = jt_config_parse(c, text, path, sets, n_sets, err, errlen);
cleanup:
    free(text);
    fclose(f);
    return st;
}

jt_status jt_config_total_steps(const jt_config *c, uint64_t steps_per_epoch, uint64_t *total,
                                char *err, size_t errlen) {
    *total = 0;
    if (c->train.steps > 0) {
        *total = (uint64_t)c->train.steps;
        return JT_OK;
    }
    uint64_t n;
    if (__builtin_mul_overflow((uint64_t)c->train.epochs, steps_per_epoch, &n) ||
        n > (uint64_t)JT_CONFIG_MAX_STEPS) {
        snprintf(err, errlen, "%s: train.epochs: %ld epochs of %llu steps are more than 2^53 "
                 "steps", c->source, c->train.epochs, (unsigned long long)steps_per_epoch);
        return JT_EUSAGE;
    }
    *total = n;
    return JT_OK;
}

void jt_config_free(jt_config *c) {
    if (!c) return;
    for (size_t i = 0; c->blocks && i < c->n_blocks; i++) free(c->blocks[i].layers);
    for (size_t i = 0; c->heads && i < c->n_heads; i++) free(c->heads[i].layers);
    free(c->blocks);
    free(c->heads);
    memset(c, 0, sizeof *c);
}
