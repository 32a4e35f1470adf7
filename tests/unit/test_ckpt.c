/* test_ckpt.c - checkpoints: bitwise round trip, latest and pruning, every rejection path of
 * load (shape, missing and extra views, corrupt data and attributes, not HDF5, wrong format)
 * leaving the model untouched, failed saves (not a directory, file size limit) and a crash
 * mid-write leaving the previous checkpoint loadable, and readability by h5dump and h5py. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
    char path[1024];
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
    char path[512];
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
    };
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
