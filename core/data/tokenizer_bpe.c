/* Byte-level BPE (GPT-2 style) exactly as Hugging Face tokenizers 0.19 runs it, for the
 * vocabularies tokenizer_load.c reads (SmolLM2's GGUF, byte-level tokenizer.json files):
 *   1. added tokens are cut out of the text first, leftmost-longest (those HF marks
 *      normalized=false in one pass over the text, then the normalized ones in the gaps),
 *      with their lstrip / rstrip;
 *   2. the Digits pre-tokenizer (SmolLM2: every digit a piece of its own), then ByteLevel:
 *      add_prefix_space, GPT-2's regex (hand-written below, alternative by alternative),
 *      each byte to its character of GPT-2's byte alphabet;
 *   3. per word, the adjacent pair with the lowest merge rank merges (leftmost on ties) until
 *      none does (HF's Word::merge_all, with the same stale-entry check).
 * A byte whose character is not in the vocabulary (SmolLM2 lacks 21, e.g. 0x04, 0xC0, 0xFF) is
 * dropped, or becomes unk_token when the model has one, as in HF. The character classes come
 * from the library itself (unicode_tables.c). Not here: BPE dropout, continuing-subword
 * prefixes, regexes other than GPT-2's. */
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/data/tokenizer_internal.h"
#include "core/data/unicode.h"

#define BYTE_ALPHABET_END 0x144 /* GPT-2's byte characters are below U+0144 */

typedef struct BpePair {
    int32_t left, right; /* left < 0: empty slot */
    int32_t rank, id;
} BpePair;

typedef struct BpeAdded {
    int32_t id;
    uint32_t len;
    uint8_t set, first; /* set 0: matched on the raw text, 1: normalized (second pass) */
    uint8_t flags;      /* BPE_ADDED_* */
} BpeAdded;

struct TokenizerBpe {
    BpeOptions opt;
    BpePair *pairs;
    size_t pair_mask;
    size_t n_pairs;
    BpeAdded *added;          /* sorted by (set, first byte, length descending) */
    size_t n_added, cap_added;
    size_t start[2 * 256 + 1]; /* added[start[s*256+b] .. start[s*256+b+1]): set s, first byte b */
    int16_t char_byte[BYTE_ALPHABET_END]; /* byte of a byte-alphabet code point, -1 */
    uint16_t byte_char[256];
};

/* ------------------------------------------------------------------------------------------
 * building the model */

void bpe_free(struct TokenizerBpe *b) {
    if (!b) return;
    free(b->pairs);
    free(b->added);
    free(b);
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * for U+0100.. in byte order. */
static void byte_alphabet(struct TokenizerBpe *b) {
    int n = 0;
    for (int i = 0; i < BYTE_ALPHABET_END; i++) b->char_byte[i] = -1;
    for (int c = 0; c < 256; c++) {
        const int printable = (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE);
        b->byte_char[c] = (uint16_t)(printable ? c : 256 + n++);
        b->char_byte[b->byte_char[c]] = (int16_t)c;
    }
}

int bpe_init(Tokenizer *t, const BpeOptions *opt, size_t n_merges) {
    t->kind = TOKENIZER_BYTE_BPE;
    t->add_dummy_prefix = 0;
    struct TokenizerBpe *b = calloc(1, sizeof *b);
    if (!b) return error_set("Out of memory reading the byte-level BPE model of %s.", t->source);
    t->bpe = b;
    b->opt = *opt;
    if (tok_hash_all(t) != LSC_OK) return LSC_ERR;
    byte_alphabet(b);
    for (int c = 0; c < 256; c++) { /* bytes without a piece are dropped, as HF does */
        char s[4];
        const size_t n = unicode_put(b->byte_char[c], s);
        t->byte_id[c] = tok_lookup(t, s, n);
        if (t->byte_id[c] < 0 && (c == '\t' || c == '\n' || (c >= 0x20 && c <= 0x7E)))
            return error_set("%s is a byte-level BPE vocabulary without a piece for byte 0x%02X "
                             "(\"%.*s\"): it must spell at least tab, newline and printable ASCII.",
                             t->source, c, (int)n, s);
    }
    size_t cap = 16;
    while (cap < 2 * n_merges + 16) cap *= 2;
    b->pairs = malloc(cap * sizeof *b->pairs);
    if (!b->pairs) return error_set("Out of memory for the %zu merges of %s.", n_merges, t->source);
    for (size_t i = 0; i < cap; i++) b->pairs[i].left = -1;
    b->pair_mask = cap - 1;
    return LSC_OK;
}

static size_t pair_slot(const struct TokenizerBpe *b, int32_t l, int32_t r) {
    uint64_t h = ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) * 0x9E3779B97F4A7C15ull;
    for (size_t i = (size_t)(h >> 20) & b->pair_mask;; i = (i + 1) & b->pair_mask)
        if (b->pairs[i].left < 0 || (b->pairs[i].left == l && b->pairs[i].right == r)) return i;
}

static const BpePair *pair_find(const struct TokenizerBpe *b, int32_t l, int32_t r) {
    const BpePair *p = &b->pairs[pair_slot(b, l, r)];
    return p->left < 0 ? NULL : p;
}

int bpe_add_merge(Tokenizer *t, const char *a, size_t na, const char *b, size_t nb, int rank) {
    struct TokenizerBpe *m = t->bpe;
    const int l = tok_lookup(t, a, na), r = tok_lookup(t, b, nb);
    if (l < 0 || r < 0)
        return error_set("%s: merge %d (\"%.*s %.*s\") uses a piece that is not in the vocabulary.",
                         t->source, rank, (int)na, a, (int)nb, b);
    char small[256], *ab = na + nb <= sizeof small ? small : malloc(na + nb);
    if (!ab) return error_set("Out of memory reading the merges of %s.", t->source);
    memcpy(ab, a, na);
    memcpy(ab + na, b, nb);
    const int id = tok_lookup(t, ab, na + nb);
    if (ab != small) free(ab);
    if (id < 0)
        return error_set("%s: merge %d (\"%.*s %.*s\") makes a piece that is not in the vocabulary.",
                         t->source, rank, (int)na, a, (int)nb, b);
    BpePair *p = &m->pairs[pair_slot(m, l, r)];
    if (p->left < 0) {
        m->n_pairs++;
        LSC_ASSERT(2 * m->n_pairs < m->pair_mask + 1); /* bpe_init sized the table for them */
    }
    *p = (BpePair){l, r, rank, id}; /* a repeated pair keeps its last rank, as in HF's map */
    return LSC_OK;
}

int bpe_add_token(Tokenizer *t, int id, int flags) {
    struct TokenizerBpe *b = t->bpe;
    if (id < 0 || id >= t->vocab_size || t->piece_len[id] == 0) return LSC_OK; /* never matches */
    if (b->n_added == b->cap_added) {
        const size_t cap = b->cap_added ? 2 * b->cap_added : 32;
        BpeAdded *a = realloc(b->added, cap * sizeof *a);
        if (!a) return error_set("Out of memory reading the added tokens of %s.", t->source);
        b->added = a;
        b->cap_added = cap;
    }
    b->added[b->n_added++] = (BpeAdded){id, (uint32_t)t->piece_len[id],
                                        (uint8_t)((flags & BPE_ADDED_NORMALIZED) ? 1 : 0),
                                        (unsigned char)t->pieces[id][0], (uint8_t)flags};
    return LSC_OK;
}

static int added_cmp(const void *x, const void *y) {
    const BpeAdded *a = x, *b = y;
    if (a->set != b->set) return a->set < b->set ? -1 : 1;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

int bpe_finish(Tokenizer *t) {
    struct TokenizerBpe *b = t->bpe;
    if (b->n_added) qsort(b->added, b->n_added, sizeof *b->added, added_cmp);
    size_t k = 0;
    for (size_t key = 0; key <= 2 * 256; key++) {
        while (k < b->n_added && (size_t)b->added[k].set * 256 + b->added[k].first < key) k++;
        b->start[key] = k;
    }
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * encoder */

typedef struct Sym {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    int alive;
} Sym;

typedef struct Cand {
    int32_t rank, pos, id;
} Cand;

typedef struct Work {
    const Tokenizer *t;
    const struct TokenizerBpe *b;
    TokOut *o;
    size_t text_len;      /* for messages */
    unsigned char *piece; /* [len + 1] a pre-tokenized piece with its prefix space */
    size_t *off;          /* [len + 2] character starts within piece */
    uint32_t *cls;        /* [len + 1] UNICODE_* of each character (0: ill-formed) */
    Sym *sym;             /* [len + 1] */
    Cand *heap;           /* [3 (len + 1)] */
    char *mapped;         /* [2 (len + 1)] a word in the byte alphabet */
} Work;

static int cand_before(const Cand *a, const Cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(Cand *h, size_t *n, Cand c) {
    size_t i = (*n)++;
    while (i > 0 && cand_before(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static Cand heap_pop(Cand *h, size_t *n) {
    const Cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_before(&h[c + 1], &h[c])) c++;
        if (!cand_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static void push_pair(const struct TokenizerBpe *b, const Sym *s, Cand *h, size_t *n, int32_t pos) {
    if (pos < 0 || s[pos].next < 0) return;
    const BpePair *p = pair_find(b, s[pos].id, s[s[pos].next].id);
    if (p) heap_push(h, n, (Cand){p->rank, pos, p->id});
}

/* One word (bytes w[0..n), n >= 1) through the merges. */
static int encode_word(Work *w, const unsigned char *s, size_t n) {
    const Tokenizer *t = w->t;
    const struct TokenizerBpe *b = w->b;
    if (b->opt.ignore_merges) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) m += unicode_put(b->byte_char[s[i]], w->mapped + m);
        const int id = tok_lookup(t, w->mapped, m);
        if (id >= 0) return tok_push(w->o, id, w->text_len);
    }
    Sym *sym = w->sym;
    size_t nh = 0, ns = 0;
    for (size_t i = 0; i < n; i++) { /* a byte without a piece: HF's unk, or nothing */
        int32_t id = t->byte_id[s[i]];
        const int32_t unk = b->opt.unk_id;
        if (id < 0 && (unk < 0 || (b->opt.fuse_unk && ns > 0 && sym[ns - 1].id == unk))) continue;
        sym[ns] = (Sym){id >= 0 ? id : unk, (int32_t)ns - 1, -1, 1};
        if (ns > 0) sym[ns - 1].next = (int32_t)ns;
        ns++;
    }
    if (ns == 0) return LSC_OK;
    for (size_t i = 0; i + 1 < ns; i++) push_pair(b, sym, w->heap, &nh, (int32_t)i);
    while (nh > 0) {
        const Cand c = heap_pop(w->heap, &nh);
        Sym *l = &sym[c.pos];
        if (!l->alive || l->next < 0) continue;
        const BpePair *p = pair_find(b, l->id, sym[l->next].id);
        if (!p || p->id != c.id) continue; /* stale */
        Sym *r = &sym[l->next];
        l->id = c.id;
        r->alive = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = c.pos;
        push_pair(b, sym, w->heap, &nh, l->prev);
        push_pair(b, sym, w->heap, &nh, c.pos);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next)
        if (tok_push(w->o, sym[i].id, w->text_len) != LSC_OK) return LSC_ERR;
    return LSC_OK;
}

static int is_class(uint32_t cls, uint32_t want) {
    return want ? (cls & want) != 0 : !(cls & (UNICODE_L | UNICODE_N | UNICODE_S));
}

/* End (character index) of GPT-2's regex match at character i of the piece:
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Every character is L, N, \s or other, so some alternative always matches. */
static size_t gpt2_next(const unsigned char *p, const size_t *off, const uint32_t *cls, size_t nc,
                        size_t i) {
    if (p[off[i]] == '\'' && i + 1 < nc) {
        const unsigned char c1 = p[off[i + 1]], c2 = i + 2 < nc ? p[off[i + 2]] : 0;
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
            return i + 3;
    }
    static const uint32_t classes[3] = {UNICODE_L, UNICODE_N, 0};
    for (int k = 0; k < 3; k++) {
        size_t s = i;
        if (p[off[i]] == ' ' && i + 1 < nc && is_class(cls[i + 1], classes[k])) s = i + 1;
        if (!is_class(cls[s], classes[k])) continue;
        while (s < nc && is_class(cls[s], classes[k])) s++;
        return s;
    }
    size_t j = i;
    while (j < nc && (cls[j] & UNICODE_S)) j++;
    if (j == nc) return nc;      /* \s+(?!\S) up to the end */
    return j - 1 > i ? j - 1 : j; /* leave the last space to the word after it; else \s+ */
}

/* A piece of the pre-tokenizer: prefix space, the regex, the words. */
static int encode_piece(Work *w, const unsigned char *s, size_t n) {
    const BpeOptions *opt = &w->b->opt;
    size_t m = 0;
    if (opt->add_prefix_space && s[0] != ' ') w->piece[m++] = ' ';
    memcpy(w->piece + m, s, n);
    m += n;
    if (!opt->use_regex) return encode_word(w, w->piece, m);
    size_t nc = 0;
    for (size_t i = 0; i < m; nc++) {
        uint32_t cp;
        w->off[nc] = i;
        i += unicode_next(w->piece + i, m - i, &cp);
        w->cls[nc] = cp == UNICODE_INVALID ? 0 : unicode_class(cp);
    }
    w->off[nc] = m;
    for (size_t i = 0; i < nc;) {
        const size_t j = gpt2_next(w->piece, w->off, w->cls, nc, i);
        if (encode_word(w, w->piece + w->off[i], w->off[j] - w->off[i]) != LSC_OK) return LSC_ERR;
        i = j;
    }
    return LSC_OK;
}

/* Text between added tokens: the Digits pre-tokenizer, then each piece. */
static int encode_gap(Work *w, const unsigned char *s, size_t n) {
    const int digits = w->b->opt.split_digits;
    size_t start = 0;
    int run_is_digit = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        const size_t cl = unicode_next(s + i, n - i, &cp);
        const int d = digits != BPE_DIGITS_NONE && cp != UNICODE_INVALID && (unicode_class(cp) & UNICODE_D);
        const int cut = i > start && (d != run_is_digit || (d && digits == BPE_DIGITS_INDIVIDUAL));
        if (cut) {
            if (encode_piece(w, s + start, i - start) != LSC_OK) return LSC_ERR;
            start = i;
        }
        run_is_digit = d;
        i += cl;
    }
    return n > start ? encode_piece(w, s + start, n - start) : LSC_OK;
}

/* Length of the whitespace character ending at s[pos) (not before lo), 0 if none. */
static size_t space_before(const unsigned char *s, size_t lo, size_t pos) {
    size_t k = pos;
    while (k > lo && pos - k < 4) {
        k--;
        if ((s[k] & 0xC0) != 0x80) break;
    }
    if (k == pos) return 0;
    uint32_t cp;
    const size_t cl = unicode_next(s + k, pos - k, &cp);
    return k + cl == pos && cp != UNICODE_INVALID && (unicode_class(cp) & UNICODE_S) ? cl : 0;
}

static size_t space_at(const unsigned char *s, size_t n) {
    uint32_t cp;
    const size_t cl = unicode_next(s, n, &cp);
    return cp != UNICODE_INVALID && (unicode_class(cp) & UNICODE_S) ? cl : 0;
}

/* Cuts the added tokens of `set` out of s[0..n) (leftmost-longest); the gaps go to the next set,
 * then to the pre-tokenizer. */
static int encode_added(Work *w, const unsigned char *s, size_t n, int set) {
    if (set == 2) return encode_gap(w, s, n);
    const struct TokenizerBpe *b = w->b;
    size_t from = 0;
    for (size_t i = 0; i < n;) {
        const size_t key = (size_t)set * 256 + s[i];
        const BpeAdded *m = NULL;
        for (size_t k = b->start[key]; k < b->start[key + 1] && !m; k++)
            if (b->added[k].len <= n - i && memcmp(s + i, w->t->pieces[b->added[k].id], b->added[k].len) == 0)
                m = &b->added[k];
        if (!m) {
            i++;
            continue;
        }
        size_t ms = i, me = i + m->len, cl;
        if (m->flags & BPE_ADDED_LSTRIP)
            while ((cl = space_before(s, from, ms)) > 0) ms -= cl;
        if (m->flags & BPE_ADDED_RSTRIP)
            while (me < n && (cl = space_at(s + me, n - me)) > 0) me += cl;
        if (ms > from && encode_added(w, s + from, ms - from, set + 1) != LSC_OK) return LSC_ERR;
        if (tok_push(w->o, m->id, w->text_len) != LSC_OK) return LSC_ERR;
        from = i = me;
    }
    return n > from ? encode_added(w, s + from, n - from, set + 1) : LSC_OK;
}

int bpe_encode(const Tokenizer *t, const char *text, size_t len, TokOut *o) {
    Work w = {t, t->bpe, o, len, malloc(len + 1), malloc((len + 2) * sizeof *w.off),
              malloc((len + 1) * sizeof *w.cls), malloc((len + 1) * sizeof *w.sym),
              malloc(3 * (len + 1) * sizeof *w.heap), malloc(2 * (len + 1))};
    int rc = LSC_OK;
    if (!w.piece || !w.off || !w.cls || !w.sym || !w.heap || !w.mapped)
        rc = error_set("Out of memory tokenizing %zu bytes of text.", len);
    else
        rc = encode_added(&w, (const unsigned char *)text, len, 0);
    free(w.piece), free(w.off), free(w.cls), free(w.sym), free(w.heap), free(w.mapped);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * decoder: HF's ByteLevel decoder (a piece made only of byte-alphabet characters gives those
 * bytes, any other piece its own UTF-8), then String::from_utf8_lossy. */

int bpe_decode(const Tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len) {
    const struct TokenizerBpe *b = t->bpe;
    size_t cap = 0;
    if (tokenizer_check_ids(t, ids, n, &cap) != LSC_OK) return LSC_ERR;
    unsigned char *raw = malloc(cap);
    char *s = malloc(3 * cap + 1);
    if (!raw || !s) {
        free(raw), free(s);
        return error_set("Out of memory decoding %zu tokens.", n);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->types[ids[i]] == TOKEN_CONTROL) continue; /* HF: skip_special_tokens */
        const unsigned char *p = (const unsigned char *)t->pieces[ids[i]];
        const size_t pl = (size_t)t->piece_len[ids[i]], k0 = k;
        for (size_t j = 0; j < pl;) {
            uint32_t cp;
            j += unicode_next(p + j, pl - j, &cp);
            if (cp >= BYTE_ALPHABET_END || b->char_byte[cp] < 0) { /* not byte-level: as is */
                memcpy(raw + k0, p, pl);
                k = k0 + pl;
                break;
            }
            raw[k++] = (unsigned char)b->char_byte[cp];
        }
    }
    size_t m = 0;
    for (size_t i = 0; i < k;) {
        uint32_t cp;
        const size_t cl = unicode_next(raw + i, k - i, &cp);
        if (cp == UNICODE_INVALID) {
            memcpy(s + m, "\xEF\xBF\xBD", 3); /* U+FFFD */
            m += 3;
        } else {
            memcpy(s + m, raw + i, cl);
            m += cl;
        }
        i += cl;
    }
    s[m] = '\0';
    free(raw);
    if (out_len) *out_len = m;
    *out = s;
    return LSC_OK;
}
