/* params.c - four flat buffers (w, g, m, v) with one table of named views.
 * Invariant: views are registered before jt_params_alloc and never after; offsets are
 * multiples of 16 floats so every view starts 64-byte aligned. */
#include "jtrain/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jtrain/common.h"

void jt_params_init(jt_params *p) { memset(p, 0, sizeof *p); }

size_t jt_params_add(jt_params *p, const char *name, int ndim, const size_t *shape) {
    JT_CHECK(p->w == NULL, "jt_params_add(%s) after jt_params_alloc", name);
    JT_CHECK(ndim >= 1 && ndim <= JT_VIEW_MAX_DIMS, "view %s: bad ndim %d", name, ndim);
    JT_CHECK(strlen(name) < JT_VIEW_NAME_MAX, "view name too long: %s", name);
    JT_CHECK(jt_params_find(p, name) < 0, "duplicate parameter view %s", name);
    if (p->n_views == p->cap_views) {
        size_t cap = p->cap_views ? 2 * p->cap_views : 32;
        jt_view *v = realloc(p->views, cap * sizeof *v);
        JT_CHECK(v != NULL, "out of memory");
        p->views = v;
        p->cap_views = cap;
    }
    jt_view *v = &p->views[p->n_views];
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", name);
    v->ndim = ndim;
    v->size = 1;
    for (int i = 0; i < ndim; i++) {
        v->shape[i] = shape[i];
        v->size = jt_size_mul(v->size, shape[i]); /* saturates: refused before allocation */
    }
    v->offset = p->total;
    p->total = jt_size_add(p->total, v->size > SIZE_MAX - 15 ? SIZE_MAX : (v->size + 15) / 16 * 16);
    return p->n_views++;
}

void jt_params_alloc(jt_params *p) {
    JT_CHECK(p->w == NULL, "jt_params_alloc called twice");
    p->w = jt_alloc_floats(p->total);
    p->g = jt_alloc_floats(p->total + JT_PARAMS_CTRL);
    p->m = jt_alloc_floats(p->total);
    p->v = jt_alloc_floats(p->total);
}

float *jt_params_w(const jt_params *p, size_t view) {
    JT_CHECK(p->w && view < p->n_views, "bad view %zu", view);
    return p->w + p->views[view].offset;
}

float *jt_params_g(const jt_params *p, size_t view) {
    JT_CHECK(p->g && view < p->n_views, "bad view %zu", view);
    return p->g + p->views[view].offset;
}

size_t jt_params_count(const jt_params *p) {
    size_t n = 0;
    for (size_t i = 0; i < p->n_views; i++) n += p->views[i].size;
    return n;
}

long jt_params_find(const jt_params *p, const char *name) {
    for (size_t i = 0; i < p->n_views; i++)
        if (strcmp(p->views[i].name, name) == 0) return (long)i;
    return -1;
}

void jt_params_free(jt_params *p) {
    if (!p) return;
    free(p->views);
    jt_free_aligned(p->w);
    jt_free_aligned(p->g);
    jt_free_aligned(p->m);
    jt_free_aligned(p->v);
    memset(p, 0, sizeof *p);
}
