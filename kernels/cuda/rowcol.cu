/* Per-row and per-column ops on CUDA over x[N,C]: row L2 norms (one block per row) and
 * column dot products (a deterministic column sum), both accumulated in double as the
 * interface promises; broadcast scaling of rows or columns; elementwise division. The
 * pieces of DoRA's magnitude/direction split; nothing here knows that. */
#include "kernels/cuda/cuda_common.cuh"

/* ---- kernels ---- */

template <typename T> __global__ void row_norm_kernel(T *norm, const T *x, int C) {
    __shared__ double shared[32];
    const size_t row = (size_t)blockIdx.x * C;
    double s = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const double v = (double)lsc_ld(x[row + c]);
        s += v * v;
    }
    s = block_sum(s, shared);
    if (threadIdx.x == 0) norm[blockIdx.x] = lsc_st<T>((float)sqrt(s));
}

template <typename T> struct ColDot {
    const T *a, *b;
    int C;
    __device__ double operator()(int n, int c) const {
        const size_t i = (size_t)n * C + c;
        return (double)lsc_ld(a[i]) * (double)lsc_ld(b[i]);
    }
};

/* out may alias x: each element is read, then written, by one thread */
template <typename T>
__global__ void scale_rows_kernel(T *out, const T *x, const T *s, size_t n, int C) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = lsc_st<T>(lsc_ld(s[i / C]) * lsc_ld(x[i]));
}

template <typename T>
__global__ void scale_cols_kernel(T *out, const T *x, const T *s, size_t n, int C) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = lsc_st<T>(lsc_ld(x[i]) * lsc_ld(s[i % C]));
}

template <typename T> __global__ void divide_kernel(T *out, const T *a, const T *b, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = lsc_st<T>(lsc_ld(a[i]) / lsc_ld(b[i]));
}

/* ---- launchers ---- */

void cuda_row_norm(Backend *be, Real *norm, const Real *x, int N, int C) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || N <= 0) return;
    if (C <= 0) {
        CUDA_OK(ctx, cudaMemsetAsync(norm, 0, (size_t)N * sizeof(Real), ctx->stream));
        return;
    }
    row_norm_kernel<Real><<<N, cuda_row_block(C), 0, ctx->stream>>>(norm, x, C);
    CUDA_LAUNCHED(ctx);
}

void cuda_col_dot(Backend *be, Real *out, const Real *a, const Real *b, int N, int C) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || C <= 0) return;
    cuda_colsum<double>(ctx, out, N, C, 0, ColDot<Real>{a, b, C});
}

void cuda_scale_rows(Backend *be, Real *out, const Real *x, const Real *s, int N, int C) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    const size_t n = (size_t)(N > 0 ? N : 0) * (size_t)(C > 0 ? C : 0);
    if (!ctx || n == 0) return;
    scale_rows_kernel<Real><<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(
        out, x, s, n, C);
    CUDA_LAUNCHED(ctx);
}

void cuda_scale_cols(Backend *be, Real *out, const Real *x, const Real *s, int N, int C) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    const size_t n = (size_t)(N > 0 ? N : 0) * (size_t)(C > 0 ? C : 0);
    if (!ctx || n == 0) return;
    scale_cols_kernel<Real><<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(
        out, x, s, n, C);
    CUDA_LAUNCHED(ctx);
}

void cuda_divide(Backend *be, Real *out, const Real *a, const Real *b, size_t n) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0) return;
    divide_kernel<Real><<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(out, a,
                                                                                         b, n);
    CUDA_LAUNCHED(ctx);
}
