/* h5util.h - jtrain's HDF5 layer: every attribute and data set read and write with its type and
 * shape checks, type and dimension formatting, HDF5's error stack turned into a reason, and the
 * reading of an untrusted file in an isolated child process. data.c, ckpt.c and synth.c use it
 * and only open files, groups and objects themselves.
 *
 * Untrusted files: data sets and checkpoints come from users, and a crafted HDF5 file can crash
 * libhdf5 1.10.8 itself (out-of-bounds reads and writes while it decodes a variable-length
 * string's global heap object, endless loops) before any caller-side check could object. So
 * every read of an untrusted file runs in a forked child (jt_h5_isolated) that streams the result
 * back; a child that dies by a signal, exits without its verdict, or hangs becomes one error
 * naming the file; it never takes the rank down.
 *
 * Readers check an attribute's class, size and shape before HDF5 reads it, cap counts and
 * lengths (no allocation is sized by the file alone) and never read into a buffer HDF5 sizes.
 * On failure they return -1 and write what is wrong, without the file or object name, into
 * why ("is float32, expected strings", "cannot be read: <HDF5's reason>"); the caller adds the
 * file and object. Nothing here prints. */
#ifndef JTRAIN_H5UTIL_H
#define JTRAIN_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "jtrain/common.h"

#define JT_H5_MAX_RANK 32          /* H5S_MAX_RANK */
#define JT_H5_MAX_STRINGS (1u << 20) /* entries of a string-list attribute (classes, vocab) */
#define JT_H5_MAX_STRING (1u << 24)  /* bytes of one string (a checkpoint's config text) */
#define JT_H5_MAX_NUMBERS (1u << 20) /* values of a numeric attribute (mean, std) */

/* Turns off HDF5's automatic error printing on this thread (jtrain reports errors itself).
 * Idempotent; every function here that touches a file calls it. */
void jt_h5_quiet(void);

/* HDF5's own reason for the failure just recorded on this thread's error stack (call right
 * after the failed call: the next API call clears it): the innermost entry, skipping plugin
 * search noise, e.g. "truncated file: eof = 1000, sblock->base_addr = 0, stored_eof = 11584",
 * "required filter 'lzf' is not registered", "incorrect metadata checksum after all read
 * attempts"; a failed system call gives its strerror text ("No such file or directory").
 * Without an entry: errno's text if set, else "unknown HDF5 error". Returns buf. */
const char *jt_h5_reason(char *buf, size_t len);

/* Cleanup after a failure (closing handles) clears HDF5's error stack: save it first, restore
 * it after, so jt_h5_reason still sees the failure. restore accepts what save returned (even a
 * failed save) and consumes it. */
hid_t jt_h5_stack_save(void);
void jt_h5_stack_restore(hid_t saved);

/* "[100, 28, 28]" with brackets "[]", "(10, 64)" with "()"; "[]" for rank 0. */
void jt_h5_dims_str(const hsize_t *d, int rank, const char *brackets, char *buf, size_t len);
/* "uint8", "int64", "float32", "string", "compound", ... of a data type, for messages. */
void jt_h5_type_name(hid_t t, char *buf, size_t len);

/* Names of the objects of one kind (H5I_GROUP or H5I_DATASET) directly under loc,
 * ", "-separated and cut to len ("none" when there are none). */
void jt_h5_list_children(hid_t loc, H5I_type_t want, char *buf, size_t len);

/* ---------- attributes: reading ---------- */

/* 1 if obj has attribute name, 0 if not, -1 (why) if HDF5 cannot tell. */
int jt_h5_attr_exists(hid_t obj, const char *name, char *why, size_t whylen);
/* Reads attribute name (a string, or a rank-1 list of strings; variable or fixed length, any
 * padding, ASCII or UTF-8) into *out (n_out strings, each malloc'd, in a malloc'd array; free
 * with jt_h5_free_strings). At most max_n entries and JT_H5_MAX_STRING bytes each. Returns 1,
 * 0 when absent (*out NULL, *n_out 0), -1 (why) when it is no list of strings, too long, or
 * cannot be read. */
int jt_h5_attr_strings(hid_t obj, const char *name, size_t max_n, char ***out, size_t *n_out,
                       char *why, size_t whylen);
/* Exactly one string (a scalar or a list of one): *out malloc'd. 1, 0 (absent) or -1 (why). */
int jt_h5_attr_string(hid_t obj, const char *name, char **out, char *why, size_t whylen);
/* A number or rank-1 list of numbers (any integer or float type), as finite doubles: *out
 * malloc'd, at most max_n values, at least one. 1, 0 (absent) or -1 (why; "[2] is nan"). */
int jt_h5_attr_numbers(hid_t obj, const char *name, size_t max_n, double **out, size_t *n_out,
                       char *why, size_t whylen);
/* One integer (integer type, exactly one value) within [lo, hi] (compared exactly, whatever the
 * stored width and sign). 1, 0 (absent) or -1 (why: not an integer, out of range, ...). */
int jt_h5_attr_i64(hid_t obj, const char *name, int64_t lo, int64_t hi, int64_t *out, char *why,
                   size_t whylen);
int jt_h5_attr_u64(hid_t obj, const char *name, uint64_t *out, char *why, size_t whylen);
/* NULL-safe. */
void jt_h5_free_strings(char **s, size_t n);

/* ---------- attributes: writing ---------- */

/* Writes attribute name of n values (n == 0: a scalar) of mem_type from buf, stored as
 * file_type. 0, or -1 (the reason is on HDF5's error stack: jt_h5_reason). */
int jt_h5_attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, size_t n,
                     const void *buf);
/* Variable-length UTF-8 strings as h5py writes them (h5py reads str): n == 0 writes the scalar
 * s[0]. 0 or -1. */
int jt_h5_attr_write_strings(hid_t obj, const char *name, const char *const *s, size_t n);
int jt_h5_attr_write_string(hid_t obj, const char *name, const char *s);
int jt_h5_attr_write_u64(hid_t obj, const char *name, uint64_t v);

/* ---------- data sets ---------- */

typedef struct {
    int rank;
    hsize_t dims[JT_H5_MAX_RANK];
    H5T_class_t cls;
    size_t size;      /* bytes per element in the file */
    int is_unsigned;  /* integers */
    char type[48];    /* jt_h5_type_name */
    char shape[160];  /* jt_h5_dims_str with "[]" */
    hsize_t chunk_rows; /* rows (axis 0) of a chunk; 0 if not chunked */
} jt_h5_dset_info;

/* Type and shape of data set d. 0, or -1 (why). */
int jt_h5_dset_info_get(hid_t d, jt_h5_dset_info *info, char *why, size_t whylen);
/* 0 if d's storage can be read: its chunk shape (if chunked) has d's rank and no axis larger
 * than d's fixed maximum (HDF5 1.10 copies out of bounds when it is; a damaged file), and HDF5
 * can decode every mandatory filter of its pipeline. Else -1 and why: "has chunks of [2, 32,
 * 8232], larger than its shape [2, 32, 40] ...", or "is compressed with filter 'lzf' (id
 * 32000), which this HDF5 cannot decode (...): rewrite the file without it (...) or install the
 * filter's HDF5 plugin". An optional filter (h5py's lzf is one) may have been skipped for every
 * chunk, so it passes here and jt_h5_read_rows explains it if a read needs it. */
int jt_h5_dset_check_storage(hid_t d, char *why, size_t whylen);
/* Reads rows [begin, begin + rows) along axis 0 of d (all of every other axis) as mem_type into
 * buf, with transfer properties xfer (H5P_DEFAULT). 0, or -1 (why: "cannot be read: " and
 * HDF5's reason, or the missing-filter explanation of jt_h5_dset_check_storage). */
int jt_h5_read_rows(hid_t d, hid_t mem_type, hsize_t begin, hsize_t rows, hid_t xfer, void *buf,
                    char *why, size_t whylen);

/* Writes rows [begin, begin + rows) along axis 0 of d from buf (mem_type). 0, or -1 (the
 * reason is on HDF5's error stack). */
int jt_h5_write_rows(hid_t d, hid_t mem_type, hsize_t begin, hsize_t rows, const void *buf);

/* ---------- isolation ---------- */

/* The stream from the child to the parent of jt_h5_isolated. */
typedef struct jt_h5_pipe jt_h5_pipe;

/* The child's work: reads the file and sends its result with jt_h5_send. Returns a status and,
 * unless JT_OK, one message. */
typedef jt_status (*jt_h5_child_fn)(void *arg, jt_h5_pipe *out, char *err, size_t errlen);
/* The parent's side: takes the result with jt_h5_recv, in the order the child sent it, into its
 * own memory (kept in arg); when jt_h5_recv fails (the child stopped early: an error, a crash),
 * frees what it took and returns any non-OK status. Must not touch the file. */
typedef jt_status (*jt_h5_parent_fn)(void *arg, jt_h5_pipe *in, char *err, size_t errlen);

/* Child: sends n bytes to the parent. 0, or -1 if the parent is gone. */
int jt_h5_send(jt_h5_pipe *out, const void *buf, size_t n);
/* Parent: takes the next n bytes. 0, or -1 when the child sent no more (it finished, failed,
 * crashed or was stopped; jt_h5_isolated then says which). */
int jt_h5_recv(jt_h5_pipe *in, void *buf, size_t n);

/* Reads an untrusted file in a forked child process: child(arg, out) runs there and streams its
 * result, parent(arg, in) runs here and takes it; this process never calls HDF5 on the file (a
 * crafted file can crash libhdf5 1.10.8, overflow its heap, or make it loop for ever, and a
 * child that survived proves nothing about a second reader). The child ignores SIGINT/SIGTERM/
 * SIGUSR1/SIGHUP (the parent handles those), dies with the parent, dumps no core, allocates
 * from guarded blocks (guard_alloc.h: a heap overflow inside HDF5 faults at once), makes no MPI
 * call and ends with _exit. Returns:
 *   - the child's status and message if it failed cleanly (a data set or checkpoint error);
 *   - on_crash with err "LABEL: HDF5 crashed while reading it (SIGSEGV): the file is damaged or
 *     crafted" if it died by a signal or ended without a verdict (e.g. an AddressSanitizer
 *     report), or "LABEL: HDF5 did not finish reading it: stuck for N s in one step ..." if it
 *     neither called h5util nor sent a byte for JTRAIN_H5_SCAN_TIMEOUT seconds (default 20;
 *     then it is killed), or "LABEL: cannot start the isolated reader: <strerror>" if fork
 *     failed;
 *   - else parent's status (JT_OK: arg holds the result).
 * Calls jt_progress() while it waits. Callers read in-process instead when
 * jt_h5_isolation_on() is 0 (JTRAIN_H5_ISOLATE=0, for debugging). */
jt_status jt_h5_isolated(const char *label, jt_h5_child_fn child, jt_h5_parent_fn parent,
                         void *arg, jt_status on_crash, char *err, size_t errlen);
/* 0 when JTRAIN_H5_ISOLATE=0, else 1. */
int jt_h5_isolation_on(void);
/* 1 inside the child of jt_h5_isolated, else 0. */
int jt_h5_in_child(void);

#endif
