/* Hugging Face Llama checkpoints.
 * - hf_llama_load: a directory with config.json and model.safetensors, or shards listed in
 *   model.safetensors.index.json; F32 / F16 / BF16. HF stores q_proj / k_proj rows in the
 *   half-rotation order that its rotate_half RoPE expects, so the model is loaded with
 *   rope_style = ROPE_HALF and the weights exactly as stored (no permutation on load).
 * - hf_llama_save: the (merged) model as config.json + model.safetensors in HF layout: a
 *   ROPE_HALF model is written as it is; a ROPE_INTERLEAVED one (llama2.c / Meta layout) gets
 *   its q/k rows permuted as HF's convert_llama_weights_to_hf.py `permute` does.
 * Not here: PEFT adapters (peft.h), tokenizers (core/data/tokenizer.h: the files are copied,
 * not read), rope scaling, biases. */
#ifndef LORASC_HF_LLAMA_H
#define LORASC_HF_LLAMA_H

#include "core/model/llama.h"
#include "core/formats/safetensors.h"

/* Creates *model from dir (ROPE_HALF). Shapes are checked against config.json. */
int hf_llama_load(const char *dir, Llama *model, Backend *be);
/* Reads only config.json into *c. */
int hf_llama_read_config(const char *dir, LlamaConfig *c);
/* What an export keeps beyond the weights. */
typedef struct HfLlamaSaveOptions {
    StDtype dtype; /* ST_F32, ST_F16 or ST_BF16 */
    /* The Hugging Face directory the model came from, or NULL. Its config.json is the start
     * of the new one: every key lorasc does not model (bos/eos/pad token ids, initializer_range,
     * ...) is kept as written, and so are rms_norm_eps and rope_theta when the model's float
     * values equal them; generation_config.json and the tokenizer files (HF_TOKENIZER_FILES)
     * are copied. */
    const char *source_dir;
    /* Without a source: the token ids written (-1: left out); ignored with a source. */
    int bos_id, eos_id, pad_id;
} HfLlamaSaveOptions;

/* F32, no source, bos 1, eos 2, no pad (LlamaConfig's defaults). */
HfLlamaSaveOptions hf_llama_save_defaults(void);

/* Writes dir/config.json and dir/model.safetensors (and what opt keeps; opt NULL: the
 * defaults); dir must exist. Numbers lorasc holds as floats (rms_norm_eps, rope_theta) are
 * written as the shortest decimal that reads back as that float (1e-05, not
 * 9.99999974737875e-06). */
int hf_llama_save(const char *dir, const Llama *model, const HfLlamaSaveOptions *opt);

/* The HF module of LoRA target t in a layer ("self_attn.q_proj", ..., "mlp.down_proj"). */
const char *hf_llama_lora_module(int target);

/* Row permutation of a q or k projection [n_heads*hd, cols] between Meta's interleaved rotary
 * pairs (2i, 2i+1) and HF's halves (i, i + hd/2); to_hf = 1: Meta -> HF, 0: HF -> Meta. */
void hf_llama_permute_rows(Real *dst, const Real *src, int n_heads, int hd, int cols, int to_hf);
/* A host float copy of n device Reals at src, for a safetensors writer; when n_heads > 0 the
 * rows of each [n_heads*hd, cols] block are permuted Meta -> HF. malloc'd; NULL with the
 * error set when out of memory or when the device failed. */
float *hf_llama_host_copy(Backend *be, const Real *src, size_t n, int n_heads, int hd, int cols);

#endif
