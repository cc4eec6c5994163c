/* The ViT batch sampler, the full-training step and the fine-tuning run on an image task.
 * See image_train.h. */
#include "core/tasks/image_train.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/model/device.h"

/* Sampler ---------------------------------------------------------------------------------- */

static int buffers_alloc(ImageBatchBuffers *b, int B, const ViTConfig *c) {
    b->pos = malloc(sizeof(int) * (size_t)B);
    b->images = malloc(sizeof(Real) * (size_t)B * c->channels * c->image_size * c->image_size);
    b->labels = malloc(sizeof(int32_t) * (size_t)B);
    return b->pos && b->images && b->labels ? LSC_OK : LSC_ERR;
}

static void buffers_free(ImageBatchBuffers *b) {
    free(b->pos), free(b->images), free(b->labels);
    memset(b, 0, sizeof *b);
}

int image_sampler_init(ImageSampler *s, const ImageTask *task, const ViTConfig *c,
                       const ImageSamplerConfig *cfg) {
    memset(s, 0, sizeof *s);
    s->config = *cfg;
    s->task = task;
    s->epoch = -1;
    const int B = cfg->batch;
    if (B <= 0) return error_set("batch must be > 0, got %d", B);
    if (image_task_check_vit(task, c) != LSC_OK) return LSC_ERR;
    /* only a streamed set has decoding worth hiding; one held in memory is a copy */
    s->prefetching = cfg->prefetch && task->train.files;
    s->perm = malloc(sizeof(int) * (size_t)task->n[IMAGE_TRAIN]);
    s->image_size = c->image_size;
    if (!s->perm || buffers_alloc(&s->now, B, c) != LSC_OK ||
        (s->prefetching && buffers_alloc(&s->ahead, B, c) != LSC_OK)) {
        image_sampler_free(s);
        return error_set("out of memory for batches of %d images of %s", B, task->name);
    }
    return LSC_OK;
}

void image_sampler_free(ImageSampler *s) {
    background_stop(&s->worker);
    free(s->perm);
    buffers_free(&s->now), buffers_free(&s->ahead);
    memset(s, 0, sizeof *s);
}

/* The train-split positions of step's batch into pos (reshuffling at an epoch's start). */
static void sampler_positions(ImageSampler *s, long step, int *pos) {
    const int n = s->task->n[IMAGE_TRAIN], B = s->config.batch;
    for (int b = 0; b < B; b++) {
        const long p = step * B + b, e = p / n;
        if (e != s->epoch) {
            imagedata_shuffle(s->perm, n, s->config.seed, (uint64_t)e);
            s->epoch = e;
        }
        pos[b] = s->perm[p % n];
    }
}

/* Makes step's batch into buffers b (positions filled in). Reads only the task and the
 * config, so that the worker can make one while the caller computes. */
static int batch_make(const ImageSampler *s, long step, ImageBatchBuffers *b) {
    return image_task_batch_sized(s->task, IMAGE_TRAIN, b->pos, s->config.batch, s->image_size,
                                  b->images, b->labels, &s->config.aug, s->config.seed,
                                  (uint64_t)step);
}

/* The worker's job: batch ahead_step into the ahead buffers, neither touched by the caller
 * until it has waited. */
static int batch_make_ahead(void *p) {
    ImageSampler *s = p;
    return batch_make(s, s->ahead_step, &s->ahead);
}

int image_sampler_batch(ImageSampler *s, long step, VitBatch *batch) {
    int have = 0;
    if (s->worker.live) {
        if (s->ahead_step == step) {
            /* its failure is this call's (e.g. an image that stopped decoding) */
            if (background_wait(&s->worker) != LSC_OK) return LSC_ERR;
            const ImageBatchBuffers t = s->now;
            s->now = s->ahead, s->ahead = t;
            have = 1;
        } else {
            background_discard(&s->worker); /* another step was asked for (a resumed run) */
        }
    }
    if (!have) {
        sampler_positions(s, step, s->now.pos);
        if (batch_make(s, step, &s->now) != LSC_OK) return LSC_ERR;
    }
    *batch = (VitBatch){.images = s->now.images, .labels = s->now.labels, .B = s->config.batch};
    /* the run's last batch has no successor to make (it would be decoded and thrown away) */
    if (s->prefetching && (s->config.steps <= 0 || step + 1 < s->config.steps)) {
        s->ahead_step = step + 1;
        sampler_positions(s, step + 1, s->ahead.pos);
        background_start(&s->worker, batch_make_ahead, s);
    }
    return LSC_OK;
}

/* Full training ---------------------------------------------------------------------------- */

int image_trainer_begin(ImageTrainer *t, ViT *m, const ImageTask *task,
                        const ImageTrainConfig *cfg, const ImageSamplerConfig *scfg) {
    memset(t, 0, sizeof *t);
    if (cfg->total_steps <= 0) return error_set("pretraining: steps must be > 0");
    t->model = m;
    t->total_steps = cfg->total_steps;
    t->schedule = cfg->schedule;
    ImageSamplerConfig sc = *scfg;
    sc.steps = cfg->total_steps;
    int rc = image_sampler_init(&t->sampler, task, &m->config, &sc);
    if (rc == LSC_OK) rc = step_log_init(&t->log, m->be);
    if (rc == LSC_OK) rc = vit_enable_full_grads(m);
    if (rc == LSC_OK) {
        const ParamGroup g = {.p = m->params, .g = m->grads, .n = m->num_params, .lr_scale = 1,
                              .weight_decay = cfg->weight_decay};
        rc = adamw_create(&t->opt, m->be, &cfg->adamw, &g, 1);
    }
    if (rc != LSC_OK) {
        image_trainer_end(t);
        return LSC_ERR;
    }
    t->opt_live = 1;
    return LSC_OK;
}

int image_trainer_step(ImageTrainer *t, StepResult *result, float *lr) {
    VitBatch b;
    if (image_sampler_batch(&t->sampler, t->step, &b) != LSC_OK) return LSC_ERR;
    const float rate = schedule_lr(&t->schedule, t->step, t->total_steps);
    double *slot = NULL; /* deferred: the step's loss and norm, in backend memory */
    if (!result && !(slot = step_log_slot(&t->log))) return LSC_ERR;
    vit_zero_grad(t->model);
    t->model->loss_out = slot;
    const int rc = vit_forward(t->model, b.images, b.labels, b.B) == LSC_OK &&
                           vit_backward(t->model) == LSC_OK
                       ? LSC_OK
                       : LSC_ERR;
    t->model->loss_out = NULL;
    if (rc != LSC_OK) return LSC_ERR;
    if (slot) {
        adamw_step_dev(&t->opt, rate, slot + 1);
        if (device_check(t->opt.be) != LSC_OK) return LSC_ERR;
        step_log_commit(&t->log);
    } else {
        result->loss = t->model->mean_loss;
        result->grad_norm = adamw_step(&t->opt, rate);
        if (device_sync(t->opt.be) != LSC_OK) return LSC_ERR; /* the end of an optimiser step */
    }
    if (lr) *lr = rate;
    t->step++;
    return LSC_OK;
}

void image_trainer_end(ImageTrainer *t) {
    if (t->opt_live) adamw_free(&t->opt);
    t->opt_live = 0;
    image_sampler_free(&t->sampler);
    step_log_free(&t->log);
}

/* Fine-tuning ------------------------------------------------------------------------------ */

int image_finetune_begin(ImageFinetune *f, ViT *m, const ImageTask *task,
                         const FinetuneConfig *cfg, const LoraConfig *lc,
                         const ImageSamplerConfig *scfg) {
    memset(f, 0, sizeof *f);
    FinetuneConfig c = *cfg;
    c.batch = scfg->batch;
    c.seq = 1;
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    vit_lora_shapes(&m->config, in, out);
    ImageSamplerConfig sc = *scfg;
    sc.steps = c.total_steps;
    int rc = image_sampler_init(&f->sampler, task, &m->config, &sc);
    if (rc == LSC_OK) rc = lora_create(&f->lora, m->be, lc, m->config.n_layers, in, out, c.seed);
    if (rc == LSC_OK) {
        f->lora_live = 1;
        f->model = m;
        const FinetuneModel fm = finetune_model_vit(m);
        rc = finetune_begin(&f->ft, &fm, &f->lora, &c);
    }
    if (rc != LSC_OK) {
        image_finetune_end(f);
        return LSC_ERR;
    }
    f->ft_live = 1;
    return LSC_OK;
}

int image_finetune_step(ImageFinetune *f, StepResult *result, float *lr, CascadeEvent *event) {
    if (finetune_done(&f->ft)) return error_set("the fine-tuning run has no steps left");
    VitBatch b;
    if (image_sampler_batch(&f->sampler, f->ft.step, &b) != LSC_OK) return LSC_ERR;
    if (finetune_step(&f->ft, &b, result, lr) != LSC_OK) return LSC_ERR;
    return finetune_after_step(&f->ft, event);
}

void image_finetune_end(ImageFinetune *f) {
    if (f->ft_live) finetune_end(&f->ft);
    if (f->model && f->model->lora == &f->lora) vit_attach_lora(f->model, NULL);
    f->model = NULL;
    if (f->lora_live) lora_free(&f->lora);
    f->ft_live = f->lora_live = 0;
    image_sampler_free(&f->sampler);
}
