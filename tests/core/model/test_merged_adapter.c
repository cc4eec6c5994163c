/* The adapter of a run (cascade_merged_adapter, finetune_merged_adapter): whatever the method
 * merged into the base, the one adapter it gives, attached to a copy of the base the run
 * started from, must give the trained model's logits. LoRA and LoRA+ (one expert), +Cascade
 * and LoRASC without noise (T experts stacked: rank T r), slow_merge = replace (the last slow
 * adapter), ReLoRA (a merge per restart), DoRA (one expert, with its magnitudes); refused with
 * a sentence: noise between experts, DoRA over several experts. Built in float (tolerance 1e-5
 * relative) and in double (1e-11: the stacked sum differs from the sequential merges by
 * rounding only). */
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
#include "tests/check.h"
#include "tests/model_fixture.h"

enum { B = 2, T = 6 };

#ifdef LORASC_REAL_DOUBLE
#define TOL 1e-11
#else
#define TOL 1e-5
#endif

static Backend *be;

typedef struct Case {
    const char *name, *method;
    int experts, every, dora, targets;
    float alpha, noise, ratio;
    SlowMerge merge;
    long steps;
    int want_rank_factor; /* expected rank / r; 0: refused */
    const char *refusal;  /* a word the refusal must hold */
} Case;

/* Trains a copy of base with the case's method, then compares. */
static void run_case(const Llama *base, const Case *k) {
    Llama m, start;
    assert_int_equal(llama_create(&m, be, &base->config), LSC_OK);
    assert_int_equal(llama_create(&start, be, &base->config), LSC_OK);
    be->copy(be, m.params, base->params, base->num_params * sizeof(Real));
    be->copy(be, start.params, base->params, base->num_params * sizeof(Real));
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&base->config, in, out);
    const LoraConfig lc = {
        .rank = 2, .alpha = 6, .targets = (unsigned)k->targets, .use_dora = k->dora};
    LoraAdapters fast, merged;
    FinetuneConfig cfg = {
        .total_steps = k->steps,
        .batch = B,
        .seq = T,
        .lora_plus_ratio = k->ratio,
        .schedule = {.kind = SCHEDULE_LINEAR, .peak_lr = 5e-2f, .warmup_steps = 1},
        .adamw = adamw_default_config(),
        .seed = 77};
    assert_int_equal(cascade_preset(k->method, &cfg.cascade), LSC_OK);
    cfg.cascade.alpha = k->alpha;
    cfg.cascade.noise = k->noise;
    if (k->every)
        cfg.cascade.steps_per_expert = k->every;
    else
        cfg.cascade.n_experts = k->experts;
    cfg.cascade.slow_merge = k->merge;
    cfg.cascade.keep_merges = 1;
    assert_int_equal(lora_create(&fast, be, &lc, base->config.n_layers, in, out, cfg.seed), LSC_OK);
    Finetune ft;
    const FinetuneModel fm = finetune_model_llama(&m);
    if (finetune_begin(&ft, &fm, &fast, &cfg) != LSC_OK) fail_msg("%s: %s", k->name, error_last());
    int32_t tokens[B * T], targets[B * T];
    assert_int_equal(finetune_merged_adapter(&ft, &merged), LSC_ERR); /* not done yet */
    while (!finetune_done(&ft)) {
        fixture_batch(tokens, targets, B, T, base->config.vocab_size, 500 + (uint64_t)ft.step);
        const LlamaBatch batch = {.tokens = tokens, .targets = targets, .B = B, .T = T};
        assert_int_equal(finetune_step(&ft, &batch, NULL, NULL), LSC_OK);
        assert_true(finetune_after_step(&ft, NULL) >= 0);
    }
    const int rc = finetune_merged_adapter(&ft, &merged);
    const int n_experts = ft.cascade.n_experts;
    finetune_end(&ft);
    llama_attach_lora(&m, NULL);
    if (!k->want_rank_factor) {
        assert_int_equal(rc, LSC_ERR);
        if (!strstr(error_last(), k->refusal))
            fail_msg("%s: \"%s\" lacks \"%s\"", k->name, error_last(), k->refusal);
        printf("%-28s refused: %s\n", k->name, error_last());
    } else {
        if (rc != LSC_OK) fail_msg("%s: %s", k->name, error_last());
        assert_int_equal(merged.config.rank, 2 * k->want_rank_factor);
        assert_true(fabsf(merged.scaling - fast.scaling) <= 1e-6f * fast.scaling);
        fixture_batch(tokens, targets, B, T, base->config.vocab_size, 9);
        const size_t n = (size_t)B * T * (size_t)base->config.vocab_size;
        Real *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
        double *w = malloc(n * sizeof *w), *g = malloc(n * sizeof *g);
        assert_int_equal(llama_forward(&m, tokens, NULL, B, T), LSC_OK);
        be->to_host(be, want, m.acts.logits, n * sizeof *want);
        llama_attach_lora(&start, &merged);
        assert_int_equal(llama_forward(&start, tokens, NULL, B, T), LSC_OK);
        be->to_host(be, got, start.acts.logits, n * sizeof *got);
        double worst = 0, base_move = 0;
        for (size_t i = 0; i < n; i++) {
            w[i] = want[i], g[i] = got[i];
            if (fabs(w[i] - g[i]) > worst) worst = fabs(w[i] - g[i]);
        }
        /* the adapter must matter: the base alone is far from the trained model */
        llama_attach_lora(&start, NULL);
        assert_int_equal(llama_forward(&start, tokens, NULL, B, T), LSC_OK);
        be->to_host(be, got, start.acts.logits, n * sizeof *got);
        for (size_t i = 0; i < n; i++)
            if (fabs(w[i] - (double)got[i]) > base_move) base_move = fabs(w[i] - (double)got[i]);
        assert_int_equal(check_close_f64(k->name, g, w, n, TOL, TOL), 0);
        assert_true(base_move > 1e3 * TOL);
        printf("%-28s %d experts -> rank %d adapter: max |logit diff| %.3g (the run moved them by "
               "%.3g)\n",
               k->name, n_experts, merged.config.rank, worst, base_move);
        free(want), free(got), free(w), free(g);
        lora_free(&merged);
    }
    lora_free(&fast);
    llama_free(&m);
    llama_free(&start);
}

static void test_methods(void **state) {
    (void)state;
    LlamaConfig c = fixture_tiny_config(ROPE_INTERLEAVED, 0);
    Llama base;
    assert_int_equal(llama_create(&base, be, &c), LSC_OK);
    fixture_randomize(&base, 41, 0.5);
    const int qv = LORA_DEFAULT_TARGETS, all = (1 << LORA_NUM_TARGETS) - 1;
    const Case cases[] = {
        {"lora", "lora", 1, 0, 0, qv, 0, 0, 1, SLOW_MERGE_CUMULATIVE, 12, 1, NULL},
        {"lora+ (ratio 4)", "lora", 1, 0, 0, all, 0, 0, 4, SLOW_MERGE_CUMULATIVE, 12, 1, NULL},
        {"+cascade (3 experts)", "cascade", 3, 0, 0, all, 0, 0, 1, SLOW_MERGE_CUMULATIVE, 15, 3,
         NULL},
        {"lorasc alpha .6, lambda 0", "lorasc", 4, 0, 0, qv, 0.6f, 0, 1, SLOW_MERGE_CUMULATIVE, 16,
         4, NULL},
        {"lorasc replace", "lorasc", 3, 0, 0, qv, 0.5f, 0, 1, SLOW_MERGE_REPLACE, 12, 1, NULL},
        {"cola", "cola", 2, 0, 0, qv, 0, 0, 1, SLOW_MERGE_CUMULATIVE, 10, 2, NULL},
        {"relora (every 5, 17 steps)", "relora", 0, 5, 0, qv, 0, 0, 1, SLOW_MERGE_CUMULATIVE, 17, 4,
         NULL},
        {"dora", "lora", 1, 0, 1, all, 0, 0, 1, SLOW_MERGE_CUMULATIVE, 12, 1, NULL},
        {"dora, one expert + noise", "lorasc", 1, 0, 1, qv, 0.5f, 1, 1, SLOW_MERGE_CUMULATIVE, 8, 1,
         NULL},
        {"lorasc lambda 1", "lorasc", 3, 0, 0, qv, 0.8f, 1, 1, SLOW_MERGE_CUMULATIVE, 12, 0,
         "noise"},
        {"dora cascade", "cascade", 2, 0, 1, qv, 0, 0, 1, SLOW_MERGE_CUMULATIVE, 8, 0, "DoRA"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&base, &cases[i]);
    llama_free(&base);
}

static int setup(void **state) {
    (void)state;
    be = backend_cpu_create(1);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    backend_cpu_destroy(be);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_methods)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
