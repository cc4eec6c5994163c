/* Tokenizer: the Llama SentencePiece vocabulary read three ways (GGUF, llama2.c tokenizer.bin,
 * and a tokenizer.json built from it) must give llama.cpp's reference token ids for its test
 * strings (ggml-vocab-llama-spm.gguf.inp/.out); tok512.bin must decode stories260K's reference
 * greedy tokens to its reference text. Malformed files give errors naming the file.
 * Skips (77) when the data directory lacks the vocabularies. */
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

#include "core/data/datadir.h"
#include "core/base/error.h"
#include "core/data/tokenizer.h"

#define SEP "\n__ggml_vocab_test__\n"

static char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *d = malloc((size_t)n + 1);
    if (fread(d, 1, (size_t)n, f) != (size_t)n) n = 0;
    d[n] = '\0';
    fclose(f);
    if (size) *size = (size_t)n;
    return d;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* t holds Llama's 32000-piece vocabulary (<s> = 1, </s> = 2): runs every .inp/.out test vector
 * through it (no BOS, as llama.cpp's test-tokenizer-0). */
static void check_vectors(const Tokenizer *t, const char *label) {
    assert_int_equal(t->vocab_size, 32000);
    assert_int_equal(t->bos_id, 1);
    assert_int_equal(t->eos_id, 2);
    char inp[4096], outp[4096];
    datadir_path(inp, sizeof inp, "llama_spm_vocab/ggml-vocab-llama-spm.gguf.inp");
    datadir_path(outp, sizeof outp, "llama_spm_vocab/ggml-vocab-llama-spm.gguf.out");
    char *in = slurp(inp, NULL), *out = slurp(outp, NULL);
    assert_non_null(in);
    assert_non_null(out);
    char *text = in, *line = out;
    int cases = 0, failures = 0;
    for (char *sep; (sep = strstr(text, SEP)) != NULL; text = sep + strlen(SEP), cases++) {
        const size_t len = (size_t)(sep - text);
        char *eol = strchr(line, '\n');
        assert_non_null(eol);
        *eol = '\0';
        int32_t want[1024];
        size_t n_want = 0;
        for (char *p = line, *end; (want[n_want] = (int32_t)strtol(p, &end, 10)), end != p; p = end)
            n_want++;
        line = eol + 1;
        int32_t got[1024];
        size_t n_got = 0;
        if (tokenizer_encode(t, text, len, 0, got, 1024, &n_got) != LSC_OK) fail_msg("%s", error_last());
        int same = n_got == n_want;
        for (size_t i = 0; same && i < n_got; i++) same = got[i] == want[i];
        if (!same) {
            failures++;
            fprintf(stderr, "  %s: case %d \"%.*s\": got", label, cases, (int)len, text);
            for (size_t i = 0; i < n_got; i++) fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "; expected");
            for (size_t i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n");
        }
        /* decode gives the text back (Llama's vocabulary is lossless for these strings) */
        char *back = NULL;
        size_t back_len = 0;
        assert_int_equal(tokenizer_decode(t, got, n_got, &back, &back_len), LSC_OK);
        if (back_len != len || memcmp(back, text, len) != 0) {
            failures++;
            fprintf(stderr, "  %s: case %d does not decode back: \"%s\"\n", label, cases, back);
        }
        free(back);
    }
    printf("%s: %d test strings, %d failures\n", label, cases, failures);
    assert_int_equal(cases, 46);
    assert_int_equal(failures, 0);
    free(in);
    free(out);
}

static void test_gguf_vectors(void **state) {
    (void)state;
    char path[4096];
    datadir_path(path, sizeof path, "llama_spm_vocab/ggml-vocab-llama-spm.gguf");
    Tokenizer t;
    if (tokenizer_load_gguf(&t, path) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(t.unk_id, 0);
    assert_int_equal(t.byte_id[0x0A], 13);
    check_vectors(&t, "gguf");
    /* BOS / EOS on request only; control pieces never come out of text */
    int32_t ids[16];
    size_t n;
    assert_int_equal(tokenizer_encode(&t, "<s>", 3, TOKENIZER_BOS | TOKENIZER_EOS, ids, 16, &n), LSC_OK);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[n - 1], 2);
    for (size_t i = 1; i + 1 < n; i++) assert_true(ids[i] != 1 && ids[i] != 2);
    assert_int_equal(tokenizer_encode(&t, "Hello", 5, TOKENIZER_BOS, ids, 1, &n), LSC_ERR);
    tokenizer_free(&t);
}

static void test_llama2c_vectors(void **state) {
    (void)state;
    char path[4096];
    datadir_path(path, sizeof path, "llama2c_tokenizer/tokenizer.bin");
    Tokenizer t;
    if (tokenizer_load(&t, path) != LSC_OK) fail_msg("%s", error_last());
    check_vectors(&t, "tokenizer.bin");
    tokenizer_free(&t);
}

typedef struct { float score; int id, l, r; } M;

static int merge_cmp(const void *x, const void *y) {
    const M *a = x, *b = y;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->l != b->l) return a->l < b->l ? -1 : 1;
    return (a->r > b->r) - (a->r < b->r);
}

/* A tokenizer.json as Hugging Face's LlamaConverter writes it: vocab, merges ordered by the
 * merged piece's score, byte_fallback, <unk>/<s>/</s> as special added tokens, and the
 * Prepend("▁") + Replace(" ", "▁") normalizer. Built from the GGUF vocabulary. */
static void write_hf_json(const Tokenizer *src, const char *path, int metaspace) {
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    M *m = malloc(sizeof(M) * 200000);
    size_t nm = 0;
    for (int id = 0; id < src->vocab_size; id++) {
        json_object_set_new(vocab, src->pieces[id], json_integer(id));
        if (src->types[id] != TOKEN_NORMAL) continue;
        const char *p = src->pieces[id];
        for (int k = 1; k < src->piece_len[id]; k++) {
            char a[256];
            memcpy(a, p, (size_t)k);
            a[k] = '\0';
            const int l = tokenizer_find(src, a), r = tokenizer_find(src, p + k);
            if (l < 0 || r < 0 || src->types[l] != TOKEN_NORMAL || src->types[r] != TOKEN_NORMAL) continue;
            m[nm++] = (M){src->scores[id], id, l, r};
        }
    }
    qsort(m, nm, sizeof(M), merge_cmp);
    for (size_t i = 0; i < nm; i++) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s %s", src->pieces[m[i].l], src->pieces[m[i].r]);
        json_array_append_new(merges, json_string(buf));
    }
    const char *specials[3] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++)
        json_array_append_new(added, json_pack("{s:i, s:s, s:b}", "id", i, "content", specials[i], "special", 1));
    json_t *root = json_pack(
        "{s:s, s:o, s:{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}, s:n, s:{s:s, s:o, s:o, s:s, s:b}}",
        "version", "1.0", "added_tokens", added, "normalizer", "type", "Sequence", "normalizers",
        "type", "Prepend", "prepend", "\xe2\x96\x81", "type", "Replace", "pattern", "String", " ",
        "content", "\xe2\x96\x81", "pre_tokenizer", "model", "type", "BPE", "vocab", vocab, "merges",
        merges, "unk_token", "<unk>", "byte_fallback", 1);
    assert_non_null(root);
    if (metaspace) { /* LlamaConverter(legacy=False): no normalizer, Metaspace "first" */
        json_object_set_new(root, "normalizer", json_null());
        json_object_set_new(root, "pre_tokenizer",
                            json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement",
                                      "\xe2\x96\x81", "prepend_scheme", "first", "split", 0));
    }
    assert_int_equal(json_dump_file(root, path, JSON_COMPACT), 0);
    json_decref(root);
    free(m);
}

static void test_hf_json_vectors(void **state) {
    (void)state;
    char path[4096];
    datadir_path(path, sizeof path, "llama_spm_vocab/ggml-vocab-llama-spm.gguf");
    Tokenizer g, t;
    if (tokenizer_load_gguf(&g, path) != LSC_OK) fail_msg("%s", error_last());
    char json[] = "/tmp/lorasc_tok_XXXXXX";
    int fd = mkstemp(json);
    assert_true(fd >= 0);
    write_hf_json(&g, json, 0);
    if (tokenizer_load(&t, json) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(t.add_dummy_prefix, 1);
    check_vectors(&t, "tokenizer.json");
    tokenizer_free(&t);
    tokenizer_free(&g);
    remove(json);
}

/* The same vocabulary with a Metaspace "first" pre-tokenizer against Hugging Face tokenizers'
 * ids (tests/golden/interop/tokenizer.json, made by tests/reference/make_interop_golden.py) on
 * llama.cpp's test strings, each also with one and two leading spaces. */
static void test_hf_json_metaspace(void **state) {
    (void)state;
    char path[4096];
    datadir_path(path, sizeof path, "llama_spm_vocab/ggml-vocab-llama-spm.gguf");
    json_t *gold = json_load_file(LORASC_GOLDEN_DIR "/interop/tokenizer.json", 0, NULL);
    assert_non_null(gold);
    const json_t *strings = json_object_get(gold, "llama32k_strings");
    const json_t *ids = json_object_get(json_object_get(gold, "ids"), "llama32k_metaspace_first");
    assert_true(json_array_size(strings) > 0 && json_array_size(strings) == json_array_size(ids));
    Tokenizer g, t;
    if (tokenizer_load_gguf(&g, path) != LSC_OK) fail_msg("%s", error_last());
    char json[] = "/tmp/lorasc_tok_XXXXXX";
    int fd = mkstemp(json);
    assert_true(fd >= 0);
    close(fd);
    write_hf_json(&g, json, 1);
    if (tokenizer_load(&t, json) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(t.add_dummy_prefix, TOKENIZER_PREFIX_UNLESS_SPACE);
    size_t i;
    const json_t *s;
    int bad = 0, leading = 0, legacy_differs = 0;
    json_array_foreach(strings, i, s) {
        const char *text = json_string_value(s);
        const size_t len = strlen(text);
        const size_t cap = tokenizer_max_tokens(len);
        int32_t *got = malloc(cap * sizeof *got), *old = malloc(cap * sizeof *old);
        size_t n = 0, n_old = 0;
        if (tokenizer_encode(&t, text, len, 0, got, cap, &n) != LSC_OK)
            fail_msg("%s", error_last());
        /* what lorasc gave before it read prepend_scheme: the dummy prefix always */
        t.add_dummy_prefix = TOKENIZER_PREFIX_ALWAYS;
        assert_int_equal(tokenizer_encode(&t, text, len, 0, old, cap, &n_old), LSC_OK);
        t.add_dummy_prefix = TOKENIZER_PREFIX_UNLESS_SPACE;
        const json_t *want = json_array_get(ids, i);
        int same = json_array_size(want) == n, same_old = json_array_size(want) == n_old;
        for (size_t k = 0; same && k < n; k++)
            same = json_integer_value(json_array_get(want, k)) == got[k];
        for (size_t k = 0; same_old && k < n_old; k++)
            same_old = json_integer_value(json_array_get(want, k)) == old[k];
        if (!same) {
            if (bad++ < 5)
                fprintf(stderr, "  string %zu (\"%.40s\") differs from Hugging Face\n", i, text);
        }
        if (text[0] == ' ') {
            leading++;
            legacy_differs += !same_old;
        }
        free(got), free(old);
    }
    printf("Metaspace \"first\": %zu strings = Hugging Face except %d; the dummy prefix always "
           "(before) "
           "gave other ids for %d of the %d strings starting with a space\n",
           json_array_size(strings), bad, legacy_differs, leading);
    assert_int_equal(bad, 0);
    assert_true(legacy_differs > 0);
    tokenizer_free(&t);
    tokenizer_free(&g);
    json_decref(gold);
    remove(json);
}

/* Reads "token_ids" and "text" of reference_greedy.json with jansson. */
static void test_tok512_reference(void **state) {
    (void)state;
    char path[4096], ref[4096];
    datadir_path(path, sizeof path, "llama2c_stories260K/tok512.bin");
    datadir_path(ref, sizeof ref, "llama2c_stories260K/reference_greedy.json");
    Tokenizer t;
    if (tokenizer_load_llama2c(&t, path) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(t.vocab_size, 512);
    json_error_t err;
    json_t *root = json_load_file(ref, 0, &err);
    assert_non_null(root);
    const json_t *arr = json_object_get(root, "token_ids");
    const char *text = json_string_value(json_object_get(root, "text"));
    assert_non_null(text);
    const size_t n = json_array_size(arr);
    int32_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    char *dec = NULL;
    assert_int_equal(tokenizer_decode(&t, ids, n, &dec, NULL), LSC_OK);
    if (strcmp(dec, text) != 0) fail_msg("decoded \"%s\"\nexpected \"%s\"", dec, text);
    /* encode(text) with BOS decodes back to the text */
    int32_t *enc = malloc(tokenizer_max_tokens(strlen(text)) * sizeof *enc);
    size_t ne = 0;
    assert_int_equal(tokenizer_encode(&t, text, strlen(text), TOKENIZER_BOS, enc,
                                      tokenizer_max_tokens(strlen(text)), &ne), LSC_OK);
    assert_int_equal(enc[0], 1);
    char *dec2 = NULL;
    assert_int_equal(tokenizer_decode(&t, enc, ne, &dec2, NULL), LSC_OK);
    assert_string_equal(dec2, text);
    size_t same = 0;
    while (same < ne && same < n && enc[same] == ids[same]) same++;
    printf("tok512: %zu reference tokens decode to the reference text; re-encoding gives %zu tokens "
           "(%zu-token common prefix with the greedy ids)\n", n, ne, same);
    free(dec);
    free(dec2);
    free(enc);
    free(ids);
    json_decref(root);
    tokenizer_free(&t);
}

static void expect_error(int rc, const char *needle) {
    assert_int_equal(rc, LSC_ERR);
    if (!strstr(error_last(), needle)) fail_msg("error \"%s\" lacks \"%s\"", error_last(), needle);
    printf("  ok: %s\n", error_last());
}

static void test_malformed(void **state) {
    (void)state;
    char dir[] = "/tmp/lorasc_tokbad_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[4096];
    Tokenizer t;
    snprintf(p, sizeof p, "%s/tokenizer.bin", dir);
    /* llama2.c: truncated entry, length beyond max_token_length */
    unsigned char bin[64] = {0};
    const int32_t maxlen = 4, len = 3, big = 9;
    const float score = -1.0f;
    memcpy(bin, &maxlen, 4);
    memcpy(bin + 4, &score, 4);
    memcpy(bin + 8, &len, 4);
    memcpy(bin + 12, "abc", 3);
    memcpy(bin + 15, &score, 4);
    memcpy(bin + 19, &big, 4);
    write_file(p, bin, 14);
    expect_error(tokenizer_load_llama2c(&t, p), "truncated");
    write_file(p, bin, 30);
    expect_error(tokenizer_load_llama2c(&t, p), "outside 0..max_token_length");
    write_file(p, bin, 15);
    assert_int_equal(tokenizer_load_llama2c(&t, p), LSC_OK);
    int32_t ids[8];
    size_t n;
    expect_error(tokenizer_encode(&t, "x", 1, TOKENIZER_BOS, ids, 8, &n), "no BOS");
    expect_error(tokenizer_encode(&t, "x", 1, 0, ids, 8, &n), "neither");
    tokenizer_free(&t);
    /* JSON */
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    const char *cases[][2] = {
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [}", "not valid JSON"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": {}, \"merges\": []}}", "Unigram"},
        {"{\"model\": {\"vocab\": {\"a\": 0, \"b\": 2}, \"merges\": []}}", "without gaps"},
        {"{\"model\": {\"vocab\": {\"a\": -1}, \"merges\": []}}", "must map to an id"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}", "merges[0]"},
        {"{\"model\": {\"vocab\": {\"a\": 0}}}", "needs \"model\""},
        {"{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
         "byte-level"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(p, cases[i][0], strlen(cases[i][0]));
        expect_error(tokenizer_load_hf_json(&t, p), cases[i][1]);
        assert_non_null(strstr(error_last(), "tokenizer.json"));
    }
    /* GGUF: truncated copies of the real file */
    char g[4096];
    datadir_path(g, sizeof g, "llama_spm_vocab/ggml-vocab-llama-spm.gguf");
    size_t gs = 0;
    char *gd = slurp(g, &gs);
    assert_non_null(gd);
    const size_t cuts[] = {3, 10, 100, gs / 2, gs - 1};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(tokenizer_load_gguf_mem(&t, gd, cuts[i], "cut.gguf"), LSC_ERR);
    printf("  ok: %s\n", error_last());
    free(gd);
    expect_error(tokenizer_load(&t, "/nonexistent/tokenizer.model"), "/nonexistent/tokenizer.model");
    snprintf(p, sizeof p, "%s/tokenizer.bin", dir);
    remove(p);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    remove(p);
    rmdir(dir);
}

int main(void) {
    const char *need[] = {"llama_spm_vocab/ggml-vocab-llama-spm.gguf",
                          "llama_spm_vocab/ggml-vocab-llama-spm.gguf.inp",
                          "llama_spm_vocab/ggml-vocab-llama-spm.gguf.out",
                          "llama2c_tokenizer/tokenizer.bin", "llama2c_stories260K/tok512.bin",
                          "llama2c_stories260K/reference_greedy.json"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!datadir_has(need[i])) {
            printf("SKIP: %s/%s is missing; run `lorasc data fetch --from ../shared/data` or set "
                   "LORASC_DATA to a mirror that has llama_spm_vocab, llama2c_tokenizer and "
                   "llama2c_stories260K.\n", datadir_root(), need[i]);
            return 77;
        }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_vectors),     cmocka_unit_test(test_llama2c_vectors),
        cmocka_unit_test(test_hf_json_vectors),  cmocka_unit_test(test_hf_json_metaspace),
        cmocka_unit_test(test_tok512_reference), cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
