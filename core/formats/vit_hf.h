/* Hugging Face ViT and CLIP-vision checkpoints (config.json + safetensors) into core/model/vit.h.
 * - ViT (model_type "vit": ViTForImageClassification, or a headless ViTModel): tensors
 *   vit.embeddings.{cls_token [1,1,D], position_embeddings [1,T,D],
 *   patch_embeddings.projection.weight [D,C,P,P] / .bias}, vit.encoder.layer.N.
 *   {layernorm_before, attention.attention.{query,key,value}, attention.output.dense,
 *   layernorm_after, intermediate.dense, output.dense}, vit.layernorm, classifier (the
 *   "vit." prefix is optional: ViTModel saves without it). qkv_bias false: zero q/k/v biases.
 *   hidden_act "gelu" (erf), "gelu_new" / "gelu_pytorch_tanh" (tanh) or "quick_gelu".
 * - CLIP vision (model_type "clip_vision_model", or "clip" with a "vision_config" object):
 *   vision_model.embeddings.{class_embedding [D], patch_embedding.weight [D,C,P,P] (no bias),
 *   position_embedding.weight [T,D]}, vision_model.pre_layrnorm, vision_model.encoder.layers.N.
 *   {layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2},
 *   vision_model.post_layernorm (the final norm on the class token, as CLIP's pooled output).
 *   CLIP has no classifier: the head is always new.
 * Missing config fields take Hugging Face's defaults (save_pretrained omits them). One file
 * (model.safetensors) or shards listed in model.safetensors.index.json; F32 / F16 / BF16.
 * Every error is one sentence naming the file.
 * Not here: image processors (preprocessor_config.json normalisation, resizing), position
 * embedding interpolation, CLIP's text tower and projection. */
#ifndef LORASC_VIT_HF_H
#define LORASC_VIT_HF_H

#include <stdint.h>

#include "core/model/vit.h"

typedef enum ViTHfLayout { VIT_HF_VIT = 0, VIT_HF_CLIP = 1 } ViTHfLayout;

typedef struct ViTHfOptions {
    /* 0: the checkpoint's classifier and its number of labels (error when it has none);
     * > 0: this many classes: the checkpoint's classifier is kept when it has exactly this
     * many rows, else the head is new. */
    int n_classes;
    /* A new head: weights normal(0, 0.02) from this seed (the stream vit clone uses), zero
     * bias; 0: all zero. */
    uint64_t head_seed;
    /* 0: the checkpoint's channels; 1 with a 3-channel checkpoint: grey images, the patch
     * weights summed over channels (exactly the model applied to the grey image copied into
     * R, G and B). Other values must equal the checkpoint's. */
    int channels;
} ViTHfOptions;

/* Reads dir/config.json into *c (n_classes = the number of labels in id2label / num_labels,
 * 0 for CLIP) and *layout. */
int vit_hf_read_config(const char *dir, ViTConfig *c, ViTHfLayout *layout);

/* The HF ViT module of LoRA target t in a layer ("attention.attention.query", ...,
 * "output.dense" for LORA_DOWN = fc2), NULL for LORA_GATE. */
const char *vit_hf_lora_module(int target);

/* Creates *m from dir; opt may be NULL (all zero). */
int vit_hf_load(const char *dir, ViT *m, Backend *be, const ViTHfOptions *opt);

#endif
