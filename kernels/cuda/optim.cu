/* Optimizer arithmetic on CUDA: the AdamW step in torch.optim.AdamW's order of operations,
 * written with round-to-nearest intrinsics (__fmul_rn, __fadd_rn, ...) so that nvcc contracts
 * nothing into FMAs the CPU does not use: the same float operations as kernels/cpu/optim.c,
 * hence the same bits; plus sum_squares (double, fixed partition, no atomics), scale and axpy.
 * Not here: a multi-tensor launch over all adapters at once, and a device-resident
 * sum_squares (the interface returns the double to the host, which waits for it). */
#include "kernels/cuda/cuda_common.cuh"

enum { SUMSQ_CHUNK = 16384, SUMSQ_MAX_BLOCKS = 1024 };

/* ---- kernels ---- */

/* The scalars come from the host, computed in double and rounded exactly as the CPU does. */
struct AdamwScalars {
    float gs, w1, w1m1, b2, w2, decay, neg_step, bc2_sqrt, eps;
    int small_w1;
};

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n,
                             AdamwScalars s) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float gi = __fmul_rn(g[i], s.gs), mo = m[i], diff = __fsub_rn(gi, mo);
        const float mi = s.small_w1 ? __fmaf_rn(s.w1, diff, mo) : __fmaf_rn(s.w1m1, diff, gi);
        const float vi = __fadd_rn(__fmul_rn(v[i], s.b2), __fmul_rn(__fmul_rn(s.w2, gi), gi));
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
        m[i] = mi;
        v[i] = vi;
        p[i] = __fadd_rn(__fmul_rn(p[i], s.decay), __fdiv_rn(__fmul_rn(s.neg_step, mi), denom));
    }
}

/* part[b] = sum of x^2 over elements [b*chunk, (b+1)*chunk), in double */
__global__ void sum_squares_partial_kernel(double *part, const float *x, size_t n, size_t chunk) {
    __shared__ double shared[32];
    const size_t i0 = blockIdx.x * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
    double s = 0.0;
    for (size_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) s += (double)x[i] * (double)x[i];
    s = block_sum(s, shared);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void sum_squares_final_kernel(double *out, const double *part, int nb) {
    __shared__ double shared[32];
    double s = 0.0;
    for (int b = threadIdx.x; b < nb; b += blockDim.x) s += part[b];
    s = block_sum(s, shared);
    if (threadIdx.x == 0) *out = s;
}

__global__ void scale_kernel(float *x, size_t n, float s) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = __fmul_rn(x[i], s);
}

/* y += s x, unfused as on the CPU */
__global__ void axpy_kernel(float *y, const float *x, size_t n, float s) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = __fadd_rn(y[i], __fmul_rn(s, x[i]));
}

/* ---- launchers ---- */

void cuda_adamw_update(Backend *be, Real *p, const Real *g, Real *m, Real *v, size_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                       float bias_correction1, float bias_correction2) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0) return;
    AdamwScalars s;
    s.gs = grad_scale;
    s.decay = (float)(1.0 - (double)lr * weight_decay);
    s.w1 = (float)(1.0 - (double)beta1);
    s.w1m1 = s.w1 - 1.0f;
    s.b2 = beta2;
    s.w2 = (float)(1.0 - (double)beta2);
    s.neg_step = (float)(-((double)lr / bias_correction1));
    s.bc2_sqrt = (float)sqrt((double)bias_correction2);
    s.eps = eps;
    s.small_w1 = s.w1 < 0.5f;
    adamw_kernel<<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(p, g, m, v, n,
                                                                                   s);
    CUDA_LAUNCHED(ctx);
}

/* The partition depends on n alone, so the sum's bits do too. Returns NaN after a failure. */
double cuda_sum_squares(Backend *be, const Real *x, size_t n) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx) return NAN;
    if (n == 0) return 0.0;
    size_t chunk = SUMSQ_CHUNK;
    if ((n + chunk - 1) / chunk > SUMSQ_MAX_BLOCKS) chunk = (n + SUMSQ_MAX_BLOCKS - 1) / SUMSQ_MAX_BLOCKS;
    const int nb = (int)((n + chunk - 1) / chunk);
    double *part = (double *)cuda_scratch(ctx, ((size_t)nb + 1) * sizeof(double));
    if (!part) return NAN;
    sum_squares_partial_kernel<<<nb, CUDA_BLOCK, 0, ctx->stream>>>(part, x, n, chunk);
    if (!CUDA_LAUNCHED(ctx)) return NAN;
    sum_squares_final_kernel<<<1, CUDA_BLOCK, 0, ctx->stream>>>(part + nb, part, nb);
    if (!CUDA_LAUNCHED(ctx) ||
        !CUDA_OK(ctx, cudaMemcpyAsync(ctx->host_result, part + nb, sizeof(double),
                                      cudaMemcpyDeviceToHost, ctx->stream)) ||
        !CUDA_OK(ctx, cudaStreamSynchronize(ctx->stream)))
        return NAN;
    return *ctx->host_result;
}

void cuda_scale(Backend *be, Real *x, size_t n, float s) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0) return;
    scale_kernel<<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(x, n, s);
    CUDA_LAUNCHED(ctx);
}

void cuda_axpy(Backend *be, Real *y, const Real *x, size_t n, float s) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0) return;
    axpy_kernel<<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(y, x, n, s);
    CUDA_LAUNCHED(ctx);
}
