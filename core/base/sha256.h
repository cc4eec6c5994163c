/* SHA-256 (FIPS 180-4), for the run store's artifact hashes and experiment-source hashes.
 * A small streaming implementation, not a fast one: artifacts are hashed once when logged.
 * Not a general crypto library (no HMAC, no constant-time guarantees). */
#ifndef LORASC_SHA256_H
#define LORASC_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct Sha256 {
    uint32_t h[8];            /* chaining state */
    uint64_t bytes;           /* message length so far */
    unsigned char block[64];  /* pending partial block */
    size_t fill;              /* bytes used in block */
} Sha256;

void sha256_init(Sha256 *c);
void sha256_update(Sha256 *c, const void *data, size_t n);
/* Pads, writes the 32-byte digest and leaves c unusable until sha256_init. */
void sha256_final(Sha256 *c, unsigned char digest[32]);

/* Lower-case hex of a digest: 64 characters and a NUL. */
void sha256_hex(const unsigned char digest[32], char hex[65]);
/* One-shot: the hex digest of n bytes. */
void sha256_buffer_hex(const void *data, size_t n, char hex[65]);
/* The hex digest of a file's contents and its size in bytes (bytes may be NULL). A missing
 * or unreadable file is one sentence naming it. */
int sha256_file_hex(const char *path, char hex[65], int64_t *bytes);

#endif
