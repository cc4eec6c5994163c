/* SentencePiece-BPE tokenizer (see tokenizer.h): three vocabulary readers (llama2.c .bin,
 * Hugging Face tokenizer.json through jansson, GGUF), a piece hash, and the encoder / decoder.
 * The encoder merges over ranges of the normalised text (as SentencePiece and llama.cpp do),
 * with a binary heap of candidate pairs, so long texts cost O(n log n). */
#include "core/data/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base/error.h"

#define SPACE_MARK "\xe2\x96\x81" /* U+2581 "▁", SentencePiece's escaped space */
#define SPACE_MARK_LEN 3
#define MAX_VOCAB (1 << 24)

/* ------------------------------------------------------------------------------------------
 * building a vocabulary */

void tokenizer_free(Tokenizer *t) {
    if (t->pieces)
        for (int i = 0; i < t->vocab_size; i++) free(t->pieces[i]);
    free(t->pieces);
    free(t->piece_len);
    free(t->scores);
    free(t->types);
    free(t->hash);
    free(t->source);
    memset(t, 0, sizeof *t);
    t->bos_id = t->eos_id = t->unk_id = -1;
}

static int vocab_alloc(Tokenizer *t, int n, const char *name) {
    memset(t, 0, sizeof *t);
    t->bos_id = t->eos_id = t->unk_id = -1;
    t->add_dummy_prefix = 1;
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

/* Stores piece id from bytes s[0..n), replacing ' ' by "▁" when spaces_are_marks. */
static int vocab_set(Tokenizer *t, int id, const char *s, size_t n, int spaces_are_marks) {
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

/* "<0xHH>" -> HH, else -1. */
static int byte_piece_value(const char *s, int n) {
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

static int lookup(const Tokenizer *t, const char *s, size_t n) {
    if (!t->hash) return -1;
    for (size_t i = hash_bytes(s, n) & t->hash_mask;; i = (i + 1) & t->hash_mask) {
        const int id = t->hash[i];
        if (id < 0) return -1;
        if ((size_t)t->piece_len[id] == n && memcmp(t->pieces[id], s, n) == 0) return id;
    }
}

int tokenizer_find(const Tokenizer *t, const char *piece) {
    const size_t n = strlen(piece);
    const int id = lookup(t, piece, n);
    if (id >= 0) return id;
    const int b = byte_piece_value(piece, (int)n); /* byte and control pieces are not hashed */
    if (b >= 0) return t->byte_id[b];
    const int special[3] = {t->bos_id, t->eos_id, t->unk_id};
    for (int i = 0; i < 3; i++)
        if (special[i] >= 0 && strcmp(t->pieces[special[i]], piece) == 0) return special[i];
    return -1;
}

/* After pieces and types are set: byte table, piece hash (text pieces only: control, byte
 * and unused tokens never come out of text), missing-piece check. */
static int vocab_finish(Tokenizer *t) {
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    size_t cap = 16;
    while (cap < 2 * (size_t)t->vocab_size) cap *= 2;
    t->hash = malloc(cap * sizeof *t->hash);
    if (!t->hash) return error_set("Out of memory indexing the vocabulary of %s.", t->source);
    for (size_t i = 0; i < cap; i++) t->hash[i] = -1;
    t->hash_mask = cap - 1;
    for (int id = 0; id < t->vocab_size; id++) {
        if (!t->pieces[id])
            return error_set("%s has no piece for token id %d: token ids must run from 0 to %d "
                             "without gaps.", t->source, id, t->vocab_size - 1);
        if (t->types[id] == TOKEN_BYTE) {
            const int v = byte_piece_value(t->pieces[id], t->piece_len[id]);
            if (v < 0)
                return error_set("%s marks token %d (\"%s\") as a byte token, but byte tokens are "
                                 "spelled <0xHH>.", t->source, id, t->pieces[id]);
            if (t->byte_id[v] < 0) t->byte_id[v] = id;
            continue;
        }
        if (t->types[id] != TOKEN_NORMAL && t->types[id] != TOKEN_USER_DEFINED) continue;
        if (t->piece_len[id] == 0 || lookup(t, t->pieces[id], (size_t)t->piece_len[id]) >= 0)
            continue; /* empty or duplicate spelling: the first id wins */
        size_t i = hash_bytes(t->pieces[id], (size_t)t->piece_len[id]) & t->hash_mask;
        while (t->hash[i] >= 0) i = (i + 1) & t->hash_mask;
        t->hash[i] = id;
    }
    return LSC_OK;
}

static int read_file(const char *path, const char *what, char **data, size_t *size) {
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
 * llama2.c tokenizer.bin: i32 max_token_length, then per token f32 score, i32 len, bytes.
 * Spaces are plain ' ', BOS/EOS are spelled "\n<s>\n" / "\n</s>\n" (llama2.c's export). */

int tokenizer_load_llama2c_mem(Tokenizer *t, const void *data, size_t size, const char *name) {
    memset(t, 0, sizeof *t);
    t->bos_id = t->eos_id = t->unk_id = -1;
    const unsigned char *p = data, *end = p + size;
    int32_t max_len;
    if (size < 4)
        return error_set("%s is too short to be a llama2.c tokenizer (no max_token_length).", name);
    memcpy(&max_len, p, 4);
    if (max_len <= 0 || max_len > 1 << 16)
        return error_set("%s does not start with a plausible max_token_length (%d): not a llama2.c "
                         "tokenizer.bin?", name, (int)max_len);
    /* first pass: count and check every entry */
    int n = 0;
    for (const unsigned char *q = p + 4; q < end; n++) {
        int32_t len;
        float score;
        if (end - q < 8)
            return error_set("%s is truncated: token %d's score and length are cut off.", name, n);
        memcpy(&score, q, 4);
        memcpy(&len, q + 4, 4);
        if (len < 0 || len > max_len)
            return error_set("%s: token %d has length %d, outside 0..max_token_length (%d).", name,
                             n, (int)len, (int)max_len);
        if (isnan(score)) return error_set("%s: token %d has a NaN score.", name, n);
        if (end - q - 8 < len)
            return error_set("%s is truncated: token %d's %d bytes are cut off.", name, n, (int)len);
        if (n >= MAX_VOCAB) return error_set("%s has more than %d tokens.", name, MAX_VOCAB);
        q += 8 + len;
    }
    if (n == 0) return error_set("%s holds no tokens.", name);
    if (vocab_alloc(t, n, name) != LSC_OK) return LSC_ERR;
    const unsigned char *q = p + 4;
    for (int id = 0; id < n; id++) {
        int32_t len;
        memcpy(&t->scores[id], q, 4);
        memcpy(&len, q + 4, 4);
        const char *s = (const char *)q + 8;
        q += 8 + len;
        uint8_t type = TOKEN_NORMAL;
        if (len == 5 && memcmp(s, "<unk>", 5) == 0) {
            type = TOKEN_UNKNOWN;
            if (t->unk_id < 0) t->unk_id = id;
        } else if ((len == 5 && memcmp(s, "\n<s>\n", 5) == 0) || (len == 3 && memcmp(s, "<s>", 3) == 0)) {
            type = TOKEN_CONTROL;
            if (t->bos_id < 0) t->bos_id = id;
            s = "<s>", len = 3;
        } else if ((len == 6 && memcmp(s, "\n</s>\n", 6) == 0) ||
                   (len == 4 && memcmp(s, "</s>", 4) == 0)) {
            type = TOKEN_CONTROL;
            if (t->eos_id < 0) t->eos_id = id;
            s = "</s>", len = 4;
        } else if (byte_piece_value(s, len) >= 0) {
            type = TOKEN_BYTE;
        }
        t->types[id] = type;
        if (vocab_set(t, id, s, (size_t)len, type == TOKEN_NORMAL) != LSC_OK) goto fail;
    }
    if (vocab_finish(t) != LSC_OK) goto fail;
    return LSC_OK;
fail:
    tokenizer_free(t);
    return LSC_ERR;
}

int tokenizer_load_llama2c(Tokenizer *t, const char *path) {
    char *data;
    size_t size = 0;
    memset(t, 0, sizeof *t);
    if (read_file(path, "llama2.c tokenizer", &data, &size) != LSC_OK) return LSC_ERR;
    const int rc = tokenizer_load_llama2c_mem(t, data, size, path);
    free(data);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Hugging Face tokenizer.json ("model": {"type": "BPE", "vocab", "merges", "byte_fallback"},
 * "added_tokens"). Merge priority: the rank of the first merge that produces a piece (for
 * SentencePiece-converted vocabularies the merges are sorted by piece score, so this is the
 * piece's score order); pieces that no merge produces are never merge results. */

static const char *json_type_name(const json_t *j) {
    const json_t *type = json_is_object(j) ? json_object_get(j, "type") : NULL;
    return json_is_string(type) ? json_string_value(type) : "";
}

/* 1 if the normalizer or pre-tokenizer prepends "▁" (Llama 2: Prepend; newer: Metaspace). */
static int json_dummy_prefix(const json_t *root) {
    const json_t *norm = json_object_get(root, "normalizer");
    if (strcmp(json_type_name(norm), "Prepend") == 0) return 1;
    if (strcmp(json_type_name(norm), "Sequence") == 0) {
        const json_t *list = json_object_get(norm, "normalizers");
        size_t i;
        const json_t *it;
        json_array_foreach(list, i, it) if (strcmp(json_type_name(it), "Prepend") == 0) return 1;
    }
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    if (strcmp(json_type_name(pre), "Metaspace") == 0) {
        const json_t *scheme = json_object_get(pre, "prepend_scheme");
        const json_t *add = json_object_get(pre, "add_prefix_space");
        if (json_is_string(scheme)) return strcmp(json_string_value(scheme), "never") != 0;
        return json_is_boolean(add) ? json_is_true(add) : 1;
    }
    return 0;
}

int tokenizer_load_hf_json_mem(Tokenizer *t, const void *data, size_t size, const char *name) {
    memset(t, 0, sizeof *t);
    t->bos_id = t->eos_id = t->unk_id = -1;
    json_error_t jerr;
    json_t *root = json_loadb(data, size, 0, &jerr);
    if (!root)
        return error_set("%s is not valid JSON: %s at line %d, column %d.", name, jerr.text,
                         jerr.line, jerr.column);
    int rc = LSC_OK;
    const json_t *model = json_object_get(root, "model");
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    const json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(model) || !json_is_object(vocab) || !json_is_array(merges)) {
        rc = error_set("%s is not a BPE tokenizer.json: it needs \"model\" with a \"vocab\" object "
                       "and a \"merges\" array.", name);
        goto done;
    }
    if (strcmp(json_type_name(model), "BPE") != 0 && json_object_get(model, "type")) {
        rc = error_set("%s holds a \"%s\" model; lorasc reads SentencePiece-style BPE "
                       "tokenizer.json files (Llama 1/2) only.", name, json_type_name(model));
        goto done;
    }
    if (strcmp(json_type_name(json_object_get(root, "pre_tokenizer")), "ByteLevel") == 0 ||
        strcmp(json_type_name(json_object_get(root, "decoder")), "ByteLevel") == 0) {
        rc = error_set("%s is a byte-level BPE tokenizer (GPT-2 / Llama 3 style); lorasc reads "
                       "SentencePiece-style BPE (Llama 1/2) only.", name);
        goto done;
    }
    if (added && !json_is_array(added)) {
        rc = error_set("%s: \"added_tokens\" must be an array.", name);
        goto done;
    }
    /* vocabulary size: the largest id in vocab and added_tokens, plus one */
    long long max_id = -1;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= MAX_VOCAB) {
            rc = error_set("%s: vocab entry \"%s\" must map to an id in 0..%d.", name, key,
                           MAX_VOCAB - 1);
            goto done;
        }
        if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
    }
    size_t i;
    json_array_foreach(added, i, val) {
        const json_t *id = json_object_get(val, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= MAX_VOCAB ||
            !json_is_string(json_object_get(val, "content"))) {
            rc = error_set("%s: added_tokens[%zu] needs an integer \"id\" in 0..%d and a string "
                           "\"content\".", name, i, MAX_VOCAB - 1);
            goto done;
        }
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    if (max_id < 0) {
        rc = error_set("%s has an empty vocabulary.", name);
        goto done;
    }
    if ((rc = vocab_alloc(t, (int)max_id + 1, name)) != LSC_OK) goto done;
    const int byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    json_object_foreach((json_t *)vocab, key, val) {
        const int id = (int)json_integer_value(val);
        if (t->pieces[id]) {
            rc = error_set("%s: token id %d appears twice in the vocab (\"%s\" and \"%s\").", name,
                           id, t->pieces[id], key);
            goto done;
        }
        if ((rc = vocab_set(t, id, key, strlen(key), 0)) != LSC_OK) goto done;
        t->types[id] = (byte_fallback && byte_piece_value(key, t->piece_len[id]) >= 0) ? TOKEN_BYTE
                                                                                     : TOKEN_NORMAL;
    }
    const json_t *unk = json_object_get(model, "unk_token");
    json_array_foreach(added, i, val) {
        const int id = (int)json_integer_value(json_object_get(val, "id"));
        const char *content = json_string_value(json_object_get(val, "content"));
        if (t->pieces[id] && strcmp(t->pieces[id], content) != 0) {
            rc = error_set("%s: added token %d (\"%s\") disagrees with the vocab's \"%s\".", name,
                           id, content, t->pieces[id]);
            goto done;
        }
        if ((rc = vocab_set(t, id, content, strlen(content), 0)) != LSC_OK) goto done;
        const int special = json_is_true(json_object_get(val, "special"));
        t->types[id] = special ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
        if (json_is_string(unk) && strcmp(content, json_string_value(unk)) == 0) t->types[id] = TOKEN_UNKNOWN;
        if (strcmp(content, "<s>") == 0) t->bos_id = id;
        if (strcmp(content, "</s>") == 0) t->eos_id = id;
    }
    if (json_is_string(unk)) {
        const int id = json_integer_value(json_object_get(vocab, json_string_value(unk)));
        if (json_object_get(vocab, json_string_value(unk))) {
            t->unk_id = id;
            t->types[id] = TOKEN_UNKNOWN;
        }
    }
    t->add_dummy_prefix = json_dummy_prefix(root);
    if ((rc = vocab_finish(t)) != LSC_OK) goto done;
    for (int id = 0; id < t->vocab_size; id++) t->scores[id] = -INFINITY;
    char buf[1024];
    json_array_foreach(merges, i, val) {
        const char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        if (json_is_string(val)) { /* "a b" */
            a = json_string_value(val);
            const char *sp = strchr(a, ' ');
            if (sp) {
                na = (size_t)(sp - a);
                b = sp + 1;
                nb = strlen(b);
            }
        } else if (json_is_array(val) && json_array_size(val) == 2 &&
                   json_is_string(json_array_get(val, 0)) && json_is_string(json_array_get(val, 1))) {
            a = json_string_value(json_array_get(val, 0));
            b = json_string_value(json_array_get(val, 1));
            na = strlen(a);
            nb = strlen(b);
        }
        if (!b || na == 0 || nb == 0) {
            rc = error_set("%s: merges[%zu] is not a pair of pieces (\"a b\" or [\"a\", \"b\"]).",
                           name, i);
            goto done;
        }
        if (na + nb > sizeof buf) continue; /* longer than any piece we could hold */
        memcpy(buf, a, na);
        memcpy(buf + na, b, nb);
        const int id = lookup(t, buf, na + nb);
        if (id >= 0 && t->scores[id] == -INFINITY) t->scores[id] = -(float)i;
    }
done:
    json_decref(root);
    if (rc != LSC_OK) tokenizer_free(t);
    return rc;
}

int tokenizer_load_hf_json(Tokenizer *t, const char *path) {
    char *data;
    size_t size = 0;
    memset(t, 0, sizeof *t);
    if (read_file(path, "tokenizer.json", &data, &size) != LSC_OK) return LSC_ERR;
    const int rc = tokenizer_load_hf_json_mem(t, data, size, path);
    free(data);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * GGUF (v2/v3): only the key-value section is read; tensors are ignored. */

enum { GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STRING,
       GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64, GGUF_NTYPES };

typedef struct Cursor {
    const unsigned char *p, *end;
    int bad;
} Cursor;

static const unsigned char *take(Cursor *c, uint64_t n) {
    if (c->bad || (uint64_t)(c->end - c->p) < n) {
        c->bad = 1;
        return NULL;
    }
    const unsigned char *q = c->p;
    c->p += n;
    return q;
}

static uint64_t take_u64(Cursor *c) {
    uint64_t v = 0;
    const unsigned char *q = take(c, 8);
    if (q) memcpy(&v, q, 8);
    return v;
}

static uint32_t take_u32(Cursor *c) {
    uint32_t v = 0;
    const unsigned char *q = take(c, 4);
    if (q) memcpy(&v, q, 4);
    return v;
}

static size_t gguf_scalar_size(uint32_t type) {
    static const size_t sz[GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < GGUF_NTYPES ? sz[type] : 0;
}

/* Skips one value of `type`; arrays of arrays are allowed one level deep. */
static void gguf_skip(Cursor *c, uint32_t type, int depth) {
    if (type == GGUF_STRING) {
        take(c, take_u64(c));
    } else if (type == GGUF_ARRAY) {
        const uint32_t et = take_u32(c);
        const uint64_t n = take_u64(c);
        if (depth > 1 || et >= GGUF_NTYPES) {
            c->bad = 1;
            return;
        }
        if (et != GGUF_STRING && et != GGUF_ARRAY) {
            if (n > (uint64_t)(c->end - c->p) / gguf_scalar_size(et)) c->bad = 1;
            else take(c, n * gguf_scalar_size(et));
        } else {
            for (uint64_t i = 0; i < n && !c->bad; i++) gguf_skip(c, et, depth + 1);
        }
    } else if (type < GGUF_NTYPES) {
        take(c, gguf_scalar_size(type));
    } else {
        c->bad = 1;
    }
}

static int gguf_int(const unsigned char *v, uint32_t type, long long *out) {
    if (type == GGUF_U32 || type == GGUF_I32) {
        int32_t x;
        uint32_t u;
        memcpy(&u, v, 4);
        memcpy(&x, v, 4);
        *out = type == GGUF_U32 ? (long long)u : (long long)x;
        return 1;
    }
    if (type == GGUF_U64 || type == GGUF_I64) {
        int64_t x;
        memcpy(&x, v, 8);
        *out = x;
        return 1;
    }
    return 0;
}

int tokenizer_load_gguf_mem(Tokenizer *t, const void *data, size_t size, const char *name) {
    memset(t, 0, sizeof *t);
    t->bos_id = t->eos_id = t->unk_id = -1;
    Cursor c = {data, (const unsigned char *)data + size, 0};
    const unsigned char *magic = take(&c, 4);
    if (!magic || memcmp(magic, "GGUF", 4) != 0) return error_set("%s is not a GGUF file (bad magic).", name);
    const uint32_t version = take_u32(&c);
    if (version != 2 && version != 3)
        return error_set("%s is GGUF version %u; lorasc reads versions 2 and 3.", name, version);
    take_u64(&c); /* tensor count */
    const uint64_t n_kv = take_u64(&c);
    Cursor tokens = {0}, scores = {0}, types = {0};
    uint64_t n_tokens = 0, n_scores = 0, n_types = 0;
    long long bos = -1, eos = -1, unk = -1;
    int space_prefix = 1, have_model = 0;
    for (uint64_t k = 0; k < n_kv && !c.bad; k++) {
        const uint64_t klen = take_u64(&c);
        const unsigned char *kp = take(&c, klen);
        const uint32_t type = take_u32(&c);
        if (c.bad) break;
        char key[96] = {0};
        if (klen < sizeof key) memcpy(key, kp, klen);
        const unsigned char *value = c.p;
        if (type == GGUF_ARRAY && (!strcmp(key, "tokenizer.ggml.tokens") ||
                                   !strcmp(key, "tokenizer.ggml.scores") ||
                                   !strcmp(key, "tokenizer.ggml.token_type"))) {
            const uint32_t et = take_u32(&c);
            const uint64_t n = take_u64(&c);
            const Cursor at = c;
            c.p = value;
            gguf_skip(&c, type, 0);
            if (c.bad) break;
            const uint32_t want = !strcmp(key, "tokenizer.ggml.tokens")   ? GGUF_STRING
                                : !strcmp(key, "tokenizer.ggml.scores") ? GGUF_F32
                                                                        : GGUF_I32;
            if (et != want)
                return error_set("%s: %s has element type %u, expected %u.", name, key, et, want);
            Cursor *dst = want == GGUF_STRING ? &tokens : want == GGUF_F32 ? &scores : &types;
            *dst = at;
            dst->end = c.p;
            *(want == GGUF_STRING ? &n_tokens : want == GGUF_F32 ? &n_scores : &n_types) = n;
            continue;
        }
        gguf_skip(&c, type, 0);
        if (c.bad) break;
        long long v;
        if (!strcmp(key, "tokenizer.ggml.bos_token_id") && gguf_int(value, type, &v)) bos = v;
        if (!strcmp(key, "tokenizer.ggml.eos_token_id") && gguf_int(value, type, &v)) eos = v;
        if (!strcmp(key, "tokenizer.ggml.unknown_token_id") && gguf_int(value, type, &v)) unk = v;
        if (!strcmp(key, "tokenizer.ggml.add_space_prefix") && type == GGUF_BOOL) space_prefix = value[0] != 0;
        if (!strcmp(key, "tokenizer.ggml.model") && type == GGUF_STRING) {
            uint64_t n;
            memcpy(&n, value, 8);
            if (n != 5 || memcmp(value + 8, "llama", 5) != 0)
                return error_set("%s holds a \"%.*s\" tokenizer; lorasc reads SentencePiece "
                                 "(\"llama\") vocabularies only.", name, (int)(n < 64 ? n : 64), value + 8);
            have_model = 1;
        }
    }
    if (c.bad) return error_set("%s is truncated or corrupt: its key-value section runs past the end "
                                "of the file or has an unknown value type.", name);
    if (!have_model || !n_tokens)
        return error_set("%s has no SentencePiece vocabulary (tokenizer.ggml.model \"llama\" and "
                         "tokenizer.ggml.tokens).", name);
    if (n_tokens > MAX_VOCAB || (n_scores && n_scores != n_tokens) || (n_types && n_types != n_tokens))
        return error_set("%s: tokenizer.ggml.tokens (%llu), .scores (%llu) and .token_type (%llu) "
                         "must have the same length, at most %d.", name, (unsigned long long)n_tokens,
                         (unsigned long long)n_scores, (unsigned long long)n_types, MAX_VOCAB);
    if (vocab_alloc(t, (int)n_tokens, name) != LSC_OK) return LSC_ERR;
    for (int id = 0; id < t->vocab_size; id++) {
        const uint64_t len = take_u64(&tokens);
        const unsigned char *s = take(&tokens, len);
        if (!s || vocab_set(t, id, (const char *)s, (size_t)len, 0) != LSC_OK) goto fail;
        if (n_scores) memcpy(&t->scores[id], take(&scores, 4), 4);
        int32_t ty = TOKEN_NORMAL;
        if (n_types) memcpy(&ty, take(&types, 4), 4);
        t->types[id] = (ty >= TOKEN_NORMAL && ty <= TOKEN_BYTE) ? (uint8_t)ty : TOKEN_NORMAL;
        if (isnan(t->scores[id])) {
            error_set("%s: token %d has a NaN score.", name, id);
            goto fail;
        }
    }
    t->bos_id = bos >= 0 && bos < t->vocab_size ? (int)bos : -1;
    t->eos_id = eos >= 0 && eos < t->vocab_size ? (int)eos : -1;
    t->unk_id = unk >= 0 && unk < t->vocab_size ? (int)unk : -1;
    t->add_dummy_prefix = space_prefix;
    if (vocab_finish(t) != LSC_OK) goto fail;
    return LSC_OK;
fail:
    tokenizer_free(t);
    return LSC_ERR;
}

int tokenizer_load_gguf(Tokenizer *t, const char *path) {
    char *data;
    size_t size = 0;
    memset(t, 0, sizeof *t);
    if (read_file(path, "GGUF vocabulary", &data, &size) != LSC_OK) return LSC_ERR;
    const int rc = tokenizer_load_gguf_mem(t, data, size, path);
    free(data);
    return rc;
}

int tokenizer_load(Tokenizer *t, const char *path) {
    char *data;
    size_t size = 0;
    memset(t, 0, sizeof *t);
    if (read_file(path, "tokenizer", &data, &size) != LSC_OK) return LSC_ERR;
    size_t i = 0;
    while (i < size && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t')) i++;
    int rc;
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) rc = tokenizer_load_gguf_mem(t, data, size, path);
    else if (i < size && data[i] == '{') rc = tokenizer_load_hf_json_mem(t, data, size, path);
    else rc = tokenizer_load_llama2c_mem(t, data, size, path);
    free(data);
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
    const size_t len = sym[left].len + sym[right].len;
    const int id = lookup(t, text + sym[left].start, len);
    if (id < 0 || !(t->scores[id] > -INFINITY)) return;
    heap_push(h, (Bigram){t->scores[id], left, right, len});
}

size_t tokenizer_max_tokens(size_t len) { return len + 3; }

static size_t utf8_len(unsigned char c) {
    static const size_t lookup_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup_len[c >> 4];
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int flags, int32_t *ids,
                     size_t max_ids, size_t *n_ids) {
    *n_ids = 0;
    size_t n = 0;
    int rc = LSC_OK;
    char *norm = NULL;
    Symbol *sym = NULL;
    Heap heap = {0};
    if ((flags & TOKENIZER_BOS) && t->bos_id < 0)
        return error_set("The vocabulary of %s has no BOS token <s>.", t->source);
    if ((flags & TOKENIZER_EOS) && t->eos_id < 0)
        return error_set("The vocabulary of %s has no EOS token </s>.", t->source);
    if (flags & TOKENIZER_BOS) {
        if (n >= max_ids) goto full;
        ids[n++] = t->bos_id;
    }
    if (len > 0) {
        /* normalise: dummy prefix, spaces -> "▁" */
        size_t cap = (len + 1) * SPACE_MARK_LEN, m = 0;
        norm = malloc(cap);
        sym = malloc((len + 1) * sizeof *sym);
        heap.v = malloc(2 * (len + 1) * sizeof *heap.v);
        if (!norm || !sym || !heap.v) {
            rc = error_set("Out of memory tokenizing %zu bytes of text.", len);
            goto done;
        }
        if (t->add_dummy_prefix) {
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
        for (int i = 0; i >= 0 && n_sym > 0; i = sym[i].next) {
            const int id = lookup(t, norm + sym[i].start, sym[i].len);
            if (id >= 0) {
                if (n >= max_ids) goto full;
                ids[n++] = id;
                continue;
            }
            for (size_t j = 0; j < sym[i].len; j++) { /* byte fallback */
                const int bid = t->byte_id[(unsigned char)norm[sym[i].start + j]];
                if (bid < 0 && t->unk_id < 0) {
                    rc = error_set("Cannot encode byte 0x%02X with the vocabulary of %s: it has "
                                   "neither a <0x%02X> byte token nor <unk>.",
                                   (unsigned char)norm[sym[i].start + j], t->source,
                                   (unsigned char)norm[sym[i].start + j]);
                    goto done;
                }
                if (n >= max_ids) goto full;
                ids[n++] = bid >= 0 ? bid : t->unk_id;
            }
        }
    }
    if (flags & TOKENIZER_EOS) {
        if (n >= max_ids) goto full;
        ids[n++] = t->eos_id;
    }
    goto done;
full:
    rc = error_set("Tokenizing %zu bytes of text needs more than %zu token slots.", len, max_ids);
done:
    free(norm);
    free(sym);
    free(heap.v);
    *n_ids = rc == LSC_OK ? n : 0;
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * decoder */

int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len) {
    size_t cap = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab_size) {
            if (out) *out = NULL;
            return error_set("Token id %d at position %zu is outside the vocabulary of %s (0..%d).",
                             (int)ids[i], i, t->source, t->vocab_size - 1);
        }
        cap += (size_t)t->piece_len[ids[i]];
    }
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
            s[k++] = (char)byte_piece_value(p, pl);
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
