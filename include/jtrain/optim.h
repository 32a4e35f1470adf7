/* optim.h - Adam with bias correction and decoupled weight decay (AdamW, Loshchilov & Hutter
 * 2019; the semantics of torch.optim.AdamW), and global-norm gradient clipping. */
#ifndef JTRAIN_OPTIM_H
#define JTRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} jt_adam_opts;

/* lr 1e-3, betas 0.9/0.999, eps 1e-8, weight_decay 0. */
jt_adam_opts jt_adam_default_opts(void);

/* One step t (1-based) over n parameters:
 *   w -= lr*wd*w;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
 *   w -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) */
void jt_adam_step(float *w, const float *g, float *m, float *v, size_t n,
                  const jt_adam_opts *o, uint64_t t);

/* Global L2 norm of g (accumulated in double). */
double jt_grad_norm(const float *g, size_t n);
/* If max_norm > 0 and the norm exceeds it, scales g by max_norm / norm. Returns the norm before. */
double jt_clip_grad_norm(float *g, size_t n, double max_norm);

#endif
