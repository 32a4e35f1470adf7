/* ckpt.h - checkpoints (DESIGN.md "Checkpoint file"): HDF5, written by rank 0 only, atomically.
 *
 * <dir>/ckpt-<step, 8 digits>.h5 is written to a temporary file in dir, flushed, fsync'd and
 * renamed; then <dir>/latest (the newest complete file's name) is replaced the same way; then
 * all but the newest `keep` checkpoints are removed. Loading checks every attribute, view shape
 * and checksum before it touches the parameters. */
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

/* Writes checkpoint st->step of p (w, m, v) and st into dir (created if missing), updates
 * latest and prunes to keep files. path_out (may be NULL) receives the new file's path. */
jt_status jt_ckpt_save(const char *dir, const jt_params *p, const jt_ckpt_state *st, long keep,
                       char *path_out, size_t path_len, char *err, size_t errlen);
/* The path of the newest complete checkpoint in dir (from `latest`), or "" if dir has none. */
jt_status jt_ckpt_latest(const char *dir, char *path_out, size_t path_len, char *err,
                         size_t errlen);
/* Reads only st (attributes and config text) from the checkpoint at path. */
jt_status jt_ckpt_read_state(const char *path, jt_ckpt_state *st, char *err, size_t errlen);
/* Reads st and, after checking that every view of p is present with the same shape and that
 * the checksums match, p's w, m and v. Nothing in p changes unless everything checks. */
jt_status jt_ckpt_load(const char *path, jt_params *p, jt_ckpt_state *st, char *err,
                       size_t errlen);
/* NULL-safe. */
void jt_ckpt_state_free(jt_ckpt_state *st);

#endif
