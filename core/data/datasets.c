/* The task table, the Dataset's lifetime (free, notes), the MeZO sampler and the
 * majority-class baseline; see datasets.h. Not here: reading the files (datasets_read.c picks
 * them and parses TSV/CSV, datasets_json.c parses the JSON formats). */
#include "core/data/datasets.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/base/philox.h"
#include "core/data/datasets_internal.h"

/* ---------------------------------------------------------------------------------------------
 * Task table */

static const struct {
    const char *name;
    TaskKind kind;
} TASKS[TASK_COUNT] = {
    [TASK_SST2] = {"sst2", TASK_KIND_CLASSIFY},       [TASK_RTE] = {"rte", TASK_KIND_CLASSIFY},
    [TASK_CB] = {"cb", TASK_KIND_CLASSIFY},           [TASK_BOOLQ] = {"boolq", TASK_KIND_CLASSIFY},
    [TASK_WSC] = {"wsc", TASK_KIND_CLASSIFY},         [TASK_WIC] = {"wic", TASK_KIND_CLASSIFY},
    [TASK_MULTIRC] = {"multirc", TASK_KIND_CLASSIFY}, [TASK_COPA] = {"copa", TASK_KIND_CHOICE},
    [TASK_RECORD] = {"record", TASK_KIND_CHOICE},     [TASK_SQUAD] = {"squad", TASK_KIND_GENERATE},
    [TASK_DROP] = {"drop", TASK_KIND_GENERATE},       [TASK_GSM8K] = {"gsm8k", TASK_KIND_GENERATE},
    [TASK_ALPACA] = {"alpaca", TASK_KIND_GENERATE},   [TASK_MMLU] = {"mmlu", TASK_KIND_CLASSIFY},
    [TASK_BBH] = {"bbh", TASK_KIND_GENERATE},
};

const char *datasets_name(TaskId task) {
    return (int)task >= 0 && task < TASK_COUNT ? TASKS[task].name : NULL;
}

const char *datasets_names(void) {
    return "sst2, rte, cb, boolq, wsc, wic, multirc, copa, record, squad, drop, gsm8k, alpaca, "
           "mmlu, bbh";
}

int datasets_parse(const char *name) {
    for (int t = 0; t < TASK_COUNT; t++)
        if (name && strcmp(name, TASKS[t].name) == 0) return t;
    error_set("Unknown dataset '%s': expected one of %s.", name ? name : "(null)", datasets_names());
    return -1;
}

TaskKind datasets_kind(TaskId task) { return TASKS[task].kind; }

/* MeZO's verbalizers (large_models/templates.py), in label order. */
static const char *const WORDS_SST2[] = {"terrible", "great"};
static const char *const WORDS_RTE[] = {"Yes", "No"};
static const char *const WORDS_CB[] = {"Yes", "No", "Maybe"};
static const char *const WORDS_NOYES[] = {"No", "Yes"};
static const char *const WORDS_MMLU[] = {"A", "B", "C", "D"};

int datasets_label_words(TaskId task, const char *const **words) {
    switch (task) {
    case TASK_SST2: *words = WORDS_SST2; return 2;
    case TASK_RTE: *words = WORDS_RTE; return 2;
    case TASK_CB: *words = WORDS_CB; return 3;
    case TASK_BOOLQ: case TASK_WSC: case TASK_WIC: case TASK_MULTIRC:
        *words = WORDS_NOYES;
        return 2;
    case TASK_MMLU: *words = WORDS_MMLU; return 4;
    default: *words = NULL; return 0;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Examples and datasets: freeing, notes */

void datasets_example_free(Example *e) {
    free(e->text), free(e->text2), free(e->extra), free(e->extra2);
    for (int i = 0; i < e->n_cands; i++) free(e->cands[i]);
    for (int i = 0; i < e->n_answers; i++) free(e->answers[i]);
    free(e->cands), free(e->answers);
    memset(e, 0, sizeof *e);
}

void datasets_note_add(Dataset *d, const char *fmt, ...) {
    size_t used = strlen(d->note);
    if (used && used + 1 < sizeof d->note) d->note[used++] = ' ', d->note[used] = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->note + used, sizeof d->note - used, fmt, ap);
    va_end(ap);
}

void datasets_free(Dataset *d) {
    for (int s = 0; s < DS_NUM_SPLITS; s++) {
        for (size_t i = 0; i < d->n[s]; i++) datasets_example_free(&d->split[s][i]);
        free(d->split[s]);
    }
    for (int i = 0; i < d->n_pool; i++) free(d->pool[i]);
    free(d->pool);
    memset(d, 0, sizeof *d);
}

/* ---------------------------------------------------------------------------------------------
 * MeZO sampling. The unit is an example, except MultiRC where it is a question (all of its
 * answer options move together, so per-question EM and F1a stay defined). */

typedef struct Unit {
    size_t start, len;
} Unit;

static int make_units(const Dataset *d, int s, Unit **units, size_t *n) {
    *units = malloc((d->n[s] + 1) * sizeof **units);
    if (!*units) return error_set("Out of memory for the sampler.");
    *n = 0;
    for (size_t i = 0; i < d->n[s]; i++) {
        if (d->task == TASK_MULTIRC && *n && d->split[s][i].group == d->split[s][i - 1].group) (*units)[*n - 1].len++;
        else (*units)[(*n)++] = (Unit){i, 1};
    }
    return LSC_OK;
}

static void permute(Unit *u, size_t n, uint64_t seed, uint64_t stream) {
    for (size_t i = n; i > 1; i--) {
        size_t j = philox_u32(seed, stream, i) % i;
        Unit t = u[i - 1];
        u[i - 1] = u[j], u[j] = t;
    }
}

/* Moves the examples of units[0..k) into a new array (struct copies; sources are zeroed). */
static int take(Dataset *d, int from, const Unit *u, size_t k, Example **out, size_t *n_out) {
    size_t n = 0;
    for (size_t i = 0; i < k; i++) n += u[i].len;
    *out = malloc((n ? n : 1) * sizeof **out);
    if (!*out) return error_set("Out of memory for the sampler.");
    *n_out = 0;
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j < u[i].len; j++) {
            Example *src = &d->split[from][u[i].start + j];
            (*out)[(*n_out)++] = *src;
            memset(src, 0, sizeof *src);
        }
    return LSC_OK;
}

int datasets_sample(Dataset *d, const DatasetSizes *sizes, uint64_t seed) {
    const char *name = datasets_name(d->task);
    const char *unit = d->task == TASK_MULTIRC ? "questions" : "examples";
    if (d->n[DS_VAL]) return error_set("Dataset '%s' was already sampled.", name);
    Unit *ut = NULL, *ue = NULL;
    size_t nt, ne;
    Example *out[DS_NUM_SPLITS] = {0};
    size_t nout[DS_NUM_SPLITS] = {0};
    int rc = make_units(d, DS_TRAIN, &ut, &nt);
    if (!rc) rc = make_units(d, DS_TEST, &ue, &ne);
    if (rc) goto done;
    permute(ut, nt, seed, 0x5eed0001u);
    permute(ue, ne, seed, 0x5eed0002u);
    size_t ktr = sizes->train, kva = sizes->val, kte = sizes->test;
    if (ktr + kva > nt) {
        size_t want = ktr + kva;
        kva = want ? (size_t)((double)nt * (double)kva / (double)want + 0.5) : 0;
        ktr = nt - kva;
        if (nt)
            datasets_note_add(d, "%s: the train split has %zu %s, fewer than the %zu train + %zu val asked: "
                        "all taken, %zu train / %zu val.", name, nt, unit, sizes->train, sizes->val, ktr, kva);
        else if (want)
            datasets_note_add(d, "%s: no train split here, so train and val are empty.", name);
    }
    if (kte > ne) {
        if (ne) datasets_note_add(d, "%s: the evaluation split has %zu %s, fewer than the %zu test asked: all taken.", name, ne, unit, sizes->test);
        else if (kte) datasets_note_add(d, "%s: no evaluation split here, so test is empty.", name);
        kte = ne;
    }
    if ((rc = take(d, DS_TRAIN, ut, ktr, &out[DS_TRAIN], &nout[DS_TRAIN])) ||
        (rc = take(d, DS_TRAIN, ut + ktr, kva, &out[DS_VAL], &nout[DS_VAL])) ||
        (rc = take(d, DS_TEST, ue, kte, &out[DS_TEST], &nout[DS_TEST])))
        goto done;
    for (int s = 0; s < DS_NUM_SPLITS; s++) {
        for (size_t i = 0; i < d->n[s]; i++) datasets_example_free(&d->split[s][i]);
        free(d->split[s]);
        d->split[s] = out[s], d->n[s] = nout[s];
        out[s] = NULL;
    }
done:
    for (int s = 0; s < DS_NUM_SPLITS; s++) {
        for (size_t i = 0; i < nout[s] && out[s]; i++) datasets_example_free(&out[s][i]);
        free(out[s]);
    }
    free(ut), free(ue);
    return rc;
}

int datasets_load(Dataset *d, TaskId task, const char *dir, const DatasetSizes *sizes, uint64_t seed) {
    if (datasets_load_raw(d, task, dir) != LSC_OK) return LSC_ERR;
    if (datasets_sample(d, sizes, seed) != LSC_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", error_last());
        datasets_free(d);
        return error_set("%s", msg);
    }
    return LSC_OK;
}

double datasets_majority(const Dataset *d, DataSplit split) {
    const char *const *w;
    int k = datasets_label_words(d->task, &w);
    if (d->task == TASK_COPA) k = 2;
    if (k == 0 || d->n[split] == 0) return 0.0;
    size_t count[8] = {0}, best = 0;
    for (size_t i = 0; i < d->n[split]; i++) {
        int l = d->split[split][i].label;
        if (l >= 0 && l < k && ++count[l] > best) best = count[l];
    }
    return (double)best / (double)d->n[split];
}
