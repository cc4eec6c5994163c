/* Token embedding on the CPU: a row gather forward and a scatter-add backward.
 * The backward is sequential on purpose: repeated tokens add into the same row, and the
 * scatter is a few hundred kilobytes, far below anything worth a thread. */
#include "kernels/kernel_assert.h"
#include "kernels/cpu/cpu_ops.h"

void cpu_embedding_forward(Backend *be, Real *out, const int32_t *tokens, const Real *table, int N,
                           int C) {
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        KERNEL_ASSERT(tokens[n] >= 0);
        memcpy(out + (size_t)n * C, table + (size_t)tokens[n] * C, (size_t)C * sizeof(Real));
    }
}

/* out[n] = table[tokens[n]] is a copy, so dtable[tokens[n]] += dout[n]. */
void cpu_embedding_backward(Backend *be, Real *dtable, const Real *dout, const int32_t *tokens,
                            int N, int C) {
    (void)be;
    for (int n = 0; n < N; n++) {
        KERNEL_ASSERT(tokens[n] >= 0);
        Real *row = dtable + (size_t)tokens[n] * C;
        const Real *g = dout + (size_t)n * C;
        for (int c = 0; c < C; c++) row[c] += g[c];
    }
}
