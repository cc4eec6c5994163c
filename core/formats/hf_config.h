/* The JSON files of a Hugging Face model directory (config.json, adapter_config.json, the
 * shard index): open and parse with jansson, typed getters whose errors are one sentence
 * naming the file and the key, and a writer. Shared by hf_llama, vit_hf, peft and hf_shards.
 * Not here: what the values mean for a model (those modules), tokenizer.json (core/data). */
#ifndef LORASC_HF_CONFIG_H
#define LORASC_HF_CONFIG_H

#include <jansson.h>

typedef struct HfConfig {
    json_t *root;     /* the file's top-level object */
    char path[4096];  /* dir/file, named in every error */
    const char *kind; /* what must hold the required keys, e.g. "Llama config.json" */
} HfConfig;

/* Reads dir/file, which must hold a JSON object. */
int hf_config_open(HfConfig *c, const char *dir, const char *file, const char *kind);
void hf_config_close(HfConfig *c);

/* The getters read key from obj, an object inside the file (NULL: the top level). */

/* The value, or NULL when the key is missing or null. */
const json_t *hf_config_get(const HfConfig *c, const json_t *obj, const char *key);
/* A positive integer (at most 2^30); missing or null: def, or an error when required. */
int hf_config_int(const HfConfig *c, const json_t *obj, const char *key, int required, int def,
                  int *out);
/* A positive number; missing or null: def. */
int hf_config_real(const HfConfig *c, const json_t *obj, const char *key, double def, float *out);
/* true or false; missing or null: def. */
int hf_config_bool(const HfConfig *c, const json_t *obj, const char *key, int def, int *out);
/* A string (owned by c); missing or null: def (may be NULL). */
int hf_config_string(const HfConfig *c, const json_t *obj, const char *key, const char *def,
                     const char **out);

/* The files of a Hugging Face directory that describe its tokenizer and generation, which an
 * export copies from the source directory (NULL-terminated). */
extern const char *const HF_TOKENIZER_FILES[];

/* Copies src_dir/file to dst_dir/file when it exists (*copied += 1); LSC_ERR when it exists
 * but cannot be copied. */
int hf_config_copy_file(const char *src_dir, const char *dst_dir, const char *file, int *copied);

/* x as the double whose shortest decimal reads back as x ((double)1e-5f is
 * 9.99999974737875e-06; this gives 1e-05). */
double hf_config_float_value(float x);

/* Writes root to dir/file (indented, keys sorted) and releases root. */
int hf_config_write(const char *dir, const char *file, json_t *root);

#endif
