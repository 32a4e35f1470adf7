/* train.c - the training run (docs/run.md): config -> data shard -> model ->
 * loop of (batch, forward, weighted losses, backward overlapped with the gradient sum, Adam) ->
 * checkpoints, logs and the final evaluation.
 *
 * Invariants: every rank executes the same sequence of collectives; whatever may fail on one
 * rank only is followed by jt_comm_agree so all ranks stop together with the same exit code;
 * per-step metrics and the stop flag ride in the gradient sum (JT_PARAMS_CTRL), so the step
 * costs no collective besides the gradient sum and the prefetched batch exchange.
 *
 * The gradient sum overlaps backward: the flat buffer is cut into buckets along chain
 * boundaries (plan_buckets), the same cut on every rank, and a bucket is started as soon as
 * backward has finished its last chain (chains finish from the last to the first), then
 * progressed from each later chain's callback; the step waits for it only before clipping and
 * Adam. Progress is driven from this thread, between chains: only the watchdog's thread uses
 * MPI besides it (on its own communicator), and in the shared-memory mode (comm.h) the sum is
 * memory copies that need a core anyway, so a progress thread would buy nothing. Environment switches (README): JTRAIN_ALLREDUCE =
 * auto|shm|mpi (comm.h modes), JTRAIN_BUCKET_KB (default 256 for shm, 0 for mpi; 0 = one
 * bucket after backward, no overlap). */
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jtrain/batch.h"
#include "jtrain/ckpt.h"
#include "jtrain/comm.h"
#include "jtrain/config.h"
#include "jtrain/optim.h"
#include "jtrain/progress.h"
#include "jtrain/schedule.h"
#include "jtrain/trace.h"
#include "jtrain/train.h"
#include "jtrain/watchdog.h"
#include "train_mt.h"

/* Smallest bucket of the overlapped gradient sum (JTRAIN_BUCKET_KB; shared-memory mode), and
 * the largest (MPI counts are int). */
#define JT_BUCKET_KB_DEFAULT 256
#define JT_BUCKET_MAX_FLOATS ((size_t)1 << 30)

/* Signals (README "Stopping"). SIGUSR1, SIGTERM and SIGINT only set g_stop_signal while the
 * training loop runs (g_in_loop): the flag rides in the next gradient sum, every rank finishes
 * that step, rank 0 writes a checkpoint and all exit 75. Outside the loop (start-up, the final
 * evaluation) there is nothing newer than the last checkpoint to save, so the handler ends the
 * process at once with exit 75, after rank 0 records it in the status file. A second SIGINT
 * while stopping (a user pressing Ctrl-C twice) ends the process at once with 130; repeated
 * SIGTERM/SIGUSR1 do not (SLURM may deliver both to one task while its checkpoint is written). */
static volatile sig_atomic_t g_stop_signal = 0;
static volatile sig_atomic_t g_in_loop = 0;

/* The run folder's status file (README "SLURM"), written by rank 0 only: one line
 * "running S", "stopped S SIGNAME", "finished S" or "failed S CODE", replaced atomically. The
 * paths are set once set-up knows checkpoint.dir, so the signal handler can write it too. */
static char g_status_path[JT_PATH_MAX + 16], g_status_tmp[JT_PATH_MAX + 32];
static volatile uint64_t g_saved_step = 0; /* the newest checkpoint's step (for the handler) */

/* Test-only fault injection (tests/mpi): JTRAIN_TEST_FAULT="RANK:WHEN:MODE" makes rank RANK,
 * when WHEN is reached (a step number: before that step; "init": right after initialisation,
 * before the replicas are compared; "eval": before the final evaluation), either hit an
 * internal error ("fatal": JT_CHECK, which aborts every rank), die without a word ("crash":
 * SIGKILL), perturb one parameter ("perturb") so the replicas differ, hang without progress as
 * in a stuck system call ("stall") or work slowly but with progress as a long checkpoint does
 * ("slow"); both of the latter last 3 x watchdog_s seconds (8 s with the watchdog off). Unset in
 * normal runs. */
static void test_fault(int rank, const char *when, float *w, double watchdog_s) {
    const char *spec = getenv("JTRAIN_TEST_FAULT");
    int frank;
    char fwhen[24], mode[16];
    if (!spec || sscanf(spec, "%d:%23[^:]:%15s", &frank, fwhen, mode) != 3) return;
    if (frank != rank || strcmp(fwhen, when) != 0) return;
    if (strcmp(mode, "fatal") == 0) JT_CHECK(0, "injected fault (JTRAIN_TEST_FAULT=%s)", spec);
    if (strcmp(mode, "crash") == 0) raise(SIGKILL);
    if (strcmp(mode, "perturb") == 0) w[0] += 1.0f;
    int slow = strcmp(mode, "slow") == 0;
    if (slow || strcmp(mode, "stall") == 0) {
        double end = jt_now() + (watchdog_s > 0 ? 3 * watchdog_s : 8);
        while (jt_now() < end) { /* 100 ms naps: the watchdog sees the progress counter only */
            nanosleep(&(struct timespec){0, 100000000L}, NULL);
            if (slow) jt_progress();
        }
    }
}

static void status_set(const char *state, uint64_t step, const char *word, int in_handler);

/* "failed S CODE": the run ends with the error st (rank 0). */
static void status_failed(uint64_t step, jt_status st) {
    char code[16];
    snprintf(code, sizeof code, "%d", (int)st);
    status_set("failed", step, code, 0);
}

static const char *signal_name(int sig) {
    return sig == SIGUSR1 ? "SIGUSR1" : sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT"
                                                                              : "SIGNAL";
}

/* Appends the decimal v to buf at *n (async-signal-safe). */
static void put_u64(char *buf, size_t *n, uint64_t v) {
    char d[24];
    int k = 0;
    do d[k++] = (char)('0' + v % 10); while ((v /= 10) > 0 && k < 24);
    while (k > 0) buf[(*n)++] = d[--k];
}

static void put_str(char *buf, size_t *n, const char *s) {
    while (*s) buf[(*n)++] = *s++;
}

/* Replaces the status file with line (n bytes): temp file + rename; async-signal-safe (open,
 * write, close and rename are), so the handler may call it. No-op where no path is set. */
static int status_write(const char *line, size_t n) {
    if (!g_status_path[0]) return 0;
    int fd = open(g_status_tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return -1;
    int ok = write(fd, line, n) == (ssize_t)n;
    ok &= close(fd) == 0;
    if (!ok || rename(g_status_tmp, g_status_path) != 0) {
        unlink(g_status_tmp);
        return -1;
    }
    return 0;
}

/* "STATE STEP[ WORD]\n" into the status file; a failure warns unless in the signal handler. */
static void status_set(const char *state, uint64_t step, const char *word, int in_handler) {
    char line[96];
    size_t n = 0;
    put_str(line, &n, state);
    line[n++] = ' ';
    put_u64(line, &n, step);
    if (word) {
        line[n++] = ' ';
        put_str(line, &n, word);
    }
    line[n++] = '\n';
    if (status_write(line, n) != 0 && !in_handler)
        jt_errorf("warning: cannot write %s: %s", g_status_path, strerror(errno));
}

/* Ends the process now with exit 75 (outside the loop: nothing newer than the last checkpoint
 * to save), after a line on stderr and, on rank 0, the status file. Async-signal-safe. */
static void stop_now(int sig) {
    char msg[200];
    size_t n = 0;
    put_str(msg, &n, "jtrain: stopped by ");
    put_str(msg, &n, signal_name(sig));
    put_str(msg, &n, " outside the training loop: nothing newer than the last checkpoint to "
                     "save (exit 75)\n");
    (void)!write(STDERR_FILENO, msg, n);
    status_set("stopped", g_saved_step, signal_name(sig), 1);
    _exit(JT_ESIGNAL);
}

static void on_signal(int sig) {
    if (g_stop_signal) { /* a stop is under way: only a second Ctrl-C cuts it short */
        if (sig == SIGINT && g_stop_signal == SIGINT) _exit(130);
        return;
    }
    g_stop_signal = sig;
    if (!g_in_loop) stop_now(sig);
}

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

typedef struct {
    jt_config cfg;
    char *cfg_text;
    jt_split train, eval;
    jt_model model;
    jt_batcher batcher;
    FILE *metrics;
    int rank, world;
    uint64_t step, epoch, epoch_step, adam_t, total_steps;
    uint64_t steps_per_epoch; /* optimizer steps: batches per epoch / train.accumulate, rounded up */
    jt_mt mt;                 /* balancing, per-head gradients, best and early stopping */
    double lr;                /* of the last optimizer step (train.schedule) */
    char last_ckpt[JT_PATH_MAX]; /* rank 0: the newest checkpoint written */
    jt_ui ui;                    /* rank 0's progress display */
    /* the gradient sum (plan_buckets) */
    jt_comm_reducer *red;
    size_t n_buckets;
    size_t *n_start;                       /* per chain: buckets to start once it is done */
    char (*bucket_name)[JT_TRACE_NAME_MAX]; /* "allreduce CHAIN+CHAIN" */
    size_t *bucket_floats;
    char (*bwd_name)[JT_TRACE_NAME_MAX];    /* per chain: "backward CHAIN" */
    /* timeline and per-run totals (seconds) */
    jt_trace *trace;
    double t_mark;  /* end of the last phase traced on the compute track */
    double t_data;  /* blocked in jt_batcher_next */
    double t_sum;   /* in the gradient sum's calls (starts in callbacks and the final wait) */
    double t_wait;  /* of which in the final wait */
} run;

static void run_free(run *r) {
    char err[JT_PATH_MAX + 128] = "";
    if (jt_trace_close(r->trace, err, sizeof err) != JT_OK) /* the run itself went fine */
        jt_errorf("%s (the trace is incomplete)", err);
    jt_comm_reducer_free(r->red);
    free(r->n_start);
    free(r->bucket_name);
    free(r->bucket_floats);
    free(r->bwd_name);
    jt_batcher_free(&r->batcher);
    jt_mt_free(&r->mt);
    jt_model_free(&r->model);
    jt_data_close(&r->train);
    jt_data_close(&r->eval);
    jt_config_free(&r->cfg);
    free(r->cfg_text);
    if (r->metrics) fclose(r->metrics);
    jt_watchdog_stop(); /* collective, as every path here is */
}

/* Points checkpoint.dir/best at path (rank 0), with a line naming the metric. */
static jt_status mark_best(run *r, const char *path, char *err, size_t errlen) {
    const char *slash = strrchr(path, '/');
    jt_status st = jt_ckpt_write_best(r->cfg.checkpoint.dir, slash ? slash + 1 : path, err, errlen);
    if (st == JT_OK)
        printf("best so far: %s %.6g at step %llu -> %s/best\n", r->cfg.checkpoint.best.text,
               r->mt.best.value, (unsigned long long)r->mt.best.step, r->cfg.checkpoint.dir);
    return st;
}

/* Saves a checkpoint on rank 0 (best: also point `best` at it); all ranks wait for its
 * verdict. */
static jt_status save_checkpoint(run *r, int best) {
    char err[2048] = "", path[JT_PATH_MAX] = "";
    jt_status st = JT_OK;
    if (r->rank == 0) {
        size_t n_run = jt_mt_state_size(&r->mt);
        double *state = jt_xcalloc(n_run, sizeof(double));
        jt_mt_state_save(&r->mt, state);
        jt_ckpt_array layout[JT_CKPT_MAX_ARRAYS];
        size_t n_layout = 0;
        for (size_t a = 0; a < r->train.n_arrays && n_layout < JT_CKPT_MAX_ARRAYS; a++) {
            const jt_array *x = &r->train.arrays[a];
            jt_ckpt_array *l = &layout[n_layout++];
            memset(l, 0, sizeof *l);
            snprintf(l->name, sizeof l->name, "%s", x->name);
            l->role = x->role == JT_ARRAY_LABEL;
            l->ndim = x->shape.ndim;
            for (int k = 0; k < x->shape.ndim && k < 3; k++) l->shape[k] = x->shape.d[k];
            l->n_classes = x->n_classes;
        }
        jt_ckpt_state cs = {r->step, r->epoch, r->epoch_step, r->adam_t, r->cfg.train.seed,
                            r->world, r->cfg_text, state, n_run, layout, n_layout};
        st = jt_ckpt_save(r->cfg.checkpoint.dir, &r->model.params, &cs, r->cfg.checkpoint.keep,
                          path, sizeof path, err, sizeof err);
        free(state);
        if (st == JT_OK) {
            jt_ui_clear(&r->ui);
            printf("checkpoint %s\n", path);
            snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", path);
            if (best) st = mark_best(r, path, err, sizeof err);
        }
        fflush(stdout);
    }
    return jt_comm_agree_report(st, err);
}

/* The saved data position only means the same batches under the same seed, global batch size
 * and split size (docs/design.md "N-invariant global batches": it does not depend on the
 * number of ranks). */
static jt_status check_position(const run *r, const char *path, const jt_ckpt_state *cs,
                                char *err, size_t errlen) {
    jt_config saved;
    char perr[512];
    if (jt_config_parse(&saved, cs->config_text, path, NULL, 0, perr, sizeof perr) != JT_OK) {
        snprintf(err, errlen, "checkpoint %s: its config does not parse: %s", path, perr);
        return JT_ECKPT;
    }
    long saved_batch = saved.train.batch_size;
    jt_config_free(&saved);
    if (cs->seed != r->cfg.train.seed || saved_batch != r->cfg.train.batch_size) {
        snprintf(err, errlen, "checkpoint %s was written with train.seed %llu and "
                 "train.batch_size %ld, the config says %llu and %ld: its data position would "
                 "mean other batches", path, (unsigned long long)cs->seed, saved_batch,
                 (unsigned long long)r->cfg.train.seed, r->cfg.train.batch_size);
        return JT_ECKPT;
    }
    if (cs->epoch_step >= r->batcher.steps_per_epoch) {
        snprintf(err, errlen, "checkpoint %s is at batch %llu of an epoch, but %s has only %zu "
                 "batches per epoch", path, (unsigned long long)cs->epoch_step, r->train.path,
                 r->batcher.steps_per_epoch);
        return JT_ECKPT;
    }
    return JT_OK;
}

/* --resume auto: the newest checkpoint in checkpoint.dir that loads intact (older ones are
 * tried when the newest is damaged, with a warning naming it; none at all: start fresh).
 * --resume PATH: that checkpoint (a file, a `latest` pointer or a run folder). Every rank reads
 * the file itself; the caller proves afterwards that all loaded the same parameters. */
static jt_status restore(run *r, const char *resume) {
    char err[2048] = "", path[JT_PATH_MAX] = "";
    jt_ckpt_state cs;
    memset(&cs, 0, sizeof cs);
    jt_status st;
    if (strcmp(resume, "auto") == 0) {
        st = jt_ckpt_find_resumable(r->cfg.checkpoint.dir, &r->model.params, &cs, r->rank == 0,
                                    path, sizeof path, err, sizeof err);
        if ((st = jt_comm_agree_report(st, err)) != JT_OK) goto done;
        if (!jt_comm_same_u64(path[0] ? 1 : 0)) {
            snprintf(err, sizeof err, "the ranks disagree on whether %s holds a checkpoint "
                     "(is it on a file system every rank sees?)", r->cfg.checkpoint.dir);
            st = jt_comm_agree_report(JT_ERANKS, err);
            goto done;
        }
        if (!path[0]) {
            if (r->rank == 0) printf("resume: no checkpoint in %s, starting fresh\n",
                                     r->cfg.checkpoint.dir);
            goto done;
        }
        if (!jt_comm_same_u64(cs.step)) {
            snprintf(err, sizeof err, "the ranks resumed from different checkpoints in %s (is "
                     "it on a file system every rank sees the same way?)", r->cfg.checkpoint.dir);
            st = jt_comm_agree_report(JT_ERANKS, err);
            goto done;
        }
    } else {
        st = jt_ckpt_resolve(resume, path, sizeof path, err, sizeof err);
        if ((st = jt_comm_agree_report(st, err)) != JT_OK) goto done;
        st = jt_comm_agree_report(jt_ckpt_load(path, &r->model.params, &cs, err, sizeof err), err);
        if (st != JT_OK) goto done;
    }
    st = jt_comm_agree_report(check_position(r, path, &cs, err, sizeof err), err);
    if (st == JT_OK) {
        char why[256] = "";
        if (jt_mt_state_load(&r->mt, cs.run, cs.n_run, why, sizeof why) != JT_OK)
            snprintf(err, sizeof err, "checkpoint %s: %s", path, why);
        st = jt_comm_agree_report(why[0] ? JT_ECKPT : JT_OK, err);
    }
    if (st == JT_OK) {
        r->step = cs.step;
        r->epoch = cs.epoch;
        r->epoch_step = cs.epoch_step;
        r->adam_t = cs.adam_t;
        g_saved_step = cs.step;
        if (r->rank == 0)
            printf("resumed from %s at step %llu (next: epoch %llu, batch %llu of %zu), written "
                   "by %lld rank%s\n", path, (unsigned long long)cs.step,
                   (unsigned long long)cs.epoch + 1, (unsigned long long)cs.epoch_step + 1,
                   r->batcher.steps_per_epoch, (long long)cs.world, cs.world == 1 ? "" : "s");
    }
done:
    jt_ckpt_state_free(&cs);
    return st;
}

/* `, "elapsed_s": E, "wall": W` into the metrics: seconds since this process's first step and
 * since the Unix epoch. */
static void json_times(run *r) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double elapsed, eta;
    jt_ui_times(&r->ui, r->step, &elapsed, &eta);
    fprintf(r->metrics, ", \"elapsed_s\": %.3f, \"wall\": %.3f", elapsed,
            (double)ts.tv_sec + ts.tv_nsec * 1e-9);
}

/* Evaluates data.eval into ev (global sums, the same on every rank) and prints it on rank 0.
 * Returns 0 when a signal cut it short (then ev is partial). */
static int print_eval(run *r, const char *split, jt_head_eval *ev) {
    jt_ui_clear(&r->ui);
    if (!jt_evaluate(&r->model, &r->eval, ev, &g_stop_signal)) {
        if (r->rank == 0) printf("eval %s step %llu: cut short by a signal\n", split,
                                 (unsigned long long)r->step);
        return 0;
    }
    if (r->rank != 0) return 1;
    printf("eval %s step %llu", split, (unsigned long long)r->step);
    if (r->metrics)
        fprintf(r->metrics, "{\"type\": \"eval\", \"split\": \"%s\", \"step\": %llu, \"heads\": {",
                split, (unsigned long long)r->step);
    jt_head_eval_print(&r->model, ev, stdout, r->metrics);
    printf("\n");
    fflush(stdout);
    if (r->metrics) {
        fprintf(r->metrics, "}");
        json_times(r);
        fprintf(r->metrics, "}\n");
        fflush(r->metrics);
    }
    return 1;
}

/* Rank 0: one progress line (and JSONL record) from the global sums of the last interval. */
static void log_train(run *r, const double *interval, double sps) {
    const jt_model *m = &r->model;
    jt_head_eval ev[JT_MODEL_MAX_ARRAYS];
    jt_head_eval_unpack(interval, m->n_heads, ev);
    double L[JT_MODEL_MAX_ARRAYS];
    int has[JT_MODEL_MAX_ARRAYS];
    for (size_t h = 0; h < m->n_heads; h++) {
        has[h] = ev[h].labelled > 0;
        L[h] = has[h] ? ev[h].loss_sum / ev[h].labelled : 0.0;
    }
    double total = jt_mt_total_loss(&r->mt, m, L, has);
    /* 1-based epoch of the batch just trained */
    unsigned long long ep = r->epoch_step ? r->epoch + 1 : r->epoch;
    FILE *out = r->ui.live ? NULL : stdout; /* on a terminal the bar shows it */
    if (out) {
        double elapsed, eta;
        char e[32], left[32];
        jt_ui_times(&r->ui, r->step, &elapsed, &eta);
        jt_fmt_duration(elapsed, e, sizeof e);
        jt_fmt_duration(eta, left, sizeof left);
        printf("epoch %llu step %llu/%llu", ep, (unsigned long long)r->step,
               (unsigned long long)r->total_steps);
        jt_head_eval_print(m, ev, stdout, NULL);
        printf(" | total %.4f", total);
        jt_mt_print(&r->mt, m, r->lr, stdout);
        printf(" | %s elapsed, ETA %s | %.0f samples/s\n", e, left, sps);
        fflush(stdout);
    }
    if (r->metrics) {
        fprintf(r->metrics, "{\"type\": \"train\", \"step\": %llu, \"epoch\": %llu, \"heads\": {",
                (unsigned long long)r->step, ep);
        jt_head_eval_print(m, ev, NULL, r->metrics);
        fprintf(r->metrics, "}, \"loss\": %.6f, \"samples_per_s\": %.1f", total, sps);
        jt_mt_json(&r->mt, m, r->lr, r->metrics);
        json_times(r);
        fprintf(r->metrics, "}\n");
        fflush(r->metrics);
    }
}

/* " | word 0.412 0.871 | speaker ..." (mean loss and accuracy of sums acc) and " | lr X": the
 * bar's tail. */
static void bar_tail(const run *r, const double *acc, char *buf, size_t len) {
    const jt_model *m = &r->model;
    jt_head_eval ev[JT_MODEL_MAX_ARRAYS];
    jt_head_eval_unpack(acc, m->n_heads, ev);
    size_t n = 0;
    buf[0] = 0;
    for (size_t h = 0; h < m->n_heads && n < len; h++) {
        const char *name = m->chains[m->n_blocks + h].name;
        int w = ev[h].labelled > 0
                    ? snprintf(buf + n, len - n, " | %s loss %.3f acc %.3f", name,
                               ev[h].loss_sum / ev[h].labelled, ev[h].correct / ev[h].labelled)
                    : snprintf(buf + n, len - n, " | %s -", name);
        if (w > 0) n += (size_t)w;
    }
    if (n < len) snprintf(buf + n, len - n, " | lr %.3g", r->lr);
}

/* Rank 0 on a terminal: the bar of the epoch for the step just finished, when a redraw is due
 * (at most 10 times a second) or forced; with end, its final form and a newline. acc: the
 * epoch's global sums (then its rows), seconds: its training time so far. */
static void draw_bar(run *r, const double *acc, double seconds, int force, int end) {
    if (r->rank != 0 || !r->ui.live || !(force || end || jt_ui_due(&r->ui))) return;
    size_t nf = JT_HEAD_EVAL_FIELDS * r->model.n_heads;
    double sps = acc[nf] / (seconds > 1e-9 ? seconds : 1e-9);
    char tail[1024];
    bar_tail(r, acc, tail, sizeof tail);
    if (end) jt_ui_end_epoch(&r->ui, r->step, sps, tail);
    else jt_ui_draw(&r->ui, r->step, sps, tail);
}

/* Rank 0, when an epoch ends: its record in the metrics, and on a terminal the bar's final
 * form; elsewhere a plain line. acc: the epoch's global sums (JT_HEAD_EVAL_FIELDS per head, then
 * the rows), seconds: its training time. */
static void log_epoch(run *r, const double *acc, double seconds) {
    const jt_model *m = &r->model;
    size_t nf = JT_HEAD_EVAL_FIELDS * m->n_heads;
    double sps = acc[nf] / (seconds > 1e-9 ? seconds : 1e-9);
    unsigned long long ep = r->epoch; /* the epoch just completed, 1-based */
    unsigned long long epochs = (r->total_steps + r->steps_per_epoch - 1) / r->steps_per_epoch;
    if (r->ui.live) {
        draw_bar(r, acc, seconds, 1, 1);
    } else {
        char tail[1024], t[32];
        bar_tail(r, acc, tail, sizeof tail);
        jt_fmt_duration(seconds, t, sizeof t);
        printf("epoch %llu/%llu done at step %llu in %s%s | %.0f samples/s\n", ep, epochs,
               (unsigned long long)r->step, t, tail, sps);
        fflush(stdout);
    }
    if (r->metrics) {
        jt_head_eval ev[JT_MODEL_MAX_ARRAYS];
        jt_head_eval_unpack(acc, m->n_heads, ev);
        fprintf(r->metrics, "{\"type\": \"epoch\", \"epoch\": %llu, \"step\": %llu, \"heads\": {",
                ep, (unsigned long long)r->step);
        jt_head_eval_print(m, ev, NULL, r->metrics);
        fprintf(r->metrics, "}, \"seconds\": %.3f, \"samples_per_s\": %.1f, \"lr\": %.17g", seconds,
                sps, r->lr);
        json_times(r);
        fprintf(r->metrics, "}\n");
        fflush(r->metrics);
    }
}

/* Rank 0, after the final evaluation: the results as a table. */
static void results_table(const run *r, const char *split, const jt_head_eval *ev) {
    const jt_model *m = &r->model;
    printf("results on %s /%s at step %llu:\n  %-16s %10s %10s %10s\n", r->cfg.data.file, split,
           (unsigned long long)r->step, "head", "loss", "accuracy", "labelled");
    for (size_t h = 0; h < m->n_heads; h++) {
        const jt_chain *c = &m->chains[m->n_blocks + h];
        double n = ev[h].labelled;
        if (n > 0)
            printf("  %-16s %10.4f %10.4f %10.0f", c->name, ev[h].loss_sum / n,
                   ev[h].correct / n, n);
        else
            printf("  %-16s %10s %10s %10d", c->name, "-", "-", 0);
        if (c->seq_len && ev[h].seq_rows > 0)
            printf("  (sequences %.4f of %.0f)", ev[h].seq_exact / ev[h].seq_rows, ev[h].seq_rows);
        printf("\n");
    }
    fflush(stdout);
}

/* The model is built on the training split: the eval split must have the same per-sample
 * shapes and label classes. */
static jt_status check_same_layout(const jt_split *tr, const jt_split *ev, char *err,
                                   size_t errlen) {
    for (size_t a = 0; a < tr->n_arrays; a++) {
        const jt_array *x = &tr->arrays[a], *y = &ev->arrays[a];
        char sx[64], sy[64];
        jt_shape_format(&x->shape, sx, sizeof sx);
        jt_shape_format(&y->shape, sy, sizeof sy);
        if (strcmp(sx, sy) != 0 || x->n_classes != y->n_classes) {
            snprintf(err, errlen, "%s: /%s/%s has per-sample shape %s and %zu classes, but "
                     "/%s/%s has %s and %zu", ev->path, ev->split, y->name, sy, y->n_classes,
                     tr->split, x->name, sx, x->n_classes);
            return JT_EDATA;
        }
    }
    return JT_OK;
}

/* Rank 0, right after the config: the run folder (checkpoint.dir) must not hold another run's
 * checkpoints unless this run continues it (--resume) or replaces it (--overwrite, which deletes
 * them and the metrics). Also clears temp files of dead writers and names the status file. */
static jt_status prepare_run_dir(run *r, const jt_train_args *a, char *err, size_t errlen) {
    const char *dir = r->cfg.checkpoint.dir;
    if (jt_mkdir_p(dir) != 0) {
        snprintf(err, errlen, "cannot create checkpoint.dir %s: %s", dir, strerror(errno));
        return JT_ECKPT;
    }
    int stale = jt_ckpt_clean_stale(dir);
    if (stale > 0)
        printf("removed %d stale temporary file%s of dead checkpoint writers in %s\n", stale,
               stale > 1 ? "s" : "", dir);
    jt_ckpt_dir_info info;
    if (jt_ckpt_scan(dir, &info, err, errlen) != JT_OK) return JT_ECKPT;
    size_t n = info.n_ckpt;
    if (a->overwrite) {
        if (jt_ckpt_remove_all(dir, err, errlen) != JT_OK) return JT_ECKPT;
        if (n > 0)
            printf("--overwrite: removed %zu checkpoint%s of the earlier run in %s\n", n,
                   n > 1 ? "s" : "", dir);
    } else if (!a->resume && (n > 0 || info.has_latest)) {
        snprintf(err, errlen, "checkpoint.dir %s already holds %zu checkpoint%s of a run (the "
                 "newest at step %llu): continue it with --resume auto, or start over with "
                 "--overwrite (which deletes them and its metrics)", dir, n, n == 1 ? "" : "s",
                 info.newest_step);
        return JT_EUSAGE;
    }
    if (!a->overwrite) g_saved_step = info.newest_step; /* what the handler reports until restore */
    snprintf(g_status_path, sizeof g_status_path, "%s/status", dir);
    snprintf(g_status_tmp, sizeof g_status_tmp, "%s/.status.tmp.%ld", dir, (long)getpid());
    return JT_OK;
}

/* Rank 0, at the end of set-up: log.metrics is appended to (a resumed or restarted run adds to
 * its history; each run starts with a "start" record), truncated only with --overwrite. */
static jt_status open_metrics(run *r, const jt_train_args *a, char *err, size_t errlen) {
    const char *path = r->cfg.log.metrics;
    const char *slash = strrchr(path, '/');
    if (slash && slash > path) {
        char dir[JT_PATH_MAX];
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        if (jt_mkdir_p(dir) != 0) {
            snprintf(err, errlen, "cannot create the folder of log.metrics %s: %s", path,
                     strerror(errno));
            return JT_EUSAGE;
        }
    }
    r->metrics = fopen(path, a->overwrite ? "w" : "a");
    if (!r->metrics) {
        snprintf(err, errlen, "cannot write log.metrics %s: %s", path, strerror(errno));
        return JT_EUSAGE;
    }
    char when[64] = "unknown";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(r->metrics, "{\"type\": \"start\", \"step\": %llu, \"ranks\": %d, \"resumed\": %s, "
            "\"time\": \"%s\"}\n", (unsigned long long)r->step, r->world,
            r->step > 0 ? "true" : "false", when);
    fflush(r->metrics);
    return JT_OK;
}

static jt_status setup(run *r, const jt_train_args *a) {
    char err[2048] = "";
    r->rank = jt_comm_rank();
    r->world = jt_comm_size();
    jt_status st = jt_comm_agree_report(jt_config_load(&r->cfg, a->config_path, a->sets, a->n_sets, err,
                                        sizeof err), err);
    if (st != JT_OK) return st;
    r->cfg_text = jt_config_to_yaml(&r->cfg);
    if (!jt_comm_same_u64(fnv1a(r->cfg_text))) {
        snprintf(err, sizeof err, "the resolved config differs between ranks");
        return jt_comm_agree_report(JT_ERANKS, err);
    }
    st = jt_comm_agree_report(r->rank == 0 ? prepare_run_dir(r, a, err, sizeof err) : JT_OK, err);
    if (st != JT_OK) return st;
    fflush(stdout);
    const jt_config *c = &r->cfg;
    if ((size_t)c->train.batch_size < (size_t)r->world) {
        snprintf(err, sizeof err, "%s: train.batch_size %ld is smaller than the %d ranks",
                 c->source, c->train.batch_size, r->world);
        return jt_comm_agree_report(JT_EUSAGE, err);
    }
    if (c->train.threads > 0) openblas_set_num_threads((int)c->train.threads);
    else if (r->world > 1) openblas_set_num_threads(1);

    st = jt_comm_agree_report(jt_model_open_data(c, c->data.file, c->data.train, r->rank,
                                                 r->world, &r->train, err, sizeof err), err);
    if (st != JT_OK) return st;
    st = jt_comm_agree_report(jt_model_open_data(c, c->data.file, c->data.eval, r->rank,
                                                 r->world, &r->eval, err, sizeof err), err);
    if (st != JT_OK) return st;
    if ((st = jt_comm_agree_report(check_same_layout(&r->train, &r->eval, err, sizeof err), err)) != JT_OK)
        return st;
    if ((size_t)c->train.batch_size > r->train.n && r->rank == 0)
        jt_errorf("warning: train.batch_size %ld is larger than the %zu rows of %s /%s: every "
                  "batch is the whole split", c->train.batch_size, r->train.n, c->data.file,
                  c->data.train);
    /* rows per rank of the largest batch: no batch holds more than the split's rows */
    size_t most = (size_t)c->train.batch_size < r->train.n ? (size_t)c->train.batch_size
                                                           : r->train.n;
    size_t max_n = (most + (size_t)r->world - 1) / (size_t)r->world;
    st = jt_comm_agree_report(jt_model_build(&r->model, c, &r->train, max_n, err, sizeof err), err);
    if (st != JT_OK) return st;
    st = jt_comm_agree_report(jt_mt_init(&r->mt, c, &r->model, err, sizeof err), err);
    if (st != JT_OK) return st;
    /* All ranks initialised from the same seed: prove the replicas are identical. */
    test_fault(r->rank, "init", r->model.params.w, c->train.watchdog_s);
    if (!jt_comm_same_u64(jt_model_checksum(&r->model))) {
        snprintf(err, sizeof err, "initial parameters differ between ranks (checksum)");
        return jt_comm_agree_report(JT_ERANKS, err);
    }
    jt_batcher_init(&r->batcher, &r->train, (size_t)c->train.batch_size, c->train.seed);
    r->steps_per_epoch = (r->batcher.steps_per_epoch + (uint64_t)c->train.accumulate - 1) /
                         (uint64_t)c->train.accumulate;
    st = jt_config_total_steps(c, r->steps_per_epoch, &r->total_steps, err, sizeof err);
    if ((st = jt_comm_agree_report(st, err)) != JT_OK) return st;
    if (a->resume) {
        st = restore(r, a->resume);
        if (st != JT_OK) return st;
        if (!jt_comm_same_u64(jt_model_checksum(&r->model))) {
            snprintf(err, sizeof err, "parameters differ between ranks after loading");
            return jt_comm_agree_report(JT_ERANKS, err);
        }
    }
    return jt_comm_agree_report(r->rank == 0 ? open_metrics(r, a, err, sizeof err) : JT_OK, err);
}

static void print_header(run *r) {
    if (r->rank != 0) return;
    printf("jtrain %s: %d rank%s, config %s\n--- resolved config\n%s---\n", JT_VERSION, r->world,
           r->world > 1 ? "s" : "", r->cfg.source, r->cfg_text);
    jt_model_print_summary(&r->model, stdout);
    const jt_config *c = &r->cfg;
    printf("data %s: %s %zu rows, %s %zu rows; %llu steps per epoch of %ld", c->data.file,
           c->data.train, r->train.n, c->data.eval, r->eval.n,
           (unsigned long long)r->steps_per_epoch, c->train.batch_size * c->train.accumulate);
    if (c->train.accumulate > 1)
        printf(" (%ld micro-batches of %ld)", c->train.accumulate, c->train.batch_size);
    printf("; %llu steps\n", (unsigned long long)r->total_steps);
    static const char *const methods[] = {"fixed", "uncertainty", "dwa", "gradnorm"};
    printf("multi-task: balance %s, pcgrad %s; lr schedule %s", methods[c->train.balance.method],
           c->train.pcgrad ? "on" : "off", jt_schedule_name(c->train.schedule.name));
    if (r->mt.n_shared == 0) printf("; no block feeds several heads");
    for (size_t s = 0; s < r->mt.n_shared; s++) {
        const jt_chain *ch = &r->model.chains[r->mt.chain[s]];
        printf("%s%s (", s ? ", " : "; shared: ", ch->name);
        for (size_t h = 0, n = 0; h < r->model.n_heads; h++)
            if (ch->heads_fed >> h & 1)
                printf("%s%s", n++ ? " " : "", r->model.chains[r->model.n_blocks + h].name);
        printf(")");
    }
    printf("\n");
    fflush(stdout);
}

/* The transport switches (README): JTRAIN_ALLREDUCE = auto (default) | shm | mpi and
 * JTRAIN_BUCKET_KB (0 = one bucket after backward; *bucket_kb = -1 when unset). Rank 0's mode
 * wins (comm). */
static jt_status comm_options(jt_reduce_mode *mode, long *bucket_kb, char *err, size_t errlen) {
    const char *m = getenv("JTRAIN_ALLREDUCE"), *kb = getenv("JTRAIN_BUCKET_KB");
    *bucket_kb = -1;
    *mode = JT_REDUCE_AUTO;
    if (m && strcmp(m, "shm") == 0) *mode = JT_REDUCE_SHM;
    else if (m && strcmp(m, "mpi") == 0) *mode = JT_REDUCE_MPI;
    else if (m && *m && strcmp(m, "auto") != 0) {
        snprintf(err, errlen, "JTRAIN_ALLREDUCE=%s: expected auto, shm or mpi", m);
        return JT_EUSAGE;
    }
    if (kb && *kb && jt_parse_long(kb, 0, 1L << 30, bucket_kb) != 0) {
        snprintf(err, errlen, "JTRAIN_BUCKET_KB=%s: expected an integer from 0 to 2^30", kb);
        return JT_EUSAGE;
    }
    return JT_OK;
}

/* Cuts the gradient buffer and its control tail into the buckets of the overlapped sum.
 * Walking the chains from the last (whose backward ends first) to the first, each chain's
 * range - from its first float to the next chain's first float; the last chain's reaches the
 * end of the control tail, which is final before backward starts - joins the open bucket,
 * which closes once it holds bucket_floats (0: only at the first chain, so one bucket after
 * backward, no overlap) and is started by that chain's callback. Padding between views falls
 * in some bucket and sums zeros. The cut depends only on the model: the same on every rank. */
static void plan_buckets(run *r, size_t bucket_floats, jt_reduce_mode mode) {
    const jt_model *m = &r->model;
    size_t nc = m->n_chains, end = m->params.total + JT_PARAMS_CTRL;
    size_t cap = nc + end / JT_BUCKET_MAX_FLOATS + 1, nb = 0;
    size_t *lo = jt_xcalloc(cap, sizeof(size_t)), *hi = jt_xcalloc(cap, sizeof(size_t));
    r->n_start = jt_xcalloc(nc, sizeof(size_t));
    r->bucket_name = jt_xcalloc(cap, sizeof *r->bucket_name);
    r->bucket_floats = jt_xcalloc(cap, sizeof(size_t));
    r->bwd_name = jt_xcalloc(nc, sizeof *r->bwd_name);
    char names[JT_TRACE_NAME_MAX] = "";
    size_t open_hi = end;
    for (size_t k = nc; k-- > 0;) {
        const jt_chain *c = &m->chains[k];
        snprintf(r->bwd_name[k], sizeof r->bwd_name[k], "backward %s", c->name);
        size_t begin = k == 0 ? 0 : c->g_begin, used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s%s", used ? "+" : "", c->name);
        if (k > 0 && (bucket_floats == 0 || open_hi - begin < bucket_floats)) continue;
        while (open_hi > begin) { /* in pieces of at most the MPI limit */
            size_t len = open_hi - begin < JT_BUCKET_MAX_FLOATS ? open_hi - begin
                                                                : JT_BUCKET_MAX_FLOATS;
            JT_CHECK(nb < cap, "bucket plan overflows");
            hi[nb] = open_hi;
            lo[nb] = open_hi - len;
            r->bucket_floats[nb] = len;
            snprintf(r->bucket_name[nb], sizeof r->bucket_name[nb], "allreduce %s", names);
            open_hi -= len;
            r->n_start[k]++;
            nb++;
        }
        names[0] = 0;
    }
    JT_CHECK(open_hi == 0, "buckets leave [0, %zu) out", open_hi);
    r->n_buckets = nb;
    r->red = jt_comm_reducer_new(r->model.params.g, end, lo, hi, nb, mode);
    free(lo);
    free(hi);
}

/* jt_model_backward's callback: chain k's gradients are final. Traces its backward and starts
 * the buckets that close with it (which also moves the earlier ones on). */
static void on_chain_done(void *arg, size_t k) {
    run *r = arg;
    double t = jt_now();
    jt_trace_event(r->trace, JT_TRACE_COMPUTE, r->bwd_name[k], r->t_mark, t, r->step, NULL, 0);
    if (r->n_start[k] > 0) {
        for (size_t i = 0; i < r->n_start[k]; i++) jt_comm_reducer_start(r->red);
    } else {
        jt_comm_reducer_progress(r->red);
    }
    r->t_mark = jt_now();
    r->t_sum += r->t_mark - t;
}

/* The timeline (log.trace) and the gradient sum. Collective. */
static jt_status setup_comm(run *r) {
    char err[JT_PATH_MAX + 128] = "";
    jt_reduce_mode mode = JT_REDUCE_AUTO;
    long kb = -1;
    jt_status st = jt_comm_agree_report(comm_options(&mode, &kb, err, sizeof err), err);
    if (st != JT_OK) return st;
    /* Buckets by default only where they pay (measured, README): in the shared-memory sum; in
     * the MPI mode one blocking MPI_Allreduce beats Open MPI 4.1's MPI_Iallreduce per bucket,
     * whose work without a progress thread lands in the Test calls on this thread anyway. */
    mode = jt_comm_reduce_mode(mode);
    if (kb < 0) kb = mode == JT_REDUCE_MPI ? 0 : JT_BUCKET_KB_DEFAULT;
    size_t bucket_floats = (size_t)kb * 1024 / sizeof(float);
    double t0 = jt_comm_min_f64(jt_now()); /* a common time origin for every rank's trace */
    if (r->cfg.log.trace[0])
        st = jt_trace_open(&r->trace, r->cfg.log.trace, r->rank, t0, err, sizeof err);
    if ((st = jt_comm_agree_report(st, err)) != JT_OK) return st;
    plan_buckets(r, bucket_floats, mode);
    if (r->rank == 0) {
        printf("gradient sum: %s, %zu bucket%s", jt_comm_reducer_describe(r->red), r->n_buckets,
               r->n_buckets > 1 ? "s, overlapping backward" : "");
        if (r->trace) printf("; timeline in %s with .rank<R> before the extension",
                             r->cfg.log.trace);
        printf("\n");
        fflush(stdout);
    }
    return JT_OK;
}

jt_status jt_train_run(const jt_train_args *a) {
    run r;
    memset(&r, 0, sizeof r);
    install_signals();
    jt_status st = setup(&r, a);
    if (st == JT_OK) st = setup_comm(&r);
    if (st == JT_OK) {
        char err[256] = "";
        st = jt_comm_agree_report(jt_watchdog_start(r.cfg.train.watchdog_s, err, sizeof err), err);
        jt_watch_step(r.step);
    }
    if (st != JT_OK) {
        if (r.rank == 0) status_failed(r.step, st);
        run_free(&r);
        return st;
    }
    print_header(&r);
    jt_model *m = &r.model;
    jt_params *p = &m->params;
    const jt_config *cfg = &r.cfg;
    size_t nh = m->n_heads;
    /* ctrl: each head's JT_HEAD_EVAL_FIELDS local sums, then the stop flag */
    const size_t nf = JT_HEAD_EVAL_FIELDS * nh;
    JT_CHECK(nf + 1 <= JT_PARAMS_CTRL, "too many heads (%zu)", nh);
    float *ctrl = p->g + p->total;
    double *interval = jt_xcalloc(nf + 1, sizeof(double)); /* global sums since the last log */
    double *local = jt_xcalloc(nf, sizeof(double));
    double *step_sums = jt_xcalloc(nf, sizeof(double));
    double *epoch_acc = jt_xcalloc(nf + 1, sizeof(double)); /* global sums of this epoch */
    double t_log = jt_now(), t_epoch = t_log;
    uint64_t last_saved = UINT64_MAX;
    const void *ptr[JT_MODEL_MAX_ARRAYS];
    uint64_t labelled[JT_MODEL_MAX_ARRAYS];
    jt_xent_stats stats[JT_MODEL_MAX_ARRAYS];
    const uint64_t accumulate = (uint64_t)cfg->train.accumulate;
    const size_t boff = m->balance_off; /* the model's parameters: [0, boff) */
    int early_stopped = 0;

    uint64_t first_step = r.step;
    jt_ui_init(&r.ui, stdout, r.rank == 0, r.step, r.total_steps, r.steps_per_epoch);
    if (r.rank == 0) status_set("running", r.step, NULL, 0);
    g_in_loop = 1; /* from here a signal means: finish the step, checkpoint, exit 75 */
    if (r.step < r.total_steps) jt_batcher_prefetch(&r.batcher, r.epoch, r.epoch_step);
    while (r.step < r.total_steps) {
        double t, t1;
        int log_step = (r.step + 1) % (uint64_t)cfg->log.every_steps == 0 ||
                       r.step + 1 == r.total_steps;
        jt_mt_set_weights(&r.mt, m);
        int per_head = jt_mt_per_head(&r.mt, log_step);
        if (per_head) jt_mt_begin(&r.mt);
        /* An optimizer step: k micro-batches, never across an epoch's end. With k > 1 the
         * loss is normalised by the labelled rows of all k, counted ahead by their owners. */
        uint64_t k = r.batcher.steps_per_epoch - r.epoch_step;
        if (k > accumulate) k = accumulate;
        double step_rows = 0;
        if (accumulate > 1) {
            uint64_t cnt[JT_MODEL_MAX_ARRAYS];
            jt_batcher_count_labelled(&r.batcher, r.epoch, r.epoch_step, k, cnt);
            jt_comm_sum_u64(cnt, r.train.n_arrays);
            for (size_t h = 0; h < nh; h++) labelled[h] = cnt[m->chains[m->n_blocks + h].target_array];
        }
        char when[24];
        snprintf(when, sizeof when, "%llu", (unsigned long long)r.step);
        test_fault(r.rank, when, p->w, cfg->train.watchdog_s);
        memset(p->g, 0, (p->total + JT_PARAMS_CTRL) * sizeof(float));
        memset(local, 0, nf * sizeof(double));
        for (uint64_t j = 0; j < k; j++) {
            int last = j + 1 == k;
            t = jt_now();
            const jt_batch *b = jt_batcher_next(&r.batcher);
            r.t_mark = jt_now();
            r.t_data += r.t_mark - t;
            jt_trace_event(r.trace, JT_TRACE_COMPUTE, "data wait", t, r.t_mark, r.step, NULL, 0);
            JT_CHECK(b->epoch == r.epoch && b->epoch_step == r.epoch_step, "batch out of order");
            jt_batcher_advance(&r.batcher, &r.epoch, &r.epoch_step);
            if (!last || r.step + 1 < r.total_steps)
                jt_batcher_prefetch(&r.batcher, r.epoch, r.epoch_step);
            if (accumulate == 1)
                for (size_t h = 0; h < nh; h++)
                    labelled[h] = b->labelled[m->chains[m->n_blocks + h].target_array];
            if (b->n > 0) {
                for (size_t i = 0; i < r.train.n_arrays; i++) ptr[i] = b->array[i];
                t = jt_now();
                jt_trace_event(r.trace, JT_TRACE_COMPUTE, "prefetch", r.t_mark, t, r.step, NULL, 0);
                jt_model_forward(m, ptr, b->rows, b->n, 1, r.step);
                jt_comm_poll(); /* the prefetched exchange moves only inside MPI calls */
                t1 = jt_now();
                jt_trace_event(r.trace, JT_TRACE_COMPUTE, "forward", t, t1, r.step, NULL, 0);
                jt_model_loss(m, ptr, b->n, labelled, 1, stats);
                jt_head_eval_add(local, stats, nh);
                r.t_mark = jt_now();
                jt_trace_event(r.trace, JT_TRACE_COMPUTE, "loss", t1, r.t_mark, r.step, NULL, 0);
            }
            /* The control tail is final before the last backward: it rides in the first
             * bucket. */
            if (last) {
                for (size_t i = 0; i < nf; i++) ctrl[i] = (float)local[i];
                ctrl[nf] = g_stop_signal ? 1.0f : 0.0f;
            }
            if (b->n > 0 && per_head) {
                jt_mt_backward(&r.mt, m, ptr, b->rows, b->n, r.step);
            } else if (b->n > 0) { /* the sum starts from the callbacks of the last backward */
                jt_model_backward(m, ptr, b->rows, b->n, r.step, last ? on_chain_done : NULL, &r);
            }
            if (last && (per_head || b->n == 0)) /* the same buckets, after backward */
                for (size_t c = m->n_chains; c-- > 0;) on_chain_done(&r, c);
            step_rows += (double)b->global_n;
        }
        interval[nf] += step_rows;
        t = jt_now();
        jt_comm_reducer_wait(r.red);
        t1 = jt_now();
        r.t_sum += t1 - t;
        r.t_wait += t1 - t;
        if (r.trace) {
            jt_trace_event(r.trace, JT_TRACE_COMPUTE, "gradient wait", t, t1, r.step, NULL, 0);
            for (size_t i = 0; i < r.n_buckets; i++) {
                double t_start, t_done;
                jt_comm_reducer_times(r.red, i, &t_start, &t_done);
                jt_trace_event(r.trace, JT_TRACE_ALLREDUCE, r.bucket_name[i], t_start, t_done,
                               r.step, "floats", r.bucket_floats[i]);
            }
        }
        /* the step's global per-head sums, the same on every rank */
        for (size_t i = 0; i < nf; i++) step_sums[i] = ctrl[i];
        jt_head_eval sev[JT_MODEL_MAX_ARRAYS];
        jt_head_eval_unpack(step_sums, nh, sev);
        double L[JT_MODEL_MAX_ARRAYS], lsum[JT_MODEL_MAX_ARRAYS], lab[JT_MODEL_MAX_ARRAYS];
        int has[JT_MODEL_MAX_ARRAYS];
        for (size_t h = 0; h < nh; h++) {
            lsum[h] = sev[h].loss_sum;
            lab[h] = sev[h].labelled;
            has[h] = lab[h] > 0;
            L[h] = has[h] ? lsum[h] / lab[h] : 0.0;
        }
        jt_mt_after_sum(&r.mt, m, r.step, per_head, log_step, L, has);

        double norm = jt_clip_grad_norm(p->g, boff, cfg->train.clip_norm);
        int finite = isfinite(norm) && isfinite(jt_grad_norm(p->g + boff, p->total - boff));
        for (size_t h = 0; h < nh; h++) finite &= isfinite(ctrl[JT_HEAD_EVAL_FIELDS * h]);
        if (!finite) { /* the same reduced buffer on every rank: all ranks stop here */
            jt_ui_clear(&r.ui);
            if (r.rank == 0)
                jt_errorf("numerical error at step %llu: loss or gradient is NaN/Inf "
                          "(gradient norm %g); lower train.optimizer.lr or set train.clip_norm",
                          (unsigned long long)r.step + 1, norm);
            st = JT_ENUMERIC;
            break;
        }
        jt_adam_opts opts = cfg->train.adam;
        opts.lr = r.lr = jt_schedule_lr(&cfg->train.schedule, cfg->train.adam.lr, r.step,
                                        r.total_steps);
        ++r.adam_t;
        jt_adam_step(p->w, p->g, p->m, p->v, boff, &opts, r.adam_t);
        if (boff < p->total) { /* the balancing parameters: the same Adam, no weight decay */
            opts.weight_decay = 0;
            jt_adam_step(p->w + boff, p->g + boff, p->m + boff, p->v + boff, p->total - boff,
                         &opts, r.adam_t);
        }
        long window = cfg->train.balance.window;
        int window_end = window > 0 ? (r.step + 1) % (uint64_t)window == 0 : r.epoch_step == 0;
        jt_mt_after_step(&r.mt, m, lsum, lab, window_end);
        t = jt_now();
        jt_trace_event(r.trace, JT_TRACE_COMPUTE, "optimizer", t1, t, r.step, NULL, 0);
        r.step++;
        jt_watch_step(r.step);

        for (size_t i = 0; i < nf; i++) interval[i] += ctrl[i], epoch_acc[i] += ctrl[i];
        epoch_acc[nf] += step_rows;
        if (r.epoch_step != 0) /* an epoch's end draws the bar's final form in log_epoch */
            draw_bar(&r, epoch_acc, jt_now() - t_epoch, log_step, r.step == r.total_steps);
        if (log_step) {
            double now = jt_now();
            double sps = interval[nf] / (now - t_log > 1e-9 ? now - t_log : 1e-9);
            if (r.rank == 0) log_train(&r, interval, sps);
            r.mt.have_stats = 0;
            r.mt.projections = 0;
            memset(interval, 0, (nf + 1) * sizeof(double));
            t_log = jt_now();
        }
        if (r.epoch_step == 0) { /* this step ended an epoch */
            if (r.rank == 0) log_epoch(&r, epoch_acc, jt_now() - t_epoch);
            memset(epoch_acc, 0, (nf + 1) * sizeof(double));
            t_epoch = jt_now();
        }
        int best = 0, stop_early = 0;
        if (cfg->train.eval_every > 0 && r.step % (uint64_t)cfg->train.eval_every == 0 &&
            r.step < r.total_steps) {
            jt_head_eval ev[JT_MODEL_MAX_ARRAYS];
            t = jt_now();
            if (print_eval(&r, cfg->data.eval, ev)) {
                const jt_metric_cfg *bm = &cfg->checkpoint.best, *em = &cfg->train.early_stop.metric;
                if (bm->kind != JT_METRIC_NONE)
                    best = jt_mt_track(&r.mt.best, bm, jt_mt_metric(bm, &r.mt, ev), r.step);
                if (em->kind != JT_METRIC_NONE) {
                    jt_mt_track(&r.mt.early, em, jt_mt_metric(em, &r.mt, ev), r.step);
                    stop_early = r.mt.early.bad >= (uint64_t)cfg->train.early_stop.patience;
                }
            }
            jt_trace_event(r.trace, JT_TRACE_COMPUTE, "eval", t, jt_now(), r.step, NULL, 0);
        }
        int stop = ctrl[nf] > 0.0f;
        if ((cfg->checkpoint.every_steps > 0 &&
             r.step % (uint64_t)cfg->checkpoint.every_steps == 0) ||
            r.step == r.total_steps || stop || best || stop_early) {
            t = jt_now();
            if ((st = save_checkpoint(&r, best)) != JT_OK) break;
            jt_trace_event(r.trace, JT_TRACE_COMPUTE, "checkpoint", t, jt_now(), r.step, NULL, 0);
            last_saved = r.step;
            g_saved_step = r.step;
        }
        if (stop) {
            jt_ui_clear(&r.ui);
            if (r.rank == 0) {
                const char *sig = g_stop_signal ? signal_name((int)g_stop_signal) : "SIGNAL";
                status_set("stopped", r.step, sig, 0);
                printf("stopped by a signal at step %llu (%s%s) after writing a checkpoint; "
                       "resume with --resume auto\n", (unsigned long long)r.step, sig,
                       g_stop_signal ? "" : " to another rank");
            }
            st = JT_ESIGNAL;
            break;
        }
        if (stop_early) {
            jt_ui_clear(&r.ui);
            if (r.rank == 0)
                printf("early stop at step %llu of %llu: %s has not improved for %llu "
                       "evaluations (best %.6g at step %llu)\n", (unsigned long long)r.step,
                       (unsigned long long)r.total_steps, cfg->train.early_stop.metric.text,
                       (unsigned long long)r.mt.early.bad, r.mt.early.value,
                       (unsigned long long)r.mt.early.step);
            early_stopped = 1;
            break;
        }
    }
    jt_ui_clear(&r.ui); /* a partial epoch's bar */
    if (r.rank == 0 && r.step > first_step) {
        double elapsed, eta;
        char t[32];
        jt_ui_times(&r.ui, r.step, &elapsed, &eta);
        jt_fmt_duration(elapsed, t, sizeof t);
        uint64_t n = r.step - first_step;
        printf("trained %llu step%s (%llu -> %llu of %llu) in %s\n", (unsigned long long)n,
               n == 1 ? "" : "s", (unsigned long long)first_step, (unsigned long long)r.step,
               (unsigned long long)r.total_steps, t);
        double k = 1e6 / (double)(r.step - first_step);
        printf("comm per step (rank 0): gradient sum %.0f us on this thread (%.0f us waiting "
               "after backward), batch exchange wait %.0f us\n", r.t_sum * k, r.t_wait * k,
               jt_comm_xfer_wait_seconds() * k);
    }
    if (st == JT_OK) { /* the replicas must still be bitwise identical */
        uint64_t sum = jt_model_checksum(m);
        if (!jt_comm_same_u64(sum)) {
            if (r.rank == 0)
                jt_errorf("parameters differ between ranks after step %llu",
                          (unsigned long long)r.step);
            st = JT_ERANKS;
        } else if (r.rank == 0 && r.world > 1) {
            printf("parameters identical on all %d ranks: checksum %016llx\n", r.world,
                   (unsigned long long)sum);
        } else if (r.rank == 0) {
            printf("parameters checksum %016llx (1 rank)\n", (unsigned long long)sum);
        }
    }
    double t = jt_now();
    if (st == JT_OK && last_saved != r.step) {
        st = save_checkpoint(&r, 0);
        jt_trace_event(r.trace, JT_TRACE_COMPUTE, "checkpoint", t, jt_now(), r.step, NULL, 0);
        if (st == JT_OK) g_saved_step = r.step;
    }
    /* Everything is saved: a signal during the final evaluation ends the process at once. */
    g_in_loop = 0;
    if (st == JT_OK && g_stop_signal) stop_now((int)g_stop_signal);
    if (st == JT_OK) test_fault(r.rank, "eval", p->w, r.cfg.train.watchdog_s);
    t = jt_now();
    if (st == JT_OK && !early_stopped) { /* an early stop has just evaluated this step */
        jt_head_eval ev[JT_MODEL_MAX_ARRAYS];
        const jt_metric_cfg *bm = &cfg->checkpoint.best;
        int ok = print_eval(&r, cfg->data.eval, ev);
        if (ok && r.rank == 0) results_table(&r, cfg->data.eval, ev);
        if (ok && bm->kind != JT_METRIC_NONE &&
            jt_mt_track(&r.mt.best, bm, jt_mt_metric(bm, &r.mt, ev), r.step)) {
            char err[2048] = "";
            st = jt_comm_agree_report(r.rank == 0 ? mark_best(&r, r.last_ckpt, err, sizeof err)
                                                  : JT_OK, err);
        }
        jt_trace_event(r.trace, JT_TRACE_COMPUTE, "eval", t, jt_now(), r.step, NULL, 0);
    }
    if (r.rank == 0) {
        if (st == JT_OK) status_set("finished", r.step, NULL, 0);
        else if (st != JT_ESIGNAL) status_failed(r.step, st);
    }
    free(interval);
    free(local);
    free(step_sums);
    free(epoch_acc);
    run_free(&r);
    return st;
}
