/* Tokenizer file readers other than tokenizer.json (tokenizer_json.c): llama2.c's
 * tokenizer.bin, the tokenizer.ggml.* metadata of a GGUF file (SentencePiece "llama" and
 * byte-level "gpt2" vocabularies, through core/base/gguf.h), and tokenizer_load, which picks
 * the reader from the file's first bytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/base/gguf.h"
#include "core/data/tokenizer_internal.h"

/* ------------------------------------------------------------------------------------------
 * llama2.c tokenizer.bin: i32 max_token_length, then per token f32 score, i32 len, bytes.
 * Spaces are plain ' ', BOS/EOS are spelled "\n<s>\n" / "\n</s>\n" (llama2.c's export). */

int tokenizer_load_llama2c_mem(Tokenizer *t, const void *data, size_t size, const char *name) {
    tok_reset(t);
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
        if (n >= TOK_MAX_VOCAB) return error_set("%s has more than %d tokens.", name, TOK_MAX_VOCAB);
        q += 8 + len;
    }
    if (n == 0) return error_set("%s holds no tokens.", name);
    if (tok_vocab_alloc(t, n, name) != LSC_OK) return LSC_ERR;
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
        } else if (tok_byte_piece_value(s, len) >= 0) {
            type = TOKEN_BYTE;
        }
        t->types[id] = type;
        if (tok_vocab_set(t, id, s, (size_t)len, type == TOKEN_NORMAL) != LSC_OK) goto fail;
    }
    if (tok_vocab_finish(t) != LSC_OK) goto fail;
    return LSC_OK;
fail:
    tokenizer_free(t);
    return LSC_ERR;
}

int tokenizer_load_llama2c(Tokenizer *t, const char *path) {
    char *data;
    size_t size = 0;
    tok_reset(t);
    if (tok_read_file(path, "llama2.c tokenizer", &data, &size) != LSC_OK) return LSC_ERR;
    const int rc = tokenizer_load_llama2c_mem(t, data, size, path);
    free(data);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * GGUF (v2/v3): tokenizer.ggml.model, .tokens, .scores, .token_type, .merges, the special
 * token ids, add_bos_token / add_space_prefix, .pre and tokenizer.chat_template. */

/* An optional integer key: *out unchanged when absent, LSC_ERR when of another type. */
static int gguf_opt_int(const Gguf *g, const char *key, int *out, int lo, int hi) {
    int64_t v;
    if (!gguf_find(g, key)) return LSC_OK;
    if (gguf_get_int(g, key, &v) != LSC_OK) return LSC_ERR;
    if (v >= lo && v <= hi) *out = (int)v;
    return LSC_OK;
}

static int gguf_opt_bool(const Gguf *g, const char *key, int *out) {
    return gguf_find(g, key) ? gguf_get_bool(g, key, out) : LSC_OK;
}

/* The GGUF pre-tokenizer names (llama.cpp's tokenizer.ggml.pre) lorasc reproduces. */
static int gguf_bpe_options(const Gguf *g, const char *name, BpeOptions *opt) {
    GgufString pre = {"", 0};
    if (gguf_find(g, "tokenizer.ggml.pre") && gguf_get_string(g, "tokenizer.ggml.pre", &pre) != LSC_OK)
        return LSC_ERR;
    opt->use_regex = 1;
    opt->unk_id = -1; /* HF's tokenizer for these files has no unk_token: unknown bytes vanish */
    if (gguf_string_eq(pre, "smollm") || gguf_string_eq(pre, "starcoder") || gguf_string_eq(pre, "refact"))
        opt->split_digits = BPE_DIGITS_INDIVIDUAL;
    else if (!gguf_string_eq(pre, "gpt-2"))
        return error_set("%s has byte-level BPE pre-tokenizer \"%.*s\" (tokenizer.ggml.pre); lorasc "
                         "reproduces \"smollm\", \"starcoder\", \"refact\" (digits one by one, then "
                         "GPT-2's regex) and \"gpt-2\".", name, (int)(pre.len < 64 ? pre.len : 64), pre.data);
    return gguf_opt_bool(g, "tokenizer.ggml.add_space_prefix", &opt->add_prefix_space);
}

static int gguf_bpe(Tokenizer *t, const Gguf *g, const char *name) {
    const GgufKV *merges;
    BpeOptions opt = {0};
    t->add_bos = 0; /* HF's byte-level tokenizers add none unless the file says so */
    if (gguf_bpe_options(g, name, &opt) != LSC_OK ||
        gguf_opt_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos) != LSC_OK)
        return LSC_ERR;
    if (gguf_get_array(g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges) != LSC_OK)
        return error_set("%s has a byte-level BPE vocabulary without its merges (a string array "
                         "tokenizer.ggml.merges).", name);
    if (merges->n > TOK_MAX_VOCAB)
        return error_set("%s has %llu merges, more than %d.", name, (unsigned long long)merges->n, TOK_MAX_VOCAB);
    if (bpe_init(t, &opt, (size_t)merges->n) != LSC_OK) return LSC_ERR;
    for (uint64_t i = 0; i < merges->n; i++) {
        const GgufString m = merges->strings[i];
        const char *sp = m.len ? memchr(m.data, ' ', m.len) : NULL;
        if (!sp || sp == m.data || sp + 1 == m.data + m.len || memchr(sp + 1, ' ', (size_t)(m.data + m.len - sp - 1)))
            return error_set("%s: tokenizer.ggml.merges[%llu] (\"%.*s\") is not two pieces separated "
                             "by one space.", name, (unsigned long long)i, (int)(m.len < 64 ? m.len : 64), m.data);
        if (bpe_add_merge(t, m.data, (size_t)(sp - m.data), sp + 1, (size_t)(m.data + m.len - sp - 1),
                          (int)i) != LSC_OK)
            return LSC_ERR;
    }
    /* control and user-defined tokens are matched in the text, as raw text (HF's converter adds
     * them normalized=false) */
    for (int id = 0; id < t->vocab_size; id++)
        if ((t->types[id] == TOKEN_CONTROL || t->types[id] == TOKEN_USER_DEFINED) &&
            bpe_add_token(t, id, 0) != LSC_OK)
            return LSC_ERR;
    if (bpe_finish(t) != LSC_OK) return LSC_ERR;
    if (t->add_bos && t->bos_id < 0)
        return error_set("%s sets tokenizer.ggml.add_bos_token but has no bos_token_id.", name);
    return LSC_OK;
}

static int from_gguf(Tokenizer *t, const Gguf *g, const char *name) {
    GgufString model;
    const GgufKV *tokens, *scores = NULL, *types = NULL;
    if (gguf_get_string(g, "tokenizer.ggml.model", &model) != LSC_OK ||
        gguf_get_array(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tokens) != LSC_OK || tokens->n == 0)
        return error_set("%s has no vocabulary (tokenizer.ggml.model and a non-empty string array "
                         "tokenizer.ggml.tokens).", name);
    const int bpe = gguf_string_eq(model, "gpt2");
    if (!bpe && !gguf_string_eq(model, "llama"))
        return error_set("%s holds a \"%.*s\" tokenizer; lorasc reads \"llama\" (SentencePiece) and "
                         "\"gpt2\" (byte-level BPE) vocabularies.", name, (int)(model.len < 64 ? model.len : 64),
                         model.data);
    if (gguf_find(g, "tokenizer.ggml.scores") &&
        gguf_get_array(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &scores) != LSC_OK)
        return LSC_ERR;
    if (gguf_find(g, "tokenizer.ggml.token_type") &&
        gguf_get_array(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types) != LSC_OK)
        return LSC_ERR;
    if (tokens->n > TOK_MAX_VOCAB || (scores && scores->n != tokens->n) || (types && types->n != tokens->n))
        return error_set("%s: tokenizer.ggml.tokens (%llu), .scores (%llu) and .token_type (%llu) must "
                         "have the same length, at most %d.", name, (unsigned long long)tokens->n,
                         (unsigned long long)(scores ? scores->n : 0), (unsigned long long)(types ? types->n : 0),
                         TOK_MAX_VOCAB);
    if (tok_vocab_alloc(t, (int)tokens->n, name) != LSC_OK) return LSC_ERR;
    for (int id = 0; id < t->vocab_size; id++) {
        if (tok_vocab_set(t, id, tokens->strings[id].data, (size_t)tokens->strings[id].len, 0) != LSC_OK)
            return LSC_ERR;
        const int64_t ty = types ? gguf_array_int(types, (uint64_t)id) : TOKEN_NORMAL;
        t->types[id] = (ty >= TOKEN_NORMAL && ty <= TOKEN_BYTE) ? (uint8_t)ty : TOKEN_NORMAL;
        if (!bpe && scores) t->scores[id] = (float)gguf_array_float(scores, (uint64_t)id);
        if (isnan(t->scores[id])) return error_set("%s: token %d has a NaN score.", name, id);
    }
    const int V = t->vocab_size - 1;
    if (gguf_opt_int(g, "tokenizer.ggml.bos_token_id", &t->bos_id, 0, V) != LSC_OK ||
        gguf_opt_int(g, "tokenizer.ggml.eos_token_id", &t->eos_id, 0, V) != LSC_OK ||
        gguf_opt_int(g, "tokenizer.ggml.unknown_token_id", &t->unk_id, 0, V) != LSC_OK ||
        gguf_opt_int(g, "tokenizer.ggml.padding_token_id", &t->pad_id, 0, V) != LSC_OK)
        return LSC_ERR;
    GgufString tpl;
    if (gguf_find(g, "tokenizer.chat_template")) {
        if (gguf_get_string(g, "tokenizer.chat_template", &tpl) != LSC_OK) return LSC_ERR;
        if (!(t->chat_template = strndup(tpl.data, (size_t)tpl.len)))
            return error_set("Out of memory reading the chat template of %s.", name);
    }
    if (bpe) return gguf_bpe(t, g, name);
    return gguf_opt_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_dummy_prefix) != LSC_OK
               ? LSC_ERR : tok_vocab_finish(t);
}

int tokenizer_load_gguf_mem(Tokenizer *t, const void *data, size_t size, const char *name) {
    tok_reset(t);
    Gguf g;
    if (gguf_open_mem(&g, data, size, name) != LSC_OK) return LSC_ERR;
    const int rc = from_gguf(t, &g, name);
    gguf_close(&g);
    if (rc != LSC_OK) tokenizer_free(t);
    return rc;
}

int tokenizer_load_gguf(Tokenizer *t, const char *path) {
    tok_reset(t);
    Gguf g;
    if (gguf_open(&g, path) != LSC_OK) return LSC_ERR;
    const int rc = from_gguf(t, &g, path);
    gguf_close(&g);
    if (rc != LSC_OK) tokenizer_free(t);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * by content */

int tokenizer_load(Tokenizer *t, const char *path) {
    tok_reset(t);
    FILE *f = fopen(path, "rb");
    unsigned char head[256];
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f) fclose(f);
    if (n >= 4 && memcmp(head, "GGUF", 4) == 0) return tokenizer_load_gguf(t, path);
    size_t i = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t')) i++;
    if (i < n && head[i] == '{') return tokenizer_load_hf_json(t, path);
    if (f && i == n && n < sizeof head)
        return error_set("%s is empty%s: a tokenizer is a tokenizer.json, a GGUF file or a llama2.c "
                         "tokenizer.bin.", path, n > 0 ? " (whitespace only)" : "");
    const size_t len = strlen(path);
    if (len >= 5 && strcmp(path + len - 5, ".json") == 0) /* the JSON reader names the problem */
        return tokenizer_load_hf_json(t, path);
    return tokenizer_load_llama2c(t, path); /* also the sentence for a file that cannot be opened */
}
