/* Internals shared by the dataset loader's files, private to core/data/datasets*.c
 * (datasets.c: task table, freeing, notes, the sampler; datasets_read.c: the shared helpers,
 * TSV/CSV and which files each task reads; datasets_json.c: the JSON formats). Not an API:
 * callers use core/data/datasets.h. */
#ifndef LORASC_DATASETS_INTERNAL_H
#define LORASC_DATASETS_INTERNAL_H

#include <stddef.h>

#include "core/base/error.h"
#include "core/data/datasets.h"

/* A growing array of examples, the loaders' output. */
typedef struct ExVec {
    Example *v;
    size_t n, cap;
} ExVec;

/* examples and datasets (datasets.c) */
void datasets_example_free(Example *e);
/* Appends one sentence to d->note (space-separated, truncated to fit). */
void datasets_note_add(Dataset *d, const char *fmt, ...) LSC_PRINTF(2, 3);

/* helpers (datasets_read.c) */
/* A new zeroed example at the end of x (label -1, group its position); NULL when out of
 * memory, with the error set. */
Example *datasets_exvec_push(ExVec *x);
/* A malloc'd copy with trailing whitespace removed; NULL only on out-of-memory. */
char *datasets_dup_rstrip(const char *s);
/* Appends a copy of s[0..len) to the list (*arr)[0..*n). */
int datasets_str_push(char ***arr, int *n, const char *s, size_t len);
/* Hands s (malloc'd) to the dataset's shared pool (freed with it, also on error); *out = s. */
int datasets_pool_add(Dataset *d, char *s, const char **out);
int datasets_file_exists(const char *path);
/* LSC_ERR with the sentence naming the task, the missing path and the fetch command. */
int datasets_missing(TaskId task, const char *path);
/* The whole file, NUL-terminated (*len may be NULL); a missing file is datasets_missing. */
int datasets_slurp(const char *path, TaskId task, char **out, size_t *len);
/* Sorted names of the files in dir ending with suffix; free with datasets_list_free. */
int datasets_dir_list(const char *dir, const char *suffix, char ***names, int *n);
void datasets_list_free(char **names, int n);

/* JSON formats (datasets_json.c), each appending to x */
/* A JSON-lines file of a SuperGLUE task (RTE, CB, WSC, WiC, MultiRC, COPA, ReCoRD), BoolQ or
 * GSM8K. arg: CB 1 (three labels), else 0; BoolQ 0 SuperGLUE, 1 the HF train subset,
 * 2 SuperGLUE read beside that subset. MultiRC's question ids restart at 0 per file. */
int datasets_jsonl_read(ExVec *x, const char *path, TaskId task, int arg);
int datasets_squad_read(ExVec *x, const char *path);
int datasets_drop_read(ExVec *x, const char *path);
int datasets_alpaca_read(ExVec *x, const char *path);
/* BBH's evaluation examples under root, their chain-of-thought prompts pooled in d. */
int datasets_bbh_read(Dataset *d, ExVec *x, const char *root);

#endif
