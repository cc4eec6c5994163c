/* Philox-4x32-10 counter-based random numbers (Salmon et al., SC'11, "Parallel random
 * numbers: as easy as 1, 2, 3"). A draw is a pure function of (seed, stream, index), so the
 * CPU and a GPU produce the same noise, and any slice can be regenerated without replaying
 * the ones before it. Callers pick the stream from (purpose, expert, layer, matrix).
 * Not a cryptographic generator. */
#ifndef LORASC_PHILOX_H
#define LORASC_PHILOX_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/real.h"

/* One block: four 32-bit outputs for 128-bit counter ctr and 64-bit key. */
void philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]);

/* Streams by purpose; combine with philox_stream() for per-tensor streams. */
enum {
    RNG_PURPOSE_INIT = 1,  /* parameter initialisation */
    RNG_PURPOSE_DATA = 2,  /* batch sampling, shuffling */
    RNG_PURPOSE_NOISE = 3, /* LoRASC cascading noise */
    RNG_PURPOSE_DROPOUT = 4,
};

/* Packs (purpose, a, b, c) into one 64-bit stream id: 16 bits each. */
uint64_t philox_stream(uint32_t purpose, uint32_t a, uint32_t b, uint32_t c);

/* The 32-bit word number `index` of the sequence (seed, stream). */
uint32_t philox_u32(uint64_t seed, uint64_t stream, uint64_t index);

/* A permutation of 0..n-1: Fisher-Yates, position i swapped with word i of (seed, stream)
 * modulo i + 1, for i = n-1 down to 1. A pure function of (seed, stream). */
void philox_permutation(int *perm, int n, uint64_t seed, uint64_t stream);

/* out[i] = uniform in [lo, hi) from word i of (seed, stream), i = 0..n-1, 24-bit resolution. */
void philox_uniform(Real *out, size_t n, uint64_t seed, uint64_t stream, double lo, double hi);

/* out[i] = mean + std * N(0,1) by Box-Muller on words (2i, 2i+1)... of (seed, stream). */
void philox_normal(Real *out, size_t n, uint64_t seed, uint64_t stream, double mean, double std);

#endif
