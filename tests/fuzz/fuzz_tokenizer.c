/* libFuzzer harness: the three tokenizer loaders (llama2.c .bin, tokenizer.json, GGUF; both
 * SentencePiece and byte-level BPE) on arbitrary bytes; a vocabulary that loads then encodes a
 * slice of the input as text, decodes the ids back (exercising merges, byte fallback, added
 * tokens and the pre-tokenizer on hostile vocabularies) and renders a chat when it has a
 * template.
 * Replayed over the corpus by replay.c in the regular build. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    char *content = malloc(len + 1);
    if (content) {
        memcpy(content, data, len);
        content[len] = '\0';
        const ChatMessage m = {"user", content};
        if (tokenizer_chat_render(t, &m, 1, 1, &text) == LSC_OK) free(text);
        free(content);
    }
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
