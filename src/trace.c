/* trace.c - the run's timeline as Chrome trace-event JSON, one file per rank (trace.h).
 *
 * Invariants: memory is one buffer of JT_TRACE_BUFFER events, written out whenever it fills;
 * the file is valid JSON once jt_trace_close has run (an interrupted run leaves an array without
 * its closing brackets, which chrome://tracing and Perfetto still read); names are escaped as
 * JSON strings, so any chain name is safe. */
#include "jtrain/trace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jtrain/config.h" /* JT_PATH_MAX */

typedef struct {
    char name[JT_TRACE_NAME_MAX];
    const char *arg_name;
    double ts, dur; /* microseconds */
    uint64_t step, arg;
    int tid;
} jt_trace_ev;

struct jt_trace {
    FILE *f;
    char path[JT_PATH_MAX];
    int rank;
    double t0;
    size_t n;      /* buffered events */
    int first;     /* nothing written into traceEvents yet */
    int failed;    /* a write failed (errno kept in err_no) */
    int err_no;
    jt_trace_ev ev[JT_TRACE_BUFFER];
};

int jt_trace_rank_path(const char *path, int rank, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base) dot = base + strlen(base); /* no extension (or a dot file) */
    int w = snprintf(out, cap, "%.*s.rank%d%s", (int)(dot - path), path, rank, dot);
    return w < 0 || (size_t)w >= cap ? -1 : 0;
}

static void put_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void check_io(jt_trace *t) {
    if (!t->failed && ferror(t->f)) {
        t->failed = 1;
        t->err_no = errno;
    }
}

static void flush_events(jt_trace *t) {
    for (size_t i = 0; i < t->n; i++) {
        const jt_trace_ev *e = &t->ev[i];
        fputs(t->first ? "\n" : ",\n", t->f);
        t->first = 0;
        fputs("{\"name\": ", t->f);
        put_string(t->f, e->name);
        fprintf(t->f, ", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.3f, \"dur\": %.3f, "
                "\"args\": {\"step\": %llu", t->rank, e->tid, e->ts, e->dur,
                (unsigned long long)e->step);
        if (e->arg_name) {
            fputs(", ", t->f);
            put_string(t->f, e->arg_name);
            fprintf(t->f, ": %llu", (unsigned long long)e->arg);
        }
        fputs("}}", t->f);
    }
    t->n = 0;
    check_io(t);
}

/* A metadata event ("M"): names the process or a thread. */
static void put_meta(jt_trace *t, const char *what, int tid, const char *name) {
    fputs(t->first ? "\n" : ",\n", t->f);
    t->first = 0;
    fprintf(t->f, "{\"name\": \"%s\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, \"args\": {\"name\": ",
            what, t->rank, tid);
    put_string(t->f, name);
    fputs("}}", t->f);
}

jt_status jt_trace_open(jt_trace **out, const char *path, int rank, double t0, char *err,
                        size_t errlen) {
    *out = NULL;
    jt_trace *t = jt_xcalloc(1, sizeof *t);
    if (jt_trace_rank_path(path, rank, t->path, sizeof t->path) != 0) {
        snprintf(err, errlen, "log.trace %s: the file name is too long", path);
        free(t);
        return JT_EUSAGE;
    }
    const char *slash = strrchr(t->path, '/');
    if (slash && slash != t->path) {
        char dir[JT_PATH_MAX];
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - t->path), t->path);
        jt_mkdir_p(dir); /* a failure shows in fopen */
    }
    t->f = fopen(t->path, "w");
    if (!t->f) {
        snprintf(err, errlen, "cannot write log.trace %s: %s", t->path, strerror(errno));
        free(t);
        return JT_EUSAGE;
    }
    t->rank = rank;
    t->t0 = t0;
    t->first = 1;
    fputs("{\"displayTimeUnit\": \"ms\", \"traceEvents\": [", t->f);
    char name[32];
    snprintf(name, sizeof name, "rank %d", rank);
    put_meta(t, "process_name", 0, name);
    put_meta(t, "thread_name", JT_TRACE_COMPUTE, "compute");
    put_meta(t, "thread_name", JT_TRACE_ALLREDUCE, "allreduce");
    check_io(t);
    *out = t;
    return JT_OK;
}

void jt_trace_event(jt_trace *t, int tid, const char *name, double t_begin, double t_end,
                    uint64_t step, const char *arg_name, uint64_t arg) {
    if (!t) return;
    if (t->n == JT_TRACE_BUFFER) flush_events(t);
    jt_trace_ev *e = &t->ev[t->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->tid = tid;
    e->ts = (t_begin - t->t0) * 1e6;
    e->dur = t_end > t_begin ? (t_end - t_begin) * 1e6 : 0;
    e->step = step;
    e->arg_name = arg_name;
    e->arg = arg;
}

jt_status jt_trace_close(jt_trace *t, char *err, size_t errlen) {
    if (!t) return JT_OK;
    flush_events(t);
    fputs("\n]}\n", t->f);
    check_io(t);
    if (fclose(t->f) != 0 && !t->failed) {
        t->failed = 1;
        t->err_no = errno;
    }
    jt_status st = JT_OK;
    if (t->failed) {
        snprintf(err, errlen, "writing log.trace %s failed: %s", t->path, strerror(t->err_no));
        st = JT_EUSAGE;
    }
    free(t);
    return st;
}
