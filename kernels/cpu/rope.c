/* Rotary position embedding on the CPU, in place on x[B,T,NH,HD]. Pair i of a head is
 * rotated by the angle in row pos0 + t, column i of the cos/sin tables (built by the model).
 * ROPE_INTERLEAVED pairs (2i, 2i+1) as Meta/llama2.c do; ROPE_HALF pairs (i, i + HD/2) as
 * Hugging Face's rotate_half does. */
#include "kernels/cpu/cpu_ops.h"

/* One head's pairs, rotated by +angle (sign = 1) or -angle (sign = -1): pair i is
 * (xh[i * step], xh[i * step + off]). Inlined with step and off constants (below), so the
 * loop vectorises: a run-time stride kept it scalar (a small-shape step's rotary 1.9 ms). */
static inline __attribute__((always_inline)) void rope_head(Real *xh, const Real *cr,
                                                            const Real *sr, int half, Real sign,
                                                            const int step, const int off) {
#pragma omp simd
    for (int i = 0; i < half; i++) {
        const Real c = cr[i], s = sign * sr[i];
        const Real x0 = xh[i * step], x1 = xh[i * step + off];
        xh[i * step] = x0 * c - x1 * s;
        xh[i * step + off] = x0 * s + x1 * c;
    }
}

/* Rotates every pair of every head by +angle (sign = 1) or -angle (sign = -1). */
static void rope_rotate(Real *x, const Real *cos_tab, const Real *sin_tab, int B, int T, int NH,
                        int HD, int pos0, RopeStyle style, Real sign) {
    const int half = HD / 2;
#pragma omp parallel for schedule(static) if ((size_t)B * T * NH * HD >= CPU_PARALLEL_MIN)
    for (int bt = 0; bt < B * T; bt++) {
        const int t = bt % T;
        const Real *cr = cos_tab + (size_t)(pos0 + t) * half;
        const Real *sr = sin_tab + (size_t)(pos0 + t) * half;
        for (int h = 0; h < NH; h++) {
            Real *xh = x + ((size_t)bt * NH + h) * HD;
            if (style == ROPE_INTERLEAVED)
                rope_head(xh, cr, sr, half, sign, 2, 1);
            else
                rope_head(xh, cr, sr, half, sign, 1, half);
        }
    }
}

void cpu_rope_forward(Backend *be, Real *x, const Real *cos_tab, const Real *sin_tab, int B, int T,
                      int NH, int HD, int pos0, RopeStyle style) {
    (void)be;
    rope_rotate(x, cos_tab, sin_tab, B, T, NH, HD, pos0, style, 1);
}

/* y = R x with R orthogonal, so dx = R^T dy: the same rotation by -angle. */
void cpu_rope_backward(Backend *be, Real *dx, const Real *cos_tab, const Real *sin_tab, int B,
                       int T, int NH, int HD, int pos0, RopeStyle style) {
    (void)be;
    rope_rotate(dx, cos_tab, sin_tab, B, T, NH, HD, pos0, style, -1);
}
