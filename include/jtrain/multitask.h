/* multitask.h - the arithmetic of multi-task training (README "Multi-task training"): loss
 * balancing (uncertainty, dwa, gradnorm), gradient surgery (PCGrad) and the conflict telemetry
 * (per-head gradient norms and pairwise cosines). Pure functions of their inputs: train.c feeds
 * them GLOBAL quantities (summed over ranks), so every rank computes the same result.
 *
 * H is the number of heads; arrays indexed by head have H entries. "base" weights are the
 * heads' config weights (model.heads.X.weight). All sums are accumulated in double. */
#ifndef JTRAIN_MULTITASK_H
#define JTRAIN_MULTITASK_H

#include <stddef.h>
#include <stdint.h>

/* --- uncertainty (Kendall, Gal & Cipolla, CVPR 2018), classification form ---------------
 * One learned log-variance s_i per head; the combined loss is
 *     sum_i ( exp(-s_i) * base_i * L_i + s_i )
 * so head i's effective weight is exp(-s_i) * base_i. */
void jt_mt_uncertainty_weights(const float *s, const double *base, size_t H, double *w);
/* The combined loss above for the heads' mean losses L. */
double jt_mt_uncertainty_loss(const float *s, const double *base, const double *L, size_t H);
/* Its gradient with respect to s: ds_i = 1 - exp(-s_i) * base_i * L_i. */
void jt_mt_uncertainty_grad(const float *s, const double *base, const double *L, size_t H,
                            float *ds);

/* --- dwa (Liu, Johns & Davison, CVPR 2019) ------------------------------------------------
 * From the heads' mean losses over the last two windows (prev1 the latest, prev2 the one
 * before): r_i = prev1_i / prev2_i, w_i = base_i * H * exp(r_i / T) / sum_j exp(r_j / T)
 * (computed stably: exponents shifted by their maximum). Until two windows are complete
 * (have_windows < 2) w_i = base_i. A head with no labelled row in a window (loss 0 or not
 * finite) has r_i = 1. */
void jt_mt_dwa_weights(const double *prev1, const double *prev2, int have_windows,
                       const double *base, size_t H, double T, double *w);

/* --- gradnorm (Chen et al., ICML 2018) ----------------------------------------------------
 * Trainable weights w_i (renormalised to sum to sum_i base_i after every update). With
 * gnorm_i = ||grad_W L_i|| (the gradient of head i's UNWEIGHTED mean loss on the last shared
 * layer W), G_i = w_i * gnorm_i, Lt_i = L_i / L0_i (L0: the first step's losses),
 * r_i = Lt_i / mean(Lt), target_i = mean(G) * r_i^alpha (a constant, as in the paper):
 *     L_grad = sum_i |G_i - target_i|,  dL_grad/dw_i = sign(G_i - target_i) * gnorm_i.
 * Returns L_grad; dw receives the gradient. */
double jt_mt_gradnorm_grad(const float *w, const double *gnorm, const double *L,
                           const double *L0, size_t H, double alpha, float *dw);
/* Rescales w so that sum_i w_i = sum_i base_i; a w_i below 1e-6 * sum first becomes that floor
 * (so no head is switched off for good). */
void jt_mt_gradnorm_renormalise(float *w, const double *base, size_t H);

/* --- gradient statistics (the conflict telemetry) -----------------------------------------
 * g[i] (i < H) points at head i's gradient (n floats) of one block's parameters. norm[i] =
 * ||g[i]||; cosine[i * H + j] = g[i].g[j] / (||g[i]|| ||g[j]||), 0 where a norm is 0. */
void jt_mt_grad_stats(const float *const *g, size_t H, size_t n, double *norm, double *cosine);

/* --- PCGrad (Yu et al., NeurIPS 2020) -----------------------------------------------------
 * Projects the H per-head gradients g[i] (n floats each, of one block's parameters) and writes
 * their sum to out (n floats; may not alias g): for each head i, gp_i = g_i, then for each
 * other head j in a random order, if gp_i . g_j < 0: gp_i -= (gp_i . g_j) / ||g_j||^2 * g_j
 * (g_j the ORIGINAL gradient; heads with g_j = 0 are skipped); out = sum_i gp_i. The order of
 * the other heads is drawn for each i from the stream (seed, JT_RNG_PCGRAD, step, block, i),
 * so it is identical on every rank and across a resume. work: H * n floats of scratch.
 * Returns the number of projections made (conflicting pairs seen). */
size_t jt_mt_pcgrad(const float *const *g, size_t H, size_t n, uint64_t seed, uint64_t step,
                    uint64_t block, float *work, float *out);

#endif
