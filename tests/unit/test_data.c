/* test_data.c - the data set module: validation, shard reads, normalisation, synth.
 *
 * Every file is made at run time with the HDF5 C API in a fresh temporary directory (removed at
 * the end), so each broken case is exactly one defect away from a valid file. Every error case
 * checks the status, that the message names the file, the array and the values involved, that
 * it comes back within a second, and that no HDF5 handle was left open. */
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "jtrain/data.h"

static char g_dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/jt_test_data_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    DIR *d = opendir(g_dir);
    if (!d) return -1;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    return rmdir(g_dir);
}

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* ---- building test files ---- */

static void tf_attr(hid_t loc, const char *obj, const char *name, hid_t type, size_t n,
                    const void *buf) {
    hid_t o = H5Oopen(loc, obj, H5P_DEFAULT);
    assert_true(o >= 0);
    hsize_t d = n;
    hid_t sp = n ? H5Screate_simple(1, &d, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, type, buf) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Oclose(o);
}

/* n == 0: one scalar string. fixed: fixed-length, NULL-padded (as numpy's S dtype). */
static void tf_attr_strs(hid_t loc, const char *obj, const char *name, const char *const *s,
                         size_t n, int fixed) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (!fixed) {
        H5Tset_size(t, H5T_VARIABLE);
        tf_attr(loc, obj, name, t, n, s);
    } else {
        size_t w = 1, cnt = n ? n : 1;
        for (size_t i = 0; i < cnt; i++) w = strlen(s[i]) > w ? strlen(s[i]) : w;
        char *buf = calloc(cnt, w);
        for (size_t i = 0; i < cnt; i++) memcpy(buf + i * w, s[i], strlen(s[i]));
        H5Tset_size(t, w);
        H5Tset_strpad(t, H5T_STR_NULLPAD);
        tf_attr(loc, obj, name, t, n, buf);
        free(buf);
    }
    H5Tclose(t);
}

static void tf_array(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank,
                     const hsize_t *dims, const void *buf) {
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
}

/* Creates a file; writes jtrain_format (if format) and version (if version >= 0). */
static hid_t tf_create(const char *path, const char *format, int version) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    if (format) tf_attr_strs(f, "/", "jtrain_format", &format, 0, 0);
    if (version >= 0) tf_attr(f, "/", "version", H5T_NATIVE_INT, 0, &version);
    return f;
}

enum { B_IMAGE = 1, B_AUDIO = 2, B_LABEL = 4, B_CAPTION = 8 };
static const char *const k_cls3[3] = {"cat", "dog", "bird"};
static const char *const k_vocab5[5] = {"<end>", "a", "b", "c", "d"};
static const double k_mean[2] = {1.0, 2.0}, k_std[2] = {2.0, 4.0};

static uint8_t img_val(size_t i, size_t k) { return (uint8_t)((i * 6 + k) % 256); }
static float aud_val(size_t i, size_t k) { return (float)i + 0.25f * (float)k; }

/* A valid file with /train (n rows) and /test (2 rows, image only):
 *   image   uint8   [n, 2, 3]  no attributes: x / 255
 *   audio   float32 [n, 3, 2]  mean (1, 2), std (2, 4) per entry of the last axis
 *   label   int32   [n]        i % 3, classes cat/dog/bird
 *   caption int32   [n, 4]     (i % 5, 0, -1, -1), vocab of 5
 * minus the arrays in skip. Returns the open file; /train is at "train". */
static hid_t make_base(const char *path, size_t n, unsigned skip) {
    hid_t f = tf_create(path, "dataset", 1);
    hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    uint8_t *img = calloc(n * 6, 1);
    float *aud = calloc(n * 6, sizeof *aud);
    int32_t *lab = calloc(n, sizeof *lab), *cap = calloc(n * 4, sizeof *cap);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < 6; k++) {
            img[i * 6 + k] = img_val(i, k);
            aud[i * 6 + k] = aud_val(i, k);
        }
        lab[i] = (int32_t)(i % 3);
        cap[i * 4] = (int32_t)(i % 5);
        cap[i * 4 + 1] = 0;
        cap[i * 4 + 2] = cap[i * 4 + 3] = -1;
    }
    hsize_t d3[3] = {n, 2, 3}, d3b[3] = {n, 3, 2}, d1[1] = {n}, d2[2] = {n, 4};
    if (!(skip & B_IMAGE)) tf_array(g, "image", H5T_STD_U8LE, H5T_NATIVE_UINT8, 3, d3, img);
    if (!(skip & B_AUDIO)) {
        tf_array(g, "audio", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, d3b, aud);
        tf_attr(g, "audio", "mean", H5T_NATIVE_DOUBLE, 2, k_mean);
        tf_attr(g, "audio", "std", H5T_NATIVE_DOUBLE, 2, k_std);
    }
    if (!(skip & B_LABEL)) {
        tf_array(g, "label", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d1, lab);
        tf_attr_strs(g, "label", "classes", k_cls3, 3, 0);
    }
    if (!(skip & B_CAPTION)) {
        tf_array(g, "caption", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, d2, cap);
        tf_attr_strs(g, "caption", "vocab", k_vocab5, 5, 0);
    }
    H5Gclose(g);
    g = H5Gcreate2(f, "test", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dt[3] = {2, 2, 3};
    tf_array(g, "image", H5T_STD_U8LE, H5T_NATIVE_UINT8, 3, dt, img);
    H5Gclose(g);
    free(img);
    free(aud);
    free(lab);
    free(cap);
    return f;
}

static const char *const k_in[2] = {"image", "audio"};
static const char *const k_lb[2] = {"label", "caption"};

static void assert_no_open_handles(void) {
    assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

/* Opens path expecting JT_EDATA, fast, with a message holding every string of want (NULL-ended),
 * the split left zeroed and no HDF5 handle left open. */
static void expect_fail_io(const char *path, const char *split, const char *const *in, size_t nin,
                           const char *const *lb, size_t nlb, int rank, int world,
                           const char *const *want) {
    jt_split s;
    char err[1024] = "";
    double t0 = jt_now();
    jt_status st = jt_data_open(&s, path, split, in, nin, lb, nlb, rank, world, err, sizeof err);
    double dt = jt_now() - t0;
    print_message("    -> %s\n", err);
    assert_int_equal(st, JT_EDATA);
    assert_true(dt < 1.0);
    assert_non_null(strstr(err, path));
    for (size_t i = 0; want[i]; i++) {
        if (!strstr(err, want[i])) print_error("message lacks \"%s\"\n", want[i]);
        assert_non_null(strstr(err, want[i]));
    }
    assert_null(s.arrays);
    assert_int_equal(s.n_arrays, 0);
    assert_no_open_handles();
}

#define EXPECT_FAIL(path, ...)                                                                \
    do {                                                                                      \
        const char *const want_[] = {__VA_ARGS__, NULL};                                      \
        expect_fail_io(path, "train", k_in, 2, k_lb, 2, 0, 1, want_);                         \
    } while (0)

/* ---- shards ---- */

static void test_shard_begin(void **state) {
    (void)state;
    assert_int_equal(jt_data_shard_begin(10, 3, 0), 0);
    assert_int_equal(jt_data_shard_begin(10, 3, 1), 3);
    assert_int_equal(jt_data_shard_begin(10, 3, 2), 6);
    assert_int_equal(jt_data_shard_begin(10, 3, 3), 10);
    for (size_t n = 0; n < 60; n++)
        for (int w = 1; w <= 8; w++) {
            assert_int_equal(jt_data_shard_begin(n, w, 0), 0);
            assert_int_equal(jt_data_shard_begin(n, w, w), n);
            size_t lo = n, hi = 0;
            for (int r = 0; r < w; r++) {
                size_t sz = jt_data_shard_begin(n, w, r + 1) - jt_data_shard_begin(n, w, r);
                lo = sz < lo ? sz : lo;
                hi = sz > hi ? sz : hi;
            }
            assert_true(hi - lo <= 1);
        }
    size_t big = SIZE_MAX / 2 + 7; /* r * n would overflow */
    assert_int_equal(jt_data_shard_begin(big, 3, 3), big);
    assert_true(jt_data_shard_begin(big, 3, 2) > jt_data_shard_begin(big, 3, 1));
}

static const char *const k_syn_in[2] = {"image", "audio"};
static const char *const k_syn_lb[5] = {"label", "word", "speaker", "group", "caption"};

static void open_synth(jt_split *s, const char *path, const char *split, int rank, int world) {
    char err[1024] = "";
    jt_status st = jt_data_open(s, path, split, k_syn_in, 2, k_syn_lb, 5, rank, world, err,
                                sizeof err);
    if (st != JT_OK) print_error("%s\n", err);
    assert_int_equal(st, JT_OK);
}

static void test_synth_opens_and_validates(void **state) {
    (void)state;
    const char *path = tmp_path("synth.h5");
    char err[512];
    assert_int_equal(jt_synth_write(path, 120, 30, 1, err, sizeof err), JT_OK);
    jt_split s;
    open_synth(&s, path, "train", 0, 1);
    assert_int_equal(s.n, 120);
    assert_int_equal(s.begin, 0);
    assert_int_equal(s.end, 120);
    assert_int_equal(s.n_arrays, 7);
    jt_array *img = jt_data_find(&s, "image"), *aud = jt_data_find(&s, "audio");
    jt_array *lab = jt_data_find(&s, "label"), *word = jt_data_find(&s, "word");
    jt_array *spk = jt_data_find(&s, "speaker"), *grp = jt_data_find(&s, "group");
    jt_array *cap = jt_data_find(&s, "caption");
    assert_non_null(img);
    assert_non_null(cap);
    assert_null(jt_data_find(&s, "nothing"));
    assert_int_equal(img->role, JT_ARRAY_INPUT);
    assert_int_equal(img->shape.ndim, 2);
    assert_int_equal(img->shape.d[0], 28);
    assert_int_equal(img->row_elems, 784);
    assert_int_equal(aud->shape.d[0], 32);
    assert_int_equal(aud->shape.d[1], 40);
    assert_int_equal(lab->role, JT_ARRAY_LABEL);
    assert_int_equal(lab->shape.ndim, 0);
    assert_int_equal(lab->row_elems, 1);
    assert_int_equal(lab->n_classes, 10);
    assert_string_equal(lab->classes[0], "t-shirt");
    assert_string_equal(lab->classes[9], "ankle boot");
    assert_int_equal(word->n_classes, 10);
    assert_int_equal(spk->n_classes, 16);
    assert_int_equal(grp->n_classes, 4);
    assert_int_equal(cap->shape.ndim, 1);
    assert_int_equal(cap->row_elems, cap->shape.d[0]);
    assert_string_equal(cap->classes[0], "<end>");

    const float *x = img->data;
    for (size_t i = 0; i < 120 * 784; i++) assert_true(x[i] >= 0.0f && x[i] <= 1.0f);
    const int32_t *y = lab->data, *w = word->data, *sp = spk->data, *g = grp->data;
    const int32_t *c = cap->data;
    int group_of[10];
    for (int k = 0; k < 10; k++) group_of[k] = -1;
    size_t masked = 0, L = cap->row_elems;
    for (size_t i = 0; i < 120; i++) {
        assert_int_equal(w[i], y[i]);
        if (group_of[y[i]] < 0) group_of[y[i]] = g[i];
        assert_int_equal(group_of[y[i]], g[i]); /* group is a function of label */
        masked += sp[i] == -1;
        /* the caption spells the class name, then 0, then -1 */
        const char *name = lab->classes[y[i]];
        size_t len = strlen(name);
        assert_true(len < L);
        for (size_t k = 0; k < len; k++) {
            assert_true(c[i * L + k] > 0);
            assert_int_equal(cap->classes[c[i * L + k]][0], name[k]);
        }
        assert_int_equal(c[i * L + len], 0);
        for (size_t k = len + 1; k < L; k++) assert_int_equal(c[i * L + k], -1);
    }
    assert_true(masked >= 2 && masked <= 6);
    /* audio mean/std come from train: normalised train audio is ~N(0, 1) per band */
    const float *a = aud->data;
    for (size_t f = 0; f < 40; f++) {
        double m = 0, v = 0;
        for (size_t i = 0; i < 120 * 32; i++) m += a[i * 40 + f];
        m /= 120 * 32;
        for (size_t i = 0; i < 120 * 32; i++) v += (a[i * 40 + f] - m) * (a[i * 40 + f] - m);
        v /= 120 * 32;
        assert_true(fabs(m) < 1e-3);
        assert_true(fabs(v - 1.0) < 1e-3);
    }
    jt_data_close(&s);
    assert_null(s.arrays);
    jt_data_close(&s);
    jt_data_close(NULL);
    open_synth(&s, path, "test", 0, 1);
    assert_int_equal(s.n, 30);
    jt_data_close(&s);
    assert_no_open_handles();
}

/* Nearest class mean on the test split: the tasks are learnable from the right modality. */
static double centroid_accuracy(const jt_array *xtr, const jt_array *ytr, const jt_array *xte,
                                const jt_array *yte, size_t ntr, size_t nte) {
    size_t k = ytr->n_classes, d = xtr->row_elems;
    double *cen = calloc(k * d, sizeof *cen);
    size_t *cnt = calloc(k, sizeof *cnt);
    const float *a = xtr->data, *b = xte->data;
    const int32_t *ya = ytr->data, *yb = yte->data;
    for (size_t i = 0; i < ntr; i++) {
        if (ya[i] < 0) continue;
        cnt[ya[i]]++;
        for (size_t j = 0; j < d; j++) cen[ya[i] * d + j] += a[i * d + j];
    }
    for (size_t c = 0; c < k; c++)
        for (size_t j = 0; j < d; j++) cen[c * d + j] /= cnt[c] ? (double)cnt[c] : 1.0;
    size_t right = 0, total = 0;
    for (size_t i = 0; i < nte; i++) {
        if (yb[i] < 0) continue;
        size_t best = 0;
        double bd = INFINITY;
        for (size_t c = 0; c < k; c++) {
            double dist = 0;
            for (size_t j = 0; j < d; j++) {
                double e = b[i * d + j] - cen[c * d + j];
                dist += e * e;
            }
            if (dist < bd) {
                bd = dist;
                best = c;
            }
        }
        right += (int32_t)best == yb[i];
        total++;
    }
    free(cen);
    free(cnt);
    return (double)right / (double)total;
}

static void test_synth_learnable(void **state) {
    (void)state;
    const char *path = tmp_path("learn.h5");
    char err[512];
    assert_int_equal(jt_synth_write(path, 800, 200, 3, err, sizeof err), JT_OK);
    jt_split tr, te;
    open_synth(&tr, path, "train", 0, 1);
    open_synth(&te, path, "test", 0, 1);
#define ACC(x, y) centroid_accuracy(jt_data_find(&tr, x), jt_data_find(&tr, y), \
                                    jt_data_find(&te, x), jt_data_find(&te, y), 800, 200)
    double img_label = ACC("image", "label"), aud_word = ACC("audio", "word");
    double aud_spk = ACC("audio", "speaker"), img_spk = ACC("image", "speaker");
#undef ACC
    print_message("    nearest mean: image->label %.2f audio->word %.2f audio->speaker %.2f "
                  "image->speaker %.2f\n", img_label, aud_word, aud_spk, img_spk);
    assert_true(img_label > 0.8);
    assert_true(aud_word > 0.8);
    assert_true(aud_spk > 0.6);
    assert_true(img_spk < 0.2); /* speaker is in the audio only (chance 1/16) */
    jt_data_close(&tr);
    jt_data_close(&te);
}

static void assert_same_arrays(const jt_split *a, const jt_split *b, int same) {
    int all_equal = 1;
    assert_int_equal(a->n_arrays, b->n_arrays);
    for (size_t i = 0; i < a->n_arrays; i++) {
        size_t bytes = (a->end - a->begin) * a->arrays[i].row_elems * 4;
        all_equal &= memcmp(a->arrays[i].data, b->arrays[i].data, bytes) == 0;
        if (same) assert_memory_equal(a->arrays[i].data, b->arrays[i].data, bytes);
    }
    if (!same) assert_false(all_equal);
}

static long file_bytes(const char *path, unsigned char **out) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n);
    assert_int_equal(fread(*out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return n;
}

static void test_synth_reproducible(void **state) {
    (void)state;
    const char *p1 = tmp_path("r1.h5"), *p2 = tmp_path("r2.h5"), *p3 = tmp_path("r3.h5");
    char err[512];
    assert_int_equal(jt_synth_write(p1, 300, 40, 11, err, sizeof err), JT_OK);
    assert_int_equal(jt_synth_write(p2, 300, 40, 11, err, sizeof err), JT_OK);
    assert_int_equal(jt_synth_write(p3, 300, 40, 12, err, sizeof err), JT_OK);
    jt_split a, b, c;
    open_synth(&a, p1, "train", 0, 1);
    open_synth(&b, p2, "train", 0, 1);
    open_synth(&c, p3, "train", 0, 1);
    assert_same_arrays(&a, &b, 1);
    assert_same_arrays(&a, &c, 0);
    assert_memory_not_equal(jt_data_find(&a, "image")->data, jt_data_find(&c, "image")->data,
                            300 * 784 * 4);
    assert_memory_not_equal(jt_data_find(&a, "audio")->data, jt_data_find(&c, "audio")->data,
                            300 * 1280 * 4);
    jt_data_close(&a);
    jt_data_close(&b);
    jt_data_close(&c);
    /* no timestamps: the whole file is byte-identical */
    unsigned char *b1, *b2;
    long n1 = file_bytes(p1, &b1), n2 = file_bytes(p2, &b2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, (size_t)n1);
    free(b1);
    free(b2);
}

static void test_synth_errors(void **state) {
    (void)state;
    char err[512] = "";
    assert_int_equal(jt_synth_write("/nonexistent_dir_jt/x.h5", 10, 10, 1, err, sizeof err),
                     JT_EDATA);
    assert_non_null(strstr(err, "/nonexistent_dir_jt/x.h5"));
    assert_int_equal(jt_synth_write(tmp_path("zero.h5"), 0, 10, 1, err, sizeof err), JT_EUSAGE);
    assert_no_open_handles();
}

static void test_shards_concatenate(void **state) {
    (void)state;
    const char *path = tmp_path("shard.h5");
    char err[512];
    assert_int_equal(jt_synth_write(path, 100, 20, 2, err, sizeof err), JT_OK);
    jt_split whole, part[3];
    open_synth(&whole, path, "train", 0, 1);
    size_t next = 0, lo = 100, hi = 0;
    for (int r = 0; r < 3; r++) {
        open_synth(&part[r], path, "train", r, 3);
        assert_int_equal(part[r].n, 100);
        assert_int_equal(part[r].begin, jt_data_shard_begin(100, 3, r));
        assert_int_equal(part[r].end, jt_data_shard_begin(100, 3, r + 1));
        assert_int_equal(part[r].begin, next);
        next = part[r].end;
        size_t sz = part[r].end - part[r].begin;
        lo = sz < lo ? sz : lo;
        hi = sz > hi ? sz : hi;
        for (size_t i = 0; i < whole.n_arrays; i++) {
            const jt_array *w = &whole.arrays[i], *p = &part[r].arrays[i];
            assert_string_equal(w->name, p->name);
            size_t row_bytes = w->row_elems * 4;
            assert_memory_equal((const char *)w->data + part[r].begin * row_bytes, p->data,
                                sz * row_bytes);
        }
    }
    assert_int_equal(next, 100);
    assert_true(hi - lo <= 1);
    assert_true(lo >= 33);
    for (int r = 0; r < 3; r++) jt_data_close(&part[r]);
    jt_data_close(&whole);
    assert_no_open_handles();
}

/* Labelled rows are counted over the whole split, the same on every rank, whatever rows the
 * rank's own shard holds (issue 9: a head without a single label must be refused globally). */
static void test_labelled_counts(void **state) {
    (void)state;
    const char *path = tmp_path("labelled.h5");
    int32_t lab[20], cap[20 * 4];
    for (int i = 0; i < 20; i++) {
        lab[i] = i >= 15 ? (int32_t)(i % 3) : -1; /* 5 labelled rows, all in the last shard */
        for (int k = 0; k < 4; k++) cap[i * 4 + k] = -1;
        if (i % 4 == 0) cap[i * 4 + 2] = 1; /* 5 rows with one token (not at position 0) */
    }
    hsize_t d1[1] = {20}, d2[2] = {20, 4};
    hid_t f = make_base(path, 20, B_LABEL | B_CAPTION);
    tf_array(f, "train/label", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d1, lab);
    tf_attr_strs(f, "train/label", "classes", k_cls3, 3, 0);
    tf_array(f, "train/caption", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, d2, cap);
    tf_attr_strs(f, "train/caption", "vocab", k_vocab5, 5, 0);
    H5Fclose(f);
    for (int r = 0; r < 4; r++) {
        jt_split s;
        char err[512] = "";
        assert_int_equal(jt_data_open(&s, path, "train", k_in, 2, k_lb, 2, r, 4, err, sizeof err),
                         JT_OK);
        assert_int_equal(jt_data_find(&s, "label")->n_labelled, 5);
        assert_int_equal(jt_data_find(&s, "caption")->n_labelled, 5);
        jt_data_close(&s);
    }
    jt_split s;
    char err[512] = "";
    assert_int_equal(jt_data_open(&s, path, "train", k_in, 2, k_lb, 2, 0, 0, err, sizeof err),
                     JT_OK);
    assert_int_equal(jt_data_find(&s, "label")->n_labelled, 0); /* metadata only: not counted */
    jt_data_close(&s);
    assert_no_open_handles();
}

/* ---- normalisation ---- */

static void test_normalisation(void **state) {
    (void)state;
    const char *path = tmp_path("norm.h5");
    const size_t n = 9;
    hid_t f = make_base(path, n, 0);
    hid_t g = H5Gopen2(f, "train", H5P_DEFAULT);
    uint8_t img[9 * 6];
    float raw[9 * 6];
    for (size_t i = 0; i < n * 6; i++) {
        img[i] = img_val(i / 6, i % 6);
        raw[i] = aud_val(i / 6, i % 6);
    }
    hsize_t d3[3] = {n, 2, 3}, d3b[3] = {n, 3, 2};
    const double scale = 0.5, offset = -1.0, m1 = 3.0, s1 = 0.5;
    tf_array(g, "image_so", H5T_STD_U8LE, H5T_NATIVE_UINT8, 3, d3, img);
    tf_attr(g, "image_so", "scale", H5T_NATIVE_DOUBLE, 0, &scale);
    tf_attr(g, "image_so", "offset", H5T_NATIVE_DOUBLE, 0, &offset);
    tf_array(g, "audio_scalar", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, d3b, raw);
    tf_attr(g, "audio_scalar", "mean", H5T_NATIVE_DOUBLE, 0, &m1);
    tf_attr(g, "audio_scalar", "std", H5T_NATIVE_DOUBLE, 1, &s1);
    tf_array(g, "audio_raw", H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, 3, d3b,
             raw); /* big-endian float32: still float32 */
    H5Gclose(g);
    H5Fclose(f);

    const char *in[] = {"image", "image_so", "audio", "audio_scalar", "audio_raw"};
    for (int world = 1; world <= 2; world++)
        for (int rank = 0; rank < world; rank++) {
            jt_split s;
            char err[512] = "";
            jt_status st = jt_data_open(&s, path, "train", in, 5, NULL, 0, rank, world, err,
                                        sizeof err);
            if (st != JT_OK) print_error("%s\n", err);
            assert_int_equal(st, JT_OK);
            const float *a = jt_data_find(&s, "image")->data;
            const float *b = jt_data_find(&s, "image_so")->data;
            const float *c = jt_data_find(&s, "audio")->data;
            const float *d = jt_data_find(&s, "audio_scalar")->data;
            const float *e = jt_data_find(&s, "audio_raw")->data;
            for (size_t r = s.begin; r < s.end; r++)
                for (size_t k = 0; k < 6; k++) {
                    size_t j = (r - s.begin) * 6 + k;
                    double u = img_val(r, k), x = aud_val(r, k);
                    assert_float_equal(a[j], u / 255.0, 1e-6);
                    assert_float_equal(b[j], u * 0.5 - 1.0, 1e-5);
                    /* audio (T=3, F=2): band k % 2 */
                    assert_float_equal(c[j], (x - k_mean[k % 2]) / k_std[k % 2], 1e-5);
                    assert_float_equal(d[j], (x - 3.0) / 0.5, 1e-5);
                    assert_float_equal(e[j], x, 0.0);
                }
            jt_data_close(&s);
        }
    assert_no_open_handles();
}

/* world == 0: shapes and classes only; no row is read, so a bad label value goes unnoticed. */
static void test_metadata_only(void **state) {
    (void)state;
    const char *path = tmp_path("meta.h5");
    hid_t f = make_base(path, 5, B_LABEL);
    int32_t lab[5] = {0, 1, 2, 99, 0};
    hsize_t d1[1] = {5};
    tf_array(f, "train/label", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d1, lab);
    tf_attr_strs(f, "train/label", "classes", k_cls3, 3, 0);
    H5Fclose(f);
    jt_split s;
    char err[512] = "";
    assert_int_equal(jt_data_open(&s, path, "train", k_in, 2, k_lb, 2, 0, 0, err, sizeof err),
                     JT_OK);
    assert_int_equal(s.n, 5);
    assert_int_equal(s.begin, 0);
    assert_int_equal(s.end, 0);
    for (size_t i = 0; i < s.n_arrays; i++) assert_null(s.arrays[i].data);
    assert_int_equal(jt_data_find(&s, "image")->shape.d[1], 3);
    assert_int_equal(jt_data_find(&s, "label")->n_classes, 3);
    assert_string_equal(jt_data_find(&s, "label")->classes[2], "bird");
    assert_int_equal(jt_data_find(&s, "caption")->n_classes, 5);
    jt_data_close(&s);
    /* the same file with rows read: the bad value is found */
    const char *const want[] = {"/train/label", "row 3", "99", NULL};
    expect_fail_io(path, "train", k_in, 2, k_lb, 2, 0, 1, want);
}

/* Any integer label type is read as int32; fixed-length class names work. */
static void test_label_types(void **state) {
    (void)state;
    const char *path = tmp_path("types.h5");
    hid_t f = make_base(path, 4, B_LABEL);
    hsize_t d1[1] = {4};
    int8_t l8[4] = {-1, 0, 1, 2};
    uint16_t l16[4] = {2, 1, 0, 2};
    int64_t l64[4] = {1, -1, 2, 0};
    tf_array(f, "train/label", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, d1, l8);
    tf_attr_strs(f, "train/label", "classes", k_cls3, 3, 1);
    tf_array(f, "train/l16", H5T_STD_U16BE, H5T_NATIVE_UINT16, 1, d1, l16);
    tf_attr_strs(f, "train/l16", "classes", k_cls3, 3, 0);
    tf_array(f, "train/l64", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d1, l64);
    tf_attr_strs(f, "train/l64", "classes", k_cls3, 3, 1);
    H5Fclose(f);
    const char *lb[] = {"label", "l16", "l64", "label"}; /* a repeated name is read once */
    jt_split s;
    char err[512] = "";
    jt_status st = jt_data_open(&s, path, "train", NULL, 0, lb, 4, 0, 1, err, sizeof err);
    if (st != JT_OK) print_error("%s\n", err);
    assert_int_equal(st, JT_OK);
    assert_int_equal(s.n_arrays, 3);
    const int32_t *a = jt_data_find(&s, "label")->data, *b = jt_data_find(&s, "l16")->data;
    const int32_t *c = jt_data_find(&s, "l64")->data;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(a[i], l8[i]);
        assert_int_equal(b[i], l16[i]);
        assert_int_equal(c[i], l64[i]);
    }
    assert_string_equal(jt_data_find(&s, "label")->classes[1], "dog");
    assert_string_equal(jt_data_find(&s, "l64")->classes[2], "bird");
    jt_data_close(&s);
    assert_no_open_handles();
}

/* ---- errors ---- */

static void test_err_file(void **state) {
    (void)state;
    EXPECT_FAIL(tmp_path("missing.h5"), "no such file");
    const char *txt = tmp_path("text.h5");
    FILE *fp = fopen(txt, "w");
    assert_non_null(fp);
    fputs("image,label\n1,2\n", fp);
    fclose(fp);
    EXPECT_FAIL(txt, "not an HDF5 file");
    EXPECT_FAIL(g_dir, "directory");
}

static void test_err_root(void **state) {
    (void)state;
    const char *p = tmp_path("root.h5");
    H5Fclose(tf_create(p, NULL, 1));
    EXPECT_FAIL(p, "jtrain_format", "\"dataset\"");
    H5Fclose(tf_create(p, "checkpoint", 1));
    EXPECT_FAIL(p, "jtrain_format is \"checkpoint\", expected \"dataset\"");
    H5Fclose(tf_create(p, "dataset", -1));
    EXPECT_FAIL(p, "version");
    H5Fclose(tf_create(p, "dataset", 2));
    EXPECT_FAIL(p, "version is 2, expected 1");
}

static void test_err_split_and_array(void **state) {
    (void)state;
    const char *p = tmp_path("split.h5");
    H5Fclose(make_base(p, 6, 0));
    const char *const want[] = {"no split 'val'", "test", "train", NULL};
    expect_fail_io(p, "val", k_in, 2, k_lb, 2, 0, 1, want);
    const char *in[] = {"image", "audio2"};
    const char *const want2[] = {"/train/audio2", "audio", "caption", "image", "label", NULL};
    expect_fail_io(p, "train", in, 2, k_lb, 2, 0, 1, want2);
    const char *lb[] = {"image/x"};
    const char *const want3[] = {"image/x", NULL};
    expect_fail_io(p, "train", NULL, 0, lb, 1, 0, 1, want3);
}

static void test_err_rank(void **state) {
    (void)state;
    const char *p = tmp_path("rank.h5");
    hid_t f = make_base(p, 6, B_IMAGE);
    uint8_t img[6] = {0};
    hsize_t d1[1] = {6};
    tf_array(f, "train/image", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, d1, img);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/image", "rank 1", "[6]", "rank 2");

    f = make_base(p, 6, B_LABEL);
    int32_t lab[24] = {0};
    hsize_t d3[3] = {6, 2, 2};
    tf_array(f, "train/label", H5T_STD_I32LE, H5T_NATIVE_INT32, 3, d3, lab);
    tf_attr_strs(f, "train/label", "classes", k_cls3, 3, 0);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/label", "rank 3", "[6, 2, 2]");
}

static void test_err_dtype(void **state) {
    (void)state;
    const char *p = tmp_path("dtype.h5");
    hid_t f = make_base(p, 6, B_IMAGE);
    double img[36] = {0};
    hsize_t d3[3] = {6, 2, 3};
    tf_array(f, "train/image", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3, d3, img);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/image", "float64", "uint8 or float32");

    f = make_base(p, 6, B_IMAGE);
    int16_t img16[36] = {0};
    tf_array(f, "train/image", H5T_STD_I16LE, H5T_NATIVE_INT16, 3, d3, img16);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/image", "int16");

    f = make_base(p, 6, B_LABEL);
    float lab[6] = {0};
    hsize_t d1[1] = {6};
    tf_array(f, "train/label", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, d1, lab);
    tf_attr_strs(f, "train/label", "classes", k_cls3, 3, 0);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/label", "float32", "integer");
}

static void test_err_label_range(void **state) {
    (void)state;
    const char *p = tmp_path("range.h5");
    hsize_t d1[1] = {20};
    int32_t lab[20] = {0};
    lab[7] = 3;
    hid_t f = make_base(p, 20, B_LABEL);
    tf_array(f, "train/label", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d1, lab);
    tf_attr_strs(f, "train/label", "classes", k_cls3, 3, 0);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/label", "row 7", "holds 3", "[-1, 3)");

    lab[7] = 0;
    lab[17] = -2;
    f = make_base(p, 20, B_LABEL);
    tf_array(f, "train/label", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d1, lab);
    tf_attr_strs(f, "train/label", "classes", k_cls3, 3, 0);
    H5Fclose(f);
    /* checked per shard, named by the global row: rank 0 of 2 holds rows 0..9 and is fine */
    jt_split s;
    char err[512] = "";
    assert_int_equal(jt_data_open(&s, p, "train", k_in, 2, k_lb, 2, 0, 2, err, sizeof err),
                     JT_OK);
    jt_data_close(&s);
    const char *const want[] = {"/train/label", "row 17", "holds -2", NULL};
    expect_fail_io(p, "train", k_in, 2, k_lb, 2, 1, 2, want);

    /* int64 beyond int32: not clipped silently */
    int64_t big[20] = {0};
    big[5] = (int64_t)1 << 40;
    f = make_base(p, 20, B_LABEL);
    tf_array(f, "train/label", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d1, big);
    tf_attr_strs(f, "train/label", "classes", k_cls3, 3, 0);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/label", "row 5", "int32");

    /* a sequence label against its vocab */
    int32_t cap[20 * 4];
    for (int i = 0; i < 80; i++) cap[i] = i % 4 == 1 ? 0 : -1;
    cap[2 * 4 + 1] = 5;
    hsize_t d2[2] = {20, 4};
    f = make_base(p, 20, B_CAPTION);
    tf_array(f, "train/caption", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, d2, cap);
    tf_attr_strs(f, "train/caption", "vocab", k_vocab5, 5, 0);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/caption", "row 2 position 1", "holds 5", "[-1, 5)");
}

static void test_err_rows(void **state) {
    (void)state;
    const char *p = tmp_path("rows.h5");
    hid_t f = make_base(p, 6, B_LABEL);
    int32_t lab[5] = {0};
    hsize_t d1[1] = {5};
    tf_array(f, "train/label", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d1, lab);
    tf_attr_strs(f, "train/label", "classes", k_cls3, 3, 0);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/label has 5 rows", "/train/image has 6");

    /* an array nobody asked for must agree too (docs/data-format.md: all arrays of a split) */
    f = make_base(p, 6, 0);
    tf_array(f, "train/extra", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d1, lab);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/extra has 5 rows", "6");

    H5Fclose(make_base(p, 3, 0));
    const char *const want[] = {"split 'train' has 3 rows, fewer than the 4 ranks", NULL};
    expect_fail_io(p, "train", k_in, 2, k_lb, 2, 3, 4, want);
}

static void test_err_attributes(void **state) {
    (void)state;
    const char *p = tmp_path("attr.h5");
    hsize_t d3b[3] = {4, 3, 2};
    float aud[24] = {0};
    const double zero_std[2] = {1.0, 0.0}, three[3] = {1, 1, 1}, one = 1.0;

    hid_t f = make_base(p, 4, B_AUDIO);
    tf_array(f, "train/audio", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, d3b, aud);
    tf_attr(f, "train/audio", "mean", H5T_NATIVE_DOUBLE, 2, k_mean);
    tf_attr(f, "train/audio", "std", H5T_NATIVE_DOUBLE, 2, zero_std);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/audio", "std[1] is 0", "> 0");

    f = make_base(p, 4, B_AUDIO);
    tf_array(f, "train/audio", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, d3b, aud);
    tf_attr(f, "train/audio", "mean", H5T_NATIVE_DOUBLE, 2, k_mean);
    tf_attr(f, "train/audio", "std", H5T_NATIVE_DOUBLE, 3, three);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/audio", "std has 3 values", "1 or 2");

    f = make_base(p, 4, B_AUDIO);
    tf_array(f, "train/audio", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, d3b, aud);
    tf_attr(f, "train/audio", "mean", H5T_NATIVE_DOUBLE, 0, &one);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/audio", "mean but no std");

    f = make_base(p, 4, B_AUDIO);
    tf_array(f, "train/audio", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, d3b, aud);
    tf_attr(f, "train/audio", "scale", H5T_NATIVE_DOUBLE, 3, three);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/audio", "scale has 3 values");

    f = make_base(p, 4, B_AUDIO);
    aud[2 * 6 + 1] = NAN;
    tf_array(f, "train/audio", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, d3b, aud);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/audio", "row 2", "nan");

    int32_t lab[4] = {0};
    hsize_t d1[1] = {4}, d2[2] = {4, 1};
    f = make_base(p, 4, B_LABEL);
    tf_array(f, "train/label", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d1, lab);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/label", "classes");

    f = make_base(p, 4, B_CAPTION);
    tf_array(f, "train/caption", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, d2, lab);
    H5Fclose(f);
    EXPECT_FAIL(p, "/train/caption", "vocab");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_begin),
        cmocka_unit_test(test_synth_opens_and_validates),
        cmocka_unit_test(test_synth_learnable),
        cmocka_unit_test(test_synth_reproducible),
        cmocka_unit_test(test_synth_errors),
        cmocka_unit_test(test_shards_concatenate),
        cmocka_unit_test(test_labelled_counts),
        cmocka_unit_test(test_normalisation),
        cmocka_unit_test(test_metadata_only),
        cmocka_unit_test(test_label_types),
        cmocka_unit_test(test_err_file),
        cmocka_unit_test(test_err_root),
        cmocka_unit_test(test_err_split_and_array),
        cmocka_unit_test(test_err_rank),
        cmocka_unit_test(test_err_dtype),
        cmocka_unit_test(test_err_label_range),
        cmocka_unit_test(test_err_rows),
        cmocka_unit_test(test_err_attributes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
