/* Image ops on the CPU: patchify (ViT's convolution-as-matmul layout) and the bias add with
 * its gradient (column sums) that ViT's linear layers and position embeddings use. */
#include "kernels/cpu/cpu_ops.h"

/* out[b, p, c*P*P + i*P + j] = img[b, c, py*P + i, px*P + j] with p = py * (W/P) + px: the
 * row order of torch's Conv2d(stride = kernel = P) output flattened over (py, px), and the
 * column order of its weight [D, C, P, P] flattened to [D, C*P*P]. */
void cpu_patchify(Backend *be, Real *out, const Real *img, int B, int C, int H, int W, int P) {
    (void)be;
    const int GH = H / P, GW = W / P, NP = GH * GW, K = C * P * P;
#pragma omp parallel for schedule(static) if ((size_t)B * C * H * W >= CPU_PARALLEL_MIN)
    for (int bp = 0; bp < B * NP; bp++) {
        const int b = bp / NP, p = bp % NP, py = p / GW, px = p % GW;
        Real *o = out + (size_t)bp * K;
        for (int c = 0; c < C; c++)
            for (int i = 0; i < P; i++) {
                const Real *src = img + (((size_t)b * C + c) * H + (size_t)py * P + i) * W +
                                  (size_t)px * P;
                memcpy(o + ((size_t)c * P + i) * P, src, (size_t)P * sizeof(Real));
            }
    }
}

/* y[n, c] += bias[c] */
void cpu_bias_forward(Backend *be, Real *y, const Real *bias, int N, int C) {
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        Real *yr = y + (size_t)n * C;
#pragma omp simd
        for (int c = 0; c < C; c++) yr[c] += bias[c];
    }
}

/* d(y + 1 bias^T)/dbias_c = sum over rows: dbias[c] += sum_n dy[n, c]. Column blocks per
 * thread, rows in order: deterministic for any thread count. */
void cpu_bias_backward(Backend *be, Real *dbias, const Real *dy, int N, int C) {
    (void)be;
    enum { CB = 64 };
    const int nblocks = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= CPU_PARALLEL_MIN)
    for (int blk = 0; blk < nblocks; blk++) {
        const int c0 = blk * CB, c1 = c0 + CB < C ? c0 + CB : C;
        Real acc[CB];
        for (int c = c0; c < c1; c++) acc[c - c0] = 0;
        for (int n = 0; n < N; n++) {
            const Real *g = dy + (size_t)n * C;
            for (int c = c0; c < c1; c++) acc[c - c0] += g[c];
        }
        for (int c = c0; c < c1; c++) dbias[c] += acc[c - c0];
    }
}
