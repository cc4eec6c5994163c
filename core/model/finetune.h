/* A fine-tuning run: forward/backward + AdamW per step, with LoRA+ learning-rate groups and
 * the cascade (which covers LoRA, the LoRASC ablations, COLA and ReLoRA as configurations).
 * The model is reached through FinetuneModel (Llama and ViT provide one), batches are
 * opaque pointers the model understands, so this file knows nothing of datasets; progress
 * and expert boundaries go out to the caller, so it knows nothing of logging. */
#ifndef LORASC_FINETUNE_H
#define LORASC_FINETUNE_H

#include "core/model/cascade.h"
#include "core/model/step_log.h"
#include "core/model/train.h"
#include "core/model/vit.h"

/* What fine-tuning needs of a model. */
typedef struct FinetuneModel {
    void *model;
    /* Attaches the adapters (and initialises DoRA magnitudes from the base). */
    int (*attach)(void *model, LoraAdapters *lora);
    /* Zeroes all gradients, runs forward and backward on one batch and writes its mean loss
     * into loss_dev, a double in backend memory: reads nothing back, waits for nothing. */
    int (*forward_backward)(void *model, const void *batch, double *loss_dev);
    /* The base weight of a slot, for the cascade's merges and noise. */
    CascadeWeightFn weight;
    /* Parameters trained in full beside the adapters (ViT's head, as PEFT's
     * modules_to_save), continuously across experts; n = 0 when there are none. lr_scale 1. */
    ParamGroup extra;
} FinetuneModel;

/* A Llama batch: tokens and next-token targets [B*T] (target -1 = masked). */
typedef struct LlamaBatch {
    const int32_t *tokens, *targets;
    int B, T;
} LlamaBatch;
FinetuneModel finetune_model_llama(Llama *m);

/* A ViT batch: images [B, C, H, W] (normalised) and labels [B] (-1 = masked). */
typedef struct VitBatch {
    const Real *images;
    const int32_t *labels;
    int B;
} VitBatch;
FinetuneModel finetune_model_vit(ViT *m);

typedef struct FinetuneConfig {
    long total_steps;
    int batch, seq;          /* B, T of every step (finetune_run's Llama batches) */
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
    FinetuneModel model;
    LoraAdapters *fast;
    ParamGroup *groups;
    AdamW opt;
    Cascade cascade;
    long step;               /* steps done */
    StepLog log;             /* step results not yet taken (finetune_step without result) */
} Finetune;

/* Attaches fast to the model and sets up the optimiser and cascade. */
int finetune_begin(Finetune *ft, const FinetuneModel *model, LoraAdapters *fast,
                   const FinetuneConfig *cfg);
/* One optimiser step on a batch (LlamaBatch or VitBatch) at the cascade's learning rate.
 * *lr (may be NULL) is its rate. The step's loss, gradient norm and clipping stay on the
 * device: with result NULL nothing is read back and nothing waits for the device (the step's
 * result joins the pending ones, finetune_take_results; one read per STEP_LOG_SLOTS steps
 * at most); with result, the pending results are read (one read and a wait) and *result is
 * this step's. The expert boundary, if this step ends an expert, is left to
 * finetune_after_step, so a caller can look at the trained expert first. */
int finetune_step(Finetune *ft, const void *batch, StepResult *result, float *lr);
/* The number of steps whose results were not taken (finetune_step without result). */
int finetune_pending(const Finetune *ft);
/* The pending steps' results, oldest first, into out[0..finetune_pending(ft)) (one read back
 * from the device and a wait, the run's sync point), and none pending after. */
int finetune_take_results(Finetune *ft, StepResult *out);
/* After finetune_step: if that step ended an expert, does the boundary work and returns 1
 * with *event filled; else 0; -1 (error set) if the boundary work failed. */
int finetune_after_step(Finetune *ft, CascadeEvent *event);
/* 1 once every step has run (the last boundary has merged the learned update). */
int finetune_done(const Finetune *ft);
void finetune_end(Finetune *ft);
/* After the last step of a run begun with cfg->cascade.keep_merges: the adapter that
 * reproduces everything the run merged into the base (cascade_merged_adapter), created on the
 * run's backend; an error sentence when the run has none. */
int finetune_merged_adapter(const Finetune *ft, LoraAdapters *out);

/* Trains `fast` (attached to a Llama) for cfg->total_steps on batches from cb. On return the cascade's last merge
 * has put the learned update into the base weights and `fast` is re-initialised (B = 0). */
int finetune_run(Llama *model, LoraAdapters *fast, const FinetuneConfig *cfg,
                 const FinetuneCallbacks *cb);

/* The AdamW groups for adapters: one group for the whole block when ratio == 1 without DoRA,
 * else one group per A (lr x 1), per B (lr x ratio) and per DoRA magnitude (lr x 1, marked
 * continuous); plus `extra` first, marked continuous, when extra->n > 0. Returns the count;
 * *groups is malloc'ed. */
int finetune_lora_groups(LoraAdapters *lora, float weight_decay, float lora_plus_ratio,
                         const ParamGroup *extra, ParamGroup **groups);

#endif
