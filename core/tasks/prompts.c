/* Prompt templates, verbalizers, row construction and scoring; see prompts.h. Templates are
 * MeZO's (Malladi et al. 2023, large_models/templates.py); Alpaca's is Stanford Alpaca's. */
#include "core/tasks/prompts.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/model/device.h"

/* ---------------------------------------------------------------------------------------------
 * Strings */

static int fmt(char **out, const char *f, ...) LSC_PRINTF(2, 3);
static int fmt(char **out, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    *out = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!*out) return error_set("Out of memory building a prompt.");
    va_start(ap, f);
    vsnprintf(*out, (size_t)n + 1, f, ap);
    va_end(ap);
    return LSC_OK;
}

/* s with every occurrence of from replaced by to (malloc'd). */
static char *replace_all(const char *s, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to), count = 0;
    for (const char *p = s; (p = strstr(p, from)); p += fl) count++;
    char *out = malloc(strlen(s) + count * (tl > fl ? tl - fl : 0) + 1), *w = out;
    if (!out) return NULL;
    for (const char *p = s;;) {
        const char *h = strstr(p, from);
        if (!h) {
            strcpy(w, p);
            break;
        }
        memcpy(w, p, (size_t)(h - p)), w += h - p;
        memcpy(w, to, tl), w += tl;
        p = h + fl;
    }
    return out;
}

static const char *shots_of(const Example *e, int fewshot) { return fewshot && e->shots ? e->shots : ""; }

/* ---------------------------------------------------------------------------------------------
 * Templates */

static const char *ALPACA_INPUT =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n### Instruction:\n%s"
    "\n\n### Input:\n%s\n\n### Response:\n";
static const char *ALPACA_NO_INPUT =
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n%s\n\n### Response:\n";

int prompts_text(TaskId task, const Example *e, int fewshot, char **out) {
    *out = NULL;
    switch (task) {
    case TASK_SST2: return fmt(out, "%s It was", e->text);
    case TASK_RTE: return fmt(out, "%s\nDoes this mean that \"%s\" is true? Yes or No?\n", e->text, e->text2);
    case TASK_CB: return fmt(out, "%s\nDoes this mean that \"%s\" is true? Yes, No, or Maybe?\n", e->text, e->text2);
    case TASK_BOOLQ: return fmt(out, "%s %s?", e->text, e->text2);
    case TASK_WSC: {
        char *pron = strdup(e->extra2);
        if (!pron) return error_set("Out of memory building a prompt.");
        for (char *c = pron; *c; c++) *c = (char)tolower((unsigned char)*c);
        int rc = fmt(out, "%s\nIn the previous sentence, does the pronoun \"%s\" refer to %s? Yes or No?\n",
                     e->text, pron, e->extra);
        free(pron);
        return rc;
    }
    case TASK_WIC:
        return fmt(out, "Does the word \"%s\" have the same meaning in these two sentences? Yes, No?\n%s\n%s\n",
                   e->extra, e->text, e->text2);
    case TASK_MULTIRC:
        return fmt(out, "%s\nQuestion: %s\nI found this answer \"%s\". Is that correct? Yes or No?\n", e->text,
                   e->text2, e->extra);
    case TASK_COPA: {
        /* premise without its final period, then " because " / " so " */
        size_t n = strlen(e->text);
        if (n && e->text[n - 1] == '.') n--;
        return fmt(out, "%.*s%s", (int)n, e->text, strcmp(e->extra, "cause") == 0 ? " because " : " so ");
    }
    case TASK_RECORD: {
        char *p = replace_all(e->text, "@highlight\n", "- ");
        if (!p) return error_set("Out of memory building a prompt.");
        int rc = fmt(out, "%s\n- ", p);
        free(p);
        return rc;
    }
    case TASK_SQUAD:
        return fmt(out, "Title: %s\nContext: %s\nQuestion: %s\nAnswer:", e->extra, e->text, e->text2);
    case TASK_DROP: return fmt(out, "Passage: %s\nQuestion: %s\nAnswer:", e->text, e->text2);
    case TASK_GSM8K: return fmt(out, "%sQuestion: %s\nAnswer:", shots_of(e, fewshot), e->text);
    case TASK_ALPACA:
        return e->text2 && *e->text2 ? fmt(out, ALPACA_INPUT, e->text, e->text2) : fmt(out, ALPACA_NO_INPUT, e->text);
    case TASK_MMLU:
        return fmt(out, "%s%s\nA. %s\nB. %s\nC. %s\nD. %s\nAnswer:", shots_of(e, fewshot), e->text, e->cands[0],
                   e->cands[1], e->cands[2], e->cands[3]);
    case TASK_BBH: return fmt(out, "%s%sQ: %s\nA: Let's think step by step.", shots_of(e, fewshot),
                              fewshot && e->shots ? "\n\n" : "", e->text);
    default: return error_set("Dataset id %d has no prompt template.", (int)task);
    }
}

int prompts_num_candidates(TaskId task, const Example *e) {
    const char *const *w;
    switch (datasets_kind(task)) {
    case TASK_KIND_CLASSIFY: return datasets_label_words(task, &w);
    case TASK_KIND_CHOICE: return e->n_cands;
    default: return 1;
    }
}

int prompts_continuation(TaskId task, const Example *e, int c, char **out) {
    *out = NULL;
    if (c < 0 && task == TASK_RECORD && e->label < 0 && e->n_answers > 0 && e->text2) {
        /* the gold answer matches none of the passage's entity strings (it happens in the
         * original data): train on the gold answer itself */
        char *q = replace_all(e->text2, "@placeholder", e->answers[0]);
        if (!q) return error_set("Out of memory building a prompt.");
        *out = q;
        return LSC_OK;
    }
    if (c < 0) c = e->label;
    const TaskKind kind = datasets_kind(task);
    if (kind != TASK_KIND_GENERATE && (c < 0 || c >= prompts_num_candidates(task, e)))
        return error_set("Candidate %d is out of range for a %s example (%d candidates; label %d).", c,
                         datasets_name(task), prompts_num_candidates(task, e), e->label);
    const char *const *w;
    datasets_label_words(task, &w);
    switch (task) {
    case TASK_SST2: case TASK_BOOLQ: case TASK_MMLU: return fmt(out, " %s", w[c]); /* after text */
    case TASK_RTE: case TASK_CB: case TASK_WSC: case TASK_WIC: case TASK_MULTIRC:
        return fmt(out, "%s", w[c]); /* after "\n" */
    case TASK_COPA: {
        /* MeZO's capitalization "correct": the choice's first letter lower-cased */
        int rc = fmt(out, "%s", e->cands[c]);
        if (rc == LSC_OK && **out) (*out)[0] = (char)tolower((unsigned char)(*out)[0]);
        return rc;
    }
    case TASK_RECORD: {
        char *q = replace_all(e->text2, "@placeholder", e->cands[c]);
        if (!q) return error_set("Out of memory building a prompt.");
        *out = q;
        return LSC_OK;
    }
    case TASK_SQUAD: case TASK_DROP: case TASK_BBH:
        if (e->n_answers < 1) return error_set("A %s example has no gold answer to train on.", datasets_name(task));
        return fmt(out, " %s\n", e->answers[0]);
    case TASK_GSM8K: return fmt(out, " %s\n\n", e->extra2);
    case TASK_ALPACA: return fmt(out, "%s", e->extra2);
    default: return error_set("Dataset id %d has no continuation.", (int)task);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Tokenization */

static int encode_alloc(const Tokenizer *tok, const char *s, int flags, int32_t **ids, int *n) {
    size_t len = strlen(s), cap = tokenizer_max_tokens(len) + 2, got = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return error_set("Out of memory tokenizing a %zu-byte prompt.", len);
    if (tokenizer_encode(tok, s, len, flags, *ids, cap, &got) != LSC_OK) {
        free(*ids);
        *ids = NULL;
        return LSC_ERR;
    }
    *n = (int)got;
    return LSC_OK;
}

int prompts_encode(const Tokenizer *tok, TaskId task, const Example *e, int c, int fewshot, PromptSeq *s) {
    memset(s, 0, sizeof *s);
    char *p = NULL, *cont = NULL, *full = NULL;
    int32_t *pids = NULL;
    int np = 0, rc = prompts_text(task, e, fewshot, &p);
    if (!rc) rc = prompts_continuation(task, e, c, &cont);
    if (!rc) rc = fmt(&full, "%s%s", p, cont);
    if (!rc) rc = encode_alloc(tok, p, TOKENIZER_BOS, &pids, &np);
    const int eos = task == TASK_ALPACA && tok->eos_id >= 0;
    if (!rc) rc = encode_alloc(tok, full, TOKENIZER_BOS | (eos ? TOKENIZER_EOS : 0), &s->tokens, &s->n);
    if (!rc) {
        int k = 0;
        while (k < np && k < s->n && pids[k] == s->tokens[k]) k++;
        if (k >= s->n) k = s->n - 1; /* an empty continuation still predicts one token */
        s->n_prompt = k < 1 ? 1 : k;
        if (s->n < 2) rc = error_set("A %s example tokenized to %d token(s): nothing to predict.", datasets_name(task), s->n);
    }
    free(p), free(cont), free(full), free(pids);
    if (rc) prompts_seq_free(s);
    return rc;
}

void prompts_seq_free(PromptSeq *s) {
    free(s->tokens);
    memset(s, 0, sizeof *s);
}

int prompts_row(const PromptSeq *s, int T, int32_t pad_id, int32_t *tokens, int32_t *targets) {
    int off = s->n > T ? s->n - T : 0;
    if (off > s->n_prompt - 1) off = s->n_prompt - 1;
    int len = s->n - off < T ? s->n - off : T;
    for (int i = 0; i < T; i++) {
        tokens[i] = i < len ? s->tokens[off + i] : pad_id;
        const int next = off + i + 1;
        targets[i] = (i + 1 < len && next >= s->n_prompt) ? s->tokens[next] : -1;
    }
    return len;
}

double prompts_row_logprob(const Real *logits, int V, const int32_t *targets, int T, int mean) {
    double sum = 0.0;
    int count = 0;
    for (int i = 0; i < T; i++) {
        if (targets[i] < 0) continue;
        const Real *row = logits + (size_t)i * V;
        double mx = row[0], z = 0.0;
        for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < V; v++) z += exp((double)row[v] - mx);
        sum += (double)row[targets[i]] - mx - log(z);
        count++;
    }
    return mean && count ? sum / count : sum;
}

/* ---------------------------------------------------------------------------------------------
 * Scoring and decoding with a model */

int prompts_predict(Llama *m, const Tokenizer *tok, TaskId task, const Example *e, int fewshot, int mean,
                   int *pred, double *scores) {
    const int nc = prompts_num_candidates(task, e), T = m->config.seq_len;
    if (datasets_kind(task) == TASK_KIND_GENERATE || nc < 1)
        return error_set("prompts_predict scores candidates; %s is a generation task (use prompts_generate).",
                         datasets_name(task));
    int32_t *tokens = malloc((size_t)T * sizeof *tokens), *targets = malloc((size_t)T * sizeof *targets);
    int rc = tokens && targets ? LSC_OK : error_set("Out of memory scoring candidates (T = %d).", T);
    double best = -INFINITY;
    *pred = -1;
    for (int c = 0; c < nc && rc == LSC_OK; c++) {
        PromptSeq s;
        if ((rc = prompts_encode(tok, task, e, c, fewshot, &s)) != LSC_OK) break;
        const int len = prompts_row(&s, T, tok->eos_id >= 0 ? tok->eos_id : 0, tokens, targets);
        prompts_seq_free(&s);
        /* the candidate's log-likelihood is minus its tokens' cross-entropy: the loss forward
         * computes it with the classifier on the candidate's positions only */
        m->forward_only = 1; /* an evaluation: one layer's activations (llama.h) */
        rc = llama_forward_loss(m, tokens, targets, 1, len);
        m->forward_only = 0;
        if (rc != LSC_OK) break;
        const double sc = -m->mean_loss * (mean ? 1 : m->n_loss_tokens);
        if (scores) scores[c] = sc;
        if (sc > best) best = sc, *pred = c;
    }
    free(tokens), free(targets);
    return rc;
}

/* One row of prompts_predict_many: an example's candidate, or (cand = -1) all of an
 * example's candidates at once when they share the prompt and are one token each (label
 * words: SST-2, RTE, CB, BoolQ, ...): the logits at the prompt's last position score them
 * all, one forward instead of one per candidate. */
typedef struct CandRow {
    int example, cand, len; /* len: tokens it uses, at most the model's seq_len */
    int n_targets;
    PromptSeq seq;
} CandRow;

static int cand_row_by_len(const void *a, const void *b) {
    const CandRow *x = a, *y = b;
    return x->len != y->len ? (x->len < y->len ? -1 : 1) : 0;
}

/* 1 when every candidate of e is one token after one and the same prompt: seqs[nc]. */
static int one_token_candidates(const PromptSeq *seqs, int nc) {
    for (int c = 0; c < nc; c++) {
        if (seqs[c].n - seqs[c].n_prompt != 1 || seqs[c].n_prompt != seqs[0].n_prompt) return 0;
        if (memcmp(seqs[c].tokens, seqs[0].tokens, (size_t)seqs[0].n_prompt * sizeof(int32_t))) return 0;
    }
    return 1;
}

/* Encodes e's candidates as rows (one shared row, or one per candidate); *cand_tokens gets
 * the candidates' tokens for a shared row. Returns the number of rows written. */
static int encode_rows(const Tokenizer *tok, TaskId task, const Example *e, int example, int fewshot,
                       CandRow *rows, int32_t *cand_tokens, int *n_out) {
    const int nc = prompts_num_candidates(task, e);
    if (nc < 1) return error_set("An example of %s has no candidate answer.", datasets_name(task));
    PromptSeq seqs[PROMPTS_MAX_CANDIDATES];
    if (nc > PROMPTS_MAX_CANDIDATES)
        return error_set("An example of %s has %d candidate answers, more than %d.", datasets_name(task), nc,
                         PROMPTS_MAX_CANDIDATES);
    int rc = LSC_OK, got = 0;
    for (; got < nc && rc == LSC_OK; got++)
        if ((rc = prompts_encode(tok, task, e, got, fewshot, &seqs[got])) != LSC_OK) break;
    if (rc != LSC_OK) {
        for (int c = 0; c < got; c++) prompts_seq_free(&seqs[c]);
        return rc;
    }
    const int shared = nc > 1 && one_token_candidates(seqs, nc);
    for (int c = 0; c < nc; c++) {
        if (shared) cand_tokens[c] = seqs[c].tokens[seqs[c].n_prompt];
        if (shared && c > 0) {
            prompts_seq_free(&seqs[c]);
            continue;
        }
        rows[*n_out] = (CandRow){.example = example, .cand = shared ? -1 : c, .seq = seqs[c]};
        (*n_out)++;
    }
    return LSC_OK;
}

int prompts_predict_many(Llama *m, const Tokenizer *tok, TaskId task, const Example *const *ex, int n,
                         int fewshot, int mean, int *pred) {
    if (datasets_kind(task) == TASK_KIND_GENERATE)
        return error_set("prompts_predict_many scores candidates; %s is a generation task (use prompts_generate).",
                         datasets_name(task));
    Backend *be = m->be;
    const int T = m->config.seq_len, V = m->config.vocab_size;
    const int32_t pad = tok->eos_id >= 0 ? tok->eos_id : 0;
    int n_rows = 0;
    for (int i = 0; i < n; i++) n_rows += prompts_num_candidates(task, ex[i]);
    /* Tokens per forward: what training reserved activations for (at least 1024); a longer
     * row goes alone. */
    const size_t reserved = (size_t)m->B * (size_t)m->T;
    const size_t budget = reserved > 1024 ? reserved : 1024;
    const size_t buffer = budget > (size_t)T ? budget : (size_t)T; /* and any one row */
    CandRow *rows = calloc((size_t)n_rows + 1, sizeof *rows);
    double *best = malloc(((size_t)n + 1) * sizeof *best), *row_loss = malloc(((size_t)n_rows + 1) * sizeof *row_loss);
    int32_t *cand_tokens = malloc(((size_t)n * PROMPTS_MAX_CANDIDATES + 1) * sizeof *cand_tokens);
    int32_t *tokens = malloc(buffer * sizeof *tokens), *targets = malloc(buffer * sizeof *targets);
    Real *logit_row = malloc((size_t)V * sizeof *logit_row);
    int rc = rows && best && row_loss && cand_tokens && tokens && targets && logit_row
                 ? LSC_OK : error_set("Out of memory scoring %d candidates.", n_rows);
    n_rows = 0;
    for (int i = 0; i < n && rc == LSC_OK; i++) {
        best[i] = -INFINITY;
        pred[i] = -1;
        rc = encode_rows(tok, task, ex[i], i, fewshot, rows, cand_tokens + (size_t)i * PROMPTS_MAX_CANDIDATES,
                         &n_rows);
    }
    for (int r = 0; r < n_rows && rc == LSC_OK; r++) {
        rows[r].len = prompts_row(&rows[r].seq, T, pad, tokens, targets);
        rows[r].n_targets = 0;
        for (int t = 0; t < T; t++) rows[r].n_targets += targets[t] >= 0;
    }
    /* Rows of similar length share a forward (sorted by length: little padding); a row's
     * loss does not depend on the rows beside it (attention is per row and causal, padding
     * sits after its last target), so the scores are those of one forward per candidate up
     * to float rounding. */
    if (rc == LSC_OK) qsort(rows, (size_t)n_rows, sizeof *rows, cand_row_by_len);
    for (int first = 0; first < n_rows && rc == LSC_OK;) {
        int Tb = rows[first].len, B = 0;
        while (first + B < n_rows && (B == 0 || (size_t)(B + 1) * (size_t)rows[first + B].len <= budget))
            Tb = rows[first + B++].len;
        for (int b = 0; b < B; b++)
            prompts_row(&rows[first + b].seq, Tb, pad, tokens + (size_t)b * Tb, targets + (size_t)b * Tb);
        m->forward_only = 1; /* an evaluation: one layer's activations (llama.h) */
        rc = llama_forward_row_losses(m, tokens, targets, B, Tb, row_loss + first);
        m->forward_only = 0;
        if (rc != LSC_OK) break;
        /* shared rows: every candidate's log-probability from the logits of their one target
         * (the classifier ran on the target positions only, in position order) */
        int head_row = 0;
        for (int b = 0; b < B && rc == LSC_OK; b++) {
            CandRow *c = &rows[first + b];
            if (c->cand < 0) {
                int pos = 0;
                while (targets[(size_t)b * Tb + pos] < 0) pos++;
                const int at = m->head_rows ? head_row : b * Tb + pos;
                Real lse;
                be->to_host(be, logit_row, m->acts.logits + (size_t)at * V, (size_t)V * sizeof(Real));
                be->to_host(be, &lse, m->acts.lse + at, sizeof lse);
                if ((rc = device_sync(be)) != LSC_OK) break;
                const int i = c->example, nc = prompts_num_candidates(task, ex[i]);
                for (int k = 0; k < nc; k++) {
                    const double sc = (double)logit_row[cand_tokens[(size_t)i * PROMPTS_MAX_CANDIDATES + k]] - lse;
                    if (sc > best[i]) best[i] = sc, pred[i] = k;
                }
            }
            head_row += c->n_targets;
        }
        first += B;
    }
    /* candidates in order, the first of equal scores wins (as prompts_predict) */
    for (int k = 0; k < n_rows && rc == LSC_OK; k++) {
        const CandRow *c = &rows[k];
        if (c->cand < 0) continue;
        const double sc = -row_loss[k] / (mean && c->n_targets ? c->n_targets : 1);
        if (sc > best[c->example] || (sc == best[c->example] && c->cand < pred[c->example]))
            best[c->example] = sc, pred[c->example] = c->cand;
    }
    for (int k = 0; rows && k < n_rows; k++) prompts_seq_free(&rows[k].seq);
    free(rows), free(best), free(row_loss), free(cand_tokens), free(tokens), free(targets), free(logit_row);
    return rc;
}

/* One sequence of prompts_generate_many: its tokens (the prompt's last `keep`, then the
 * generated ones up to len), its cache and the logits of its next token. */
typedef struct GenSeq {
    int32_t *buf;      /* [seq_len] */
    int keep, len, active;
    LlamaDecoder dec;
    int dec_live;
    Real *row;         /* [V], host */
} GenSeq;

/* Appends seq's greedy token; 0 when it is done (EOS, the stop string, or max_new tokens),
 * 1 when it needs its new token fed. */
static int gen_advance(GenSeq *q, const Tokenizer *tok, const char *stop, int V, int max_new,
                       int *rc) {
    q->buf[q->len++] = llama_argmax(q->row, V);
    if (q->buf[q->len - 1] == tok->eos_id) {
        q->len--;
        return 0;
    }
    if (stop) {
        char *text = NULL;
        if ((*rc = tokenizer_decode(tok, q->buf + q->keep, (size_t)(q->len - q->keep), &text,
                                    NULL)) != LSC_OK)
            return 0;
        const int hit = strstr(text, stop) != NULL;
        free(text);
        if (hit) return 0;
    }
    return q->len < q->keep + max_new;
}

int prompts_generate_many(Llama *m, const Tokenizer *tok, TaskId task, const Example *const *ex,
                          int n, int fewshot, int max_new, char **out) {
    for (int i = 0; i < n; i++) out[i] = NULL;
    const int T = m->config.seq_len, V = m->config.vocab_size;
    const char *stop = (task == TASK_GSM8K || task == TASK_BBH) ? "\n\n" : task == TASK_ALPACA ? NULL : "\n";
    if (max_new < 1 || max_new >= T)
        return error_set("Generation needs 1 <= max_new (%d) < seq_len (%d).", max_new, T);
    if (n <= 0) return LSC_OK;
    GenSeq *seq = calloc((size_t)n, sizeof *seq);
    LlamaDecoder **rows = calloc((size_t)n, sizeof *rows);
    int32_t *step_tokens = calloc((size_t)n, sizeof *step_tokens);
    Real *logits = malloc((size_t)n * V * sizeof *logits);
    int *which = calloc((size_t)n, sizeof *which);
    LlamaDecodeBatch batch = {0};
    int rc = seq && rows && step_tokens && logits && which ? LSC_OK
                                                           : error_set("Out of memory for generation.");
    /* each prompt (left-truncated to fit) through its own cache */
    for (int i = 0; i < n && rc == LSC_OK; i++) {
        GenSeq *q = &seq[i];
        char *p = NULL;
        int32_t *ids = NULL;
        int n_ids = 0;
        rc = prompts_text(task, ex[i], fewshot, &p);
        if (!rc) rc = encode_alloc(tok, p, TOKENIZER_BOS, &ids, &n_ids);
        free(p);
        if (rc) break;
        q->keep = n_ids < T - max_new ? n_ids : T - max_new;
        q->buf = malloc((size_t)T * sizeof *q->buf);
        q->row = malloc((size_t)V * sizeof *q->row);
        if (!q->buf || !q->row) {
            free(ids);
            rc = error_set("Out of memory for generation.");
            break;
        }
        memcpy(q->buf, ids + (n_ids - q->keep), (size_t)q->keep * sizeof *q->buf);
        free(ids);
        q->len = q->keep;
        rc = llama_decoder_create(&q->dec, m, q->keep + max_new);
        q->dec_live = rc == LSC_OK;
        if (rc == LSC_OK) rc = llama_decoder_feed(&q->dec, q->buf, q->keep, q->row);
        q->active = 1;
    }
    if (rc == LSC_OK) rc = llama_decode_batch_create(&batch, m, n);
    /* greedy, one token per step for every sequence still going, in one forward */
    while (rc == LSC_OK) {
        int k = 0;
        for (int i = 0; i < n && rc == LSC_OK; i++) {
            GenSeq *q = &seq[i];
            if (!q->active) continue;
            q->active = gen_advance(q, tok, stop, V, max_new, &rc);
            if (q->active) rows[k] = &q->dec, step_tokens[k] = q->buf[q->len - 1], which[k++] = i;
        }
        if (rc != LSC_OK || k == 0) break;
        rc = llama_decode_batch_step(&batch, rows, step_tokens, k, logits);
        for (int j = 0; j < k && rc == LSC_OK; j++)
            memcpy(seq[which[j]].row, logits + (size_t)j * V, (size_t)V * sizeof *logits);
    }
    for (int i = 0; i < n && rc == LSC_OK; i++) { /* the answers, cut at the stop string */
        GenSeq *q = &seq[i];
        rc = tokenizer_decode(tok, q->buf + q->keep, (size_t)(q->len - q->keep), &out[i], NULL);
        char *h = rc == LSC_OK && stop ? strstr(out[i], stop) : NULL;
        if (h) *h = 0;
    }
    if (rc != LSC_OK)
        for (int i = 0; i < n; i++) free(out[i]), out[i] = NULL;
    if (batch.m) llama_decode_batch_free(&batch);
    for (int i = 0; seq && i < n; i++) {
        if (seq[i].dec_live) llama_decoder_free(&seq[i].dec);
        free(seq[i].buf);
        free(seq[i].row);
    }
    free(seq), free(rows), free(step_tokens), free(logits), free(which);
    return rc;
}

int prompts_generate(Llama *m, const Tokenizer *tok, TaskId task, const Example *e, int fewshot,
                     int max_new, char **out) {
    return prompts_generate_many(m, tok, task, &e, 1, fewshot, max_new, out);
}
