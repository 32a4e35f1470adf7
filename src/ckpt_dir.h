/* ckpt_dir.h - private to ckpt.c and ckpt_dir.c: what the checkpoint writer needs from the
 * folder side (file names, temp files, the latest pointer, pruning, free space).
 * jt_ckpt_write_best (the best pointer) is public: ckpt.h. The public contracts are in
 * include/jtrain/ckpt.h. */
#ifndef JTRAIN_CKPT_DIR_H
#define JTRAIN_CKPT_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "jtrain/common.h"

#define JT_CKPT_PATH_MAX 4096

/* Formats the message into err (if any) and returns JT_ECKPT. */
jt_status jt_ckpt_failf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 1 if path starts with the HDF5 signature (HDF5 errors silenced), else 0. */
int jt_ckpt_is_hdf5(const char *path);

/* 1 if name is exactly ckpt-<step, at least 8 digits>.h5 as jt_ckpt_save writes it. */
int jt_ckpt_parse_name(const char *name, unsigned long long *step);

/* "<dir>/.<name>.tmp.<host>.<pid>": the temp file this process writes name through. */
void jt_ckpt_temp_path(char *out, size_t len, const char *dir, const char *name);

/* fsync of a directory, so a rename in it is durable; file systems that cannot are not an
 * error. 0, or -1 with errno set. */
int jt_ckpt_fsync_dir(const char *dir);

/* Replaces dir/latest with "name\n" (temp file, fsync, rename, fsync dir); jt_ckpt_write_best
 * writes dir/best the same way. */
jt_status jt_ckpt_write_latest(const char *dir, const char *name, char *err, size_t errlen);

/* Before writing checkpoint step (bytes long) into dir: if dir's file system has less than bytes
 * plus a margin free, removes (oldest first, latest's target last) the checkpoints the save's
 * pruning would remove anyway (never best's target), until it has. JT_ECKPT naming the space needed
 * and available when that is not enough; JT_OK when the free space cannot be known. */
jt_status jt_ckpt_make_room(const char *dir, unsigned long long step, long keep, size_t bytes,
                            char *err, size_t errlen);

/* Removes every checkpoint the save of step would prune (keep: ckpt.h): all but step, the
 * keep-1 other newest and the one dir/best names; returns how many. */
size_t jt_ckpt_prune(const char *dir, unsigned long long step, long keep);

#endif
