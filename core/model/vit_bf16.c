/* A ViT's bf16 frozen base (vit.h, "precision"): the encoder matrices converted to bf16 and
 * back, the fp32 masters of adapted targets and the refresh of their bf16 copies, fp32 views
 * for the paths that read weights. The same design as a Llama's (core/model/llama_bf16.c);
 * the patch embedding and the head stay fp32 (the head is trained). Not here: the matmuls
 * (linear_forward / linear_backward in vit.c pick the precision). */
#include <string.h>

#include "core/base/error.h"
#include "core/model/device.h"
#include "core/model/vit.h"

static int is_matrix(int t) {
    return t == VIT_WQ || t == VIT_WK || t == VIT_WV || t == VIT_WO || t == VIT_W1 ||
           t == VIT_W2;
}

/* vit_free's part (declared in vit.c) */
void vit_free_bf16(ViT *m);

void vit_free_bf16(ViT *m) {
    if (m->precision != PRECISION_BF16) return;
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++) /* masters: their own blocks */
        if (is_matrix(i) && m->w.tensors[i]) m->be->free(m->be, m->w.tensors[i]);
    if (m->base16) m->be->free(m->be, m->base16);
    m->base16 = NULL;
    memset(m->w16, 0, sizeof m->w16);
}

/* Points the fp32 tensors into block, in tensor order, skipping the matrices when bf16. */
static void carve(ViT *m, Real *block, int skip_matrices, Real *tensors[VIT_NUM_PARAM_TENSORS]) {
    Real *p = block;
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++) {
        tensors[i] = NULL;
        if (!m->param_sizes[i] || (skip_matrices && is_matrix(i))) continue;
        tensors[i] = p;
        p += m->param_sizes[i];
    }
}

static int to_bf16(ViT *m) {
    Backend *be = m->be;
    size_t total = 0, keep = 0;
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++) {
        if (is_matrix(i)) total += m->param_sizes[i];
        else keep += m->param_sizes[i];
    }
    uint16_t *block = be->alloc(be, total * sizeof(uint16_t));
    Real *params = be->alloc(be, keep * sizeof(Real));
    if (!block || !params) {
        if (block) be->free(be, block);
        if (params) be->free(be, params);
        return device_fail(be, "Out of memory converting a ViT of %zu parameters to bf16.",
                           m->num_params);
    }
    Real *tensors[VIT_NUM_PARAM_TENSORS];
    carve(m, params, 1, tensors);
    uint16_t *p16 = block;
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++) {
        if (is_matrix(i)) {
            be->to_bf16(be, p16, m->w.tensors[i], m->param_sizes[i]);
            m->w16[i] = p16;
            p16 += m->param_sizes[i];
        } else if (tensors[i]) {
            be->copy(be, tensors[i], m->w.tensors[i], m->param_sizes[i] * sizeof(Real));
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
    m->head_params = m->w.tensors[VIT_HEAD_W];
    m->precision = PRECISION_BF16;
    m->stale = 0;
    return LSC_OK;
}

static int to_fp32(ViT *m) {
    Backend *be = m->be;
    Real *params = be->alloc(be, m->num_params * sizeof(Real));
    if (!params)
        return device_fail(be, "Out of memory converting a ViT of %zu parameters to fp32.",
                           m->num_params);
    Real *tensors[VIT_NUM_PARAM_TENSORS];
    carve(m, params, 0, tensors);
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++) {
        if (!tensors[i]) continue;
        if (m->w.tensors[i])
            be->copy(be, tensors[i], m->w.tensors[i], m->param_sizes[i] * sizeof(Real));
        else
            be->from_bf16(be, tensors[i], m->w16[i], m->param_sizes[i]);
    }
    if (device_sync(be) != LSC_OK) {
        be->free(be, params);
        return LSC_ERR;
    }
    vit_free_bf16(m);
    be->free(be, m->params);
    m->params = params;
    m->params_len = m->num_params;
    memcpy(m->w.tensors, tensors, sizeof tensors);
    m->head_params = m->w.tensors[VIT_HEAD_W];
    m->precision = PRECISION_FP32;
    m->stale = 0;
    return LSC_OK;
}

int vit_set_activations(ViT *m, ModelPrecision p) {
    if (stored_acts_check(m->be, p, "a ViT") != LSC_OK) return LSC_ERR;
    m->acts_precision = p; /* vit_reserve re-carves at the next forward */
    return LSC_OK;
}

int vit_set_precision(ViT *m, ModelPrecision p) {
    if (p == m->precision) return LSC_OK;
    if (p != PRECISION_FP32 && p != PRECISION_BF16)
        return error_set("Unknown precision %d for a ViT (fp32 or bf16).", (int)p);
    if (m->lora) return error_set("Set a ViT's precision before attaching adapters to it.");
    if (p == PRECISION_FP32) return to_fp32(m);
    if (m->grads)
        return error_set("Full training needs every weight in fp32: a bf16 base is for LoRA, "
                         "DoRA and the cascade; use precision = \"fp32\".");
    if (precision_check_backend(m->be, "a ViT") != LSC_OK) return LSC_ERR;
    m->B = 0; /* the activations are re-carved: x16 exists in bf16 only */
    return to_bf16(m);
}

int vit_ensure_masters(ViT *m, unsigned targets) {
    if (m->precision != PRECISION_BF16) return LSC_OK;
    Backend *be = m->be;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        const int tensor = vit_tensor_of_target(t);
        if (!(targets & LORA_BIT(t)) || tensor < 0 || m->w.tensors[tensor]) continue;
        const size_t n = m->param_sizes[tensor];
        Real *master = be->alloc(be, n * sizeof(Real));
        if (!master)
            return device_fail(be, "Out of memory allocating the fp32 master of %s (%zu "
                               "weights) for a bf16 ViT.", lora_target_name((LoraTarget)t), n);
        be->from_bf16(be, master, m->w16[tensor], n);
        m->w.tensors[tensor] = master;
    }
    return device_sync(be);
}

Real *vit_target_master(ViT *m, int target, int layer) {
    if (m->precision == PRECISION_BF16) m->stale |= LORA_BIT(target);
    Real *w = vit_target_weight(m, target, layer);
    LSC_ASSERT(w != NULL || vit_tensor_of_target(target) < 0); /* bf16: a master first */
    return w;
}

void vit_refresh_bf16(ViT *m) {
    if (m->precision != PRECISION_BF16 || !m->stale) return;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        const int tensor = vit_tensor_of_target(t);
        if (!(m->stale & LORA_BIT(t)) || tensor < 0) continue;
        m->be->to_bf16(m->be, m->w16[tensor], m->w.tensors[tensor], m->param_sizes[tensor]);
    }
    m->stale = 0;
}

int vit_tensor_fp32(const ViT *m, int tensor, Real **ptr, int *owned) {
    return precision_widen(m->be, m->w.tensors[tensor], m->w16[tensor], m->param_sizes[tensor],
                           vit_param_name(tensor), "a bf16 ViT", ptr, owned);
}

double vit_weight_sum_squares(ViT *m) {
    Backend *be = m->be;
    double sq = be->sum_squares(be, m->params, m->params_len);
    if (m->precision == PRECISION_BF16)
        for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++)
            if (is_matrix(i) && m->w.tensors[i])
                sq += be->sum_squares(be, m->w.tensors[i], m->param_sizes[i]);
    return sq;
}
