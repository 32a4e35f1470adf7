/* ckpt.h - checkpoints (DESIGN.md "Checkpoint file"): HDF5, written by rank 0 only, atomically.
 *
 * <dir>/ckpt-<step, 8 digits>.h5 is written to a temporary file in dir (.ckpt-<step>.h5.tmp.<pid>),
 * fsync'd and renamed; then <dir>/latest (the newest complete file's name and a newline) is
 * replaced the same way; then all but the newest `keep` checkpoints are removed. Loading checks
 * every attribute, view shape and checksum before it touches the parameters.
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
 * Checksums are FNV-1a 64 (offset 14695981039346656037, prime 1099511628211):
 *   /params, /adam/m, /adam/v: attribute checksum over the section's data sets in bytewise name
 *     order, each as its name, one 0 byte, then its values as little-endian float32 bytes;
 *   root: attribute checksum over the text "world=W\nstep=S\nepoch=E\nepoch_step=ES\n
 *     adam_t=T\nseed=X\nconfig=" (decimal numbers) followed by the config text.
 *
 * Test-only hook: JTRAIN_TEST_CKPT_CRASH=mid-write makes jt_ckpt_save write about half of the
 * data sets into the temp file and _exit(9), to prove that a crash mid-write leaves latest and
 * the previous checkpoint intact. Load ignores temp files; save removes ones older than an hour. */
#ifndef JTRAIN_CKPT_H
#define JTRAIN_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "jtrain/common.h"
#include "jtrain/params.h"

typedef struct {
    uint64_t step;        /* optimizer steps taken */
    uint64_t epoch;       /* epoch of the next batch */
    uint64_t epoch_step;  /* index of the next batch within that epoch */
    uint64_t adam_t;      /* Adam's step count */
    uint64_t seed;        /* the run's seed: all RNG streams derive from it and the position */
    int64_t world;        /* ranks of the run that wrote it (information; any N may resume) */
    char *config_text;    /* the resolved config (owned) */
} jt_ckpt_state;

/* Writes checkpoint st->step of p (w, m, v) and st into dir (created with parents if missing),
 * updates latest and prunes to keep files: the new one and the keep-1 others with the highest
 * steps (keep <= 0: keep all).
 * path_out (may be NULL) receives the new file's path. Rank 0 only (the caller ensures it).
 * The file is built in memory first (about twice 3 * 4 bytes per parameter, briefly).
 * Failure (not a directory, permission, disk full, ...): JT_ECKPT, err names the path and the
 * system's reason, the temp file is removed and latest and older checkpoints are untouched.
 * Failing to remove an old checkpoint only prints a warning. */
jt_status jt_ckpt_save(const char *dir, const jt_params *p, const jt_ckpt_state *st, long keep,
                       char *path_out, size_t path_len, char *err, size_t errlen);
/* The path "<dir>/<name in latest>" of the newest complete checkpoint, or "" (JT_OK) if dir or
 * dir/latest does not exist. JT_ECKPT if latest is unreadable, does not hold a ckpt-N.h5 name,
 * or names a file that does not exist. */
jt_status jt_ckpt_latest(const char *dir, char *path_out, size_t path_len, char *err,
                         size_t errlen);
/* Reads only st (attributes and config text, root checksum verified) from the checkpoint at
 * path; st->config_text is allocated (free with jt_ckpt_state_free). On failure (JT_ECKPT, err
 * names the path) st is not changed. */
jt_status jt_ckpt_read_state(const char *path, jt_ckpt_state *st, char *err, size_t errlen);
/* Reads st and, after checking that every view of p is present with the same shape, that the
 * file has no view p lacks, and that all checksums match, p's w, m and v (p->g and the padding
 * between views are not touched). Nothing in p or st changes unless everything checks; errors
 * (JT_ECKPT) name the path and the section/view, e.g. "checkpoint X: params/a.W has shape
 * (10, 128), the model has (10, 64)". st->config_text is allocated. */
jt_status jt_ckpt_load(const char *path, jt_params *p, jt_ckpt_state *st, char *err,
                       size_t errlen);
/* Frees st->config_text and sets it to NULL. NULL-safe. */
void jt_ckpt_state_free(jt_ckpt_state *st);

/* TEMP STUB */
jt_status jt_ckpt_resolve(const char *path, char *out, size_t outlen, char *err, size_t errlen);
jt_status jt_ckpt_find_resumable(const char *dir, jt_params *p, jt_ckpt_state *st, int verbose,
                                 char *path_out, size_t path_len, char *err, size_t errlen);
int jt_ckpt_clean_stale(const char *dir);
int jt_ckpt_scan(const char *dir, unsigned long long *newest_step);
jt_status jt_ckpt_remove_all(const char *dir, char *err, size_t errlen);
#endif
