/* common.h - status codes, error reporting and always-on invariant checks.
 *
 * Two kinds of errors (docs/design.md "Rules of the house"): a broken invariant inside jtrain
 * is a JT_CHECK that prints rank, file, line and message and aborts every rank; a failure from
 * outside (file, config, memory, I/O) is a jt_status returned up to main, which maps it to the
 * exit code. */
#ifndef JTRAIN_COMMON_H
#define JTRAIN_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Exit codes of docs/cli.md "Exit codes"; a jt_status is one of them. */
typedef enum {
    JT_OK = 0,
    JT_EUSAGE = 2,   /* usage or config error */
    JT_EDATA = 3,    /* data set error */
    JT_ECKPT = 4,    /* checkpoint error */
    JT_ENUMERIC = 5, /* NaN/Inf in loss or gradients */
    JT_ERANKS = 6,   /* ranks disagree */
    JT_ESTALL = 7,   /* the watchdog ended a job in which a rank stopped taking part */
    JT_ESIGNAL = 75  /* stopped by a signal after writing a checkpoint */
} jt_status;

#define JT_VERSION "0.1.0"
#define JT_NAME_MAX 64

/* Tells the error printers which rank this process is (-1: not known / single process). */
void jt_log_set_rank(int rank, int world);

/* Prints one line "jtrain: [rank R: ]<message>" to stderr. */
void jt_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Installs the function jt_fatal calls to stop every rank (comm sets MPI_Abort). */
void jt_set_abort_handler(void (*handler)(int code));

/* Prints "jtrain: rank R: internal error at FILE:LINE: message" and aborts every rank. */
void jt_fatal(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* Always-on check for invariants inside jtrain (never for outside input). */
#define JT_CHECK(cond, ...)                                                                  \
    do {                                                                                     \
        if (!(cond)) jt_fatal(__FILE__, __LINE__, __VA_ARGS__);                              \
    } while (0)

/* Size arithmetic that saturates at SIZE_MAX instead of wrapping around: a size computed from
 * outside input (config, data set) that overflows stays larger than any memory, so the checks
 * before allocation (jt_layer_setup, jt_model_build) refuse it instead of allocating a wrapped,
 * small size. */
static inline size_t jt_size_mul(size_t a, size_t b) {
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}
static inline size_t jt_size_add(size_t a, size_t b) {
    size_t r;
    return __builtin_add_overflow(a, b, &r) ? SIZE_MAX : r;
}

/* The memory this process can still have, in bytes: MemAvailable (/proc/meminfo), or what its
 * cgroup's limit leaves when that is less (v2 memory.max, v1 memory.limit_in_bytes, minus its
 * usage without reclaimable file pages); *physical: MemTotal, or the cgroup's limit when lower;
 * *source names where they came from, for messages. Both 0 when unknown. Test hook:
 * JTRAIN_TEST_MEM_MB=N reports N MiB for both. */
void jt_memory_info(uint64_t *available, uint64_t *physical, const char **source);

/* calloc that treats exhaustion as fatal (memory is sized once at build time). NULL-safe free. */
void *jt_xcalloc(size_t n, size_t size);
/* 64-byte aligned, zeroed allocation of n floats; fatal on failure. Free with jt_free_aligned. */
float *jt_alloc_floats(size_t n);
/* The bytes jt_alloc_floats(n) takes with its rounding, saturating at SIZE_MAX. */
size_t jt_alloc_floats_bytes(size_t n);
void jt_free_aligned(void *p);
/* strdup that is fatal on exhaustion; NULL in, NULL out. */
char *jt_xstrdup(const char *s);

/* Strict number parsing: the whole string must be a number in [lo, hi]. 0 on success. */
int jt_parse_long(const char *s, long lo, long hi, long *out);
int jt_parse_double(const char *s, double *out);

/* mkdir -p path (mode 0777 & ~umask). 0 on success, else -1 with errno set. */
int jt_mkdir_p(const char *path);

/* Monotonic wall clock in seconds. */
double jt_now(void);

/* Liveness of long local work for the watchdog (watchdog.h): code that may run for a long time
 * without reaching a collective (writing a checkpoint, evaluating, reading data) calls
 * jt_progress() every so often (at least every few seconds of work); a rank whose counter stays
 * still for train.watchdog_s while its peers wait for it counts as stuck. Cheap (one relaxed
 * atomic add), callable from any thread. */
void jt_progress(void);
uint64_t jt_progress_count(void);

#endif
