/* h5isolate.c - the first walk of an untrusted file in a forked child (jt_h5_isolated,
 * h5util.h), so that a crash, a heap overflow or an endless loop inside libhdf5 becomes an error
 * message instead of a dead or hung rank.
 *
 * Invariants: the child never returns into the caller: it ends with _exit, so it runs no atexit
 * handler, flushes no inherited stdio buffer and makes no MPI call; it allocates only guarded
 * blocks (guard_alloc.h); the parent never waits for it longer than the stall limit after its
 * last beat, and always reaps it. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include "h5isolate.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guard_alloc.h"
#include "jtrain/h5util.h"

#define SCAN_STALL_DEFAULT 20.0 /* seconds without a beat: no HDF5 call of a healthy scan takes
                                   that long (the whole scan takes milliseconds to a second) */

/* In the scan child: a counter in a page shared with the parent, bumped by every h5util
 * function (so between any two HDF5 calls of a scan); the parent kills a child whose counter
 * stands still for too long: stuck in one HDF5 call (a crafted file can make libhdf5 loop). */
static volatile uint64_t *g_beat = NULL;

void jt_h5_beat(void) {
    if (g_beat) __atomic_add_fetch(g_beat, 1, __ATOMIC_RELAXED);
}

static int g_in_scan = 0;

int jt_h5_in_scan(void) { return g_in_scan; }

/* Writes all n bytes (the child's verdict); errors are the parent's to notice. */
static void write_all(int fd, const void *p, size_t n) {
    const char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        b += w;
        n -= (size_t)w;
    }
}

/* The child: a quiet, short-lived copy of this process that runs the scan and reports. */
static void scan_child(int fd, pid_t parent, jt_h5_scan_fn scan, void *arg, size_t errlen) {
    g_in_scan = 1;
    jt_set_abort_handler(NULL); /* an internal error here must not MPI_Abort the job */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* Crash signals kill it quietly (MPI's handler would print a backtrace of the scan). */
    sa.sa_handler = SIG_DFL;
    static const int crash[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof crash / sizeof crash[0]; i++) sigaction(crash[i], &sa, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(111); /* the parent is already gone */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    /* Every block HDF5 allocates from now on is guarded (guard_alloc.h), so a write past one
     * faults here instead of passing unnoticed; HDF5's free lists would hand out unguarded
     * blocks from before the fork, so they go first and keep nothing. */
    H5garbage_collect();
    H5set_free_list_limits(0, 0, 0, 0, 0, 0);
    jt_guard_enable();
    char *err = jt_xcalloc(errlen, 1);
    jt_status st = scan(arg, err, errlen);
    H5garbage_collect();
    jt_guard_check();
    int32_t code = (int32_t)st;
    write_all(fd, &code, sizeof code);
    if (st != JT_OK) write_all(fd, err, strnlen(err, errlen - 1));
    _exit(0);
}

static const char *sig_name(int sig) {
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
    case SIGKILL: return "SIGKILL";
    case SIGTRAP: return "SIGTRAP";
    case SIGSYS: return "SIGSYS";
    default: return "a signal";
    }
}

jt_status jt_h5_isolated(const char *label, jt_h5_scan_fn scan, void *arg, jt_status on_crash,
                         char *err, size_t errlen) {
    const char *iso = getenv("JTRAIN_H5_ISOLATE");
    if (iso && strcmp(iso, "0") == 0) return JT_OK;
    double limit = SCAN_STALL_DEFAULT;
    const char *lim = getenv("JTRAIN_H5_SCAN_TIMEOUT");
    if (lim && (jt_parse_double(lim, &limit) != 0 || !(limit > 0))) limit = SCAN_STALL_DEFAULT;
    size_t cap = errlen > 1 ? errlen : 2;
    int fds[2];
    if (pipe(fds) != 0) return JT_OK;
    volatile uint64_t *shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        close(fds[0]);
        close(fds[1]);
        return JT_OK;
    }
    *shared = 0;
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        munmap((void *)shared, sizeof *shared);
        return JT_OK;
    }
    if (pid == 0) {
        close(fds[0]);
        g_beat = shared;
        scan_child(fds[1], parent, scan, arg, cap);
    }
    close(fds[1]);
    char *msg = jt_xcalloc(cap + 4, 1);
    size_t got = 0;
    int timed_out = 0;
    uint64_t seen = 0;
    double last_beat = jt_now();
    for (;;) {
        struct pollfd p = {fds[0], POLLIN, 0};
        int r = poll(&p, 1, 200);
        jt_progress();
        if (r < 0 && errno != EINTR) break;
        if (r > 0) {
            char tmp[512];
            ssize_t n = read(fds[0], tmp, sizeof tmp);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break; /* EOF: the child is gone */
            size_t k = (size_t)n < cap + 3 - got ? (size_t)n : cap + 3 - got;
            memcpy(msg + got, tmp, k);
            got += k;
        }
        uint64_t now_beat = __atomic_load_n(shared, __ATOMIC_RELAXED);
        double now = jt_now();
        if (now_beat != seen) {
            seen = now_beat;
            last_beat = now;
        } else if (now - last_beat > limit) {
            timed_out = 1;
            kill(pid, SIGKILL);
            break;
        }
    }
    close(fds[0]);
    munmap((void *)shared, sizeof *shared);
    int ws = 0;
    pid_t w;
    while ((w = waitpid(pid, &ws, 0)) < 0 && errno == EINTR) {}
    /* Someone else reaped it (ECHILD): then only the verdict tells. */
    int exited_ok = w < 0 ? 1 : WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
    jt_status st;
    if (timed_out) {
        snprintf(err, errlen, "%s: HDF5 did not finish reading it: stuck for %.0f s in one step "
                 "(the file is damaged or crafted, or its storage is very slow; "
                 "JTRAIN_H5_SCAN_TIMEOUT sets the limit)", label, limit);
        st = on_crash;
    } else if (got >= 4 && exited_ok) {
        int32_t code;
        memcpy(&code, msg, 4);
        st = (jt_status)code;
        if (st != JT_OK && err && errlen) snprintf(err, errlen, "%.*s", (int)(got - 4), msg + 4);
    } else if (w >= 0 && WIFSIGNALED(ws)) {
        int sig = WTERMSIG(ws);
        if (sig == SIGKILL)
            snprintf(err, errlen, "%s: reading it was killed by SIGKILL (out of memory? the "
                     "file may be damaged or crafted)", label);
        else
            snprintf(err, errlen, "%s: HDF5 crashed while reading it (%s): the file is damaged "
                     "or crafted", label, sig_name(sig));
        st = on_crash;
    } else {
        snprintf(err, errlen, "%s: HDF5 failed while reading it (the check ended with exit %d "
                 "and no verdict): the file is damaged or crafted", label,
                 w >= 0 && WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
        st = on_crash;
    }
    free(msg);
    return st;
}
