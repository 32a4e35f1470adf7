/* ckpt.h - checkpoints (docs/checkpoint.md): HDF5, written by rank 0 only, atomically,
 * and never harmful: what --resume auto loads is always intact and finite.
 *
 * <dir>/ckpt-<step, 8 digits>.h5 is built in memory, written to a temporary file in dir
 * (.ckpt-<step>.h5.tmp.<host>.<pid>), fsync'd and renamed; then <dir>/latest (the newest complete
 * file's name and a newline) is replaced the same way; then all but the newest `keep` checkpoints
 * and the one <dir>/best names (jt_ckpt_write_best, same format) are removed. A checkpoint whose
 * parameters or Adam moments are not all finite is never written. Loading checks every attribute,
 * view shape, checksum and value before it touches the parameters. A user may name a checkpoint by
 * its file, by a latest or best file, or by its run folder (its latest; jt_ckpt_resolve); --resume
 * auto takes the newest checkpoint that loads (jt_ckpt_find_resumable).
 *
 * File layout (format version 1; readable with h5dump and h5py):
 *   /                attributes jtrain_format = "checkpoint", version = 1 (int32), config (the
 *                    resolved config text), world (int64), step, epoch, epoch_step, adam_t, seed
 *                    (uint64), build_version (JT_VERSION), created (UTC ISO 8601, information
 *                    only), checksum (uint64). Strings are variable-length UTF-8 (h5py: str).
 *   /params/<view>   float32 data set with the view's shape, one per view ("image_net.0.dense.W")
 *   /adam/m/<view>, /adam/v/<view>   Adam's moments, same shapes; /adam has attribute t = adam_t
 *   /state           attributes epoch, epoch_step, seed: the data position and RNG state (every
 *                    RNG stream derives from (seed, purpose, epoch, step, ...), so these three
 *                    numbers are the whole RNG state); they must equal the root's copies
 *   /state/run       only when n_run > 0: float64 (little-endian) data set of shape (n_run,),
 *                    the trainer's run state (jt_ckpt_state.run); read as any 1-D float data
 *                    set of at most JT_CKPT_MAX_RUN finite values; absent: n_run 0
 * Checksums are FNV-1a 64 (offset 14695981039346656037, prime 1099511628211):
 *   /params, /adam/m, /adam/v: attribute checksum over the section's data sets in bytewise name
 *     order, each as its name, one 0 byte, then its values as little-endian float32 bytes;
 *   root: attribute checksum over the text "world=W\nstep=S\nepoch=E\nepoch_step=ES\n
 *     adam_t=T\nseed=X\nconfig=" (decimal numbers) followed by the config text and, only when
 *     n_run > 0, the text "\nrun=" and the n_run values as little-endian float64 bytes (so a
 *     file without /state/run has the checksum it had before /state/run existed).
 *
 * Test-only hook: JTRAIN_TEST_CKPT_CRASH=mid-write makes jt_ckpt_save write the first half of
 * the file into the temp file and _exit(9), to prove that a crash mid-write leaves latest and
 * the previous checkpoint intact. Load ignores temp files; jt_ckpt_clean_stale removes those of
 * dead writers. */
#ifndef JTRAIN_CKPT_H
#define JTRAIN_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "jtrain/common.h"
#include "jtrain/params.h"

/* One data set array the model reads (an input or a head's target), as training saw it: enough
 * to build the model without the data file (jtrain summary). */
typedef struct {
    char name[64];        /* JT_NAME_MAX */
    int32_t role;         /* 0 input, 1 label (jt_array_role) */
    int32_t ndim;         /* per-sample dims, 0..3 (a class label: 0; a sequence label: 1) */
    uint64_t shape[3];
    uint64_t n_classes;   /* labels: classes or vocabulary; inputs: 0 */
} jt_ckpt_array;
#define JT_CKPT_MAX_ARRAYS 16

typedef struct {
    uint64_t step;        /* optimizer steps taken */
    uint64_t epoch;       /* epoch of the next batch */
    uint64_t epoch_step;  /* index of the next batch within that epoch */
    uint64_t adam_t;      /* Adam's step count */
    uint64_t seed;        /* the run's seed: all RNG streams derive from it and the position */
    int64_t world;        /* ranks of the run that wrote it (information; any N may resume) */
    char *config_text;    /* the resolved config (owned) */
    /* The trainer's own state beyond the optimizer (train.c: loss-balancing windows, the best
     * metric, early-stopping counts), n_run float64 values saved as /state/run and covered by
     * the root checksum; n_run 0 = none (files written before it have none and load with
     * n_run 0). Owned (malloc) when loaded; on save, the caller's array. At most
     * JT_CKPT_MAX_RUN values. */
    double *run;
    size_t n_run;
    /* The data layout of the model's arrays (group /layout, attributes names, roles, ndims,
     * dims (ndims x 3, row-major), classes; covered by the root checksum; absent in files
     * written before it: n_layout 0). Owned (malloc) when loaded; on save, the caller's. */
    jt_ckpt_array *layout;
    size_t n_layout;
} jt_ckpt_state;
#define JT_CKPT_MAX_RUN 65536

/* Writes checkpoint st->step of p (w, m, v) and st into dir (created with parents if missing),
 * updates latest and prunes to keep files: the new one and the keep-1 others with the highest
 * steps (keep <= 0: keep all); then removes temp files of dead writers (jt_ckpt_clean_stale).
 * path_out (may be NULL) receives the new file's path. Rank 0 only (the caller ensures it).
 * The file is built in memory first (about twice 3 * 4 bytes per parameter, briefly) and
 * written in 64 MiB chunks, with jt_progress() after each chunk and each data set built.
 * Not finite: if any value of w, m, v or st->run is Inf or NaN, JT_ENUMERIC before anything is
 * written; err names the first one: "checkpoint at step S not written: params/trunk.0.dense.W[17]
 * is inf; the previous latest stays" (sections params, adam/m, adam/v, state/run; flat index in
 * the view). So the trainer must not keep Inf ("no best yet") in run: encode it finitely.
 * st->n_run > JT_CKPT_MAX_RUN (or run NULL with n_run > 0) is a programming error (jt_fatal).
 * Full disk: if dir's file system lacks the file's size plus a margin (statvfs), the older
 * checkpoints this save's pruning would remove anyway are removed first, oldest first and
 * latest's target last, but only if that makes enough room; else JT_ECKPT "checkpoint at step
 * S not written: need N MiB free in DIR, have M MiB (keep K ...)". If the write still fails
 * with ENOSPC or EDQUOT, the temp file is removed, what keep allows is pruned and the write
 * is retried once. So latest's target is removed before the new file is published only when
 * keep allows it to go anyway (keep 1): on a disk without room for two, a crash in between
 * leaves no checkpoint.
 * Other failures (not a directory, permission, ...): JT_ECKPT, err names the path and
 * strerror; the temp file is removed and latest and the checkpoints this save would keep are
 * untouched. Failing to remove an old checkpoint only prints a warning. */
jt_status jt_ckpt_save(const char *dir, const jt_params *p, const jt_ckpt_state *st, long keep,
                       char *path_out, size_t path_len, char *err, size_t errlen);
/* The path "<dir>/<name in latest>" of the newest complete checkpoint, or "" (JT_OK) if dir or
 * dir/latest does not exist. JT_ECKPT if latest is unreadable, does not hold a ckpt-N.h5 name,
 * or names a file that does not exist. */
jt_status jt_ckpt_latest(const char *dir, char *path_out, size_t path_len, char *err,
                         size_t errlen);
/* What a user may give wherever a checkpoint is expected (eval, summary, --resume PATH): a
 * checkpoint file (any HDF5 file: jt_ckpt_load judges it), a latest or best file (any non-HDF5 file
 * whose content names a ckpt-<step>.h5 beside it) or a run folder (its latest). out receives the
 * checkpoint file's path. JT_ECKPT naming path when it does not exist, is none of these, is a
 * folder without latest, or its latest is corrupt or names a missing file. Reads only; any rank may
 * call it. */
jt_status jt_ckpt_resolve(const char *path, char *out, size_t outlen, char *err, size_t errlen);
/* --resume auto: loads (jt_ckpt_load) the newest intact checkpoint of dir into p and st.
 * Candidates in order: latest's target, then every ckpt-<step>.h5 in dir by step, highest
 * first; the first that loads wins and path_out receives its path. When verbose, each skipped
 * candidate prints "jtrain: warning: skipping DIR/ckpt-00000030.h5: <reason>", and a corrupt or
 * dangling latest one warning line too. JT_OK with path_out "" when there is nothing to resume
 * (no dir, or neither latest nor a checkpoint file in it); JT_ECKPT when dir is not a
 * directory or cannot be listed, or when checkpoints exist but none loads (err: how many were
 * tried and the last reason); then p and st are unchanged. Deterministic and read-only: every
 * rank calls it on the same shared folder (verbose on rank 0 only). */
jt_status jt_ckpt_find_resumable(const char *dir, jt_params *p, jt_ckpt_state *st, int verbose,
                                 char *path_out, size_t path_len, char *err, size_t errlen);
/* Points dir/best at the checkpoint file name (a ckpt-<step>.h5 in dir, e.g. the one just
 * saved), replacing it atomically as latest is (temp file, fsync, rename). The checkpoint best
 * names is never removed by pruning (kept: the newest keep files, plus best's target if it is
 * not among them). name must be a ckpt-<step>.h5 that exists in dir (else JT_ECKPT).
 * jt_ckpt_resolve accepts a best file as it does latest; --overwrite (jt_ckpt_remove_all)
 * removes it; temp files of dead writers of it are cleaned like latest's. JT_ECKPT naming the
 * path and strerror on failure. Rank 0 only. */
jt_status jt_ckpt_write_best(const char *dir, const char *name, char *err, size_t errlen);

/* Removes the temp files of dead writers in dir (.ckpt-<step>.h5.tmp.*, .latest.tmp.* and
 * .best.tmp.*): those whose writer ran on this host and whose pid no longer exists, and any not
 * modified for an hour (a live writer's file changes at least every 64 MiB). Returns how many
 * it removed (0 if dir does not exist); failures only print a warning. Rank 0, at start; every
 * save calls it too. */
int jt_ckpt_clean_stale(const char *dir);

typedef struct {
    size_t n_ckpt;                  /* ckpt-<step>.h5 files in the folder */
    unsigned long long newest_step; /* the highest step among them (0 if none) */
    int has_latest;                 /* a latest file exists (valid or not) */
} jt_ckpt_dir_info;
/* What checkpoints dir holds, so a fresh run can refuse a used folder (n_ckpt or has_latest).
 * All zero (JT_OK) if dir does not exist; JT_ECKPT naming dir and strerror if it cannot be
 * listed. Reads only. */
jt_status jt_ckpt_scan(const char *dir, jt_ckpt_dir_info *info, char *err, size_t errlen);
/* For --overwrite: removes dir's latest and best (first), ckpt-<step>.h5 files, checkpoint temp
 * files (also latest's and best's) and a file called status; nothing else (other files, sub-folders
 * and dir itself stay). JT_OK if dir does not exist; JT_ECKPT naming the path and strerror at the
 * first failure. */
jt_status jt_ckpt_remove_all(const char *dir, char *err, size_t errlen);
/* Reads only st (attributes, config text and /state/run, root checksum verified) from the
 * checkpoint at path; st->config_text and st->run are allocated (free with jt_ckpt_state_free). On
 * failure (JT_ECKPT, err names the path) st is not changed. */
jt_status jt_ckpt_read_state(const char *path, jt_ckpt_state *st, char *err, size_t errlen);
/* Reads st and, after checking that every view of p is present with the same shape, that the
 * file has no view p lacks, that all checksums match and that every value is finite (older
 * jtrains wrote Inf/NaN), p's w, m and v (p->g and the padding between views are not
 * touched). Nothing in p or st changes unless everything checks; errors (JT_ECKPT) name the
 * path and the section/view, e.g. "checkpoint X: params/a.W has shape (10, 128), the model has
 * (10, 64)" or "checkpoint X: params/a.W[17] is inf (...)". Calls jt_progress() per view read.
 * st->config_text and st->run are allocated. */
jt_status jt_ckpt_load(const char *path, jt_params *p, jt_ckpt_state *st, char *err,
                       size_t errlen);
/* Frees st->config_text, st->run and st->layout and sets them to NULL (counts 0). NULL-safe. */
void jt_ckpt_state_free(jt_ckpt_state *st);

#endif
