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
    /* After every optimiser update, before that step's expert boundary (may be NULL). */
    void (*on_step)(void *ctx, long step, const StepResult *result, float lr);
    /* After every expert boundary (may be NULL). */
    void (*on_event)(void *ctx, const CascadeEvent *event);
    void *ctx;
} FinetuneCallbacks;

/* A run driven one step at a time (the Lua harness's loop: one call per step). */
typedef struct Finetune {
    FinetuneConfig config;
    Llama *model;
    LoraAdapters *fast;
    ParamGroup *groups;
    AdamW opt;
    Cascade cascade;
    long step;               /* steps done */
} Finetune;

/* Attaches fast to model and sets up the optimiser and cascade. */
int finetune_begin(Finetune *ft, Llama *model, LoraAdapters *fast, const FinetuneConfig *cfg);
/* One optimiser step on tokens/targets [batch * seq] at the cascade's learning rate.
 * *result and *lr (may be NULL) describe it. The expert boundary, if this step ends an
 * expert, is left to finetune_after_step, so a caller can look at the trained expert first. */
int finetune_step(Finetune *ft, const int32_t *tokens, const int32_t *targets, StepResult *result,
                  float *lr);
/* After finetune_step: if that step ended an expert, does the boundary work and returns 1
 * with *event filled; else 0. */
int finetune_after_step(Finetune *ft, CascadeEvent *event);
/* 1 once every step has run (the last boundary has merged the learned update). */
int finetune_done(const Finetune *ft);
void finetune_end(Finetune *ft);

/* Trains `fast` (attached to model) for cfg->total_steps. On return the cascade's last merge
 * has put the learned update into the base weights and `fast` is re-initialised (B = 0). */
int finetune_run(Llama *model, LoraAdapters *fast, const FinetuneConfig *cfg,
                 const FinetuneCallbacks *cb);

/* The AdamW groups for adapters: one group for the whole block when ratio == 1, else one
 * group per A (lr x 1) and per B (lr x ratio). Returns the count; *groups is malloc'ed. */
int finetune_lora_groups(LoraAdapters *lora, float weight_decay, float lora_plus_ratio,
                         ParamGroup **groups);

#endif
