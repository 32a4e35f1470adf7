/* layers/conv2d.h - private to src/ (and the unit tests): what the model and the tests need to
 * know about conv2d beyond its ops table: the build-time fusion of conv2d -> relu [-> maxpool2d]
 * groups, and which lowering a conv2d layer uses.
 *
 * Fusion: where a chain has conv2d -> relu, the conv applies the relu in the epilogue that adds
 * its bias; when a maxpool2d whose stride equals its window follows, the max-pool too, so the
 * full-size conv and relu maps are never written, read back or zeroed. The results are bitwise
 * those of the three layers run one after the other (relu is exact; a pool window's maximum is
 * its first maximum in window order, as maxpool2d's; the gradients are built from the same
 * values in the same order). */
#ifndef JTRAIN_LAYERS_CONV2D_H
#define JTRAIN_LAYERS_CONV2D_H

#include <stddef.h>

#include "jtrain/layer.h"

/* Fuses the group that starts at l[0], where l points at a chain's layer and n >= 1 layers
 * (l[0] .. l[n-1]) follow in the chain, all set up and bound, workspaces not yet allocated.
 * Returns k, the number of layers after l[0] it absorbed: 0 (nothing fused: l[0] is not a
 * conv2d followed by relu), 1 (relu) or 2 (relu and a maxpool2d with stride = size and
 * size^2 <= 255). When k > 0:
 *   - l[0]'s forward(x, y) computes the group's output, of shape l[k].out, from l[0]'s input;
 *     its backward(x, y, dy, dx) takes that output and its gradient;
 *   - l[1..k]'s forward and backward do nothing (their kinds stay "relu", "maxpool2d");
 *   - l[0].ws_floats becomes what the fused kernel needs, l[1..k].ws_floats 0;
 * and the caller must give l[0..k] one activation buffer and one gradient buffer, sized for
 * l[k].out, so that a chain loop calling every layer passes each of them the group's. */
size_t jt_layer_fuse(jt_layer *l, size_t n);

/* How a conv2d layer (fused or not) computes, for tests that must cover each path. */
typedef struct {
    int direct;       /* 1: the direct 3x3 kernel (no im2col, no sgemm) */
    size_t block;     /* im2col path: samples per im2col block and sgemm (0 when direct) */
    int keep_columns; /* im2col path: forward's columns kept for backward (not rebuilt) */
    int relu;         /* fused: relu applied in the epilogue */
    size_t pool;      /* fused: max-pool window (= stride) applied in the epilogue, or 0 */
    int pool_flat;    /* fused 2x2 pool over even product rows: one flat loop per plane */
} jt_conv2d_lowering;

/* The lowering of conv2d layer l (set up, max_n as given to setup). Fatal if l is no conv2d. */
jt_conv2d_lowering jt_conv2d_lowering_of(const jt_layer *l);

#endif
