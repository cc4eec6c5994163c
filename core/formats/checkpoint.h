/* Checkpoints: the project's own sectioned format, and llama2.c's legacy .bin.
 *
 * lorasc format, version 1 (little-endian):
 *   magic "LSCCKPT\0" (8 bytes), u32 version, u32 n_sections, then n_sections times:
 *   char name[32] (NUL-padded), u32 dtype (0 = f32, 1 = i32, 2 = i64), u32 crc32 of the
 *   payload, u64 element count, payload.
 * Sections: "llama.config.i32" {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len, tied_embeddings, rope_style}, "llama.config.f32" {rope_theta, norm_eps},
 * "llama.<tensor>" per weight; "lora.config.i32" {rank, targets, n_layers, in[7], out[7]},
 * "lora.config.f32" {alpha}, "lora.params"; "adamw.m", "adamw.v", "adamw.step" (i64);
 * "train.step" (i64); "lora.dora" (i32 {1}) for DoRA adapters, whose "lora.params" then
 * also hold the magnitudes (see lora.h). A reader finds sections by name, so later
 * versions can add sections.
 * Values are stored as f32 whatever Real is. */
#ifndef LORASC_CHECKPOINT_H
#define LORASC_CHECKPOINT_H

#include "core/model/llama.h"
#include "core/model/lora.h"
#include "core/model/optim.h"

#define CHECKPOINT_VERSION 1

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

/* llama2.c legacy checkpoint (run.c's format: 7 int32 header, fp32 weights, negative
 * vocab_size meaning an untied classifier). RoPE interleaved, theta 10000, eps 1e-5. */
int llama2c_load(const char *path, Llama *model, Backend *be);

#endif
