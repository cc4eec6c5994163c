/* llama2.c's legacy checkpoint (run.c's format, written by export.py --version 0): a 7-int32
 * header, fp32 weights, a negative vocab_size meaning an untied classifier. Loaded with RoPE
 * interleaved, theta 10000, eps 1e-5. Read only. Not here: lorasc checkpoints (checkpoint.h),
 * llama2.c tokenizers (core/data/tokenizer.h). */
#ifndef LORASC_LLAMA2C_H
#define LORASC_LLAMA2C_H

#include "core/model/llama.h"

/* Creates *model from a legacy llama2.c .bin; LSC_ERR with a sentence naming the file for a
 * missing, truncated or foreign file (a version-1 'ak42' export included). */
int llama2c_load(const char *path, Llama *model, Backend *be);

#endif
