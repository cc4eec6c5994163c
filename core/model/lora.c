/* LoRA and DoRA adapters: parameter block layout, PEFT initialisation, forward/backward of
 * the low-rank branch and of DoRA's output scaling, merge/unmerge. All arithmetic goes
 * through backend ops (matmul, and the row/column ops for DoRA). */
#include "core/model/lora.h"

#include <math.h>
#include <string.h>

#include "core/base/error.h"
#include "core/base/philox.h"
#include "core/model/device.h"

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

int lora_check_rank(const LoraConfig *config, const int in_dim[LORA_NUM_TARGETS],
                    const int out_dim[LORA_NUM_TARGETS]) {
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!((config->targets >> t) & 1u)) continue;
        const int lim = in_dim[t] < out_dim[t] ? in_dim[t] : out_dim[t];
        if (config->rank > lim)
            return error_set("LoRA rank %d is larger than the %d x %d matrix of target %s: B·A "
                             "cannot have a rank above %d; use rank <= %d.", config->rank,
                             out_dim[t], in_dim[t], lora_target_name((LoraTarget)t), lim, lim);
    }
    return LSC_OK;
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
    if (config->use_dora != 0 && config->use_dora != 1)
        return error_set("LoRA use_dora must be 0 (LoRA) or 1 (DoRA), got %d.", config->use_dora);
    lora->config = *config;
    lora->scaling = config->alpha / (float)config->rank;
    lora->n_layers = n_layers;
    lora->be = be;
    const size_t nslots = (size_t)n_layers * LORA_NUM_TARGETS;
    lora->a_offset = calloc(nslots, sizeof *lora->a_offset);
    lora->vec_offset = calloc(nslots, sizeof *lora->vec_offset);
    if (!lora->a_offset || !lora->vec_offset) {
        lora_free(lora);
        return error_set("Out of memory allocating LoRA tables.");
    }

    const size_t r = (size_t)config->rank, dora = config->use_dora ? 1 : 0;
    size_t offset = 0, vec = 0, max_w = 0, max_out = 0;
    for (int l = 0; l < n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(lora, t)) continue;
            LSC_ASSERT(in_dim[t] > 0 && out_dim[t] > 0);
            const size_t in = (size_t)in_dim[t], out = (size_t)out_dim[t];
            lora->in_dim[t] = in_dim[t];
            lora->out_dim[t] = out_dim[t];
            lora->a_offset[slot(l, t)] = offset;
            lora->vec_offset[slot(l, t)] = vec;
            offset += r * in + out * r + dora * out; /* A, B, then m */
            vec += out;
            if (out * in > max_w) max_w = out * in;
            if (out > max_out) max_out = out;
        }
    lora->num_params = offset;
    lora->params = be->alloc(be, offset * sizeof(Real));
    lora->grads = be->alloc(be, offset * sizeof(Real));
    int ok = lora->params && lora->grads;
    if (ok && dora) {
        lora->vec_total = vec;
        lora->norm = be->alloc(be, vec * sizeof(Real));
        lora->mag_scale = be->alloc(be, vec * sizeof(Real));
        lora->unmerge_scale = be->alloc(be, vec * sizeof(Real));
        lora->wtmp = be->alloc(be, max_w * sizeof(Real));
        lora->vtmp = be->alloc(be, max_out * sizeof(Real));
        ok = lora->norm && lora->mag_scale && lora->unmerge_scale && lora->wtmp && lora->vtmp;
    }
    if (!ok) {
        lora_free(lora);
        return device_fail(be, "Out of memory allocating %zu LoRA parameters.", offset);
    }
    lora_init(lora, seed);
    if (device_sync(be) != LSC_OK) {
        lora_free(lora);
        return LSC_ERR;
    }
    return LSC_OK;
}

void lora_free(LoraAdapters *lora) {
    Backend *be = lora->be;
    if (be) {
        if (lora->params) be->free(be, lora->params);
        if (lora->grads) be->free(be, lora->grads);
        Real *blocks[] = {lora->xa,      lora->dxa,           lora->norm, lora->mag_scale,
                          lora->unmerge_scale, lora->wtmp, lora->vtmp, lora->ypre};
        for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
            if (blocks[i]) be->free(be, blocks[i]);
    }
    free(lora->a_offset);
    free(lora->vec_offset);
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

int lora_has_magnitude(const LoraAdapters *lora, int target) {
    return lora->config.use_dora && lora_enabled(lora, target);
}

Real *lora_magnitude(const LoraAdapters *lora, int layer, int target) {
    LSC_ASSERT(lora_has_magnitude(lora, target));
    return lora_b(lora, layer, target) + (size_t)lora->out_dim[target] * (size_t)lora->config.rank;
}

Real *lora_dmagnitude(const LoraAdapters *lora, int layer, int target) {
    return lora->grads + (lora_magnitude(lora, layer, target) - lora->params);
}

/* Slot (layer, target)'s stretch of a packed per-slot vector (norm, mag_scale, ...). */
static Real *slot_vec(const LoraAdapters *lora, Real *packed, int layer, int target) {
    return packed + lora->vec_offset[slot(layer, target)];
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
    if (lora->ypre) be->free(be, lora->ypre);
    lora->ypre = NULL;
    const size_t per_slot = (size_t)rows * (size_t)lora->config.rank;
    lora->xa = be->alloc(be, (size_t)lora->n_layers * LORA_NUM_TARGETS * per_slot * sizeof(Real));
    lora->dxa = be->alloc(be, per_slot * sizeof(Real));
    if (lora->config.use_dora)
        lora->ypre = be->alloc(be, lora->vec_total * (size_t)rows * sizeof(Real));
    lora->max_rows = rows;
    if (!lora->xa || !lora->dxa || (lora->config.use_dora && !lora->ypre)) {
        lora->max_rows = 0;
        return device_fail(be, "Out of memory allocating LoRA activations for %d rows.", rows);
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

/* ---- DoRA ---- */

/* norm[out] = ||W + s B A||_row of one slot, built in the one [out,in] scratch matrix. */
static void adapted_row_norm(LoraAdapters *lora, Real *norm, const Real *weight, int layer,
                             int target) {
    Backend *be = lora->be;
    const int r = lora->config.rank, in = lora->in_dim[target], out = lora->out_dim[target];
    be->copy(be, lora->wtmp, weight, (size_t)out * (size_t)in * sizeof(Real));
    be->matmul(be, lora->wtmp, lora_b(lora, layer, target), lora_a(lora, layer, target), out, in,
               r, 0, 0, (Real)lora->scaling, 1);
    be->row_norm(be, norm, lora->wtmp, out, in);
}

void lora_init_magnitudes(LoraAdapters *lora, LoraWeightFn weight, void *ctx) {
    if (!lora->config.use_dora) return;
    for (int l = 0; l < lora->n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            if (lora_has_magnitude(lora, t))
                adapted_row_norm(lora, lora_magnitude(lora, l, t), weight(ctx, l, t), l, t);
    lora->magnitudes_set = 1;
}

static Real *saved_ypre(const LoraAdapters *lora, int layer, int target) {
    return lora->ypre + lora->vec_offset[slot(layer, target)] * (size_t)lora->max_rows;
}

void lora_magnitude_forward(LoraAdapters *lora, Real *y, const Real *weight, int layer, int target,
                            int rows) {
    if (!lora_has_magnitude(lora, target) || lora->merged) return;
    LSC_ASSERT(lora->magnitudes_set && rows <= lora->max_rows);
    Backend *be = lora->be;
    const int out = lora->out_dim[target];
    Real *norm = slot_vec(lora, lora->norm, layer, target);
    Real *scale = slot_vec(lora, lora->mag_scale, layer, target);
    if (!lora->freeze_norms) adapted_row_norm(lora, norm, weight, layer, target);
    be->divide(be, scale, lora_magnitude(lora, layer, target), norm, (size_t)out); /* m / n */
    be->copy(be, saved_ypre(lora, layer, target), y, (size_t)rows * (size_t)out * sizeof(Real));
    be->scale_cols(be, y, y, scale, rows, out);
}

/* y = (m / n) (.) ypre with n constant: dm[o] = sum_rows dy[., o] ypre[., o] / n[o];
 * dypre = dy (.) m / n. */
const Real *lora_magnitude_backward(LoraAdapters *lora, Real *dproj, const Real *dy, int layer,
                                    int target, int rows) {
    if (!lora_has_magnitude(lora, target)) return dy;
    LSC_ASSERT(!lora->merged && rows <= lora->max_rows);
    Backend *be = lora->be;
    const int out = lora->out_dim[target];
    be->col_dot(be, lora->vtmp, dy, saved_ypre(lora, layer, target), rows, out);
    be->divide(be, lora->vtmp, lora->vtmp, slot_vec(lora, lora->norm, layer, target), (size_t)out);
    be->axpy(be, lora_dmagnitude(lora, layer, target), lora->vtmp, (size_t)out, 1.0f);
    be->scale_cols(be, dproj, dy, slot_vec(lora, lora->mag_scale, layer, target), rows, out);
    return dproj;
}

/* ---- merge ---- */

void lora_apply_to_weight(LoraAdapters *lora, Real *weight, int layer, int target, float sign) {
    if (!lora_enabled(lora, target)) return;
    Backend *be = lora->be;
    const int r = lora->config.rank, in = lora->in_dim[target], out = lora->out_dim[target];
    const Real *a = lora_a(lora, layer, target), *b = lora_b(lora, layer, target);
    if (!lora_has_magnitude(lora, target)) {
        /* W[out,in] += sign * s * B[out,r] A[r,in] */
        be->matmul(be, weight, b, a, out, in, r, 0, 0, (Real)(sign * lora->scaling), 1);
        return;
    }
    LSC_ASSERT(sign == 1.0f || sign == -1.0f);
    const Real *m = lora_magnitude(lora, layer, target);
    Real *unscale = slot_vec(lora, lora->unmerge_scale, layer, target), *f = lora->vtmp;
    if (sign > 0) { /* W <- (m / n) (.) (W + s B A), n = ||W + s B A||_row; keep n / m */
        LSC_ASSERT(lora->magnitudes_set);
        be->matmul(be, weight, b, a, out, in, r, 0, 0, (Real)lora->scaling, 1);
        be->row_norm(be, f, weight, out, in);
        be->divide(be, unscale, f, m, (size_t)out);
        be->divide(be, f, m, f, (size_t)out);
        be->scale_rows(be, weight, weight, f, out, in);
    } else { /* W <- W (.) (n / m) - s B A */
        be->scale_rows(be, weight, weight, unscale, out, in);
        be->matmul(be, weight, b, a, out, in, r, 0, 0, (Real)-lora->scaling, 1);
    }
}
