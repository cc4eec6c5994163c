/* A language task for the training loop: training batches assembled from a sampled Dataset
 * (prompt + gold continuation, loss on the continuation only) and evaluation with the task's
 * own metric (the MeZO / paper setup). The bridge between datasets.h, prompts.h and
 * metrics.h on one side and the harness on the other; it knows nothing of Lua or logging. */
#ifndef LORASC_TASK_H
#define LORASC_TASK_H

#include "core/data/datasets.h"
#include "core/model/llama.h"
#include "core/data/tokenizer.h"

typedef struct TaskScores {
    double score;    /* the headline metric: accuracy (classification, choice; MultiRC EM per
                      * question), F1 (SQuAD, DROP, ReCoRD), exact match (GSM8K, BBH) */
    double f1, em;   /* F1 / EM where the task defines them (else equal to score); CB: macro-F1 */
    double majority; /* majority-class baseline of the split (0 where labels are not classes) */
    size_t n;        /* examples evaluated */
} TaskScores;

/* Fills tokens/targets [B*T] for step `step`: B training examples drawn with replacement by
 * Philox (seed, step), each row BOS + prompt + gold continuation padded with EOS, targets the
 * next token on the continuation and -1 elsewhere. */
int task_train_batch(const Tokenizer *tok, const Dataset *d, uint64_t seed, long step, int B,
                     int T, int32_t *tokens, int32_t *targets);
/* Drops the columns after the last unmasked target of every row: a causal model's loss and
 * gradients do not depend on them, and a batch of short prompts padded to seq would spend most
 * of its work on padding. Compacts the rows of tokens/targets [B*T] in place to stride T' and
 * returns T' (>= 1). */
int task_batch_trim(int32_t *tokens, int32_t *targets, int B, int T);

/* Evaluates m on a split (max_examples > 0 caps the count): candidates scored by summed
 * log-likelihood for classification and choice tasks, greedy generation of at most max_new
 * tokens otherwise (few-shot prefixes where the task has them). Alpaca has no metric of its
 * own (the paper evaluates it on MMLU and BBH): it is an error here. */
int task_evaluate(Llama *m, const Tokenizer *tok, const Dataset *d, DataSplit split,
                  size_t max_examples, int max_new, TaskScores *out);

#endif
