/* The fine-tuning loop (see finetune.h). */
#include "core/model/finetune.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/model/device.h"

/* ------------------------------------------------------------------------------------------
 * the models */

static int llama_attach(void *model, LoraAdapters *lora) {
    /* a bf16 base: fp32 masters for the adapted matrices, which merges and noise write */
    if (llama_ensure_masters(model, lora->config.targets) != LSC_OK) return LSC_ERR;
    llama_attach_lora(model, lora);
    return LSC_OK;
}

static int llama_forward_backward(void *model, const void *batch, double *loss_dev) {
    const LlamaBatch *b = batch;
    return train_forward_backward(model, b->tokens, b->targets, b->B, b->T, loss_dev);
}

/* the cascade writes through it: in bf16 the master, whose bf16 copy is refreshed before
 * the next forward (so at every boundary, from the exact fp32 sum of the merges) */
static Real *llama_weight(void *model, int layer, int target) {
    return llama_target_master(model, target, layer);
}

FinetuneModel finetune_model_llama(Llama *m) {
    return (FinetuneModel){.model = m, .attach = llama_attach,
                           .forward_backward = llama_forward_backward, .weight = llama_weight};
}

static int vit_attach(void *model, LoraAdapters *lora) {
    if (vit_ensure_masters(model, lora->config.targets) != LSC_OK) return LSC_ERR; /* bf16 */
    return vit_attach_lora(model, lora);
}

static int vit_forward_backward(void *model, const void *batch, double *loss_dev) {
    ViT *m = model;
    const VitBatch *b = batch;
    vit_zero_grad(m);
    m->loss_out = loss_dev;
    const int rc =
        vit_forward(m, b->images, b->labels, b->B) == LSC_OK && vit_backward(m) == LSC_OK
            ? LSC_OK
            : LSC_ERR;
    m->loss_out = NULL;
    return rc;
}

static Real *vit_weight(void *model, int layer, int target) {
    return vit_target_master(model, target, layer);
}

FinetuneModel finetune_model_vit(ViT *m) {
    const size_t head = (size_t)m->config.n_classes * (size_t)m->config.dim + (size_t)m->config.n_classes;
    return (FinetuneModel){.model = m, .attach = vit_attach,
                           .forward_backward = vit_forward_backward, .weight = vit_weight,
                           .extra = {.p = m->head_params, .g = m->head_grads, .n = head,
                                     .lr_scale = 1.0f}};
}

/* ------------------------------------------------------------------------------------------
 * the loop */

int finetune_lora_groups(LoraAdapters *lora, float weight_decay, float lora_plus_ratio,
                         const ParamGroup *extra, ParamGroup **groups) {
    const int n_extra = extra && extra->n > 0;
    int n = 0;
    *groups = malloc((3 * (size_t)lora->n_layers * LORA_NUM_TARGETS + 2) * sizeof **groups);
    if (!*groups) return error_set("Out of memory allocating optimiser groups.");
    if (n_extra) {
        (*groups)[n] = *extra;
        (*groups)[n].continuous = 1;
        (*groups)[n++].weight_decay = weight_decay;
    }
    if (lora_plus_ratio == 1.0f && !lora->config.use_dora) {
        (*groups)[n++] = (ParamGroup){.p = lora->params, .g = lora->grads, .n = lora->num_params,
                                      .lr_scale = 1.0f, .weight_decay = weight_decay};
        return n;
    }
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
            if (lora_has_magnitude(lora, t)) /* DoRA's m: the base rate, across experts */
                (*groups)[n++] = (ParamGroup){.p = lora_magnitude(lora, l, t),
                                              .g = lora_dmagnitude(lora, l, t),
                                              .n = (size_t)lora->out_dim[t], .lr_scale = 1.0f,
                                              .weight_decay = weight_decay, .continuous = 1};
        }
    return n;
}

int finetune_begin(Finetune *ft, const FinetuneModel *model, LoraAdapters *fast,
                   const FinetuneConfig *cfg) {
    memset(ft, 0, sizeof *ft);
    if (!(cfg->lora_plus_ratio > 0.0f))
        return error_set("The LoRA+ ratio must be positive, got %g.", (double)cfg->lora_plus_ratio);
    if (cfg->cascade.schedule == EXPERT_SCHEDULE_JAGGED &&
        cfg->schedule.warmup_steps > cfg->cascade.steps_per_expert)
        return error_set("ReLoRA's first restart (step %ld) would come before its warm-up of %ld "
                         "steps ends: use a warm-up of at most `every` steps (ReLoRA asserts it).",
                         cfg->cascade.steps_per_expert, cfg->schedule.warmup_steps);
    if (lora_check_rank(&fast->config, fast->in_dim, fast->out_dim) != LSC_OK) return LSC_ERR;
    ft->config = *cfg;
    ft->model = *model;
    ft->fast = fast;
    if (model->attach(model->model, fast) != LSC_OK) return LSC_ERR;
    const int n_groups = finetune_lora_groups(fast, cfg->weight_decay, cfg->lora_plus_ratio,
                                              &model->extra, &ft->groups);
    if (step_log_init(&ft->log, fast->be) != LSC_OK) {
        finetune_end(ft);
        return LSC_ERR;
    }
    if (n_groups <= 0 || adamw_create(&ft->opt, fast->be, &cfg->adamw, ft->groups, n_groups) != LSC_OK ||
        cascade_create(&ft->cascade, model->weight, model->model, fast, &ft->opt, &cfg->cascade,
                       cfg->total_steps, cfg->seed) != LSC_OK) {
        finetune_end(ft);
        return LSC_ERR;
    }
    if (device_sync(fast->be) != LSC_OK) { /* DoRA's magnitudes, the slow copy */
        finetune_end(ft);
        return LSC_ERR;
    }
    return LSC_OK;
}

int finetune_step(Finetune *ft, const void *batch, StepResult *result, float *lr) {
    if (finetune_done(ft))
        return error_set("This run has done all of its %ld steps.", ft->config.total_steps);
    double *slot = step_log_slot(&ft->log); /* this step's loss, then its gradient norm */
    if (!slot) return LSC_ERR;
    const float step_lr = cascade_lr(&ft->cascade, &ft->config.schedule, ft->step);
    if (ft->model.forward_backward(ft->model.model, batch, slot) != LSC_OK) return LSC_ERR;
    adamw_step_dev(&ft->opt, step_lr, slot + 1);
    if (device_check(ft->opt.be) != LSC_OK) return LSC_ERR; /* the end of an optimiser step */
    step_log_commit(&ft->log);
    if (lr) *lr = step_lr;
    ft->step++;
    return result ? step_log_take_last(&ft->log, result) : LSC_OK;
}

int finetune_pending(const Finetune *ft) { return step_log_pending(&ft->log); }

int finetune_take_results(Finetune *ft, StepResult *out) { return step_log_take(&ft->log, out); }

int finetune_after_step(Finetune *ft, CascadeEvent *event) {
    LSC_ASSERT(ft->step > 0);
    return cascade_after_step(&ft->cascade, ft->step - 1, event);
}

int finetune_done(const Finetune *ft) { return ft->step >= ft->config.total_steps; }

int finetune_merged_adapter(const Finetune *ft, LoraAdapters *out) {
    if (!finetune_done(ft))
        return error_set("The run has done %ld of its %ld steps: its adapter is not final yet.",
                         ft->step, ft->config.total_steps);
    return cascade_merged_adapter(&ft->cascade, out);
}

void finetune_end(Finetune *ft) {
    step_log_free(&ft->log);
    cascade_free(&ft->cascade);
    adamw_free(&ft->opt);
    free(ft->groups);
    memset(ft, 0, sizeof *ft);
}

int finetune_run(Llama *model, LoraAdapters *fast, const FinetuneConfig *cfg,
                 const FinetuneCallbacks *cb) {
    if (cfg->batch <= 0 || cfg->seq <= 0)
        return error_set("Batch shape must be positive, got %d x %d.", cfg->batch, cfg->seq);
    Finetune ft;
    const FinetuneModel fm = finetune_model_llama(model);
    if (finetune_begin(&ft, &fm, fast, cfg) != LSC_OK) return LSC_ERR;
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
        const LlamaBatch batch = {.tokens = tokens, .targets = targets, .B = cfg->batch, .T = cfg->seq};
        if ((rc = finetune_step(&ft, &batch, &result, &lr)) != LSC_OK) break;
        if (cb->on_step) cb->on_step(cb->ctx, step, &result, lr);
        const int boundary = finetune_after_step(&ft, &event);
        if (boundary < 0) {
            rc = LSC_ERR;
            break;
        }
        if (boundary && cb->on_event) cb->on_event(cb->ctx, &event);
    }
    finetune_end(&ft);
    free(tokens);
    free(targets);
    return rc;
}
