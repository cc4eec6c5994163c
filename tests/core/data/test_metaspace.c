/* SentencePiece-style tokenizer.json files whose spaces come from a Metaspace pre-tokenizer
 * (transformers' LlamaConverter with legacy=False) against Hugging Face `tokenizers` 0.19.1:
 * tests/golden/interop/tokenizer.json holds the ids tokenizers gives for 57 strings (leading,
 * repeated and trailing spaces, tabs, newlines, byte fallback) with the tokenizer of
 * tests/golden/interop/llama/ as written (Metaspace prepend_scheme "first", split false) and
 * three variants this test derives from it: split true, prepend_scheme "never", and the legacy
 * Prepend + Replace normalizer. Made by tests/reference/make_interop_golden.py. */
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

#include "core/base/error.h"
#include "core/data/tokenizer.h"

#define GOLD LORASC_GOLDEN_DIR "/interop"
#define SP "\xe2\x96\x81"

/* The golden ids of one variant for every string; returns the number of strings that differ
 * (each printed). */
static int check_variant(const Tokenizer *t, const json_t *strings, const json_t *ids,
                         const char *variant) {
    size_t i;
    const json_t *s;
    int bad = 0;
    json_array_foreach(strings, i, s) {
        const char *text = json_string_value(s);
        const size_t len = strlen(text);
        int32_t got[512];
        size_t n = 0;
        if (tokenizer_encode(t, text, len, 0, got, 512, &n) != LSC_OK) fail_msg("%s", error_last());
        const json_t *want = json_array_get(ids, i);
        int same = json_array_size(want) == n;
        for (size_t k = 0; same && k < n; k++)
            same = json_integer_value(json_array_get(want, k)) == got[k];
        if (!same) {
            char *w = json_dumps(want, JSON_COMPACT);
            fprintf(stderr, "  %s: \"%s\": got", variant, text);
            for (size_t k = 0; k < n; k++) fprintf(stderr, " %d", got[k]);
            fprintf(stderr, ", Hugging Face %s\n", w);
            free(w);
            bad++;
        }
    }
    return bad;
}

/* The llama/ tokenizer.json edited into a variant, written to a temporary file. */
static void write_variant(const char *variant, char *path) {
    json_t *root = json_load_file(GOLD "/llama/tokenizer.json", 0, NULL);
    assert_non_null(root);
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (strcmp(variant, "metaspace_split") == 0) json_object_set_new(pre, "split", json_true());
    if (strcmp(variant, "metaspace_never") == 0)
        json_object_set_new(pre, "prepend_scheme", json_string("never"));
    if (strcmp(variant, "legacy") == 0) {
        json_object_set_new(root, "pre_tokenizer", json_null());
        json_object_set_new(root, "normalizer",
                            json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}", "type",
                                      "Sequence", "normalizers", "type", "Prepend", "prepend", SP,
                                      "type", "Replace", "pattern", "String", " ", "content", SP));
    }
    strcpy(path, "/tmp/lorasc_metaspace_XXXXXX");
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(json_dump_file(root, path, JSON_COMPACT), 0);
    json_decref(root);
}

static void test_variants(void **state) {
    (void)state;
    json_t *g = json_load_file(GOLD "/tokenizer.json", 0, NULL);
    assert_non_null(g);
    const json_t *strings = json_object_get(g, "strings");
    static const char *const variants[] = {"metaspace_first", "metaspace_split", "metaspace_never",
                                           "legacy"};
    int total = 0;
    for (int v = 0; v < 4; v++) {
        char path[64];
        write_variant(variants[v], path);
        Tokenizer t;
        if (tokenizer_load(&t, path) != LSC_OK) fail_msg("%s", error_last());
        const int bad = check_variant(
            &t, strings, json_object_get(json_object_get(g, "ids"), variants[v]), variants[v]);
        printf("  %-16s %zu strings, %d differ from Hugging Face\n", variants[v],
               json_array_size(strings), bad);
        total += bad;
        tokenizer_free(&t);
        remove(path);
    }
    /* what the Metaspace fix changed: the legacy ids differ from "first" where a string starts
     * with a space, so an encoder that ignored the scheme would fail the check above */
    size_t i;
    const json_t *s;
    int leading = 0, differ = 0;
    json_array_foreach(strings, i, s) {
        if (json_string_value(s)[0] != ' ') continue;
        leading++;
        differ += !json_equal(
            json_array_get(json_object_get(json_object_get(g, "ids"), "legacy"), i),
            json_array_get(json_object_get(json_object_get(g, "ids"), "metaspace_first"), i));
    }
    printf("  %d of %d strings starting with a space tokenize differently under Prepend and "
           "Metaspace \"first\"\n",
           differ, leading);
    assert_true(differ > 0);
    json_decref(g);
    if (total) fail_msg("%d strings differ from Hugging Face", total);
}

/* A replacement other than U+2581 or an unknown prepend_scheme is refused, naming the file. */
static void test_refused(void **state) {
    (void)state;
    static const char *const bad[][3] = {{"replacement", "_", "replaces spaces with"},
                                         {"prepend_scheme", "sometimes", "prepend_scheme"}};
    for (int k = 0; k < 2; k++) {
        json_t *root = json_load_file(GOLD "/llama/tokenizer.json", 0, NULL);
        json_object_set_new(json_object_get(root, "pre_tokenizer"), bad[k][0],
                            json_string(bad[k][1]));
        char path[64] = "/tmp/lorasc_metaspace_XXXXXX";
        const int fd = mkstemp(path);
        close(fd);
        assert_int_equal(json_dump_file(root, path, JSON_COMPACT), 0);
        json_decref(root);
        Tokenizer t;
        assert_int_equal(tokenizer_load(&t, path), LSC_ERR);
        if (!strstr(error_last(), bad[k][2]) || !strstr(error_last(), path))
            fail_msg("\"%s\" lacks \"%s\" or the file name", error_last(), bad[k][2]);
        printf("  refused: %s\n", error_last());
        remove(path);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_variants),
                                       cmocka_unit_test(test_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
