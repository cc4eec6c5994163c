/* ViT checkpoints (see vit_checkpoint.h): the config and weights of a ViT as sections of the
 * lorasc container; the reader checks every section (bounds, dtype, count, CRC) through
 * core/formats/container.c. */
#include "core/formats/vit_checkpoint.h"

#include <stdio.h>
#include <string.h>

#include "core/base/error.h"
#include "core/formats/container.h"

enum { N_CONFIG_I32 = 11 };

int vit_checkpoint_save(const char *path, const ViT *m) {
    const ViTConfig *c = &m->config;
    ContainerWriter w;
    if (container_write_begin(&w, path) != LSC_OK) return LSC_ERR;
    const int32_t ci[N_CONFIG_I32] = {c->image_size, c->patch_size, c->channels, c->dim,
                                      c->n_layers,   c->n_heads,    c->mlp_dim,  c->n_classes,
                                      (int32_t)c->gelu, c->pre_norm, c->patch_bias};
    const float cf[1] = {c->norm_eps};
    container_write_section(&w, "vit.config.i32", CONTAINER_I32, ci, N_CONFIG_I32);
    container_write_section(&w, "vit.config.f32", CONTAINER_F32, cf, 1);
    for (int t = 0; t < VIT_NUM_PARAM_TENSORS; t++) {
        if (m->param_sizes[t] == 0) continue;
        char name[CONTAINER_NAME_LEN];
        snprintf(name, sizeof name, "vit.%s", vit_param_name(t));
        Real *data; /* a bf16 ViT's matrices widened to fp32 on the fly */
        int owned;
        if (vit_tensor_fp32(m, t, &data, &owned) != LSC_OK) {
            w.failed = 1;
            continue;
        }
        container_write_reals(&w, m->be, name, data, m->param_sizes[t]);
        if (owned) m->be->free(m->be, data);
    }
    return container_write_end(&w);
}

static int read_config(ContainerReader *r, ViTConfig *c) {
    if (!container_find(r, "vit.config.i32"))
        return error_set("%s has no section 'vit.config.i32': it is not a ViT checkpoint written by "
                         "vit_checkpoint_save%s.", r->path,
                         container_find(r, "llama.config.i32")
                             ? " (it is a Llama checkpoint: load it with checkpoint_load_model)"
                             : "");
    int32_t ci[N_CONFIG_I32];
    float eps;
    if (container_read(r, "vit.config.i32", CONTAINER_I32, ci, N_CONFIG_I32) != LSC_OK ||
        container_read(r, "vit.config.f32", CONTAINER_F32, &eps, 1) != LSC_OK)
        return LSC_ERR;
    *c = (ViTConfig){.image_size = ci[0], .patch_size = ci[1], .channels = ci[2], .dim = ci[3],
                     .n_layers = ci[4], .n_heads = ci[5], .mlp_dim = ci[6], .n_classes = ci[7],
                     .gelu = (GeluKind)ci[8], .pre_norm = ci[9], .patch_bias = ci[10],
                     .norm_eps = eps};
    if (vit_config_validate(c) != LSC_OK)
        return error_set("%s holds an invalid ViT config: %s", r->path, error_last());
    return LSC_OK;
}

/* Every weight section the config implies is present with that many fp32 elements, checked
 * before the model is allocated (the sections lie inside the file: container_open). */
static int check_sections(ContainerReader *r, const ViTConfig *c) {
    size_t sizes[VIT_NUM_PARAM_TENSORS];
    vit_param_sizes(c, sizes);
    for (int t = 0; t < VIT_NUM_PARAM_TENSORS; t++) {
        if (!sizes[t]) continue;
        char name[CONTAINER_NAME_LEN];
        snprintf(name, sizeof name, "vit.%s", vit_param_name(t));
        const ContainerSection *s = container_find(r, name);
        if (!s || s->dtype != CONTAINER_F32 || s->count != sizes[t])
            return error_set("%s: section '%s' holds %llu elements, but its ViT config (dim %d, "
                             "%d layers, mlp %d, %d classes) implies %zu fp32 elements: the config "
                             "or the weights are corrupt.", r->path, name,
                             s ? (unsigned long long)s->count : 0ULL, c->dim, c->n_layers,
                             c->mlp_dim, c->n_classes, sizes[t]);
    }
    return LSC_OK;
}

int vit_checkpoint_load(const char *path, ViT *m, Backend *be) {
    memset(m, 0, sizeof *m);
    ContainerReader r;
    if (container_open(&r, path) != LSC_OK) return LSC_ERR;
    ViTConfig c;
    int rc = read_config(&r, &c);
    if (rc == LSC_OK) rc = check_sections(&r, &c);
    if (rc == LSC_OK) rc = vit_create(m, be, &c);
    for (int t = 0; rc == LSC_OK && t < VIT_NUM_PARAM_TENSORS; t++) {
        if (m->param_sizes[t] == 0) continue;
        char name[CONTAINER_NAME_LEN];
        snprintf(name, sizeof name, "vit.%s", vit_param_name(t));
        rc = container_read_reals(&r, be, name, m->w.tensors[t], m->param_sizes[t]);
        if (rc != LSC_OK) vit_free(m);
    }
    container_close(&r);
    return rc;
}
