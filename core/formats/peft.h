/* PEFT LoRA / DoRA adapters of a Llama, as Hugging Face's peft library writes them:
 * adapter_config.json + adapter_model.safetensors with keys
 * base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight [r, in], .lora_B.weight
 * [out, r], and (DoRA) .lora_magnitude_vector [out]; scaling lora_alpha / r. For a
 * ROPE_INTERLEAVED model the rows of q/k's B (and DoRA's m) live in the permuted output space
 * too, so they are permuted like the weights (hf_llama.h).
 * Not here: rsLoRA, rank / alpha patterns, layers_to_transform (rejected on load). */
#ifndef LORASC_PEFT_H
#define LORASC_PEFT_H

#include "core/model/llama.h"
#include "core/model/lora.h"

/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (F32) for lora attached
 * to (or made for) model. base_model may be NULL. */
int peft_save(const char *dir, const Llama *model, const LoraAdapters *lora, const char *base_model);
/* Creates *lora from a PEFT adapter directory for model (rows of q/k un-permuted when model
 * is ROPE_INTERLEAVED). The adapter is not attached. */
int peft_load(const char *dir, const Llama *model, LoraAdapters *lora, Backend *be);

#endif
