/* RMSNorm on CUDA: out = x / sqrt(mean(x^2) + eps) * weight, one block per row, the row's
 * sums reduced in float by warp shuffles in a fixed order; the weight gradient is a
 * deterministic column sum (cuda_colsum: per-chunk partials, then one ordered pass).
 * Not fused with the residual add yet (the bf16 step fuses them, as llm.c does). */
#include "kernels/cuda/cuda_common.cuh"

/* ---- kernels ---- */

template <typename T>
__global__ void rmsnorm_forward_kernel(T *out, float *rstd, const T *x, const T *weight, int C,
                                       float eps) {
    __shared__ float shared[32];
    const size_t row = (size_t)blockIdx.x * C;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float v = lsc_ld(x[row + c]);
        ss += v * v;
    }
    ss = block_sum(ss, shared);
    const float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        out[row + c] = lsc_st<T>(lsc_ld(x[row + c]) * r * lsc_ld(weight[c]));
}

/* dx_j += r w_j g_j - (r^3 / C) x_j sum_c(w_c g_c x_c) (derivation in kernels/cpu/rmsnorm.c) */
template <typename T>
__global__ void rmsnorm_backward_kernel(T *dx, const T *dout, const T *x, const T *weight,
                                        const float *rstd, int C) {
    __shared__ float shared[32];
    const size_t row = (size_t)blockIdx.x * C;
    float dot = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        dot += lsc_ld(weight[c]) * lsc_ld(dout[row + c]) * lsc_ld(x[row + c]);
    dot = block_sum(dot, shared);
    const float r = rstd[blockIdx.x], k = r * r * r * dot / (float)C;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        dx[row + c] = lsc_st<T>(lsc_ld(dx[row + c]) + r * lsc_ld(weight[c]) * lsc_ld(dout[row + c]) -
                                k * lsc_ld(x[row + c]));
}

/* dweight_c = sum_n g[n,c] x[n,c] r[n] */
template <typename T> struct RmsnormDweight {
    const T *dout, *x;
    const float *rstd;
    int C;
    __device__ float operator()(int n, int c) const {
        const size_t i = (size_t)n * C + c;
        return lsc_ld(dout[i]) * lsc_ld(x[i]) * rstd[n];
    }
};

/* ---- launchers ---- */

void cuda_rmsnorm_forward(Backend *be, Real *out, Real *rstd, const Real *x, const Real *weight,
                          int N, int C, float eps) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || N <= 0 || C <= 0) return;
    rmsnorm_forward_kernel<Real><<<N, cuda_row_block(C), 0, ctx->stream>>>(out, rstd, x, weight,
                                                                         C, eps);
    CUDA_LAUNCHED(ctx);
}

void cuda_rmsnorm_backward(Backend *be, Real *dx, Real *dweight, const Real *dout, const Real *x,
                           const Real *weight, const Real *rstd, int N, int C) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || N <= 0 || C <= 0) return;
    rmsnorm_backward_kernel<Real><<<N, cuda_row_block(C), 0, ctx->stream>>>(dx, dout, x, weight,
                                                                          rstd, C);
    if (!CUDA_LAUNCHED(ctx) || !dweight) return;
    cuda_colsum<float>(ctx, dweight, N, C, 1, RmsnormDweight<Real>{dout, x, rstd, C});
}
