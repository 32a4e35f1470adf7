/* test_conv.c - the convolution path's kernels, each lowering and fusion checked on its own:
 *   - conv2d's lowerings (direct 3x3, im2col over blocks whose size does not divide n, columns
 *     kept or rebuilt in backward) against naive double-precision loops, forward and backward,
 *     and by finite differences, for n = 1, stride 2, same padding, C = 1 and C > 1;
 *   - the fused conv2d -> relu [-> maxpool2d] group against the three layers run one after the
 *     other: outputs and every gradient bitwise equal, ties in the pool included;
 *   - the unfused relu and maxpool2d kernels (vectorised) against naive loops, ties to the first
 *     maximum;
 *   - a model whose chain is fused against its unfused twin (bitwise), and the buffer sharing.
 * Each case first asserts it exercises the lowering it is meant to (jt_conv2d_lowering_of), so
 * a change of the thresholds cannot silently leave a path untested. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/layers/conv2d.h"
#include "jtrain/config.h"
#include "jtrain/data.h"
#include "jtrain/layer.h"
#include "jtrain/model.h"
#include "testutil.h"

static jt_shape in_shape(size_t C, size_t H, size_t W) {
    return C ? tu_shape(3, (size_t[]){C, H, W}) : tu_shape(2, (size_t[]){H, W});
}

/* A conv2d case: C = 0 means a 2-D (H, W) input. */
typedef struct {
    size_t C, H, W, F, K, S;
    int same;
    size_t n, max_n;
} conv_case;

static jt_layer_opts conv_opts(const conv_case *c) {
    jt_layer_opts o = {.filters = (long)c->F, .kernel = (long)c->K, .stride = (long)c->S,
                       .padding_same = c->same};
    return o;
}

/* The padding before (TensorFlow "SAME", as conv2d.c) along one axis. */
static long pad_before(size_t in, size_t out, size_t K, size_t S, int same) {
    long total = same ? (long)((out - 1) * S + K) - (long)in : 0;
    return total > 0 ? total / 2 : 0;
}

/* Naive convolution forward, y (n, F, OH, OW) in double, and backward: dx, dW, db (double) for
 * a given dy. */
typedef struct {
    size_t C, H, W, F, K, S, OH, OW;
    long pt, pl;
} naive_geom;

static naive_geom naive_of(const conv_case *c, const jt_layer *l) {
    naive_geom g = {c->C ? c->C : 1, c->H, c->W, c->F, c->K, c->S, l->out.d[1], l->out.d[2], 0, 0};
    g.pt = pad_before(g.H, g.OH, g.K, g.S, c->same);
    g.pl = pad_before(g.W, g.OW, g.K, g.S, c->same);
    return g;
}

/* Calls fn(ctx, x index, W index, y index) for every (input, weight, output) triple. */
#define NAIVE_LOOP(g, n, BODY)                                                                 \
    for (size_t i = 0; i < (n); i++)                                                          \
        for (size_t f = 0; f < (g).F; f++)                                                    \
            for (size_t oh = 0; oh < (g).OH; oh++)                                            \
                for (size_t ow = 0; ow < (g).OW; ow++)                                        \
                    for (size_t c = 0; c < (g).C; c++)                                        \
                        for (size_t a = 0; a < (g).K; a++)                                    \
                            for (size_t e = 0; e < (g).K; e++) {                              \
                                long ih = (long)(oh * (g).S + a) - (g).pt;                    \
                                long iw = (long)(ow * (g).S + e) - (g).pl;                    \
                                if (ih < 0 || iw < 0 || ih >= (long)(g).H || iw >= (long)(g).W) \
                                    continue;                                                 \
                                size_t xi = ((i * (g).C + c) * (g).H + (size_t)ih) * (g).W + (size_t)iw; \
                                size_t wi = ((f * (g).C + c) * (g).K + a) * (g).K + e;        \
                                size_t yi = ((i * (g).F + f) * (g).OH + oh) * (g).OW + ow;    \
                                BODY                                                          \
                            }

static void naive_forward(naive_geom g, size_t n, const float *x, const float *Wt, const float *b,
                          double *y) {
    for (size_t i = 0; i < n * g.F * g.OH * g.OW; i++) y[i] = b[(i / (g.OH * g.OW)) % g.F];
    NAIVE_LOOP(g, n, { y[yi] += (double)Wt[wi] * x[xi]; })
}

static void naive_backward(naive_geom g, size_t n, const float *x, const float *Wt,
                           const float *dy, double *dx, double *dW, double *db) {
    memset(dx, 0, n * g.C * g.H * g.W * sizeof *dx);
    memset(dW, 0, g.F * g.C * g.K * g.K * sizeof *dW);
    memset(db, 0, g.F * sizeof *db);
    for (size_t i = 0; i < n * g.F * g.OH * g.OW; i++) db[(i / (g.OH * g.OW)) % g.F] += dy[i];
    NAIVE_LOOP(g, n, {
        dx[xi] += (double)Wt[wi] * dy[yi];
        dW[wi] += (double)x[xi] * dy[yi];
    })
}

/* max |a - b| / (1 + |b|) */
static double max_err(const float *a, const double *b, size_t m) {
    double e = 0;
    for (size_t i = 0; i < m; i++) e = fmax(e, fabs(a[i] - b[i]) / (1.0 + fabs(b[i])));
    return e;
}

static void expect_lowering(const jt_layer *l, int direct, int blocks_split_n, int keep, size_t n) {
    jt_conv2d_lowering lw = jt_conv2d_lowering_of(l);
    if (lw.direct != direct) fail_msg("%s: direct %d, wanted %d", l->name, lw.direct, direct);
    if (direct) return;
    if (blocks_split_n && !(lw.block < n && n % lw.block != 0))
        fail_msg("%s: block %zu does not split n = %zu unevenly", l->name, lw.block, n);
    if (keep >= 0 && lw.keep_columns != keep)
        fail_msg("%s: keep_columns %d, wanted %d", l->name, lw.keep_columns, keep);
}

/* The cases below, each with the lowering it must take: direct (1/0), blocks that split n
 * unevenly (1/0), columns kept (1/0/-1 = either). */
typedef struct {
    conv_case c;
    int direct, split, keep;
} lowered_case;

static const lowered_case CASES[] = {
    {{1, 28, 28, 4, 3, 1, 0, 3, 5}, 1, 0, -1},    /* C = 1, valid: the benchmark's first conv */
    {{0, 9, 8, 3, 3, 1, 1, 2, 2}, 1, 0, -1},      /* (H, W) input, same padding */
    {{1, 7, 6, 4, 3, 1, 1, 1, 1}, 1, 0, -1},      /* direct, same, n = 1 */
    {{3, 7, 6, 4, 3, 1, 1, 1, 1}, 0, 0, 1},       /* C = 3: im2col, same, n = 1 */
    {{24, 14, 14, 4, 3, 1, 1, 7, 9}, 0, 1, 1},    /* im2col, blocks 3 + 3 + 1, columns kept */
    {{24, 14, 14, 4, 3, 1, 1, 7, 120}, 0, 1, 0},  /* the same with columns rebuilt */
    {{2, 7, 7, 3, 3, 2, 1, 3, 3}, 0, 0, 1},       /* stride 2, same */
    {{2, 5, 6, 3, 2, 2, 1, 1, 2}, 0, 0, 1},       /* even kernel, same, n = 1 */
    {{3, 9, 9, 2, 5, 3, 1, 2, 2}, 0, 0, 1},       /* kernel 5, stride 3 */
    {{6, 9, 9, 5, 3, 1, 0, 4, 4}, 0, 0, 1},       /* C = 6, kernel 3, stride 1 */
};
#define N_CASES (sizeof CASES / sizeof *CASES)

static void test_conv_forward_backward_naive(void **state) {
    (void)state;
    for (size_t ci = 0; ci < N_CASES; ci++) {
        const conv_case *c = &CASES[ci].c;
        jt_layer_opts o = conv_opts(c);
        tu_layer t;
        tu_layer_build(&t, "conv2d", "b.0", &o, in_shape(c->C, c->H, c->W), NULL, c->max_n, 3 + ci);
        expect_lowering(&t.l, CASES[ci].direct, CASES[ci].split, CASES[ci].keep, c->n);
        naive_geom g = naive_of(c, &t.l);
        size_t n = c->n, nx = n * g.C * g.H * g.W, ny = n * g.F * g.OH * g.OW;
        size_t nw = g.F * g.C * g.K * g.K;
        float *x = tu_rand_floats(nx, 10 + ci), *y = tu_rand_floats(ny, 1);
        float *dy = tu_rand_floats(ny, 20 + ci), *dx = tu_rand_floats(nx, 2);
        double *ry = calloc(ny, sizeof *ry), *rdx = calloc(nx, sizeof *rdx);
        double *rdW = calloc(nw, sizeof *rdW), *rdb = calloc(g.F, sizeof *rdb);
        t.l.ops->forward(&t.l, x, y, n, NULL);
        naive_forward(g, n, x, t.l.W[0], t.l.W[1], ry);
        double e = max_err(y, ry, ny);
        if (e > 1e-5) fail_msg("case %zu: forward error %g", ci, e);
        memset(t.p.g, 0, t.p.total * sizeof(float));
        t.l.ops->backward(&t.l, x, y, dy, dx, n, NULL);
        naive_backward(g, n, x, t.l.W[0], dy, rdx, rdW, rdb);
        double ex = max_err(dx, rdx, nx), ew = max_err(t.l.dW[0], rdW, nw);
        double eb = max_err(t.l.dW[1], rdb, g.F);
        if (ex > 1e-5 || ew > 1e-4 || eb > 1e-4)
            fail_msg("case %zu: backward errors dx %g dW %g db %g", ci, ex, ew, eb);
        /* dx may be NULL (a data input): the parameter gradients must not change */
        float *g1 = malloc(t.p.total * sizeof(float));
        memcpy(g1, t.p.g, t.p.total * sizeof(float));
        memset(t.p.g, 0, t.p.total * sizeof(float));
        t.l.ops->backward(&t.l, x, y, dy, NULL, n, NULL);
        assert_memory_equal(g1, t.p.g, t.p.total * sizeof(float));
        free(g1);
        free(ry), free(rdx), free(rdW), free(rdb);
        jt_free_aligned(x), jt_free_aligned(y), jt_free_aligned(dy), jt_free_aligned(dx);
        tu_layer_free(&t);
    }
}

/* Finite differences through each lowering (tu_gradcheck_layer builds with max_n = n + 2). */
static void test_conv_gradcheck_paths(void **state) {
    (void)state;
    tu_gradcheck_cfg cfg = {.max_checks = 60};
    struct { conv_case c; int direct; } gc[] = {
        {{1, 8, 9, 3, 3, 1, 0, 2, 0}, 1},  /* direct, C = 1, valid */
        {{0, 6, 7, 2, 3, 1, 1, 1, 0}, 1},  /* direct, (H, W), same, n = 1 */
        {{3, 6, 5, 2, 3, 1, 1, 3, 0}, 0},  /* im2col, C = 3, same */
        {{24, 14, 14, 2, 3, 1, 1, 7, 0}, 0}, /* im2col, blocks 3 + 3 + 1 */
        {{2, 7, 6, 2, 3, 2, 1, 1, 0}, 0},  /* stride 2, same, n = 1 */
    };
    for (size_t k = 0; k < sizeof gc / sizeof *gc; k++) {
        const conv_case *c = &gc[k].c;
        jt_layer_opts o = conv_opts(c);
        jt_shape in = in_shape(c->C, c->H, c->W);
        tu_layer t; /* the lowering gradcheck's layer (max_n = n + 2) takes */
        tu_layer_build(&t, "conv2d", "b.0", &o, in, NULL, c->n + 2, 1);
        expect_lowering(&t.l, gc[k].direct, k == 3, -1, c->n);
        tu_layer_free(&t);
        tu_gradcheck_layer("conv2d", &o, &in, c->n, &cfg);
    }
}

/* ---- fusion ---- */

/* A conv2d -> relu [-> maxpool2d] chain, built twice from the same seed: unfused (u) and
 * fused (f, the three layers copied into one array as a model chain holds them). */
typedef struct {
    tu_layer conv_u, relu_u, pool_u, conv_f, relu_f, pool_f;
    jt_layer g[3];
    size_t k; /* layers jt_layer_fuse absorbed */
} fused_pair;

static void pair_build(fused_pair *fp, const conv_case *c, const jt_layer_opts *pool, size_t n_layers,
                       uint64_t seed) {
    jt_layer_opts o = conv_opts(c);
    jt_shape in = in_shape(c->C, c->H, c->W);
    tu_layer_build(&fp->conv_u, "conv2d", "b.0", &o, in, NULL, c->max_n, seed);
    tu_layer_build(&fp->conv_f, "conv2d", "b.0", &o, in, NULL, c->max_n, seed);
    tu_layer_build(&fp->relu_u, "relu", "b.1", NULL, fp->conv_u.l.out, NULL, c->max_n, 1);
    tu_layer_build(&fp->relu_f, "relu", "b.1", NULL, fp->conv_u.l.out, NULL, c->max_n, 1);
    if (pool) {
        tu_layer_build(&fp->pool_u, "maxpool2d", "b.2", pool, fp->conv_u.l.out, NULL, c->max_n, 1);
        tu_layer_build(&fp->pool_f, "maxpool2d", "b.2", pool, fp->conv_u.l.out, NULL, c->max_n, 1);
    }
    fp->g[0] = fp->conv_f.l;
    fp->g[1] = fp->relu_f.l;
    if (pool) fp->g[2] = fp->pool_f.l;
    fp->k = jt_layer_fuse(fp->g, n_layers);
    /* the workspace sizes changed: allocate them as the model would */
    for (size_t j = 0; j <= fp->k; j++) fp->g[j].ws = NULL;
    fp->g[0].ws = jt_alloc_floats(fp->g[0].ws_floats ? fp->g[0].ws_floats : 1);
}

static void pair_free(fused_pair *fp, int pool) {
    jt_free_aligned(fp->g[0].ws);
    tu_layer_free(&fp->conv_u), tu_layer_free(&fp->conv_f);
    tu_layer_free(&fp->relu_u), tu_layer_free(&fp->relu_f);
    if (pool) tu_layer_free(&fp->pool_u), tu_layer_free(&fp->pool_f);
}

/* Runs both on the same x and output gradient; asserts bitwise equal outputs, dx, dW, db.
 * Returns nothing; fails the test with the case name. */
static void pair_compare(fused_pair *fp, size_t n, const float *x, const char *name) {
    jt_layer *cu = &fp->conv_u.l, *ru = &fp->relu_u.l, *pu = &fp->pool_u.l;
    int pooled = fp->k == 2;
    size_t nx = n * jt_shape_size(&cu->in), nc = n * jt_shape_size(&cu->out);
    size_t no = pooled ? n * jt_shape_size(&pu->out) : nc;
    float *a1 = jt_alloc_floats(nc), *a2 = jt_alloc_floats(nc), *a3 = jt_alloc_floats(no);
    float *d1 = jt_alloc_floats(nc), *d2 = jt_alloc_floats(nc);
    float *dxu = jt_alloc_floats(nx), *dxf = jt_alloc_floats(nx), *yf = jt_alloc_floats(nc);
    float *dyo = tu_rand_floats(no, 77);
    /* unfused */
    cu->ops->forward(cu, x, a1, n, NULL);
    ru->ops->forward(ru, a1, a2, n, NULL);
    if (pooled) pu->ops->forward(pu, a2, a3, n, NULL);
    const float *out_u = pooled ? a3 : a2;
    memset(fp->conv_u.p.g, 0, fp->conv_u.p.total * sizeof(float));
    if (pooled) pu->ops->backward(pu, a2, a3, dyo, d2, n, NULL);
    ru->ops->backward(ru, a1, a2, pooled ? d2 : dyo, d1, n, NULL);
    cu->ops->backward(cu, x, a1, d1, dxu, n, NULL);
    /* fused: the chain loop calls every layer of the group with the group's one buffer */
    memset(fp->conv_f.p.g, 0, fp->conv_f.p.total * sizeof(float));
    for (size_t j = 0; j <= fp->k; j++) fp->g[j].ops->forward(&fp->g[j], j ? yf : x, yf, n, NULL);
    float *dyf = jt_alloc_floats(no);
    memcpy(dyf, dyo, no * sizeof(float));
    for (size_t j = fp->k + 1; j-- > 0;)
        fp->g[j].ops->backward(&fp->g[j], j ? yf : x, yf, dyf, j ? dyf : dxf, n, NULL);
    if (memcmp(out_u, yf, no * sizeof(float)) != 0) fail_msg("%s: outputs differ", name);
    if (memcmp(dxu, dxf, nx * sizeof(float)) != 0) fail_msg("%s: dx differs", name);
    if (memcmp(fp->conv_u.p.g, fp->conv_f.p.g, fp->conv_u.p.total * sizeof(float)) != 0)
        fail_msg("%s: dW or db differs", name);
    jt_free_aligned(a1), jt_free_aligned(a2), jt_free_aligned(a3), jt_free_aligned(d1);
    jt_free_aligned(d2), jt_free_aligned(dxu), jt_free_aligned(dxf), jt_free_aligned(yf);
    jt_free_aligned(dyo), jt_free_aligned(dyf);
}

static void test_fused_matches_unfused(void **state) {
    (void)state;
    struct {
        const char *name;
        conv_case c;
        long P, PS;      /* pool size and stride (0, 0: no pool layer) */
        size_t k;        /* layers fused: 2 conv+relu+pool, 1 conv+relu */
        int direct, split, flat;
    } cases[] = {
        {"direct C=1 valid, flat pool 2", {1, 28, 28, 4, 3, 1, 0, 3, 5}, 2, 0, 2, 1, 0, 1},
        {"direct C=1 odd map, pool 2", {1, 9, 9, 3, 3, 1, 0, 2, 2}, 2, 0, 2, 1, 0, 0},
        {"direct (H, W) same, odd rows, flat pool 2", {0, 9, 10, 3, 3, 1, 1, 1, 1}, 2, 0, 2, 1, 0, 1},
        {"direct same, pool 3", {1, 10, 11, 2, 3, 1, 1, 2, 2}, 3, 3, 2, 1, 0, 0},
        {"im2col C=3 same, pool 3", {3, 10, 11, 2, 3, 1, 1, 2, 2}, 3, 3, 2, 0, 0, 0},
        {"im2col blocks, flat pool 2", {24, 14, 14, 4, 3, 1, 1, 7, 9}, 2, 0, 2, 0, 1, 1},
        {"im2col blocks rebuilt, pool 2", {24, 13, 13, 4, 3, 1, 1, 9, 120}, 2, 2, 2, 0, 1, 0},
        {"im2col stride 2, flat pool 2", {2, 11, 11, 3, 3, 2, 1, 3, 3}, 2, 0, 2, 0, 0, 1},
        {"im2col, relu only (pool stride 1 stays)", {6, 9, 9, 3, 3, 1, 0, 2, 2}, 2, 1, 1, 0, 0, 0},
        {"direct, relu only (no pool)", {1, 8, 8, 3, 3, 1, 0, 2, 2}, 0, 0, 1, 1, 0, 0},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const conv_case *c = &cases[ci].c;
        jt_layer_opts po = {.size = cases[ci].P, .stride = cases[ci].PS};
        int pool = cases[ci].P > 0;
        fused_pair fp;
        pair_build(&fp, c, pool ? &po : NULL, pool ? 3 : 2, 5 + ci);
        assert_int_equal(fp.k, cases[ci].k);
        jt_conv2d_lowering lw = jt_conv2d_lowering_of(&fp.g[0]);
        assert_true(lw.relu);
        assert_int_equal(lw.pool, cases[ci].k == 2 ? (size_t)cases[ci].P : 0);
        if (lw.pool_flat != cases[ci].flat) fail_msg("%s: pool_flat %d", cases[ci].name, lw.pool_flat);
        expect_lowering(&fp.g[0], cases[ci].direct, cases[ci].split, -1, c->n);
        if (fp.k < 2 && pool) { /* the pool stays a layer of its own: run it unfused in both */
            assert_ptr_equal(fp.g[2].ops, jt_layer_find("maxpool2d"));
        }
        float *x = tu_rand_floats(c->n * jt_shape_size(&fp.conv_u.l.in), 30 + ci);
        pair_compare(&fp, c->n, x, cases[ci].name);
        /* the same with every output of some filters tied: W = 0, b = +-0.25 */
        size_t F = c->F, ckk = (c->C ? c->C : 1) * c->K * c->K;
        for (size_t f = 0; f < F; f += 2) {
            for (size_t k = 0; k < ckk; k++) fp.conv_u.l.W[0][f * ckk + k] = fp.conv_f.l.W[0][f * ckk + k] = 0.0f;
            fp.conv_u.l.W[1][f] = fp.conv_f.l.W[1][f] = f % 4 ? -0.25f : 0.25f;
        }
        char name[128];
        snprintf(name, sizeof name, "%s, tied", cases[ci].name);
        pair_compare(&fp, c->n, x, name);
        jt_free_aligned(x);
        pair_free(&fp, pool);
    }
}

/* Nothing fuses but conv2d -> relu; a pool whose stride is not its size stays unfused. */
static void test_fuse_patterns(void **state) {
    (void)state;
    conv_case c = {2, 8, 8, 3, 3, 1, 0, 2, 2};
    jt_layer_opts o = conv_opts(&c), p2 = {.size = 2};
    tu_layer conv, tanh_l, relu, pool;
    tu_layer_build(&conv, "conv2d", "b.0", &o, in_shape(2, 8, 8), NULL, 2, 1);
    tu_layer_build(&tanh_l, "tanh", "b.1", NULL, conv.l.out, NULL, 2, 1);
    tu_layer_build(&relu, "relu", "b.1", NULL, conv.l.out, NULL, 2, 1);
    tu_layer_build(&pool, "maxpool2d", "b.2", &p2, conv.l.out, NULL, 2, 1);
    jt_layer g[3] = {conv.l, tanh_l.l, pool.l};
    assert_int_equal(jt_layer_fuse(g, 3), 0);                /* conv -> tanh */
    assert_ptr_equal(g[0].ops, jt_layer_find("conv2d"));
    jt_layer h[3] = {relu.l, relu.l, pool.l};
    assert_int_equal(jt_layer_fuse(h, 3), 0);                /* relu first */
    jt_layer k1[1] = {conv.l};
    assert_int_equal(jt_layer_fuse(k1, 1), 0);               /* the chain ends at the conv */
    jt_layer k2[3] = {conv.l, relu.l, pool.l};
    assert_int_equal(jt_layer_fuse(k2, 2), 1);               /* the pool is not in the chain */
    jt_layer k3[3] = {conv.l, relu.l, pool.l};
    assert_int_equal(jt_layer_fuse(k3, 3), 2);
    assert_string_equal(k3[1].ops->kind, "relu");            /* kinds stay for messages */
    assert_string_equal(k3[2].ops->kind, "maxpool2d");
    assert_int_equal(k3[1].ws_floats, 0);
    assert_int_equal(k3[2].ws_floats, 0);
    tu_layer_free(&conv), tu_layer_free(&tanh_l), tu_layer_free(&relu), tu_layer_free(&pool);
}

/* With every output of a window tied, the fused backward sends the gradient to the window's
 * first position: checked against a naive dW built that way (a last-maximum rule fails it). */
static void test_fused_ties_first_maximum(void **state) {
    (void)state;
    conv_case c = {1, 10, 10, 2, 3, 1, 0, 2, 2}; /* conv out 8x8, pooled 4x4 */
    jt_layer_opts po = {.size = 2};
    fused_pair fp;
    pair_build(&fp, &c, &po, 3, 9);
    assert_int_equal(fp.k, 2);
    for (size_t k = 0; k < 18; k++) fp.conv_f.l.W[0][k] = 0.0f;
    fp.conv_f.l.W[1][0] = fp.conv_f.l.W[1][1] = 0.5f;
    size_t n = 2, nx = n * 100, no = n * 2 * 16;
    float *x = tu_rand_floats(nx, 4), *y = jt_alloc_floats(no), *dy = tu_rand_floats(no, 5);
    memset(fp.conv_f.p.g, 0, fp.conv_f.p.total * sizeof(float));
    fp.g[0].ops->forward(&fp.g[0], x, y, n, NULL);
    for (size_t k = 0; k < no; k++) assert_true(y[k] == 0.5f);
    fp.g[0].ops->backward(&fp.g[0], x, y, dy, NULL, n, NULL);
    double want[18] = {0};
    for (size_t i = 0; i < n; i++)
        for (size_t f = 0; f < 2; f++)
            for (size_t ph = 0; ph < 4; ph++)
                for (size_t pw = 0; pw < 4; pw++) {
                    double d = dy[((i * 2 + f) * 4 + ph) * 4 + pw];
                    size_t oh = 2 * ph, ow = 2 * pw; /* the window's first position */
                    for (size_t a = 0; a < 3; a++)
                        for (size_t e = 0; e < 3; e++)
                            want[f * 9 + a * 3 + e] += d * x[i * 100 + (oh + a) * 10 + ow + e];
                }
    double e = max_err(fp.conv_f.l.dW[0], want, 18);
    if (e > 1e-5) fail_msg("tied windows: dW error %g (gradient not at the first maximum?)", e);
    jt_free_aligned(x), jt_free_aligned(y), jt_free_aligned(dy);
    pair_free(&fp, 1);
}

/* ---- unfused relu and maxpool2d kernels ---- */

static void test_relu_kernels(void **state) {
    (void)state;
    size_t m = 1003; /* not a multiple of any vector width */
    tu_layer t;
    tu_layer_build(&t, "relu", "b.0", NULL, tu_shape(1, (size_t[]){m}), NULL, 1, 1);
    float *x = tu_rand_floats(m, 3), *y = jt_alloc_floats(m), *dy = tu_rand_floats(m, 4);
    float *dx = jt_alloc_floats(m);
    x[0] = -0.0f, x[1] = 0.0f, x[2] = NAN, x[3] = INFINITY, x[4] = -INFINITY, x[5] = 1e-40f;
    t.l.ops->forward(&t.l, x, y, 1, NULL);
    t.l.ops->backward(&t.l, x, y, dy, dx, 1, NULL);
    for (size_t i = 0; i < m; i++) {
        float want = x[i] > 0.0f ? x[i] : 0.0f;
        assert_memory_equal(&y[i], &want, sizeof want); /* +0, never -0 or NaN */
        float dwant = y[i] > 0.0f ? dy[i] : 0.0f;
        assert_memory_equal(&dx[i], &dwant, sizeof dwant);
    }
    memcpy(dx, x, m * sizeof(float)); /* in place */
    t.l.ops->forward(&t.l, dx, dx, 1, NULL);
    assert_memory_equal(dx, y, m * sizeof(float));
    jt_free_aligned(x), jt_free_aligned(y), jt_free_aligned(dy), jt_free_aligned(dx);
    tu_layer_free(&t);
}

static void test_maxpool_kernels(void **state) {
    (void)state;
    struct { size_t C, H, W, P, S, n; int ties; } cases[] = {
        {3, 8, 8, 2, 2, 2, 0}, {2, 7, 9, 2, 2, 3, 0}, {0, 5, 5, 2, 2, 1, 0}, {2, 7, 9, 2, 2, 2, 1},
        {2, 7, 7, 3, 2, 2, 1}, {1, 6, 6, 2, 1, 1, 1}, {2, 9, 9, 3, 3, 2, 1},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        size_t C = cases[ci].C ? cases[ci].C : 1, H = cases[ci].H, W = cases[ci].W;
        size_t P = cases[ci].P, S = cases[ci].S, n = cases[ci].n;
        jt_layer_opts o = {.size = (long)P, .stride = (long)S};
        tu_layer t;
        tu_layer_build(&t, "maxpool2d", "b.0", &o, in_shape(cases[ci].C, H, W), NULL, n, 1);
        size_t OH = (H - P) / S + 1, OW = (W - P) / S + 1, nx = n * C * H * W, ny = n * C * OH * OW;
        float *x = tu_rand_floats(nx, 11 + ci), *y = jt_alloc_floats(ny);
        float *dy = tu_rand_floats(ny, 12 + ci), *dx = tu_rand_floats(nx, 13);
        if (cases[ci].ties) /* values from {-1, 0, 1}: most windows tie */
            for (size_t k = 0; k < nx; k++) x[k] = roundf(x[k]);
        double *rdx = calloc(nx, sizeof *rdx);
        t.l.ops->forward(&t.l, x, y, n, NULL);
        t.l.ops->backward(&t.l, x, y, dy, dx, n, NULL);
        for (size_t ic = 0; ic < n * C; ic++)
            for (size_t oh = 0; oh < OH; oh++)
                for (size_t ow = 0; ow < OW; ow++) {
                    size_t best = (ic * H + oh * S) * W + ow * S; /* first maximum, row-major */
                    for (size_t a = 0; a < P; a++)
                        for (size_t b = 0; b < P; b++) {
                            size_t k = (ic * H + oh * S + a) * W + ow * S + b;
                            if (x[k] > x[best]) best = k;
                        }
                    size_t yo = (ic * OH + oh) * OW + ow;
                    assert_true(y[yo] == x[best]);
                    rdx[best] += dy[yo];
                }
        for (size_t k = 0; k < nx; k++)
            if (fabs(dx[k] - rdx[k]) > 1e-6) fail_msg("case %zu: dx[%zu] %g, want %g", ci, k, (double)dx[k], rdx[k]);
        free(rdx);
        jt_free_aligned(x), jt_free_aligned(y), jt_free_aligned(dy), jt_free_aligned(dx);
        tu_layer_free(&t);
    }
}

/* ---- the model: fused chain against its unfused twin ---- */

#define MN 5

typedef struct {
    jt_split s;
    jt_array a[2];
    float image[MN * 144];
    int32_t label[MN];
} img_split;

static void img_split_init(img_split *f) {
    memset(f, 0, sizeof *f);
    jt_rng r;
    jt_rng_seed(&r, 4, JT_RNG_TEST, 0, 0, 0);
    for (size_t i = 0; i < MN * 144; i++) f->image[i] = jt_rng_uniform(&r) - 0.3f;
    for (int i = 0; i < MN; i++) f->label[i] = i % 3;
    snprintf(f->a[0].name, sizeof f->a[0].name, "image");
    f->a[0].role = JT_ARRAY_INPUT;
    f->a[0].shape = tu_shape(2, (size_t[]){12, 12});
    f->a[0].row_elems = 144;
    f->a[0].data = f->image;
    snprintf(f->a[1].name, sizeof f->a[1].name, "label");
    f->a[1].role = JT_ARRAY_LABEL;
    f->a[1].row_elems = 1;
    f->a[1].n_classes = 3;
    f->a[1].data = f->label;
    f->s.n = MN;
    f->s.end = MN;
    f->s.arrays = f->a;
    f->s.n_arrays = 2;
    snprintf(f->s.path, sizeof f->s.path, "fake.h5");
}

static void model_build(jt_model *m, jt_config *c, const char *layers, const img_split *f) {
    char yaml[1024], err[1024] = "";
    snprintf(yaml, sizeof yaml,
             "data: {file: fake.h5}\n"
             "model:\n"
             "  blocks:\n"
             "    trunk: {input: image, layers: %s}\n"
             "  heads:\n"
             "    item: {input: trunk, target: label, layers: [{dense: {units: 6}}, relu]}\n"
             "train: {steps: 1, batch_size: 5}\n",
             layers);
    if (jt_config_parse(c, yaml, "model.yaml", NULL, 0, err, sizeof err) != JT_OK)
        fail_msg("config: %s", err);
    if (jt_model_build(m, c, &f->s, MN, err, sizeof err) != JT_OK) fail_msg("model: %s", err);
}

static void model_step(jt_model *m, const img_split *f) {
    const void *arrays[2] = {f->image, f->label};
    uint64_t rows[MN], labelled[1] = {MN};
    for (size_t i = 0; i < MN; i++) rows[i] = i;
    memset(m->params.g, 0, m->params.total * sizeof(float));
    jt_model_forward(m, arrays, rows, MN, 1, 1);
    jt_xent_stats st[1];
    jt_model_loss(m, arrays, MN, labelled, 1, st);
    jt_model_backward(m, arrays, rows, MN, 1, NULL, NULL);
}

static void test_model_fused_twin(void **state) {
    (void)state;
    /* rate-0 dropouts are identities in training that keep the fusion from matching */
    const char *fused = "[{conv2d: {filters: 6, kernel: 3, padding: same}}, relu,"
                        " {maxpool2d: {size: 2}}, {conv2d: {filters: 3, kernel: 3}}, relu,"
                        " {maxpool2d: {size: 2}}, flatten]";
    const char *plain = "[{conv2d: {filters: 6, kernel: 3, padding: same}}, {dropout: {rate: 0}},"
                        " relu, {dropout: {rate: 0}}, {maxpool2d: {size: 2}},"
                        " {conv2d: {filters: 3, kernel: 3}}, {dropout: {rate: 0}}, relu,"
                        " {dropout: {rate: 0}}, {maxpool2d: {size: 2}}, flatten]";
    img_split f;
    img_split_init(&f);
    jt_model a, b;
    jt_config ca, cb;
    model_build(&a, &ca, fused, &f);
    model_build(&b, &cb, plain, &f);
    const jt_chain *t = &a.chains[0];
    assert_int_equal(t->n_layers, 7);
    assert_ptr_equal(t->act[0], t->act[2]); /* conv, relu, pool: one buffer */
    assert_ptr_equal(t->act[1], t->act[2]);
    assert_ptr_equal(t->dact[0], t->dact[2]);
    assert_ptr_equal(t->act[3], t->act[5]);
    assert_true(t->act[2] != t->act[3]);
    assert_ptr_equal(t->act[6], t->act[5]); /* flatten is a view */
    assert_true(jt_conv2d_lowering_of(&t->layers[0]).pool == 2);
    assert_true(jt_conv2d_lowering_of(&t->layers[3]).pool == 2);
    assert_true(jt_conv2d_lowering_of(&t->layers[0]).direct);   /* C = 1 */
    assert_false(jt_conv2d_lowering_of(&t->layers[3]).direct);  /* C = 6: im2col */
    assert_false(jt_conv2d_lowering_of(&b.chains[0].layers[0]).relu);
    const jt_chain *h = &a.chains[1]; /* dense -> relu: not fused, own buffers */
    assert_true(h->act[0] != h->act[1]);
    assert_int_equal(a.params.total, b.params.total);
    memcpy(b.params.w, a.params.w, a.params.total * sizeof(float));
    model_step(&a, &f);
    model_step(&b, &f);
    const jt_chain *ha = &a.chains[1], *hb = &b.chains[1];
    size_t nl = MN * 3;
    assert_memory_equal(ha->act[ha->n_layers - 1], hb->act[hb->n_layers - 1], nl * sizeof(float));
    assert_memory_equal(a.params.g, b.params.g, a.params.total * sizeof(float));
    double gnorm = 0;
    for (size_t k = 0; k < a.params.total; k++) gnorm += fabs(a.params.g[k]);
    assert_true(gnorm > 0); /* the comparison compared something */
    jt_model_free(&a), jt_model_free(&b);
    jt_config_free(&ca), jt_config_free(&cb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_forward_backward_naive),
        cmocka_unit_test(test_conv_gradcheck_paths),
        cmocka_unit_test(test_fuse_patterns),
        cmocka_unit_test(test_fused_matches_unfused),
        cmocka_unit_test(test_fused_ties_first_maximum),
        cmocka_unit_test(test_relu_kernels),
        cmocka_unit_test(test_maxpool_kernels),
        cmocka_unit_test(test_model_fused_twin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
