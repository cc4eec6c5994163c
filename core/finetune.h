/* A fine-tuning run: the step loop around train_step, with LoRA+ learning-rate groups and
 * the cascade (which covers LoRA, the LoRASC ablations, COLA and ReLoRA as configurations).
 * Data comes from a callback, so this file knows nothing of datasets; progress and expert
 * boundaries go out through callbacks, so it knows nothing of logging. */
#ifndef LORASC_FINETUNE_H
#define LORASC_FINETUNE_H

#include "core/cascade.h"
#include "core/train.h"

typedef struct FinetuneConfig {
    long total_steps;
    int batch, seq;          /* B, T of every step */
    Schedule schedule;       /* the base schedule (peak lr, warm-up, kind) */
    AdamWConfig adamw;
    float weight_decay;
    float lora_plus_ratio;   /* LoRA+: B's learning rate = ratio x A's; 1 = plain LoRA */
    CascadeConfig cascade;
    uint64_t seed;           /* expert seeds and noise */
} FinetuneConfig;

typedef struct FinetuneCallbacks {
    /* Fills tokens and targets [batch * seq] for global step `step`. */
    int (*batch)(void *ctx, long step, int32_t *tokens, int32_t *targets);
    /* After every optimiser update (may be NULL). */
    void (*on_step)(void *ctx, long step, const StepResult *result, float lr);
    /* After every expert boundary (may be NULL). */
    void (*on_event)(void *ctx, const CascadeEvent *event);
    void *ctx;
} FinetuneCallbacks;

/* Trains `fast` (attached to model) for cfg->total_steps. On return the cascade's last merge
 * has put the learned update into the base weights and `fast` is re-initialised (B = 0). */
int finetune_run(Llama *model, LoraAdapters *fast, const FinetuneConfig *cfg,
                 const FinetuneCallbacks *cb);

/* The AdamW groups for adapters: one group for the whole block when ratio == 1, else one
 * group per A (lr x 1) and per B (lr x ratio). Returns the count; *groups is malloc'ed. */
int finetune_lora_groups(LoraAdapters *lora, float weight_decay, float lora_plus_ratio,
                         ParamGroup **groups);

#endif
