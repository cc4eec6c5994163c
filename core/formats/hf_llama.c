/* Hugging Face Llama checkpoints and PEFT adapters (see hf_llama.h): config.json through
 * jansson, tensors through core/safetensors, the q/k rotary row permutation, and the name
 * maps between HF / PEFT keys and the engine's tensors. */
#include "core/formats/hf_llama.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "core/base/error.h"
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

static const char *global_name(int tensor) {
    switch (tensor) {
    case LLAMA_TOKEN_EMBEDDING: return "model.embed_tokens.weight";
    case LLAMA_RMS_FINAL: return "model.norm.weight";
    case LLAMA_WCLS: return "lm_head.weight";
    default: return NULL;
    }
}

/* Shape of one layer's (or the global) tensor: [rows, cols] or [rows] (cols = 0). */
static void tensor_shape(const LlamaConfig *c, int tensor, int64_t *rows, int64_t *cols) {
    const int64_t C = c->dim, H = c->hidden_dim, HD = c->dim / c->n_heads;
    const int64_t Q = (int64_t)c->n_heads * HD, KV = (int64_t)c->n_kv_heads * HD, V = c->vocab_size;
    *cols = C;
    switch (tensor) {
    case LLAMA_TOKEN_EMBEDDING: case LLAMA_WCLS: *rows = V; break;
    case LLAMA_RMS_ATT: case LLAMA_RMS_FFN: case LLAMA_RMS_FINAL: *rows = C; *cols = 0; break;
    case LLAMA_WQ: *rows = Q; break;
    case LLAMA_WK: case LLAMA_WV: *rows = KV; break;
    case LLAMA_WO: *rows = C; *cols = Q; break;
    case LLAMA_W1: case LLAMA_W3: *rows = H; break;
    case LLAMA_W2: *rows = C; *cols = H; break;
    default: LSC_ASSERT(0);
    }
}

void hf_permute_rows(float *dst, const float *src, int n_heads, int hd, int cols, int to_hf) {
    const int half = hd / 2;
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < half; i++)
            for (int p = 0; p < 2; p++) {
                const size_t meta = (size_t)h * hd + 2 * (size_t)i + p;
                const size_t hf = (size_t)h * hd + (size_t)p * half + i;
                const size_t from = to_hf ? meta : hf, to = to_hf ? hf : meta;
                memcpy(dst + to * (size_t)cols, src + from * (size_t)cols, (size_t)cols * sizeof(float));
            }
}


/* ------------------------------------------------------------------------------------------
 * config.json */

static int cfg_int(const json_t *root, const char *path, const char *key, int required, int def,
                   int *out) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return error_set("%s lacks \"%s\" (a Llama config.json needs it).", path, key);
        *out = def;
        return LSC_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30))
        return error_set("%s: \"%s\" must be a positive integer.", path, key);
    *out = (int)json_integer_value(v);
    return LSC_OK;
}

static int cfg_real(const json_t *root, const char *path, const char *key, double def, float *out) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = (float)def;
        return LSC_OK;
    }
    if (!json_is_number(v) || json_number_value(v) <= 0)
        return error_set("%s: \"%s\" must be a positive number.", path, key);
    *out = (float)json_number_value(v);
    return LSC_OK;
}

int hf_llama_read_config(const char *dir, LlamaConfig *c) {
    char path[4096];
    if (hf_path_join(path, sizeof path, dir, "config.json") != LSC_OK) return LSC_ERR;
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return error_set("Cannot read %s: %s (line %d, column %d).", path, jerr.text, jerr.line,
                         jerr.column);
    int rc = LSC_OK;
    memset(c, 0, sizeof *c);
    const json_t *mt = json_object_get(root, "model_type");
    const json_t *act = json_object_get(root, "hidden_act");
    const json_t *scaling = json_object_get(root, "rope_scaling");
    if (!json_is_object(root)) {
        rc = error_set("%s must hold a JSON object.", path);
    } else if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "llama") != 0)) {
        rc = error_set("%s describes model_type \"%s\"; lorasc loads \"llama\" checkpoints.", path,
                       json_is_string(mt) ? json_string_value(mt) : "?");
    } else if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0)) {
        rc = error_set("%s: hidden_act must be \"silu\" (SwiGLU) for Llama.", path);
    } else if (scaling && !json_is_null(scaling)) {
        rc = error_set("%s sets rope_scaling, which lorasc does not implement (use a checkpoint "
                       "without RoPE scaling).", path);
    } else if (json_is_true(json_object_get(root, "attention_bias")) ||
               json_is_true(json_object_get(root, "mlp_bias"))) {
        rc = error_set("%s enables attention_bias or mlp_bias; Llama has no biases and lorasc "
                       "does not load them.", path);
    } else if (cfg_int(root, path, "hidden_size", 1, 0, &c->dim) != LSC_OK ||
               cfg_int(root, path, "intermediate_size", 1, 0, &c->hidden_dim) != LSC_OK ||
               cfg_int(root, path, "num_hidden_layers", 1, 0, &c->n_layers) != LSC_OK ||
               cfg_int(root, path, "num_attention_heads", 1, 0, &c->n_heads) != LSC_OK ||
               cfg_int(root, path, "num_key_value_heads", 0, c->n_heads, &c->n_kv_heads) != LSC_OK ||
               cfg_int(root, path, "vocab_size", 1, 0, &c->vocab_size) != LSC_OK ||
               cfg_int(root, path, "max_position_embeddings", 0, 2048, &c->seq_len) != LSC_OK ||
               cfg_real(root, path, "rope_theta", 10000.0, &c->rope_theta) != LSC_OK ||
               cfg_real(root, path, "rms_norm_eps", 1e-6, &c->norm_eps) != LSC_OK) {
        rc = LSC_ERR;
    } else {
        int head_dim = 0;
        if (cfg_int(root, path, "head_dim", 0, c->dim / c->n_heads, &head_dim) != LSC_OK) {
            rc = LSC_ERR;
        } else if (head_dim * c->n_heads != c->dim) {
            rc = error_set("%s: head_dim %d x %d heads differs from hidden_size %d; lorasc needs "
                           "head_dim = hidden_size / num_attention_heads.", path, head_dim,
                           c->n_heads, c->dim);
        } else {
            c->tied_embeddings = json_is_true(json_object_get(root, "tie_word_embeddings"));
            c->rope_style = ROPE_HALF;
            if (llama_config_validate(c) != LSC_OK)
                rc = error_set("%s is not a valid Llama config: %s", path, error_last());
        }
    }
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * loader */

/* Reads HF tensor `name` of shape [rows, cols] (cols 0: a vector) into dst (host). */
static int read_hf(const HfShards *s, const char *dir, const char *name, int64_t rows, int64_t cols,
                   Real *dst) {
    const SafeTensors *st = hf_shards_find(s, name);
    if (!st) return error_set("The checkpoint in %s has no tensor \"%s\".", dir, name);
    const int64_t shape[2] = {rows, cols};
    const int rc = safetensors_read_shaped(st, name, cols ? 2 : 1, shape, dst);
    if (rc != LSC_OK && strstr(error_last(), "the config implies")) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", error_last());
        if (strlen(msg) > 0 && msg[strlen(msg) - 1] == '.') msg[strlen(msg) - 1] = '\0';
        return error_set("%s (by %s/config.json).", msg, dir);
    }
    return rc;
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
    if ((rc = llama_create(model, be, &c)) != LSC_OK) goto done;
    size_t biggest = 0;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++)
        if (model->param_sizes[i] > biggest) biggest = model->param_sizes[i];
    if (!(host = malloc(biggest * sizeof *host))) {
        rc = error_set("Out of memory loading %s.", dir);
        goto done;
    }
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS && rc == LSC_OK; i++) {
        if (!model->param_sizes[i]) continue;
        int64_t rows, cols;
        tensor_shape(&c, i, &rows, &cols);
        if (global_name(i)) {
            rc = read_hf(s, dir, global_name(i), rows, cols, host);
        } else {
            const size_t per = model->param_sizes[i] / (size_t)c.n_layers;
            for (int l = 0; l < c.n_layers && rc == LSC_OK; l++) {
                char name[128];
                snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, layer_module(i));
                rc = read_hf(s, dir, name, rows, cols, host + (size_t)l * per);
            }
        }
        if (rc == LSC_OK) be->to_device(be, model->w.tensors[i], host, model->param_sizes[i] * sizeof(Real));
    }
done:
    if (rc != LSC_OK && model->be) llama_free(model);
    free(host);
    hf_shards_close(s);
    free(s);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * writers */

/* Host float copy of n device Reals at src (malloc'd; NULL on OOM). */
static float *host_floats(Backend *be, const Real *src, size_t n) {
    Real *r = malloc(n * sizeof *r);
    float *f = malloc(n * sizeof *f);
    if (!r || !f) {
        free(r);
        free(f);
        return NULL;
    }
    be->to_host(be, r, src, n * sizeof(Real));
    for (size_t i = 0; i < n; i++) f[i] = (float)r[i];
    free(r);
    return f;
}

static int write_config(const char *dir, const LlamaConfig *c, StDtype dtype) {
    char path[4096];
    if (hf_path_join(path, sizeof path, dir, "config.json") != LSC_OK) return LSC_ERR;
    json_t *root = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:s, s:s, s:b, s:b, s:i, s:i}",
        "architectures", "LlamaForCausalLM", "model_type", "llama", "hidden_size", c->dim,
        "intermediate_size", c->hidden_dim, "num_hidden_layers", c->n_layers,
        "num_attention_heads", c->n_heads, "num_key_value_heads", c->n_kv_heads, "vocab_size",
        c->vocab_size, "max_position_embeddings", c->seq_len, "rope_theta", (double)c->rope_theta,
        "rms_norm_eps", (double)c->norm_eps, "tie_word_embeddings", c->tied_embeddings,
        "hidden_act", "silu", "torch_dtype",
        dtype == ST_BF16 ? "bfloat16" : dtype == ST_F16 ? "float16" : "float32", "attention_bias", 0,
        "mlp_bias", 0, "bos_token_id", 1, "eos_token_id", 2);
    const int bad = !root || json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0;
    json_decref(root);
    return bad ? error_set("Cannot write %s: %s.", path, strerror(errno)) : LSC_OK;
}

int hf_llama_save(const char *dir, const Llama *model, StDtype dtype) {
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
        if (!(host[i] = host_floats(model->be, model->w.tensors[i], model->param_sizes[i]))) {
            rc = error_set("Out of memory saving %s.", dir);
            goto done;
        }
        int64_t rows, cols;
        tensor_shape(c, i, &rows, &cols);
        if (c->rope_style == ROPE_INTERLEAVED && (i == LLAMA_WQ || i == LLAMA_WK)) {
            float *perm = malloc(model->param_sizes[i] * sizeof *perm);
            if (!perm) {
                rc = error_set("Out of memory saving %s.", dir);
                goto done;
            }
            const int heads = i == LLAMA_WQ ? c->n_heads : c->n_kv_heads;
            for (int l = 0; l < L; l++)
                hf_permute_rows(perm + (size_t)l * rows * cols, host[i] + (size_t)l * rows * cols,
                                heads, HD, (int)cols, 1);
            free(host[i]);
            host[i] = perm;
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
    if ((rc = write_config(dir, c, dtype)) != LSC_OK ||
        (rc = hf_path_join(path, sizeof path, dir, "model.safetensors")) != LSC_OK)
        goto done;
    rc = safetensors_write(path, e, n, dtype, meta);
done:
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) free(host[i]);
    free(e);
    free(names);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * PEFT */

static const char *peft_module(int target) {
    static const char *const mod[LORA_NUM_TARGETS] = {"self_attn.q_proj", "self_attn.k_proj",
                                                      "self_attn.v_proj", "self_attn.o_proj",
                                                      "mlp.gate_proj",    "mlp.up_proj",
                                                      "mlp.down_proj"};
    return mod[target];
}

/* q/k outputs are rotary-permuted between the engine's interleaved layout and HF's. */
static int permuted_heads(const Llama *m, int target) {
    if (m->config.rope_style != ROPE_INTERLEAVED) return 0;
    return target == LORA_Q ? m->config.n_heads : target == LORA_K ? m->config.n_kv_heads : 0;
}

int peft_save(const char *dir, const Llama *model, const LoraAdapters *lora, const char *base_model) {
    const int r = lora->config.rank, HD = model->config.dim / model->config.n_heads;
    const int per_slot = lora->config.use_dora ? 3 : 2;
    const int max_entries = lora->n_layers * LORA_NUM_TARGETS * per_slot;
    StWriteEntry *e = calloc((size_t)max_entries, sizeof *e);
    char (*names)[160] = calloc((size_t)max_entries, sizeof *names);
    float **bufs = calloc((size_t)max_entries, sizeof *bufs);
    int n = 0, rc = LSC_OK;
    json_t *targets = json_array();
    if (!e || !names || !bufs) {
        rc = error_set("Out of memory saving adapters to %s.", dir);
        goto done;
    }
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if (lora_enabled(lora, t)) json_array_append_new(targets, json_string(lora_target_name(t)));
    for (int l = 0; l < lora->n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(lora, t)) continue;
            const int in = lora->in_dim[t], out = lora->out_dim[t], heads = permuted_heads(model, t);
            const char *kind[3] = {"lora_A.weight", "lora_B.weight", "lora_magnitude_vector"};
            const Real *src[3] = {lora_a(lora, l, t), lora_b(lora, l, t),
                                  lora->config.use_dora ? lora_magnitude(lora, l, t) : NULL};
            const int64_t rows[3] = {r, out, out}, cols[3] = {in, r, 0};
            for (int k = 0; k < per_slot; k++, n++) {
                const size_t count = (size_t)rows[k] * (size_t)(cols[k] ? cols[k] : 1);
                if (!(bufs[n] = host_floats(lora->be, src[k], count))) {
                    rc = error_set("Out of memory saving adapters to %s.", dir);
                    goto done;
                }
                if (k > 0 && heads) { /* rows of B and m live in q/k's output space */
                    float *perm = malloc(count * sizeof *perm);
                    if (!perm) {
                        rc = error_set("Out of memory saving adapters to %s.", dir);
                        goto done;
                    }
                    hf_permute_rows(perm, bufs[n], heads, HD, cols[k] ? (int)cols[k] : 1, 1);
                    free(bufs[n]);
                    bufs[n] = perm;
                }
                snprintf(names[n], sizeof names[n], "base_model.model.model.layers.%d.%s.%s", l,
                         peft_module(t), kind[k]);
                e[n] = (StWriteEntry){.name = names[n], .ndim = cols[k] ? 2 : 1,
                                      .shape = {rows[k], cols[k]}, .data = bufs[n]};
            }
        }
    char path[4096];
    json_t *cfg = json_pack(
        "{s:s, s:s, s:i, s:f, s:o, s:f, s:s, s:b, s:b, s:b, s:b, s:b, s:s?, s:n, s:n, s:{}, s:{}, s:n}",
        "peft_type", "LORA", "task_type", "CAUSAL_LM", "r", r, "lora_alpha",
        (double)lora->config.alpha, "target_modules", targets, "lora_dropout", 0.0, "bias", "none",
        "use_dora", lora->config.use_dora, "use_rslora", 0, "fan_in_fan_out", 0, "inference_mode", 1,
        "init_lora_weights", 1, "base_model_name_or_path", base_model, "modules_to_save",
        "layers_to_transform", "rank_pattern", "alpha_pattern", "revision");
    targets = NULL;
    if ((rc = hf_path_join(path, sizeof path, dir, "adapter_config.json")) != LSC_OK) {
        json_decref(cfg);
        goto done;
    }
    if (!cfg || json_dump_file(cfg, path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) {
        json_decref(cfg);
        rc = error_set("Cannot write %s: %s.", path, strerror(errno));
        goto done;
    }
    json_decref(cfg);
    static const char *const meta[] = {"format", "pt", NULL};
    if ((rc = hf_path_join(path, sizeof path, dir, "adapter_model.safetensors")) == LSC_OK)
        rc = safetensors_write(path, e, n, ST_F32, meta);
done:
    json_decref(targets);
    for (int i = 0; bufs && i < max_entries; i++) free(bufs[i]);
    free(bufs);
    free(e);
    free(names);
    return rc;
}

int peft_load(const char *dir, const Llama *model, LoraAdapters *lora, Backend *be) {
    memset(lora, 0, sizeof *lora);
    char path[4096];
    if (hf_path_join(path, sizeof path, dir, "adapter_config.json") != LSC_OK) return LSC_ERR;
    json_error_t jerr;
    json_t *cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!cfg)
        return error_set("Cannot read %s: %s (line %d, column %d).", path, jerr.text, jerr.line,
                         jerr.column);
    int rc = LSC_OK;
    SafeTensors st = {0};
    Real *host = NULL;
    const json_t *pt = json_object_get(cfg, "peft_type"), *tm = json_object_get(cfg, "target_modules");
    const json_t *jr = json_object_get(cfg, "r"), *ja = json_object_get(cfg, "lora_alpha");
    LoraConfig lc = {0};
    if (!json_is_string(pt) || strcmp(json_string_value(pt), "LORA") != 0) {
        rc = error_set("%s: peft_type must be \"LORA\".", path);
        goto done;
    }
    if (!json_is_integer(jr) || json_integer_value(jr) <= 0 || json_integer_value(jr) > 65536 ||
        !json_is_number(ja)) {
        rc = error_set("%s needs a positive integer \"r\" and a number \"lora_alpha\".", path);
        goto done;
    }
    if (json_is_true(json_object_get(cfg, "use_rslora")) ||
        json_is_true(json_object_get(cfg, "fan_in_fan_out")) ||
        json_object_size(json_object_get(cfg, "rank_pattern")) ||
        json_object_size(json_object_get(cfg, "alpha_pattern")) ||
        (json_object_get(cfg, "layers_to_transform") &&
         !json_is_null(json_object_get(cfg, "layers_to_transform")))) {
        rc = error_set("%s uses use_rslora, fan_in_fan_out, rank/alpha patterns or "
                       "layers_to_transform, which lorasc does not support.", path);
        goto done;
    }
    lc.rank = (int)json_integer_value(jr);
    lc.alpha = (float)json_number_value(ja);
    lc.use_dora = json_is_true(json_object_get(cfg, "use_dora"));
    size_t i;
    const json_t *v;
    if (!json_is_array(tm) || json_array_size(tm) == 0) {
        rc = error_set("%s: target_modules must be a non-empty list of module names.", path);
        goto done;
    }
    json_array_foreach(tm, i, v) {
        const int t = json_is_string(v) ? lora_target_parse(json_string_value(v)) : -1;
        if (t < 0) {
            rc = error_set("%s: target module %s is not one of q_proj, k_proj, v_proj, o_proj, "
                           "gate_proj, up_proj, down_proj.", path,
                           json_is_string(v) ? json_string_value(v) : "(not a string)");
            goto done;
        }
        lc.targets |= LORA_BIT(t);
    }
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&model->config, in, out);
    if ((rc = hf_path_join(path, sizeof path, dir, "adapter_model.safetensors")) != LSC_OK ||
        (rc = safetensors_open(&st, path)) != LSC_OK ||
        (rc = lora_create(lora, be, &lc, model->config.n_layers, in, out, 0)) != LSC_OK)
        goto done;
    const int HD = model->config.dim / model->config.n_heads;
    size_t biggest = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        const size_t a = (size_t)lc.rank * (size_t)(in[t] > out[t] ? in[t] : out[t]);
        if (a > biggest) biggest = a;
    }
    if (!(host = malloc(2 * biggest * sizeof *host))) {
        rc = error_set("Out of memory loading %s.", path);
        goto done;
    }
    for (int l = 0; l < lora->n_layers && rc == LSC_OK; l++)
        for (int t = 0; t < LORA_NUM_TARGETS && rc == LSC_OK; t++) {
            if (!lora_enabled(lora, t)) continue;
            const int heads = permuted_heads(model, t);
            const char *kind[3] = {"lora_A.weight", "lora_B.weight", "lora_magnitude_vector"};
            Real *dst[3] = {lora_a(lora, l, t), lora_b(lora, l, t),
                            lc.use_dora ? lora_magnitude(lora, l, t) : NULL};
            const int64_t rows[3] = {lc.rank, out[t], out[t]}, cols[3] = {in[t], lc.rank, 0};
            for (int k = 0; k < (lc.use_dora ? 3 : 2) && rc == LSC_OK; k++) {
                char name[160];
                snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.%s", l,
                         peft_module(t), kind[k]);
                const int64_t shape[2] = {rows[k], cols[k]};
                const size_t count = (size_t)rows[k] * (size_t)(cols[k] ? cols[k] : 1);
                if ((rc = safetensors_read_shaped(&st, name, cols[k] ? 2 : 1, shape, host)) != LSC_OK)
                    break;
                if (k > 0 && heads) { /* HF -> interleaved rows */
                    float *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b);
                    if (a && b) {
                        for (size_t j = 0; j < count; j++) a[j] = (float)host[j];
                        hf_permute_rows(b, a, heads, HD, cols[k] ? (int)cols[k] : 1, 0);
                        for (size_t j = 0; j < count; j++) host[j] = (Real)b[j];
                    } else {
                        rc = error_set("Out of memory loading %s.", path);
                    }
                    free(a);
                    free(b);
                }
                if (rc == LSC_OK) be->to_device(be, dst[k], host, count * sizeof(Real));
            }
        }
    if (rc == LSC_OK && lc.use_dora) lora->magnitudes_set = 1;
done:
    if (rc != LSC_OK && lora->params) lora_free(lora);
    free(host);
    safetensors_close(&st);
    json_decref(cfg);
    return rc;
}
