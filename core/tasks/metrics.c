/* Task metrics (see metrics.h): classification, SQuAD/ReCoRD, DROP (single-span), GSM8K,
 * MultiRC, BBH. The SQuAD and DROP parts follow evaluate-v1.1.py and drop_eval.py line by line
 * where they can; deviations are named in metrics.h. */
#include "core/tasks/metrics.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Classification */

double metrics_accuracy(const int *pred, const int *gold, size_t n) {
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) ok += pred[i] == gold[i];
    return n ? (double)ok / (double)n : 0.0;
}

double metrics_macro_f1(const int *pred, const int *gold, size_t n, int n_classes) {
    double sum = 0.0;
    int used = 0;
    for (int c = 0; c < n_classes; c++) {
        size_t tp = 0, fp = 0, fn = 0;
        for (size_t i = 0; i < n; i++) {
            tp += pred[i] == c && gold[i] == c;
            fp += pred[i] == c && gold[i] != c;
            fn += pred[i] != c && gold[i] == c;
        }
        if (tp + fp + fn == 0) continue; /* class absent from both: not in sklearn's labels */
        used++;
        sum += 2.0 * (double)tp / (double)(2 * tp + fp + fn);
    }
    return used ? sum / used : 0.0;
}

/* ---------------------------------------------------------------------------------------------
 * Tokens: a string split into words, kept as (start, len) into one malloc'd buffer. */

typedef struct Words {
    char *buf;
    size_t n;
    char **w;
} Words;

static void words_free(Words *t) {
    free(t->buf), free(t->w);
    memset(t, 0, sizeof *t);
}

/* Splits s (modified) at ASCII whitespace, and at '-' too when hyphen is set. */
static int words_split(Words *t, char *s, int hyphen) {
    size_t cap = strlen(s) / 2 + 2;
    t->buf = s, t->n = 0;
    t->w = malloc(cap * sizeof *t->w);
    if (!t->w) return -1;
    char *p = s;
    for (;;) {
        while (*p && (isspace((unsigned char)*p) || (hyphen && *p == '-'))) *p++ = 0;
        if (!*p) break;
        t->w[t->n++] = p;
        while (*p && !isspace((unsigned char)*p) && !(hyphen && *p == '-')) p++;
    }
    return 0;
}

static int is_article(const char *w) { return !strcmp(w, "a") || !strcmp(w, "an") || !strcmp(w, "the"); }

/* Python's string.punctuation. */
static int is_punct(unsigned char c) { return c < 128 && ispunct(c); }

char *metrics_squad_normalize(const char *s) {
    size_t n = strlen(s);
    char *t = malloc(n + 1), *out = malloc(n + 1);
    if (!t || !out) {
        free(t), free(out);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!is_punct((unsigned char)s[i])) t[k++] = (char)tolower((unsigned char)s[i]);
    t[k] = 0;
    /* remove_articles (\b(a|an|the)\b -> " ") then white_space_fix (split + join). After
     * punctuation removal, words are whitespace-separated, so whole-word matching suffices. */
    Words w;
    if (words_split(&w, t, 0) != 0) {
        free(t), free(out);
        return NULL;
    }
    k = 0;
    for (size_t i = 0; i < w.n; i++) {
        if (is_article(w.w[i])) continue;
        if (k) out[k++] = ' ';
        size_t l = strlen(w.w[i]);
        memcpy(out + k, w.w[i], l);
        k += l;
    }
    out[k] = 0;
    words_free(&w);
    return out;
}

static double squad_f1_one(const char *pred, const char *gold) {
    char *p = metrics_squad_normalize(pred), *g = metrics_squad_normalize(gold);
    Words wp = {.buf = p}, wg = {.buf = g};
    double f1 = 0.0;
    char *used = NULL;
    if (p && g && words_split(&wp, p, 0) == 0 && words_split(&wg, g, 0) == 0 &&
        (used = calloc(wg.n + 1, 1))) {
        size_t same = 0; /* multiset intersection (collections.Counter &) */
        for (size_t i = 0; i < wp.n; i++)
            for (size_t j = 0; j < wg.n; j++)
                if (!used[j] && strcmp(wp.w[i], wg.w[j]) == 0) {
                    used[j] = 1, same++;
                    break;
                }
        if (same) {
            double pr = (double)same / (double)wp.n, rc = (double)same / (double)wg.n;
            f1 = 2 * pr * rc / (pr + rc);
        }
    }
    free(used);
    words_free(&wp), words_free(&wg);
    return f1;
}

double metrics_squad_em(const char *pred, const char *const *golds, int n_golds) {
    char *p = metrics_squad_normalize(pred);
    double best = 0.0;
    for (int i = 0; i < n_golds && p && best < 1.0; i++) {
        char *g = metrics_squad_normalize(golds[i]);
        if (g && strcmp(p, g) == 0) best = 1.0;
        free(g);
    }
    free(p);
    return best;
}

double metrics_squad_f1(const char *pred, const char *const *golds, int n_golds) {
    double best = 0.0;
    for (int i = 0; i < n_golds; i++) {
        double f = squad_f1_one(pred, golds[i]);
        if (f > best) best = f;
    }
    return best;
}

/* ---------------------------------------------------------------------------------------------
 * DROP (single-span) */

/* Python's float(text) succeeds, restricted to decimal numerals (no inf / nan). */
static int drop_is_number(const char *w, double *v) {
    if (!*w || !strpbrk(w, "0123456789")) return 0;
    for (const char *c = w; *c; c++)
        if (isalpha((unsigned char)*c) && *c != 'e' && *c != 'E') return 0;
    char *end;
    *v = strtod(w, &end);
    return *end == 0;
}

/* One normalised token into out (possibly empty): lower, punctuation removed unless a number,
 * numbers canonicalised, articles dropped. */
static void drop_token(const char *w, char *out, size_t size) {
    double v;
    size_t k = 0;
    if (drop_is_number(w, &v)) {
        snprintf(out, size, "%.15g", v);
        return;
    }
    for (const char *c = w; *c && k + 1 < size; c++)
        if (!is_punct((unsigned char)*c)) out[k++] = (char)tolower((unsigned char)*c);
    out[k] = 0;
    if (drop_is_number(out, &v)) snprintf(out, size, "%.15g", v);
    if (is_article(out)) out[0] = 0;
}

/* The normalised token set of s; returns 0 on success. */
static int drop_bag(const char *s, Words *bag) {
    char *copy = strdup(s);
    Words w = {0};
    if (!copy || words_split(&w, copy, 1) != 0) {
        free(copy);
        return -1;
    }
    size_t cap = strlen(s) * 2 + 32 + 16 * w.n;
    bag->buf = malloc(cap);
    bag->w = malloc((w.n + 1) * sizeof *bag->w);
    bag->n = 0;
    if (!bag->buf || !bag->w) {
        words_free(&w), words_free(bag);
        return -1;
    }
    size_t used = 0;
    for (size_t i = 0; i < w.n; i++) {
        char *o = bag->buf + used;
        drop_token(w.w[i], o, cap - used);
        if (!*o) continue;
        int dup = 0;
        for (size_t j = 0; j < bag->n && !dup; j++) dup = strcmp(bag->w[j], o) == 0;
        if (dup) continue;
        bag->w[bag->n++] = o;
        used += strlen(o) + 1;
    }
    words_free(&w);
    return 0;
}

static int bag_has(const Words *b, const char *w) {
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->w[i], w) == 0) return 1;
    return 0;
}

static double drop_one(const char *pred, const char *gold, int em) {
    Words p = {0}, g = {0};
    double r = 0.0;
    if (drop_bag(pred, &p) == 0 && drop_bag(gold, &g) == 0) {
        if (em) {
            /* the normalised token sequence, compared as sets as the official EM compares
             * sets of normalised spans (one span here) */
            int same = p.n == g.n;
            for (size_t i = 0; i < p.n && same; i++) same = bag_has(&g, p.w[i]);
            r = same;
        } else {
            size_t inter = 0;
            for (size_t i = 0; i < p.n; i++) inter += bag_has(&g, p.w[i]);
            double pr = p.n ? (double)inter / (double)p.n : 1.0;
            double rc = g.n ? (double)inter / (double)g.n : 1.0;
            r = pr + rc > 0 ? 2 * pr * rc / (pr + rc) : 0.0;
            /* _match_numbers_if_present */
            int gold_nums = 0, hit = 0;
            double v;
            for (size_t i = 0; i < g.n; i++)
                if (drop_is_number(g.w[i], &v)) {
                    gold_nums = 1;
                    hit |= bag_has(&p, g.w[i]);
                }
            if (gold_nums && !hit) r = 0.0;
        }
    }
    words_free(&p), words_free(&g);
    return r;
}

double metrics_drop_em(const char *pred, const char *const *golds, int n_golds) {
    double best = 0.0;
    for (int i = 0; i < n_golds; i++) best = fmax(best, drop_one(pred, golds[i], 1));
    return best;
}

double metrics_drop_f1(const char *pred, const char *const *golds, int n_golds) {
    double best = 0.0;
    for (int i = 0; i < n_golds; i++) best = fmax(best, drop_one(pred, golds[i], 0));
    return best;
}

/* ---------------------------------------------------------------------------------------------
 * GSM8K, MultiRC, BBH */

/* The number starting at s (optional '-', digits with commas, optional decimals) copied
 * without commas into out; returns its length in s (0 if none). */
static size_t read_number(const char *s, char *out, size_t size) {
    const char *p = s;
    size_t k = 0;
    if (*p == '-' && isdigit((unsigned char)p[1])) out[k++] = *p++;
    if (!isdigit((unsigned char)*p)) return 0;
    while (isdigit((unsigned char)*p) || (*p == ',' && isdigit((unsigned char)p[1])) ||
           (*p == '.' && isdigit((unsigned char)p[1]))) {
        if (*p != ',' && k + 1 < size) out[k++] = *p;
        p++;
    }
    out[k] = 0;
    return (size_t)(p - s);
}

int metrics_gsm8k_extract(const char *text, char *out, size_t size) {
    char tmp[128];
    const char *h = strstr(text, "####");
    if (h) {
        for (const char *p = h + 4; *p && *p != '\n'; p++) {
            if (read_number(p, tmp, sizeof tmp)) {
                snprintf(out, size, "%s", tmp);
                return 1;
            }
        }
    }
    int found = 0;
    for (const char *p = text; *p;) {
        size_t l = (p == text || !isdigit((unsigned char)p[-1])) ? read_number(p, tmp, sizeof tmp) : 0;
        if (l) {
            snprintf(out, size, "%s", tmp);
            found = 1;
            p += l;
        } else {
            p++;
        }
    }
    if (!found && size) out[0] = 0;
    return found;
}

double metrics_gsm8k_em(const char *pred, const char *gold_number) {
    char p[128], g[128];
    if (!metrics_gsm8k_extract(pred, p, sizeof p) || !metrics_gsm8k_extract(gold_number, g, sizeof g)) return 0.0;
    return strtod(p, NULL) == strtod(g, NULL) ? 1.0 : 0.0;
}

void metrics_multirc(const int *pred, const int *gold, const long *group, size_t n, double *f1a,
                     double *em) {
    size_t tp = 0, fp = 0, fn = 0, questions = 0, right = 0;
    for (size_t i = 0; i < n; i++) {
        tp += pred[i] == 1 && gold[i] == 1;
        fp += pred[i] == 1 && gold[i] != 1;
        fn += pred[i] != 1 && gold[i] == 1;
    }
    /* questions: maximal runs of one group id (options of a question are contiguous) */
    for (size_t i = 0; i < n;) {
        size_t j = i;
        int ok = 1;
        while (j < n && group[j] == group[i]) ok &= pred[j] == gold[j], j++;
        questions++, right += (size_t)ok;
        i = j;
    }
    *f1a = tp ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0.0;
    *em = questions ? (double)right / (double)questions : 0.0;
}

static void trim_into(const char *s, size_t len, char *out, size_t size) {
    while (len && isspace((unsigned char)*s)) s++, len--;
    while (len && isspace((unsigned char)s[len - 1])) len--;
    if (len >= size) len = size - 1;
    memcpy(out, s, len);
    out[len] = 0;
}

void metrics_bbh_extract(const char *text, char *out, size_t size) {
    const char *key = "the answer is ";
    const char *last = NULL;
    for (const char *p = text; (p = strstr(p, key)); p++) last = p;
    if (!last)
        for (const char *p = text; (p = strstr(p, "The answer is ")); p++) last = p;
    if (last) {
        const char *a = last + strlen(key);
        size_t len = strcspn(a, "\n");
        while (len && (a[len - 1] == '.' || isspace((unsigned char)a[len - 1]))) len--;
        trim_into(a, len, out, size);
    } else {
        trim_into(text, strcspn(text, "\n"), out, size);
    }
}

double metrics_bbh_em(const char *pred, const char *target) {
    char p[512], t[512];
    metrics_bbh_extract(pred, p, sizeof p);
    trim_into(target, strlen(target), t, sizeof t);
    return strcmp(p, t) == 0 ? 1.0 : 0.0;
}
