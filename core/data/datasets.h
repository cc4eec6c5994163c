/* The paper's language tasks read from their original files in the data directory
 * (core/data/datadir.h): the 12 Table-1 tasks (SST-2, RTE, CB, BoolQ, WSC, WiC, MultiRC, COPA,
 * ReCoRD, SQuAD v1.1, DROP, GSM8K) and Table 2's Alpaca, MMLU and BBH, plus the MeZO
 * sampling protocol (train + val drawn disjointly from the original train split, test from the
 * original validation split, all seeded). Not here: prompts (core/tasks/prompts.h), metrics
 * (core/tasks/metrics.h), copying datasets into the data directory (core/data/datafetch.h). */
#ifndef LORASC_DATASETS_H
#define LORASC_DATASETS_H

#include <stddef.h>
#include <stdint.h>

typedef enum TaskId {
    TASK_SST2 = 0,
    TASK_RTE,
    TASK_CB,
    TASK_BOOLQ,
    TASK_WSC,
    TASK_WIC,
    TASK_MULTIRC,
    TASK_COPA,
    TASK_RECORD,
    TASK_SQUAD,
    TASK_DROP,
    TASK_GSM8K,
    TASK_ALPACA,
    TASK_MMLU,
    TASK_BBH,
    TASK_COUNT
} TaskId;

/* How a task is trained and scored (core/tasks/prompts.h):
 *  CLASSIFY: fixed label words, the gold one's tokens carry the loss; scored by label-word log-prob.
 *  CHOICE:   per-example candidates (COPA, ReCoRD), scored by summed candidate log-likelihood.
 *  GENERATE: free-form answer (SQuAD, DROP, GSM8K, Alpaca, BBH), greedy decoding. */
typedef enum TaskKind { TASK_KIND_CLASSIFY = 0, TASK_KIND_CHOICE, TASK_KIND_GENERATE } TaskKind;

typedef enum DataSplit { DS_TRAIN = 0, DS_VAL, DS_TEST, DS_NUM_SPLITS } DataSplit;

/* One example. Which text field holds what, per task (NULL where unused):
 *   task     text                 text2            extra                 extra2
 *   sst2     sentence             -                -                     -
 *   rte, cb  premise              hypothesis       -                     -
 *   boolq    passage              question         -                     -
 *   wsc      text                 -                span1 (noun)          span2 (pronoun)
 *   wic      sentence1            sentence2        word                  -
 *   multirc  paragraph            question         answer option         -
 *   copa     premise              -                "cause" / "effect"    -
 *   record   passage              query            -                     -
 *   squad    context              question         title                 -
 *   drop     passage              question         -                     -
 *   gsm8k    question             -                -                     solution ("... #### 42")
 *   alpaca   instruction          input ("" none)  -                     output
 *   mmlu     question             -                subject               -
 *   bbh      input                -                subtask               -
 * label: the gold class (sst2 0 neg/1 pos; rte 0 entailment/1 not; cb 0 entailment/
 * 1 contradiction/2 neutral; boolq, wsc, wic, multirc 0 false/1 true; mmlu 0..3 = A..D) or the
 * gold candidate (copa 0/1; record the first candidate that is a gold answer); -1 if none.
 * cands: copa's two choices, record's distinct entity strings, mmlu's four options.
 * answers: gold strings (squad, drop, record, gsm8k's final number, bbh's target).
 * group: the unit a metric groups by (multirc question, record query), else the example's
 * position in its original file. shots: a few-shot prefix shared by the dataset (gsm8k's
 * 8 exemplars, mmlu's subject dev questions, bbh's chain-of-thought prompt), not owned. */
typedef struct Example {
    char *text, *text2, *extra, *extra2;
    int label;
    int n_cands;
    char **cands;
    int n_answers;
    char **answers;
    long group;
    const char *shots;
} Example;

/* Sizes asked of the sampler; MeZO's are 1000 / 500 / 1000. */
typedef struct DatasetSizes {
    size_t train, val, test;
} DatasetSizes;

typedef struct Dataset {
    TaskId task;
    Example *split[DS_NUM_SPLITS]; /* [n[s]] */
    size_t n[DS_NUM_SPLITS];
    int subset;         /* 1: the files hold only a documented subset of the original data (the
                         * mirror's BoolQ train, ReCoRD, Alpaca): not the paper's protocol */
    char note[1024];    /* what the sampler could not do as asked, and subsets; "" if nothing */
    char **pool;        /* shared strings (Example.shots point here) */
    int n_pool;
} Dataset;

/* "sst2", "rte", ..., "bbh" (the data-directory folder name too); NULL if out of range. */
const char *datasets_name(TaskId task);
/* Name -> task; -1 with a sentence listing the valid names if unknown. */
int datasets_parse(const char *name);
TaskKind datasets_kind(TaskId task);
/* Comma-separated names of all tasks (for messages). */
const char *datasets_names(void);

/* Reads the task's original files from dir/NAME (dir NULL: the data directory). The raw
 * train split goes to split[DS_TRAIN], the raw evaluation split (validation; test for
 * GSM8K and MMLU) to split[DS_TEST]; split[DS_VAL] is empty. A missing file is one sentence
 * naming the dataset, the path and the fetch command. On error *d is empty (safe to free). */
int datasets_load_raw(Dataset *d, TaskId task, const char *dir);

/* MeZO sampling in place on a raw dataset: train and val drawn disjointly from the raw train
 * split, test from the raw evaluation split, each a seeded permutation prefix. When a split is
 * smaller than asked, all of it is taken (train and val share the raw train split in the asked
 * proportion) and d->note says so. Unselected examples are freed. */
int datasets_sample(Dataset *d, const DatasetSizes *sizes, uint64_t seed);

/* datasets_load_raw + datasets_sample. */
int datasets_load(Dataset *d, TaskId task, const char *dir, const DatasetSizes *sizes,
                  uint64_t seed);
void datasets_free(Dataset *d);

/* Label words of a CLASSIFY task (MeZO's verbalizers) in label order; returns their count
 * (0 for other tasks). */
int datasets_label_words(TaskId task, const char *const **words);

/* Majority-class baseline of a split: the share of the most frequent label (CLASSIFY and
 * COPA), or 0 where labels are not classes. */
double datasets_majority(const Dataset *d, DataSplit split);

#endif
