/* test_schedule.c - jt_schedule_lr (schedule.h): each schedule against its closed formula at
 * chosen points worked out by hand below (first warmup step, end of warmup, middle, last step,
 * step boundaries, past the end, a run no longer than its warmup), then against torch's own
 * schedulers: tests/fixtures/schedule/torch_lr.txt, the learning rates torch.optim.lr_scheduler
 * gives each step (scripts/make-schedule-fixture; tests/data/test_schedule_fixture.sh checks
 * that the committed file is what torch makes), to 1e-9 relative. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jtrain/schedule.h"

/* |got - want| <= 1e-12 |want| (the hand values are exact or given to 16 digits). */
#define assert_lr(got, want)                                                                  \
    do {                                                                                      \
        double g_ = (got), w_ = (want);                                                       \
        double e_ = g_ > w_ ? g_ - w_ : w_ - g_;                                              \
        if (!(e_ <= 1e-12 * (w_ < 0 ? -w_ : w_)))                                             \
            fail_msg("%s = %.17g, expected %.17g", #got, g_, w_);                             \
    } while (0)

static jt_schedule_cfg sched(jt_sched_name name, long warmup, double min_lr, long step_size,
                             double gamma) {
    jt_schedule_cfg s = {name, warmup, min_lr, step_size, gamma};
    return s;
}

static void test_warmup_and_constant(void **state) {
    (void)state;
    /* W = 4, base 0.8: step t < W has base (t + 1) / W: t = 0 -> 0.2, t = 1 -> 0.4, t = 3 (the
     * last warmup step) -> 0.8; after it the constant base, to the last step and beyond. */
    jt_schedule_cfg s = sched(JT_SCHED_CONSTANT, 4, 0, 0, 0.1);
    assert_lr(jt_schedule_lr(&s, 0.8, 0, 20), 0.2);
    assert_lr(jt_schedule_lr(&s, 0.8, 1, 20), 0.4);
    assert_lr(jt_schedule_lr(&s, 0.8, 3, 20), 0.8);
    assert_lr(jt_schedule_lr(&s, 0.8, 4, 20), 0.8);
    assert_lr(jt_schedule_lr(&s, 0.8, 19, 20), 0.8);
    assert_lr(jt_schedule_lr(&s, 0.8, 1000, 20), 0.8);
    /* no warmup: the base from step 0 */
    s.warmup_steps = 0;
    assert_lr(jt_schedule_lr(&s, 0.8, 0, 20), 0.8);
    /* W = 1: the single warmup step is base (1/1) */
    s.warmup_steps = 1;
    assert_lr(jt_schedule_lr(&s, 0.8, 0, 20), 0.8);
}

static void test_cosine(void **state) {
    (void)state;
    /* base 1, min 0.1, W = 0, T = 10, so U = 10 and lr = 0.1 + 0.9 (1 + cos(pi u / 10)) / 2:
     *   u = 0: 0.1 + 0.9 = 1
     *   u = 5: cos(pi/2) = 0, 0.1 + 0.45 = 0.55
     *   u = 9 (last step): cos(0.9 pi) = -0.9510565162951535,
     *          0.1 + 0.9 * 0.04894348370484647 / 2 = 0.1220245676671809
     *   u >= U (past the end, held at u = U): cos(pi) = -1, min = 0.1 */
    jt_schedule_cfg s = sched(JT_SCHED_COSINE, 0, 0.1, 0, 0.1);
    assert_lr(jt_schedule_lr(&s, 1.0, 0, 10), 1.0);
    assert_lr(jt_schedule_lr(&s, 1.0, 5, 10), 0.55);
    assert_lr(jt_schedule_lr(&s, 1.0, 9, 10), 0.1220245676671809);
    assert_lr(jt_schedule_lr(&s, 1.0, 10, 10), 0.1);
    assert_lr(jt_schedule_lr(&s, 1.0, 500, 10), 0.1);
    /* W = 2, T = 12: U = 12 - 2 = 10 again, u = t - 2. t = 0 -> 1 * 1/2 = 0.5; t = 1 -> 1 (end
     * of warmup); t = 2 -> u = 0 -> 1; t = 7 -> u = 5 -> 0.55; t = 11 -> u = 9 -> as above */
    s.warmup_steps = 2;
    assert_lr(jt_schedule_lr(&s, 1.0, 0, 12), 0.5);
    assert_lr(jt_schedule_lr(&s, 1.0, 1, 12), 1.0);
    assert_lr(jt_schedule_lr(&s, 1.0, 2, 12), 1.0);
    assert_lr(jt_schedule_lr(&s, 1.0, 7, 12), 0.55);
    assert_lr(jt_schedule_lr(&s, 1.0, 11, 12), 0.1220245676671809);
    /* min 0, base 0.002, T = 4: u = 2 is the middle, 0.002 * (1 + 0) / 2 = 0.001; u = 1:
     * 0.002 (1 + cos(pi/4)) / 2 = 0.001 (1 + 0.7071067811865476) = 0.0017071067811865476 */
    s = sched(JT_SCHED_COSINE, 0, 0, 0, 0.1);
    assert_lr(jt_schedule_lr(&s, 0.002, 1, 4), 0.0017071067811865476);
    assert_lr(jt_schedule_lr(&s, 0.002, 2, 4), 0.001);
}

static void test_linear(void **state) {
    (void)state;
    /* base 1, min 0.2, W = 0, T = 5: U = 5, lr = 1 - 0.8 u / 5:
     *   u = 0: 1;  u = 1: 0.84;  u = 4 (last step): 0.36;  u >= 5: 0.2 */
    jt_schedule_cfg s = sched(JT_SCHED_LINEAR, 0, 0.2, 0, 0.1);
    assert_lr(jt_schedule_lr(&s, 1.0, 0, 5), 1.0);
    assert_lr(jt_schedule_lr(&s, 1.0, 1, 5), 0.84);
    assert_lr(jt_schedule_lr(&s, 1.0, 4, 5), 0.36);
    assert_lr(jt_schedule_lr(&s, 1.0, 5, 5), 0.2);
    assert_lr(jt_schedule_lr(&s, 1.0, 99, 5), 0.2);
    /* W = 3, T = 7: U = 4, u = t - 3, lr = 1 - 0.8 u / 4: t = 0 -> 1/3; t = 2 -> 1 (end of
     * warmup); t = 3 -> 1; t = 5 -> u = 2, the middle: 0.6; t = 6 (last) -> u = 3: 0.4 */
    s.warmup_steps = 3;
    assert_lr(jt_schedule_lr(&s, 1.0, 0, 7), 1.0 / 3.0);
    assert_lr(jt_schedule_lr(&s, 1.0, 2, 7), 1.0);
    assert_lr(jt_schedule_lr(&s, 1.0, 3, 7), 1.0);
    assert_lr(jt_schedule_lr(&s, 1.0, 5, 7), 0.6);
    assert_lr(jt_schedule_lr(&s, 1.0, 6, 7), 0.4);
}

static void test_step(void **state) {
    (void)state;
    /* base 1, step_size 3, gamma 0.5, W = 0: lr = 0.5^floor(t / 3): t = 0..2 -> 1, t = 3 (the
     * first boundary) -> 0.5, t = 5 -> 0.5, t = 6 -> 0.25, t = 30 -> 0.5^10 = 1/1024 */
    jt_schedule_cfg s = sched(JT_SCHED_STEP, 0, 0, 3, 0.5);
    assert_lr(jt_schedule_lr(&s, 1.0, 0, 40), 1.0);
    assert_lr(jt_schedule_lr(&s, 1.0, 2, 40), 1.0);
    assert_lr(jt_schedule_lr(&s, 1.0, 3, 40), 0.5);
    assert_lr(jt_schedule_lr(&s, 1.0, 5, 40), 0.5);
    assert_lr(jt_schedule_lr(&s, 1.0, 6, 40), 0.25);
    assert_lr(jt_schedule_lr(&s, 1.0, 30, 40), 1.0 / 1024.0);
    /* W = 2: u = t - 2; t = 0 -> 0.5 (warmup 1/2), t = 1 -> 1, t = 4 -> u = 2 -> 1, t = 5 ->
     * u = 3 -> 0.5; gamma 1 never decays */
    s.warmup_steps = 2;
    assert_lr(jt_schedule_lr(&s, 1.0, 0, 40), 0.5);
    assert_lr(jt_schedule_lr(&s, 1.0, 1, 40), 1.0);
    assert_lr(jt_schedule_lr(&s, 1.0, 4, 40), 1.0);
    assert_lr(jt_schedule_lr(&s, 1.0, 5, 40), 0.5);
    s.gamma = 1.0;
    assert_lr(jt_schedule_lr(&s, 1.0, 39, 40), 1.0);
}

static void test_short_runs(void **state) {
    (void)state;
    /* A run no longer than its warmup: U = max(T - W, 1) = 1, so the step after the warmup is
     * u = 0 (base) and every later one is held at u = U (min for cosine and linear). W = 5,
     * T = 3, base 1, min 0.25: t = 2 -> 3/5; t = 5 -> 1; t = 6 -> 0.25. */
    jt_schedule_cfg s = sched(JT_SCHED_COSINE, 5, 0.25, 0, 0.1);
    assert_lr(jt_schedule_lr(&s, 1.0, 2, 3), 0.6);
    assert_lr(jt_schedule_lr(&s, 1.0, 5, 3), 1.0);
    assert_lr(jt_schedule_lr(&s, 1.0, 6, 3), 0.25);
    s.name = JT_SCHED_LINEAR;
    assert_lr(jt_schedule_lr(&s, 1.0, 5, 3), 1.0);
    assert_lr(jt_schedule_lr(&s, 1.0, 6, 3), 0.25);
    /* T = 1 without warmup: the only step has the base rate */
    s.warmup_steps = 0;
    assert_lr(jt_schedule_lr(&s, 1.0, 0, 1), 1.0);
    s.name = JT_SCHED_COSINE;
    assert_lr(jt_schedule_lr(&s, 1.0, 0, 1), 1.0);
    /* the last step of a run of 2^53 steps is still finite and above min */
    double lr = jt_schedule_lr(&s, 1.0, (1ULL << 53) - 1, 1ULL << 53);
    assert_true(lr >= 0.25 && lr < 0.25 + 1e-15);
}

static void test_names(void **state) {
    (void)state;
    assert_string_equal(jt_schedule_name(JT_SCHED_CONSTANT), "constant");
    assert_string_equal(jt_schedule_name(JT_SCHED_COSINE), "cosine");
    assert_string_equal(jt_schedule_name(JT_SCHED_STEP), "step");
    assert_string_equal(jt_schedule_name(JT_SCHED_LINEAR), "linear");
}

/* Each line of the torch fixture: name warmup_steps min_lr step_size gamma base_lr total_steps
 * lr_0 ... lr_{T-1} (lines starting with '#' are comments). */
static void test_torch_fixture(void **state) {
    (void)state;
    const char *path = JT_SOURCE_DIR "/tests/fixtures/schedule/torch_lr.txt";
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s (scripts/make-schedule-fixture makes it)", path);
    int cases = 0, seen[4][2] = {{0}};
    double worst = 0;
    char name[32];
    while (fscanf(f, " %31s", name) == 1) {
        if (name[0] == '#') {
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n') continue;
            continue;
        }
        jt_schedule_cfg s = {0};
        double base = 0;
        unsigned long long total = 0;
        if (fscanf(f, "%ld %lf %ld %lf %lf %llu", &s.warmup_steps, &s.min_lr, &s.step_size,
                   &s.gamma, &base, &total) != 6)
            fail_msg("%s: case %d (%s): bad fields", path, cases + 1, name);
        int k;
        for (k = 0; k < 4 && strcmp(name, jt_schedule_name((jt_sched_name)k)) != 0; k++) continue;
        if (k == 4) fail_msg("%s: unknown schedule '%s'", path, name);
        s.name = (jt_sched_name)k;
        seen[k][s.warmup_steps > 0]++;
        assert_true(total >= 2 && total < 100000);
        for (unsigned long long t = 0; t < total; t++) {
            double want;
            if (fscanf(f, "%lf", &want) != 1)
                fail_msg("%s: case %d (%s): only %llu of %llu rates", path, cases + 1, name, t,
                         total);
            double got = jt_schedule_lr(&s, base, t, total);
            double rel = (got > want ? got - want : want - got) / want;
            if (rel > worst) worst = rel;
            if (!(rel <= 1e-9))
                fail_msg("%s warmup %ld min_lr %g step %ld gamma %g T %llu: step %llu lr %.17g, "
                         "torch %.17g", name, s.warmup_steps, s.min_lr, s.step_size, s.gamma,
                         total, t, got, want);
        }
        cases++;
    }
    fclose(f);
    for (int k = 0; k < 4; k++)
        for (int w = 0; w < 2; w++)
            if (!seen[k][w])
                fail_msg("%s lacks schedule %s %s warmup", path, jt_schedule_name((jt_sched_name)k),
                         w ? "with" : "without");
    print_message("%d torch schedules, largest relative difference %.3g\n", cases, worst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warmup_and_constant), cmocka_unit_test(test_cosine),
        cmocka_unit_test(test_linear),              cmocka_unit_test(test_step),
        cmocka_unit_test(test_short_runs),          cmocka_unit_test(test_names),
        cmocka_unit_test(test_torch_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
