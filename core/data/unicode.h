/* UTF-8 decoding as Rust's String::from_utf8_lossy does it (an ill-formed sequence is its
 * maximal subpart, shown as U+FFFD) and the character classes of Hugging Face's byte-level
 * pre-tokenizer (the tables in unicode_tables.c are generated from the library). Not a general
 * Unicode library: no normalisation, no case mapping, no other properties. */
#ifndef LORASC_UNICODE_H
#define LORASC_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum {
    UNICODE_L = 1, /* \p{L} of HF's regex engine (Oniguruma, Unicode 14) */
    UNICODE_N = 2, /* \p{N} of the same */
    UNICODE_S = 4, /* \s of the same, equal to Rust's char::is_whitespace */
    UNICODE_D = 8, /* Rust's char::is_numeric (HF's Digits pre-tokenizer; a newer Unicode) */
};
#define UNICODE_INVALID 0xFFFFFFFFu /* "code point" of an ill-formed UTF-8 sequence */

typedef struct UnicodeRange {
    uint32_t lo, hi; /* inclusive */
    uint32_t flags;  /* UNICODE_* */
} UnicodeRange;

extern const UnicodeRange unicode_ranges[]; /* sorted, disjoint */
extern const size_t unicode_n_ranges;

/* UNICODE_* flags of a code point (0 for UNICODE_INVALID and unlisted code points). */
uint32_t unicode_class(uint32_t cp);
/* Decodes the character at s[0..n), n >= 1: returns its length in bytes and sets *cp, or, for
 * an ill-formed sequence, the length of its maximal subpart (1..3) with *cp = UNICODE_INVALID. */
size_t unicode_next(const unsigned char *s, size_t n, uint32_t *cp);
/* Writes cp (<= 0x10FFFF, not a surrogate) as UTF-8 to out (4 bytes of room); returns the length. */
size_t unicode_put(uint32_t cp, char *out);

#endif
