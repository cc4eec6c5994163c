/* Llama checkpoints (see checkpoint.h): what the model, adapters and optimizer store in the
 * container of core/formats/container.h, and how they are restored. Every failure a user can
 * cause (missing, truncated, corrupt or mismatched file) is one sentence that names the file
 * and what was expected. */
#include "core/formats/checkpoint.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/formats/container.h"

/* ------------------------------------------------------------------------------------------
 * writer */

static void write_model(ContainerWriter *w, const Llama *m) {
    const LlamaConfig *c = &m->config;
    const int32_t ci[] = {c->dim,        c->hidden_dim, c->n_layers,
                          c->n_heads,    c->n_kv_heads, c->vocab_size,
                          c->seq_len,    c->tied_embeddings, (int32_t)c->rope_style};
    const float cf[] = {c->rope_theta, c->norm_eps};
    container_write_section(w, "llama.config.i32", CONTAINER_I32, ci, 9);
    container_write_section(w, "llama.config.f32", CONTAINER_F32, cf, 2);
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        if (!m->param_sizes[i]) continue;
        char name[CONTAINER_NAME_LEN];
        snprintf(name, sizeof name, "llama.%s", llama_param_name(i));
        Real *t; /* a bf16 base's matrices widened to fp32 on the fly */
        int owned;
        if (llama_tensor_fp32(m, i, &t, &owned) != LSC_OK) {
            w->failed = 1;
            continue;
        }
        container_write_reals(w, m->be, name, t, m->param_sizes[i]);
        if (owned) m->be->free(m->be, t);
    }
}

static void lora_config_ints(const LoraAdapters *lora, int32_t out[17]) {
    out[0] = lora->config.rank;
    out[1] = (int32_t)lora->config.targets;
    out[2] = lora->n_layers;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        out[3 + t] = lora->in_dim[t];
        out[3 + LORA_NUM_TARGETS + t] = lora->out_dim[t];
    }
}

int checkpoint_save(const char *path, const Llama *model, const LoraAdapters *lora,
                    const AdamW *opt, long step) {
    ContainerWriter w;
    if (container_write_begin(&w, path) != LSC_OK) return LSC_ERR;
    if (model) write_model(&w, model);
    if (lora) {
        int32_t ci[17];
        lora_config_ints(lora, ci);
        container_write_section(&w, "lora.config.i32", CONTAINER_I32, ci, 17);
        container_write_section(&w, "lora.config.f32", CONTAINER_F32, &lora->config.alpha, 1);
        if (lora->config.use_dora) {
            const int32_t dora = 1;
            container_write_section(&w, "lora.dora", CONTAINER_I32, &dora, 1);
        }
        container_write_reals(&w, lora->be, "lora.params", lora->params, lora->num_params);
    }
    if (opt) {
        const int64_t opt_step = opt->step;
        container_write_reals(&w, opt->be, "adamw.m", opt->m, opt->n_total);
        container_write_reals(&w, opt->be, "adamw.v", opt->v, opt->n_total);
        container_write_section(&w, "adamw.step", CONTAINER_I64, &opt_step, 1);
        /* per-group step counts (bias corrections); files without them hold one count */
        int64_t *steps = malloc((size_t)opt->n_groups * sizeof *steps);
        if (steps) {
            for (int i = 0; i < opt->n_groups; i++) steps[i] = opt->group_step[i];
            container_write_section(&w, "adamw.group_steps", CONTAINER_I64, steps, (uint64_t)opt->n_groups);
        } else {
            w.failed = 1; /* container_write_end reports it and removes the partial file */
        }
        free(steps);
    }
    const int64_t train_step = step;
    container_write_section(&w, "train.step", CONTAINER_I64, &train_step, 1);
    return container_write_end(&w);
}

/* ------------------------------------------------------------------------------------------
 * reader */

/* DoRA adapters carry a "lora.dora" section (added after version 1's first release: files
 * without it hold plain LoRA). */
static int read_dora_flag(ContainerReader *r, int *use_dora) {
    int32_t flag = 0;
    *use_dora = 0;
    if (!container_find(r, "lora.dora")) return LSC_OK;
    if (container_read(r, "lora.dora", CONTAINER_I32, &flag, 1) != LSC_OK) return LSC_ERR;
    *use_dora = flag != 0;
    return LSC_OK;
}

static int read_model_config(ContainerReader *r, LlamaConfig *c) {
    if (!container_find(r, "llama.config.i32"))
        return error_set("%s has no section 'llama.config.i32': it holds no Llama model%s.", r->path,
                         container_find(r, "vit.config.i32")
                             ? " (it is a ViT checkpoint: load it with vit_checkpoint_load)"
                             : "");
    int32_t ci[9];
    float cf[2];
    if (container_read(r, "llama.config.i32", CONTAINER_I32, ci, 9) != LSC_OK ||
        container_read(r, "llama.config.f32", CONTAINER_F32, cf, 2) != LSC_OK)
        return LSC_ERR;
    *c = (LlamaConfig){.dim = ci[0], .hidden_dim = ci[1], .n_layers = ci[2], .n_heads = ci[3],
                       .n_kv_heads = ci[4], .vocab_size = ci[5], .seq_len = ci[6],
                       .tied_embeddings = ci[7], .rope_style = (RopeStyle)ci[8],
                       .rope_theta = cf[0], .norm_eps = cf[1]};
    if (llama_config_validate(c) != LSC_OK)
        return error_set("%s holds an invalid model config: %s", r->path, error_last());
    return LSC_OK;
}

/* Every weight section the config implies is present with that many fp32 elements, checked
 * before the model is allocated: the sections lie inside the file (container_open), so a
 * corrupt config cannot make lorasc allocate more than the file holds. */
static int check_model_sections(ContainerReader *r, const LlamaConfig *c) {
    size_t sizes[LLAMA_NUM_PARAM_TENSORS];
    llama_param_sizes(c, sizes);
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        if (!sizes[i]) continue;
        char name[CONTAINER_NAME_LEN];
        snprintf(name, sizeof name, "llama.%s", llama_param_name(i));
        const ContainerSection *s = container_find(r, name);
        if (!s)
            return error_set("%s has no section '%s', which its model config (dim %d, %d layers, "
                             "vocab %d) needs: the file is incomplete or corrupt.", r->path, name,
                             c->dim, c->n_layers, c->vocab_size);
        if (s->dtype != CONTAINER_F32 || s->count != sizes[i])
            return error_set("%s: section '%s' holds %llu elements but its model config (dim %d, "
                             "hidden %d, %d layers, vocab %d) implies %zu: the config or the "
                             "weights are corrupt.", r->path, name, (unsigned long long)s->count,
                             c->dim, c->hidden_dim, c->n_layers, c->vocab_size, sizes[i]);
    }
    return LSC_OK;
}

static int read_model_weights(ContainerReader *r, Llama *m) {
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        if (!m->param_sizes[i]) continue;
        char name[CONTAINER_NAME_LEN];
        snprintf(name, sizeof name, "llama.%s", llama_param_name(i));
        if (container_read_reals(r, m->be, name, m->w.tensors[i], m->param_sizes[i]) != LSC_OK)
            return LSC_ERR;
    }
    llama_weights_changed(m);
    return LSC_OK;
}

int checkpoint_load_model(const char *path, Llama *model, Backend *be) {
    ContainerReader r;
    LlamaConfig c;
    memset(model, 0, sizeof *model);
    if (container_open(&r, path) != LSC_OK) return LSC_ERR;
    int rc = read_model_config(&r, &c);
    if (rc == LSC_OK) rc = check_model_sections(&r, &c);
    if (rc == LSC_OK) rc = llama_create(model, be, &c);
    if (rc == LSC_OK) {
        rc = read_model_weights(&r, model);
        if (rc != LSC_OK) llama_free(model);
    }
    container_close(&r);
    return rc;
}

static int same_config(const LlamaConfig *a, const LlamaConfig *b) {
    return a->dim == b->dim && a->hidden_dim == b->hidden_dim && a->n_layers == b->n_layers &&
           a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->vocab_size == b->vocab_size && a->tied_embeddings == b->tied_embeddings;
}

int checkpoint_load_state(const char *path, Llama *model, LoraAdapters *lora, AdamW *opt,
                          long *step) {
    ContainerReader r;
    if (container_open(&r, path) != LSC_OK) return LSC_ERR;
    int rc = LSC_OK;
    if (model) {
        LlamaConfig c;
        rc = read_model_config(&r, &c);
        if (rc == LSC_OK && !same_config(&c, &model->config))
            rc = error_set("%s holds a model of another shape (dim %d, %d layers, vocab %d) than the "
                           "one being restored (dim %d, %d layers, vocab %d).", path, c.dim,
                           c.n_layers, c.vocab_size, model->config.dim, model->config.n_layers,
                           model->config.vocab_size);
        if (rc == LSC_OK) rc = read_model_weights(&r, model);
    }
    if (rc == LSC_OK && lora) {
        int32_t have[17], want[17];
        lora_config_ints(lora, want);
        int dora = 0;
        rc = container_read(&r, "lora.config.i32", CONTAINER_I32, have, 17);
        if (rc == LSC_OK) rc = read_dora_flag(&r, &dora);
        if (rc == LSC_OK && dora != lora->config.use_dora)
            rc = error_set("%s holds %s adapters; the adapter being restored is %s.", path,
                           dora ? "DoRA" : "LoRA", lora->config.use_dora ? "DoRA" : "LoRA");
        if (rc == LSC_OK && memcmp(have, want, sizeof have) != 0)
            rc = error_set("%s holds LoRA adapters of rank %d on targets 0x%x over %d layers; the "
                           "adapter being restored has rank %d on targets 0x%x over %d layers.",
                           path, have[0], (unsigned)have[1], have[2], want[0], (unsigned)want[1], want[2]);
        if (rc == LSC_OK) rc = container_read_reals(&r, lora->be, "lora.params", lora->params, lora->num_params);
        if (rc == LSC_OK) lora->magnitudes_set = 1; /* DoRA's m came from the file */
    }
    if (rc == LSC_OK && opt) {
        int64_t opt_step = 0;
        rc = container_read_reals(&r, opt->be, "adamw.m", opt->m, opt->n_total);
        if (rc == LSC_OK) rc = container_read_reals(&r, opt->be, "adamw.v", opt->v, opt->n_total);
        if (rc == LSC_OK) rc = container_read(&r, "adamw.step", CONTAINER_I64, &opt_step, 1);
        if (rc == LSC_OK) opt->step = (long)opt_step;
        if (rc == LSC_OK && container_find(&r, "adamw.group_steps")) {
            int64_t *steps = malloc((size_t)opt->n_groups * sizeof *steps);
            if (!steps) rc = error_set("Out of memory reading %s.", path);
            if (rc == LSC_OK)
                rc = container_read(&r, "adamw.group_steps", CONTAINER_I64, steps, (uint64_t)opt->n_groups);
            for (int i = 0; rc == LSC_OK && i < opt->n_groups; i++) opt->group_step[i] = (long)steps[i];
            free(steps);
        } else if (rc == LSC_OK) {
            for (int i = 0; i < opt->n_groups; i++) opt->group_step[i] = opt->step;
        }
    }
    if (rc == LSC_OK && step) {
        int64_t s = 0;
        rc = container_read(&r, "train.step", CONTAINER_I64, &s, 1);
        if (rc == LSC_OK) *step = (long)s;
    }
    container_close(&r);
    return rc;
}

int checkpoint_load_lora(const char *path, LoraAdapters *lora, Backend *be, const LlamaConfig *c) {
    ContainerReader r;
    memset(lora, 0, sizeof *lora);
    if (container_open(&r, path) != LSC_OK) return LSC_ERR;
    int32_t ci[17];
    float alpha;
    int rc = container_read(&r, "lora.config.i32", CONTAINER_I32, ci, 17);
    if (rc == LSC_OK) rc = container_read(&r, "lora.config.f32", CONTAINER_F32, &alpha, 1);
    int dora = 0;
    if (rc == LSC_OK) rc = read_dora_flag(&r, &dora);
    if (rc == LSC_OK) {
        int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
        llama_lora_shapes(c, in, out);
        const LoraConfig lc = {.rank = ci[0], .alpha = alpha, .targets = (unsigned)ci[1],
                               .use_dora = dora};
        if (ci[2] != c->n_layers)
            rc = error_set("%s holds adapters for %d layers; the model has %d.", path, ci[2], c->n_layers);
        if (rc == LSC_OK) rc = lora_create(lora, be, &lc, c->n_layers, in, out, 0);
        if (rc == LSC_OK) {
            int32_t want[17];
            lora_config_ints(lora, want);
            if (memcmp(want, ci, sizeof want) != 0)
                rc = error_set("%s holds adapters whose matrix shapes do not match this model.", path);
            else
                rc = container_read_reals(&r, be, "lora.params", lora->params, lora->num_params);
            if (rc == LSC_OK) lora->magnitudes_set = 1; /* DoRA's m came from the file */
            if (rc != LSC_OK) lora_free(lora);
        }
    }
    container_close(&r);
    return rc;
}
