/* params.h - the four flat float32 buffers (parameters, gradients, Adam m and v) and the table
 * of named views into them (docs/design.md "Rules of the house").
 *
 * Use: jt_params_init, jt_params_add for every tensor while the model is built, then
 * jt_params_alloc once; pointers from jt_params_w/g are stable after that. */
#ifndef JTRAIN_PARAMS_H
#define JTRAIN_PARAMS_H

#include <stddef.h>

#define JT_VIEW_NAME_MAX 128
#define JT_VIEW_MAX_DIMS 4
/* Floats after the last gradient that travel in the same allreduce: per-step metrics and flags
 * (train.c), so they cost no extra collective. */
#define JT_PARAMS_CTRL 64

typedef struct {
    char name[JT_VIEW_NAME_MAX]; /* e.g. "image_net.0.dense.W" */
    int ndim;
    size_t shape[JT_VIEW_MAX_DIMS];
    size_t offset; /* in floats, into each of the four buffers; multiple of 16 */
    size_t size;   /* product of shape */
} jt_view;

typedef struct {
    jt_view *views;
    size_t n_views, cap_views;
    size_t total; /* floats per buffer, including alignment padding (SIZE_MAX: overflowed) */
    float *w, *g, *m, *v; /* g has total + JT_PARAMS_CTRL floats */
} jt_params;

void jt_params_init(jt_params *p);
/* Registers a view; returns its index. Fatal if called after jt_params_alloc or on a duplicate name.
 * Sizes saturate (jt_size_mul): a view whose size overflows has size SIZE_MAX, and so does
 * total from then on. */
size_t jt_params_add(jt_params *p, const char *name, int ndim, const size_t *shape);
/* Allocates the four zeroed buffers (64-byte aligned). */
void jt_params_alloc(jt_params *p);
float *jt_params_w(const jt_params *p, size_t view);
float *jt_params_g(const jt_params *p, size_t view);
/* Number of real parameters (sum of view sizes, no padding). */
size_t jt_params_count(const jt_params *p);
/* Index of the view called name, or -1. */
long jt_params_find(const jt_params *p, const char *name);
/* NULL-safe. */
void jt_params_free(jt_params *p);

#endif
