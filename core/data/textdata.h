/* A byte-level language-modelling task on a text file: the task every machine has offline
 * (Debian's licence texts). The file is split by position into train / val / test; batches
 * are a pure function of (seed, step), evaluation reads consecutive windows of a split.
 * Not here: tokenizers, the paper's classification tasks (the datasets issue). */
#ifndef LORASC_TEXTDATA_H
#define LORASC_TEXTDATA_H

#include <stddef.h>
#include <stdint.h>


typedef enum TextSplit { TEXT_TRAIN = 0, TEXT_VAL, TEXT_TEST, TEXT_NUM_SPLITS } TextSplit;

typedef struct TextData {
    unsigned char *bytes;
    size_t n;
    size_t start[TEXT_NUM_SPLITS], len[TEXT_NUM_SPLITS]; /* [start, start + len) of each split */
    char name[64];
} TextData;

/* The named tasks ("text:apache", "text:gpl3", "text:gnu", ...), for error messages:
 * a comma-separated list. "text:PATH" names any file. */
const char *textdata_task_names(void);
/* Resolves a task name to its files (several for a corpus such as "text:gnu", joined by
 * ':' in out). LSC_ERR with a sentence naming the task and the valid choices if unknown. */
int textdata_resolve(const char *task, char *out, size_t size);
/* Loads the task (all of its files, concatenated) and splits it by position: the first
 * train_frac for train, then val_frac for val, the rest for test. A missing file, or a split
 * shorter than min_split bytes, is an error naming it. */
int textdata_load(TextData *d, const char *task, double train_frac, double val_frac,
                  size_t min_split);
void textdata_free(TextData *d);
/* "train", "val", "test" -> split; -1 if unknown. */
int textdata_split_parse(const char *name);
/* tokens/targets [B * T]: B windows at positions drawn from Philox(seed, step) inside the
 * split (targets = the next byte). The split must be longer than T. */
int textdata_batch(const TextData *d, TextSplit split, uint64_t seed, long step, int B, int T,
                   int32_t *tokens, int32_t *targets);
/* Training steps in one epoch: ceil(len(train) / (B * T)). */
long textdata_steps_per_epoch(const TextData *d, int B, int T);

#endif
