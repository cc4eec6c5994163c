/* bf16 scalars: the rounding of fp32 to bf16 and back, one definition for the CPU kernels, the
 * CUDA kernels (compiled for the device), the models and the tests, so every backend rounds
 * to the same bits. A bf16 is the upper 16 bits of an fp32 (stored as uint16_t). Not here:
 * the ops over arrays (kernels/backend.h: to_bf16, from_bf16, matmul_bf16). */
#ifndef LORASC_BF16_H
#define LORASC_BF16_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define LSC_BF16_FN __host__ __device__
#else
#define LSC_BF16_FN
#endif

/* fp32 -> bf16, round to nearest, ties to even. NaN stays NaN (quieted, sign kept), +-inf
 * stays +-inf, a finite value that rounds past the largest bf16 becomes +-inf. Branch-free
 * apart from the select, so loops over it vectorise. */
static inline LSC_BF16_FN uint16_t bf16_from_float(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = (u >> 16) | 0x40u; /* the quiet bit of a bf16 NaN */
    return (uint16_t)((u & 0x7FFFFFFFu) > 0x7F800000u ? nan : rounded);
}

/* bf16 -> fp32 (exact). */
static inline LSC_BF16_FN float bf16_to_float(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
