/* The fine-tuning loop (see finetune.h). */
#include "core/finetune.h"

#include <stdlib.h>

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
    *groups = malloc(2 * (size_t)lora->n_layers * LORA_NUM_TARGETS * sizeof **groups);
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
        }
    return n;
}

int finetune_run(Llama *model, LoraAdapters *fast, const FinetuneConfig *cfg,
                 const FinetuneCallbacks *cb) {
    if (!(cfg->lora_plus_ratio > 0.0f))
        return error_set("The LoRA+ ratio must be positive, got %g.", (double)cfg->lora_plus_ratio);
    if (cfg->batch <= 0 || cfg->seq <= 0)
        return error_set("Batch shape must be positive, got %d x %d.", cfg->batch, cfg->seq);
    int rc = LSC_OK;
    ParamGroup *groups = NULL;
    AdamW opt = {0};
    Cascade cascade = {0};
    const size_t rows = (size_t)cfg->batch * (size_t)cfg->seq;
    int32_t *tokens = malloc(rows * sizeof *tokens), *targets = malloc(rows * sizeof *targets);
    if (!tokens || !targets) {
        rc = error_set("Out of memory allocating a batch of %zu tokens.", rows);
        goto cleanup;
    }
    llama_attach_lora(model, fast);
    const int n_groups = finetune_lora_groups(fast, cfg->weight_decay, cfg->lora_plus_ratio, &groups);
    if (n_groups <= 0 || (rc = adamw_create(&opt, fast->be, &cfg->adamw, groups, n_groups)) != LSC_OK) {
        rc = LSC_ERR;
        goto cleanup;
    }
    if ((rc = cascade_create(&cascade, model, fast, &opt, &cfg->cascade, cfg->total_steps, cfg->seed)) != LSC_OK)
        goto cleanup;
    for (long step = 0; step < cfg->total_steps; step++) {
        StepResult result;
        CascadeEvent event;
        if ((rc = cb->batch(cb->ctx, step, tokens, targets)) != LSC_OK) goto cleanup;
        const float lr = cascade_lr(&cascade, &cfg->schedule, step);
        if ((rc = train_step(model, &opt, tokens, targets, cfg->batch, cfg->seq, lr, &result)) != LSC_OK)
            goto cleanup;
        if (cb->on_step) cb->on_step(cb->ctx, step, &result, lr);
        if (cascade_after_step(&cascade, step, &event) && cb->on_event) cb->on_event(cb->ctx, &event);
    }
cleanup:
    cascade_free(&cascade);
    adamw_free(&opt);
    free(groups);
    free(tokens);
    free(targets);
    return rc;
}
