/* config.c - loading a config: read the file, parse it into a libyaml document, apply the
 * --set overrides to that document, then hand it to the schema check (config_schema.c).
 *
 * Invariants: every error is JT_EUSAGE with exactly one line in err naming the source, the line
 * (or "--set") and the dotted key; every path frees what it allocated (goto cleanup); on failure
 * the jt_config is left zeroed. Overrides only edit the document, so an overridden value is
 * validated by the same code, with the same messages, as a value from the file. */
#include "jtrain/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_doc.h"

/* A config larger than this is certainly a wrong file (a data set, a checkpoint). */
#define JT_CONFIG_MAX_BYTES (16u << 20)
/* Nesting limit when copying an override's value into the document (aliases can loop). */
#define JT_SET_MAX_DEPTH 32

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
 * wherever a value is required. Returns the new node's index, or 0 with err written. */
static int set_value_node(jt_cfg_doc *d, const char *set, const char *value) {
    yaml_parser_t p;
    yaml_document_t vd;
    int id = 0, loaded = 0;
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
 * reported by the schema check like one in the file). */
static jt_status apply_set(jt_cfg_doc *d, const char *set) {
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
    int value = set_value_node(d, set, eq + 1);
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

/* Formats a libyaml parser error as "<source>:<line>: YAML syntax error: <problem> <context>". */
static jt_status syntax_error(const jt_cfg_doc *d, const yaml_parser_t *p) {
    const yaml_mark_t *mk = p->problem ? &p->problem_mark : &p->context_mark;
    snprintf(d->err, d->errlen, "%s:%lu: YAML syntax error: %s%s%s", d->source,
             (unsigned long)mk->line + 1, p->problem ? p->problem : "cannot parse",
             p->context ? " " : "", p->context ? p->context : "");
    return JT_EUSAGE;
}

jt_status jt_config_parse(jt_config *c, const char *text, const char *source,
                          const char *const *sets, size_t n_sets, char *err, size_t errlen) {
    jt_status st = JT_EUSAGE;
    yaml_parser_t parser;
    jt_cfg_doc d;
    yaml_document_t extra;
    int parser_ok = 0, doc_ok = 0;
    memset(c, 0, sizeof *c);
    memset(&d, 0, sizeof d);
    if (err && errlen) err[0] = '\0';
    char dummy[8];
    d.err = err && errlen ? err : dummy;
    d.errlen = err && errlen ? errlen : sizeof dummy;
    d.source = source && *source ? source : "<string>";
    snprintf(c->source, sizeof c->source, "%s", d.source);
    if (!text) text = "";

    if (!yaml_parser_initialize(&parser)) {
        snprintf(d.err, d.errlen, "%s: out of memory", d.source);
        goto cleanup;
    }
    parser_ok = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&parser, &d.doc)) {
        st = syntax_error(&d, &parser);
        goto cleanup;
    }
    doc_ok = 1;
    if (yaml_document_get_root_node(&d.doc)) {
        /* exactly one document: a second one would be silently ignored otherwise */
        if (!yaml_parser_load(&parser, &extra)) {
            st = syntax_error(&d, &parser);
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
        st = apply_set(&d, sets[i] ? sets[i] : "");
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
    if (memchr(text, '\0', n)) {
        snprintf(err, errlen, "%s: not a config: contains NUL bytes (a binary file?)", path);
        goto cleanup;
    }
    text[n] = '\0';
    st = jt_config_parse(c, text, path, sets, n_sets, err, errlen);
cleanup:
    free(text);
    fclose(f);
    return st;
}

void jt_config_free(jt_config *c) {
    if (!c) return;
    for (size_t i = 0; c->blocks && i < c->n_blocks; i++) free(c->blocks[i].layers);
    for (size_t i = 0; c->heads && i < c->n_heads; i++) free(c->heads[i].layers);
    free(c->blocks);
    free(c->heads);
    memset(c, 0, sizeof *c);
}
