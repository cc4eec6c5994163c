/* RMSNorm on the CPU: out = x / sqrt(mean(x^2) + eps) * weight, one row of C at a time.
 * The mean square and the backward's row dot product are accumulated in double; the forward
 * saves rstd[N] so the backward never recomputes it. */
#include "kernels/cpu/cpu_ops.h"

void cpu_rmsnorm_forward(Backend *be, Real *out, Real *rstd, const Real *x, const Real *weight,
                         int N, int C, float eps) {
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const Real *xr = x + (size_t)n * C;
        Real *o = out + (size_t)n * C;
        double ss = 0.0;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        Real r = (Real)(1.0 / sqrt(ss / C + (double)eps));
        rstd[n] = r;
        for (int c = 0; c < C; c++) o[c] = xr[c] * r * weight[c];
    }
}

/* y_c = w_c x_c r with r = (mean(x^2) + eps)^(-1/2) and dr/dx_j = -r^3 x_j / C, so
 * dx_j = r w_j g_j - (r^3 / C) x_j sum_c(w_c g_c x_c) and dweight_c = sum_n g_c x_c r. */
void cpu_rmsnorm_backward(Backend *be, Real *dx, Real *dweight, const Real *dout, const Real *x,
                          const Real *weight, const Real *rstd, int N, int C) {
    (void)be;
    int big = (size_t)N * C >= CPU_PARALLEL_MIN;
#pragma omp parallel for schedule(static) if (big)
    for (int n = 0; n < N; n++) {
        const Real *xr = x + (size_t)n * C, *g = dout + (size_t)n * C;
        Real *d = dx + (size_t)n * C;
        double dot = 0.0;
#pragma omp simd reduction(+ : dot)
        for (int c = 0; c < C; c++) dot += (double)weight[c] * g[c] * xr[c];
        Real r = rstd[n];
        Real k = (Real)((double)r * r * r * dot / C);
        for (int c = 0; c < C; c++) d[c] += r * weight[c] * g[c] - k * xr[c];
    }
    if (!dweight) return;
    /* Column blocks per thread, rows in order: no two threads touch one dweight entry, and the
     * sum order is fixed, so the result does not depend on the thread count. */
    enum { CB = 32 };
    int nblocks = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static) if (big)
    for (int blk = 0; blk < nblocks; blk++) {
        int c0 = blk * CB, c1 = c0 + CB < C ? c0 + CB : C;
        Real acc[CB];
        for (int c = c0; c < c1; c++) acc[c - c0] = 0;
        for (int n = 0; n < N; n++) {
            const Real *xr = x + (size_t)n * C, *g = dout + (size_t)n * C;
            Real r = rstd[n];
            for (int c = c0; c < c1; c++) acc[c - c0] += g[c] * xr[c] * r;
        }
        for (int c = c0; c < c1; c++) dweight[c] += acc[c - c0];
    }
}
