/* train_mt.c - the multi-task side of a training step (train_mt.h). */
#include "train_mt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jtrain/comm.h"
#include "jtrain/multitask.h"
#include "jtrain/optim.h"

jt_status jt_mt_init(jt_mt *mt, const jt_config *cfg, jt_model *m, char *err, size_t errlen) {
    memset(mt, 0, sizeof *mt);
    mt->cfg = cfg;
    mt->H = m->n_heads;
    for (size_t h = 0; h < mt->H; h++) mt->base[h] = mt->weight[h] = m->chains[m->n_blocks + h].weight;
    size_t nb = m->n_blocks;
    mt->chain = jt_xcalloc(nb + 1, sizeof(size_t));
    mt->lo = jt_xcalloc(nb + 1, sizeof(size_t));
    mt->hi = jt_xcalloc(nb + 1, sizeof(size_t));
    mt->off = jt_xcalloc(nb + 1, sizeof(size_t));
    size_t longest = 0;
    for (size_t k = 0; k < nb; k++) {
        const jt_chain *c = &m->chains[k];
        if (!jt_chain_feeds_several(c) || c->g_end == c->g_begin) continue;
        size_t s = mt->n_shared++;
        mt->chain[s] = k;
        mt->lo[s] = c->g_begin;
        mt->hi[s] = c->g_end;
        mt->off[s] = mt->S;
        mt->S += c->g_end - c->g_begin;
        if (c->g_end - c->g_begin > longest) longest = c->g_end - c->g_begin;
    }
    const char *need = cfg->train.pcgrad ? "train.pcgrad"
                       : cfg->train.balance.method == JT_BALANCE_GRADNORM ? "train.balance.method gradnorm"
                                                                          : NULL;
    if (need && mt->n_shared == 0) {
        snprintf(err, errlen, "%s: %s needs a block that feeds several heads (with parameters), "
                 "and no block of this model does: each head has its own network, so the heads' "
                 "gradients never meet", cfg->source, need);
        jt_mt_free(mt);
        return JT_EUSAGE;
    }
    if (mt->n_shared > 0) {
        mt->gh = jt_alloc_floats(mt->H * mt->S);
        if (cfg->train.pcgrad) mt->work = jt_alloc_floats(mt->H * longest);
        mt->norm = jt_xcalloc(mt->n_shared * mt->H, sizeof(double));
        mt->cosine = jt_xcalloc(mt->n_shared * mt->H * mt->H, sizeof(double));
        /* GradNorm's W: the last layer with parameters of the shared block nearest the heads */
        size_t s = mt->n_shared - 1;
        const jt_chain *c = &m->chains[mt->chain[s]];
        for (size_t i = c->n_layers; i-- > 0 && mt->w_hi == 0;) {
            const jt_layer *l = &c->layers[i];
            for (int j = 0; j < l->n_params; j++) {
                const jt_view *v = &m->params.views[l->view[j]];
                size_t a = mt->off[s] + v->offset - mt->lo[s], b = a + v->size;
                if (mt->w_hi == 0 || a < mt->w_lo) mt->w_lo = a;
                if (b > mt->w_hi) mt->w_hi = b;
            }
        }
    }
    return JT_OK;
}

void jt_mt_free(jt_mt *mt) {
    if (!mt) return;
    free(mt->chain);
    free(mt->lo);
    free(mt->hi);
    free(mt->off);
    jt_free_aligned(mt->gh);
    jt_free_aligned(mt->work);
    free(mt->norm);
    free(mt->cosine);
    memset(mt, 0, sizeof *mt);
}

void jt_mt_set_weights(jt_mt *mt, jt_model *m) {
    const float *bal = m->balance_view >= 0 ? m->params.w + m->balance_off : NULL;
    switch (mt->cfg->train.balance.method) {
    case JT_BALANCE_UNCERTAINTY:
        jt_mt_uncertainty_weights(bal, mt->base, mt->H, mt->weight);
        break;
    case JT_BALANCE_DWA:
        jt_mt_dwa_weights(mt->prev1, mt->prev2, mt->dwa_windows, mt->base, mt->H,
                          mt->cfg->train.balance.temperature, mt->weight);
        break;
    case JT_BALANCE_GRADNORM:
        for (size_t h = 0; h < mt->H; h++) mt->weight[h] = bal[h];
        break;
    default:
        for (size_t h = 0; h < mt->H; h++) mt->weight[h] = mt->base[h];
    }
    for (size_t h = 0; h < mt->H; h++) m->chains[m->n_blocks + h].weight = mt->weight[h];
}

int jt_mt_per_head(const jt_mt *mt, int log_step) {
    return mt->n_shared > 0 && (mt->cfg->train.pcgrad || log_step ||
                                mt->cfg->train.balance.method == JT_BALANCE_GRADNORM);
}

void jt_mt_begin(jt_mt *mt) {
    if (mt->gh) memset(mt->gh, 0, mt->H * mt->S * sizeof(float));
}

static void zero_shared(const jt_mt *mt, float *g) {
    for (size_t s = 0; s < mt->n_shared; s++)
        memset(g + mt->lo[s], 0, (mt->hi[s] - mt->lo[s]) * sizeof(float));
}

void jt_mt_backward(jt_mt *mt, jt_model *m, const void *const *arrays, const uint64_t *rows,
                    size_t n, uint64_t step) {
    float *g = m->params.g;
    for (size_t h = 0; h < mt->H; h++) {
        zero_shared(mt, g);
        jt_model_backward_heads(m, arrays, rows, n, step, (uint32_t)1 << h, NULL, NULL);
        float *dst = mt->gh + h * mt->S;
        for (size_t s = 0; s < mt->n_shared; s++) {
            float *d = dst + mt->off[s];
            const float *src = g + mt->lo[s];
            for (size_t i = 0, len = mt->hi[s] - mt->lo[s]; i < len; i++) d[i] += src[i];
        }
    }
    zero_shared(mt, g);
}

void jt_mt_after_sum(jt_mt *mt, jt_model *m, uint64_t step, int per_head, int log_step,
                     const double *L, const int *has) {
    size_t H = mt->H;
    float *g = m->params.g;
    if (per_head) {
        if (jt_comm_size() > 1) jt_comm_sum_f32(mt->gh, H * mt->S);
        for (size_t s = 0; s < mt->n_shared; s++) {
            uint32_t fed = m->chains[mt->chain[s]].heads_fed;
            const float *ptr[JT_CONFIG_MAX_HEADS];
            size_t head[JT_CONFIG_MAX_HEADS], nf = 0, len = mt->hi[s] - mt->lo[s];
            for (size_t h = 0; h < H; h++)
                if (fed >> h & 1) {
                    head[nf] = h;
                    ptr[nf++] = mt->gh + h * mt->S + mt->off[s];
                }
            if (log_step) {
                double nrm[JT_CONFIG_MAX_HEADS], cs[JT_CONFIG_MAX_HEADS * JT_CONFIG_MAX_HEADS];
                jt_mt_grad_stats(ptr, nf, len, nrm, cs);
                double *N = mt->norm + s * H, *C = mt->cosine + s * H * H;
                for (size_t i = 0; i < H; i++) N[i] = NAN;
                for (size_t i = 0; i < H * H; i++) C[i] = NAN;
                for (size_t i = 0; i < nf; i++) {
                    N[head[i]] = nrm[i];
                    for (size_t j = 0; j < nf; j++) C[head[i] * H + head[j]] = cs[i * nf + j];
                }
                mt->have_stats = 1;
            }
            float *out = g + mt->lo[s];
            if (mt->cfg->train.pcgrad) {
                mt->projections += jt_mt_pcgrad(ptr, nf, len, mt->cfg->train.seed, step, s,
                                                mt->work, out);
            } else {
                memcpy(out, ptr[0], len * sizeof(float));
                for (size_t i = 1; i < nf; i++)
                    for (size_t k = 0; k < len; k++) out[k] += ptr[i][k];
            }
        }
    }
    if (m->balance_view < 0) return;
    float *bal = m->params.w + m->balance_off, *dbal = g + m->balance_off;
    int all = 1;
    for (size_t h = 0; h < H; h++) all &= has[h];
    if (mt->cfg->train.balance.method == JT_BALANCE_UNCERTAINTY) {
        jt_mt_uncertainty_grad(bal, mt->base, L, H, dbal);
        for (size_t h = 0; h < H; h++) /* no labelled row: no evidence to move s_h */
            if (!has[h]) dbal[h] = 0.0f;
        return;
    }
    /* gradnorm: L0 is each head's loss at its first step with labels */
    for (size_t h = 0; h < H; h++) dbal[h] = 0.0f;
    if (!all) return;
    if (!mt->have_L0) {
        for (size_t h = 0; h < H; h++) mt->L0[h] = L[h];
        mt->have_L0 = 1;
    }
    double gnorm[JT_CONFIG_MAX_HEADS];
    for (size_t h = 0; h < H; h++) {
        double wn = jt_grad_norm(mt->gh + h * mt->S + mt->w_lo, mt->w_hi - mt->w_lo);
        gnorm[h] = mt->weight[h] > 0 ? wn / mt->weight[h] : 0.0;
    }
    mt->gradnorm_loss = jt_mt_gradnorm_grad(bal, gnorm, L, mt->L0, H,
                                            mt->cfg->train.balance.alpha, dbal);
}

void jt_mt_after_step(jt_mt *mt, jt_model *m, const double *loss_sum, const double *labelled,
                      int window_end) {
    jt_balance_method method = mt->cfg->train.balance.method;
    if (method == JT_BALANCE_GRADNORM)
        jt_mt_gradnorm_renormalise(m->params.w + m->balance_off, mt->base, mt->H);
    if (method != JT_BALANCE_DWA) return;
    for (size_t h = 0; h < mt->H; h++) {
        mt->cur_sum[h] += loss_sum[h];
        mt->cur_lab[h] += labelled[h];
    }
    if (!window_end) return;
    for (size_t h = 0; h < mt->H; h++) {
        mt->prev2[h] = mt->prev1[h];
        mt->prev1[h] = mt->cur_lab[h] > 0 ? mt->cur_sum[h] / mt->cur_lab[h] : 0.0;
        mt->cur_sum[h] = mt->cur_lab[h] = 0;
    }
    if (mt->dwa_windows < 2) mt->dwa_windows++;
}

double jt_mt_total_loss(const jt_mt *mt, const jt_model *m, const double *L, const int *has) {
    if (mt->cfg->train.balance.method == JT_BALANCE_UNCERTAINTY)
        return jt_mt_uncertainty_loss(m->params.w + m->balance_off, mt->base, L, mt->H);
    double total = 0;
    for (size_t h = 0; h < mt->H; h++)
        if (has[h]) total += mt->weight[h] * L[h];
    return total;
}

double jt_mt_metric(const jt_metric_cfg *t, const jt_mt *mt, const jt_head_eval *ev) {
    if (t->head >= 0) {
        const jt_head_eval *e = &ev[t->head];
        if (!(e->labelled > 0)) return NAN;
        return t->kind == JT_METRIC_ACCURACY ? e->correct / e->labelled : e->loss_sum / e->labelled;
    }
    double total = 0;
    int any = 0;
    for (size_t h = 0; h < mt->H; h++)
        if (ev[h].labelled > 0) {
            total += mt->base[h] * ev[h].loss_sum / ev[h].labelled;
            any = 1;
        }
    return any ? total : NAN;
}

int jt_mt_track(jt_mt_tracker *t, const jt_metric_cfg *cfg, double value, uint64_t step) {
    if (isnan(value)) return 0;
    int better = !t->have || (cfg->maximize ? value > t->value : value < t->value);
    if (better) {
        t->have = 1;
        t->value = value;
        t->step = step;
        t->bad = 0;
    } else {
        t->bad++;
    }
    return better;
}

/* /state/run: best (4), early (4), dwa windows, prev1, prev2, cur_sum, cur_lab (H each),
 * have_L0, L0 (H). */
size_t jt_mt_state_size(const jt_mt *mt) { return 10 + 5 * mt->H; }

static void put_tracker(double **p, const jt_mt_tracker *t) {
    *(*p)++ = t->have;
    *(*p)++ = t->value;
    *(*p)++ = (double)t->step;
    *(*p)++ = (double)t->bad;
}

static void get_tracker(const double **p, jt_mt_tracker *t) {
    t->have = (*p)[0] != 0;
    t->value = (*p)[1];
    t->step = (uint64_t)(*p)[2];
    t->bad = (uint64_t)(*p)[3];
    *p += 4;
}

static void put_vec(double **p, const double *v, size_t n) {
    memcpy(*p, v, n * sizeof(double));
    *p += n;
}

static void get_vec(const double **p, double *v, size_t n) {
    memcpy(v, *p, n * sizeof(double));
    *p += n;
}

void jt_mt_state_save(const jt_mt *mt, double *out) {
    size_t H = mt->H;
    put_tracker(&out, &mt->best);
    put_tracker(&out, &mt->early);
    *out++ = mt->dwa_windows;
    put_vec(&out, mt->prev1, H);
    put_vec(&out, mt->prev2, H);
    put_vec(&out, mt->cur_sum, H);
    put_vec(&out, mt->cur_lab, H);
    *out++ = mt->have_L0;
    put_vec(&out, mt->L0, H);
}

jt_status jt_mt_state_load(jt_mt *mt, const double *in, size_t n, char *err, size_t errlen) {
    if (n == 0) return JT_OK;
    size_t H = mt->H;
    if (n != jt_mt_state_size(mt)) {
        snprintf(err, errlen, "its /state/run holds %zu values, a run of %zu heads keeps %zu", n,
                 H, jt_mt_state_size(mt));
        return JT_ECKPT;
    }
    get_tracker(&in, &mt->best);
    get_tracker(&in, &mt->early);
    mt->dwa_windows = (int)*in++;
    get_vec(&in, mt->prev1, H);
    get_vec(&in, mt->prev2, H);
    get_vec(&in, mt->cur_sum, H);
    get_vec(&in, mt->cur_lab, H);
    mt->have_L0 = *in++ != 0;
    get_vec(&in, mt->L0, H);
    return JT_OK;
}

static const char *head_name(const jt_model *m, size_t h) { return m->chains[m->n_blocks + h].name; }

void jt_mt_print(const jt_mt *mt, const jt_model *m, double lr, FILE *out) {
    fprintf(out, " | lr %.3g", lr);
    if (mt->cfg->train.balance.method != JT_BALANCE_FIXED) {
        fprintf(out, " | w");
        for (size_t h = 0; h < mt->H; h++) fprintf(out, " %s %.3f", head_name(m, h), mt->weight[h]);
    }
    if (!mt->have_stats) return;
    size_t H = mt->H;
    for (size_t s = 0; s < mt->n_shared; s++) {
        fprintf(out, " | cos %s", m->chains[mt->chain[s]].name);
        const double *C = mt->cosine + s * H * H;
        int pairs = 0;
        for (size_t i = 0; i < H; i++)
            for (size_t j = i + 1; j < H; j++) pairs += !isnan(C[i * H + j]);
        for (size_t i = 0; i < H; i++)
            for (size_t j = i + 1; j < H; j++) {
                if (isnan(C[i * H + j])) continue;
                if (pairs > 1) fprintf(out, " %s/%s", head_name(m, i), head_name(m, j));
                fprintf(out, " %+.2f", C[i * H + j]);
            }
    }
    if (mt->cfg->train.pcgrad) fprintf(out, " | pcgrad %llu", (unsigned long long)mt->projections);
}

void jt_mt_json(const jt_mt *mt, const jt_model *m, double lr, FILE *json) {
    size_t H = mt->H;
    fprintf(json, ", \"lr\": %.17g, \"weights\": {", lr);
    for (size_t h = 0; h < H; h++)
        fprintf(json, "%s\"%s\": %.6g", h ? ", " : "", head_name(m, h), mt->weight[h]);
    fprintf(json, "}");
    if (mt->cfg->train.pcgrad)
        fprintf(json, ", \"pcgrad_projections\": %llu", (unsigned long long)mt->projections);
    if (!mt->have_stats) return;
    fprintf(json, ", \"grad\": {");
    for (size_t s = 0; s < mt->n_shared; s++) {
        const double *N = mt->norm + s * H, *C = mt->cosine + s * H * H;
        fprintf(json, "%s\"%s\": {\"norm\": {", s ? ", " : "", m->chains[mt->chain[s]].name);
        int first = 1;
        for (size_t h = 0; h < H; h++) {
            if (isnan(N[h])) continue;
            fprintf(json, "%s\"%s\": %.6g", first ? "" : ", ", head_name(m, h), N[h]);
            first = 0;
        }
        fprintf(json, "}, \"cosine\": {");
        first = 1;
        for (size_t i = 0; i < H; i++)
            for (size_t j = i + 1; j < H; j++) {
                if (isnan(C[i * H + j])) continue;
                fprintf(json, "%s\"%s/%s\": %.6f", first ? "" : ", ", head_name(m, i),
                        head_name(m, j), C[i * H + j]);
                first = 0;
            }
        fprintf(json, "}}");
    }
    fprintf(json, "}");
}
