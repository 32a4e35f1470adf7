/* util.c - error printing, always-on checks, allocation and strict number parsing.
 * The only process-wide state is the rank used to label messages and the abort handler. */
#define _DEFAULT_SOURCE /* madvise(MADV_HUGEPAGE) */
#include "jtrain/common.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

static int g_rank = -1;
static int g_world = 1;
static void (*g_abort)(int) = NULL;

void jt_log_set_rank(int rank, int world) {
    g_rank = rank;
    g_world = world;
}

static void vprint(const char *prefix, const char *fmt, va_list ap) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* One line, whatever a message quotes from a file (names and strings of a crafted data set
     * may hold newlines or terminal escapes). */
    for (char *c = msg; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    if (g_rank >= 0 && g_world > 1)
        fprintf(stderr, "jtrain: rank %d: %s%s\n", g_rank, prefix, msg);
    else
        fprintf(stderr, "jtrain: %s%s\n", prefix, msg);
    fflush(stderr);
}

void jt_errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprint("", fmt, ap);
    va_end(ap);
}

void jt_set_abort_handler(void (*handler)(int code)) { g_abort = handler; }

void jt_fatal(const char *file, int line, const char *fmt, ...) {
    char where[512];
    snprintf(where, sizeof where, "internal error at %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vprint(where, fmt, ap);
    va_end(ap);
    if (g_abort) g_abort(1);
    abort();
}

void *jt_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    JT_CHECK(p != NULL, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

/* Arenas of at least JT_HUGE_MIN bytes (parameter buffers, conv activations) are 2 MiB aligned
 * and asked to live on transparent huge pages: fewer TLB misses on the passes over them. The
 * memset touches every page here, so the steps that follow take no page faults. */
#define JT_HUGE_PAGE ((size_t)2 << 20)
#define JT_HUGE_MIN ((size_t)4 << 20)

float *jt_alloc_floats(size_t n) {
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) / 64 * 64;
    void *p = NULL;
    if (bytes >= JT_HUGE_MIN) {
        bytes = (bytes + JT_HUGE_PAGE - 1) / JT_HUGE_PAGE * JT_HUGE_PAGE;
        if (posix_memalign(&p, JT_HUGE_PAGE, bytes) != 0) p = NULL;
#ifdef MADV_HUGEPAGE
        if (p) (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice only: failure is harmless */
#endif
    } else {
        p = aligned_alloc(64, bytes);
    }
    JT_CHECK(p != NULL, "out of memory allocating %zu floats", n);
    memset(p, 0, bytes);
    return (float *)p;
}

size_t jt_alloc_floats_bytes(size_t n) {
    size_t bytes = jt_size_mul(n ? n : 1, sizeof(float));
    size_t q = bytes >= JT_HUGE_MIN ? JT_HUGE_PAGE : 64;
    return bytes > SIZE_MAX - q ? SIZE_MAX : (bytes + q - 1) / q * q;
}

void jt_free_aligned(void *p) { free(p); }

char *jt_xstrdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = jt_xcalloc(n, 1);
    memcpy(d, s, n);
    return d;
}

int jt_parse_long(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return -1;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int jt_parse_double(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end != '\0' || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* The value of `key` (e.g. "MemAvailable:") in a /proc/meminfo-style file (kB when kb is set),
 * in bytes; 0 when absent. */
static uint64_t read_field(const char *path, const char *key, int kb) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[256];
    uint64_t v = 0;
    size_t len = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, len) == 0) {
            v = strtoull(line + len, NULL, 10) * (kb ? 1024 : 1);
            break;
        }
    fclose(f);
    return v;
}

/* A cgroup file holding one number ("max": none); 0 when absent or unlimited. */
static uint64_t read_number(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[64] = "";
    if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
    fclose(f);
    uint64_t v = strtoull(buf, NULL, 10);
    return v >= (UINT64_C(1) << 60) ? 0 : v; /* v1 writes "no limit" as ~2^63 */
}

void jt_memory_info(uint64_t *available, uint64_t *physical, const char **source) {
    const char *test = getenv("JTRAIN_TEST_MEM_MB");
    if (test && *test) {
        *available = *physical = strtoull(test, NULL, 10) << 20;
        *source = "JTRAIN_TEST_MEM_MB";
        return;
    }
    *available = read_field("/proc/meminfo", "MemAvailable:", 1);
    *physical = read_field("/proc/meminfo", "MemTotal:", 1);
    *source = "MemAvailable / MemTotal";
    /* the cgroup of a container or a SLURM job (seen as the root of its cgroup namespace) */
    static const char *const cg[2][4] = {
        {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat",
         "inactive_file "},
        {"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
         "/sys/fs/cgroup/memory/memory.stat", "total_inactive_file "},
    };
    for (int v = 0; v < 2; v++) {
        uint64_t limit = read_number(cg[v][0]);
        if (!limit) continue;
        uint64_t used = read_number(cg[v][1]), file = read_field(cg[v][2], cg[v][3], 0);
        used = used > file ? used - file : 0;
        uint64_t left = limit > used ? limit - used : 0;
        if (*physical && limit >= *physical && *available && left >= *available) break;
        *physical = *physical && *physical < limit ? *physical : limit;
        *available = *available && *available < left ? *available : left;
        *source = v == 0 ? "cgroup memory.max" : "cgroup memory.limit_in_bytes";
        break;
    }
}

double jt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int jt_mkdir_p(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static _Atomic uint64_t g_progress = 0;

void jt_progress(void) { atomic_fetch_add_explicit(&g_progress, 1, memory_order_relaxed); }

uint64_t jt_progress_count(void) { return atomic_load_explicit(&g_progress, memory_order_relaxed); }
