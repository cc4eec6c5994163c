/* Language tasks in the training loop: training batches carry the loss on the gold
 * continuation only and are a pure function of (seed, step); the epoch sampler visits every
 * example once per epoch in a seeded order (the last batch of an epoch short), the
 * replacement sampler draws as before epochs existed; every task (but Alpaca, which
 * the paper evaluates on MMLU and BBH) evaluates with its own metric in [0, 1], on files the
 * test writes in the original formats; LoRA fine-tuning on SST-2 (the mirror's real file
 * when LORASC_DATA holds it) lowers the training loss; a stop request (Ctrl-C, SIGTERM) ends an
 * evaluation between two examples with an error that says so. */
#include <math.h>
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
#include "core/base/philox.h"
#include "core/base/stop.h"
#include "core/model/finetune.h"
#include "core/tasks/prompts.h"
#include "core/tasks/task.h"
#include "tests/model_fixture.h"
#include "tests/task_fixture.h"

static char g_dir[256], g_tok[300];
static Tokenizer g_tokenizer;

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/lorasc_test_task_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_tok, sizeof g_tok, "%s/tok.bin", g_dir);
    if (fixture_write_tasks(g_dir) | fixture_write_tokenizer(g_tok)) return -1;
    return tokenizer_load(&g_tokenizer, g_tok) == LSC_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    tokenizer_free(&g_tokenizer);
    return system(cmd) == 0 ? 0 : -1;
}

static Llama tiny_model(Backend *be, int vocab) {
    const LlamaConfig c = {.dim = 16, .hidden_dim = 24, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
                           .vocab_size = vocab, .seq_len = 96, .rope_theta = 10000.0f,
                           .norm_eps = 1e-5f, .tied_embeddings = 1, .rope_style = ROPE_INTERLEAVED};
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 42, 0.3);
    return m;
}

/* The batch of `step` under sampling `mode` (a fresh sampler: batches are pure functions of
 * (seed, step)); returns the rows filled. */
static int batch_at(const Tokenizer *tok, const Dataset *d, TaskSampling mode, uint64_t seed,
                    long step, int B, int T, int32_t *tokens, int32_t *targets) {
    TaskSampler s;
    size_t idx[64];
    assert_true(B <= 64);
    assert_int_equal(task_sampler_init(&s, mode, d->n[DS_TRAIN], B, seed), LSC_OK);
    const int count = task_sampler_indices(&s, step, idx);
    task_sampler_free(&s);
    assert_int_equal(task_train_batch(tok, d, idx, count, T, tokens, targets), LSC_OK);
    return count;
}

static void test_train_batches(void **state) {
    (void)state;
    Dataset d;
    const DatasetSizes sz = {.train = 3, .val = 1, .test = 2};
    assert_int_equal(datasets_load(&d, TASK_RTE, g_dir, &sz, 1), LSC_OK);
    enum { B = 4, T = 512 }; /* long enough that no prompt is cut (BOS stays first) */
    int32_t tok[B * T], tgt[B * T], tok2[B * T], tgt2[B * T];
    assert_int_equal(batch_at(&g_tokenizer, &d, TASK_SAMPLING_REPLACEMENT, 9, 3, B, T, tok, tgt), B);
    assert_int_equal(batch_at(&g_tokenizer, &d, TASK_SAMPLING_REPLACEMENT, 9, 3, B, T, tok2, tgt2), B);
    assert_memory_equal(tok, tok2, sizeof tok); /* a pure function of (seed, step) */
    assert_memory_equal(tgt, tgt2, sizeof tgt);
    for (int b = 0; b < B; b++) {
        int first = -1, n_loss = 0;
        for (int t = 0; t < T; t++)
            if (tgt[b * T + t] >= 0) {
                if (first < 0) first = t;
                n_loss++;
                if (t + 1 < T) /* next-token targets (the last one lies past the row) */
                    assert_int_equal(tgt[b * T + t], tok[b * T + t + 1]);
            }
        assert_true(first > 0 && n_loss > 0); /* loss on the continuation, not the prompt */
        assert_int_equal(tok[b * T], g_tokenizer.bos_id);
    }
    /* fewer examples than the batch: an epoch is one short batch of all of them */
    assert_true(d.n[DS_TRAIN] < B);
    assert_int_equal(batch_at(&g_tokenizer, &d, TASK_SAMPLING_EPOCH, 9, 5, B, T, tok, tgt), (int)d.n[DS_TRAIN]);
    datasets_free(&d);
}

/* Epoch sampling: every epoch visits each of n examples exactly once in ceil(n / B) steps,
 * the last batch short; the order is a pure function of (seed, epoch), so a sampler started
 * at any step (a resumed run) picks what a sampler that ran from step 0 picks; epochs and
 * seeds reorder. Replacement sampling is the draw from before epochs existed. */
static void test_epoch_sampler(void **state) {
    (void)state;
    const size_t sizes[] = {10, 12, 1, 7};
    const int batches[] = {4, 4, 3, 8};
    for (int k = 0; k < 4; k++) {
        const size_t n = sizes[k];
        const int B = batches[k];
        TaskSampler s, fresh, other;
        assert_int_equal(task_sampler_init(&s, TASK_SAMPLING_EPOCH, n, B, 17), LSC_OK);
        assert_int_equal(task_sampler_init(&other, TASK_SAMPLING_EPOCH, n, B, 18), LSC_OK);
        const long spe = task_sampler_steps_per_epoch(&s);
        assert_int_equal(spe, (long)((n + (size_t)B - 1) / (size_t)B));
        size_t first_epoch[16], order[16], other_order[16];
        int reordered = 0, seed_differs = 0;
        for (long e = 0; e < 6; e++) {
            int seen[16] = {0};
            size_t pos = 0;
            for (long j = 0; j < spe; j++) {
                const long step = e * spe + j;
                size_t idx[8], again[8], idx_other[8];
                const int count = task_sampler_indices(&s, step, idx);
                const int want = j + 1 < spe ? B : (int)(n - (size_t)(spe - 1) * (size_t)B);
                if (count != want) fail_msg("n %zu B %d step %ld: %d rows, want %d", n, B, step, count, want);
                /* a sampler created at this step (a resumed run) draws the same rows */
                assert_int_equal(task_sampler_init(&fresh, TASK_SAMPLING_EPOCH, n, B, 17), LSC_OK);
                assert_int_equal(task_sampler_indices(&fresh, step, again), count);
                task_sampler_free(&fresh);
                assert_memory_equal(idx, again, (size_t)count * sizeof *idx);
                assert_int_equal(task_sampler_indices(&other, step, idx_other), count);
                for (int b = 0; b < count; b++) {
                    if (idx[b] >= n) fail_msg("step %ld row %d: example %zu of %zu", step, b, idx[b], n);
                    seen[idx[b]]++;
                    other_order[pos] = idx_other[b];
                    order[pos++] = idx[b];
                }
            }
            assert_int_equal(pos, n);
            for (size_t i = 0; i < n; i++)
                if (seen[i] != 1) fail_msg("n %zu B %d epoch %ld: example %zu seen %d times", n, B, e, i, seen[i]);
            if (e == 0) memcpy(first_epoch, order, n * sizeof *order);
            reordered |= memcmp(first_epoch, order, n * sizeof *order) != 0;
            seed_differs |= memcmp(other_order, order, n * sizeof *order) != 0;
        }
        if (n > 2) assert_true(reordered && seed_differs); /* 6 epochs, 2 seeds: orders differ */
        task_sampler_free(&s);
        task_sampler_free(&other);
    }
    /* replacement: B independent draws per step, Philox keyed by (seed ^ step * golden, row) */
    TaskSampler r;
    assert_int_equal(task_sampler_init(&r, TASK_SAMPLING_REPLACEMENT, 10, 4, 9), LSC_OK);
    int repeats = 0, seen[10] = {0};
    for (long step = 0; step < 3; step++) {
        size_t idx[4];
        assert_int_equal(task_sampler_indices(&r, step, idx), 4);
        for (int b = 0; b < 4; b++) {
            const uint64_t key = 9 ^ (uint64_t)step * 0x9E3779B97F4A7C15ull;
            assert_int_equal(idx[b], philox_u32(key, philox_stream(RNG_PURPOSE_DATA, 7, 0, 0), (uint64_t)b) % 10);
            repeats += seen[idx[b]]++ > 0;
        }
    }
    assert_true(repeats > 0); /* 12 draws of 10 examples */
    task_sampler_free(&r);
    assert_int_equal(task_sampler_init(&r, TASK_SAMPLING_EPOCH, 0, 4, 9), LSC_ERR);
    assert_string_equal(task_sampling_name(0), "epoch");
    assert_string_equal(task_sampling_name(1), "replacement");
    assert_null(task_sampling_name(2));
}

static void test_every_task_evaluates(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    Llama m = tiny_model(be, g_tokenizer.vocab_size);
    for (int t = 0; t < TASK_COUNT; t++) {
        Dataset d;
        const DatasetSizes sz = {.train = 2, .val = 2, .test = 2};
        if (datasets_load(&d, (TaskId)t, g_dir, &sz, 3) != LSC_OK) fail_msg("%s", error_last());
        TaskScores s;
        const int rc = task_evaluate(&m, &g_tokenizer, &d, DS_TEST, 0, 3, &s);
        if (t == TASK_ALPACA) {
            assert_int_equal(rc, LSC_ERR);
            assert_non_null(strstr(error_last(), "mmlu and bbh"));
        } else {
            if (rc != LSC_OK) fail_msg("%s: %s", datasets_name((TaskId)t), error_last());
            assert_true(s.n > 0 && s.score >= 0 && s.score <= 1 && s.f1 >= 0 && s.f1 <= 1);
            printf("  %-8s score %.3f  f1 %.3f  em %.3f  majority %.3f (n %zu)\n",
                   datasets_name((TaskId)t), s.score, s.f1, s.em, s.majority, s.n);
        }
        datasets_free(&d);
    }
    llama_free(&m);
    backend_cpu_destroy(be);
}

/* A stop request (core/base/stop.h) ends an evaluation with an error naming the signal; once
 * cleared, the same evaluation runs. */
static void test_stop_request_ends_evaluation(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    Llama m = tiny_model(be, g_tokenizer.vocab_size);
    Dataset d;
    const DatasetSizes sz = {.train = 2, .val = 2, .test = 2};
    if (datasets_load(&d, TASK_SST2, g_dir, &sz, 3) != LSC_OK) fail_msg("%s", error_last());
    TaskScores s;
    stop_request(15);
    stop_request(2); /* the first request is the one reported */
    assert_int_equal(stop_requested(), 15);
    assert_int_equal(task_evaluate(&m, &g_tokenizer, &d, DS_TEST, 0, 3, &s), LSC_ERR);
    if (!strstr(error_last(), "Stopped by signal 15 while evaluating sst2"))
        fail_msg("%s", error_last());
    stop_clear();
    assert_int_equal(stop_requested(), 0);
    if (task_evaluate(&m, &g_tokenizer, &d, DS_TEST, 0, 3, &s) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(s.n, 2);
    datasets_free(&d);
    llama_free(&m);
    backend_cpu_destroy(be);
}

/* LoRA on SST-2 prompts: the mean loss over fixed training batches drops. Uses the mirror's
 * real SST-2 and tok512 when the data directory has them, else the self-written files. */
static void test_lora_learns_sst2(void **state) {
    (void)state;
    const char *root = getenv("LORASC_DATA");
    char tokpath[512], sst[512];
    int mirror = 0;
    if (root) {
        snprintf(tokpath, sizeof tokpath, "%s/llama2c_stories260K/tok512.bin", root);
        snprintf(sst, sizeof sst, "%s/sst2/train.tsv", root);
        mirror = access(tokpath, R_OK) == 0 && access(sst, R_OK) == 0;
    }
    Tokenizer tok512, *tok = &g_tokenizer;
    if (mirror) {
        assert_int_equal(tokenizer_load(&tok512, tokpath), LSC_OK);
        tok = &tok512;
    }
    Dataset d;
    const DatasetSizes sz = {.train = 64, .val = 8, .test = 8};
    assert_int_equal(datasets_load(&d, TASK_SST2, mirror ? root : g_dir, &sz, 1), LSC_OK);
    Backend *be = backend_cpu_create(0);
    Llama m = tiny_model(be, tok->vocab_size);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&m.config, in, out);
    const LoraConfig lc = {.rank = 4, .alpha = 8, .targets = LORA_DEFAULT_TARGETS | LORA_BIT(LORA_UP)};
    LoraAdapters fast;
    assert_int_equal(lora_create(&fast, be, &lc, 1, in, out, 2), LSC_OK);
    enum { B = 8, T = 96, STEPS = 40 };
    FinetuneConfig cfg = {.total_steps = STEPS, .batch = B, .seq = T, .lora_plus_ratio = 1, .seed = 4,
                          .schedule = {.kind = SCHEDULE_CONSTANT, .peak_lr = 1e-2f},
                          .adamw = adamw_default_config()};
    assert_int_equal(cascade_preset("lora", &cfg.cascade), LSC_OK);
    static int32_t tokens[B * T], targets[B * T];
    const FinetuneModel fm = finetune_model_llama(&m);
    Finetune ft;
    assert_int_equal(finetune_begin(&ft, &fm, &fast, &cfg), LSC_OK);
    double before = 0, after = 0;
    for (long probe = 0; probe < 4; probe++) {
        batch_at(tok, &d, TASK_SAMPLING_REPLACEMENT, 99, probe, B, T, tokens, targets);
        assert_int_equal(llama_forward(&m, tokens, targets, B, T), LSC_OK);
        before += m.mean_loss / 4;
    }
    while (!finetune_done(&ft)) { /* 5 epochs of 8 steps, each example once per epoch */
        const int rows = batch_at(tok, &d, TASK_SAMPLING_EPOCH, 4, ft.step, B, T, tokens, targets);
        const LlamaBatch batch = {.tokens = tokens, .targets = targets, .B = rows, .T = T};
        assert_int_equal(finetune_step(&ft, &batch, NULL, NULL), LSC_OK);
        finetune_after_step(&ft, NULL);
    }
    finetune_end(&ft);
    llama_attach_lora(&m, NULL); /* merged into the base by the last boundary */
    for (long probe = 0; probe < 4; probe++) {
        batch_at(tok, &d, TASK_SAMPLING_REPLACEMENT, 99, probe, B, T, tokens, targets);
        assert_int_equal(llama_forward(&m, tokens, targets, B, T), LSC_OK);
        after += m.mean_loss / 4;
    }
    printf("  sst2 (%s): label-word loss %.4f -> %.4f\n", mirror ? "mirror, tok512" : "test files",
           before, after);
    assert_true(after < before - 0.1);
    lora_free(&fast);
    llama_free(&m);
    datasets_free(&d);
    if (mirror) tokenizer_free(&tok512);
    backend_cpu_destroy(be);
}

/* prompts_predict scores each candidate with the loss forward (classifier on the candidate's
 * positions only); the reference is the log-softmax of the dense logits (prompts_row_logprob). */
static void test_candidate_scores_equal_dense_logprob(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    Llama m = tiny_model(be, g_tokenizer.vocab_size);
    const TaskId tasks[] = {TASK_SST2, TASK_RTE, TASK_COPA};
    const int T = m.config.seq_len, V = m.config.vocab_size;
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)T), *targets = malloc(sizeof(int32_t) * (size_t)T);
    Real *logits = malloc(sizeof(Real) * (size_t)T * V);
    for (size_t k = 0; k < sizeof tasks / sizeof tasks[0]; k++) {
        Dataset d;
        const DatasetSizes sz = {.train = 2, .val = 2, .test = 2};
        if (datasets_load(&d, tasks[k], g_dir, &sz, 3) != LSC_OK) fail_msg("%s", error_last());
        const Example *e = &d.split[DS_TEST][0];
        for (int mean = 0; mean <= 1; mean++) {
            double scores[16];
            int pred;
            if (prompts_predict(&m, &g_tokenizer, tasks[k], e, 0, mean, &pred, scores) != LSC_OK)
                fail_msg("%s", error_last());
            for (int c = 0; c < prompts_num_candidates(tasks[k], e); c++) {
                PromptSeq ps;
                assert_int_equal(prompts_encode(&g_tokenizer, tasks[k], e, c, 0, &ps), LSC_OK);
                const int len = prompts_row(&ps, T, g_tokenizer.eos_id, tokens, targets);
                prompts_seq_free(&ps);
                assert_int_equal(llama_forward(&m, tokens, NULL, 1, len), LSC_OK);
                be->to_host(be, logits, m.acts.logits, sizeof(Real) * (size_t)len * V);
                const double want = prompts_row_logprob(logits, V, targets, len, mean);
                if (fabs(scores[c] - want) > 1e-5 * (1 + fabs(want)))
                    fail_msg("%s candidate %d (mean %d): score %.9g, dense log-prob %.9g",
                             datasets_name(tasks[k]), c, mean, scores[c], want);
            }
        }
        datasets_free(&d);
    }
    free(tokens), free(targets), free(logits);
    llama_free(&m);
    backend_cpu_destroy(be);
}

/* prompts_predict_many's argmaxes on n test examples of each task against prompts_predict's
 * (one forward per candidate), except where the two best scores tie to float rounding.
 * Returns how many examples had one-token candidates after one prompt (scored from one row). */
static int check_batched_predictions(const Tokenizer *tok, const char *dir, int n_test) {
    Backend *be = backend_cpu_create(1);
    Llama m = tiny_model(be, tok->vocab_size);
    const TaskId tasks[] = {TASK_SST2, TASK_RTE, TASK_COPA, TASK_CB};
    int shared = 0;
    for (size_t k = 0; k < sizeof tasks / sizeof tasks[0]; k++) {
        Dataset d;
        const DatasetSizes sz = {.train = 2, .val = 2, .test = (size_t)n_test};
        if (datasets_load(&d, tasks[k], dir, &sz, 5) != LSC_OK) fail_msg("%s", error_last());
        const int n = (int)d.n[DS_TEST];
        const Example **ex = malloc(sizeof *ex * (size_t)n);
        int *many = malloc(sizeof *many * (size_t)n);
        for (int i = 0; i < n; i++) ex[i] = &d.split[DS_TEST][i];
        for (int mean = 0; mean <= 1; mean++) {
            if (prompts_predict_many(&m, tok, tasks[k], ex, n, 1, mean, many) != LSC_OK)
                fail_msg("%s", error_last());
            for (int i = 0; i < n; i++) {
                double scores[16];
                int one;
                if (prompts_predict(&m, tok, tasks[k], ex[i], 1, mean, &one, scores) != LSC_OK)
                    fail_msg("%s", error_last());
                assert_true(many[i] >= 0 && many[i] < prompts_num_candidates(tasks[k], ex[i]));
                if (many[i] != one && fabs(scores[many[i]] - scores[one]) > 1e-5 * (1 + fabs(scores[one])))
                    fail_msg("%s example %d (mean %d): batched picks %d (score %.9g), one by one %d (%.9g)",
                             datasets_name(tasks[k]), i, mean, many[i], scores[many[i]], one, scores[one]);
            }
        }
        for (int i = 0; i < n; i++) { /* the shared-row path: one token per candidate */
            int one_token = 1;
            for (int c = 0; c < prompts_num_candidates(tasks[k], ex[i]); c++) {
                PromptSeq ps;
                assert_int_equal(prompts_encode(tok, tasks[k], ex[i], c, 1, &ps), LSC_OK);
                one_token &= ps.n - ps.n_prompt == 1;
                prompts_seq_free(&ps);
            }
            shared += one_token;
        }
        free(ex), free(many);
        datasets_free(&d);
    }
    llama_free(&m);
    backend_cpu_destroy(be);
    return shared;
}

/* prompts_predict_many scores many examples' candidates in batched forwards of rows sorted by
 * length: on the self-written files (byte tokens: one row per candidate) and, where the data
 * directory has them, on 40 real test examples of each task with SmolLM2's tokenizer (its
 * label words are one token: one row per example; RTE's rows fill several forwards). */
static void test_batched_predictions_equal_one_by_one(void **state) {
    (void)state;
    check_batched_predictions(&g_tokenizer, g_dir, 40);
    const char *root = getenv("LORASC_DATA");
    char gguf[512];
    snprintf(gguf, sizeof gguf, "%s/smollm2_135m/SmolLM2-135M-Instruct.Q4_1.gguf", root ? root : "data");
    if (!root || access(gguf, R_OK) != 0) {
        printf("  SKIP (real data): no SmolLM2 GGUF in $LORASC_DATA (%s)\n", gguf);
        return;
    }
    Tokenizer smol;
    if (tokenizer_load(&smol, gguf) != LSC_OK) fail_msg("%s", error_last());
    const int shared = check_batched_predictions(&smol, root, 40);
    printf("  real data, SmolLM2 tokenizer: %d examples scored from one shared row\n", shared);
    assert_true(shared >= 80); /* SST-2's and RTE's label words, at least */
    tokenizer_free(&smol);
}

/* task_batch_trim drops the padding after every row's last target: the rows keep their
 * tokens and targets, and the model's loss and adapter gradients are those of the padded batch. */
static void test_batch_trim_keeps_loss(void **state) {
    (void)state;
    Dataset d;
    const DatasetSizes sz = {.train = 3, .val = 1, .test = 2};
    assert_int_equal(datasets_load(&d, TASK_SST2, g_dir, &sz, 1), LSC_OK);
    enum { B = 3, T = 96 };
    int32_t tok[B * T], tgt[B * T], tok2[B * T], tgt2[B * T];
    batch_at(&g_tokenizer, &d, TASK_SAMPLING_REPLACEMENT, 4, 2, B, T, tok, tgt);
    memcpy(tok2, tok, sizeof tok), memcpy(tgt2, tgt, sizeof tgt);
    const int used = task_batch_trim(tok2, tgt2, B, T);
    assert_true(used > 1 && used < T);
    int last_target = -1;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            if (t < used) {
                assert_int_equal(tok2[b * used + t], tok[b * T + t]);
                assert_int_equal(tgt2[b * used + t], tgt[b * T + t]);
            } else {
                assert_int_equal(tgt[b * T + t], -1); /* nothing scored was dropped */
            }
            if (tgt[b * T + t] >= 0 && t > last_target) last_target = t;
        }
    assert_int_equal(used, last_target + 1); /* no padding column is kept either */

    Backend *be = backend_cpu_create(1);
    Llama m = tiny_model(be, g_tokenizer.vocab_size);
    LoraAdapters lora;
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&m.config, in, out);
    LoraConfig lc = {.rank = 2, .alpha = 4, .targets = LORA_DEFAULT_TARGETS};
    assert_int_equal(lora_create(&lora, be, &lc, m.config.n_layers, in, out, 1), LSC_OK);
    llama_attach_lora(&m, &lora);
    double loss[2];
    Real *grads[2];
    for (int k = 0; k < 2; k++) {
        llama_zero_grad(&m);
        assert_int_equal(llama_forward_loss(&m, k ? tok2 : tok, k ? tgt2 : tgt, B, k ? used : T), LSC_OK);
        assert_int_equal(llama_backward(&m), LSC_OK);
        loss[k] = m.mean_loss;
        grads[k] = malloc(lora.num_params * sizeof(Real));
        be->to_host(be, grads[k], lora.grads, lora.num_params * sizeof(Real));
    }
    if (fabs(loss[0] - loss[1]) > 1e-6) fail_msg("loss padded %.9g, trimmed %.9g", loss[0], loss[1]);
    for (size_t i = 0; i < lora.num_params; i++)
        if (fabs((double)grads[0][i] - (double)grads[1][i]) > 1e-6 + 1e-5 * fabs((double)grads[0][i]))
            fail_msg("adapter gradient %zu: padded %.9g, trimmed %.9g", i, (double)grads[0][i],
                     (double)grads[1][i]);
    printf("trimmed %d of %d columns; loss %.6f both ways\n", T - used, T, loss[1]);
    free(grads[0]), free(grads[1]);
    llama_attach_lora(&m, NULL);
    lora_free(&lora);
    llama_free(&m);
    backend_cpu_destroy(be);
    datasets_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_batches),
        cmocka_unit_test(test_epoch_sampler),
        cmocka_unit_test(test_batch_trim_keeps_loss),
        cmocka_unit_test(test_every_task_evaluates),
        cmocka_unit_test(test_stop_request_ends_evaluation),
        cmocka_unit_test(test_candidate_scores_equal_dense_logprob),
        cmocka_unit_test(test_batched_predictions_equal_one_by_one),
        cmocka_unit_test(test_lora_learns_sst2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
