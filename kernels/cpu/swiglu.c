/* SwiGLU on the CPU: out = silu(gate) * up elementwise, silu(g) = g * sigmoid(g).
 * The sigmoid uses cpu_exp, which vectorises in float builds. */
#include "kernels/cpu/cpu_ops.h"

void cpu_swiglu_forward(Backend *be, Real *out, const Real *gate, const Real *up, size_t n) {
    (void)be;
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        Real g = gate[i];
        out[i] = g / (1 + cpu_exp(-g)) * up[i];
    }
}

/* With s = sigmoid(g): d silu/dg = s + g s (1 - s) = s (1 + g (1 - s)), so
 * dgate = dout * up * s (1 + g (1 - s)) and dup = dout * g s. */
void cpu_swiglu_backward(Backend *be, Real *dgate, Real *dup, const Real *dout, const Real *gate,
                         const Real *up, size_t n) {
    (void)be;
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        Real g = gate[i], u = up[i], d = dout[i];
        Real s = 1 / (1 + cpu_exp(-g));
        dgate[i] = d * u * s * (1 + g * (1 - s));
        dup[i] = d * g * s;
    }
}
