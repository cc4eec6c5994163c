/* Optimizer arithmetic on CUDA: the AdamW step in torch.optim.AdamW's order of operations,
 * written with round-to-nearest intrinsics (__fmul_rn, __fadd_rn, ...) so that nvcc contracts
 * nothing into FMAs the CPU does not use: the same float operations as kernels/cpu/optim.c,
 * hence the same bits; plus sum_squares (double, fixed partition, no atomics), scale and axpy.
 * The device-resident step statistics (mean_to, sum_squares_acc, clip_scale, adamw_update_dev)
 * keep a step's loss, gradient norm and clip scale in device memory: same kernels, same bits,
 * nothing read back. Not here: a multi-tensor launch over all adapters at once. */
#include "kernels/cuda/cuda_common.cuh"

enum { SUMSQ_CHUNK = 16384, SUMSQ_MAX_BLOCKS = 1024 };

/* ---- kernels ---- */

/* The scalars come from the host, computed in double and rounded exactly as the CPU does. */
struct AdamwScalars {
    float gs, w1, w1m1, b2, w2, decay, neg_step, bc2_sqrt, eps;
    int small_w1;
};

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n,
                             AdamwScalars s, const float *gs_dev) {
    if (gs_dev) s.gs = *gs_dev; /* the clip scale clip_scale left in device memory */
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

/* *out = (or +=, accumulate) the sum of the nb partials */
__global__ void sum_squares_final_kernel(double *out, const double *part, int nb, int accumulate) {
    __shared__ double shared[32];
    double s = 0.0;
    for (int b = threadIdx.x; b < nb; b += blockDim.x) s += part[b];
    s = block_sum(s, shared);
    if (threadIdx.x == 0) *out = accumulate ? *out + s : s;
}

/* out = sum(x) / divisor in double, one block (a batch's per-row losses: thousands, not more) */
__global__ void mean_to_kernel(double *out, const float *x, size_t n, double divisor) {
    __shared__ double shared[32];
    double s = 0.0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) s += (double)x[i];
    s = block_sum(s, shared);
    if (threadIdx.x == 0) *out = divisor != 0.0 ? s / divisor : 0.0;
}

/* torch's clip_grad_norm_ coefficient, in double as the host computes it */
__global__ void clip_scale_kernel(float *scale, double *norm, const double *acc, float max_norm) {
    const double nrm = sqrt(*acc);
    *norm = nrm;
    *scale = max_norm > 0.0f ? (float)fmin(1.0, (double)max_norm / (nrm + 1e-6)) : 1.0f;
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

/* Both AdamW entries: the scale given (gs_dev NULL) or read on the device. */
static void cuda_adamw_launch(Backend *be, const char *func, Real *p, const Real *g, Real *m,
                              Real *v, size_t n, float lr, float beta1, float beta2, float eps,
                              float weight_decay, float grad_scale, const float *gs_dev,
                              float bias_correction1, float bias_correction2) {
    CudaCtx *ctx = cuda_begin(be, func);
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
                                                                                   s, gs_dev);
    CUDA_LAUNCHED(ctx);
}

void cuda_adamw_update(Backend *be, Real *p, const Real *g, Real *m, Real *v, size_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                       float bias_correction1, float bias_correction2) {
    cuda_adamw_launch(be, __func__, p, g, m, v, n, lr, beta1, beta2, eps, weight_decay,
                      grad_scale, NULL, bias_correction1, bias_correction2);
}

void cuda_adamw_update_dev(Backend *be, Real *p, const Real *g, Real *m, Real *v, size_t n,
                           float lr, float beta1, float beta2, float eps, float weight_decay,
                           const float *grad_scale, float bias_correction1,
                           float bias_correction2) {
    cuda_adamw_launch(be, __func__, p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, 1.0f,
                      grad_scale, bias_correction1, bias_correction2);
}

/* out[0] = (or +=) sum(x^2) over n > 0 elements in device memory; the partition depends on n
 * alone, so the sum's bits do too. 0 with the error recorded on failure. */
static int sumsq_blocks(size_t n, size_t *chunk) {
    *chunk = SUMSQ_CHUNK;
    if ((n + *chunk - 1) / *chunk > SUMSQ_MAX_BLOCKS)
        *chunk = (n + SUMSQ_MAX_BLOCKS - 1) / SUMSQ_MAX_BLOCKS;
    return (int)((n + *chunk - 1) / *chunk);
}

/* out NULL: into the scratch slot after the partials (cuda_sum_squares reads it there) */
static int cuda_sum_squares_into(CudaCtx *ctx, double *out, const Real *x, size_t n,
                                 int accumulate) {
    size_t chunk;
    const int nb = sumsq_blocks(n, &chunk);
    double *part = (double *)cuda_scratch(ctx, ((size_t)nb + 1) * sizeof(double));
    if (!part) return 0;
    sum_squares_partial_kernel<<<nb, CUDA_BLOCK, 0, ctx->stream>>>(part, x, n, chunk);
    if (!CUDA_LAUNCHED(ctx)) return 0;
    sum_squares_final_kernel<<<1, CUDA_BLOCK, 0, ctx->stream>>>(out ? out : part + nb, part, nb,
                                                               accumulate);
    return CUDA_LAUNCHED(ctx);
}

/* Returns NaN after a failure; waits for the device (the double comes back to the host). */
double cuda_sum_squares(Backend *be, const Real *x, size_t n) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx) return NAN;
    if (n == 0) return 0.0;
    size_t chunk;
    const int nb = sumsq_blocks(n, &chunk);
    double *part = NULL;
    if (!cuda_sum_squares_into(ctx, NULL, x, n, 0) ||
        !(part = (double *)cuda_scratch(ctx, ((size_t)nb + 1) * sizeof(double))) ||
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

/* ---- device-resident step statistics ---- */

void cuda_mean_to(Backend *be, double *out, const Real *x, size_t n, double divisor) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx) return;
    mean_to_kernel<<<1, CUDA_BLOCK, 0, ctx->stream>>>(out, x, n, divisor);
    CUDA_LAUNCHED(ctx);
}

void cuda_sum_squares_acc(Backend *be, double *acc, const Real *x, size_t n) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0) return;
    cuda_sum_squares_into(ctx, acc, x, n, 1);
}

void cuda_clip_scale(Backend *be, float *scale, double *norm, const double *acc, float max_norm) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx) return;
    clip_scale_kernel<<<1, 1, 0, ctx->stream>>>(scale, norm, acc, max_norm);
    CUDA_LAUNCHED(ctx);
}
