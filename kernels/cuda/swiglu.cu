/* SwiGLU on CUDA: out = silu(gate) * up elementwise, silu(g) = g sigmoid(g); grid-stride
 * loops, one element per thread per turn, coalesced. Not fused with the up/gate GEMMs. */
#include "kernels/cuda/cuda_common.cuh"

/* ---- kernels ---- */

template <typename T>
__global__ void swiglu_forward_kernel(T *out, const T *gate, const T *up, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float g = lsc_ld(gate[i]);
        out[i] = lsc_st<T>(g / (1.0f + expf(-g)) * lsc_ld(up[i]));
    }
}

/* s = sigmoid(g): dgate = dout up s (1 + g (1 - s)), dup = dout g s */
template <typename T>
__global__ void swiglu_backward_kernel(T *dgate, T *dup, const T *dout, const T *gate, const T *up,
                                       size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float g = lsc_ld(gate[i]), u = lsc_ld(up[i]), d = lsc_ld(dout[i]);
        const float s = 1.0f / (1.0f + expf(-g));
        dgate[i] = lsc_st<T>(d * u * s * (1.0f + g * (1.0f - s)));
        dup[i] = lsc_st<T>(d * g * s);
    }
}

/* ---- launchers ---- */

void cuda_swiglu_forward(Backend *be, Real *out, const Real *gate, const Real *up, size_t n) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0) return;
    swiglu_forward_kernel<Real><<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(
        out, gate, up, n);
    CUDA_LAUNCHED(ctx);
}

void cuda_swiglu_backward(Backend *be, Real *dgate, Real *dup, const Real *dout, const Real *gate,
                          const Real *up, size_t n) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0) return;
    swiglu_backward_kernel<Real><<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0,
                                   ctx->stream>>>(dgate, dup, dout, gate, up, n);
    CUDA_LAUNCHED(ctx);
}
