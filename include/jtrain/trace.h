/* trace.h - a timeline of a training run in Chrome's trace-event JSON (`log.trace`), to open in
 * Perfetto (ui.perfetto.dev) or chrome://tracing.
 *
 * Each rank writes its own file: `log.trace` with ".rank<R>" before the extension (trace.json ->
 * trace.rank0.json, trace.rank1.json; no extension: trace.rank0). The file is
 * {"traceEvents": [...]} with one process per rank (pid = rank, named "rank R") and two
 * threads: tid 0 "compute" (data wait, forward, loss, backward per chain, gradient wait,
 * optimizer, checkpoint, eval) and tid 1 "allreduce" (each bucket from its start to the moment
 * its sum is back), as "X" complete events with ts/dur in microseconds since the run's common
 * origin (the same clock on every rank of a node, so the files line up when loaded together).
 * Why one file per rank: no communication at all, memory bounded by the buffer below on every
 * rank, and what a rank wrote survives the loss of another rank; merging is a concatenation of
 * the traceEvents arrays (README shows the one-liner).
 *
 * Memory: events are kept in a fixed buffer of JT_TRACE_BUFFER events and written out when it
 * fills, so a run of any length uses the same memory. When tracing is off the trainer holds a
 * NULL jt_trace and every call below is a NULL check. */
#ifndef JTRAIN_TRACE_H
#define JTRAIN_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "jtrain/common.h"

#define JT_TRACE_BUFFER 4096
#define JT_TRACE_NAME_MAX 80

enum { JT_TRACE_COMPUTE = 0, JT_TRACE_ALLREDUCE = 1 };

typedef struct jt_trace jt_trace;

/* The file rank writes for log.trace = path (see above) into out; -1 if it does not fit. */
int jt_trace_rank_path(const char *path, int rank, char *out, size_t cap);

/* Opens rank's file for path (creating its directory) and writes the header; t0 is the origin
 * of the time axis (jt_now seconds, the same on every rank). JT_EUSAGE with a message in err if
 * it cannot be written. The caller closes it with jt_trace_close. */
jt_status jt_trace_open(jt_trace **out, const char *path, int rank, double t0, char *err,
                        size_t errlen);

/* Records an "X" event `name` (copied; truncated to JT_TRACE_NAME_MAX - 1 bytes) on thread tid
 * from t_begin to t_end (jt_now seconds), with args {"step": step} and, if arg_name is not NULL,
 * {arg_name: arg} (arg_name is kept by pointer: a string literal). NULL-safe: does nothing
 * when t is NULL. */
void jt_trace_event(jt_trace *t, int tid, const char *name, double t_begin, double t_end,
                    uint64_t step, const char *arg_name, uint64_t arg);

/* Writes what is buffered and the closing brackets, and frees t. JT_EUSAGE with a message if a
 * write failed (the file is then incomplete). NULL-safe. */
jt_status jt_trace_close(jt_trace *t, char *err, size_t errlen);

#endif
