/* loss.h - fused softmax cross-entropy with masked (-1) labels.
 *
 * The loss of a head is a sum over labelled samples divided by the GLOBAL number of labelled
 * samples in the batch (docs/design.md "N-invariant global batches"), so `scale` =
 * weight / global_labelled is given by the caller. */
#ifndef JTRAIN_LOSS_H
#define JTRAIN_LOSS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double loss_sum;   /* sum over labelled rows of -log softmax(logits)[label] (unscaled) */
    size_t labelled;   /* rows with label >= 0 */
    size_t correct;    /* labelled rows whose argmax equals the label */
    size_t seq_rows;   /* sequence heads (set by the model): samples with a labelled token */
    size_t seq_exact;  /* ... whose every labelled token is predicted right */
} jt_xent_stats;

/* logits: (n, C); labels: (n), -1 = masked, else in [0, C). dlogits (may be NULL): (n, C),
 * OVERWRITTEN with scale * (softmax - onehot) on labelled rows and 0 on masked rows.
 * Labels outside [-1, C) are an internal error (data are validated on load). */
jt_xent_stats jt_softmax_xent(const float *logits, const int32_t *labels, size_t n, size_t C,
                              float scale, float *dlogits);

#endif
