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
 * Position embeddings are interpolated for other image sizes (ViTHfOptions.image_size), as
 * transformers does. The image processor (preprocessor_config.json: normalisation, resize,
 * crop) is read. Not here: CLIP's text tower and projection, CLIP interpolation
 * (transformers 4.44 has none). */
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
    /* 0: the checkpoint's image size; else the images this model will see, a multiple of the
     * patch size (HF ViT layout only): the position embeddings are interpolated to the new
     * grid exactly as transformers 4.44's ViTEmbeddings.interpolate_pos_encoding does (torch
     * bicubic, align_corners False, scale factor (g + 0.1) / G), so the model equals
     * ViTForImageClassification called with interpolate_pos_encoding=True on such images. */
    int image_size;
} ViTHfOptions;

/* Reads dir/config.json into *c (n_classes = the number of labels in id2label / num_labels,
 * 0 for CLIP) and *layout. */
int vit_hf_read_config(const char *dir, ViTConfig *c, ViTHfLayout *layout);

/* How a checkpoint's images are prepared, as its Hugging Face image processor does it. */
typedef struct ViTHfProcessor {
    int channels;
    float mean[4], std[4]; /* (pixel / 255 - mean) / std per channel */
    int from_file;         /* whether preprocessor_config.json was there */
    int resample;          /* PIL's filter number: 2 bilinear, 3 bicubic */
    int shortest_edge;     /* > 0: the shorter side resized to this; 0: to height x width */
    int height, width;
    int crop;              /* > 0: then the centre crop x crop (offsets floored); 0: none */
} ViTHfProcessor;

/* dir/preprocessor_config.json's image_mean / image_std (mean 0, std 1 for do_normalize
 * false), size, resample, do_center_crop and crop_size over its class's defaults (its
 * image_processor_type: CLIPImageProcessor's, the shorter side bicubic to the image size and
 * the centre crop, with OpenAI CLIP's statistics; else ViTImageProcessor's, bilinear to exactly
 * the image size, 0.5 / 0.5); without the file, the layout's processor's defaults. LSC_ERR
 * with a sentence naming the file for what lorasc cannot follow (other filters, no resize,
 * images that are not square). */
int vit_hf_read_processor(const char *dir, ViTHfProcessor *p);

/* The HF ViT module of LoRA target t in a layer ("attention.attention.query", ...,
 * "output.dense" for LORA_DOWN = fc2), NULL for LORA_GATE. */
const char *vit_hf_lora_module(int target);

/* Creates *m from dir; opt may be NULL (all zero). */
int vit_hf_load(const char *dir, ViT *m, Backend *be, const ViTHfOptions *opt);

/* Position embeddings pos [1 + G*G, D] (row 0: the class token) to out [1 + g*g, D] for a grid
 * of g x g patches, as transformers 4.44's ViT interpolate_pos_encoding (see image_size). */
void vit_hf_interpolate_positions(Real *out, int g, const Real *pos, int G, int D);

/* A classification head from a safetensors file (e.g. a CLIP zero-shot head made by
 * tools/clip_zeroshot_head.py): "weight" [K, D] and optionally "bias" [K] (zero without it),
 * F32 / F16 / BF16, into head[K*D + K]. LSC_ERR with a sentence naming the file when a tensor
 * is missing or its shape is not the model's and task's (K classes, D = the model's width).
 * head NULL: the checks only (nothing is read). */
int vit_head_read(const char *path, int K, int D, Real *head);

/* What an HF export writes beside the weights. */
typedef struct ViTHfSaveOptions {
    int dtype; /* StDtype: ST_F32, ST_F16 or ST_BF16 */
    /* > 0: preprocessor_config.json (ViTImageProcessor) with the per-channel normalisation
     * the model was trained with and a resize to its image size */
    int n_norm;
    float image_mean[4], image_std[4];
} ViTHfSaveOptions;

/* Writes m as ViTForImageClassification (config.json, model.safetensors, and the
 * preprocessor config when opt asks): keys vit.* and classifier.*, position embeddings for
 * m's image size (transformers then needs no interpolation), num_channels m's (1 for a folded
 * grey model), id2label LABEL_0.. for m's classes. A CLIP-layout model is refused (no
 * transformers class has its head). dir must exist. */
int vit_hf_save(const char *dir, const ViT *m, const ViTHfSaveOptions *opt);

#endif
