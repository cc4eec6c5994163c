/* The optimizer at expert boundaries (built in double precision):
 *  - reset = adapters: DoRA magnitudes and a ViT head keep their AdamW moments and step
 *    counts across a boundary while the adapters' A and B restart; reset = all restarts
 *    everything;
 *  - ReLoRA as Guitaricet/relora runs it: experts [0, N+1), [N+1, 2N+1), ... (the zero-lr
 *    update that opens a cycle belongs to the cycle before), the learning rate their cosine
 *    with restarts whatever the schedule kind, the reset keeping the step count, and
 *    optimizer_magnitude_pruning keeping only moments above the quantile. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "core/model/finetune.h"
#include "tests/model_fixture.h"

enum { B = 2, T = 6 };

/* Every group's moments and step count, copied. */
typedef struct OptState {
    double *m, *v;
    long *step;
} OptState;

static OptState opt_snapshot(const AdamW *opt) {
    OptState s = {malloc(opt->n_total * sizeof(double)), malloc(opt->n_total * sizeof(double)),
                  malloc((size_t)opt->n_groups * sizeof(long))};
    for (size_t i = 0; i < opt->n_total; i++) s.m[i] = opt->m[i], s.v[i] = opt->v[i];
    for (int g = 0; g < opt->n_groups; g++) s.step[g] = opt->group_step[g];
    return s;
}

static void opt_state_free(OptState *s) {
    free(s->m), free(s->v), free(s->step);
}

/* After a boundary: groups that were reset hold zero moments (and step 0 when restart_step),
 * the others hold exactly what they held before it. Returns how many groups were reset. */
static int check_reset(const AdamW *opt, const OptState *before, int reset_all, int restart_step) {
    size_t offset = 0;
    int n_reset = 0;
    for (int g = 0; g < opt->n_groups; g++) {
        const ParamGroup *grp = &opt->groups[g];
        const int reset = reset_all || !grp->continuous;
        double before_abs = 0;
        for (size_t i = offset; i < offset + grp->n; i++) {
            before_abs += fabs(before->m[i]) + fabs(before->v[i]);
            const double want_m = reset ? 0 : before->m[i], want_v = reset ? 0 : before->v[i];
            if (opt->m[i] != want_m || opt->v[i] != want_v)
                fail_msg("group %d (%s) moment %zu: m %.9g v %.9g, want %.9g %.9g", g,
                         grp->continuous ? "continuous" : "adapter", i - offset, (double)opt->m[i],
                         (double)opt->v[i], want_m, want_v);
        }
        if (!(before_abs > 0)) fail_msg("group %d had no state before the boundary", g);
        const long want_step = reset && restart_step ? 0 : before->step[g];
        if (opt->group_step[g] != want_step)
            fail_msg("group %d step %ld, want %ld", g, opt->group_step[g], want_step);
        n_reset += reset;
        offset += grp->n;
    }
    return n_reset;
}

/* Runs `steps` steps of ft with batches from make(ctx, step, batch); returns 1 if the last
 * one ended an expert (and the boundary work ran). */
typedef const void *(*MakeBatch)(void *ctx, long step);
static int run_steps(Finetune *ft, long steps, MakeBatch make, void *ctx, OptState *before) {
    int boundary = 0;
    for (long i = 0; i < steps; i++) {
        if (finetune_step(ft, make(ctx, ft->step), NULL, NULL) != LSC_OK) fail_msg("%s", error_last());
        if (before && i + 1 == steps) *before = opt_snapshot(&ft->opt);
        boundary = finetune_after_step(ft, NULL);
        assert_true(boundary >= 0);
        if (i + 1 < steps) assert_int_equal(boundary, 0);
    }
    return boundary;
}

/* ------------------------------------------------------------------------------------------
 * DoRA's magnitudes */

typedef struct LlamaCtx {
    Llama *m;
    int32_t tokens[B * T], targets[B * T];
    LlamaBatch batch;
} LlamaCtx;

static const void *llama_make(void *ctx, long step) {
    LlamaCtx *c = ctx;
    fixture_batch(c->tokens, c->targets, B, T, c->m->config.vocab_size, 500 + (uint64_t)step);
    c->batch = (LlamaBatch){.tokens = c->tokens, .targets = c->targets, .B = B, .T = T};
    return &c->batch;
}

/* A tiny random Llama (the fixture's config) with adapters lc, fine-tuned under cfg. */
static void llama_begin(Backend *be, Llama *m, LoraAdapters *fast, const LoraConfig *lc,
                        const FinetuneConfig *cfg, Finetune *ft, uint64_t model_seed) {
    const LlamaConfig c = fixture_tiny_config(ROPE_HALF, 1);
    assert_int_equal(llama_create(m, be, &c), LSC_OK);
    fixture_randomize(m, model_seed, 0.5);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    assert_int_equal(lora_create(fast, be, lc, c.n_layers, in, out, cfg->seed), LSC_OK);
    const FinetuneModel fm = finetune_model_llama(m);
    if (finetune_begin(ft, &fm, fast, cfg) != LSC_OK) fail_msg("%s", error_last());
}

static void dora_boundary(OptimizerReset reset, float lora_plus_ratio) {
    Backend *be = backend_cpu_create(1);
    const LoraConfig lc = {.rank = 2, .alpha = 4, .targets = LORA_DEFAULT_TARGETS, .use_dora = 1};
    FinetuneConfig cfg = {.total_steps = 6, .batch = B, .seq = T, .lora_plus_ratio = lora_plus_ratio,
                          .schedule = {.kind = SCHEDULE_CONSTANT, .peak_lr = 1e-2f},
                          .adamw = adamw_default_config(), .seed = 12};
    assert_int_equal(cascade_preset("lorasc", &cfg.cascade), LSC_OK);
    cfg.cascade.n_experts = 3;
    cfg.cascade.noise = 0.5f;
    cfg.cascade.reset = reset;
    Llama m;
    LoraAdapters fast;
    Finetune ft;
    llama_begin(be, &m, &fast, &lc, &cfg, &ft, 61);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&m.config, in, out);
    int n_continuous = 0;
    for (int g = 0; g < ft.opt.n_groups; g++) {
        n_continuous += ft.opt.groups[g].continuous;
        if (ft.opt.groups[g].continuous) /* an m [out] */
            assert_true(ft.opt.groups[g].n == (size_t)out[LORA_Q] || ft.opt.groups[g].n == (size_t)out[LORA_V]);
    }
    assert_int_equal(n_continuous, 2 * m.config.n_layers); /* one magnitude per adapted matrix */
    LlamaCtx ctx = {.m = &m};
    OptState before;
    assert_int_equal(run_steps(&ft, 2, llama_make, &ctx, &before), 1); /* expert 1 of 3 */
    const int n_reset = check_reset(&ft.opt, &before, reset == OPTIMIZER_RESET_ALL, 1);
    assert_int_equal(n_reset, reset == OPTIMIZER_RESET_ALL ? ft.opt.n_groups : ft.opt.n_groups - n_continuous);
    opt_state_free(&before);
    /* the magnitudes' bias correction carries on: step 3 for them, 1 for the new expert */
    assert_int_equal(run_steps(&ft, 1, llama_make, &ctx, NULL), 0);
    for (int g = 0; g < ft.opt.n_groups; g++)
        assert_int_equal(ft.opt.group_step[g], ft.opt.groups[g].continuous && reset != OPTIMIZER_RESET_ALL ? 3 : 1);
    finetune_end(&ft);
    lora_free(&fast);
    llama_free(&m);
    backend_cpu_destroy(be);
}

static void test_dora_magnitudes_continue(void **state) {
    (void)state;
    dora_boundary(OPTIMIZER_RESET_ADAPTERS, 1.0f);  /* one LR group: m split off all the same */
    dora_boundary(OPTIMIZER_RESET_ADAPTERS, 16.0f); /* LoRA+ groups */
    dora_boundary(OPTIMIZER_RESET_ALL, 1.0f);
}

/* ------------------------------------------------------------------------------------------
 * a ViT's head */

typedef struct VitCtx {
    Real images[B * 64];
    int32_t labels[B];
    VitBatch batch;
} VitCtx;

static const void *vit_make(void *ctx, long step) {
    VitCtx *c = ctx;
    philox_uniform(c->images, B * 64, 70 + (uint64_t)step, 1, -1, 1);
    for (int b = 0; b < B; b++) c->labels[b] = (int32_t)(philox_u32(70 + (uint64_t)step, 2, (uint64_t)b) % 3);
    c->batch = (VitBatch){.images = c->images, .labels = c->labels, .B = B};
    return &c->batch;
}

static void vit_boundary(OptimizerReset reset) {
    Backend *be = backend_cpu_create(1);
    const ViTConfig vc = {.image_size = 8, .patch_size = 4, .channels = 1, .dim = 8, .n_layers = 1,
                          .n_heads = 2, .mlp_dim = 16, .n_classes = 3, .norm_eps = 1e-6f,
                          .gelu = GELU_ERF, .patch_bias = 1};
    ViT m;
    assert_int_equal(vit_create(&m, be, &vc), LSC_OK);
    vit_init_random(&m, 4);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    vit_lora_shapes(&vc, in, out);
    const LoraConfig lc = {.rank = 2, .alpha = 4, .targets = LORA_DEFAULT_TARGETS};
    LoraAdapters fast;
    FinetuneConfig cfg = {.total_steps = 4, .batch = B, .seq = 1, .lora_plus_ratio = 1,
                          .schedule = {.kind = SCHEDULE_CONSTANT, .peak_lr = 1e-2f},
                          .adamw = adamw_default_config(), .seed = 3};
    assert_int_equal(cascade_preset("cascade", &cfg.cascade), LSC_OK);
    cfg.cascade.n_experts = 2;
    cfg.cascade.reset = reset;
    assert_int_equal(lora_create(&fast, be, &lc, vc.n_layers, in, out, cfg.seed), LSC_OK);
    Finetune ft;
    const FinetuneModel fm = finetune_model_vit(&m);
    if (finetune_begin(&ft, &fm, &fast, &cfg) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(ft.opt.n_groups, 2); /* the head, then the adapters' one block */
    assert_true(ft.opt.groups[0].continuous && ft.opt.groups[0].p == m.head_params);
    VitCtx ctx;
    OptState before;
    assert_int_equal(run_steps(&ft, 2, vit_make, &ctx, &before), 1);
    assert_int_equal(check_reset(&ft.opt, &before, reset == OPTIMIZER_RESET_ALL, 1),
                     reset == OPTIMIZER_RESET_ALL ? 2 : 1);
    opt_state_free(&before);
    finetune_end(&ft);
    lora_free(&fast);
    vit_free(&m);
    backend_cpu_destroy(be);
}

static void test_vit_head_continues(void **state) {
    (void)state;
    vit_boundary(OPTIMIZER_RESET_ADAPTERS);
    vit_boundary(OPTIMIZER_RESET_ALL);
    assert_string_equal(cascade_reset_name(OPTIMIZER_RESET_ADAPTERS), "adapters");
    assert_string_equal(cascade_reset_name(OPTIMIZER_RESET_ALL), "all");
    assert_null(cascade_reset_name(2));
}

/* ------------------------------------------------------------------------------------------
 * ReLoRA */

static void test_relora_boundaries_and_schedule(void **state) {
    (void)state;
    CascadeConfig k;
    assert_int_equal(cascade_preset("relora", &k), LSC_OK);
    assert_true(k.schedule == EXPERT_SCHEDULE_JAGGED && !k.reset_step_count);
    assert_float_equal(k.min_lr_ratio, 0.1, 1e-7);
    /* their loop merges once update_step % N == 1: after updates N+1, 2N+1, ... */
    const long totals[] = {10, 8, 12, 2, 1};
    const int want_experts[] = {3, 2, 3, 1, 1};
    for (int i = 0; i < 5; i++) {
        Cascade c = {.total_steps = totals[i], .config = k};
        c.config.steps_per_expert = 4;
        c.n_experts = totals[i] < 2 ? 1 : 1 + (int)((totals[i] - 2) / 4);
        assert_int_equal(c.n_experts, want_experts[i]);
        for (int e = 1; e < c.n_experts; e++) assert_int_equal(cascade_expert_start(&c, e), 4 * e + 1);
        assert_int_equal(cascade_expert_start(&c, c.n_experts), totals[i]);
    }
    /* the learning rate: their schedule whatever the kind, peak x factor */
    Cascade c = {.total_steps = 40, .config = k};
    c.config.steps_per_expert = 10;
    c.config.rewarmup_steps = 3;
    c.n_experts = 4;
    const ScheduleKind kinds[] = {SCHEDULE_LINEAR, SCHEDULE_CONSTANT, SCHEDULE_COSINE};
    for (int j = 0; j < 3; j++) {
        const Schedule s = {.kind = kinds[j], .peak_lr = 2e-3f, .warmup_steps = 5};
        for (long step = 0; step < 40; step++) {
            const double want = 2e-3 * schedule_relora_factor(step, 40, 5, 3, 10, 0.1);
            assert_float_equal(cascade_lr(&c, &s, step), want, 1e-12);
        }
        assert_float_equal(cascade_lr(&c, &s, 10), 0.0, 0); /* a restart's update has lr 0 */
    }
}

/* ReLoRA's reset in a run: at the boundary after update N+1 the adapters' moments are pruned
 * (ratio 0.5: every kept entry unchanged, at least half of each A and B zeroed) or zeroed, and
 * the step count carries on; a warm-up longer than the first cycle is refused. */
static void relora_run(float pruning) {
    Backend *be = backend_cpu_create(1);
    const LoraConfig lc = {.rank = 2, .alpha = 4, .targets = LORA_DEFAULT_TARGETS | LORA_BIT(LORA_UP)};
    FinetuneConfig cfg = {.total_steps = 9, .batch = B, .seq = T, .lora_plus_ratio = 1,
                          .schedule = {.kind = SCHEDULE_LINEAR, .peak_lr = 1e-2f, .warmup_steps = 2},
                          .adamw = adamw_default_config(), .seed = 5};
    assert_int_equal(cascade_preset("relora", &cfg.cascade), LSC_OK);
    cfg.cascade.steps_per_expert = 4;
    cfg.cascade.rewarmup_steps = 2;
    cfg.cascade.moment_pruning = pruning;
    Llama m;
    LoraAdapters fast;
    Finetune ft;
    llama_begin(be, &m, &fast, &lc, &cfg, &ft, 8);
    assert_int_equal(ft.cascade.n_experts, 2); /* [0, 5), [5, 9) */
    LlamaCtx ctx = {.m = &m};
    OptState before;
    assert_int_equal(run_steps(&ft, 5, llama_make, &ctx, &before), 1);
    assert_int_equal(ft.opt.n_groups, 1);
    assert_int_equal(ft.opt.group_step[0], 5); /* torch's step is untouched by their reset */
    size_t zeros = 0, kept = 0;
    for (size_t i = 0; i < ft.opt.n_total; i++) {
        const double got[2] = {ft.opt.m[i], ft.opt.v[i]}, was[2] = {before.m[i], before.v[i]};
        for (int q = 0; q < 2; q++) {
            if (got[q] != 0 && got[q] != was[q]) fail_msg("moment %zu changed: %.9g -> %.9g", i, was[q], got[q]);
            zeros += got[q] == 0;
            kept += got[q] != 0;
        }
    }
    if (pruning > 0) assert_true(zeros >= ft.opt.n_total && kept > 0); /* half of m and of v */
    else assert_int_equal(kept, 0);
    opt_state_free(&before);
    assert_int_equal(run_steps(&ft, 4, llama_make, &ctx, NULL), 1); /* the last expert ends the run */
    assert_int_equal(ft.opt.group_step[0], 9);
    finetune_end(&ft);
    cfg.schedule.warmup_steps = 5; /* their assertion: warm-up done before the first restart */
    const FinetuneModel fm = finetune_model_llama(&m);
    assert_int_equal(finetune_begin(&ft, &fm, &fast, &cfg), LSC_ERR);
    assert_non_null(strstr(error_last(), "warm-up"));
    lora_free(&fast);
    llama_free(&m);
    backend_cpu_destroy(be);
}

static void test_relora_reset_and_pruning(void **state) {
    (void)state;
    relora_run(0.0f);
    relora_run(0.5f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dora_magnitudes_continue),
        cmocka_unit_test(test_vit_head_continues),
        cmocka_unit_test(test_relora_boundaries_and_schedule),
        cmocka_unit_test(test_relora_reset_and_pruning),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
