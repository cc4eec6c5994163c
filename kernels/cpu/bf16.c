/* fp32 <-> bf16 over arrays on the CPU (kernels/bf16.h has the scalar rounding): the
 * conversions of a bf16 frozen base and of matmul_bf16's activations. Float builds only (the
 * double build has no bf16 ops). Not here: the bf16 matmul (matmul.c). */
#include <omp.h>

#include "kernels/bf16.h"
#include "kernels/cpu/cpu_ops.h"

#ifndef LORASC_REAL_DOUBLE

void cpu_to_bf16(Backend *be, uint16_t *dst, const Real *src, size_t n) {
    (void)be;
    enum { SPAN = 8192 }; /* elements per task, a multiple of cpu_bf16_round's block */
    const long long spans = (long long)((n + SPAN - 1) / SPAN);
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (long long k = 0; k < spans; k++) {
        const size_t i = (size_t)k * SPAN;
        cpu_bf16_round(dst + i, src + i, n - i < SPAN ? n - i : SPAN);
    }
}

void cpu_from_bf16(Backend *be, Real *dst, const uint16_t *src, size_t n) {
    (void)be;
    const long long nn = (long long)n;
#pragma omp parallel for simd schedule(static) if (nn >= CPU_PARALLEL_MIN)
    for (long long i = 0; i < nn; i++) dst[i] = bf16_to_float(src[i]);
}

#endif
