/* data.c - the HDF5 data set (DESIGN.md "Data set file"): validates a split and reads this
 * rank's shard into memory.
 *
 * Invariants kept here:
 *   - every check (file, format, split, each array's rank, dtype, N and attributes) runs before a
 *     single row is read, and a failure is one message that names the file, the array as
 *     /split/name, what was expected and what was found;
 *   - only rows [begin, end) of an array are ever read, with one hyperslab read per array (the
 *     rest of the file is never touched: a rank's memory is its shard, not the data set);
 *   - every HDF5 handle opened here is closed on every path (goto cleanup), and on failure the
 *     split is left zeroed.
 * HDF5's automatic error stack printing is switched off: jtrain reports errors itself. */
#include "jtrain/data.h"

#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DATA_MAX_RANK (1 + JT_SHAPE_MAX_DIMS) /* N plus the per-sample axes */
#define WHERE_MAX (2 * JT_NAME_MAX + 4)       /* "/split/name" */
#define LIST_MAX 512                          /* names listed in a message */

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
    int u8;             /* inputs: stored as uint8 (else float32) */
    int norm;           /* inputs: 0 as is, 1 x*scale+offset, 2 (x-mean)/std */
    double scale, offset;
    double *mean, *std; /* n_mean / n_std values: 1 (scalar) or one per entry of the last axis */
    size_t n_mean, n_std;
} data_pending;

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

/* "uint8", "int64", "float64", "string", ... for messages. */
static void type_name(hid_t t, char *buf, size_t len) {
    size_t bits = H5Tget_size(t) * 8;
    switch (H5Tget_class(t)) {
    case H5T_INTEGER:
        snprintf(buf, len, "%s%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int", bits);
        break;
    case H5T_FLOAT: snprintf(buf, len, "float%zu", bits); break;
    case H5T_STRING: snprintf(buf, len, "string"); break;
    case H5T_ENUM: snprintf(buf, len, "enum (%zu bits)", bits); break;
    case H5T_COMPOUND: snprintf(buf, len, "compound"); break;
    case H5T_ARRAY: snprintf(buf, len, "array type"); break;
    case H5T_VLEN: snprintf(buf, len, "variable-length type"); break;
    default: snprintf(buf, len, "a non-numeric type (%zu bits)", bits); break;
    }
}

/* "[100, 28, 28]" */
static void dims_str(const hsize_t *d, int rank, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < rank && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%llu", i ? ", " : "[",
                         (unsigned long long)d[i]);
        if (w < 0) return;
        used += (size_t)w;
    }
    if (used < len) snprintf(buf + used, len - used, rank ? "]" : "[]");
}

/* Names of the objects of one type (groups or datasets) directly under loc, ", "-separated. */
static void list_names(hid_t loc, H5I_type_t want, char *buf, size_t len) {
    H5G_info_t info;
    size_t used = 0;
    buf[0] = '\0';
    if (H5Gget_info(loc, &info) < 0) return;
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char name[256];
        if (H5Lget_name_by_idx(loc, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                               H5P_DEFAULT) < 0)
            continue;
        hid_t o = H5Oopen(loc, name, H5P_DEFAULT);
        if (o < 0) continue;
        int match = H5Iget_type(o) == want;
        H5Oclose(o);
        if (!match || used >= len) continue;
        int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", name);
        if (w > 0) used += (size_t)w;
    }
    if (used == 0) snprintf(buf, len, "none");
}

/* A link name that names one object of the group (no path). */
static int plain_name(const char *s) {
    return s && s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strlen(s) < JT_NAME_MAX;
}

static void free_strings(char **s, size_t n) {
    if (!s) return;
    for (size_t i = 0; i < n; i++) free(s[i]);
    free(s);
}

static void vlen_free(hid_t memtype, hid_t space, void *buf) {
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(memtype, space, H5P_DEFAULT, buf);
#else
    H5Dvlen_reclaim(memtype, space, H5P_DEFAULT, buf);
#endif
}

/* Reads attribute aname of obj as a list of strings (scalar or rank 1; variable- or
 * fixed-length). *out is NULL and *n 0 when the attribute is absent. */
static jt_status read_strings(const data_ctx *c, hid_t obj, const char *where, const char *aname,
                              char ***out, size_t *n_out) {
    jt_status st = JT_OK;
    hid_t attr = H5I_INVALID_HID, ft = H5I_INVALID_HID, sp = H5I_INVALID_HID,
          mt = H5I_INVALID_HID;
    char **vl = NULL, **res = NULL, *fixed = NULL;
    size_t n = 0;
    *out = NULL;
    *n_out = 0;
    if (H5Aexists(obj, aname) <= 0) return JT_OK;
    attr = H5Aopen(obj, aname, H5P_DEFAULT);
    ft = attr < 0 ? H5I_INVALID_HID : H5Aget_type(attr);
    sp = attr < 0 ? H5I_INVALID_HID : H5Aget_space(attr);
    if (ft < 0 || sp < 0) {
        st = fail(c, "%s: cannot read attribute %s", where, aname);
        goto cleanup;
    }
    if (H5Tget_class(ft) != H5T_STRING) {
        char tn[64];
        type_name(ft, tn, sizeof tn);
        st = fail(c, "%s: attribute %s is %s, expected an array of strings", where, aname, tn);
        goto cleanup;
    }
    int nd = H5Sget_simple_extent_ndims(sp);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    if (nd > 1 || np < 0) {
        st = fail(c, "%s: attribute %s has rank %d, expected a list of strings (rank 1)", where,
                  aname, nd);
        goto cleanup;
    }
    n = (size_t)np;
    res = jt_xcalloc(n, sizeof *res);
    mt = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mt, H5Tget_cset(ft));
    if (H5Tis_variable_str(ft) > 0) {
        H5Tset_size(mt, H5T_VARIABLE);
        vl = jt_xcalloc(n, sizeof *vl);
        if (H5Aread(attr, mt, vl) < 0) {
            st = fail(c, "%s: cannot read the strings of attribute %s", where, aname);
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) res[i] = jt_xstrdup(vl[i] ? vl[i] : "");
        vlen_free(mt, sp, vl);
    } else {
        size_t sz = H5Tget_size(ft);
        H5Tset_size(mt, sz);
        H5Tset_strpad(mt, H5Tget_strpad(ft));
        fixed = jt_xcalloc(n * sz + 1, 1);
        if (H5Aread(attr, mt, fixed) < 0) {
            st = fail(c, "%s: cannot read the strings of attribute %s", where, aname);
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) {
            const char *p = fixed + i * sz;
            size_t len = strnlen(p, sz);
            while (len > 0 && p[len - 1] == ' ' && H5Tget_strpad(ft) == H5T_STR_SPACEPAD) len--;
            res[i] = jt_xcalloc(len + 1, 1);
            memcpy(res[i], p, len);
        }
    }
    *out = res;
    *n_out = n;
    res = NULL;
cleanup:
    free_strings(res, n);
    free(vl);
    free(fixed);
    if (mt >= 0) H5Tclose(mt);
    if (sp >= 0) H5Sclose(sp);
    if (ft >= 0) H5Tclose(ft);
    if (attr >= 0) H5Aclose(attr);
    return st;
}

/* Reads numeric attribute aname (scalar or rank 1, any integer or float type) as finite doubles.
 * *out is NULL and *n 0 when the attribute is absent. */
static jt_status read_numbers(const data_ctx *c, hid_t obj, const char *where, const char *aname,
                              double **out, size_t *n_out) {
    jt_status st = JT_OK;
    hid_t attr = H5I_INVALID_HID, ft = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    double *v = NULL;
    *out = NULL;
    *n_out = 0;
    if (H5Aexists(obj, aname) <= 0) return JT_OK;
    attr = H5Aopen(obj, aname, H5P_DEFAULT);
    ft = attr < 0 ? H5I_INVALID_HID : H5Aget_type(attr);
    sp = attr < 0 ? H5I_INVALID_HID : H5Aget_space(attr);
    if (ft < 0 || sp < 0) {
        st = fail(c, "%s: cannot read attribute %s", where, aname);
        goto cleanup;
    }
    H5T_class_t cls = H5Tget_class(ft);
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
        char tn[64];
        type_name(ft, tn, sizeof tn);
        st = fail(c, "%s: attribute %s is %s, expected a number", where, aname, tn);
        goto cleanup;
    }
    int nd = H5Sget_simple_extent_ndims(sp);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    if (nd > 1 || np < 1) {
        st = fail(c, "%s: attribute %s has rank %d and %lld values, expected a scalar or a vector",
                  where, aname, nd, (long long)np);
        goto cleanup;
    }
    v = jt_xcalloc((size_t)np, sizeof *v);
    if (H5Aread(attr, H5T_NATIVE_DOUBLE, v) < 0) {
        st = fail(c, "%s: cannot read attribute %s as numbers", where, aname);
        goto cleanup;
    }
    for (hssize_t i = 0; i < np; i++)
        if (!isfinite(v[i])) {
            st = fail(c, "%s: attribute %s[%lld] is %g, expected a finite number", where, aname,
                      (long long)i, v[i]);
            goto cleanup;
        }
    *out = v;
    *n_out = (size_t)np;
    v = NULL;
cleanup:
    free(v);
    if (sp >= 0) H5Sclose(sp);
    if (ft >= 0) H5Tclose(ft);
    if (attr >= 0) H5Aclose(attr);
    return st;
}

/* Root attributes: jtrain_format == "dataset", version == 1. */
static jt_status check_root(const data_ctx *c, hid_t root) {
    char **fmt = NULL;
    size_t n_fmt = 0, n_ver = 0;
    double *ver = NULL;
    jt_status st = read_strings(c, root, "root", "jtrain_format", &fmt, &n_fmt);
    if (st != JT_OK) goto cleanup;
    if (!fmt) {
        st = fail(c, "no root attribute jtrain_format; expected jtrain_format = \"dataset\" "
                     "(is this a jtrain data set?)");
        goto cleanup;
    }
    if (n_fmt != 1 || strcmp(fmt[0], "dataset") != 0) {
        st = fail(c, "root attribute jtrain_format is \"%s\", expected \"dataset\"",
                  n_fmt ? fmt[0] : "");
        goto cleanup;
    }
    st = read_numbers(c, root, "root", "version", &ver, &n_ver);
    if (st != JT_OK) goto cleanup;
    if (!ver) {
        st = fail(c, "no root attribute version; expected version = 1");
        goto cleanup;
    }
    if (n_ver != 1 || ver[0] != 1.0) {
        st = fail(c, "root attribute version is %g, expected 1 (this jtrain reads version 1)",
                  ver[0]);
        goto cleanup;
    }
cleanup:
    free_strings(fmt, n_fmt);
    free(ver);
    return st;
}

/* Normalisation attributes of an input (DESIGN.md: scale/offset or mean/std). */
static jt_status read_norm(const data_ctx *c, const char *where, data_pending *p) {
    static const char *const names[4] = {"scale", "offset", "mean", "std"};
    int has[4];
    for (int i = 0; i < 4; i++) has[i] = H5Aexists(p->dset, names[i]) > 0;
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
    jt_status st;
    if (has[2]) {
        if ((st = read_numbers(c, p->dset, where, "mean", &p->mean, &p->n_mean)) != JT_OK ||
            (st = read_numbers(c, p->dset, where, "std", &p->std, &p->n_std)) != JT_OK)
            return st;
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
        if ((st = read_numbers(c, p->dset, where, names[i], &v, &n)) != JT_OK) return st;
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

/* Opens /split/name and checks it for its role: rank, dtype, class names, normalisation. */
static jt_status open_array(const data_ctx *c, hid_t grp, const char *name, jt_array_role role,
                            jt_array *a, data_pending *p) {
    jt_status st = JT_OK;
    hid_t space = H5I_INVALID_HID, type = H5I_INVALID_HID;
    char where[WHERE_MAX], dstr[128], tn[64];
    snprintf(where, sizeof where, "/%s/%s", c->split, name ? name : "");
    if (!plain_name(name))
        return fail(c, "\"%s\" is not an array name (expected a name in /%s, shorter than %d "
                       "characters)", name ? name : "", c->split, JT_NAME_MAX);
    snprintf(a->name, sizeof a->name, "%s", name);
    a->role = role;
    if (H5Lexists(grp, name, H5P_DEFAULT) > 0) p->dset = H5Oopen(grp, name, H5P_DEFAULT);
    if (p->dset < 0 || H5Iget_type(p->dset) != H5I_DATASET) {
        char list[LIST_MAX];
        list_names(grp, H5I_DATASET, list, sizeof list);
        return fail(c, "no array %s (arrays in /%s: %s)", where, c->split, list);
    }
    space = H5Dget_space(p->dset);
    type = H5Dget_type(p->dset);
    if (space < 0 || type < 0) {
        st = fail(c, "%s: cannot read its shape and type", where);
        goto cleanup;
    }
    p->rank = H5Sget_simple_extent_ndims(space);
    if (p->rank < 0 || p->rank > DATA_MAX_RANK) {
        st = fail(c, "%s has rank %d, expected %s", where, p->rank,
                  role == JT_ARRAY_INPUT ? "an input of rank 2 to 5 [N, ...]"
                                         : "a label of rank 1 [N] or 2 [N, L]");
        goto cleanup;
    }
    H5Sget_simple_extent_dims(space, p->dims, NULL);
    dims_str(p->dims, p->rank, dstr, sizeof dstr);
    type_name(type, tn, sizeof tn);
    H5T_class_t cls = H5Tget_class(type);
    if (role == JT_ARRAY_INPUT) {
        if (p->rank < 2) {
            st = fail(c, "%s has rank %d %s, expected an input of rank 2 to %d [N, ...] "
                         "(N samples of at least one value each)",
                      where, p->rank, dstr, DATA_MAX_RANK);
            goto cleanup;
        }
        p->u8 = cls == H5T_INTEGER && H5Tget_size(type) == 1 && H5Tget_sign(type) == H5T_SGN_NONE;
        if (!p->u8 && !(cls == H5T_FLOAT && H5Tget_size(type) == 4)) {
            st = fail(c, "%s has dtype %s, expected an input of uint8 or float32", where, tn);
            goto cleanup;
        }
    } else {
        if (p->rank != 1 && p->rank != 2) {
            st = fail(c, "%s has rank %d %s, expected a label of rank 1 [N] (one class per "
                         "sample) or 2 [N, L] (a sequence)",
                      where, p->rank, dstr);
            goto cleanup;
        }
        if (cls != H5T_INTEGER) {
            st = fail(c, "%s has dtype %s, expected an integer label (class index, -1 = none)",
                      where, tn);
            goto cleanup;
        }
    }
    a->shape.ndim = p->rank - 1;
    a->row_elems = 1;
    for (int i = 1; i < p->rank; i++) {
        if (p->dims[i] == 0) {
            st = fail(c, "%s has shape %s with an empty axis %d, expected every axis > 0", where,
                      dstr, i);
            goto cleanup;
        }
        a->shape.d[i - 1] = (size_t)p->dims[i];
        if (a->row_elems > SIZE_MAX / 4 / (size_t)p->dims[i]) {
            st = fail(c, "%s has shape %s, too large a row", where, dstr);
            goto cleanup;
        }
        a->row_elems *= (size_t)p->dims[i];
    }
    if (role == JT_ARRAY_INPUT) {
        st = read_norm(c, where, p);
        goto cleanup;
    }
    /* labels: a class label needs `classes`; a sequence label `vocab` (or `classes`) */
    const char *aname = p->rank == 2 && H5Aexists(p->dset, "vocab") > 0 ? "vocab" : "classes";
    st = read_strings(c, p->dset, where, aname, &a->classes, &a->n_classes);
    if (st != JT_OK) goto cleanup;
    if (!a->classes) {
        st = p->rank == 2
                 ? fail(c, "%s is a sequence label %s without attribute vocab (or classes), "
                           "expected the token names as an array of strings", where, dstr)
                 : fail(c, "%s has no attribute classes, expected the class names as an array "
                           "of strings", where);
        goto cleanup;
    }
    if (a->n_classes == 0) st = fail(c, "%s: attribute %s is empty, expected at least one name",
                                     where, aname);
cleanup:
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    return st;
}

/* All arrays of a split have the same N (DESIGN.md): the requested ones against the first, then
 * every other data set in the split group (metadata only). */
static jt_status check_rows(const data_ctx *c, hid_t grp, const jt_array *arrays,
                            const data_pending *p, size_t n_arrays, size_t *n_out) {
    char ref[256] = "";
    size_t have = 0;
    for (size_t i = 0; i < n_arrays; i++) {
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
    if (H5Gget_info(grp, &info) < 0) return fail(c, "/%s: cannot list its arrays", c->split);
    jt_status st = JT_OK;
    for (hsize_t i = 0; i < info.nlinks && st == JT_OK; i++) {
        char name[256];
        if (H5Lget_name_by_idx(grp, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                               H5P_DEFAULT) < 0)
            continue;
        hid_t o = H5Oopen(grp, name, H5P_DEFAULT);
        if (o < 0) continue;
        hid_t sp = H5Iget_type(o) == H5I_DATASET ? H5Dget_space(o) : H5I_INVALID_HID;
        hsize_t d[H5S_MAX_RANK];
        if (sp >= 0 && H5Sget_simple_extent_ndims(sp) >= 1 &&
            H5Sget_simple_extent_dims(sp, d, NULL) >= 1) {
            if (!ref[0]) {
                snprintf(ref, sizeof ref, "%s", name);
                have = (size_t)d[0];
            } else if ((size_t)d[0] != have) {
                st = fail(c, "/%s/%s has %zu rows but /%s/%s has %zu; all arrays of a split "
                             "must have the same N", c->split, name, (size_t)d[0], c->split, ref,
                          have);
            }
        }
        if (sp >= 0) H5Sclose(sp);
        H5Oclose(o);
    }
    *n_out = have;
    return st;
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

/* Reads rows [begin, begin+rows) of one array with one hyperslab read, converts and checks. */
static jt_status read_shard(const data_ctx *c, jt_array *a, const data_pending *p, size_t begin,
                            size_t rows) {
    jt_status st = JT_OK;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID, xfer = H5I_INVALID_HID;
    uint8_t *tmp = NULL;
    char where[WHERE_MAX];
    int overflow = 0;
    snprintf(where, sizeof where, "/%s/%s", c->split, a->name);
    if (rows > SIZE_MAX / 4 / a->row_elems) return fail(c, "%s: shard too large", where);
    size_t total = rows * a->row_elems;
    hsize_t start[DATA_MAX_RANK] = {0}, count[DATA_MAX_RANK];
    memcpy(count, p->dims, sizeof count);
    start[0] = begin;
    count[0] = rows;
    fspace = H5Dget_space(p->dset);
    mspace = H5Screate_simple(p->rank, count, NULL);
    if (fspace < 0 || mspace < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0) {
        st = fail(c, "%s: cannot select rows [%zu, %zu)", where, begin, begin + rows);
        goto cleanup;
    }
    herr_t rc;
    if (a->role == JT_ARRAY_LABEL) {
        a->data = jt_xcalloc(total, sizeof(int32_t));
        xfer = H5Pcreate(H5P_DATASET_XFER);
        H5Pset_type_conv_cb(xfer, on_conv_except, &overflow);
        rc = H5Dread(p->dset, H5T_NATIVE_INT32, mspace, fspace, xfer, a->data);
    } else if (p->u8) {
        a->data = jt_alloc_floats(total);
        tmp = jt_xcalloc(total, 1);
        rc = H5Dread(p->dset, H5T_NATIVE_UINT8, mspace, fspace, H5P_DEFAULT, tmp);
    } else {
        a->data = jt_alloc_floats(total);
        rc = H5Dread(p->dset, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, a->data);
    }
    if (rc < 0) {
        st = fail(c, "%s: cannot read rows [%zu, %zu) (damaged file?)", where, begin,
                  begin + rows);
        goto cleanup;
    }
    if (a->role == JT_ARRAY_LABEL) {
        const int32_t *y = a->data;
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
    float *x = a->data;
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
    free(tmp);
    if (xfer >= 0) H5Pclose(xfer);
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
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
#if H5_VERSION_GE(1, 12, 0)
    htri_t ok = H5Fis_accessible(c->path, H5P_DEFAULT);
#else
    htri_t ok = H5Fis_hdf5(c->path);
#endif
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

jt_status jt_data_open(jt_split *s, const char *path, const char *split,
                       const char *const *inputs, size_t n_inputs,
                       const char *const *labels, size_t n_labels,
                       int rank, int world, char *err, size_t errlen) {
    JT_CHECK(s && path && split, "jt_data_open: NULL argument");
    JT_CHECK(world == 0 || (world > 0 && rank >= 0 && rank < world),
             "jt_data_open: rank %d of %d ranks", rank, world);
    memset(s, 0, sizeof *s);
    if (err && errlen) err[0] = '\0';
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    data_ctx c = {path, split, err, errlen};
    jt_status st = JT_OK;
    hid_t file = H5I_INVALID_HID, root = H5I_INVALID_HID, grp = H5I_INVALID_HID;
    size_t n_req = 0, n_total = n_inputs + n_labels;
    const char **names = jt_xcalloc(n_total, sizeof *names);
    jt_array_role *roles = jt_xcalloc(n_total, sizeof *roles);
    data_pending *p = jt_xcalloc(n_total, sizeof *p);
    for (size_t i = 0; i < n_total; i++) p[i].dset = H5I_INVALID_HID;
    for (size_t i = 0; i < n_inputs; i++) add_request(names, roles, &n_req, inputs[i], JT_ARRAY_INPUT);
    for (size_t i = 0; i < n_labels; i++) add_request(names, roles, &n_req, labels[i], JT_ARRAY_LABEL);
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
        st = fail(&c, "cannot open the HDF5 file (damaged, or locked by a writer?)");
        goto cleanup;
    }
    if ((st = check_root(&c, root)) != JT_OK) goto cleanup;
    if (plain_name(split) && H5Lexists(root, split, H5P_DEFAULT) > 0)
        grp = H5Oopen(root, split, H5P_DEFAULT);
    if (grp < 0 || H5Iget_type(grp) != H5I_GROUP) {
        char list[LIST_MAX];
        list_names(root, H5I_GROUP, list, sizeof list);
        st = fail(&c, "no split '%s' (splits in the file: %s)", split, list);
        goto cleanup;
    }
    for (size_t i = 0; i < n_req; i++) {
        st = open_array(&c, grp, names[i], roles[i], &s->arrays[i], &p[i]);
        s->n_arrays = i + 1;
        if (st != JT_OK) goto cleanup;
    }
    if ((st = check_rows(&c, grp, s->arrays, p, n_req, &s->n)) != JT_OK) goto cleanup;
    if (world == 0) goto cleanup; /* metadata only */
    if (s->n < (size_t)world) {
        st = fail(&c, "split '%s' has %zu rows, fewer than the %d rank%s (every rank needs at "
                      "least one row)", split, s->n, world, world == 1 ? "" : "s");
        goto cleanup;
    }
    s->begin = jt_data_shard_begin(s->n, world, rank);
    s->end = jt_data_shard_begin(s->n, world, rank + 1);
    for (size_t i = 0; i < n_req; i++)
        if ((st = read_shard(&c, &s->arrays[i], &p[i], s->begin, s->end - s->begin)) != JT_OK)
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
        free_strings(a->classes, a->n_classes);
        if (a->role == JT_ARRAY_INPUT) jt_free_aligned(a->data);
        else free(a->data);
    }
    free(s->arrays);
    memset(s, 0, sizeof *s);
}
