/* One training step (see train.h). */
#include "core/model/train.h"

#include "core/base/error.h"
#include "core/model/device.h"

int train_forward_backward(Llama *m, const int32_t *tokens, const int32_t *targets, int B,
                           int T, double *loss_dev) {
    llama_zero_grad(m);
    m->loss_out = loss_dev;
    m->backward_follows = 1;
    const int rc = llama_forward_loss(m, tokens, targets, B, T) == LSC_OK &&
                           llama_backward(m) == LSC_OK
                       ? LSC_OK
                       : LSC_ERR;
    m->loss_out = NULL;
    m->backward_follows = 0;
    return rc;
}

int train_step(Llama *m, AdamW *opt, const int32_t *tokens, const int32_t *targets, int B, int T,
               float lr, StepResult *result) {
    if (!result) { /* nothing to report: the loss and the norm stay on the device */
        /* opt->stats + 1 is scratch for the loss until adamw_step_dev writes the norm there */
        if (train_forward_backward(m, tokens, targets, B, T, opt->stats + 1) != LSC_OK) return LSC_ERR;
        adamw_step_dev(opt, lr, NULL);
        return device_check(opt->be);
    }
    if (train_forward_backward(m, tokens, targets, B, T, NULL) != LSC_OK) return LSC_ERR;
    const double loss = m->mean_loss;
    const double norm = adamw_step(opt, lr);
    if (device_sync(opt->be) != LSC_OK) return LSC_ERR; /* the end of an optimiser step */
    *result = (StepResult){.loss = loss, .grad_norm = norm};
    return LSC_OK;
}

int train_step_dev(Llama *m, AdamW *opt, const int32_t *tokens, const int32_t *targets, int B,
                   int T, float lr, double *out) {
    if (train_forward_backward(m, tokens, targets, B, T, out) != LSC_OK) return LSC_ERR;
    adamw_step_dev(opt, lr, out + 1);
    return device_check(opt->be);
}

int train_param_groups(Llama *m, float weight_decay, ParamGroup *groups) {
    if (m->grads) {
        groups[0] = (ParamGroup){.p = m->params, .g = m->grads, .n = m->num_params,
                                 .lr_scale = 1.0f, .weight_decay = weight_decay};
        return 1;
    }
    if (m->lora) {
        groups[0] = (ParamGroup){.p = m->lora->params, .g = m->lora->grads,
                                 .n = m->lora->num_params, .lr_scale = 1.0f,
                                 .weight_decay = weight_decay};
        return 1;
    }
    return 0;
}
