/* data.h - the HDF5 data set (docs/data-format.md): validation and this rank's shard.
 *
 * Each rank reads one contiguous block of rows of each array it needs, in hyperslab reads of
 * whole chunks, once, into memory (never the whole file). Inputs are converted to float32 and
 * normalised on load, from the array's attributes (one pair or none; both pairs is an error):
 *   scale/offset  scalars: x * scale + offset; a missing scale is 1/255 for uint8, 1 for float32,
 *                 a missing offset 0;
 *   mean/std      each a scalar or one value per entry of the last axis (per band):
 *                 (x - mean) / std, in the units of the stored values (no 1/255 first);
 *   none          uint8: x / 255; float32: as stored.
 * Non-finite values after normalisation are an error. Labels are any integer type, read as
 * int32 (values outside int32 are an error, never clipped), -1 = "no label", checked against
 * their `classes` (class label [N]) or `vocab` (else `classes`; sequence label [N, L]) attribute:
 * an array of strings, variable- or fixed-length. */
#ifndef JTRAIN_DATA_H
#define JTRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "jtrain/common.h"
#include "jtrain/config.h"
#include "jtrain/layer.h"

typedef enum { JT_ARRAY_INPUT = 0, JT_ARRAY_LABEL = 1 } jt_array_role;

typedef struct {
    char name[JT_NAME_MAX];
    jt_array_role role;
    jt_shape shape;     /* per sample as in the file: (H, W), (C, H, W), (T, F), (S); labels:
                           ndim 0 for a class label [N], (L) for a sequence label [N, L] */
    size_t row_elems;   /* elements per row (1 for a class label) */
    size_t n_classes;   /* labels: number of entries of `classes` (or `vocab`) */
    char **classes;     /* labels: the class names (owned) */
    size_t n_labelled;  /* labels: rows of the WHOLE split (every shard) with at least one label
                           >= 0, the same on every rank; 0 when world == 0 (not counted) */
    void *data;         /* this rank's rows [begin, end), row-major: float (inputs, 64-byte
                           aligned) or int32_t (labels; a sequence label is (rows, L)), so row i of
                           the shard starts at i * row_elems; NULL when world == 0 */
} jt_array;

typedef struct {
    char path[JT_PATH_MAX];
    char split[JT_NAME_MAX];
    size_t n;           /* rows in the split */
    size_t begin, end;  /* this rank's shard: rows [begin, end) */
    jt_array *arrays;
    size_t n_arrays;
} jt_split;

/* Row where rank r's shard starts for n rows over world ranks (r == world gives n):
 * floor(r * n / world), so shards differ in size by at most one row. */
size_t jt_data_shard_begin(size_t n, int world, int r);

/* Opens path, checks the file (exists, HDF5, jtrain_format == "dataset", version == 1), the
 * split, and every named array (exists, rank, dtype, filters HDF5 can decode, attributes,
 * `classes`/`vocab` on labels), that all arrays of the split (named or not) have the same N and
 * that this rank's shard fits in memory, counts each label array's labelled rows over the whole
 * split (n_labelled; label arrays are read whole for this, in blocks), then reads rank's shard
 * rows [jt_data_shard_begin(n, world, rank), jt_data_shard_begin(n, world, rank + 1)).
 * s->arrays holds the inputs, then the labels, in the order given (a name repeated in the same
 * list is kept once). Labels are range-checked on this rank's shard only (errors name the global
 * row); the caller agrees on the verdict across ranks.
 * world == 0 reads no rows (metadata only: n, shapes and classes, for `summary`; begin == end ==
 * 0, every data NULL, label values unchecked and uncounted). Otherwise 0 <= rank < world
 * (checked, fatal). Fewer rows than ranks is an error.
 * The file is untrusted: it is read in a forked child (jt_h5_isolated, h5util.h) that sends
 * the result back, so a file that crashes or hangs libhdf5 is an error ("HDF5 crashed while
 * reading it"), not a dead rank. Does not print; HDF5 prints nothing.
 * Returns JT_OK, or JT_EDATA with one message in err naming the file, the array (/split/name),
 * what was expected and what was found, or HDF5's own reason (a missing filter, a truncated
 * file, a bad checksum); then s is zeroed. Free with jt_data_close. */
jt_status jt_data_open(jt_split *s, const char *path, const char *split,
                       const char *const *inputs, size_t n_inputs,
                       const char *const *labels, size_t n_labels,
                       int rank, int world, char *err, size_t errlen);
/* Bytes of one row of a in memory (inputs are float, labels int32_t: both 4 bytes). */
size_t jt_array_row_bytes(const jt_array *a);

/* The array called name, or NULL. */
jt_array *jt_data_find(const jt_split *s, const char *name);
/* NULL-safe; leaves s zeroed. */
void jt_data_close(jt_split *s);

/* Writes a synthetic data set with the arrays of AVFM (`jtrain synth`, docs/data-format.md):
 * image uint8 [N,28,28] (scale 1/255), audio float32 [N,32,40] (mean/std per band from train),
 * label (10) / word (10, == label) / speaker (16; -1 on rows i % 50 == 3) / group (4, a function
 * of label) int32 [N] with `classes`, caption int32 [N,11] with `vocab` ("<end>" = 0, then
 * characters; -1 padded), in splits train and test. Labels are learnable: label (and group)
 * from the image, word and speaker from the audio, caption spells the label's class name.
 * Deterministic: the same (seed, n_train, n_test) give a byte-identical file.
 * Returns JT_EUSAGE if a split would have 0 rows, JT_EDATA (message in err, partial file
 * removed) if the file cannot be created or written. */
jt_status jt_synth_write(const char *path, size_t n_train, size_t n_test, uint64_t seed,
                         char *err, size_t errlen);

#endif
