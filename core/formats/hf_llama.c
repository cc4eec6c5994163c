/* Hugging Face Llama checkpoints (see hf_llama.h): config.json through core/formats/hf_config,
 * tensors through core/formats/hf_shards, the q/k rotary row permutation, and the name map
 * between HF keys and the engine's tensors. */
#include "core/formats/hf_llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/model/device.h"
#include "core/formats/hf_config.h"
#include "core/formats/hf_shards.h"

/* HF module names of the per-layer tensors, in engine order (NULL: not per-layer). */
static const char *layer_module(int tensor) {
    switch (tensor) {
    case LLAMA_RMS_ATT: return "input_layernorm";
    case LLAMA_WQ: return "self_attn.q_proj";
    case LLAMA_WK: return "self_attn.k_proj";
    case LLAMA_WV: return "self_attn.v_proj";
    case LLAMA_WO: return "self_attn.o_proj";
    case LLAMA_RMS_FFN: return "post_attention_layernorm";
    case LLAMA_W1: return "mlp.gate_proj";
    case LLAMA_W2: return "mlp.down_proj";
    case LLAMA_W3: return "mlp.up_proj";
    default: return NULL;
    }
}

const char *hf_llama_lora_module(int target) {
    static const int tensor[LORA_NUM_TARGETS] = {LLAMA_WQ, LLAMA_WK, LLAMA_WV, LLAMA_WO,
                                                 LLAMA_W1, LLAMA_W3, LLAMA_W2};
    return target >= 0 && target < LORA_NUM_TARGETS ? layer_module(tensor[target]) : NULL;
}

static const char *global_name(int tensor) {
    switch (tensor) {
    case LLAMA_TOKEN_EMBEDDING: return "model.embed_tokens.weight";
    case LLAMA_RMS_FINAL: return "model.norm.weight";
    case LLAMA_WCLS: return "lm_head.weight";
    default: return NULL;
    }
}

void hf_llama_permute_rows(Real *dst, const Real *src, int n_heads, int hd, int cols, int to_hf) {
    const int half = hd / 2;
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < half; i++)
            for (int p = 0; p < 2; p++) {
                const size_t meta = (size_t)h * hd + 2 * (size_t)i + p;
                const size_t hf = (size_t)h * hd + (size_t)p * half + i;
                const size_t from = to_hf ? meta : hf, to = to_hf ? hf : meta;
                memcpy(dst + to * (size_t)cols, src + from * (size_t)cols, (size_t)cols * sizeof(Real));
            }
}

float *hf_llama_host_copy(Backend *be, const Real *src, size_t n, int n_heads, int hd, int cols) {
    Real *r = malloc(n * sizeof *r), *perm = n_heads ? malloc(n * sizeof *perm) : NULL;
    float *f = malloc(n * sizeof *f);
    if (!r || !f || (n_heads && !perm)) {
        free(r);
        free(perm);
        free(f);
        error_set("Out of memory copying %zu values to the host.", n);
        return NULL;
    }
    be->to_host(be, r, src, n * sizeof(Real));
    if (device_sync(be) != LSC_OK) {
        free(r);
        free(perm);
        free(f);
        return NULL;
    }
    if (n_heads) { /* block by block: a tensor holds one [n_heads * hd, cols] matrix per layer */
        const size_t block = (size_t)n_heads * (size_t)hd * (size_t)cols;
        for (size_t b = 0; b + block <= n; b += block)
            hf_llama_permute_rows(perm + b, r + b, n_heads, hd, cols, 1);
        free(r);
        r = perm;
    }
    for (size_t i = 0; i < n; i++) f[i] = (float)r[i];
    free(r);
    return f;
}


/* ------------------------------------------------------------------------------------------
 * config.json */

/* Rejects what the engine's Llama does not implement. */
static int check_supported(const HfConfig *f) {
    const char *type, *act;
    int attn_bias, mlp_bias;
    if (hf_config_string(f, NULL, "model_type", NULL, &type) != LSC_OK ||
        hf_config_string(f, NULL, "hidden_act", NULL, &act) != LSC_OK ||
        hf_config_bool(f, NULL, "attention_bias", 0, &attn_bias) != LSC_OK ||
        hf_config_bool(f, NULL, "mlp_bias", 0, &mlp_bias) != LSC_OK)
        return LSC_ERR;
    if (type && strcmp(type, "llama") != 0)
        return error_set("%s describes model_type \"%s\"; lorasc loads \"llama\" checkpoints.",
                         f->path, type);
    if (act && strcmp(act, "silu") != 0)
        return error_set("%s: hidden_act must be \"silu\" (SwiGLU) for Llama.", f->path);
    if (hf_config_get(f, NULL, "rope_scaling"))
        return error_set("%s sets rope_scaling, which lorasc does not implement (use a checkpoint "
                         "without RoPE scaling).", f->path);
    if (attn_bias || mlp_bias)
        return error_set("%s enables attention_bias or mlp_bias; Llama has no biases and lorasc "
                         "does not load them.", f->path);
    return LSC_OK;
}

int hf_llama_read_config(const char *dir, LlamaConfig *c) {
    HfConfig f;
    memset(c, 0, sizeof *c);
    if (hf_config_open(&f, dir, "config.json", "Llama config.json") != LSC_OK) return LSC_ERR;
    int rc = check_supported(&f), head_dim = 0;
    if (rc == LSC_OK &&
        (hf_config_int(&f, NULL, "hidden_size", 1, 0, &c->dim) != LSC_OK ||
         hf_config_int(&f, NULL, "intermediate_size", 1, 0, &c->hidden_dim) != LSC_OK ||
         hf_config_int(&f, NULL, "num_hidden_layers", 1, 0, &c->n_layers) != LSC_OK ||
         hf_config_int(&f, NULL, "num_attention_heads", 1, 0, &c->n_heads) != LSC_OK ||
         hf_config_int(&f, NULL, "num_key_value_heads", 0, c->n_heads, &c->n_kv_heads) != LSC_OK ||
         hf_config_int(&f, NULL, "vocab_size", 1, 0, &c->vocab_size) != LSC_OK ||
         hf_config_int(&f, NULL, "max_position_embeddings", 0, 2048, &c->seq_len) != LSC_OK ||
         hf_config_real(&f, NULL, "rope_theta", 10000.0, &c->rope_theta) != LSC_OK ||
         hf_config_real(&f, NULL, "rms_norm_eps", 1e-6, &c->norm_eps) != LSC_OK ||
         hf_config_int(&f, NULL, "head_dim", 0, c->dim / c->n_heads, &head_dim) != LSC_OK ||
         hf_config_bool(&f, NULL, "tie_word_embeddings", 0, &c->tied_embeddings) != LSC_OK))
        rc = LSC_ERR;
    if (rc == LSC_OK && head_dim * c->n_heads != c->dim)
        rc = error_set("%s: head_dim %d x %d heads differs from hidden_size %d; lorasc needs "
                       "head_dim = hidden_size / num_attention_heads.", f.path, head_dim,
                       c->n_heads, c->dim);
    c->rope_style = ROPE_HALF;
    if (rc == LSC_OK && llama_config_validate(c) != LSC_OK)
        rc = error_set("%s is not a valid Llama config: %s", f.path, error_last());
    hf_config_close(&f);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * loader */

/* HF tensor `name` of shape [rows, cols] (cols 0: a vector) into host dst. */
static int read_hf(const HfShards *s, const char *dir, const char *name, int64_t rows, int64_t cols,
                   Real *dst) {
    const int64_t shape[2] = {rows, cols};
    return hf_shards_read(s, dir, name, cols ? 2 : 1, shape, dst);
}

int hf_llama_load(const char *dir, Llama *model, Backend *be) {
    memset(model, 0, sizeof *model);
    LlamaConfig c;
    if (hf_llama_read_config(dir, &c) != LSC_OK) return LSC_ERR;
    HfShards *s = calloc(1, sizeof *s);
    if (!s) return error_set("Out of memory loading %s.", dir);
    int rc = hf_shards_open(s, dir);
    Real *host = NULL;
    if (rc != LSC_OK) goto done;
    if (c.tied_embeddings == 0 && !hf_shards_find(s, "lm_head.weight")) {
        rc = error_set("The checkpoint in %s has no lm_head.weight and config.json does not set "
                       "tie_word_embeddings: true.", dir);
        goto done;
    }
    /* pass 0 checks every tensor's shape against config.json before the model is allocated
     * (the tensors lie inside their files, so a corrupt config cannot size the model past
     * them); pass 1 reads */
    size_t sizes[LLAMA_NUM_PARAM_TENSORS], biggest = 0;
    llama_param_sizes(&c, sizes);
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++)
        if (sizes[i] > biggest) biggest = sizes[i];
    for (int pass = 0; pass < 2 && rc == LSC_OK; pass++) {
        if (pass == 1) {
            if ((rc = llama_create(model, be, &c)) != LSC_OK) goto done;
            if (!(host = malloc(biggest * sizeof *host))) {
                rc = error_set("Out of memory loading %s.", dir);
                goto done;
            }
        }
        for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS && rc == LSC_OK; i++) {
            if (!sizes[i]) continue;
            int64_t rows, cols;
            llama_tensor_shape(&c, i, &rows, &cols);
            if (global_name(i)) {
                rc = read_hf(s, dir, global_name(i), rows, cols, host);
            } else {
                const size_t per = sizes[i] / (size_t)c.n_layers;
                for (int l = 0; l < c.n_layers && rc == LSC_OK; l++) {
                    char name[128];
                    snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, layer_module(i));
                    rc = read_hf(s, dir, name, rows, cols, host ? host + (size_t)l * per : NULL);
                }
            }
            if (rc == LSC_OK && host) be->to_device(be, model->w.tensors[i], host, sizes[i] * sizeof(Real));
        }
    }
    if (model->be) llama_weights_changed(model);
    if (rc == LSC_OK) rc = device_sync(be);
done:
    if (rc != LSC_OK && model->be) llama_free(model);
    free(host);
    hf_shards_close(s);
    free(s);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * writers */

HfLlamaSaveOptions hf_llama_save_defaults(void) {
    return (HfLlamaSaveOptions){
        .dtype = ST_F32, .source_dir = NULL, .bos_id = 1, .eos_id = 2, .pad_id = -1};
}

/* A float of the model as config.json holds it: the source's value when it is the same float
 * (so 1e-05 stays 1e-05 and 1e-06 stays 1e-06), else the float's shortest decimal. */
static json_t *float_json(const json_t *source, float x) {
    if (json_is_number(source) && (float)json_number_value(source) == x)
        return json_deep_copy(source);
    return json_real(hf_config_float_value(x));
}

static int write_config(const char *dir, const LlamaConfig *c, const HfLlamaSaveOptions *o) {
    json_t *root = NULL;
    if (o->source_dir) {
        HfConfig src;
        if (hf_config_open(&src, o->source_dir, "config.json", "Llama config.json") != LSC_OK)
            return LSC_ERR;
        root = json_deep_copy(src.root);
        hf_config_close(&src);
    } else {
        root = json_object();
        const int ids[3] = {o->bos_id, o->eos_id, o->pad_id};
        const char *keys[3] = {"bos_token_id", "eos_token_id", "pad_token_id"};
        for (int i = 0; i < 3; i++)
            if (ids[i] >= 0) json_object_set_new(root, keys[i], json_integer(ids[i]));
    }
    if (!root) return error_set("Out of memory writing %s/config.json.", dir);
    json_t *fields = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:o, s:b, s:s, s:s, s:b, s:b, s:i}",
        "architectures", "LlamaForCausalLM", "model_type", "llama", "hidden_size", c->dim,
        "intermediate_size", c->hidden_dim, "num_hidden_layers", c->n_layers, "num_attention_heads",
        c->n_heads, "num_key_value_heads", c->n_kv_heads, "vocab_size", c->vocab_size,
        "max_position_embeddings", c->seq_len, "rope_theta",
        float_json(json_object_get(root, "rope_theta"), c->rope_theta), "rms_norm_eps",
        float_json(json_object_get(root, "rms_norm_eps"), c->norm_eps), "tie_word_embeddings",
        c->tied_embeddings, "hidden_act", "silu", "torch_dtype",
        o->dtype == ST_BF16  ? "bfloat16"
        : o->dtype == ST_F16 ? "float16"
                             : "float32",
        "attention_bias", 0, "mlp_bias", 0, "head_dim", c->dim / c->n_heads);
    if (!fields || json_object_update(root, fields) != 0) {
        json_decref(fields);
        json_decref(root);
        return error_set("Out of memory writing %s/config.json.", dir);
    }
    json_decref(fields);
    return hf_config_write(dir, "config.json", root);
}

int hf_llama_save(const char *dir, const Llama *model, const HfLlamaSaveOptions *opt) {
    const HfLlamaSaveOptions defaults = hf_llama_save_defaults();
    const HfLlamaSaveOptions *o = opt ? opt : &defaults;
    const StDtype dtype = o->dtype;
    const LlamaConfig *c = &model->config;
    const int L = c->n_layers, HD = c->dim / c->n_heads;
    float *host[LLAMA_NUM_PARAM_TENSORS] = {0};
    StWriteEntry *e = calloc((size_t)(9 * L + 3), sizeof *e);
    char (*names)[128] = calloc((size_t)(9 * L + 3), sizeof *names);
    int n = 0, rc = LSC_OK;
    if (!e || !names) {
        rc = error_set("Out of memory saving %s.", dir);
        goto done;
    }
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        if (!model->param_sizes[i]) continue;
        int64_t rows, cols;
        llama_tensor_shape(c, i, &rows, &cols);
        const int permuted = c->rope_style == ROPE_INTERLEAVED && (i == LLAMA_WQ || i == LLAMA_WK);
        const int heads = !permuted ? 0 : i == LLAMA_WQ ? c->n_heads : c->n_kv_heads;
        Real *t; /* a bf16 base's matrices widened to fp32 on the fly */
        int owned;
        if (llama_tensor_fp32(model, i, &t, &owned) != LSC_OK) {
            rc = error_set("Cannot save %s: %s", dir, error_last());
            goto done;
        }
        host[i] = hf_llama_host_copy(model->be, t, model->param_sizes[i], heads, HD, (int)cols);
        if (owned) model->be->free(model->be, t);
        if (!host[i]) {
            rc = error_set("Cannot save %s: %s", dir, error_last());
            goto done;
        }
        const int layers = global_name(i) ? 1 : L;
        for (int l = 0; l < layers; l++, n++) {
            if (global_name(i)) snprintf(names[n], sizeof names[n], "%s", global_name(i));
            else snprintf(names[n], sizeof names[n], "model.layers.%d.%s.weight", l, layer_module(i));
            e[n] = (StWriteEntry){.name = names[n], .ndim = cols ? 2 : 1, .shape = {rows, cols},
                                  .data = host[i] + (size_t)l * (size_t)rows * (size_t)(cols ? cols : 1)};
        }
    }
    char path[4096];
    static const char *const meta[] = {"format", "pt", NULL};
    if ((rc = write_config(dir, c, o)) != LSC_OK ||
        (rc = hf_shards_path(path, sizeof path, dir, "model.safetensors")) != LSC_OK)
        goto done;
    rc = safetensors_write(path, e, n, dtype, meta);
    for (int i = 0; rc == LSC_OK && o->source_dir && HF_TOKENIZER_FILES[i]; i++)
        rc = hf_config_copy_file(o->source_dir, dir, HF_TOKENIZER_FILES[i], NULL);
done:
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) free(host[i]);
    free(e);
    free(names);
    return rc;
}
