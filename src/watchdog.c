/* watchdog.c - ends a job in which a rank stopped taking part (watchdog.h).
 *
 * The main thread publishes its state through atomics only (jt_watch_step, jt_watch_enter,
 * jt_watch_leave, and common.h's progress counter). One thread per rank, on the side channel
 * of comm.h (its own communicator), wakes every period (1 s, or limit / 10 if smaller): it
 * receives what arrived, noting the local arrival time; sends its heartbeat (waiting or not, for
 * how long and in what, seconds since its main thread last moved, last completed step) - to
 * rank 0 from every other rank, and from rank 0 to every rank; then judges (watchdog_judge.h).
 * Rank 0 hears from all and judges every rank. A rank that hears only from rank 0 judges rank
 * 0 alone (rank 0 cannot report itself when stopped), later than rank 0 would (rank 1 a grace
 * later, the others two), so that one message is printed, normally by rank 0. A verdict prints
 * one line per culprit and ends the job with MPI_Abort(JT_ESTALL) from this thread.
 *
 * "Moved" means: the progress counter changed, a step completed or a new collective was
 * reached. Waiting is not moving: a rank whose peers wait for it while it waits for nothing and
 * does not move is stuck; one that keeps moving (a long evaluation or checkpoint calling
 * jt_progress) is never blamed.
 *
 * Shutdown (jt_watchdog_stop, collective) drains the side channel so that no request is left for
 * MPI_Finalize: every rank but 0 sends its last heartbeat with the tag BYE to rank 0 and keeps
 * listening; rank 0 answers BYE to all once it heard every BYE and was asked to stop itself.
 * Messages from one sender arrive in order, so a rank that got its BYE(s) has received all that
 * was sent to it; it then waits for its own sends to complete and returns. Until then the
 * thread keeps judging: a rank that waits at the end for a peer that never comes is a waiting
 * rank like any other. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "jtrain/watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jtrain/comm.h"
#include "watchdog_judge.h"

enum { TAG_BEAT = 1, TAG_BYE = 2 };

/* A heartbeat: the sender's state as measured by the sender when it sent it. */
typedef struct {
    double waited; /* seconds in the current collective wait; < 0: not waiting */
    double idle;   /* seconds since its main thread last moved */
    uint64_t step; /* last completed step */
    char what[JT_WATCH_WHAT_MAX];
} beat;

/* Published by the main thread, read by the watchdog thread. */
static _Atomic uint64_t g_step;
static _Atomic uint64_t g_entered;      /* outermost waits entered so far */
static _Atomic(const char *) g_what;    /* the wait in progress, NULL when none */
static _Atomic double g_since;          /* jt_now() when it began */
/* Main thread only. */
static int g_on = 0;   /* the thread runs: enter/leave publish */
static int g_depth = 0; /* nesting of jt_watch_enter */

/* The thread's set-up, written before it starts; stop is under mu. */
static struct {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    jt_comm_side *side;
    double limit, period, grace;
    int rank, world;
} g;

void jt_watch_step(uint64_t completed_step) {
    atomic_store_explicit(&g_step, completed_step, memory_order_relaxed);
}

void jt_watch_enter(const char *what) {
    if (!g_on || g_depth++ > 0) return;
    atomic_store_explicit(&g_since, jt_now(), memory_order_relaxed);
    atomic_fetch_add_explicit(&g_entered, 1, memory_order_relaxed);
    atomic_store_explicit(&g_what, what, memory_order_release); /* after since */
}

void jt_watch_leave(void) {
    if (!g_on) return;
    JT_CHECK(g_depth > 0, "jt_watch_leave without jt_watch_enter");
    if (--g_depth == 0) atomic_store_explicit(&g_what, NULL, memory_order_release);
}

/* ---- the thread ---- */

typedef struct {
    beat *last;       /* per rank: its last heartbeat */
    double *arrived;  /* per rank: when it arrived (jt_now) */
    int *at_end;      /* per rank: its BYE arrived */
    int *bye_sent;    /* per rank: this rank sent it its BYE */
    jt_watch_view *views; /* scratch for judge: one per rank */
    /* this rank's main thread: the last values seen, and since when they have not changed */
    uint64_t seen_progress, seen_step, seen_entered;
    double moved;
} watch;

/* Notes whether the main thread moved since the last look. */
static void look_at_main(watch *w, double now) {
    uint64_t p = jt_progress_count();
    uint64_t s = atomic_load_explicit(&g_step, memory_order_relaxed);
    uint64_t e = atomic_load_explicit(&g_entered, memory_order_relaxed);
    if (p != w->seen_progress || s != w->seen_step || e != w->seen_entered) w->moved = now;
    w->seen_progress = p;
    w->seen_step = s;
    w->seen_entered = e;
}

static beat own_beat(const watch *w, double now) {
    beat b;
    memset(&b, 0, sizeof b);
    const char *what = atomic_load_explicit(&g_what, memory_order_acquire);
    double since = atomic_load_explicit(&g_since, memory_order_relaxed);
    b.waited = what ? now - since : -1.0;
    if (what) snprintf(b.what, sizeof b.what, "%s", what);
    b.idle = now - w->moved;
    b.step = atomic_load_explicit(&g_step, memory_order_relaxed);
    return b;
}

static void receive_all(watch *w, double now) {
    beat b;
    int src, tag;
    size_t bytes;
    while (jt_comm_side_recv(g.side, &src, &tag, &b, sizeof b, &bytes)) {
        JT_CHECK(bytes == sizeof b && src >= 0 && src < g.world, "bad heartbeat from %d", src);
        b.what[JT_WATCH_WHAT_MAX - 1] = '\0';
        w->last[src] = b;
        w->arrived[src] = now;
        if (tag == TAG_BYE) w->at_end[src] = 1;
    }
}

static jt_watch_view view_of(const watch *w, int r, double now) {
    jt_watch_view v;
    memset(&v, 0, sizeof v);
    v.rank = r;
    const beat *b = &w->last[r];
    if (r == g.rank) {
        beat own = own_beat(w, now);
        v.waited = own.waited;
        v.idle = own.idle;
        v.step = own.step;
        snprintf(v.what, sizeof v.what, "%s", own.what);
        return v;
    }
    v.age = now - w->arrived[r];
    v.at_end = w->at_end[r];
    v.waited = b->waited >= 0 ? b->waited + v.age : -1.0;
    v.idle = b->idle + v.age;
    v.step = b->step;
    snprintf(v.what, sizeof v.what, "%s", b->what);
    return v;
}

/* Judges from here; on a verdict prints it and ends the job. */
static void judge(const watch *w, double now) {
    static char report[8192];
    jt_watch_view *v = w->views;
    size_t n = 0;
    int suspect = -1;
    double limit = g.limit;
    if (g.rank == 0) {
        for (int r = 0; r < g.world; r++) v[n++] = view_of(w, r, now);
    } else { /* only rank 0's fate, later than rank 0 itself would judge it */
        v[n++] = view_of(w, 0, now);
        v[n++] = view_of(w, g.rank, now);
        suspect = 0;
        limit += g.rank == 1 ? g.grace : 2 * g.grace;
    }
    jt_watch_verdict verdict = jt_watch_judge(v, n, suspect, limit, report, sizeof report);
    if (verdict == JT_WATCH_FINE) return;
    for (char *line = report, *end; *line; line = end + 1) {
        end = strchr(line, '\n');
        if (!end) break;
        fprintf(stderr, "jtrain: watchdog: %.*s\n", (int)(end - line), line);
    }
    fprintf(stderr, "jtrain: watchdog: ending the job with exit %d (train.watchdog_s is %g)\n",
            (int)JT_ESTALL, g.limit);
    fflush(stderr);
    jt_comm_abort(JT_ESTALL);
}

static void send_beats(watch *w, double now) {
    beat b = own_beat(w, now);
    if (g.rank != 0) {
        jt_comm_side_send(g.side, 0, TAG_BEAT, &b, sizeof b);
        return;
    }
    for (int r = 1; r < g.world; r++)
        if (!w->bye_sent[r]) jt_comm_side_send(g.side, r, TAG_BEAT, &b, sizeof b);
}

/* Shutdown (see the top): 1 once this rank is done with the side channel. */
static int say_goodbye(watch *w, double now) {
    beat b = own_beat(w, now);
    if (g.rank != 0) {
        if (!w->bye_sent[0]) w->bye_sent[0] = jt_comm_side_send(g.side, 0, TAG_BYE, &b, sizeof b);
        return w->bye_sent[0] && w->at_end[0] && jt_comm_side_idle(g.side);
    }
    int all = 1;
    for (int r = 1; r < g.world; r++) all &= w->at_end[r];
    if (!all) return 0;
    for (int r = 1; r < g.world; r++) {
        if (!w->bye_sent[r]) w->bye_sent[r] = jt_comm_side_send(g.side, r, TAG_BYE, &b, sizeof b);
        all &= w->bye_sent[r];
    }
    return all && jt_comm_side_idle(g.side);
}

static struct timespec abs_time(double t) {
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    return ts;
}

static void *watch_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "jt-watchdog"); /* as top -H and gdb show it */
    size_t k = (size_t)g.world;
    watch w;
    memset(&w, 0, sizeof w);
    w.last = jt_xcalloc(k, sizeof *w.last);
    w.arrived = jt_xcalloc(k, sizeof *w.arrived);
    w.at_end = jt_xcalloc(k, sizeof *w.at_end);
    w.bye_sent = jt_xcalloc(k, sizeof *w.bye_sent);
    w.views = jt_xcalloc(k, sizeof *w.views);
    double now = jt_now(), next = now, stop_seen = 0, quiet_until = 0;
    for (size_t r = 0; r < k; r++) w.arrived[r] = now; /* started together (collective) */
    look_at_main(&w, now);
    w.moved = now;
    for (;;) {
        now = jt_now();
        receive_all(&w, now);
        look_at_main(&w, now);
        pthread_mutex_lock(&g.mu);
        int stopping = g.stop;
        pthread_mutex_unlock(&g.mu);
        if (stopping && stop_seen == 0) stop_seen = now;
        if (stopping && say_goodbye(&w, now)) break;
        if (now >= next) {
            /* a stopping rank's BYE is its last word; rank 0 beats on to those that wait */
            if (!stopping || g.rank == 0) send_beats(&w, now);
            /* Woken a period or more late: this process itself was stopped (SIGSTOP, a frozen
             * VM) or starved, so the waits it sees are of its own making, and the peers that
             * watched it have the verdict. It judges again only after their grace time. */
            if (now - next > g.period) quiet_until = now + 2 * g.grace;
            if (now >= quiet_until) judge(&w, now);
            next += g.period;
            if (next < now) next = now + g.period; /* overslept: no burst */
        }
        /* Until the next period; while shutting down, poll for the goodbyes every ms (the ranks
         * usually arrive together), after 0.1 s ten times per period. */
        double poll = now - stop_seen < 0.1 ? 1e-3 : g.period / 10;
        struct timespec until = abs_time(stopping ? now + poll : next);
        pthread_mutex_lock(&g.mu);
        while (!g.stop || stopping) {
            int rc = pthread_cond_timedwait(&g.cv, &g.mu, &until);
            if (rc == ETIMEDOUT) break;
        }
        pthread_mutex_unlock(&g.mu);
    }
    free(w.last);
    free(w.arrived);
    free(w.at_end);
    free(w.bye_sent);
    free(w.views);
    return NULL;
}

jt_status jt_watchdog_start(double seconds, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    JT_CHECK(!g_on, "watchdog started twice");
    if (!(seconds > 0) || jt_comm_size() == 1) return JT_OK; /* off; alone, no one waits */
    /* every rank must run a thread, or none (the heartbeats go both ways) */
    if (jt_comm_agree(jt_comm_thread_multiple() ? JT_OK : JT_EUSAGE, NULL) != JT_OK) {
        if (jt_comm_rank() == 0)
            jt_errorf("warning: this MPI does not provide MPI_THREAD_MULTIPLE: the watchdog "
                      "(train.watchdog_s) is off, and a rank that stops makes the job hang");
        return JT_OK;
    }
    g.limit = seconds;
    g.period = seconds / 10 < 1.0 ? seconds / 10 : 1.0;
    g.grace = 2 * g.period + 1.0;
    g.rank = jt_comm_rank();
    g.world = jt_comm_size();
    g.stop = 0;
    g.side = jt_comm_side_new(sizeof(beat));
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* jt_now's clock */
    pthread_cond_init(&g.cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&g.mu, NULL);
    atomic_store(&g_what, NULL);
    g_depth = 0;
    g_on = 1;
    /* Signals (SIGUSR1/SIGTERM: stop with a checkpoint) stay with the main thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&g.tid, NULL, watch_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    JT_CHECK(rc == 0, "cannot start the watchdog thread: %s", strerror(rc));
    return JT_OK;
}

void jt_watchdog_stop(void) {
    if (!g_on) return;
    jt_watch_enter("the end of the run");
    pthread_mutex_lock(&g.mu);
    g.stop = 1;
    pthread_cond_signal(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(g.tid, NULL);
    jt_watch_leave();
    g_on = 0;
    jt_comm_side_free(g.side);
    g.side = NULL;
    pthread_cond_destroy(&g.cv);
    pthread_mutex_destroy(&g.mu);
}
