/* Philox-4x32-10 sequences on the host: uniform and normal fills built on the shared block
 * function in kernels/philox_block.h. */
#include "core/base/philox.h"

#include "kernels/philox_block.h"

#include <math.h>

void philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]) {
    philox4x32_10_block(out, ctr, key);
}

uint64_t philox_stream(uint32_t purpose, uint32_t a, uint32_t b, uint32_t c) {
    return ((uint64_t)(purpose & 0xFFFF) << 48) | ((uint64_t)(a & 0xFFFF) << 32) |
           ((uint64_t)(b & 0xFFFF) << 16) | (uint64_t)(c & 0xFFFF);
}

uint32_t philox_u32(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t r[4];
    philox_sequence_block(r, seed, stream, index / 4);
    return r[index % 4];
}

void philox_permutation(int *perm, int n, uint64_t seed, uint64_t stream) {
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        const int j = (int)(philox_u32(seed, stream, (uint64_t)i) % (uint32_t)(i + 1));
        const int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* 24 high bits -> [0,1) exactly representable in float, so CPU and GPU agree bit for bit. */
static double u32_to_unit(uint32_t x) { return (double)(x >> 8) * (1.0 / 16777216.0); }

void philox_uniform(Real *out, size_t n, uint64_t seed, uint64_t stream, double lo, double hi) {
    uint32_t r[4];
    for (size_t i = 0; i < n; i++) {
        if (i % 4 == 0) philox_sequence_block(r, seed, stream, i / 4);
        out[i] = (Real)(lo + (hi - lo) * u32_to_unit(r[i % 4]));
    }
}

void philox_normal(Real *out, size_t n, uint64_t seed, uint64_t stream, double mean, double std) {
    uint32_t r[4];
    for (size_t i = 0; i < n; i += 2) {
        if (i % 4 == 0) philox_sequence_block(r, seed, stream, i / 4);
        /* u1 in (0,1] keeps log finite */
        double u1 = 1.0 - u32_to_unit(r[i % 4]);
        double u2 = u32_to_unit(r[i % 4 + 1]);
        double radius = sqrt(-2.0 * log(u1));
        out[i] = (Real)(mean + std * radius * cos(2.0 * M_PI * u2));
        if (i + 1 < n) out[i + 1] = (Real)(mean + std * radius * sin(2.0 * M_PI * u2));
    }
}
