/* Softmax cross-entropy on CUDA over logits[N,V], one block per row. The forward keeps an
 * online (max, sum of exponentials) per thread over its strided columns, then combines them
 * across the block in a fixed order, and keeps only lse[N]; the backward recomputes softmax
 * from lse in one read-write pass, so it runs in place (dlogits == logits). A target >= V is
 * flagged for the next sync (the CPU asserts). Chunking a batch's rows to bound the logits
 * memory is the caller's choice: any N works. */
#include "kernels/bf16.h"
#include "kernels/cuda/cuda_common.cuh"

/* ---- kernels ---- */

/* The row's log-sum-exp, returned to every thread of the block (one block per row). */
template <typename T> __device__ float ce_row_lse(const T *x, int V, float *shared) {
    float m = -INFINITY, s = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        const float v = lsc_ld(x[i]);
        if (v > m) {
            s = s * expf(m - v) + 1.0f;
            m = v;
        } else {
            s += expf(v - m);
        }
    }
    const float mx = block_max(m, shared);
    s = m == -INFINITY ? 0.0f : s * expf(m - mx); /* threads with no columns add nothing */
    const float total = block_sum(s, shared);
    return mx + logf(total);
}

/* Thread 0 writes the row's lse and loss (0 for an ignored row; a target >= V is flagged). */
template <typename T>
__device__ void ce_row_store(float *losses, float *lse, const T *x, float l, int n, int tgt,
                             int V, int *flags) {
    if (threadIdx.x != 0) return;
    lse[n] = l;
    if (tgt >= V) cuda_flag(flags, CUDA_FLAG_TARGET, n, tgt);
    losses[n] = tgt < 0 || tgt >= V ? 0.0f : l - lsc_ld(x[tgt]);
}

/* The gradient's store: as T, or (uint16_t) rounded to bf16 by the rounding every backend
 * shares (kernels/bf16.h), so cross_entropy_backward_bf16 = to_bf16(cross_entropy_backward). */
template <typename O> __device__ __forceinline__ O ce_store(float g) { return lsc_st<O>(g); }
template <> __device__ __forceinline__ uint16_t ce_store<uint16_t>(float g) {
    return bf16_from_float(g);
}

/* dx_i = (softmax_i - [i == t]) dloss into d (may be x); zeros for ignored rows (t < 0) or
 * dloss == 0 */
template <typename T, typename O>
__device__ void ce_row_grad(O *d, const T *x, float l, int tgt, float dl, int V) {
    const int skip = tgt < 0 || tgt >= V || dl == 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float g = 0.0f;
        if (!skip) {
            g = expf(lsc_ld(x[i]) - l) * dl;
            if (i == tgt) g -= dl;
        }
        d[i] = ce_store<O>(g);
    }
}

template <typename T>
__global__ void cross_entropy_forward_kernel(float *losses, float *lse, const T *logits,
                                             const int32_t *targets, int V, int *flags) {
    __shared__ float shared[32];
    const int n = blockIdx.x;
    const T *x = logits + (size_t)n * V;
    const float l = ce_row_lse(x, V, shared);
    ce_row_store(losses, lse, x, l, n, targets[n], V, flags);
}

template <typename T, typename O>
__global__ void cross_entropy_backward_kernel(O *dlogits, const T *logits, const float *lse,
                                              const int32_t *targets, const float *dloss, int V) {
    const int n = blockIdx.x;
    ce_row_grad(dlogits + (size_t)n * V, logits + (size_t)n * V, lse[n], targets[n], dloss[n], V);
}

/* Both in one block per row: the row is read from memory once, its second pass from L2. */
template <typename T, typename O>
__global__ void cross_entropy_forward_backward_kernel(float *losses, float *lse, O *dlogits,
                                                      const T *logits, const int32_t *targets,
                                                      const float *dloss, int V, int *flags) {
    __shared__ float shared[32];
    const int n = blockIdx.x;
    const T *x = logits + (size_t)n * V;
    const float l = ce_row_lse(x, V, shared);
    ce_row_store(losses, lse, x, l, n, targets[n], V, flags);
    __syncthreads(); /* thread 0 read x[tgt] before the gradient may overwrite it in place */
    ce_row_grad(dlogits + (size_t)n * V, x, l, targets[n], dloss[n], V);
}

/* ---- launchers ---- */

void cuda_cross_entropy_forward(Backend *be, Real *losses, Real *lse, const Real *logits,
                                const int32_t *targets, int N, int V) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || N <= 0 || V <= 0) return;
    cross_entropy_forward_kernel<Real><<<N, cuda_row_block(V), 0, ctx->stream>>>(
        losses, lse, logits, targets, V, ctx->flags);
    CUDA_LAUNCHED(ctx);
}

void cuda_cross_entropy_backward(Backend *be, Real *dlogits, const Real *logits, const Real *lse,
                                 const int32_t *targets, const Real *dloss, int N, int V) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || N <= 0 || V <= 0) return;
    cross_entropy_backward_kernel<Real, Real><<<N, cuda_row_block(V), 0, ctx->stream>>>(
        dlogits, logits, lse, targets, dloss, V);
    CUDA_LAUNCHED(ctx);
}

void cuda_cross_entropy_backward_bf16(Backend *be, uint16_t *dlogits16, const Real *logits,
                                      const Real *lse, const int32_t *targets, const Real *dloss,
                                      int N, int V) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || N <= 0 || V <= 0) return;
    cross_entropy_backward_kernel<Real, uint16_t><<<N, cuda_row_block(V), 0, ctx->stream>>>(
        dlogits16, logits, lse, targets, dloss, V);
    CUDA_LAUNCHED(ctx);
}

void cuda_cross_entropy_forward_backward(Backend *be, Real *losses, Real *lse, Real *dlogits,
                                         uint16_t *dlogits16, const Real *logits,
                                         const int32_t *targets, const Real *dloss, int N, int V) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || N <= 0 || V <= 0) return;
    if (dlogits16)
        cross_entropy_forward_backward_kernel<Real, uint16_t><<<N, cuda_row_block(V), 0, ctx->stream>>>(
            losses, lse, dlogits16, logits, targets, dloss, V, ctx->flags);
    else
        cross_entropy_forward_backward_kernel<Real, Real><<<N, cuda_row_block(V), 0, ctx->stream>>>(
            losses, lse, dlogits, logits, targets, dloss, V, ctx->flags);
    CUDA_LAUNCHED(ctx);
}
