/* Tokenizers of two kinds behind one API (tokenizer_load / _encode / _decode / _find):
 *
 * SentencePiece BPE for Llama 1/2 vocabularies, read from llama2.c's `tokenizer.bin`, Hugging
 * Face's `tokenizer.json` (SentencePiece-converted "BPE" models with byte fallback) or a GGUF
 * file's tokenizer.ggml.* arrays (model "llama"). Encoding is SentencePiece's BPE as llama2.c
 * and llama.cpp implement it: whitespace becomes "▁" (U+2581), a dummy "▁" is prepended to
 * non-empty text, every UTF-8 character starts as its own piece (bytes without a piece fall
 * back to the <0xXX> byte tokens), then the adjacent pair whose concatenation has the highest
 * score is merged (leftmost on ties) until no pair merges. Control tokens (<s>, </s>, <unk>)
 * never come out of text: BOS/EOS are added on request only.
 *
 * Byte-level BPE (GPT-2 style; SmolLM2, StarCoder), read from a GGUF (model "gpt2") or a
 * tokenizer.json whose pre-tokenizer is ByteLevel: exactly what Hugging Face `tokenizers` does
 * (tokenizer_bpe.c): added/special tokens (<|im_start|>, ...) are matched in the text first
 * (leftmost-longest), the rest is split by the model's pre-tokenizer (digits one by one for
 * SmolLM2, then GPT-2's regex), every byte becomes a character of GPT-2's byte alphabet and
 * the pair with the lowest merge rank is merged (leftmost on ties) until none merges. Added
 * and special tokens do come out of text here, as in HF; BOS only where the model's tokenizer
 * adds one (add_bos).
 *
 * Not here: Unigram / WordPiece models, normalizers (NFC, lowercasing), regex pre-tokenizers
 * other than GPT-2's (Llama 3, Qwen2), Jinja: tokenizer_chat_render recognises the ChatML
 * templates (SmolLM2-Instruct's, plain ChatML) by their text. */
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

enum { TOKENIZER_SPM = 0, TOKENIZER_BYTE_BPE = 1 };

struct TokenizerBpe; /* the byte-level model: merge table, pre-tokenizer, added tokens */

typedef struct Tokenizer {
    int kind;              /* TOKENIZER_SPM or TOKENIZER_BYTE_BPE */
    int vocab_size;
    char **pieces;         /* [V] NUL-terminated, the vocabulary's own spelling: "▁" for spaces
                            * (SentencePiece), GPT-2's byte alphabet ("Ġ" for a space) for BPE */
    int *piece_len;        /* [V] bytes */
    float *scores;         /* [V] SentencePiece merge priority (higher first); -INFINITY: never
                            * a merge result. Unused (0) for byte-level BPE: merges are ranked */
    uint8_t *types;        /* [V] TOKEN_*; for BPE, CONTROL = HF's special added tokens */
    int byte_id[256];      /* id of <0xXX> (SentencePiece) or of the byte's one-character piece
                            * (BPE); -1 where the vocabulary has none */
    int bos_id, eos_id, unk_id, pad_id; /* -1 where absent */
    int add_bos;           /* 1: TOKENIZER_BOS prepends bos_id (Llama); 0: the model's tokenizer
                            * adds none (SmolLM2: tokenizer.ggml.add_bos_token = false) */
    int add_dummy_prefix;  /* TOKENIZER_PREFIX_*: whether "▁" goes before non-empty text */
    int split_words;       /* 1: HF's Metaspace split = true: the text is cut before every "▁"
                            * and each word is merged on its own (no merge across words) */
    int *hash;             /* open addressing: id or -1 (SentencePiece: normal and user-defined
                            * pieces; BPE: every piece) */
    size_t hash_mask;
    char *chat_template;   /* the model's chat template (GGUF tokenizer.chat_template, or
                            * tokenizer_config.json beside a tokenizer.json), NULL if none */
    struct TokenizerBpe *bpe; /* byte-level BPE only */
    char *source;          /* the file it came from (for messages) */
} Tokenizer;

enum { TOKENIZER_BOS = 1, TOKENIZER_EOS = 2 };

/* The dummy prefix of SentencePiece-style text. ALWAYS: SentencePiece, llama2.c, GGUF, and a
 * tokenizer.json's Prepend normalizer (" a" becomes "▁▁a"). UNLESS_SPACE: a tokenizer.json's
 * Metaspace pre-tokenizer with prepend_scheme "first" or "always" (HF prepends "▁" only when
 * the text, spaces replaced, does not already start with one: " a" becomes "▁a"; lorasc never
 * splits text at special tokens, so "first" and "always" act alike). */
enum { TOKENIZER_PREFIX_NONE = 0, TOKENIZER_PREFIX_ALWAYS = 1, TOKENIZER_PREFIX_UNLESS_SPACE = 2 };

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

/* Upper bound of the token count for len bytes of text, BOS and EOS included (for sizing ids). */
size_t tokenizer_max_tokens(size_t len);
/* Encodes text[0..len) (UTF-8; invalid bytes fall back to byte tokens, or are bytes like any
 * other for BPE) with flags TOKENIZER_BOS (the start of a sequence: bos_id when add_bos) and
 * TOKENIZER_EOS (append eos_id). Writes at most max_ids ids; LSC_ERR if they do not fit. */
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int flags, int32_t *ids,
                     size_t max_ids, size_t *n_ids);
/* Decodes ids to a malloc'd NUL-terminated string (*out_len may be NULL): control tokens give
 * nothing. SentencePiece: byte tokens give their byte, "▁" a space, and the dummy-prefix space
 * of the first piece is dropped (as SentencePiece does). BPE: as HF's decode with
 * skip_special_tokens=True: the pieces' bytes, ill-formed UTF-8 shown as U+FFFD. LSC_ERR on an
 * id outside the vocabulary. */
int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len);
/* Id of a piece spelled exactly (the vocabulary's spelling; SentencePiece's byte pieces <0xHH>
 * and BOS / EOS / UNK pieces included; every BPE piece), or -1. O(1). */
int tokenizer_find(const Tokenizer *t, const char *piece);

/* Chat: one message of a conversation (borrowed strings). */
typedef struct ChatMessage {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} ChatMessage;

/* Renders messages[0..n) with the tokenizer's chat template to a malloc'd string, exactly as
 * transformers' apply_chat_template(tokenize=False) does, plus the assistant header when
 * add_generation_prompt. The template is recognised, not interpreted: the known ChatML
 * template of SmolLM2-Instruct; any other (or none) is LSC_ERR with one sentence. Encode the
 * result with tokenizer_encode(flags 0): its <|im_start|> / <|im_end|> are special tokens. */
int tokenizer_chat_render(const Tokenizer *t, const ChatMessage *messages, size_t n,
                          int add_generation_prompt, char **out);

#endif
