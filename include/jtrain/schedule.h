/* schedule.h - learning-rate schedules (train.schedule), as torch.optim.lr_scheduler defines
 * them, over optimizer steps.
 *
 * t is the 0-based index of the optimizer step (Adam's t - 1), T the run's total optimizer
 * steps, W = warmup_steps, base = train.optimizer.lr, min = min_lr.
 *   t < W (warmup):  base * (t + 1) / W        (torch LinearLR(start_factor=1/W, end_factor=1,
 *                                               total_iters=W-1), then SequentialLR at W)
 *   t >= W, u = t - W, U = max(T - W, 1):
 *     constant: base
 *     cosine:   min + (base - min) * (1 + cos(pi * min(u, U) / U)) / 2   (CosineAnnealingLR,
 *               T_max=U, eta_min=min; closed form)
 *     linear:   base + (min - base) * min(u, U) / U   (LinearLR(1, min/base, total_iters=U))
 *     step:     base * gamma^floor(u / step_size)     (StepLR(step_size, gamma))
 * A pure function of (t, T): resuming at step t gives the same rates as an uninterrupted run. */
#ifndef JTRAIN_SCHEDULE_H
#define JTRAIN_SCHEDULE_H

#include <stdint.h>

#include "jtrain/config.h"

/* The learning rate of optimizer step t (0-based) of a run of total_steps steps. */
double jt_schedule_lr(const jt_schedule_cfg *s, double base_lr, uint64_t t, uint64_t total_steps);

/* "cosine", "constant", ... (for logs). */
const char *jt_schedule_name(jt_sched_name n);

#endif
