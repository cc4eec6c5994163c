/* Internals shared by the tokenizer's files (tokenizer.c: vocabulary, SentencePiece encoder,
 * dispatch; tokenizer_load.c: the file readers; tokenizer_bpe.c: byte-level BPE;
 * tokenizer_chat.c). Not an API: callers use core/data/tokenizer.h. */
#ifndef LORASC_TOKENIZER_INTERNAL_H
#define LORASC_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/data/tokenizer.h"

#define TOK_MAX_VOCAB (1 << 24)

/* vocabulary (tokenizer.c) */
void tok_reset(Tokenizer *t); /* an empty tokenizer, safe to free */
int tok_vocab_alloc(Tokenizer *t, int n, const char *name);
/* Stores piece id from bytes s[0..n), replacing ' ' by "▁" when spaces_are_marks. */
int tok_vocab_set(Tokenizer *t, int id, const char *s, size_t n, int spaces_are_marks);
/* SentencePiece: byte table and hash of the normal / user-defined pieces. */
int tok_vocab_finish(Tokenizer *t);
/* Hash of every piece (the first id wins for a repeated spelling); LSC_ERR on a missing piece. */
int tok_hash_all(Tokenizer *t);
int tok_lookup(const Tokenizer *t, const char *s, size_t n);
/* "<0xHH>" -> HH, else -1. */
int tok_byte_piece_value(const char *s, int n);
int tok_read_file(const char *path, const char *what, char **data, size_t *size);

/* Output of an encoder: ids[0..n) of at most max. */
typedef struct TokOut {
    int32_t *ids;
    size_t n, max;
} TokOut;
/* LSC_ERR (with the "needs more than ... token slots" sentence) when full. */
int tok_push(TokOut *o, int32_t id, size_t text_len);

/* byte-level BPE (tokenizer_bpe.c) */
enum { BPE_DIGITS_NONE, BPE_DIGITS_INDIVIDUAL, BPE_DIGITS_CONTIGUOUS };

typedef struct BpeOptions {
    int split_digits;     /* BPE_DIGITS_*: HF's Digits pre-tokenizer before ByteLevel */
    int use_regex;        /* ByteLevel's use_regex: split with GPT-2's pattern */
    int add_prefix_space; /* ByteLevel's add_prefix_space: " " before every piece lacking one */
    int ignore_merges;    /* BPE's ignore_merges: a word that is a piece is not merged */
    int unk_id;           /* BPE's unk_token for a byte without a piece; -1: the byte is dropped */
    int fuse_unk;         /* BPE's fuse_unk: consecutive unknown bytes give one unk_id */
} BpeOptions;

enum { BPE_ADDED_NORMALIZED = 1, BPE_ADDED_LSTRIP = 2, BPE_ADDED_RSTRIP = 4 };

/* After the pieces and types are set: the piece hash, the byte table (every byte needs its
 * one-character piece), an empty merge table for n_merges merges and the options. */
int bpe_init(Tokenizer *t, const BpeOptions *opt, size_t n_merges);
/* Merge of rank `rank` ("a b"): both pieces and their concatenation must be in the vocabulary.
 * A repeated pair keeps its last rank (as HF's merge map does). */
int bpe_add_merge(Tokenizer *t, const char *a, size_t na, const char *b, size_t nb, int rank);
/* A token matched in the text before pre-tokenization (HF's added tokens); flags BPE_ADDED_*. */
int bpe_add_token(Tokenizer *t, int id, int flags);
/* Sorts the added tokens for matching. */
int bpe_finish(Tokenizer *t);
void bpe_free(struct TokenizerBpe *b);
/* Encodes text into o (no BOS / EOS). */
int bpe_encode(const Tokenizer *t, const char *text, size_t len, TokOut *o);
int bpe_decode(const Tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len);

/* LSC_OK when every id is in the vocabulary (else a sentence naming the first bad one and
 * its position); *bytes = 1 + the pieces' total length (a decode's buffer before expansion). */
int tokenizer_check_ids(const Tokenizer *t, const int32_t *ids, size_t n, size_t *bytes);

#endif
