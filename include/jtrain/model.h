/* model.h - a model is a small graph of named chains of layers, built from the config:
 * blocks (input: a data set array or another block) and heads (input: a block; extra layers,
 * then a dense projection to the target's classes that jtrain adds, and a softmax
 * cross-entropy loss on a label array, with a weight). A head whose target is a sequence label
 * [N, L] ends with an attn_decoder layer instead (its logits are (L, vocab); the model sets its
 * vocab and length and feeds it the target tokens for teacher forcing) and a per-token loss.
 * Architectures 1-3 of docs/design.md are configs of this one graph.
 *
 * Invariants: all memory (parameters, activations, gradients, workspaces) is sized for max_n
 * rows when the model is built; forward, loss and backward never allocate. Gradients are
 * zeroed by the caller once per step; every layer's backward adds into them, and a block that
 * feeds several consumers receives the sum of their gradients. */
#ifndef JTRAIN_MODEL_H
#define JTRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "jtrain/common.h"
#include "jtrain/config.h"
#include "jtrain/data.h"
#include "jtrain/layer.h"
#include "jtrain/loss.h"
#include "jtrain/params.h"

#define JT_MODEL_MAX_ARRAYS 16

typedef struct {
    char name[JT_NAME_MAX];
    int is_head;
    int src_array;        /* index into the split's arrays, or -1 */
    int src_block;        /* index of the source chain, or -1 */
    jt_layer *layers;
    int *ctx_block;       /* per layer: chain whose output is the layer's context, or -1 */
    size_t n_layers;
    jt_shape in, out;
    float **act;          /* act[i]: (max_n, layers[i].out); a fused group (conv2d -> relu ->
                           * maxpool2d) and a flatten share their neighbours' buffers (model.c,
                           * alloc_chain), so act[i] may be the group's last output */
    float **dact;         /* dact[i]: gradient with respect to act[i], shared alike */
    float *dsrc;          /* (max_n, in): the first layer's dx before it is added to src_block */
    /* heads only */
    int target_array;     /* index into the split's arrays */
    double weight;
    size_t n_classes;     /* classes, or the vocabulary of a sequence target */
    size_t seq_len;       /* sequence heads: L of the target [N, L]; 0 for class targets */
    /* The chain's parameters are one contiguous range [g_begin, g_end) of the flat buffers
     * (floats; g_begin == g_end when it has none): its gradient slice is final once the chain's
     * backward is done, since consumers run backward before their sources. */
    size_t g_begin, g_end;
    /* Bit h set: head h is downstream of this chain (through inputs or attention context), so
     * its loss reaches the chain's parameters. A block with two or more bits "feeds several
     * heads" (multi-task telemetry, PCGrad, GradNorm). Heads have only their own bit. */
    uint32_t heads_fed;
} jt_chain;

/* 1 if two or more heads' losses reach chain c's parameters (heads_fed): a block "that feeds
 * several heads", whose per-head gradients training keeps apart (train_mt.h). */
static inline int jt_chain_feeds_several(const jt_chain *c) {
    return (c->heads_fed & (c->heads_fed - 1)) != 0;
}

/* Called by jt_model_backward when chain k's gradient slice is final (k runs from the last
 * chain down to 0), e.g. to start its allreduce while the other chains compute. */
typedef void (*jt_chain_done_fn)(void *arg, size_t k);

typedef struct {
    jt_chain *chains;     /* blocks in dependency order, then heads in config order */
    size_t n_chains, n_blocks, n_heads;
    jt_params params;
    size_t max_n;
    size_t n_layers_total;
    uint64_t seed;
    /* Loss balancing's trained values (train.balance uncertainty: log-variances s_i, gradnorm:
     * the weights w_i), one per head, registered as the view "balance.log_var" or
     * "balance.weight" after every chain's parameters (so they live in w, g, m, v and every
     * checkpoint), or -1. balance_off is its offset in the buffers (= params.total when none):
     * the model's own parameters are [0, balance_off). */
    long balance_view;
    size_t balance_off;
} jt_model;

/* Opens split `split` of the data set at path with the arrays cfg's model needs (block inputs
 * that are not blocks, head targets) and reads rank's shard of them (world 0: metadata only;
 * see jt_data_open). With need_labels (and world > 0), a head whose target has no labelled row
 * in the whole split (all -1) is JT_EDATA naming the head and the array: it
 * could not learn (the count is over the whole split, so every rank agrees). */
jt_status jt_model_open_split(const jt_config *cfg, const char *path, const char *split,
                              int rank, int world, int need_labels, jt_split *out, char *err,
                              size_t errlen);
/* jt_model_open_split with need_labels when (path, split) is cfg's training data
 * (data.file, data.train): what training opens; the eval split may lack labels. */
jt_status jt_model_open_data(const jt_config *cfg, const char *path, const char *split, int rank,
                             int world, jt_split *out, char *err, size_t errlen);

/* Builds the model for cfg over the arrays of split (metadata is enough), with room for max_n
 * rows per pass, and initialises parameters from cfg->train.seed (He/Glorot). JT_EUSAGE with a
 * message for graphs that cannot be built (unknown input, cycle, shape mismatch, bad layer, a
 * layer whose sizes overflow), and for models that do not fit: before allocating anything large
 * it adds up the bytes of parameters (w, g, m, v), activations and their gradients for max_n
 * rows, workspaces, training's batch buffers and per-head gradients of the blocks that feed
 * several heads (train_mt.h), and rank 0's checkpoint image, and refuses when that
 * is more than this process can have (jt_memory_info), naming the estimate, its parts, the
 * largest layer and the machine's memory. */
jt_status jt_model_build(jt_model *m, const jt_config *cfg, const jt_split *split, size_t max_n,
                         char *err, size_t errlen);

/* Forward pass of n <= max_n rows. arrays[a] points at n rows of split array a (floats for
 * inputs). rows: the rows' global indices (dropout streams). train: dropout on. */
void jt_model_forward(jt_model *m, const void *const *arrays, const uint64_t *rows, size_t n,
                      int train, uint64_t step);

/* Loss of each head on the last forward pass. labelled[h] is head h's number of labelled rows
 * in the GLOBAL batch (0 = compute no gradient); the head's gradient is scaled by
 * weight / labelled[h]. stats[h] receives the local sums. With grad = 0 no gradient is kept. */
void jt_model_loss(jt_model *m, const void *const *arrays, size_t n, const uint64_t *labelled,
                   int grad, jt_xent_stats *stats);

/* Backward pass of the last forward/loss: ADDS into m->params.g. done (may be NULL) is called
 * with arg as each chain's gradient slice becomes final. */
void jt_model_backward(jt_model *m, const void *const *arrays, const uint64_t *rows, size_t n,
                       uint64_t step, jt_chain_done_fn done, void *arg);

/* jt_model_backward restricted to the chains whose heads_fed has a bit of head_mask: the
 * gradient of the loss of those heads only (the other heads' loss gradients are ignored and
 * their chains skipped; blocks feeding none of them are skipped too). Head h alone
 * (mask 1 << h) gives head h's gradient; the passes of all heads add up to jt_model_backward's
 * result (up to rounding: a block then sums its consumers' parameter gradients instead of
 * their output gradients). Calls done for every chain it runs. */
void jt_model_backward_heads(jt_model *m, const void *const *arrays, const uint64_t *rows,
                             size_t n, uint64_t step, uint32_t head_mask, jt_chain_done_fn done,
                             void *arg);

/* FNV-1a 64 of the parameter buffer's bytes (ranks compare it to prove identical replicas). */
uint64_t jt_model_checksum(const jt_model *m);

/* Prints blocks, heads, layers, output shapes and parameter counts. */
void jt_model_print_summary(const jt_model *m, FILE *out);

/* NULL-safe. */
void jt_model_free(jt_model *m);

#endif
