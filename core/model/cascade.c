/* The LoRASC cascade controller: expert boundaries, the per-expert schedule, and the
 * boundary work (EMA, merge, noise, re-initialisation, optimiser reset). See cascade.h for
 * the algorithm and the choices made where the paper is ambiguous. */
#include "core/model/cascade.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "core/base/error.h"
#include "core/base/philox.h"
#include "core/model/device.h"

/* Indexed by the enum values; NULL ends each list. */
static const char *const slow_merge_names[] = {[SLOW_MERGE_CUMULATIVE] = "cumulative",
                                               [SLOW_MERGE_REPLACE] = "replace", NULL};
static const char *const noise_std_names[] = {[NOISE_STD_SCALED] = "scaled",
                                              [NOISE_STD_UNSCALED] = "unscaled", NULL};
static const char *const reset_names[] = {[OPTIMIZER_RESET_ADAPTERS] = "adapters",
                                          [OPTIMIZER_RESET_ALL] = "all", NULL};
static const char *const method_names[] = {"lora", "cascade", "lorasc", "cola", "relora", NULL};

static const char *name_at(const char *const *names, int i) {
    if (i < 0) return NULL;
    for (int k = 0; k < i; k++)
        if (!names[k]) return NULL;
    return names[i];
}

const char *cascade_slow_merge_name(int value) { return name_at(slow_merge_names, value); }
const char *cascade_noise_std_name(int value) { return name_at(noise_std_names, value); }
const char *cascade_reset_name(int value) { return name_at(reset_names, value); }
const char *cascade_method_name(int index) { return name_at(method_names, index); }

int cascade_preset(const char *method, CascadeConfig *config) {
    const CascadeConfig base = {.n_experts = 1, .alpha = 0.0f, .noise = 0.0f, .merge = 1,
                                .reinit_fast = 1, .reset_optimizer = 1,
                                .reset = OPTIMIZER_RESET_ADAPTERS, .reset_step_count = 1,
                                .moment_pruning = 0.0f, .schedule = EXPERT_SCHEDULE_RESTART,
                                .rewarmup_steps = 0, .min_lr_ratio = 0.0f,
                                .slow_merge = SLOW_MERGE_CUMULATIVE, .noise_std = NOISE_STD_SCALED};
    *config = base;
    if (strcmp(method, "lora") == 0) return LSC_OK;
    if (strcmp(method, "cascade") == 0) return LSC_OK; /* the caller sets one expert per epoch */
    if (strcmp(method, "lorasc") == 0) {
        /* lorasc's defaults, picked from the grids the paper searches (alpha in {0.5, 0.6,
         * 0.8}, lambda in {0.1, 1, 10}), not values the paper prescribes */
        config->alpha = 0.8f;
        config->noise = 1.0f;
        return LSC_OK;
    }
    if (strcmp(method, "cola") == 0) {
        config->n_experts = 2;
        config->schedule = EXPERT_SCHEDULE_GLOBAL;
        return LSC_OK;
    }
    if (strcmp(method, "relora") == 0) { /* Guitaricet/relora's defaults where they have one */
        config->n_experts = 0;
        config->steps_per_expert = 100;
        config->schedule = EXPERT_SCHEDULE_JAGGED;
        config->rewarmup_steps = 10;
        config->min_lr_ratio = 0.1f;
        config->reset_step_count = 0;
        return LSC_OK;
    }
    return error_set("Unknown method '%s'; known: lora, cascade, lorasc, cola, relora.", method);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------------
 * experts and schedules */

long cascade_expert_start(const Cascade *c, int expert) {
    if (expert >= c->n_experts) return c->total_steps;
    if (c->config.n_experts > 0) return (long)((long long)expert * c->total_steps / c->n_experts);
    if (c->config.steps_per_expert > 0) {
        /* ReLoRA merges after the zero-lr update that opens each cycle (see cascade.h) */
        const long late = c->config.schedule == EXPERT_SCHEDULE_JAGGED && expert > 0;
        return (long)expert * c->config.steps_per_expert + late;
    }
    return 0;
}

int cascade_expert_of_step(const Cascade *c, long step) {
    int lo = 0, hi = c->n_experts - 1; /* the last expert whose start <= step */
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (cascade_expert_start(c, mid) <= step) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

float cascade_lr(const Cascade *c, const Schedule *s, long step) {
    const int e = cascade_expert_of_step(c, step);
    const long start = cascade_expert_start(c, e), len = cascade_expert_start(c, e + 1) - start;
    switch (c->config.schedule) {
    case EXPERT_SCHEDULE_GLOBAL: return schedule_lr(s, step, c->total_steps);
    case EXPERT_SCHEDULE_JAGGED: /* cosine whatever s->kind is, as ReLoRA ships it */
        return (float)((double)s->peak_lr *
                       schedule_relora_factor(step, c->total_steps, s->warmup_steps,
                                              c->config.rewarmup_steps, c->config.steps_per_expert,
                                              (double)c->config.min_lr_ratio));
    case EXPERT_SCHEDULE_RESTART:
    default: {
        Schedule compressed = *s;
        compressed.warmup_steps = (long)llround((double)s->warmup_steps * (double)len /
                                                (double)c->total_steps);
        return schedule_lr(&compressed, step - start, len);
    }
    }
}

uint64_t cascade_expert_seed(uint64_t seed, int expert) {
    if (expert == 0) return seed;
    const uint64_t stream = philox_stream(RNG_PURPOSE_INIT, 0xFFFE, 0, 0);
    return ((uint64_t)philox_u32(seed, stream, 2 * (uint64_t)expert) << 32) |
           philox_u32(seed, stream, 2 * (uint64_t)expert + 1);
}

/* ------------------------------------------------------------------------------------------
 * build and free */

int cascade_create(Cascade *c, CascadeWeightFn weight, void *model, LoraAdapters *fast, AdamW *opt,
                   const CascadeConfig *config, long total_steps, uint64_t seed) {
    memset(c, 0, sizeof *c);
    const CascadeConfig *k = config;
    if (total_steps <= 0) return error_set("A cascade needs a positive number of steps, got %ld.", total_steps);
    if (k->n_experts < 0) return error_set("The number of experts must be positive, got %d.", k->n_experts);
    if (k->n_experts > total_steps)
        return error_set("%d experts cannot share %ld steps: use at most one expert per step.",
                         k->n_experts, total_steps);
    if (!(k->alpha >= 0.0f && k->alpha <= 1.0f))
        return error_set("The slow-fast retention alpha must lie in [0, 1], got %g.", (double)k->alpha);
    if (!(k->noise >= 0.0f))
        return error_set("The noise intensity lambda must be >= 0, got %g.", (double)k->noise);
    if (!(k->moment_pruning >= 0.0f && k->moment_pruning < 1.0f))
        return error_set("The optimizer's magnitude-pruning ratio must lie in [0, 1) (0: reset "
                         "the moments to zero), got %g.", (double)k->moment_pruning);
    if (k->schedule == EXPERT_SCHEDULE_JAGGED) {
        if (k->n_experts != 0 || k->steps_per_expert <= 0)
            return error_set("ReLoRA's schedule restarts every N steps: give steps_per_expert "
                             "> 0 and n_experts = 0, got %ld and %d.", k->steps_per_expert,
                             k->n_experts);
        if (!(k->min_lr_ratio > 0.0f && k->min_lr_ratio <= 1.0f))
            return error_set("ReLoRA's min_lr_ratio must lie in (0, 1] (their assertion), got %g.",
                             (double)k->min_lr_ratio);
        if (k->rewarmup_steps < 0)
            return error_set("ReLoRA's re-warm-up must be >= 0 steps, got %ld.", k->rewarmup_steps);
    }
    c->config = *k;
    c->weight = weight;
    c->model = model;
    c->fast = fast;
    c->opt = opt;
    c->total_steps = total_steps;
    c->seed = seed;
    if (k->n_experts > 0) c->n_experts = k->n_experts;
    else if (k->steps_per_expert > 0 && k->schedule == EXPERT_SCHEDULE_JAGGED) /* starts 0, N+1, 2N+1, ... */
        c->n_experts = total_steps < 2 ? 1 : 1 + (int)((total_steps - 2) / k->steps_per_expert);
    else if (k->steps_per_expert > 0) c->n_experts = (int)((total_steps + k->steps_per_expert - 1) / k->steps_per_expert);
    else c->n_experts = 1;

    Backend *be = fast->be;
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS], widest = 1;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        in[t] = fast->in_dim[t];
        out[t] = fast->out_dim[t];
        if (in[t] > widest) widest = in[t];
        if (out[t] > widest) widest = out[t];
    }
    if (fast->config.use_dora && k->merge && k->slow_merge == SLOW_MERGE_REPLACE)
        return error_set("slow_merge = replace is not defined for DoRA (a DoRA merge rescales whole "
                         "rows); use the cumulative merge.");
    if (lora_create(&c->slow, be, &fast->config, fast->n_layers, in, out, seed) != LSC_OK) return LSC_ERR;
    be->copy(be, c->slow.params, fast->params, fast->num_params * sizeof(Real)); /* slow = fast at t = 1 */
    c->slow.magnitudes_set = fast->magnitudes_set;
    const size_t r = (size_t)fast->config.rank;
    c->ones = be->alloc(be, (size_t)widest * sizeof(Real));
    c->scratch = be->alloc(be, (2 * r * r + 2 * r) * sizeof(Real));
    if (!c->ones || !c->scratch) {
        cascade_free(c);
        return device_fail(be, "Out of memory allocating the cascade's scratch buffers.");
    }
    Real *host = malloc((size_t)widest * sizeof(Real));
    if (!host) {
        cascade_free(c);
        return error_set("Out of memory allocating the cascade's scratch buffers.");
    }
    for (int i = 0; i < widest; i++) host[i] = 1;
    be->to_device(be, c->ones, host, (size_t)widest * sizeof(Real));
    free(host);
    if (device_sync(be) != LSC_OK) {
        cascade_free(c);
        return LSC_ERR;
    }
    return LSC_OK;
}

void cascade_free(Cascade *c) {
    free(c->kept);
    Backend *be = c->slow.be;
    if (be) {
        if (c->ones) be->free(be, c->ones);
        if (c->scratch) be->free(be, c->scratch);
    }
    lora_free(&c->slow);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------------------------------
 * boundary work */

void cascade_product_stats(Cascade *c, const LoraAdapters *lora, int layer, int target,
                           double scale, double *std, double *sq_norm) {
    Backend *be = lora->be;
    const int r = lora->config.rank, in = lora->in_dim[target], out = lora->out_dim[target];
    const Real *a = lora_a(lora, layer, target), *b = lora_b(lora, layer, target);
    Real *gram_b = c->scratch, *gram_a = gram_b + r * r;
    Real *colsum_b = gram_a + r * r, *rowsum_a = colsum_b + r;
    be->matmul(be, gram_b, b, b, r, r, out, 1, 0, 1, 0);         /* B^T B  [r,r] */
    be->matmul(be, gram_a, a, a, r, r, in, 0, 1, 1, 0);          /* A A^T  [r,r] */
    be->matmul(be, colsum_b, c->ones, b, 1, r, out, 0, 0, 1, 0); /* 1^T B  [1,r] */
    be->matmul(be, rowsum_a, a, c->ones, r, 1, in, 0, 0, 1, 0);  /* A 1    [r,1] */
    Real host[2 * 64 * 64 + 2 * 64];
    Real *h = (r <= 64) ? host : malloc((2 * (size_t)r * r + 2 * (size_t)r) * sizeof(Real));
    LSC_ASSERT(h != NULL);
    be->to_host(be, h, c->scratch, (2 * (size_t)r * r + 2 * (size_t)r) * sizeof(Real));
    /* sum(P^2) = tr(A^T B^T B A) = sum((B^T B) .* (A A^T)); sum(P) = (1^T B)(A 1) */
    double sum_sq = 0.0, sum = 0.0;
    for (int i = 0; i < r * r; i++) sum_sq += (double)h[i] * (double)h[r * r + i];
    for (int k = 0; k < r; k++) sum += (double)h[2 * r * r + k] * (double)h[2 * r * r + r + k];
    sum_sq *= scale * scale;
    sum *= scale;
    const double n = (double)in * (double)out;
    const double var = (sum_sq - sum * sum / n) / (n - 1.0);
    *std = var > 0.0 ? sqrt(var) : 0.0;
    *sq_norm = sum_sq;
    if (h != host) free(h);
}

/* W += sign * s * B_slow A_slow on every adapted matrix; returns sum of ||s B A||_F^2. */
static double merge_slow(Cascade *c, float sign) {
    double sq_total = 0.0;
    for (int l = 0; l < c->slow.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(&c->slow, t)) continue;
            lora_apply_to_weight(&c->slow, c->weight(c->model, l, t), l, t, sign);
            double std, sq;
            if (sign > 0) {
                cascade_product_stats(c, &c->slow, l, t, c->slow.scaling, &std, &sq);
                sq_total += sq;
            }
        }
    return sq_total;
}

/* slow <- alpha slow + (1 - alpha) fast, on A and B of every slot. DoRA's magnitude is not
 * averaged: it is trained continuously across experts, so the slow adapter takes the fast
 * one's current m, and the merge rescales each row of W to it. */
static void update_slow(Cascade *c) {
    Backend *be = c->slow.be;
    const float alpha = c->config.alpha;
    for (int l = 0; l < c->slow.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(&c->slow, t)) continue;
            const size_t r = (size_t)c->slow.config.rank;
            const size_t na = r * (size_t)c->slow.in_dim[t], nb = (size_t)c->slow.out_dim[t] * r;
            Real *sa = lora_a(&c->slow, l, t), *sb = lora_b(&c->slow, l, t);
            const Real *fa = lora_a(c->fast, l, t), *fb = lora_b(c->fast, l, t);
            if (lora_has_magnitude(&c->slow, t))
                be->copy(be, lora_magnitude(&c->slow, l, t), lora_magnitude(c->fast, l, t),
                         (size_t)c->slow.out_dim[t] * sizeof(Real));
            if (alpha == 0.0f) {
                be->copy(be, sa, fa, na * sizeof(Real));
                be->copy(be, sb, fb, nb * sizeof(Real));
            } else {
                be->scale(be, sa, na, alpha);
                be->axpy(be, sa, fa, na, 1.0f - alpha);
                be->scale(be, sb, nb, alpha);
                be->axpy(be, sb, fb, nb, 1.0f - alpha);
            }
        }
}

/* W += U(-lambda/2, lambda/2) * std(slow product) for expert `next` (0-based). */
static void add_noise(Cascade *c, int next, CascadeEvent *ev) {
    Backend *be = c->slow.be;
    const double scale = c->config.noise_std == NOISE_STD_SCALED ? c->slow.scaling : 1.0;
    int count = 0;
    for (int l = 0; l < c->slow.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(&c->slow, t)) continue;
            double std, sq;
            cascade_product_stats(c, &c->slow, l, t, scale, &std, &sq);
            const size_t n = (size_t)c->slow.in_dim[t] * (size_t)c->slow.out_dim[t];
            const uint64_t stream = philox_stream(RNG_PURPOSE_NOISE, (uint32_t)next, (uint32_t)l, (uint32_t)t);
            be->add_uniform_noise(be, c->weight(c->model, l, t), n, c->seed, stream,
                                  (float)(c->config.noise * std));
            ev->noise_std_mean += std;
            if (std > ev->noise_std_max) ev->noise_std_max = std;
            count++;
        }
    if (count) ev->noise_std_mean /= count;
}

/* The optimizer at a boundary: the groups `reset` names (every group, or those not marked
 * continuous) get their moments zeroed, or pruned by magnitude per tensor (each A and B of the
 * adapters; each continuous group as one tensor), and their step counts restarted when
 * reset_step_count says so. */
static int reset_optimizer(Cascade *c) {
    AdamW *opt = c->opt;
    const CascadeConfig *k = &c->config;
    const double ratio = k->moment_pruning;
    if (ratio > 0.0) {
        const size_t r = (size_t)c->fast->config.rank;
        for (int l = 0; l < c->fast->n_layers; l++)
            for (int t = 0; t < LORA_NUM_TARGETS; t++) {
                if (!lora_enabled(c->fast, t)) continue;
                if (adamw_prune_magnitude(opt, lora_a(c->fast, l, t), r * (size_t)c->fast->in_dim[t], ratio) != LSC_OK ||
                    adamw_prune_magnitude(opt, lora_b(c->fast, l, t), (size_t)c->fast->out_dim[t] * r, ratio) != LSC_OK)
                    return LSC_ERR;
            }
    }
    for (int i = 0; i < opt->n_groups; i++) {
        const ParamGroup *g = &opt->groups[i];
        if (g->continuous && k->reset != OPTIMIZER_RESET_ALL) continue;
        if (ratio <= 0.0) {
            adamw_reset_group(opt, i, k->reset_step_count);
            continue;
        }
        if (g->continuous && adamw_prune_magnitude(opt, g->p, g->n, ratio) != LSC_OK) return LSC_ERR;
        if (k->reset_step_count) opt->group_step[i] = 0;
    }
    return LSC_OK;
}

/* keep_merges: a host copy of the slow block just merged. */
static int keep_merge(Cascade *c) {
    const size_t n = c->slow.num_params;
    const int slot = c->config.slow_merge == SLOW_MERGE_REPLACE ? 0 : c->n_kept;
    Real *k = realloc(c->kept, (size_t)(slot + 1) * n * sizeof *k);
    if (!k) return error_set("Out of memory keeping the adapter of expert %d.", c->n_kept + 1);
    c->kept = k;
    c->slow.be->to_host(c->slow.be, k + (size_t)slot * n, c->slow.params, n * sizeof *k);
    if (device_sync(c->slow.be) != LSC_OK) return LSC_ERR;
    c->n_kept = slot + 1;
    return LSC_OK;
}

const char *cascade_adapter_obstacle(const CascadeConfig *k, int n_experts, int use_dora) {
    if (!k->merge)
        return "the run merges nothing into the base, so there is no merged update to export";
    if (k->noise > 0.0f && n_experts > 1)
        return "the cascade added noise (lambda > 0) to the base weights between experts; that "
               "noise "
               "is no low-rank update, so no adapter reproduces the trained model: the merged "
               "model "
               "(save = \"model\", lorasc export --hf) is the only exact export";
    if (use_dora && n_experts > 1)
        return "a DoRA cascade of several experts rescales whole rows at every merge, which no "
               "single "
               "DoRA adapter reproduces: the merged model (save = \"model\", lorasc export --hf) "
               "is "
               "the only exact export";
    return NULL;
}

int cascade_merged_adapter(const Cascade *c, LoraAdapters *out) {
    memset(out, 0, sizeof *out);
    const LoraAdapters *s = &c->slow;
    const char *why = cascade_adapter_obstacle(&c->config, c->n_experts, s->config.use_dora);
    if (why) return error_set("This run has no exact PEFT adapter: %s.", why);
    if (!c->config.keep_merges)
        return error_set("This run did not keep its merged adapters (keep_merges was off).");
    if (c->n_kept == 0)
        return error_set("No expert of this run has ended yet: there is no adapter.");
    const int T = c->n_kept, r = s->config.rank, R = T * r;
    LoraConfig lc = s->config;
    lc.rank = R;
    lc.alpha = s->config.alpha * (float)T;
    if (lora_create(out, s->be, &lc, s->n_layers, s->in_dim, s->out_dim, 0) != LSC_OK)
        return LSC_ERR;
    size_t widest = 1;
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if ((size_t)s->in_dim[t] + (size_t)s->out_dim[t] > widest)
            widest = (size_t)s->in_dim[t] + s->out_dim[t];
    Real *h = malloc(widest * (size_t)R * sizeof *h);
    if (!h) {
        lora_free(out);
        return error_set("Out of memory stacking the adapters of %d experts.", T);
    }
    Backend *be = s->be;
    for (int l = 0; l < s->n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(s, t)) continue;
            const size_t in = (size_t)s->in_dim[t], o = (size_t)s->out_dim[t];
            /* offsets of this slot's A, B (and m) inside a kept block: as in slow's */
            const size_t a_off = (size_t)(lora_a(s, l, t) - s->params);
            const size_t b_off = (size_t)(lora_b(s, l, t) - s->params);
            Real *ha = h, *hb = h + (size_t)R * in;
            for (int e = 0; e < T; e++) {
                const Real *blk = c->kept + (size_t)e * s->num_params;
                memcpy(ha + (size_t)e * r * in, blk + a_off, (size_t)r * in * sizeof *h); /* rows */
                for (size_t row = 0; row < o; row++) /* columns */
                    memcpy(hb + row * R + (size_t)e * r, blk + b_off + row * (size_t)r,
                           (size_t)r * sizeof *h);
            }
            be->to_device(be, lora_a(out, l, t), ha, (size_t)R * in * sizeof *h);
            be->to_device(be, lora_b(out, l, t), hb, o * (size_t)R * sizeof *h);
            if (lora_has_magnitude(s, t)) {
                const size_t m_off = (size_t)(lora_magnitude(s, l, t) - s->params);
                be->to_device(be, lora_magnitude(out, l, t), c->kept + m_off, o * sizeof *h);
            }
        }
    out->magnitudes_set = s->config.use_dora;
    free(h);
    return LSC_OK;
}

int cascade_after_step(Cascade *c, long step, CascadeEvent *event) {
    const int e = cascade_expert_of_step(c, step);
    if (step + 1 != cascade_expert_start(c, e + 1)) return 0;
    const double t0 = now_seconds();
    const int has_next = e + 1 < c->n_experts;
    CascadeEvent ev = {.expert = e + 1, .step = step + 1};

    if (c->config.merge && c->config.slow_merge == SLOW_MERGE_REPLACE && e > 0)
        merge_slow(c, -1.0f); /* take out what the previous boundary merged */
    update_slow(c);
    if (c->config.merge) ev.merged_norm = sqrt(merge_slow(c, +1.0f));
    if (c->config.merge && c->config.keep_merges && keep_merge(c) != LSC_OK) return -1;
    if (has_next && c->config.noise > 0.0f) add_noise(c, e + 1, &ev);
    /* after the last merge the fast adapter is reset too, so the model is the merged base */
    if ((has_next && c->config.reinit_fast) || (!has_next && c->config.merge))
        lora_init(c->fast, cascade_expert_seed(c->seed, e + 1));
    if (has_next && c->config.reset_optimizer && reset_optimizer(c) != LSC_OK) return -1;

    if (device_sync(c->slow.be) != LSC_OK) return -1; /* the boundary's ops, waited for */
    ev.boundary_seconds = now_seconds() - t0;
    if (event) *event = ev;
    return 1;
}
