/* Training on the CPU: the same seed gives bit-identical losses when run twice and when the
 * run is saved and reloaded in the middle (model, adapters, AdamW moments); training
 * reduces the loss, in full and in LoRA mode. Two threads, so OpenMP determinism counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/formats/checkpoint.h"
#include "core/base/error.h"
#include "core/model/schedule.h"
#include "core/model/train.h"
#include "tests/model_fixture.h"

enum { B = 3, T = 12, STEPS = 12 };

typedef struct Run {
    Backend *be;
    Llama model;
    LoraAdapters lora;
    AdamW opt;
    int lora_mode;
} Run;

static LlamaConfig train_config(void) {
    return (LlamaConfig){.dim = 32, .hidden_dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                         .vocab_size = 50, .seq_len = 16, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                         .tied_embeddings = 1, .rope_style = ROPE_INTERLEAVED};
}

static void run_setup(Run *r, int lora_mode) {
    memset(r, 0, sizeof *r);
    r->be = backend_cpu_create(2);
    r->lora_mode = lora_mode;
    LlamaConfig c = train_config();
    assert_int_equal(llama_create(&r->model, r->be, &c), LSC_OK);
    llama_init_random(&r->model, 1234);
    if (lora_mode) {
        int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
        llama_lora_shapes(&c, in, out);
        LoraConfig lc = {.rank = 4, .alpha = 8, .targets = LORA_DEFAULT_TARGETS | LORA_BIT(LORA_UP)};
        assert_int_equal(lora_create(&r->lora, r->be, &lc, c.n_layers, in, out, 99), LSC_OK);
        llama_attach_lora(&r->model, &r->lora);
    } else {
        assert_int_equal(llama_enable_full_grads(&r->model), LSC_OK);
    }
    ParamGroup g[1];
    assert_int_equal(train_param_groups(&r->model, 0.01f, g), 1);
    AdamWConfig oc = adamw_default_config();
    assert_int_equal(adamw_create(&r->opt, r->be, &oc, g, 1), LSC_OK);
}

static void run_teardown(Run *r) {
    adamw_free(&r->opt);
    if (r->lora_mode) lora_free(&r->lora);
    llama_free(&r->model);
    backend_cpu_destroy(r->be);
}

/* The batch of step s: a deterministic function of s, so a resumed run sees the same data. */
static void batch_for_step(int32_t *tokens, int32_t *targets, long s) {
    int32_t seq[B * (T + 1)];
    for (int i = 0; i < B * (T + 1); i++) /* a learnable pattern: counting with noise */
        seq[i] = (int32_t)(((i % (T + 1)) * 3 + (philox_u32(77, (uint64_t)s, (uint64_t)i) % 3)) % 50);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            tokens[b * T + t] = seq[b * (T + 1) + t];
            targets[b * T + t] = seq[b * (T + 1) + t + 1];
        }
}

static void train_steps(Run *r, long from, long to, double *losses) {
    const Schedule sched = {.kind = SCHEDULE_COSINE, .peak_lr = 3e-3f, .warmup_steps = 2};
    int32_t tokens[B * T], targets[B * T];
    for (long s = from; s < to; s++) {
        StepResult res;
        batch_for_step(tokens, targets, s);
        assert_int_equal(train_step(&r->model, &r->opt, tokens, targets, B, T,
                                    schedule_lr(&sched, s, STEPS), &res), LSC_OK);
        losses[s] = res.loss;
    }
}

static void check_determinism_and_resume(int lora_mode) {
    double first[STEPS], second[STEPS], resumed[STEPS];
    Run r;
    run_setup(&r, lora_mode);
    train_steps(&r, 0, STEPS, first);
    run_teardown(&r);

    run_setup(&r, lora_mode);
    train_steps(&r, 0, STEPS, second);
    run_teardown(&r);
    assert_memory_equal(first, second, sizeof first);

    /* half the run, save, throw everything away, rebuild from scratch, load, finish */
    char path[] = "/tmp/lorasc_test_resume_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    run_setup(&r, lora_mode);
    train_steps(&r, 0, STEPS / 2, resumed);
    assert_int_equal(checkpoint_save(path, lora_mode ? NULL : &r.model,
                                     lora_mode ? &r.lora : NULL, &r.opt, STEPS / 2), LSC_OK);
    run_teardown(&r);
    run_setup(&r, lora_mode);
    long step = -1;
    if (checkpoint_load_state(path, lora_mode ? NULL : &r.model, lora_mode ? &r.lora : NULL, &r.opt,
                              &step) != LSC_OK)
        fail_msg("%s", error_last());
    assert_int_equal(step, STEPS / 2);
    train_steps(&r, step, STEPS, resumed);
    run_teardown(&r);
    remove(path);
    for (int s = 0; s < STEPS; s++)
        if (resumed[s] != first[s])
            fail_msg("step %d: resumed loss %.17g differs from uninterrupted %.17g", s, resumed[s], first[s]);
    printf("%s: losses %.4f -> %.4f, bit-identical across runs and across save/reload\n",
           lora_mode ? "LoRA" : "full", first[0], first[STEPS - 1]);
}

static void test_full_determinism(void **state) {
    (void)state;
    check_determinism_and_resume(0);
}

static void test_lora_determinism(void **state) {
    (void)state;
    check_determinism_and_resume(1);
}

/* Training reduces the loss: 60 steps on one fixed batch, both modes. */
static void test_loss_decreases(void **state) {
    (void)state;
    for (int lora_mode = 0; lora_mode <= 1; lora_mode++) {
        Run r;
        run_setup(&r, lora_mode);
        int32_t tokens[B * T], targets[B * T];
        batch_for_step(tokens, targets, 0);
        StepResult first, last;
        for (int s = 0; s < 60; s++)
            assert_int_equal(train_step(&r.model, &r.opt, tokens, targets, B, T, 1e-2f,
                                        s == 0 ? &first : &last), LSC_OK);
        printf("%s mode: loss %.4f -> %.4f over 60 steps\n", lora_mode ? "LoRA" : "full",
               first.loss, last.loss);
        /* full training memorises the batch; rank-4 adapters on a random base move less */
        assert_true(last.loss < (lora_mode ? 0.9 : 0.1) * first.loss);
        run_teardown(&r);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_determinism),
        cmocka_unit_test(test_lora_determinism),
        cmocka_unit_test(test_loss_decreases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
