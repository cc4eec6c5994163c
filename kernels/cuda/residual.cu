/* Residual add on CUDA: out = a + b elementwise (out may alias a or b: each element is read
 * before it is written, by the same thread), and its explicit backward, the identity fan-out
 * of the gradient into both branches (da += dout, db += dout). */
#include "kernels/cuda/cuda_common.cuh"

/* ---- kernels ---- */

template <typename T>
__global__ void residual_forward_kernel(T *out, const T *a, const T *b, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = lsc_st<T>(lsc_ld(a[i]) + lsc_ld(b[i]));
}

/* either of da, db may be NULL */
template <typename T>
__global__ void residual_backward_kernel(T *da, T *db, const T *dout, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float d = lsc_ld(dout[i]);
        if (da) da[i] = lsc_st<T>(lsc_ld(da[i]) + d);
        if (db) db[i] = lsc_st<T>(lsc_ld(db[i]) + d);
    }
}

/* ---- launchers ---- */

void cuda_residual_forward(Backend *be, Real *out, const Real *a, const Real *b, size_t n) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0) return;
    residual_forward_kernel<Real><<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0,
                                    ctx->stream>>>(out, a, b, n);
    CUDA_LAUNCHED(ctx);
}

void cuda_residual_backward(Backend *be, Real *da, Real *db, const Real *dout, size_t n) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0 || (!da && !db)) return;
    residual_backward_kernel<Real><<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0,
                                     ctx->stream>>>(da, db, dout, n);
    CUDA_LAUNCHED(ctx);
}
