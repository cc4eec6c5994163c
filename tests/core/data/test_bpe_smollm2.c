/* Byte-level BPE on SmolLM2-135M-Instruct's own tokenizer: read from the GGUF metadata, and
 * from a tokenizer.json + tokenizer_config.json this test writes from the same GGUF, it must
 * give Hugging Face's token ids and decodes for every string of tests/golden/bpe_smollm2.json
 * (tests/reference/make_bpe_golden.py) and render its chat template as transformers'
 * apply_chat_template does. Skips (77) when the data directory lacks the GGUF. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "bpe_check.h"
#include "core/base/error.h"
#include "core/base/gguf.h"
#include "core/data/datadir.h"
#include "core/data/tokenizer.h"

#define GGUF_REL "smollm2_135m/SmolLM2-135M-Instruct.Q4_1.gguf"

static json_t *golden;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Chat cases: render, compare text, encode, compare ids. */
static size_t check_chats(Tokenizer *t) {
    size_t failures = 0, i;
    const json_t *c;
    char *own = t->chat_template;
    json_array_foreach(json_object_get(golden, "chats"), i, c) {
        const int chatml = strcmp(json_string_value(json_object_get(c, "template")), "chatml") == 0;
        t->chat_template = chatml ? (char *)json_string_value(json_object_get(golden, "chatml_template")) : own;
        const json_t *msgs = json_object_get(c, "messages");
        ChatMessage m[8];
        const size_t n = json_array_size(msgs);
        assert_true(n <= 8);
        for (size_t k = 0; k < n; k++)
            m[k] = (ChatMessage){json_string_value(json_object_get(json_array_get(msgs, k), "role")),
                                 json_string_value(json_object_get(json_array_get(msgs, k), "content"))};
        char *text = NULL;
        if (tokenizer_chat_render(t, m, n, json_is_true(json_object_get(c, "add_generation_prompt")), &text) != LSC_OK) {
            fprintf(stderr, "  chat %zu: %s\n", i, error_last());
            failures++;
            continue;
        }
        const char *want = json_string_value(json_object_get(c, "text"));
        if (strcmp(text, want) != 0) {
            fprintf(stderr, "  chat %zu renders\n[%s]\nexpected\n[%s]\n", i, text, want);
            failures++;
        }
        int32_t ids[512]; /* the rendered text through the encoder */
        size_t n_ids;
        assert_int_equal(tokenizer_encode(t, want, strlen(want), 0, ids, 512, &n_ids), LSC_OK);
        const json_t *wids = json_object_get(c, "ids");
        int same = n_ids == json_array_size(wids);
        for (size_t k = 0; same && k < n_ids; k++) same = ids[k] == json_integer_value(json_array_get(wids, k));
        if (!same) {
            fprintf(stderr, "  chat %zu: ids differ:", i);
            bpe_print_ids("got", ids, n_ids);
            fprintf(stderr, "\n");
            failures++;
        }
        free(text);
    }
    t->chat_template = own;
    return failures;
}

static size_t check_decodes(const Tokenizer *t) {
    size_t failures = 0, i;
    const json_t *d;
    json_array_foreach(json_object_get(golden, "decodes"), i, d) {
        const json_t *jids = json_object_get(d, "ids");
        int32_t ids[4096];
        const size_t n = json_array_size(jids);
        assert_true(n <= 4096);
        for (size_t k = 0; k < n; k++) ids[k] = (int32_t)json_integer_value(json_array_get(jids, k));
        char *s = NULL;
        assert_int_equal(tokenizer_decode(t, ids, n, &s, NULL), LSC_OK);
        if (strcmp(s, json_string_value(json_object_get(d, "decoded"))) != 0) {
            fprintf(stderr, "  decode %zu gives \"%s\", expected \"%s\"\n", i, s,
                    json_string_value(json_object_get(d, "decoded")));
            failures++;
        }
        free(s);
    }
    return failures;
}

/* Everything the golden file holds, through one loaded tokenizer. */
static void check_all(Tokenizer *t, const char *label) {
    assert_int_equal(t->kind, TOKENIZER_BYTE_BPE);
    assert_int_equal(t->vocab_size, json_integer_value(json_object_get(golden, "vocab_size")));
    assert_int_equal(t->bos_id, json_integer_value(json_object_get(golden, "bos_id")));
    assert_int_equal(t->eos_id, json_integer_value(json_object_get(golden, "eos_id")));
    assert_int_equal(t->pad_id, json_integer_value(json_object_get(golden, "pad_id")));
    assert_int_equal(t->add_bos, 0);
    assert_non_null(t->chat_template);
    assert_string_equal(t->chat_template, json_string_value(json_object_get(golden, "chat_template")));
    size_t n_cases;
    const double t0 = now();
    const size_t f_cases = bpe_check_cases(t, json_object_get(golden, "cases"), 0, label, &n_cases);
    const double dt = now() - t0;
    const size_t f_dec = check_decodes(t), f_chat = check_chats(t);
    printf("%s: %zu strings (%zu failures), %zu slice decodes (%zu failures), %zu chats (%zu "
           "failures); encode+decode of all strings %.1f ms\n", label, n_cases, f_cases,
           json_array_size(json_object_get(golden, "decodes")), f_dec,
           json_array_size(json_object_get(golden, "chats")), f_chat, dt * 1e3);
    assert_true(n_cases >= 300);
    assert_int_equal(f_cases + f_dec + f_chat, 0);
    /* flags: no BOS for this model (add_bos_token false), EOS = <|im_end|> on request */
    int32_t ids[8];
    size_t n;
    assert_int_equal(tokenizer_encode(t, "Hi", 2, TOKENIZER_BOS | TOKENIZER_EOS, ids, 8, &n), LSC_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[1], 2);
    assert_int_equal(tokenizer_find(t, "<|im_end|>"), 2);
    assert_int_equal(tokenizer_find(t, "\xc4\xa0the"), 260); /* "Ġthe" */
    assert_int_equal(tokenizer_find(t, "no such piece"), -1);
}

static void test_gguf(void **state) {
    (void)state;
    char path[4096];
    datadir_path(path, sizeof path, GGUF_REL);
    Tokenizer t;
    const double t0 = now();
    if (tokenizer_load(&t, path) != LSC_OK) fail_msg("%s", error_last());
    printf("loaded %s in %.0f ms\n", path, (now() - t0) * 1e3);
    check_all(&t, "gguf");
    tokenizer_free(&t);
}

static void json_str_file(const char *path, json_t *j) {
    assert_int_equal(json_dump_file(j, path, JSON_COMPACT | JSON_ENSURE_ASCII), 0);
    json_decref(j);
}

/* tokenizer.json as SmolLM2 publishes it (pre-tokenizer, decoder, special added tokens, merges
 * as "a b" strings), plus a tokenizer_config.json with the chat template and special tokens. */
static void test_hf_json(void **state) {
    (void)state;
    char path[4096], dir[] = "/tmp/lorasc_bpe_XXXXXX", tj[4200], tc[4200];
    datadir_path(path, sizeof path, GGUF_REL);
    Gguf g;
    if (gguf_open(&g, path) != LSC_OK) fail_msg("%s", error_last());
    const GgufKV *tokens, *types, *merges;
    assert_int_equal(gguf_get_array(&g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tokens), LSC_OK);
    assert_int_equal(gguf_get_array(&g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types), LSC_OK);
    assert_int_equal(gguf_get_array(&g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges), LSC_OK);
    json_t *vocab = json_object(), *jm = json_array(), *added = json_array();
    for (uint64_t i = 0; i < tokens->n; i++) {
        char *s = strndup(tokens->strings[i].data, (size_t)tokens->strings[i].len);
        json_object_set_new(vocab, s, json_integer((json_int_t)i));
        if (gguf_array_int(types, i) == 3)
            json_array_append_new(added, json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)i,
                                                   "content", s, "single_word", 0, "lstrip", 0, "rstrip", 0,
                                                   "normalized", 0, "special", 1));
        free(s);
    }
    for (uint64_t i = 0; i < merges->n; i++)
        json_array_append_new(jm, json_stringn(merges->strings[i].data, (size_t)merges->strings[i].len));
    json_t *root = json_pack(
        "{s:s, s:o, s:n, s:{s:s, s:[{s:s, s:b}, {s:s, s:b, s:b, s:b}]}, s:{s:s, s:b, s:b, s:b},"
        " s:{s:s, s:n, s:n, s:s, s:s, s:b, s:b, s:o, s:o}}",
        "version", "1.0", "added_tokens", added, "normalizer", "pre_tokenizer", "type", "Sequence",
        "pretokenizers", "type", "Digits", "individual_digits", 1, "type", "ByteLevel", "add_prefix_space", 0,
        "trim_offsets", 1, "use_regex", 1, "decoder", "type", "ByteLevel", "add_prefix_space", 1,
        "trim_offsets", 1, "use_regex", 1, "model", "type", "BPE", "dropout", "unk_token",
        "continuing_subword_prefix", "", "end_of_word_suffix", "", "fuse_unk", 0, "byte_fallback", 0,
        "vocab", vocab, "merges", jm);
    assert_non_null(root);
    GgufString tpl;
    assert_int_equal(gguf_get_string(&g, "tokenizer.chat_template", &tpl), LSC_OK);
    char *tpl_s = strndup(tpl.data, (size_t)tpl.len);
    json_t *cfg = json_pack("{s:s, s:s, s:s, s:s, s:b}", "chat_template", tpl_s, "bos_token", "<|im_start|>",
                            "eos_token", "<|im_end|>", "pad_token", "<|im_end|>", "add_bos_token", 0);
    free(tpl_s);
    gguf_close(&g);
    assert_non_null(mkdtemp(dir));
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    snprintf(tc, sizeof tc, "%s/tokenizer_config.json", dir);
    json_str_file(tj, root);
    json_str_file(tc, cfg);
    Tokenizer t;
    if (tokenizer_load(&t, tj) != LSC_OK) fail_msg("%s", error_last());
    check_all(&t, "tokenizer.json");
    tokenizer_free(&t);
    remove(tj);
    remove(tc);
    rmdir(dir);
}

int main(void) {
    if (!datadir_has(GGUF_REL)) {
        printf("SKIP: %s/%s is missing; run `lorasc data fetch smollm2-135m --from DIR` (DIR: a "
               "mirror such as ../shared/data) or set LORASC_DATA to a directory that has it.\n",
               datadir_root(), GGUF_REL);
        return 77;
    }
    golden = bpe_load_json(LORASC_GOLDEN_DIR "/bpe_smollm2.json");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_gguf), cmocka_unit_test(test_hf_json)};
    const int rc = cmocka_run_group_tests(tests, NULL, NULL);
    json_decref(golden);
    return rc;
}
