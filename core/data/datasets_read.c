/* Reading a task's original files: datasets_load_raw picks the files of each task, the helpers
 * every loader shares (example vectors, strings, whole files, directory listings), and the
 * TSV (SST-2) and CSV (MMLU) loaders. Not here: the JSON formats (datasets_json.c). */
#include "core/data/datasets.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/data/datadir.h"
#include "core/data/datasets_internal.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers */

Example *datasets_exvec_push(ExVec *x) {
    if (x->n == x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 256;
        Example *v = realloc(x->v, cap * sizeof *v);
        if (!v) {
            error_set("Out of memory for %zu dataset examples.", cap);
            return NULL;
        }
        x->v = v, x->cap = cap;
    }
    Example *e = &x->v[x->n++];
    memset(e, 0, sizeof *e);
    e->label = -1;
    e->group = (long)(x->n - 1);
    return e;
}

static void exvec_free(ExVec *x) {
    for (size_t i = 0; i < x->n; i++) datasets_example_free(&x->v[i]);
    free(x->v);
    memset(x, 0, sizeof *x);
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* A malloc'd copy with trailing whitespace removed; NULL only on out-of-memory. */
char *datasets_dup_rstrip(const char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) n--;
    return dup_n(s, n);
}

int datasets_str_push(char ***arr, int *n, const char *s, size_t len) {
    char **a = realloc(*arr, (size_t)(*n + 1) * sizeof *a);
    if (!a) return error_set("Out of memory for a dataset string list.");
    *arr = a;
    if (!(a[*n] = dup_n(s, len))) return error_set("Out of memory for a dataset string.");
    (*n)++;
    return LSC_OK;
}

int datasets_pool_add(Dataset *d, char *s, const char **out) {
    char **p = realloc(d->pool, (size_t)(d->n_pool + 1) * sizeof *p);
    if (!p) {
        free(s);
        return error_set("Out of memory for a few-shot prompt.");
    }
    d->pool = p;
    d->pool[d->n_pool++] = s;
    *out = s;
    return LSC_OK;
}

/* dir/name/rel into out. */
static int task_path(char *out, size_t size, const char *dir, TaskId task, const char *rel) {
    int n = snprintf(out, size, "%s/%s/%s", dir, datasets_name(task), rel);
    if (n < 0 || (size_t)n >= size) return error_set("Dataset path too long: %s/%s/%s.", dir, datasets_name(task), rel);
    return LSC_OK;
}

int datasets_file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

int datasets_missing(TaskId task, const char *path) {
    return error_set("Dataset '%s' is missing: expected %s; run `lorasc data fetch %s --from DIR` "
                     "(DIR a mirror such as ../shared/data) or `lorasc data fetch %s` online.",
                     datasets_name(task), path, datasets_name(task), datasets_name(task));
}

/* Whole file, NUL-terminated. */
int datasets_slurp(const char *path, TaskId task, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return datasets_missing(task, path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            return error_set("Out of memory reading %s.", path);
        }
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *b = realloc(buf, cap * 2);
        if (!b) free(buf);
        buf = b, cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return error_set("Could not read %s: %s.", path, strerror(errno));
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return LSC_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted file names in dir ending with suffix (malloc'd list). */
int datasets_dir_list(const char *dir, const char *suffix, char ***names, int *n) {
    DIR *dh = opendir(dir);
    *names = NULL, *n = 0;
    if (!dh) return error_set("Could not open directory %s: %s.", dir, strerror(errno));
    struct dirent *de;
    size_t sl = strlen(suffix);
    int rc = LSC_OK;
    while ((de = readdir(dh)) && rc == LSC_OK) {
        size_t l = strlen(de->d_name);
        if (l > sl && strcmp(de->d_name + l - sl, suffix) == 0) rc = datasets_str_push(names, n, de->d_name, l);
    }
    closedir(dh);
    if (*n > 1) qsort(*names, (size_t)*n, sizeof **names, cmp_str);
    return rc;
}

void datasets_list_free(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* ---------------------------------------------------------------------------------------------
 * TSV and CSV loaders */

static int load_sst2_file(ExVec *x, const char *path) {
    char *buf;
    if (datasets_slurp(path, TASK_SST2, &buf, NULL) != LSC_OK) return LSC_ERR;
    int rc = LSC_OK;
    long line = 0;
    for (char *s = buf; *s && rc == LSC_OK;) {
        char *nl = strchr(s, '\n');
        if (nl) *nl = 0;
        line++;
        size_t len = strlen(s);
        if (len && s[len - 1] == '\r') s[--len] = 0;
        if (line > 1 && len) {
            char *tab = strrchr(s, '\t');
            if (!tab || (strcmp(tab + 1, "0") != 0 && strcmp(tab + 1, "1") != 0)) {
                rc = error_set("%s line %ld: expected \"sentence<TAB>0|1\".", path, line);
                break;
            }
            *tab = 0;
            Example *e = datasets_exvec_push(x);
            if (!e || !(e->text = datasets_dup_rstrip(s))) rc = e ? error_set("Out of memory reading %s.", path) : LSC_ERR;
            else e->label = tab[1] - '0';
        } else if (line == 1 && strncmp(s, "sentence\t", 9) != 0) {
            rc = error_set("%s does not start with the GLUE header \"sentence<TAB>label\".", path);
        }
        s = nl ? nl + 1 : s + len;
    }
    free(buf);
    return rc;
}

/* One RFC-4180 CSV record starting at *s (quoted fields with "" escapes may span lines).
 * Fields are written NUL-terminated in place; returns the field count (-1 malformed). */
static int csv_record(char **s, char **fields, int max_fields) {
    char *p = *s, *w = *s;
    int nf = 0;
    for (;;) {
        if (nf == max_fields) return -1;
        fields[nf++] = w;
        if (*p == '"') {
            p++;
            for (;;) {
                if (!*p) return -1;
                if (*p == '"' && p[1] == '"') *w++ = '"', p += 2;
                else if (*p == '"') { p++; break; }
                else *w++ = *p++;
            }
        } else {
            while (*p && *p != ',' && *p != '\n' && *p != '\r') *w++ = *p++;
        }
        if (*p == ',') { *w++ = 0; p++; continue; }
        if (*p == '\r') p++;
        if (*p == '\n') p++;
        else if (*p) return -1;
        *w = 0;
        *s = p;
        return nf;
    }
}

/* One MMLU CSV (question,A,B,C,D,answer; no header) into x with subject and shots. */
static int load_mmlu_csv(ExVec *x, const char *path, const char *subject, const char *shots) {
    char *buf;
    if (datasets_slurp(path, TASK_MMLU, &buf, NULL) != LSC_OK) return LSC_ERR;
    int rc = LSC_OK;
    long rec = 0;
    for (char *s = buf; *s && rc == LSC_OK;) {
        char *f[8];
        int nf = csv_record(&s, f, 8);
        rec++;
        if (nf == 1 && !*f[0]) continue;
        if (nf != 6 || strlen(f[5]) != 1 || f[5][0] < 'A' || f[5][0] > 'D') {
            rc = error_set("%s record %ld: expected question,A,B,C,D,answer with answer A-D.", path, rec);
            break;
        }
        Example *e = datasets_exvec_push(x);
        if (!e || !(e->text = datasets_dup_rstrip(f[0])) || !(e->extra = datasets_dup_rstrip(subject))) {
            rc = e ? error_set("Out of memory reading %s.", path) : LSC_ERR;
            break;
        }
        for (int c = 0; c < 4 && rc == LSC_OK; c++) rc = datasets_str_push(&e->cands, &e->n_cands, f[1 + c], strlen(f[1 + c]));
        e->label = f[5][0] - 'A';
        e->shots = shots;
    }
    free(buf);
    return rc;
}

/* The 5-shot prefix of a subject from dev/SUBJECT_dev.csv (Hendrycks et al.'s format). */
static int mmlu_shots(Dataset *d, const char *root, const char *subject, const char **out) {
    char path[4200];
    snprintf(path, sizeof path, "%s/dev/%s_dev.csv", root, subject);
    ExVec dev = {0};
    *out = NULL;
    if (load_mmlu_csv(&dev, path, subject, NULL) != LSC_OK) return LSC_ERR;
    size_t cap = 256;
    for (size_t i = 0; i < dev.n; i++) {
        cap += strlen(dev.v[i].text) + 32;
        for (int c = 0; c < 4; c++) cap += strlen(dev.v[i].cands[c]) + 8;
    }
    cap += 2 * strlen(subject);
    char *s = malloc(cap);
    if (!s) {
        exvec_free(&dev);
        return error_set("Out of memory for MMLU few-shot prompts.");
    }
    size_t n = (size_t)snprintf(s, cap, "The following are multiple choice questions (with answers) about ");
    for (const char *c = subject; *c; c++) s[n++] = *c == '_' ? ' ' : *c;
    n += (size_t)snprintf(s + n, cap - n, ".\n\n");
    for (size_t i = 0; i < dev.n; i++) {
        const Example *e = &dev.v[i];
        n += (size_t)snprintf(s + n, cap - n, "%s\nA. %s\nB. %s\nC. %s\nD. %s\nAnswer: %c\n\n", e->text,
                              e->cands[0], e->cands[1], e->cands[2], e->cands[3], 'A' + e->label);
    }
    exvec_free(&dev);
    return datasets_pool_add(d, s, out);
}

static int load_mmlu_split(Dataset *d, ExVec *x, const char *root, const char *split) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", root, split);
    char suffix[32];
    snprintf(suffix, sizeof suffix, "_%s.csv", split);
    char **names;
    int n;
    if (!datasets_file_exists(dir)) return datasets_missing(TASK_MMLU, dir);
    if (datasets_dir_list(dir, suffix, &names, &n) != LSC_OK) return LSC_ERR;
    int rc = n ? LSC_OK : error_set("Dataset 'mmlu': %s holds no *%s files.", dir, suffix);
    for (int i = 0; i < n && rc == LSC_OK; i++) {
        char subject[256], path[8400];
        size_t sl = strlen(names[i]) - strlen(suffix);
        snprintf(subject, sizeof subject, "%.*s", (int)sl, names[i]);
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        const char *shots = NULL;
        rc = mmlu_shots(d, root, subject, &shots);
        if (rc == LSC_OK) rc = load_mmlu_csv(x, path, subject, shots);
    }
    datasets_list_free(names, n);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The files of each task */

/* GSM8K's 8-shot prefix: the first 8 examples of the train file as "Question: ...\nAnswer: ...". */
static int gsm8k_shots(Dataset *d, const ExVec *train, const char **out) {
    size_t cap = 64, k = train->n < 8 ? train->n : 8;
    for (size_t i = 0; i < k; i++) cap += strlen(train->v[i].text) + strlen(train->v[i].extra2) + 32;
    char *s = malloc(cap);
    if (!s) return error_set("Out of memory for GSM8K's few-shot prompt.");
    size_t n = 0;
    s[0] = 0;
    for (size_t i = 0; i < k; i++)
        n += (size_t)snprintf(s + n, cap - n, "Question: %s\nAnswer: %s\n\n", train->v[i].text, train->v[i].extra2);
    return datasets_pool_add(d, s, out);
}

int datasets_load_raw(Dataset *d, TaskId task, const char *dir) {
    memset(d, 0, sizeof *d);
    d->task = task;
    if ((int)task < 0 || task >= TASK_COUNT) return error_set("Dataset id %d is out of range.", (int)task);
    if (!dir) dir = datadir_root();
    ExVec tr = {0}, ev = {0};
    char p1[4096], p2[4096], root[4096];
    int rc = task_path(root, sizeof root, dir, task, "");
    if (rc != LSC_OK) return rc;
    root[strlen(root) - 1] = 0; /* drop the trailing '/' */
    switch (task) {
    case TASK_SST2:
        if (!(rc = task_path(p1, sizeof p1, dir, task, "train.tsv")) && !(rc = task_path(p2, sizeof p2, dir, task, "dev.tsv")) &&
            !(rc = load_sst2_file(&tr, p1)))
            rc = load_sst2_file(&ev, p2);
        break;
    case TASK_RTE: case TASK_CB: case TASK_WSC: case TASK_WIC: case TASK_MULTIRC: case TASK_COPA:
    case TASK_RECORD: {
        const int arg = task == TASK_CB;
        rc = task_path(p1, sizeof p1, dir, task, "train.jsonl");
        if (!rc) rc = task_path(p2, sizeof p2, dir, task, "val.jsonl");
        if (!rc && task == TASK_RECORD && !datasets_file_exists(p1) && !datasets_file_exists(p2)) {
            /* The mirror's ReCoRD: 32 + 32 examples drawn from the original train split. */
            char q1[4096], q2[4096];
            task_path(q1, sizeof q1, dir, task, "train_fewglue32.jsonl");
            task_path(q2, sizeof q2, dir, task, "dev32_ptuning.jsonl");
            if (datasets_file_exists(q1) && datasets_file_exists(q2)) {
                memcpy(p1, q1, sizeof p1), memcpy(p2, q2, sizeof p2);
                d->subset = 1;
                datasets_note_add(d, "ReCoRD: only the FewGLUE 32 + 32 train-split examples are here "
                            "(train_fewglue32.jsonl as train, dev32_ptuning.jsonl as test); the full "
                            "train/val files are unavailable, so this is a format test, not the protocol.");
            }
        }
        if (!rc) rc = datasets_jsonl_read(&tr, p1, task, arg);
        if (!rc) rc = datasets_jsonl_read(&ev, p2, task, arg);
        if (task == TASK_MULTIRC) /* keep question ids distinct across the two files */
            for (size_t i = 0; i < ev.n; i++) ev.v[i].group += 1L << 40;
        break;
    }
    case TASK_BOOLQ: {
        rc = task_path(p1, sizeof p1, dir, task, "train.jsonl");
        if (!rc) rc = task_path(p2, sizeof p2, dir, task, "val.jsonl");
        int hf = 0;
        if (!rc && !datasets_file_exists(p1)) {
            char q1[4096];
            task_path(q1, sizeof q1, dir, task, "train_subset1000_hfformat.jsonl");
            if (datasets_file_exists(q1)) {
                memcpy(p1, q1, sizeof p1);
                hf = 1;
                d->subset = 1;
                datasets_note_add(d, "BoolQ: the full train split is unavailable; train and val come from the "
                            "1000-example HF-format train subset, and SuperGLUE passages had their "
                            "\"Title -- \" prefix removed to match it.");
            }
        }
        if (!rc) rc = datasets_jsonl_read(&tr, p1, task, hf);
        if (!rc) rc = datasets_jsonl_read(&ev, p2, task, hf ? 2 : 0);
        break;
    }
    case TASK_SQUAD:
        if (!(rc = task_path(p1, sizeof p1, dir, task, "train-v1.1.json")) &&
            !(rc = task_path(p2, sizeof p2, dir, task, "dev-v1.1.json")) && !(rc = datasets_squad_read(&tr, p1)))
            rc = datasets_squad_read(&ev, p2);
        break;
    case TASK_DROP:
        if (!(rc = task_path(p1, sizeof p1, dir, task, "drop_dataset_train.json")) &&
            !(rc = task_path(p2, sizeof p2, dir, task, "drop_dataset_dev.json")) && !(rc = datasets_drop_read(&tr, p1)))
            rc = datasets_drop_read(&ev, p2);
        break;
    case TASK_GSM8K: {
        if (!(rc = task_path(p1, sizeof p1, dir, task, "train.jsonl")) && !(rc = task_path(p2, sizeof p2, dir, task, "test.jsonl")) &&
            !(rc = datasets_jsonl_read(&tr, p1, task, 0)) && !(rc = datasets_jsonl_read(&ev, p2, task, 0))) {
            const char *shots = NULL;
            if (tr.n < 8) datasets_note_add(d, "GSM8K: fewer than 8 train examples, so the few-shot prompt has %zu.", tr.n);
            if (!(rc = gsm8k_shots(d, &tr, &shots))) {
                for (size_t i = 0; i < ev.n; i++) ev.v[i].shots = shots;
                /* the exemplars never appear as training examples */
                for (size_t i = 0; i < tr.n && i < 8; i++) datasets_example_free(&tr.v[i]);
                size_t k = tr.n < 8 ? tr.n : 8;
                memmove(tr.v, tr.v + k, (tr.n - k) * sizeof *tr.v);
                tr.n -= k;
                for (size_t i = 0; i < tr.n; i++) tr.v[i].shots = shots; /* val is evaluated 8-shot too */
            }
        }
        break;
    }
    case TASK_ALPACA:
        rc = task_path(p1, sizeof p1, dir, task, "alpaca_data.json");
        if (!rc && !datasets_file_exists(p1)) {
            char q1[4096];
            task_path(q1, sizeof q1, dir, task, "alpaca_data_first200.json");
            if (datasets_file_exists(q1)) {
                memcpy(p1, q1, sizeof p1);
                d->subset = 1;
                datasets_note_add(d, "Alpaca: only the first 200 records of alpaca_data.json are here.");
            }
        }
        if (!rc) rc = datasets_alpaca_read(&tr, p1);
        if (!rc) datasets_note_add(d, "Alpaca has no evaluation split (Table 2 evaluates on MMLU and BBH).");
        break;
    case TASK_MMLU:
        rc = load_mmlu_split(d, &tr, root, "val");
        if (!rc) rc = load_mmlu_split(d, &ev, root, "test");
        if (!rc) datasets_note_add(d, "MMLU: train/val are drawn from the val CSVs, test from the test CSVs; "
                             "the dev CSVs are the 5-shot prompts.");
        break;
    case TASK_BBH:
        rc = datasets_bbh_read(d, &ev, root);
        if (!rc) datasets_note_add(d, "BBH is evaluation-only (3-shot chain-of-thought prompts): no train/val.");
        break;
    default: break;
    }
    d->split[DS_TRAIN] = tr.v, d->n[DS_TRAIN] = tr.n;
    d->split[DS_TEST] = ev.v, d->n[DS_TEST] = ev.n;
    if (rc != LSC_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", error_last());
        datasets_free(d);
        return error_set("%s", msg);
    }
    return LSC_OK;
}
