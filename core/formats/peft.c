/* PEFT adapters (see peft.h): adapter_config.json through core/formats/hf_config (every key
 * checked against what lorasc implements), tensors through core/formats/safetensors (every
 * tensor of the file must be one the adapter needs), the PEFT key names of a Llama or a ViT,
 * and q/k row permutation for interleaved-RoPE Llamas. */
#include "core/formats/peft.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/formats/hf_config.h"
#include "core/formats/hf_llama.h"
#include "core/formats/hf_shards.h"
#include "core/formats/safetensors.h"
#include "core/formats/vit_hf.h"
#include "core/model/device.h"

/* ------------------------------------------------------------------------------------------
 * names */

static const char *const KIND[3] = {"lora_A.weight", "lora_B.weight", "lora_magnitude_vector"};

/* The module of slot (layer, target) as the PeftModel's base model names it. */
static int module_name(PeftModelKind kind, int layer, int target, char *out, size_t n) {
    const char *m = kind == PEFT_VIT ? vit_hf_lora_module(target) : hf_llama_lora_module(target);
    if (!m) return 0;
    snprintf(out, n, kind == PEFT_VIT ? "vit.encoder.layer.%d.%s" : "model.layers.%d.%s", layer, m);
    return 1;
}

static void tensor_name(PeftModelKind kind, int layer, int target, int k, char *out, size_t n) {
    char mod[128];
    module_name(kind, layer, target, mod, sizeof mod);
    snprintf(out, n, "base_model.model.%s.%s", mod, KIND[k]);
}

static const char *model_word(PeftModelKind kind) {
    return kind == PEFT_VIT ? "ViT" : "Llama";
}

/* q/k outputs are rotary-permuted between the engine's interleaved layout and HF's. */
static int permuted_heads(const Llama *m, int target) {
    if (!m || m->config.rope_style != ROPE_INTERLEAVED) return 0;
    return target == LORA_Q ? m->config.n_heads : target == LORA_K ? m->config.n_kv_heads : 0;
}

/* ------------------------------------------------------------------------------------------
 * adapter_config.json */

enum { KEY_HANDLED, KEY_IGNORED, KEY_MUST_BE_EMPTY };

/* Every key PEFT's LoraConfig writes (0.12, and a few of later versions). IGNORED keys change
 * training or initialisation only; MUST_BE_EMPTY ones change the numbers and are refused when
 * set. A key not listed is refused when it holds anything but null / false / {} / [] / "". */
static const struct {
    const char *key;
    int rule;
    const char *what;
} KEYS[] = {
    {"peft_type", KEY_HANDLED, NULL},
    {"task_type", KEY_HANDLED, NULL},
    {"r", KEY_HANDLED, NULL},
    {"lora_alpha", KEY_HANDLED, NULL},
    {"target_modules", KEY_HANDLED, NULL},
    {"use_dora", KEY_HANDLED, NULL},
    {"modules_to_save", KEY_HANDLED, NULL},
    {"bias", KEY_HANDLED, NULL},
    {"base_model_name_or_path", KEY_HANDLED, NULL},
    {"lora_dropout", KEY_IGNORED, NULL},
    {"inference_mode", KEY_IGNORED, NULL},
    {"revision", KEY_IGNORED, NULL},
    {"auto_mapping", KEY_IGNORED, NULL},
    {"init_lora_weights", KEY_IGNORED, NULL},
    {"loftq_config", KEY_IGNORED, NULL},
    {"eva_config", KEY_IGNORED, NULL},
    {"corda_config", KEY_IGNORED, NULL},
    {"megatron_core", KEY_IGNORED, NULL},
    {"runtime_config", KEY_IGNORED, NULL},
    {"use_rslora", KEY_MUST_BE_EMPTY,
     "rsLoRA (scaling lora_alpha / sqrt(r) instead of lora_alpha / r)"},
    {"rank_pattern", KEY_MUST_BE_EMPTY, "a per-module rank pattern"},
    {"alpha_pattern", KEY_MUST_BE_EMPTY, "a per-module lora_alpha pattern"},
    {"layer_replication", KEY_MUST_BE_EMPTY,
     "layer replication (layers duplicated before they are adapted)"},
    {"layers_to_transform", KEY_MUST_BE_EMPTY, "adapters on some layers only"},
    {"layers_pattern", KEY_MUST_BE_EMPTY, "a layer pattern"},
    {"fan_in_fan_out", KEY_MUST_BE_EMPTY, "transposed (Conv1D) weights"},
    {"megatron_config", KEY_MUST_BE_EMPTY, "Megatron parallel layers"},
    {"exclude_modules", KEY_MUST_BE_EMPTY, "excluded modules"},
    {"lora_bias", KEY_MUST_BE_EMPTY, "a bias in lora_B"},
    {"trainable_token_indices", KEY_MUST_BE_EMPTY, "trainable token embeddings"},
    {"target_parameters", KEY_MUST_BE_EMPTY, "adapted parameters (not modules)"},
    {"use_qalora", KEY_MUST_BE_EMPTY, "QA-LoRA"},
};

static int is_empty(const json_t *v) {
    return !v || json_is_null(v) || json_is_false(v) ||
           (json_is_object(v) && json_object_size(v) == 0) ||
           (json_is_array(v) && json_array_size(v) == 0) ||
           (json_is_string(v) && json_string_value(v)[0] == '\0');
}

static int refuse_key(const char *path, const char *key, const char *what) {
    return error_set("%s sets \"%s\" (%s), which lorasc does not implement: the adapter would not "
                     "give PEFT's numbers, so it is refused.",
                     path, key, what);
}

/* Every key of the file against KEYS. */
static int check_keys(const HfConfig *c) {
    const char *key;
    const json_t *v;
    json_object_foreach(c->root, key, v) {
        size_t i = 0;
        while (i < sizeof KEYS / sizeof KEYS[0] && strcmp(KEYS[i].key, key) != 0) i++;
        if (i == sizeof KEYS / sizeof KEYS[0]) {
            if (!is_empty(v)) return refuse_key(c->path, key, "a setting lorasc does not know");
        } else if (KEYS[i].rule == KEY_MUST_BE_EMPTY && !is_empty(v)) {
            return refuse_key(c->path, key, KEYS[i].what);
        }
    }
    return LSC_OK;
}

/* 1 when module name `name` is what PEFT's list matching takes for entry s: equal, or ending
 * in "." + s. */
static int entry_matches(const char *name, const char *s) {
    const size_t n = strlen(name), k = strlen(s);
    if (n == k) return strcmp(name, s) == 0;
    return n > k && name[n - k - 1] == '.' && strcmp(name + n - k, s) == 0;
}

/* target_modules -> lc->targets: every entry must name modules, and the modules named must be
 * whole targets (every layer of q_proj, ...), as lorasc adapts a target in every layer. */
static int parse_targets(const HfConfig *c, PeftModelKind kind, int n_layers, LoraConfig *lc) {
    const json_t *tm = hf_config_get(c, NULL, "target_modules");
    if (json_is_string(tm))
        return error_set(
            "%s: target_modules is the regular expression \"%s\", which lorasc does not "
            "match; it takes a list of module names such as [\"q_proj\", \"v_proj\"].",
            c->path, json_string_value(tm));
    if (!json_is_array(tm) || json_array_size(tm) == 0)
        return error_set("%s: target_modules must be a non-empty list of module names.", c->path);
    unsigned char hit[LORA_NUM_TARGETS] = {0};
    size_t i;
    const json_t *v;
    json_array_foreach(tm, i, v) {
        if (!json_is_string(v))
            return error_set("%s: target_modules[%zu] is not a string.", c->path, i);
        int found = 0;
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            for (int l = 0; l < n_layers; l++) {
                char mod[128];
                if (module_name(kind, l, t, mod, sizeof mod) &&
                    entry_matches(mod, json_string_value(v)))
                    hit[t] = found = 1;
            }
        if (!found)
            return error_set("%s: target module \"%s\" names no adaptable module of a %s (%s).",
                             c->path, json_string_value(v), model_word(kind),
                             kind == PEFT_VIT
                                 ? "query, key, value, attention.output.dense, "
                                   "intermediate.dense, output.dense"
                                 : "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
    }
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!hit[t]) continue;
        for (int l = 0; l < n_layers; l++) { /* every layer of the target must be named */
            char mod[128];
            module_name(kind, l, t, mod, sizeof mod);
            int named = 0;
            json_array_foreach(tm, i, v) named |= entry_matches(mod, json_string_value(v));
            if (!named)
                return error_set(
                    "%s: target_modules adapt %s in some layers only (not in layer %d); "
                    "lorasc adapts a module in every layer.",
                    c->path, kind == PEFT_VIT ? vit_hf_lora_module(t) : hf_llama_lora_module(t), l);
        }
        lc->targets |= LORA_BIT(t);
    }
    return LSC_OK;
}

/* The layers an adapter file covers: 1 + the largest layer index in its tensor names. */
static int count_layers(const SafeTensors *st, PeftModelKind kind) {
    const char *prefix =
        kind == PEFT_VIT ? "base_model.model.vit.encoder.layer." : "base_model.model.model.layers.";
    const size_t n = strlen(prefix);
    int layers = 0;
    for (int i = 0; i < st->n_tensors; i++)
        if (strncmp(st->tensors[i].name, prefix, n) == 0) {
            const int l = atoi(st->tensors[i].name + n);
            if (l >= 0 && l < (1 << 20) && l + 1 > layers) layers = l + 1;
        }
    return layers;
}

/* Checks the config against kind; fills info (n_layers given: the model's). */
static int check_config(const HfConfig *c, PeftModelKind kind, int n_layers, PeftInfo *info) {
    const char *type = NULL, *task = NULL, *bias = NULL, *base = NULL;
    memset(info, 0, sizeof *info);
    info->n_layers = n_layers;
    if (check_keys(c) != LSC_OK || hf_config_string(c, NULL, "peft_type", NULL, &type) != LSC_OK ||
        hf_config_string(c, NULL, "task_type", NULL, &task) != LSC_OK ||
        hf_config_string(c, NULL, "bias", "none", &bias) != LSC_OK ||
        hf_config_string(c, NULL, "base_model_name_or_path", NULL, &base) != LSC_OK ||
        hf_config_bool(c, NULL, "use_dora", 0, &info->lora.use_dora) != LSC_OK)
        return LSC_ERR;
    if (!type || strcmp(type, "LORA") != 0)
        return error_set("%s: peft_type must be \"LORA\", not %s%s%s.", c->path, type ? "\"" : "",
                         type ? type : "missing", type ? "\"" : "");
    if (kind == PEFT_LLAMA && task && strcmp(task, "CAUSAL_LM") != 0)
        return error_set(
            "%s: task_type \"%s\" is not a causal language model's (CAUSAL_LM); lorasc "
            "loads Llama adapters for LlamaForCausalLM.",
            c->path, task);
    if (kind == PEFT_VIT && task)
        return error_set("%s: task_type \"%s\": a ViT image-classification adapter has none (PEFT "
                         "wraps ViTForImageClassification without a task type).",
                         c->path, task);
    if (strcmp(bias, "none") != 0) return refuse_key(c->path, "bias", "trained biases");
    const json_t *jr = hf_config_get(c, NULL, "r"), *ja = hf_config_get(c, NULL, "lora_alpha");
    if (!json_is_integer(jr) || json_integer_value(jr) <= 0 || json_integer_value(jr) > 65536 ||
        !json_is_number(ja) || !(json_number_value(ja) > 0))
        return error_set("%s needs a positive integer \"r\" and a positive number \"lora_alpha\".",
                         c->path);
    info->lora.rank = (int)json_integer_value(jr);
    info->lora.alpha = (float)json_number_value(ja);
    /* modules_to_save: a ViT's classifier (its head, trained in full) and nothing else */
    const json_t *mts = hf_config_get(c, NULL, "modules_to_save");
    if (!is_empty(mts)) {
        const int head = kind == PEFT_VIT && json_is_array(mts) && json_array_size(mts) == 1 &&
                         json_is_string(json_array_get(mts, 0)) &&
                         strcmp(json_string_value(json_array_get(mts, 0)), "classifier") == 0;
        if (!head) {
            char *text = json_dumps(mts, JSON_COMPACT);
            const int rc =
                error_set("%s sets \"modules_to_save\" to %s (whole modules trained and saved "
                          "beside the adapter), which lorasc does not load%s: the adapter "
                          "would not give PEFT's numbers, so it is refused.",
                          c->path, text ? text : "a value",
                          kind == PEFT_VIT ? " except a ViT's [\"classifier\"]" : "");
            free(text);
            return rc;
        }
        info->has_head = 1;
    }
    if (base) snprintf(info->base_model, sizeof info->base_model, "%s", base);
    return parse_targets(c, kind, n_layers, &info->lora);
}

int peft_read_info(const char *dir, PeftModelKind kind, PeftInfo *info) {
    HfConfig cfg;
    SafeTensors st = {0};
    char weights[4096];
    memset(info, 0, sizeof *info);
    if (hf_config_open(&cfg, dir, "adapter_config.json", "PEFT adapter_config.json") != LSC_OK)
        return LSC_ERR;
    int rc = hf_shards_path(weights, sizeof weights, dir, "adapter_model.safetensors");
    if (rc == LSC_OK) rc = safetensors_open(&st, weights);
    if (rc == LSC_OK) {
        const int layers = count_layers(&st, kind);
        if (layers == 0)
            rc = error_set(
                "%s holds no adapter tensor of a %s (keys such as %s).", weights, model_word(kind),
                kind == PEFT_VIT
                    ? "base_model.model.vit.encoder.layer.0.attention.attention.query.lora_A.weight"
                    : "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
        else
            rc = check_config(&cfg, kind, layers, info);
    }
    safetensors_close(&st);
    hf_config_close(&cfg);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * writer */

/* One model, Llama or ViT, as the writer and the reader need it. */
typedef struct Target {
    PeftModelKind kind;
    const Llama *llama;
    ViT *vit;
    int n_layers, hd;
} Target;

/* target_modules as written: PEFT's module names; a ViT's fc2 ("output.dense") would also
 * match attention.output.dense by suffix, so it is listed by full name per layer. */
static json_t *targets_json(const Target *m, const LoraAdapters *lora) {
    json_t *a = json_array();
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!lora_enabled(lora, t)) continue;
        if (m->kind == PEFT_VIT && t == LORA_DOWN) {
            for (int l = 0; l < m->n_layers; l++) {
                char mod[128];
                module_name(PEFT_VIT, l, t, mod, sizeof mod);
                json_array_append_new(a, json_string(mod));
            }
        } else {
            /* PEFT's usual names: the last part of the module, "attention.output.dense" and
             * "intermediate.dense" for a ViT's o and fc1 ("dense" alone would match three) */
            const char *mod = m->kind == PEFT_VIT ? vit_hf_lora_module(t) : lora_target_name(t);
            if (m->kind == PEFT_VIT && t <= LORA_V) mod = strrchr(mod, '.') + 1;
            json_array_append_new(a, json_string(mod));
        }
    }
    return a;
}

static int save_any(const char *dir, const Target *m, const LoraAdapters *lora,
                    const char *base_model) {
    const int r = lora->config.rank;
    const int per_slot = lora->config.use_dora ? 3 : 2;
    const int max_entries = lora->n_layers * LORA_NUM_TARGETS * per_slot + 2;
    StWriteEntry *e = calloc((size_t)max_entries, sizeof *e);
    char (*names)[160] = calloc((size_t)max_entries, sizeof *names);
    float **bufs = calloc((size_t)max_entries, sizeof *bufs);
    int n = 0, rc = LSC_OK;
    if (!e || !names || !bufs) {
        rc = error_set("Out of memory saving adapters to %s.", dir);
        goto done;
    }
    if (m->kind == PEFT_VIT && (m->vit->config.pre_norm || !m->vit->config.patch_bias)) {
        rc = error_set("Cannot save a PEFT adapter of a CLIP-layout ViT to %s: transformers has no "
                       "image classifier with lorasc's CLIP head, so no PEFT model would match it.",
                       dir);
        goto done;
    }
    for (int l = 0; l < lora->n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(lora, t)) continue;
            const int in = lora->in_dim[t], out = lora->out_dim[t],
                      heads = permuted_heads(m->llama, t);
            const Real *src[3] = {lora_a(lora, l, t), lora_b(lora, l, t),
                                  lora->config.use_dora ? lora_magnitude(lora, l, t) : NULL};
            const int64_t rows[3] = {r, out, out}, cols[3] = {in, r, 0};
            for (int k = 0; k < per_slot; k++, n++) {
                const size_t count = (size_t)rows[k] * (size_t)(cols[k] ? cols[k] : 1);
                /* rows of B and m live in q/k's output space */
                bufs[n] = hf_llama_host_copy(lora->be, src[k], count, k > 0 ? heads : 0, m->hd,
                                             cols[k] ? (int)cols[k] : 1);
                if (!bufs[n]) {
                    rc = error_set("Cannot save adapters to %s: %s", dir, error_last());
                    goto done;
                }
                tensor_name(m->kind, l, t, k, names[n], sizeof names[n]);
                e[n] = (StWriteEntry){.name = names[n], .ndim = cols[k] ? 2 : 1,
                                      .shape = {rows[k], cols[k]}, .data = bufs[n]};
            }
        }
    if (m->kind == PEFT_VIT) { /* the head, trained in full: modules_to_save */
        const ViT *v = m->vit;
        const int K = v->config.n_classes, D = v->config.dim;
        float *head = hf_llama_host_copy(v->be, v->head_params, v->head_size, 0, 1, 1);
        if (!(bufs[n] = head)) {
            rc = error_set("Cannot save adapters to %s: %s", dir, error_last());
            goto done;
        }
        e[n] = (StWriteEntry){
            .name = "base_model.model.classifier.weight", .ndim = 2, .shape = {K, D}, .data = head};
        e[n + 1] = (StWriteEntry){.name = "base_model.model.classifier.bias",
                                  .ndim = 1,
                                  .shape = {K},
                                  .data = head + (size_t)K * D};
        n += 2;
    }
    json_t *cfg = json_pack(
        "{s:s, s:s?, s:i, s:f, s:o, s:f, s:s, s:b, s:b, s:b, s:b, s:b, s:s?, s:o, s:n, s:{}, s:{}, "
        "s:n, s:n, s:n}",
        "peft_type", "LORA", "task_type", m->kind == PEFT_VIT ? NULL : "CAUSAL_LM", "r", r,
        "lora_alpha", (double)lora->config.alpha, "target_modules", targets_json(m, lora),
        "lora_dropout", 0.0, "bias", "none", "use_dora", lora->config.use_dora, "use_rslora", 0,
        "fan_in_fan_out", 0, "inference_mode", 1, "init_lora_weights", 1, "base_model_name_or_path",
        base_model, "modules_to_save",
        m->kind == PEFT_VIT ? json_pack("[s]", "classifier") : json_null(), "layers_to_transform",
        "rank_pattern", "alpha_pattern", "revision", "layer_replication", "layers_pattern");
    if ((rc = hf_config_write(dir, "adapter_config.json", cfg)) != LSC_OK) goto done;
    char path[4096];
    static const char *const meta[] = {"format", "pt", NULL};
    if ((rc = hf_shards_path(path, sizeof path, dir, "adapter_model.safetensors")) == LSC_OK)
        rc = safetensors_write(path, e, n, ST_F32, meta);
done:
    for (int i = 0; bufs && i < max_entries; i++) free(bufs[i]);
    free(bufs);
    free(e);
    free(names);
    return rc;
}

int peft_save(const char *dir, const Llama *model, const LoraAdapters *lora,
              const char *base_model) {
    const Target m = {PEFT_LLAMA, model, NULL, model->config.n_layers,
                      model->config.dim / model->config.n_heads};
    return save_any(dir, &m, lora, base_model);
}

int peft_save_vit(const char *dir, const ViT *model, const LoraAdapters *lora,
                  const char *base_model) {
    const Target m = {PEFT_VIT, NULL, (ViT *)model, model->config.n_layers, 1};
    return save_any(dir, &m, lora, base_model);
}

/* ------------------------------------------------------------------------------------------
 * reader */

/* Reads tensor `name` of the given shape into host, marking it used. */
static int read_used(const SafeTensors *st, unsigned char *used, const char *name, int ndim,
                     const int64_t *shape, Real *host) {
    const StTensor *t = safetensors_find(st, name);
    if (t) used[t - st->tensors] = 1;
    return safetensors_read_shaped(st, name, ndim, shape, host);
}

static int load_any(const char *dir, const Target *m, LoraAdapters *lora, Backend *be) {
    memset(lora, 0, sizeof *lora);
    HfConfig cfg;
    if (hf_config_open(&cfg, dir, "adapter_config.json", "PEFT adapter_config.json") != LSC_OK)
        return LSC_ERR;
    char weights[4096];
    int rc = LSC_OK;
    SafeTensors st = {0};
    Real *host = NULL;
    unsigned char *used = NULL;
    PeftInfo info;
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    if (m->kind == PEFT_VIT)
        vit_lora_shapes(&m->vit->config, in, out);
    else
        llama_lora_shapes(&m->llama->config, in, out);
    if ((rc = check_config(&cfg, m->kind, m->n_layers, &info)) != LSC_OK ||
        (rc = hf_shards_path(weights, sizeof weights, dir, "adapter_model.safetensors")) !=
            LSC_OK ||
        (rc = safetensors_open(&st, weights)) != LSC_OK)
        goto done;
    const int file_layers = count_layers(&st, m->kind);
    if (file_layers != m->n_layers) {
        rc = error_set("%s holds adapters for %d layers; the %s it is loaded into has %d.", weights,
                       file_layers, model_word(m->kind), m->n_layers);
        goto done;
    }
    if ((rc = lora_create(lora, be, &info.lora, m->n_layers, in, out, 0)) != LSC_OK) goto done;
    const LoraConfig *lc = &info.lora;
    size_t biggest = m->kind == PEFT_VIT ? m->vit->head_size : 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        const size_t a = (size_t)lc->rank * (size_t)(in[t] > out[t] ? in[t] : out[t]);
        if (a > biggest) biggest = a;
    }
    if (!(host = malloc(2 * biggest * sizeof *host)) ||
        !(used = calloc((size_t)st.n_tensors + 1, 1))) {
        rc = error_set("Out of memory loading %s.", weights);
        goto done;
    }
    for (int l = 0; l < lora->n_layers && rc == LSC_OK; l++)
        for (int t = 0; t < LORA_NUM_TARGETS && rc == LSC_OK; t++) {
            if (!lora_enabled(lora, t)) continue;
            const int heads = permuted_heads(m->llama, t);
            Real *dst[3] = {lora_a(lora, l, t), lora_b(lora, l, t),
                            lc->use_dora ? lora_magnitude(lora, l, t) : NULL};
            const int64_t rows[3] = {lc->rank, out[t], out[t]}, cols[3] = {in[t], lc->rank, 0};
            for (int k = 0; k < (lc->use_dora ? 3 : 2) && rc == LSC_OK; k++) {
                char name[160];
                tensor_name(m->kind, l, t, k, name, sizeof name);
                const int64_t shape[2] = {rows[k], cols[k]};
                const size_t count = (size_t)rows[k] * (size_t)(cols[k] ? cols[k] : 1);
                if ((rc = read_used(&st, used, name, cols[k] ? 2 : 1, shape, host)) != LSC_OK)
                    break;
                const Real *rows_out = host;
                if (k > 0 && heads) { /* HF -> interleaved rows */
                    hf_llama_permute_rows(host + biggest, host, heads, m->hd,
                                          cols[k] ? (int)cols[k] : 1, 0);
                    rows_out = host + biggest;
                }
                be->to_device(be, dst[k], rows_out, count * sizeof(Real));
            }
        }
    if (rc == LSC_OK && info.has_head) { /* a ViT's classifier (modules_to_save) */
        ViT *v = m->vit;
        const int64_t K = v->config.n_classes, D = v->config.dim;
        const StTensor *w = safetensors_find(&st, "base_model.model.classifier.weight");
        if (w && w->ndim == 2 && w->shape[0] != K)
            rc = error_set(
                "%s holds a classifier for %lld classes; the ViT it is loaded into has %lld "
                "(load the base with that many classes).",
                weights, (long long)w->shape[0], (long long)K);
        const int64_t sw[2] = {K, D}, sb[1] = {K};
        if (rc == LSC_OK &&
            (rc = read_used(&st, used, "base_model.model.classifier.weight", 2, sw, host)) ==
                LSC_OK &&
            (rc = read_used(&st, used, "base_model.model.classifier.bias", 1, sb, host + K * D)) ==
                LSC_OK)
            be->to_device(be, v->head_params, host, v->head_size * sizeof(Real));
    }
    for (int i = 0; rc == LSC_OK && i < st.n_tensors; i++)
        if (!used[i])
            rc =
                error_set("%s holds tensor \"%s\", which a %s adapter of this config does not have "
                          "(lorasc would ignore it and give other numbers than PEFT: refused).",
                          weights, st.tensors[i].name, model_word(m->kind));
    if (rc == LSC_OK) rc = device_sync(be);
    if (rc == LSC_OK && lc->use_dora) lora->magnitudes_set = 1;
done:
    if (rc != LSC_OK && lora->params) lora_free(lora);
    free(host);
    free(used);
    safetensors_close(&st);
    hf_config_close(&cfg);
    return rc;
}

int peft_load(const char *dir, const Llama *model, LoraAdapters *lora, Backend *be) {
    const Target m = {PEFT_LLAMA, model, NULL, model->config.n_layers,
                      model->config.dim / model->config.n_heads};
    return load_any(dir, &m, lora, be);
}

/* "r 4, lora_alpha 8, DoRA, q_proj v_proj" */
static void describe(const LoraConfig *c, char *out, size_t n) {
    int k = snprintf(out, n, "r %d, lora_alpha %g, %s,", c->rank, (double)c->alpha,
                     c->use_dora ? "DoRA" : "LoRA");
    for (int t = 0; t < LORA_NUM_TARGETS && k > 0 && (size_t)k < n; t++)
        if (c->targets & LORA_BIT(t))
            k += snprintf(out + k, n - (size_t)k, " %s", lora_target_name(t));
}

int peft_load_into(const char *dir, const Llama *model, LoraAdapters *lora) {
    LoraAdapters file;
    if (peft_load(dir, model, &file, lora->be) != LSC_OK) return LSC_ERR;
    const LoraConfig *a = &file.config, *b = &lora->config;
    int rc = LSC_OK;
    if (a->rank != b->rank || a->alpha != b->alpha || a->targets != b->targets ||
        a->use_dora != b->use_dora) {
        char fa[256], fb[256];
        describe(a, fa, sizeof fa);
        describe(b, fb, sizeof fb);
        rc = error_set("The adapter in %s (%s) differs from the one the run trains (%s): give the "
                       "method the adapter's rank, lora_alpha, targets and dora.",
                       dir, fa, fb);
    } else {
        lora->be->copy(lora->be, lora->params, file.params, lora->num_params * sizeof(Real));
        lora->magnitudes_set = file.magnitudes_set;
    }
    lora_free(&file);
    return rc;
}

int peft_load_vit(const char *dir, ViT *model, LoraAdapters *lora, Backend *be) {
    if (model->config.pre_norm || !model->config.patch_bias)
        return error_set("Cannot load the PEFT adapter in %s into a CLIP-layout ViT: lorasc reads "
                         "ViT adapters for ViTForImageClassification only.",
                         dir);
    const Target m = {PEFT_VIT, NULL, model, model->config.n_layers, 1};
    return load_any(dir, &m, lora, be);
}

/* ------------------------------------------------------------------------------------------
 * merges and runs */

int peft_merge(const char *dir, Llama *model) {
    LoraAdapters lora;
    if (peft_load(dir, model, &lora, model->be) != LSC_OK) return LSC_ERR;
    LoraAdapters *was = model->lora;
    if (llama_ensure_masters(model, lora.config.targets) != LSC_OK) { /* a bf16 base */
        lora_free(&lora);
        return LSC_ERR;
    }
    llama_attach_lora(model, &lora);
    llama_merge_lora(model, 1.0f);
    llama_attach_lora(model, was);
    lora_free(&lora);
    return LSC_OK;
}

int peft_merge_vit(const char *dir, ViT *model) {
    LoraAdapters lora;
    if (peft_load_vit(dir, model, &lora, model->be) != LSC_OK) return LSC_ERR;
    LoraAdapters *was = model->lora;
    int rc = vit_ensure_masters(model, lora.config.targets); /* a bf16 base */
    if (rc == LSC_OK) rc = vit_attach_lora(model, &lora);
    if (rc == LSC_OK) {
        vit_merge_lora(model, 1.0f);
        rc = vit_attach_lora(model, was);
    }
    lora_free(&lora);
    return rc;
}

int peft_save_run(const char *dir, const Finetune *ft, const Llama *llama, const ViT *vit,
                  const char *base_model) {
    LoraAdapters lora;
    if (finetune_merged_adapter(ft, &lora) != LSC_OK) return LSC_ERR;
    const int rc = llama ? peft_save(dir, llama, &lora, base_model)
                         : peft_save_vit(dir, vit, &lora, base_model);
    lora_free(&lora);
    return rc;
}
