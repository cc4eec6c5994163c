/* Dataset loaders (original file formats) and the MeZO sampler; see datasets.h.
 * Reads top to bottom: task table, small helpers (files, strings, example vectors), one
 * loader per family, the sampler. JSON goes through jansson; TSV and CSV are parsed here. */
#include "core/data/datasets.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/data/datadir.h"
#include "core/base/error.h"
#include "core/base/philox.h"

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
 * Helpers */

typedef struct ExVec {
    Example *v;
    size_t n, cap;
} ExVec;

static Example *exvec_push(ExVec *x) {
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

static void example_free(Example *e) {
    free(e->text), free(e->text2), free(e->extra), free(e->extra2);
    for (int i = 0; i < e->n_cands; i++) free(e->cands[i]);
    for (int i = 0; i < e->n_answers; i++) free(e->answers[i]);
    free(e->cands), free(e->answers);
    memset(e, 0, sizeof *e);
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* A malloc'd copy with trailing whitespace removed; NULL only on out-of-memory. */
static char *dup_rstrip(const char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) n--;
    return dup_n(s, n);
}

static int push_str(char ***arr, int *n, const char *s, size_t len) {
    char **a = realloc(*arr, (size_t)(*n + 1) * sizeof *a);
    if (!a) return error_set("Out of memory for a dataset string list.");
    *arr = a;
    if (!(a[*n] = dup_n(s, len))) return error_set("Out of memory for a dataset string.");
    (*n)++;
    return LSC_OK;
}

static int pool_add(Dataset *d, char *s, const char **out) {
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

static void note_add(Dataset *d, const char *fmt, ...) LSC_PRINTF(2, 3);
static void note_add(Dataset *d, const char *fmt, ...) {
    size_t used = strlen(d->note);
    if (used && used + 1 < sizeof d->note) d->note[used++] = ' ', d->note[used] = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->note + used, sizeof d->note - used, fmt, ap);
    va_end(ap);
}

/* dir/name/rel into out. */
static int task_path(char *out, size_t size, const char *dir, TaskId task, const char *rel) {
    int n = snprintf(out, size, "%s/%s/%s", dir, datasets_name(task), rel);
    if (n < 0 || (size_t)n >= size) return error_set("Dataset path too long: %s/%s/%s.", dir, datasets_name(task), rel);
    return LSC_OK;
}

static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static int missing(TaskId task, const char *path) {
    return error_set("Dataset '%s' is missing: expected %s; run `lorasc data fetch %s --from DIR` "
                     "(DIR a mirror such as ../shared/data) or `lorasc data fetch %s` online.",
                     datasets_name(task), path, datasets_name(task), datasets_name(task));
}

/* Whole file, NUL-terminated. */
static int slurp(const char *path, TaskId task, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return missing(task, path);
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

static const char *jstr(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Per-record JSON parsers (SuperGLUE jsonl and friends). Each returns LSC_OK or a sentence
 * with the file and line. */

typedef int (*RecordFn)(ExVec *x, const json_t *o, const char *where, int hf_format);

static int bad_record(const char *where, const char *what) {
    return error_set("%s: %s.", where, what);
}

static int set_text(char **dst, const char *s, const char *where, const char *field) {
    if (!s) return error_set("%s: field '%s' is missing or not a string.", where, field);
    if (!(*dst = dup_rstrip(s))) return error_set("Out of memory at %s.", where);
    return LSC_OK;
}

static int json_bool_label(const json_t *o, const char *key, const char *where, int *out) {
    const json_t *v = json_object_get(o, key);
    if (json_is_boolean(v)) *out = json_is_true(v);
    else if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
        *out = (int)json_integer_value(v);
    else if (v) return error_set("%s: field '%s' is not a boolean.", where, key);
    return LSC_OK; /* absent: unlabeled (test files) */
}

static int rec_nli(ExVec *x, const json_t *o, const char *where, int three_way) {
    Example *e = exvec_push(x);
    if (!e) return LSC_ERR;
    if (set_text(&e->text, jstr(o, "premise"), where, "premise") ||
        set_text(&e->text2, jstr(o, "hypothesis"), where, "hypothesis"))
        return LSC_ERR;
    const char *l = jstr(o, "label");
    if (l) {
        if (strcmp(l, "entailment") == 0) e->label = 0;
        else if (strcmp(l, three_way ? "contradiction" : "not_entailment") == 0) e->label = 1;
        else if (three_way && strcmp(l, "neutral") == 0) e->label = 2;
        else return bad_record(where, "unknown label (expected entailment / not_entailment, or "
                                      "entailment / contradiction / neutral for CB)");
    }
    return LSC_OK;
}

static int rec_boolq(ExVec *x, const json_t *o, const char *where, int hf_format) {
    Example *e = exvec_push(x);
    if (!e) return LSC_ERR;
    const char *p = jstr(o, "passage");
    /* hf_format: 0 SuperGLUE, 1 the HF train subset, 2 SuperGLUE read beside that subset,
     * whose "Title -- passage" prefix is dropped to match it. */
    if (hf_format == 2 && p) {
        const char *sep = strstr(p, " -- ");
        if (sep) p = sep + 4;
    }
    if (set_text(&e->text, p, where, "passage") || set_text(&e->text2, jstr(o, "question"), where, "question"))
        return LSC_ERR;
    return json_bool_label(o, hf_format == 1 ? "answer" : "label", where, &e->label);
}

static int rec_wsc(ExVec *x, const json_t *o, const char *where, int unused) {
    (void)unused;
    Example *e = exvec_push(x);
    if (!e) return LSC_ERR;
    const json_t *t = json_object_get(o, "target");
    if (!json_is_object(t)) return bad_record(where, "field 'target' is missing");
    if (set_text(&e->text, jstr(o, "text"), where, "text") ||
        set_text(&e->extra, jstr(t, "span1_text"), where, "target.span1_text") ||
        set_text(&e->extra2, jstr(t, "span2_text"), where, "target.span2_text"))
        return LSC_ERR;
    return json_bool_label(o, "label", where, &e->label);
}

static int rec_wic(ExVec *x, const json_t *o, const char *where, int unused) {
    (void)unused;
    Example *e = exvec_push(x);
    if (!e) return LSC_ERR;
    if (set_text(&e->text, jstr(o, "sentence1"), where, "sentence1") ||
        set_text(&e->text2, jstr(o, "sentence2"), where, "sentence2") ||
        set_text(&e->extra, jstr(o, "word"), where, "word"))
        return LSC_ERR;
    return json_bool_label(o, "label", where, &e->label);
}

static int rec_copa(ExVec *x, const json_t *o, const char *where, int unused) {
    (void)unused;
    Example *e = exvec_push(x);
    if (!e) return LSC_ERR;
    const char *c1 = jstr(o, "choice1"), *c2 = jstr(o, "choice2"), *q = jstr(o, "question");
    if (set_text(&e->text, jstr(o, "premise"), where, "premise") || set_text(&e->extra, q, where, "question"))
        return LSC_ERR;
    if (strcmp(q, "cause") != 0 && strcmp(q, "effect") != 0)
        return bad_record(where, "field 'question' is neither \"cause\" nor \"effect\"");
    if (!c1 || !c2) return bad_record(where, "fields 'choice1' / 'choice2' are missing");
    if (push_str(&e->cands, &e->n_cands, c1, strlen(c1)) || push_str(&e->cands, &e->n_cands, c2, strlen(c2)))
        return LSC_ERR;
    const json_t *l = json_object_get(o, "label");
    if (json_is_integer(l)) {
        if (json_integer_value(l) != 0 && json_integer_value(l) != 1)
            return bad_record(where, "field 'label' is not 0 or 1");
        e->label = (int)json_integer_value(l);
    }
    return LSC_OK;
}

/* MultiRC: one line = one paragraph; one example per answer option, grouped by question. */
static int rec_multirc(ExVec *x, const json_t *o, const char *where, int unused) {
    (void)unused;
    static long question_id = 0; /* unique within a load; reset by the loader */
    if (!o) {
        question_id = 0;
        return LSC_OK;
    }
    const json_t *p = json_object_get(o, "passage");
    const char *text = jstr(p, "text");
    const json_t *qs = json_object_get(p, "questions");
    if (!text || !json_is_array(qs)) return bad_record(where, "field 'passage.text' or 'passage.questions' is missing");
    size_t qi, ai;
    const json_t *q, *a;
    json_array_foreach(qs, qi, q) {
        const char *qt = jstr(q, "question");
        const json_t *ans = json_object_get(q, "answers");
        if (!qt || !json_is_array(ans)) return bad_record(where, "a question lacks 'question' or 'answers'");
        json_array_foreach(ans, ai, a) {
            Example *e = exvec_push(x);
            if (!e) return LSC_ERR;
            e->group = question_id;
            if (set_text(&e->text, text, where, "passage.text") || set_text(&e->text2, qt, where, "question") ||
                set_text(&e->extra, jstr(a, "text"), where, "answers.text") ||
                json_bool_label(a, "label", where, &e->label))
                return LSC_ERR;
        }
        question_id++;
    }
    return LSC_OK;
}

/* ReCoRD: one line = one passage with entity spans (inclusive ends) and queries. */
static int rec_record(ExVec *x, const json_t *o, const char *where, int unused) {
    (void)unused;
    const json_t *p = json_object_get(o, "passage");
    const char *text = jstr(p, "text");
    const json_t *ents = json_object_get(p, "entities"), *qas = json_object_get(o, "qas");
    if (!text || !json_is_array(ents) || !json_is_array(qas))
        return bad_record(where, "fields 'passage.text', 'passage.entities' or 'qas' are missing");
    const size_t tlen = strlen(text);
    size_t qi, i;
    const json_t *q, *v;
    json_array_foreach(qas, qi, q) {
        Example *e = exvec_push(x);
        if (!e) return LSC_ERR;
        const json_t *qidx = json_object_get(q, "idx");
        e->group = json_is_integer(qidx) ? (long)json_integer_value(qidx) : (long)(x->n - 1);
        if (set_text(&e->text, text, where, "passage.text") || set_text(&e->text2, jstr(q, "query"), where, "query"))
            return LSC_ERR;
        json_array_foreach(ents, i, v) {
            const json_t *s = json_object_get(v, "start"), *en = json_object_get(v, "end");
            if (!json_is_integer(s) || !json_is_integer(en) || json_integer_value(s) < 0 ||
                json_integer_value(en) < json_integer_value(s) || (size_t)json_integer_value(en) >= tlen)
                return bad_record(where, "an entity span lies outside the passage");
            const char *es = text + json_integer_value(s);
            size_t el = (size_t)(json_integer_value(en) - json_integer_value(s) + 1);
            int dup = 0;
            for (int c = 0; c < e->n_cands && !dup; c++)
                dup = strlen(e->cands[c]) == el && memcmp(e->cands[c], es, el) == 0;
            if (!dup && push_str(&e->cands, &e->n_cands, es, el)) return LSC_ERR;
        }
        const json_t *ans = json_object_get(q, "answers");
        json_array_foreach(ans, i, v) {
            const char *at = jstr(v, "text");
            if (at && push_str(&e->answers, &e->n_answers, at, strlen(at))) return LSC_ERR;
        }
        for (int c = 0; c < e->n_cands && e->label < 0; c++)
            for (int a = 0; a < e->n_answers; a++)
                if (strcmp(e->cands[c], e->answers[a]) == 0) e->label = c;
        if (e->n_cands == 0) return bad_record(where, "a query has no candidate entities");
    }
    return LSC_OK;
}

/* GSM8K: the final answer is the number after "####", commas removed. */
static int rec_gsm8k(ExVec *x, const json_t *o, const char *where, int unused) {
    (void)unused;
    Example *e = exvec_push(x);
    if (!e) return LSC_ERR;
    if (set_text(&e->text, jstr(o, "question"), where, "question") ||
        set_text(&e->extra2, jstr(o, "answer"), where, "answer"))
        return LSC_ERR;
    const char *h = strstr(e->extra2, "####");
    if (!h) return bad_record(where, "the answer has no \"#### <number>\" line");
    h += 4;
    while (*h == ' ') h++;
    char num[64];
    size_t n = 0;
    for (; *h && *h != '\n' && n + 1 < sizeof num; h++)
        if (*h != ',' && *h != ' ') num[n++] = *h;
    num[n] = 0;
    return push_str(&e->answers, &e->n_answers, num, n);
}

static int load_jsonl(ExVec *x, const char *path, TaskId task, RecordFn fn, int arg) {
    char *buf;
    if (slurp(path, task, &buf, NULL) != LSC_OK) return LSC_ERR;
    int rc = LSC_OK;
    long line = 0;
    for (char *s = buf; *s && rc == LSC_OK;) {
        char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        line++;
        size_t k = 0;
        while (k < len && (s[k] == ' ' || s[k] == '\r' || s[k] == '\t')) k++;
        if (k < len) {
            json_error_t jerr;
            json_t *o = json_loadb(s, len, 0, &jerr);
            char where[4200];
            snprintf(where, sizeof where, "%s line %ld", path, line);
            if (!json_is_object(o)) rc = error_set("%s is not a JSON object: %s.", where, o ? "another JSON value" : jerr.text);
            else rc = fn(x, o, where, arg);
            json_decref(o);
        }
        s = nl ? nl + 1 : s + len;
    }
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Loaders by family */

static void exvec_free(ExVec *x) {
    for (size_t i = 0; i < x->n; i++) example_free(&x->v[i]);
    free(x->v);
    memset(x, 0, sizeof *x);
}

static int load_sst2_file(ExVec *x, const char *path) {
    char *buf;
    if (slurp(path, TASK_SST2, &buf, NULL) != LSC_OK) return LSC_ERR;
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
            Example *e = exvec_push(x);
            if (!e || !(e->text = dup_rstrip(s))) rc = e ? error_set("Out of memory reading %s.", path) : LSC_ERR;
            else e->label = tab[1] - '0';
        } else if (line == 1 && strncmp(s, "sentence\t", 9) != 0) {
            rc = error_set("%s does not start with the GLUE header \"sentence<TAB>label\".", path);
        }
        s = nl ? nl + 1 : s + len;
    }
    free(buf);
    return rc;
}

/* SQuAD v1.1 official JSON: data[].title, paragraphs[].context, qas[].question/answers[].text. */
static int load_squad_file(ExVec *x, const char *path) {
    json_error_t jerr;
    if (!file_exists(path)) return missing(TASK_SQUAD, path);
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return error_set("%s is not valid JSON: %s (line %d).", path, jerr.text, jerr.line);
    int rc = LSC_OK;
    const json_t *data = json_object_get(root, "data");
    if (!json_is_array(data)) rc = error_set("%s lacks the SQuAD top-level \"data\" array.", path);
    size_t i, j, k, a;
    const json_t *art, *par, *qa, *an;
    if (rc == LSC_OK) json_array_foreach(data, i, art) {
        const char *title = jstr(art, "title");
        json_array_foreach(json_object_get(art, "paragraphs"), j, par) {
            const char *ctx = jstr(par, "context");
            json_array_foreach(json_object_get(par, "qas"), k, qa) {
                Example *e = exvec_push(x);
                if (!e) { rc = LSC_ERR; goto done; }
                char where[4200];
                snprintf(where, sizeof where, "%s (article %zu, question %zu)", path, i, k);
                if (set_text(&e->text, ctx, where, "context") || set_text(&e->text2, jstr(qa, "question"), where, "question") ||
                    set_text(&e->extra, title ? title : "", where, "title")) { rc = LSC_ERR; goto done; }
                json_array_foreach(json_object_get(qa, "answers"), a, an) {
                    const char *t = jstr(an, "text");
                    if (t && push_str(&e->answers, &e->n_answers, t, strlen(t))) { rc = LSC_ERR; goto done; }
                }
            }
        }
    }
done:
    json_decref(root);
    return rc;
}

/* A DROP answer object as one string: the number, else the spans joined by spaces, else the
 * date "day month year" (the official metric's answer_json_to_strings, spans flattened). */
static int drop_answer(Example *e, const json_t *ans) {
    if (!json_is_object(ans)) return LSC_OK;
    const char *num = jstr(ans, "number");
    char buf[4096];
    size_t n = 0;
    buf[0] = 0;
    if (num && *num) {
        n = (size_t)snprintf(buf, sizeof buf, "%s", num);
    } else if (json_array_size(json_object_get(ans, "spans")) > 0) {
        size_t i;
        const json_t *s;
        json_array_foreach(json_object_get(ans, "spans"), i, s)
            if (json_is_string(s) && n < sizeof buf)
                n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? " " : "", json_string_value(s));
    } else {
        const json_t *d = json_object_get(ans, "date");
        const char *parts[3] = {jstr(d, "day"), jstr(d, "month"), jstr(d, "year")};
        for (int i = 0; i < 3; i++)
            if (parts[i] && *parts[i] && n < sizeof buf)
                n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? " " : "", parts[i]);
    }
    if (n >= sizeof buf) n = sizeof buf - 1;
    if (n == 0) return LSC_OK;
    for (int i = 0; i < e->n_answers; i++)
        if (strcmp(e->answers[i], buf) == 0) return LSC_OK;
    return push_str(&e->answers, &e->n_answers, buf, n);
}

/* DROP official JSON: {passage_id: {passage, qa_pairs[]: {question, answer, validated_answers}}}. */
static int load_drop_file(ExVec *x, const char *path) {
    json_error_t jerr;
    if (!file_exists(path)) return missing(TASK_DROP, path);
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return error_set("%s is not valid JSON: %s (line %d).", path, jerr.text, jerr.line);
    int rc = json_is_object(root) ? LSC_OK : error_set("%s is not a DROP file (a JSON object of passages).", path);
    const char *pid;
    const json_t *p, *qa, *va;
    size_t k, j;
    if (rc == LSC_OK) json_object_foreach(root, pid, p) {
        const char *passage = jstr(p, "passage");
        json_array_foreach(json_object_get(p, "qa_pairs"), k, qa) {
            Example *e = exvec_push(x);
            if (!e) { rc = LSC_ERR; break; }
            char where[4200];
            snprintf(where, sizeof where, "%s (passage %s, question %zu)", path, pid, k);
            if (set_text(&e->text, passage, where, "passage") || set_text(&e->text2, jstr(qa, "question"), where, "question") ||
                drop_answer(e, json_object_get(qa, "answer"))) { rc = LSC_ERR; break; }
            json_array_foreach(json_object_get(qa, "validated_answers"), j, va)
                if (drop_answer(e, va)) { rc = LSC_ERR; break; }
        }
        if (rc != LSC_OK) break;
    }
    json_decref(root);
    return rc;
}

static int load_alpaca_file(ExVec *x, const char *path) {
    json_error_t jerr;
    if (!file_exists(path)) return missing(TASK_ALPACA, path);
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return error_set("%s is not valid JSON: %s (line %d).", path, jerr.text, jerr.line);
    int rc = json_is_array(root) ? LSC_OK : error_set("%s is not an Alpaca file (a JSON array of records).", path);
    size_t i;
    const json_t *r;
    if (rc == LSC_OK) json_array_foreach(root, i, r) {
        Example *e = exvec_push(x);
        char where[4200];
        snprintf(where, sizeof where, "%s record %zu", path, i);
        const char *in = jstr(r, "input");
        if (!e || set_text(&e->text, jstr(r, "instruction"), where, "instruction") ||
            set_text(&e->text2, in ? in : "", where, "input") || set_text(&e->extra2, jstr(r, "output"), where, "output")) {
            rc = LSC_ERR;
            break;
        }
    }
    json_decref(root);
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

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted file names in dir ending with suffix (malloc'd list). */
static int list_dir(const char *dir, const char *suffix, char ***names, int *n) {
    DIR *dh = opendir(dir);
    *names = NULL, *n = 0;
    if (!dh) return error_set("Could not open directory %s: %s.", dir, strerror(errno));
    struct dirent *de;
    size_t sl = strlen(suffix);
    int rc = LSC_OK;
    while ((de = readdir(dh)) && rc == LSC_OK) {
        size_t l = strlen(de->d_name);
        if (l > sl && strcmp(de->d_name + l - sl, suffix) == 0) rc = push_str(names, n, de->d_name, l);
    }
    closedir(dh);
    if (*n > 1) qsort(*names, (size_t)*n, sizeof **names, cmp_str);
    return rc;
}

static void free_list(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* One MMLU CSV (question,A,B,C,D,answer; no header) into x with subject and shots. */
static int load_mmlu_csv(ExVec *x, const char *path, const char *subject, const char *shots) {
    char *buf;
    if (slurp(path, TASK_MMLU, &buf, NULL) != LSC_OK) return LSC_ERR;
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
        Example *e = exvec_push(x);
        if (!e || !(e->text = dup_rstrip(f[0])) || !(e->extra = dup_rstrip(subject))) {
            rc = e ? error_set("Out of memory reading %s.", path) : LSC_ERR;
            break;
        }
        for (int c = 0; c < 4 && rc == LSC_OK; c++) rc = push_str(&e->cands, &e->n_cands, f[1 + c], strlen(f[1 + c]));
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
    return pool_add(d, s, out);
}

static int load_mmlu_split(Dataset *d, ExVec *x, const char *root, const char *split) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", root, split);
    char suffix[32];
    snprintf(suffix, sizeof suffix, "_%s.csv", split);
    char **names;
    int n;
    if (!file_exists(dir)) return missing(TASK_MMLU, dir);
    if (list_dir(dir, suffix, &names, &n) != LSC_OK) return LSC_ERR;
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
    free_list(names, n);
    return rc;
}

/* BBH: data/TASK.json {"examples": [{input, target}]}, prompts in lib_prompt/TASK.txt. */
static int load_bbh(Dataset *d, ExVec *x, const char *root) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/data", root);
    if (!file_exists(dir)) return missing(TASK_BBH, dir);
    char **names;
    int n;
    if (list_dir(dir, ".json", &names, &n) != LSC_OK) return LSC_ERR;
    int rc = n ? LSC_OK : error_set("Dataset 'bbh': %s holds no task .json files.", dir);
    for (int i = 0; i < n && rc == LSC_OK; i++) {
        char sub[256], path[8400];
        snprintf(sub, sizeof sub, "%.*s", (int)(strlen(names[i]) - 5), names[i]);
        snprintf(path, sizeof path, "%s/lib_prompt/%s.txt", root, sub);
        char *shots;
        const char *shared = NULL;
        if ((rc = slurp(path, TASK_BBH, &shots, NULL)) != LSC_OK || (rc = pool_add(d, shots, &shared)) != LSC_OK) break;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        json_error_t jerr;
        json_t *root_j = json_load_file(path, 0, &jerr);
        const json_t *ex = json_object_get(root_j, "examples");
        if (!json_is_array(ex)) rc = error_set("%s is not a BBH task file (no \"examples\" array)%s%s.", path,
                                               root_j ? "" : ": ", root_j ? "" : jerr.text);
        size_t k;
        const json_t *r;
        if (rc == LSC_OK) json_array_foreach(ex, k, r) {
            Example *e = exvec_push(x);
            char where[8600];
            snprintf(where, sizeof where, "%s example %zu", path, k);
            const char *tg = jstr(r, "target");
            if (!e || set_text(&e->text, jstr(r, "input"), where, "input") || set_text(&e->extra, sub, where, "task") ||
                !tg || push_str(&e->answers, &e->n_answers, tg, strlen(tg))) {
                rc = (e && !tg) ? bad_record(where, "field 'target' is missing") : LSC_ERR;
                break;
            }
            e->shots = shared;
        }
        json_decref(root_j);
    }
    free_list(names, n);
    return rc;
}

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
    return pool_add(d, s, out);
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
    static const RecordFn SUPERGLUE[TASK_COUNT] = {
        [TASK_RTE] = rec_nli, [TASK_CB] = rec_nli, [TASK_WSC] = rec_wsc, [TASK_WIC] = rec_wic,
        [TASK_MULTIRC] = rec_multirc, [TASK_COPA] = rec_copa, [TASK_RECORD] = rec_record,
    };
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
        if (!rc && task == TASK_RECORD && !file_exists(p1) && !file_exists(p2)) {
            /* The mirror's ReCoRD: 32 + 32 examples drawn from the original train split. */
            char q1[4096], q2[4096];
            task_path(q1, sizeof q1, dir, task, "train_fewglue32.jsonl");
            task_path(q2, sizeof q2, dir, task, "dev32_ptuning.jsonl");
            if (file_exists(q1) && file_exists(q2)) {
                memcpy(p1, q1, sizeof p1), memcpy(p2, q2, sizeof p2);
                d->subset = 1;
                note_add(d, "ReCoRD: only the FewGLUE 32 + 32 train-split examples are here "
                            "(train_fewglue32.jsonl as train, dev32_ptuning.jsonl as test); the full "
                            "train/val files are unavailable, so this is a format test, not the protocol.");
            }
        }
        if (task == TASK_MULTIRC) rec_multirc(NULL, NULL, NULL, 0);
        if (!rc) rc = load_jsonl(&tr, p1, task, SUPERGLUE[task], arg);
        if (task == TASK_MULTIRC) rec_multirc(NULL, NULL, NULL, 0);
        if (!rc) rc = load_jsonl(&ev, p2, task, SUPERGLUE[task], arg);
        if (task == TASK_MULTIRC) /* keep question ids distinct across the two files */
            for (size_t i = 0; i < ev.n; i++) ev.v[i].group += 1L << 40;
        break;
    }
    case TASK_BOOLQ: {
        rc = task_path(p1, sizeof p1, dir, task, "train.jsonl");
        if (!rc) rc = task_path(p2, sizeof p2, dir, task, "val.jsonl");
        int hf = 0;
        if (!rc && !file_exists(p1)) {
            char q1[4096];
            task_path(q1, sizeof q1, dir, task, "train_subset1000_hfformat.jsonl");
            if (file_exists(q1)) {
                memcpy(p1, q1, sizeof p1);
                hf = 1;
                d->subset = 1;
                note_add(d, "BoolQ: the full train split is unavailable; train and val come from the "
                            "1000-example HF-format train subset, and SuperGLUE passages had their "
                            "\"Title -- \" prefix removed to match it.");
            }
        }
        if (!rc) rc = load_jsonl(&tr, p1, task, rec_boolq, hf);
        if (!rc) rc = load_jsonl(&ev, p2, task, rec_boolq, hf ? 2 : 0);
        break;
    }
    case TASK_SQUAD:
        if (!(rc = task_path(p1, sizeof p1, dir, task, "train-v1.1.json")) &&
            !(rc = task_path(p2, sizeof p2, dir, task, "dev-v1.1.json")) && !(rc = load_squad_file(&tr, p1)))
            rc = load_squad_file(&ev, p2);
        break;
    case TASK_DROP:
        if (!(rc = task_path(p1, sizeof p1, dir, task, "drop_dataset_train.json")) &&
            !(rc = task_path(p2, sizeof p2, dir, task, "drop_dataset_dev.json")) && !(rc = load_drop_file(&tr, p1)))
            rc = load_drop_file(&ev, p2);
        break;
    case TASK_GSM8K: {
        if (!(rc = task_path(p1, sizeof p1, dir, task, "train.jsonl")) && !(rc = task_path(p2, sizeof p2, dir, task, "test.jsonl")) &&
            !(rc = load_jsonl(&tr, p1, task, rec_gsm8k, 0)) && !(rc = load_jsonl(&ev, p2, task, rec_gsm8k, 0))) {
            const char *shots = NULL;
            if (tr.n < 8) note_add(d, "GSM8K: fewer than 8 train examples, so the few-shot prompt has %zu.", tr.n);
            if (!(rc = gsm8k_shots(d, &tr, &shots))) {
                for (size_t i = 0; i < ev.n; i++) ev.v[i].shots = shots;
                /* the exemplars never appear as training examples */
                for (size_t i = 0; i < tr.n && i < 8; i++) example_free(&tr.v[i]);
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
        if (!rc && !file_exists(p1)) {
            char q1[4096];
            task_path(q1, sizeof q1, dir, task, "alpaca_data_first200.json");
            if (file_exists(q1)) {
                memcpy(p1, q1, sizeof p1);
                d->subset = 1;
                note_add(d, "Alpaca: only the first 200 records of alpaca_data.json are here.");
            }
        }
        if (!rc) rc = load_alpaca_file(&tr, p1);
        if (!rc) note_add(d, "Alpaca has no evaluation split (Table 2 evaluates on MMLU and BBH).");
        break;
    case TASK_MMLU:
        rc = load_mmlu_split(d, &tr, root, "val");
        if (!rc) rc = load_mmlu_split(d, &ev, root, "test");
        if (!rc) note_add(d, "MMLU: train/val are drawn from the val CSVs, test from the test CSVs; "
                             "the dev CSVs are the 5-shot prompts.");
        break;
    case TASK_BBH:
        rc = load_bbh(d, &ev, root);
        if (!rc) note_add(d, "BBH is evaluation-only (3-shot chain-of-thought prompts): no train/val.");
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

void datasets_free(Dataset *d) {
    for (int s = 0; s < DS_NUM_SPLITS; s++) {
        for (size_t i = 0; i < d->n[s]; i++) example_free(&d->split[s][i]);
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
            note_add(d, "%s: the train split has %zu %s, fewer than the %zu train + %zu val asked: "
                        "all taken, %zu train / %zu val.", name, nt, unit, sizes->train, sizes->val, ktr, kva);
        else if (want)
            note_add(d, "%s: no train split here, so train and val are empty.", name);
    }
    if (kte > ne) {
        if (ne) note_add(d, "%s: the evaluation split has %zu %s, fewer than the %zu test asked: all taken.", name, ne, unit, sizes->test);
        else if (kte) note_add(d, "%s: no evaluation split here, so test is empty.", name);
        kte = ne;
    }
    if ((rc = take(d, DS_TRAIN, ut, ktr, &out[DS_TRAIN], &nout[DS_TRAIN])) ||
        (rc = take(d, DS_TRAIN, ut + ktr, kva, &out[DS_VAL], &nout[DS_VAL])) ||
        (rc = take(d, DS_TEST, ue, kte, &out[DS_TEST], &nout[DS_TEST])))
        goto done;
    for (int s = 0; s < DS_NUM_SPLITS; s++) {
        for (size_t i = 0; i < d->n[s]; i++) example_free(&d->split[s][i]);
        free(d->split[s]);
        d->split[s] = out[s], d->n[s] = nout[s];
        out[s] = NULL;
    }
done:
    for (int s = 0; s < DS_NUM_SPLITS; s++) {
        for (size_t i = 0; i < nout[s] && out[s]; i++) example_free(&out[s][i]);
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
