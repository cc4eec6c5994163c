/* One optimisation step of a Llama (full or LoRA mode, whichever the model is set up for):
 * zero grads, forward, backward, AdamW. The loop around it (schedules, cascades, logging)
 * belongs to callers. */
#ifndef LORASC_TRAIN_H
#define LORASC_TRAIN_H

#include "core/model/llama.h"
#include "core/model/adamw.h"

typedef struct StepResult {
    double loss;      /* mean loss of the batch before the update */
    double grad_norm; /* global gradient norm before clipping */
} StepResult;

/* Zeroed gradients, then the forward (its mean loss left in backend memory at loss_dev, or
 * read into m->mean_loss when loss_dev is NULL; the classifier's gradient computed with the
 * loss: Llama.backward_follows) and the backward. */
int train_forward_backward(Llama *m, const int32_t *tokens, const int32_t *targets, int B,
                           int T, double *loss_dev);

/* With result NULL nothing is read back and nothing waits for the device (errors recorded
 * so far are still returned); with result, the loss and norm are read and the device waited
 * for. */
int train_step(Llama *m, AdamW *opt, const int32_t *tokens, const int32_t *targets, int B, int T,
               float lr, StepResult *result);

/* The step with its loss and gradient norm written to out[0] and out[1], backend memory (a
 * StepLog slot, core/model/step_log.h): nothing read back, nothing waited for. */
int train_step_dev(Llama *m, AdamW *opt, const int32_t *tokens, const int32_t *targets, int B,
                   int T, float lr, double *out);

/* The trainable parameters as AdamW groups: the model's block in full mode, else the
 * attached adapters' block. Returns the number of groups (1), 0 if nothing is trainable. */
int train_param_groups(Llama *m, float weight_decay, ParamGroup *groups);

#endif
