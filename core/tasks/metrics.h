/* The evaluation metrics of the paper's tasks, in C: accuracy and macro-F1 (classification),
 * SQuAD v1.1's exact match and F1 with the official answer normalisation (also ReCoRD's
 * official metric), DROP's F1/EM in a single-span simplification, GSM8K's final-number exact
 * match, MultiRC's F1a and per-question EM, BBH's answer extraction. Not here: decoding
 * (core/tasks/prompts.h). Strings are UTF-8; case folding is ASCII-only (Python's str.lower()
 * in the official scripts also folds non-ASCII letters: a documented difference). */
#ifndef LORASC_METRICS_H
#define LORASC_METRICS_H

#include <stddef.h>

/* Share of pred[i] == gold[i]; 0 for n = 0. */
double metrics_accuracy(const int *pred, const int *gold, size_t n);
/* Macro-averaged F1 over the classes 0..n_classes-1 that occur in gold or pred (sklearn's
 * f1_score(average="macro") as SuperGLUE reports for CB). */
double metrics_macro_f1(const int *pred, const int *gold, size_t n, int n_classes);

/* SQuAD v1.1 normalisation (evaluate-v1.1.py): lower-case, drop ASCII punctuation, drop the
 * articles a / an / the as whole words, collapse whitespace. Returns a malloc'd string. */
char *metrics_squad_normalize(const char *s);
/* Exact match / token F1 of pred against the best of n_golds answers (1.0 or 0.0 for EM).
 * No gold answers: 0. Used for SQuAD and ReCoRD (whose official script is the same). */
double metrics_squad_em(const char *pred, const char *const *golds, int n_golds);
double metrics_squad_f1(const char *pred, const char *const *golds, int n_golds);

/* DROP (drop_eval.py) with every answer treated as ONE span: tokens split on spaces and
 * hyphens, per token lower-case / punctuation removed unless it is a number / numbers
 * canonicalised (42 == 42.0) / articles removed; F1 over token sets, set to 0 when the gold
 * holds numbers and none of them is predicted; max over golds. Multi-span answers are not
 * aligned span by span (the official metric's Hungarian matching): a simplification. */
double metrics_drop_em(const char *pred, const char *const *golds, int n_golds);
double metrics_drop_f1(const char *pred, const char *const *golds, int n_golds);

/* GSM8K: the answer number of text (after the first "####" when there is one, else the last
 * number in the text; commas removed) into out. Returns 1 if found, 0 if not. */
int metrics_gsm8k_extract(const char *text, char *out, size_t size);
/* 1.0 if the number extracted from pred equals gold numerically (42 == 42.00), else 0.0. */
double metrics_gsm8k_em(const char *pred, const char *gold_number);

/* MultiRC: pred/gold 0/1 per answer option, group = its question. F1a: binary F1 of the
 * positive class over all options; em: share of questions with every option right. */
void metrics_multirc(const int *pred, const int *gold, const long *group, size_t n, double *f1a,
                     double *em);

/* BBH: the answer of a chain-of-thought completion ("... So the answer is X.") into out;
 * the whole trimmed first line when there is no such phrase. */
void metrics_bbh_extract(const char *text, char *out, size_t size);
/* 1.0 if the extracted answer equals target exactly (after trimming), else 0.0. */
double metrics_bbh_em(const char *pred, const char *target);

#endif
