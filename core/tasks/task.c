/* Training batches and per-task evaluation for the language tasks (see task.h). */
#include "core/tasks/task.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/tasks/metrics.h"
#include "core/base/philox.h"
#include "core/tasks/prompts.h"

int task_train_batch(const Tokenizer *tok, const Dataset *d, uint64_t seed, long step, int B,
                     int T, int32_t *tokens, int32_t *targets) {
    const size_t n = d->n[DS_TRAIN];
    if (n == 0) return error_set("Task %s has no training examples.", datasets_name(d->task));
    const uint64_t stream = philox_stream(RNG_PURPOSE_DATA, 7, 0, 0);
    for (int b = 0; b < B; b++) {
        const size_t i = philox_u32(seed ^ (uint64_t)step * 0x9E3779B97F4A7C15ull, stream, (uint64_t)b) % n;
        PromptSeq s;
        if (prompts_encode(tok, d->task, &d->split[DS_TRAIN][i], -1, 0, &s) != LSC_OK) return LSC_ERR;
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

int task_evaluate(Llama *m, const Tokenizer *tok, const Dataset *d, DataSplit split,
                  size_t max_examples, int max_new, TaskScores *out) {
    const TaskId task = d->task;
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
    int *pred = calloc(n, sizeof *pred), *gold = calloc(n, sizeof *gold);
    long *group = calloc(n, sizeof *group);
    if (!pred || !gold || !group) {
        rc = error_set("Out of memory evaluating %s.", datasets_name(task));
        goto cleanup;
    }
    double f1_sum = 0.0, em_sum = 0.0;
    for (size_t i = 0; i < n && rc == LSC_OK; i++) {
        const Example *e = &d->split[split][i];
        if (datasets_kind(task) == TASK_KIND_GENERATE) {
            char *text = NULL;
            double f1, em;
            if ((rc = prompts_generate(m, tok, task, e, 1, max_new, &text)) != LSC_OK) break;
            generation_scores(task, text, e, &f1, &em);
            f1_sum += f1;
            em_sum += em;
            free(text);
        } else {
            if ((rc = prompts_predict(m, tok, task, e, 1, 0, &pred[i], NULL)) != LSC_OK) break;
            gold[i] = e->label;
            group[i] = e->group;
            if (task == TASK_RECORD) { /* the chosen entity against the gold answers */
                const char *const *ans = (const char *const *)e->answers;
                f1_sum += metrics_squad_f1(e->cands[pred[i]], ans, e->n_answers);
                em_sum += metrics_squad_em(e->cands[pred[i]], ans, e->n_answers);
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
    } else {
        out->score = out->em = metrics_accuracy(pred, gold, n);
        out->f1 = task == TASK_CB ? metrics_macro_f1(pred, gold, n, 3) : out->score;
    }
cleanup:
    free(pred);
    free(gold);
    free(group);
    return rc;
}
