/* The JSON dataset formats: per-record parsers of the JSON-lines files (SuperGLUE, BoolQ's HF
 * subset, GSM8K) and whole-file readers for SQuAD, DROP, Alpaca and BBH, through jansson.
 * Not here: which files a task reads (datasets_read.c), sampling (datasets.c). */
#include "core/data/datasets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base/error.h"
#include "core/data/datasets_internal.h"

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
    if (!(*dst = datasets_dup_rstrip(s))) return error_set("Out of memory at %s.", where);
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
    Example *e = datasets_exvec_push(x);
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
    Example *e = datasets_exvec_push(x);
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
    Example *e = datasets_exvec_push(x);
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
    Example *e = datasets_exvec_push(x);
    if (!e) return LSC_ERR;
    if (set_text(&e->text, jstr(o, "sentence1"), where, "sentence1") ||
        set_text(&e->text2, jstr(o, "sentence2"), where, "sentence2") ||
        set_text(&e->extra, jstr(o, "word"), where, "word"))
        return LSC_ERR;
    return json_bool_label(o, "label", where, &e->label);
}

static int rec_copa(ExVec *x, const json_t *o, const char *where, int unused) {
    (void)unused;
    Example *e = datasets_exvec_push(x);
    if (!e) return LSC_ERR;
    const char *c1 = jstr(o, "choice1"), *c2 = jstr(o, "choice2"), *q = jstr(o, "question");
    if (set_text(&e->text, jstr(o, "premise"), where, "premise") || set_text(&e->extra, q, where, "question"))
        return LSC_ERR;
    if (strcmp(q, "cause") != 0 && strcmp(q, "effect") != 0)
        return bad_record(where, "field 'question' is neither \"cause\" nor \"effect\"");
    if (!c1 || !c2) return bad_record(where, "fields 'choice1' / 'choice2' are missing");
    if (datasets_str_push(&e->cands, &e->n_cands, c1, strlen(c1)) || datasets_str_push(&e->cands, &e->n_cands, c2, strlen(c2)))
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
            Example *e = datasets_exvec_push(x);
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
        Example *e = datasets_exvec_push(x);
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
            if (!dup && datasets_str_push(&e->cands, &e->n_cands, es, el)) return LSC_ERR;
        }
        const json_t *ans = json_object_get(q, "answers");
        json_array_foreach(ans, i, v) {
            const char *at = jstr(v, "text");
            if (at && datasets_str_push(&e->answers, &e->n_answers, at, strlen(at))) return LSC_ERR;
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
    Example *e = datasets_exvec_push(x);
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
    return datasets_str_push(&e->answers, &e->n_answers, num, n);
}

static int load_jsonl(ExVec *x, const char *path, TaskId task, RecordFn fn, int arg) {
    char *buf;
    if (datasets_slurp(path, task, &buf, NULL) != LSC_OK) return LSC_ERR;
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

int datasets_jsonl_read(ExVec *x, const char *path, TaskId task, int arg) {
    static const RecordFn BY_TASK[TASK_COUNT] = {
        [TASK_RTE] = rec_nli,   [TASK_CB] = rec_nli,         [TASK_BOOLQ] = rec_boolq,
        [TASK_WSC] = rec_wsc,   [TASK_WIC] = rec_wic,        [TASK_MULTIRC] = rec_multirc,
        [TASK_COPA] = rec_copa, [TASK_RECORD] = rec_record,  [TASK_GSM8K] = rec_gsm8k,
    };
    if ((int)task < 0 || task >= TASK_COUNT || !BY_TASK[task])
        return error_set("Dataset '%s' is not read from JSON lines.", datasets_name(task) ? datasets_name(task) : "?");
    if (task == TASK_MULTIRC) rec_multirc(NULL, NULL, NULL, 0); /* question ids restart per file */
    return load_jsonl(x, path, task, BY_TASK[task], arg);
}

/* ---------------------------------------------------------------------------------------------
 * Whole-file JSON formats */

/* SQuAD v1.1 official JSON: data[].title, paragraphs[].context, qas[].question/answers[].text. */
int datasets_squad_read(ExVec *x, const char *path) {
    json_error_t jerr;
    if (!datasets_file_exists(path)) return datasets_missing(TASK_SQUAD, path);
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
                Example *e = datasets_exvec_push(x);
                if (!e) { rc = LSC_ERR; goto done; }
                char where[4200];
                snprintf(where, sizeof where, "%s (article %zu, question %zu)", path, i, k);
                if (set_text(&e->text, ctx, where, "context") || set_text(&e->text2, jstr(qa, "question"), where, "question") ||
                    set_text(&e->extra, title ? title : "", where, "title")) { rc = LSC_ERR; goto done; }
                json_array_foreach(json_object_get(qa, "answers"), a, an) {
                    const char *t = jstr(an, "text");
                    if (t && datasets_str_push(&e->answers, &e->n_answers, t, strlen(t))) { rc = LSC_ERR; goto done; }
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
    return datasets_str_push(&e->answers, &e->n_answers, buf, n);
}

/* DROP official JSON: {passage_id: {passage, qa_pairs[]: {question, answer, validated_answers}}}. */
int datasets_drop_read(ExVec *x, const char *path) {
    json_error_t jerr;
    if (!datasets_file_exists(path)) return datasets_missing(TASK_DROP, path);
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return error_set("%s is not valid JSON: %s (line %d).", path, jerr.text, jerr.line);
    int rc = json_is_object(root) ? LSC_OK : error_set("%s is not a DROP file (a JSON object of passages).", path);
    const char *pid;
    const json_t *p, *qa, *va;
    size_t k, j;
    if (rc == LSC_OK) json_object_foreach(root, pid, p) {
        const char *passage = jstr(p, "passage");
        json_array_foreach(json_object_get(p, "qa_pairs"), k, qa) {
            Example *e = datasets_exvec_push(x);
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

int datasets_alpaca_read(ExVec *x, const char *path) {
    json_error_t jerr;
    if (!datasets_file_exists(path)) return datasets_missing(TASK_ALPACA, path);
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return error_set("%s is not valid JSON: %s (line %d).", path, jerr.text, jerr.line);
    int rc = json_is_array(root) ? LSC_OK : error_set("%s is not an Alpaca file (a JSON array of records).", path);
    size_t i;
    const json_t *r;
    if (rc == LSC_OK) json_array_foreach(root, i, r) {
        Example *e = datasets_exvec_push(x);
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

/* BBH: data/TASK.json {"examples": [{input, target}]}, prompts in lib_prompt/TASK.txt. */
int datasets_bbh_read(Dataset *d, ExVec *x, const char *root) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/data", root);
    if (!datasets_file_exists(dir)) return datasets_missing(TASK_BBH, dir);
    char **names;
    int n;
    if (datasets_dir_list(dir, ".json", &names, &n) != LSC_OK) return LSC_ERR;
    int rc = n ? LSC_OK : error_set("Dataset 'bbh': %s holds no task .json files.", dir);
    for (int i = 0; i < n && rc == LSC_OK; i++) {
        char sub[256], path[8400];
        snprintf(sub, sizeof sub, "%.*s", (int)(strlen(names[i]) - 5), names[i]);
        snprintf(path, sizeof path, "%s/lib_prompt/%s.txt", root, sub);
        char *shots;
        const char *shared = NULL;
        if ((rc = datasets_slurp(path, TASK_BBH, &shots, NULL)) != LSC_OK || (rc = datasets_pool_add(d, shots, &shared)) != LSC_OK) break;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        json_error_t jerr;
        json_t *root_j = json_load_file(path, 0, &jerr);
        const json_t *ex = json_object_get(root_j, "examples");
        if (!json_is_array(ex)) rc = error_set("%s is not a BBH task file (no \"examples\" array)%s%s.", path,
                                               root_j ? "" : ": ", root_j ? "" : jerr.text);
        size_t k;
        const json_t *r;
        if (rc == LSC_OK) json_array_foreach(ex, k, r) {
            Example *e = datasets_exvec_push(x);
            char where[8600];
            snprintf(where, sizeof where, "%s example %zu", path, k);
            const char *tg = jstr(r, "target");
            if (!e || set_text(&e->text, jstr(r, "input"), where, "input") || set_text(&e->extra, sub, where, "task") ||
                !tg || datasets_str_push(&e->answers, &e->n_answers, tg, strlen(tg))) {
                rc = (e && !tg) ? bad_record(where, "field 'target' is missing") : LSC_ERR;
                break;
            }
            e->shots = shared;
        }
        json_decref(root_j);
    }
    datasets_list_free(names, n);
    return rc;
}
