/* test_progress.c - the progress display's arithmetic: duration formats and the ETA. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "jtrain/common.h"
#include "jtrain/progress.h"

static void test_durations(void **state) {
    (void)state;
    const struct {
        double s;
        const char *want;
    } cases[] = {{0, "0.0s"},        {0.04, "0.0s"},      {12.34, "12.3s"},  {59.94, "59.9s"},
                 {59.96, "1:00"},    {61, "1:01"},        {3599.4, "59:59"}, {3600, "1:00:00"},
                 {86399, "23:59:59"}, {-5, "0.0s"},       {1e12, "99:00:00"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        jt_fmt_duration(cases[i].s, buf, sizeof buf);
        if (strcmp(buf, cases[i].want) != 0)
            fail_msg("%g s: '%s', expected '%s'", cases[i].s, buf, cases[i].want);
    }
}

/* The ETA is the time per step of this process so far times the steps left; a resumed run
 * counts only its own steps. */
static void test_eta(void **state) {
    (void)state;
    jt_ui ui;
    FILE *f = tmpfile();
    jt_ui_init(&ui, f, 1, 100, 300, 40);
    ui.t0 = jt_now() - 10.0; /* 10 s for steps 100..120 */
    double elapsed, eta;
    jt_ui_times(&ui, 120, &elapsed, &eta);
    assert_true(elapsed >= 10.0 && elapsed < 10.5);
    assert_true(eta > 89.9 && eta < 94.6); /* 180 steps left at 0.5 s */
    jt_ui_times(&ui, 100, &elapsed, &eta);
    assert_true(eta == 0.0); /* no step yet: no estimate */
    assert_false(ui.live); /* a temp file is no terminal */
    fclose(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_eta),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
