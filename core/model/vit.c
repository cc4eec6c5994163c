/* ViT forward and backward, layer by layer, on the backend seam (the llm.c way).
 * Banners: config and size tables / build and free / activations / LoRA plumbing / forward /
 * backward. The backward mirrors the forward in reverse; each step names the forward line
 * it differentiates. */
#include "core/model/vit.h"

#include <math.h>
#include <string.h>

#include "core/base/error.h"
#include "core/base/philox.h"
#include "core/model/device.h"

/* ------------------------------------------------------------------------------------------
 * config and size tables */

static const char *const param_names[VIT_NUM_PARAM_TENSORS] = {
    "patch_w", "patch_b", "cls",  "pos",  "ln_pre_w", "ln_pre_b", "ln1_w", "ln1_b", "wq",
    "bq",      "wk",      "bk",   "wv",   "bv",       "wo",       "bo",    "ln2_w", "ln2_b",
    "w1",      "b1",      "w2",   "b2",   "lnf_w",    "lnf_b",    "head_w", "head_b",
};

const char *vit_param_name(int tensor) {
    return (tensor >= 0 && tensor < VIT_NUM_PARAM_TENSORS) ? param_names[tensor] : "?";
}

int vit_param_index(const char *name) {
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++)
        if (strcmp(name, param_names[i]) == 0) return i;
    return -1;
}

int vit_config_validate(const ViTConfig *c) {
    const struct { const char *name; int value; } positive[] = {
        {"image_size", c->image_size}, {"patch_size", c->patch_size}, {"channels", c->channels},
        {"dim", c->dim},               {"n_layers", c->n_layers},     {"n_heads", c->n_heads},
        {"mlp_dim", c->mlp_dim},       {"n_classes", c->n_classes},
    };
    for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++)
        if (positive[i].value <= 0)
            return error_set("ViT config field %s must be a positive integer, got %d.",
                             positive[i].name, positive[i].value);
    if (c->image_size % c->patch_size != 0)
        return error_set("ViT config: image_size (%d) must be a multiple of patch_size (%d).",
                         c->image_size, c->patch_size);
    if (c->dim % c->n_heads != 0)
        return error_set("ViT config: dim (%d) must be divisible by n_heads (%d).", c->dim,
                         c->n_heads);
    if (!(c->norm_eps > 0.0f))
        return error_set("ViT config: norm_eps must be positive, got %g.", (double)c->norm_eps);
    if (c->gelu != GELU_ERF && c->gelu != GELU_TANH && c->gelu != GELU_QUICK)
        return error_set("ViT config: gelu must be 0 (exact erf), 1 (tanh) or 2 (quick_gelu), "
                         "got %d.", (int)c->gelu);
    if ((c->pre_norm != 0 && c->pre_norm != 1) || (c->patch_bias != 0 && c->patch_bias != 1))
        return error_set("ViT config: pre_norm and patch_bias must be 0 or 1, got %d and %d.",
                         c->pre_norm, c->patch_bias);
    /* the parameter count in double (exact far beyond the limit), before any size_t product */
    const double D = c->dim, L = c->n_layers, M = c->mlp_dim, K = c->n_classes;
    const double g = (double)(c->image_size / c->patch_size), T = 1 + g * g;
    const double P = (double)c->channels * c->patch_size * c->patch_size;
    const double n = D * (P + T + 6) + L * (4 * D * D + 9 * D + 2 * M * D + M) + K * (D + 1);
    if (n > (double)VIT_MAX_PARAMS)
        return error_set("ViT config: image_size %d, patch_size %d, dim %d, %d layers and "
                         "mlp_dim %d make %.3g parameters, above lorasc's limit of %.3g.",
                         c->image_size, c->patch_size, c->dim, c->n_layers, c->mlp_dim, n,
                         (double)VIT_MAX_PARAMS);
    return LSC_OK;
}

int vit_num_patches(const ViTConfig *c) {
    const int g = c->image_size / c->patch_size;
    return g * g;
}

int vit_seq_len(const ViTConfig *c) { return 1 + vit_num_patches(c); }

void vit_param_sizes(const ViTConfig *c, size_t sizes[VIT_NUM_PARAM_TENSORS]) {
    const size_t D = (size_t)c->dim, L = (size_t)c->n_layers, M = (size_t)c->mlp_dim;
    const size_t K = (size_t)c->n_classes, T = (size_t)vit_seq_len(c);
    const size_t CPP = (size_t)c->channels * c->patch_size * c->patch_size;
    sizes[VIT_PATCH_W] = D * CPP;
    sizes[VIT_PATCH_B] = c->patch_bias ? D : 0;
    sizes[VIT_CLS] = D;
    sizes[VIT_POS] = T * D;
    sizes[VIT_LN_PRE_W] = c->pre_norm ? D : 0;
    sizes[VIT_LN_PRE_B] = c->pre_norm ? D : 0;
    sizes[VIT_LN1_W] = sizes[VIT_LN1_B] = L * D;
    sizes[VIT_WQ] = sizes[VIT_WK] = sizes[VIT_WV] = sizes[VIT_WO] = L * D * D;
    sizes[VIT_BQ] = sizes[VIT_BK] = sizes[VIT_BV] = sizes[VIT_BO] = L * D;
    sizes[VIT_LN2_W] = sizes[VIT_LN2_B] = L * D;
    sizes[VIT_W1] = L * M * D;
    sizes[VIT_B1] = L * M;
    sizes[VIT_W2] = L * D * M;
    sizes[VIT_B2] = L * D;
    sizes[VIT_LNF_W] = sizes[VIT_LNF_B] = D;
    sizes[VIT_HEAD_W] = K * D;
    sizes[VIT_HEAD_B] = K;
}

static void carve_weights(ViTWeights *w, Real *block, const size_t sizes[VIT_NUM_PARAM_TENSORS]) {
    Real *p = block;
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++) {
        w->tensors[i] = sizes[i] ? p : NULL;
        p += sizes[i];
    }
}

/* ------------------------------------------------------------------------------------------
 * build and free */

int vit_create(ViT *m, Backend *be, const ViTConfig *c) {
    memset(m, 0, sizeof *m);
    if (vit_config_validate(c) != LSC_OK) return LSC_ERR;
    m->config = *c;
    m->be = be;
    vit_param_sizes(c, m->param_sizes);
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++) m->num_params += m->param_sizes[i];
    m->params_len = m->num_params;
    m->head_size = m->param_sizes[VIT_HEAD_W] + m->param_sizes[VIT_HEAD_B];
    m->params = be->alloc(be, m->num_params * sizeof(Real));
    m->head_grad_own = be->alloc(be, m->head_size * sizeof(Real));
    if (!m->params || !m->head_grad_own) {
        const size_t n = m->num_params; /* vit_free clears it */
        vit_free(m);
        return device_fail(be, "Out of memory allocating a ViT with %zu parameters (%zu bytes).", n,
                           n * sizeof(Real));
    }
    carve_weights(&m->w, m->params, m->param_sizes);
    m->head_params = m->w.tensors[VIT_HEAD_W];
    m->head_grads = m->head_grad_own;
    m->train_head = 1;
    return LSC_OK;
}

void vit_free_bf16(ViT *m); /* vit_bf16.c */

void vit_free(ViT *m) {
    Backend *be = m->be;
    if (be) {
        vit_free_bf16(m);
        void *blocks[] = {m->params, m->grads, m->head_grad_own, m->labels};
        for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
            if (blocks[i]) be->free(be, blocks[i]);
        arena_free(&m->acts_arena);
    }
    memset(m, 0, sizeof *m);
}

static int is_norm_weight(int i) {
    return i == VIT_LN_PRE_W || i == VIT_LN1_W || i == VIT_LN2_W || i == VIT_LNF_W;
}

static int is_bias(int i) {
    return i == VIT_PATCH_B || i == VIT_LN_PRE_B || i == VIT_LN1_B || i == VIT_BQ ||
           i == VIT_BK || i == VIT_BV || i == VIT_BO || i == VIT_LN2_B || i == VIT_B1 ||
           i == VIT_B2 || i == VIT_LNF_B || i == VIT_HEAD_B;
}

void vit_init_random(ViT *m, uint64_t seed) {
    Real *host = malloc(m->num_params * sizeof(Real));
    LSC_ASSERT(host != NULL);
    Real *p = host;
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++) {
        const size_t sz = m->param_sizes[i];
        if (is_norm_weight(i))
            for (size_t j = 0; j < sz; j++) p[j] = 1;
        else if (is_bias(i))
            for (size_t j = 0; j < sz; j++) p[j] = 0;
        else
            philox_normal(p, sz, seed, philox_stream(RNG_PURPOSE_INIT, 0xFFFE, (uint32_t)i, 0),
                          0.0, 0.02);
        p += sz;
    }
    m->be->to_device(m->be, m->params, host, m->num_params * sizeof(Real));
    free(host);
}

int vit_init_head(ViT *m, uint64_t seed) {
    const size_t nw = m->param_sizes[VIT_HEAD_W], nb = m->param_sizes[VIT_HEAD_B];
    Real *h = calloc(nw + nb, sizeof(Real)); /* the bias stays zero */
    if (!h) return error_set("Out of memory initialising a ViT head of %zu values.", nw + nb);
    philox_normal(h, nw, seed, philox_stream(RNG_PURPOSE_INIT, 0xFFFD, 0, 0), 0.0, 0.02);
    m->be->to_device(m->be, m->w.tensors[VIT_HEAD_W], h, (nw + nb) * sizeof(Real));
    free(h);
    return device_sync(m->be);
}

int vit_set_head(ViT *m, const Real *head) {
    const size_t n = m->param_sizes[VIT_HEAD_W] + m->param_sizes[VIT_HEAD_B];
    m->be->to_device(m->be, m->w.tensors[VIT_HEAD_W], head, n * sizeof(Real));
    return device_sync(m->be);
}

/* m = a model of config c on src's backend holding src's weights, the head too if copy_head.
 * A bf16 src gives a bf16 copy: its matrices widened and rounded again (the same bits), its
 * masters re-made from them by vit_ensure_masters when needed. */
static int clone_weights(ViT *m, const ViT *src, const ViTConfig *c, int copy_head) {
    if (vit_create(m, src->be, c) != LSC_OK) return LSC_ERR;
    Backend *be = src->be;
    for (int t = 0; t < VIT_NUM_PARAM_TENSORS; t++) {
        if (m->param_sizes[t] == 0) continue;
        if (!copy_head && (t == VIT_HEAD_W || t == VIT_HEAD_B)) continue;
        if (src->w.tensors[t])
            be->copy(be, m->w.tensors[t], src->w.tensors[t], m->param_sizes[t] * sizeof(Real));
        else
            be->from_bf16(be, m->w.tensors[t], src->w16[t], m->param_sizes[t]);
    }
    if (device_sync(be) != LSC_OK || vit_set_precision(m, src->precision) != LSC_OK) {
        vit_free(m);
        return LSC_ERR;
    }
    return LSC_OK;
}

int vit_clone(ViT *m, const ViT *src) { return clone_weights(m, src, &src->config, 1); }

int vit_clone_new_head(ViT *m, const ViT *src, int n_classes, uint64_t head_seed) {
    ViTConfig c = src->config;
    c.n_classes = n_classes;
    if (clone_weights(m, src, &c, 0) != LSC_OK) return LSC_ERR;
    if (vit_init_head(m, head_seed) != LSC_OK) {
        vit_free(m);
        return LSC_ERR;
    }
    return LSC_OK;
}

int vit_enable_full_grads(ViT *m) {
    if (m->grads) return LSC_OK;
    if (m->precision != PRECISION_FP32)
        return error_set("Full training needs every weight in fp32: a bf16 base is for LoRA, "
                         "DoRA and the cascade; use precision = \"fp32\".");
    m->grads = m->be->alloc(m->be, m->num_params * sizeof(Real));
    if (!m->grads)
        return device_fail(m->be, "Out of memory allocating gradients for %zu ViT parameters.",
                           m->num_params);
    carve_weights(&m->dw, m->grads, m->param_sizes);
    m->head_grads = m->dw.tensors[VIT_HEAD_W];
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * activations: carved from an arena for batch B; re-carved when B changes. */

typedef struct ActSlot {
    Real **ptr;
    size_t n;
} ActSlot;

/* Entries of each layer's att (and datt): the B NH T T probabilities on the CPU; on a device
 * the flash-style attention keeps only each row's log-sum-exp there (backend.h), B NH T. */
static size_t att_entries(const ViT *m, int B) {
    const size_t T = (size_t)vit_seq_len(&m->config);
    const size_t rows = (size_t)B * (size_t)m->config.n_heads * T;
    return device_is_host(m->be) ? rows * T : rows;
}

static void carve_acts(ViT *m, int B, Arena *arena) {
    const ViTConfig *c = &m->config;
    const size_t L = (size_t)c->n_layers, D = (size_t)c->dim, M = (size_t)c->mlp_dim;
    const size_t T = (size_t)vit_seq_len(c), BT = (size_t)B * T, K = (size_t)c->n_classes;
    const size_t NP = (size_t)vit_num_patches(c);
    const size_t CPP = (size_t)c->channels * c->patch_size * c->patch_size;
    const size_t img = (size_t)B * c->channels * c->image_size * c->image_size;
    const size_t attn = att_entries(m, B), Bs = (size_t)B;
    const size_t pre = c->pre_norm ? 1 : 0;
    /* a bf16 store: one working layer of what it keeps (the residual stream in place) */
    const int store = m->acts_precision == PRECISION_BF16;
    const size_t LS = store ? 1 : L, resid_layers = store ? 1 : L + 1;
    ViTActs *a = &m->acts;
    const ActSlot slots[] = {
        {&a->images, img},         {&a->patches, Bs * NP * CPP}, {&a->pemb, Bs * NP * D},
        {&a->x0, pre * BT * D},    {&a->mean0, pre * BT},        {&a->rstd0, pre * BT},
        {&a->resid, resid_layers * BT * D},
        {&a->ln1, LS * BT * D},    {&a->mean1, L * BT},          {&a->rstd1, L * BT},
        {&a->q, LS * BT * D},      {&a->k, LS * BT * D},         {&a->v, LS * BT * D},
        {&a->att, L * attn},       {&a->atty, LS * BT * D},      {&a->resid_mid, LS * BT * D},
        {&a->ln2, LS * BT * D},    {&a->mean2, L * BT},          {&a->rstd2, L * BT},
        {&a->fc1, LS * BT * M},    {&a->act, LS * BT * M},       {&a->cls, Bs * D},
        {&a->lnf, Bs * D},         {&a->meanf, Bs},              {&a->rstdf, Bs},
        {&a->logits, Bs * K},      {&a->losses, Bs},             {&a->lse, Bs},
        {&a->dloss, Bs},           {&a->proj, BT * D},           {&a->dresid, BT * D},
        {&a->dxn, BT * D},         {&a->dq, BT * D},             {&a->dk, BT * D},
        {&a->dv, BT * D},          {&a->datt, attn},             {&a->datty, BT * D},
        {&a->dfc1, BT * M},        {&a->dact, BT * M},           {&a->dcls, Bs * D},
    };
    arena_reset(arena);
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
        *slots[i].ptr = slots[i].n ? arena_alloc(arena, slots[i].n) : NULL;
    /* a bf16 base: ln1's output rounded once for q, k, v (shared_input16) */
    a->x16 = m->precision == PRECISION_BF16 && m->be->matmul_bf16_rounded && m->be->to_bf16
                 ? (uint16_t *)arena_alloc(arena, (BT * D + 1) / 2)
                 : NULL;
    /* bf16 store: 2 bytes per stored activation of every layer (8 D + 2 M per row) */
    a->store16 = store ? (uint16_t *)arena_alloc(arena, (L * BT * (8 * D + 2 * M) + 1) / 2) : NULL;
}

static int vit_reserve(ViT *m, int B) {
    const int store = m->acts_precision == PRECISION_BF16;
    if (m->B == B && m->acts_arena.base && m->acts_carved16 == store) return LSC_OK;
    Backend *be = m->be;
    Arena measure = arena_measure();
    carve_acts(m, B, &measure);
    const int had = m->B;
    m->B = 0;
    if (arena_reserve(&m->acts_arena, be, measure.used) != LSC_OK) return LSC_ERR;
    if (B > had || !m->labels) {
        if (m->labels) be->free(be, m->labels);
        m->labels = be->alloc(be, (size_t)B * sizeof(int32_t));
        if (!m->labels)
            return device_fail(be, "Out of memory allocating labels for a batch of %d.", B);
    }
    carve_acts(m, B, &m->acts_arena);
    m->B = B;
    m->acts_carved16 = store;
    return LSC_OK;
}

/* ---- stored activations (ViT.acts_precision bf16) ----
 * A layer's entries in store16, in this order: its input x, ln1, q, k, v, atty, mid, ln2,
 * fc1, act (8 D + 2 M per row). list[j] is entry j's fp32 working buffer (one layer's). */
enum { STORED_ACTS = 10 };
static size_t stored_acts(ViT *m, StoredAct list[STORED_ACTS]) {
    const ViTConfig *c = &m->config;
    const size_t BT = (size_t)m->B * (size_t)vit_seq_len(c), D = (size_t)c->dim;
    const size_t M = (size_t)c->mlp_dim;
    ViTActs *a = &m->acts;
    const StoredAct all[STORED_ACTS] = {
        {a->resid, BT * D}, {a->ln1, BT * D},  {a->q, BT * D},   {a->k, BT * D},
        {a->v, BT * D},     {a->atty, BT * D}, {a->resid_mid, BT * D}, {a->ln2, BT * D},
        {a->fc1, BT * M},   {a->act, BT * M},
    };
    size_t per_layer = 0;
    for (int j = 0; j < STORED_ACTS; j++) list[j] = all[j], per_layer += all[j].n;
    return per_layer;
}

/* Layer l's entries [first, last) to store16 (pack) or back to the working buffers. */
static void move_stored(ViT *m, int l, int first, int last, int pack) {
    StoredAct list[STORED_ACTS];
    const size_t per_layer = stored_acts(m, list);
    stored_acts_move(m->be, m->acts.store16 + (size_t)l * per_layer, list, first, last, pack);
}

/* ------------------------------------------------------------------------------------------
 * LoRA plumbing */

static Real *layer_slice(Real *stacked, size_t per_layer, int l) {
    return stacked ? stacked + (size_t)l * per_layer : NULL;
}

static const int tensor_of_target[LORA_NUM_TARGETS] = {
    [LORA_Q] = VIT_WQ, [LORA_K] = VIT_WK, [LORA_V] = VIT_WV,   [LORA_O] = VIT_WO,
    [LORA_GATE] = -1,  [LORA_UP] = VIT_W1, [LORA_DOWN] = VIT_W2,
};

int vit_tensor_of_target(int target) { return tensor_of_target[target]; }

Real *vit_target_weight(ViT *m, int target, int layer) {
    const int tensor = tensor_of_target[target];
    if (tensor < 0) return NULL;
    const size_t per_layer = m->param_sizes[tensor] / (size_t)m->config.n_layers;
    return layer_slice(m->w.tensors[tensor], per_layer, layer);
}

void vit_lora_shapes(const ViTConfig *c, int in_dim[LORA_NUM_TARGETS],
                     int out_dim[LORA_NUM_TARGETS]) {
    const int D = c->dim, M = c->mlp_dim;
    const int ins[LORA_NUM_TARGETS] = {D, D, D, D, 0, D, M};
    const int outs[LORA_NUM_TARGETS] = {D, D, D, D, 0, M, D};
    memcpy(in_dim, ins, sizeof ins);
    memcpy(out_dim, outs, sizeof outs);
}

static const Real *lora_base_weight(void *model, int layer, int target) {
    return vit_target_weight(model, target, layer);
}

void vit_init_lora_magnitudes(ViT *m) {
    if (m->lora) lora_init_magnitudes(m->lora, lora_base_weight, m);
}

int vit_attach_lora(ViT *m, LoraAdapters *lora) {
    if (lora) {
        int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
        vit_lora_shapes(&m->config, in, out);
        if (lora_enabled(lora, LORA_GATE))
            return error_set("A ViT has no gate projection: remove \"gate\" from the LoRA "
                             "targets (ViT targets: q, k, v, o, up = fc1, down = fc2).");
        if (lora->n_layers != m->config.n_layers)
            return error_set("LoRA adapters have %d layers but the ViT has %d.", lora->n_layers,
                             m->config.n_layers);
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            if (lora_enabled(lora, t) && (lora->in_dim[t] != in[t] || lora->out_dim[t] != out[t]))
                return error_set("LoRA target %s is %d x %d but the ViT's matrix is %d x %d "
                                 "(create the adapters from vit_lora_shapes).",
                                 lora_target_name(t), lora->out_dim[t], lora->in_dim[t], out[t],
                                 in[t]);
    }
    m->lora = lora;
    if (lora && lora->config.use_dora && !lora->magnitudes_set) vit_init_lora_magnitudes(m);
    return LSC_OK;
}

void vit_merge_lora(ViT *m, float sign) {
    LoraAdapters *lora = m->lora;
    if (!lora) return;
    LSC_ASSERT(lora->merged == (sign < 0));
    for (int l = 0; l < m->config.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            if (lora_enabled(lora, t))
                lora_apply_to_weight(lora, vit_target_master(m, t, l), l, t, sign);
    lora->merged = sign > 0;
}

static int adapters_active(const ViT *m) { return m->lora && !m->lora->merged; }

/* The bf16 slice of target's matrix for layer l. */
static const uint16_t *vit_target_w16(const ViT *m, int target, int l) {
    const int tensor = tensor_of_target[target];
    return m->w16[tensor] + (size_t)l * (m->param_sizes[tensor] / (size_t)m->config.n_layers);
}

/* y[rows,out] = x[rows,in] W^T (+ adapter, DoRA scaling) + bias: the per-slot sequence of
 * core/model/lora.h, the bias last (PEFT adds the base layer's bias outside DoRA's scaling). */
/* A bf16 run's attention runs on the tensor cores where the backend has them (CUDA: bf16
 * operands, fp32 softmax and sums); elsewhere, and in fp32 runs, the fp32 kernels. */
static int tensor_core_attention(const ViT *m) {
    return m->precision == PRECISION_BF16 && m->be->attention_forward_bf16 &&
           m->be->attention_backward_bf16;
}

/* ln1's output rounded to bf16 once, in acts.x16, for q, k and v; NULL where each product
 * rounds its own (fp32, or a backend without matmul_bf16_rounded). */
static const uint16_t *shared_input16(ViT *m, const Real *x, size_t n) {
    if (!m->acts.x16) return NULL;
    m->be->to_bf16(m->be, m->acts.x16, x, n);
    return m->acts.x16;
}

/* x16: x already rounded to bf16 for the products that share it (shared_input16), or NULL;
 * matmul_bf16_rounded on it gives matmul_bf16's bits (kernels/backend.h). */
static void linear_forward(ViT *m, Real *y, const Real *x, const uint16_t *x16, int l,
                           int target, const Real *bias, int rows, int in, int out) {
    Backend *be = m->be;
    const Real *w = vit_target_weight(m, target, l); /* bf16: a master, or NULL */
    if (m->precision == PRECISION_BF16 && x16)
        be->matmul_bf16_rounded(be, y, x16, vit_target_w16(m, target, l), rows, out, in, 1, 1, 0);
    else if (m->precision == PRECISION_BF16)
        be->matmul_bf16(be, y, x, vit_target_w16(m, target, l), rows, out, in, 1, 1, 0);
    else
        be->matmul(be, y, x, w, rows, out, in, 0, 1, 1, 0);
    if (adapters_active(m)) {
        lora_forward(m->lora, y, x, l, target, rows);
        lora_magnitude_forward(m->lora, y, w, l, target, rows);
    }
    be->bias_forward(be, y, bias, rows, out);
}

/* Backward of linear_forward. dy [rows,out] is the gradient of y; under DoRA it is scaled in
 * place (dy becomes the gradient of the unscaled projection). dx (=, or += when accumulate)
 * = g W; full mode adds dW += g^T x and dbias += colsum(dy). */
static void linear_backward(ViT *m, Real *dx, Real *dy, const Real *x, int l, int target,
                            Real *dw, Real *dbias, int rows, int in, int out, int accumulate) {
    Backend *be = m->be;
    if (dbias) be->bias_backward(be, dbias, dy, rows, out);
    const Real *g = dy;
    if (adapters_active(m) && lora_has_magnitude(m->lora, target))
        g = lora_magnitude_backward(m->lora, dy, dy, l, target, rows);
    if (m->precision == PRECISION_BF16)
        be->matmul_bf16(be, dx, g, vit_target_w16(m, target, l), rows, in, out, 0, 1,
                        (Real)(accumulate ? 1 : 0));
    else
        be->matmul(be, dx, g, vit_target_weight(m, target, l), rows, in, out, 0, 0, 1,
                   (Real)(accumulate ? 1 : 0));
    if (dw) be->matmul(be, dw, g, x, out, in, rows, 1, 0, 1, 1);
    if (adapters_active(m)) lora_backward(m->lora, dx, g, x, l, target, rows);
}

/* ------------------------------------------------------------------------------------------
 * forward */

int vit_forward(ViT *m, const Real *images, const int32_t *labels, int B) {
    const ViTConfig *c = &m->config;
    Backend *be = m->be;
    if (B <= 0) return error_set("ViT batch size must be positive, got %d.", B);
    const int K = c->n_classes;
    for (int b = 0; labels && b < B; b++)
        if (labels[b] < -1 || labels[b] >= K)
            return error_set("Label %d of image %d is outside [0, %d) (use -1 to leave an image "
                             "out of the loss).", labels[b], b, K);
    const int T = vit_seq_len(c), NP = T - 1, BT = B * T, D = c->dim, M = c->mlp_dim;
    const int L = c->n_layers, NH = c->n_heads, HD = D / NH, P = c->patch_size;
    const int CPP = c->channels * P * P;
    if (vit_reserve(m, B) != LSC_OK) return LSC_ERR;
    if (adapters_active(m) && lora_reserve(m->lora, BT) != LSC_OK) return LSC_ERR;
    vit_refresh_bf16(m);
    const size_t BTD = (size_t)BT * D, BTM = (size_t)BT * M, attn = att_entries(m, B);
    ViTActs *a = &m->acts;
    Real *const *w = m->w.tensors;
    const size_t rowb = (size_t)D * sizeof(Real);

    /* patches = patchify(images); pemb = patches Wp^T + bp */
    be->to_device(be, a->images, images,
                  (size_t)B * c->channels * c->image_size * c->image_size * sizeof(Real));
    be->patchify(be, a->patches, a->images, B, c->channels, c->image_size, c->image_size, P);
    be->matmul(be, a->pemb, a->patches, w[VIT_PATCH_W], B * NP, D, CPP, 0, 1, 1, 0);
    if (w[VIT_PATCH_B]) be->bias_forward(be, a->pemb, w[VIT_PATCH_B], B * NP, D);
    /* x0[b] = [cls; pemb[b]] + pos (into resid[0], or x0 when LN_pre follows) */
    Real *x0 = c->pre_norm ? a->x0 : a->resid;
    for (int b = 0; b < B; b++) {
        be->copy(be, x0 + (size_t)b * T * D, w[VIT_CLS], rowb);
        be->copy(be, x0 + ((size_t)b * T + 1) * D, a->pemb + (size_t)b * NP * D,
                 (size_t)NP * rowb);
    }
    be->bias_forward(be, x0, w[VIT_POS], B, T * D);
    if (c->pre_norm)
        be->layernorm_forward(be, a->resid, a->mean0, a->rstd0, x0, w[VIT_LN_PRE_W],
                              w[VIT_LN_PRE_B], BT, D, c->norm_eps);

    /* layer l's activations at l * (a layer's size), or, with a bf16 store, in one working
     * layer (att and the norms' statistics still per layer; out in place of x, which is dead
     * once mid is made) */
    const int store = m->acts_carved16;
    const size_t keep = store ? 0 : 1;
    for (int l = 0; l < L; l++) {
        const size_t i = keep * (size_t)l;
        Real *x = a->resid + i * BTD, *xn = a->ln1 + i * BTD;
        Real *q = a->q + i * BTD, *k = a->k + i * BTD, *v = a->v + i * BTD;
        Real *att = a->att + l * attn, *atty = a->atty + i * BTD, *mid = a->resid_mid + i * BTD;
        Real *xn2 = a->ln2 + i * BTD, *h = a->fc1 + i * BTM, *act = a->act + i * BTM;
        Real *out = a->resid + keep * (size_t)(l + 1) * BTD;
        const size_t lo = (size_t)l * BT;
        if (store) move_stored(m, l, 0, 1, 1); /* x, before out overwrites it */

        /* mid = x + (attn(LN1(x) Wq^T + bq, ... Wk, ... Wv) Wo^T + bo) */
        be->layernorm_forward(be, xn, a->mean1 + lo, a->rstd1 + lo, x,
                              layer_slice(w[VIT_LN1_W], D, l), layer_slice(w[VIT_LN1_B], D, l),
                              BT, D, c->norm_eps);
        const uint16_t *xn16 = shared_input16(m, xn, BTD);
        linear_forward(m, q, xn, xn16, l, LORA_Q, layer_slice(w[VIT_BQ], D, l), BT, D, D);
        linear_forward(m, k, xn, xn16, l, LORA_K, layer_slice(w[VIT_BK], D, l), BT, D, D);
        linear_forward(m, v, xn, xn16, l, LORA_V, layer_slice(w[VIT_BV], D, l), BT, D, D);
        if (tensor_core_attention(m))
            be->attention_forward_bf16(be, atty, att, q, k, v, B, T, NH, NH, HD, 0);
        else
            be->attention_full_forward(be, atty, att, q, k, v, B, T, NH, NH, HD);
        linear_forward(m, a->proj, atty, NULL, l, LORA_O, layer_slice(w[VIT_BO], D, l), BT, D, D);
        be->residual_forward(be, mid, x, a->proj, BTD);

        /* out = mid + (gelu(LN2(mid) W1^T + b1) W2^T + b2) */
        be->layernorm_forward(be, xn2, a->mean2 + lo, a->rstd2 + lo, mid,
                              layer_slice(w[VIT_LN2_W], D, l), layer_slice(w[VIT_LN2_B], D, l),
                              BT, D, c->norm_eps);
        linear_forward(m, h, xn2, NULL, l, LORA_UP, layer_slice(w[VIT_B1], M, l), BT, D, M);
        be->gelu_forward(be, act, h, BTM, c->gelu);
        linear_forward(m, a->proj, act, NULL, l, LORA_DOWN, layer_slice(w[VIT_B2], D, l), BT, M, D);
        be->residual_forward(be, out, mid, a->proj, BTD);
        if (store) move_stored(m, l, 1, STORED_ACTS, 1);
    }

    /* logits = LNf(resid_L[:, 0]) Wh^T + bh; the final norm only on the class-token rows
     * (the other rows never reach the loss) */
    const Real *last = a->resid + keep * (size_t)L * BTD;
    for (int b = 0; b < B; b++) be->copy(be, a->cls + (size_t)b * D, last + (size_t)b * T * D, rowb);
    be->layernorm_forward(be, a->lnf, a->meanf, a->rstdf, a->cls, w[VIT_LNF_W], w[VIT_LNF_B], B,
                          D, c->norm_eps);
    be->matmul(be, a->logits, a->lnf, w[VIT_HEAD_W], B, K, D, 0, 1, 1, 0);
    be->bias_forward(be, a->logits, w[VIT_HEAD_B], B, K);

    m->mean_loss = 0.0;
    m->n_loss_rows = 0;
    if (!labels) return device_sync(be); /* the end of a forward: a failed op surfaces here */
    /* loss = mean over labelled images; dloss carries mask / count for the backward */
    Real *host = malloc((size_t)B * sizeof(Real));
    if (!host) return error_set("Out of memory computing the loss of %d images.", B);
    int count = 0;
    for (int b = 0; b < B; b++) count += labels[b] >= 0;
    be->to_device(be, m->labels, labels, (size_t)B * sizeof(int32_t));
    be->cross_entropy_forward(be, a->losses, a->lse, a->logits, m->labels, B, K);
    double sum = 0.0;
    if (m->loss_out) { /* a training step: the mean loss stays on the device */
        be->mean_to(be, m->loss_out, a->losses, (size_t)B, (double)count);
    } else {
        be->to_host(be, host, a->losses, (size_t)B * sizeof(Real));
        if (device_sync(be) != LSC_OK) {
            free(host);
            return LSC_ERR;
        }
        for (int b = 0; b < B; b++) sum += host[b];
    }
    for (int b = 0; b < B; b++) host[b] = (labels[b] >= 0 && count) ? (Real)(1.0 / count) : 0;
    be->to_device(be, a->dloss, host, (size_t)B * sizeof(Real));
    free(host);
    m->n_loss_rows = count;
    m->mean_loss = m->loss_out ? NAN : count ? sum / count : 0.0;
    return m->loss_out ? device_check(be) : LSC_OK;
}

int vit_read_logits(ViT *m, Real *host) {
    m->be->to_host(m->be, host, m->acts.logits, (size_t)m->B * m->config.n_classes * sizeof(Real));
    return device_sync(m->be);
}

int vit_predict(ViT *m, int32_t *pred, const int32_t *labels) {
    const int B = m->B, K = m->config.n_classes;
    Real *host = malloc((size_t)B * K * sizeof(Real));
    LSC_ASSERT(host != NULL);
    if (vit_read_logits(m, host) != LSC_OK) {
        free(host);
        return LSC_ERR;
    }
    int correct = 0;
    for (int b = 0; b < B; b++) {
        int best = 0;
        for (int j = 1; j < K; j++)
            if (host[(size_t)b * K + j] > host[(size_t)b * K + best]) best = j;
        pred[b] = best;
        correct += labels && labels[b] == best;
    }
    free(host);
    return correct;
}

/* ------------------------------------------------------------------------------------------
 * backward */

void vit_zero_grad(ViT *m) {
    Backend *be = m->be;
    if (m->grads) be->zero(be, m->grads, m->num_params * sizeof(Real));
    else be->zero(be, m->head_grads, m->head_size * sizeof(Real));
    if (m->lora) be->zero(be, m->lora->grads, m->lora->num_params * sizeof(Real));
}

/* The gradient slice of stacked tensor `tensor` for layer l, or NULL without full grads. */
static Real *grad_slice(ViT *m, int tensor, int l) {
    if (!m->grads) return NULL;
    const size_t per_layer = m->param_sizes[tensor] / (size_t)m->config.n_layers;
    return layer_slice(m->dw.tensors[tensor], per_layer, l);
}

static Real *grad_of(ViT *m, int tensor) { return m->grads ? m->dw.tensors[tensor] : NULL; }

int vit_backward(ViT *m) {
    const ViTConfig *c = &m->config;
    Backend *be = m->be;
    if (!m->acts_arena.base || m->n_loss_rows == 0)
        return error_set("vit_backward needs a forward with at least one labelled image first.");
    const int full = m->grads != NULL;
    if (!full && !adapters_active(m) && !m->train_head)
        return error_set("Nothing to train: enable full gradients, attach an unmerged LoRA "
                         "adapter or set train_head.");
    const int B = m->B, T = vit_seq_len(c), NP = T - 1, BT = B * T, D = c->dim;
    const int M = c->mlp_dim, L = c->n_layers, NH = c->n_heads, HD = D / NH, K = c->n_classes;
    const int CPP = c->channels * c->patch_size * c->patch_size;
    const size_t BTD = (size_t)BT * D, BTM = (size_t)BT * M, attn = att_entries(m, B);
    const size_t rowb = (size_t)D * sizeof(Real);
    ViTActs *a = &m->acts;
    Real *const *w = m->w.tensors;
    const int store = m->acts_carved16; /* each layer unpacked into the working layer in turn */
    const size_t keep = store ? 0 : 1;

    /* logits = lnf Wh^T + bh, loss = CE(logits): dlogits overwrite the logits in place */
    Real *dlogits = a->logits;
    be->cross_entropy_backward(be, dlogits, a->logits, a->lse, m->labels, a->dloss, B, K);
    if (full || m->train_head) {
        Real *dhw = m->head_grads, *dhb = m->head_grads + (size_t)K * D;
        be->matmul(be, dhw, dlogits, a->lnf, K, D, B, 1, 0, 1, 1);
        be->bias_backward(be, dhb, dlogits, B, K);
    }
    /* lnf = LNf(cls): dcls = LNf'(dlnf), dlnf = dlogits Wh */
    be->matmul(be, a->dxn, dlogits, w[VIT_HEAD_W], B, D, K, 0, 0, 1, 0);
    be->zero(be, a->dcls, (size_t)B * rowb);
    be->layernorm_backward(be, a->dcls, grad_of(m, VIT_LNF_W), grad_of(m, VIT_LNF_B), a->dxn,
                           a->cls, w[VIT_LNF_W], a->meanf, a->rstdf, B, D);
    /* cls rows were copied out of resid_L: scatter their gradient back, zeros elsewhere */
    be->zero(be, a->dresid, BTD * sizeof(Real));
    for (int b = 0; b < B; b++) be->copy(be, a->dresid + (size_t)b * T * D, a->dcls + (size_t)b * D, rowb);

    for (int l = L - 1; l >= 0; l--) {
        const size_t i = keep * (size_t)l;
        if (store) move_stored(m, l, 0, STORED_ACTS, 0);
        const Real *x = a->resid + i * BTD, *xn = a->ln1 + i * BTD;
        const Real *q = a->q + i * BTD, *k = a->k + i * BTD, *v = a->v + i * BTD;
        const Real *att = a->att + l * attn, *atty = a->atty + i * BTD;
        const Real *mid = a->resid_mid + i * BTD, *xn2 = a->ln2 + i * BTD;
        const Real *h = a->fc1 + i * BTM, *act = a->act + i * BTM;
        const size_t lo = (size_t)l * BT;
        Real *dresid = a->dresid; /* d(out) on entry; then d(mid), then d(x) */

        /* out = mid + proj, proj = act W2^T + b2: d(mid) = d(out) (kept), dact = dproj W2 */
        be->copy(be, a->proj, dresid, BTD * sizeof(Real));
        linear_backward(m, a->dact, a->proj, act, l, LORA_DOWN, grad_slice(m, VIT_W2, l),
                        grad_slice(m, VIT_B2, l), BT, M, D, 0);
        /* act = gelu(h) */
        be->gelu_backward(be, a->dfc1, a->dact, h, BTM, c->gelu);
        /* h = xn2 W1^T + b1 */
        linear_backward(m, a->dxn, a->dfc1, xn2, l, LORA_UP, grad_slice(m, VIT_W1, l),
                        grad_slice(m, VIT_B1, l), BT, D, M, 0);
        /* xn2 = LN2(mid): accumulates into d(mid) */
        be->layernorm_backward(be, dresid, grad_slice(m, VIT_LN2_W, l), grad_slice(m, VIT_LN2_B, l),
                               a->dxn, mid, layer_slice(w[VIT_LN2_W], D, l), a->mean2 + lo,
                               a->rstd2 + lo, BT, D);

        /* mid = x + proj, proj = atty Wo^T + bo: d(x) = d(mid) (kept), datty = dproj Wo */
        be->copy(be, a->proj, dresid, BTD * sizeof(Real));
        linear_backward(m, a->datty, a->proj, atty, l, LORA_O, grad_slice(m, VIT_WO, l),
                        grad_slice(m, VIT_BO, l), BT, D, D, 0);
        if (tensor_core_attention(m))
            be->attention_backward_bf16(be, a->dq, a->dk, a->dv, a->datt, a->datty, atty, q, k, v,
                                        att, B, T, NH, NH, HD, 0);
        else
            be->attention_full_backward(be, a->dq, a->dk, a->dv, a->datt, a->datty, q, k, v, att,
                                        B, T, NH, NH, HD);
        /* q, k, v = xn W^T + b: dxn = dq Wq + dk Wk + dv Wv */
        linear_backward(m, a->dxn, a->dq, xn, l, LORA_Q, grad_slice(m, VIT_WQ, l),
                        grad_slice(m, VIT_BQ, l), BT, D, D, 0);
        linear_backward(m, a->dxn, a->dk, xn, l, LORA_K, grad_slice(m, VIT_WK, l),
                        grad_slice(m, VIT_BK, l), BT, D, D, 1);
        linear_backward(m, a->dxn, a->dv, xn, l, LORA_V, grad_slice(m, VIT_WV, l),
                        grad_slice(m, VIT_BV, l), BT, D, D, 1);
        /* xn = LN1(x): accumulates into d(x) */
        be->layernorm_backward(be, dresid, grad_slice(m, VIT_LN1_W, l), grad_slice(m, VIT_LN1_B, l),
                               a->dxn, x, layer_slice(w[VIT_LN1_W], D, l), a->mean1 + lo,
                               a->rstd1 + lo, BT, D);
    }
    if (!full) return m->loss_out ? device_check(be) : device_sync(be); /* the end of a backward */

    /* resid_0 = LN_pre(x0) (CLIP): dx0 = LN_pre'(dresid) */
    Real *dx0 = a->dresid;
    if (c->pre_norm) {
        be->zero(be, a->dxn, BTD * sizeof(Real));
        be->layernorm_backward(be, a->dxn, m->dw.tensors[VIT_LN_PRE_W], m->dw.tensors[VIT_LN_PRE_B],
                               a->dresid, a->x0, w[VIT_LN_PRE_W], a->mean0, a->rstd0, BT, D);
        dx0 = a->dxn;
    }
    /* x0[b] = [cls; pemb[b]] + pos: dpos = sum_b dx0[b], dcls = sum_b dx0[b, 0],
     * dpemb[b] = dx0[b, 1:] */
    be->bias_backward(be, m->dw.tensors[VIT_POS], dx0, B, T * D);
    for (int b = 0; b < B; b++) {
        be->bias_backward(be, m->dw.tensors[VIT_CLS], dx0 + (size_t)b * T * D, 1, D);
        be->copy(be, a->pemb + (size_t)b * NP * D, dx0 + ((size_t)b * T + 1) * D,
                 (size_t)NP * rowb);
    }
    /* pemb = patches Wp^T + bp */
    if (w[VIT_PATCH_B]) be->bias_backward(be, m->dw.tensors[VIT_PATCH_B], a->pemb, B * NP, D);
    be->matmul(be, m->dw.tensors[VIT_PATCH_W], a->pemb, a->patches, D, CPP, B * NP, 1, 0, 1, 1);
    return m->loss_out ? device_check(be) : device_sync(be);
}
