/* ckpt.c - checkpoints: the HDF5 file of one saved step, written atomically by rank 0, and
 * loading it (ckpt.h). The folder around it (latest, pruning, free space, temp files, choosing
 * what to resume) is ckpt_dir.c.
 *
 * Invariants: a file called ckpt-<step>.h5 is always complete (it only appears by rename()
 * after fsync) and holds only finite values (save checks before building it), and `latest`
 * only ever names such a file, so a crash at any point leaves the previous checkpoint intact
 * and loadable. Loading reads and checks everything into temporary buffers first; a rejected
 * checkpoint never changes the model or the caller's state.
 *
 * RNG state: every random stream in jtrain is derived afresh from (seed, purpose, epoch, step,
 * rank, ...) and none is carried from one step to the next, so the seed together with the data
 * position (epoch, epoch_step) IS the complete RNG and data-order state. Storing those three
 * numbers lets a resumed run draw exactly what the saved run would have drawn next. */
#include "jtrain/ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "ckpt_dir.h"
#include "jtrain/h5util.h"

#define CKPT_FORMAT "checkpoint"
#define CKPT_VERSION 1

static const char *const SECTIONS[3] = {"params", "adam/m", "adam/v"};

/* ---------- small helpers ---------- */

#define fail jt_ckpt_failf /* ckpt_dir.h */

/* ---------- checksums ---------- */

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

/* Hashes the values as little-endian float32 bytes, whatever the host's byte order. */
static uint64_t fnv1a_floats(uint64_t h, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        for (int k = 0; k < 32; k += 8) h = (h ^ ((u >> k) & 0xffu)) * FNV_PRIME;
    }
    return h;
}

static int cmp_view_name(const void *a, const void *b) {
    const jt_view *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* The views of p sorted by name (bytewise); free() the result. */
static const jt_view **sorted_views(const jt_params *p) {
    const jt_view **s = jt_xcalloc(p->n_views ? p->n_views : 1, sizeof *s);
    for (size_t i = 0; i < p->n_views; i++) s[i] = &p->views[i];
    qsort(s, p->n_views, sizeof *s, cmp_view_name);
    return s;
}

/* Section checksum (ckpt.h): buf is laid out like p's buffers (view offsets). */
static uint64_t section_checksum(const jt_params *p, const jt_view **sorted, const float *buf) {
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < p->n_views; i++) {
        h = fnv1a(h, sorted[i]->name, strlen(sorted[i]->name) + 1);
        h = fnv1a_floats(h, buf + sorted[i]->offset, sorted[i]->size);
    }
    return h;
}

/* Hashes the values as little-endian float64 bytes, whatever the host's byte order. */
static uint64_t fnv1a_doubles(uint64_t h, const double *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t u;
        memcpy(&u, &x[i], 8);
        for (int k = 0; k < 64; k += 8) h = (h ^ ((u >> k) & 0xffu)) * FNV_PRIME;
    }
    return h;
}

/* Root checksum (ckpt.h) over the state numbers, the config text and, when there is one, the
 * run state (without one it is the checksum of files written before /state/run existed). */
static uint64_t state_checksum(const jt_ckpt_state *st) {
    char head[512];
    int n = snprintf(head, sizeof head,
                     "world=%" PRId64 "\nstep=%" PRIu64 "\nepoch=%" PRIu64 "\nepoch_step=%" PRIu64
                     "\nadam_t=%" PRIu64 "\nseed=%" PRIu64 "\nconfig=",
                     st->world, st->step, st->epoch, st->epoch_step, st->adam_t, st->seed);
    uint64_t h = fnv1a(FNV_OFFSET, head, (size_t)n);
    const char *c = st->config_text ? st->config_text : "";
    h = fnv1a(h, c, strlen(c));
    if (st->n_run > 0) {
        h = fnv1a(h, "\nrun=", 5);
        h = fnv1a_doubles(h, st->run, st->n_run);
    }
    for (size_t i = 0; i < st->n_layout; i++) { /* "\nlayout=NAME:ROLE:NDIM:D0,D1,D2:CLASSES" */
        const jt_ckpt_array *a = &st->layout[i];
        char line[160];
        int len = snprintf(line, sizeof line, "\nlayout=%s:%d:%d:%" PRIu64 ",%" PRIu64 ",%" PRIu64
                           ":%" PRIu64, a->name, (int)a->role, (int)a->ndim, a->shape[0],
                           a->shape[1], a->shape[2], a->n_classes);
        h = fnv1a(h, line, (size_t)len);
    }
    return h;
}

/* /layout: the model's arrays (ckpt.h), as five attributes of one group. */
static int write_layout(hid_t f, const jt_ckpt_state *st) {
    size_t n = st->n_layout;
    const char *names[JT_CKPT_MAX_ARRAYS];
    int64_t roles[JT_CKPT_MAX_ARRAYS], ndims[JT_CKPT_MAX_ARRAYS], dims[3 * JT_CKPT_MAX_ARRAYS],
        classes[JT_CKPT_MAX_ARRAYS];
    JT_CHECK(n <= JT_CKPT_MAX_ARRAYS, "a layout of %zu arrays", n);
    for (size_t i = 0; i < n; i++) {
        const jt_ckpt_array *a = &st->layout[i];
        names[i] = a->name;
        roles[i] = a->role;
        ndims[i] = a->ndim;
        for (int k = 0; k < 3; k++) dims[3 * i + k] = (int64_t)a->shape[k];
        classes[i] = (int64_t)a->n_classes;
    }
    hid_t g = H5Gcreate2(f, "layout", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int bad = g < 0 || jt_h5_attr_write_strings(g, "names", names, n) < 0 ||
              jt_h5_attr_write(g, "roles", H5T_STD_I64LE, H5T_NATIVE_INT64, n, roles) < 0 ||
              jt_h5_attr_write(g, "ndims", H5T_STD_I64LE, H5T_NATIVE_INT64, n, ndims) < 0 ||
              jt_h5_attr_write(g, "dims", H5T_STD_I64LE, H5T_NATIVE_INT64, 3 * n, dims) < 0 ||
              jt_h5_attr_write(g, "classes", H5T_STD_I64LE, H5T_NATIVE_INT64, n, classes) < 0;
    if (g >= 0) H5Gclose(g);
    return bad ? -1 : 0;
}

/* Reads /layout, if the file has one, into st->layout (checked: names fit, roles 0/1, ndims
 * 0..3, dims and classes below 2^31, every list as long as names). */
static jt_status read_layout(hid_t f, const char *path, jt_ckpt_state *st, char *err,
                             size_t errlen) {
    char why[512] = "";
    htri_t has = H5Lexists(f, "layout", H5P_DEFAULT);
    if (has <= 0) return has < 0 ? fail(err, errlen, "checkpoint %s: /layout cannot be looked "
                                        "up: %s", path, jt_h5_reason(why, sizeof why))
                                 : JT_OK;
    hid_t g = H5Gopen2(f, "layout", H5P_DEFAULT);
    char **names = NULL;
    size_t n = 0, len[4] = {0};
    double *num[4] = {NULL, NULL, NULL, NULL};
    static const char *const keys[4] = {"roles", "ndims", "dims", "classes"};
    jt_status status = JT_ECKPT;
    int r = g < 0 ? -1 : jt_h5_attr_strings(g, "names", JT_CKPT_MAX_ARRAYS, &names, &n, why, sizeof why);
    if (r <= 0) {
        fail(err, errlen, "checkpoint %s: /layout attribute names %s", path, r < 0 ? why : "is missing");
        goto done;
    }
    for (int k = 0; k < 4; k++) {
        r = jt_h5_attr_numbers(g, keys[k], 3 * JT_CKPT_MAX_ARRAYS, &num[k], &len[k], why, sizeof why);
        if (r <= 0 || len[k] != (k == 2 ? 3 * n : n)) {
            fail(err, errlen, "checkpoint %s: /layout attribute %s %s", path, keys[k],
                 r < 0 ? why : r == 0 ? "is missing" : "has the wrong length");
            goto done;
        }
    }
    st->layout = jt_xcalloc(n, sizeof *st->layout);
    for (size_t i = 0; i < n; i++) {
        jt_ckpt_array *a = &st->layout[i];
        double role = num[0][i], ndim = num[1][i], nc = num[3][i];
        int ok = strlen(names[i]) < sizeof a->name && (role == 0 || role == 1) && ndim >= 0 &&
                 ndim <= 3 && ndim == (int)ndim && nc >= 0 && nc < 2147483648.0 && nc == (long)nc;
        for (int k = 0; k < 3 && ok; k++) {
            double d = num[2][3 * i + k];
            ok = d >= 0 && d < 2147483648.0 && d == (long)d;
            a->shape[k] = ok ? (uint64_t)d : 0;
        }
        if (!ok) {
            fail(err, errlen, "checkpoint %s: /layout entry %zu (%s) is not a valid array layout",
                 path, i, names[i]);
            free(st->layout);
            st->layout = NULL;
            goto done;
        }
        snprintf(a->name, sizeof a->name, "%s", names[i]);
        a->role = (int32_t)role;
        a->ndim = (int32_t)ndim;
        a->n_classes = (uint64_t)nc;
    }
    st->n_layout = n;
    status = JT_OK;
done:
    jt_h5_free_strings(names, n);
    for (int k = 0; k < 4; k++) free(num[k]);
    if (g >= 0) H5Gclose(g);
    return status;
}

/* ---------- finite values ---------- */

/* Index of the first value of x[0..n) that is Inf or NaN, or n. The common all-finite case is
 * one vectorisable pass: the largest magnitude's bit pattern reaches the exponent's all-ones
 * pattern 0x7f800000 exactly when some value is not finite. */
static size_t first_nonfinite(const float *x, size_t n) {
    uint32_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u &= 0x7fffffffu;
        worst = u > worst ? u : worst;
    }
    if (worst < 0x7f800000u) return n;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

static const char *nonfinite_name(float x) { return isnan(x) ? "nan" : x > 0 ? "inf" : "-inf"; }

/* Finds the first non-finite value of buf's views (laid out like p's buffers); 1 and *view,
 * *index set if there is one, else 0. */
static int find_nonfinite(const jt_params *p, const float *buf, size_t *view, size_t *index) {
    for (size_t i = 0; i < p->n_views; i++) {
        size_t k = first_nonfinite(buf + p->views[i].offset, p->views[i].size);
        if (k < p->views[i].size) {
            *view = i;
            *index = k;
            return 1;
        }
    }
    return 0;
}

/* ---------- save ---------- */

#define WRITE_CHUNK ((size_t)64 << 20) /* bytes per write(); jt_progress() after each */

/* Copies the in-memory HDF5 file f into a new buffer (*size bytes). 0 or -1. */
static int file_image(hid_t f, void **image, size_t *size) {
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) return -1; /* metadata cache into the image */
    ssize_t n = H5Fget_file_image(f, NULL, 0);
    if (n <= 0) return -1;
    *image = malloc((size_t)n);
    if (!*image) return -1;
    if (H5Fget_file_image(f, *image, (size_t)n) != n) {
        free(*image);
        *image = NULL;
        return -1;
    }
    *size = (size_t)n;
    return 0;
}

/* Builds the checkpoint file (layout in ckpt.h) in memory: *image (malloc'd, *size bytes).
 * label names it in errors and inside HDF5 (nothing is written there).
 *
 * Built with HDF5's core driver and no backing store, then written with plain write(). Three
 * reasons: a failed H5Fclose (disk full, quota, EFBIG) leaves HDF5 1.10 with a dangling file
 * that crashes the process at exit, turning exit code 4 into a segfault; our own write()
 * reports errno exactly; and the exact size is known before a byte reaches the disk, so free
 * space can be made first. Cost: the file is held in memory twice for a moment. */
static jt_status build_image(const char *label, const jt_params *p, const jt_ckpt_state *st,
                             void **image, size_t *size, char *err, size_t errlen) {
    jt_status status = JT_ECKPT;
    char detail[512];
    hid_t fapl = -1, f = -1, g[3] = {-1, -1, -1}, adam = -1, state = -1, dspace = -1, d = -1;
    const jt_view **sorted = sorted_views(p);
    const float *bufs[3] = {p->w, p->m, p->v};
    *image = NULL;
    *size = 0;

    /* One allocation increment that holds the data and generous metadata. */
    size_t increment = 3 * p->total * sizeof(float) + st->n_run * sizeof(double) +
                       4096 * (3 * p->n_views + 16);
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fapl_core(fapl, increment, 0) >= 0)
        f = H5Fcreate(label, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f < 0) {
        fail(err, errlen, "cannot create checkpoint file %s in memory: %s", label,
             jt_h5_reason(detail, sizeof detail));
        goto cleanup;
    }
    char created[64] = "unknown";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int version = CKPT_VERSION;
    int64_t world = st->world;
    if (jt_h5_attr_write_string(f, "jtrain_format", CKPT_FORMAT) < 0 ||
        jt_h5_attr_write(f, "version", H5T_NATIVE_INT, H5T_NATIVE_INT, 0, &version) < 0 ||
        jt_h5_attr_write_string(f, "config", st->config_text ? st->config_text : "") < 0 ||
        jt_h5_attr_write(f, "world", H5T_NATIVE_INT64, H5T_NATIVE_INT64, 0, &world) < 0 ||
        jt_h5_attr_write_u64(f, "step", st->step) < 0 ||
        jt_h5_attr_write_u64(f, "epoch", st->epoch) < 0 ||
        jt_h5_attr_write_u64(f, "epoch_step", st->epoch_step) < 0 ||
        jt_h5_attr_write_u64(f, "adam_t", st->adam_t) < 0 ||
        jt_h5_attr_write_u64(f, "seed", st->seed) < 0 ||
        jt_h5_attr_write_string(f, "build_version", JT_VERSION) < 0 ||
        jt_h5_attr_write_string(f, "created", created) < 0 ||
        jt_h5_attr_write_u64(f, "checksum", state_checksum(st)) < 0) {
        fail(err, errlen, "cannot write the attributes of %s: %s", label,
             jt_h5_reason(detail, sizeof detail));
        goto cleanup;
    }
    state = H5Gcreate2(f, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    adam = H5Gcreate2(f, "adam", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (state < 0 || adam < 0 || jt_h5_attr_write_u64(state, "epoch", st->epoch) < 0 ||
        jt_h5_attr_write_u64(state, "epoch_step", st->epoch_step) < 0 ||
        jt_h5_attr_write_u64(state, "seed", st->seed) < 0 ||
        jt_h5_attr_write_u64(adam, "t", st->adam_t) < 0) {
        fail(err, errlen, "cannot write /state and /adam in %s: %s", label,
             jt_h5_reason(detail, sizeof detail));
        goto cleanup;
    }
    if (st->n_layout > 0 && write_layout(f, st) != 0) {
        fail(err, errlen, "cannot write /layout in %s: %s", label, jt_h5_reason(detail, sizeof detail));
        goto cleanup;
    }
    if (st->n_run > 0) {
        hsize_t n = (hsize_t)st->n_run;
        dspace = H5Screate_simple(1, &n, NULL);
        d = dspace < 0 ? -1
                       : H5Dcreate2(state, "run", H5T_IEEE_F64LE, dspace, H5P_DEFAULT,
                                    H5P_DEFAULT, H5P_DEFAULT);
        if (d < 0 ||
            H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, st->run) < 0) {
            fail(err, errlen, "cannot write /state/run in %s: %s", label,
                 jt_h5_reason(detail, sizeof detail));
            goto cleanup;
        }
        H5Dclose(d);
        H5Sclose(dspace);
        d = dspace = -1;
    }
    for (int s = 0; s < 3; s++) {
        g[s] = H5Gcreate2(f, SECTIONS[s], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g[s] < 0 ||
            jt_h5_attr_write_u64(g[s], "checksum", section_checksum(p, sorted, bufs[s])) < 0) {
            fail(err, errlen, "cannot write group /%s in %s: %s", SECTIONS[s], label,
                 jt_h5_reason(detail, sizeof detail));
            goto cleanup;
        }
        jt_progress();
    }
    for (int s = 0; s < 3; s++) {
        for (size_t i = 0; i < p->n_views; i++) {
            const jt_view *v = &p->views[i];
            hsize_t dims[JT_VIEW_MAX_DIMS];
            for (int k = 0; k < v->ndim; k++) dims[k] = (hsize_t)v->shape[k];
            dspace = H5Screate_simple(v->ndim, dims, NULL);
            d = dspace < 0 ? -1
                           : H5Dcreate2(g[s], v->name, H5T_IEEE_F32LE, dspace, H5P_DEFAULT,
                                        H5P_DEFAULT, H5P_DEFAULT);
            if (d < 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                  bufs[s] + v->offset) < 0) {
                fail(err, errlen, "cannot write %s/%s in %s: %s", SECTIONS[s], v->name, label,
                     jt_h5_reason(detail, sizeof detail));
                goto cleanup;
            }
            H5Dclose(d);
            H5Sclose(dspace);
            d = dspace = -1;
            jt_progress();
        }
    }
    if (file_image(f, image, size) != 0) {
        fail(err, errlen, "cannot build checkpoint file %s in memory: %s", label,
             jt_h5_reason(detail, sizeof detail));
        goto cleanup;
    }
    status = JT_OK;
cleanup:
    if (d >= 0) H5Dclose(d);
    if (dspace >= 0) H5Sclose(dspace);
    for (int s = 0; s < 3; s++)
        if (g[s] >= 0) H5Gclose(g[s]);
    if (adam >= 0) H5Gclose(adam);
    if (state >= 0) H5Gclose(state);
    if (f >= 0) H5Fclose(f); /* in memory: nothing left to fail */
    if (fapl >= 0) H5Pclose(fapl);
    free(sorted);
    return status;
}

/* Writes image (size bytes) to the new file tmp in chunks of WRITE_CHUNK, calling jt_progress()
 * after each, then fsyncs and closes it. 0, or -1 with errno set and *what naming the failed
 * step ("create", "write", "sync"); tmp is removed on failure.
 *
 * TEST-ONLY fault hook: with JTRAIN_TEST_CKPT_CRASH=mid-write the process writes the first half
 * of the file and dies with _exit(9), as a crash or kill mid-write would. Used by
 * tests/unit/test_ckpt.c and the MPI fault test to prove that latest and the previous
 * checkpoint survive. */
static int write_temp(const char *tmp, const void *image, size_t size, const char **what) {
    const char *crash = getenv("JTRAIN_TEST_CKPT_CRASH");
    size_t crash_at = crash && strcmp(crash, "mid-write") == 0 ? size / 2 : SIZE_MAX;
    *what = "create";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return -1;
    const char *b = image;
    size_t done = 0;
    *what = "write";
    while (done < size) {
        size_t n = size - done < WRITE_CHUNK ? size - done : WRITE_CHUNK;
        if (done < crash_at && done + n > crash_at) n = crash_at - done;
        ssize_t w = write(fd, b + done, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;
            goto failed;
        }
        done += (size_t)w;
        if (done == crash_at) _exit(9);
        jt_progress();
    }
    *what = "sync";
    if (fsync(fd) != 0) goto failed;
    *what = "write"; /* close reports delayed write errors (NFS) */
    if (close(fd) != 0) {
        fd = -1;
        goto failed;
    }
    return 0;
failed:;
    int saved = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    errno = saved;
    return -1;
}

jt_status jt_ckpt_save(const char *dir, const jt_params *p, const jt_ckpt_state *st, long keep,
                       char *path_out, size_t path_len, char *err, size_t errlen) {
    JT_CHECK(dir && p && st && p->w && p->m && p->v, "jt_ckpt_save: bad arguments");
    JT_CHECK(st->n_run <= JT_CKPT_MAX_RUN && (st->n_run == 0 || st->run),
             "jt_ckpt_save: a run state of %zu values (at most %d)", st->n_run, JT_CKPT_MAX_RUN);
    jt_h5_quiet();
    if (path_out && path_len) path_out[0] = '\0';
    unsigned long long step = (unsigned long long)st->step;
    for (size_t i = 0; i < st->n_run; i++)
        if (!isfinite(st->run[i])) {
            fail(err, errlen, "checkpoint at step %llu not written: state/run[%zu] is %s; the "
                 "previous latest stays", step, i,
                 isnan(st->run[i]) ? "nan" : st->run[i] > 0 ? "inf" : "-inf");
            return JT_ENUMERIC;
        }
    const float *bufs[3] = {p->w, p->m, p->v};
    for (int s = 0; s < 3; s++) {
        size_t view, index;
        if (find_nonfinite(p, bufs[s], &view, &index)) {
            const jt_view *v = &p->views[view];
            fail(err, errlen, "checkpoint at step %llu not written: %s/%s[%zu] is %s; the "
                 "previous latest stays", step, SECTIONS[s], v->name, index,
                 nonfinite_name(bufs[s][v->offset + index]));
            return JT_ENUMERIC;
        }
    }
    char name[64], tmp[JT_CKPT_PATH_MAX], dst[JT_CKPT_PATH_MAX];
    snprintf(name, sizeof name, "ckpt-%08llu.h5", step);
    if (strlen(dir) + sizeof name + 300 >= JT_CKPT_PATH_MAX)
        return fail(err, errlen, "checkpoint directory path too long: %s", dir);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    jt_ckpt_temp_path(tmp, sizeof tmp, dir, name);
    if (jt_mkdir_p(dir) != 0)
        return fail(err, errlen, "cannot create checkpoint directory %s: %s", dir,
                    strerror(errno));
    void *image;
    size_t size;
    jt_status status = build_image(tmp, p, st, &image, &size, err, errlen);
    if (status != JT_OK) return status;
    status = jt_ckpt_make_room(dir, step, keep, size, err, errlen);
    for (int attempt = 0; status == JT_OK; attempt++) {
        const char *what;
        if (write_temp(tmp, image, size, &what) == 0) break;
        int e = errno;
        /* statvfs may have promised room the write did not find (quotas, network and
         * copy-on-write file systems, another writer): prune what keep allows, retry once. */
        if ((e == ENOSPC || e == EDQUOT) && attempt == 0 && jt_ckpt_prune(dir, step, keep) > 0)
            continue;
        char why[96] = "";
        if ((e == ENOSPC || e == EDQUOT) && keep <= 0)
            snprintf(why, sizeof why, " (keep %ld keeps every checkpoint: none may be removed)",
                     keep);
        status = fail(err, errlen, "checkpoint at step %llu not written: cannot %s %s: %s%s",
                      step, what, tmp, strerror(e), why);
    }
    free(image);
    if (status != JT_OK) return status;
    if (rename(tmp, dst) != 0) {
        status = fail(err, errlen, "cannot rename %s to %s: %s", tmp, dst, strerror(errno));
        unlink(tmp);
        return status;
    }
    if (jt_ckpt_fsync_dir(dir) != 0)
        return fail(err, errlen, "cannot sync directory %s: %s", dir, strerror(errno));
    status = jt_ckpt_write_latest(dir, name, err, errlen);
    if (status != JT_OK) return status;
    jt_ckpt_prune(dir, step, keep);
    jt_ckpt_clean_stale(dir);
    if (path_out && path_len) snprintf(path_out, path_len, "%s", dst);
    return JT_OK;
}

/* ---------- load ---------- */

int jt_ckpt_is_hdf5(const char *path) {
    jt_h5_quiet();
    return H5Fis_hdf5(path) > 0;
}

/* Opens path read-only after checking that it is a jtrain checkpoint of a known version. */
static hid_t open_checkpoint(const char *path, char *err, size_t errlen) {
    char detail[512], why[512];
    struct stat sb;
    const char *bad = NULL;
    if (stat(path, &sb) != 0)
        bad = strerror(errno);
    else if (!S_ISREG(sb.st_mode))
        bad = "not a regular file";
    else if (H5Fis_hdf5(path) <= 0)
        bad = "not an HDF5 file";
    if (bad) {
        fail(err, errlen, "checkpoint %s: %s", path, bad);
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        fail(err, errlen, "checkpoint %s: cannot open: %s", path,
             jt_h5_reason(detail, sizeof detail));
        return -1;
    }
    char *format = NULL;
    int64_t version = 0;
    int r = jt_h5_attr_string(f, "jtrain_format", &format, why, sizeof why);
    if (r < 0) {
        fail(err, errlen, "checkpoint %s: root attribute jtrain_format %s", path, why);
    } else if (r == 0) {
        fail(err, errlen, "checkpoint %s: not a jtrain checkpoint (no root attribute "
             "jtrain_format)", path);
    } else if (strcmp(format, CKPT_FORMAT) != 0) {
        fail(err, errlen, "checkpoint %s: jtrain_format is '%.40s', expected '%s'", path, format,
             CKPT_FORMAT);
    } else if ((r = jt_h5_attr_i64(f, "version", INT32_MIN, INT32_MAX, &version, why,
                                   sizeof why)) <= 0) {
        fail(err, errlen, "checkpoint %s: root attribute version %s", path,
             r < 0 ? why : "is missing");
    } else if (version != CKPT_VERSION) {
        fail(err, errlen, "checkpoint %s: format version %lld, this jtrain reads version %d", path,
             (long long)version, CKPT_VERSION);
    } else {
        free(format);
        return f;
    }
    free(format);
    H5Fclose(f);
    return -1;
}

/* Reads integer attribute name of obj (at where, "root" or "/state") into *out. */
static jt_status read_u64(hid_t obj, const char *path, const char *where, const char *name,
                          uint64_t *out, char *err, size_t errlen) {
    char why[512];
    int r = jt_h5_attr_u64(obj, name, out, why, sizeof why);
    if (r == 1) return JT_OK;
    return fail(err, errlen, "checkpoint %s: %s attribute %s %s", path, where, name,
                r < 0 ? why : "is missing");
}

/* Reads /state/run, if the file has one, into st->run and st->n_run (absent: NULL, 0): a 1-D
 * float data set of at most JT_CKPT_MAX_RUN finite values. The root checksum covers it. */
static jt_status read_run(hid_t f, const char *path, jt_ckpt_state *st, char *err,
                          size_t errlen) {
    jt_status status = JT_ECKPT;
    char detail[512];
    hid_t g = -1, d = -1;
    st->run = NULL;
    st->n_run = 0;
    htri_t has_state = H5Lexists(f, "state", H5P_DEFAULT);
    if (has_state <= 0) return JT_OK; /* read_state_from reports the missing /state */
    g = H5Gopen2(f, "state", H5P_DEFAULT);
    if (g < 0) return JT_OK; /* likewise */
    htri_t exists = H5Lexists(g, "run", H5P_DEFAULT);
    if (exists < 0) {
        fail(err, errlen, "checkpoint %s: /state/run cannot be looked up: %s", path,
             jt_h5_reason(detail, sizeof detail));
        goto cleanup;
    }
    if (exists == 0) {
        status = JT_OK;
        goto cleanup;
    }
    d = H5Dopen2(g, "run", H5P_DEFAULT);
    if (d < 0) {
        fail(err, errlen, "checkpoint %s: /state/run is not a data set", path);
        goto cleanup;
    }
    jt_h5_dset_info info;
    if (jt_h5_dset_info_get(d, &info, detail, sizeof detail) != 0) {
        fail(err, errlen, "checkpoint %s: /state/run %s", path, detail);
        goto cleanup;
    }
    if (info.cls != H5T_FLOAT) {
        fail(err, errlen, "checkpoint %s: /state/run is %s, expected float64 values", path,
             info.type);
        goto cleanup;
    }
    if (info.rank != 1) {
        fail(err, errlen, "checkpoint %s: /state/run has shape %s, expected a 1-D list of "
             "values", path, info.shape);
        goto cleanup;
    }
    if (info.dims[0] > JT_CKPT_MAX_RUN) {
        fail(err, errlen, "checkpoint %s: /state/run holds %llu values, at most %d are allowed",
             path, (unsigned long long)info.dims[0], JT_CKPT_MAX_RUN);
        goto cleanup;
    }
    if (jt_h5_dset_check_storage(d, detail, sizeof detail) != 0) {
        fail(err, errlen, "checkpoint %s: /state/run %s", path, detail);
        goto cleanup;
    }
    size_t n = (size_t)info.dims[0];
    if (n > 0) {
        st->run = jt_xcalloc(n, sizeof *st->run);
        if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, st->run) < 0) {
            fail(err, errlen, "checkpoint %s: cannot read /state/run: %s", path,
                 jt_h5_reason(detail, sizeof detail));
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++)
            if (!isfinite(st->run[i])) {
                fail(err, errlen, "checkpoint %s: /state/run[%zu] is %s (a checkpoint must hold "
                     "finite values)", path, i,
                     isnan(st->run[i]) ? "nan" : st->run[i] > 0 ? "inf" : "-inf");
                goto cleanup;
            }
    }
    st->n_run = n;
    status = JT_OK;
cleanup:
    if (status != JT_OK) {
        free(st->run);
        st->run = NULL;
        st->n_run = 0;
    }
    if (d >= 0) H5Dclose(d);
    if (g >= 0) H5Gclose(g);
    return status;
}

/* Reads and checks the root attributes, /state (with /state/run) and /adam's t into st
 * (config_text and run owned). */
static jt_status read_state_from(hid_t f, const char *path, jt_ckpt_state *st, char *err,
                                 size_t errlen) {
    static const char *const names[5] = {"step", "epoch", "epoch_step", "adam_t", "seed"};
    uint64_t *fields[5] = {&st->step, &st->epoch, &st->epoch_step, &st->adam_t, &st->seed};
    char why[512];
    memset(st, 0, sizeof *st);
    for (int i = 0; i < 5; i++)
        if (read_u64(f, path, "root", names[i], fields[i], err, errlen) != JT_OK) return JT_ECKPT;
    int r = jt_h5_attr_i64(f, "world", 1, INT64_MAX, &st->world, why, sizeof why);
    if (r <= 0)
        return fail(err, errlen, "checkpoint %s: root attribute world %s", path,
                    r < 0 ? why : "is missing");
    uint64_t stored;
    if (read_u64(f, path, "root", "checksum", &stored, err, errlen) != JT_OK) return JT_ECKPT;
    r = jt_h5_attr_string(f, "config", &st->config_text, why, sizeof why);
    if (r <= 0)
        return fail(err, errlen, "checkpoint %s: root attribute config %s", path,
                    r < 0 ? why : "is missing");
    if (read_run(f, path, st, err, errlen) != JT_OK ||
        read_layout(f, path, st, err, errlen) != JT_OK) {
        jt_ckpt_state_free(st);
        return JT_ECKPT;
    }
    uint64_t computed = state_checksum(st);
    if (computed != stored) {
        jt_ckpt_state_free(st);
        return fail(err, errlen, "checkpoint %s: the checksum of the root attributes does not "
                    "match (stored %016" PRIx64 ", computed %016" PRIx64 "): the file is corrupt",
                    path, stored, computed);
    }
    /* /state and /adam repeat numbers the root checksum covers; they must agree. */
    static const char *const where[4][2] = {
        {"state", "epoch"}, {"state", "epoch_step"}, {"state", "seed"}, {"adam", "t"}};
    const uint64_t want[4] = {st->epoch, st->epoch_step, st->seed, st->adam_t};
    jt_status status = JT_OK;
    for (int i = 0; i < 4 && status == JT_OK; i++) {
        uint64_t got = 0;
        hid_t g = H5Gopen2(f, where[i][0], H5P_DEFAULT);
        if (g < 0 || jt_h5_attr_u64(g, where[i][1], &got, why, sizeof why) != 1 ||
            got != want[i])
            status = fail(err, errlen, "checkpoint %s: /%s attribute %s is missing or disagrees "
                          "with the root attributes", path, where[i][0], where[i][1]);
        if (g >= 0) H5Gclose(g);
    }
    if (status != JT_OK) jt_ckpt_state_free(st);
    return status;
}

static jt_status read_state_impl(const char *path, jt_ckpt_state *st, char *err,
                                 size_t errlen) {
    hid_t f = open_checkpoint(path, err, errlen);
    if (f < 0) return JT_ECKPT;
    jt_ckpt_state tmp;
    jt_status status = read_state_from(f, path, &tmp, err, errlen);
    H5Fclose(f);
    if (status == JT_OK) *st = tmp;
    return status;
}

/* Checks one dataset against view v and reads it into dst (v->size floats). */
static jt_status read_view(hid_t g, const char *path, const char *sec, const jt_view *v,
                           float *dst, char *err, size_t errlen) {
    jt_status status = JT_ECKPT;
    char detail[512], fshape[160], mshape[160];
    hid_t d = -1;
    htri_t exists = H5Lexists(g, v->name, H5P_DEFAULT);
    if (exists <= 0) {
        fail(err, errlen, "checkpoint %s: %s/%s is missing (the model has it; was the checkpoint "
             "written with another config?)", path, sec, v->name);
        goto cleanup;
    }
    d = H5Dopen2(g, v->name, H5P_DEFAULT);
    if (d < 0) {
        fail(err, errlen, "checkpoint %s: %s/%s is not a data set", path, sec, v->name);
        goto cleanup;
    }
    jt_h5_dset_info info;
    if (jt_h5_dset_info_get(d, &info, detail, sizeof detail) != 0) {
        fail(err, errlen, "checkpoint %s: %s/%s %s", path, sec, v->name, detail);
        goto cleanup;
    }
    if (info.cls != H5T_FLOAT) {
        fail(err, errlen, "checkpoint %s: %s/%s is %s, expected a float array", path, sec,
             v->name, info.type);
        goto cleanup;
    }
    int same = info.rank == v->ndim;
    hsize_t mdims[JT_VIEW_MAX_DIMS];
    for (int k = 0; k < v->ndim; k++) mdims[k] = (hsize_t)v->shape[k];
    for (int k = 0; same && k < info.rank; k++) same = info.dims[k] == mdims[k];
    if (!same) {
        jt_h5_dims_str(info.dims, info.rank, "()", fshape, sizeof fshape);
        jt_h5_dims_str(mdims, v->ndim, "()", mshape, sizeof mshape);
        fail(err, errlen, "checkpoint %s: %s/%s has shape %s, the model has %s", path, sec,
             v->name, fshape, mshape);
        goto cleanup;
    }
    if (jt_h5_dset_check_storage(d, detail, sizeof detail) != 0) {
        fail(err, errlen, "checkpoint %s: %s/%s %s", path, sec, v->name, detail);
        goto cleanup;
    }
    if (v->size > 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        fail(err, errlen, "checkpoint %s: cannot read %s/%s: %s", path, sec, v->name,
             jt_h5_reason(detail, sizeof detail));
        goto cleanup;
    }
    status = JT_OK;
cleanup:
    if (d >= 0) H5Dclose(d);
    return status;
}

/* Reads section sec (e.g. "adam/m") into buf (laid out like p's buffers) and checks that it
 * holds exactly p's views with p's shapes and that its checksum matches. */
static jt_status read_section(hid_t f, const char *path, const char *sec, const jt_params *p,
                              const jt_view **sorted, float *buf, char *err, size_t errlen) {
    jt_status status = JT_ECKPT;
    char *link = NULL;
    hid_t g = H5Gopen2(f, sec, H5P_DEFAULT);
    if (g < 0) {
        fail(err, errlen, "checkpoint %s: group /%s is missing", path, sec);
        goto cleanup;
    }
    uint64_t stored;
    char where[32];
    snprintf(where, sizeof where, "/%s", sec);
    if (read_u64(g, path, where, "checksum", &stored, err, errlen) != JT_OK) goto cleanup;
    for (size_t i = 0; i < p->n_views; i++) {
        if (read_view(g, path, sec, &p->views[i], buf + p->views[i].offset, err, errlen) != JT_OK)
            goto cleanup;
        jt_progress();
    }
    H5G_info_t info;
    if (H5Gget_info(g, &info) < 0) {
        fail(err, errlen, "checkpoint %s: cannot list /%s", path, sec);
        goto cleanup;
    }
    for (hsize_t i = 0; i < info.nlinks; i++) {
        ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0,
                                         H5P_DEFAULT);
        if (len < 0 || len > 4096) {
            fail(err, errlen, "checkpoint %s: cannot list /%s", path, sec);
            goto cleanup;
        }
        link = jt_xcalloc((size_t)len + 1, 1);
        H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, link, (size_t)len + 1,
                           H5P_DEFAULT);
        if (jt_params_find(p, link) < 0) {
            fail(err, errlen, "checkpoint %s: %s/%.200s is not in the model (was the checkpoint "
                 "written with another config?)", path, sec, link);
            goto cleanup;
        }
        free(link);
        link = NULL;
    }
    uint64_t computed = section_checksum(p, sorted, buf);
    if (computed != stored) {
        fail(err, errlen, "checkpoint %s: the checksum of /%s does not match its data (stored "
             "%016" PRIx64 ", computed %016" PRIx64 "): the file is corrupt", path, sec, stored,
             computed);
        goto cleanup;
    }
    /* jt_ckpt_save refuses these; an older jtrain wrote them with a valid checksum. */
    size_t view, index;
    if (find_nonfinite(p, buf, &view, &index)) {
        const jt_view *v = &p->views[view];
        fail(err, errlen, "checkpoint %s: %s/%s[%zu] is %s (a checkpoint must hold finite "
             "values; written by an older jtrain from a diverged run?)", path, sec, v->name,
             index, nonfinite_name(buf[v->offset + index]));
        goto cleanup;
    }
    status = JT_OK;
cleanup:
    free(link);
    if (g >= 0) H5Gclose(g);
    return status;
}

/* Reads and checks everything of the checkpoint at path: *st, and bufs[0..2] (params, adam/m,
 * adam/v; p->total floats each, laid out like p's buffers, allocated here). On failure nothing
 * is left allocated. */
static jt_status load_checked(const char *path, const jt_params *p, jt_ckpt_state *st,
                              float *bufs[3], char *err, size_t errlen) {
    jt_status status = JT_ECKPT;
    jt_ckpt_state tmp = {0};
    const jt_view **sorted = NULL;
    for (int s = 0; s < 3; s++) bufs[s] = NULL;
    hid_t f = open_checkpoint(path, err, errlen);
    if (f < 0) goto cleanup;
    if (read_state_from(f, path, &tmp, err, errlen) != JT_OK) goto cleanup;
    sorted = sorted_views(p);
    for (int s = 0; s < 3; s++) {
        bufs[s] = jt_alloc_floats(p->total);
        if (read_section(f, path, SECTIONS[s], p, sorted, bufs[s], err, errlen) != JT_OK)
            goto cleanup;
    }
    *st = tmp;
    memset(&tmp, 0, sizeof tmp); /* *st owns its strings and arrays now */
    status = JT_OK;
cleanup:
    jt_ckpt_state_free(&tmp);
    if (status != JT_OK)
        for (int s = 0; s < 3; s++) {
            jt_free_aligned(bufs[s]);
            bufs[s] = NULL;
        }
    free(sorted);
    if (f >= 0) H5Fclose(f);
    return status;
}

/* Everything checked: only now touch the model (its views; p->g and the padding stay). */
static void apply_views(jt_params *p, float *bufs[3]) {
    float *dsts[3] = {p->w, p->m, p->v};
    for (int s = 0; s < 3; s++)
        for (size_t i = 0; i < p->n_views; i++)
            memcpy(dsts[s] + p->views[i].offset, bufs[s] + p->views[i].offset,
                   p->views[i].size * sizeof(float));
}

/* ---------- the isolated reader ----------
 * A checkpoint is untrusted input (a user's --resume or eval file): it is read in a forked
 * child (h5util.h, jt_h5_isolated), which sends the checked state (and the views' values) back;
 * a file that crashes libhdf5 is a checkpoint error, not a dead rank, and this process never
 * calls HDF5 on it. */

typedef struct {
    const char *path;
    const jt_params *p; /* NULL: the state only */
    jt_ckpt_state st;   /* parent: received */
    float *bufs[3];     /* parent: received views, laid out like p's buffers */
} ckpt_iso;

/* The numbers, the config text (length, bytes), the run state (n_run, the doubles). */
static int send_layout(jt_h5_pipe *o, const jt_ckpt_state *st) {
    uint64_t n = st->n_layout;
    return jt_h5_send(o, &n, sizeof n) ||
           (n > 0 && jt_h5_send(o, st->layout, (size_t)n * sizeof *st->layout));
}

static int recv_layout(jt_h5_pipe *in, jt_ckpt_state *st) {
    uint64_t n;
    if (jt_h5_recv(in, &n, sizeof n)) return -1;
    JT_CHECK(n <= JT_CKPT_MAX_ARRAYS, "isolated reader: a layout of %llu arrays",
             (unsigned long long)n);
    if (n == 0) return 0;
    st->layout = jt_xcalloc((size_t)n, sizeof *st->layout);
    st->n_layout = (size_t)n;
    if (jt_h5_recv(in, st->layout, (size_t)n * sizeof *st->layout)) return -1;
    for (size_t i = 0; i < st->n_layout; i++) st->layout[i].name[sizeof st->layout[i].name - 1] = 0;
    return 0;
}

static int send_state(jt_h5_pipe *o, const jt_ckpt_state *st) {
    uint64_t f[6] = {st->step, st->epoch, st->epoch_step, st->adam_t, st->seed,
                     (uint64_t)st->world};
    uint64_t n = strlen(st->config_text), n_run = st->n_run;
    return jt_h5_send(o, f, sizeof f) || jt_h5_send(o, &n, sizeof n) ||
           jt_h5_send(o, st->config_text, (size_t)n) || jt_h5_send(o, &n_run, sizeof n_run) ||
           (n_run > 0 && jt_h5_send(o, st->run, (size_t)n_run * sizeof *st->run)) ||
           send_layout(o, st);
}

static int recv_state(jt_h5_pipe *in, jt_ckpt_state *st) {
    uint64_t f[6], n;
    if (jt_h5_recv(in, f, sizeof f) || jt_h5_recv(in, &n, sizeof n)) return -1;
    JT_CHECK(n <= JT_H5_MAX_STRING, "isolated reader: a config of %llu bytes",
             (unsigned long long)n);
    st->step = f[0];
    st->epoch = f[1];
    st->epoch_step = f[2];
    st->adam_t = f[3];
    st->seed = f[4];
    st->world = (int64_t)f[5];
    st->config_text = jt_xcalloc((size_t)n + 1, 1);
    uint64_t n_run;
    if (jt_h5_recv(in, st->config_text, (size_t)n) || jt_h5_recv(in, &n_run, sizeof n_run))
        return -1;
    JT_CHECK(n_run <= JT_CKPT_MAX_RUN, "isolated reader: a run state of %llu values",
             (unsigned long long)n_run);
    if (n_run > 0) {
        st->run = jt_xcalloc((size_t)n_run, sizeof *st->run);
        st->n_run = (size_t)n_run;
        if (jt_h5_recv(in, st->run, (size_t)n_run * sizeof *st->run)) return -1;
    }
    return recv_layout(in, st);
}

static jt_status ckpt_child(void *arg, jt_h5_pipe *out, char *err, size_t errlen) {
    const ckpt_iso *a = arg;
    jt_ckpt_state st = {0};
    float *bufs[3] = {NULL, NULL, NULL};
    jt_status status = a->p ? load_checked(a->path, a->p, &st, bufs, err, errlen)
                            : read_state_impl(a->path, &st, err, errlen);
    if (status != JT_OK) return status;
    int bad = send_state(out, &st);
    for (int s = 0; s < 3 && a->p && !bad; s++)
        for (size_t i = 0; i < a->p->n_views && !bad; i++)
            bad = jt_h5_send(out, bufs[s] + a->p->views[i].offset,
                             a->p->views[i].size * sizeof(float));
    for (int s = 0; s < 3; s++) jt_free_aligned(bufs[s]);
    jt_ckpt_state_free(&st);
    return bad ? fail(err, errlen, "checkpoint %s: the isolated reader lost its parent", a->path)
               : JT_OK;
}

static void ckpt_iso_free(ckpt_iso *a) {
    jt_ckpt_state_free(&a->st);
    for (int s = 0; s < 3; s++) {
        jt_free_aligned(a->bufs[s]);
        a->bufs[s] = NULL;
    }
}

static jt_status ckpt_parent(void *arg, jt_h5_pipe *in, char *err, size_t errlen) {
    ckpt_iso *a = arg;
    (void)err;
    (void)errlen;
    int bad = recv_state(in, &a->st);
    for (int s = 0; s < 3 && a->p && !bad; s++) {
        a->bufs[s] = jt_alloc_floats(a->p->total);
        for (size_t i = 0; i < a->p->n_views && !bad; i++)
            bad = jt_h5_recv(in, a->bufs[s] + a->p->views[i].offset,
                             a->p->views[i].size * sizeof(float));
    }
    if (!bad) return JT_OK;
    ckpt_iso_free(a);
    return JT_ECKPT;
}

/* "checkpoint PATH", the start of every load message (ckpt_dir.c strips it for warnings). */
static const char *ckpt_label(const char *path, char *buf, size_t len) {
    snprintf(buf, len, "checkpoint %s", path);
    return buf;
}

jt_status jt_ckpt_read_state(const char *path, jt_ckpt_state *st, char *err, size_t errlen) {
    JT_CHECK(path && st, "jt_ckpt_read_state: bad arguments");
    jt_h5_quiet();
    if (!jt_h5_isolation_on()) return read_state_impl(path, st, err, errlen);
    char label[JT_CKPT_PATH_MAX + 16];
    ckpt_iso a = {path, NULL, {0}, {NULL, NULL, NULL}};
    jt_status status = jt_h5_isolated(ckpt_label(path, label, sizeof label), ckpt_child,
                                      ckpt_parent, &a, JT_ECKPT, err, errlen);
    if (status != JT_OK) {
        ckpt_iso_free(&a);
        return status;
    }
    *st = a.st;
    return JT_OK;
}

jt_status jt_ckpt_load(const char *path, jt_params *p, jt_ckpt_state *st, char *err,
                       size_t errlen) {
    JT_CHECK(path && p && st && p->w && p->m && p->v, "jt_ckpt_load: bad arguments");
    jt_h5_quiet();
    float *bufs[3];
    jt_ckpt_state tmp = {0};
    if (!jt_h5_isolation_on()) {
        jt_status status = load_checked(path, p, &tmp, bufs, err, errlen);
        if (status != JT_OK) return status;
        apply_views(p, bufs);
        for (int s = 0; s < 3; s++) jt_free_aligned(bufs[s]);
        *st = tmp;
        return JT_OK;
    }
    char label[JT_CKPT_PATH_MAX + 16];
    ckpt_iso a = {path, p, {0}, {NULL, NULL, NULL}};
    jt_status status = jt_h5_isolated(ckpt_label(path, label, sizeof label), ckpt_child,
                                      ckpt_parent, &a, JT_ECKPT, err, errlen);
    if (status != JT_OK) {
        ckpt_iso_free(&a);
        return status;
    }
    apply_views(p, a.bufs);
    *st = a.st;
    memset(&a.st, 0, sizeof a.st); /* *st owns its strings and arrays now */
    ckpt_iso_free(&a);
    return JT_OK;
}

void jt_ckpt_state_free(jt_ckpt_state *st) {
    if (!st) return;
    free(st->config_text);
    st->config_text = NULL;
    free(st->run);
    st->run = NULL;
    st->n_run = 0;
    free(st->layout);
    st->layout = NULL;
    st->n_layout = 0;
}
