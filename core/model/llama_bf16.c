/* A Llama model's bf16 frozen base (llama.h, "precision"): converting the matrices to bf16
 * and back, the fp32 masters of adapted targets and the refresh of their bf16 copies, and
 * fp32 views for the paths that read weights (checkpoints, exports, the finiteness check).
 * Not here: the matmuls themselves (llama_weight_matmul in llama.c picks the precision). */
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/model/device.h"
#include "core/model/llama.h"
#include "core/model/llama_internal.h"

/* The tensors stored in bf16: the 2-D matrices of the layers and the classifier. */
static int is_matrix(int tensor) {
    return tensor == LLAMA_WQ || tensor == LLAMA_WK || tensor == LLAMA_WV || tensor == LLAMA_WO ||
           tensor == LLAMA_W1 || tensor == LLAMA_W2 || tensor == LLAMA_W3 || tensor == LLAMA_WCLS;
}

/* Elements of tensor i's bf16 copy (the classifier's even when tied to the embedding). */
static size_t bf16_size(const Llama *m, int tensor) {
    if (tensor == LLAMA_WCLS) return m->param_sizes[LLAMA_TOKEN_EMBEDDING];
    return m->param_sizes[tensor];
}

void llama_free_bf16(Llama *m) {
    if (m->precision != PRECISION_BF16) return;
    llama_packed_free(m); /* copies of the bf16 matrices */
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) /* masters: their own blocks */
        if (is_matrix(i) && i != LLAMA_WCLS && m->w.tensors[i]) m->be->free(m->be, m->w.tensors[i]);
    if (m->base16) m->be->free(m->be, m->base16);
    m->base16 = NULL;
    memset(m->w16, 0, sizeof m->w16);
}

/* fp32 -> bf16: every matrix rounded into one bf16 block, then the fp32 block shrunk to the
 * embedding and the norm weights. */
static int to_bf16(Llama *m) {
    Backend *be = m->be;
    size_t total = 0;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++)
        if (is_matrix(i)) total += bf16_size(m, i);
    uint16_t *block = be->alloc(be, total * sizeof(uint16_t));
    size_t keep = 0;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++)
        if (!is_matrix(i)) keep += m->param_sizes[i];
    Real *params = be->alloc(be, keep * sizeof(Real));
    if (!block || !params) {
        if (block) be->free(be, block);
        if (params) be->free(be, params);
        return device_fail(be, "Out of memory converting a Llama model of %zu parameters to "
                           "bf16.", m->num_params);
    }
    uint16_t *p16 = block;
    Real *p = params;
    Real *tensors[LLAMA_NUM_PARAM_TENSORS];
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        tensors[i] = NULL;
        if (is_matrix(i)) {
            be->to_bf16(be, p16, m->w.tensors[i], bf16_size(m, i));
            m->w16[i] = p16;
            p16 += bf16_size(m, i);
        } else {
            be->copy(be, p, m->w.tensors[i], m->param_sizes[i] * sizeof(Real));
            tensors[i] = p;
            p += m->param_sizes[i];
        }
    }
    if (device_sync(be) != LSC_OK) {
        be->free(be, block);
        be->free(be, params);
        memset(m->w16, 0, sizeof m->w16);
        return LSC_ERR;
    }
    be->free(be, m->params);
    m->params = params;
    m->params_len = keep;
    m->base16 = block;
    memcpy(m->w.tensors, tensors, sizeof tensors);
    if (m->config.tied_embeddings) m->w.tensors[LLAMA_WCLS] = m->w.tensors[LLAMA_TOKEN_EMBEDDING];
    m->precision = PRECISION_BF16;
    m->B = m->T = 0; /* the activations are re-carved: dlogits16 exists in bf16 only */
    m->stale = 0;
    llama_packed_free(m); /* the fp32 matrices' copies; the bf16 ones are made on first use */
    return LSC_OK;
}

/* bf16 -> fp32: one full fp32 block again, the matrices widened (masters copied). */
static int to_fp32(Llama *m) {
    Backend *be = m->be;
    llama_refresh_copies(m); /* the masters are copied as they are */
    Real *params = be->alloc(be, m->num_params * sizeof(Real));
    if (!params)
        return device_fail(be, "Out of memory converting a Llama model of %zu parameters to "
                           "fp32.", m->num_params);
    LlamaWeights w;
    Real *p = params;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        w.tensors[i] = m->param_sizes[i] ? p : NULL;
        if (m->param_sizes[i] && m->w.tensors[i])
            be->copy(be, p, m->w.tensors[i], m->param_sizes[i] * sizeof(Real));
        else if (m->param_sizes[i])
            be->from_bf16(be, p, m->w16[i], m->param_sizes[i]);
        p += m->param_sizes[i];
    }
    if (!w.tensors[LLAMA_WCLS]) w.tensors[LLAMA_WCLS] = w.tensors[LLAMA_TOKEN_EMBEDDING];
    if (device_sync(be) != LSC_OK) {
        be->free(be, params);
        return LSC_ERR;
    }
    llama_free_bf16(m);
    be->free(be, m->params);
    m->params = params;
    m->params_len = m->num_params;
    m->w = w;
    m->precision = PRECISION_FP32;
    m->B = m->T = 0; /* the activations are re-carved: dlogits16 exists in bf16 only */
    m->stale = 0;
    return LSC_OK;
}

int llama_set_precision(Llama *m, ModelPrecision p) {
    if (p == m->precision) return LSC_OK;
    if (p != PRECISION_FP32 && p != PRECISION_BF16)
        return error_set("Unknown precision %d for a Llama model (fp32 or bf16).", (int)p);
    if (m->lora)
        return error_set("Set a Llama model's precision before attaching adapters to it.");
    if (p == PRECISION_FP32) return to_fp32(m);
    if (m->grads)
        return error_set("Full training needs every weight in fp32: a bf16 base is for LoRA, "
                         "DoRA and the cascade; use precision = \"fp32\".");
    if (precision_check_backend(m->be, "a Llama model") != LSC_OK) return LSC_ERR;
    return to_bf16(m);
}

int llama_set_activations(Llama *m, ModelPrecision p) {
    if (stored_acts_check(m->be, p, "a Llama model") != LSC_OK) return LSC_ERR;
    m->acts_precision = p; /* llama_reserve re-carves at the next forward */
    return LSC_OK;
}

int llama_clone_bf16(Llama *m, const Llama *src) {
    if (llama_create(m, src->be, &src->config) != LSC_OK) return LSC_ERR;
    Backend *be = src->be;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        if (!m->param_sizes[i]) continue;
        if (src->w.tensors[i]) /* fp32, or a master (rounded below as the refresh would) */
            be->copy(be, m->w.tensors[i], src->w.tensors[i], m->param_sizes[i] * sizeof(Real));
        else
            be->from_bf16(be, m->w.tensors[i], src->w16[i], m->param_sizes[i]);
    }
    if (device_sync(be) != LSC_OK || llama_set_precision(m, src->precision) != LSC_OK) {
        llama_free(m);
        return LSC_ERR;
    }
    return LSC_OK;
}

int llama_ensure_masters(Llama *m, unsigned targets) {
    if (m->precision != PRECISION_BF16) return LSC_OK;
    Backend *be = m->be;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        const int tensor = llama_tensor_of_target(t);
        if (!(targets & LORA_BIT(t)) || m->w.tensors[tensor]) continue;
        const size_t n = m->param_sizes[tensor];
        Real *master = be->alloc(be, n * sizeof(Real));
        if (!master)
            return device_fail(be, "Out of memory allocating the fp32 master of %s (%zu "
                               "weights) for a bf16 base.", lora_target_name((LoraTarget)t), n);
        be->from_bf16(be, master, m->w16[tensor], n);
        m->w.tensors[tensor] = master;
    }
    return device_sync(be);
}

Real *llama_target_master(Llama *m, int target, int layer) {
    m->stale |= LORA_BIT(target); /* its bf16 copy (bf16) and packed copies are refreshed */
    return llama_target_weight(m, target, layer);
}

void llama_refresh_copies(Llama *m) {
    if (!m->stale) return;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!(m->stale & LORA_BIT(t))) continue;
        const int tensor = llama_tensor_of_target(t);
        if (m->precision == PRECISION_BF16)
            m->be->to_bf16(m->be, m->w16[tensor], m->w.tensors[tensor], m->param_sizes[tensor]);
        llama_packed_drop(m, tensor); /* re-packed from the new values on next use */
    }
    m->stale = 0;
}

int llama_tensor_fp32(const Llama *m, int tensor, Real **ptr, int *owned) {
    return precision_widen(m->be, m->w.tensors[tensor], m->w16[tensor], m->param_sizes[tensor],
                           llama_param_name(tensor), "a bf16 base", ptr, owned);
}

double llama_weight_sum_squares(Llama *m) {
    Backend *be = m->be;
    double sq = be->sum_squares(be, m->params, m->params_len);
    if (m->precision == PRECISION_BF16)
        for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++)
            if (is_matrix(i) && i != LLAMA_WCLS && m->w.tensors[i])
                sq += be->sum_squares(be, m->w.tensors[i], m->param_sizes[i]);
    return sq;
}
