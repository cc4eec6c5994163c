/* LayerNorm on CUDA (ViT, CLIP): out = (x - mean) * rstd * weight + bias, one block per row,
 * mean then the centred variance (two passes over the row, the second from cache), biased
 * variance; the weight and bias gradients are deterministic column sums. Not here: RMSNorm
 * (rmsnorm.cu), the fused residual + norm of the bf16 step. */
#include "kernels/cuda/cuda_common.cuh"

/* ---- kernels ---- */

template <typename T>
__global__ void layernorm_forward_kernel(T *out, float *mean, float *rstd, const T *x,
                                         const T *weight, const T *bias, int C, float eps) {
    __shared__ float shared[32];
    const size_t row = (size_t)blockIdx.x * C;
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += lsc_ld(x[row + c]);
    const float mu = block_sum(s, shared) / (float)C;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float d = lsc_ld(x[row + c]) - mu;
        ss += d * d;
    }
    const float r = 1.0f / sqrtf(block_sum(ss, shared) / (float)C + eps);
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = mu;
        rstd[blockIdx.x] = r;
    }
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        out[row + c] =
            lsc_st<T>((lsc_ld(x[row + c]) - mu) * r * lsc_ld(weight[c]) + lsc_ld(bias[c]));
}

/* xhat = (x - mean) rstd, gw = g w: dx_j += rstd (gw_j - mean(gw) - xhat_j mean(gw xhat))
 * (derivation in kernels/cpu/layernorm.c) */
template <typename T>
__global__ void layernorm_backward_kernel(T *dx, const T *dout, const T *x, const T *weight,
                                          const float *mean, const float *rstd, int C) {
    __shared__ float shared[32];
    const size_t row = (size_t)blockIdx.x * C;
    const float m = mean[blockIdx.x], r = rstd[blockIdx.x];
    float sg = 0.0f, sgx = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float gw = lsc_ld(dout[row + c]) * lsc_ld(weight[c]);
        sg += gw;
        sgx += gw * (lsc_ld(x[row + c]) - m) * r;
    }
    const float a = block_sum(sg, shared) / (float)C, b = block_sum(sgx, shared) / (float)C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float gw = lsc_ld(dout[row + c]) * lsc_ld(weight[c]);
        const float xhat = (lsc_ld(x[row + c]) - m) * r;
        dx[row + c] = lsc_st<T>(lsc_ld(dx[row + c]) + r * (gw - a - xhat * b));
    }
}

/* dweight_c = sum_n g[n,c] xhat[n,c] */
template <typename T> struct LayernormDweight {
    const T *dout, *x;
    const float *mean, *rstd;
    int C;
    __device__ float operator()(int n, int c) const {
        const size_t i = (size_t)n * C + c;
        return lsc_ld(dout[i]) * (lsc_ld(x[i]) - mean[n]) * rstd[n];
    }
};

/* ---- launchers ---- */

void cuda_layernorm_forward(Backend *be, Real *out, Real *mean, Real *rstd, const Real *x,
                            const Real *weight, const Real *bias, int N, int C, float eps) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || N <= 0 || C <= 0) return;
    layernorm_forward_kernel<Real><<<N, cuda_row_block(C), 0, ctx->stream>>>(
        out, mean, rstd, x, weight, bias, C, eps);
    CUDA_LAUNCHED(ctx);
}

void cuda_layernorm_backward(Backend *be, Real *dx, Real *dweight, Real *dbias, const Real *dout,
                             const Real *x, const Real *weight, const Real *mean,
                             const Real *rstd, int N, int C) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || N <= 0 || C <= 0) return;
    layernorm_backward_kernel<Real><<<N, cuda_row_block(C), 0, ctx->stream>>>(dx, dout, x, weight,
                                                                            mean, rstd, C);
    if (!CUDA_LAUNCHED(ctx)) return;
    if (dweight &&
        !cuda_colsum<float>(ctx, dweight, N, C, 1, LayernormDweight<Real>{dout, x, mean, rstd, C}))
        return;
    if (dbias) cuda_colsum<float>(ctx, dbias, N, C, 1, ColumnOf<Real>{dout, C});
}
