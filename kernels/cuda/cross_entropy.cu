/* Softmax cross-entropy on CUDA over logits[N,V], one block per row. The forward keeps an
 * online (max, sum of exponentials) per thread over its strided columns, then combines them
 * across the block in a fixed order, and keeps only lse[N]; the backward recomputes softmax
 * from lse in one read-write pass, so it runs in place (dlogits == logits). A target >= V is
 * flagged for the next sync (the CPU asserts). Chunking a batch's rows to bound the logits
 * memory is the caller's choice: any N works. */
#include "kernels/bf16.h"
#include "kernels/cuda/cuda_common.cuh"

/* ---- kernels ---- */

template <typename T>
__global__ void cross_entropy_forward_kernel(float *losses, float *lse, const T *logits,
                                             const int32_t *targets, int V, int *flags) {
    __shared__ float shared[32];
    const int n = blockIdx.x;
    const T *x = logits + (size_t)n * V;
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
    if (threadIdx.x == 0) {
        const float l = mx + logf(total);
        lse[n] = l;
        const int tgt = targets[n];
        if (tgt >= V) cuda_flag(flags, CUDA_FLAG_TARGET, n, tgt);
        losses[n] = tgt < 0 || tgt >= V ? 0.0f : l - lsc_ld(x[tgt]);
    }
}

/* The gradient's store: as T, or (uint16_t) rounded to bf16 by the rounding every backend
 * shares (kernels/bf16.h), so cross_entropy_backward_bf16 = to_bf16(cross_entropy_backward). */
template <typename O> __device__ __forceinline__ O ce_store(float g) { return lsc_st<O>(g); }
template <> __device__ __forceinline__ uint16_t ce_store<uint16_t>(float g) {
    return bf16_from_float(g);
}

/* dx_i = (softmax_i - [i == t]) dloss; zeros for ignored rows (t < 0) or dloss == 0 */
template <typename T, typename O>
__global__ void cross_entropy_backward_kernel(O *dlogits, const T *logits, const float *lse,
                                              const int32_t *targets, const float *dloss, int V) {
    const int n = blockIdx.x;
    const T *x = logits + (size_t)n * V; /* may be the same memory as d */
    O *d = dlogits + (size_t)n * V;
    const int tgt = targets[n];
    const float dl = dloss[n], l = lse[n];
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
