/* Tokenizer (see tokenizer.h): the vocabulary and its piece hash, the dispatch of encode /
 * decode to the two kinds, and the SentencePiece-BPE encoder / decoder. The encoder merges over
 * ranges of the normalised text (as SentencePiece and llama.cpp do), with a binary heap of
 * candidate pairs, so long texts cost O(n log n). The file readers are in tokenizer_load.c, the
 * byte-level BPE in tokenizer_bpe.c. */
#include "core/data/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/data/tokenizer_internal.h"

#define SPACE_MARK "\xe2\x96\x81" /* U+2581 "▁", SentencePiece's escaped space */
#define SPACE_MARK_LEN 3

/* ------------------------------------------------------------------------------------------
 * building a vocabulary */

void tok_reset(Tokenizer *t) {
    memset(t, 0, sizeof *t);
    t->bos_id = t->eos_id = t->unk_id = t->pad_id = -1;
}

void tokenizer_free(Tokenizer *t) {
    if (t->pieces)
        for (int i = 0; i < t->vocab_size; i++) free(t->pieces[i]);
    free(t->pieces);
    free(t->piece_len);
    free(t->scores);
    free(t->types);
    free(t->hash);
    free(t->chat_template);
    bpe_free(t->bpe);
    free(t->source);
    tok_reset(t);
}

int tok_vocab_alloc(Tokenizer *t, int n, const char *name) {
    tok_reset(t);
    t->add_dummy_prefix = 1;
    t->add_bos = 1;
    t->vocab_size = n;
    t->pieces = calloc((size_t)n, sizeof *t->pieces);
    t->piece_len = calloc((size_t)n, sizeof *t->piece_len);
    t->scores = calloc((size_t)n, sizeof *t->scores);
    t->types = calloc((size_t)n, sizeof *t->types);
    t->source = malloc(strlen(name) + 1);
    if (!t->pieces || !t->piece_len || !t->scores || !t->types || !t->source) {
        tokenizer_free(t);
        return error_set("Out of memory reading the %d-token vocabulary of %s.", n, name);
    }
    memcpy(t->source, name, strlen(name) + 1);
    return LSC_OK;
}

int tok_vocab_set(Tokenizer *t, int id, const char *s, size_t n, int spaces_are_marks) {
    size_t extra = 0;
    if (spaces_are_marks)
        for (size_t i = 0; i < n; i++) extra += s[i] == ' ' ? SPACE_MARK_LEN - 1 : 0;
    char *p = malloc(n + extra + 1);
    if (!p) return error_set("Out of memory reading the vocabulary of %s.", t->source);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (spaces_are_marks && s[i] == ' ') {
            memcpy(p + k, SPACE_MARK, SPACE_MARK_LEN);
            k += SPACE_MARK_LEN;
        } else {
            p[k++] = s[i];
        }
    }
    p[k] = '\0';
    free(t->pieces[id]);
    t->pieces[id] = p;
    t->piece_len[id] = (int)k;
    return LSC_OK;
}

int tok_byte_piece_value(const char *s, int n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

int tok_lookup(const Tokenizer *t, const char *s, size_t n) {
    if (!t->hash) return -1;
    for (size_t i = hash_bytes(s, n) & t->hash_mask;; i = (i + 1) & t->hash_mask) {
        const int id = t->hash[i];
        if (id < 0) return -1;
        if ((size_t)t->piece_len[id] == n && memcmp(t->pieces[id], s, n) == 0) return id;
    }
}

int tokenizer_find(const Tokenizer *t, const char *piece) {
    const size_t n = strlen(piece);
    const int id = tok_lookup(t, piece, n);
    if (id >= 0 || t->kind == TOKENIZER_BYTE_BPE) return id;
    const int b = tok_byte_piece_value(piece, (int)n); /* byte and control pieces are not hashed */
    if (b >= 0) return t->byte_id[b];
    const int special[3] = {t->bos_id, t->eos_id, t->unk_id};
    for (int i = 0; i < 3; i++)
        if (special[i] >= 0 && strcmp(t->pieces[special[i]], piece) == 0) return special[i];
    return -1;
}

static int hash_alloc(Tokenizer *t) {
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    size_t cap = 16;
    while (cap < 2 * (size_t)t->vocab_size) cap *= 2;
    free(t->hash);
    t->hash = malloc(cap * sizeof *t->hash);
    if (!t->hash) return error_set("Out of memory indexing the vocabulary of %s.", t->source);
    for (size_t i = 0; i < cap; i++) t->hash[i] = -1;
    t->hash_mask = cap - 1;
    return LSC_OK;
}

static int hash_missing(const Tokenizer *t, int id) {
    return error_set("%s has no piece for token id %d: token ids must run from 0 to %d without "
                     "gaps.", t->source, id, t->vocab_size - 1);
}

/* Adds id unless its spelling is empty or already there (the first id wins). */
static void hash_insert(Tokenizer *t, int id) {
    if (t->piece_len[id] == 0 || tok_lookup(t, t->pieces[id], (size_t)t->piece_len[id]) >= 0) return;
    size_t i = hash_bytes(t->pieces[id], (size_t)t->piece_len[id]) & t->hash_mask;
    while (t->hash[i] >= 0) i = (i + 1) & t->hash_mask;
    t->hash[i] = id;
}

/* After pieces and types are set: byte table, piece hash (text pieces only: control, byte
 * and unused tokens never come out of text), missing-piece check. */
int tok_vocab_finish(Tokenizer *t) {
    if (hash_alloc(t) != LSC_OK) return LSC_ERR;
    for (int id = 0; id < t->vocab_size; id++) {
        if (!t->pieces[id]) return hash_missing(t, id);
        if (t->types[id] == TOKEN_BYTE) {
            const int v = tok_byte_piece_value(t->pieces[id], t->piece_len[id]);
            if (v < 0)
                return error_set("%s marks token %d (\"%s\") as a byte token, but byte tokens are "
                                 "spelled <0xHH>.", t->source, id, t->pieces[id]);
            if (t->byte_id[v] < 0) t->byte_id[v] = id;
            continue;
        }
        if (t->types[id] == TOKEN_NORMAL || t->types[id] == TOKEN_USER_DEFINED) hash_insert(t, id);
    }
    return LSC_OK;
}

int tok_hash_all(Tokenizer *t) {
    if (hash_alloc(t) != LSC_OK) return LSC_ERR;
    for (int id = 0; id < t->vocab_size; id++) {
        if (!t->pieces[id]) return hash_missing(t, id);
        hash_insert(t, id);
    }
    return LSC_OK;
}

int tok_read_file(const char *path, const char *what, char **data, size_t *size) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return error_set("Cannot open %s %s: %s.", what, path, strerror(errno));
    int rc = LSC_OK;
    long n = -1;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        rc = error_set("Cannot read %s %s: %s.", what, path, strerror(errno));
    } else if (!(*data = malloc((size_t)n + 1))) {
        rc = error_set("Out of memory reading %s %s (%ld bytes).", what, path, n);
    } else if (fread(*data, 1, (size_t)n, f) != (size_t)n) {
        rc = error_set("Cannot read %s %s: it ended early.", what, path);
    } else {
        (*data)[n] = '\0';
        *size = (size_t)n;
    }
    fclose(f);
    if (rc != LSC_OK) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * encoder */

typedef struct Symbol {
    int prev, next; /* -1 at the ends */
    size_t start, len; /* range of the normalised text; len 0 once merged away */
} Symbol;

typedef struct Bigram {
    float score;
    int left, right;
    size_t len;
} Bigram;

/* max-heap: higher score first, then the leftmost pair */
static int bigram_before(const Bigram *a, const Bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct Heap {
    Bigram *v;
    size_t n;
} Heap;

static void heap_push(Heap *h, Bigram b) {
    size_t i = h->n++;
    while (i > 0 && bigram_before(&b, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = b;
}

static Bigram heap_pop(Heap *h) {
    Bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && bigram_before(&h->v[c + 1], &h->v[c])) c++;
        if (!bigram_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    h->v[i] = last;
    return top;
}

static void try_pair(const Tokenizer *t, const char *text, const Symbol *sym, Heap *h, int left,
                     int right) {
    if (left < 0 || right < 0) return;
    if (t->split_words && sym[right].len >= SPACE_MARK_LEN &&
        memcmp(text + sym[right].start, SPACE_MARK, SPACE_MARK_LEN) == 0)
        return; /* a word starts at every "▁": no merge across words */
    const size_t len = sym[left].len + sym[right].len;
    const int id = tok_lookup(t, text + sym[left].start, len);
    if (id < 0 || !(t->scores[id] > -INFINITY)) return;
    heap_push(h, (Bigram){t->scores[id], left, right, len});
}

/* SentencePiece: at most one token per byte, plus BOS and EOS. Byte-level BPE: one per byte
 * too, but add_prefix_space may put a space before each piece (at most one per byte). */
size_t tokenizer_max_tokens(size_t len) { return 2 * len + 3; }

int tok_push(TokOut *o, int32_t id, size_t text_len) {
    if (o->n >= o->max)
        return error_set("Tokenizing %zu bytes of text needs more than %zu token slots.", text_len,
                         o->max);
    o->ids[o->n++] = id;
    return LSC_OK;
}

static size_t utf8_len(unsigned char c) {
    static const size_t lookup_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup_len[c >> 4];
}

/* SentencePiece BPE of text[0..len) into o. */
static int spm_encode(const Tokenizer *t, const char *text, size_t len, TokOut *o) {
    int rc = LSC_OK;
    /* normalise: dummy prefix, spaces -> "▁" */
    /* a lead byte in the text may swallow part of a "▁", so there can be a symbol per byte of
     * the normalised text; each merge pushes at most two pairs */
    size_t cap = (len + 1) * SPACE_MARK_LEN, m = 0;
    char *norm = malloc(cap);
    Symbol *sym = malloc(cap * sizeof *sym);
    Heap heap = {malloc(3 * cap * sizeof *heap.v), 0};
    if (!norm || !sym || !heap.v) {
        rc = error_set("Out of memory tokenizing %zu bytes of text.", len);
        goto done;
    }
    if (t->add_dummy_prefix == TOKENIZER_PREFIX_ALWAYS ||
        (t->add_dummy_prefix == TOKENIZER_PREFIX_UNLESS_SPACE && text[0] != ' ' &&
         !(len >= SPACE_MARK_LEN && memcmp(text, SPACE_MARK, SPACE_MARK_LEN) == 0))) {
        memcpy(norm, SPACE_MARK, SPACE_MARK_LEN);
        m = SPACE_MARK_LEN;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(norm + m, SPACE_MARK, SPACE_MARK_LEN);
            m += SPACE_MARK_LEN;
        } else {
            norm[m++] = text[i];
        }
    }
    /* one symbol per UTF-8 character */
    int n_sym = 0;
    for (size_t i = 0; i < m;) {
        size_t cl = utf8_len((unsigned char)norm[i]);
        if (cl > m - i) cl = m - i;
        sym[n_sym] = (Symbol){n_sym - 1, -1, i, cl};
        if (n_sym > 0) sym[n_sym - 1].next = n_sym;
        n_sym++;
        i += cl;
    }
    for (int i = 1; i < n_sym; i++) try_pair(t, norm, sym, &heap, i - 1, i);
    while (heap.n > 0) {
        const Bigram b = heap_pop(&heap);
        Symbol *l = &sym[b.left], *r = &sym[b.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != b.len) continue; /* stale */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        try_pair(t, norm, sym, &heap, l->prev, b.left);
        try_pair(t, norm, sym, &heap, b.left, l->next);
    }
    for (int i = 0; i >= 0 && n_sym > 0 && rc == LSC_OK; i = sym[i].next) {
        const int id = tok_lookup(t, norm + sym[i].start, sym[i].len);
        if (id >= 0) {
            rc = tok_push(o, id, len);
            continue;
        }
        for (size_t j = 0; j < sym[i].len && rc == LSC_OK; j++) { /* byte fallback */
            const unsigned char c = (unsigned char)norm[sym[i].start + j];
            const int bid = t->byte_id[c];
            if (bid < 0 && t->unk_id < 0)
                rc = error_set("Cannot encode byte 0x%02X with the vocabulary of %s: it has "
                               "neither a <0x%02X> byte token nor <unk>.", c, t->source, c);
            else
                rc = tok_push(o, bid >= 0 ? bid : t->unk_id, len);
        }
    }
done:
    free(norm);
    free(sym);
    free(heap.v);
    return rc;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int flags, int32_t *ids,
                     size_t max_ids, size_t *n_ids) {
    *n_ids = 0;
    TokOut o = {ids, 0, max_ids};
    const int bos = (flags & TOKENIZER_BOS) && t->add_bos;
    if (bos && t->bos_id < 0) return error_set("The vocabulary of %s has no BOS token <s>.", t->source);
    if ((flags & TOKENIZER_EOS) && t->eos_id < 0)
        return error_set("The vocabulary of %s has no EOS token </s>.", t->source);
    int rc = bos ? tok_push(&o, t->bos_id, len) : LSC_OK;
    if (rc == LSC_OK && len > 0)
        rc = t->kind == TOKENIZER_BYTE_BPE ? bpe_encode(t, text, len, &o) : spm_encode(t, text, len, &o);
    if (rc == LSC_OK && (flags & TOKENIZER_EOS)) rc = tok_push(&o, t->eos_id, len);
    *n_ids = rc == LSC_OK ? o.n : 0;
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * decoder */

int tokenizer_check_ids(const Tokenizer *t, const int32_t *ids, size_t n, size_t *bytes) {
    size_t cap = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab_size)
            return error_set("Token id %d at position %zu is outside the vocabulary of %s (0..%d).",
                             (int)ids[i], i, t->source, t->vocab_size - 1);
        cap += (size_t)t->piece_len[ids[i]];
    }
    *bytes = cap;
    return LSC_OK;
}

int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len) {
    *out = NULL;
    if (t->kind == TOKENIZER_BYTE_BPE) return bpe_decode(t, ids, n, out, out_len);
    size_t cap = 0;
    if (tokenizer_check_ids(t, ids, n, &cap) != LSC_OK) return LSC_ERR;
    char *s = malloc(cap);
    if (!s) return error_set("Out of memory decoding %zu tokens.", n);
    size_t k = 0;
    int first = 1; /* the dummy prefix is the first piece's leading "▁" */
    for (size_t i = 0; i < n; i++) {
        const int id = ids[i];
        const char *p = t->pieces[id];
        const int pl = t->piece_len[id];
        if (t->types[id] == TOKEN_CONTROL) continue;
        const int at_start = first;
        first = 0;
        if (t->types[id] == TOKEN_BYTE) {
            s[k++] = (char)tok_byte_piece_value(p, pl);
            continue;
        }
        for (int j = 0; j < pl;) {
            if (j + SPACE_MARK_LEN <= pl && memcmp(p + j, SPACE_MARK, SPACE_MARK_LEN) == 0) {
                if (!(at_start && j == 0 && t->add_dummy_prefix)) s[k++] = ' ';
                j += SPACE_MARK_LEN;
            } else {
                s[k++] = p[j++];
            }
        }
    }
    s[k] = '\0';
    if (out_len) *out_len = k;
    *out = s;
    return LSC_OK;
}
