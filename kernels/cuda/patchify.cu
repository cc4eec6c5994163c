/* Image ops on CUDA: patchify (ViT's convolution-as-matmul layout, one thread per output
 * element) and the bias add with its gradient (a deterministic column sum) that ViT's linear
 * layers and position embeddings use. */
#include "kernels/cuda/cuda_common.cuh"

/* ---- kernels ---- */

/* out[b, p, c*P*P + i*P + j] = img[b, c, py*P + i, px*P + j], p = py * (W/P) + px */
template <typename T>
__global__ void patchify_kernel(T *out, const T *img, size_t total, int C, int H, int W, int P) {
    const int GW = W / P, NP = (H / P) * GW, K = C * P * P;
    for (size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x; o < total;
         o += (size_t)gridDim.x * blockDim.x) {
        const int col = (int)(o % K);
        const size_t bp = o / K;
        const int p = (int)(bp % NP), b = (int)(bp / NP);
        const int c = col / (P * P), i = (col / P) % P, j = col % P;
        const int py = p / GW, px = p % GW;
        out[o] = img[(((size_t)b * C + c) * H + (size_t)py * P + i) * W + (size_t)px * P + j];
    }
}

template <typename T> __global__ void bias_forward_kernel(T *y, const T *bias, size_t n, int C) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = lsc_st<T>(lsc_ld(y[i]) + lsc_ld(bias[i % C]));
}

/* ---- launchers ---- */

void cuda_patchify(Backend *be, Real *out, const Real *img, int B, int C, int H, int W, int P) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || B <= 0 || C <= 0 || P <= 0 || H < P || W < P) return;
    const size_t total = (size_t)B * (H / P) * (W / P) * C * P * P;
    patchify_kernel<Real><<<cuda_grid_for(ctx, total, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(
        out, img, total, C, H, W, P);
    CUDA_LAUNCHED(ctx);
}

void cuda_bias_forward(Backend *be, Real *y, const Real *bias, int N, int C) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || N <= 0 || C <= 0) return;
    const size_t n = (size_t)N * C;
    bias_forward_kernel<Real><<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(
        y, bias, n, C);
    CUDA_LAUNCHED(ctx);
}

void cuda_bias_backward(Backend *be, Real *dbias, const Real *dy, int N, int C) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || N <= 0 || C <= 0) return;
    cuda_colsum<float>(ctx, dbias, N, C, 1, ColumnOf<Real>{dy, C});
}
