/* Hugging Face ViT / CLIP-vision checkpoints (see vit_hf.h): config.json through
 * core/formats/hf_config, tensors through core/formats/hf_shards, the name map between HF keys
 * and core/model/vit.h tensors. */
#include "core/formats/vit_hf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/base/philox.h"
#include "core/formats/hf_config.h"
#include "core/formats/hf_shards.h"
#include "core/formats/safetensors.h"
#include "core/model/device.h"

/* ------------------------------------------------------------------------------------------
 * config.json */

static int parse_act(const HfConfig *f, const json_t *obj, const char *def, GeluKind *out) {
    const char *a;
    if (hf_config_string(f, obj, "hidden_act", def, &a) != LSC_OK) return LSC_ERR;
    if (strcmp(a, "gelu") == 0) *out = GELU_ERF;
    else if (strcmp(a, "gelu_new") == 0 || strcmp(a, "gelu_pytorch_tanh") == 0) *out = GELU_TANH;
    else if (strcmp(a, "quick_gelu") == 0) *out = GELU_QUICK;
    else
        return error_set("%s: hidden_act \"%s\" is not supported; lorasc's ViT implements "
                         "\"gelu\", \"gelu_new\", \"gelu_pytorch_tanh\" and \"quick_gelu\".",
                         f->path, a);
    return LSC_OK;
}

/* Number of labels: id2label's size, else num_labels, else HF's default 2. */
static int parse_labels(const HfConfig *f, int *out) {
    const json_t *id2label = hf_config_get(f, NULL, "id2label");
    if (!id2label) return hf_config_int(f, NULL, "num_labels", 0, 2, out);
    if (!json_is_object(id2label) || json_object_size(id2label) == 0)
        return error_set("%s: \"id2label\" must be a non-empty object.", f->path);
    *out = (int)json_object_size(id2label);
    int nl = *out;
    if (hf_config_int(f, NULL, "num_labels", 0, *out, &nl) != LSC_OK) return LSC_ERR;
    if (nl != *out)
        return error_set("%s: num_labels %d differs from the %d entries of id2label.", f->path, nl,
                         *out);
    return LSC_OK;
}

/* Hugging Face's defaults where ViTConfig and CLIPVisionConfig differ. */
typedef struct LayoutDefaults {
    int patch_size;
    double norm_eps;
    const char *act;
} LayoutDefaults;

/* The fields ViT and CLIP-vision configs share, read from obj (the root, or CLIP's
 * vision_config). */
static int read_common(const HfConfig *f, const json_t *obj, const LayoutDefaults *d, ViTConfig *c) {
    if (hf_config_int(f, obj, "image_size", 0, 224, &c->image_size) != LSC_OK ||
        hf_config_int(f, obj, "patch_size", 0, d->patch_size, &c->patch_size) != LSC_OK ||
        hf_config_int(f, obj, "num_channels", 0, 3, &c->channels) != LSC_OK ||
        hf_config_int(f, obj, "hidden_size", 0, 768, &c->dim) != LSC_OK ||
        hf_config_int(f, obj, "num_hidden_layers", 0, 12, &c->n_layers) != LSC_OK ||
        hf_config_int(f, obj, "num_attention_heads", 0, 12, &c->n_heads) != LSC_OK ||
        hf_config_int(f, obj, "intermediate_size", 0, 3072, &c->mlp_dim) != LSC_OK ||
        hf_config_real(f, obj, "layer_norm_eps", d->norm_eps, &c->norm_eps) != LSC_OK ||
        parse_act(f, obj, d->act, &c->gelu) != LSC_OK)
        return LSC_ERR;
    return LSC_OK;
}

static int read_layout(const HfConfig *f, ViTConfig *c, ViTHfLayout *layout) {
    static const LayoutDefaults vit = {16, 1e-12, "gelu"}, clip = {32, 1e-5, "quick_gelu"};
    const char *type;
    if (hf_config_string(f, NULL, "model_type", NULL, &type) != LSC_OK) return LSC_ERR;
    if (!type)
        return error_set("%s has no \"model_type\" string; lorasc loads \"vit\", "
                         "\"clip_vision_model\" and \"clip\" checkpoints.", f->path);
    if (strcmp(type, "vit") == 0) {
        int qkv_bias; /* checked only: absent q/k/v biases are zero whatever it says */
        *layout = VIT_HF_VIT;
        if (hf_config_bool(f, NULL, "qkv_bias", 1, &qkv_bias) != LSC_OK ||
            read_common(f, NULL, &vit, c) != LSC_OK || parse_labels(f, &c->n_classes) != LSC_OK)
            return LSC_ERR;
        c->pre_norm = 0;
        c->patch_bias = 1;
        return LSC_OK;
    }
    if (strcmp(type, "clip_vision_model") == 0 || strcmp(type, "clip") == 0) {
        const json_t *vc = NULL;
        *layout = VIT_HF_CLIP;
        if (strcmp(type, "clip") == 0 && !json_is_object(vc = hf_config_get(f, NULL, "vision_config")))
            return error_set("%s describes a CLIP model without a \"vision_config\" object.", f->path);
        if (read_common(f, vc, &clip, c) != LSC_OK) return LSC_ERR;
        c->n_classes = 0;
        c->pre_norm = 1;
        c->patch_bias = 0;
        return LSC_OK;
    }
    return error_set("%s describes model_type \"%s\"; lorasc loads \"vit\", \"clip_vision_model\" "
                     "and \"clip\" checkpoints.", f->path, type);
}

int vit_hf_read_config(const char *dir, ViTConfig *c, ViTHfLayout *layout) {
    HfConfig f;
    memset(c, 0, sizeof *c);
    if (hf_config_open(&f, dir, "config.json", "ViT config.json") != LSC_OK) return LSC_ERR;
    int rc = read_layout(&f, c, layout);
    ViTConfig v = *c;
    if (v.n_classes == 0) v.n_classes = 1; /* checked when the head size is known */
    if (rc == LSC_OK && vit_config_validate(&v) != LSC_OK)
        rc = error_set("%s is not a valid ViT config: %s", f.path, error_last());
    hf_config_close(&f);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * name map */

/* The HF module of a per-layer tensor (without ".weight" / ".bias"), or NULL. */
static const char *layer_module(ViTHfLayout layout, int t) {
    const int clip = layout == VIT_HF_CLIP;
    switch (t) {
    case VIT_LN1_W: case VIT_LN1_B: return clip ? "layer_norm1" : "layernorm_before";
    case VIT_WQ: case VIT_BQ: return clip ? "self_attn.q_proj" : "attention.attention.query";
    case VIT_WK: case VIT_BK: return clip ? "self_attn.k_proj" : "attention.attention.key";
    case VIT_WV: case VIT_BV: return clip ? "self_attn.v_proj" : "attention.attention.value";
    case VIT_WO: case VIT_BO: return clip ? "self_attn.out_proj" : "attention.output.dense";
    case VIT_LN2_W: case VIT_LN2_B: return clip ? "layer_norm2" : "layernorm_after";
    case VIT_W1: case VIT_B1: return clip ? "mlp.fc1" : "intermediate.dense";
    case VIT_W2: case VIT_B2: return clip ? "mlp.fc2" : "output.dense";
    default: return NULL;
    }
}

const char *vit_hf_lora_module(int target) {
    static const int tensor[LORA_NUM_TARGETS] = {VIT_WQ, VIT_WK, VIT_WV, VIT_WO,
                                                 -1,     VIT_W1, VIT_W2};
    if (target < 0 || target >= LORA_NUM_TARGETS || tensor[target] < 0) return NULL;
    return layer_module(VIT_HF_VIT, tensor[target]);
}

static int is_bias(int t) {
    switch (t) {
    case VIT_PATCH_B: case VIT_LN_PRE_B: case VIT_LN1_B: case VIT_BQ: case VIT_BK: case VIT_BV:
    case VIT_BO: case VIT_LN2_B: case VIT_B1: case VIT_B2: case VIT_LNF_B: case VIT_HEAD_B:
        return 1;
    default: return 0;
    }
}

/* The HF name of global tensor t (prefix: "vit." / "" for ViT, "vision_model." for CLIP). */
static const char *global_name(ViTHfLayout layout, int t, const char *prefix, char *out, size_t n) {
    const char *s = NULL;
    if (layout == VIT_HF_CLIP) {
        switch (t) {
        case VIT_PATCH_W: s = "embeddings.patch_embedding.weight"; break;
        case VIT_CLS: s = "embeddings.class_embedding"; break;
        case VIT_POS: s = "embeddings.position_embedding.weight"; break;
        case VIT_LN_PRE_W: s = "pre_layrnorm.weight"; break;
        case VIT_LN_PRE_B: s = "pre_layrnorm.bias"; break;
        case VIT_LNF_W: s = "post_layernorm.weight"; break;
        case VIT_LNF_B: s = "post_layernorm.bias"; break;
        default: return NULL;
        }
    } else {
        switch (t) {
        case VIT_PATCH_W: s = "embeddings.patch_embeddings.projection.weight"; break;
        case VIT_PATCH_B: s = "embeddings.patch_embeddings.projection.bias"; break;
        case VIT_CLS: s = "embeddings.cls_token"; break;
        case VIT_POS: s = "embeddings.position_embeddings"; break;
        case VIT_LNF_W: s = "layernorm.weight"; break;
        case VIT_LNF_B: s = "layernorm.bias"; break;
        case VIT_HEAD_W: snprintf(out, n, "classifier.weight"); return out;
        case VIT_HEAD_B: snprintf(out, n, "classifier.bias"); return out;
        default: return NULL;
        }
    }
    snprintf(out, n, "%s%s", prefix, s);
    return out;
}

/* The stored shape of tensor t (one layer's slice for per-layer tensors); c->channels is the
 * checkpoint's. Returns ndim. */
static int hf_shape(ViTHfLayout layout, const ViTConfig *c, int t, int64_t *shape) {
    const int64_t D = c->dim, M = c->mlp_dim, K = c->n_classes, T = vit_seq_len(c);
    switch (t) {
    case VIT_PATCH_W:
        shape[0] = D, shape[1] = c->channels, shape[2] = c->patch_size, shape[3] = c->patch_size;
        return 4;
    case VIT_CLS:
        if (layout == VIT_HF_CLIP) return shape[0] = D, 1;
        return shape[0] = 1, shape[1] = 1, shape[2] = D, 3;
    case VIT_POS:
        if (layout == VIT_HF_CLIP) return shape[0] = T, shape[1] = D, 2;
        return shape[0] = 1, shape[1] = T, shape[2] = D, 3;
    case VIT_WQ: case VIT_WK: case VIT_WV: case VIT_WO: return shape[0] = D, shape[1] = D, 2;
    case VIT_W1: return shape[0] = M, shape[1] = D, 2;
    case VIT_W2: return shape[0] = D, shape[1] = M, 2;
    case VIT_B1: return shape[0] = M, 1;
    case VIT_HEAD_W: return shape[0] = K, shape[1] = D, 2;
    case VIT_HEAD_B: return shape[0] = K, 1;
    default: return shape[0] = D, 1;
    }
}

/* ------------------------------------------------------------------------------------------
 * loader */

/* Reads (host non-NULL) or only checks (host NULL: every tensor present with the shape the
 * config implies) the stored tensors of a ViT of config c (stored config hc) with parameter
 * table sizes; read tensors go to m. Checked before the model is allocated, so a config.json
 * whose sizes the files do not hold cannot size an allocation. */
static int load_tensors(const HfShards *s, const char *dir, ViTHfLayout layout, const char *prefix,
                        const ViTConfig *hc, const ViTConfig *c, int keep_head,
                        const size_t sizes[VIT_NUM_PARAM_TENSORS], ViT *m, Real *host) {
    int rc = LSC_OK;
    const int no_qkv_bias = layout == VIT_HF_VIT && !hf_shards_find(s, "vit.encoder.layer.0.attention.attention.query.bias") &&
                            !hf_shards_find(s, "encoder.layer.0.attention.attention.query.bias");
    for (int t = 0; t < VIT_NUM_PARAM_TENSORS && rc == LSC_OK; t++) {
        if (!sizes[t]) continue;
        if (t == VIT_HEAD_W || t == VIT_HEAD_B) {
            if (!keep_head) continue; /* new head below */
        }
        int64_t shape[4];
        const ViTConfig *sc = (t == VIT_HEAD_W || t == VIT_HEAD_B) ? c : hc;
        const int ndim = hf_shape(layout, sc, t, shape);
        const char *mod = layer_module(layout, t);
        if (!mod) {
            char name[256];
            global_name(layout, t, prefix, name, sizeof name);
            rc = hf_shards_read(s, dir, name, ndim, shape, host);
            if (rc == LSC_OK && host && t == VIT_POS && c->image_size != hc->image_size) {
                /* stored at hc's grid, interpolated to c's (transformers' interpolate_pos_encoding);
                 * host has room for both (vit_hf_load sizes it) */
                const size_t pos_stored = (size_t)vit_seq_len(hc) * hc->dim;
                const int G = hc->image_size / hc->patch_size, g = c->image_size / c->patch_size;
                vit_hf_interpolate_positions(host + pos_stored, g, host, G, c->dim);
                memmove(host, host + pos_stored, sizes[VIT_POS] * sizeof *host);
            }
            if (rc == LSC_OK && host && t == VIT_PATCH_W && c->channels != hc->channels) {
                /* grey image copied into C channels: W' = sum over c of W[:, c] */
                const size_t PP = (size_t)hc->patch_size * hc->patch_size;
                for (size_t d = 0; d < (size_t)hc->dim; d++)
                    for (size_t q = 0; q < PP; q++) {
                        Real sum = 0;
                        for (int ch = 0; ch < hc->channels; ch++)
                            sum += host[(d * (size_t)hc->channels + (size_t)ch) * PP + q];
                        host[d * PP + q] = sum; /* never ahead of the rows still read */
                    }
            }
        } else {
            const size_t per = sizes[t] / (size_t)c->n_layers;
            const int qkv_b = t == VIT_BQ || t == VIT_BK || t == VIT_BV;
            for (int l = 0; l < c->n_layers && rc == LSC_OK; l++) {
                if (qkv_b && no_qkv_bias) {
                    if (host) memset(host + (size_t)l * per, 0, per * sizeof *host);
                    continue;
                }
                char name[256];
                snprintf(name, sizeof name, "%sencoder.%s.%d.%s.%s", prefix,
                         layout == VIT_HF_CLIP ? "layers" : "layer", l, mod,
                         is_bias(t) ? "bias" : "weight");
                rc = hf_shards_read(s, dir, name, ndim, shape, host ? host + (size_t)l * per : NULL);
            }
        }
        if (rc == LSC_OK && host) m->be->to_device(m->be, m->w.tensors[t], host, sizes[t] * sizeof(Real));
    }
    return rc;
}

int vit_hf_load(const char *dir, ViT *m, Backend *be, const ViTHfOptions *opt) {
    static const ViTHfOptions none = {0};
    if (!opt) opt = &none;
    memset(m, 0, sizeof *m);
    ViTConfig hc; /* as stored */
    ViTHfLayout layout;
    if (vit_hf_read_config(dir, &hc, &layout) != LSC_OK) return LSC_ERR;
    HfShards *s = calloc(1, sizeof *s);
    if (!s) return error_set("Out of memory loading %s.", dir);
    Real *host = NULL;
    int rc = hf_shards_open(s, dir), created = 0;
    if (rc != LSC_OK) goto done;
    const char *prefix = "vision_model.";
    if (layout == VIT_HF_VIT)
        prefix = hf_shards_find(s, "vit.embeddings.cls_token") || !hf_shards_find(s, "embeddings.cls_token")
                     ? "vit." : "";
    const int has_head = layout == VIT_HF_VIT && hf_shards_find(s, "classifier.weight");
    ViTConfig c = hc;
    if (opt->n_classes < 0) {
        rc = error_set("Loading %s: n_classes must be positive, got %d.", dir, opt->n_classes);
        goto done;
    }
    if (opt->n_classes > 0) c.n_classes = opt->n_classes;
    else if (!has_head) {
        rc = error_set("The checkpoint in %s has no classifier (%s); give the number of classes "
                       "for a new head.", dir, layout == VIT_HF_CLIP ? "a CLIP vision tower" : "a ViTModel");
        goto done;
    }
    const int keep_head = has_head && c.n_classes == hc.n_classes;
    if (opt->channels > 0 && opt->channels != hc.channels && !(opt->channels == 1 && hc.channels == 3)) {
        rc = error_set("The checkpoint in %s takes %d-channel images, not %d (only 3 -> 1, grey "
                       "images, can be folded).", dir, hc.channels, opt->channels);
        goto done;
    }
    if (opt->channels > 0) c.channels = opt->channels;
    if (opt->image_size > 0 && opt->image_size != hc.image_size) {
        if (layout != VIT_HF_VIT) {
            rc = error_set(
                "The checkpoint in %s is a CLIP vision tower for %dx%d images; %dx%d needs "
                "position-embedding interpolation, which lorasc (like transformers 4.44) "
                "has for ViT checkpoints only.",
                dir, hc.image_size, hc.image_size, opt->image_size, opt->image_size);
            goto done;
        }
        if (opt->image_size % hc.patch_size != 0) {
            rc = error_set(
                "Image size %d is not a multiple of the patch size %d of the checkpoint in "
                "%s; use e.g. %d.",
                opt->image_size, hc.patch_size, dir,
                (opt->image_size + hc.patch_size - 1) / hc.patch_size * hc.patch_size);
            goto done;
        }
        c.image_size = opt->image_size;
    }
    if (vit_config_validate(&c) != LSC_OK) {
        rc = error_set("%s: %s", dir, error_last());
        goto done;
    }
    size_t sizes[VIT_NUM_PARAM_TENSORS];
    vit_param_sizes(&c, sizes);
    if ((rc = load_tensors(s, dir, layout, prefix, &hc, &c, keep_head, sizes, NULL, NULL)) != LSC_OK)
        goto done;
    if ((rc = vit_create(m, be, &c)) != LSC_OK) goto done;
    created = 1;
    size_t biggest = 0;
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++)
        if (m->param_sizes[i] > biggest) biggest = m->param_sizes[i];
    const size_t patch_stored = (size_t)hc.dim * hc.channels * hc.patch_size * hc.patch_size;
    if (patch_stored > biggest) biggest = patch_stored;
    if (m->head_size > biggest) biggest = m->head_size;
    const size_t pos_stored = (size_t)vit_seq_len(&hc) * hc.dim;
    if (2 * pos_stored > biggest) biggest = 2 * pos_stored; /* stored, then interpolated */
    if (!(host = malloc(biggest * sizeof *host))) {
        rc = error_set("Out of memory loading %s.", dir);
        goto done;
    }
    rc = load_tensors(s, dir, layout, prefix, &hc, &c, keep_head, m->param_sizes, m, host);
    if (rc == LSC_OK && !keep_head) {
        const size_t nw = m->param_sizes[VIT_HEAD_W], nb = m->param_sizes[VIT_HEAD_B];
        memset(host, 0, (nw + nb) * sizeof *host);
        if (opt->head_seed)
            philox_normal(host, nw, opt->head_seed, philox_stream(RNG_PURPOSE_INIT, 0xFFFD, 0, 0),
                          0.0, 0.02);
        be->to_device(be, m->w.tensors[VIT_HEAD_W], host, (nw + nb) * sizeof(Real));
    }
    if (rc == LSC_OK) rc = device_sync(be);
done:
    if (rc != LSC_OK && created) vit_free(m);
    free(host);
    hf_shards_close(s);
    free(s);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * position-embedding interpolation: torch's upsample_bicubic2d (A = -0.75, align_corners
 * False, indices clamped to the border) with the scale factor transformers 4.44 passes, in
 * float as torch computes it for float tensors */

static void cubic_weights(float t, float w[4]) {
    const float A = -0.75f;
    float x = t + 1.0f; /* 1 < x < 2 */
    w[0] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
    x = t; /* x <= 1 */
    w[1] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    x = 1.0f - t;
    w[2] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    x = 2.0f - t;
    w[3] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
}

void vit_hf_interpolate_positions(Real *out, int g, const Real *pos, int G, int D) {
    memcpy(out, pos, (size_t)D * sizeof *out); /* the class token's row */
    if (g == G) {
        memcpy(out + D, pos + D, (size_t)G * G * D * sizeof *out);
        return;
    }
    /* scale_factor = (g + 0.1) / G (transformers' "+ 0.1 to avoid floating point error"); torch
     * maps output i to input (i + 0.5) / scale_factor - 0.5 */
    const float inv = (float)(1.0 / (((double)g + 0.1) / (double)G));
    int idx[64][4];
    float w[64][4];
    LSC_ASSERT(g <= 64);
    for (int i = 0; i < g; i++) {
        const float real = (float)((double)inv * ((double)i + 0.5) - 0.5);
        const int i0 = (int)floorf(real);
        cubic_weights(real - (float)i0, w[i]);
        for (int k = 0; k < 4; k++) {
            const int j = i0 - 1 + k;
            idx[i][k] = j < 0 ? 0 : j > G - 1 ? G - 1 : j;
        }
    }
    for (int y = 0; y < g; y++)
        for (int x = 0; x < g; x++)
            for (int d = 0; d < D; d++) {
                float acc = 0.0f;
                for (int a = 0; a < 4; a++) {
                    float row = 0.0f;
                    for (int b = 0; b < 4; b++)
                        row +=
                            w[x][b] * (float)pos[(size_t)(1 + idx[y][a] * G + idx[x][b]) * D + d];
                    acc += w[y][a] * row;
                }
                out[(size_t)(1 + y * g + x) * D + d] = (Real)acc;
            }
}

/* ------------------------------------------------------------------------------------------
 * writer */

static const char *act_name(GeluKind k) {
    return k == GELU_TANH ? "gelu_new" : k == GELU_QUICK ? "quick_gelu" : "gelu";
}

static int write_vit_config(const char *dir, const ViTConfig *c, const ViTHfSaveOptions *o) {
    json_t *id2label = json_object(), *label2id = json_object();
    for (int k = 0; k < c->n_classes; k++) {
        char key[16], label[32];
        snprintf(key, sizeof key, "%d", k);
        snprintf(label, sizeof label, "LABEL_%d", k);
        json_object_set_new(id2label, key, json_string(label));
        json_object_set_new(label2id, label, json_integer(k));
    }
    json_t *root = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:s, s:b, s:o, s:o, s:f, s:f, s:s}",
        "architectures", "ViTForImageClassification", "model_type", "vit", "image_size",
        c->image_size, "patch_size", c->patch_size, "num_channels", c->channels, "hidden_size",
        c->dim, "num_hidden_layers", c->n_layers, "num_attention_heads", c->n_heads,
        "intermediate_size", c->mlp_dim, "layer_norm_eps", hf_config_float_value(c->norm_eps),
        "hidden_act", act_name(c->gelu), "qkv_bias", 1, "id2label", id2label, "label2id", label2id,
        "hidden_dropout_prob", 0.0, "attention_probs_dropout_prob", 0.0, "torch_dtype",
        o->dtype == ST_BF16  ? "bfloat16"
        : o->dtype == ST_F16 ? "float16"
                             : "float32");
    int rc = hf_config_write(dir, "config.json", root);
    if (rc != LSC_OK || o->n_norm <= 0) return rc;
    json_t *mean = json_array(), *std = json_array();
    for (int i = 0; i < o->n_norm; i++) {
        json_array_append_new(mean, json_real(hf_config_float_value(o->image_mean[i])));
        json_array_append_new(std, json_real(hf_config_float_value(o->image_std[i])));
    }
    json_t *pre =
        json_pack("{s:s, s:b, s:b, s:f, s:b, s:o, s:o, s:i, s:{s:i, s:i}}", "image_processor_type",
                  "ViTImageProcessor", "do_resize", 1, "do_rescale", 1, "rescale_factor",
                  1.0 / 255.0, "do_normalize", 1, "image_mean", mean, "image_std", std, "resample",
                  2, "size", "height", c->image_size, "width", c->image_size);
    return hf_config_write(dir, "preprocessor_config.json", pre);
}

int vit_head_read(const char *path, int K, int D, Real *head) {
    SafeTensors st;
    if (safetensors_open(&st, path) != LSC_OK) return LSC_ERR;
    const StTensor *w = safetensors_find(&st, "weight"), *b = safetensors_find(&st, "bias");
    int rc = LSC_OK;
    if (!w)
        rc = error_set("%s holds no tensor \"weight\" (a head is weight [classes, width] and "
                       "optionally bias [classes])", path);
    else if (w->ndim != 2)
        rc = error_set("%s: the head's weight has %d dimensions; it must be [classes, width]", path,
                       w->ndim);
    else if (w->shape[0] != K || w->shape[1] != D)
        rc = error_set("%s: the head's weight is [%lld, %lld], the task needs [%d, %d] (%d classes, "
                       "the model's width %d)", path, (long long)w->shape[0], (long long)w->shape[1],
                       K, D, K, D);
    else if (b && (b->ndim != 1 || b->shape[0] != K))
        rc = error_set("%s: the head's bias must be [%d] (one per class)", path, K);
    if (rc == LSC_OK && head) rc = safetensors_read(&st, w, head);
    if (rc == LSC_OK && head && b) rc = safetensors_read(&st, b, head + (size_t)K * D);
    else if (rc == LSC_OK && head) memset(head + (size_t)K * D, 0, sizeof(Real) * (size_t)K);
    safetensors_close(&st);
    return rc;
}

int vit_hf_save(const char *dir, const ViT *m, const ViTHfSaveOptions *opt) {
    static const ViTHfSaveOptions plain = {ST_F32, 0, {0}, {0}};
    const ViTHfSaveOptions *o = opt ? opt : &plain;
    const ViTConfig *c = &m->config;
    if (c->pre_norm || !c->patch_bias)
        return error_set(
            "Cannot export a CLIP-layout ViT to %s as a Hugging Face model: transformers "
            "has no image classifier with lorasc's CLIP head (class token after "
            "post_layernorm); keep its lorasc checkpoint instead.",
            dir);
    const int L = c->n_layers, n_max = VIT_NUM_PARAM_TENSORS * L;
    StWriteEntry *e = calloc((size_t)n_max, sizeof *e);
    char(*names)[160] = calloc((size_t)n_max, sizeof *names);
    float *host = malloc(m->num_params * sizeof *host);
    Real *r = malloc(m->num_params * sizeof *r);
    int n = 0, rc = LSC_OK;
    if (!e || !names || !host || !r) {
        rc = error_set("Out of memory saving %s.", dir);
        goto done;
    }
    /* every tensor to the host in tensor order (a bf16 ViT's matrices widened on the fly) */
    size_t at = 0, offset[VIT_NUM_PARAM_TENSORS];
    for (int t = 0; t < VIT_NUM_PARAM_TENSORS && rc == LSC_OK; t++) {
        offset[t] = at;
        Real *data;
        int owned;
        if ((rc = vit_tensor_fp32(m, t, &data, &owned)) != LSC_OK) break;
        if (m->param_sizes[t]) m->be->to_host(m->be, r + at, data, m->param_sizes[t] * sizeof *r);
        if ((rc = device_sync(m->be)) == LSC_OK && owned) m->be->free(m->be, data);
        at += m->param_sizes[t];
    }
    if (rc != LSC_OK) goto done;
    for (size_t i = 0; i < m->num_params; i++) host[i] = (float)r[i];
    for (int t = 0; t < VIT_NUM_PARAM_TENSORS; t++) {
        if (!m->param_sizes[t]) continue;
        const float *data = host + offset[t];
        int64_t shape[4];
        const int ndim = hf_shape(VIT_HF_VIT, c, t, shape);
        const char *mod = layer_module(VIT_HF_VIT, t);
        if (!mod) {
            global_name(VIT_HF_VIT, t, "vit.", names[n], sizeof names[n]);
            e[n] = (StWriteEntry){.name = names[n], .ndim = ndim, .data = data};
            memcpy(e[n].shape, shape, sizeof shape);
            n++;
            continue;
        }
        const size_t per = m->param_sizes[t] / (size_t)L;
        for (int l = 0; l < L; l++, n++) {
            snprintf(names[n], sizeof names[n], "vit.encoder.layer.%d.%s.%s", l, mod,
                     is_bias(t) ? "bias" : "weight");
            e[n] = (StWriteEntry){.name = names[n], .ndim = ndim, .data = data + (size_t)l * per};
            memcpy(e[n].shape, shape, sizeof shape);
        }
    }
    char path[4096];
    static const char *const meta[] = {"format", "pt", NULL};
    if ((rc = write_vit_config(dir, c, o)) == LSC_OK &&
        (rc = hf_shards_path(path, sizeof path, dir, "model.safetensors")) == LSC_OK)
        rc = safetensors_write(path, e, n, (StDtype)o->dtype, meta);
done:
    free(e);
    free(names);
    free(host);
    free(r);
    return rc;
}
