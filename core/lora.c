/* LoRA adapters: parameter block layout, PEFT initialisation, forward/backward of the
 * low-rank branch and merge/unmerge. All arithmetic goes through the backend's matmul. */
#include "core/lora.h"

#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/philox.h"

static const char *const target_names[LORA_NUM_TARGETS] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};
static const char *const target_short[LORA_NUM_TARGETS] = {"q", "k", "v", "o", "gate", "up", "down"};

const char *lora_target_name(LoraTarget t) {
    return (t >= 0 && t < LORA_NUM_TARGETS) ? target_names[t] : "?";
}

int lora_target_parse(const char *name) {
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if (strcmp(name, target_names[t]) == 0 || strcmp(name, target_short[t]) == 0) return t;
    return -1;
}

int lora_enabled(const LoraAdapters *lora, int target) {
    return (lora->config.targets & LORA_BIT(target)) != 0;
}

static size_t slot(int layer, int target) {
    return (size_t)layer * LORA_NUM_TARGETS + (size_t)target;
}

int lora_create(LoraAdapters *lora, Backend *be, const LoraConfig *config, int n_layers,
                const int in_dim[LORA_NUM_TARGETS], const int out_dim[LORA_NUM_TARGETS],
                uint64_t seed) {
    memset(lora, 0, sizeof *lora);
    if (config->rank <= 0)
        return error_set("LoRA rank must be a positive integer, got %d.", config->rank);
    if (!(config->alpha > 0.0f))
        return error_set("LoRA alpha must be positive, got %g.", (double)config->alpha);
    if (config->targets == 0 || (config->targets >> LORA_NUM_TARGETS) != 0)
        return error_set("LoRA targets must be a non-empty subset of q, k, v, o, gate, up, down.");
    lora->config = *config;
    lora->scaling = config->alpha / (float)config->rank;
    lora->n_layers = n_layers;
    lora->be = be;
    lora->a_offset = calloc((size_t)n_layers * LORA_NUM_TARGETS, sizeof *lora->a_offset);
    if (!lora->a_offset) return error_set("Out of memory allocating LoRA tables.");

    const size_t r = (size_t)config->rank;
    size_t offset = 0;
    for (int l = 0; l < n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(lora, t)) continue;
            LSC_ASSERT(in_dim[t] > 0 && out_dim[t] > 0);
            lora->in_dim[t] = in_dim[t];
            lora->out_dim[t] = out_dim[t];
            lora->a_offset[slot(l, t)] = offset;
            offset += r * (size_t)in_dim[t] + (size_t)out_dim[t] * r;
        }
    lora->num_params = offset;
    lora->params = be->alloc(be, offset * sizeof(Real));
    lora->grads = be->alloc(be, offset * sizeof(Real));
    if (!lora->params || !lora->grads) {
        lora_free(lora);
        return error_set("Out of memory allocating %zu LoRA parameters.", offset);
    }
    lora_init(lora, seed);
    return LSC_OK;
}

void lora_free(LoraAdapters *lora) {
    Backend *be = lora->be;
    if (be) {
        if (lora->params) be->free(be, lora->params);
        if (lora->grads) be->free(be, lora->grads);
        if (lora->xa) be->free(be, lora->xa);
        if (lora->dxa) be->free(be, lora->dxa);
    }
    free(lora->a_offset);
    memset(lora, 0, sizeof *lora);
}

Real *lora_a(const LoraAdapters *lora, int layer, int target) {
    LSC_ASSERT(lora_enabled(lora, target) && layer >= 0 && layer < lora->n_layers);
    return lora->params + lora->a_offset[slot(layer, target)];
}

Real *lora_b(const LoraAdapters *lora, int layer, int target) {
    return lora_a(lora, layer, target) + (size_t)lora->config.rank * (size_t)lora->in_dim[target];
}

Real *lora_da(const LoraAdapters *lora, int layer, int target) {
    return lora->grads + (lora_a(lora, layer, target) - lora->params);
}

Real *lora_db(const LoraAdapters *lora, int layer, int target) {
    return lora->grads + (lora_b(lora, layer, target) - lora->params);
}

/* PEFT: nn.init.kaiming_uniform_(A, a=sqrt(5)) gives bound = gain*sqrt(3/fan_in) with
 * gain = sqrt(2/(1+a^2)) = sqrt(1/3), i.e. bound = 1/sqrt(in); B = 0. Drawn on the host
 * from Philox (seed, INIT/layer/target) so every device initialises identically. */
void lora_init(LoraAdapters *lora, uint64_t seed) {
    Backend *be = lora->be;
    const int r = lora->config.rank;
    size_t max_a = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if (lora_enabled(lora, t) && (size_t)r * (size_t)lora->in_dim[t] > max_a)
            max_a = (size_t)r * (size_t)lora->in_dim[t];
    Real *host = malloc(max_a * sizeof(Real));
    LSC_ASSERT(host != NULL);
    for (int l = 0; l < lora->n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(lora, t)) continue;
            const size_t na = (size_t)r * (size_t)lora->in_dim[t];
            const double bound = 1.0 / sqrt((double)lora->in_dim[t]);
            philox_uniform(host, na, seed,
                           philox_stream(RNG_PURPOSE_INIT, (uint32_t)l, (uint32_t)t, 0xA), -bound,
                           bound);
            be->to_device(be, lora_a(lora, l, t), host, na * sizeof(Real));
            be->zero(be, lora_b(lora, l, t), (size_t)lora->out_dim[t] * (size_t)r * sizeof(Real));
        }
    free(host);
}

int lora_reserve(LoraAdapters *lora, int rows) {
    if (rows <= lora->max_rows) return LSC_OK;
    Backend *be = lora->be;
    if (lora->xa) be->free(be, lora->xa);
    if (lora->dxa) be->free(be, lora->dxa);
    const size_t per_slot = (size_t)rows * (size_t)lora->config.rank;
    lora->xa = be->alloc(be, (size_t)lora->n_layers * LORA_NUM_TARGETS * per_slot * sizeof(Real));
    lora->dxa = be->alloc(be, per_slot * sizeof(Real));
    lora->max_rows = rows;
    if (!lora->xa || !lora->dxa) {
        lora->max_rows = 0;
        return error_set("Out of memory allocating LoRA activations for %d rows.", rows);
    }
    return LSC_OK;
}

static Real *saved_xa(const LoraAdapters *lora, int layer, int target) {
    return lora->xa + slot(layer, target) * (size_t)lora->max_rows * (size_t)lora->config.rank;
}

void lora_forward(LoraAdapters *lora, Real *y, const Real *x, int layer, int target, int rows) {
    if (!lora_enabled(lora, target) || lora->merged) return;
    LSC_ASSERT(rows <= lora->max_rows);
    Backend *be = lora->be;
    const int r = lora->config.rank, in = lora->in_dim[target], out = lora->out_dim[target];
    Real *xa = saved_xa(lora, layer, target);
    be->matmul(be, xa, x, lora_a(lora, layer, target), rows, r, in, 0, 1, 1, 0); /* xa = x A^T */
    be->matmul(be, y, xa, lora_b(lora, layer, target), rows, out, r, 0, 1, (Real)lora->scaling,
               1); /* y += s xa B^T */
}

void lora_backward(LoraAdapters *lora, Real *dx, const Real *dy, const Real *x, int layer,
                   int target, int rows) {
    if (!lora_enabled(lora, target)) return;
    LSC_ASSERT(!lora->merged && rows <= lora->max_rows);
    Backend *be = lora->be;
    const int r = lora->config.rank, in = lora->in_dim[target], out = lora->out_dim[target];
    const Real s = (Real)lora->scaling;
    const Real *xa = saved_xa(lora, layer, target);
    /* dB += s dy^T xa */
    be->matmul(be, lora_db(lora, layer, target), dy, xa, out, r, rows, 1, 0, s, 1);
    /* dxa = s dy B */
    be->matmul(be, lora->dxa, dy, lora_b(lora, layer, target), rows, r, out, 0, 0, s, 0);
    /* dA += dxa^T x */
    be->matmul(be, lora_da(lora, layer, target), lora->dxa, x, r, in, rows, 1, 0, 1, 1);
    /* dx += dxa A */
    if (dx) be->matmul(be, dx, lora->dxa, lora_a(lora, layer, target), rows, in, r, 0, 0, 1, 1);
}

void lora_apply_to_weight(LoraAdapters *lora, Real *weight, int layer, int target, float sign) {
    if (!lora_enabled(lora, target)) return;
    Backend *be = lora->be;
    const int r = lora->config.rank, in = lora->in_dim[target], out = lora->out_dim[target];
    /* W[out,in] += sign * s * B[out,r] A[r,in] */
    be->matmul(be, weight, lora_b(lora, layer, target), lora_a(lora, layer, target), out, in, r, 0,
               0, (Real)(sign * lora->scaling), 1);
}
