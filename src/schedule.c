/* schedule.c - learning-rate schedules (schedule.h): closed forms of torch.optim.lr_scheduler's
 * LinearLR warmup followed (SequentialLR) by constant, CosineAnnealingLR, LinearLR or StepLR.
 *
 * A pure function of (t, T) in double precision, so a resumed run gets the rates of an
 * uninterrupted one. torch computes cosine and linear recursively (each rate from the previous
 * one); the closed forms here agree with it to ~1e-15 relative (tests/unit/test_schedule.c
 * checks them against torch's own sequence, tests/fixtures/schedule/torch_lr.txt). */
#include "jtrain/schedule.h"

#include <math.h>

#define JT_SCHED_PI 3.14159265358979323846 /* M_PI is not ISO C */

double jt_schedule_lr(const jt_schedule_cfg *s, double base_lr, uint64_t t, uint64_t total_steps) {
    uint64_t w = s->warmup_steps > 0 ? (uint64_t)s->warmup_steps : 0;
    if (t < w) return base_lr * (double)(t + 1) / (double)w;
    uint64_t u = t - w;
    uint64_t big_u = total_steps > w ? total_steps - w : 1; /* U = max(T - W, 1) */
    double uc = (double)(u < big_u ? u : big_u);          /* min(u, U) */
    switch (s->name) {
    case JT_SCHED_COSINE: /* pi * u / U as torch's closed form orders it */
        return s->min_lr +
               (base_lr - s->min_lr) * (1.0 + cos(JT_SCHED_PI * uc / (double)big_u)) / 2.0;
    case JT_SCHED_LINEAR:
        return base_lr + (s->min_lr - base_lr) * uc / (double)big_u;
    case JT_SCHED_STEP: {
        uint64_t k = s->step_size > 0 ? u / (uint64_t)s->step_size : 0;
        return base_lr * pow(s->gamma, (double)k);
    }
    case JT_SCHED_CONSTANT:
    default:
        return base_lr;
    }
}

const char *jt_schedule_name(jt_sched_name n) {
    switch (n) {
    case JT_SCHED_CONSTANT: return "constant";
    case JT_SCHED_COSINE: return "cosine";
    case JT_SCHED_STEP: return "step";
    case JT_SCHED_LINEAR: return "linear";
    }
    return "unknown";
}
