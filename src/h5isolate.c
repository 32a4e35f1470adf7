/* h5isolate.c - reading an untrusted file in a forked child (jt_h5_isolated, h5util.h), so that
 * a crash, a heap overflow or an endless loop inside libhdf5 becomes an error message instead of
 * a dead or hung rank.
 *
 * The child does all the HDF5 work and streams its result to the parent through a pipe in
 * frames: 'D' <u64 n> <n bytes> for data, then one 'V' <i32 status> <u64 n> <message> for the
 * verdict. The parent never calls HDF5 on the file: a child that survived a damaged file proves
 * nothing about the parent (an out-of-bounds read returns whatever memory lies there, which
 * differs between two processes), so the parent only takes the child's answer.
 *
 * Invariants: the child never returns into the caller: it ends with _exit, so it runs no atexit
 * handler, flushes no inherited stdio buffer and makes no MPI call; it allocates only guarded
 * blocks (guard_alloc.h); the parent waits at most the stall limit after the child's last sign
 * of progress (a beat or a byte), and always reaps it. */
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

#define STALL_DEFAULT 20.0 /* seconds without progress: no HDF5 call of a healthy read takes
                              that long (h5util reads a shard in blocks of whole chunks) */

/* In the child: a counter in a page shared with the parent, bumped by every h5util function
 * (so between any two HDF5 calls); the parent kills a child whose counter stands still and
 * which sends nothing for too long: stuck in one HDF5 call (a crafted file can make libhdf5
 * loop for ever). */
static volatile uint64_t *g_beat = NULL;

void jt_h5_beat(void) {
    if (g_beat) __atomic_add_fetch(g_beat, 1, __ATOMIC_RELAXED);
}

static int g_in_child = 0;

int jt_h5_in_child(void) { return g_in_child; }

/* One end of the stream. The parent's side also keeps the verdict, the stall watch and how the
 * stream ended. */
struct jt_h5_pipe {
    int fd;
    /* parent only */
    pid_t pid;
    volatile uint64_t *beat;
    uint64_t seen;
    double last, limit;
    size_t left;    /* bytes left in the current 'D' frame */
    int ended;      /* 1 verdict read, -1 EOF or error, -2 stalled (child killed) */
    int32_t status; /* the verdict */
    char *msg;      /* the verdict's message */
};

/* ---------- the child's side ---------- */

static int write_all(int fd, const void *p, size_t n) {
    const char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int jt_h5_send(jt_h5_pipe *p, const void *buf, size_t n) {
    uint64_t len = n;
    if (n == 0) return 0;
    jt_h5_beat();
    return write_all(p->fd, "D", 1) || write_all(p->fd, &len, sizeof len) ||
                   write_all(p->fd, buf, n)
               ? -1
               : 0;
}

/* The child: a quiet, short-lived copy of this process that does the work and reports. */
static void child_main(int fd, pid_t parent, jt_h5_child_fn fn, void *arg, size_t errlen) {
    g_in_child = 1;
    jt_set_abort_handler(NULL); /* an internal error here must not MPI_Abort the job */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL); /* a parent that stopped reading: write fails, we exit */
    /* Crash signals kill it quietly (MPI's handler would print a backtrace of the read). */
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
    jt_h5_pipe out = {.fd = fd};
    char *err = jt_xcalloc(errlen, 1);
    jt_status st = fn(arg, &out, err, errlen);
    H5garbage_collect();
    jt_guard_check();
    int32_t code = (int32_t)st;
    uint64_t n = st == JT_OK ? 0 : strnlen(err, errlen - 1);
    if (write_all(fd, "V", 1) || write_all(fd, &code, sizeof code) ||
        write_all(fd, &n, sizeof n) || write_all(fd, err, n))
        _exit(112);
    _exit(0);
}

/* ---------- the parent's side ---------- */

/* Reads exactly n bytes of the raw stream; 0, or -1 (p->ended set) at EOF, on an error, or when
 * the child made no progress for p->limit seconds (then it is killed). */
static int read_raw(jt_h5_pipe *p, void *buf, size_t n) {
    char *b = buf;
    while (n > 0) {
        struct pollfd pf = {p->fd, POLLIN, 0};
        int r = poll(&pf, 1, 200);
        jt_progress();
        double now = jt_now();
        uint64_t beat = __atomic_load_n(p->beat, __ATOMIC_RELAXED);
        if (beat != p->seen) {
            p->seen = beat;
            p->last = now;
        }
        if (r < 0 && errno != EINTR) {
            p->ended = -1;
            return -1;
        }
        if (r > 0) {
            ssize_t got = read(p->fd, b, n);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                p->ended = -1;
                return -1;
            }
            b += got;
            n -= (size_t)got;
            p->last = now;
        } else if (now - p->last > p->limit) {
            kill(p->pid, SIGKILL);
            p->ended = -2;
            return -1;
        }
    }
    return 0;
}

/* Moves to the next 'D' frame; 0, or -1 when the stream has none (verdict read, or ended). */
static int next_frame(jt_h5_pipe *p, size_t errcap) {
    if (p->ended) return -1;
    char tag;
    uint64_t len;
    if (read_raw(p, &tag, 1) != 0) return -1;
    if (tag == 'D') {
        if (read_raw(p, &len, sizeof len) != 0) return -1;
        p->left = (size_t)len;
        return 0;
    }
    int32_t code;
    if (tag != 'V' || read_raw(p, &code, sizeof code) != 0 ||
        read_raw(p, &len, sizeof len) != 0) {
        p->ended = p->ended ? p->ended : -1;
        return -1;
    }
    size_t keep = len < errcap ? (size_t)len : errcap - 1;
    p->msg = jt_xcalloc(keep + 1, 1);
    if (read_raw(p, p->msg, keep) != 0) return -1;
    char sink[256];
    for (uint64_t rest = len - keep; rest > 0;) { /* a longer message than err holds */
        size_t k = rest < sizeof sink ? (size_t)rest : sizeof sink;
        if (read_raw(p, sink, k) != 0) return -1;
        rest -= k;
    }
    p->status = code;
    p->ended = 1;
    return -1;
}

int jt_h5_recv(jt_h5_pipe *p, void *buf, size_t n) {
    char *b = buf;
    while (n > 0) {
        if (p->left == 0 && next_frame(p, 4096) != 0) return -1;
        size_t k = n < p->left ? n : p->left;
        if (read_raw(p, b, k) != 0) return -1;
        b += k;
        n -= k;
        p->left -= k;
    }
    return 0;
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

int jt_h5_isolation_on(void) {
    const char *iso = getenv("JTRAIN_H5_ISOLATE");
    return !(iso && strcmp(iso, "0") == 0);
}

jt_status jt_h5_isolated(const char *label, jt_h5_child_fn child, jt_h5_parent_fn parent,
                         void *arg, jt_status on_crash, char *err, size_t errlen) {
    double limit = STALL_DEFAULT;
    const char *lim = getenv("JTRAIN_H5_SCAN_TIMEOUT");
    if (lim && (jt_parse_double(lim, &limit) != 0 || !(limit > 0))) limit = STALL_DEFAULT;
    size_t cap = errlen > 1 ? errlen : 2;
    int fds[2] = {-1, -1};
    volatile uint64_t *shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t me = getpid(), pid = -1;
    if (shared != MAP_FAILED && pipe(fds) == 0) pid = fork();
    if (pid < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: cannot start the isolated reader: %s (JTRAIN_H5_ISOLATE=0 "
                 "reads the file in the process itself)", label, strerror(e));
        if (fds[0] >= 0) close(fds[0]);
        if (fds[1] >= 0) close(fds[1]);
        if (shared != MAP_FAILED) munmap((void *)shared, sizeof *shared);
        return on_crash;
    }
    if (pid == 0) {
        close(fds[0]);
        *shared = 0;
        g_beat = shared;
        child_main(fds[1], me, child, arg, cap);
    }
    close(fds[1]);
    jt_h5_pipe in = {.fd = fds[0], .pid = pid, .beat = shared, .seen = 0, .last = jt_now(),
                     .limit = limit};
    char *perr = jt_xcalloc(cap, 1);
    jt_status pst = parent(arg, &in, perr, cap);
    /* Whatever the parent took, read on to the verdict (the child may still be writing). */
    char sink[4096];
    while (!in.ended) {
        if (in.left == 0) {
            if (next_frame(&in, cap) != 0) break;
            continue;
        }
        size_t k = in.left < sizeof sink ? in.left : sizeof sink;
        if (read_raw(&in, sink, k) != 0) break;
        in.left -= k;
    }
    close(fds[0]);
    munmap((void *)shared, sizeof *shared);
    int ws = 0;
    pid_t w;
    while ((w = waitpid(pid, &ws, 0)) < 0 && errno == EINTR) {}
    jt_status st;
    if (in.ended == -2) {
        snprintf(err, errlen, "%s: HDF5 did not finish reading it: stuck for %.0f s in one step "
                 "(the file is damaged or crafted, or its storage is very slow; "
                 "JTRAIN_H5_SCAN_TIMEOUT sets the limit)", label, limit);
        st = on_crash;
    } else if (w >= 0 && WIFSIGNALED(ws)) {
        int sig = WTERMSIG(ws);
        if (sig == SIGKILL)
            snprintf(err, errlen, "%s: reading it was killed by SIGKILL (out of memory? the "
                     "file may be damaged or crafted)", label);
        else
            snprintf(err, errlen, "%s: HDF5 crashed while reading it (%s): the file is damaged "
                     "or crafted", label, sig_name(sig));
        st = on_crash;
    } else if (in.ended != 1 || (w >= 0 && !(WIFEXITED(ws) && WEXITSTATUS(ws) == 0))) {
        snprintf(err, errlen, "%s: HDF5 failed while reading it (the reader ended with exit %d "
                 "and no verdict): the file is damaged or crafted", label,
                 w >= 0 && WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
        st = on_crash;
    } else if (in.status != JT_OK) {
        st = (jt_status)in.status;
        snprintf(err, errlen, "%s", in.msg ? in.msg : "");
    } else {
        st = pst;
        if (st != JT_OK) snprintf(err, errlen, "%s", perr);
    }
    free(in.msg);
    free(perr);
    return st;
}
