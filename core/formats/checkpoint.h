/* Llama checkpoints: the model, LoRA / DoRA adapters, AdamW state and the training step in the
 * lorasc container (core/formats/container.h: magic, version, named sections with CRC-32).
 * Sections: "llama.config.i32" {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len, tied_embeddings, rope_style}, "llama.config.f32" {rope_theta, norm_eps},
 * "llama.<tensor>" per weight; "lora.config.i32" {rank, targets, n_layers, in[7], out[7]},
 * "lora.config.f32" {alpha}, "lora.params"; "adamw.m", "adamw.v", "adamw.step" (i64);
 * "train.step" (i64); "lora.dora" (i32 {1}) for DoRA adapters, whose "lora.params" then
 * also hold the magnitudes (see lora.h). Values are stored as f32 whatever Real is.
 * Not here: ViT checkpoints (vit_checkpoint.h), llama2.c's .bin (llama2c.h). */
#ifndef LORASC_CHECKPOINT_H
#define LORASC_CHECKPOINT_H

#include "core/model/llama.h"
#include "core/model/lora.h"
#include "core/model/adamw.h"

/* Writes any of model / lora / opt (each may be NULL) and the training step. Writes to
 * PATH.tmp and renames, so a crash never leaves a half-written checkpoint at PATH. */
int checkpoint_save(const char *path, const Llama *model, const LoraAdapters *lora,
                    const AdamW *opt, long step);

/* Creates *model from the checkpoint's config and weights. */
int checkpoint_load_model(const char *path, Llama *model, Backend *be);

/* Fills existing objects (each may be NULL) whose shapes must match the checkpoint's:
 * model weights, adapter parameters, optimizer moments and step; *step if not NULL. */
int checkpoint_load_state(const char *path, Llama *model, LoraAdapters *lora, AdamW *opt,
                          long *step);

/* Creates *lora with the checkpoint's adapter config, for a model of config c. */
int checkpoint_load_lora(const char *path, LoraAdapters *lora, Backend *be, const LlamaConfig *c);

#endif
