/* data.h - the HDF5 data set (DESIGN.md "Data set file"): validation and this rank's shard.
 *
 * Each rank reads one contiguous block of rows of each array it needs, with hyperslab reads,
 * once, into memory (never the whole file). Inputs are converted to float32 and normalised on
 * load: uint8 arrays are scaled by their `scale`/`offset` attributes (default 1/255, 0); arrays
 * with `mean`/`std` attributes (a scalar, or one value per entry of the last axis) become
 * (x - mean) / std. Labels are int32, -1 = "no label", checked against their `classes`
 * (or, for sequence labels [N, L], `vocab`) attribute. */
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
    void *data;         /* this rank's rows: float (inputs) or int32_t (labels), rows * row_elems */
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

/* Opens path, checks the file (exists, HDF5, jtrain_format == "dataset"), the split, and every
 * named array (exists, rank, dtype, same N, `classes` on labels), then reads rank's shard.
 * world == 0 reads no rows (metadata only: shapes and classes, for `summary`).
 * Fewer rows than ranks, and labels outside [-1, n_classes), are errors too.
 * Returns JT_EDATA with one message naming the file, array and what was wrong. */
jt_status jt_data_open(jt_split *s, const char *path, const char *split,
                       const char *const *inputs, size_t n_inputs,
                       const char *const *labels, size_t n_labels,
                       int rank, int world, char *err, size_t errlen);
/* The array called name, or NULL. */
jt_array *jt_data_find(const jt_split *s, const char *name);
/* NULL-safe; leaves s zeroed. */
void jt_data_close(jt_split *s);

/* Writes a synthetic data set with the arrays of AVFM (DESIGN.md; `jtrain synth`):
 * image uint8 [N,28,28], audio float32 [N,32,40], label/word/speaker/group int32 with `classes`,
 * caption int32 [N,L] with `vocab`, in splits train and test. Labels are learnable: label (and
 * group) from the image, word (== label) and speaker from the audio, caption spells the label. */
jt_status jt_synth_write(const char *path, size_t n_train, size_t n_test, uint64_t seed,
                         char *err, size_t errlen);

#endif
