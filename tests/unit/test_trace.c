/* test_trace.c - the timeline writer (trace.h) and its config key log.trace: per-rank file
 * names, a file that holds every event across several buffer flushes with its names escaped,
 * NULL (tracing off) accepted everywhere, an unwritable path reported, and log.trace parsed,
 * validated like log.metrics and emitted only when set (so the resolved config round-trips). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "jtrain/config.h"
#include "jtrain/trace.h"

static void test_rank_path(void **state) {
    (void)state;
    char out[64];
    assert_int_equal(jt_trace_rank_path("trace.json", 3, out, sizeof out), 0);
    assert_string_equal(out, "trace.rank3.json");
    assert_int_equal(jt_trace_rank_path("runs/a.b/t", 0, out, sizeof out), 0);
    assert_string_equal(out, "runs/a.b/t.rank0");
    assert_int_equal(jt_trace_rank_path("x/.trace", 1, out, sizeof out), 0);
    assert_string_equal(out, "x/.trace.rank1");
    assert_int_equal(jt_trace_rank_path("a.tar.json", 12, out, sizeof out), 0);
    assert_string_equal(out, "a.tar.rank12.json");
    assert_int_equal(jt_trace_rank_path("01234567890123456789012345678901234567890123456789012345.json",
                                        1, out, sizeof out), -1);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)len + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)len, f), (size_t)len);
    s[len] = 0;
    fclose(f);
    return s;
}

static size_t count(const char *s, const char *what) {
    size_t n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what)) n++;
    return n;
}

static void test_write(void **state) {
    (void)state;
    char dir[] = "/tmp/jt_trace_XXXXXX", path[256], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/sub/t.json", dir); /* the directory is created */
    jt_trace *t = NULL;
    assert_int_equal(jt_trace_open(&t, path, 2, 100.0, err, sizeof err), JT_OK);
    const size_t n = 2 * JT_TRACE_BUFFER + 5; /* two flushes and a rest */
    for (size_t i = 0; i < n; i++)
        jt_trace_event(t, i % 2, i == 7 ? "back\"ward\\ \x01x" : "forward", 100.0 + 1e-3 * (double)i,
                       100.0 + 1e-3 * (double)i + 5e-4, i / 10, i % 2 ? "floats" : NULL, i);
    assert_int_equal(jt_trace_close(t, err, sizeof err), JT_OK);
    snprintf(path, sizeof path, "%s/sub/t.rank2.json", dir);
    char *s = slurp(path);
    assert_true(strncmp(s, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [", 42) == 0);
    assert_non_null(strstr(s, "\n]}\n"));
    assert_int_equal(count(s, "\"ph\": \"X\""), n);
    assert_int_equal(count(s, "\"pid\": 2,"), n + 3); /* and 3 metadata events */
    assert_int_equal(count(s, "\"floats\": "), n / 2);
    assert_non_null(strstr(s, "\"name\": \"back\\\"ward\\\\ \\u0001x\""));
    /* times in microseconds from the origin: event 3 starts at 3000 us and lasts 500 us */
    assert_non_null(strstr(s, "\"ts\": 3000.000, \"dur\": 500.000, \"args\": {\"step\": 0, \"floats\": 3}"));
    assert_non_null(strstr(s, "\"args\": {\"name\": \"rank 2\"}"));
    free(s);
    unlink(path);
    snprintf(path, sizeof path, "%s/sub", dir);
    rmdir(path);
    rmdir(dir);

    /* off: NULL everywhere */
    jt_trace_event(NULL, 0, "x", 0, 1, 0, NULL, 0);
    assert_int_equal(jt_trace_close(NULL, err, sizeof err), JT_OK);
    /* unwritable */
    assert_int_equal(jt_trace_open(&t, "/proc/no/such/t.json", 0, 0, err, sizeof err), JT_EUSAGE);
    assert_null(t);
    assert_non_null(strstr(err, "log.trace /proc/no/such/t.rank0.json"));
}

static const char *const CFG =
    "data: {file: d.h5}\n"
    "model:\n"
    "  blocks: {trunk: {input: image, layers: [flatten]}}\n"
    "  heads: {item: {input: trunk, target: label}}\n"
    "train: {steps: 3, batch_size: 4}\n";

static void test_config_key(void **state) {
    (void)state;
    jt_config c, back;
    char err[512];
    assert_int_equal(jt_config_parse(&c, CFG, "x.yaml", NULL, 0, err, sizeof err), JT_OK);
    assert_string_equal(c.log.trace, ""); /* off by default */
    char *y = jt_config_to_yaml(&c);
    assert_non_null(y);
    assert_null(strstr(y, "trace")); /* off: not emitted */
    free(y);
    jt_config_free(&c);

    const char *set = "log.trace=runs/t.json";
    assert_int_equal(jt_config_parse(&c, CFG, "x.yaml", &set, 1, err, sizeof err), JT_OK);
    assert_string_equal(c.log.trace, "runs/t.json");
    y = jt_config_to_yaml(&c);
    assert_non_null(strstr(y, "trace: runs/t.json"));
    assert_int_equal(jt_config_parse(&back, y, "r.yaml", NULL, 0, err, sizeof err), JT_OK);
    assert_string_equal(back.log.trace, "runs/t.json");
    free(y);
    jt_config_free(&back);
    jt_config_free(&c);

    const char *bad[] = {"log.trace=", "log.trace=[a]", "log.trace={a: 1}"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(jt_config_parse(&c, CFG, "x.yaml", &bad[i], 1, err, sizeof err),
                         JT_EUSAGE);
        assert_non_null(strstr(err, "x.yaml:--set: log.trace"));
    }
    const char *text = "data: {file: d.h5}\nlog:\n  trace: 12\n";
    assert_int_equal(jt_config_parse(&c, text, "y.yaml", NULL, 0, err, sizeof err), JT_EUSAGE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank_path),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_config_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
