/* Llama models from GGUF files (llama.cpp's converter): the llama.* metadata mapped onto
 * LlamaConfig and the blk.N.* tensors dequantised on load (F32, F16, BF16, Q8_0, Q4_0, Q4_1)
 * into the model's parameters. llama.cpp's converter permutes q/k rows from Hugging Face's
 * half-rotation order into Meta's interleaved pairs (its LLAMA_ROPE_TYPE_NORM), so the model
 * is ROPE_INTERLEAVED and the weights are used as stored. No output.weight: tied embeddings.
 * Not here: the container (core/base/gguf.h), the tokenizer (core/data/tokenizer.h), RoPE
 * scaling, biases, other architectures (all refused by name). */
#ifndef LORASC_GGUF_LLAMA_H
#define LORASC_GGUF_LLAMA_H

#include "core/base/gguf.h"
#include "core/model/llama.h"

/* The config of an open GGUF file: general.architecture "llama", llama.* keys, vocab size
 * from token_embd.weight, tied when output.weight is absent. */
int gguf_llama_config(const Gguf *g, LlamaConfig *c);
/* Creates *model from an open GGUF file (every tensor must be one the model has). */
int gguf_llama_load_gguf(const Gguf *g, Llama *model, Backend *be);
/* Creates *model from the .gguf file at path. */
int gguf_llama_load(const char *path, Llama *model, Backend *be);

#endif
