/* Residual add on the CPU: out = a + b elementwise (out may alias a or b), and its explicit
 * backward, the identity fan-out of the gradient into both branches. */
#include "kernels/cpu/cpu_ops.h"

void cpu_residual_forward(Backend *be, Real *out, const Real *a, const Real *b, size_t n) {
    (void)be;
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* d(a + b)/da = d(a + b)/db = 1, so each branch accumulates dout unchanged. */
void cpu_residual_backward(Backend *be, Real *da, Real *db, const Real *dout, size_t n) {
    (void)be;
    if (da) {
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) da[i] += dout[i];
    }
    if (db) {
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) db[i] += dout[i];
    }
}
