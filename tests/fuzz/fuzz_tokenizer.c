/* libFuzzer harness: the three tokenizer loaders (llama2.c .bin, tokenizer.json, GGUF) on
 * arbitrary bytes; a vocabulary that loads then encodes a slice of the input as text and
 * decodes the ids back (exercising merges and byte fallback on hostile vocabularies).
 * Replayed over the corpus by replay.c in the regular build. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/base/error.h"
#include "core/data/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise(Tokenizer *t, const uint8_t *data, size_t size) {
    const size_t len = size < 256 ? size : 256;
    int32_t *ids = malloc(tokenizer_max_tokens(len) * sizeof *ids);
    size_t n = 0;
    if (ids && tokenizer_encode(t, (const char *)data, len, TOKENIZER_BOS | TOKENIZER_EOS, ids,
                                tokenizer_max_tokens(len), &n) != LSC_OK)
        (void)tokenizer_encode(t, (const char *)data, len, 0, ids, tokenizer_max_tokens(len), &n);
    char *text = NULL;
    if (ids && tokenizer_decode(t, ids, n, &text, NULL) == LSC_OK) free(text);
    free(ids);
    tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Tokenizer t;
    if (tokenizer_load_llama2c_mem(&t, data, size, "fuzz.bin") == LSC_OK) exercise(&t, data, size);
    if (tokenizer_load_hf_json_mem(&t, data, size, "fuzz.json") == LSC_OK) exercise(&t, data, size);
    if (tokenizer_load_gguf_mem(&t, data, size, "fuzz.gguf") == LSC_OK) exercise(&t, data, size);
    return 0;
}
