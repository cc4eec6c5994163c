/* AdamW (Loshchilov & Hutter, decoupled weight decay) over parameter groups, with gradient
 * clipping by global norm. Semantics follow torch.optim.AdamW, whose step count (and so the
 * bias correction) is per parameter: here per group, so one group's moments can restart while
 * another's carry on. Not here: learning-rate schedules (schedule.h); the update kernel itself
 * (kernels/backend.h adamw_update); which groups an expert boundary resets (cascade.h). */
#ifndef LORASC_ADAMW_H
#define LORASC_ADAMW_H

#include <stddef.h>

#include "kernels/backend.h"

typedef struct AdamWConfig {
    float beta1, beta2, eps;
    float weight_decay;
    float grad_clip; /* max global L2 norm; <= 0 disables clipping */
} AdamWConfig;

AdamWConfig adamw_default_config(void); /* 0.9, 0.999, 1e-8, wd 0, clip 1.0 */

/* A set of tensors sharing a learning-rate multiplier and weight decay (LoRA+ gives B its own). */
typedef struct ParamGroup {
    Real *p;          /* parameters (device) */
    Real *g;          /* their gradients (device) */
    size_t n;
    float lr_scale;   /* the group's lr = schedule lr * lr_scale */
    float weight_decay;
    int continuous;   /* 1: trained continuously across a cascade's experts (a DoRA magnitude,
                       * a ViT head): an adapters-only reset leaves its state (cascade.h) */
} ParamGroup;

typedef struct AdamW {
    AdamWConfig config;
    Backend *be;
    ParamGroup *groups;   /* copied from the caller; one per contiguous range */
    int n_groups;
    Real *m, *v;      /* moments, one block each, groups laid end to end */
    size_t n_total;
    long step;        /* updates done since the last adamw_reset */
    long *group_step; /* [n_groups] updates in each group's bias correction since its reset */
    double *stats;    /* backend memory, ADAMW_STATS_BYTES: [0] the gradients' sum of squares,
                       * [1] the last norm (when the caller gave no slot), then the float clip
                       * scale at byte 16: a step computes and applies them on the device */
} AdamW;

enum { ADAMW_STATS_BYTES = 64 };

int adamw_create(AdamW *opt, Backend *be, const AdamWConfig *config, const ParamGroup *groups,
                 int n_groups);
void adamw_free(AdamW *opt);
/* Zeroes every group's moments and step count: a new optimizer. */
void adamw_reset(AdamW *opt);
/* Zeroes group i's moments; with restart_step its step count too (its bias correction starts
 * again, as a new torch optimizer's would), else the count carries on (ReLoRA's reset: it
 * prunes exp_avg and exp_avg_sq and leaves torch's step). */
void adamw_reset_group(AdamW *opt, int group, int restart_step);
/* ReLoRA's magnitude_pruning_ (Guitaricet/relora, training_utils.py) on the moments of the
 * parameters p[0..n), which must lie inside one group: in m and in v separately, the entries
 * whose magnitude is not above the `ratio` quantile of that slice's magnitudes (torch.quantile,
 * linear interpolation) are zeroed; the step count is left. ratio in (0, 1). */
int adamw_prune_magnitude(AdamW *opt, const Real *p, size_t n, double ratio);
/* Global L2 norm of all gradients, in double. */
double adamw_grad_norm(AdamW *opt);
/* One update at learning rate lr, clipped by global norm first, the norm and the clip scale
 * computed and applied on the device: writes the pre-clip norm (a double) to norm_out, backend
 * memory (NULL: opt->stats[1]), and reads nothing back. The groups' sums of squares are added
 * in group order, each as sum_squares computes it: on the CPU the bits of adamw_step's. */
void adamw_step_dev(AdamW *opt, float lr, double *norm_out);
/* adamw_step_dev, then the norm read back (the host waits for the device). Returns the
 * pre-clip norm (NaN once the device has failed: callers check device_sync at the end of the
 * step). */
double adamw_step(AdamW *opt, float lr);

#endif
