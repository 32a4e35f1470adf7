/* model.c - builds the graph of blocks and heads from the config and runs forward, loss and
 * backward over it (see model.h for the invariants). */
#include "jtrain/model.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jtrain/batch.h"
#include "jtrain/rng.h"
#include "layers/conv2d.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int add_unique(const char **list, size_t *n, const char *name) {
    for (size_t i = 0; i < *n; i++)
        if (strcmp(list[i], name) == 0) return 0;
    JT_CHECK(*n < JT_MODEL_MAX_ARRAYS, "more than %d data arrays", JT_MODEL_MAX_ARRAYS);
    list[(*n)++] = name;
    return 1;
}

static long find_block_cfg(const jt_config *cfg, const char *name) {
    for (size_t i = 0; i < cfg->n_blocks; i++)
        if (strcmp(cfg->blocks[i].name, name) == 0) return (long)i;
    return -1;
}

jt_status jt_model_open_split(const jt_config *cfg, const char *path, const char *split,
                              int rank, int world, int need_labels, jt_split *out, char *err,
                              size_t errlen) {
    const char *inputs[JT_MODEL_MAX_ARRAYS], *labels[JT_MODEL_MAX_ARRAYS];
    size_t ni = 0, nl = 0;
    for (size_t b = 0; b < cfg->n_blocks; b++)
        if (find_block_cfg(cfg, cfg->blocks[b].input) < 0)
            add_unique(inputs, &ni, cfg->blocks[b].input);
    for (size_t h = 0; h < cfg->n_heads; h++) add_unique(labels, &nl, cfg->heads[h].target);
    jt_status st = jt_data_open(out, path, split, inputs, ni, labels, nl, rank, world, err,
                                errlen);
    if (st != JT_OK || !need_labels || world == 0) return st;
    /* A head without a single labelled row in the whole split (the count is global, so every
     * rank reaches the same verdict) would train on loss 0 and report nothing: refuse it. */
    for (size_t h = 0; h < cfg->n_heads; h++) {
        const jt_array *a = jt_data_find(out, cfg->heads[h].target);
        if (!a || a->n_labelled > 0) continue;
        set_err(err, errlen, "%s: head %s: /%s/%s has no labelled row (all %zu rows are -1), so "
                "the head has nothing to learn from; give it labels, or remove "
                "model.heads.%s from the config", path, cfg->heads[h].name, split, a->name,
                out->n, cfg->heads[h].name);
        jt_data_close(out);
        return JT_EDATA;
    }
    return JT_OK;
}

jt_status jt_model_open_data(const jt_config *cfg, const char *path, const char *split, int rank,
                             int world, jt_split *out, char *err, size_t errlen) {
    int is_train = strcmp(path, cfg->data.file) == 0 && strcmp(split, cfg->data.train) == 0;
    return jt_model_open_split(cfg, path, split, rank, world, is_train, out, err, errlen);
}

static long find_array(const jt_split *s, const char *name) {
    for (size_t a = 0; a < s->n_arrays; a++)
        if (strcmp(s->arrays[a].name, name) == 0) return (long)a;
    return -1;
}

/* Orders blocks so that each comes after its input block and its layers' context blocks.
 * order[k] = config index of the k-th chain. Returns 0, or -1 with err on a cycle. */
static int order_blocks(const jt_config *cfg, size_t *order, char *err, size_t errlen) {
    size_t nb = cfg->n_blocks, done = 0;
    int *placed = jt_xcalloc(nb ? nb : 1, sizeof(int));
    int rc = 0;
    while (done < nb) {
        int progress = 0;
        for (size_t b = 0; b < nb; b++) {
            if (placed[b]) continue;
            const jt_block_cfg *bc = &cfg->blocks[b];
            long dep = find_block_cfg(cfg, bc->input);
            int ready = dep < 0 || placed[dep];
            for (size_t l = 0; ready && l < bc->n_layers; l++) {
                const char *ctx = bc->layers[l].opts.context;
                if (!ctx[0]) continue;
                long c = find_block_cfg(cfg, ctx);
                ready = c >= 0 && placed[c];
            }
            if (!ready) continue;
            placed[b] = 1;
            order[done++] = b;
            progress = 1;
        }
        if (!progress) {
            for (size_t b = 0; b < nb; b++)
                if (!placed[b]) {
                    set_err(err, errlen,
                            "%s:%d: model.blocks.%s: its input or a context block is part of a "
                            "cycle or is not a block",
                            cfg->source, cfg->blocks[b].line, cfg->blocks[b].name);
                    break;
                }
            rc = -1;
            break;
        }
    }
    free(placed);
    return rc;
}

/* Index of the chain called name among the first n chains, or -1. */
static int chain_index(const jt_model *m, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(m->chains[i].name, name) == 0) return (int)i;
    return -1;
}

/* Sets up the layers of chain c (from n_cfg layer configs plus, for heads, the projection). */
static jt_status setup_chain(jt_model *m, jt_chain *c, const jt_config *cfg,
                             const jt_layer_cfg *lc, size_t n_cfg, int line, char *err,
                             size_t errlen) {
    size_t n = n_cfg + (c->is_head && !c->seq_len ? 1 : 0);
    if (c->seq_len && (n_cfg == 0 || strcmp(lc[n_cfg - 1].kind, "attn_decoder") != 0)) {
        set_err(err, errlen, "%s:%d: model.heads.%s: its target is a sequence label, so the "
                "head's last layer must be attn_decoder", cfg->source, line, c->name);
        return JT_EUSAGE;
    }
    c->n_layers = n;
    c->layers = jt_xcalloc(n, sizeof(jt_layer));
    c->ctx_block = jt_xcalloc(n, sizeof(int));
    jt_shape shape = c->in;
    for (size_t i = 0; i < n; i++) {
        const char *kind;
        jt_layer_opts opts;
        int lline = line;
        char name[JT_VIEW_NAME_MAX];
        if (i < n_cfg) {
            kind = lc[i].kind;
            opts = lc[i].opts;
            lline = lc[i].line;
            snprintf(name, sizeof name, "%s.%zu.%s", c->name, i, kind);
            if (c->seq_len && i == n_cfg - 1) { /* the decoder emits the target's tokens */
                opts.vocab = (long)c->n_classes;
                opts.length = (long)c->seq_len;
            }
        } else { /* the projection jtrain adds to every head */
            kind = "dense";
            memset(&opts, 0, sizeof opts);
            opts.units = (long)c->n_classes;
            snprintf(name, sizeof name, "%s.out", c->name);
            if (shape.ndim != 1) {
                char sh[64];
                jt_shape_format(&shape, sh, sizeof sh);
                set_err(err, errlen,
                        "%s:%d: model.heads.%s: the head's input has shape %s; its last layer "
                        "must give a vector (add flatten, pooling or attention_pool)",
                        cfg->source, line, c->name, sh);
                return JT_EUSAGE;
            }
        }
        c->ctx_block[i] = -1;
        jt_shape aux = {0, {0}};
        if (opts.context[0]) {
            int cb = chain_index(m, m->n_blocks, opts.context);
            if (cb < 0) {
                set_err(err, errlen, "%s:%d: %s: context '%s' is not a block", cfg->source,
                        lline, name, opts.context);
                return JT_EUSAGE;
            }
            c->ctx_block[i] = cb;
            aux = m->chains[cb].out;
        }
        char lerr[512];
        jt_status st = jt_layer_setup(&c->layers[i], kind, name, &opts, &shape,
                                      opts.context[0] ? &aux : NULL, m->max_n, &m->params, lerr,
                                      sizeof lerr);
        if (st != JT_OK) {
            set_err(err, errlen, "%s:%d: %s: %s", cfg->source, lline, name, lerr);
            return st;
        }
        shape = c->layers[i].out;
    }
    c->out = shape;
    return JT_OK;
}

/* heads_fed (model.h): a head feeds itself; a block feeds what its consumers feed (chains
 * whose input it is, and layers that attend over it). Consumers come later in chain order. */
static void heads_fed(jt_model *m) {
    for (size_t k = m->n_chains; k-- > 0;) {
        jt_chain *c = &m->chains[k];
        if (c->is_head) c->heads_fed |= (uint32_t)1 << (k - m->n_blocks);
        if (c->src_block >= 0) m->chains[c->src_block].heads_fed |= c->heads_fed;
        for (size_t i = 0; i < c->n_layers; i++)
            if (c->ctx_block[i] >= 0) m->chains[c->ctx_block[i]].heads_fed |= c->heads_fed;
    }
}

/* Each chain's parameters were registered together, so its views are one contiguous range. */
static void chain_ranges(jt_model *m) {
    const jt_params *p = &m->params;
    for (size_t k = 0; k < m->n_chains; k++) {
        jt_chain *c = &m->chains[k];
        c->g_begin = SIZE_MAX;
        c->g_end = 0;
        for (size_t i = 0; i < c->n_layers; i++)
            for (int j = 0; j < c->layers[i].n_params; j++) {
                const jt_view *v = &p->views[c->layers[i].view[j]];
                if (v->offset < c->g_begin) c->g_begin = v->offset;
                if (v->offset + v->size > c->g_end) c->g_end = v->offset + v->size;
            }
        if (c->g_begin == SIZE_MAX) c->g_begin = c->g_end = k ? m->chains[k - 1].g_end : 0;
        JT_CHECK(k == 0 || c->g_begin >= m->chains[k - 1].g_end,
                 "chain %s: parameters not after the previous chain's", c->name);
    }
}

/* Fuses the chain's conv2d -> relu [-> maxpool2d] groups (layers/conv2d.h), once, before its
 * memory is counted and allocated. */
static void fuse_chain(jt_chain *c) {
    for (size_t i = 0; i < c->n_layers; i++) i += jt_layer_fuse(&c->layers[i], c->n_layers - i);
}

/* The last layer of the group that starts at layer i: a fused conv2d ends its group at the relu
 * or the max-pool it absorbed (jt_layer_fuse sets fused_relu and fused_pool), else i. */
static size_t group_last(const jt_chain *c, size_t i) {
    const jt_layer_opts *o = &c->layers[i].opt;
    return o->fused_relu ? i + 1 + (o->fused_pool ? 1 : 0) : i;
}

/* Allocates the chain's buffers for max_n rows (alloc = 1), or only adds up the bytes they take
 * (alloc = 0), into *acts (activations, their gradients, dsrc) and *ws (workspaces): one walk
 * for both, so the memory check counts exactly what is allocated. Some layers share activation
 * and gradient buffers, always with their neighbours (so jt_model_free frees each run once): a
 * fused group shares its last layer's, whose output the group's first layer computes while the
 * others do nothing, and a flatten (not first) shares its input's, so its copy sees x == y and
 * is skipped. The chain loops stay unaware of both. */
static void chain_buffers(jt_chain *c, size_t max_n, int alloc, size_t *acts, size_t *ws) {
    if (alloc) {
        c->act = jt_xcalloc(c->n_layers, sizeof(float *));
        c->dact = jt_xcalloc(c->n_layers, sizeof(float *));
    }
    for (size_t i = 0; i < c->n_layers;) {
        size_t last = group_last(c, i);
        if (i > 0 && last == i && strcmp(c->layers[i].ops->kind, "flatten") == 0) {
            if (alloc) c->act[i] = c->act[i - 1], c->dact[i] = c->dact[i - 1];
        } else {
            size_t sz = jt_size_mul(max_n, jt_shape_size(&c->layers[last].out));
            *acts = jt_size_add(*acts, jt_size_mul(2, jt_alloc_floats_bytes(sz)));
            if (alloc) {
                float *a = jt_alloc_floats(sz), *d = jt_alloc_floats(sz);
                for (size_t j = i; j <= last; j++) c->act[j] = a, c->dact[j] = d;
            }
        }
        for (; i <= last; i++) {
            size_t n = c->layers[i].ws_floats;
            if (n) *ws = jt_size_add(*ws, jt_alloc_floats_bytes(n));
            if (alloc) c->layers[i].ws = n ? jt_alloc_floats(n) : NULL;
        }
    }
    if (c->src_block >= 0) {
        size_t sz = jt_size_mul(max_n, jt_shape_size(&c->in));
        *acts = jt_size_add(*acts, jt_alloc_floats_bytes(sz));
        if (alloc) c->dsrc = jt_alloc_floats(sz);
    }
}

/* "12.3 GiB" (or MiB, KiB); a saturated size is "more than 16 EiB". */
static void fmt_bytes(char *buf, size_t len, size_t b) {
    if (b == SIZE_MAX) snprintf(buf, len, "more than 16 EiB");
    else if (b >= ((size_t)1 << 30)) snprintf(buf, len, "%.1f GiB", (double)b / (double)(1 << 30));
    else if (b >= ((size_t)1 << 20)) snprintf(buf, len, "%.1f MiB", (double)b / (double)(1 << 20));
    else if (b >= 1024) snprintf(buf, len, "%.1f KiB", (double)b / 1024.0);
    else snprintf(buf, len, "%zu bytes", b);
}

/* Before anything large is allocated: adds up what the model will allocate for max_n rows
 * (parameters with their gradients and Adam moments, activations and their gradients,
 * workspaces), the batch buffers of training (jt_batcher_bytes) and, on rank 0, the checkpoint
 * image (ckpt.c builds w, m and v as an HDF5 file in memory, then copies the image out: twice
 * their bytes at the peak), and refuses the model (JT_EUSAGE) when that is more than this
 * process can have (jt_memory_info: MemAvailable or the cgroup's limit; what is already
 * loaded, such as the data shard, is in use there). The estimate is per rank: ranks that share a
 * node each need it. */
static jt_status check_memory(jt_model *m, const jt_config *cfg, const jt_split *split,
                              size_t max_n, char *err, size_t errlen) {
    const jt_params *p = &m->params;
    size_t acts = 0, ws = 0;
    for (size_t k = 0; k < m->n_chains; k++) chain_buffers(&m->chains[k], max_n, 0, &acts, &ws);
    size_t params = jt_size_add(jt_size_mul(3, jt_alloc_floats_bytes(p->total)),
                                jt_alloc_floats_bytes(jt_size_add(p->total, JT_PARAMS_CTRL)));
    /* training's per-head gradients of the blocks that feed several heads (train_mt.h): heads
     * x their parameters, and with PCGrad heads x the longest such block (its scratch) */
    size_t shared = 0, longest = 0;
    for (size_t k = 0; k < m->n_blocks; k++) {
        const jt_chain *c = &m->chains[k];
        if (!jt_chain_feeds_several(c)) continue;
        size_t n = 0;
        for (size_t i = 0; i < c->n_layers; i++)
            for (int j = 0; j < c->layers[i].n_params; j++)
                n = jt_size_add(n, jt_size_add(p->views[c->layers[i].view[j]].size, 16));
        shared = jt_size_add(shared, n);
        if (n > longest) longest = n;
    }
    if (!cfg->train.pcgrad) longest = 0;
    params = jt_size_add(params, jt_size_mul(m->n_heads * sizeof(float), jt_size_add(shared, longest)));
    size_t ckpt = jt_size_mul(2, jt_size_add(jt_size_mul(3 * sizeof(float), p->total),
                                             jt_size_mul(4096, 3 * p->n_views + 16)));
    size_t batches = jt_batcher_bytes(split, (size_t)cfg->train.batch_size, max_n);
    size_t total = jt_size_add(jt_size_add(params, ckpt), jt_size_add(jt_size_add(acts, ws), batches));
    uint64_t avail, phys;
    const char *source;
    jt_memory_info(&avail, &phys, &source);
    if (avail == 0 || total <= avail) return JT_OK;

    /* the layer that takes the most, to say where to cut */
    const jt_layer *big = NULL;
    size_t big_bytes = 0;
    for (size_t k = 0; k < m->n_chains; k++)
        for (size_t i = 0; i < m->chains[k].n_layers; i++) {
            const jt_layer *l = &m->chains[k].layers[i];
            size_t b = jt_size_mul(jt_size_mul(2 * sizeof(float), max_n), jt_shape_size(&l->out));
            b = jt_size_add(b, jt_size_mul(sizeof(float), l->ws_floats));
            for (int j = 0; j < l->n_params; j++)
                b = jt_size_add(b, jt_size_mul(10 * sizeof(float), p->views[l->view[j]].size));
            if (!big || b > big_bytes) big = l, big_bytes = b;
        }
    char s_total[32], s_params[32], s_ckpt[32], s_acts[32], s_ws[32], s_batches[32], s_big[32],
        s_avail[32], s_phys[32];
    fmt_bytes(s_total, sizeof s_total, total);
    fmt_bytes(s_params, sizeof s_params, params);
    fmt_bytes(s_ckpt, sizeof s_ckpt, ckpt);
    fmt_bytes(s_acts, sizeof s_acts, acts);
    fmt_bytes(s_ws, sizeof s_ws, ws);
    fmt_bytes(s_batches, sizeof s_batches, batches);
    fmt_bytes(s_big, sizeof s_big, big_bytes);
    fmt_bytes(s_avail, sizeof s_avail, (size_t)avail);
    fmt_bytes(s_phys, sizeof s_phys, (size_t)phys);
    set_err(err, errlen,
            "%s: the model needs about %s per rank for batch %ld (%zu rows per rank): parameters "
            "%s (weights, gradients, Adam m and v%s) and %s more for a checkpoint on rank 0, "
            "activations %s, workspaces %s, batches %s; the largest layer is %s (%s); this "
            "machine has %s available of %s (%s)",
            cfg->source, s_total, cfg->train.batch_size, max_n, s_params,
            shared ? ", per-head gradients of shared blocks" : "", s_ckpt, s_acts, s_ws,
            s_batches, big ? big->name : "-", s_big, s_avail, s_phys, source);
    return JT_EUSAGE;
}

jt_status jt_model_build(jt_model *m, const jt_config *cfg, const jt_split *split, size_t max_n,
                         char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    jt_params_init(&m->params);
    m->max_n = max_n;
    m->seed = cfg->train.seed;
    m->n_blocks = cfg->n_blocks;
    m->n_heads = cfg->n_heads;
    m->n_chains = cfg->n_blocks + cfg->n_heads;
    m->chains = jt_xcalloc(m->n_chains, sizeof(jt_chain));
    size_t *order = jt_xcalloc(cfg->n_blocks + 1, sizeof(size_t));
    jt_status st = JT_OK;
    if (order_blocks(cfg, order, err, errlen) != 0) {
        st = JT_EUSAGE;
        goto cleanup;
    }
    for (size_t k = 0; k < m->n_chains; k++) {
        jt_chain *c = &m->chains[k];
        const jt_layer_cfg *lc;
        size_t n_lc;
        int line;
        const char *input;
        c->src_array = c->src_block = c->target_array = -1;
        if (k < cfg->n_blocks) {
            const jt_block_cfg *bc = &cfg->blocks[order[k]];
            snprintf(c->name, sizeof c->name, "%s", bc->name);
            lc = bc->layers;
            n_lc = bc->n_layers;
            line = bc->line;
            input = bc->input;
            if (n_lc == 0) {
                set_err(err, errlen, "%s:%d: model.blocks.%s.layers: a block needs at least one "
                        "layer", cfg->source, line, bc->name);
                st = JT_EUSAGE;
                goto cleanup;
            }
        } else {
            const jt_head_cfg *hc = &cfg->heads[k - cfg->n_blocks];
            snprintf(c->name, sizeof c->name, "%s", hc->name);
            c->is_head = 1;
            lc = hc->layers;
            n_lc = hc->n_layers;
            line = hc->line;
            input = hc->input;
            c->weight = hc->weight;
            long t = find_array(split, hc->target);
            if (t < 0 || split->arrays[t].role != JT_ARRAY_LABEL) {
                set_err(err, errlen, "%s:%d: model.heads.%s.target: '%s' is not a label array "
                        "of %s", cfg->source, line, hc->name, hc->target, split->path);
                st = JT_EUSAGE;
                goto cleanup;
            }
            c->target_array = (int)t;
            if (split->arrays[t].shape.ndim == 1) c->seq_len = split->arrays[t].shape.d[0];
            c->n_classes = split->arrays[t].n_classes;
        }
        c->src_block = chain_index(m, m->n_blocks < k ? m->n_blocks : k, input);
        if (c->src_block < 0) {
            long a = find_array(split, input);
            if (c->is_head || a < 0 || split->arrays[a].role != JT_ARRAY_INPUT) {
                set_err(err, errlen, "%s:%d: model.%s.%s.input: '%s' is neither a block nor an "
                        "input array of %s", cfg->source, line, c->is_head ? "heads" : "blocks",
                        c->name, input, split->path);
                st = JT_EUSAGE;
                goto cleanup;
            }
            c->src_array = (int)a;
            c->in = split->arrays[a].shape;
        } else {
            c->in = m->chains[c->src_block].out;
        }
        st = setup_chain(m, c, cfg, lc, n_lc, line, err, errlen);
        if (st != JT_OK) goto cleanup;
        m->n_layers_total += c->n_layers;
    }
    for (size_t k = 0; k < m->n_chains; k++) fuse_chain(&m->chains[k]);
    heads_fed(m);
    m->balance_view = -1;
    if (cfg->train.balance.method == JT_BALANCE_UNCERTAINTY ||
        cfg->train.balance.method == JT_BALANCE_GRADNORM) {
        size_t shape[1] = {m->n_heads};
        m->balance_view = (long)jt_params_add(&m->params,
                                              cfg->train.balance.method == JT_BALANCE_UNCERTAINTY
                                                  ? "balance.log_var" : "balance.weight",
                                              1, shape);
    }
    if ((st = check_memory(m, cfg, split, max_n, err, errlen)) != JT_OK) goto cleanup;
    jt_params_alloc(&m->params);
    chain_ranges(m);
    m->balance_off = m->params.total;
    if (m->balance_view >= 0) { /* log-variances start at 0, gradnorm weights at the config's */
        const jt_view *bv = &m->params.views[m->balance_view];
        m->balance_off = bv->offset;
        for (size_t h = 0; h < m->n_heads; h++)
            m->params.w[bv->offset + h] = cfg->train.balance.method == JT_BALANCE_GRADNORM
                                              ? (float)m->chains[m->n_blocks + h].weight : 0.0f;
    }
    size_t li = 0, acts = 0, ws = 0;
    for (size_t k = 0; k < m->n_chains; k++) {
        jt_chain *c = &m->chains[k];
        chain_buffers(c, max_n, 1, &acts, &ws);
        for (size_t i = 0; i < c->n_layers; i++, li++) {
            jt_layer_bind(&c->layers[i], &m->params);
            if (c->layers[i].ops->init) {
                jt_rng r;
                jt_rng_seed(&r, m->seed, JT_RNG_INIT, li, 0, 0);
                c->layers[i].ops->init(&c->layers[i], &r);
            }
        }
    }
cleanup:
    free(order);
    if (st != JT_OK) jt_model_free(m);
    return st;
}

static const float *chain_src(const jt_model *m, const jt_chain *c, const void *const *arrays) {
    if (c->src_block >= 0) {
        const jt_chain *s = &m->chains[c->src_block];
        return s->act[s->n_layers - 1];
    }
    return arrays[c->src_array];
}

static void make_ctx(const jt_model *m, const jt_chain *c, size_t i, size_t layer_index,
                     int train, uint64_t step, const uint64_t *rows, const void *const *arrays,
                     jt_ctx *ctx) {
    memset(ctx, 0, sizeof *ctx);
    ctx->train = train;
    ctx->seed = m->seed;
    ctx->step = step;
    ctx->rows = rows;
    ctx->layer_index = layer_index;
    if (c->seq_len && c->target_array >= 0) ctx->tokens = arrays[c->target_array];
    if (c->ctx_block[i] >= 0) {
        const jt_chain *src = &m->chains[c->ctx_block[i]];
        ctx->aux = src->act[src->n_layers - 1];
        ctx->daux = src->dact[src->n_layers - 1];
    }
}

void jt_model_forward(jt_model *m, const void *const *arrays, const uint64_t *rows, size_t n,
                      int train, uint64_t step) {
    JT_CHECK(n <= m->max_n, "batch of %zu rows exceeds max_n %zu", n, m->max_n);
    size_t li = 0;
    for (size_t k = 0; k < m->n_chains; k++) {
        jt_chain *c = &m->chains[k];
        const float *x = chain_src(m, c, arrays);
        for (size_t i = 0; i < c->n_layers; i++, li++) {
            jt_ctx ctx;
            make_ctx(m, c, i, li, train, step, rows, arrays, &ctx);
            c->layers[i].ops->forward(&c->layers[i], x, c->act[i], n, &ctx);
            x = c->act[i];
        }
    }
}

void jt_model_loss(jt_model *m, const void *const *arrays, size_t n, const uint64_t *labelled,
                   int grad, jt_xent_stats *stats) {
    for (size_t h = 0; h < m->n_heads; h++) {
        jt_chain *c = &m->chains[m->n_blocks + h];
        const int32_t *y = arrays[c->target_array];
        uint64_t cnt = labelled ? labelled[h] : 0;
        float scale = cnt ? (float)(c->weight / (double)cnt) : 0.0f;
        float *dlogits = grad ? c->dact[c->n_layers - 1] : NULL;
        const float *logits = c->act[c->n_layers - 1];
        if (!c->seq_len) {
            stats[h] = jt_softmax_xent(logits, y, n, c->n_classes, scale, dlogits);
            continue;
        }
        /* a sequence head: one softmax cross-entropy per token, -1 tokens masked */
        size_t L = c->seq_len, V = c->n_classes;
        stats[h] = jt_softmax_xent(logits, y, n * L, V, scale, dlogits);
        for (size_t r = 0; r < n; r++) {
            size_t labelled_tokens = 0, right = 0;
            for (size_t t = 0; t < L; t++) {
                int32_t want = y[r * L + t];
                if (want < 0) continue;
                const float *z = logits + (r * L + t) * V;
                size_t best = 0;
                for (size_t v = 1; v < V; v++)
                    if (z[v] > z[best]) best = v;
                labelled_tokens++;
                right += best == (size_t)want;
            }
            if (labelled_tokens) {
                stats[h].seq_rows++;
                stats[h].seq_exact += right == labelled_tokens;
            }
        }
    }
}

void jt_model_backward(jt_model *m, const void *const *arrays, const uint64_t *rows, size_t n,
                       uint64_t step, jt_chain_done_fn done, void *arg) {
    jt_model_backward_heads(m, arrays, rows, n, step, UINT32_MAX, done, arg);
}

void jt_model_backward_heads(jt_model *m, const void *const *arrays, const uint64_t *rows,
                             size_t n, uint64_t step, uint32_t head_mask, jt_chain_done_fn done,
                             void *arg) {
    /* Blocks receive the sum of their consumers' gradients: start from zero. */
    for (size_t k = 0; k < m->n_blocks; k++) {
        jt_chain *c = &m->chains[k];
        memset(c->dact[c->n_layers - 1], 0,
               n * jt_shape_size(&c->layers[c->n_layers - 1].out) * sizeof(float));
    }
    size_t li = m->n_layers_total;
    for (size_t k = m->n_chains; k-- > 0;) {
        jt_chain *c = &m->chains[k];
        if (!(c->heads_fed & head_mask)) {
            li -= c->n_layers;
            continue;
        }
        const float *src = chain_src(m, c, arrays);
        for (size_t i = c->n_layers; i-- > 0;) {
            li--;
            jt_ctx ctx;
            make_ctx(m, c, i, li, 1, step, rows, arrays, &ctx);
            const float *x = i ? c->act[i - 1] : src;
            float *dx = i ? c->dact[i - 1] : c->dsrc; /* dsrc is NULL for data inputs */
            c->layers[i].ops->backward(&c->layers[i], x, c->act[i], c->dact[i], dx, n, &ctx);
        }
        if (c->src_block >= 0) {
            jt_chain *s = &m->chains[c->src_block];
            float *d = s->dact[s->n_layers - 1];
            size_t len = n * jt_shape_size(&c->in);
            for (size_t j = 0; j < len; j++) d[j] += c->dsrc[j];
        }
        if (done) done(arg, k);
    }
}

uint64_t jt_model_checksum(const jt_model *m) {
    uint64_t h = 0xcbf29ce484222325ULL;
    const unsigned char *b = (const unsigned char *)m->params.w;
    size_t len = m->params.total * sizeof(float);
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void jt_model_print_summary(const jt_model *m, FILE *out) {
    for (size_t k = 0; k < m->n_chains; k++) {
        const jt_chain *c = &m->chains[k];
        char in[64];
        jt_shape_format(&c->in, in, sizeof in);
        const char *src = c->src_block >= 0 ? m->chains[c->src_block].name : "(data)";
        fprintf(out, "%s %s <- %s %s", c->is_head ? "head " : "block", c->name, src, in);
        if (c->is_head && c->seq_len)
            fprintf(out, "  weight %g, sequences of %zu tokens over %zu", c->weight, c->seq_len,
                    c->n_classes);
        else if (c->is_head)
            fprintf(out, "  weight %g, %zu classes", c->weight, c->n_classes);
        fprintf(out, "\n");
        for (size_t i = 0; i < c->n_layers; i++) {
            const jt_layer *l = &c->layers[i];
            size_t np = 0;
            for (int p = 0; p < l->n_params; p++) np += m->params.views[l->view[p]].size;
            char sh[64];
            jt_shape_format(&l->out, sh, sizeof sh);
            fprintf(out, "  %-32s %-20s %10zu params\n", l->name, sh, np);
        }
    }
    fprintf(out, "total parameters: %zu\n", jt_params_count(&m->params));
}

void jt_model_free(jt_model *m) {
    if (!m) return;
    for (size_t k = 0; m->chains && k < m->n_chains; k++) {
        jt_chain *c = &m->chains[k];
        for (size_t i = 0; c->layers && i < c->n_layers; i++) {
            int shared = i + 1 < c->n_layers && c->act && c->act[i] == c->act[i + 1];
            if (c->act && !shared) jt_free_aligned(c->act[i]);
            if (c->dact && !shared) jt_free_aligned(c->dact[i]);
            jt_free_aligned(c->layers[i].ws);
        }
        free(c->act);
        free(c->dact);
        jt_free_aligned(c->dsrc);
        free(c->layers);
        free(c->ctx_block);
    }
    free(m->chains);
    jt_params_free(&m->params);
    memset(m, 0, sizeof *m);
}
