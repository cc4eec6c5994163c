/* PEFT LoRA / DoRA adapters, as Hugging Face's peft library (0.12) writes them:
 * adapter_config.json + adapter_model.safetensors with keys base_model.model.<module>.lora_A.weight
 * [r, in], .lora_B.weight [out, r] and (DoRA) .lora_magnitude_vector [out]; scaling lora_alpha / r.
 *  - Llama (LlamaForCausalLM, task_type CAUSAL_LM): modules model.layers.{i}.self_attn.q_proj,
 *    ..., mlp.down_proj. For a ROPE_INTERLEAVED model the rows of q/k's B (and DoRA's m) live
 *    in the permuted output space too, so they are permuted like the weights (hf_llama.h).
 *  - ViT (ViTForImageClassification): vit.encoder.layer.{i}.attention.attention.query, ...,
 *    output.dense; the head trained in full beside the adapters is PEFT's modules_to_save
 *    ["classifier"] (keys base_model.model.classifier.weight / .bias).
 * Whatever a file holds that lorasc does not implement is refused with one sentence naming it:
 * modules_to_save (other than a ViT's classifier), layer_replication, rsLoRA, rank_pattern /
 * alpha_pattern, a regular-expression target_modules, layers_to_transform, fan_in_fan_out,
 * biases, unknown config keys with a value, and tensors the adapter should not hold. Keys that
 * change only training or initialisation (lora_dropout, init_lora_weights, loftq_config, ...)
 * are read and left. */
#ifndef LORASC_PEFT_H
#define LORASC_PEFT_H

#include <stddef.h>

#include "core/model/finetune.h"
#include "core/model/llama.h"
#include "core/model/lora.h"
#include "core/model/vit.h"

typedef enum PeftModelKind { PEFT_LLAMA = 0, PEFT_VIT = 1 } PeftModelKind;

/* What an adapter directory holds, after every check of its config and tensor names. */
typedef struct PeftInfo {
    LoraConfig lora;       /* r, lora_alpha, targets, use_dora */
    int n_layers;          /* layers its tensors cover */
    int has_head;          /* ViT: modules_to_save ["classifier"] with its two tensors */
    char base_model[1024]; /* base_model_name_or_path; "" when absent */
} PeftInfo;

/* Reads and checks dir/adapter_config.json and the names and shapes-independent layout of
 * dir/adapter_model.safetensors (no model needed: the DSL reads an adapter's rank and
 * targets with it). */
int peft_read_info(const char *dir, PeftModelKind kind, PeftInfo *info);

/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (F32) for lora attached
 * to (or made for) model. base_model (base_model_name_or_path) may be NULL. */
int peft_save(const char *dir, const Llama *model, const LoraAdapters *lora, const char *base_model);
/* Creates *lora from a PEFT adapter directory for model (rows of q/k un-permuted when model
 * is ROPE_INTERLEAVED). The adapter is not attached. */
int peft_load(const char *dir, const Llama *model, LoraAdapters *lora, Backend *be);

/* Overwrites lora (made with lora_create for model) with the adapter in dir: a run that
 * continues training a PEFT adapter starts its fast adapter from it. The file's rank,
 * lora_alpha, targets and DoRA must equal lora's (an error names both otherwise). */
int peft_load_into(const char *dir, const Llama *model, LoraAdapters *lora);

/* The same for a ViT (HF ViT layout only: a CLIP-layout model has no PEFT module names that
 * transformers' ViTForImageClassification would match). peft_save_vit writes the model's head
 * as modules_to_save ["classifier"]; peft_load_vit loads it into model when the file has one
 * (its row count must equal model's classes). */
int peft_save_vit(const char *dir, const ViT *model, const LoraAdapters *lora,
                  const char *base_model);
int peft_load_vit(const char *dir, ViT *model, LoraAdapters *lora, Backend *be);

/* Merges the adapter in dir into model's weights (loaded, merged, freed): the model a PEFT
 * user gets from merge_and_unload(). The ViT's classifier is loaded too when the file has one. */
int peft_merge(const char *dir, Llama *model);
int peft_merge_vit(const char *dir, ViT *model);

/* The adapter of a finished run begun with cascade.keep_merges (finetune_merged_adapter), saved
 * to dir for its model: llama, or vit when llama is NULL. An error sentence when the run has
 * no exact adapter (noise, several DoRA experts). */
int peft_save_run(const char *dir, const Finetune *ft, const Llama *llama, const ViT *vit,
                  const char *base_model);

#endif
