/* train.c - the training run (DESIGN.md "What a run does"): config -> data shard -> model ->
 * loop of (batch, forward, weighted losses, backward, one allreduce, Adam) -> checkpoints,
 * logs and the final evaluation.
 *
 * Invariants: every rank executes the same sequence of collectives; whatever may fail on one
 * rank only is followed by jt_comm_agree so all ranks stop together with the same exit code;
 * per-step metrics and the stop flag ride in the gradient allreduce (JT_PARAMS_CTRL), so the
 * step costs one collective besides the prefetched batch exchange. */
#include <cblas.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jtrain/batch.h"
#include "jtrain/ckpt.h"
#include "jtrain/comm.h"
#include "jtrain/config.h"
#include "jtrain/optim.h"
#include "jtrain/train.h"

static volatile sig_atomic_t g_stop_signal = 0;

/* Test-only fault injection (tests/mpi): JTRAIN_TEST_FAULT="RANK:WHEN:MODE" makes rank RANK,
 * when WHEN is reached (a step number: before that step; "init": right after initialisation,
 * before the replicas are compared), either hit an internal error ("fatal": JT_CHECK, which
 * aborts every rank), die without a word ("crash": SIGKILL), or perturb one parameter
 * ("perturb") so the replicas differ. Unset in normal runs. */
static void test_fault(int rank, const char *when, float *w) {
    const char *spec = getenv("JTRAIN_TEST_FAULT");
    int frank;
    char fwhen[24], mode[16];
    if (!spec || sscanf(spec, "%d:%23[^:]:%15s", &frank, fwhen, mode) != 3) return;
    if (frank != rank || strcmp(fwhen, when) != 0) return;
    if (strcmp(mode, "fatal") == 0) JT_CHECK(0, "injected fault (JTRAIN_TEST_FAULT=%s)", spec);
    if (strcmp(mode, "crash") == 0) raise(SIGKILL);
    if (strcmp(mode, "perturb") == 0) w[0] += 1.0f;
}

static void on_signal(int sig) { g_stop_signal = sig; }

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
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
} run;

static void run_free(run *r) {
    jt_batcher_free(&r->batcher);
    jt_model_free(&r->model);
    jt_data_close(&r->train);
    jt_data_close(&r->eval);
    jt_config_free(&r->cfg);
    free(r->cfg_text);
    if (r->metrics) fclose(r->metrics);
}

/* Saves a checkpoint on rank 0; all ranks wait for its verdict. */
static jt_status save_checkpoint(run *r) {
    char err[2048] = "", path[JT_PATH_MAX] = "";
    jt_status st = JT_OK;
    if (r->rank == 0) {
        jt_ckpt_state cs = {r->step, r->epoch, r->epoch_step, r->adam_t, r->cfg.train.seed,
                            r->world, r->cfg_text};
        st = jt_ckpt_save(r->cfg.checkpoint.dir, &r->model.params, &cs, r->cfg.checkpoint.keep,
                          path, sizeof path, err, sizeof err);
        if (st == JT_OK) printf("checkpoint %s\n", path);
        fflush(stdout);
    }
    return jt_comm_agree_report(st, err);
}

/* The saved data position only means the same batches under the same seed, global batch size
 * and split size (DESIGN.md: it does not depend on the number of ranks). */
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

static jt_status restore(run *r, const char *resume) {
    char err[2048] = "", path[JT_PATH_MAX] = "";
    jt_status st = JT_OK;
    if (strcmp(resume, "auto") == 0) {
        st = jt_ckpt_latest(r->cfg.checkpoint.dir, path, sizeof path, err, sizeof err);
        if ((st = jt_comm_agree_report(st, err)) != JT_OK) return st;
        if (!path[0]) {
            if (r->rank == 0) printf("resume: no checkpoint in %s, starting fresh\n",
                                     r->cfg.checkpoint.dir);
            return JT_OK;
        }
    } else {
        snprintf(path, sizeof path, "%s", resume);
    }
    jt_ckpt_state cs;
    memset(&cs, 0, sizeof cs);
    st = jt_comm_agree_report(jt_ckpt_load(path, &r->model.params, &cs, err, sizeof err), err);
    if (st == JT_OK) st = jt_comm_agree_report(check_position(r, path, &cs, err, sizeof err), err);
    if (st == JT_OK) {
        r->step = cs.step;
        r->epoch = cs.epoch;
        r->epoch_step = cs.epoch_step;
        r->adam_t = cs.adam_t;
        if (r->rank == 0)
            printf("resumed from %s at step %llu (epoch %llu, batch %llu), written by %lld "
                   "ranks\n", path, (unsigned long long)cs.step, (unsigned long long)cs.epoch,
                   (unsigned long long)cs.epoch_step, (long long)cs.world);
    }
    jt_ckpt_state_free(&cs);
    return st;
}

static void print_eval(run *r, const char *split) {
    jt_head_eval ev[JT_MODEL_MAX_ARRAYS];
    jt_evaluate(&r->model, &r->eval, ev);
    if (r->rank != 0) return;
    printf("eval %s step %llu:", split, (unsigned long long)r->step);
    if (r->metrics)
        fprintf(r->metrics, "{\"type\": \"eval\", \"split\": \"%s\", \"step\": %llu, \"heads\": {",
                split, (unsigned long long)r->step);
    jt_head_eval_print(&r->model, ev, stdout, r->metrics);
    printf("\n");
    fflush(stdout);
    if (r->metrics) {
        fprintf(r->metrics, "}}\n");
        fflush(r->metrics);
    }
}

/* Rank 0: one progress line (and JSONL record) from the global sums of the last interval. */
static void log_train(run *r, const double *interval, double sps) {
    const jt_model *m = &r->model;
    jt_head_eval ev[JT_MODEL_MAX_ARRAYS];
    jt_head_eval_unpack(interval, m->n_heads, ev);
    double total = 0;
    for (size_t h = 0; h < m->n_heads; h++)
        if (ev[h].labelled > 0)
            total += m->chains[m->n_blocks + h].weight * ev[h].loss_sum / ev[h].labelled;
    /* 1-based epoch of the batch just trained */
    unsigned long long ep = r->epoch_step ? r->epoch + 1 : r->epoch;
    printf("epoch %llu step %llu/%llu", ep, (unsigned long long)r->step,
           (unsigned long long)r->total_steps);
    if (r->metrics)
        fprintf(r->metrics, "{\"type\": \"train\", \"step\": %llu, \"epoch\": %llu, \"heads\": {",
                (unsigned long long)r->step, ep);
    jt_head_eval_print(m, ev, stdout, r->metrics);
    printf(" | total %.4f | %.0f samples/s\n", total, sps);
    fflush(stdout);
    if (r->metrics) {
        fprintf(r->metrics, "}, \"loss\": %.6f, \"samples_per_s\": %.1f}\n", total, sps);
        fflush(r->metrics);
    }
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
    size_t max_n = ((size_t)c->train.batch_size + (size_t)r->world - 1) / (size_t)r->world;
    st = jt_comm_agree_report(jt_model_build(&r->model, c, &r->train, max_n, err, sizeof err), err);
    if (st != JT_OK) return st;
    /* All ranks initialised from the same seed: prove the replicas are identical. */
    test_fault(r->rank, "init", r->model.params.w);
    if (!jt_comm_same_u64(jt_model_checksum(&r->model))) {
        snprintf(err, sizeof err, "initial parameters differ between ranks (checksum)");
        return jt_comm_agree_report(JT_ERANKS, err);
    }
    jt_batcher_init(&r->batcher, &r->train, (size_t)c->train.batch_size, c->train.seed);
    r->total_steps = c->train.steps > 0
                         ? (uint64_t)c->train.steps
                         : (uint64_t)c->train.epochs * r->batcher.steps_per_epoch;
    if (a->resume) {
        st = restore(r, a->resume);
        if (st != JT_OK) return st;
        if (!jt_comm_same_u64(jt_model_checksum(&r->model))) {
            snprintf(err, sizeof err, "parameters differ between ranks after loading");
            return jt_comm_agree_report(JT_ERANKS, err);
        }
    }
    if (r->rank == 0) {
        if (jt_mkdir_p(c->checkpoint.dir) != 0) {
            snprintf(err, sizeof err, "cannot create checkpoint.dir %s", c->checkpoint.dir);
            st = JT_ECKPT;
        } else {
            char *slash = strrchr(c->log.metrics, '/');
            if (slash) {
                char dir[JT_PATH_MAX];
                snprintf(dir, sizeof dir, "%.*s", (int)(slash - c->log.metrics), c->log.metrics);
                if (dir[0]) jt_mkdir_p(dir);
            }
            r->metrics = fopen(c->log.metrics, r->step > 0 ? "a" : "w");
            if (!r->metrics) {
                snprintf(err, sizeof err, "cannot write log.metrics %s", c->log.metrics);
                st = JT_EUSAGE;
            }
        }
    }
    return jt_comm_agree_report(st, err);
}

static void print_header(run *r) {
    if (r->rank != 0) return;
    printf("jtrain %s: %d rank%s, config %s\n--- resolved config\n%s---\n", JT_VERSION, r->world,
           r->world > 1 ? "s" : "", r->cfg.source, r->cfg_text);
    jt_model_print_summary(&r->model, stdout);
    printf("data %s: %s %zu rows, %s %zu rows; %zu steps per epoch of %ld; %llu steps\n",
           r->cfg.data.file, r->cfg.data.train, r->train.n, r->cfg.data.eval, r->eval.n,
           r->batcher.steps_per_epoch, r->cfg.train.batch_size,
           (unsigned long long)r->total_steps);
    fflush(stdout);
}

jt_status jt_train_run(const jt_train_args *a) {
    run r;
    memset(&r, 0, sizeof r);
    install_signals();
    jt_status st = setup(&r, a);
    if (st != JT_OK) {
        run_free(&r);
        return st;
    }
    print_header(&r);
    jt_model *m = &r.model;
    jt_params *p = &m->params;
    size_t nh = m->n_heads;
    /* ctrl: each head's JT_HEAD_EVAL_FIELDS local sums, then the stop flag */
    const size_t nf = JT_HEAD_EVAL_FIELDS * nh;
    JT_CHECK(nf + 1 <= JT_PARAMS_CTRL, "too many heads (%zu)", nh);
    float *ctrl = p->g + p->total;
    double *interval = jt_xcalloc(nf + 1, sizeof(double)); /* global sums since the last log */
    double *local = jt_xcalloc(nf, sizeof(double));
    double t_log = jt_now();
    uint64_t last_saved = UINT64_MAX;
    const void *ptr[JT_MODEL_MAX_ARRAYS];
    uint64_t labelled[JT_MODEL_MAX_ARRAYS];
    jt_xent_stats stats[JT_MODEL_MAX_ARRAYS];

    if (r.step < r.total_steps) jt_batcher_prefetch(&r.batcher, r.epoch, r.epoch_step);
    while (r.step < r.total_steps) {
        const jt_batch *b = jt_batcher_next(&r.batcher);
        JT_CHECK(b->epoch == r.epoch && b->epoch_step == r.epoch_step, "batch out of order");
        jt_batcher_advance(&r.batcher, &r.epoch, &r.epoch_step);
        if (r.step + 1 < r.total_steps) jt_batcher_prefetch(&r.batcher, r.epoch, r.epoch_step);

        char when[24];
        snprintf(when, sizeof when, "%llu", (unsigned long long)r.step);
        test_fault(r.rank, when, p->w);
        memset(p->g, 0, (p->total + JT_PARAMS_CTRL) * sizeof(float));
        for (size_t h = 0; h < nh; h++)
            labelled[h] = b->labelled[m->chains[m->n_blocks + h].target_array];
        if (b->n > 0) {
            for (size_t i = 0; i < r.train.n_arrays; i++) ptr[i] = b->array[i];
            jt_model_forward(m, ptr, b->rows, b->n, 1, r.step);
            jt_model_loss(m, ptr, b->n, labelled, 1, stats);
            jt_model_backward(m, ptr, b->rows, b->n, r.step, NULL, NULL);
            memset(local, 0, nf * sizeof(double));
            jt_head_eval_add(local, stats, nh);
            for (size_t i = 0; i < nf; i++) ctrl[i] = (float)local[i];
        }
        ctrl[nf] = g_stop_signal ? 1.0f : 0.0f;
        jt_comm_sum_f32(p->g, p->total + JT_PARAMS_CTRL);

        double norm = jt_clip_grad_norm(p->g, p->total, r.cfg.train.clip_norm);
        int finite = isfinite(norm);
        for (size_t h = 0; h < nh; h++) finite &= isfinite(ctrl[JT_HEAD_EVAL_FIELDS * h]);
        if (!finite) { /* the same reduced buffer on every rank: all ranks stop here */
            if (r.rank == 0)
                jt_errorf("numerical error at step %llu: loss or gradient is NaN/Inf "
                          "(gradient norm %g); lower train.optimizer.lr or set train.clip_norm",
                          (unsigned long long)r.step + 1, norm);
            st = JT_ENUMERIC;
            break;
        }
        jt_adam_step(p->w, p->g, p->m, p->v, p->total, &r.cfg.train.adam, ++r.adam_t);
        r.step++;

        for (size_t i = 0; i < nf; i++) interval[i] += ctrl[i];
        interval[nf] += (double)b->global_n;
        if (r.step % (uint64_t)r.cfg.log.every_steps == 0 || r.step == r.total_steps) {
            double now = jt_now();
            double sps = interval[nf] / (now - t_log > 1e-9 ? now - t_log : 1e-9);
            if (r.rank == 0) log_train(&r, interval, sps);
            memset(interval, 0, (nf + 1) * sizeof(double));
            t_log = jt_now();
        }
        if (r.cfg.train.eval_every > 0 && r.step % (uint64_t)r.cfg.train.eval_every == 0 &&
            r.step < r.total_steps)
            print_eval(&r, r.cfg.data.eval);
        int stop = ctrl[nf] > 0.0f;
        if ((r.cfg.checkpoint.every_steps > 0 &&
             r.step % (uint64_t)r.cfg.checkpoint.every_steps == 0) ||
            r.step == r.total_steps || stop) {
            if ((st = save_checkpoint(&r)) != JT_OK) break;
            last_saved = r.step;
        }
        if (stop) {
            if (r.rank == 0)
                printf("stopped by a signal at step %llu after writing a checkpoint; resume "
                       "with --resume auto\n", (unsigned long long)r.step);
            st = JT_ESIGNAL;
            break;
        }
    }
    if (st == JT_OK) { /* the replicas must still be bitwise identical */
        uint64_t sum = jt_model_checksum(m);
        if (!jt_comm_same_u64(sum)) {
            if (r.rank == 0)
                jt_errorf("parameters differ between ranks after step %llu",
                          (unsigned long long)r.step);
            st = JT_ERANKS;
        } else if (r.rank == 0) {
            printf("parameters identical on all %d ranks: checksum %016llx\n", r.world,
                   (unsigned long long)sum);
        }
    }
    if (st == JT_OK && last_saved != r.step) st = save_checkpoint(&r);
    if (st == JT_OK) print_eval(&r, r.cfg.data.eval);
    free(interval);
    free(local);
    run_free(&r);
    return st;
}
