/* synth.c - `jtrain synth`: a synthetic data set with the arrays of AVFM, for tests and smoke runs.
 *
 * Layout (docs/data-format.md): root attributes jtrain_format = "dataset", version = 1,
 * description; splits /train and /test, each with
 *   image   uint8   [N, 28, 28]  scale = 1/255, offset = 0
 *   audio   float32 [N, 32, 40]  mean/std float32[40] per mel band, computed on train, on both
 *   label   int32   [N]          10 item classes (Fashion-MNIST names)
 *   word    int32   [N]          == label, 10 spoken words ("zero" .. "nine")
 *   speaker int32   [N]          16 speakers; -1 (no label) on every row i with i % 50 == 3
 *   group   int32   [N]          4 coarse groups, a fixed function of label
 *   caption int32   [N, 11]      the item name spelled in characters, then the end token 0,
 *                                then -1 padding; attribute vocab ("<end>", the characters)
 * What makes it learnable: an image is its class's template (two blobs and a stripe pattern at
 * class-dependent places) shifted by up to 2 pixels, with random contrast and noise; an audio clip
 * is a word-dependent formant track in time-frequency plus a speaker-dependent spectral shape
 * (tilt and a resonance) plus noise. So label and group come from the image, word and speaker
 * from the audio.
 *
 * Row i of a split is drawn from its own stream (seed, JT_RNG_SYNTH, split, i): the file is a
 * function of (seed, n_train, n_test), row i does not depend on N, and datasets are written
 * without timestamps, so the same arguments give a byte-identical file. */
#include "jtrain/data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jtrain/h5util.h"
#include "jtrain/rng.h"

#define SY_H 28
#define SY_W 28
#define SY_T 32
#define SY_F 40
#define SY_CLASSES 10
#define SY_SPEAKERS 16
#define SY_GROUPS 4
#define SY_L 11         /* longest item name ("ankle boot") + end token */
#define SY_BLOCK 256    /* rows generated and written at a time */
#define SY_NARRAYS 7

static const char *const k_items[SY_CLASSES] = {"t-shirt", "trouser", "pullover", "dress",
                                                "coat",    "sandal",  "shirt",    "sneaker",
                                                "bag",     "ankle boot"};
static const char *const k_words[SY_CLASSES] = {"zero", "one", "two",   "three", "four",
                                                "five", "six", "seven", "eight", "nine"};
static const char *const k_groups[SY_GROUPS] = {"tops", "bottoms and dresses", "footwear",
                                                "bags"};
static const int k_group_of[SY_CLASSES] = {0, 1, 0, 1, 0, 2, 0, 2, 3, 2};

enum { A_IMAGE, A_AUDIO, A_LABEL, A_WORD, A_SPEAKER, A_GROUP, A_CAPTION };
static const char *const k_array_names[SY_NARRAYS] = {"image", "audio",  "label",  "word",
                                                      "speaker", "group", "caption"};

/* The caption vocabulary: "<end>" then every character of the item names, sorted. */
typedef struct {
    char names[64][2];
    const char *ptr[64];
    size_t n;
    int index_of[256];
} sy_vocab;

static void vocab_build(sy_vocab *v) {
    int used[256] = {0};
    for (int c = 0; c < SY_CLASSES; c++)
        for (const unsigned char *p = (const unsigned char *)k_items[c]; *p; p++) used[*p] = 1;
    v->ptr[0] = "<end>";
    v->n = 1;
    for (int ch = 0; ch < 256; ch++) {
        v->index_of[ch] = -1;
        if (!used[ch]) continue;
        v->names[v->n][0] = (char)ch;
        v->names[v->n][1] = '\0';
        v->ptr[v->n] = v->names[v->n];
        v->index_of[ch] = (int)v->n++;
    }
}

/* One generated row of every array. */
typedef struct {
    uint8_t image[SY_H * SY_W];
    float audio[SY_T * SY_F];
    int32_t label, word, speaker, group;
    int32_t caption[SY_L];
} sy_row;

/* Class template, before shift, contrast and noise: background 20, two Gaussian blobs and a
 * stripe pattern whose angle, period and place depend on the class. */
static double image_template(int c, double r, double q) {
    double a = 2.0 * 3.14159265358979 * c / SY_CLASSES;
    double r1 = 14 + 8 * sin(a), q1 = 14 + 8 * cos(a);
    double r2 = 14 - 6 * sin(2 * a + 1), q2 = 14 + 6 * cos(3 * a + 0.5);
    double d1 = (r - r1) * (r - r1) + (q - q1) * (q - q1);
    double d2 = (r - r2) * (r - r2) + (q - q2) * (q - q2);
    double th = 3.14159265358979 * c / SY_CLASSES;
    double stripes = cos((r * cos(th) + q * sin(th)) * 2 * 3.14159265358979 / (4.0 + c % 3));
    return 20 + 150 * exp(-d1 / 18.0) + 110 * exp(-d2 / 10.0) + 40 * stripes;
}

static void make_row(sy_row *row, uint64_t seed, int split, size_t i, const sy_vocab *v) {
    jt_rng r;
    jt_rng_seed(&r, seed, JT_RNG_SYNTH, (uint64_t)split, (uint64_t)i, 0);
    int c = (int)jt_rng_below(&r, SY_CLASSES);
    int spk = (int)jt_rng_below(&r, SY_SPEAKERS);
    row->label = c;
    row->word = c;
    row->group = k_group_of[c];
    row->speaker = i % 50 == 3 ? -1 : spk;

    /* image: template shifted by (dy, dx) in [-2, 2], contrast in [0.7, 1.3], noise sd 25 */
    int dy = (int)jt_rng_below(&r, 5) - 2, dx = (int)jt_rng_below(&r, 5) - 2;
    double gain = 0.7 + 0.6 * jt_rng_uniform(&r);
    for (int y = 0; y < SY_H; y++)
        for (int x = 0; x < SY_W; x++) {
            double val = gain * image_template(c, y - dy, x - dx) + 25.0 * jt_rng_normal(&r);
            val = val < 0 ? 0 : val > 255 ? 255 : val;
            row->image[y * SY_W + x] = (uint8_t)lrint(val);
        }

    /* audio (T, F): log energy -4, + speaker shape (tilt, resonance at band cs) on every frame,
     * + the word's formant track f(t) = f0 + slope * (t - 16) while voiced, + noise sd 0.6 */
    double tilt = -1.0 + 2.0 * (spk % 4) / 3.0;
    double cs = 2.0 + 2.3 * spk;
    double f0 = 4.0 + 3.2 * c, slope = 0.25 * ((c * 7) % 5 - 2);
    int on = 4 + (int)jt_rng_below(&r, 5) - 2, off = on + 22;
    for (int t = 0; t < SY_T; t++)
        for (int f = 0; f < SY_F; f++) {
            double e = -4.0 + tilt * (2.0 * f / (SY_F - 1) - 1.0) +
                       1.5 * exp(-(f - cs) * (f - cs) / 8.0);
            if (t >= on && t < off) {
                double ft = f0 + slope * (t - 16), d = f - ft;
                e += 2.5 * exp(-d * d / 4.5);
            }
            row->audio[t * SY_F + f] = (float)(e + 0.6 * jt_rng_normal(&r));
        }

    /* caption: the item name's characters, the end token 0, then -1 */
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)k_items[c]; *p; p++)
        row->caption[k++] = v->index_of[*p];
    row->caption[k++] = 0;
    while (k < SY_L) row->caption[k++] = -1;
}

static hid_t make_array(hid_t grp, const char *name, hid_t ftype, int rank, const hsize_t *dims) {
    hsize_t chunk[3];
    for (int i = 0; i < rank; i++) chunk[i] = dims[i];
    chunk[0] = dims[0] < SY_BLOCK ? dims[0] : SY_BLOCK;
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_deflate(dcpl, 4);
    hid_t d = H5Dcreate2(grp, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    hid_t saved = d < 0 ? jt_h5_stack_save() : H5I_INVALID_HID;
    H5Pclose(dcpl);
    H5Sclose(sp);
    jt_h5_stack_restore(saved);
    return d;
}

/* Writes one split; accumulates the audio's per-band sums into sum/sumsq when they are given. */
static herr_t write_split(hid_t file, const char *split, int split_id, size_t n, uint64_t seed,
                          const sy_vocab *v, double *sum, double *sumsq, hid_t *audio_out,
                          char *why, size_t whylen) {
    herr_t rc = -1;
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE), grp = H5I_INVALID_HID;
    hid_t d[SY_NARRAYS];
    for (int a = 0; a < SY_NARRAYS; a++) d[a] = H5I_INVALID_HID;
    sy_row *rows = jt_xcalloc(SY_BLOCK, sizeof *rows);
    uint8_t *img = jt_xcalloc((size_t)SY_BLOCK * SY_H * SY_W, 1);
    float *aud = jt_xcalloc((size_t)SY_BLOCK * SY_T * SY_F, sizeof *aud);
    int32_t *lab = jt_xcalloc((size_t)SY_BLOCK * (4 + SY_L), sizeof *lab);
    H5Pset_obj_track_times(gcpl, 0);
    grp = H5Gcreate2(file, split, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (grp < 0) goto cleanup;
    const hsize_t dim_img[3] = {n, SY_H, SY_W}, dim_aud[3] = {n, SY_T, SY_F}, dim_lab[1] = {n};
    const hsize_t dim_cap[2] = {n, SY_L};
    d[A_IMAGE] = make_array(grp, "image", H5T_STD_U8LE, 3, dim_img);
    d[A_AUDIO] = make_array(grp, "audio", H5T_IEEE_F32LE, 3, dim_aud);
    for (int a = A_LABEL; a <= A_GROUP; a++)
        d[a] = make_array(grp, k_array_names[a], H5T_STD_I32LE, 1, dim_lab);
    d[A_CAPTION] = make_array(grp, "caption", H5T_STD_I32LE, 2, dim_cap);
    for (int a = 0; a < SY_NARRAYS; a++)
        if (d[a] < 0) goto cleanup;

    for (size_t r0 = 0; r0 < n; r0 += SY_BLOCK) {
        size_t nr = n - r0 < SY_BLOCK ? n - r0 : SY_BLOCK;
        int32_t *lb = lab, *wd = lab + SY_BLOCK, *sp = lab + 2 * SY_BLOCK,
                *gr = lab + 3 * SY_BLOCK, *cap = lab + 4 * SY_BLOCK;
        for (size_t i = 0; i < nr; i++) {
            sy_row *row = &rows[i];
            make_row(row, seed, split_id, r0 + i, v);
            memcpy(img + i * SY_H * SY_W, row->image, sizeof row->image);
            memcpy(aud + i * SY_T * SY_F, row->audio, sizeof row->audio);
            memcpy(cap + i * SY_L, row->caption, sizeof row->caption);
            lb[i] = row->label;
            wd[i] = row->word;
            sp[i] = row->speaker;
            gr[i] = row->group;
            for (int k = 0; sum && k < SY_T * SY_F; k++) {
                sum[k % SY_F] += row->audio[k];
                sumsq[k % SY_F] += (double)row->audio[k] * row->audio[k];
            }
        }
        if (jt_h5_write_rows(d[A_IMAGE], H5T_NATIVE_UINT8, r0, nr, img) < 0 ||
            jt_h5_write_rows(d[A_AUDIO], H5T_NATIVE_FLOAT, r0, nr, aud) < 0 ||
            jt_h5_write_rows(d[A_LABEL], H5T_NATIVE_INT32, r0, nr, lb) < 0 ||
            jt_h5_write_rows(d[A_WORD], H5T_NATIVE_INT32, r0, nr, wd) < 0 ||
            jt_h5_write_rows(d[A_SPEAKER], H5T_NATIVE_INT32, r0, nr, sp) < 0 ||
            jt_h5_write_rows(d[A_GROUP], H5T_NATIVE_INT32, r0, nr, gr) < 0 ||
            jt_h5_write_rows(d[A_CAPTION], H5T_NATIVE_INT32, r0, nr, cap) < 0)
            goto cleanup;
    }

    const float scale = 1.0f / 255.0f, offset = 0.0f;
    const char *spk_names[SY_SPEAKERS];
    char spk_buf[SY_SPEAKERS][8];
    for (int s = 0; s < SY_SPEAKERS; s++) {
        snprintf(spk_buf[s], sizeof spk_buf[s], "spk%02d", s);
        spk_names[s] = spk_buf[s];
    }
    if (jt_h5_attr_write(d[A_IMAGE], "scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 0, &scale) < 0 ||
        jt_h5_attr_write(d[A_IMAGE], "offset", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 0, &offset) < 0 ||
        jt_h5_attr_write_strings(d[A_LABEL], "classes", k_items, SY_CLASSES) < 0 ||
        jt_h5_attr_write_strings(d[A_WORD], "classes", k_words, SY_CLASSES) < 0 ||
        jt_h5_attr_write_strings(d[A_SPEAKER], "classes", spk_names, SY_SPEAKERS) < 0 ||
        jt_h5_attr_write_strings(d[A_GROUP], "classes", k_groups, SY_GROUPS) < 0 ||
        jt_h5_attr_write_strings(d[A_CAPTION], "vocab", v->ptr, v->n) < 0)
        goto cleanup;
    *audio_out = d[A_AUDIO];
    d[A_AUDIO] = H5I_INVALID_HID; /* the caller adds mean/std once train is done */
    rc = 0;
cleanup:
    if (rc < 0) jt_h5_reason(why, whylen); /* before the closes below clear HDF5's stack */
    for (int a = 0; a < SY_NARRAYS; a++)
        if (d[a] >= 0) H5Dclose(d[a]);
    if (grp >= 0) H5Gclose(grp);
    H5Pclose(gcpl);
    free(rows);
    free(img);
    free(aud);
    free(lab);
    return rc;
}

jt_status jt_synth_write(const char *path, size_t n_train, size_t n_test, uint64_t seed,
                         char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (n_train == 0 || n_test == 0) {
        if (err) snprintf(err, errlen, "synth: --train and --test need at least 1 row each");
        return JT_EUSAGE;
    }
    jt_h5_quiet();
    jt_status st = JT_OK;
    sy_vocab v;
    vocab_build(&v);
    hid_t audio[2] = {H5I_INVALID_HID, H5I_INVALID_HID};
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t root = file < 0 ? H5I_INVALID_HID : H5Gopen2(file, "/", H5P_DEFAULT);
    if (root < 0) {
        char why[512];
        jt_h5_reason(why, sizeof why);
        if (file >= 0) H5Fclose(file);
        if (err) snprintf(err, errlen, "%s: cannot create the file: %s", path, why);
        return JT_EDATA;
    }
    double sum[SY_F] = {0}, sumsq[SY_F] = {0};
    float mean[SY_F], std[SY_F];
    const int version = 1;
    const char *format = "dataset";
    char desc[256];
    snprintf(desc, sizeof desc,
             "jtrain synth: synthetic AVFM (image, audio, label, word, speaker, group, caption), "
             "seed %llu, %zu train and %zu test rows", (unsigned long long)seed, n_train, n_test);
    const char *descp = desc;
    char why[512] = "";
    if (jt_h5_attr_write_strings(root, "jtrain_format", &format, 0) < 0 ||
        jt_h5_attr_write(root, "version", H5T_STD_I32LE, H5T_NATIVE_INT, 0, &version) < 0 ||
        jt_h5_attr_write_strings(root, "description", &descp, 0) < 0)
        goto fail;
    if (write_split(file, "train", 0, n_train, seed, &v, sum, sumsq, &audio[0], why,
                    sizeof why) < 0 ||
        write_split(file, "test", 1, n_test, seed, &v, NULL, NULL, &audio[1], why,
                    sizeof why) < 0)
        goto fail_why;
    double cnt = (double)n_train * SY_T;
    for (int f = 0; f < SY_F; f++) {
        double m = sum[f] / cnt, var = sumsq[f] / cnt - m * m;
        mean[f] = (float)m;
        std[f] = (float)sqrt(var > 1e-12 ? var : 1e-12);
    }
    for (int s = 0; s < 2; s++)
        if (jt_h5_attr_write(audio[s], "mean", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, SY_F, mean) < 0 ||
            jt_h5_attr_write(audio[s], "std", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, SY_F, std) < 0)
            goto fail;
    for (int s = 0; s < 2; s++) {
        H5Dclose(audio[s]);
        audio[s] = H5I_INVALID_HID;
    }
    H5Gclose(root);
    root = H5I_INVALID_HID;
    if (H5Fclose(file) < 0) {
        file = H5I_INVALID_HID;
        goto fail;
    }
    return JT_OK;
fail:
    jt_h5_reason(why, sizeof why); /* before the closes below clear HDF5's stack */
fail_why:
    st = JT_EDATA;
    if (err) snprintf(err, errlen, "%s: cannot write the synthetic data set: %s", path, why);
    for (int s = 0; s < 2; s++)
        if (audio[s] >= 0) H5Dclose(audio[s]);
    if (root >= 0) H5Gclose(root);
    if (file >= 0) H5Fclose(file);
    unlink(path);
    return st;
}
