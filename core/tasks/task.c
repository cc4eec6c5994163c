/* Training batches and per-task evaluation for the language tasks (see task.h). */
#include "core/tasks/task.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/tasks/metrics.h"
#include "core/base/philox.h"
#include "core/base/stop.h"
#include "core/tasks/prompts.h"

static const char *const sampling_names[] = {[TASK_SAMPLING_EPOCH] = "epoch",
                                            [TASK_SAMPLING_REPLACEMENT] = "replacement", NULL};

const char *task_sampling_name(int value) {
    return value >= 0 && value <= TASK_SAMPLING_REPLACEMENT ? sampling_names[value] : NULL;
}

int task_sampler_init(TaskSampler *s, TaskSampling mode, size_t n, int batch, uint64_t seed) {
    memset(s, 0, sizeof *s);
    if (n == 0) return error_set("A task with no training examples cannot be sampled.");
    if (n > (size_t)INT32_MAX) return error_set("%zu training examples are more than a sampler takes (2^31 - 1).", n);
    if (batch <= 0) return error_set("The batch size must be positive, got %d.", batch);
    *s = (TaskSampler){.mode = mode, .seed = seed, .batch = batch, .n = n, .epoch = -1};
    if (mode == TASK_SAMPLING_EPOCH && !(s->perm = malloc(n * sizeof *s->perm)))
        return error_set("Out of memory allocating a permutation of %zu examples.", n);
    return LSC_OK;
}

void task_sampler_free(TaskSampler *s) {
    free(s->perm);
    memset(s, 0, sizeof *s);
}

long task_sampler_steps_per_epoch(const TaskSampler *s) {
    return (long)((s->n + (size_t)s->batch - 1) / (size_t)s->batch);
}

int task_sampler_indices(TaskSampler *s, long step, size_t *idx) {
    if (s->mode == TASK_SAMPLING_REPLACEMENT) {
        const uint64_t stream = philox_stream(RNG_PURPOSE_DATA, 7, 0, 0);
        const uint64_t key = s->seed ^ (uint64_t)step * 0x9E3779B97F4A7C15ull;
        for (int b = 0; b < s->batch; b++) idx[b] = philox_u32(key, stream, (uint64_t)b) % s->n;
        return s->batch;
    }
    const long spe = task_sampler_steps_per_epoch(s), epoch = step / spe;
    if (epoch != s->epoch) { /* 32 bits of epoch in the stream: 4e9 epochs before a repeat */
        philox_permutation(s->perm, (int)s->n, s->seed,
                           philox_stream(RNG_PURPOSE_DATA, 8, (uint32_t)(epoch >> 16), (uint32_t)epoch));
        s->epoch = epoch;
    }
    const size_t first = (size_t)(step % spe) * (size_t)s->batch;
    int count = 0;
    for (size_t i = first; i < s->n && count < s->batch; i++) idx[count++] = (size_t)s->perm[i];
    return count;
}

int task_train_batch(const Tokenizer *tok, const Dataset *d, const size_t *idx, int count, int T,
                     int32_t *tokens, int32_t *targets) {
    const size_t n = d->n[DS_TRAIN];
    if (n == 0) return error_set("Task %s has no training examples.", datasets_name(d->task));
    for (int b = 0; b < count; b++) {
        if (idx[b] >= n)
            return error_set("Training example %zu of task %s does not exist (it has %zu).", idx[b],
                             datasets_name(d->task), n);
        PromptSeq s;
        if (prompts_encode(tok, d->task, &d->split[DS_TRAIN][idx[b]], -1, 0, &s) != LSC_OK) return LSC_ERR;
        prompts_row(&s, T, tok->eos_id, tokens + (size_t)b * T, targets + (size_t)b * T);
        prompts_seq_free(&s);
    }
    return LSC_OK;
}

int task_batch_trim(int32_t *tokens, int32_t *targets, int B, int T) {
    int used = 1;
    for (int b = 0; b < B; b++)
        for (int t = T - 1; t >= used; t--)
            if (targets[(size_t)b * T + t] >= 0) {
                used = t + 1;
                break;
            }
    for (int b = 1; b < B && used < T; b++) {
        memmove(tokens + (size_t)b * used, tokens + (size_t)b * T, (size_t)used * sizeof *tokens);
        memmove(targets + (size_t)b * used, targets + (size_t)b * T, (size_t)used * sizeof *targets);
    }
    return used;
}

/* The generated text's score against e's gold answers: (f1, em). */
static void generation_scores(TaskId task, const char *out, const Example *e, double *f1, double *em) {
    const char *const *ans = (const char *const *)e->answers;
    switch (task) {
    case TASK_GSM8K: *f1 = *em = metrics_gsm8k_em(out, e->answers[0]); break;
    case TASK_BBH: *f1 = *em = metrics_bbh_em(out, e->answers[0]); break;
    case TASK_DROP:
        *f1 = metrics_drop_f1(out, ans, e->n_answers);
        *em = metrics_drop_em(out, ans, e->n_answers);
        break;
    default: /* SQuAD */
        *f1 = metrics_squad_f1(out, ans, e->n_answers);
        *em = metrics_squad_em(out, ans, e->n_answers);
        break;
    }
}

/* Examples whose candidates are scored together (prompts_predict_many): enough rows to fill
 * the batched forwards, few enough that a stop request is seen soon. */
enum { EVAL_CHUNK = 64 };
/* Examples generated together (prompts_generate_many): one weight pass per decoding step for
 * all of them. */
enum { GEN_CHUNK = 8 };

int task_evaluate(Llama *m, const Tokenizer *tok, const Dataset *d, DataSplit split,
                  size_t max_examples, int max_new, TaskScores *out) {
    return task_evaluate_examples(m, tok, d, split, max_examples, max_new, out, NULL, NULL);
}

int task_evaluate_examples(Llama *m, const Tokenizer *tok, const Dataset *d, DataSplit split,
                           size_t max_examples, int max_new, TaskScores *out,
                           double *per_example, size_t *n_examples) {
    const TaskId task = d->task;
    if (n_examples) *n_examples = 0;
    if (task == TASK_ALPACA)
        return error_set("Alpaca has no metric of its own: evaluate the instruction-tuned model on "
                         "mmlu and bbh, as the paper does.");
    size_t n = d->n[split];
    if (max_examples > 0 && max_examples < n) n = max_examples;
    memset(out, 0, sizeof *out);
    out->n = n;
    out->majority = datasets_majority(d, split);
    if (n == 0) return LSC_OK;
    int rc = LSC_OK;
    char *texts[GEN_CHUNK] = {0}; /* the generated answers of the current chunk */
    int *pred = calloc(n, sizeof *pred), *gold = calloc(n, sizeof *gold);
    long *group = calloc(n, sizeof *group);
    if (!pred || !gold || !group) {
        rc = error_set("Out of memory evaluating %s.", datasets_name(task));
        goto cleanup;
    }
    double f1_sum = 0.0, em_sum = 0.0;
    for (size_t i = 0; i < n && rc == LSC_OK; i++) {
        if (stop_requested()) { /* Ctrl-C or a scheduler's signal: the run is to stop now */
            rc = error_set("Stopped by signal %d while evaluating %s (example %zu of %zu).",
                           stop_requested(), datasets_name(task), i, n);
            break;
        }
        const Example *e = &d->split[split][i];
        if (datasets_kind(task) == TASK_KIND_GENERATE) {
            if (i % GEN_CHUNK == 0) { /* the next chunk's answers, generated together */
                const Example *chunk[GEN_CHUNK];
                size_t k = 0;
                for (; k < GEN_CHUNK && i + k < n; k++) chunk[k] = &d->split[split][i + k];
                if ((rc = prompts_generate_many(m, tok, task, chunk, (int)k, 1, max_new, texts)) != LSC_OK)
                    break;
            }
            char *text = texts[i % GEN_CHUNK];
            double f1, em;
            generation_scores(task, text, e, &f1, &em);
            f1_sum += f1;
            em_sum += em;
            if (per_example) per_example[i] = (task == TASK_GSM8K || task == TASK_BBH) ? em : f1;
            free(text);
            texts[i % GEN_CHUNK] = NULL;
        } else {
            if (i % EVAL_CHUNK == 0) { /* the next chunk's candidates, in batched forwards */
                const Example *chunk[EVAL_CHUNK];
                size_t k = 0;
                for (; k < EVAL_CHUNK && i + k < n; k++) chunk[k] = &d->split[split][i + k];
                if ((rc = prompts_predict_many(m, tok, task, chunk, (int)k, 1, 0, &pred[i])) != LSC_OK) break;
            }
            gold[i] = e->label;
            group[i] = e->group;
            if (task == TASK_RECORD) { /* the chosen entity against the gold answers */
                const char *const *ans = (const char *const *)e->answers;
                const double f1 = metrics_squad_f1(e->cands[pred[i]], ans, e->n_answers);
                f1_sum += f1;
                em_sum += metrics_squad_em(e->cands[pred[i]], ans, e->n_answers);
                if (per_example) per_example[i] = f1;
            } else if (per_example) {
                per_example[i] = pred[i] == gold[i] ? 1.0 : 0.0;
            }
        }
    }
    if (rc != LSC_OK) goto cleanup;
    const double dn = (double)n;
    if (datasets_kind(task) == TASK_KIND_GENERATE || task == TASK_RECORD) {
        out->f1 = f1_sum / dn;
        out->em = em_sum / dn;
        out->score = (task == TASK_GSM8K || task == TASK_BBH) ? out->em : out->f1;
    } else if (task == TASK_MULTIRC) {
        metrics_multirc(pred, gold, group, n, &out->f1, &out->em);
        out->score = out->em;
        /* the score is exact match per question: one outcome per question (a maximal run of
         * one group id), in order */
        size_t q = 0;
        for (size_t i = 0; per_example && i < n;) {
            size_t j = i;
            int ok = 1;
            while (j < n && group[j] == group[i]) ok &= pred[j] == gold[j], j++;
            per_example[q++] = ok ? 1.0 : 0.0;
            i = j;
        }
        if (n_examples) *n_examples = q;
    } else {
        out->score = out->em = metrics_accuracy(pred, gold, n);
        out->f1 = task == TASK_CB ? metrics_macro_f1(pred, gold, n, 3) : out->score;
    }
    if (n_examples && task != TASK_MULTIRC) *n_examples = n;
cleanup:
    for (int k = 0; k < GEN_CHUNK; k++) free(texts[k]); /* a chunk cut short by an error */
    free(pred);
    free(gold);
    free(group);
    return rc;
}
