/* ckpt.c - checkpoints: one HDF5 file per saved step, written atomically by rank 0 (ckpt.h).
 *
 * Invariants: a file called ckpt-<step>.h5 is always complete (it only appears by rename()
 * after fsync), and `latest` only ever names such a file, so a crash at any point leaves the
 * previous checkpoint intact and loadable. Loading reads and checks everything into temporary
 * buffers first; a rejected checkpoint never changes the model or the caller's state.
 *
 * RNG state: every random stream in jtrain is derived afresh from (seed, purpose, epoch, step,
 * rank, ...) and none is carried from one step to the next, so the seed together with the data
 * position (epoch, epoch_step) IS the complete RNG and data-order state. Storing those three
 * numbers lets a resumed run draw exactly what the saved run would have drawn next. */
#include "jtrain/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#define CKPT_FORMAT "checkpoint"
#define CKPT_VERSION 1
#define CKPT_PATH_MAX 4096
#define STALE_TEMP_SECONDS 3600 /* a writer's temp file this old belongs to a crashed process */

static const char *const SECTIONS[3] = {"params", "adam/m", "adam/v"};

/* ---------- small helpers ---------- */

__attribute__((format(printf, 3, 4)))
static jt_status fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return JT_ECKPT;
}

/* jtrain reports HDF5 failures itself (DESIGN.md); idempotent. */
static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct {
    char *buf;
    size_t len;
} h5_detail_buf;

static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    h5_detail_buf *d = data;
    if (n != 0 || !e->desc) return 0;
    /* The innermost entry of a failed read/write carries "... error message = 'strerror' ...". */
    const char *m = strstr(e->desc, "error message = '");
    if (m) {
        m += strlen("error message = '");
        const char *q = strchr(m, '\'');
        int k = q ? (int)(q - m) : (int)strlen(m);
        snprintf(d->buf, d->len, "%.*s", k, m);
    } else {
        snprintf(d->buf, d->len, "%s", e->desc);
    }
    return 0;
}

/* The innermost message of HDF5's error stack (call right after the failing call: the next
 * API call clears the stack); errno's text when HDF5 recorded nothing. */
static const char *h5_detail(char *buf, size_t len) {
    int saved = errno;
    h5_detail_buf d = {buf, len};
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk_cb, &d);
    if (!buf[0]) snprintf(buf, len, "%s", saved ? strerror(saved) : "HDF5 error");
    return buf;
}

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

/* Root checksum (ckpt.h) over the state numbers and the config text. */
static uint64_t state_checksum(const jt_ckpt_state *st) {
    char head[512];
    int n = snprintf(head, sizeof head,
                     "world=%" PRId64 "\nstep=%" PRIu64 "\nepoch=%" PRIu64 "\nepoch_step=%" PRIu64
                     "\nadam_t=%" PRIu64 "\nseed=%" PRIu64 "\nconfig=",
                     st->world, st->step, st->epoch, st->epoch_step, st->adam_t, st->seed);
    uint64_t h = fnv1a(FNV_OFFSET, head, (size_t)n);
    const char *c = st->config_text ? st->config_text : "";
    return fnv1a(h, c, strlen(c));
}

/* ---------- attributes ---------- */

static int attr_write(hid_t obj, const char *name, hid_t type, const void *buf) {
    int rc = -1;
    hid_t space = H5Screate(H5S_SCALAR), a = -1;
    if (space < 0) goto cleanup;
    a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, type, buf) < 0) goto cleanup;
    rc = 0;
cleanup:
    if (a >= 0 && H5Aclose(a) < 0) rc = -1;
    if (space >= 0) H5Sclose(space);
    return rc;
}

static int attr_write_u64(hid_t obj, const char *name, uint64_t v) {
    return attr_write(obj, name, H5T_NATIVE_UINT64, &v);
}

/* A variable-length UTF-8 string: h5py reads it as str, h5dump prints it, no size limit. */
static int attr_write_str(hid_t obj, const char *name, const char *s) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    int rc = -1;
    if (H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0)
        rc = attr_write(obj, name, t, &s);
    H5Tclose(t);
    return rc;
}

/* Reads an integer attribute converted to mem_type. 0, or -1 if missing or not an integer. */
static int attr_read_int(hid_t obj, const char *name, hid_t mem_type, void *out) {
    int rc = -1;
    hid_t a = -1, t = -1;
    if (H5Aexists(obj, name) <= 0) return -1;
    a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) goto cleanup;
    t = H5Aget_type(a);
    if (t < 0 || H5Tget_class(t) != H5T_INTEGER) goto cleanup;
    if (H5Aread(a, mem_type, out) < 0) goto cleanup;
    rc = 0;
cleanup:
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}

/* Reads a scalar string attribute (variable or fixed length) into a new string. 0 or -1. */
static int attr_read_str(hid_t obj, const char *name, char **out) {
    int rc = -1;
    hid_t a = -1, ft = -1, mt = -1, space = -1;
    char *vl = NULL;
    *out = NULL;
    if (H5Aexists(obj, name) <= 0) return -1;
    a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) goto cleanup;
    ft = H5Aget_type(a);
    space = H5Aget_space(a);
    if (ft < 0 || space < 0 || H5Tget_class(ft) != H5T_STRING) goto cleanup;
    if (H5Sget_simple_extent_npoints(space) != 1) goto cleanup;
    /* HDF5 does not convert between character sets: read in the file's own. */
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_cset(mt, H5Tget_cset(ft)) < 0) goto cleanup;
    htri_t var = H5Tis_variable_str(ft);
    if (var < 0) goto cleanup;
    if (var) {
        if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &vl) < 0) goto cleanup;
        *out = jt_xstrdup(vl ? vl : "");
    } else {
        size_t n = H5Tget_size(ft);
        if (n == 0 || H5Tset_size(mt, n) < 0) goto cleanup;
        char *s = jt_xcalloc(n + 1, 1);
        if (H5Aread(a, mt, s) < 0) {
            free(s);
            goto cleanup;
        }
        *out = s;
    }
    rc = 0;
cleanup:
    if (vl) H5free_memory(vl);
    if (mt >= 0) H5Tclose(mt);
    if (space >= 0) H5Sclose(space);
    if (ft >= 0) H5Tclose(ft);
    if (a >= 0) H5Aclose(a);
    return rc;
}

/* ---------- files and directories ---------- */

/* mkdir -p: 0, or -1 with errno set. */
static int mkdir_p(const char *dir) {
    char tmp[CKPT_PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0') continue;
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST) return -1;
        tmp[i] = c;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0) return -1;
    if (!S_ISDIR(sb.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* Makes a rename in dir durable. File systems that cannot fsync a directory are not an error. */
static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc != 0 && (saved == EINVAL || saved == ENOTSUP)) rc = 0;
    errno = saved;
    return rc;
}

/* 1 if name is exactly ckpt-<step, at least 8 digits>.h5 as jt_ckpt_save writes it. */
static int parse_ckpt_name(const char *name, unsigned long long *step) {
    if (strncmp(name, "ckpt-", 5) != 0) return 0;
    const char *d = name + 5;
    size_t nd = strspn(d, "0123456789");
    if (nd < 8 || nd > 20 || strcmp(d + nd, ".h5") != 0) return 0;
    errno = 0;
    unsigned long long s = strtoull(d, NULL, 10);
    if (errno) return 0;
    char canon[64];
    snprintf(canon, sizeof canon, "ckpt-%08llu.h5", s);
    if (strcmp(canon, name) != 0) return 0;
    *step = s;
    return 1;
}

static int cmp_step_desc(const void *a, const void *b) {
    unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Removes all but the newest keep checkpoints (by step in the name; the one just written always
 * stays and counts as one) and temp files of crashed writers older than STALE_TEMP_SECONDS.
 * Failures here only warn: the new checkpoint and latest are already in place. */
static void prune(const char *dir, unsigned long long current, long keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    size_t n = 0, cap = 16;
    unsigned long long *steps = jt_xcalloc(cap, sizeof *steps);
    char path[CKPT_PATH_MAX];
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long s;
        if (parse_ckpt_name(e->d_name, &s)) {
            if (s == current) continue;
            if (n == cap) {
                steps = realloc(steps, (cap *= 2) * sizeof *steps);
                JT_CHECK(steps != NULL, "out of memory");
            }
            steps[n++] = s;
        } else if ((strncmp(e->d_name, ".ckpt-", 6) == 0 || strncmp(e->d_name, ".latest", 7) == 0)
                   && strstr(e->d_name, ".tmp.")) {
            struct stat sb;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (stat(path, &sb) == 0 && now - sb.st_mtime > STALE_TEMP_SECONDS) unlink(path);
        }
    }
    closedir(d);
    if (keep > 0) {
        qsort(steps, n, sizeof *steps, cmp_step_desc);
        for (size_t i = (size_t)keep - 1; i < n; i++) {
            snprintf(path, sizeof path, "%s/ckpt-%08llu.h5", dir, steps[i]);
            if (unlink(path) != 0 && errno != ENOENT)
                jt_errorf("warning: cannot remove old checkpoint %s: %s", path, strerror(errno));
        }
    }
    free(steps);
}

/* ---------- save ---------- */

/* write() all of buf to fd, resuming after signals and short writes. 0, or -1 with errno. */
static int write_all(int fd, const void *buf, size_t n) {
    const char *b = buf;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

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

/* Builds the checkpoint (layout in ckpt.h) and writes it to fd, the open temp file tmp.
 *
 * The file is built in memory (HDF5's core driver, no backing store) and written with plain
 * write(). Two reasons: a failed H5Fclose (disk full, quota, EFBIG) leaves HDF5 1.10 with a
 * dangling file that crashes the process at exit, turning exit code 4 into a segfault; and our
 * own write() reports errno exactly. Cost: the file is held in memory twice for a moment. */
static jt_status write_file(const char *tmp, int fd, const jt_params *p,
                            const jt_ckpt_state *st, char *err, size_t errlen) {
    jt_status status = JT_ECKPT;
    char detail[512];
    hid_t fapl = -1, f = -1, g[3] = {-1, -1, -1}, adam = -1, state = -1, dspace = -1, d = -1;
    const jt_view **sorted = sorted_views(p);
    const float *bufs[3] = {p->w, p->m, p->v};
    void *image = NULL;
    size_t image_size = 0;

    /* TEST-ONLY fault hook: with JTRAIN_TEST_CKPT_CRASH=mid-write the process writes about half
     * of the data sets, puts the first half of that partial file into the temp file and dies
     * with _exit(9), as a crash or kill mid-write would. Used by tests/unit/test_ckpt.c and the
     * MPI fault test to prove that latest and the previous checkpoint survive. */
    const char *crash = getenv("JTRAIN_TEST_CKPT_CRASH");
    size_t crash_after = 0, written = 0;
    if (crash && strcmp(crash, "mid-write") == 0)
        crash_after = p->n_views > 1 ? (3 * p->n_views) / 2 : 1;

    /* One allocation increment that holds the data and generous metadata. */
    size_t increment = 3 * p->total * sizeof(float) + 4096 * (3 * p->n_views + 16);
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fapl_core(fapl, increment, 0) >= 0)
        f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f < 0) {
        fail(err, errlen, "cannot create checkpoint file %s: %s", tmp,
             h5_detail(detail, sizeof detail));
        goto cleanup;
    }
    char created[64] = "unknown";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int version = CKPT_VERSION;
    int64_t world = st->world;
    if (attr_write_str(f, "jtrain_format", CKPT_FORMAT) < 0 ||
        attr_write(f, "version", H5T_NATIVE_INT, &version) < 0 ||
        attr_write_str(f, "config", st->config_text ? st->config_text : "") < 0 ||
        attr_write(f, "world", H5T_NATIVE_INT64, &world) < 0 ||
        attr_write_u64(f, "step", st->step) < 0 || attr_write_u64(f, "epoch", st->epoch) < 0 ||
        attr_write_u64(f, "epoch_step", st->epoch_step) < 0 ||
        attr_write_u64(f, "adam_t", st->adam_t) < 0 || attr_write_u64(f, "seed", st->seed) < 0 ||
        attr_write_str(f, "build_version", JT_VERSION) < 0 ||
        attr_write_str(f, "created", created) < 0 ||
        attr_write_u64(f, "checksum", state_checksum(st)) < 0) {
        fail(err, errlen, "cannot write the attributes of %s: %s", tmp,
             h5_detail(detail, sizeof detail));
        goto cleanup;
    }
    state = H5Gcreate2(f, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    adam = H5Gcreate2(f, "adam", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (state < 0 || adam < 0 || attr_write_u64(state, "epoch", st->epoch) < 0 ||
        attr_write_u64(state, "epoch_step", st->epoch_step) < 0 ||
        attr_write_u64(state, "seed", st->seed) < 0 || attr_write_u64(adam, "t", st->adam_t) < 0) {
        fail(err, errlen, "cannot write /state and /adam in %s: %s", tmp,
             h5_detail(detail, sizeof detail));
        goto cleanup;
    }
    for (int s = 0; s < 3; s++) {
        g[s] = H5Gcreate2(f, SECTIONS[s], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g[s] < 0 || attr_write_u64(g[s], "checksum",
                                       section_checksum(p, sorted, bufs[s])) < 0) {
            fail(err, errlen, "cannot write group /%s in %s: %s", SECTIONS[s], tmp,
                 h5_detail(detail, sizeof detail));
            goto cleanup;
        }
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
                fail(err, errlen, "cannot write %s/%s in %s: %s", SECTIONS[s], v->name, tmp,
                     h5_detail(detail, sizeof detail));
                goto cleanup;
            }
            H5Dclose(d);
            H5Sclose(dspace);
            d = dspace = -1;
            if (crash_after && ++written == crash_after) {
                if (file_image(f, &image, &image_size) == 0)
                    (void)write_all(fd, image, image_size / 2);
                _exit(9);
            }
        }
    }
    if (file_image(f, &image, &image_size) != 0) {
        fail(err, errlen, "cannot build checkpoint file %s in memory: %s", tmp,
             h5_detail(detail, sizeof detail));
        goto cleanup;
    }
    if (write_all(fd, image, image_size) != 0) {
        fail(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
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
    free(image);
    free(sorted);
    return status;
}

/* Replaces dir/latest with "name\n": temp file, fsync, rename, fsync dir. */
static jt_status write_latest(const char *dir, const char *name, char *err, size_t errlen) {
    char tmp[CKPT_PATH_MAX], dst[CKPT_PATH_MAX], line[256];
    snprintf(tmp, sizeof tmp, "%s/.latest.tmp.%ld", dir, (long)getpid());
    snprintf(dst, sizeof dst, "%s/latest", dir);
    int n = snprintf(line, sizeof line, "%s\n", name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return fail(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    const char *what = NULL;
    if (write_all(fd, line, (size_t)n) != 0) what = "write";
    else if (fsync(fd) != 0) what = "sync";
    int saved = errno;
    if (close(fd) != 0 && !what) {
        what = "write";
        saved = errno;
    }
    if (!what && rename(tmp, dst) != 0) {
        what = "rename";
        saved = errno;
    }
    if (what) {
        unlink(tmp);
        return fail(err, errlen, "cannot %s %s: %s", what, what[0] == 'r' ? dst : tmp,
                    strerror(saved));
    }
    if (fsync_dir(dir) != 0) return fail(err, errlen, "cannot sync %s: %s", dir, strerror(errno));
    return JT_OK;
}

jt_status jt_ckpt_save(const char *dir, const jt_params *p, const jt_ckpt_state *st, long keep,
                       char *path_out, size_t path_len, char *err, size_t errlen) {
    JT_CHECK(dir && p && st && p->w && p->m && p->v, "jt_ckpt_save: bad arguments");
    h5_quiet();
    if (path_out && path_len) path_out[0] = '\0';
    char name[64], tmp[CKPT_PATH_MAX], dst[CKPT_PATH_MAX];
    snprintf(name, sizeof name, "ckpt-%08llu.h5", (unsigned long long)st->step);
    if (strlen(dir) + sizeof name + 32 >= CKPT_PATH_MAX)
        return fail(err, errlen, "checkpoint directory path too long: %s", dir);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", dir, name, (long)getpid());
    if (mkdir_p(dir) != 0)
        return fail(err, errlen, "cannot create checkpoint directory %s: %s", dir,
                    strerror(errno));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return fail(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    jt_status status = write_file(tmp, fd, p, st, err, errlen);
    if (status == JT_OK && fsync(fd) != 0)
        status = fail(err, errlen, "cannot sync %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && status == JT_OK)
        status = fail(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
    if (status == JT_OK && rename(tmp, dst) != 0)
        status = fail(err, errlen, "cannot rename %s to %s: %s", tmp, dst, strerror(errno));
    if (status != JT_OK) {
        unlink(tmp);
        return status;
    }
    if (fsync_dir(dir) != 0) return fail(err, errlen, "cannot sync %s: %s", dir, strerror(errno));
    status = write_latest(dir, name, err, errlen);
    if (status != JT_OK) return status;
    prune(dir, (unsigned long long)st->step, keep);
    if (path_out && path_len) snprintf(path_out, path_len, "%s", dst);
    return JT_OK;
}

/* ---------- latest ---------- */

jt_status jt_ckpt_latest(const char *dir, char *path_out, size_t path_len, char *err,
                         size_t errlen) {
    JT_CHECK(dir && path_out && path_len, "jt_ckpt_latest: bad arguments");
    path_out[0] = '\0';
    char lp[CKPT_PATH_MAX], buf[256];
    if ((size_t)snprintf(lp, sizeof lp, "%s/latest", dir) >= sizeof lp)
        return fail(err, errlen, "checkpoint directory path too long: %s", dir);
    FILE *fp = fopen(lp, "rb");
    if (!fp) {
        if (errno == ENOENT) return JT_OK; /* no directory or no checkpoint yet */
        return fail(err, errlen, "cannot read %s: %s", lp, strerror(errno));
    }
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    int bad_read = ferror(fp);
    fclose(fp);
    if (bad_read) return fail(err, errlen, "cannot read %s", lp);
    buf[n] = '\0';
    if (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
    unsigned long long step;
    if (strlen(buf) != n || !parse_ckpt_name(buf, &step)) {
        for (size_t i = 0; i < n; i++)
            if (buf[i] < 32 || buf[i] > 126) buf[i] = '?';
        if (n > 60) strcpy(buf + 57, "...");
        return fail(err, errlen,
                    "%s is corrupt: expected a checkpoint file name like ckpt-00000020.h5, "
                    "found '%s'", lp, buf);
    }
    char path[CKPT_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, buf);
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return fail(err, errlen, "%s names %s, which does not exist or is not a file", lp, path);
    if (strlen(path) >= path_len)
        return fail(err, errlen, "checkpoint path too long for the caller's buffer: %s", path);
    snprintf(path_out, path_len, "%s", path);
    return JT_OK;
}

/* ---------- load ---------- */

/* Opens path read-only after checking that it is a jtrain checkpoint of a known version. */
static hid_t open_checkpoint(const char *path, char *err, size_t errlen) {
    char detail[512];
    struct stat sb;
    const char *why = NULL;
    if (stat(path, &sb) != 0)
        why = strerror(errno);
    else if (!S_ISREG(sb.st_mode))
        why = "not a regular file";
    else if (H5Fis_hdf5(path) <= 0)
        why = "not an HDF5 file";
    if (why) {
        fail(err, errlen, "checkpoint %s: %s", path, why);
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        fail(err, errlen, "checkpoint %s: cannot open: %s", path, h5_detail(detail, sizeof detail));
        return -1;
    }
    char *format = NULL;
    int version = 0;
    if (attr_read_str(f, "jtrain_format", &format) != 0) {
        fail(err, errlen, "checkpoint %s: not a jtrain checkpoint (no root attribute "
             "jtrain_format)", path);
    } else if (strcmp(format, CKPT_FORMAT) != 0) {
        fail(err, errlen, "checkpoint %s: jtrain_format is '%.40s', expected '%s'", path, format,
             CKPT_FORMAT);
    } else if (attr_read_int(f, "version", H5T_NATIVE_INT, &version) != 0) {
        fail(err, errlen, "checkpoint %s: root attribute version is missing or not an integer",
             path);
    } else if (version != CKPT_VERSION) {
        fail(err, errlen, "checkpoint %s: format version %d, this jtrain reads version %d", path,
             version, CKPT_VERSION);
    } else {
        free(format);
        return f;
    }
    free(format);
    H5Fclose(f);
    return -1;
}

/* Reads and checks the root attributes, /state and /adam's t into st (config_text owned). */
static jt_status read_state_from(hid_t f, const char *path, jt_ckpt_state *st, char *err,
                                 size_t errlen) {
    static const char *const names[5] = {"step", "epoch", "epoch_step", "adam_t", "seed"};
    uint64_t *fields[5] = {&st->step, &st->epoch, &st->epoch_step, &st->adam_t, &st->seed};
    memset(st, 0, sizeof *st);
    for (int i = 0; i < 5; i++)
        if (attr_read_int(f, names[i], H5T_NATIVE_UINT64, fields[i]) != 0)
            return fail(err, errlen, "checkpoint %s: root attribute %s is missing or not an "
                        "integer", path, names[i]);
    if (attr_read_int(f, "world", H5T_NATIVE_INT64, &st->world) != 0)
        return fail(err, errlen, "checkpoint %s: root attribute world is missing or not an "
                    "integer", path);
    uint64_t stored;
    if (attr_read_int(f, "checksum", H5T_NATIVE_UINT64, &stored) != 0)
        return fail(err, errlen, "checkpoint %s: root attribute checksum is missing", path);
    if (attr_read_str(f, "config", &st->config_text) != 0)
        return fail(err, errlen, "checkpoint %s: root attribute config is missing or not a "
                    "string", path);
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
        if (g < 0 || attr_read_int(g, where[i][1], H5T_NATIVE_UINT64, &got) != 0 ||
            got != want[i])
            status = fail(err, errlen, "checkpoint %s: /%s attribute %s is missing or disagrees "
                          "with the root attributes", path, where[i][0], where[i][1]);
        if (g >= 0) H5Gclose(g);
    }
    if (status != JT_OK) jt_ckpt_state_free(st);
    return status;
}

jt_status jt_ckpt_read_state(const char *path, jt_ckpt_state *st, char *err, size_t errlen) {
    JT_CHECK(path && st, "jt_ckpt_read_state: bad arguments");
    h5_quiet();
    hid_t f = open_checkpoint(path, err, errlen);
    if (f < 0) return JT_ECKPT;
    jt_ckpt_state tmp;
    jt_status status = read_state_from(f, path, &tmp, err, errlen);
    H5Fclose(f);
    if (status == JT_OK) *st = tmp;
    return status;
}

static void format_shape(char *buf, size_t len, int ndim, const size_t *shape) {
    size_t o = (size_t)snprintf(buf, len, "(");
    for (int k = 0; k < ndim && o < len; k++)
        o += (size_t)snprintf(buf + o, len - o, "%s%zu", k ? ", " : "", shape[k]);
    if (o < len) snprintf(buf + o, len - o, ")");
}

/* Checks one dataset against view v and reads it into dst (v->size floats). */
static jt_status read_view(hid_t g, const char *path, const char *sec, const jt_view *v,
                           float *dst, char *err, size_t errlen) {
    jt_status status = JT_ECKPT;
    char detail[512], fshape[160], mshape[160];
    hid_t d = -1, t = -1, space = -1;
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
    t = H5Dget_type(d);
    space = H5Dget_space(d);
    if (t < 0 || space < 0 || H5Tget_class(t) != H5T_FLOAT) {
        fail(err, errlen, "checkpoint %s: %s/%s is not a float array", path, sec, v->name);
        goto cleanup;
    }
    int nd = H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK];
    size_t shape[H5S_MAX_RANK];
    if (nd < 0 || H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        fail(err, errlen, "checkpoint %s: %s/%s has an unreadable shape", path, sec, v->name);
        goto cleanup;
    }
    int same = nd == v->ndim;
    for (int k = 0; k < nd; k++) {
        shape[k] = (size_t)dims[k];
        if (same && shape[k] != v->shape[k]) same = 0;
    }
    if (!same) {
        format_shape(fshape, sizeof fshape, nd, shape);
        format_shape(mshape, sizeof mshape, v->ndim, v->shape);
        fail(err, errlen, "checkpoint %s: %s/%s has shape %s, the model has %s", path, sec,
             v->name, fshape, mshape);
        goto cleanup;
    }
    if (v->size > 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        fail(err, errlen, "checkpoint %s: cannot read %s/%s: %s", path, sec, v->name,
             h5_detail(detail, sizeof detail));
        goto cleanup;
    }
    status = JT_OK;
cleanup:
    if (space >= 0) H5Sclose(space);
    if (t >= 0) H5Tclose(t);
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
    if (attr_read_int(g, "checksum", H5T_NATIVE_UINT64, &stored) != 0) {
        fail(err, errlen, "checkpoint %s: /%s has no checksum attribute", path, sec);
        goto cleanup;
    }
    for (size_t i = 0; i < p->n_views; i++)
        if (read_view(g, path, sec, &p->views[i], buf + p->views[i].offset, err, errlen) != JT_OK)
            goto cleanup;
    H5G_info_t info;
    if (H5Gget_info(g, &info) < 0) {
        fail(err, errlen, "checkpoint %s: cannot list /%s", path, sec);
        goto cleanup;
    }
    for (hsize_t i = 0; i < info.nlinks; i++) {
        ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0,
                                         H5P_DEFAULT);
        if (len < 0) {
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
    status = JT_OK;
cleanup:
    free(link);
    if (g >= 0) H5Gclose(g);
    return status;
}

jt_status jt_ckpt_load(const char *path, jt_params *p, jt_ckpt_state *st, char *err,
                       size_t errlen) {
    JT_CHECK(path && p && st && p->w && p->m && p->v, "jt_ckpt_load: bad arguments");
    h5_quiet();
    jt_status status = JT_ECKPT;
    jt_ckpt_state tmp = {0};
    float *bufs[3] = {NULL, NULL, NULL};
    float *dsts[3] = {p->w, p->m, p->v};
    const jt_view **sorted = NULL;
    hid_t f = open_checkpoint(path, err, errlen);
    if (f < 0) goto cleanup;
    if (read_state_from(f, path, &tmp, err, errlen) != JT_OK) goto cleanup;
    sorted = sorted_views(p);
    for (int s = 0; s < 3; s++) {
        bufs[s] = jt_alloc_floats(p->total);
        if (read_section(f, path, SECTIONS[s], p, sorted, bufs[s], err, errlen) != JT_OK)
            goto cleanup;
    }
    /* Everything checked: only now touch the model. */
    for (int s = 0; s < 3; s++)
        for (size_t i = 0; i < p->n_views; i++)
            memcpy(dsts[s] + p->views[i].offset, bufs[s] + p->views[i].offset,
                   p->views[i].size * sizeof(float));
    *st = tmp;
    tmp.config_text = NULL;
    status = JT_OK;
cleanup:
    jt_ckpt_state_free(&tmp);
    for (int s = 0; s < 3; s++) jt_free_aligned(bufs[s]);
    free(sorted);
    if (f >= 0) H5Fclose(f);
    return status;
}

void jt_ckpt_state_free(jt_ckpt_state *st) {
    if (!st) return;
    free(st->config_text);
    st->config_text = NULL;
}
