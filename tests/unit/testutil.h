/* testutil.h - helpers shared by the cmocka unit tests: finite-difference gradient checks and a
 * standalone layer under test. */
#ifndef JTRAIN_TESTUTIL_H
#define JTRAIN_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "jtrain/layer.h"
#include "jtrain/rng.h"

/* Fills x with values uniform in [lo, hi). */
void tu_fill_uniform(float *x, size_t n, float lo, float hi, jt_rng *rng);
/* Max of |a-b| / max(1e-3, |a|+|b|) over n entries. */
double tu_max_rel_err(const double *a, const double *b, size_t n);

/* ---- finite-difference gradient check of one layer (tu_gradcheck_*) ----
 *
 * Builds a layer of the given kind (jt_layer_setup on the per-sample shape `in`, max_n = n + 2
 * so kinds that confuse n with max_n are caught), initialises its parameters with ops->init
 * and adds uniform noise in [-0.1, 0.1) to every parameter (so zero biases are exercised too),
 * fills the input (and the context, if cfg->aux.ndim > 0) with random values, and compares the
 * analytic gradients of the scalar L = sum(y * R) (R a fixed random tensor, L accumulated in
 * double) with central differences (L(p + eps) - L(p - eps)) / (2 eps) for the input, every
 * parameter view and the context. Each entry's error is |a - f| / max(|a| + |f|, cfg->floor).
 * It also checks the layer contracts: backward OVERWRITES dx (dx is pre-filled with garbage)
 * and ADDS into dW / daux (a second backward must double them).
 * Runs with ctx: seed 7, step 3, rows 100 + 7 i, layer_index 2, train = cfg->train. */
typedef struct {
    double eps;        /* central-difference step; 0 means 1e-2 */
    double tol;        /* tu_gradcheck_layer fails above this max error; 0 means 1e-2 */
    double floor;      /* denominator floor of the relative error; 0 means 1e-2 */
    float lo, hi;      /* inputs uniform in [lo, hi); both 0 means [-1, 1) */
    float min_abs;     /* push inputs with |x| < min_abs out to +-min_abs (kinks at 0); 0 = off */
    int distinct;      /* 1: inputs are a shuffled even grid over [lo, hi] (no near ties: max) */
    int train;         /* ctx->train */
    jt_shape aux;      /* context shape for cross-attention kinds; ndim 0 = none */
    uint64_t seed;     /* for inputs, parameters and R; 0 means 1 */
    size_t max_checks; /* at most this many entries per tensor, spread evenly; 0 = all */
} tu_gradcheck_cfg;

/* Result of a check: the worst errors of the input, all parameters and the context gradients,
 * and whether the overwrite/accumulate contracts held. */
typedef struct {
    double err_dx, err_dw, err_daux;
    int dx_overwritten, dw_accumulates;
    size_t n_params;
} tu_gradcheck_result;

/* Runs the check with the ops table itself (lets a test hand in a deliberately broken kind).
 * Fails the cmocka test if setup fails; does not judge the errors. */
tu_gradcheck_result tu_gradcheck_ops(const jt_layer_ops *ops, const jt_layer_opts *opts,
                                     const jt_shape *in, size_t n, const tu_gradcheck_cfg *cfg);

/* The usual entry point: looks the kind up in the registry, runs tu_gradcheck_ops and
 * asserts (cmocka) that every error is below cfg->tol and the contracts held. cfg may be
 * NULL (all defaults). Returns the worst error seen. Example for a recurrent kind:
 *   jt_layer_opts o = {.units = 5, .return_sequences = 1};
 *   jt_shape in = {2, {4, 3}};                  // (T, F)
 *   tu_gradcheck_layer("gru", &o, &in, 3, NULL);
 */
double tu_gradcheck_layer(const char *kind, const jt_layer_opts *opts, const jt_shape *in,
                          size_t n, const tu_gradcheck_cfg *cfg);

/* Makes a shape: tu_shape(3, (size_t[]){2, 5, 5}). */
jt_shape tu_shape(int ndim, const size_t *d);

/* ---- a standalone layer under test (tu_layer_*) ---- */

/* One built layer with its own parameters and workspace. */
typedef struct {
    jt_layer l;
    jt_params p;
} tu_layer;

/* Builds t: jt_layer_setup(kind, name, o, &in, aux, max_n) into t->p (fails the cmocka test
 * with setup's message on error), allocates and binds the parameters, allocates the workspace
 * (ws_floats, at least 1 float), runs ops->init (if any) with an rng seeded
 * (seed, JT_RNG_INIT, 0, 0, 0), then adds 0.2 * (u - 0.5), u uniform from that same rng, to
 * every parameter in order, so zero biases are exercised too. Release with tu_layer_free. */
void tu_layer_build(tu_layer *t, const char *kind, const char *name, const jt_layer_opts *o,
                    jt_shape in, const jt_shape *aux, size_t max_n, uint64_t seed);
/* Frees the workspace and the parameters of t. */
void tu_layer_free(tu_layer *t);
/* The weights of parameter view "<layer name>.<pname>" of t; fails the test if there is none. */
const float *tu_layer_param(const tu_layer *t, const char *pname);
/* n floats from jt_alloc_floats (free with jt_free_aligned), uniform in [-1, 1) from an rng
 * seeded (seed, JT_RNG_TEST, 4, 5, 6). */
float *tu_rand_floats(size_t n, uint64_t seed);

#endif
