/* test_reference.c - jtrain against an outside oracle: the PyTorch reference fixtures in
 * tests/fixtures/reference/ (made by scripts/make-reference-fixtures from the torch twins of
 * scripts/jtrain_torch.py, in float64; see the README there). No torch is needed here.
 *
 * For every fixture: build the model from the stored config over the stored batch, overwrite
 * every parameter view from /params (a view missing from the fixture, a shape that differs, or a
 * fixture view the model lacks fails), run forward / loss / backward as one training step 0
 * does, and compare each head's mean cross-entropy, the total, and the gradient of every view;
 * then run 3 training steps on the same batch (zero, forward, loss, backward, clip, AdamW with
 * t = step + 1, as src/train.c) and compare each step's loss and every parameter after them.
 *
 * Measure: per tensor, err = max|a - b| / max(max|b|, REF_FLOOR * big), with b the reference,
 * a jtrain's, and big the largest max|b| of the set (all gradients, or all parameters). A tensor
 * whose reference is tiny compared with the rest is thus compared in absolute terms at that
 * floor. Views marked invariant (the loss does not depend on them, e.g. softmax attention's key
 * bias: their gradient is roundoff) are measured against big itself and, since roundoff drives
 * their AdamW steps, not compared after the steps. Losses: |a - b| / |b|. Everything must be
 * <= REF_TOL. The worst tensor is named in the output; every tensor over the tolerance is listed
 * before the test fails. An empty or missing fixture directory fails. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hdf5.h>

#include "jtrain/config.h"
#include "jtrain/data.h"
#include "jtrain/model.h"
#include "jtrain/optim.h"

#define REF_DIR JT_SOURCE_DIR "/tests/fixtures/reference"
#define REF_TOL 1e-5
#define REF_FLOOR 1e-3
#define REF_STEPS 3
#define REF_MAX_FIXTURES 64

/* One fixture file opened, its batch loaded as an in-memory split. */
typedef struct {
    const char *path;
    hid_t file;
    jt_config cfg;
    jt_split split;
    jt_array arrays[JT_MODEL_MAX_ARRAYS];
    uint64_t *rows;
    size_t n;
} ref_fixture;

/* The worst error of a set of tensors and where it is. */
typedef struct {
    double err;
    char name[JT_VIEW_NAME_MAX];
    int over; /* tensors above REF_TOL */
} ref_worst;

static void worst_add(ref_worst *w, const char *what, const char *name, double err) {
    if (!(err <= REF_TOL)) { /* NaN counts as over */
        print_error("    %s %s: error %.3e > %.0e\n", what, name, err, REF_TOL);
        w->over++;
    }
    if (!(err <= w->err)) {
        w->err = err;
        snprintf(w->name, sizeof w->name, "%s", name);
    }
}

/* A string attribute of obj (fixed or variable length), malloc'd; fails the test if absent. */
static char *read_str_attr(hid_t obj, const char *path, const char *name) {
    if (H5Aexists(obj, name) <= 0) fail_msg("%s: no attribute '%s'", path, name);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), ft = H5Aget_type(a), mt = H5Tcopy(H5T_C_S1);
    assert_true(a >= 0 && ft >= 0 && mt >= 0 && H5Tget_class(ft) == H5T_STRING);
    H5Tset_cset(mt, H5Tget_cset(ft));
    char *out;
    if (H5Tis_variable_str(ft) > 0) {
        char *vl = NULL;
        H5Tset_size(mt, H5T_VARIABLE);
        assert_true(H5Aread(a, mt, &vl) >= 0);
        size_t len = strlen(vl);
        out = malloc(len + 1);
        memcpy(out, vl, len + 1);
        H5free_memory(vl);
    } else {
        size_t len = H5Tget_size(ft); /* + 1: room for the terminator of a NULLPAD string */
        out = calloc(len + 1, 1);
        H5Tset_size(mt, len + 1);
        assert_true(H5Aread(a, mt, out) >= 0);
    }
    H5Tclose(mt);
    H5Tclose(ft);
    H5Aclose(a);
    return out;
}

static long read_int_attr(hid_t obj, const char *name) {
    long v = 0;
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    assert_true(a >= 0 && H5Aread(a, H5T_NATIVE_LONG, &v) >= 0);
    H5Aclose(a);
    return v;
}

static int exists(hid_t file, const char *path) {
    /* H5Lexists needs every group on the way to exist */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *s = strchr(buf + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (H5Lexists(file, buf, H5P_DEFAULT) <= 0) return 0;
        *s = '/';
    }
    return H5Lexists(file, buf, H5P_DEFAULT) > 0;
}

/* Opens dataset path of the fixture; with dims != NULL its shape must be dims[0..ndim). Returns
 * its number of elements; fails the test (naming the fixture and path) otherwise. */
static hid_t open_dataset(const ref_fixture *f, const char *path, int ndim, const size_t *dims,
                          size_t *count) {
    if (!exists(f->file, path)) fail_msg("%s: no %s", f->path, path);
    hid_t d = H5Dopen2(f->file, path, H5P_DEFAULT), sp = H5Dget_space(d);
    assert_true(d >= 0 && sp >= 0);
    hsize_t hd[8];
    int nd = H5Sget_simple_extent_ndims(sp);
    assert_true(nd >= 0 && nd <= 8);
    H5Sget_simple_extent_dims(sp, hd, NULL);
    H5Sclose(sp);
    size_t c = 1;
    for (int i = 0; i < nd; i++) c *= (size_t)hd[i];
    if (dims) {
        int same = nd == ndim;
        for (int i = 0; same && i < nd; i++) same = hd[i] == dims[i];
        if (!same) fail_msg("%s: %s has another shape than jtrain's view", f->path, path);
    }
    *count = c;
    return d;
}

/* Reads dataset path (converted to mem_type) into out, which holds exactly want elements. */
static void read_exact(const ref_fixture *f, const char *path, hid_t mem_type, void *out,
                       size_t want, int ndim, const size_t *dims) {
    size_t count;
    hid_t d = open_dataset(f, path, ndim, dims, &count);
    if (count != want) fail_msg("%s: %s has %zu elements, expected %zu", f->path, path, count, want);
    assert_true(H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    H5Dclose(d);
}

static double read_scalar(const ref_fixture *f, const char *path) {
    double v;
    read_exact(f, path, H5T_NATIVE_DOUBLE, &v, 1, 0, NULL);
    return v;
}

/* Adds every dataset of group (/inputs or /labels) to the fixture's split. */
static void load_group(ref_fixture *f, const char *group, jt_array_role role) {
    hid_t g = H5Gopen2(f->file, group, H5P_DEFAULT);
    if (g < 0) fail_msg("%s: no group %s", f->path, group);
    H5G_info_t info;
    assert_true(H5Gget_info(g, &info) >= 0);
    for (hsize_t i = 0; i < info.nlinks; i++) {
        assert_true(f->split.n_arrays < JT_MODEL_MAX_ARRAYS);
        jt_array *a = &f->arrays[f->split.n_arrays++];
        memset(a, 0, sizeof *a);
        H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, a->name, sizeof a->name,
                           H5P_DEFAULT);
        char path[256];
        snprintf(path, sizeof path, "%s/%s", group, a->name);
        hid_t d = H5Dopen2(f->file, path, H5P_DEFAULT), sp = H5Dget_space(d);
        hsize_t dims[5];
        int nd = H5Sget_simple_extent_ndims(sp);
        assert_true(nd >= 1 && nd <= 4);
        H5Sget_simple_extent_dims(sp, dims, NULL);
        H5Sclose(sp);
        if ((size_t)dims[0] != f->n) fail_msg("%s: %s has %llu rows, /rows has %zu", f->path,
                                              path, (unsigned long long)dims[0], f->n);
        a->role = role;
        a->shape.ndim = nd - 1;
        a->row_elems = 1;
        for (int k = 1; k < nd; k++) {
            a->shape.d[k - 1] = (size_t)dims[k];
            a->row_elems *= (size_t)dims[k];
        }
        if (role == JT_ARRAY_LABEL) {
            long c = read_int_attr(d, "classes");
            if (c <= 0) fail_msg("%s: %s has no 'classes' attribute", f->path, path);
            a->n_classes = (size_t)c;
            a->data = calloc(f->n * a->row_elems, sizeof(int32_t));
            assert_true(H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->data) >= 0);
        } else {
            a->data = jt_alloc_floats(f->n * a->row_elems);
            assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->data) >= 0);
        }
        H5Dclose(d);
    }
    H5Gclose(g);
}

static void fixture_open(ref_fixture *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = path;
    f->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f->file < 0) fail_msg("%s: cannot open", path);
    char *format = read_str_attr(f->file, path, "jtrain_format");
    if (strcmp(format, "reference") != 0 || read_int_attr(f->file, "version") != 1)
        fail_msg("%s: not a version 1 reference fixture", path);
    free(format);
    char *text = read_str_attr(f->file, path, "config"), err[1024] = "";
    if (jt_config_parse(&f->cfg, text, path, NULL, 0, err, sizeof err) != JT_OK)
        fail_msg("%s: config: %s", path, err);
    free(text);
    size_t count;
    H5Dclose(open_dataset(f, "/rows", 0, NULL, &count));
    f->n = count;
    assert_true(f->n > 0);
    f->rows = calloc(f->n, sizeof(uint64_t));
    read_exact(f, "/rows", H5T_NATIVE_UINT64, f->rows, f->n, 0, NULL);
    f->split.arrays = f->arrays;
    f->split.n = f->n;
    f->split.end = f->n;
    snprintf(f->split.path, sizeof f->split.path, "%s", path);
    load_group(f, "/inputs", JT_ARRAY_INPUT);
    load_group(f, "/labels", JT_ARRAY_LABEL);
}

static void fixture_close(ref_fixture *f) {
    for (size_t a = 0; a < f->split.n_arrays; a++) {
        if (f->arrays[a].role == JT_ARRAY_INPUT) jt_free_aligned(f->arrays[a].data);
        else free(f->arrays[a].data);
    }
    free(f->rows);
    jt_config_free(&f->cfg);
    H5Fclose(f->file);
}

/* Number of links in group path (0 if it does not exist). */
static size_t group_size(const ref_fixture *f, const char *path) {
    if (!exists(f->file, path)) return 0;
    hid_t g = H5Gopen2(f->file, path, H5P_DEFAULT);
    H5G_info_t info;
    assert_true(g >= 0 && H5Gget_info(g, &info) >= 0);
    H5Gclose(g);
    return (size_t)info.nlinks;
}

/* Reads /<group>/<view> for every view of the model into buf (a buffer laid out like
 * m->params.w); the fixture must hold exactly the model's views, with the same shapes. */
static void read_views(const ref_fixture *f, const jt_model *m, const char *group, float *buf) {
    const jt_params *p = &m->params;
    size_t have = group_size(f, group);
    if (have != p->n_views)
        fail_msg("%s: %s holds %zu views, the model has %zu", f->path, group, have, p->n_views);
    for (size_t v = 0; v < p->n_views; v++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", group, p->views[v].name);
        read_exact(f, path, H5T_NATIVE_FLOAT, buf + p->views[v].offset, p->views[v].size,
                   p->views[v].ndim, p->views[v].shape);
    }
}

static int is_invariant(const ref_fixture *f, const char *view) {
    char path[256];
    snprintf(path, sizeof path, "/grads/%s", view);
    hid_t d = H5Dopen2(f->file, path, H5P_DEFAULT);
    assert_true(d >= 0);
    int inv = read_int_attr(d, "invariant") == 1;
    H5Dclose(d);
    return inv;
}

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

/* Compares every view of got with ref (both laid out like the parameter buffer); see the top. */
static ref_worst compare_views(const ref_fixture *f, const jt_model *m, const char *what,
                               const float *got, const float *ref, int skip_invariant) {
    const jt_params *p = &m->params;
    double big = 0;
    for (size_t v = 0; v < p->n_views; v++)
        big = fmax(big, max_abs(ref + p->views[v].offset, p->views[v].size));
    ref_worst w = {0.0, "", 0};
    for (size_t v = 0; v < p->n_views; v++) {
        const jt_view *vw = &p->views[v];
        int inv = is_invariant(f, vw->name);
        if (inv && skip_invariant) continue;
        const float *a = got + vw->offset, *b = ref + vw->offset;
        double scale = inv ? big : fmax(max_abs(b, vw->size), REF_FLOOR * big), d = 0;
        for (size_t i = 0; i < vw->size; i++) {
            double e = fabs((double)a[i] - (double)b[i]);
            if (isnan(e)) d = INFINITY; /* fmax would drop a NaN */
            else if (e > d) d = e;
        }
        worst_add(&w, what, vw->name, scale > 0 ? d / scale : INFINITY);
    }
    return w;
}

/* One training-mode forward / loss / backward at global step `step` into zeroed gradients.
 * Returns the total loss and writes each head's mean cross-entropy into head_loss. */
static double grad_step(jt_model *m, const ref_fixture *f, uint64_t step, double *head_loss) {
    const void *ptr[JT_MODEL_MAX_ARRAYS];
    for (size_t a = 0; a < f->split.n_arrays; a++) ptr[a] = f->arrays[a].data;
    uint64_t labelled[JT_MODEL_MAX_ARRAYS];
    jt_xent_stats st[JT_MODEL_MAX_ARRAYS];
    assert_true(m->n_heads <= JT_MODEL_MAX_ARRAYS);
    for (size_t h = 0; h < m->n_heads; h++) {
        const jt_array *t = &f->arrays[m->chains[m->n_blocks + h].target_array];
        labelled[h] = 0;
        for (size_t i = 0; i < f->n * t->row_elems; i++)
            labelled[h] += ((const int32_t *)t->data)[i] >= 0;
    }
    memset(m->params.g, 0, m->params.total * sizeof(float));
    jt_model_forward(m, ptr, f->rows, f->n, 1, step);
    jt_model_loss(m, ptr, f->n, labelled, 1, st);
    jt_model_backward(m, ptr, f->rows, f->n, step, NULL, NULL);
    double total = 0;
    for (size_t h = 0; h < m->n_heads; h++) {
        head_loss[h] = labelled[h] ? st[h].loss_sum / (double)labelled[h] : 0.0;
        total += m->chains[m->n_blocks + h].weight * head_loss[h];
    }
    return total;
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

static void test_fixture(void **state) {
    const char *path = *state;
    ref_fixture f;
    fixture_open(&f, path);
    jt_model m;
    char err[1024] = "";
    if (jt_model_build(&m, &f.cfg, &f.split, f.n, err, sizeof err) != JT_OK)
        fail_msg("%s: model: %s", path, err);
    jt_params *p = &m.params;
    read_views(&f, &m, "/params", p->w);

    /* step 0: losses and gradients */
    double head_loss[JT_MODEL_MAX_ARRAYS];
    double total = grad_step(&m, &f, 0, head_loss);
    ref_worst lw = {0.0, "", 0};
    for (size_t h = 0; h < m.n_heads; h++) {
        char lp[256];
        snprintf(lp, sizeof lp, "/loss/%s", m.chains[m.n_blocks + h].name);
        worst_add(&lw, "loss", m.chains[m.n_blocks + h].name,
                  rel(head_loss[h], read_scalar(&f, lp)));
    }
    worst_add(&lw, "loss", "total", rel(total, read_scalar(&f, "/loss_total")));
    float *ref = jt_alloc_floats(p->total), *got = jt_alloc_floats(p->total);
    read_views(&f, &m, "/grads", ref);
    memcpy(got, p->g, p->total * sizeof(float));
    ref_worst gw = compare_views(&f, &m, "gradient", got, ref, 0);

    /* REF_STEPS training steps on the same batch */
    double ref_losses[REF_STEPS], step_loss[REF_STEPS];
    read_exact(&f, "/adam/losses", H5T_NATIVE_DOUBLE, ref_losses, REF_STEPS, 0, NULL);
    for (uint64_t s = 0; s < REF_STEPS; s++) {
        step_loss[s] = grad_step(&m, &f, s, head_loss);
        jt_clip_grad_norm(p->g, p->total, f.cfg.train.clip_norm);
        jt_adam_step(p->w, p->g, p->m, p->v, p->total, &f.cfg.train.adam, s + 1);
        char name[32];
        snprintf(name, sizeof name, "total at step %llu", (unsigned long long)s);
        worst_add(&lw, "loss", name, rel(step_loss[s], ref_losses[s]));
    }
    read_views(&f, &m, "/adam/params", ref);
    ref_worst pw = compare_views(&f, &m, "parameter", p->w, ref, 1);

    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    print_message("    %s: %zu views; worst errors: losses %.1e (%s), gradients %.1e (%s), "
                  "parameters after %d AdamW steps %.1e (%s)\n", base, p->n_views, lw.err,
                  lw.name, gw.err, gw.name, REF_STEPS, pw.err, pw.name);
    jt_free_aligned(ref);
    jt_free_aligned(got);
    jt_model_free(&m);
    fixture_close(&f);
    if (lw.over || gw.over || pw.over)
        fail_msg("%s: %d losses, %d gradients, %d parameters over %.0e (worst: %s %.2e, %s "
                 "%.2e, %s %.2e)", base, lw.over, gw.over, pw.over, REF_TOL, lw.name, lw.err,
                 gw.name, gw.err, pw.name, pw.err);
}

static int n_fixtures;

/* The directory must hold fixtures: an empty one would make this whole file pass unchecked. */
static void test_fixtures_present(void **state) {
    (void)state;
    if (n_fixtures == 0)
        fail_msg("no *.h5 in %s (scripts/make-reference-fixtures makes them)", REF_DIR);
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    static char *paths[REF_MAX_FIXTURES];
    DIR *dir = opendir(REF_DIR);
    for (struct dirent *e; dir && (e = readdir(dir)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".h5") != 0) continue;
        if (n_fixtures == REF_MAX_FIXTURES) {
            fprintf(stderr, "test_reference: more than %d fixtures\n", REF_MAX_FIXTURES);
            return 1;
        }
        size_t sz = sizeof REF_DIR + 1 + len;
        paths[n_fixtures] = malloc(sz);
        snprintf(paths[n_fixtures++], sz, "%s/%s", REF_DIR, e->d_name);
    }
    if (dir) closedir(dir);
    qsort(paths, (size_t)n_fixtures, sizeof paths[0], by_name);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the test reports what is missing itself */
    struct CMUnitTest tests[REF_MAX_FIXTURES + 1];
    tests[0] = (struct CMUnitTest)cmocka_unit_test(test_fixtures_present);
    for (int i = 0; i < n_fixtures; i++)
        tests[i + 1] = (struct CMUnitTest){strrchr(paths[i], '/') + 1, test_fixture, NULL, NULL,
                                           paths[i]};
    /* the run-time count: cmocka_run_group_tests is this call with a static array's length */
    int rc = _cmocka_run_group_tests("reference", tests, (size_t)n_fixtures + 1, NULL, NULL);
    for (int i = 0; i < n_fixtures; i++) free(paths[i]);
    return rc;
}
