/* testutil.c - helpers shared by the unit tests (see testutil.h). */
#include "testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

void tu_fill_uniform(float *x, size_t n, float lo, float hi, jt_rng *rng) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * jt_rng_uniform(rng);
}

double tu_max_rel_err(const double *a, const double *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]) / fmax(1e-3, fabs(a[i]) + fabs(b[i]));
        if (d > worst) worst = d;
    }
    return worst;
}

/* ---- finite-difference gradient check ---- */


jt_shape tu_shape(int ndim, const size_t *d) {
    jt_shape s;
    memset(&s, 0, sizeof s);
    s.ndim = ndim;
    for (int i = 0; i < ndim; i++) s.d[i] = d[i];
    return s;
}

/* Everything one gradient check needs, allocated once. */
typedef struct {
    const jt_layer_ops *ops;
    jt_layer l;
    jt_params p;
    size_t n, in_sz, out_sz, aux_sz;
    float *x, *y, *R, *aux, *daux, *dx;
    uint64_t rows[64];
    jt_ctx ctx;
} gc_state;

/* L = sum(y * R), accumulated in double. */
static double gc_objective(gc_state *s) {
    s->ops->forward(&s->l, s->x, s->y, s->n, &s->ctx);
    double L = 0.0;
    for (size_t i = 0; i < s->n * s->out_sz; i++) L += (double)s->y[i] * (double)s->R[i];
    return L;
}

/* Compares analytic grad[0..m) of tensor t with central differences; returns the worst error. */
static double gc_compare(gc_state *s, float *t, const double *grad, size_t m,
                         const tu_gradcheck_cfg *c) {
    size_t stride = 1;
    if (c->max_checks && m > c->max_checks) stride = (m + c->max_checks - 1) / c->max_checks;
    double worst = 0.0;
    for (size_t k = 0; k < m; k += stride) {
        float v = t[k];
        float vp = (float)((double)v + c->eps), vm = (float)((double)v - c->eps);
        t[k] = vp;
        double Lp = gc_objective(s);
        t[k] = vm;
        double Lm = gc_objective(s);
        t[k] = v;
        double fd = (Lp - Lm) / ((double)vp - (double)vm);
        double e = fabs(grad[k] - fd) / fmax(fabs(grad[k]) + fabs(fd), c->floor);
        if (e > worst) worst = e;
    }
    return worst;
}

static void gc_fill(float *x, size_t m, const tu_gradcheck_cfg *c, jt_rng *rng) {
    if (c->distinct && m > 1) {
        uint64_t *perm = malloc(m * sizeof *perm);
        assert_non_null(perm);
        jt_rng_permutation(rng, perm, m);
        for (size_t i = 0; i < m; i++)
            x[i] = c->lo + (c->hi - c->lo) * (float)perm[i] / (float)(m - 1);
        free(perm);
    } else {
        tu_fill_uniform(x, m, c->lo, c->hi, rng);
    }
    for (size_t i = 0; c->min_abs > 0 && i < m; i++)
        if (fabsf(x[i]) < c->min_abs) x[i] = x[i] < 0 ? -c->min_abs : c->min_abs;
}

tu_gradcheck_result tu_gradcheck_ops(const jt_layer_ops *ops, const jt_layer_opts *opts,
                                     const jt_shape *in, size_t n, const tu_gradcheck_cfg *cfg) {
    tu_gradcheck_cfg c;
    memset(&c, 0, sizeof c);
    if (cfg) c = *cfg;
    if (c.eps == 0) c.eps = 1e-2;
    if (c.tol == 0) c.tol = 1e-2;
    if (c.floor == 0) c.floor = 1e-2;
    if (c.lo == 0 && c.hi == 0) c.lo = -1.0f, c.hi = 1.0f;
    if (c.seed == 0) c.seed = 1;
    assert_true(n >= 1 && n <= 64);

    gc_state *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->ops = ops;
    s->n = n;
    jt_params_init(&s->p);
    jt_layer *l = &s->l;
    l->ops = ops;
    snprintf(l->name, sizeof l->name, "blk.0.%s", ops->kind);
    if (opts) l->opt = *opts;
    l->in = *in;
    l->aux = c.aux;
    l->max_n = n + 2;
    char err[512] = "";
    jt_status st = ops->setup(l, &s->p, err, sizeof err);
    if (st != JT_OK) fail_msg("setup of %s failed: %s", ops->kind, err);
    jt_params_alloc(&s->p);
    jt_layer_bind(l, &s->p);
    l->ws = jt_alloc_floats(l->ws_floats);

    jt_rng rng;
    jt_rng_seed(&rng, c.seed, JT_RNG_TEST, 11, 0, 0);
    if (ops->init) ops->init(l, &rng);
    for (size_t v = 0; v < s->p.n_views; v++)
        for (size_t k = 0; k < s->p.views[v].size; k++)
            s->p.w[s->p.views[v].offset + k] += 0.2f * (jt_rng_uniform(&rng) - 0.5f);

    s->in_sz = jt_shape_size(in);
    s->out_sz = jt_shape_size(&l->out);
    s->aux_sz = c.aux.ndim > 0 ? jt_shape_size(&c.aux) : 0;
    s->x = jt_alloc_floats(n * s->in_sz);
    s->dx = jt_alloc_floats(n * s->in_sz);
    s->y = jt_alloc_floats(n * s->out_sz);
    s->R = jt_alloc_floats(n * s->out_sz);
    s->aux = jt_alloc_floats(n * s->aux_sz);
    s->daux = jt_alloc_floats(n * s->aux_sz);
    gc_fill(s->x, n * s->in_sz, &c, &rng);
    gc_fill(s->aux, n * s->aux_sz, &c, &rng);
    tu_fill_uniform(s->R, n * s->out_sz, -1.0f, 1.0f, &rng);
    for (size_t i = 0; i < n; i++) s->rows[i] = 100 + 7 * i;
    s->ctx.train = c.train;
    s->ctx.seed = 7;
    s->ctx.step = 3;
    s->ctx.rows = s->rows;
    s->ctx.layer_index = 2;
    s->ctx.aux = s->aux_sz ? s->aux : NULL;
    s->ctx.daux = s->aux_sz ? s->daux : NULL;

    /* Analytic gradients: backward twice, dx pre-filled with 0 then with garbage. */
    size_t np = s->p.total, nx = n * s->in_sz, na = n * s->aux_sz;
    double *gw = calloc(np + 1, sizeof *gw), *gx = calloc(nx + 1, sizeof *gx);
    double *ga = calloc(na + 1, sizeof *ga);
    assert_true(gw && gx && ga);
    gc_objective(s);
    memset(s->p.g, 0, np * sizeof(float));
    memset(s->dx, 0, nx * sizeof(float));
    ops->backward(l, s->x, s->y, s->R, s->dx, n, &s->ctx);
    for (size_t k = 0; k < np; k++) gw[k] = s->p.g[k];
    for (size_t k = 0; k < nx; k++) gx[k] = s->dx[k];
    for (size_t k = 0; k < na; k++) ga[k] = s->daux[k];

    tu_gradcheck_result res;
    memset(&res, 0, sizeof res);
    res.n_params = s->p.n_views;
    gc_objective(s);
    for (size_t k = 0; k < nx; k++) s->dx[k] = 123.0f;
    ops->backward(l, s->x, s->y, s->R, s->dx, n, &s->ctx);
    res.dx_overwritten = 1;
    for (size_t k = 0; k < nx; k++)
        if (fabs(s->dx[k] - gx[k]) > 1e-6 * (1 + fabs(gx[k]))) res.dx_overwritten = 0;
    res.dw_accumulates = 1;
    for (size_t k = 0; k < np; k++)
        if (fabs(s->p.g[k] - 2 * gw[k]) > 1e-5 * (1 + fabs(gw[k]))) res.dw_accumulates = 0;
    for (size_t k = 0; k < na; k++)
        if (fabs(s->daux[k] - 2 * ga[k]) > 1e-5 * (1 + fabs(ga[k]))) res.dw_accumulates = 0;

    res.err_dx = gc_compare(s, s->x, gx, nx, &c);
    for (size_t v = 0; v < s->p.n_views; v++) {
        size_t off = s->p.views[v].offset;
        double e = gc_compare(s, s->p.w + off, gw + off, s->p.views[v].size, &c);
        if (e > res.err_dw) res.err_dw = e;
    }
    if (na) res.err_daux = gc_compare(s, s->aux, ga, na, &c);

    free(gw);
    free(gx);
    free(ga);
    jt_free_aligned(s->x);
    jt_free_aligned(s->dx);
    jt_free_aligned(s->y);
    jt_free_aligned(s->R);
    jt_free_aligned(s->aux);
    jt_free_aligned(s->daux);
    jt_free_aligned(l->ws);
    jt_params_free(&s->p);
    free(s);
    return res;
}

double tu_gradcheck_layer(const char *kind, const jt_layer_opts *opts, const jt_shape *in,
                          size_t n, const tu_gradcheck_cfg *cfg) {
    const jt_layer_ops *ops = jt_layer_find(kind);
    if (!ops) fail_msg("layer kind %s is not registered", kind);
    double tol = cfg && cfg->tol > 0 ? cfg->tol : 1e-2;
    tu_gradcheck_result r = tu_gradcheck_ops(ops, opts, in, n, cfg);
    if (!(r.err_dx < tol && r.err_dw < tol && r.err_daux < tol && r.dx_overwritten &&
          r.dw_accumulates))
        fail_msg("gradcheck %s: err dx %.3g dW %.3g daux %.3g (tol %.3g), dx overwritten %d, "
                 "dW accumulates %d",
                 kind, r.err_dx, r.err_dw, r.err_daux, tol, r.dx_overwritten, r.dw_accumulates);
    double worst = fmax(r.err_dx, fmax(r.err_dw, r.err_daux));
    return worst;
}

/* ---- a standalone layer under test ---- */

void tu_layer_build(tu_layer *t, const char *kind, const char *name, const jt_layer_opts *o,
                    jt_shape in, const jt_shape *aux, size_t max_n, uint64_t seed) {
    char err[512] = "";
    jt_params_init(&t->p);
    jt_status st = jt_layer_setup(&t->l, kind, name, o, &in, aux, max_n, &t->p, err, sizeof err);
    if (st != JT_OK) fail_msg("setup %s: %s", kind, err);
    jt_params_alloc(&t->p);
    jt_layer_bind(&t->l, &t->p);
    t->l.ws = jt_alloc_floats(t->l.ws_floats ? t->l.ws_floats : 1);
    jt_rng r;
    jt_rng_seed(&r, seed, JT_RNG_INIT, 0, 0, 0);
    if (t->l.ops->init) t->l.ops->init(&t->l, &r);
    for (size_t k = 0; k < t->p.total; k++) t->p.w[k] += 0.2f * (jt_rng_uniform(&r) - 0.5f);
}

void tu_layer_free(tu_layer *t) {
    jt_free_aligned(t->l.ws);
    jt_params_free(&t->p);
}

const float *tu_layer_param(const tu_layer *t, const char *pname) {
    char full[2 * JT_VIEW_NAME_MAX];
    snprintf(full, sizeof full, "%s.%s", t->l.name, pname);
    long v = jt_params_find(&t->p, full);
    if (v < 0) fail_msg("no parameter %s", full);
    return jt_params_w(&t->p, (size_t)v);
}

float *tu_rand_floats(size_t n, uint64_t seed) {
    float *x = jt_alloc_floats(n);
    jt_rng r;
    jt_rng_seed(&r, seed, JT_RNG_TEST, 4, 5, 6);
    tu_fill_uniform(x, n, -1.0f, 1.0f, &r);
    return x;
}
