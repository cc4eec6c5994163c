/* Token embedding on CUDA: a row gather forward and a deterministic scatter-add backward.
 * The backward has no atomics: the vocabulary is split into EMB_SHARDS classes by token id
 * (token % EMB_SHARDS) and columns into blocks; one thread owns one column of one class and
 * walks the tokens in order, so repeated tokens add into a row in a fixed order. Every thread
 * reads every token id (cheap, broadcast within a warp) and adds 1/EMB_SHARDS of them.
 * Not the sort-based backward of llm.c: LoRA never trains the embedding; full fine-tuning of
 * a large vocabulary would want it. */
#include "kernels/cuda/cuda_common.cuh"

enum { EMB_SHARDS = 32, EMB_BLOCK = 128 };

/* ---- kernels ---- */

template <typename T>
__global__ void embedding_forward_kernel(T *out, const int32_t *tokens, const T *table, int C,
                                         int *flags) {
    const int n = blockIdx.x;
    const int tok = tokens[n];
    if (tok < 0) { /* the CPU asserts; here the next sync reports it */
        if (threadIdx.x == 0) cuda_flag(flags, CUDA_FLAG_TOKEN, n, tok);
        return;
    }
    const T *src = table + (size_t)tok * C;
    T *dst = out + (size_t)n * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
}

template <typename T>
__global__ void embedding_backward_kernel(T *dtable, const T *dout, const int32_t *tokens, int N,
                                          int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x, shard = blockIdx.y;
    if (c >= C) return;
    for (int n = 0; n < N; n++) {
        const int tok = tokens[n]; /* negative ids were flagged by the forward */
        if (tok < 0 || tok % EMB_SHARDS != shard) continue;
        T *row = dtable + (size_t)tok * C;
        row[c] = lsc_st<T>(lsc_ld(row[c]) + lsc_ld(dout[(size_t)n * C + c]));
    }
}

/* ---- launchers ---- */

void cuda_embedding_forward(Backend *be, Real *out, const int32_t *tokens, const Real *table,
                            int N, int C) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || N <= 0 || C <= 0) return;
    embedding_forward_kernel<Real><<<N, cuda_row_block(C), 0, ctx->stream>>>(out, tokens, table,
                                                                           C, ctx->flags);
    CUDA_LAUNCHED(ctx);
}

void cuda_embedding_backward(Backend *be, Real *dtable, const Real *dout, const int32_t *tokens,
                             int N, int C) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || N <= 0 || C <= 0) return;
    const dim3 grid((C + EMB_BLOCK - 1) / EMB_BLOCK, EMB_SHARDS);
    embedding_backward_kernel<Real><<<grid, EMB_BLOCK, 0, ctx->stream>>>(dtable, dout, tokens, N,
                                                                       C);
    CUDA_LAUNCHED(ctx);
}
