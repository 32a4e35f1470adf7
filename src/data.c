/* data.c - the HDF5 data set (docs/data-format.md): validates a split and reads this
 * rank's shard into memory.
 *
 * Invariants kept here:
 *   - every check (file, format, split, each array's rank, dtype, filters, N and attributes)
 *     runs before a single row is read, and a failure is one message that names the file, the
 *     array as /split/name, what was expected and what was found (HDF5's own reason when HDF5
 *     failed);
 *   - of inputs, only rows [begin, end) are ever read, in blocks of whole chunks (a rank's
 *     memory is its shard, not the data set); label arrays are small and are also read whole,
 *     in blocks, to count their labelled rows over the whole split;
 *   - the file is untrusted: all of this runs in a forked child (h5util.h, jt_h5_isolated),
 *     which sends the checked split and its rows through a pipe; this process never calls
 *     HDF5 on the file (unless JTRAIN_H5_ISOLATE=0);
 *   - every HDF5 handle opened here is closed on every path (goto cleanup), and on failure the
 *     split is left zeroed. Attributes and data sets are read through h5util (checks before
 *     each read, HDF5's reason on failure); this file only opens the file, groups and objects. */
#include "jtrain/data.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jtrain/h5util.h"

#define DATA_MAX_RANK (1 + JT_SHAPE_MAX_DIMS) /* N plus the per-sample axes */
#define WHERE_MAX (2 * JT_NAME_MAX + 4)       /* "/split/name" */
#define LIST_MAX 512                          /* names listed in a message */
#define WHY_MAX 640                           /* what h5util says is wrong */
#define COUNT_BLOCK ((size_t)1 << 16)         /* label values per read when counting */
#define READ_BLOCK ((size_t)32 << 20)         /* bytes of a shard read at a time (about) */

/* Who is asking, for messages: every message starts with the file. */
typedef struct {
    const char *path;
    const char *split;
    char *err;
    size_t errlen;
} data_ctx;

/* An array being opened: its HDF5 handle and how stored values become floats. */
typedef struct {
    hid_t dset;
    int rank;
    hsize_t dims[DATA_MAX_RANK];
    hsize_t chunk_rows; /* rows of a chunk (0: not chunked) */
    int u8;             /* inputs: stored as uint8 (else float32) */
    int norm;           /* inputs: 0 as is, 1 x*scale+offset, 2 (x-mean)/std */
    double scale, offset;
    double *mean, *std; /* n_mean / n_std values: 1 (scalar) or one per entry of the last axis */
    size_t n_mean, n_std;
} data_pending;

/* The arguments of jt_data_open (for the isolated reader too). */
typedef struct {
    const char *path, *split;
    const char *const *inputs, *const *labels;
    size_t n_inputs, n_labels;
    int rank, world;
} data_request;

static jt_status fail(const data_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static jt_status fail(const data_ctx *c, const char *fmt, ...) {
    if (c->err && c->errlen) {
        int w = snprintf(c->err, c->errlen, "%s: ", c->path);
        if (w >= 0 && (size_t)w < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + w, c->errlen - (size_t)w, fmt, ap);
            va_end(ap);
        }
    }
    return JT_EDATA;
}

size_t jt_data_shard_begin(size_t n, int world, int r) {
    if (world <= 0) return 0;
    JT_CHECK(r >= 0 && r <= world, "shard of rank %d out of %d ranks", r, world);
    size_t w = (size_t)world, q = n / w, m = n % w;
    /* floor(r * n / w) without overflow: n = q*w + m */
    return q * (size_t)r + m * (size_t)r / w;
}

/* A link name that names one object of the group (no path). */
static int plain_name(const char *s) {
    return s && s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strlen(s) < JT_NAME_MAX;
}

/* Root attributes: jtrain_format == "dataset", version == 1. */
static jt_status check_root(const data_ctx *c, hid_t root) {
    char why[WHY_MAX], *fmt = NULL;
    size_t n_ver = 0;
    double *ver = NULL;
    jt_status st = JT_OK;
    int r = jt_h5_attr_string(root, "jtrain_format", &fmt, why, sizeof why);
    if (r < 0) {
        st = fail(c, "root attribute jtrain_format %s; expected jtrain_format = \"dataset\"", why);
        goto cleanup;
    }
    if (r == 0) {
        st = fail(c, "no root attribute jtrain_format; expected jtrain_format = \"dataset\" "
                     "(is this a jtrain data set?)");
        goto cleanup;
    }
    if (strcmp(fmt, "dataset") != 0) {
        st = fail(c, "root attribute jtrain_format is \"%.64s\", expected \"dataset\"", fmt);
        goto cleanup;
    }
    r = jt_h5_attr_numbers(root, "version", 1, &ver, &n_ver, why, sizeof why);
    if (r < 0) {
        st = fail(c, "root attribute version %s; expected version = 1", why);
        goto cleanup;
    }
    if (r == 0) {
        st = fail(c, "no root attribute version; expected version = 1");
        goto cleanup;
    }
    if (ver[0] != 1.0)
        st = fail(c, "root attribute version is %g, expected 1 (this jtrain reads version 1)",
                  ver[0]);
cleanup:
    free(fmt);
    free(ver);
    return st;
}

/* Numeric attribute aname of the array at where: 1, 0 (absent) or JT_EDATA's -1 (message). */
static int read_numbers(const data_ctx *c, hid_t obj, const char *where, const char *aname,
                        double **out, size_t *n) {
    char why[WHY_MAX];
    int r = jt_h5_attr_numbers(obj, aname, JT_H5_MAX_NUMBERS, out, n, why, sizeof why);
    if (r < 0) fail(c, "%s: attribute %s %s", where, aname, why);
    return r;
}

/* Normalisation attributes of an input (docs/data-format.md "Normalisation of inputs":
 * scale/offset or mean/std). */
static jt_status read_norm(const data_ctx *c, const char *where, data_pending *p) {
    static const char *const names[4] = {"scale", "offset", "mean", "std"};
    char why[WHY_MAX];
    int has[4];
    for (int i = 0; i < 4; i++) {
        has[i] = jt_h5_attr_exists(p->dset, names[i], why, sizeof why);
        if (has[i] < 0) return fail(c, "%s: %s", where, why);
    }
    size_t last = (size_t)p->dims[p->rank - 1];
    p->scale = p->u8 ? 1.0 / 255.0 : 1.0;
    p->offset = 0.0;
    p->norm = p->u8 ? 1 : 0;
    if ((has[0] || has[1]) && (has[2] || has[3]))
        return fail(c, "%s has both scale/offset and mean/std attributes, expected one pair",
                    where);
    if (has[2] != has[3])
        return fail(c, "%s has attribute %s but no %s (mean and std go together)", where,
                    has[2] ? "mean" : "std", has[2] ? "std" : "mean");
    if (has[2]) {
        if (read_numbers(c, p->dset, where, "mean", &p->mean, &p->n_mean) != 1 ||
            read_numbers(c, p->dset, where, "std", &p->std, &p->n_std) != 1)
            return JT_EDATA;
        if (p->n_mean != 1 && p->n_mean != last)
            return fail(c, "%s: attribute mean has %zu values, expected 1 or %zu (the last axis)",
                        where, p->n_mean, last);
        if (p->n_std != 1 && p->n_std != last)
            return fail(c, "%s: attribute std has %zu values, expected 1 or %zu (the last axis)",
                        where, p->n_std, last);
        for (size_t i = 0; i < p->n_std; i++)
            if (!(p->std[i] > 0))
                return fail(c, "%s: attribute std[%zu] is %g, expected > 0", where, i, p->std[i]);
        p->norm = 2;
        return JT_OK;
    }
    for (int i = 0; i < 2; i++) {
        if (!has[i]) continue;
        double *v = NULL;
        size_t n = 0;
        if (read_numbers(c, p->dset, where, names[i], &v, &n) != 1) return JT_EDATA;
        double x = v[0];
        free(v);
        if (n != 1)
            return fail(c, "%s: attribute %s has %zu values, expected a scalar", where, names[i], n);
        if (i == 0 && x == 0)
            return fail(c, "%s: attribute scale is 0, expected a non-zero number", where);
        if (i == 0) p->scale = x;
        else p->offset = x;
        p->norm = 1;
    }
    return JT_OK;
}

/* Opens /split/name and checks it for its role: rank, dtype, filters, class names,
 * normalisation. */
static jt_status open_array(const data_ctx *c, hid_t grp, const char *name, jt_array_role role,
                            jt_array *a, data_pending *p) {
    char where[WHERE_MAX], why[WHY_MAX];
    snprintf(where, sizeof where, "/%s/%s", c->split, name ? name : "");
    if (!plain_name(name))
        return fail(c, "\"%s\" is not an array name (expected a name in /%s, shorter than %d "
                       "characters)", name ? name : "", c->split, JT_NAME_MAX);
    snprintf(a->name, sizeof a->name, "%s", name);
    a->role = role;
    if (H5Lexists(grp, name, H5P_DEFAULT) > 0) p->dset = H5Oopen(grp, name, H5P_DEFAULT);
    if (p->dset < 0 || H5Iget_type(p->dset) != H5I_DATASET) {
        char list[LIST_MAX];
        jt_h5_list_children(grp, H5I_DATASET, list, sizeof list);
        return fail(c, "no array %s (arrays in /%s: %s)", where, c->split, list);
    }
    jt_h5_dset_info info;
    if (jt_h5_dset_info_get(p->dset, &info, why, sizeof why) != 0)
        return fail(c, "%s: %s", where, why);
    p->rank = info.rank;
    if (p->rank > DATA_MAX_RANK)
        return fail(c, "%s has rank %d, expected %s", where, p->rank,
                    role == JT_ARRAY_INPUT ? "an input of rank 2 to 5 [N, ...]"
                                           : "a label of rank 1 [N] or 2 [N, L]");
    memcpy(p->dims, info.dims, sizeof p->dims);
    p->chunk_rows = info.chunk_rows;
    if (role == JT_ARRAY_INPUT) {
        if (p->rank < 2)
            return fail(c, "%s has rank %d %s, expected an input of rank 2 to %d [N, ...] "
                           "(N samples of at least one value each)",
                        where, p->rank, info.shape, DATA_MAX_RANK);
        p->u8 = info.cls == H5T_INTEGER && info.size == 1 && info.is_unsigned;
        if (!p->u8 && !(info.cls == H5T_FLOAT && info.size == 4))
            return fail(c, "%s has dtype %s, expected an input of uint8 or float32", where,
                        info.type);
    } else {
        if (p->rank != 1 && p->rank != 2)
            return fail(c, "%s has rank %d %s, expected a label of rank 1 [N] (one class per "
                           "sample) or 2 [N, L] (a sequence)",
                        where, p->rank, info.shape);
        if (info.cls != H5T_INTEGER || info.size > 8)
            return fail(c, "%s has dtype %s, expected an integer label (class index, -1 = none)",
                        where, info.type);
    }
    if (jt_h5_dset_check_storage(p->dset, why, sizeof why) != 0)
        return fail(c, "%s %s", where, why);
    a->shape.ndim = p->rank - 1;
    a->row_elems = 1;
    for (int i = 1; i < p->rank; i++) {
        if (p->dims[i] == 0)
            return fail(c, "%s has shape %s with an empty axis %d, expected every axis > 0",
                        where, info.shape, i);
        a->shape.d[i - 1] = (size_t)p->dims[i];
        if (a->row_elems > SIZE_MAX / 4 / (size_t)p->dims[i])
            return fail(c, "%s has shape %s, too large a row", where, info.shape);
        a->row_elems *= (size_t)p->dims[i];
    }
    if (role == JT_ARRAY_INPUT) return read_norm(c, where, p);
    /* labels: a class label needs `classes`; a sequence label `vocab` (or `classes`) */
    const char *aname = "classes";
    if (p->rank == 2) {
        int hv = jt_h5_attr_exists(p->dset, "vocab", why, sizeof why);
        if (hv < 0) return fail(c, "%s: %s", where, why);
        if (hv) aname = "vocab";
    }
    int r = jt_h5_attr_strings(p->dset, aname, JT_H5_MAX_STRINGS, &a->classes, &a->n_classes,
                               why, sizeof why);
    if (r < 0) return fail(c, "%s: attribute %s %s", where, aname, why);
    if (r == 0)
        return p->rank == 2
                   ? fail(c, "%s is a sequence label %s without attribute vocab (or classes), "
                             "expected the token names as an array of strings", where, info.shape)
                   : fail(c, "%s has no attribute classes, expected the class names as an array "
                             "of strings", where);
    return JT_OK;
}

/* All arrays of a split have the same N (docs/data-format.md): the requested ones against the
 * first, then every other data set in the split group (metadata only). */
static jt_status check_rows(const data_ctx *c, hid_t grp, const jt_array *arrays,
                            const data_pending *p, size_t n_arrays, size_t *n_out) {
    char ref[256] = "";
    size_t have = 0;
    for (size_t i = 0; i < n_arrays; i++) {
        if (p[i].dims[0] > (hsize_t)SIZE_MAX / 4)
            return fail(c, "/%s/%s has %llu rows, more than jtrain can address", c->split,
                        arrays[i].name, (unsigned long long)p[i].dims[0]);
        size_t rows = (size_t)p[i].dims[0];
        if (i == 0) {
            snprintf(ref, sizeof ref, "%s", arrays[i].name);
            have = rows;
        } else if (rows != have) {
            return fail(c, "/%s/%s has %zu rows but /%s/%s has %zu; all arrays of a split must "
                           "have the same N", c->split, arrays[i].name, rows, c->split, ref, have);
        }
    }
    H5G_info_t info;
    if (H5Gget_info(grp, &info) < 0) {
        char why[WHY_MAX];
        return fail(c, "/%s: cannot list its arrays: %s", c->split, jt_h5_reason(why, sizeof why));
    }
    jt_status st = JT_OK;
    for (hsize_t i = 0; i < info.nlinks && st == JT_OK; i++) {
        char name[256], why[WHY_MAX];
        ssize_t nl = H5Lget_name_by_idx(grp, ".", H5_INDEX_NAME, H5_ITER_INC, i, name,
                                        sizeof name, H5P_DEFAULT);
        if (nl < 0 || (size_t)nl >= sizeof name) continue;
        hid_t o = H5Oopen(grp, name, H5P_DEFAULT);
        if (o < 0) continue;
        jt_h5_dset_info di;
        if (H5Iget_type(o) == H5I_DATASET && jt_h5_dset_info_get(o, &di, why, sizeof why) == 0 &&
            di.rank >= 1) {
            if (!ref[0]) {
                snprintf(ref, sizeof ref, "%s", name);
                have = (size_t)di.dims[0];
            } else if (di.dims[0] != (hsize_t)have) {
                st = fail(c, "/%s/%s has %llu rows but /%s/%s has %zu; all arrays of a split "
                             "must have the same N", c->split, name,
                          (unsigned long long)di.dims[0], c->split, ref, have);
            }
        }
        H5Oclose(o);
    }
    *n_out = have;
    return st;
}

/* Bytes of memory this machine has (0 if unknown). */
static double phys_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (double)pages * (double)page : 0.0;
}

/* The shards of all arrays fit in memory: N comes from the file, so a damaged N must be an
 * error here, not an allocation failure later. */
static jt_status check_memory(const data_ctx *c, const jt_array *arrays, size_t n_arrays,
                              size_t rows) {
    double total = 0, have = phys_bytes();
    for (size_t i = 0; i < n_arrays; i++) total += (double)rows * (double)arrays[i].row_elems * 4;
    if (have > 0 && total > have)
        return fail(c, "split '%s': this rank's shard of %zu rows needs %.1f GiB, more than the "
                       "%.1f GiB of memory of this machine (a damaged N, or more ranks needed)",
                    c->split, rows, total / 1073741824.0, have / 1073741824.0);
    return JT_OK;
}

/* Records that a conversion to int32 went out of range (HDF5 would clip silently). */
static H5T_conv_ret_t on_conv_except(H5T_conv_except_t e, hid_t src, hid_t dst, void *sbuf,
                                     void *dbuf, void *user) {
    (void)src;
    (void)dst;
    (void)sbuf;
    (void)dbuf;
    if (e == H5T_CONV_EXCEPT_RANGE_HI || e == H5T_CONV_EXCEPT_RANGE_LOW) *(int *)user = 1;
    return H5T_CONV_UNHANDLED;
}

/* Labelled rows of a label array over the whole split: rows with at least one value >= 0
 * (values out of range are the shard check's business). Reads the array in blocks. */
static jt_status count_labelled(const data_ctx *c, jt_array *a, const data_pending *p, size_t n) {
    char why[WHY_MAX];
    size_t per = a->row_elems, block = COUNT_BLOCK / per ? COUNT_BLOCK / per : 1;
    int32_t *y = jt_xcalloc(block * per, sizeof *y);
    jt_status st = JT_OK;
    a->n_labelled = 0;
    for (size_t r0 = 0; r0 < n; r0 += block) {
        size_t nr = n - r0 < block ? n - r0 : block;
        if (jt_h5_read_rows(p->dset, H5T_NATIVE_INT32, r0, nr, H5P_DEFAULT, y, why,
                            sizeof why) != 0) {
            st = fail(c, "/%s/%s rows [%zu, %zu) %s", c->split, a->name, r0, r0 + nr, why);
            break;
        }
        for (size_t i = 0; i < nr; i++) {
            size_t k = 0;
            while (k < per && y[i * per + k] < 0) k++;
            a->n_labelled += k < per;
        }
        jt_progress();
    }
    free(y);
    return st;
}

/* Reads rows [begin, begin+rows) of one array into dst (rows * row_elems floats for inputs,
 * int32 for labels) with one hyperslab read, converts and checks. tmp: room for rows *
 * row_elems bytes (uint8 inputs are read there first). */
static jt_status read_block(const data_ctx *c, const jt_array *a, const data_pending *p,
                            size_t begin, size_t rows, void *dst, uint8_t *tmp) {
    jt_status st = JT_OK;
    hid_t xfer = H5I_INVALID_HID;
    char where[WHERE_MAX], why[WHY_MAX];
    int overflow = 0;
    snprintf(where, sizeof where, "/%s/%s", c->split, a->name);
    size_t total = rows * a->row_elems;
    int rc;
    if (a->role == JT_ARRAY_LABEL) {
        xfer = H5Pcreate(H5P_DATASET_XFER);
        H5Pset_type_conv_cb(xfer, on_conv_except, &overflow);
        rc = jt_h5_read_rows(p->dset, H5T_NATIVE_INT32, begin, rows, xfer, dst, why, sizeof why);
    } else if (p->u8) {
        rc = jt_h5_read_rows(p->dset, H5T_NATIVE_UINT8, begin, rows, H5P_DEFAULT, tmp, why,
                             sizeof why);
    } else {
        rc = jt_h5_read_rows(p->dset, H5T_NATIVE_FLOAT, begin, rows, H5P_DEFAULT, dst, why,
                             sizeof why);
    }
    if (rc != 0) {
        st = fail(c, "%s rows [%zu, %zu) %s", where, begin, begin + rows, why);
        goto cleanup;
    }
    jt_progress();
    if (a->role == JT_ARRAY_LABEL) {
        const int32_t *y = dst;
        for (size_t i = 0; i < total; i++) {
            int bad_conv = overflow && (y[i] == INT32_MAX || y[i] == INT32_MIN);
            if (!bad_conv && y[i] >= -1 && (int64_t)y[i] < (int64_t)a->n_classes) continue;
            size_t row = begin + i / a->row_elems;
            char pos[48] = "";
            if (a->shape.ndim) snprintf(pos, sizeof pos, " position %zu", i % a->row_elems);
            if (bad_conv)
                st = fail(c, "%s row %zu%s holds a value outside the int32 range, expected a "
                             "label in [-1, %zu)", where, row, pos, a->n_classes);
            else
                st = fail(c, "%s row %zu%s holds %d, expected a label in [-1, %zu) (%zu %s; "
                             "-1 = no label)", where, row, pos, (int)y[i], a->n_classes,
                          a->n_classes, a->shape.ndim ? "tokens in vocab" : "classes");
            goto cleanup;
        }
        goto cleanup;
    }
    /* inputs: x*scale+offset or (x-mean)/std, per entry of the last axis where a vector */
    float *x = dst;
    size_t last = a->shape.d[a->shape.ndim - 1];
    for (size_t i = 0; i < total; i++) {
        double raw = p->u8 ? (double)tmp[i] : (double)x[i], v = raw;
        size_t k = i % last;
        if (p->norm == 1) v = v * p->scale + p->offset;
        else if (p->norm == 2)
            v = (v - p->mean[p->n_mean == 1 ? 0 : k]) / p->std[p->n_std == 1 ? 0 : k];
        x[i] = (float)v;
        if (!isfinite(x[i])) {
            st = fail(c, "%s row %zu holds %g (%g after normalisation), expected finite values",
                      where, begin + i / a->row_elems, raw, v);
            goto cleanup;
        }
    }
cleanup:
    if (xfer >= 0) H5Pclose(xfer);
    return st;
}

/* Rows read at a time: whole chunks (a chunk cut in two would be decoded twice), about
 * READ_BLOCK bytes, so a huge shard is read in steps and the isolated reader shows progress. */
static size_t block_rows(const jt_array *a, const data_pending *p) {
    size_t per = READ_BLOCK / jt_array_row_bytes(a);
    size_t chunk = p->chunk_rows > 0 && p->chunk_rows < (hsize_t)SIZE_MAX ? (size_t)p->chunk_rows
                                                                           : 1;
    if (per < chunk) return chunk;
    return per / chunk * chunk;
}

/* Where the rows of a shard go: into a->data (allocated here), or, in the isolated reader, to
 * emit() block by block (nothing is kept). */
typedef struct {
    jt_status (*meta)(void *arg, const jt_split *s);      /* once the split is checked */
    int (*emit)(void *arg, const void *rows, size_t bytes); /* each block of each array */
    void *arg;
} data_sink;

/* Reads rows [begin, end) of one array in blocks, converted and checked. */
static jt_status read_shard(const data_ctx *c, jt_array *a, const data_pending *p, size_t begin,
                            size_t end, const data_sink *sink) {
    size_t rows = end - begin, step = block_rows(a, p);
    if (rows > SIZE_MAX / 4 / a->row_elems)
        return fail(c, "/%s/%s: shard too large", c->split, a->name);
    size_t buf_rows = sink ? (step < rows ? step : rows) : rows;
    void *buf = a->role == JT_ARRAY_LABEL ? jt_xcalloc(buf_rows * a->row_elems, sizeof(int32_t))
                                          : (void *)jt_alloc_floats(buf_rows * a->row_elems);
    uint8_t *tmp = p->u8 ? jt_xcalloc((step < rows ? step : rows) * a->row_elems, 1) : NULL;
    jt_status st = JT_OK;
    for (size_t r0 = begin; r0 < end && st == JT_OK; r0 += step) {
        size_t nr = end - r0 < step ? end - r0 : step;
        void *dst = sink ? buf : (char *)buf + (r0 - begin) * jt_array_row_bytes(a);
        st = read_block(c, a, p, r0, nr, dst, tmp);
        if (st == JT_OK && sink && sink->emit(sink->arg, dst, nr * jt_array_row_bytes(a)) != 0)
            st = fail(c, "/%s/%s: the isolated reader lost its parent", c->split, a->name);
    }
    free(tmp);
    if (sink || st != JT_OK) {
        if (a->role == JT_ARRAY_LABEL) free(buf);
        else jt_free_aligned(buf);
    } else {
        a->data = buf;
    }
    return st;
}

/* Is the file there and readable? Says "no such file" rather than "not HDF5". */
static jt_status check_exists(const data_ctx *c) {
    struct stat sb;
    if (stat(c->path, &sb) != 0)
        return errno == ENOENT ? fail(c, "no such file (expected an HDF5 data set)")
                               : fail(c, "cannot access: %s", strerror(errno));
    if (S_ISDIR(sb.st_mode)) return fail(c, "is a directory, expected an HDF5 data set file");
    FILE *f = fopen(c->path, "rb");
    if (!f) return fail(c, "cannot read: %s", strerror(errno));
    fclose(f);
    htri_t ok = H5Fis_hdf5(c->path);
    if (ok <= 0) return fail(c, "not an HDF5 file (expected a jtrain data set)");
    return JT_OK;
}

/* Adds (name, role) to the list unless it is already there. */
static void add_request(const char **names, jt_array_role *roles, size_t *n, const char *name,
                        jt_array_role role) {
    for (size_t i = 0; i < *n; i++)
        if (roles[i] == role && name && names[i] && strcmp(names[i], name) == 0) return;
    names[*n] = name;
    roles[*n] = role;
    (*n)++;
}

/* jt_data_open's walk: checks the file and the split, then reads each array's shard into
 * a->data, or hands the checked split to sink->meta and the rows to sink->emit (the isolated
 * reader; then no row is kept). */
static jt_status open_split(jt_split *s, const data_request *q, const data_sink *sink,
                            char *err, size_t errlen) {
    const char *path = q->path, *split = q->split;
    int world = q->world, rank = q->rank;
    memset(s, 0, sizeof *s);
    if (err && errlen) err[0] = '\0';
    jt_h5_quiet();
    data_ctx c = {path, split, err, errlen};
    jt_status st = JT_OK;
    hid_t file = H5I_INVALID_HID, root = H5I_INVALID_HID, grp = H5I_INVALID_HID;
    size_t n_req = 0, n_total = q->n_inputs + q->n_labels;
    const char **names = jt_xcalloc(n_total, sizeof *names);
    jt_array_role *roles = jt_xcalloc(n_total, sizeof *roles);
    data_pending *p = jt_xcalloc(n_total, sizeof *p);
    for (size_t i = 0; i < n_total; i++) p[i].dset = H5I_INVALID_HID;
    for (size_t i = 0; i < q->n_inputs; i++)
        add_request(names, roles, &n_req, q->inputs[i], JT_ARRAY_INPUT);
    for (size_t i = 0; i < q->n_labels; i++)
        add_request(names, roles, &n_req, q->labels[i], JT_ARRAY_LABEL);
    s->arrays = jt_xcalloc(n_req, sizeof *s->arrays);

    if (strlen(path) >= sizeof s->path || strlen(split) >= sizeof s->split) {
        st = fail(&c, "path or split name too long");
        goto cleanup;
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    snprintf(s->split, sizeof s->split, "%s", split);
    if ((st = check_exists(&c)) != JT_OK) goto cleanup;
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    root = file < 0 ? H5I_INVALID_HID : H5Gopen2(file, "/", H5P_DEFAULT);
    if (root < 0) {
        char why[WHY_MAX];
        st = fail(&c, "cannot open the HDF5 file: %s", jt_h5_reason(why, sizeof why));
        goto cleanup;
    }
    if ((st = check_root(&c, root)) != JT_OK) goto cleanup;
    if (plain_name(split) && H5Lexists(root, split, H5P_DEFAULT) > 0)
        grp = H5Oopen(root, split, H5P_DEFAULT);
    if (grp < 0 || H5Iget_type(grp) != H5I_GROUP) {
        char list[LIST_MAX];
        jt_h5_list_children(root, H5I_GROUP, list, sizeof list);
        st = fail(&c, "no split '%s' (splits in the file: %s)", split, list);
        goto cleanup;
    }
    for (size_t i = 0; i < n_req; i++) {
        st = open_array(&c, grp, names[i], roles[i], &s->arrays[i], &p[i]);
        s->n_arrays = i + 1;
        if (st != JT_OK) goto cleanup;
    }
    if ((st = check_rows(&c, grp, s->arrays, p, n_req, &s->n)) != JT_OK) goto cleanup;
    if (world == 0) {
        if (sink) st = sink->meta(sink->arg, s);
        goto cleanup; /* metadata only */
    }
    if (s->n < (size_t)world) {
        st = fail(&c, "split '%s' has %zu rows, fewer than the %d rank%s (every rank needs at "
                      "least one row)", split, s->n, world, world == 1 ? "" : "s");
        goto cleanup;
    }
    s->begin = jt_data_shard_begin(s->n, world, rank);
    s->end = jt_data_shard_begin(s->n, world, rank + 1);
    if ((st = check_memory(&c, s->arrays, n_req, s->end - s->begin)) != JT_OK) goto cleanup;
    for (size_t i = 0; i < n_req; i++)
        if (roles[i] == JT_ARRAY_LABEL &&
            (st = count_labelled(&c, &s->arrays[i], &p[i], s->n)) != JT_OK)
            goto cleanup;
    if (sink && (st = sink->meta(sink->arg, s)) != JT_OK) goto cleanup;
    for (size_t i = 0; i < n_req; i++)
        if ((st = read_shard(&c, &s->arrays[i], &p[i], s->begin, s->end, sink)) != JT_OK)
            goto cleanup;
cleanup:
    for (size_t i = 0; i < n_total; i++) {
        if (p[i].dset >= 0) H5Oclose(p[i].dset);
        free(p[i].mean);
        free(p[i].std);
    }
    free(p);
    free(names);
    free(roles);
    if (grp >= 0) H5Oclose(grp);
    if (root >= 0) H5Gclose(root);
    if (file >= 0) H5Fclose(file);
    if (st != JT_OK) jt_data_close(s);
    return st;
}

/* ---------- the isolated reader (jt_h5_isolated) ----------
 * The child opens the split and sends, in this order: n, begin, end, the number of arrays, then
 * per array its name, role, shape, row_elems, n_classes, n_labelled and class names; then each
 * array's rows (world > 0), array after array, as read. The parent rebuilds the jt_split from
 * that: it never calls HDF5 on the file. */

typedef struct {
    const data_request *q;
    jt_h5_pipe *pipe;
    jt_split *out; /* parent: the split being received */
} data_iso;

static int send_u64(jt_h5_pipe *o, uint64_t v) { return jt_h5_send(o, &v, sizeof v); }

static int send_str(jt_h5_pipe *o, const char *str) {
    uint64_t n = strlen(str);
    return send_u64(o, n) || jt_h5_send(o, str, (size_t)n);
}

static jt_status child_meta(void *arg, const jt_split *s) {
    jt_h5_pipe *o = ((data_iso *)arg)->pipe;
    int bad = send_u64(o, s->n) || send_u64(o, s->begin) || send_u64(o, s->end) ||
              send_u64(o, s->n_arrays);
    for (size_t i = 0; i < s->n_arrays && !bad; i++) {
        const jt_array *a = &s->arrays[i];
        bad = send_str(o, a->name) || send_u64(o, (uint64_t)a->role) ||
              jt_h5_send(o, &a->shape, sizeof a->shape) || send_u64(o, a->row_elems) ||
              send_u64(o, a->n_classes) || send_u64(o, a->n_labelled);
        for (size_t k = 0; k < a->n_classes && !bad; k++) bad = send_str(o, a->classes[k]);
    }
    return bad ? JT_EDATA : JT_OK;
}

static int child_emit(void *arg, const void *rows, size_t bytes) {
    return jt_h5_send(((data_iso *)arg)->pipe, rows, bytes);
}

static jt_status data_child(void *arg, jt_h5_pipe *out, char *err, size_t errlen) {
    data_iso *d = arg;
    d->pipe = out;
    const data_sink sink = {child_meta, child_emit, d};
    jt_split s;
    jt_status st = open_split(&s, d->q, &sink, err, errlen);
    jt_data_close(&s);
    return st;
}

static int recv_u64(jt_h5_pipe *in, uint64_t *v) { return jt_h5_recv(in, v, sizeof *v); }

/* A string the child sent (at most max bytes), malloc'd; NULL if the stream ended. */
static char *recv_str(jt_h5_pipe *in, uint64_t max) {
    uint64_t n;
    if (recv_u64(in, &n) != 0) return NULL;
    JT_CHECK(n <= max, "isolated reader: a string of %llu bytes", (unsigned long long)n);
    char *str = jt_xcalloc((size_t)n + 1, 1);
    if (jt_h5_recv(in, str, (size_t)n) != 0) {
        free(str);
        return NULL;
    }
    return str;
}

static jt_status data_parent(void *arg, jt_h5_pipe *in, char *err, size_t errlen) {
    data_iso *d = arg;
    jt_split *s = d->out;
    const data_request *q = d->q;
    uint64_t n, begin, end, n_arrays;
    (void)err;
    (void)errlen;
    if (recv_u64(in, &n) || recv_u64(in, &begin) || recv_u64(in, &end) ||
        recv_u64(in, &n_arrays))
        return JT_EDATA;
    JT_CHECK(n_arrays <= q->n_inputs + q->n_labels && begin <= end && end <= n,
             "isolated reader: a split of %llu arrays", (unsigned long long)n_arrays);
    s->n = (size_t)n;
    s->begin = (size_t)begin;
    s->end = (size_t)end;
    s->arrays = jt_xcalloc(n_arrays ? (size_t)n_arrays : 1, sizeof *s->arrays);
    for (size_t i = 0; i < n_arrays; i++) {
        jt_array *a = &s->arrays[i];
        uint64_t role, row_elems, n_classes, n_labelled;
        char *name = recv_str(in, JT_NAME_MAX - 1);
        if (!name) return JT_EDATA;
        snprintf(a->name, sizeof a->name, "%s", name);
        free(name);
        s->n_arrays = i + 1;
        if (recv_u64(in, &role) || jt_h5_recv(in, &a->shape, sizeof a->shape) ||
            recv_u64(in, &row_elems) || recv_u64(in, &n_classes) || recv_u64(in, &n_labelled))
            return JT_EDATA;
        JT_CHECK(n_classes <= JT_H5_MAX_STRINGS && row_elems > 0,
                 "isolated reader: array %s", a->name);
        a->role = role == JT_ARRAY_LABEL ? JT_ARRAY_LABEL : JT_ARRAY_INPUT;
        a->row_elems = (size_t)row_elems;
        a->n_labelled = (size_t)n_labelled;
        a->classes = jt_xcalloc(n_classes ? (size_t)n_classes : 1, sizeof *a->classes);
        for (size_t k = 0; k < n_classes; k++) {
            if (!(a->classes[k] = recv_str(in, JT_H5_MAX_STRING))) return JT_EDATA;
            a->n_classes = k + 1;
        }
    }
    if (q->world == 0) return JT_OK;
    size_t rows = s->end - s->begin;
    for (size_t i = 0; i < s->n_arrays; i++) {
        jt_array *a = &s->arrays[i];
        size_t elems = rows * a->row_elems;
        a->data = a->role == JT_ARRAY_LABEL ? jt_xcalloc(elems, sizeof(int32_t))
                                            : (void *)jt_alloc_floats(elems);
        if (jt_h5_recv(in, a->data, elems * sizeof(float)) != 0) /* float or int32 */
            return JT_EDATA;
    }
    return JT_OK;
}

jt_status jt_data_open(jt_split *s, const char *path, const char *split,
                       const char *const *inputs, size_t n_inputs,
                       const char *const *labels, size_t n_labels,
                       int rank, int world, char *err, size_t errlen) {
    JT_CHECK(s && path && split, "jt_data_open: NULL argument");
    JT_CHECK(world == 0 || (world > 0 && rank >= 0 && rank < world),
             "jt_data_open: rank %d of %d ranks", rank, world);
    memset(s, 0, sizeof *s);
    if (err && errlen) err[0] = '\0';
    const data_request q = {path, split, inputs, labels, n_inputs, n_labels, rank, world};
    if (!jt_h5_isolation_on()) return open_split(s, &q, NULL, err, errlen);
    if (strlen(path) >= sizeof s->path || strlen(split) >= sizeof s->split) {
        snprintf(err, errlen, "%s: path or split name too long", path);
        return JT_EDATA;
    }
    data_iso d = {&q, NULL, s};
    jt_status st = jt_h5_isolated(path, data_child, data_parent, &d, JT_EDATA, err, errlen);
    if (st != JT_OK) {
        jt_data_close(s);
        return st;
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    snprintf(s->split, sizeof s->split, "%s", split);
    return JT_OK;
}

size_t jt_array_row_bytes(const jt_array *a) {
    _Static_assert(sizeof(float) == sizeof(int32_t), "float and int32 rows differ in size");
    return a->row_elems * sizeof(float);
}

jt_array *jt_data_find(const jt_split *s, const char *name) {
    if (!s || !name) return NULL;
    for (size_t i = 0; i < s->n_arrays; i++)
        if (strcmp(s->arrays[i].name, name) == 0) return &s->arrays[i];
    return NULL;
}

void jt_data_close(jt_split *s) {
    if (!s) return;
    for (size_t i = 0; s->arrays && i < s->n_arrays; i++) {
        jt_array *a = &s->arrays[i];
        jt_h5_free_strings(a->classes, a->n_classes);
        if (a->role == JT_ARRAY_INPUT) jt_free_aligned(a->data);
        else free(a->data);
    }
    free(s->arrays);
    memset(s, 0, sizeof *s);
}
