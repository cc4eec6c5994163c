/* GELU on CUDA, the three variants of GeluKind (kernels/backend.h):
 *  exact   x Phi(x) = x (1 + erf(x / sqrt 2)) / 2           (HF ViT's "gelu", torch's default)
 *  tanh    x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2  ("gelu_new", GPT-2)
 *  quick   x sigmoid(1.702 x)                               (CLIP's "quick_gelu")
 * CUDA's erff/tanhf/expf (a few ulp); the backward may write in place over dout. */
#include "kernels/cuda/cuda_common.cuh"

#define GELU_SQRT1_2 0.70710678118654752440f
#define GELU_SQRT2_PI 0.79788456080286535588f /* sqrt(2/pi) */
#define GELU_INV_SQRT_2PI 0.39894228040143267794f /* 1/sqrt(2 pi) */

/* ---- kernels ---- */

/* GELU of x; its derivative in *deriv when deriv is not NULL (derivations as in
 * kernels/cpu/gelu.c). */
__device__ __forceinline__ float gelu_value(float x, int kind, float *deriv) {
    if (kind == GELU_TANH) {
        const float u = GELU_SQRT2_PI * (x + 0.044715f * x * x * x);
        const float th = tanhf(u);
        if (deriv)
            *deriv = 0.5f * (1.0f + th) +
                     0.5f * x * (1.0f - th * th) * GELU_SQRT2_PI * (1.0f + 3.0f * 0.044715f * x * x);
        return 0.5f * x * (1.0f + th);
    }
    if (kind == GELU_QUICK) {
        const float s = 1.0f / (1.0f + expf(-1.702f * x));
        if (deriv) *deriv = s + 1.702f * x * s * (1.0f - s);
        return x * s;
    }
    const float cdf = 0.5f * (1.0f + erff(x * GELU_SQRT1_2));
    if (deriv) *deriv = cdf + x * GELU_INV_SQRT_2PI * expf(-0.5f * x * x);
    return x * cdf;
}

template <typename T>
__global__ void gelu_forward_kernel(T *out, const T *x, size_t n, int kind) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = lsc_st<T>(gelu_value(lsc_ld(x[i]), kind, NULL));
}

template <typename T>
__global__ void gelu_backward_kernel(T *dx, const T *dout, const T *x, size_t n, int kind) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float d;
        gelu_value(lsc_ld(x[i]), kind, &d);
        dx[i] = lsc_st<T>(lsc_ld(dout[i]) * d);
    }
}

/* ---- launchers ---- */

void cuda_gelu_forward(Backend *be, Real *out, const Real *x, size_t n, GeluKind kind) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0) return;
    gelu_forward_kernel<Real><<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(
        out, x, n, (int)kind);
    CUDA_LAUNCHED(ctx);
}

void cuda_gelu_backward(Backend *be, Real *dx, const Real *dout, const Real *x, size_t n,
                        GeluKind kind) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0) return;
    gelu_backward_kernel<Real><<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(
        dx, dout, x, n, (int)kind);
    CUDA_LAUNCHED(ctx);
}
