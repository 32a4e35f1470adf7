/* test_watchdog.c - the watchdog's verdict (src/watchdog_judge.h) rule by rule: nothing before
 * some rank has waited longer than the limit; then a silent rank and a stuck rank are culprits,
 * a busy rank that moves never is; a fallback judge names only its suspect; ranks that all wait
 * with none to blame are reported as such; the lines name rank, collective, reason and step.
 * The end-to-end behaviour under mpirun is tests/mpi/test_watchdog.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/watchdog_judge.h"

#define LIMIT 20.0

static jt_watch_view waiting(int rank, double waited, uint64_t step, const char *what) {
    jt_watch_view v = {.rank = rank, .waited = waited, .idle = waited, .step = step};
    snprintf(v.what, sizeof v.what, "%s", what);
    return v;
}

static jt_watch_view busy(int rank, double age, double idle, uint64_t step) {
    jt_watch_view v = {.rank = rank, .age = age, .waited = -1, .idle = idle, .step = step};
    return v;
}

static char report[4096];

static jt_watch_verdict judge(const jt_watch_view *v, size_t n, int suspect) {
    return jt_watch_judge(v, n, suspect, LIMIT, report, sizeof report);
}

static size_t count_lines(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void test_nothing_before_the_limit(void **state) {
    (void)state;
    /* rank 1 silent for long, rank 0 waiting but not yet for longer than the limit */
    jt_watch_view v[2] = {waiting(0, 19.5, 12, "the gradient sum"), busy(1, 60, 60, 11)};
    assert_int_equal(judge(v, 2, -1), JT_WATCH_FINE);
    assert_string_equal(report, "");
    /* nobody waits at all */
    v[0] = busy(0, 0, 100, 12);
    assert_int_equal(judge(v, 2, -1), JT_WATCH_FINE);
}

static void test_silent_rank(void **state) {
    (void)state;
    jt_watch_view v[2] = {waiting(0, 21, 12, "the gradient sum"), busy(1, 21.5, 0.2, 12)};
    assert_int_equal(judge(v, 2, -1), JT_WATCH_CULPRITS);
    assert_string_equal(report, "rank 1 did not arrive at the gradient sum (rank 0 has waited "
                                "21.0 s for it): no heartbeat for 21.5 s (stopped, dead or cut "
                                "off); its last completed step is 12\n");
    /* its last heartbeat is old: its step is bounded by the others' (12 - 1 .. 12) */
    v[1].step = 3;
    assert_int_equal(judge(v, 2, -1), JT_WATCH_CULPRITS);
    assert_non_null(strstr(report, "its last completed step is 11 or 12\n"));
    /* a silent rank is a culprit whatever its last heartbeat said (it may have said "waiting") */
    v[1] = waiting(1, 0.01, 12, "the gradient sum");
    v[1].age = 25;
    v[1].waited = 25.01;
    assert_int_equal(judge(v, 2, -1), JT_WATCH_CULPRITS);
    assert_non_null(strstr(report, "rank 1 did not arrive at the gradient sum"));
    /* heard from 19 s ago, when it waited: not silent yet, and its word is too old to count
     * (it was stopped in a later wait, so it is not "every rank waits") */
    v[1].age = 19;
    v[1].waited = 20.5;
    assert_int_equal(judge(v, 2, -1), JT_WATCH_FINE);
    /* nor is an old "busy" a sign of being stuck: no verdict until it is silent */
    v[1] = busy(1, 15, 21, 12);
    assert_int_equal(judge(v, 2, -1), JT_WATCH_FINE);
    v[1].age = 20.5;
    assert_int_equal(judge(v, 2, -1), JT_WATCH_CULPRITS);
    assert_non_null(strstr(report, "no heartbeat for 20.5 s"));
}

static void test_stuck_rank(void **state) {
    (void)state;
    /* heartbeats go on (age 0.5) but the main thread has not moved for 30 s, not waiting */
    jt_watch_view v[2] = {waiting(0, 25, 40, "a status check"), busy(1, 0.5, 30, 40)};
    assert_int_equal(judge(v, 2, -1), JT_WATCH_CULPRITS);
    assert_string_equal(report, "rank 1 did not arrive at a status check (rank 0 has waited "
                                "25.0 s for it): it made no progress for 30.0 s outside any "
                                "collective (stuck, e.g. in a system call); its last completed "
                                "step is 40\n");
}

static void test_busy_rank_is_never_blamed(void **state) {
    (void)state;
    /* a long checkpoint on rank 0 that calls jt_progress: rank 1 waits 10 minutes, fine */
    jt_watch_view v[2] = {busy(0, 0, 0.1, 500), waiting(1, 600, 500, "a status check")};
    v[1].age = 0.8;
    assert_int_equal(judge(v, 2, -1), JT_WATCH_FINE);
    assert_string_equal(report, "");
    /* the same seen from rank 1, judging rank 0 only */
    jt_watch_view w[2] = {v[0], v[1]};
    w[0].age = 0.8;
    w[1].age = 0;
    assert_int_equal(judge(w, 2, 0), JT_WATCH_FINE);
}

static void test_three_ranks(void **state) {
    (void)state;
    /* ranks 0 and 2 wait for rank 1, which is silent; rank 2 has waited longest */
    jt_watch_view v[3] = {waiting(0, 22, 7, "the gradient sum"), busy(1, 23, 1, 7),
                          waiting(2, 24, 7, "the batch exchange")};
    v[2].age = 0.5;
    assert_int_equal(judge(v, 3, -1), JT_WATCH_CULPRITS);
    assert_string_equal(report, "rank 1 did not arrive at the batch exchange (2 ranks wait for "
                                "it, rank 2 for 24.0 s): no heartbeat for 23.0 s (stopped, dead "
                                "or cut off); its last completed step is 7\n");
    /* two culprits, one line each */
    v[0] = busy(0, 0, 45, 7);
    assert_int_equal(judge(v, 3, -1), JT_WATCH_CULPRITS);
    assert_int_equal(count_lines(report), 2);
    assert_non_null(strstr(report, "rank 0 did not arrive at the batch exchange"));
    assert_non_null(strstr(report, "rank 1 did not arrive at the batch exchange"));
}

static void test_fallback_judge(void **state) {
    (void)state;
    /* rank 1 judging: rank 0 silent, rank 1 waiting */
    jt_watch_view v[2] = {busy(0, 30, 0, 12), waiting(1, 29, 13, "the gradient sum")};
    assert_int_equal(judge(v, 2, 0), JT_WATCH_CULPRITS);
    assert_string_equal(report, "rank 0 did not arrive at the gradient sum (rank 1 has waited "
                                "29.0 s for it): no heartbeat for 30.0 s (stopped, dead or cut "
                                "off); its last completed step is 12 or 13\n");
    /* it names nobody but its suspect, even a rank that is plainly stuck */
    jt_watch_view w[2] = {waiting(0, 30, 12, "the gradient sum"), busy(1, 0, 50, 12)};
    w[0].age = 0.5;
    assert_int_equal(judge(w, 2, 0), JT_WATCH_FINE);
    assert_int_equal(judge(w, 2, -1), JT_WATCH_CULPRITS); /* rank 0's job */
}

static void test_all_waiting(void **state) {
    (void)state;
    /* different collectives, nobody silent or stuck: a mismatch */
    jt_watch_view v[2] = {waiting(0, 30, 12, "the gradient sum"),
                          waiting(1, 25, 12, "a status check")};
    v[1].age = 0.5;
    assert_int_equal(judge(v, 2, -1), JT_WATCH_ALL_WAIT);
    assert_int_equal(count_lines(report), 3);
    assert_non_null(strstr(report, "in different collectives, a bug in jtrain\n"));
    assert_non_null(strstr(report, "rank 0 waits in the gradient sum for 30.0 s; its last "
                                   "completed step is 12\n"));
    assert_non_null(strstr(report, "rank 1 waits in a status check for 25.0 s"));
    /* the same collective */
    snprintf(v[1].what, sizeof v[1].what, "the gradient sum");
    assert_int_equal(judge(v, 2, -1), JT_WATCH_ALL_WAIT);
    assert_non_null(strstr(report, "all in the same one"));
    /* one of them only briefly: fine (it just arrived) */
    v[1].waited = 0.2;
    assert_int_equal(judge(v, 2, -1), JT_WATCH_FINE);
    /* a fallback judge never reports this */
    v[1].waited = 25;
    assert_int_equal(judge(v, 2, 0), JT_WATCH_FINE);
}

static void test_at_the_end(void **state) {
    (void)state;
    /* rank 1 said goodbye long ago and waits at the end; rank 0 is stuck before the end */
    jt_watch_view v[2] = {busy(0, 0, 40, 99), waiting(1, 0, 100, "the end of the run")};
    v[1].age = 35;
    v[1].waited = 35;
    v[1].at_end = 1;
    assert_int_equal(judge(v, 2, -1), JT_WATCH_CULPRITS);
    assert_non_null(strstr(report, "rank 0 did not arrive at the end of the run"));
    assert_non_null(strstr(report, "no progress for 40.0 s"));
    /* and rank 0 still moving: fine, rank 1 is not silent but at the end */
    v[0].idle = 1;
    assert_int_equal(judge(v, 2, -1), JT_WATCH_FINE);
}

static void test_report_truncated(void **state) {
    (void)state;
    jt_watch_view v[2] = {waiting(0, 21, 12, "the gradient sum"), busy(1, 21.5, 0.2, 12)};
    char small[16];
    assert_int_equal(jt_watch_judge(v, 2, -1, LIMIT, small, sizeof small), JT_WATCH_CULPRITS);
    assert_int_equal(strlen(small), sizeof small - 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_before_the_limit),
        cmocka_unit_test(test_silent_rank),
        cmocka_unit_test(test_stuck_rank),
        cmocka_unit_test(test_busy_rank_is_never_blamed),
        cmocka_unit_test(test_three_ranks),
        cmocka_unit_test(test_fallback_judge),
        cmocka_unit_test(test_all_waiting),
        cmocka_unit_test(test_at_the_end),
        cmocka_unit_test(test_report_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
