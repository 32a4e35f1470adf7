/* config_doc.h - private to src/config*.c: the parsed YAML document of a config, with where
 * each node came from, handed from the loader (config.c) to the schema check (config_schema.c),
 * which words every message of a document's content in one format:
 *
 *     <source>:<line>: <dotted.key>: <what was expected>, found <what was found>
 *
 * where <line> is the 1-based line in the file, or "--set" for a node an override created.
 * config.c only calls jt_cfg_from_doc; nothing in config_schema.c calls back into config.c. */
#ifndef JTRAIN_CONFIG_DOC_H
#define JTRAIN_CONFIG_DOC_H

#include <stddef.h>
#include <yaml.h>

#include "jtrain/config.h"

typedef struct {
    yaml_document_t doc;
    const char *source; /* names the config in messages */
    int first_set_node; /* 1-based node index: nodes at or after it were made by --set */
    size_t n_layers;    /* layers of the blocks and heads checked so far */
    char *err;
    size_t errlen;
} jt_cfg_doc;

/* Validates the (overridden) document against the schema of docs/config.md and fills c
 * (zeroed by the caller; c->source already set). On failure c may be partly filled and
 * allocated: the caller frees it with jt_config_free. (src/config_schema.c) */
jt_status jt_cfg_from_doc(jt_config *c, jt_cfg_doc *d);

#endif
