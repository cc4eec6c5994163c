/* Snapshots of the weights a run changes (core/model/snapshot.h): after a fine-tuning run
 * (LoRASC with noise, LoRA, DoRA) and a restore, the base model is bit-identical to before
 * the run; the run itself changed only the adapted matrices (and a ViT's head); a second run
 * on the restored base gives the same bits as a run on a fresh clone; a snapshot that misses
 * a matrix the run adapts does not restore the base. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "core/model/finetune.h"
#include "core/model/snapshot.h"
#include "tests/model_fixture.h"

enum { STEPS = 6, B = 2, T = 8, VB = 4 };

static Backend *be;

static void ok(int rc) {
    if (rc != LSC_OK) fail_msg("%s", error_last());
}

static Real *host_params(Backend *b, const Real *p, size_t n) {
    Real *h = malloc(n * sizeof *h);
    assert_non_null(h);
    b->to_host(b, h, p, n * sizeof(Real));
    return h;
}

/* m = a tiny random Llama (tied, half-rotary); returns a host copy of its weights. */
static Real *tiny_llama(Llama *m, uint64_t seed) {
    const LlamaConfig c = fixture_tiny_config(ROPE_HALF, 1);
    ok(llama_create(m, be, &c));
    fixture_randomize(m, seed, 0.5);
    return host_params(be, m->params, m->num_params);
}

static FinetuneConfig config(const char *method, int experts) {
    FinetuneConfig cfg = {.total_steps = STEPS, .batch = B, .seq = T,
                          .schedule = {.kind = SCHEDULE_CONSTANT, .peak_lr = 2e-2f},
                          .adamw = adamw_default_config(), .lora_plus_ratio = 1.0f, .seed = 9};
    ok(cascade_preset(method, &cfg.cascade));
    cfg.cascade.n_experts = experts;
    return cfg;
}

static int llama_batch(void *ctx, long step, int32_t *tokens, int32_t *targets) {
    fixture_batch(tokens, targets, B, T, *(const int *)ctx, 50 + (uint64_t)step);
    return LSC_OK;
}

/* A LoRASC (noise, 2 experts) or DoRA run of the given targets on m; m keeps the merged
 * update. */
static void llama_run(Llama *m, unsigned targets, int dora) {
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&m->config, in, out);
    const LoraConfig lc = {.rank = 2, .alpha = 4.0f, .targets = targets, .use_dora = dora};
    LoraAdapters lora;
    ok(lora_create(&lora, m->be, &lc, m->config.n_layers, in, out, 3));
    const FinetuneConfig cfg = dora ? config("lora", 1) : config("lorasc", 2);
    const FinetuneCallbacks cb = {.batch = llama_batch, .ctx = &m->config.vocab_size};
    ok(finetune_run(m, &lora, &cfg, &cb));
    llama_attach_lora(m, NULL);
    lora_free(&lora);
}

/* 1 when element i of m's parameter block lies in a matrix of the targets. */
static int in_targets(const Llama *m, size_t i, unsigned targets) {
    static const int tensor[LORA_NUM_TARGETS] = {LLAMA_WQ, LLAMA_WK, LLAMA_WV, LLAMA_WO,
                                                 LLAMA_W1, LLAMA_W3, LLAMA_W2};
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!(targets & LORA_BIT(t))) continue;
        const size_t lo = (size_t)(m->w.tensors[tensor[t]] - m->params);
        if (i >= lo && i < lo + m->param_sizes[tensor[t]]) return 1;
    }
    return 0;
}

static void test_llama_restore(void **state) {
    (void)state;
    const unsigned qv = LORA_DEFAULT_TARGETS, qkvo = qv | LORA_BIT(LORA_K) | LORA_BIT(LORA_O);
    const struct {
        unsigned targets;
        int dora;
    } runs[] = {{qv, 0}, {qv, 1}, {qkvo, 0}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        Llama m;
        Real *before = tiny_llama(&m, 7);
        Snapshot s;
        ok(snapshot_llama(&s, &m, runs[r].targets));
        llama_run(&m, runs[r].targets, runs[r].dora);
        Real *after = host_params(be, m.params, m.num_params);
        size_t changed = 0;
        for (size_t i = 0; i < m.num_params; i++) {
            if (after[i] == before[i]) continue;
            changed++;
            if (!in_targets(&m, i, runs[r].targets))
                fail_msg("run %zu changed weight %zu, outside the adapted matrices", r, i);
        }
        printf("  llama run %zu: %zu of %zu weights changed, all in the adapted matrices; "
               "snapshot of %zu values\n",
               r, changed, m.num_params, s.total);
        assert_true(changed > 0);
        ok(snapshot_restore(&s));
        Real *restored = host_params(be, m.params, m.num_params);
        if (memcmp(restored, before, m.num_params * sizeof(Real)) != 0)
            fail_msg("run %zu: the restored base differs from the base before the run", r);
        ok(snapshot_restore(&s)); /* restoring again is harmless */
        free(restored);
        free(after);
        free(before);
        snapshot_free(&s);
        llama_free(&m);
    }
}

/* Two runs on one base, restored in between, give the bits of a run on a fresh clone. */
static void test_llama_shared_base(void **state) {
    (void)state;
    const LlamaConfig c = fixture_tiny_config(ROPE_INTERLEAVED, 0);
    Llama base, clone;
    ok(llama_create(&base, be, &c));
    fixture_randomize(&base, 8, 0.5);
    ok(llama_clone(&clone, &base));
    llama_run(&clone, LORA_DEFAULT_TARGETS, 0);
    Real *want = host_params(be, clone.params, clone.num_params);
    Snapshot s;
    ok(snapshot_llama(&s, &base, LORA_DEFAULT_TARGETS));
    for (int k = 0; k < 2; k++) {
        llama_run(&base, LORA_DEFAULT_TARGETS, 0);
        Real *got = host_params(be, base.params, base.num_params);
        if (memcmp(got, want, base.num_params * sizeof(Real)) != 0)
            fail_msg("run %d on the shared base differs from the run on a clone", k);
        free(got);
        ok(snapshot_restore(&s));
    }
    free(want);
    snapshot_free(&s);
    llama_free(&clone);
    llama_free(&base);
}

/* A snapshot of q alone cannot undo a run that also adapts v. */
static void test_llama_missing_target(void **state) {
    (void)state;
    Llama m;
    Real *before = tiny_llama(&m, 9);
    Snapshot s;
    ok(snapshot_llama(&s, &m, LORA_BIT(LORA_Q)));
    llama_run(&m, LORA_DEFAULT_TARGETS, 0);
    ok(snapshot_restore(&s));
    Real *restored = host_params(be, m.params, m.num_params);
    size_t differ = 0;
    for (size_t i = 0; i < m.num_params; i++) {
        differ += restored[i] != before[i];
        if (restored[i] != before[i] && !in_targets(&m, i, LORA_BIT(LORA_V)))
            fail_msg("weight %zu differs outside v", i);
    }
    assert_true(differ > 0);
    free(restored);
    free(before);
    snapshot_free(&s);
    llama_free(&m);
}

/* ViT: the targets and the head (a run re-initialises and trains it) come back too. */
static void test_vit_restore(void **state) {
    (void)state;
    const ViTConfig c = {.image_size = 8, .patch_size = 4, .channels = 1, .dim = 8, .n_layers = 2,
                         .n_heads = 2, .mlp_dim = 16, .n_classes = 3, .norm_eps = 1e-5f,
                         .gelu = GELU_ERF};
    ViT m;
    ok(vit_create(&m, be, &c));
    vit_init_random(&m, 4);
    Real *before = host_params(be, m.params, m.num_params);
    const unsigned targets = LORA_DEFAULT_TARGETS | LORA_BIT(LORA_UP);
    Snapshot s;
    ok(snapshot_vit(&s, &m, targets, 1));
    ok(vit_init_head(&m, 77)); /* the run's own head, as the harness gives every run */
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    vit_lora_shapes(&c, in, out);
    const LoraConfig lc = {.rank = 2, .alpha = 4.0f, .targets = targets, .use_dora = 1};
    LoraAdapters lora;
    ok(lora_create(&lora, be, &lc, c.n_layers, in, out, 5));
    FinetuneConfig cfg = config("lorasc", 2);
    cfg.batch = VB;
    cfg.seq = 1;
    Finetune ft;
    const FinetuneModel fm = finetune_model_vit(&m);
    ok(finetune_begin(&ft, &fm, &lora, &cfg));
    Real images[VB * 64];
    int32_t labels[VB] = {0, 1, 2, 1};
    for (long step = 0; step < STEPS; step++) {
        philox_uniform(images, VB * 64, 3, (uint64_t)step, -1.0, 1.0);
        const VitBatch b = {.images = images, .labels = labels, .B = VB};
        ok(finetune_step(&ft, &b, NULL, NULL));
        assert_true(finetune_after_step(&ft, NULL) >= 0);
    }
    finetune_end(&ft);
    ok(vit_attach_lora(&m, NULL));
    lora_free(&lora);
    Real *after = host_params(be, m.params, m.num_params);
    const size_t head_at = (size_t)(m.head_params - m.params);
    size_t changed = 0, head_changed = 0;
    for (size_t i = 0; i < m.num_params; i++) {
        changed += after[i] != before[i];
        head_changed += after[i] != before[i] && i >= head_at;
    }
    printf("  vit: %zu of %zu weights changed (%zu in the head); snapshot of %zu values\n", changed,
           m.num_params, head_changed, s.total);
    assert_true(changed > head_changed && head_changed > 0);
    ok(snapshot_restore(&s));
    Real *restored = host_params(be, m.params, m.num_params);
    if (memcmp(restored, before, m.num_params * sizeof(Real)) != 0)
        fail_msg("the restored ViT differs from the ViT before the run");
    free(restored);
    free(after);
    free(before);
    snapshot_free(&s);
    ok(snapshot_vit(&s, &m, 0, 0)); /* nothing to save */
    assert_int_equal(s.total, 0);
    ok(snapshot_restore(&s));
    snapshot_free(&s);
    vit_free(&m);
}

int main(void) {
    be = backend_cpu_create(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_restore),
        cmocka_unit_test(test_llama_shared_base),
        cmocka_unit_test(test_llama_missing_target),
        cmocka_unit_test(test_vit_restore),
    };
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    backend_cpu_destroy(be);
    return failed;
}
