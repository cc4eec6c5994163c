/* Philox-4x32-10, the reference algorithm (Random123): 10 rounds of a multiply-xor
 * bijection on a 128-bit counter with a Weyl-sequence key schedule. */
#include "core/philox.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

void philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

uint64_t philox_stream(uint32_t purpose, uint32_t a, uint32_t b, uint32_t c) {
    return ((uint64_t)(purpose & 0xFFFF) << 48) | ((uint64_t)(a & 0xFFFF) << 32) |
           ((uint64_t)(b & 0xFFFF) << 16) | (uint64_t)(c & 0xFFFF);
}

/* Counter = (block index lo, hi, stream lo, hi); key = seed. Word i lives in block i/4. */
static void philox_block(uint32_t out[4], uint64_t seed, uint64_t stream, uint64_t block) {
    const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                             (uint32_t)(stream >> 32)};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32_10(out, ctr, key);
}

uint32_t philox_u32(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t r[4];
    philox_block(r, seed, stream, index / 4);
    return r[index % 4];
}

/* 24 high bits -> [0,1) exactly representable in float, so CPU and GPU agree bit for bit. */
static double u32_to_unit(uint32_t x) { return (double)(x >> 8) * (1.0 / 16777216.0); }

void philox_uniform(Real *out, size_t n, uint64_t seed, uint64_t stream, double lo, double hi) {
    uint32_t r[4];
    for (size_t i = 0; i < n; i++) {
        if (i % 4 == 0) philox_block(r, seed, stream, i / 4);
        out[i] = (Real)(lo + (hi - lo) * u32_to_unit(r[i % 4]));
    }
}

void philox_normal(Real *out, size_t n, uint64_t seed, uint64_t stream, double mean, double std) {
    uint32_t r[4];
    for (size_t i = 0; i < n; i += 2) {
        if (i % 4 == 0) philox_block(r, seed, stream, i / 4);
        /* u1 in (0,1] keeps log finite */
        double u1 = 1.0 - u32_to_unit(r[i % 4]);
        double u2 = u32_to_unit(r[i % 4 + 1]);
        double radius = sqrt(-2.0 * log(u1));
        out[i] = (Real)(mean + std * radius * cos(2.0 * M_PI * u2));
        if (i + 1 < n) out[i + 1] = (Real)(mean + std * radius * sin(2.0 * M_PI * u2));
    }
}
