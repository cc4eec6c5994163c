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

/* Which training examples a step sees.
 * EPOCH (default): an epoch is a pass. Epoch e visits every training example once, in the
 * order of a Philox permutation that is a pure function of (seed, e), so a run is
 * reproducible and can resume at any step. An epoch is ceil(n / B) steps; when B does not
 * divide n its last batch is short (n mod B examples), as a PyTorch DataLoader without
 * drop_last gives it (the Hugging Face Trainer setup MeZO and the paper train with): no
 * example is seen twice or skipped in an epoch, and epochs line up with steps, so "one expert
 * per epoch" trains each expert on exactly the whole data.
 * REPLACEMENT: every row of every step drawn independently with replacement, Philox keyed by
 * (seed, step, row): the sampling before epochs existed, batch for batch. */
typedef enum TaskSampling { TASK_SAMPLING_EPOCH = 0, TASK_SAMPLING_REPLACEMENT = 1 } TaskSampling;
/* "epoch", "replacement" for i = 0, 1; NULL after. */
const char *task_sampling_name(int value);

typedef struct TaskSampler {
    TaskSampling mode;
    uint64_t seed;
    int batch;           /* B */
    size_t n;            /* training examples */
    int *perm;           /* EPOCH: the permutation of `epoch` (a cache: recomputed on demand) */
    long epoch;          /* -1: none computed yet */
} TaskSampler;

int task_sampler_init(TaskSampler *s, TaskSampling mode, size_t n, int batch, uint64_t seed);
void task_sampler_free(TaskSampler *s);
/* Steps per epoch: ceil(n / B). */
long task_sampler_steps_per_epoch(const TaskSampler *s);
/* The training examples of global step `step` into idx[0..B); returns how many (B, or fewer
 * for an epoch's short last batch). */
int task_sampler_indices(TaskSampler *s, long step, size_t *idx);

/* Fills rows 0..count-1 of tokens/targets [count*T] with the training examples idx[0..count):
 * each row BOS + prompt + gold continuation padded with EOS, targets the next token on the
 * continuation and -1 elsewhere. */
int task_train_batch(const Tokenizer *tok, const Dataset *d, const size_t *idx, int count, int T,
                     int32_t *tokens, int32_t *targets);
/* Drops the columns after the last unmasked target of every row: a causal model's loss and
 * gradients do not depend on them, and a batch of short prompts padded to seq would spend most
 * of its work on padding. Compacts the rows of tokens/targets [B*T] in place to stride T' and
 * returns T' (>= 1). */
int task_batch_trim(int32_t *tokens, int32_t *targets, int B, int T);

/* Evaluates m on a split (max_examples > 0 caps the count): candidates scored by summed
 * log-likelihood for classification and choice tasks, greedy generation of at most max_new
 * tokens otherwise (few-shot prefixes where the task has them). Alpaca has no metric of its
 * own (the paper evaluates it on MMLU and BBH): it is an error here. A stop request
 * (core/base/stop.h) ends it between two examples with an error that says so. */
int task_evaluate(Llama *m, const Tokenizer *tok, const Dataset *d, DataSplit split,
                  size_t max_examples, int max_new, TaskScores *out);
/* task_evaluate, and the outcome of every example into per_example (room for the split's
 * count, capped by max_examples; may be NULL), *n_examples how many were written: the
 * headline score's per-example value (1/0 correct, F1, or EM for GSM8K and BBH; MultiRC: one
 * exact match per question), whose mean is out->score (CB's macro-F1 is out->f1, not the
 * score). */
int task_evaluate_examples(Llama *m, const Tokenizer *tok, const Dataset *d, DataSplit split,
                           size_t max_examples, int max_new, TaskScores *out,
                           double *per_example, size_t *n_examples);

#endif
