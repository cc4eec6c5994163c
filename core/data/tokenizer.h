/* SentencePiece-BPE tokenization for Llama 1/2 vocabularies, read from llama2.c's
 * `tokenizer.bin`, Hugging Face's `tokenizer.json` (SentencePiece-converted "BPE" models with
 * byte fallback) or a GGUF file's tokenizer.ggml.* arrays (vocab-only GGUF v3 included).
 * Encoding is SentencePiece's BPE as llama2.c and llama.cpp implement it: whitespace becomes
 * "▁" (U+2581), a dummy "▁" is prepended to non-empty text, every UTF-8 character starts as
 * its own piece (bytes without a piece fall back to the <0xXX> byte tokens), then the
 * adjacent pair whose concatenation has the highest score is merged (leftmost on ties) until
 * no pair merges. Control tokens (<s>, </s>, <unk>) never come out of text: BOS/EOS are
 * added on request only. Not here: byte-level BPE (GPT-2, Llama 3), Unigram models, chat
 * templates, Unicode normalisation (Llama's SentencePiece model uses none). */
#ifndef LORASC_TOKENIZER_H
#define LORASC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

/* Token kinds, numbered as GGUF's tokenizer.ggml.token_type (llama.cpp's llama_token_type). */
enum {
    TOKEN_NORMAL = 1,
    TOKEN_UNKNOWN = 2,
    TOKEN_CONTROL = 3,
    TOKEN_USER_DEFINED = 4,
    TOKEN_UNUSED = 5,
    TOKEN_BYTE = 6,
};

typedef struct Tokenizer {
    int vocab_size;
    char **pieces;         /* [V] NUL-terminated, SentencePiece spelling ("▁" for spaces) */
    int *piece_len;        /* [V] bytes */
    float *scores;         /* [V] merge priority (higher first); -INFINITY: never a merge result */
    uint8_t *types;        /* [V] TOKEN_* */
    int byte_id[256];      /* id of <0xXX>, -1 where the vocabulary has none */
    int bos_id, eos_id, unk_id; /* -1 where absent */
    int add_dummy_prefix;  /* 1: prepend "▁" to non-empty text (Llama 1/2) */
    int *hash;             /* open addressing over mergeable/normal pieces: id or -1 */
    size_t hash_mask;
    char *source;          /* the file it came from (for messages) */
} Tokenizer;

enum { TOKENIZER_BOS = 1, TOKENIZER_EOS = 2 };

/* Loaders: each returns LSC_OK, or LSC_ERR with one sentence naming the file and what was
 * wrong; on error *t is left empty (safe to free). */
int tokenizer_load_llama2c(Tokenizer *t, const char *path);
int tokenizer_load_hf_json(Tokenizer *t, const char *path);
int tokenizer_load_gguf(Tokenizer *t, const char *path);
/* Picks the loader from the content: GGUF magic, a JSON object, else llama2.c. */
int tokenizer_load(Tokenizer *t, const char *path);
/* The same from memory (name is used in messages); used by the loaders and the fuzzers. */
int tokenizer_load_llama2c_mem(Tokenizer *t, const void *data, size_t size, const char *name);
int tokenizer_load_hf_json_mem(Tokenizer *t, const void *data, size_t size, const char *name);
int tokenizer_load_gguf_mem(Tokenizer *t, const void *data, size_t size, const char *name);
void tokenizer_free(Tokenizer *t);

/* Upper bound of the token count for len bytes of text (for sizing ids). */
size_t tokenizer_max_tokens(size_t len);
/* Encodes text[0..len) (UTF-8; invalid bytes fall back to byte tokens) with flags
 * TOKENIZER_BOS / TOKENIZER_EOS. Writes at most max_ids ids; LSC_ERR if they do not fit. */
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int flags, int32_t *ids,
                     size_t max_ids, size_t *n_ids);
/* Decodes ids to a malloc'd NUL-terminated string (*out, *out_len may be NULL): control
 * tokens give nothing, byte tokens their byte, "▁" a space, and the dummy-prefix space of the
 * first piece is dropped (as SentencePiece does). LSC_ERR on an id outside the vocabulary. */
int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len);
/* Id of a piece spelled exactly (SentencePiece spelling; byte pieces <0xHH> and the
 * BOS / EOS / UNK pieces included), or -1. O(1). */
int tokenizer_find(const Tokenizer *t, const char *piece);

#endif
