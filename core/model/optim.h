/* AdamW (Loshchilov & Hutter, decoupled weight decay) over parameter groups, gradient
 * clipping by global norm, and learning-rate schedules. Schedules are pure functions of
 * (step, length) so a cascade can restart or compress them per expert.
 * Semantics follow torch.optim.AdamW and Hugging Face's get_*_schedule_with_warmup. */
#ifndef LORASC_OPTIM_H
#define LORASC_OPTIM_H

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

typedef enum ScheduleKind {
    SCHEDULE_CONSTANT = 0,
    SCHEDULE_LINEAR,
    SCHEDULE_COSINE,
} ScheduleKind;

typedef struct Schedule {
    ScheduleKind kind;
    float peak_lr;
    long warmup_steps;  /* linear ramp from 0 */
    float min_lr_ratio; /* floor of linear/cosine decay, as a fraction of peak (0 = HF) */
} Schedule;

/* Learning rate for the update with 0-based index `step` of a schedule `length` updates
 * long; identical to HF's LambdaLR value for that step (so step 0 has lr 0 under warmup). */
float schedule_lr(const Schedule *s, long step, long length);
/* "constant", "linear", "cosine" -> kind; -1 if unknown. */
int schedule_kind_parse(const char *name);
const char *schedule_kind_name(ScheduleKind k);

#endif
