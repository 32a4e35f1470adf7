/* test_h5util.c - the HDF5 module (h5util.h): the isolated reader (a result streamed back byte
 * for byte; a crash, an overflow past a block or into its slack, a hang, an exit without
 * verdict and a clean failure each give their own answer; the guard allocator's contracts),
 * attribute readers (class, shape, count, range and finiteness checked before and after a read;
 * strings of every kind), HDF5's error stack as one reason (truncated file, missing file),
 * missing filters (mandatory: refused before a read; optional: explained when a read needs
 * them), dimension and type formatting, and the crash inputs the fuzzer found
 * (tests/fuzz/regressions), which jt_data_open must survive. */
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "jtrain/data.h"
#include "jtrain/h5util.h"

static char g_dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/jt_test_h5util_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    jt_h5_quiet();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    DIR *d = opendir(g_dir);
    if (!d) return -1;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    return rmdir(g_dir);
}

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void assert_no_open_handles(void) {
    assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

static void assert_has(const char *s, const char *want) {
    if (!strstr(s, want)) print_error("\"%s\" lacks \"%s\"\n", s, want);
    assert_non_null(strstr(s, want));
}

/* ---- isolation ---- */

/* The parent's side of most cases: takes nothing (jt_h5_isolated reads on to the verdict). */
static jt_status take_nothing(void *arg, jt_h5_pipe *in, char *err, size_t errlen) {
    (void)arg;
    (void)in;
    (void)err;
    (void)errlen;
    return JT_OK;
}

static jt_status child_ok(void *arg, jt_h5_pipe *out, char *err, size_t errlen) {
    (void)arg;
    (void)out;
    (void)err;
    (void)errlen;
    return jt_h5_in_child() ? JT_OK : JT_ECKPT; /* runs in the child, not here */
}

static jt_status child_fails(void *arg, jt_h5_pipe *out, char *err, size_t errlen) {
    (void)jt_h5_send(out, "partial", 7);
    snprintf(err, errlen, "%s: /train/label: a message from the child", (const char *)arg);
    return JT_EDATA;
}

static jt_status child_segv(void *arg, jt_h5_pipe *out, char *err, size_t errlen) {
    (void)arg;
    (void)out;
    (void)err;
    (void)errlen;
    raise(SIGSEGV);
    return JT_OK;
}

static jt_status child_hangs(void *arg, jt_h5_pipe *out, char *err, size_t errlen) {
    (void)arg;
    (void)out;
    (void)err;
    (void)errlen;
    for (;;) pause();
    return JT_OK;
}

static jt_status child_exits(void *arg, jt_h5_pipe *out, char *err, size_t errlen) {
    (void)arg;
    (void)out;
    (void)err;
    (void)errlen;
    _exit(1); /* as an AddressSanitizer report ends a process */
}

/* A write one byte past a block (beyond its 16-byte slack: the guard page) and one inside the
 * slack (the canary): a child that survived either could hand back a wrong answer. */
static jt_status child_overflow_page(void *arg, jt_h5_pipe *out, char *err, size_t errlen) {
    (void)arg;
    (void)out;
    (void)err;
    (void)errlen;
    volatile size_t n = 4096; /* unknown to the compiler, which would warn */
    volatile char *p = malloc(n);
    p[n + 16] = 1;
    return JT_OK;
}

static jt_status child_overflow_slack(void *arg, jt_h5_pipe *out, char *err, size_t errlen) {
    (void)arg;
    (void)out;
    (void)err;
    (void)errlen;
    volatile size_t n = 5;
    volatile char *p = malloc(n);
    p[n] = 1;
    return JT_OK; /* jt_guard_check after the work aborts */
}

/* malloc and friends keep their contracts in guard mode: the child says JT_OK only if so. */
static jt_status child_alloc_contracts(void *arg, jt_h5_pipe *out, char *err, size_t errlen) {
    (void)arg;
    (void)out;
    (void)errlen;
    unsigned char *a = calloc(100, 3);
    for (int i = 0; i < 300; i++)
        if (a[i]) return JT_EDATA;
    memset(a, 7, 300);
    free(a);
    a = calloc(300, 1); /* a reused region is zeroed too */
    for (int i = 0; i < 300; i++)
        if (a[i]) return JT_EDATA;
    char *s = malloc(10);
    memcpy(s, "abcdefghi", 10);
    s = realloc(s, 100000);
    if (strcmp(s, "abcdefghi") != 0) return JT_EDATA;
    s = realloc(s, 4);
    if (memcmp(s, "abcd", 4) != 0) return JT_EDATA;
    void *al = NULL;
    if (posix_memalign(&al, 4096, 123) != 0 || ((uintptr_t)al & 4095) != 0) return JT_EDATA;
    float *big = aligned_alloc(64, 1 << 22);
    if (!big || ((uintptr_t)big & 63) != 0) return JT_EDATA;
    big[(1 << 20) - 1] = 1.0f;
    free(big);
    free(al);
    free(s);
    free(a);
    char *d = strdup(err ? "x" : "y"); /* glibc's own allocations go through malloc too */
    free(d);
    return JT_OK;
}

/* A result larger than the pipe holds, in pieces of odd sizes: the parent takes it while the
 * child writes, byte for byte. */
#define STREAM_BYTES (3u << 20)

static jt_status child_streams(void *arg, jt_h5_pipe *out, char *err, size_t errlen) {
    (void)arg;
    (void)err;
    (void)errlen;
    unsigned char buf[4099];
    for (size_t sent = 0; sent < STREAM_BYTES;) {
        size_t n = STREAM_BYTES - sent < sizeof buf ? STREAM_BYTES - sent : sizeof buf;
        for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)((sent + i) * 7 % 251);
        if (jt_h5_send(out, buf, n) != 0) return JT_EDATA;
        sent += n;
    }
    return JT_OK;
}

static jt_status take_stream(void *arg, jt_h5_pipe *in, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    unsigned char *got = malloc(STREAM_BYTES);
    size_t at = 0;
    while (at < STREAM_BYTES) {
        size_t n = STREAM_BYTES - at < 1000 ? STREAM_BYTES - at : 1000;
        if (jt_h5_recv(in, got + at, n) != 0) break;
        at += n;
    }
    int same = at == STREAM_BYTES;
    for (size_t i = 0; same && i < STREAM_BYTES; i++) same = got[i] == (unsigned char)(i * 7 % 251);
    free(got);
    *(int *)arg = same;
    unsigned char more;
    return jt_h5_recv(in, &more, 1) == -1 && same ? JT_OK : JT_EDATA; /* nothing after it */
}

static void test_isolated(void **state) {
    (void)state;
    char err[512] = "";
    assert_int_equal(jt_h5_in_child(), 0);
    assert_int_equal(jt_h5_isolated("f.h5", child_ok, take_nothing, NULL, JT_EDATA, err,
                                    sizeof err), JT_OK);

    int same = 0;
    assert_int_equal(jt_h5_isolated("f.h5", child_streams, take_stream, &same, JT_EDATA, err,
                                    sizeof err), JT_OK);
    assert_true(same);

    assert_int_equal(jt_h5_isolated("f.h5", child_fails, take_nothing, "f.h5", JT_EDATA, err,
                                    sizeof err), JT_EDATA);
    assert_string_equal(err, "f.h5: /train/label: a message from the child");

    double t0 = jt_now();
    assert_int_equal(jt_h5_isolated("checkpoint c.h5", child_segv, take_nothing, NULL, JT_ECKPT,
                                    err, sizeof err), JT_ECKPT);
    assert_has(err, "checkpoint c.h5: HDF5 crashed while reading it (SIGSEGV)");
    assert_has(err, "damaged or crafted");
    assert_true(jt_now() - t0 < 5.0);

    assert_int_equal(jt_h5_isolated("f.h5", child_exits, take_nothing, NULL, JT_EDATA, err,
                                    sizeof err), JT_EDATA);
    assert_has(err, "f.h5: HDF5 failed while reading it");

    setenv("JTRAIN_H5_SCAN_TIMEOUT", "1", 1);
    t0 = jt_now();
    assert_int_equal(jt_h5_isolated("f.h5", child_hangs, take_nothing, NULL, JT_EDATA, err,
                                    sizeof err), JT_EDATA);
    unsetenv("JTRAIN_H5_SCAN_TIMEOUT");
    assert_has(err, "f.h5: HDF5 did not finish reading it: stuck for 1 s in one step");
    assert_true(jt_now() - t0 < 5.0);

    assert_int_equal(jt_h5_isolated("f.h5", child_overflow_page, take_nothing, NULL, JT_EDATA,
                                    err, sizeof err), JT_EDATA);
    assert_has(err, "f.h5: HDF5 crashed while reading it (SIGSEGV)");
    assert_int_equal(jt_h5_isolated("f.h5", child_overflow_slack, take_nothing, NULL, JT_EDATA,
                                    err, sizeof err), JT_EDATA);
    assert_has(err, "f.h5: HDF5 crashed while reading it (SIGABRT)");
    assert_int_equal(jt_h5_isolated("f.h5", child_alloc_contracts, take_nothing, NULL, JT_EDATA,
                                    err, sizeof err), JT_OK);

    assert_int_equal(jt_h5_isolation_on(), 1);
    setenv("JTRAIN_H5_ISOLATE", "0", 1); /* debugging switch: callers read in-process */
    assert_int_equal(jt_h5_isolation_on(), 0);
    unsetenv("JTRAIN_H5_ISOLATE");
}

/* ---- attributes ---- */

static void put_attr(hid_t obj, const char *name, hid_t type, int rank, const hsize_t *dims,
                     const void *buf) {
    hid_t sp = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, type, buf) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
}

static void test_attr_strings(void **state) {
    (void)state;
    const char *p = tmp_path("strings.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const char *names[3] = {"cat", "dog", "bird"};
    assert_int_equal(jt_h5_attr_write_strings(f, "vl", names, 3), 0);
    assert_int_equal(jt_h5_attr_write_string(f, "one", "dataset"), 0);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 5);
    H5Tset_strpad(t, H5T_STR_SPACEPAD);
    hsize_t d2 = 2;
    put_attr(f, "fixed", t, 1, &d2, "ab   xyz  ");
    H5Tclose(t);
    const double x = 1.5;
    put_attr(f, "number", H5T_NATIVE_DOUBLE, 0, NULL, &x);
    hsize_t d22[2] = {2, 2};
    const char *four[4] = {"a", "b", "c", "d"};
    t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    put_attr(f, "matrix", t, 2, d22, four);
    H5Tclose(t);

    char **s = NULL, why[256] = "";
    size_t n = 0;
    assert_int_equal(jt_h5_attr_strings(f, "vl", 16, &s, &n, why, sizeof why), 1);
    assert_int_equal(n, 3);
    assert_string_equal(s[2], "bird");
    jt_h5_free_strings(s, n);
    assert_int_equal(jt_h5_attr_strings(f, "fixed", 16, &s, &n, why, sizeof why), 1);
    assert_int_equal(n, 2);
    assert_string_equal(s[0], "ab");
    assert_string_equal(s[1], "xyz");
    jt_h5_free_strings(s, n);
    char *one = NULL;
    assert_int_equal(jt_h5_attr_string(f, "one", &one, why, sizeof why), 1);
    assert_string_equal(one, "dataset");
    free(one);
    /* absent, wrong class, wrong shape, too many: refused before any read */
    assert_int_equal(jt_h5_attr_strings(f, "none", 16, &s, &n, why, sizeof why), 0);
    assert_null(s);
    assert_int_equal(jt_h5_attr_strings(f, "number", 16, &s, &n, why, sizeof why), -1);
    assert_has(why, "is float64, expected a list of strings");
    assert_int_equal(jt_h5_attr_strings(f, "matrix", 16, &s, &n, why, sizeof why), -1);
    assert_has(why, "has shape [2, 2], expected a scalar or a list");
    assert_int_equal(jt_h5_attr_strings(f, "vl", 2, &s, &n, why, sizeof why), -1);
    assert_has(why, "has 3 values, more than the 2 jtrain accepts");
    assert_int_equal(jt_h5_attr_string(f, "vl", &one, why, sizeof why), -1);
    assert_null(s);
    H5Fclose(f);
    assert_no_open_handles();
}

static void test_attr_numbers(void **state) {
    (void)state;
    const char *p = tmp_path("numbers.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const uint64_t big = UINT64_MAX;
    const int8_t neg = -5;
    const int32_t small = 7;
    const float vec[3] = {1.0f, NAN, 2.0f};
    hsize_t d3 = 3;
    put_attr(f, "big", H5T_NATIVE_UINT64, 0, NULL, &big);
    put_attr(f, "neg", H5T_NATIVE_INT8, 0, NULL, &neg);
    put_attr(f, "small", H5T_NATIVE_INT32, 0, NULL, &small);
    put_attr(f, "vec", H5T_NATIVE_FLOAT, 1, &d3, vec);
    assert_int_equal(jt_h5_attr_write_string(f, "text", "7"), 0);
    char why[256];
    uint64_t u = 0;
    int64_t i = 0;
    assert_int_equal(jt_h5_attr_u64(f, "big", &u, why, sizeof why), 1);
    assert_true(u == UINT64_MAX); /* not clipped to INT64_MAX on the way */
    assert_int_equal(jt_h5_attr_i64(f, "big", 0, INT64_MAX, &i, why, sizeof why), -1);
    assert_has(why, "is 18446744073709551615, expected 0 to");
    assert_int_equal(jt_h5_attr_u64(f, "neg", &u, why, sizeof why), -1);
    assert_has(why, "is -5, expected a number >= 0");
    assert_int_equal(jt_h5_attr_i64(f, "neg", -10, 10, &i, why, sizeof why), 1);
    assert_int_equal(i, -5);
    assert_int_equal(jt_h5_attr_i64(f, "small", 1, 1, &i, why, sizeof why), -1);
    assert_has(why, "is 7, expected 1 to 1");
    assert_int_equal(jt_h5_attr_u64(f, "vec", &u, why, sizeof why), -1);
    assert_has(why, "has 3 values, more than the 1");
    assert_int_equal(jt_h5_attr_u64(f, "text", &u, why, sizeof why), -1);
    assert_has(why, "is string, expected an integer");
    double *v = NULL;
    size_t n = 0;
    assert_int_equal(jt_h5_attr_numbers(f, "vec", 8, &v, &n, why, sizeof why), -1);
    assert_has(why, "[1] is nan, expected finite numbers");
    assert_null(v);
    assert_int_equal(jt_h5_attr_numbers(f, "small", 8, &v, &n, why, sizeof why), 1);
    assert_int_equal(n, 1);
    assert_true(v[0] == 7.0);
    free(v);
    H5Fclose(f);
    assert_no_open_handles();
}

static void test_formatting(void **state) {
    (void)state;
    char b[64];
    const hsize_t d[3] = {100, 28, 28};
    jt_h5_dims_str(d, 3, "[]", b, sizeof b);
    assert_string_equal(b, "[100, 28, 28]");
    jt_h5_dims_str(d + 1, 2, "()", b, sizeof b);
    assert_string_equal(b, "(28, 28)");
    jt_h5_dims_str(d, 0, "[]", b, sizeof b);
    assert_string_equal(b, "[]");
    jt_h5_type_name(H5T_NATIVE_UINT8, b, sizeof b);
    assert_string_equal(b, "uint8");
    jt_h5_type_name(H5T_IEEE_F64LE, b, sizeof b);
    assert_string_equal(b, "float64");
}

/* ---- the error stack ---- */

static void test_reason(void **state) {
    (void)state;
    char r[512];
    assert_true(H5Fopen(tmp_path("no-such.h5"), H5F_ACC_RDONLY, H5P_DEFAULT) < 0);
    assert_has(jt_h5_reason(r, sizeof r), "No such file or directory");

    /* a file cut short: HDF5's own words, through jt_data_open */
    const char *p = tmp_path("cut.h5");
    char err[1024];
    assert_int_equal(jt_synth_write(p, 8, 4, 1, err, sizeof err), JT_OK);
    assert_int_equal(truncate(p, 20000), 0);
    jt_split s;
    const char *in[1] = {"image"}, *lb[1] = {"label"};
    assert_int_equal(jt_data_open(&s, p, "train", in, 1, lb, 1, 0, 1, err, sizeof err),
                     JT_EDATA);
    print_message("    -> %s\n", err);
    assert_has(err, p);
    assert_has(err, "truncated file: eof = 20000");
    assert_no_open_handles();
}

/* ---- filters ---- */

#define TEST_FILTER 32000 /* lzf's id: the test plays the plugin this HDF5 lacks */

/* Inverts every byte (so data written through it cannot be read without it). */
static size_t invert_filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[],
                            size_t nbytes, size_t *buf_size, void **buf) {
    (void)flags;
    (void)cd_nelmts;
    (void)cd_values;
    (void)buf_size;
    unsigned char *b = *buf;
    for (size_t i = 0; i < nbytes; i++) b[i] = (unsigned char)~b[i];
    return nbytes;
}

static const H5Z_class2_t k_invert = {H5Z_CLASS_T_VERS, TEST_FILTER, 1, 1, "lzf", NULL, NULL,
                                      invert_filter};

/* A data set of 4 rows [4, 2, 3] whose image goes through the test filter (flags 0: mandatory,
 * H5Z_FLAG_OPTIONAL: optional), then the filter is unregistered, as on a machine without it. */
static const char *filtered_file(const char *name, unsigned flags) {
    const char *p = tmp_path(name);
    char err[512];
    assert_int_equal(jt_synth_write(p, 4, 2, 1, err, sizeof err), JT_OK);
    assert_true(H5Zregister(&k_invert) >= 0);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "train", H5P_DEFAULT);
    assert_true(H5Ldelete(g, "image", H5P_DEFAULT) >= 0);
    hsize_t dims[3] = {4, 28, 28};
    hid_t sp = H5Screate_simple(3, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 3, dims);
    assert_true(H5Pset_filter(dcpl, TEST_FILTER, flags, 0, NULL) >= 0);
    hid_t d = H5Dcreate2(g, "image", H5T_STD_U8LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(d >= 0);
    static uint8_t img[4 * 28 * 28];
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i % 251);
    assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, img) >= 0);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Gclose(g);
    H5Fclose(f);
    assert_true(H5Zunregister(TEST_FILTER) >= 0);
    return p;
}

static void expect_filter_error(const char *p) {
    jt_split s;
    char err[1024];
    const char *in[1] = {"image"}, *lb[1] = {"label"};
    double t0 = jt_now();
    assert_int_equal(jt_data_open(&s, p, "train", in, 1, lb, 1, 0, 1, err, sizeof err),
                     JT_EDATA);
    print_message("    -> %s\n", err);
    assert_true(jt_now() - t0 < 5.0);
    assert_has(err, p);
    assert_has(err, "/train/image");
    assert_has(err, "filter 'lzf' (id 32000), which this HDF5 cannot decode");
    assert_null(strstr(err, "damaged"));
    assert_no_open_handles();
}

static void test_missing_filter(void **state) {
    (void)state;
    expect_filter_error(filtered_file("mandatory.h5", 0));         /* refused up front */
    expect_filter_error(filtered_file("optional.h5", H5Z_FLAG_OPTIONAL)); /* when read */
}

/* ---- crafted files ---- */

/* Every crash input the fuzzer found (tests/fuzz/regressions/crash-data-*.h5) is handled now,
 * fast, whatever libhdf5 does with it: without the isolation this test process would die. */
static void test_regressions(void **state) {
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/regressions", JT_SOURCE_DIR);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    const char *in[2] = {"image", "audio"}, *lb[2] = {"label", "speaker"};
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "crash-data-", 11) != 0 || len < 4 ||
            strcmp(e->d_name + len - 3, ".h5") != 0)
            continue;
        char path[1024], err[1024] = "";
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        jt_split s;
        double t0 = jt_now();
        /* as jtrain train opens them: the train split, then the test split */
        jt_status st = jt_data_open(&s, path, "train", in, 2, lb, 2, 0, 1, err, sizeof err);
        jt_data_close(&s);
        if (st == JT_OK)
            st = jt_data_open(&s, path, "test", in, 2, lb, 2, 0, 1, err, sizeof err);
        jt_data_close(&s);
        print_message("    %s -> %s\n", e->d_name, st == JT_OK ? "read" : err);
        /* handled: an error naming the file, or (an out-of-bounds read that found harmless
         * memory in the reader) a file read as it is; never a dead test process */
        assert_true(st == JT_OK || st == JT_EDATA);
        if (st != JT_OK) assert_has(err, path);
        assert_true(jt_now() - t0 < 5.0);
        assert_no_open_handles();
        n++;
    }
    closedir(d);
    assert_true(n > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_isolated),     cmocka_unit_test(test_attr_strings),
        cmocka_unit_test(test_attr_numbers), cmocka_unit_test(test_formatting),
        cmocka_unit_test(test_reason),       cmocka_unit_test(test_missing_filter),
        cmocka_unit_test(test_regressions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
