/* A real checkpoint: Karpathy's stories260K (llama2.c legacy format), continued greedily
 * from BOS for 200 tokens, must reproduce llama2.c's own expected output token for token
 * (reference_greedy.json in the data directory). Skips when the data directory lacks it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/formats/llama2c.h"
#include "core/data/datadir.h"
#include "core/base/error.h"

#define MAX_TOKENS 512

/* Reads the "token_ids" array of reference_greedy.json (a flat list of integers). */
static int read_reference(const char *path, int32_t *ids, int max) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *p = strstr(text, "\"token_ids\"");
    if (!p || !(p = strchr(p, '['))) return -1;
    int count = 0;
    p++;
    while (count < max) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        ids[count++] = (int32_t)v;
        p = end;
        while (*p == ',' || *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
        if (*p == ']') break;
    }
    return count;
}

static void test_greedy_matches_llama2c(void **state) {
    (void)state;
    char bin[4096], ref[4096];
    datadir_path(bin, sizeof bin, "llama2c_stories260K/stories260K.bin");
    datadir_path(ref, sizeof ref, "llama2c_stories260K/reference_greedy.json");
    int32_t expected[MAX_TOKENS], got[MAX_TOKENS] = {0};
    const int n = read_reference(ref, expected, MAX_TOKENS);
    assert_true(n > 100);

    Backend *be = backend_cpu_create(0);
    Llama m;
    if (llama2c_load(bin, &m, be) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(m.config.dim, 64);
    assert_int_equal(m.config.n_kv_heads, 4);
    assert_int_equal(m.config.vocab_size, 512);
    got[0] = expected[0]; /* BOS */
    assert_int_equal(llama_generate_greedy(&m, got, 1, n), LSC_OK);
    int first_diff = -1;
    for (int i = 0; i < n && first_diff < 0; i++)
        if (got[i] != expected[i]) first_diff = i;
    if (first_diff >= 0)
        fail_msg("greedy continuation differs at position %d: got token %d, llama2.c gives %d",
                 first_diff, got[first_diff], expected[first_diff]);
    printf("stories260K: %d greedy tokens identical to llama2.c\n", n - 1);
    llama_free(&m);
    backend_cpu_destroy(be);
}

int main(void) {
    if (!datadir_has("llama2c_stories260K/stories260K.bin") ||
        !datadir_has("llama2c_stories260K/reference_greedy.json")) {
        printf("SKIP: %s/llama2c_stories260K is missing; run `lorasc data fetch --from "
               "../shared/data llama2c_stories260K` or set LORASC_DATA to a mirror that has it.\n",
               datadir_root());
        return 77; /* meson's exit code for a skipped test */
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_greedy_matches_llama2c)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
