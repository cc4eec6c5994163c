/* Llama forward and backward, layer by layer, on the backend seam.
 * Banners: config and size tables / build and free / activations / forward / backward /
 * LoRA plumbing. Generation with a key/value cache lives in llama_decode.c. The backward
 * mirrors the forward in reverse; each step names the forward line it differentiates. */
#include "core/model/llama.h"

#include <math.h>
#include <string.h>

#include "core/base/error.h"
#include "core/base/philox.h"
#include "core/model/device.h"
#include "core/model/llama_internal.h"

/* ------------------------------------------------------------------------------------------
 * config and size tables */

static const char *const param_names[LLAMA_NUM_PARAM_TENSORS] = {
    "token_embedding", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3",
    "rms_final", "wcls",
};

const char *llama_param_name(int tensor) {
    return (tensor >= 0 && tensor < LLAMA_NUM_PARAM_TENSORS) ? param_names[tensor] : "?";
}

int llama_config_validate(const LlamaConfig *c) {
    const struct { const char *name; int value; } positive[] = {
        {"dim", c->dim},           {"hidden_dim", c->hidden_dim}, {"n_layers", c->n_layers},
        {"n_heads", c->n_heads},   {"n_kv_heads", c->n_kv_heads}, {"vocab_size", c->vocab_size},
        {"seq_len", c->seq_len},
    };
    for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++)
        if (positive[i].value <= 0)
            return error_set("Llama config field %s must be a positive integer, got %d.",
                             positive[i].name, positive[i].value);
    if (c->dim % c->n_heads != 0)
        return error_set("Llama config: dim (%d) must be divisible by n_heads (%d).", c->dim,
                         c->n_heads);
    if ((c->dim / c->n_heads) % 2 != 0)
        return error_set("Llama config: head size dim/n_heads = %d must be even for rotary "
                         "embeddings.", c->dim / c->n_heads);
    if (c->n_heads % c->n_kv_heads != 0)
        return error_set("Llama config: n_heads (%d) must be a multiple of n_kv_heads (%d).",
                         c->n_heads, c->n_kv_heads);
    if (!(c->rope_theta > 0.0f))
        return error_set("Llama config: rope_theta must be positive, got %g.", (double)c->rope_theta);
    if (!(c->norm_eps > 0.0f))
        return error_set("Llama config: norm_eps must be positive, got %g.", (double)c->norm_eps);
    if (c->rope_style != ROPE_INTERLEAVED && c->rope_style != ROPE_HALF)
        return error_set("Llama config: rope_style must be 0 (interleaved) or 1 (half), got %d.",
                         (int)c->rope_style);
    if (c->seq_len > LLAMA_MAX_SEQ_LEN)
        return error_set("Llama config: seq_len %d is above lorasc's limit of %d positions.",
                         c->seq_len, LLAMA_MAX_SEQ_LEN);
    /* the parameter count in double (exact far beyond the limit): no size_t product below
     * can overflow once it is under LLAMA_MAX_PARAMS */
    const double C = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    const double HD = (double)(c->dim / c->n_heads), kv = c->n_kv_heads * HD;
    const double n = V * C * (c->tied_embeddings ? 1 : 2) + L * (2 * C + 2 * C * C + 2 * kv * C + 3 * H * C) + C;
    if (n > (double)LLAMA_MAX_PARAMS)
        return error_set("Llama config: dim %d, hidden_dim %d, %d layers and vocab %d make %.3g "
                         "parameters, above lorasc's limit of %.3g.", c->dim, c->hidden_dim,
                         c->n_layers, c->vocab_size, n, (double)LLAMA_MAX_PARAMS);
    return LSC_OK;
}

void llama_tensor_shape(const LlamaConfig *c, int tensor, int64_t *rows, int64_t *cols) {
    const int64_t C = c->dim, H = c->hidden_dim, HD = c->dim / c->n_heads;
    const int64_t Q = (int64_t)c->n_heads * HD, KV = (int64_t)c->n_kv_heads * HD;
    *cols = C;
    switch (tensor) {
    case LLAMA_TOKEN_EMBEDDING: case LLAMA_WCLS: *rows = c->vocab_size; break;
    case LLAMA_RMS_ATT: case LLAMA_RMS_FFN: case LLAMA_RMS_FINAL: *rows = C; *cols = 0; break;
    case LLAMA_WQ: *rows = Q; break;
    case LLAMA_WK: case LLAMA_WV: *rows = KV; break;
    case LLAMA_WO: *rows = C; *cols = Q; break;
    case LLAMA_W1: case LLAMA_W3: *rows = H; break;
    case LLAMA_W2: *rows = C; *cols = H; break;
    default: LSC_ASSERT(0);
    }
}

void llama_param_sizes(const LlamaConfig *c, size_t sizes[LLAMA_NUM_PARAM_TENSORS]) {
    const size_t C = (size_t)c->dim, H = (size_t)c->hidden_dim, L = (size_t)c->n_layers;
    const size_t V = (size_t)c->vocab_size, HD = C / (size_t)c->n_heads;
    const size_t qdim = (size_t)c->n_heads * HD, kvdim = (size_t)c->n_kv_heads * HD;
    sizes[LLAMA_TOKEN_EMBEDDING] = V * C;
    sizes[LLAMA_RMS_ATT] = L * C;
    sizes[LLAMA_WQ] = L * qdim * C;
    sizes[LLAMA_WK] = L * kvdim * C;
    sizes[LLAMA_WV] = L * kvdim * C;
    sizes[LLAMA_WO] = L * C * qdim;
    sizes[LLAMA_RMS_FFN] = L * C;
    sizes[LLAMA_W1] = L * H * C;
    sizes[LLAMA_W2] = L * C * H;
    sizes[LLAMA_W3] = L * H * C;
    sizes[LLAMA_RMS_FINAL] = C;
    sizes[LLAMA_WCLS] = c->tied_embeddings ? 0 : V * C;
}

/* Points tensors[i] into block by the size table; the classifier aliases the embedding
 * when tied. */
static void carve_weights(LlamaWeights *w, Real *block, const size_t sizes[LLAMA_NUM_PARAM_TENSORS]) {
    Real *p = block;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        w->tensors[i] = sizes[i] ? p : NULL;
        p += sizes[i];
    }
    if (!w->tensors[LLAMA_WCLS]) w->tensors[LLAMA_WCLS] = w->tensors[LLAMA_TOKEN_EMBEDDING];
}

/* ------------------------------------------------------------------------------------------
 * build and free */

int llama_head_dim(const LlamaConfig *c) { return c->dim / c->n_heads; }

/* cos/sin of p * theta^(-2i/HD) for p < seq_len, i < HD/2, computed in double. */
static int build_rope_tables(Llama *m) {
    const LlamaConfig *c = &m->config;
    const int half = llama_head_dim(c) / 2;
    const size_t n = (size_t)c->seq_len * (size_t)half;
    Real *cos_h = malloc(n * sizeof(Real)), *sin_h = malloc(n * sizeof(Real));
    if (!cos_h || !sin_h) {
        free(cos_h);
        free(sin_h);
        return error_set("Out of memory building the RoPE tables of a Llama model (seq_len %d, "
                         "%zu bytes).", c->seq_len, 2 * n * sizeof(Real));
    }
    for (int p = 0; p < c->seq_len; p++)
        for (int i = 0; i < half; i++) {
            double freq = pow((double)c->rope_theta, -2.0 * i / (double)llama_head_dim(c));
            cos_h[(size_t)p * half + i] = (Real)cos(p * freq);
            sin_h[(size_t)p * half + i] = (Real)sin(p * freq);
        }
    m->be->to_device(m->be, m->rope_cos, cos_h, n * sizeof(Real));
    m->be->to_device(m->be, m->rope_sin, sin_h, n * sizeof(Real));
    free(cos_h);
    free(sin_h);
    return LSC_OK;
}

int llama_create(Llama *m, Backend *be, const LlamaConfig *c) {
    memset(m, 0, sizeof *m);
    if (llama_config_validate(c) != LSC_OK) return LSC_ERR;
    m->config = *c;
    m->be = be;
    llama_param_sizes(c, m->param_sizes);
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) m->num_params += m->param_sizes[i];
    m->params_len = m->num_params;
    m->params = be->alloc(be, m->num_params * sizeof(Real));
    const size_t rope_n = (size_t)c->seq_len * (size_t)(llama_head_dim(c) / 2);
    m->rope_cos = be->alloc(be, rope_n * sizeof(Real));
    m->rope_sin = be->alloc(be, rope_n * sizeof(Real));
    if (!m->params || !m->rope_cos || !m->rope_sin) {
        const size_t n = m->num_params; /* llama_free clears it */
        llama_free(m);
        return device_fail(be, "Out of memory allocating a Llama model with %zu parameters (%zu "
                           "bytes) and seq_len %d.", n, n * sizeof(Real), c->seq_len);
    }
    carve_weights(&m->w, m->params, m->param_sizes);
    if (build_rope_tables(m) != LSC_OK || device_sync(be) != LSC_OK) {
        llama_free(m);
        return LSC_ERR;
    }
    return LSC_OK;
}

void llama_free(Llama *m) {
    Backend *be = m->be;
    if (be) {
        llama_free_bf16(m);
        llama_packed_free(m); /* an fp32 model's copies */
        void *blocks[] = {m->params, m->grads, m->rope_cos, m->rope_sin, m->tokens, m->targets,
                          m->head_idx};
        for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
            if (blocks[i]) be->free(be, blocks[i]);
        arena_free(&m->acts_arena);
    }
    memset(m, 0, sizeof *m);
}

int llama_clone(Llama *m, const Llama *src) {
    if (src->precision != PRECISION_FP32) return llama_clone_bf16(m, src);
    if (llama_create(m, src->be, &src->config) != LSC_OK) return LSC_ERR;
    src->be->copy(src->be, m->params, src->params, src->num_params * sizeof(Real));
    if (device_sync(src->be) != LSC_OK) {
        llama_free(m);
        return LSC_ERR;
    }
    return LSC_OK;
}

void llama_init_random(Llama *m, uint64_t seed) {
    const size_t n = m->num_params;
    Real *host = malloc(n * sizeof(Real));
    LSC_ASSERT(host != NULL);
    Real *p = host;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        const size_t sz = m->param_sizes[i];
        const int is_norm = i == LLAMA_RMS_ATT || i == LLAMA_RMS_FFN || i == LLAMA_RMS_FINAL;
        if (is_norm)
            for (size_t j = 0; j < sz; j++) p[j] = 1;
        else
            philox_normal(p, sz, seed, philox_stream(RNG_PURPOSE_INIT, 0xFFFF, (uint32_t)i, 0), 0.0,
                          0.02);
        p += sz;
    }
    m->be->to_device(m->be, m->params, host, n * sizeof(Real));
    free(host);
    llama_packed_free(m); /* every matrix changed */
}

int llama_enable_full_grads(Llama *m) {
    if (m->grads) return LSC_OK;
    if (m->precision != PRECISION_FP32)
        return error_set("Full training needs every weight in fp32: a bf16 base is for LoRA, "
                         "DoRA and the cascade; use precision = \"fp32\".");
    m->grads = m->be->alloc(m->be, m->num_params * sizeof(Real));
    if (!m->grads)
        return device_fail(m->be, "Out of memory allocating gradients for %zu parameters.",
                           m->num_params);
    carve_weights(&m->dw, m->grads, m->param_sizes);
    llama_packed_free(m); /* the weights now change every step: packing is decided again (none) */
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * activations: carved from an arena for (B, T); re-carved when the shape changes, the block
 * grown only when the new shape needs more room. */

typedef struct ActSlot {
    Real **ptr;
    size_t n;
} ActSlot;

/* Entries of each layer's att (and of datt): the B NH T T probabilities on the CPU; where
 * memory is the device's, the flash-style attention keeps only the log-sum-exp of each row
 * there (backend.h), so B NH T: a Llama-2-7B layer at T = 1024 then holds 128 KiB per
 * sequence there instead of 128 MiB. */
static size_t att_entries(const Llama *m, int B, int T) {
    const size_t rows = (size_t)B * (size_t)m->config.n_heads * (size_t)T;
    return device_is_host(m->be) ? rows * (size_t)T : rows;
}

/* The activations are kept in bf16 between forward and backward (Llama.acts_precision) */
static int stores_bf16(const Llama *m) {
    return !m->forward_only && m->acts_precision == PRECISION_BF16;
}

/* full_logits: every position's logits are kept (an inference forward, or a caller that reads
 * them); else the head keeps llama_head_chunk's rows at a time (llama_head.c). */
static void carve_acts(Llama *m, int B, int T, int full_logits, Arena *arena) {
    const LlamaConfig *c = &m->config;
    /* forward_only: one layer's activations, reused by every layer (the residual stream
     * overwritten in place: a layer's input is dead once its attention block has added it);
     * stored in bf16: one layer of those a backward reads (the working copy, store16 the
     * layers'), every layer of att and the norms' rstd */
    const int one = m->forward_only || stores_bf16(m);
    const size_t L = m->forward_only ? 1 : (size_t)c->n_layers;
    const size_t LS = one ? 1 : (size_t)c->n_layers;
    const size_t resid_layers = one ? 1 : L + 1;
    const size_t C = (size_t)c->dim, H = (size_t)c->hidden_dim;
    const size_t BT = (size_t)B * (size_t)T, V = (size_t)c->vocab_size;
    const size_t HD = (size_t)llama_head_dim(c), qdim = (size_t)c->n_heads * HD;
    const size_t kvdim = (size_t)c->n_kv_heads * HD;
    const size_t attn = att_entries(m, B, T);
    const size_t head_rows = full_logits ? BT : (size_t)llama_head_chunk(m, (int)BT);
    LlamaActs *a = &m->acts;
    const ActSlot slots[] = {
        {&a->resid, resid_layers * BT * C}, {&a->xn_att, LS * BT * C}, {&a->rstd_att, L * BT},
        {&a->q, LS * BT * qdim},       {&a->k, LS * BT * kvdim},   {&a->v, LS * BT * kvdim},
        {&a->att, L * attn},           {&a->atty, LS * BT * qdim}, {&a->resid_mid, LS * BT * C},
        {&a->xn_ffn, LS * BT * C},     {&a->rstd_ffn, L * BT},     {&a->gate, LS * BT * H},
        {&a->up, LS * BT * H},         {&a->swi, LS * BT * H},     {&a->xn_final, BT * C},
        {&a->rstd_final, BT},          {&a->logits, head_rows * V}, {&a->losses, BT},
        {&a->lse, BT},                 {&a->dloss, BT},            {&a->proj, BT * C},
        {&a->dresid, BT * C},          {&a->dxn, BT * C},          {&a->dq, BT * qdim},
        {&a->dk, BT * kvdim},          {&a->dv, BT * kvdim},       {&a->datt, attn},
        {&a->datty, BT * qdim},        {&a->dgate, BT * H},        {&a->dup, BT * H},
        {&a->dswi, BT * H},
    };
    arena_reset(arena);
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) *slots[i].ptr = arena_alloc(arena, slots[i].n);
    /* bf16: 2 bytes per logit, carved as whole floats */
    a->dlogits16 = m->precision == PRECISION_BF16
                       ? (uint16_t *)arena_alloc(arena, (head_rows * V + 1) / 2)
                       : NULL;
    /* a bf16 base: a shared input of the frozen products rounded once (shared_input16) */
    a->x16 = m->precision == PRECISION_BF16 && m->be->matmul_bf16_rounded && m->be->to_bf16
                 ? (uint16_t *)arena_alloc(arena, (BT * C + 1) / 2)
                 : NULL;
    /* bf16 store: 2 bytes per stored activation of every layer */
    const size_t per_layer = BT * (4 * C + 2 * qdim + 2 * kvdim + 3 * H);
    a->store16 = stores_bf16(m)
                     ? (uint16_t *)arena_alloc(arena, ((size_t)c->n_layers * per_layer + 1) / 2)
                     : NULL;
    m->logits_rows = (int)head_rows;
}

static int llama_reserve(Llama *m, int B, int T, int full_logits) {
    if (m->B == B && m->T == T && m->acts_arena.base && m->logits_rows >= (full_logits ? B * T : 0) &&
        m->acts_one_layer == (m->forward_only != 0) && m->acts_carved16 == stores_bf16(m))
        return LSC_OK;
    Backend *be = m->be;
    Arena measure = arena_measure();
    carve_acts(m, B, T, full_logits, &measure);
    const size_t rows = (size_t)B * (size_t)T;
    m->B = m->T = 0;
    if (arena_reserve(&m->acts_arena, be, measure.used) != LSC_OK) return LSC_ERR;
    if (rows > m->row_capacity) {
        if (m->tokens) be->free(be, m->tokens);
        if (m->targets) be->free(be, m->targets);
        if (m->head_idx) be->free(be, m->head_idx);
        m->tokens = be->alloc(be, rows * sizeof(int32_t));
        m->targets = be->alloc(be, rows * sizeof(int32_t));
        m->head_idx = be->alloc(be, rows * sizeof(int32_t));
        m->row_capacity = (m->tokens && m->targets && m->head_idx) ? rows : 0;
        if (!m->row_capacity)
            return device_fail(be, "Out of memory allocating token buffers for %d x %d tokens.",
                               B, T);
    }
    carve_acts(m, B, T, full_logits, &m->acts_arena);
    m->acts_one_layer = m->forward_only != 0;
    m->acts_carved16 = stores_bf16(m);
    m->B = B;
    m->T = T;
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * forward */

/* The slice of a stacked [L, ...] weight for layer l. */
Real *llama_layer_slice(Real *stacked, size_t per_layer, int l) {
    return stacked + (size_t)l * per_layer;
}

/* y[rows,out] (=, or += when accumulate) x[rows,in] W^T */
void llama_linear(Backend *be, Real *y, const Real *x, const Real *w, int rows, int in, int out,
                   int accumulate) {
    be->matmul(be, y, x, w, rows, out, in, 0, 1, 1, (Real)(accumulate ? 1 : 0));
}

int llama_tensor_of_target(int target) {
    static const int tensor_of_target[LORA_NUM_TARGETS] = {
        [LORA_Q] = LLAMA_WQ,    [LORA_K] = LLAMA_WK,  [LORA_V] = LLAMA_WV,   [LORA_O] = LLAMA_WO,
        [LORA_GATE] = LLAMA_W1, [LORA_UP] = LLAMA_W3, [LORA_DOWN] = LLAMA_W2,
    };
    return tensor_of_target[target];
}

Real *llama_target_weight(Llama *m, int target, int layer) {
    const int tensor = llama_tensor_of_target(target);
    const size_t per_layer = m->param_sizes[tensor] / (size_t)m->config.n_layers;
    LSC_ASSERT(m->w.tensors[tensor] != NULL); /* bf16: a master, made by llama_ensure_masters */
    return llama_layer_slice(m->w.tensors[tensor], per_layer, layer);
}

void llama_weight_matmul(Llama *m, Real *y, const Real *x, int tensor, int l, int rows,
                         int backward, int accumulate) {
    Backend *be = m->be;
    int64_t out, in;
    llama_tensor_shape(&m->config, tensor, &out, &in);
    const size_t per_layer = (size_t)out * (size_t)in;
    const Real beta = (Real)(accumulate ? 1 : 0);
    /* forward y = x W^T: N = out, K = in, W transposed; backward y = x W: N = in, K = out */
    const int N = backward ? (int)in : (int)out, K = backward ? (int)out : (int)in;
    BackendPacked **packed = llama_packed_slot(m, tensor, l, backward); /* NULL: not packed */
    if (m->precision == PRECISION_BF16) {
        const uint16_t *w = m->w16[tensor] + (size_t)l * per_layer;
        if (packed) be->matmul_bf16_frozen(be, y, x, w, packed, rows, N, K, !backward, 1, beta);
        else be->matmul_bf16(be, y, x, w, rows, N, K, !backward, 1, beta);
        return;
    }
    const Real *w = m->w.tensors[tensor] + (size_t)l * per_layer;
    if (packed) be->matmul_frozen(be, y, x, w, packed, rows, N, K, !backward, 1, beta);
    else if (backward) be->matmul(be, y, x, w, rows, N, K, 0, 0, 1, beta);
    else llama_linear(be, y, x, w, rows, (int)in, (int)out, accumulate);
}

/* The input several frozen products share (xn for q, k, v; xn2 for gate, up) rounded to bf16
 * once, in acts.x16, for frozen_forward; NULL where each product rounds its own (fp32, or a
 * backend without matmul_bf16_rounded). */
static const uint16_t *shared_input16(Llama *m, const Real *x, size_t n) {
    if (!m->acts.x16) return NULL;
    m->be->to_bf16(m->be, m->acts.x16, x, n);
    return m->acts.x16;
}

/* y = x W^T for a frozen matrix, as llama_weight_matmul's forward; x16 (shared_input16 of x,
 * or NULL) spares the product its own rounding of x: the same bits (matmul_bf16_rounded on
 * to_bf16(x) is matmul_bf16 on x, kernels/backend.h). */
static void frozen_forward(Llama *m, Real *y, const Real *x, const uint16_t *x16, int tensor,
                           int l, int rows) {
    if (!x16) {
        llama_weight_matmul(m, y, x, tensor, l, rows, 0, 0);
        return;
    }
    Backend *be = m->be;
    int64_t out, in;
    llama_tensor_shape(&m->config, tensor, &out, &in);
    const uint16_t *w = m->w16[tensor] + (size_t)l * (size_t)out * (size_t)in;
    BackendPacked **packed = llama_packed_slot(m, tensor, l, 0);
    if (packed) be->matmul_bf16_rounded_frozen(be, y, x16, w, packed, rows, (int)out, (int)in, 1, 1, 0);
    else be->matmul_bf16_rounded(be, y, x16, w, rows, (int)out, (int)in, 1, 1, 0);
}

void llama_lora_shapes(const LlamaConfig *c, int in_dim[LORA_NUM_TARGETS],
                       int out_dim[LORA_NUM_TARGETS]) {
    const int qdim = c->dim, kvdim = c->n_kv_heads * (c->dim / c->n_heads);
    const int ins[LORA_NUM_TARGETS] = {c->dim, c->dim, c->dim, qdim, c->dim, c->dim, c->hidden_dim};
    const int outs[LORA_NUM_TARGETS] = {qdim, kvdim, kvdim, c->dim, c->hidden_dim, c->hidden_dim,
                                        c->dim};
    memcpy(in_dim, ins, sizeof ins);
    memcpy(out_dim, outs, sizeof outs);
}

/* LoraWeightFn over this model: the base weight of (layer, target). */
static const Real *lora_base_weight(void *model, int layer, int target) {
    return llama_target_weight(model, target, layer);
}

void llama_init_lora_magnitudes(Llama *m) {
    if (m->lora) lora_init_magnitudes(m->lora, lora_base_weight, m);
}

void llama_attach_lora(Llama *m, LoraAdapters *lora) {
    if (lora) {
        int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
        llama_lora_shapes(&m->config, in, out);
        LSC_ASSERT(lora->n_layers == m->config.n_layers);
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            LSC_ASSERT(!lora_enabled(lora, t) || (lora->in_dim[t] == in[t] && lora->out_dim[t] == out[t]));
    }
    m->lora = lora;
    if (lora && lora->config.use_dora && !lora->magnitudes_set) llama_init_lora_magnitudes(m);
}

void llama_merge_lora(Llama *m, float sign) {
    LoraAdapters *lora = m->lora;
    if (!lora) return;
    LSC_ASSERT(lora->merged == (sign < 0));
    for (int l = 0; l < m->config.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            if (lora_enabled(lora, t)) lora_apply_to_weight(lora, llama_target_master(m, t, l), l, t, sign);
    lora->merged = sign > 0;
}

/* 1 when (target) has an active (attached, unmerged) DoRA magnitude. */
static int dora_active(const Llama *m, int target) {
    return m->lora && !m->lora->merged && lora_has_magnitude(m->lora, target);
}

/* Applies the attached adapter of (layer, target) to the projection y = x W^T, if any: the
 * LoRA branch, then DoRA's output scaling (which needs y to hold the projection alone). */
void llama_adapter_forward(Llama *m, Real *y, const Real *x, int l, int target, int rows) {
    if (!m->lora) return;
    lora_forward(m->lora, y, x, l, target, rows);
    if (dora_active(m, target)) /* (the weight is read only then: bf16 keeps masters only) */
        lora_magnitude_forward(m->lora, y, llama_target_weight(m, target, l), l, target, rows);
}

/* The backward of DoRA's output scaling for (layer, target): accumulates dm and returns the
 * gradient of the unscaled projection, written to dproj (may alias dy); dy itself without
 * DoRA. Its result is what the frozen matmul and adapter_backward of this slot take. */
static const Real *magnitude_backward(Llama *m, Real *dproj, const Real *dy, int l, int target,
                                      int rows) {
    if (!dora_active(m, target)) return dy;
    return lora_magnitude_backward(m->lora, dproj, dy, l, target, rows);
}

static void adapter_backward(Llama *m, Real *dx, const Real *dy, const Real *x, int l, int target,
                             int rows) {
    if (m->lora && !m->lora->merged) lora_backward(m->lora, dx, dy, x, l, target, rows);
}

/* out[rows,C] = resid + x W^T with the adapter of (l, target) on the projection (o, down).
 * The residual add is fused into the GEMM (out = resid; out += x W^T, the LoRA branch adding
 * into out too), except under DoRA, whose scaling must reach the projection alone: then the
 * projection goes to the proj scratch and residual_forward adds it. */
void llama_residual_projection(Llama *m, Real *out, const Real *resid, const Real *x, int l,
                               int target, int rows, int in, Real *proj) {
    Backend *be = m->be;
    const int C = m->config.dim, tensor = llama_tensor_of_target(target);
    (void)in;
    if (!dora_active(m, target)) {
        be->copy(be, out, resid, (size_t)rows * C * sizeof(Real));
        llama_weight_matmul(m, out, x, tensor, l, rows, 0, 1);
        llama_adapter_forward(m, out, x, l, target, rows);
        return;
    }
    llama_weight_matmul(m, proj, x, tensor, l, rows, 0, 0);
    llama_adapter_forward(m, proj, x, l, target, rows);
    be->residual_forward(be, out, resid, proj, (size_t)rows * C);
}

static int check_tokens(const Llama *m, const int32_t *tokens, const int32_t *targets, int n) {
    const int V = m->config.vocab_size;
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= V)
            return error_set("Token %d at position %d is outside the vocabulary [0, %d).", tokens[i],
                             i, V);
        if (targets && (targets[i] < -1 || targets[i] >= V))
            return error_set("Target %d at position %d is outside [0, %d) (use -1 to mask a "
                             "position out of the loss).", targets[i], i, V);
    }
    return LSC_OK;
}

/* A bf16 run's attention runs on the tensor cores where the backend has them (CUDA: bf16
 * operands, fp32 softmax and sums); elsewhere, and in fp32 runs, the fp32 kernels. */
static int tensor_core_attention(const Llama *m) {
    return m->precision == PRECISION_BF16 && m->be->attention_forward_bf16 &&
           m->be->attention_backward_bf16;
}

/* ---- stored activations (Llama.acts_precision bf16) ----
 * A layer's stored activations in store16 follow one another in this order: its input x,
 * xn, q, k, v, atty, mid, xn2, gate, up, swi (carve_acts sizes the layer: 4 C + 2 qdim +
 * 2 kvdim + 3 H per row). list[j] is the fp32 working buffer of entry j (one layer's). */
enum { STORED_ACTS = 11 };
static size_t stored_acts(Llama *m, StoredAct list[STORED_ACTS]) {
    const LlamaConfig *c = &m->config;
    const size_t BT = (size_t)m->B * (size_t)m->T, C = (size_t)c->dim, H = (size_t)c->hidden_dim;
    const size_t HD = (size_t)llama_head_dim(c), qdim = (size_t)c->n_heads * HD;
    const size_t kvdim = (size_t)c->n_kv_heads * HD;
    LlamaActs *a = &m->acts;
    const StoredAct all[STORED_ACTS] = {
        {a->resid, BT * C}, {a->xn_att, BT * C},    {a->q, BT * qdim},      {a->k, BT * kvdim},
        {a->v, BT * kvdim}, {a->atty, BT * qdim},   {a->resid_mid, BT * C}, {a->xn_ffn, BT * C},
        {a->gate, BT * H},  {a->up, BT * H},        {a->swi, BT * H},
    };
    size_t per_layer = 0;
    for (int j = 0; j < STORED_ACTS; j++) list[j] = all[j], per_layer += all[j].n;
    return per_layer;
}

/* Layer l's entries [first, last) between the working buffers and store16: pack (to bf16)
 * or unpack (back to fp32, exactly the rounded values). */
static void move_stored(Llama *m, int l, int first, int last, int pack) {
    StoredAct list[STORED_ACTS];
    const size_t per_layer = stored_acts(m, list);
    stored_acts_move(m->be, m->acts.store16 + (size_t)l * per_layer, list, first, last, pack);
}

/* sparse_ok: the caller needs the loss and gradients only, not the masked rows' logits */
static int forward(Llama *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                   int sparse_ok, double *row_loss) {
    const LlamaConfig *c = &m->config;
    Backend *be = m->be;
    if (B <= 0 || T <= 0)
        return error_set("Batch shape must be positive, got B = %d, T = %d.", B, T);
    if (T > c->seq_len)
        return error_set("Sequence of %d tokens is longer than the model's seq_len %d.", T, c->seq_len);
    const int BT = B * T;
    if (check_tokens(m, tokens, targets, BT) != LSC_OK) return LSC_ERR;
    /* a caller of llama_forward reads every position's logits (acts.logits) */
    if (llama_reserve(m, B, T, !targets || !sparse_ok) != LSC_OK) return LSC_ERR;
    if (m->lora && !m->lora->merged && lora_reserve(m->lora, BT) != LSC_OK) return LSC_ERR;
    llama_refresh_copies(m);

    const int C = c->dim, H = c->hidden_dim, L = c->n_layers;
    const int NH = c->n_heads, NKV = c->n_kv_heads, HD = llama_head_dim(c);
    const int qdim = NH * HD, kvdim = NKV * HD;
    const size_t BTC = (size_t)BT * C, BTH = (size_t)BT * H;
    const size_t attn = att_entries(m, B, T);
    LlamaActs *a = &m->acts;
    Real *const *w = m->w.tensors;

    be->to_device(be, m->tokens, tokens, (size_t)BT * sizeof(int32_t));
    be->embedding_forward(be, a->resid, m->tokens, w[LLAMA_TOKEN_EMBEDDING], BT, C);

    /* layer l's activations at l * (a layer's size), or all at one place (forward_only; the
     * working layer of a bf16 store, whose att and rstd are still per layer) */
    const int store = m->acts_carved16;
    const size_t keep = m->acts_one_layer || store ? 0 : 1, keep_att = m->acts_one_layer ? 0 : 1;
    for (int l = 0; l < L; l++) {
        const size_t i = keep * (size_t)l, ia = keep_att * (size_t)l;
        Real *x = a->resid + i * BTC, *xn = a->xn_att + i * BTC, *rstd = a->rstd_att + ia * BT;
        Real *q = a->q + i * BT * qdim, *k = a->k + i * BT * kvdim;
        Real *v = a->v + i * BT * kvdim, *att = a->att + ia * attn;
        Real *atty = a->atty + i * BT * qdim, *mid = a->resid_mid + i * BTC;
        Real *xn2 = a->xn_ffn + i * BTC, *rstd2 = a->rstd_ffn + ia * BT;
        Real *gate = a->gate + i * BTH, *up = a->up + i * BTH, *swi = a->swi + i * BTH;
        Real *out = a->resid + keep * (size_t)(l + 1) * BTC; /* one layer: in place of x */
        if (store) move_stored(m, l, 0, 1, 1); /* x, before out overwrites it */

        /* attention block: mid = x + attn(rope(xn Wq^T), rope(xn Wk^T), xn Wv^T) Wo^T */
        be->rmsnorm_forward(be, xn, rstd, x, llama_layer_slice(w[LLAMA_RMS_ATT], C, l), BT, C, c->norm_eps);
        const uint16_t *xn16 = shared_input16(m, xn, BTC);
        frozen_forward(m, q, xn, xn16, llama_tensor_of_target(LORA_Q), l, BT);
        llama_adapter_forward(m, q, xn, l, LORA_Q, BT);
        frozen_forward(m, k, xn, xn16, llama_tensor_of_target(LORA_K), l, BT);
        llama_adapter_forward(m, k, xn, l, LORA_K, BT);
        frozen_forward(m, v, xn, xn16, llama_tensor_of_target(LORA_V), l, BT);
        llama_adapter_forward(m, v, xn, l, LORA_V, BT);
        be->rope_forward(be, q, m->rope_cos, m->rope_sin, B, T, NH, HD, 0, c->rope_style);
        be->rope_forward(be, k, m->rope_cos, m->rope_sin, B, T, NKV, HD, 0, c->rope_style);
        if (tensor_core_attention(m))
            be->attention_forward_bf16(be, atty, att, q, k, v, B, T, NH, NKV, HD, 1);
        else
            be->attention_forward(be, atty, att, q, k, v, B, T, NH, NKV, HD);
        llama_residual_projection(m, mid, x, atty, l, LORA_O, BT, qdim, a->proj);

        /* feed-forward block: out = mid + (silu(xn2 W1^T) * (xn2 W3^T)) W2^T */
        be->rmsnorm_forward(be, xn2, rstd2, mid, llama_layer_slice(w[LLAMA_RMS_FFN], C, l), BT, C, c->norm_eps);
        const uint16_t *xn2_16 = shared_input16(m, xn2, BTC);
        frozen_forward(m, gate, xn2, xn2_16, llama_tensor_of_target(LORA_GATE), l, BT);
        llama_adapter_forward(m, gate, xn2, l, LORA_GATE, BT);
        frozen_forward(m, up, xn2, xn2_16, llama_tensor_of_target(LORA_UP), l, BT);
        llama_adapter_forward(m, up, xn2, l, LORA_UP, BT);
        be->swiglu_forward(be, swi, gate, up, BTH);
        llama_residual_projection(m, out, mid, swi, l, LORA_DOWN, BT, H, a->proj);
        if (store) move_stored(m, l, 1, STORED_ACTS, 1);
    }

    be->rmsnorm_forward(be, a->xn_final, a->rstd_final, a->resid + keep * (size_t)L * BTC,
                        w[LLAMA_RMS_FINAL], BT, C, c->norm_eps);
    m->mean_loss = 0.0;
    m->n_loss_tokens = 0;
    m->head_rows = 0;
    m->head_grad = HEAD_GRAD_NONE;
    if (!targets) {
        llama_weight_matmul(m, a->logits, a->xn_final, LLAMA_WCLS, 0, BT, 0, 0);
        return device_sync(be); /* the end of a forward: a failed op surfaces here */
    }
    return llama_head_forward(m, targets, BT, T, sparse_ok, row_loss);
}

int llama_forward(Llama *m, const int32_t *tokens, const int32_t *targets, int B, int T) {
    return forward(m, tokens, targets, B, T, 0, NULL);
}

int llama_forward_loss(Llama *m, const int32_t *tokens, const int32_t *targets, int B, int T) {
    return forward(m, tokens, targets, B, T, 1, NULL);
}

int llama_forward_row_losses(Llama *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                             double *row_loss) {
    return forward(m, tokens, targets, B, T, 1, row_loss);
}

/* ------------------------------------------------------------------------------------------
 * backward */

void llama_zero_grad(Llama *m) {
    if (m->grads) m->be->zero(m->be, m->grads, m->num_params * sizeof(Real));
    if (m->lora) m->be->zero(m->be, m->lora->grads, m->lora->num_params * sizeof(Real));
}

/* dW[out,in] += dy[rows,out]^T x[rows,in], only when full gradients are on. */
static void weight_grad(Llama *m, Real *dw, const Real *dy, const Real *x, int rows, int in, int out) {
    if (dw) m->be->matmul(m->be, dw, dy, x, out, in, rows, 1, 0, 1, 1);
}

/* The gradient slice of stacked tensor `tensor` for layer l, or NULL without full grads. */
static Real *grad_slice(Llama *m, int tensor, int l) {
    if (!m->grads) return NULL;
    const size_t per_layer = m->param_sizes[tensor] / (size_t)m->config.n_layers;
    return llama_layer_slice(m->dw.tensors[tensor], per_layer, l);
}

int llama_backward(Llama *m) {
    const LlamaConfig *c = &m->config;
    Backend *be = m->be;
    if (!m->acts_arena.base || m->n_loss_tokens == 0)
        return error_set("llama_backward needs a forward with at least one unmasked target first.");
    if (m->acts_one_layer)
        return error_set("llama_backward after an evaluation forward (forward_only keeps one "
                         "layer's activations): run the forward again without it.");
    if (!m->grads && (!m->lora || m->lora->merged))
        return error_set("Nothing to train: enable full gradients or attach an unmerged LoRA adapter.");
    const int B = m->B, T = m->T, BT = B * T;
    const int C = c->dim, H = c->hidden_dim, L = c->n_layers;
    const int NH = c->n_heads, NKV = c->n_kv_heads, HD = llama_head_dim(c);
    const int qdim = NH * HD, kvdim = NKV * HD;
    const size_t BTC = (size_t)BT * C, BTH = (size_t)BT * H;
    const size_t attn = att_entries(m, B, T);
    LlamaActs *a = &m->acts;
    Real *const *w = m->w.tensors;
    const int full = m->grads != NULL;

    llama_head_backward(m); /* d(xn_final) into a->dxn (llama_head.c) */
    be->zero(be, a->dresid, BTC * sizeof(Real));
    /* a bf16 store: the working layer (slot 0) holds each layer's activations in turn */
    const int store = m->acts_carved16;
    const size_t keep = store ? 0 : 1;
    be->rmsnorm_backward(be, a->dresid, full ? m->dw.tensors[LLAMA_RMS_FINAL] : NULL, a->dxn,
                         a->resid + keep * (size_t)L * BTC, w[LLAMA_RMS_FINAL], a->rstd_final,
                         BT, C);

    for (int l = L - 1; l >= 0; l--) {
        const size_t i = keep * (size_t)l;
        if (store) move_stored(m, l, 0, STORED_ACTS, 0);
        const Real *x = a->resid + i * BTC, *xn = a->xn_att + i * BTC;
        const Real *rstd = a->rstd_att + (size_t)l * BT;
        const Real *q = a->q + i * BT * qdim, *k = a->k + i * BT * kvdim;
        const Real *v = a->v + i * BT * kvdim, *att = a->att + l * attn;
        const Real *atty = a->atty + i * BT * qdim, *mid = a->resid_mid + i * BTC;
        const Real *xn2 = a->xn_ffn + i * BTC, *rstd2 = a->rstd_ffn + (size_t)l * BT;
        const Real *gate = a->gate + i * BTH, *up = a->up + i * BTH, *swi = a->swi + i * BTH;
        Real *dresid = a->dresid; /* d(out) on entry; d(mid), then d(x) as we go */

        /* out = mid + proj, proj = swi W2^T (DoRA-scaled): d(mid) += d(out) (kept in dresid),
         * dswi = dproj W2 with dproj = d(out), or d(out) (.) m/n under DoRA (in a->proj) */
        const Real *dproj = magnitude_backward(m, a->proj, dresid, l, LORA_DOWN, BT);
        llama_weight_matmul(m, a->dswi, dproj, LLAMA_W2, l, BT, 1, 0);
        weight_grad(m, grad_slice(m, LLAMA_W2, l), dproj, swi, BT, H, C);
        adapter_backward(m, a->dswi, dproj, swi, l, LORA_DOWN, BT);
        /* swi = silu(gate) * up */
        be->swiglu_backward(be, a->dgate, a->dup, a->dswi, gate, up, BTH);
        /* gate = xn2 W1^T, up = xn2 W3^T (DoRA scaling undone in place): dxn2 = dgate W1 + dup W3 */
        const Real *dgate = magnitude_backward(m, a->dgate, a->dgate, l, LORA_GATE, BT);
        const Real *dup = magnitude_backward(m, a->dup, a->dup, l, LORA_UP, BT);
        llama_weight_matmul(m, a->dxn, dgate, LLAMA_W1, l, BT, 1, 0);
        llama_weight_matmul(m, a->dxn, dup, LLAMA_W3, l, BT, 1, 1);
        weight_grad(m, grad_slice(m, LLAMA_W1, l), dgate, xn2, BT, C, H);
        weight_grad(m, grad_slice(m, LLAMA_W3, l), dup, xn2, BT, C, H);
        adapter_backward(m, a->dxn, dgate, xn2, l, LORA_GATE, BT);
        adapter_backward(m, a->dxn, dup, xn2, l, LORA_UP, BT);
        /* xn2 = rmsnorm(mid): accumulates into d(mid) */
        be->rmsnorm_backward(be, dresid, grad_slice(m, LLAMA_RMS_FFN, l), a->dxn, mid,
                             llama_layer_slice(w[LLAMA_RMS_FFN], C, l), rstd2, BT, C);

        /* mid = x + proj, proj = atty Wo^T (DoRA-scaled): d(x) += d(mid), datty = dproj Wo */
        dproj = magnitude_backward(m, a->proj, dresid, l, LORA_O, BT);
        llama_weight_matmul(m, a->datty, dproj, LLAMA_WO, l, BT, 1, 0);
        weight_grad(m, grad_slice(m, LLAMA_WO, l), dproj, atty, BT, qdim, C);
        adapter_backward(m, a->datty, dproj, atty, l, LORA_O, BT);
        if (tensor_core_attention(m))
            be->attention_backward_bf16(be, a->dq, a->dk, a->dv, a->datt, a->datty, atty, q, k, v,
                                        att, B, T, NH, NKV, HD, 1);
        else
            be->attention_backward(be, a->dq, a->dk, a->dv, a->datt, a->datty, q, k, v, att, B, T,
                                   NH, NKV, HD);
        /* q, k were rotated in place: rotate their gradients back */
        be->rope_backward(be, a->dq, m->rope_cos, m->rope_sin, B, T, NH, HD, 0, c->rope_style);
        be->rope_backward(be, a->dk, m->rope_cos, m->rope_sin, B, T, NKV, HD, 0, c->rope_style);
        /* q,k,v = xn W^T (DoRA scaling undone in place): dxn = dq Wq + dk Wk + dv Wv */
        const Real *dq = magnitude_backward(m, a->dq, a->dq, l, LORA_Q, BT);
        const Real *dk = magnitude_backward(m, a->dk, a->dk, l, LORA_K, BT);
        const Real *dv = magnitude_backward(m, a->dv, a->dv, l, LORA_V, BT);
        /* In LoRA mode nothing reads layer 0's input gradient (the embedding is frozen), so
         * its three input-gradient GEMMs and the rmsnorm backward are skipped. */
        const int need_dx = full || l > 0;
        if (need_dx) {
            llama_weight_matmul(m, a->dxn, dq, LLAMA_WQ, l, BT, 1, 0);
            llama_weight_matmul(m, a->dxn, dk, LLAMA_WK, l, BT, 1, 1);
            llama_weight_matmul(m, a->dxn, dv, LLAMA_WV, l, BT, 1, 1);
        }
        weight_grad(m, grad_slice(m, LLAMA_WQ, l), dq, xn, BT, C, qdim);
        weight_grad(m, grad_slice(m, LLAMA_WK, l), dk, xn, BT, C, kvdim);
        weight_grad(m, grad_slice(m, LLAMA_WV, l), dv, xn, BT, C, kvdim);
        adapter_backward(m, need_dx ? a->dxn : NULL, dq, xn, l, LORA_Q, BT);
        adapter_backward(m, need_dx ? a->dxn : NULL, dk, xn, l, LORA_K, BT);
        adapter_backward(m, need_dx ? a->dxn : NULL, dv, xn, l, LORA_V, BT);
        /* xn = rmsnorm(x): accumulates into d(x) */
        if (need_dx)
            be->rmsnorm_backward(be, dresid, grad_slice(m, LLAMA_RMS_ATT, l), a->dxn, x,
                                 llama_layer_slice(w[LLAMA_RMS_ATT], C, l), rstd, BT, C);
    }

    /* resid[0] = embedding(tokens) */
    if (full) be->embedding_backward(be, m->dw.tensors[LLAMA_TOKEN_EMBEDDING], a->dresid, m->tokens, BT, C);
    return m->loss_out ? device_check(be) : device_sync(be); /* the end of a backward */
}
