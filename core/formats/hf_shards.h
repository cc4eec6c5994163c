/* Hugging Face checkpoint directories: the weights as one model.safetensors or as shards
 * listed in model.safetensors.index.json, opened together so a tensor is found by name
 * whichever file holds it. Shared by the Llama and ViT/CLIP loaders. Not here: config.json
 * (hf_config.h), what the tensors mean (hf_llama.c, vit_hf.c). */
#ifndef LORASC_HF_SHARDS_H
#define LORASC_HF_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include "core/formats/safetensors.h"

#define HF_MAX_SHARDS 256

typedef struct HfShards {
    SafeTensors st[HF_MAX_SHARDS];
    int n;
} HfShards;

/* dir/file into out; LSC_ERR (one sentence) if it does not fit. */
int hf_shards_path(char *out, size_t size, const char *dir, const char *file);
/* Opens dir/model.safetensors, or every shard named by dir/model.safetensors.index.json. */
int hf_shards_open(HfShards *s, const char *dir);
void hf_shards_close(HfShards *s);
/* The file holding tensor `name`, or NULL. */
const SafeTensors *hf_shards_find(const HfShards *s, const char *name);
/* Tensor `name` of shape[ndim] into host dst (NULL: the checks only); a missing tensor or a
 * shape that differs from the one dir/config.json implies is one sentence naming dir. */
int hf_shards_read(const HfShards *s, const char *dir, const char *name, int ndim,
                   const int64_t *shape, Real *dst);

#endif
