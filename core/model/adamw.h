/* AdamW (Loshchilov & Hutter, decoupled weight decay) over parameter groups, with gradient
 * clipping by global norm. Semantics follow torch.optim.AdamW. Not here: learning-rate
 * schedules (schedule.h); the update kernel itself (kernels/backend.h adamw_update). */
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
} ParamGroup;

typedef struct AdamW {
    AdamWConfig config;
    Backend *be;
    ParamGroup *groups;   /* copied from the caller; one per contiguous range */
    int n_groups;
    Real *m, *v;      /* moments, one block each, groups laid end to end */
    size_t n_total;
    long step;        /* updates done since the last reset */
} AdamW;

int adamw_create(AdamW *opt, Backend *be, const AdamWConfig *config, const ParamGroup *groups,
                 int n_groups);
void adamw_free(AdamW *opt);
/* Zeroes moments and the step count (a new expert, a ReLoRA restart). */
void adamw_reset(AdamW *opt);
/* Global L2 norm of all gradients, in double. */
double adamw_grad_norm(AdamW *opt);
/* One update at learning rate lr; clips by global norm first. Returns the pre-clip norm. */
double adamw_step(AdamW *opt, float lr);

#endif
