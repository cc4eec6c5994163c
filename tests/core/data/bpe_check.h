/* Shared by test_bpe.c and test_bpe_smollm2.c: runs golden cases ({"text", "ids", "decoded"},
 * made by tests/reference/make_bpe_golden.py with Hugging Face tokenizers) through a tokenizer
 * and prints every disagreement with both id lists. */
#ifndef LORASC_TESTS_BPE_CHECK_H
#define LORASC_TESTS_BPE_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base/error.h"
#include "core/data/tokenizer.h"

static void bpe_print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, " %s [", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, "%s%d", i ? " " : "", (int)ids[i]);
    fprintf(stderr, "]");
}

/* Encodes every case with flags, compares ids and the decoded text; returns the failure count
 * and sets *n_cases. */
static size_t bpe_check_cases(const Tokenizer *t, const json_t *cases, int flags, const char *label,
                              size_t *n_cases) {
    size_t failures = 0, i;
    const json_t *c;
    *n_cases = json_array_size(cases);
    json_array_foreach(cases, i, c) {
        const json_t *jt = json_object_get(c, "text"), *jids = json_object_get(c, "ids");
        const json_t *jd = json_object_get(c, "decoded");
        const char *text = json_string_value(jt), *want_dec = json_string_value(jd);
        const size_t len = json_string_length(jt), n_want = json_array_size(jids);
        if (!text || !want_dec || !json_is_array(jids)) {
            fprintf(stderr, "  %s: case %zu is malformed in the golden file\n", label, i);
            failures++;
            continue;
        }
        int32_t *want = malloc((n_want + 1) * sizeof *want);
        int32_t *got = malloc(tokenizer_max_tokens(len) * sizeof *got);
        for (size_t k = 0; k < n_want; k++) want[k] = (int32_t)json_integer_value(json_array_get(jids, k));
        size_t n_got = 0;
        if (tokenizer_encode(t, text, len, flags, got, tokenizer_max_tokens(len), &n_got) != LSC_OK) {
            fprintf(stderr, "  %s: case %zu: %s\n", label, i, error_last());
            failures++;
        } else if (n_got != n_want || memcmp(got, want, n_got * sizeof *got) != 0) {
            size_t k = 0;
            while (k < n_got && k < n_want && got[k] == want[k]) k++;
            fprintf(stderr, "  %s: case %zu (%zu bytes) \"%s\": ids differ from position %zu:", label, i,
                    len, text, k);
            bpe_print_ids("got", got, n_got);
            bpe_print_ids("expected", want, n_want);
            fprintf(stderr, "\n");
            failures++;
        }
        char *dec = NULL;
        size_t dec_len = 0;
        if (tokenizer_decode(t, want, n_want, &dec, &dec_len) != LSC_OK) {
            fprintf(stderr, "  %s: case %zu decode: %s\n", label, i, error_last());
            failures++;
        } else if (dec_len != json_string_length(jd) || memcmp(dec, want_dec, dec_len) != 0) {
            fprintf(stderr, "  %s: case %zu decodes to \"%s\", expected \"%s\"\n", label, i, dec, want_dec);
            failures++;
        }
        free(dec);
        free(want);
        free(got);
    }
    return failures;
}

/* Reads a JSON file, failing the test when it cannot. */
static json_t *bpe_load_json(const char *path) {
    json_error_t err;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &err);
    if (!j) {
        fprintf(stderr, "cannot read %s: %s (line %d)\n", path, err.text, err.line);
        abort();
    }
    return j;
}

#endif
