/* watchdog_judge.h - the watchdog's verdict (watchdog.h): a pure function of what one rank knows
 * about the ranks at one moment, kept apart from the thread and the messages so that every rule
 * is unit-tested without MPI (tests/unit/test_watchdog.c). Private to src/. */
#ifndef JTRAIN_WATCHDOG_JUDGE_H
#define JTRAIN_WATCHDOG_JUDGE_H

#include <stddef.h>
#include <stdint.h>

/* Longest collective name in a heartbeat, with its NUL. */
#define JT_WATCH_WHAT_MAX 48

/* One rank as seen from the judging rank. Durations are the sender's own (its clock), grown by
 * the local age of its last heartbeat: clocks of different nodes are never compared. */
typedef struct {
    int rank;
    double age;       /* seconds since its last heartbeat arrived here (0: the judging rank) */
    int at_end;       /* it reached the end of the run (its last heartbeat said so) and waits
                         there: fresh whatever its age */
    double waited;    /* seconds it has waited in its current collective; < 0: not waiting */
    double idle;      /* seconds since its main thread last moved on (a step, a collective
                         reached, jt_progress) */
    uint64_t step;    /* its last completed step, as of its last heartbeat */
    char what[JT_WATCH_WHAT_MAX]; /* the collective it waits in ("" when not waiting) */
} jt_watch_view;

typedef enum {
    JT_WATCH_FINE = 0,  /* nothing to do */
    JT_WATCH_CULPRITS,  /* a rank waits too long for one that stopped or is stuck */
    JT_WATCH_ALL_WAIT   /* every rank waits too long in a collective and none is to blame */
} jt_watch_verdict;

/* Judges v[0, n) (n >= 1) against limit seconds. A rank is silent if not heard from for longer
 * than limit, fresh if it is the judging rank (age 0), at the end, or heard from within limit / 2
 * (heartbeats come every limit / 10 at most); only a fresh rank's word on its state counts (a
 * stale "waiting" may be from a wait long over).
 * - Nothing is wrong unless a fresh rank has waited in a collective for longer than limit;
 * - then the culprits are the silent ranks (stopped, dead, cut off) and the fresh ranks that do
 *   not wait and have been idle for longer than limit (stuck, e.g. in a system call); a rank
 *   that is busy and moving is never one;
 * - without culprits, if every rank is fresh and has waited longer than limit: JT_WATCH_ALL_WAIT
 *   (collectives that do not match, a bug; or MPI made no progress).
 * A rank heard from between limit / 2 and limit ago is neither: the verdict waits for it.
 * suspect < 0 judges every rank (the view of rank 0, which hears from all); suspect = r lets only
 * rank r be named and never gives JT_WATCH_ALL_WAIT (a fallback judge that hears only from r).
 * A culprit's last completed step is its own report or, if larger, one less than the highest
 * step a fresh rank completed (a rank that completed step s passed step s's gradient sum, so
 * every rank had completed s - 1). A silent culprit's last heartbeat may be old: it may also
 * have completed any step up to the lowest one completed by a waiting rank (a rank that waits
 * after step s has not passed step s + 1's sum, which needs every rank), and the line then says
 * "N or N+1".
 * Unless JT_WATCH_FINE, writes one '\n'-terminated line per culprit (or per rank, and a first
 * line, for JT_WATCH_ALL_WAIT) into report (truncated to len), e.g.
 *   rank 1 did not arrive at the gradient sum (rank 0 has waited 21 s for it): no heartbeat for
 *   21 s (stopped, dead or cut off); its last completed step is 12 */
jt_watch_verdict jt_watch_judge(const jt_watch_view *v, size_t n, int suspect, double limit,
                                char *report, size_t len);

#endif
