/* The Philox-4x32-10 block function (Salmon et al., SC'11), header-only so that core/'s RNG,
 * the CPU kernels and (later) CUDA kernels share one definition and draw identical bits.
 * Word i of the sequence (seed, stream) is output i%4 of the block with counter
 * (i/4 lo, i/4 hi, stream lo, stream hi) and key (seed lo, seed hi). */
#ifndef LORASC_PHILOX_BLOCK_H
#define LORASC_PHILOX_BLOCK_H

#include <stdint.h>

#ifndef LSC_HOST_DEVICE
#ifdef __CUDACC__
#define LSC_HOST_DEVICE __host__ __device__
#else
#define LSC_HOST_DEVICE
#endif
#endif

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

static inline LSC_HOST_DEVICE void philox4x32_10_block(uint32_t out[4], const uint32_t ctr[4],
                                                       const uint32_t key[2]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        const uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        const uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        const uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
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

/* The four words of block `block` of the sequence (seed, stream). */
static inline LSC_HOST_DEVICE void philox_sequence_block(uint32_t out[4], uint64_t seed,
                                                         uint64_t stream, uint64_t block) {
    const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                             (uint32_t)(stream >> 32)};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32_10_block(out, ctr, key);
}

/* The 24 high bits of a word as a float in [0, 1): exact in float, identical on every device. */
static inline LSC_HOST_DEVICE float philox_unit_float(uint32_t word) {
    return (float)(word >> 8) * (1.0f / 16777216.0f);
}

#endif
