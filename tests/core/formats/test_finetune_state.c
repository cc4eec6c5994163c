/* The state of a fine-tuning run (core/formats/finetune_state.h): a run stopped after k steps,
 * saved, torn down and rebuilt from its base, loaded and finished, gives bit for bit the
 * losses and the final weights of the run that was never stopped, for k = 0, mid-expert, at
 * an expert boundary, right after it, and at the end, on two threads. Llama with LoRASC
 * (slow adapter, noise, LoRA+ groups), DoRA under the cascade (continuous magnitude groups),
 * ReLoRA with magnitude pruning (its step counts carry on); a ViT whose head trains in full.
 * A state of another run, build, length or shape, a truncated, bit-flipped or missing file is
 * one sentence, and a refused state leaves the run as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "core/formats/finetune_state.h"
#include "tests/model_fixture.h"

enum { B = 2, T = 6, STEPS = 9, MAX_STEPS = 16 };
static const char PATH[] = "test_finetune_state.ckpt";

/* ------------------------------------------------------------------------------------------
 * a run of either model, rebuilt from scratch each time */

typedef struct Run {
    Backend *be;
    int vit;              /* 0: Llama, 1: ViT */
    Llama llama;
    ViT v;
    LoraAdapters fast;
    Finetune ft;
    int32_t tokens[B * T], targets[B * T];
    Real images[B * 64];
    int32_t labels[B];
} Run;

typedef struct Setup {
    int vit;
    FinetuneConfig cfg;
    LoraConfig lc;
} Setup;

static const ViTConfig VIT_CONFIG = {.image_size = 8, .patch_size = 4, .channels = 1, .dim = 8,
                                     .n_layers = 2, .n_heads = 2, .mlp_dim = 16, .n_classes = 3,
                                     .norm_eps = 1e-6f, .gelu = GELU_ERF, .patch_bias = 1};

/* The same base every time (seeded), fresh adapters, finetune_begin: the run as it began. */
static void run_begin(Run *r, Backend *be, const Setup *s) {
    memset(r, 0, sizeof *r);
    r->be = be;
    r->vit = s->vit;
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    FinetuneModel fm;
    if (s->vit) {
        assert_int_equal(vit_create(&r->v, be, &VIT_CONFIG), LSC_OK);
        vit_init_random(&r->v, 4);
        vit_lora_shapes(&VIT_CONFIG, in, out);
        fm = finetune_model_vit(&r->v);
    } else {
        const LlamaConfig c = fixture_tiny_config(ROPE_HALF, 1);
        assert_int_equal(llama_create(&r->llama, be, &c), LSC_OK);
        fixture_randomize(&r->llama, 61, 0.5);
        llama_lora_shapes(&c, in, out);
        fm = finetune_model_llama(&r->llama);
    }
    const int n_layers = s->vit ? VIT_CONFIG.n_layers : r->llama.config.n_layers;
    assert_int_equal(lora_create(&r->fast, be, &s->lc, n_layers, in, out, s->cfg.seed), LSC_OK);
    if (finetune_begin(&r->ft, &fm, &r->fast, &s->cfg) != LSC_OK) fail_msg("%s", error_last());
}

static void run_end(Run *r) {
    finetune_end(&r->ft);
    lora_free(&r->fast);
    if (r->vit) vit_free(&r->v);
    else llama_free(&r->llama);
}

/* The batch of a step: a pure function of the step, as the harness's samplers are. */
static const void *run_batch(Run *r, long step, LlamaBatch *lb, VitBatch *vb) {
    if (r->vit) {
        philox_uniform(r->images, B * 64, 70 + (uint64_t)step, 1, -1, 1);
        for (int b = 0; b < B; b++)
            r->labels[b] = (int32_t)(philox_u32(70 + (uint64_t)step, 2, (uint64_t)b) % 3);
        *vb = (VitBatch){.images = r->images, .labels = r->labels, .B = B};
        return vb;
    }
    fixture_batch(r->tokens, r->targets, B, T, r->llama.config.vocab_size, 500 + (uint64_t)step);
    *lb = (LlamaBatch){.tokens = r->tokens, .targets = r->targets, .B = B, .T = T};
    return lb;
}

/* Steps until ft has done `until` steps; the loss of step i goes to losses[i]. */
static void run_steps(Run *r, long until, double *losses) {
    while (r->ft.step < until) {
        LlamaBatch lb;
        VitBatch vb;
        StepResult res;
        const long step = r->ft.step;
        if (finetune_step(&r->ft, run_batch(r, step, &lb, &vb), &res, NULL) != LSC_OK)
            fail_msg("step %ld: %s", step, error_last());
        assert_true(finetune_after_step(&r->ft, NULL) >= 0);
        losses[step] = res.loss;
    }
}

/* Every weight of the model (a ViT's head is inside its block). */
static void run_weights(const Run *r, Real **out, size_t *n) {
    *n = r->vit ? r->v.num_params : r->llama.num_params;
    *out = malloc(*n * sizeof(Real));
    r->be->to_host(r->be, *out, r->vit ? r->v.params : r->llama.params, *n * sizeof(Real));
}

static void expect_same(const char *what, const Real *want, const Real *got, size_t n, long k) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&want[i], &got[i], sizeof(Real)) != 0)
            fail_msg("stopped at step %ld: %s[%zu] = %.9g after resuming, %.9g without a stop", k,
                     what, i, (double)got[i], (double)want[i]);
}

/* ------------------------------------------------------------------------------------------
 * resume = never stopped, bit for bit */

static void check_resume(const Setup *s, const long *stops, int n_stops) {
    Backend *be = backend_cpu_create(2);
    const long total = s->cfg.total_steps;
    double want_loss[MAX_STEPS];
    Run ref;
    run_begin(&ref, be, s);
    run_steps(&ref, total, want_loss);
    Real *want, *got;
    size_t n, n2;
    run_weights(&ref, &want, &n);
    run_end(&ref);
    for (int i = 0; i < n_stops; i++) {
        const long k = stops[i];
        double loss[MAX_STEPS];
        Run r;
        run_begin(&r, be, s);
        run_steps(&r, k, loss);
        if (finetune_state_save(PATH, &r.ft, "run-abc build-1", 1000 + k) != LSC_OK) fail_msg("%s", error_last());
        run_end(&r);
        run_begin(&r, be, s); /* a new process: the base again, the state over it */
        int64_t mark = -1;
        if (finetune_state_load(PATH, &r.ft, "run-abc build-1", &mark) != LSC_OK) fail_msg("%s", error_last());
        assert_int_equal(mark, 1000 + k);
        assert_int_equal(r.ft.step, k);
        run_steps(&r, total, loss);
        for (long j = k; j < total; j++)
            if (memcmp(&loss[j], &want_loss[j], sizeof loss[j]) != 0)
                fail_msg("stopped at step %ld: loss of step %ld is %.17g after resuming, %.17g without a stop",
                         k, j, loss[j], want_loss[j]);
        run_weights(&r, &got, &n2);
        assert_int_equal(n, n2);
        expect_same("weights", want, got, n, k);
        free(got);
        run_end(&r);
    }
    free(want);
    remove(PATH);
    backend_cpu_destroy(be);
}

static Setup llama_setup(const char *method) {
    Setup s = {.cfg = {.total_steps = STEPS, .batch = B, .seq = T, .lora_plus_ratio = 1,
                       .schedule = {.kind = SCHEDULE_LINEAR, .peak_lr = 1e-2f, .warmup_steps = 2},
                       .adamw = adamw_default_config(), .weight_decay = 0.01f, .seed = 12},
               .lc = {.rank = 2, .alpha = 4, .targets = LORA_DEFAULT_TARGETS}};
    assert_int_equal(cascade_preset(method, &s.cfg.cascade), LSC_OK);
    return s;
}

static void test_lorasc_resumes_bit_for_bit(void **state) {
    (void)state;
    Setup s = llama_setup("lorasc"); /* slow adapter, noise, 3 experts: boundaries after 3, 6, 9 */
    s.cfg.cascade.n_experts = 3;
    s.cfg.lora_plus_ratio = 4; /* LoRA+: one group per A and per B */
    s.lc.targets |= LORA_BIT(LORA_GATE);
    const long stops[] = {0, 2, 3, 4, 7, STEPS};
    check_resume(&s, stops, 6);
}

static void test_dora_cascade_resumes_bit_for_bit(void **state) {
    (void)state;
    Setup s = llama_setup("lorasc");
    s.cfg.cascade.n_experts = 2; /* the magnitudes' AdamW state carries across the boundary */
    s.lc.use_dora = 1;
    const long stops[] = {1, 4, 5};
    check_resume(&s, stops, 3);
}

static void test_relora_resumes_bit_for_bit(void **state) {
    (void)state;
    Setup s = llama_setup("relora"); /* experts [0, 4), [4, 7), [7, 9): the first is one longer */
    s.cfg.cascade.steps_per_expert = 3;
    s.cfg.cascade.rewarmup_steps = 1;
    s.cfg.cascade.moment_pruning = 0.5f;
    const long stops[] = {3, 4, 8};
    check_resume(&s, stops, 3);
}

static void test_vit_resumes_bit_for_bit(void **state) {
    (void)state;
    Setup s = llama_setup("lorasc");
    s.vit = 1;
    s.cfg.seq = 1;
    s.cfg.cascade.n_experts = 3;
    const long stops[] = {0, 3, 5};
    check_resume(&s, stops, 3);
}

/* ------------------------------------------------------------------------------------------
 * refused states */

/* Loading fails with a message containing `want`, and the run is left as it was. */
static void expect_refused(Run *r, const char *key, const char *want) {
    Real *before, *after;
    size_t n, n2;
    run_weights(r, &before, &n);
    Real *fast = malloc(r->fast.num_params * sizeof(Real));
    memcpy(fast, r->fast.params, r->fast.num_params * sizeof(Real));
    const long step = r->ft.step;
    if (finetune_state_load(PATH, &r->ft, key, NULL) == LSC_OK) fail_msg("a state loaded; expected '%s'", want);
    if (!strstr(error_last(), want)) fail_msg("expected '%s' in: %s", want, error_last());
    if (!strstr(error_last(), PATH)) fail_msg("the message does not name the file: %s", error_last());
    assert_int_equal(r->ft.step, step);
    run_weights(r, &after, &n2);
    expect_same("weights after a refused state", before, after, n, -1);
    expect_same("adapter after a refused state", fast, r->fast.params, r->fast.num_params, -1);
    free(before), free(after), free(fast);
}

static void rewrite(long offset, long truncate_to) {
    FILE *f = fopen(PATH, "r+b");
    assert_non_null(f);
    if (offset >= 0) {
        fseek(f, offset, SEEK_SET);
        const int c = fgetc(f);
        fseek(f, offset, SEEK_SET);
        fputc(c ^ 0x10, f);
    }
    fclose(f);
    if (truncate_to >= 0) assert_int_equal(truncate(PATH, truncate_to), 0);
}

static long file_size(void) {
    FILE *f = fopen(PATH, "rb");
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fclose(f);
    return n;
}

static void test_refused_states(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    Setup s = llama_setup("lorasc");
    s.cfg.cascade.n_experts = 3;
    double loss[MAX_STEPS];
    Run r;
    run_begin(&r, be, &s);
    run_steps(&r, 4, loss);
    assert_int_equal(finetune_state_save(PATH, &r.ft, "run-abc build-1", 7), LSC_OK);
    run_end(&r);

    run_begin(&r, be, &s);
    expect_refused(&r, "run-abc build-2", "not by this one");
    run_end(&r);

    Setup longer = s;
    longer.cfg.total_steps = STEPS + 1;
    run_begin(&r, be, &longer);
    expect_refused(&r, "run-abc build-1", "a run of 9 steps; this run has 10");
    run_end(&r);

    Setup wider = s;
    wider.lc.rank = 3;
    run_begin(&r, be, &wider);
    expect_refused(&r, "run-abc build-1", "another shape");
    run_end(&r);

    Setup more_targets = s;
    more_targets.lc.targets |= LORA_BIT(LORA_K);
    run_begin(&r, be, &more_targets);
    expect_refused(&r, "run-abc build-1", "has no section 'weight.0.k_proj'");
    run_end(&r);

    /* a flipped bit in the key section: refused before anything is copied */
    run_begin(&r, be, &s);
    rewrite(16 + 48 + 3, -1);
    expect_refused(&r, "run-abc build-1", "checksum");
    run_steps(&r, 4, loss);
    assert_int_equal(finetune_state_save(PATH, &r.ft, "run-abc build-1", 7), LSC_OK);
    rewrite(-1, file_size() - 5);
    expect_refused(&r, "run-abc build-1", "truncated");
    remove(PATH);
    expect_refused(&r, "run-abc build-1", "Cannot open");
    run_end(&r);
    backend_cpu_destroy(be);
}

/* A bit flipped in the last large block is found by its checksum before any block is
 * copied: the run is left as it was. */
static void test_corrupt_block(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    Setup s = llama_setup("lorasc");
    Run r;
    double loss[MAX_STEPS];
    run_begin(&r, be, &s);
    run_steps(&r, 2, loss);
    assert_int_equal(finetune_state_save(PATH, &r.ft, "k", 0), LSC_OK);
    run_end(&r);
    run_begin(&r, be, &s);
    rewrite(file_size() - 200, -1); /* inside adamw.v, read last */
    expect_refused(&r, "k", "checksum of section 'adamw.v'");
    run_end(&r);
    remove(PATH);
    backend_cpu_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lorasc_resumes_bit_for_bit),
        cmocka_unit_test(test_dora_cascade_resumes_bit_for_bit),
        cmocka_unit_test(test_relora_resumes_bit_for_bit),
        cmocka_unit_test(test_vit_resumes_bit_for_bit),
        cmocka_unit_test(test_refused_states),
        cmocka_unit_test(test_corrupt_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
