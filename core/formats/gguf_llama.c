/* Llama models from GGUF files (see gguf_llama.h): llama.* metadata to LlamaConfig, GGUF tensor
 * names to the engine's tensors, shapes checked, weights dequantised into the parameters. */
#include "core/formats/gguf_llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/model/device.h"

/* GGUF names of the per-layer tensors ("blk.N.<name>.weight"), engine order; NULL: global. */
static const char *layer_name(int tensor) {
    switch (tensor) {
    case LLAMA_RMS_ATT: return "attn_norm";
    case LLAMA_WQ: return "attn_q";
    case LLAMA_WK: return "attn_k";
    case LLAMA_WV: return "attn_v";
    case LLAMA_WO: return "attn_output";
    case LLAMA_RMS_FFN: return "ffn_norm";
    case LLAMA_W1: return "ffn_gate";
    case LLAMA_W2: return "ffn_down";
    case LLAMA_W3: return "ffn_up";
    default: return NULL;
    }
}

static const char *global_name(int tensor) {
    switch (tensor) {
    case LLAMA_TOKEN_EMBEDDING: return "token_embd.weight";
    case LLAMA_RMS_FINAL: return "output_norm.weight";
    case LLAMA_WCLS: return "output.weight";
    default: return NULL;
    }
}

/* ------------------------------------------------------------------------------------------
 * config */

/* A positive int metadata value; absent: def (required: an error). */
static int meta_int(const Gguf *g, const char *key, int required, int def, int *out) {
    int64_t v;
    if (!gguf_find(g, key)) {
        if (required) return error_set("%s lacks \"%s\", which a llama GGUF file must have.", g->name, key);
        *out = def;
        return LSC_OK;
    }
    if (gguf_get_int(g, key, &v) != LSC_OK) return LSC_ERR;
    if (v <= 0 || v > (1 << 30))
        return error_set("%s: \"%s\" is %lld; it must be a positive integer.", g->name, key, (long long)v);
    *out = (int)v;
    return LSC_OK;
}

static int meta_float(const Gguf *g, const char *key, double def, float *out) {
    double v = def;
    if (gguf_find(g, key) && gguf_get_float(g, key, &v) != LSC_OK) return LSC_ERR;
    if (!(v > 0) || !isfinite(v))
        return error_set("%s: \"%s\" is %g; it must be a positive number.", g->name, key, v);
    *out = (float)v;
    return LSC_OK;
}

int gguf_llama_config(const Gguf *g, LlamaConfig *c) {
    memset(c, 0, sizeof *c);
    GgufString arch;
    if (gguf_get_string(g, "general.architecture", &arch) != LSC_OK) return LSC_ERR;
    if (!gguf_string_eq(arch, "llama"))
        return error_set("%s holds a \"%.*s\" model; lorasc loads general.architecture \"llama\".",
                         g->name, (int)(arch.len < 64 ? arch.len : 64), arch.data);
    if (meta_int(g, "llama.embedding_length", 1, 0, &c->dim) != LSC_OK ||
        meta_int(g, "llama.feed_forward_length", 1, 0, &c->hidden_dim) != LSC_OK ||
        meta_int(g, "llama.block_count", 1, 0, &c->n_layers) != LSC_OK ||
        meta_int(g, "llama.attention.head_count", 1, 0, &c->n_heads) != LSC_OK ||
        meta_int(g, "llama.attention.head_count_kv", 0, c->n_heads, &c->n_kv_heads) != LSC_OK ||
        meta_int(g, "llama.context_length", 0, 2048, &c->seq_len) != LSC_OK ||
        meta_float(g, "llama.rope.freq_base", 10000.0, &c->rope_theta) != LSC_OK ||
        meta_float(g, "llama.attention.layer_norm_rms_epsilon", 1e-5, &c->norm_eps) != LSC_OK)
        return LSC_ERR;
    if (c->dim % c->n_heads != 0)
        return error_set("%s: embedding_length %d is not a multiple of head_count %d.", g->name,
                         c->dim, c->n_heads);
    const int hd = c->dim / c->n_heads;
    static const char *const per_head[] = {"llama.rope.dimension_count", "llama.attention.key_length",
                                           "llama.attention.value_length"};
    for (int i = 0; i < 3; i++) {
        int v = 0;
        if (meta_int(g, per_head[i], 0, hd, &v) != LSC_OK) return LSC_ERR;
        if (v != hd)
            return error_set("%s: \"%s\" is %d, not the head size %d (embedding_length / head_count); "
                             "lorasc rotates and attends over whole heads.", g->name, per_head[i], v, hd);
    }
    GgufString scaling;
    if (gguf_find(g, "llama.rope.scaling.type") &&
        (gguf_get_string(g, "llama.rope.scaling.type", &scaling) != LSC_OK ||
         !gguf_string_eq(scaling, "none")))
        return error_set("%s sets llama.rope.scaling.type, which lorasc does not implement (use a "
                         "model without RoPE scaling).", g->name);
    int experts = 0;
    if (meta_int(g, "llama.expert_count", 0, 0, &experts) != LSC_OK) return LSC_ERR;
    if (experts > 0)
        return error_set("%s is a mixture-of-experts llama (llama.expert_count %d); lorasc loads "
                         "dense models only.", g->name, experts);

    const GgufTensor *emb = gguf_tensor_find(g, "token_embd.weight");
    if (!emb) return error_set("%s has no tensor \"token_embd.weight\".", g->name);
    if (emb->n_dims != 2 || emb->dims[0] != c->dim || emb->dims[1] <= 0 || emb->dims[1] > (1 << 30))
        return error_set("%s: token_embd.weight has dims [%lld, %lld]; expected [%d, vocab].",
                         g->name, (long long)emb->dims[0], (long long)emb->dims[1], c->dim);
    c->vocab_size = (int)emb->dims[1];
    int v = 0;
    if (meta_int(g, "llama.vocab_size", 0, c->vocab_size, &v) != LSC_OK) return LSC_ERR;
    if (v != c->vocab_size)
        return error_set("%s: llama.vocab_size is %d but token_embd.weight has %d rows.", g->name,
                         v, c->vocab_size);
    c->tied_embeddings = gguf_tensor_find(g, "output.weight") == NULL;
    c->rope_style = ROPE_INTERLEAVED;
    if (llama_config_validate(c) != LSC_OK)
        return error_set("%s is not a valid Llama config: %s", g->name, error_last());
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * loader */

/* Which engine tensor (and layer) a GGUF tensor name is; -1 if none. */
static int classify(const GgufTensor *t, const LlamaConfig *c, int *layer) {
    char name[256];
    if (t->name.len >= sizeof name) return -1;
    memcpy(name, t->name.data, t->name.len);
    name[t->name.len] = 0;
    *layer = -1;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++)
        if (global_name(i) && strcmp(name, global_name(i)) == 0) return i;
    int l, n = 0;
    char rest[256];
    if (sscanf(name, "blk.%d.%255s%n", &l, rest, &n) != 2 || name[n] != 0 || l < 0 || l >= c->n_layers)
        return -1;
    /* reject "blk.01." and "blk.+1.": the layer must be written as llama.cpp writes it */
    char canon[32];
    snprintf(canon, sizeof canon, "blk.%d.", l);
    if (strncmp(name, canon, strlen(canon)) != 0) return -1;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        if (!layer_name(i)) continue;
        char want[64];
        snprintf(want, sizeof want, "%s.weight", layer_name(i));
        if (strcmp(rest, want) == 0) {
            *layer = l;
            return i;
        }
    }
    return -1;
}

int gguf_llama_load_gguf(const Gguf *g, Llama *model, Backend *be) {
    memset(model, 0, sizeof *model);
    LlamaConfig c;
    if (gguf_llama_config(g, &c) != LSC_OK) return LSC_ERR;
    /* a block_count the file cannot hold (a layer is 9 tensors) is refused before the table
     * below is sized by it; a smaller shortfall is named tensor by tensor below */
    if ((uint64_t)c.n_layers > g->n_tensors)
        return error_set("%s: llama.block_count is %d but the file holds only %llu tensors (a "
                         "layer has 9): the metadata is corrupt.", g->name, c.n_layers,
                         (unsigned long long)g->n_tensors);
    /* every tensor of the file must be one the engine has, each exactly once (names are
     * unique by gguf_open) and of the right shape */
    char *seen = calloc((size_t)LLAMA_NUM_PARAM_TENSORS * (size_t)c.n_layers, 1);
    if (!seen) return error_set("Out of memory loading %s.", g->name);
    int rc = LSC_OK;
    for (uint64_t i = 0; i < g->n_tensors && rc == LSC_OK; i++) {
        const GgufTensor *t = &g->tensors[i];
        const int nl = (int)(t->name.len < 200 ? t->name.len : 200);
        int layer;
        const int k = classify(t, &c, &layer);
        int64_t rows, cols;
        if (k < 0) {
            rc = error_set("%s holds tensor \"%.*s\", which a lorasc Llama does not have (biases, "
                           "RoPE frequency factors and extra layers are not implemented).",
                           g->name, nl, t->name.data);
            break;
        }
        llama_tensor_shape(&c, k, &rows, &cols);
        const int want_dims = cols ? 2 : 1;
        const int64_t d0 = cols ? cols : rows, d1 = cols ? rows : 1;
        if ((int)t->n_dims != want_dims || t->dims[0] != d0 || t->dims[1] != d1)
            rc = error_set("%s: tensor \"%.*s\" has dims [%lld, %lld] (%u-d); the llama.* metadata "
                           "implies [%lld%s%lld].", g->name, nl, t->name.data, (long long)t->dims[0],
                           (long long)t->dims[1], t->n_dims, (long long)d0, cols ? ", " : "",
                           cols ? (long long)d1 : 0LL);
        else if (!ggml_can_dequantize(t->type))
            rc = error_set("%s: tensor \"%.*s\" has type %s, which lorasc does not dequantise (it "
                           "reads F32, F16, BF16, Q8_0, Q4_0 and Q4_1).", g->name, nl, t->name.data,
                           ggml_type_name(t->type));
        if (layer >= 0) seen[(size_t)k * (size_t)c.n_layers + (size_t)layer] = 1;
        else seen[(size_t)k * (size_t)c.n_layers] = 1;
    }
    for (int k = 0; k < LLAMA_NUM_PARAM_TENSORS && rc == LSC_OK; k++) {
        if (k == LLAMA_WCLS) continue;
        const int layers = global_name(k) ? 1 : c.n_layers;
        for (int l = 0; l < layers && rc == LSC_OK; l++)
            if (!seen[(size_t)k * (size_t)c.n_layers + (size_t)l]) {
                if (global_name(k))
                    rc = error_set("%s has no tensor \"%s\".", g->name, global_name(k));
                else
                    rc = error_set("%s has no tensor \"blk.%d.%s.weight\" (llama.block_count is %d).",
                                   g->name, l, layer_name(k), c.n_layers);
            }
    }
    free(seen);
    if (rc != LSC_OK) return rc;

    if ((rc = llama_create(model, be, &c)) != LSC_OK) return rc;
    size_t biggest = 0;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++)
        if (model->param_sizes[i] > biggest) biggest = model->param_sizes[i];
    float *f = malloc(biggest * sizeof *f);
    Real *host = sizeof(Real) == sizeof(float) ? (Real *)(void *)f : malloc(biggest * sizeof *host);
    if (!f || !host) {
        rc = error_set("Out of memory loading %s.", g->name);
        goto done;
    }
    for (int k = 0; k < LLAMA_NUM_PARAM_TENSORS && rc == LSC_OK; k++) {
        if (!model->param_sizes[k]) continue;
        const int layers = global_name(k) ? 1 : c.n_layers;
        const size_t per = model->param_sizes[k] / (size_t)layers;
        for (int l = 0; l < layers && rc == LSC_OK; l++) {
            char name[128];
            if (global_name(k)) snprintf(name, sizeof name, "%s", global_name(k));
            else snprintf(name, sizeof name, "blk.%d.%s.weight", l, layer_name(k));
            const GgufTensor *t = gguf_tensor_find(g, name);
            LSC_ASSERT(t && t->n_elements == per);
            rc = gguf_tensor_to_float(g, t, f + (size_t)l * per, per);
        }
        if (rc != LSC_OK) break;
        if ((void *)host != (void *)f)
            for (size_t i = 0; i < model->param_sizes[k]; i++) host[i] = (Real)f[i];
        be->to_device(be, model->w.tensors[k], host, model->param_sizes[k] * sizeof(Real));
    }
    llama_weights_changed(model);
    if (rc == LSC_OK) rc = device_sync(be);
done:
    if ((void *)host != (void *)f) free(host);
    free(f);
    if (rc != LSC_OK) llama_free(model);
    return rc;
}

int gguf_llama_load(const char *path, Llama *model, Backend *be) {
    memset(model, 0, sizeof *model);
    Gguf g;
    if (gguf_open(&g, path) != LSC_OK) return LSC_ERR;
    const int rc = gguf_llama_load_gguf(&g, model, be);
    gguf_close(&g);
    return rc;
}
