/* test_ckpt.c - checkpoints: bitwise round trip, latest and pruning, every rejection path of
 * load (shape, missing and extra views, corrupt data and attributes, not HDF5, wrong format,
 * Inf/NaN) leaving the model untouched, failed saves (not a directory, file size limit, Inf/NaN)
 * and a crash mid-write leaving the previous checkpoint loadable, readability by h5dump and
 * h5py; resolving file/latest/folder paths, --resume auto falling back over broken files, temp
 * files of dead writers, scan/remove_all, the run state (/state/run: exact round trip, absent in
 * old files, checksum, refusals), the best pointer (survives pruning, resolves, removed by
 * remove_all), progress ticks, and a real full disk (a small tmpfs in
 * a private namespace of a forked child). */
#define _GNU_SOURCE /* unshare, RTLD_NEXT */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "jtrain/ckpt.h"

#define CONFIG_TEXT "model:\n  blocks: {}\ntrain:\n  seed: 7  # \xc3\xa9 utf-8\n"

/* ---- fixtures ---- */

typedef struct {
    char dir[64];
} fixture;

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/jt_ckpt_XXXXXX");
    if (!mkdtemp(fx->dir)) return -1;
    *state = fx;
    return 0;
}

static void rm_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[512];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int teardown(void **state) {
    fixture *fx = *state;
    rm_tree(fx->dir);
    free(fx);
    return 0;
}

enum { MODEL_BASE, MODEL_WIDE, MODEL_FEWER, MODEL_MORE, MODEL_BIG };

/* A small model with dotted view names; variants differ in one shape or one view. */
static void build(jt_params *p, int variant) {
    jt_params_init(p);
    size_t w[2] = {10, variant == MODEL_WIDE ? 128 : 64}, b[1] = {w[1]}, g[3] = {3, 4, 5};
    size_t h[1] = {7}, big[2] = {256, 256}, x[1] = {2};
    jt_params_add(p, "image_net.0.dense.W", 2, w);
    jt_params_add(p, "image_net.0.dense.b", 1, b);
    jt_params_add(p, "audio_net.0.gru.W", 3, g);
    if (variant != MODEL_FEWER) jt_params_add(p, "heads.item.W", 1, h);
    if (variant == MODEL_MORE) jt_params_add(p, "heads.extra.W", 1, x);
    if (variant == MODEL_BIG) jt_params_add(p, "big.W", 2, big);
    jt_params_alloc(p);
}

/* Deterministic values with awkward bit patterns (-0, subnormal, huge) in w, m, v and g. */
static void fill(jt_params *p, uint32_t seed) {
    float *bufs[4] = {p->w, p->g, p->m, p->v};
    uint32_t s = seed * 2654435761u + 1;
    for (int b = 0; b < 4; b++)
        for (size_t i = 0; i < p->total; i++) {
            s = s * 1664525u + 1013904223u;
            bufs[b][i] = (float)((int32_t)s) / 3e9f;
        }
    p->w[0] = -0.0f;
    p->w[1] = 1e-40f;
    p->m[2] = 3e38f;
}

static jt_ckpt_state make_state(uint64_t step) {
    jt_ckpt_state st = {.step = step, .epoch = 3, .epoch_step = step % 11, .adam_t = step + 100,
                        .seed = 0xfeedbeefcafe1234ULL, .world = 4, .config_text = CONFIG_TEXT};
    return st;
}

static void save_ok(const char *dir, const jt_params *p, uint64_t step, long keep) {
    char err[1024] = "", path[1024];
    jt_ckpt_state st = make_state(step);
    jt_status rc = jt_ckpt_save(dir, p, &st, keep, path, sizeof path, err, sizeof err);
    if (rc != JT_OK) fail_msg("save step %llu: %s", (unsigned long long)step, err);
}

static void assert_latest(const char *dir, const char *name) {
    char err[1024] = "", path[1024], want[1024];
    assert_int_equal(jt_ckpt_latest(dir, path, sizeof path, err, sizeof err), JT_OK);
    if (name)
        snprintf(want, sizeof want, "%s/%s", dir, name);
    else
        want[0] = '\0';
    assert_string_equal(path, want);
}

/* Bitwise equality of w, m and v over every view (the alignment padding is not saved). */
static void assert_same_buffers(const jt_params *a, const jt_params *b) {
    assert_int_equal(a->n_views, b->n_views);
    for (size_t i = 0; i < a->n_views; i++) {
        const jt_view *v = &a->views[i];
        assert_int_equal(v->offset, b->views[i].offset);
        assert_memory_equal(a->w + v->offset, b->w + v->offset, v->size * sizeof(float));
        assert_memory_equal(a->m + v->offset, b->m + v->offset, v->size * sizeof(float));
        assert_memory_equal(a->v + v->offset, b->v + v->offset, v->size * sizeof(float));
    }
}

/* Copies all four buffers so a test can prove a rejected load changed nothing. */
static float *snapshot(const jt_params *p) {
    float *s = malloc(4 * p->total * sizeof(float));
    assert_non_null(s);
    memcpy(s, p->w, p->total * sizeof(float));
    memcpy(s + p->total, p->g, p->total * sizeof(float));
    memcpy(s + 2 * p->total, p->m, p->total * sizeof(float));
    memcpy(s + 3 * p->total, p->v, p->total * sizeof(float));
    return s;
}

static void assert_unchanged(const jt_params *p, const float *s) {
    assert_memory_equal(p->w, s, p->total * sizeof(float));
    assert_memory_equal(p->g, s + p->total, p->total * sizeof(float));
    assert_memory_equal(p->m, s + 2 * p->total, p->total * sizeof(float));
    assert_memory_equal(p->v, s + 3 * p->total, p->total * sizeof(float));
}

/* Loads path into p expecting JT_ECKPT with a message containing want; p must not change. */
static void expect_load_error(const char *path, jt_params *p, const char *want) {
    char err[1024] = "";
    float *s = snapshot(p);
    jt_ckpt_state st = {.step = 999, .config_text = NULL};
    assert_int_equal(jt_ckpt_load(path, p, &st, err, sizeof err), JT_ECKPT);
    if (!strstr(err, want)) fail_msg("error '%s' lacks '%s'", err, want);
    if (!strstr(err, path)) fail_msg("error '%s' does not name %s", err, path);
    assert_int_equal(st.step, 999);
    assert_null(st.config_text);
    assert_unchanged(p, s);
    free(s);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static int exists(const char *dir, const char *name) {
    char path[16384];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* ---- tests ---- */

static void test_round_trip(void **state) {
    fixture *fx = *state;
    jt_params a, b;
    build(&a, MODEL_BASE);
    build(&b, MODEL_BASE);
    fill(&a, 1);
    fill(&b, 2);
    char err[1024] = "", path[1024], want[1024];
    jt_ckpt_state st = make_state(20);
    assert_int_equal(jt_ckpt_save(fx->dir, &a, &st, 3, path, sizeof path, err, sizeof err),
                     JT_OK);
    snprintf(want, sizeof want, "%s/ckpt-00000020.h5", fx->dir);
    assert_string_equal(path, want);
    assert_latest(fx->dir, "ckpt-00000020.h5");

    float *g_before = malloc(b.total * sizeof(float));
    memcpy(g_before, b.g, b.total * sizeof(float));
    jt_ckpt_state got = {0};
    if (jt_ckpt_load(path, &b, &got, err, sizeof err) != JT_OK) fail_msg("load: %s", err);
    assert_same_buffers(&a, &b);
    assert_memory_equal(b.g, g_before, b.total * sizeof(float)); /* gradients untouched */
    assert_int_equal(got.step, 20);
    assert_int_equal(got.epoch, 3);
    assert_int_equal(got.epoch_step, 20 % 11);
    assert_int_equal(got.adam_t, 120);
    assert_true(got.seed == 0xfeedbeefcafe1234ULL);
    assert_int_equal(got.world, 4);
    assert_string_equal(got.config_text, CONFIG_TEXT);
    jt_ckpt_state_free(&got);
    assert_null(got.config_text);

    jt_ckpt_state only = {0};
    assert_int_equal(jt_ckpt_read_state(path, &only, err, sizeof err), JT_OK);
    assert_int_equal(only.step, 20);
    assert_int_equal(only.adam_t, 120);
    assert_string_equal(only.config_text, CONFIG_TEXT);
    jt_ckpt_state_free(&only);
    jt_ckpt_state_free(NULL);
    free(g_before);
    jt_params_free(&a);
    jt_params_free(&b);
}

static void test_keep_prunes_oldest(void **state) {
    fixture *fx = *state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/runs/a", fx->dir); /* created, parents too */
    jt_params p;
    build(&p, MODEL_BASE);
    fill(&p, 3);
    for (uint64_t step = 10; step <= 40; step += 10) save_ok(dir, &p, step, 2);
    assert_int_equal(count_entries(dir), 3);
    assert_true(exists(dir, "ckpt-00000030.h5"));
    assert_true(exists(dir, "ckpt-00000040.h5"));
    assert_true(exists(dir, "latest"));
    assert_latest(dir, "ckpt-00000040.h5");
    /* keep <= 0 keeps everything */
    save_ok(dir, &p, 50, 0);
    assert_int_equal(count_entries(dir), 4);
    assert_latest(dir, "ckpt-00000050.h5");
    /* the file just written (the one latest names) stays even when older than the others */
    save_ok(dir, &p, 5, 2);
    assert_int_equal(count_entries(dir), 3);
    assert_true(exists(dir, "ckpt-00000005.h5"));
    assert_true(exists(dir, "ckpt-00000050.h5"));
    assert_latest(dir, "ckpt-00000005.h5");
    jt_params_free(&p);
}

static void test_latest_empty_and_missing_dir(void **state) {
    fixture *fx = *state;
    assert_latest(fx->dir, NULL);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/does/not/exist", fx->dir);
    assert_latest(dir, NULL);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[16384];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_latest_garbage_or_dangling(void **state) {
    fixture *fx = *state;
    char err[1024] = "", path[1024] = "x";
    write_text(fx->dir, "latest", "hello\x01world\n");
    assert_int_equal(jt_ckpt_latest(fx->dir, path, sizeof path, err, sizeof err), JT_ECKPT);
    assert_non_null(strstr(err, "latest"));
    assert_string_equal(path, "");
    write_text(fx->dir, "latest", "ckpt-00000099.h5\n");
    assert_int_equal(jt_ckpt_latest(fx->dir, path, sizeof path, err, sizeof err), JT_ECKPT);
    assert_non_null(strstr(err, "ckpt-00000099.h5"));
    write_text(fx->dir, "latest", "../ckpt-00000099.h5\n");
    assert_int_equal(jt_ckpt_latest(fx->dir, path, sizeof path, err, sizeof err), JT_ECKPT);
}

static void save_base(const char *dir, char *path, size_t len) {
    jt_params a;
    build(&a, MODEL_BASE);
    fill(&a, 4);
    save_ok(dir, &a, 5, 3);
    snprintf(path, len, "%s/ckpt-00000005.h5", dir);
    jt_params_free(&a);
}

static void test_shape_mismatch_rejected(void **state) {
    fixture *fx = *state;
    char path[512];
    save_base(fx->dir, path, sizeof path);
    jt_params b;
    build(&b, MODEL_WIDE);
    fill(&b, 5);
    expect_load_error(path, &b, "params/image_net.0.dense.W has shape (10, 64), the model has "
                                "(10, 128)");
    jt_params_free(&b);
}

static void test_missing_or_extra_view_rejected(void **state) {
    fixture *fx = *state;
    char path[512];
    save_base(fx->dir, path, sizeof path);
    jt_params fewer, more;
    build(&fewer, MODEL_FEWER); /* the file has heads.item.W, the model does not */
    fill(&fewer, 6);
    expect_load_error(path, &fewer, "params/heads.item.W is not in the model");
    build(&more, MODEL_MORE); /* the model has heads.extra.W, the file does not */
    fill(&more, 7);
    expect_load_error(path, &more, "params/heads.extra.W is missing");
    jt_params_free(&fewer);
    jt_params_free(&more);
}

/* Overwrites one float of dataset name in path through the HDF5 API. */
static void poke_float(const char *path, const char *name, hsize_t index, float value) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t fs = H5Dget_space(d);
    hsize_t start[2] = {0, index}, count[2] = {1, 1};
    assert_true(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0);
    hid_t ms = H5Screate_simple(1, count, NULL);
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, &value) >= 0);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    assert_true(H5Fclose(f) >= 0);
}

static void poke_u64_attr(const char *path, const char *name, uint64_t value) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, H5T_NATIVE_UINT64, &value) >= 0);
    H5Aclose(a);
    assert_true(H5Fclose(f) >= 0);
}

static void test_corrupt_data_rejected(void **state) {
    fixture *fx = *state;
    char path[512];
    save_base(fx->dir, path, sizeof path);
    jt_params b;
    build(&b, MODEL_BASE);
    fill(&b, 8);
    poke_float(path, "adam/v/image_net.0.dense.W", 17, 0.25f);
    expect_load_error(path, &b, "checksum of /adam/v does not match");

    save_base(fx->dir, path, sizeof path);
    poke_float(path, "params/image_net.0.dense.W", 3, 42.0f);
    expect_load_error(path, &b, "checksum of /params does not match");

    save_base(fx->dir, path, sizeof path);
    poke_u64_attr(path, "step", 6);
    expect_load_error(path, &b, "checksum of the root attributes");
    jt_ckpt_state st = {0};
    char err[512];
    assert_int_equal(jt_ckpt_read_state(path, &st, err, sizeof err), JT_ECKPT);
    assert_null(st.config_text);
    jt_params_free(&b);
}

static void test_not_a_checkpoint_rejected(void **state) {
    fixture *fx = *state;
    jt_params b;
    build(&b, MODEL_BASE);
    fill(&b, 9);
    char path[512];
    snprintf(path, sizeof path, "%s/missing.h5", fx->dir);
    expect_load_error(path, &b, "No such file");
    write_text(fx->dir, "text.h5", "this is not HDF5\n");
    snprintf(path, sizeof path, "%s/text.h5", fx->dir);
    expect_load_error(path, &b, "not an HDF5 file");

    /* a jtrain data set is HDF5 but not a checkpoint */
    snprintf(path, sizeof path, "%s/data.h5", fx->dir);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 7);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "jtrain_format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Awrite(a, t, "dataset") >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    assert_true(H5Fclose(f) >= 0);
    expect_load_error(path, &b, "jtrain_format is 'dataset'");
    jt_params_free(&b);
}

static void test_save_into_a_file_fails(void **state) {
    fixture *fx = *state;
    jt_params p;
    build(&p, MODEL_BASE);
    fill(&p, 10);
    write_text(fx->dir, "plain", "x");
    char dir[128], err[1024] = "", path[1024] = "x";
    jt_ckpt_state st = make_state(1);
    snprintf(dir, sizeof dir, "%s/plain", fx->dir);
    assert_int_equal(jt_ckpt_save(dir, &p, &st, 2, path, sizeof path, err, sizeof err), JT_ECKPT);
    assert_non_null(strstr(err, dir));
    assert_non_null(strstr(err, strerror(ENOTDIR)));
    assert_string_equal(path, "");
    snprintf(dir, sizeof dir, "%s/plain/sub", fx->dir);
    assert_int_equal(jt_ckpt_save(dir, &p, &st, 2, NULL, 0, err, sizeof err), JT_ECKPT);
    assert_non_null(strstr(err, dir));
    jt_params_free(&p);
}

/* A write that fails mid-file (as on a full disk: here a file size limit, EFBIG) removes the
 * temp file and leaves latest and the previous checkpoint alone. */
static void test_failed_write_keeps_previous(void **state) {
    fixture *fx = *state;
    jt_params p, q;
    build(&p, MODEL_BIG);
    build(&q, MODEL_BIG);
    fill(&p, 11);
    save_ok(fx->dir, &p, 1, 3);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl;
        if (getrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(3);
        rl.rlim_cur = 100000; /* bytes; the model's file needs about 800 kB */
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(3);
        fill(&p, 12);
        char err[1024] = "";
        jt_ckpt_state st = make_state(2);
        jt_status rc = jt_ckpt_save(fx->dir, &p, &st, 3, NULL, 0, err, sizeof err);
        if (rc != JT_ECKPT) _exit(1);
        if (!strstr(err, fx->dir) || !strstr(err, strerror(EFBIG))) {
            fprintf(stderr, "unexpected message: %s\n", err);
            _exit(2);
        }
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(count_entries(fx->dir), 2); /* ckpt-00000001.h5 and latest, no temp */
    assert_latest(fx->dir, "ckpt-00000001.h5");
    char err[1024] = "", path[512];
    snprintf(path, sizeof path, "%s/ckpt-00000001.h5", fx->dir);
    jt_ckpt_state st = {0};
    if (jt_ckpt_load(path, &q, &st, err, sizeof err) != JT_OK) fail_msg("load: %s", err);
    assert_same_buffers(&p, &q);
    jt_ckpt_state_free(&st);
    jt_params_free(&p);
    jt_params_free(&q);
}

static void test_crash_mid_write_keeps_previous(void **state) {
    fixture *fx = *state;
    jt_params p, q;
    build(&p, MODEL_BASE);
    build(&q, MODEL_BASE);
    fill(&p, 13);
    save_ok(fx->dir, &p, 1, 3);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("JTRAIN_TEST_CKPT_CRASH", "mid-write", 1);
        jt_params c;
        build(&c, MODEL_BASE);
        fill(&c, 14);
        char err[1024] = "";
        jt_ckpt_state st = make_state(2);
        jt_ckpt_save(fx->dir, &c, &st, 3, NULL, 0, err, sizeof err);
        _exit(0); /* not reached if the hook works */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 9);
    assert_false(exists(fx->dir, "ckpt-00000002.h5"));
    char tmpname[512], host[256] = "";
    gethostname(host, sizeof host - 1);
    snprintf(tmpname, sizeof tmpname, ".ckpt-00000002.h5.tmp.%s.%ld", host, (long)pid);
    assert_true(exists(fx->dir, tmpname)); /* the crashed writer's partial file */
    assert_latest(fx->dir, "ckpt-00000001.h5");
    /* its writer is dead: the start-of-run cleanup removes it, and nothing else */
    assert_int_equal(jt_ckpt_clean_stale(fx->dir), 1);
    assert_false(exists(fx->dir, tmpname));
    assert_int_equal(count_entries(fx->dir), 2);
    char err[1024] = "", path[512];
    snprintf(path, sizeof path, "%s/ckpt-00000001.h5", fx->dir);
    jt_ckpt_state st = {0};
    if (jt_ckpt_load(path, &q, &st, err, sizeof err) != JT_OK) fail_msg("load: %s", err);
    assert_same_buffers(&p, &q);
    assert_int_equal(st.step, 1);
    jt_ckpt_state_free(&st);
    /* the next save succeeds next to the stale temp file */
    save_ok(fx->dir, &p, 2, 3);
    assert_latest(fx->dir, "ckpt-00000002.h5");
    jt_params_free(&p);
    jt_params_free(&q);
}

/* h5dump prints it and h5py reads the strings as str and recomputes the /params checksum. */
static void test_readable_by_h5dump_and_h5py(void **state) {
    fixture *fx = *state;
    char path[512], cmd[4096];
    save_base(fx->dir, path, sizeof path);
    int checked = 0;
    if (access("/usr/bin/h5dump", X_OK) == 0) {
        snprintf(cmd, sizeof cmd, "/usr/bin/h5dump -A '%s' > /dev/null 2>&1", path);
        assert_int_equal(system(cmd), 0);
        checked++;
    }
    if (system("/usr/bin/python3 -c 'import h5py' > /dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 - '%s' <<'EOF'\n"
                 "import sys, struct, h5py\n"
                 "f = h5py.File(sys.argv[1], 'r')\n"
                 "a = f.attrs\n"
                 "assert a['jtrain_format'] == 'checkpoint', a['jtrain_format']\n"
                 "assert a['version'] == 1 and a['step'] == 5 and a['world'] == 4\n"
                 "assert isinstance(a['config'], str) and 'seed: 7' in a['config']\n"
                 "assert f['adam'].attrs['t'] == 105 and f['state'].attrs['epoch'] == 3\n"
                 "assert f['params/image_net.0.dense.W'].shape == (10, 64)\n"
                 "assert f['params/image_net.0.dense.W'].dtype == 'float32'\n"
                 "h = 14695981039346656037\n"
                 "for name in sorted(f['params']):\n"
                 "    data = name.encode() + b'\\0'\n"
                 "    data += f['params'][name][()].astype('<f4').tobytes()\n"
                 "    for byte in data:\n"
                 "        h = ((h ^ byte) * 1099511628211) %% (1 << 64)\n"
                 "assert h == int(f['params'].attrs['checksum']), h\n"
                 "EOF\n",
                 path);
        assert_int_equal(system(cmd), 0);
        checked++;
    }
    if (!checked) skip();
}

/* ---- issue 8: checkpoints that cannot hurt ---- */

static long view_offset(const jt_params *p, const char *name) {
    long i = jt_params_find(p, name);
    assert_true(i >= 0);
    return (long)p->views[i].offset;
}

/* Inf/NaN in w, m or v: exit code 5 before anything reaches the disk; latest stays. */
static void test_nonfinite_not_saved(void **state) {
    fixture *fx = *state;
    jt_params p;
    build(&p, MODEL_BIG);
    fill(&p, 20);
    save_ok(fx->dir, &p, 1, 3);
    char err[1024] = "", path[1024] = "x";
    jt_ckpt_state st = make_state(2);
    static const struct {
        int buf;
        const char *view;
        size_t index;
        float value;
        const char *want;
    } cases[] = {
        {0, "image_net.0.dense.W", 17, INFINITY, "params/image_net.0.dense.W[17] is inf"},
        {1, "heads.item.W", 3, NAN, "adam/m/heads.item.W[3] is nan"},
        {2, "big.W", 65535, -INFINITY, "adam/v/big.W[65535] is -inf"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float *buf = cases[c].buf == 0 ? p.w : cases[c].buf == 1 ? p.m : p.v;
        float *x = buf + view_offset(&p, cases[c].view) + cases[c].index;
        float saved = *x;
        *x = cases[c].value;
        assert_int_equal(jt_ckpt_save(fx->dir, &p, &st, 3, path, sizeof path, err, sizeof err),
                         JT_ENUMERIC);
        if (!strstr(err, cases[c].want) || !strstr(err, "checkpoint at step 2 not written") ||
            !strstr(err, "the previous latest stays"))
            fail_msg("error '%s' lacks '%s'", err, cases[c].want);
        assert_string_equal(path, "");
        assert_int_equal(count_entries(fx->dir), 2); /* ckpt-00000001.h5, latest: no temp */
        assert_latest(fx->dir, "ckpt-00000001.h5");
        *x = saved;
    }
    /* the first bad value is reported: params before adam/m, views in model order */
    p.m[view_offset(&p, "image_net.0.dense.W")] = NAN;
    p.w[view_offset(&p, "heads.item.W") + 6] = INFINITY;
    assert_int_equal(jt_ckpt_save(fx->dir, &p, &st, 3, NULL, 0, err, sizeof err), JT_ENUMERIC);
    assert_non_null(strstr(err, "params/heads.item.W[6] is inf"));
    /* nothing at all is written: not even the directory */
    char dir[256];
    snprintf(dir, sizeof dir, "%s/new/run", fx->dir);
    assert_int_equal(jt_ckpt_save(dir, &p, &st, 3, NULL, 0, err, sizeof err), JT_ENUMERIC);
    assert_int_equal(access(dir, F_OK), -1);
    jt_params_free(&p);
}

/* FNV-1a 64 of section sec as ckpt.h specifies, written as its checksum attribute: makes a
 * poked file look like one an older jtrain wrote with those values. */
static void rehash_section(const char *path, const char *sec) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t g = H5Gopen2(f, sec, H5P_DEFAULT);
    assert_true(g >= 0);
    H5G_info_t info;
    assert_true(H5Gget_info(g, &info) >= 0);
    char names[16][128];
    assert_true(info.nlinks <= 16);
    for (hsize_t i = 0; i < info.nlinks; i++)
        assert_true(H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, names[i], 128,
                                       H5P_DEFAULT) > 0);
    qsort(names, info.nlinks, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    uint64_t h = 14695981039346656037ULL;
    for (hsize_t i = 0; i < info.nlinks; i++) {
        for (size_t k = 0; k <= strlen(names[i]); k++)
            h = (h ^ (unsigned char)names[i][k]) * 1099511628211ULL;
        hid_t d = H5Dopen2(g, names[i], H5P_DEFAULT);
        hid_t sp = H5Dget_space(d);
        hssize_t n = H5Sget_simple_extent_npoints(sp);
        float *x = malloc((size_t)n * sizeof *x + 1);
        assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
        for (hssize_t j = 0; j < n; j++) {
            uint32_t u;
            memcpy(&u, &x[j], 4);
            for (int b = 0; b < 32; b += 8) h = (h ^ ((u >> b) & 0xffu)) * 1099511628211ULL;
        }
        free(x);
        H5Sclose(sp);
        H5Dclose(d);
    }
    hid_t a = H5Aopen(g, "checksum", H5P_DEFAULT);
    assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_UINT64, &h) >= 0);
    H5Aclose(a);
    H5Gclose(g);
    assert_true(H5Fclose(f) >= 0);
}

static void test_load_refuses_nonfinite(void **state) {
    fixture *fx = *state;
    char path[512];
    save_base(fx->dir, path, sizeof path);
    jt_params b;
    build(&b, MODEL_BASE);
    fill(&b, 21);
    char err[1024];
    jt_ckpt_state st = {0};
    rehash_section(path, "adam/m"); /* the helper reproduces the real checksum */
    assert_int_equal(jt_ckpt_load(path, &b, &st, err, sizeof err), JT_OK);
    jt_ckpt_state_free(&st);
    fill(&b, 21);
    poke_float(path, "adam/m/image_net.0.dense.W", 17, INFINITY);
    rehash_section(path, "adam/m");
    expect_load_error(path, &b, "adam/m/image_net.0.dense.W[17] is inf");
    save_base(fx->dir, path, sizeof path);
    poke_float(path, "params/image_net.0.dense.W", 40, NAN);
    rehash_section(path, "params");
    expect_load_error(path, &b, "params/image_net.0.dense.W[40] is nan");
    jt_params_free(&b);
}

/* The checkpoint path a user gives may be the file, a latest file or the run folder. */
static void test_resolve(void **state) {
    fixture *fx = *state;
    char run[256], file[512], in[512], out[1024], err[1024];
    snprintf(run, sizeof run, "%s/run", fx->dir);
    jt_params p;
    build(&p, MODEL_BASE);
    fill(&p, 22);
    save_ok(run, &p, 10, 0);
    save_ok(run, &p, 20, 0);
    snprintf(file, sizeof file, "%s/ckpt-00000020.h5", run);
    const char *forms[4] = {"%s/ckpt-00000020.h5", "%s/latest", "%s", "%s//"};
    for (int i = 0; i < 4; i++) {
        snprintf(in, sizeof in, forms[i], run);
        if (jt_ckpt_resolve(in, out, sizeof out, err, sizeof err) != JT_OK)
            fail_msg("resolve %s: %s", in, err);
        assert_string_equal(out, file);
    }
    snprintf(in, sizeof in, "%s/ckpt-00000010.h5", run); /* an older file stays itself */
    assert_int_equal(jt_ckpt_resolve(in, out, sizeof out, err, sizeof err), JT_OK);
    assert_string_equal(out, in);
    jt_ckpt_state st = {0};
    assert_int_equal(jt_ckpt_load(out, &p, &st, err, sizeof err), JT_OK);
    jt_ckpt_state_free(&st);
    /* relative paths stay relative */
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(fx->dir), 0);
    assert_int_equal(jt_ckpt_resolve("run", out, sizeof out, err, sizeof err), JT_OK);
    assert_string_equal(out, "run/ckpt-00000020.h5");
    assert_int_equal(chdir(run), 0);
    assert_int_equal(jt_ckpt_resolve("latest", out, sizeof out, err, sizeof err), JT_OK);
    assert_string_equal(out, "ckpt-00000020.h5");
    assert_int_equal(chdir(cwd), 0);

    /* none of these: errors name the path */
    static const struct {
        const char *name, *content, *want;
    } bad[] = {
        {"missing.h5", NULL, "No such file or directory"},
        {"text.h5", "this is not HDF5\n", "not an HDF5 file"},
        {"empty", NULL, "without a latest file"},
        {"corrupt/latest", "hello\x01world\n", "is corrupt"},
        {"corrupt", NULL, "is corrupt"},
        {"dangling/latest", "ckpt-00000099.h5\n", "ckpt-00000099.h5, which does not exist"},
        {"dangling", NULL, "ckpt-00000099.h5, which does not exist"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(in, sizeof in, "%s/%s", fx->dir, bad[i].name);
        if (strcmp(bad[i].name, "empty") == 0 || strchr(bad[i].name, '/')) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s/%.*s", fx->dir,
                     (int)strcspn(bad[i].name, "/"), bad[i].name);
            mkdir(sub, 0777);
        }
        if (bad[i].content) write_text(fx->dir, bad[i].name, bad[i].content);
        snprintf(out, sizeof out, "x");
        assert_int_equal(jt_ckpt_resolve(in, out, sizeof out, err, sizeof err), JT_ECKPT);
        if (!strstr(err, in) || !strstr(err, bad[i].want))
            fail_msg("resolve %s: error '%s' lacks '%s' or the path", in, err, bad[i].want);
        assert_string_equal(out, "");
    }
    jt_params_free(&p);
}

/* stderr of the calls between capture_begin and capture_end, as a string (free it). */
static int g_saved_stderr = -1;
static char g_capture_path[256];

static void capture_begin(const char *dir) {
    snprintf(g_capture_path, sizeof g_capture_path, "%s.stderr", dir);
    fflush(stderr);
    g_saved_stderr = dup(2);
    int fd = open(g_capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0 && g_saved_stderr >= 0);
    dup2(fd, 2);
    close(fd);
}

static char *capture_end(void) {
    fflush(stderr);
    dup2(g_saved_stderr, 2);
    close(g_saved_stderr);
    FILE *f = fopen(g_capture_path, "rb");
    assert_non_null(f);
    char *s = calloc(1, 65536);
    size_t n = fread(s, 1, 65535, f);
    s[n] = '\0';
    fclose(f);
    unlink(g_capture_path);
    fputs(s, stderr); /* still visible in the test log */
    return s;
}

/* Names, sizes and modification times of dir's entries: proves a call left dir alone. */
static char *fingerprint(const char *dir) {
    char *s = calloc(1, 8192), path[1024];
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    if (n < 0) {
        assert_int_equal(errno, ENOENT);
        return s;
    }
    for (int i = 0; i < n; i++) {
        struct stat sb;
        if (strcmp(list[i]->d_name, "..") == 0) { /* the parent is not part of dir */
            free(list[i]);
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
        assert_int_equal(lstat(path, &sb), 0);
        size_t o = strlen(s);
        snprintf(s + o, 8192 - o, "%s %lld %lld.%09ld\n", list[i]->d_name, (long long)sb.st_size,
                 (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
        free(list[i]);
    }
    free(list);
    return s;
}

/* Runs jt_ckpt_find_resumable on dir into a fresh model; expects it to pick want_step (0:
 * nothing to resume) and stderr to hold every pattern of warn (NULL-terminated; warn NULL:
 * no output at all); checks that p then holds checkpoint want_step's values (filled with
 * seed = step) and that dir did not change. */
static void expect_resume(const char *dir, uint64_t want_step, const char *const *warn) {
    jt_params p, ref;
    build(&p, MODEL_BASE);
    fill(&p, 999);
    char path[1024] = "x", err[2048] = "", want[1024];
    jt_ckpt_state st = {0};
    char *before = fingerprint(dir);
    capture_begin(dir);
    jt_status rc = jt_ckpt_find_resumable(dir, &p, &st, 1, path, sizeof path, err, sizeof err);
    char *out = capture_end();
    char *after = fingerprint(dir);
    if (rc != JT_OK) fail_msg("find_resumable: %s", err);
    assert_string_equal(before, after);
    if (want_step == 0) {
        assert_string_equal(path, "");
    } else {
        snprintf(want, sizeof want, "%s/ckpt-%08llu.h5", dir, (unsigned long long)want_step);
        assert_string_equal(path, want);
        assert_int_equal(st.step, want_step);
        build(&ref, MODEL_BASE);
        fill(&ref, (uint32_t)want_step);
        assert_same_buffers(&p, &ref);
        jt_params_free(&ref);
    }
    if (!warn) assert_string_equal(out, "");
    for (size_t i = 0; warn && warn[i]; i++)
        if (!strstr(out, warn[i])) fail_msg("stderr '%s' lacks '%s'", out, warn[i]);
    /* not verbose: the same answer, no output */
    jt_params_free(&p);
    build(&p, MODEL_BASE);
    jt_ckpt_state_free(&st);
    capture_begin(dir);
    rc = jt_ckpt_find_resumable(dir, &p, &st, 0, path, sizeof path, err, sizeof err);
    char *quiet = capture_end();
    assert_int_equal(rc, JT_OK);
    assert_string_equal(quiet, "");
    if (want_step) assert_string_equal(path, want);
    jt_ckpt_state_free(&st);
    jt_params_free(&p);
    free(before);
    free(after);
    free(out);
    free(quiet);
}

/* Saves steps 10, 20, 30 into dir, each with values filled with seed = step; latest: 30. */
static void save_three(const char *dir) {
    jt_params p;
    build(&p, MODEL_BASE);
    for (uint64_t s = 10; s <= 30; s += 10) {
        fill(&p, (uint32_t)s);
        save_ok(dir, &p, s, 0);
    }
    jt_params_free(&p);
}

static void test_resume_auto_falls_back(void **state) {
    fixture *fx = *state;
    char dir[256], f30[512], f20[512], w[8][1024];
    snprintf(dir, sizeof dir, "%s/run", fx->dir);
    snprintf(f30, sizeof f30, "%s/ckpt-00000030.h5", dir);
    snprintf(f20, sizeof f20, "%s/ckpt-00000020.h5", dir);
    save_three(dir);
    expect_resume(dir, 30, NULL); /* intact: latest, no warning */

    /* truncated newest (latest names it) */
    struct stat sb;
    assert_int_equal(stat(f30, &sb), 0);
    assert_int_equal(truncate(f30, sb.st_size / 2), 0);
    snprintf(w[0], sizeof w[0], "jtrain: warning: skipping %s: ", f30);
    const char *trunc_warn[] = {w[0], NULL};
    expect_resume(dir, 20, trunc_warn);

    /* a bit flip in the data: the checksum catches it */
    save_three(dir);
    poke_float(f30, "params/image_net.0.dense.W", 5, 1.5f);
    snprintf(w[0], sizeof w[0], "warning: skipping %s: the checksum of /params does not match",
             f30);
    const char *flip_warn[] = {w[0], NULL};
    expect_resume(dir, 20, flip_warn);

    /* corrupt latest: the newest file by step */
    save_three(dir);
    write_text(dir, "latest", "garbage\n");
    snprintf(w[0], sizeof w[0], "warning: %s/latest is corrupt", dir);
    const char *latest_warn[] = {w[0], NULL};
    expect_resume(dir, 30, latest_warn);

    /* dangling latest, and the newest file truncated too: two warnings, then 20 */
    write_text(dir, "latest", "ckpt-00000099.h5\n");
    assert_int_equal(truncate(f30, 1000), 0);
    snprintf(w[0], sizeof w[0], "warning: %s/latest names %s/ckpt-00000099.h5, which does "
             "not exist", dir, dir);
    snprintf(w[1], sizeof w[1], "warning: skipping %s: ", f30);
    const char *two_warn[] = {w[0], w[1], NULL};
    expect_resume(dir, 20, two_warn);

    /* latest's target comes first even when a newer file exists */
    save_three(dir);
    write_text(dir, "latest", "ckpt-00000020.h5\n");
    expect_resume(dir, 20, NULL);
    /* and a newer one is taken when latest's target is broken */
    assert_int_equal(truncate(f20, 0), 0);
    snprintf(w[0], sizeof w[0], "warning: skipping %s: ", f20);
    const char *older_warn[] = {w[0], NULL};
    expect_resume(dir, 30, older_warn);
}

static void test_resume_auto_nothing_or_nothing_intact(void **state) {
    fixture *fx = *state;
    char dir[256], path[1024] = "x", err[2048] = "";
    jt_params p;
    build(&p, MODEL_BASE);
    fill(&p, 23);
    jt_ckpt_state st = {.step = 999};
    /* no folder, an empty folder, a folder with other files only: start fresh */
    snprintf(dir, sizeof dir, "%s/none", fx->dir);
    expect_resume(dir, 0, NULL);
    expect_resume(fx->dir, 0, NULL);
    write_text(fx->dir, "notes.txt", "x");
    write_text(fx->dir, ".ckpt-00000005.h5.tmp.somehost.12", "partial");
    expect_resume(fx->dir, 0, NULL);

    /* checkpoints exist but none loads: exit code 4, nothing changed */
    snprintf(dir, sizeof dir, "%s/run", fx->dir);
    save_three(dir);
    for (int s = 10; s <= 30; s += 10) {
        char f[512];
        snprintf(f, sizeof f, "%s/ckpt-%08d.h5", dir, s);
        assert_int_equal(truncate(f, 4000), 0);
    }
    float *snap = snapshot(&p);
    capture_begin(dir);
    assert_int_equal(jt_ckpt_find_resumable(dir, &p, &st, 1, path, sizeof path, err, sizeof err),
                     JT_ECKPT);
    char *out = capture_end();
    assert_string_equal(path, "");
    assert_unchanged(&p, snap);
    assert_int_equal(st.step, 999);
    assert_null(st.config_text);
    if (!strstr(err, dir) || !strstr(err, "none of the 3 checkpoint files") ||
        !strstr(err, "ckpt-00000010.h5"))
        fail_msg("error '%s'", err);
    for (int s = 10; s <= 30; s += 10) {
        char f[512];
        snprintf(f, sizeof f, "skipping %s/ckpt-%08d.h5", dir, s);
        if (!strstr(out, f)) fail_msg("stderr '%s' lacks '%s'", out, f);
    }
    free(out);

    /* only a corrupt latest */
    snprintf(dir, sizeof dir, "%s/only", fx->dir);
    mkdir(dir, 0777);
    write_text(dir, "latest", "ckpt-00000040.h5\n");
    assert_int_equal(jt_ckpt_find_resumable(dir, &p, &st, 0, path, sizeof path, err, sizeof err),
                     JT_ECKPT);
    assert_non_null(strstr(err, "ckpt-00000040.h5"));
    /* not a folder */
    snprintf(dir, sizeof dir, "%s/notes.txt", fx->dir);
    assert_int_equal(jt_ckpt_find_resumable(dir, &p, &st, 0, path, sizeof path, err, sizeof err),
                     JT_ECKPT);
    assert_non_null(strstr(err, strerror(ENOTDIR)));
    assert_unchanged(&p, snap);
    free(snap);
    jt_params_free(&p);
}

/* Temp files: the dead writer's go (this host, no such pid; or an hour old), live ones stay. */
static void test_clean_stale_temp_files(void **state) {
    fixture *fx = *state;
    char host[256] = "", name[8448];
    assert_int_equal(gethostname(host, sizeof host - 1), 0);
    long pid_max = 0;
    FILE *f = fopen("/proc/sys/kernel/pid_max", "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%ld", &pid_max), 1);
    fclose(f);
    long dead = pid_max + 1, live = (long)getpid();
    assert_int_equal(kill((pid_t)dead, 0), -1);
    assert_int_equal(errno, ESRCH);
    static const struct {
        const char *fmt;
        int host, pid; /* 1: this host; pid 1: live, 2: dead */
        int old, gone;
    } files[] = {
        {".ckpt-00000020.h5.tmp.%s.%ld", 1, 1, 0, 0},  /* this very process */
        {".ckpt-00000030.h5.tmp.%s.%ld", 1, 2, 0, 1},  /* dead writer on this host */
        {".latest.tmp.%s.%ld", 1, 2, 0, 1},            /* its latest temp */
        {".best.tmp.%s.%ld", 1, 2, 0, 1},              /* its best temp */
        {".best.tmp.%s.%ld", 1, 1, 0, 0},              /* this process's best temp */
        {".ckpt-00000030.h5.tmp.node7.example.org.%ld", 0, 2, 0, 0}, /* other host, fresh */
        {".ckpt-00000040.h5.tmp.node7.example.org.%ld", 0, 1, 1, 1}, /* other host, old */
        {".ckpt-00000050.h5.tmp.%ld", 0, 2, 0, 0},     /* no host (older jtrain), fresh */
        {".ckpt-00000060.h5.tmp.%ld", 0, 2, 1, 1},     /* no host, old */
        {".hidden.tmp.%s.%ld", 1, 2, 1, 0},            /* not a checkpoint's temp file */
        {"ckpt-00000010.h5", 0, 0, 1, 0},              /* a checkpoint, however old */
        {"notes.txt", 0, 0, 1, 0},
    };
    size_t nf = sizeof files / sizeof files[0];
    char names[16][512];
    for (size_t i = 0; i < nf; i++) {
        long pid = files[i].pid == 1 ? live : dead;
        if (files[i].host)
            snprintf(names[i], sizeof names[i], files[i].fmt, host, pid);
        else if (files[i].pid)
            snprintf(names[i], sizeof names[i], files[i].fmt, pid);
        else
            snprintf(names[i], sizeof names[i], "%s", files[i].fmt);
        write_text(fx->dir, names[i], "x");
        if (files[i].old) {
            struct timespec t[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
            snprintf(name, sizeof name, "%s/%s", fx->dir, names[i]);
            assert_int_equal(utimensat(AT_FDCWD, name, t, 0), 0);
        }
    }
    assert_int_equal(jt_ckpt_clean_stale(fx->dir), 5);
    for (size_t i = 0; i < nf; i++)
        if (exists(fx->dir, names[i]) != !files[i].gone)
            fail_msg("%s should %s", names[i], files[i].gone ? "be gone" : "stay");
    assert_int_equal(jt_ckpt_clean_stale(fx->dir), 0);
    snprintf(name, sizeof name, "%s/none", fx->dir);
    assert_int_equal(jt_ckpt_clean_stale(name), 0);
}

static void test_scan_and_remove_all(void **state) {
    fixture *fx = *state;
    char dir[256], err[1024] = "";
    jt_ckpt_dir_info info;
    snprintf(dir, sizeof dir, "%s/run", fx->dir);
    assert_int_equal(jt_ckpt_scan(dir, &info, err, sizeof err), JT_OK); /* no folder */
    assert_int_equal(info.n_ckpt, 0);
    assert_int_equal(info.has_latest, 0);
    assert_int_equal(jt_ckpt_remove_all(dir, err, sizeof err), JT_OK);
    save_three(dir);
    write_text(dir, ".ckpt-00000040.h5.tmp.somehost.12", "partial");
    write_text(dir, ".latest.tmp.somehost.12", "ckpt-00000040.h5\n");
    write_text(dir, ".best.tmp.somehost.12", "ckpt-00000040.h5\n");
    write_text(dir, "best", "ckpt-00000010.h5\n");
    write_text(dir, "status", "running\n");
    write_text(dir, "notes.txt", "mine\n");
    write_text(dir, "ckpt-best.h5", "mine too\n");
    write_text(dir, "ckpt-7.h5", "not a name jtrain writes\n");
    char sub[512];
    snprintf(sub, sizeof sub, "%s/eval", dir);
    assert_int_equal(mkdir(sub, 0777), 0);
    assert_int_equal(jt_ckpt_scan(dir, &info, err, sizeof err), JT_OK);
    assert_int_equal(info.n_ckpt, 3);
    assert_true(info.newest_step == 30);
    assert_int_equal(info.has_latest, 1);
    assert_int_equal(jt_ckpt_remove_all(dir, err, sizeof err), JT_OK);
    assert_int_equal(count_entries(dir), 4);
    assert_true(exists(dir, "notes.txt") && exists(dir, "ckpt-best.h5") &&
                exists(dir, "ckpt-7.h5") && exists(dir, "eval"));
    assert_int_equal(jt_ckpt_scan(dir, &info, err, sizeof err), JT_OK);
    assert_int_equal(info.n_ckpt, 0);
    assert_int_equal(info.has_latest, 0);
    /* only a latest: still a used folder */
    write_text(dir, "latest", "ckpt-00000010.h5\n");
    assert_int_equal(jt_ckpt_scan(dir, &info, err, sizeof err), JT_OK);
    assert_int_equal(info.has_latest, 1);
    /* unreadable folder: the error names it (root reads anything: use a file instead) */
    snprintf(sub, sizeof sub, "%s/notes.txt", dir);
    assert_int_equal(jt_ckpt_scan(sub, &info, err, sizeof err), JT_ECKPT);
    assert_non_null(strstr(err, sub));
    assert_non_null(strstr(err, strerror(ENOTDIR)));
}

/* ---- the run state (/state/run) ---- */

static uint64_t fnv_bytes(uint64_t h, const void *data, size_t n) {
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* The root checksum as ckpt.h specifies it, computed independently of ckpt.c: the numbers, the
 * config text, and only when n_run > 0 "\nrun=" and the values as little-endian float64. */
static uint64_t spec_root_checksum(const jt_ckpt_state *st) {
    char head[512];
    int n = snprintf(head, sizeof head,
                     "world=%lld\nstep=%llu\nepoch=%llu\nepoch_step=%llu\nadam_t=%llu\nseed=%llu"
                     "\nconfig=",
                     (long long)st->world, (unsigned long long)st->step,
                     (unsigned long long)st->epoch, (unsigned long long)st->epoch_step,
                     (unsigned long long)st->adam_t, (unsigned long long)st->seed);
    uint64_t h = fnv_bytes(14695981039346656037ULL, head, (size_t)n);
    h = fnv_bytes(h, st->config_text, strlen(st->config_text));
    if (st->n_run == 0) return h;
    h = fnv_bytes(h, "\nrun=", 5);
    for (size_t i = 0; i < st->n_run; i++) {
        uint64_t u;
        memcpy(&u, &st->run[i], 8);
        for (int k = 0; k < 64; k += 8) h = (h ^ ((u >> k) & 0xffu)) * 1099511628211ULL;
    }
    return h;
}

static uint64_t read_u64_attr(const char *path, const char *name) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    assert_true(a >= 0);
    uint64_t v = 0;
    assert_true(H5Aread(a, H5T_NATIVE_UINT64, &v) >= 0);
    H5Aclose(a);
    assert_true(H5Fclose(f) >= 0);
    return v;
}

/* Overwrites value index of the 1-D data set name in path through the HDF5 API. */
static void poke_double(const char *path, const char *name, hsize_t index, double value) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t fs = H5Dget_space(d);
    hsize_t start[1] = {index}, count[1] = {1};
    assert_true(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0);
    hid_t ms = H5Screate_simple(1, count, NULL);
    assert_true(H5Dwrite(d, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, &value) >= 0);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    assert_true(H5Fclose(f) >= 0);
}

/* Replaces /state/run of path with a data set of file type type, rank 1 or 2, n values. */
static void replace_run(const char *path, hid_t type, int rank, hsize_t n) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, "state/run", H5P_DEFAULT) >= 0);
    hsize_t dims[2] = {rank == 1 ? n : 2, n / 2};
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, "state/run", type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    double *x = calloc(n ? n : 1, sizeof *x);
    assert_true(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    free(x);
    H5Dclose(d);
    H5Sclose(sp);
    assert_true(H5Fclose(f) >= 0);
}

static const double RUN[6] = {-0.0, 1e-300, 4.9406564584124654e-324, 0.1, -1.7976931348623157e308,
                              12345.678};

/* Saves step with the run state RUN (n values) into dir; returns the file's path in path. */
static void save_run(const char *dir, uint64_t step, size_t n, char *path, size_t len) {
    jt_params p;
    build(&p, MODEL_BASE);
    fill(&p, (uint32_t)step);
    char err[1024] = "";
    jt_ckpt_state st = make_state(step);
    st.run = (double *)RUN;
    st.n_run = n;
    if (jt_ckpt_save(dir, &p, &st, 0, path, len, err, sizeof err) != JT_OK)
        fail_msg("save step %llu: %s", (unsigned long long)step, err);
    jt_params_free(&p);
}

/* Loads and reads the state of path; both must give RUN[0..n) bit for bit. */
static void expect_run(const char *path, size_t n) {
    jt_params p;
    build(&p, MODEL_BASE);
    char err[1024] = "";
    jt_ckpt_state got = {0}, only = {0};
    if (jt_ckpt_load(path, &p, &got, err, sizeof err) != JT_OK) fail_msg("load: %s", err);
    if (jt_ckpt_read_state(path, &only, err, sizeof err) != JT_OK)
        fail_msg("read_state: %s", err);
    jt_ckpt_state *both[2] = {&got, &only};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(both[k]->n_run, n);
        if (n == 0) {
            assert_null(both[k]->run);
        } else {
            assert_non_null(both[k]->run);
            assert_memory_equal(both[k]->run, RUN, n * sizeof(double));
        }
        assert_string_equal(both[k]->config_text, CONFIG_TEXT);
        jt_ckpt_state_free(both[k]);
        assert_null(both[k]->run);
        assert_int_equal(both[k]->n_run, 0);
    }
    jt_params_free(&p);
}

static void test_run_state_round_trip(void **state) {
    fixture *fx = *state;
    char path[1024];
    save_run(fx->dir, 7, 6, path, sizeof path);
    /* float64 little-endian, 1-D, in /state; the root checksum as ckpt.h specifies */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, "state/run", H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    assert_true(H5Tequal(t, H5T_IEEE_F64LE) > 0);
    hsize_t dims[2] = {0, 0};
    assert_int_equal(H5Sget_simple_extent_dims(sp, dims, NULL), 1);
    assert_int_equal(dims[0], 6);
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);
    assert_true(H5Fclose(f) >= 0);
    jt_ckpt_state st = make_state(7);
    st.run = (double *)RUN;
    st.n_run = 6;
    assert_true(read_u64_attr(path, "checksum") == spec_root_checksum(&st));
    /* through the isolated reader (the default) and in this process */
    expect_run(path, 6);
    setenv("JTRAIN_H5_ISOLATE", "0", 1);
    expect_run(path, 6);
    unsetenv("JTRAIN_H5_ISOLATE");
    /* one value, and the largest allowed run state */
    save_run(fx->dir, 8, 1, path, sizeof path);
    expect_run(path, 1);
    jt_params p;
    build(&p, MODEL_BASE);
    fill(&p, 9);
    double *big = malloc(JT_CKPT_MAX_RUN * sizeof *big);
    for (size_t i = 0; i < JT_CKPT_MAX_RUN; i++) big[i] = (double)i * 0.5 - 3.0;
    st = make_state(9);
    st.run = big;
    st.n_run = JT_CKPT_MAX_RUN;
    char err[1024] = "";
    if (jt_ckpt_save(fx->dir, &p, &st, 0, path, sizeof path, err, sizeof err) != JT_OK)
        fail_msg("save: %s", err);
    jt_ckpt_state got = {0};
    if (jt_ckpt_load(path, &p, &got, err, sizeof err) != JT_OK) fail_msg("load: %s", err);
    assert_int_equal(got.n_run, JT_CKPT_MAX_RUN);
    assert_memory_equal(got.run, big, JT_CKPT_MAX_RUN * sizeof *big);
    jt_ckpt_state_free(&got);
    free(big);
    jt_params_free(&p);
}

/* No run state: no /state/run, n_run 0, and the root checksum of a file written before
 * /state/run existed (so such files keep verifying). */
static void test_run_state_absent(void **state) {
    fixture *fx = *state;
    char path[1024];
    save_run(fx->dir, 5, 0, path, sizeof path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t g = H5Gopen2(f, "state", H5P_DEFAULT);
    assert_true(g >= 0);
    assert_int_equal(H5Lexists(g, "run", H5P_DEFAULT), 0);
    H5Gclose(g);
    assert_true(H5Fclose(f) >= 0);
    jt_ckpt_state st = make_state(5);
    assert_true(read_u64_attr(path, "checksum") == spec_root_checksum(&st));
    expect_run(path, 0);
    setenv("JTRAIN_H5_ISOLATE", "0", 1);
    expect_run(path, 0);
    unsetenv("JTRAIN_H5_ISOLATE");
    /* a file with a run state whose /state/run was removed no longer verifies */
    save_run(fx->dir, 6, 3, path, sizeof path);
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0 && H5Ldelete(f, "state/run", H5P_DEFAULT) >= 0);
    assert_true(H5Fclose(f) >= 0);
    jt_params p;
    build(&p, MODEL_BASE);
    fill(&p, 1);
    expect_load_error(path, &p, "checksum of the root attributes");
    jt_params_free(&p);
}

static void expect_state_error(const char *path, const char *want) {
    jt_params p;
    build(&p, MODEL_BASE);
    fill(&p, 1);
    expect_load_error(path, &p, want);
    jt_ckpt_state st = {.step = 999};
    char err[1024] = "";
    assert_int_equal(jt_ckpt_read_state(path, &st, err, sizeof err), JT_ECKPT);
    if (!strstr(err, want) || !strstr(err, path)) fail_msg("error '%s' lacks '%s'", err, want);
    assert_int_equal(st.step, 999);
    assert_null(st.run);
    jt_params_free(&p);
}

/* Rewrites the root checksum of path for its current /state/run (st: the saved numbers). */
static void rehash_root(const char *path, jt_ckpt_state st) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, "state/run", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    st.n_run = (size_t)H5Sget_simple_extent_npoints(sp);
    st.run = malloc(st.n_run * sizeof *st.run + 8);
    assert_true(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, st.run) >= 0);
    H5Sclose(sp);
    H5Dclose(d);
    assert_true(H5Fclose(f) >= 0);
    poke_u64_attr(path, "checksum", spec_root_checksum(&st));
    free(st.run);
}

static void test_run_state_rejected(void **state) {
    fixture *fx = *state;
    char path[1024];
    /* a bit flip in /state/run: the root checksum catches it, loaded in either process */
    save_run(fx->dir, 7, 6, path, sizeof path);
    double x = RUN[1];
    uint64_t u;
    memcpy(&u, &x, 8);
    u ^= 1; /* the lowest mantissa bit */
    memcpy(&x, &u, 8);
    poke_double(path, "state/run", 1, x);
    expect_state_error(path, "checksum of the root attributes does not match");
    setenv("JTRAIN_H5_ISOLATE", "0", 1);
    expect_state_error(path, "checksum of the root attributes does not match");
    unsetenv("JTRAIN_H5_ISOLATE");
    /* -0.0 to +0.0 is a change too */
    save_run(fx->dir, 7, 6, path, sizeof path);
    poke_double(path, "state/run", 0, 0.0);
    expect_state_error(path, "checksum of the root attributes does not match");

    /* not finite, even with a matching checksum (as a foreign writer could make it) */
    static const struct {
        hsize_t index;
        double value;
        const char *want;
    } bad[] = {{2, NAN, "/state/run[2] is nan"},
               {5, INFINITY, "/state/run[5] is inf"},
               {0, -INFINITY, "/state/run[0] is -inf"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        save_run(fx->dir, 7, 6, path, sizeof path);
        poke_double(path, "state/run", bad[i].index, bad[i].value);
        rehash_root(path, make_state(7));
        expect_state_error(path, bad[i].want);
    }
    /* not a 1-D float data set, or too long */
    save_run(fx->dir, 7, 6, path, sizeof path);
    replace_run(path, H5T_STD_I32LE, 1, 6);
    expect_state_error(path, "/state/run is int32, expected float64 values");
    replace_run(path, H5T_IEEE_F64LE, 2, 6);
    expect_state_error(path, "/state/run has shape [2, 3], expected a 1-D list");
    replace_run(path, H5T_IEEE_F64LE, 1, JT_CKPT_MAX_RUN + 1);
    expect_state_error(path, "/state/run holds 65537 values, at most 65536");
    /* a float32 list is read as float64 (same checksum as the doubles it holds) */
    replace_run(path, H5T_IEEE_F32LE, 1, 4);
    rehash_root(path, make_state(7));
    jt_ckpt_state st = {0};
    char err[1024] = "";
    if (jt_ckpt_read_state(path, &st, err, sizeof err) != JT_OK) fail_msg("read: %s", err);
    assert_int_equal(st.n_run, 4);
    jt_ckpt_state_free(&st);
    /* a group called run */
    save_run(fx->dir, 7, 6, path, sizeof path);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0 && H5Ldelete(f, "state/run", H5P_DEFAULT) >= 0);
    hid_t g = H5Gcreate2(f, "state/run", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(g >= 0);
    H5Gclose(g);
    assert_true(H5Fclose(f) >= 0);
    expect_state_error(path, "/state/run is not a data set");
}

/* A run state with Inf/NaN is never written: exit code 5, latest stays. */
static void test_run_state_nonfinite_not_saved(void **state) {
    fixture *fx = *state;
    jt_params p;
    build(&p, MODEL_BASE);
    fill(&p, 3);
    save_ok(fx->dir, &p, 1, 3);
    double run[3] = {1.0, 2.0, INFINITY};
    jt_ckpt_state st = make_state(2);
    st.run = run;
    st.n_run = 3;
    char err[1024] = "", path[1024] = "x";
    assert_int_equal(jt_ckpt_save(fx->dir, &p, &st, 3, path, sizeof path, err, sizeof err),
                     JT_ENUMERIC);
    if (!strstr(err, "checkpoint at step 2 not written: state/run[2] is inf"))
        fail_msg("error '%s'", err);
    run[2] = 3.0;
    run[0] = NAN;
    assert_int_equal(jt_ckpt_save(fx->dir, &p, &st, 3, path, sizeof path, err, sizeof err),
                     JT_ENUMERIC);
    assert_non_null(strstr(err, "state/run[0] is nan"));
    assert_string_equal(path, "");
    assert_int_equal(count_entries(fx->dir), 2);
    assert_latest(fx->dir, "ckpt-00000001.h5");
    jt_params_free(&p);
}

/* ---- the best pointer ---- */

static void write_best_ok(const char *dir, const char *name) {
    char err[1024] = "";
    if (jt_ckpt_write_best(dir, name, err, sizeof err) != JT_OK)
        fail_msg("write_best %s: %s", name, err);
}

static void test_best_survives_pruning(void **state) {
    fixture *fx = *state;
    char dir[256], err[1024] = "", in[512], out[1024], want[1024];
    snprintf(dir, sizeof dir, "%s/run", fx->dir);
    jt_params p;
    build(&p, MODEL_BASE);
    fill(&p, 10);
    save_ok(dir, &p, 10, 2);
    write_best_ok(dir, "ckpt-00000010.h5");
    for (uint64_t s = 20; s <= 60; s += 10) {
        fill(&p, (uint32_t)s);
        save_ok(dir, &p, s, 2);
    }
    /* keep 2: the newest two, plus best's target */
    assert_int_equal(count_entries(dir), 5);
    assert_true(exists(dir, "ckpt-00000010.h5") && exists(dir, "ckpt-00000050.h5") &&
                exists(dir, "ckpt-00000060.h5") && exists(dir, "best"));
    assert_latest(dir, "ckpt-00000060.h5");
    /* resolve: a best file gives its target, by absolute and relative path */
    snprintf(in, sizeof in, "%s/best", dir);
    snprintf(want, sizeof want, "%s/ckpt-00000010.h5", dir);
    if (jt_ckpt_resolve(in, out, sizeof out, err, sizeof err) != JT_OK)
        fail_msg("resolve %s: %s", in, err);
    assert_string_equal(out, want);
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(jt_ckpt_resolve("best", out, sizeof out, err, sizeof err), JT_OK);
    assert_string_equal(out, "ckpt-00000010.h5");
    assert_int_equal(chdir(cwd), 0);
    /* the folder still means latest, and --resume auto takes the newest, not best */
    assert_int_equal(jt_ckpt_resolve(dir, out, sizeof out, err, sizeof err), JT_OK);
    snprintf(want, sizeof want, "%s/ckpt-00000060.h5", dir);
    assert_string_equal(out, want);
    expect_resume(dir, 60, NULL);
    /* best's target is what it was saved as */
    jt_params q, ref;
    build(&q, MODEL_BASE);
    build(&ref, MODEL_BASE);
    fill(&ref, 10);
    jt_ckpt_state st = {0};
    snprintf(in, sizeof in, "%s/best", dir);
    assert_int_equal(jt_ckpt_resolve(in, out, sizeof out, err, sizeof err), JT_OK);
    if (jt_ckpt_load(out, &q, &st, err, sizeof err) != JT_OK) fail_msg("load: %s", err);
    assert_int_equal(st.step, 10);
    assert_same_buffers(&q, &ref);
    jt_ckpt_state_free(&st);
    /* best moves to the newest: the old target goes with the next prune; keep still 2 */
    write_best_ok(dir, "ckpt-00000060.h5");
    save_ok(dir, &p, 70, 2);
    assert_int_equal(count_entries(dir), 4);
    assert_true(exists(dir, "ckpt-00000060.h5") && exists(dir, "ckpt-00000070.h5"));
    /* best on the older of the two kept: it survives being pushed out of the newest keep */
    save_ok(dir, &p, 80, 2);
    assert_int_equal(count_entries(dir), 5);
    assert_true(exists(dir, "ckpt-00000060.h5") && exists(dir, "ckpt-00000070.h5") &&
                exists(dir, "ckpt-00000080.h5"));
    /* a corrupt or dangling best protects nothing and is reported by resolve */
    write_text(dir, "best", "garbage\n");
    save_ok(dir, &p, 90, 2);
    assert_int_equal(count_entries(dir), 4);
    assert_false(exists(dir, "ckpt-00000060.h5"));
    assert_int_equal(jt_ckpt_resolve(in, out, sizeof out, err, sizeof err), JT_ECKPT);
    if (!strstr(err, in) || !strstr(err, "is corrupt")) fail_msg("error '%s'", err);
    write_text(dir, "best", "ckpt-00000060.h5\n");
    assert_int_equal(jt_ckpt_resolve(in, out, sizeof out, err, sizeof err), JT_ECKPT);
    assert_non_null(strstr(err, "ckpt-00000060.h5, which does not exist"));
    /* some other text file is neither */
    write_text(dir, "notes", "garbage\n");
    snprintf(in, sizeof in, "%s/notes", dir);
    assert_int_equal(jt_ckpt_resolve(in, out, sizeof out, err, sizeof err), JT_ECKPT);
    assert_non_null(strstr(err, "not an HDF5 file (nor a latest or best file naming one)"));
    unlink(in);
    /* write_best refuses what is not a checkpoint of dir, and leaves best alone */
    write_best_ok(dir, "ckpt-00000090.h5");
    assert_int_equal(jt_ckpt_write_best(dir, "ckpt-00000060.h5", err, sizeof err), JT_ECKPT);
    assert_non_null(strstr(err, "ckpt-00000060.h5"));
    assert_int_equal(jt_ckpt_write_best(dir, "../x/ckpt-00000090.h5", err, sizeof err),
                     JT_ECKPT);
    assert_int_equal(jt_ckpt_write_best(dir, "latest", err, sizeof err), JT_ECKPT);
    snprintf(in, sizeof in, "%s/best", dir);
    snprintf(want, sizeof want, "%s/ckpt-00000090.h5", dir);
    assert_int_equal(jt_ckpt_resolve(in, out, sizeof out, err, sizeof err), JT_OK);
    assert_string_equal(out, want);
    assert_int_equal(count_entries(dir), 4); /* no temp file left */
    /* --overwrite removes best too */
    assert_int_equal(jt_ckpt_remove_all(dir, err, sizeof err), JT_OK);
    assert_int_equal(count_entries(dir), 0);
    jt_params_free(&p);
    jt_params_free(&q);
    jt_params_free(&ref);
}

/* The watchdog's liveness counter moves while a checkpoint is written and read. */
static void test_progress_while_saving_and_loading(void **state) {
    fixture *fx = *state;
    jt_params p;
    build(&p, MODEL_BASE);
    fill(&p, 24);
    uint64_t c0 = jt_progress_count();
    save_ok(fx->dir, &p, 3, 3);
    uint64_t c1 = jt_progress_count();
    assert_true(c1 - c0 >= 3 * p.n_views + 1); /* every data set built, every chunk written */
    char path[512], err[1024];
    jt_ckpt_state st = {0};
    snprintf(path, sizeof path, "%s/ckpt-00000003.h5", fx->dir);
    assert_int_equal(jt_ckpt_load(path, &p, &st, err, sizeof err), JT_OK);
    assert_true(jt_progress_count() - c1 >= 3 * p.n_views); /* every view read */
    jt_ckpt_state_free(&st);
    jt_params_free(&p);
}

/* ---- a full disk, for real: a small tmpfs in a private user and mount namespace ---- */

/* statvfs as the checkpoint writer sees it: g_extra_free bytes more than the file system has,
 * to reproduce a statvfs that promises room the write then does not find (quotas, network
 * file systems, another writer). The real call otherwise. */
static unsigned long long g_extra_free;

int statvfs(const char *path, struct statvfs *buf) {
    static int (*real)(const char *, struct statvfs *);
    if (!real) {
        void *sym = dlsym(RTLD_NEXT, "statvfs");
        memcpy(&real, &sym, sizeof real); /* POSIX allows it; ISO C has no such cast */
    }
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    int rc = real(path, buf);
    if (rc == 0 && g_extra_free) {
        buf->f_bavail += g_extra_free / buf->f_frsize;
        buf->f_bfree += g_extra_free / buf->f_frsize;
    }
    return rc;
}

static int write_proc(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* In a forked child: a user namespace (so this works for root and normal users alike) with a
 * private mount namespace, and a tmpfs of size bytes mounted on mnt. 0, or -1 (printed). */
static int enter_small_disk(const char *mnt, size_t size) {
    char map[64], opts[64];
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
        fprintf(stderr, "unshare(CLONE_NEWUSER | CLONE_NEWNS): %s\n", strerror(errno));
        return -1;
    }
    snprintf(map, sizeof map, "0 %ld 1", (long)uid);
    if (write_proc("/proc/self/setgroups", "deny") != 0 ||
        write_proc("/proc/self/uid_map", map) != 0) {
        fprintf(stderr, "cannot map the user: %s\n", strerror(errno));
        return -1;
    }
    snprintf(map, sizeof map, "0 %ld 1", (long)gid);
    snprintf(opts, sizeof opts, "size=%zuk", size / 1024);
    if (write_proc("/proc/self/gid_map", map) != 0 ||
        mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", mnt, "tmpfs", 0, opts) != 0) {
        fprintf(stderr, "cannot mount a tmpfs on %s: %s\n", mnt, strerror(errno));
        return -1;
    }
    return 0;
}

/* Child-side checks: print and exit non-zero (cmocka's asserts belong to the parent). */
#define CHILD_CHECK(cond, ...)                                                                \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "line %d: ", __LINE__);                                           \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fprintf(stderr, "\n");                                                            \
            _exit(1);                                                                         \
        }                                                                                     \
    } while (0)

static int only_ckpts(const char *dir, uint64_t a, uint64_t b) {
    char name[64];
    snprintf(name, sizeof name, "ckpt-%08llu.h5", (unsigned long long)a);
    if (!exists(dir, name)) return 0;
    snprintf(name, sizeof name, "ckpt-%08llu.h5", (unsigned long long)b);
    return exists(dir, name) && exists(dir, "latest") && count_entries(dir) == 3;
}

static void latest_is(const char *dir, uint64_t step) {
    char err[1024] = "", path[1024], want[1024];
    CHILD_CHECK(jt_ckpt_latest(dir, path, sizeof path, err, sizeof err) == JT_OK, "%s", err);
    snprintf(want, sizeof want, "%s/ckpt-%08llu.h5", dir, (unsigned long long)step);
    CHILD_CHECK(strcmp(path, want) == 0, "latest is %s, expected %s", path, want);
}

enum { DISK_KEEP2, DISK_KEEP_ALL, DISK_ENOSPC_KEEP_ALL, DISK_ENOSPC_KEEP2 };

/* The scenario in a child on a tmpfs with room for about 2.5 checkpoints of MODEL_BIG. */
static void full_disk(void **state, int scenario) {
    fixture *fx = *state;
    char mnt[256], path[1024];
    jt_params p;
    build(&p, MODEL_BIG);
    fill(&p, 30);
    save_ok(fx->dir, &p, 1, 0); /* outside: measures the file */
    struct stat sb;
    snprintf(path, sizeof path, "%s/ckpt-00000001.h5", fx->dir);
    assert_int_equal(stat(path, &sb), 0);
    size_t disk = (size_t)sb.st_size * 5 / 2;
    snprintf(mnt, sizeof mnt, "%s/mnt", fx->dir);
    assert_int_equal(mkdir(mnt, 0777), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (enter_small_disk(mnt, disk) != 0) _exit(2);
        char err[1024] = "", dir[512];
        snprintf(dir, sizeof dir, "%s/run", mnt);
        jt_ckpt_state st = make_state(1);
        if (scenario == DISK_ENOSPC_KEEP_ALL || scenario == DISK_ENOSPC_KEEP2)
            g_extra_free = 100u << 20; /* statvfs promises 100 MiB more than there is */
        long keep = scenario == DISK_KEEP2 || scenario == DISK_ENOSPC_KEEP2 ? 2 : 0;
        for (uint64_t step = 1; step <= 12; step++) {
            fill(&p, (uint32_t)step);
            st.step = step;
            jt_status rc = jt_ckpt_save(dir, &p, &st, keep, NULL, 0, err, sizeof err);
            if (keep == 2 || step <= 2) {
                CHILD_CHECK(rc == JT_OK, "save %llu: %s", (unsigned long long)step, err);
                latest_is(dir, step);
                CHILD_CHECK(step == 1 || only_ckpts(dir, step - 1, step),
                            "after step %llu: not exactly the last two and latest",
                            (unsigned long long)step);
                continue;
            }
            /* keep all: the third does not fit, nothing is removed, latest stays */
            fprintf(stderr, "expected failure: %s\n", err);
            CHILD_CHECK(rc == JT_ECKPT, "save 3 on a full disk returned %d", (int)rc);
            CHILD_CHECK(strstr(err, dir) != NULL, "'%s' does not name %s", err, dir);
            if (scenario == DISK_KEEP_ALL)
                CHILD_CHECK(strstr(err, "need ") && strstr(err, " MiB free in ") &&
                            strstr(err, "keep 0"), "'%s' lacks the space needed", err);
            else
                CHILD_CHECK(strstr(err, strerror(ENOSPC)), "'%s' lacks ENOSPC", err);
            CHILD_CHECK(only_ckpts(dir, 1, 2), "the failed save left a file behind");
            latest_is(dir, 2);
            if (scenario == DISK_KEEP_ALL) { /* keep 3 keeps both others: same verdict */
                CHILD_CHECK(jt_ckpt_save(dir, &p, &st, 3, NULL, 0, err, sizeof err) == JT_ECKPT &&
                            strstr(err, "keep 3: no older checkpoint may be removed"),
                            "keep 3: %s", err);
                CHILD_CHECK(only_ckpts(dir, 1, 2), "keep 3 removed a file");
                latest_is(dir, 2);
            }
            jt_params q;
            build(&q, MODEL_BIG);
            snprintf(path, sizeof path, "%s/ckpt-00000002.h5", dir);
            CHILD_CHECK(jt_ckpt_load(path, &q, &st, err, sizeof err) == JT_OK, "%s", err);
            CHILD_CHECK(q.w[5] == (fill(&p, 2), p.w[5]), "checkpoint 2 changed");
            _exit(0);
        }
        if (scenario == DISK_KEEP2) {
            /* another file takes most of the rest: removing ckpt 11 would not be enough, so
             * it stays */
            snprintf(path, sizeof path, "%s/filler", mnt);
            size_t n = (size_t)sb.st_size * 45 / 100;
            char *junk = calloc(1, n);
            FILE *f = fopen(path, "wb");
            CHILD_CHECK(junk && f && fwrite(junk, 1, n, f) == n && fclose(f) == 0, "filler");
            st.step = 13;
            CHILD_CHECK(jt_ckpt_save(dir, &p, &st, 2, NULL, 0, err, sizeof err) == JT_ECKPT &&
                        strstr(err, "removing the 1 older checkpoint it allows would not be "
                               "enough, so none was"), "filler: %s", err);
            CHILD_CHECK(only_ckpts(dir, 11, 12), "a checkpoint was removed in vain");
            latest_is(dir, 12);
        }
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 2) fail_msg("cannot make a small file system (see above)");
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(count_entries(mnt), 0); /* the tmpfs was private to the child */
    jt_params_free(&p);
}

/* keep 2, room for 2.5 checkpoints: pruning before writing lets saves go on forever. */
static void test_full_disk_prunes_first(void **state) { full_disk(state, DISK_KEEP2); }
/* keep all: exit code 4 naming the space needed; latest and both files stay. */
static void test_full_disk_keep_all(void **state) { full_disk(state, DISK_KEEP_ALL); }
/* statvfs lies, ENOSPC mid-write, keep all: no temp file left, latest and both files stay. */
static void test_enospc_mid_write(void **state) { full_disk(state, DISK_ENOSPC_KEEP_ALL); }
/* statvfs lies, ENOSPC mid-write, keep 2: prune and retry once, saves go on. */
static void test_enospc_prunes_and_retries(void **state) { full_disk(state, DISK_ENOSPC_KEEP2); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_prunes_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latest_empty_and_missing_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latest_garbage_or_dangling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shape_mismatch_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_or_extra_view_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_data_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_checkpoint_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_into_a_file_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_keeps_previous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_mid_write_keeps_previous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readable_by_h5dump_and_h5py, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nonfinite_not_saved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_nonfinite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_auto_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_auto_nothing_or_nothing_intact, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_clean_stale_temp_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_and_remove_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_state_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_state_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_state_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_state_nonfinite_not_saved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_best_survives_pruning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_while_saving_and_loading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_prunes_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_keep_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enospc_mid_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enospc_prunes_and_retries, setup, teardown),
    };
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
