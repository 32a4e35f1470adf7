/* watchdog.h - ends a job in which a rank stopped taking part (a stopped process, a hung node or
 * file system), instead of letting the others wait in a collective forever.
 *
 * The main thread only publishes its state (cheap atomics): the last completed optimizer step,
 * whether it is waiting in a blocking collective (which one, since when), and the progress
 * counter of common.h (jt_progress). A watchdog thread per rank exchanges these as heartbeats
 * with its peers. When some rank has waited in a collective for longer than train.watchdog_s,
 * the ranks that did not arrive are examined: a rank whose heartbeats stopped (stopped or dead
 * process, lost node), or whose heartbeats go on but whose main thread has made no progress for
 * longer than train.watchdog_s while not waiting itself (stuck in a system call), is a culprit;
 * a rank that is busy and progressing (a long evaluation, a big checkpoint) never is. With a
 * culprit, one rank prints one line per culprit naming the rank, its last completed step and
 * why, and the job ends with exit 7 (JT_ESTALL) within a bounded time after watchdog_s.
 * Ranks that all wait in collectives for longer than watchdog_s (a mismatch: a bug) end the job
 * the same way, naming each rank's collective. */
#ifndef JTRAIN_WATCHDOG_H
#define JTRAIN_WATCHDOG_H

#include <stdint.h>

#include "jtrain/common.h"

/* Starts the watchdog thread on every rank (collective; after jt_comm_init). seconds <= 0: off,
 * and every other call here is a no-op. */
jt_status jt_watchdog_start(double seconds, char *err, size_t errlen);
/* Stops and joins the thread (collective; before jt_comm_finalize). NULL-safe, idempotent. */
void jt_watchdog_stop(void);

/* Main thread: the last completed optimizer step (reported for culprits). */
void jt_watch_step(uint64_t completed_step);
/* Main thread: entering / leaving a blocking wait in a collective. what is a static string
 * naming it ("gradient sum", "batch exchange", "agree", ...). comm.c calls these. */
void jt_watch_enter(const char *what);
void jt_watch_leave(void);

#endif
