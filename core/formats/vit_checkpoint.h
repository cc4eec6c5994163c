/* ViT checkpoints in the lorasc container of core/formats/container.h (the same magic,
 * version, section layout and CRC-32 as the Llama checkpoints of checkpoint.h): sections
 * "vit.config.i32" {image_size, patch_size, channels, dim, n_layers, n_heads, mlp_dim,
 * n_classes, gelu, pre_norm, patch_bias}, "vit.config.f32" {norm_eps}, and "vit.<name>"
 * (names from vit_param_name) per non-empty weight, stored as f32. Weights only: no adapters,
 * no optimiser state. Not here: Hugging Face ViT / CLIP checkpoints (vit_hf.h). */
#ifndef LORASC_VIT_CHECKPOINT_H
#define LORASC_VIT_CHECKPOINT_H

#include "core/model/vit.h"

/* Writes PATH.tmp and renames it into place. */
int vit_checkpoint_save(const char *path, const ViT *m);
/* Creates *m on be from the checkpoint's config and weights; LSC_ERR with a sentence for a
 * missing, truncated, corrupt or non-ViT file. */
int vit_checkpoint_load(const char *path, ViT *m, Backend *be);

#endif
