/* ckpt_dir.c - the checkpoint folder (ckpt.h): file names, the latest and best pointers, resolving
 * the path a user gives, choosing what --resume auto loads, pruning, free space, and the temp files
 * of dead writers. The file format itself is ckpt.c.
 *
 * Invariants: only canonical ckpt-<step>.h5 names, `latest` and `best` are ever treated as
 * checkpoints or pointers to them, and nothing else in a folder is removed; pruning never
 * removes the checkpoint best names; the reading functions (latest, resolve, find_resumable,
 * scan) never modify the folder, so every rank may call them on the same shared folder at once
 * and they all see the same answer; a temp file is removed only when its writer is provably
 * dead (same host, no such process) or it has not been written to for an hour. */
#include "ckpt_dir.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "jtrain/ckpt.h"

#define STALE_TEMP_SECONDS 3600 /* a temp file not written for this long has no live writer */
#define HOST_MAX 256
/* Free space wanted beyond the file: the latest pointer, directory and file-system metadata
 * (extent blocks, about 0.1 % on ext4/XFS), rounded up generously. */
#define SPACE_MARGIN(bytes) ((unsigned long long)(bytes) / 128 + (256ull << 10))
#define MIB (1024.0 * 1024.0)

jt_status jt_ckpt_failf(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return JT_ECKPT;
}
#define fail jt_ckpt_failf

/* ---------- names ---------- */

int jt_ckpt_parse_name(const char *name, unsigned long long *step) {
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

/* This machine's name as it appears in temp file names: [A-Za-z0-9._-] only, never empty. */
static void host_name(char *buf, size_t len) {
    if (gethostname(buf, len) != 0) buf[0] = '\0';
    buf[len - 1] = '\0';
    for (char *c = buf; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '.' && *c != '-' && *c != '_') *c = '_';
    if (!buf[0]) snprintf(buf, len, "unknown");
}

void jt_ckpt_temp_path(char *out, size_t len, const char *dir, const char *name) {
    char host[HOST_MAX];
    host_name(host, sizeof host);
    snprintf(out, len, "%s/.%s.tmp.%s.%ld", dir, name, host, (long)getpid());
}

/* 1 if name is a temp file of jt_ckpt_temp_path (".ckpt-<step>.h5.tmp.<host>.<pid>",
 * ".latest.tmp.<host>.<pid>" or ".best.tmp.<host>.<pid>"; before host names: "...tmp.<pid>"). host
 * receives the writer's host ("" if the name has none), *pid its pid (-1 if unreadable). */
static int parse_temp_name(const char *name, char *host, size_t hostlen, long *pid) {
    unsigned long long step;
    const char *t = strstr(name, ".tmp.");
    if (name[0] != '.' || !t) return 0;
    char base[64];
    size_t nb = (size_t)(t - name - 1);
    if (nb >= sizeof base) return 0;
    memcpy(base, name + 1, nb);
    base[nb] = '\0';
    if (strcmp(base, "latest") != 0 && strcmp(base, "best") != 0 &&
        !jt_ckpt_parse_name(base, &step))
        return 0;
    const char *rest = t + 5, *dot = strrchr(rest, '.');
    const char *p = dot ? dot + 1 : rest;
    size_t nh = dot ? (size_t)(dot - rest) : 0;
    snprintf(host, hostlen, "%.*s", (int)(nh < hostlen ? nh : hostlen - 1), rest);
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    *pid = (*p && !*end && !errno && v > 0) ? v : -1;
    return 1;
}

int jt_ckpt_clean_stale(const char *dir) {
    JT_CHECK(dir, "jt_ckpt_clean_stale: bad arguments");
    DIR *d = opendir(dir);
    if (!d) {
        if (errno != ENOENT)
            jt_errorf("warning: cannot list %s for stale temp files: %s", dir, strerror(errno));
        return 0;
    }
    char me[HOST_MAX], host[HOST_MAX], path[JT_CKPT_PATH_MAX];
    host_name(me, sizeof me);
    time_t now = time(NULL);
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid;
        struct stat sb;
        if (!parse_temp_name(e->d_name, host, sizeof host, &pid)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        /* kill(pid, 0) fails with ESRCH only if no such process exists (EPERM: alive). */
        int dead = host[0] && strcmp(host, me) == 0 && pid > 0 &&
                   (pid > INT_MAX || (kill((pid_t)pid, 0) != 0 && errno == ESRCH));
        if (!dead && now - sb.st_mtime <= STALE_TEMP_SECONDS) continue;
        if (unlink(path) == 0)
            removed++;
        else if (errno != ENOENT)
            jt_errorf("warning: cannot remove stale temp file %s: %s", path, strerror(errno));
    }
    closedir(d);
    return removed;
}

static int cmp_step_desc(const void *a, const void *b) {
    unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The steps of dir's checkpoint files, highest first (*steps: free() it; NULL if none).
 * 0, or -1 with errno set by opendir/readdir (ENOENT: dir does not exist). */
static int list_steps(const char *dir, unsigned long long **steps, size_t *n) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return -1;
    size_t cap = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        unsigned long long s;
        if (!jt_ckpt_parse_name(e->d_name, &s)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            unsigned long long *grown = realloc(*steps, cap * sizeof *grown);
            JT_CHECK(grown != NULL, "out of memory");
            *steps = grown;
        }
        (*steps)[(*n)++] = s;
        errno = 0;
    }
    int saved = errno;
    closedir(d);
    if (saved) {
        free(*steps);
        *steps = NULL;
        *n = 0;
        errno = saved;
        return -1;
    }
    qsort(*steps, *n, sizeof **steps, cmp_step_desc);
    return 0;
}

/* ---------- the latest and best pointers ---------- */

enum { PTR_OK, PTR_MISSING, PTR_CORRUPT, PTR_BAD };

/* Reads the pointer file lp ("ckpt-<step>.h5\n") and writes "<base><name>" into out, after
 * checking that this is a regular file. PTR_MISSING if lp does not exist; PTR_CORRUPT if it
 * holds no such name, PTR_BAD if it cannot be read or names a missing file: why receives the
 * reason, worded to follow lp ("is corrupt: ..."). *step (may be NULL) gets the name's step. */
static int read_pointer(const char *lp, const char *base, char *out, size_t outlen,
                        unsigned long long *step, char *why, size_t whylen) {
    char buf[256];
    unsigned long long s;
    out[0] = '\0';
    FILE *fp = fopen(lp, "rb");
    if (!fp) {
        if (errno == ENOENT) return PTR_MISSING;
        snprintf(why, whylen, "cannot be read: %s", strerror(errno));
        return PTR_BAD;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    int bad_read = ferror(fp), saved = errno;
    fclose(fp);
    if (bad_read) {
        snprintf(why, whylen, "cannot be read: %s", strerror(saved));
        return PTR_BAD;
    }
    buf[n] = '\0';
    if (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
    if (strlen(buf) != n || !jt_ckpt_parse_name(buf, &s)) {
        for (size_t i = 0; i < n; i++)
            if (buf[i] < 32 || buf[i] > 126) buf[i] = '?';
        if (n > 60) strcpy(buf + 57, "...");
        snprintf(why, whylen, "is corrupt: expected a checkpoint file name like "
                 "ckpt-00000020.h5, found '%s'", buf);
        return PTR_CORRUPT;
    }
    char path[JT_CKPT_PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s%s", base, buf) >= sizeof path ||
        strlen(path) >= outlen) {
        snprintf(why, whylen, "names a path too long for jtrain: %s%s", base, buf);
        return PTR_BAD;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(why, whylen, "names %s, which does not exist or is not a file (%s)", path,
                 strerror(errno));
        return PTR_BAD;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(why, whylen, "names %s, which does not exist or is not a file", path);
        return PTR_BAD;
    }
    snprintf(out, outlen, "%s", path);
    if (step) *step = s;
    return PTR_OK;
}

/* "<dir>/" with dir's trailing slashes dropped ("/" stays "/"). 0, or -1 if too long. */
static int dir_base(const char *dir, char *base, size_t len) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n + 2 > len) return -1;
    memcpy(base, dir, n);
    base[n] = '\0';
    if (strcmp(base, "/") != 0) strcat(base, "/");
    return 0;
}

jt_status jt_ckpt_latest(const char *dir, char *path_out, size_t path_len, char *err,
                         size_t errlen) {
    JT_CHECK(dir && path_out && path_len, "jt_ckpt_latest: bad arguments");
    path_out[0] = '\0';
    char base[JT_CKPT_PATH_MAX], lp[JT_CKPT_PATH_MAX], why[1024];
    if (dir_base(dir, base, sizeof base - 8) != 0)
        return fail(err, errlen, "checkpoint directory path too long: %s", dir);
    snprintf(lp, sizeof lp, "%slatest", base);
    int rc = read_pointer(lp, base, path_out, path_len, NULL, why, sizeof why);
    if (rc == PTR_MISSING) return JT_OK; /* no directory or no checkpoint yet */
    if (rc != PTR_OK) return fail(err, errlen, "%s %s", lp, why);
    return JT_OK;
}

/* Replaces dir/<pointer> ("latest" or "best") with "name\n" (temp file, fsync, rename, fsync
 * dir). */
static jt_status write_pointer(const char *dir, const char *pointer, const char *name, char *err,
                               size_t errlen) {
    char tmp[JT_CKPT_PATH_MAX], dst[JT_CKPT_PATH_MAX], line[256];
    jt_ckpt_temp_path(tmp, sizeof tmp, dir, pointer);
    snprintf(dst, sizeof dst, "%s/%s", dir, pointer);
    int n = snprintf(line, sizeof line, "%s\n", name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return fail(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    const char *what = NULL;
    ssize_t w;
    do w = write(fd, line, (size_t)n);
    while (w < 0 && errno == EINTR);
    if (w != n) {
        what = "write";
        if (w >= 0) errno = ENOSPC; /* a short write of a few bytes: the disk is full */
    } else if (fsync(fd) != 0) {
        what = "sync";
    }
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
        if (what[0] == 'r')
            return fail(err, errlen, "cannot rename %s to %s: %s", tmp, dst, strerror(saved));
        return fail(err, errlen, "cannot %s %s: %s", what, tmp, strerror(saved));
    }
    if (jt_ckpt_fsync_dir(dir) != 0)
        return fail(err, errlen, "cannot sync directory %s: %s", dir, strerror(errno));
    return JT_OK;
}

jt_status jt_ckpt_write_latest(const char *dir, const char *name, char *err, size_t errlen) {
    return write_pointer(dir, "latest", name, err, errlen);
}

jt_status jt_ckpt_write_best(const char *dir, const char *name, char *err, size_t errlen) {
    JT_CHECK(dir && name, "jt_ckpt_write_best: bad arguments");
    unsigned long long step;
    char path[JT_CKPT_PATH_MAX];
    struct stat sb;
    if (strlen(dir) + 300 >= JT_CKPT_PATH_MAX)
        return fail(err, errlen, "checkpoint directory path too long: %s", dir);
    if (!jt_ckpt_parse_name(name, &step))
        return fail(err, errlen, "cannot point %s/best at '%.200s': not a checkpoint file name "
                    "like ckpt-00000020.h5", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (stat(path, &sb) != 0)
        return fail(err, errlen, "cannot point %s/best at %s: %s", dir, path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return fail(err, errlen, "cannot point %s/best at %s: not a regular file", dir, path);
    return write_pointer(dir, "best", name, err, errlen);
}

int jt_ckpt_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc != 0 && (saved == EINVAL || saved == ENOTSUP)) rc = 0;
    errno = saved;
    return rc;
}

/* ---------- resolving a user's path ---------- */

jt_status jt_ckpt_resolve(const char *path, char *out, size_t outlen, char *err, size_t errlen) {
    JT_CHECK(path && out && outlen, "jt_ckpt_resolve: bad arguments");
    out[0] = '\0';
    char base[JT_CKPT_PATH_MAX], lp[JT_CKPT_PATH_MAX], why[1024];
    struct stat sb;
    if (stat(path, &sb) != 0) return fail(err, errlen, "checkpoint %s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        if (dir_base(path, base, sizeof base - 8) != 0)
            return fail(err, errlen, "checkpoint path too long: %s", path);
        snprintf(lp, sizeof lp, "%slatest", base);
        int rc = read_pointer(lp, base, out, outlen, NULL, why, sizeof why);
        if (rc == PTR_MISSING)
            return fail(err, errlen, "checkpoint %s: a directory without a latest file (not a "
                        "checkpoint folder, or no checkpoint was written there yet)", path);
        if (rc != PTR_OK) return fail(err, errlen, "checkpoint %s: %s %s", path, lp, why);
        return JT_OK;
    }
    if (!S_ISREG(sb.st_mode))
        return fail(err, errlen, "checkpoint %s: not a regular file or directory", path);
    if (jt_ckpt_is_hdf5(path)) {
        if (strlen(path) >= outlen)
            return fail(err, errlen, "checkpoint path too long for the caller: %s", path);
        snprintf(out, outlen, "%s", path);
        return JT_OK;
    }
    /* Not HDF5: a latest or best pointer (by content: any name), which names a file beside it. */
    const char *slash = strrchr(path, '/');
    size_t nb = slash ? (size_t)(slash - path) + 1 : 0;
    if (nb >= sizeof base) return fail(err, errlen, "checkpoint path too long: %s", path);
    memcpy(base, path, nb);
    base[nb] = '\0';
    int rc = read_pointer(path, base, out, outlen, NULL, why, sizeof why);
    if (rc == PTR_OK) return JT_OK;
    const char *file = slash ? slash + 1 : path;
    if (rc == PTR_CORRUPT && strcmp(file, "latest") != 0 && strcmp(file, "best") != 0)
        return fail(err, errlen, "checkpoint %s: not an HDF5 file (nor a latest or best file "
                    "naming one)", path);
    return fail(err, errlen, "checkpoint %s %s", path, why);
}

/* ---------- --resume auto ---------- */

/* The reason in a jt_ckpt_load error, without its "checkpoint <path>: " prefix. */
static const char *load_reason(const char *err, const char *path) {
    size_t n = strlen(path);
    if (strncmp(err, "checkpoint ", 11) == 0 && strncmp(err + 11, path, n) == 0 &&
        strncmp(err + 11 + n, ": ", 2) == 0)
        return err + 13 + n;
    return err;
}

jt_status jt_ckpt_find_resumable(const char *dir, jt_params *p, jt_ckpt_state *st, int verbose,
                                 char *path_out, size_t path_len, char *err, size_t errlen) {
    JT_CHECK(dir && p && st && path_out && path_len, "jt_ckpt_find_resumable: bad arguments");
    path_out[0] = '\0';
    char base[JT_CKPT_PATH_MAX], lp[JT_CKPT_PATH_MAX], cand[JT_CKPT_PATH_MAX];
    char why[2048] = "", last[JT_CKPT_PATH_MAX + 2048] = "", last_path[JT_CKPT_PATH_MAX] = "";
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (errno == ENOENT) return JT_OK; /* nothing to resume: start fresh */
        return fail(err, errlen, "checkpoint directory %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode))
        return fail(err, errlen, "checkpoint directory %s: %s", dir, strerror(ENOTDIR));
    if (dir_base(dir, base, sizeof base - 32) != 0)
        return fail(err, errlen, "checkpoint directory path too long: %s", dir);

    /* Candidates: latest's target, then every checkpoint file by step, highest first. */
    unsigned long long latest_step = 0, *steps = NULL;
    size_t n = 0, tried = 0;
    snprintf(lp, sizeof lp, "%slatest", base);
    int rc = read_pointer(lp, base, cand, sizeof cand, &latest_step, why, sizeof why);
    int latest_bad = rc == PTR_CORRUPT || rc == PTR_BAD;
    if (latest_bad) {
        snprintf(last, sizeof last, "%s %s", lp, why);
        snprintf(last_path, sizeof last_path, "%s", lp);
        if (verbose)
            jt_errorf("warning: %s %s; looking for the newest intact checkpoint in %s", lp, why,
                      dir);
    }
    if (list_steps(dir, &steps, &n) != 0)
        return fail(err, errlen, "cannot list checkpoint directory %s: %s", dir, strerror(errno));
    jt_status status = JT_ECKPT;
    int found = 0;
    for (size_t i = (rc == PTR_OK) ? 0 : 1; i <= n && !found; i++) {
        if (i > 0) {
            if (rc == PTR_OK && steps[i - 1] == latest_step) continue; /* tried first */
            snprintf(cand, sizeof cand, "%sckpt-%08llu.h5", base, steps[i - 1]);
        }
        tried++;
        if (jt_ckpt_load(cand, p, st, why, sizeof why) == JT_OK) {
            found = 1;
            if (strlen(cand) < path_len) {
                snprintf(path_out, path_len, "%s", cand);
                status = JT_OK;
            } else {
                jt_ckpt_state_free(st);
                fail(err, errlen, "checkpoint path too long for the caller: %s", cand);
            }
            continue;
        }
        snprintf(last, sizeof last, "%s", load_reason(why, cand));
        snprintf(last_path, sizeof last_path, "%s", cand);
        if (verbose) jt_errorf("warning: skipping %s: %s", cand, last);
    }
    free(steps);
    if (found) return status;
    if (tried == 0 && !latest_bad) return JT_OK; /* no checkpoint at all: start fresh */
    if (tried == 0) /* only a broken latest */
        return fail(err, errlen, "cannot resume from %s: %s and there is no checkpoint file "
                    "beside it", dir, last);
    return fail(err, errlen, "cannot resume from %s: none of the %zu checkpoint file%s in it "
                "loads; the last tried, %s: %s", dir, tried, tried == 1 ? "" : "s", last_path,
                last);
}

/* ---------- pruning and free space ---------- */

/* The steps of dir's checkpoints that the save of step would prune (all but step, the keep-1
 * other highest steps and best's target; none if keep <= 0), in the order to remove them:
 * oldest first, latest's target last. free() the result; NULL if none. */
static unsigned long long *prunable(const char *dir, unsigned long long step, long keep,
                                    size_t *n) {
    unsigned long long *steps = NULL, latest_step = 0;
    size_t all = 0;
    *n = 0;
    if (keep <= 0) return NULL;
    if (list_steps(dir, &steps, &all) != 0) {
        if (errno != ENOENT)
            jt_errorf("warning: cannot list %s to remove old checkpoints: %s", dir,
                      strerror(errno));
        return NULL;
    }
    size_t others = 0;
    for (size_t i = 0; i < all; i++)
        if (steps[i] != step) steps[others++] = steps[i];
    size_t first = (size_t)keep - 1 < others ? (size_t)keep - 1 : others;
    *n = others - first;
    unsigned long long *out = jt_xcalloc(*n ? *n : 1, sizeof *out);
    for (size_t i = 0; i < *n; i++) out[i] = steps[others - 1 - i]; /* oldest first */
    free(steps);
    char base[JT_CKPT_PATH_MAX], lp[JT_CKPT_PATH_MAX], target[JT_CKPT_PATH_MAX], why[512];
    unsigned long long best_step;
    if (dir_base(dir, base, sizeof base - 8) == 0) {
        /* best's target is never pruned (a corrupt or dangling best protects nothing) */
        snprintf(lp, sizeof lp, "%sbest", base);
        if (read_pointer(lp, base, target, sizeof target, &best_step, why, sizeof why) == PTR_OK)
            for (size_t i = 0; i < *n; i++)
                if (out[i] == best_step) {
                    memmove(out + i, out + i + 1, (*n - i - 1) * sizeof *out);
                    (*n)--;
                    break;
                }
        snprintf(lp, sizeof lp, "%slatest", base);
        if (read_pointer(lp, base, target, sizeof target, &latest_step, why, sizeof why) ==
            PTR_OK)
            for (size_t i = 0; i + 1 < *n; i++)
                if (out[i] == latest_step) {
                    memmove(out + i, out + i + 1, (*n - i - 1) * sizeof *out);
                    out[*n - 1] = latest_step;
                    break;
                }
    } else {
        *n = 0; /* cannot read best: prune nothing rather than maybe its target */
    }
    if (*n == 0) {
        free(out);
        return NULL;
    }
    return out;
}

static int remove_ckpt(const char *dir, unsigned long long s) {
    char path[JT_CKPT_PATH_MAX];
    snprintf(path, sizeof path, "%s/ckpt-%08llu.h5", dir, s);
    if (unlink(path) == 0 || errno == ENOENT) return 0;
    jt_errorf("warning: cannot remove old checkpoint %s: %s", path, strerror(errno));
    return -1;
}

size_t jt_ckpt_prune(const char *dir, unsigned long long step, long keep) {
    size_t n, removed = 0;
    unsigned long long *steps = prunable(dir, step, keep, &n);
    for (size_t i = 0; i < n; i++)
        if (remove_ckpt(dir, steps[i]) == 0) removed++;
    free(steps);
    return removed;
}

/* Free bytes for this user on dir's file system. 0, or -1 if it cannot be known. */
static int free_bytes(const char *dir, unsigned long long *out) {
    struct statvfs vs;
    if (statvfs(dir, &vs) != 0) return -1;
    *out = (unsigned long long)vs.f_bavail * (unsigned long long)vs.f_frsize;
    return 0;
}

jt_status jt_ckpt_make_room(const char *dir, unsigned long long step, long keep, size_t bytes,
                            char *err, size_t errlen) {
    unsigned long long need = (unsigned long long)bytes + SPACE_MARGIN(bytes), have, freed = 0;
    if (free_bytes(dir, &have) != 0 || have >= need) return JT_OK;
    size_t n, removed = 0;
    unsigned long long *steps = prunable(dir, step, keep, &n);
    /* Remove nothing unless removing all that may go would be enough. */
    for (size_t i = 0; i < n; i++) {
        char path[JT_CKPT_PATH_MAX];
        struct stat sb;
        snprintf(path, sizeof path, "%s/ckpt-%08llu.h5", dir, steps[i]);
        if (stat(path, &sb) == 0) freed += (unsigned long long)sb.st_blocks * 512;
    }
    if (have + freed >= need)
        for (size_t i = 0; i < n && have < need; i++) {
            if (remove_ckpt(dir, steps[i]) == 0) removed++;
            if (free_bytes(dir, &have) != 0) have = need; /* cannot tell any more: try */
        }
    free(steps);
    if (have >= need) return JT_OK;
    char kept[256];
    if (keep <= 0)
        snprintf(kept, sizeof kept, "keep %ld keeps every checkpoint: none may be removed", keep);
    else if (n == 0)
        snprintf(kept, sizeof kept, "keep %ld: no older checkpoint may be removed", keep);
    else if (removed == 0)
        snprintf(kept, sizeof kept, "keep %ld: removing the %zu older checkpoint%s it allows "
                 "would not be enough, so none was", keep, n, n == 1 ? "" : "s");
    else
        snprintf(kept, sizeof kept, "keep %ld: %zu older checkpoint%s removed, still not "
                 "enough", keep, removed, removed == 1 ? "" : "s");
    return fail(err, errlen, "checkpoint at step %llu not written: need %.1f MiB free in %s, "
                "have %.1f MiB (%s)", step, (double)need / MIB, dir, (double)have / MIB, kept);
}

/* ---------- run folders ---------- */

jt_status jt_ckpt_scan(const char *dir, jt_ckpt_dir_info *info, char *err, size_t errlen) {
    JT_CHECK(dir && info, "jt_ckpt_scan: bad arguments");
    memset(info, 0, sizeof *info);
    unsigned long long *steps;
    size_t n;
    if (list_steps(dir, &steps, &n) != 0) {
        if (errno == ENOENT) return JT_OK;
        return fail(err, errlen, "cannot list checkpoint directory %s: %s", dir, strerror(errno));
    }
    info->n_ckpt = n;
    info->newest_step = n ? steps[0] : 0;
    free(steps);
    char lp[JT_CKPT_PATH_MAX];
    struct stat sb;
    snprintf(lp, sizeof lp, "%s/latest", dir);
    info->has_latest = lstat(lp, &sb) == 0;
    return JT_OK;
}

jt_status jt_ckpt_remove_all(const char *dir, char *err, size_t errlen) {
    JT_CHECK(dir, "jt_ckpt_remove_all: bad arguments");
    char path[JT_CKPT_PATH_MAX], host[HOST_MAX];
    /* latest and best first: a failure half-way never leaves them naming a removed file */
    static const char *const fixed[3] = {"latest", "best", "status"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, fixed[i]);
        if (unlink(path) != 0 && errno != ENOENT && errno != ENOTDIR)
            return fail(err, errlen, "cannot remove %s: %s", path, strerror(errno));
    }
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return JT_OK;
        return fail(err, errlen, "cannot list checkpoint directory %s: %s", dir, strerror(errno));
    }
    jt_status status = JT_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long s;
        long pid;
        if (!jt_ckpt_parse_name(e->d_name, &s) &&
            !parse_temp_name(e->d_name, host, sizeof host, &pid))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0 && errno != ENOENT) {
            status = fail(err, errlen, "cannot remove %s: %s", path, strerror(errno));
            break;
        }
    }
    closedir(d);
    return status;
}
