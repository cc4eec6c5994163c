/* The fine-tuning loop (see finetune.h). */
#include "core/finetune.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int finetune_lora_groups(LoraAdapters *lora, float weight_decay, float lora_plus_ratio,
                         ParamGroup **groups) {
    if (lora_plus_ratio == 1.0f) {
        *groups = malloc(sizeof **groups);
        if (!*groups) return error_set("Out of memory allocating optimiser groups.");
        (*groups)[0] = (ParamGroup){.p = lora->params, .g = lora->grads, .n = lora->num_params,
                                    .lr_scale = 1.0f, .weight_decay = weight_decay};
        return 1;
    }
    int n = 0;
    *groups = malloc(3 * (size_t)lora->n_layers * LORA_NUM_TARGETS * sizeof **groups);
    if (!*groups) return error_set("Out of memory allocating optimiser groups.");
    const size_t r = (size_t)lora->config.rank;
    for (int l = 0; l < lora->n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(lora, t)) continue;
            (*groups)[n++] = (ParamGroup){.p = lora_a(lora, l, t), .g = lora_da(lora, l, t),
                                          .n = r * (size_t)lora->in_dim[t], .lr_scale = 1.0f,
                                          .weight_decay = weight_decay};
            (*groups)[n++] = (ParamGroup){.p = lora_b(lora, l, t), .g = lora_db(lora, l, t),
                                          .n = (size_t)lora->out_dim[t] * r,
                                          .lr_scale = lora_plus_ratio, .weight_decay = weight_decay};
            if (lora_has_magnitude(lora, t)) /* DoRA's m trains at the base rate */
                (*groups)[n++] = (ParamGroup){.p = lora_magnitude(lora, l, t),
                                              .g = lora_dmagnitude(lora, l, t),
                                              .n = (size_t)lora->out_dim[t], .lr_scale = 1.0f,
                                              .weight_decay = weight_decay};
        }
    return n;
}

int finetune_begin(Finetune *ft, Llama *model, LoraAdapters *fast, const FinetuneConfig *cfg) {
    memset(ft, 0, sizeof *ft);
    if (!(cfg->lora_plus_ratio > 0.0f))
        return error_set("The LoRA+ ratio must be positive, got %g.", (double)cfg->lora_plus_ratio);
    if (cfg->batch <= 0 || cfg->seq <= 0)
        return error_set("Batch shape must be positive, got %d x %d.", cfg->batch, cfg->seq);
    ft->config = *cfg;
    ft->model = model;
    ft->fast = fast;
    llama_attach_lora(model, fast);
    const int n_groups = finetune_lora_groups(fast, cfg->weight_decay, cfg->lora_plus_ratio, &ft->groups);
    if (n_groups <= 0 || adamw_create(&ft->opt, fast->be, &cfg->adamw, ft->groups, n_groups) != LSC_OK ||
        cascade_create(&ft->cascade, model, fast, &ft->opt, &cfg->cascade, cfg->total_steps, cfg->seed) != LSC_OK) {
        finetune_end(ft);
        return LSC_ERR;
    }
    return LSC_OK;
}

int finetune_step(Finetune *ft, const int32_t *tokens, const int32_t *targets, StepResult *result,
                  float *lr) {
    if (finetune_done(ft))
        return error_set("This run has done all of its %ld steps.", ft->config.total_steps);
    StepResult r;
    const float step_lr = cascade_lr(&ft->cascade, &ft->config.schedule, ft->step);
    if (train_step(ft->model, &ft->opt, tokens, targets, ft->config.batch, ft->config.seq, step_lr,
                   &r) != LSC_OK)
        return LSC_ERR;
    if (result) *result = r;
    if (lr) *lr = step_lr;
    ft->step++;
    return LSC_OK;
}

int finetune_after_step(Finetune *ft, CascadeEvent *event) {
    LSC_ASSERT(ft->step > 0);
    return cascade_after_step(&ft->cascade, ft->step - 1, event);
}

int finetune_done(const Finetune *ft) { return ft->step >= ft->config.total_steps; }

void finetune_end(Finetune *ft) {
    cascade_free(&ft->cascade);
    adamw_free(&ft->opt);
    free(ft->groups);
    memset(ft, 0, sizeof *ft);
}

int finetune_run(Llama *model, LoraAdapters *fast, const FinetuneConfig *cfg,
                 const FinetuneCallbacks *cb) {
    Finetune ft;
    if (finetune_begin(&ft, model, fast, cfg) != LSC_OK) return LSC_ERR;
    int rc = LSC_OK;
    const size_t rows = (size_t)cfg->batch * (size_t)cfg->seq;
    int32_t *tokens = malloc(rows * sizeof *tokens), *targets = malloc(rows * sizeof *targets);
    if (!tokens || !targets) rc = error_set("Out of memory allocating a batch of %zu tokens.", rows);
    while (rc == LSC_OK && !finetune_done(&ft)) {
        const long step = ft.step;
        StepResult result;
        CascadeEvent event;
        float lr;
        if ((rc = cb->batch(cb->ctx, step, tokens, targets)) != LSC_OK) break;
        if ((rc = finetune_step(&ft, tokens, targets, &result, &lr)) != LSC_OK) break;
        if (cb->on_step) cb->on_step(cb->ctx, step, &result, lr);
        if (finetune_after_step(&ft, &event) && cb->on_event) cb->on_event(cb->ctx, &event);
    }
    finetune_end(&ft);
    free(tokens);
    free(targets);
    return rc;
}
