/* h5util.c - every HDF5 attribute and data set access of jtrain and HDF5's error stack as one
 * reason (h5util.h; the isolated reader is h5isolate.c).
 *
 * Invariants: a reader checks class, size and shape before it asks HDF5 to read, so every
 * buffer it hands HDF5 is sized from checked numbers; every handle opened here is closed on
 * every path; HDF5 never prints (jt_h5_quiet); every function that reads a file calls
 * jt_h5_beat(), so an isolated reader that stops calling them is stuck inside HDF5. */
#include "jtrain/h5util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5isolate.h"

#define WHY_FILTER 400             /* the missing-filter explanation */

static void why_set(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void why_set(char *why, size_t whylen, const char *fmt, ...) {
    if (!why || !whylen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

void jt_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* ---------- the error stack ---------- */

typedef struct {
    char *buf;
    size_t len;
    int found;
} reason_walk;

/* Upward walk: entry 0 is the innermost (where the failure was detected). The first entry that
 * is not the plugin search (a missing filter also reports every plugin folder it looked in)
 * carries the most specific reason. */
static herr_t reason_cb(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    reason_walk *w = data;
    if (w->found || !e->desc || !e->desc[0] || e->maj_num == H5E_PLUGIN) return 0;
    /* A failed system call: "... errno = 2, error message = 'No such file or directory' ..." */
    const char *m = strstr(e->desc, "error message = '");
    if (m) {
        m += strlen("error message = '");
        const char *q = strchr(m, '\'');
        snprintf(w->buf, w->len, "%.*s", q ? (int)(q - m) : (int)strlen(m), m);
    } else {
        snprintf(w->buf, w->len, "%s", e->desc);
    }
    w->found = 1;
    return 0;
}

const char *jt_h5_reason(char *buf, size_t len) {
    int saved = errno;
    reason_walk w = {buf, len, 0};
    if (!buf || !len) return "";
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, reason_cb, &w);
    if (!w.found) snprintf(buf, len, "%s", saved ? strerror(saved) : "unknown HDF5 error");
    return buf;
}

hid_t jt_h5_stack_save(void) { return H5Eget_current_stack(); }

void jt_h5_stack_restore(hid_t saved) {
    if (saved >= 0) H5Eset_current_stack(saved);
}

/* why = "<what>: <HDF5's reason>" */
static void why_h5(char *why, size_t whylen, const char *what) {
    char r[512];
    jt_h5_reason(r, sizeof r);
    why_set(why, whylen, "%s: %s", what, r);
}

/* ---------- formatting ---------- */

void jt_h5_dims_str(const hsize_t *d, int rank, const char *brackets, char *buf, size_t len) {
    if (!len) return;
    char open = brackets && brackets[0] ? brackets[0] : '[';
    char close = brackets && brackets[0] && brackets[1] ? brackets[1] : ']';
    size_t used = 0;
    buf[0] = '\0';
    int w = snprintf(buf, len, "%c", open);
    used = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < rank && used < len; i++) {
        w = snprintf(buf + used, len - used, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
        if (w < 0) return;
        used += (size_t)w;
    }
    if (used < len) snprintf(buf + used, len - used, "%c", close);
}

void jt_h5_type_name(hid_t t, char *buf, size_t len) {
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
    case H5T_BITFIELD: snprintf(buf, len, "bitfield (%zu bits)", bits); break;
    case H5T_OPAQUE: snprintf(buf, len, "opaque (%zu bits)", bits); break;
    case H5T_REFERENCE: snprintf(buf, len, "reference"); break;
    default: snprintf(buf, len, "an unknown type"); break;
    }
}

void jt_h5_list_children(hid_t loc, H5I_type_t want, char *buf, size_t len) {
    jt_h5_beat();
    H5G_info_t info;
    size_t used = 0;
    if (!len) return;
    buf[0] = '\0';
    if (H5Gget_info(loc, &info) >= 0) {
        for (hsize_t i = 0; i < info.nlinks && i < 4096 && used < len; i++) {
            char name[256];
            ssize_t nl = H5Lget_name_by_idx(loc, ".", H5_INDEX_NAME, H5_ITER_INC, i, name,
                                            sizeof name, H5P_DEFAULT);
            if (nl < 0 || (size_t)nl >= sizeof name) continue;
            hid_t o = H5Oopen(loc, name, H5P_DEFAULT);
            jt_h5_beat();
            if (o < 0) continue;
            int match = H5Iget_type(o) == want;
            H5Oclose(o);
            if (!match) continue;
            int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", name);
            if (w > 0) used += (size_t)w;
        }
    }
    if (used == 0) snprintf(buf, len, "none");
}

/* ---------- attributes ---------- */

int jt_h5_attr_exists(hid_t obj, const char *name, char *why, size_t whylen) {
    jt_h5_beat();
    jt_h5_quiet();
    htri_t e = H5Aexists(obj, name);
    if (e < 0) {
        why_h5(why, whylen, "cannot list the attributes");
        return -1;
    }
    return e > 0;
}

/* An open attribute with its type, class and shape checked against what the reader needs. */
typedef struct {
    hid_t attr, type, space;
    H5T_class_t cls;
    int rank;
    size_t npoints;
} attr_open_t;

static void attr_close(attr_open_t *a) {
    if (a->space >= 0) H5Sclose(a->space);
    if (a->type >= 0) H5Tclose(a->type);
    if (a->attr >= 0) H5Aclose(a->attr);
    a->attr = a->type = a->space = H5I_INVALID_HID;
}

/* Opens attribute name: 1, 0 if absent, -1 (why) if unreadable or not a scalar or rank-1
 * list of at most max_n values. */
static int attr_open(hid_t obj, const char *name, size_t max_n, attr_open_t *a, char *why,
                     size_t whylen) {
    a->attr = a->type = a->space = H5I_INVALID_HID;
    int e = jt_h5_attr_exists(obj, name, why, whylen);
    if (e <= 0) return e;
    a->attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (a->attr < 0) {
        why_h5(why, whylen, "cannot be opened");
        goto fail;
    }
    a->type = H5Aget_type(a->attr);
    a->space = H5Aget_space(a->attr);
    if (a->type < 0 || a->space < 0) {
        why_h5(why, whylen, "has an unreadable type or shape");
        goto fail;
    }
    a->cls = H5Tget_class(a->type);
    H5S_class_t sc = H5Sget_simple_extent_type(a->space);
    a->rank = H5Sget_simple_extent_ndims(a->space);
    hssize_t np = H5Sget_simple_extent_npoints(a->space);
    if (sc == H5S_NULL || np == 0) {
        why_set(why, whylen, "is empty, expected a value");
        goto fail;
    }
    if (a->rank < 0 || np < 0 || a->cls == H5T_NO_CLASS) {
        why_h5(why, whylen, "has an unreadable type or shape");
        goto fail;
    }
    if (a->rank > 1) {
        hsize_t d[JT_H5_MAX_RANK];
        char ds[160] = "";
        if (a->rank <= JT_H5_MAX_RANK && H5Sget_simple_extent_dims(a->space, d, NULL) >= 0)
            jt_h5_dims_str(d, a->rank, "[]", ds, sizeof ds);
        why_set(why, whylen, "has shape %s, expected a scalar or a list (rank 1)", ds);
        goto fail;
    }
    if ((unsigned long long)np > (unsigned long long)max_n) {
        why_set(why, whylen, "has %lld values, more than the %zu jtrain accepts", (long long)np,
                max_n);
        goto fail;
    }
    a->npoints = (size_t)np;
    return 1;
fail:
    attr_close(a);
    return -1;
}

void jt_h5_free_strings(char **s, size_t n) {
    if (!s) return;
    for (size_t i = 0; i < n; i++) free(s[i]);
    free(s);
}

/* A malloc'd copy of the first len bytes of p (at most JT_H5_MAX_STRING), NUL-terminated. */
static char *copy_str(const char *p, size_t len) {
    char *s = jt_xcalloc(len + 1, 1);
    memcpy(s, p, len);
    return s;
}

int jt_h5_attr_strings(hid_t obj, const char *name, size_t max_n, char ***out, size_t *n_out,
                       char *why, size_t whylen) {
    attr_open_t a;
    hid_t mt = H5I_INVALID_HID;
    char **vl = NULL, **res = NULL, *fixed = NULL;
    size_t n = 0;
    int rc = -1;
    *out = NULL;
    *n_out = 0;
    int e = attr_open(obj, name, max_n, &a, why, whylen);
    if (e <= 0) return e;
    if (a.cls != H5T_STRING) {
        char tn[48];
        jt_h5_type_name(a.type, tn, sizeof tn);
        why_set(why, whylen, "is %s, expected %s", tn,
                max_n > 1 ? "a list of strings" : "a string");
        goto cleanup;
    }
    H5T_cset_t cset = H5Tget_cset(a.type);
    htri_t var = H5Tis_variable_str(a.type);
    if ((cset != H5T_CSET_ASCII && cset != H5T_CSET_UTF8) || var < 0) {
        why_set(why, whylen, "is a string of an unknown kind (character set %d)", (int)cset);
        goto cleanup;
    }
    n = a.npoints;
    res = jt_xcalloc(n, sizeof *res);
    /* HDF5 does not convert between character sets: read in the file's own. */
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_cset(mt, cset) < 0) {
        why_h5(why, whylen, "cannot be read");
        goto cleanup;
    }
    if (var) {
        vl = jt_xcalloc(n, sizeof *vl);
        if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a.attr, mt, vl) < 0) {
            why_h5(why, whylen, "cannot be read");
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) {
            size_t len = vl[i] ? strnlen(vl[i], JT_H5_MAX_STRING + 1) : 0;
            if (len > JT_H5_MAX_STRING) {
                why_set(why, whylen, "[%zu] is longer than %u bytes", i, JT_H5_MAX_STRING);
                goto cleanup;
            }
            res[i] = copy_str(vl[i] ? vl[i] : "", len);
        }
    } else {
        size_t sz = H5Tget_size(a.type);
        if (sz == 0 || sz > JT_H5_MAX_STRING || n > ((size_t)1 << 30) / sz) {
            why_set(why, whylen, "holds %zu strings of %zu bytes, more than jtrain accepts", n,
                    sz);
            goto cleanup;
        }
        H5T_str_t pad = H5Tget_strpad(a.type);
        /* the file's own size and padding: HDF5 copies the bytes as they are */
        if (H5Tset_size(mt, sz) < 0 || H5Tset_strpad(mt, pad) < 0) {
            why_h5(why, whylen, "cannot be read");
            goto cleanup;
        }
        fixed = jt_xcalloc(n * sz + 1, 1);
        if (H5Aread(a.attr, mt, fixed) < 0) {
            why_h5(why, whylen, "cannot be read");
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) {
            const char *p = fixed + i * sz;
            size_t len = strnlen(p, sz);
            while (len > 0 && p[len - 1] == ' ' && pad == H5T_STR_SPACEPAD) len--;
            res[i] = copy_str(p, len);
        }
    }
    jt_h5_beat();
    *out = res;
    *n_out = n;
    res = NULL;
    rc = 1;
cleanup:
    if (vl) {
        for (size_t i = 0; i < n; i++) H5free_memory(vl[i]);
        free(vl);
    }
    jt_h5_free_strings(res, n);
    free(fixed);
    if (mt >= 0) H5Tclose(mt);
    attr_close(&a);
    return rc;
}

int jt_h5_attr_string(hid_t obj, const char *name, char **out, char *why, size_t whylen) {
    char **s = NULL;
    size_t n = 0;
    *out = NULL;
    int rc = jt_h5_attr_strings(obj, name, 1, &s, &n, why, whylen);
    if (rc == 1) {
        *out = s[0];
        free(s);
    }
    return rc;
}

int jt_h5_attr_numbers(hid_t obj, const char *name, size_t max_n, double **out, size_t *n_out,
                       char *why, size_t whylen) {
    attr_open_t a;
    double *v = NULL;
    int rc = -1;
    *out = NULL;
    *n_out = 0;
    int e = attr_open(obj, name, max_n, &a, why, whylen);
    if (e <= 0) return e;
    size_t sz = H5Tget_size(a.type);
    if ((a.cls != H5T_INTEGER && a.cls != H5T_FLOAT) || sz == 0 || sz > 16) {
        char tn[48];
        jt_h5_type_name(a.type, tn, sizeof tn);
        why_set(why, whylen, "is %s, expected a number", tn);
        goto cleanup;
    }
    v = jt_xcalloc(a.npoints, sizeof *v);
    if (H5Aread(a.attr, H5T_NATIVE_DOUBLE, v) < 0) {
        why_h5(why, whylen, "cannot be read as numbers");
        goto cleanup;
    }
    for (size_t i = 0; i < a.npoints; i++)
        if (!isfinite(v[i])) {
            if (a.npoints == 1) why_set(why, whylen, "is %g, expected a finite number", v[i]);
            else why_set(why, whylen, "[%zu] is %g, expected finite numbers", i, v[i]);
            goto cleanup;
        }
    *out = v;
    *n_out = a.npoints;
    v = NULL;
    rc = 1;
cleanup:
    free(v);
    attr_close(&a);
    return rc;
}

/* One integer of at most 64 bits, read in its own signedness so HDF5 never clips it. */
static int attr_int(hid_t obj, const char *name, int *neg, uint64_t *mag, char *why,
                    size_t whylen) {
    attr_open_t a;
    int rc = -1;
    int e = attr_open(obj, name, 1, &a, why, whylen);
    if (e <= 0) return e;
    size_t sz = H5Tget_size(a.type);
    if (a.cls != H5T_INTEGER || sz == 0 || sz > 8) {
        char tn[48];
        jt_h5_type_name(a.type, tn, sizeof tn);
        why_set(why, whylen, "is %s, expected an integer", tn);
        goto cleanup;
    }
    if (H5Tget_sign(a.type) == H5T_SGN_NONE) {
        uint64_t u = 0;
        if (H5Aread(a.attr, H5T_NATIVE_UINT64, &u) < 0) goto unreadable;
        *neg = 0;
        *mag = u;
    } else {
        int64_t s = 0;
        if (H5Aread(a.attr, H5T_NATIVE_INT64, &s) < 0) goto unreadable;
        *neg = s < 0;
        *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    }
    rc = 1;
    goto cleanup;
unreadable:
    why_h5(why, whylen, "cannot be read");
cleanup:
    attr_close(&a);
    return rc;
}

int jt_h5_attr_i64(hid_t obj, const char *name, int64_t lo, int64_t hi, int64_t *out, char *why,
                   size_t whylen) {
    int neg;
    uint64_t mag;
    int rc = attr_int(obj, name, &neg, &mag, why, whylen);
    if (rc <= 0) return rc;
    /* v in [lo, hi], compared without overflow */
    int ok = neg ? (lo < 0 && mag <= (uint64_t)0 - (uint64_t)lo) &&
                       (hi >= 0 || mag >= (uint64_t)0 - (uint64_t)hi)
                 : (hi >= 0 && mag <= (uint64_t)hi) && (lo <= 0 || mag >= (uint64_t)lo);
    if (!ok) {
        why_set(why, whylen, "is %s%llu, expected %lld to %lld", neg ? "-" : "",
                (unsigned long long)mag, (long long)lo, (long long)hi);
        return -1;
    }
    *out = neg ? (int64_t)((uint64_t)0 - mag) : (int64_t)mag;
    return 1;
}

int jt_h5_attr_u64(hid_t obj, const char *name, uint64_t *out, char *why, size_t whylen) {
    int neg;
    uint64_t mag;
    int rc = attr_int(obj, name, &neg, &mag, why, whylen);
    if (rc <= 0) return rc;
    if (neg && mag) {
        why_set(why, whylen, "is -%llu, expected a number >= 0", (unsigned long long)mag);
        return -1;
    }
    *out = mag;
    return 1;
}

int jt_h5_attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, size_t n,
                     const void *buf) {
    hsize_t d = n;
    hid_t sp = n ? H5Screate_simple(1, &d, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = sp < 0 ? H5I_INVALID_HID
                     : H5Acreate2(obj, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, mem_type, buf) < 0 ? -1 : 0;
    hid_t saved = rc < 0 ? jt_h5_stack_save() : H5I_INVALID_HID;
    if (a >= 0 && H5Aclose(a) < 0 && rc == 0) {
        rc = -1;
        saved = jt_h5_stack_save();
    }
    if (sp >= 0) H5Sclose(sp);
    jt_h5_stack_restore(saved);
    return rc;
}

int jt_h5_attr_write_strings(hid_t obj, const char *name, const char *const *s, size_t n) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    int rc = -1;
    if (H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0)
        rc = jt_h5_attr_write(obj, name, t, t, n, s);
    hid_t saved = rc < 0 ? jt_h5_stack_save() : H5I_INVALID_HID;
    H5Tclose(t);
    jt_h5_stack_restore(saved);
    return rc;
}

int jt_h5_attr_write_string(hid_t obj, const char *name, const char *s) {
    return jt_h5_attr_write_strings(obj, name, &s, 0);
}

int jt_h5_attr_write_u64(hid_t obj, const char *name, uint64_t v) {
    return jt_h5_attr_write(obj, name, H5T_NATIVE_UINT64, H5T_NATIVE_UINT64, 0, &v);
}

/* ---------- data sets ---------- */

int jt_h5_dset_info_get(hid_t d, jt_h5_dset_info *info, char *why, size_t whylen) {
    jt_h5_beat();
    memset(info, 0, sizeof *info);
    int rc = -1;
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    if (t < 0 || sp < 0) {
        why_h5(why, whylen, "cannot read its type and shape");
        goto cleanup;
    }
    info->cls = H5Tget_class(t);
    info->size = H5Tget_size(t);
    info->is_unsigned = info->cls == H5T_INTEGER && H5Tget_sign(t) == H5T_SGN_NONE;
    jt_h5_type_name(t, info->type, sizeof info->type);
    info->rank = H5Sget_simple_extent_ndims(sp);
    if (info->cls == H5T_NO_CLASS || info->rank < 0 || info->rank > JT_H5_MAX_RANK ||
        H5Sget_simple_extent_dims(sp, info->dims, NULL) < 0) {
        why_h5(why, whylen, "cannot read its type and shape");
        goto cleanup;
    }
    jt_h5_dims_str(info->dims, info->rank, "[]", info->shape, sizeof info->shape);
    hid_t dcpl = H5Dget_create_plist(d);
    hsize_t chunk[JT_H5_MAX_RANK];
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED &&
        H5Pget_chunk(dcpl, JT_H5_MAX_RANK, chunk) >= 1)
        info->chunk_rows = chunk[0];
    if (dcpl >= 0) H5Pclose(dcpl);
    rc = 0;
cleanup:
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    return rc;
}

/* Finds a filter of d's pipeline that this HDF5 cannot decode; only mandatory ones unless
 * optional too (an optional filter may have been skipped for every chunk, so only a read can
 * tell). 1 and the explanation in why ("compressed with filter 'lzf' (id 32000), which ..."),
 * 0 if none, -1 (why) if the pipeline cannot be read. */
static int missing_filter(hid_t d, int optional_too, char *why, size_t whylen) {
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0) {
        why_h5(why, whylen, "cannot read its storage properties");
        return -1;
    }
    int rc = 0, nf = H5Pget_nfilters(dcpl);
    if (nf < 0) {
        why_h5(why, whylen, "cannot read its filters");
        rc = -1;
    }
    for (int i = 0; i < nf && rc == 0; i++) {
        unsigned flags = 0, conf = 0;
        size_t nelem = 0;
        char name[64] = "";
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nelem, NULL, sizeof name,
                                         name, &conf);
        if (id < 0) {
            why_h5(why, whylen, "cannot read its filters");
            rc = -1;
        } else if ((optional_too || !(flags & H5Z_FLAG_OPTIONAL)) && H5Zfilter_avail(id) <= 0) {
            /* well-known plugins by id, for files that do not name theirs */
            const char *known = id == 32000 ? "lzf" : id == 32001 ? "blosc" : id == 32004 ? "lz4"
                              : id == 32008 ? "bitshuffle" : id == 32015 ? "zstd" : "unknown";
            name[sizeof name - 1] = '\0';
            why_set(why, whylen, "compressed with filter '%s' (id %d), which this HDF5 cannot "
                    "decode (not built in, and no plugin for it in HDF5_PLUGIN_PATH): rewrite "
                    "the file without it (e.g. h5repack -f GZIP=4 IN OUT) or install the "
                    "filter's HDF5 plugin", name[0] ? name : known, (int)id);
            rc = 1;
        }
    }
    H5Pclose(dcpl);
    return rc;
}

/* A chunked d's chunk shape against its own shape: -1 (why) when damaged. */
static int check_chunks(hid_t d, char *why, size_t whylen) {
    int rc = -1;
    hid_t dcpl = H5Dget_create_plist(d), fs = H5Dget_space(d);
    hsize_t dims[JT_H5_MAX_RANK], maxd[JT_H5_MAX_RANK], chunk[JT_H5_MAX_RANK];
    if (dcpl < 0 || fs < 0) {
        why_h5(why, whylen, "cannot read its storage properties");
        goto cleanup;
    }
    if (H5Pget_layout(dcpl) != H5D_CHUNKED) {
        rc = 0;
        goto cleanup;
    }
    int rank = H5Sget_simple_extent_ndims(fs);
    int crank = H5Pget_chunk(dcpl, JT_H5_MAX_RANK, chunk);
    if (rank < 0 || rank > JT_H5_MAX_RANK || H5Sget_simple_extent_dims(fs, dims, maxd) < 0 ||
        crank < 0) {
        why_h5(why, whylen, "cannot read its chunk shape");
        goto cleanup;
    }
    char cs[160], ds[160];
    jt_h5_dims_str(chunk, crank < JT_H5_MAX_RANK ? crank : JT_H5_MAX_RANK, "[]", cs, sizeof cs);
    jt_h5_dims_str(dims, rank, "[]", ds, sizeof ds);
    int bad = crank != rank;
    for (int i = 0; i < rank && !bad; i++)
        bad = chunk[i] == 0 || (maxd[i] != H5S_UNLIMITED && chunk[i] > maxd[i]);
    if (bad) {
        why_set(why, whylen, "has chunks of %s, which do not fit its shape %s (the file is "
                "damaged)", cs, ds);
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (fs >= 0) H5Sclose(fs);
    if (dcpl >= 0) H5Pclose(dcpl);
    return rc;
}

int jt_h5_dset_check_storage(hid_t d, char *why, size_t whylen) {
    jt_h5_beat();
    if (check_chunks(d, why, whylen) != 0) return -1;
    char w[WHY_FILTER];
    int r = missing_filter(d, 0, w, sizeof w);
    if (r == 0) return 0;
    why_set(why, whylen, "%s%s", r > 0 ? "is " : "", w);
    return -1;
}

int jt_h5_read_rows(hid_t d, hid_t mem_type, hsize_t begin, hsize_t rows, hid_t xfer, void *buf,
                    char *why, size_t whylen) {
    jt_h5_beat();
    int rc = -1;
    hsize_t dims[JT_H5_MAX_RANK], start[JT_H5_MAX_RANK] = {0};
    hid_t fs = H5Dget_space(d), ms = H5I_INVALID_HID;
    int rank = fs < 0 ? -1 : H5Sget_simple_extent_ndims(fs);
    if (rank < 1 || rank > JT_H5_MAX_RANK || H5Sget_simple_extent_dims(fs, dims, NULL) < 0) {
        why_h5(why, whylen, "cannot read its shape");
        goto cleanup;
    }
    JT_CHECK(begin <= dims[0] && rows <= dims[0] - begin, "jt_h5_read_rows: rows out of range");
    start[0] = begin;
    dims[0] = rows;
    ms = H5Screate_simple(rank, dims, NULL);
    if (ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, dims, NULL) < 0) {
        why_h5(why, whylen, "cannot select its rows");
        goto cleanup;
    }
    int read_failed = H5Dread(d, mem_type, ms, fs, xfer, buf) < 0;
    jt_h5_beat();
    if (read_failed) {
        char r[512], w[WHY_FILTER];
        jt_h5_reason(r, sizeof r);
        /* an optional filter this HDF5 lacks: say so rather than "... is not registered" */
        if (missing_filter(d, 1, w, sizeof w) == 1) why_set(why, whylen, "cannot be read: %s", w);
        else why_set(why, whylen, "cannot be read: %s", r);
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

int jt_h5_write_rows(hid_t d, hid_t mem_type, hsize_t begin, hsize_t rows, const void *buf) {
    int rc = -1;
    hsize_t dims[JT_H5_MAX_RANK], start[JT_H5_MAX_RANK] = {0};
    hid_t fs = H5Dget_space(d), ms = H5I_INVALID_HID;
    int rank = fs < 0 ? -1 : H5Sget_simple_extent_ndims(fs);
    if (rank < 1 || rank > JT_H5_MAX_RANK || H5Sget_simple_extent_dims(fs, dims, NULL) < 0)
        goto cleanup;
    JT_CHECK(begin <= dims[0] && rows <= dims[0] - begin, "jt_h5_write_rows: rows out of range");
    start[0] = begin;
    dims[0] = rows;
    ms = H5Screate_simple(rank, dims, NULL);
    if (ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, dims, NULL) < 0 ||
        H5Dwrite(d, mem_type, ms, fs, H5P_DEFAULT, buf) < 0)
        goto cleanup;
    rc = 0;
cleanup:;
    hid_t saved = rc < 0 ? jt_h5_stack_save() : H5I_INVALID_HID;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    jt_h5_stack_restore(saved);
    return rc;
}
