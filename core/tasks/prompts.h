/* MeZO's prompt templates and verbalizers (large_models/templates.py) for the paper's tasks,
 * their tokenization into (tokens, targets) rows with the loss on the continuation only
 * (label word, candidate, answer or response), and scoring / greedy decoding with a Llama.
 * Not here: the datasets (core/data/datasets.h) or metrics (core/tasks/metrics.h). */
#ifndef LORASC_PROMPTS_H
#define LORASC_PROMPTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/data/datasets.h"
#include "core/model/llama.h"
#include "core/data/tokenizer.h"

/* One tokenized (prompt, continuation) pair: BOS + prompt + continuation (+ EOS for Alpaca). */
typedef struct PromptSeq {
    int32_t *tokens; /* [n] */
    int n;
    int n_prompt;    /* tokens[0..n_prompt) are the prompt, the rest the continuation */
} PromptSeq;

/* The prompt text of e (malloc'd); fewshot: prepend e->shots where the task has them
 * (GSM8K evaluation 8-shot, MMLU 5-shot, BBH 3-shot CoT; ignored elsewhere). */
int prompts_text(TaskId task, const Example *e, int fewshot, char **out);
/* Number of continuations to score: label words (CLASSIFY), e->n_cands (CHOICE), 1 (GENERATE). */
int prompts_num_candidates(TaskId task, const Example *e);
/* Continuation text c (malloc'd): label word c with the template's spacing, candidate c, or
 * for GENERATE the gold answer / solution / response (c ignored). c = -1: the gold one. */
int prompts_continuation(TaskId task, const Example *e, int c, char **out);
/* Tokenizes prompt and prompt+continuation; the continuation's tokens are those after the
 * longest common prefix (so SentencePiece merges across the boundary come out as the full
 * text tokenizes). */
int prompts_encode(const Tokenizer *tok, TaskId task, const Example *e, int c, int fewshot, PromptSeq *s);
void prompts_seq_free(PromptSeq *s);

/* One row of length T for llama_forward: tokens (padded with pad_id) and targets = next token
 * on the continuation, -1 elsewhere. Too long: prompt tokens are dropped from the left (one is
 * kept), then the continuation is cut at the right. Returns the row's used length. */
int prompts_row(const PromptSeq *s, int T, int32_t pad_id, int32_t *tokens, int32_t *targets);
/* Sum (mean when mean != 0) of log softmax(logits[i])[targets[i]] over targets >= 0 of one
 * row; logits [T, V] in host memory. */
double prompts_row_logprob(const Real *logits, int V, const int32_t *targets, int T, int mean);

/* Scores every candidate of e with m (one forward per candidate, B = 1) by its summed
 * continuation log-likelihood (mean if mean != 0) and returns the argmax in *pred; scores
 * may be NULL or hold prompts_num_candidates entries. */
int prompts_predict(Llama *m, const Tokenizer *tok, TaskId task, const Example *e, int fewshot,
                    int mean, int *pred, double *scores);
/* The most candidate answers an example may have (prompts_predict_many). */
#define PROMPTS_MAX_CANDIDATES 256

/* prompts_predict for n examples at once: their candidates are scored in batched forwards
 * (rows of similar length together, never more tokens per forward than the model's
 * activations already hold, or one full-length row), pred[n] the argmaxes. Equal to
 * prompts_predict up to float rounding of the scores (a near-tie may break otherwise). Where
 * all of an example's candidates are one token after the same prompt (label words), one row
 * scores them all from the logits at the prompt's last position. */
int prompts_predict_many(Llama *m, const Tokenizer *tok, TaskId task, const Example *const *ex, int n,
                         int fewshot, int mean, int *pred);
/* Greedy decoding of at most max_new tokens after e's prompt (left-truncated to fit the
 * model's seq_len), stopping at EOS or at the task's stop string ("\n" for SQuAD / DROP /
 * ReCoRD-style answers, "\n\n" for GSM8K and BBH); *out is the malloc'd decoded text with
 * the stop string removed. */
int prompts_generate(Llama *m, const Tokenizer *tok, TaskId task, const Example *e, int fewshot,
                     int max_new, char **out);
/* prompts_generate for n examples at once: each prompt through its own key/value cache, then
 * one token for every sequence still going in one forward (llama_decode_batch_step), so a
 * step reads the weights once for all of them. out[i] is example i's answer (NULL for all on
 * failure). With n = 1 the same bits as a lone decoder. */
int prompts_generate_many(Llama *m, const Tokenizer *tok, TaskId task, const Example *const *ex,
                          int n, int fewshot, int max_new, char **out);

#endif
