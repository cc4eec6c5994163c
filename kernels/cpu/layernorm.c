/* LayerNorm on the CPU: out = (x - mean) * rstd * weight + bias, one row of C at a time
 * (ViT, CLIP). Mean and variance are accumulated in double; the forward saves mean[N] and
 * rstd[N] so the backward never recomputes them. Not here: RMSNorm (rmsnorm.c). */
#include "kernels/cpu/cpu_ops.h"

void cpu_layernorm_forward(Backend *be, Real *out, Real *mean, Real *rstd, const Real *x,
                           const Real *weight, const Real *bias, int N, int C, float eps) {
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const Real *xr = x + (size_t)n * C;
        Real *o = out + (size_t)n * C;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++) s += (double)xr[c];
        const double mu = s / C;
        double ss = 0.0;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += ((double)xr[c] - mu) * ((double)xr[c] - mu);
        const Real m = (Real)mu, r = (Real)(1.0 / sqrt(ss / C + (double)eps));
        mean[n] = m;
        rstd[n] = r;
        for (int c = 0; c < C; c++) o[c] = (xr[c] - m) * r * weight[c] + bias[c];
    }
}

/* With xhat = (x - mean) rstd and gw_c = g_c w_c (the biased variance makes mean and rstd
 * functions of the row): dx_j = rstd (gw_j - mean_c(gw) - xhat_j mean_c(gw xhat)),
 * dweight_c = sum_n g_c xhat_c, dbias_c = sum_n g_c. */
void cpu_layernorm_backward(Backend *be, Real *dx, Real *dweight, Real *dbias, const Real *dout,
                            const Real *x, const Real *weight, const Real *mean, const Real *rstd,
                            int N, int C) {
    (void)be;
    const int big = (size_t)N * C >= CPU_PARALLEL_MIN;
#pragma omp parallel for schedule(static) if (big)
    for (int n = 0; n < N; n++) {
        const Real *xr = x + (size_t)n * C, *g = dout + (size_t)n * C;
        Real *d = dx + (size_t)n * C;
        const Real m = mean[n], r = rstd[n];
        double sg = 0.0, sgx = 0.0;
#pragma omp simd reduction(+ : sg, sgx)
        for (int c = 0; c < C; c++) {
            const double gw = (double)g[c] * weight[c];
            sg += gw;
            sgx += gw * ((double)(xr[c] - m) * r);
        }
        const Real a = (Real)(sg / C), b = (Real)(sgx / C);
        for (int c = 0; c < C; c++) d[c] += r * (g[c] * weight[c] - a - (xr[c] - m) * r * b);
    }
    if (!dweight && !dbias) return;
    /* Column blocks per thread, rows in order (as rmsnorm.c): deterministic for any thread
     * count, no two threads touch one entry. */
    enum { CB = 32 };
    const int nblocks = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static) if (big)
    for (int blk = 0; blk < nblocks; blk++) {
        const int c0 = blk * CB, c1 = c0 + CB < C ? c0 + CB : C;
        Real accw[CB], accb[CB];
        for (int c = c0; c < c1; c++) accw[c - c0] = accb[c - c0] = 0;
        for (int n = 0; n < N; n++) {
            const Real *xr = x + (size_t)n * C, *g = dout + (size_t)n * C;
            const Real m = mean[n], r = rstd[n];
            for (int c = c0; c < c1; c++) {
                accw[c - c0] += g[c] * (xr[c] - m) * r;
                accb[c - c0] += g[c];
            }
        }
        for (int c = c0; c < c1; c++) {
            if (dweight) dweight[c] += accw[c - c0];
            if (dbias) dbias[c] += accb[c - c0];
        }
    }
}
