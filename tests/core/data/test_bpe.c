/* Byte-level BPE without the data directory: two small tokenizers trained with Hugging Face
 * tokenizers (tests/golden/bpe_tiny.json, from tests/reference/make_bpe_golden.py) written out
 * as tokenizer.json files must give HF's ids and decodes for every golden string; the first
 * one also as a GGUF this test crafts (tokenizer.ggml.model "gpt2", pre "smollm"). Then the
 * UTF-8 decoder's error recovery (Rust's from_utf8_lossy), the class tables, the chat
 * renderer's refusals, and malformed files: one sentence naming the file each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "bpe_check.h"
#include "core/base/error.h"
#include "core/data/tokenizer.h"
#include "core/data/unicode.h"

static json_t *golden;
static char dir[] = "/tmp/lorasc_bpe_XXXXXX";

static void write_json(const char *path, const json_t *j) {
    assert_int_equal(json_dump_file(j, path, JSON_COMPACT | JSON_ENSURE_ASCII), 0);
}

static void expect_error(int rc, const char *needle, const char *name) {
    assert_int_equal(rc, LSC_ERR);
    if (!strstr(error_last(), needle) || (name && !strstr(error_last(), name)))
        fail_msg("error \"%s\" lacks \"%s\"", error_last(), needle);
    printf("  ok: %s\n", error_last());
}

static void test_tiny_json(void **state) {
    (void)state;
    const char *kinds[2] = {"a", "b"};
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    for (int k = 0; k < 2; k++) {
        const json_t *g = json_object_get(golden, kinds[k]);
        write_json(path, json_object_get(g, "tokenizer"));
        Tokenizer t;
        if (tokenizer_load(&t, path) != LSC_OK) fail_msg("%s", error_last());
        assert_int_equal(t.kind, TOKENIZER_BYTE_BPE);
        const int bos = json_is_true(json_object_get(g, "bos"));
        assert_int_equal(t.add_bos, bos);
        if (bos) assert_int_equal(t.bos_id, tokenizer_find(&t, "<s>"));
        size_t n;
        const size_t failures = bpe_check_cases(&t, json_object_get(g, "cases"), bos ? TOKENIZER_BOS : 0,
                                                kinds[k], &n);
        printf("tiny %s (tokenizer.json): %zu strings, %zu failures\n", kinds[k], n, failures);
        assert_true(n > 150);
        assert_int_equal(failures, 0);
        tokenizer_free(&t);
    }
    remove(path);
}

/* ------------------------------------------------------------------------------------------
 * a GGUF written here: header, then key/values (no tensors) */

typedef struct Buf {
    unsigned char *p;
    size_t n, cap;
} Buf;

static void put(Buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = 2 * (b->n + n);
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(Buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(Buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(Buf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void kv_str(Buf *b, const char *key, const char *v) {
    put_str(b, key);
    put_u32(b, 8);
    put_str(b, v);
}
static void kv_u32(Buf *b, const char *key, uint32_t v) {
    put_str(b, key);
    put_u32(b, 4);
    put_u32(b, v);
}
static void kv_strings(Buf *b, const char *key, const char **v, size_t n) {
    put_str(b, key);
    put_u32(b, 9);
    put_u32(b, 8);
    put_u64(b, n);
    for (size_t i = 0; i < n; i++) put_str(b, v[i]);
}

/* The tiny "a" tokenizer as a GGUF: its three ChatML specials as control tokens, the other
 * added tokens as normal pieces (GGUF has no lstrip / rstrip). with_merges 0 leaves them out. */
static Buf tiny_gguf(const char *model, const char *pre, int with_merges) {
    const json_t *tok = json_object_get(json_object_get(golden, "a"), "tokenizer");
    const json_t *vocab = json_object_get(json_object_get(tok, "model"), "vocab");
    const json_t *merges = json_object_get(json_object_get(tok, "model"), "merges");
    size_t V = json_object_size(vocab), i;
    const json_t *it;
    json_array_foreach(json_object_get(tok, "added_tokens"), i, it)
        if ((size_t)json_integer_value(json_object_get(it, "id")) >= V) V = (size_t)json_integer_value(json_object_get(it, "id")) + 1;
    const char **pieces = calloc(V, sizeof *pieces), **m = calloc(json_array_size(merges) + 1, sizeof *m);
    int32_t *types = calloc(V, sizeof *types);
    const char *key;
    json_object_foreach((json_t *)vocab, key, it) pieces[json_integer_value(it)] = key;
    json_array_foreach(json_object_get(tok, "added_tokens"), i, it)
        pieces[json_integer_value(json_object_get(it, "id"))] = json_string_value(json_object_get(it, "content"));
    for (size_t id = 0; id < V; id++) {
        assert_non_null(pieces[id]);
        types[id] = strncmp(pieces[id], "<|", 2) == 0 ? 3 : 1;
    }
    char **owned = calloc(json_array_size(merges) + 1, sizeof *owned);
    json_array_foreach(merges, i, it) {
        if (json_is_string(it)) {
            m[i] = json_string_value(it);
        } else { /* ["a", "b"] */
            const char *a = json_string_value(json_array_get(it, 0)), *b = json_string_value(json_array_get(it, 1));
            owned[i] = malloc(strlen(a) + strlen(b) + 2);
            sprintf(owned[i], "%s %s", a, b);
            m[i] = owned[i];
        }
    }
    Buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, with_merges ? 7 : 6);
    kv_str(&b, "tokenizer.ggml.model", model);
    kv_str(&b, "tokenizer.ggml.pre", pre);
    kv_strings(&b, "tokenizer.ggml.tokens", pieces, V);
    put_str(&b, "tokenizer.ggml.token_type");
    put_u32(&b, 9);
    put_u32(&b, 5);
    put_u64(&b, V);
    put(&b, types, V * 4);
    if (with_merges) kv_strings(&b, "tokenizer.ggml.merges", m, json_array_size(merges));
    kv_u32(&b, "tokenizer.ggml.bos_token_id", (uint32_t)json_integer_value(json_object_get(vocab, "<|im_start|>")));
    kv_u32(&b, "tokenizer.ggml.eos_token_id", (uint32_t)json_integer_value(json_object_get(vocab, "<|im_end|>")));
    for (size_t k = 0; k < json_array_size(merges); k++) free(owned[k]);
    free(owned), free(pieces), free(m), free(types);
    return b;
}

static void test_tiny_gguf(void **state) {
    (void)state;
    Buf b = tiny_gguf("gpt2", "smollm", 1);
    Tokenizer t;
    if (tokenizer_load_gguf_mem(&t, b.p, b.n, "tiny.gguf") != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(t.kind, TOKENIZER_BYTE_BPE);
    assert_int_equal(t.add_bos, 0);
    assert_int_equal(t.eos_id, tokenizer_find(&t, "<|im_end|>"));
    /* the cases without the added tokens GGUF cannot describe */
    json_t *cases = json_array();
    size_t i, n;
    const json_t *c;
    json_array_foreach(json_object_get(json_object_get(golden, "a"), "cases"), i, c) {
        const char *s = json_string_value(json_object_get(c, "text"));
        if (!strstr(s, "<L>") && !strstr(s, "<R>") && !strstr(s, "<both>") && !strstr(s, "dog"))
            json_array_append(cases, (json_t *)c);
    }
    const size_t failures = bpe_check_cases(&t, cases, 0, "tiny.gguf", &n);
    printf("tiny a (GGUF): %zu strings, %zu failures\n", n, failures);
    assert_true(n > 150);
    assert_int_equal(failures, 0);
    json_decref(cases);
    tokenizer_free(&t);
    free(b.p);
    b = tiny_gguf("gpt2", "llama3", 1);
    expect_error(tokenizer_load_gguf_mem(&t, b.p, b.n, "tiny.gguf"), "\"llama3\"", "tiny.gguf");
    free(b.p);
    b = tiny_gguf("gpt2", "smollm", 0);
    expect_error(tokenizer_load_gguf_mem(&t, b.p, b.n, "tiny.gguf"), "tokenizer.ggml.merges", "tiny.gguf");
    free(b.p);
    b = tiny_gguf("bert", "smollm", 1);
    expect_error(tokenizer_load_gguf_mem(&t, b.p, b.n, "tiny.gguf"), "\"bert\"", "tiny.gguf");
    for (size_t cut = 8; cut < b.n; cut += b.n / 7) /* truncated: a sentence, never a crash */
        assert_int_equal(tokenizer_load_gguf_mem(&t, b.p, cut, "cut.gguf"), LSC_ERR);
    free(b.p);
}

/* ------------------------------------------------------------------------------------------
 * UTF-8, classes, lossy decode */

static void test_unicode(void **state) {
    (void)state;
    /* maximal subparts, as Rust's from_utf8_lossy (and Python's errors="replace") cut them */
    const struct { const char *s; size_t n, len; uint32_t cp; } cases[] = {
        {"a", 1, 1, 'a'}, {"\xc3\xa9", 2, 2, 0xE9}, {"\xe2\x82\xac", 3, 3, 0x20AC},
        {"\xf0\x9f\x98\x80", 4, 4, 0x1F600}, {"\xc3", 1, 1, UNICODE_INVALID},
        {"\xe0\x80", 2, 1, UNICODE_INVALID}, {"\xe0\xa0", 2, 2, UNICODE_INVALID},
        {"\xed\xa0\x80", 3, 1, UNICODE_INVALID}, {"\xf0\x9f\x98", 3, 3, UNICODE_INVALID},
        {"\xf4\x90\x80\x80", 4, 1, UNICODE_INVALID}, {"\xc0\xaf", 2, 1, UNICODE_INVALID},
        {"\xff", 1, 1, UNICODE_INVALID}, {"\x80", 1, 1, UNICODE_INVALID}, {"\xe2\x28\xa1", 3, 1, UNICODE_INVALID},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t cp;
        const size_t len = unicode_next((const unsigned char *)cases[i].s, cases[i].n, &cp);
        if (len != cases[i].len || cp != cases[i].cp)
            fail_msg("case %zu: length %zu, code point 0x%X; expected %zu, 0x%X", i, len, cp,
                     cases[i].len, cases[i].cp);
    }
    const struct { uint32_t cp, cls; } cls[] = {
        {'a', UNICODE_L}, {'5', UNICODE_N | UNICODE_D}, {' ', UNICODE_S}, {'!', 0}, {'\n', UNICODE_S},
        {0x4E2D, UNICODE_L}, {0x3000, UNICODE_S}, {0xA0, UNICODE_S}, {0xBD, UNICODE_N | UNICODE_D},
        {0x11F50, UNICODE_D}, {0x1F600, 0}, {0x200B, 0}, {0x10FFFF, 0},
    };
    for (size_t i = 0; i < sizeof cls / sizeof cls[0]; i++)
        if (unicode_class(cls[i].cp) != cls[i].cls)
            fail_msg("U+%04X: class %u, expected %u", cls[i].cp, unicode_class(cls[i].cp), cls[i].cls);
    /* ill-formed text encodes byte by byte and decodes with U+FFFD per maximal subpart */
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    write_json(path, json_object_get(json_object_get(golden, "a"), "tokenizer"));
    Tokenizer t;
    assert_int_equal(tokenizer_load(&t, path), LSC_OK);
    const char text[] = "\xe0\x80x \xff\xc3";
    int32_t ids[32];
    size_t n;
    assert_int_equal(tokenizer_encode(&t, text, sizeof text - 1, 0, ids, 32, &n), LSC_OK);
    char *back;
    assert_int_equal(tokenizer_decode(&t, ids, n, &back, NULL), LSC_OK);
    assert_string_equal(back, "\xef\xbf\xbd\xef\xbf\xbdx \xef\xbf\xbd\xef\xbf\xbd");
    free(back);
    expect_error(tokenizer_decode(&t, (int32_t[]){5, t.vocab_size}, 2, &back, NULL), "outside the vocabulary",
                 "tokenizer.json");
    assert_int_equal(tokenizer_encode(&t, "hello world", 11, 0, ids, 2, &n), LSC_ERR);
    /* chat: a tokenizer.json without tokenizer_config.json has no template */
    ChatMessage m[2] = {{"user", "hi"}, {"assistant", NULL}};
    char *s;
    expect_error(tokenizer_chat_render(&t, m, 1, 1, &s), "no chat template", "tokenizer.json");
    t.chat_template = strdup("{{ messages }}");
    expect_error(tokenizer_chat_render(&t, m, 1, 1, &s), "not one lorasc knows", "tokenizer.json");
    free(t.chat_template);
    t.chat_template = strdup(json_string_value(json_object_get(golden, "smollm2_template")));
    expect_error(tokenizer_chat_render(&t, m, 2, 0, &s), "Chat message 2 has no content", NULL);
    assert_int_equal(tokenizer_chat_render(&t, m, 0, 1, &s), LSC_OK); /* nothing but the prompt */
    assert_string_equal(s, "<|im_start|>assistant\n");
    free(s);
    tokenizer_free(&t);
    remove(path);
}

/* ------------------------------------------------------------------------------------------
 * malformed tokenizer.json files: the tiny "a" with one thing broken */

static void test_malformed(void **state) {
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    const json_t *good = json_object_get(json_object_get(golden, "a"), "tokenizer");
    for (int k = 0; k < 9; k++) {
        json_t *j = json_deep_copy(good), *model = json_object_get(j, "model");
        json_t *merges = json_object_get(model, "merges"), *vocab = json_object_get(model, "vocab");
        json_t *added = json_object_get(j, "added_tokens");
        const char *want = NULL;
        switch (k) {
        case 0: json_object_set_new(j, "normalizer", json_pack("{s:s}", "type", "NFC")); want = "\"NFC\""; break;
        case 1: json_object_set_new(j, "pre_tokenizer", json_pack("{s:s}", "type", "Whitespace")); want = "byte-level"; break;
        case 2:
            json_object_set_new(j, "pre_tokenizer", json_pack("{s:s, s:[{s:s}, {s:s}]}", "type", "Sequence",
                                "pretokenizers", "type", "Split", "type", "ByteLevel"));
            want = "\"Split\"";
            break;
        case 3: json_array_set_new(merges, 0, json_string("\xc4\xa0 zzzz")); want = "merge 0"; break;
        case 4: json_object_del(vocab, "\xc4\xa0t"); json_object_set_new(vocab, "\xc4\xa0t", json_integer(1000)); want = "without gaps"; break;
        case 5: json_object_set_new(model, "dropout", json_real(0.1)); want = "dropout"; break;
        case 6: json_object_set_new(json_array_get(added, 0), "single_word", json_true()); want = "single_word"; break;
        case 7:
            json_object_set(vocab, "not a", json_object_get(vocab, "a"));
            json_object_del(vocab, "a");
            want = "byte 0x61";
            break;
        case 8: json_object_set_new(j, "decoder", json_pack("{s:s}", "type", "WordPiece")); want = "\"WordPiece\""; break;
        }
        write_json(path, j);
        Tokenizer t;
        expect_error(tokenizer_load(&t, path), want, path);
        json_decref(j);
    }
    remove(path);
}

int main(void) {
    golden = bpe_load_json(LORASC_GOLDEN_DIR "/bpe_tiny.json");
    if (!mkdtemp(dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_json), cmocka_unit_test(test_tiny_gguf),
        cmocka_unit_test(test_unicode), cmocka_unit_test(test_malformed),
    };
    const int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(dir);
    json_decref(golden);
    return rc;
}
