/* watchdog_judge.c - the watchdog's verdict (watchdog_judge.h): who, if anyone, keeps the
 * others waiting. Pure: no MPI, no clock, no state. */
#include "watchdog_judge.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Heard from recently enough to take its word for its state. */
static int is_fresh(const jt_watch_view *r, double limit) {
    return r->age <= 0 || r->at_end || r->age <= limit / 2;
}

/* Silent for longer than limit. */
static int is_silent(const jt_watch_view *r, double limit) {
    return !r->at_end && r->age > limit;
}

/* Appends a formatted line to report[0, len) (truncated, always NUL-terminated). */
__attribute__((format(printf, 3, 4))) static void add_line(char *report, size_t len,
                                                           const char *fmt, ...) {
    size_t used = strnlen(report, len);
    if (used + 1 >= len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(report + used, len - used, fmt, ap);
    va_end(ap);
    used = strnlen(report, len);
    if (used + 1 < len) {
        report[used] = '\n';
        report[used + 1] = '\0';
    }
}

jt_watch_verdict jt_watch_judge(const jt_watch_view *v, size_t n, int suspect, double limit,
                                char *report, size_t len) {
    if (len > 0) report[0] = '\0';
    /* Among the fresh ranks: the longest waiter, how many wait too long, the highest step and
     * the lowest step of a waiting rank (the bounds of a culprit's step, see the header). */
    const jt_watch_view *longest = NULL;
    size_t n_waiting = 0;
    uint64_t top_step = 0, wait_step = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        if (!is_fresh(&v[i], limit)) continue;
        if (v[i].step > top_step) top_step = v[i].step;
        if (v[i].waited >= 0 && v[i].step < wait_step) wait_step = v[i].step;
        if (v[i].waited > limit) n_waiting++;
        if (v[i].waited > limit && (!longest || v[i].waited > longest->waited)) longest = &v[i];
    }
    if (!longest) return JT_WATCH_FINE;
    uint64_t floor_step = top_step > 0 ? top_step - 1 : 0;

    char waiters[96];
    if (n_waiting == 1)
        snprintf(waiters, sizeof waiters, "rank %d has waited %.1f s for it", longest->rank,
                 longest->waited);
    else
        snprintf(waiters, sizeof waiters, "%zu ranks wait for it, rank %d for %.1f s", n_waiting,
                 longest->rank, longest->waited);
    size_t culprits = 0;
    for (size_t i = 0; i < n; i++) {
        const jt_watch_view *r = &v[i];
        if (suspect >= 0 && r->rank != suspect) continue;
        uint64_t lo = r->step > floor_step ? r->step : floor_step;
        if (is_silent(r, limit)) {
            uint64_t hi = wait_step > lo ? wait_step : lo;
            char steps[64];
            if (hi == lo) snprintf(steps, sizeof steps, "%llu", (unsigned long long)lo);
            else snprintf(steps, sizeof steps, "%llu or %llu", (unsigned long long)lo,
                          (unsigned long long)hi);
            add_line(report, len,
                     "rank %d did not arrive at %s (%s): no heartbeat for %.1f s (stopped, dead "
                     "or cut off); its last completed step is %s",
                     r->rank, longest->what, waiters, r->age, steps);
            culprits++;
        } else if (is_fresh(r, limit) && r->waited < 0 && r->idle > limit) {
            add_line(report, len,
                     "rank %d did not arrive at %s (%s): it made no progress for %.1f s outside "
                     "any collective (stuck, e.g. in a system call); its last completed step is "
                     "%llu",
                     r->rank, longest->what, waiters, r->idle, (unsigned long long)lo);
            culprits++;
        }
    }
    if (culprits > 0) return JT_WATCH_CULPRITS;
    if (suspect >= 0 || n_waiting < n) return JT_WATCH_FINE;

    int same = 1;
    for (size_t i = 1; i < n; i++) same &= strcmp(v[i].what, v[0].what) == 0;
    add_line(report, len,
             "every rank has waited in a collective for longer than %g s and none is missing: %s",
             limit, same ? "all in the same one, which MPI does not complete"
                         : "in different collectives, a bug in jtrain");
    for (size_t i = 0; i < n; i++)
        add_line(report, len, "rank %d waits in %s for %.1f s; its last completed step is %llu",
                 v[i].rank, v[i].what, v[i].waited, (unsigned long long)v[i].step);
    return JT_WATCH_ALL_WAIT;
}
