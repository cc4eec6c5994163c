/* Training a ViT on an image task (core/tasks/image_task.h), one optimiser step per call:
 * the batch sampler (a seeded shuffle of the train split per epoch, seeded crop/flip
 * augmentation), full training of every weight (pretraining), and a LoRA / cascade
 * fine-tuning run (core/model/finetune.h) with the head trained in full. Not here: the
 * optimiser and the cascade themselves (core/model), logging (the caller's). */
#ifndef LORASC_IMAGE_TRAIN_H
#define LORASC_IMAGE_TRAIN_H

#include "core/base/background.h"
#include "core/model/finetune.h"
#include "core/tasks/image_task.h"

typedef struct ImageSamplerConfig {
    int batch;           /* B > 0 */
    uint64_t seed;       /* the per-epoch shuffles and the augmentation draws */
    ImageAugment aug;
    int prefetch;        /* 1: a streamed train set's next batch is decoded in the background
                          * while the caller computes on this one (image_prefetch_wanted) */
    long steps;          /* the run's steps: no batch is prefetched for step `steps` or later
                          * (0: no bound); the trainer and fine-tuning set it themselves */
} ImageSamplerConfig;

/* One batch's buffers. */
typedef struct ImageBatchBuffers {
    int *pos;                /* [B] train-split positions */
    Real *images;            /* [B, C, image_size, image_size] */
    int32_t *labels;         /* [B] */
} ImageBatchBuffers;

typedef struct ImageSampler {
    ImageSamplerConfig config;
    const ImageTask *task;   /* not owned; outlives the sampler */
    int *perm;               /* [n train] the shuffle of epoch `epoch` */
    long epoch;              /* -1 before the first batch */
    int image_size;          /* the model's: batches are resized to it (image_task_batch_sized) */
    ImageBatchBuffers now;   /* the batch last returned */
    /* prefetching (config.prefetch on a streamed set): batch `ahead_step`, being made in
     * `ahead` by `worker` since the last call returned */
    int prefetching;
    ImageBatchBuffers ahead;
    long ahead_step;
    Background worker;
} ImageSampler;

/* A sampler of task's train split for a ViT of config c (image_task_check_vit). */
int image_sampler_init(ImageSampler *s, const ImageTask *task, const ViTConfig *c,
                       const ImageSamplerConfig *cfg);
/* The batch of global step `step`: positions step*B .. step*B + B - 1 of the concatenation
 * of the per-epoch shuffles (imagedata_shuffle(seed, epoch)) of the train split, so every
 * image is seen once per epoch. The batch points into the sampler, valid until the next call.
 * Prefetching, the call then starts making step + 1's batch on a thread of its own (unless
 * step + 1 is past the run's steps); the next call takes it if it asks for that step (the
 * same bytes as made there), else discards it. */
int image_sampler_batch(ImageSampler *s, long step, VitBatch *batch);
/* Waits for a batch being prefetched, then frees everything. */
void image_sampler_free(ImageSampler *s);

/* Full training (pretraining) ------------------------------------------------------------- */
typedef struct ImageTrainConfig {
    long total_steps;    /* > 0; the schedule runs over them */
    Schedule schedule;
    AdamWConfig adamw;
    float weight_decay;
} ImageTrainConfig;

typedef struct ImageTrainer {
    ViT *model;          /* not owned */
    AdamW opt;
    Schedule schedule;
    long total_steps, step;
    ImageSampler sampler;
    StepLog log;         /* deferred steps' results (image_trainer_step without result) */
    int opt_live;
} ImageTrainer;

/* Enables m's full gradients and one AdamW group over every weight. On failure t is left
 * empty (image_trainer_end is still safe). */
int image_trainer_begin(ImageTrainer *t, ViT *m, const ImageTask *task,
                        const ImageTrainConfig *cfg, const ImageSamplerConfig *scfg);
/* One step: the sampler's batch, forward, backward, AdamW at the schedule's rate.
 * result->loss is the batch's mean loss, result->grad_norm the norm before clipping. With
 * result NULL they stay on the device (t->log, taken with step_log_take): nothing is read
 * back and nothing waited for, as in fine-tuning. */
int image_trainer_step(ImageTrainer *t, StepResult *result, float *lr);
void image_trainer_end(ImageTrainer *t);

/* LoRA / cascade fine-tuning ---------------------------------------------------------------- */
typedef struct ImageFinetune {
    Finetune ft;
    LoraAdapters lora;
    ViT *model;          /* not owned; holds the merged result after image_finetune_end */
    ImageSampler sampler;
    int lora_live, ft_live;
} ImageFinetune;

/* Adapters of lc on m (vit_lora_shapes, seeded by cfg->seed) and a Finetune of cfg over them
 * (cfg->batch is taken from scfg). On failure f is left empty. */
int image_finetune_begin(ImageFinetune *f, ViT *m, const ImageTask *task,
                         const FinetuneConfig *cfg, const LoraConfig *lc,
                         const ImageSamplerConfig *scfg);
/* One finetune_step on the sampler's batch (result NULL: its results stay on the device, as
 * finetune_step's), then finetune_after_step: returns 1 with *event filled when the step ended
 * an expert, 0 when not, LSC_ERR on failure (also when no steps are left). */
int image_finetune_step(ImageFinetune *f, StepResult *result, float *lr, CascadeEvent *event);
/* Ends the run and detaches the adapters: the model keeps the merged update. */
void image_finetune_end(ImageFinetune *f);

#endif
