/* Hugging Face Llama checkpoints and PEFT adapters.
 * - hf_llama_load: a directory with config.json and model.safetensors, or shards listed in
 *   model.safetensors.index.json; F32 / F16 / BF16. HF stores q_proj / k_proj rows in the
 *   half-rotation order that its rotate_half RoPE expects, so the model is loaded with
 *   rope_style = ROPE_HALF and the weights exactly as stored (no permutation on load).
 * - hf_llama_save: the (merged) model as config.json + model.safetensors in HF layout: a
 *   ROPE_HALF model is written as it is; a ROPE_INTERLEAVED one (llama2.c / Meta layout) gets
 *   its q/k rows permuted as HF's convert_llama_weights_to_hf.py `permute` does.
 * - peft_save / peft_load: adapters as PEFT writes them: adapter_config.json +
 *   adapter_model.safetensors with keys base_model.model.model.layers.{i}.self_attn.q_proj.
 *   lora_A.weight [r, in], .lora_B.weight [out, r], and (DoRA) .lora_magnitude_vector [out];
 *   scaling lora_alpha / r. For a ROPE_INTERLEAVED model the rows of q/k's B (and DoRA's m)
 *   live in the permuted output space too, so they are permuted like the weights.
 * Not here: tokenizers (core/data/tokenizer.h), generation configs, rope scaling, biases. */
#ifndef LORASC_HF_LLAMA_H
#define LORASC_HF_LLAMA_H

#include "core/model/llama.h"
#include "core/model/lora.h"
#include "core/formats/safetensors.h"

/* Creates *model from dir (ROPE_HALF). Shapes are checked against config.json. */
int hf_llama_load(const char *dir, Llama *model, Backend *be);
/* Reads only config.json into *c. */
int hf_llama_read_config(const char *dir, LlamaConfig *c);
/* Writes dir/config.json and dir/model.safetensors (dtype ST_F32, ST_F16 or ST_BF16); dir
 * must exist. */
int hf_llama_save(const char *dir, const Llama *model, StDtype dtype);

/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (F32) for lora attached
 * to (or made for) model. base_model may be NULL. */
int peft_save(const char *dir, const Llama *model, const LoraAdapters *lora, const char *base_model);
/* Creates *lora from a PEFT adapter directory for model (rows of q/k un-permuted when model
 * is ROPE_INTERLEAVED). The adapter is not attached. */
int peft_load(const char *dir, const Llama *model, LoraAdapters *lora, Backend *be);

/* Row permutation of a q or k projection [n_heads*hd, cols] between Meta's interleaved rotary
 * pairs (2i, 2i+1) and HF's halves (i, i + hd/2); to_hf = 1: Meta -> HF, 0: HF -> Meta. */
void hf_permute_rows(float *dst, const float *src, int n_heads, int hd, int cols, int to_hf);

#endif
