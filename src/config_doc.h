/* config_doc.h - private to src/config*.c: the parsed YAML document of a config, with where
 * each node came from, and the one error format every config message uses:
 *
 *     <source>:<line>: <dotted.key>: <what was expected>, found <what was found>
 *
 * where <line> is the 1-based line in the file, or "--set" for a node an override created. */
#ifndef JTRAIN_CONFIG_DOC_H
#define JTRAIN_CONFIG_DOC_H

#include <stddef.h>
#include <yaml.h>

#include "jtrain/config.h"

typedef struct {
    yaml_document_t doc;
    const char *source; /* names the config in messages */
    int first_set_node; /* 1-based node index: nodes at or after it were made by --set */
    char *err;
    size_t errlen;
} jt_cfg_doc;

/* The 1-based index of node n in d->doc (nodes live in one array). */
int jt_cfg_node_id(const jt_cfg_doc *d, const yaml_node_t *n);

/* The 1-based line of node n in the file, or 0 for a node made by --set. */
int jt_cfg_line(const jt_cfg_doc *d, const yaml_node_t *n);

/* Writes "<source>:<line>: <key>: <message>" into d->err (line from node n, "--set" for an
 * override's node, omitted when n is NULL) and returns JT_EUSAGE. */
jt_status jt_cfg_fail(const jt_cfg_doc *d, const yaml_node_t *n, const char *key,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Validates the (overridden) document against the schema of DESIGN.md "Config" and fills c
 * (zeroed by the caller; c->source already set). On failure c may be partly filled and
 * allocated: the caller frees it with jt_config_free. (src/config_schema.c) */
jt_status jt_cfg_from_doc(jt_config *c, jt_cfg_doc *d);

#endif
