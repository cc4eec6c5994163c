/* PEFT adapters (see peft.h): adapter_config.json through core/formats/hf_config, tensors
 * through core/formats/safetensors, the PEFT key names, and q/k row permutation for
 * interleaved-RoPE models. */
#include "core/formats/peft.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/formats/hf_config.h"
#include "core/formats/hf_llama.h"
#include "core/formats/hf_shards.h"
#include "core/formats/safetensors.h"
#include "core/model/device.h"

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
                /* rows of B and m live in q/k's output space */
                bufs[n] = hf_llama_host_copy(lora->be, src[k], count, k > 0 ? heads : 0, HD,
                                             cols[k] ? (int)cols[k] : 1);
                if (!bufs[n]) {
                    rc = error_set("Cannot save adapters to %s: %s", dir, error_last());
                    goto done;
                }
                snprintf(names[n], sizeof names[n], "base_model.model.model.layers.%d.%s.%s", l,
                         peft_module(t), kind[k]);
                e[n] = (StWriteEntry){.name = names[n], .ndim = cols[k] ? 2 : 1,
                                      .shape = {rows[k], cols[k]}, .data = bufs[n]};
            }
        }
    json_t *cfg = json_pack(
        "{s:s, s:s, s:i, s:f, s:o, s:f, s:s, s:b, s:b, s:b, s:b, s:b, s:s?, s:n, s:n, s:{}, s:{}, s:n}",
        "peft_type", "LORA", "task_type", "CAUSAL_LM", "r", r, "lora_alpha",
        (double)lora->config.alpha, "target_modules", targets, "lora_dropout", 0.0, "bias", "none",
        "use_dora", lora->config.use_dora, "use_rslora", 0, "fan_in_fan_out", 0, "inference_mode", 1,
        "init_lora_weights", 1, "base_model_name_or_path", base_model, "modules_to_save",
        "layers_to_transform", "rank_pattern", "alpha_pattern", "revision");
    targets = NULL;
    if ((rc = hf_config_write(dir, "adapter_config.json", cfg)) != LSC_OK) goto done;
    char path[4096];
    static const char *const meta[] = {"format", "pt", NULL};
    if ((rc = hf_shards_path(path, sizeof path, dir, "adapter_model.safetensors")) == LSC_OK)
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
    HfConfig cfg;
    if (hf_config_open(&cfg, dir, "adapter_config.json", "PEFT adapter_config.json") != LSC_OK)
        return LSC_ERR;
    const char *path = cfg.path; /* until the weights are opened */
    char weights[4096];
    int rc = LSC_OK, rslora = 0, fan_in_fan_out = 0;
    SafeTensors st = {0};
    Real *host = NULL;
    const char *type = NULL;
    const json_t *tm = hf_config_get(&cfg, NULL, "target_modules");
    const json_t *jr = hf_config_get(&cfg, NULL, "r"), *ja = hf_config_get(&cfg, NULL, "lora_alpha");
    LoraConfig lc = {0};
    if ((rc = hf_config_string(&cfg, NULL, "peft_type", NULL, &type)) != LSC_OK ||
        (rc = hf_config_bool(&cfg, NULL, "use_rslora", 0, &rslora)) != LSC_OK ||
        (rc = hf_config_bool(&cfg, NULL, "fan_in_fan_out", 0, &fan_in_fan_out)) != LSC_OK ||
        (rc = hf_config_bool(&cfg, NULL, "use_dora", 0, &lc.use_dora)) != LSC_OK)
        goto done;
    if (!type || strcmp(type, "LORA") != 0) {
        rc = error_set("%s: peft_type must be \"LORA\".", path);
        goto done;
    }
    if (!json_is_integer(jr) || json_integer_value(jr) <= 0 || json_integer_value(jr) > 65536 ||
        !json_is_number(ja)) {
        rc = error_set("%s needs a positive integer \"r\" and a number \"lora_alpha\".", path);
        goto done;
    }
    if (rslora || fan_in_fan_out || json_object_size(hf_config_get(&cfg, NULL, "rank_pattern")) ||
        json_object_size(hf_config_get(&cfg, NULL, "alpha_pattern")) ||
        hf_config_get(&cfg, NULL, "layers_to_transform")) {
        rc = error_set("%s uses use_rslora, fan_in_fan_out, rank/alpha patterns or "
                       "layers_to_transform, which lorasc does not support.", path);
        goto done;
    }
    lc.rank = (int)json_integer_value(jr);
    lc.alpha = (float)json_number_value(ja);
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
    if ((rc = hf_shards_path(weights, sizeof weights, dir, "adapter_model.safetensors")) != LSC_OK ||
        (rc = safetensors_open(&st, weights)) != LSC_OK ||
        (rc = lora_create(lora, be, &lc, model->config.n_layers, in, out, 0)) != LSC_OK)
        goto done;
    const int HD = model->config.dim / model->config.n_heads;
    size_t biggest = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        const size_t a = (size_t)lc.rank * (size_t)(in[t] > out[t] ? in[t] : out[t]);
        if (a > biggest) biggest = a;
    }
    path = weights;
    if (!(host = malloc(2 * biggest * sizeof *host))) { /* a tensor, then its permuted rows */
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
                const Real *rows_out = host;
                if (k > 0 && heads) { /* HF -> interleaved rows */
                    hf_llama_permute_rows(host + biggest, host, heads, HD, cols[k] ? (int)cols[k] : 1, 0);
                    rows_out = host + biggest;
                }
                be->to_device(be, dst[k], rows_out, count * sizeof(Real));
            }
        }
    if (rc == LSC_OK) rc = device_sync(be);
    if (rc == LSC_OK && lc.use_dora) lora->magnitudes_set = 1;
done:
    if (rc != LSC_OK && lora->params) lora_free(lora);
    free(host);
    safetensors_close(&st);
    hf_config_close(&cfg);
    return rc;
}
