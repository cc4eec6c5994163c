/* Shared pieces of the CUDA backend: the backend context (stream, cuBLASLt handle and its
 * workspace, scratch, the sticky error), the checks every launcher uses, the storage-type
 * helpers, warp/block reductions and the deterministic column sums, and the list of ops.
 * Not an op itself: the ops live one family per .cu file, kernels first, then launchers.
 *
 * Launchers follow one pattern (llm.c's, minus its exit()):
 *     CudaCtx *ctx = cuda_begin(be, __func__);   // NULL once an error is recorded
 *     if (!ctx) return;
 *     some_kernel<<<grid, block, smem, ctx->stream>>>(...);
 *     CUDA_LAUNCHED(ctx);                         // cudaGetLastError, named op, file, line
 * Every CUDA / cuBLAS call goes through CUDA_OK / CUBLAS_OK, which record the first failure
 * as one sentence ("cuda: rmsnorm_forward failed at kernels/cuda/rmsnorm.cu:88: ...").
 *
 * Storage types: kernels are templates over the element type T of activations and weights
 * (float today; the bf16 storage of ARCHITECTURE.md adds __nv_bfloat16 instantiations) with
 * float arithmetic; lsc_ld / lsc_st convert. Optimizer state and adapters stay float. */
#ifndef LORASC_CUDA_COMMON_CUH
#define LORASC_CUDA_COMMON_CUH

#include <stddef.h>
#include <stdint.h>

#ifdef LORASC_CUDA_EMU /* the CPU emulation that runs these kernels in CI (emu/cuda_emu.h) */
#include "kernels/cuda/emu/cuda_emu.h"
#else
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#endif

#include "kernels/backend.h"

#ifdef LORASC_REAL_DOUBLE
#error "the CUDA backend is built in float only (Real = float)"
#endif

/* ---- the backend context ---- */

enum {
    CUDA_WORKSPACE_BYTES = 32 << 20, /* cuBLASLt workspace: Hopper's kernels want 32 MiB */
    CUDA_ERROR_CHARS = 512,
    CUDA_STAGE_SLOTS = 8,            /* pinned staging for small uploads (to_device) */
    CUDA_STAGE_BYTES = 1 << 20,      /* per slot: a batch's tokens, targets, loss weights */
    CUDA_BIG_SLOTS = 2,              /* pinned staging for larger uploads: a double buffer, */
    CUDA_BIG_MAX_BYTES = 256 << 20,  /* each grown to the largest upload seen, up to this */
};

typedef struct CudaCtx {
    int device;
    int sm_count;
    size_t smem_optin;          /* largest dynamic shared memory a block may opt into */
    cudaStream_t stream;        /* every op runs on it, in order */
    cublasHandle_t blas;        /* fallback GEMM when cuBLASLt's heuristic offers nothing */
    cublasLtHandle_t lt;
    void *workspace;            /* CUDA_WORKSPACE_BYTES for cuBLASLt (and cuBLAS) */
    void *scratch;              /* reduction partials, grown on demand */
    size_t scratch_bytes;
    double *host_result;        /* pinned: sum_squares' result comes back through it */
    int *flags;                 /* device int[3]: the first bad input a kernel met (below) */
    char *stage;                /* pinned CUDA_STAGE_SLOTS x CUDA_STAGE_BYTES: uploads of up to
                                 * a slot are copied here and sent without waiting */
    cudaEvent_t stage_done[CUDA_STAGE_SLOTS]; /* recorded after each slot's copy */
    int stage_next;
    char *big[CUDA_BIG_SLOTS];  /* pinned, grown on demand: uploads above a slot (an image
                                 * batch) alternate between them, again without waiting */
    size_t big_bytes[CUDA_BIG_SLOTS];
    cudaEvent_t big_done[CUDA_BIG_SLOTS];
    int big_next;
    int tf32;                   /* LORASC_CUDA_TF32=1: matmul may round inputs to tf32 */
    int sync_each_op;           /* LORASC_CUDA_SYNC=1: synchronise after every launch */
    const char *op;             /* the op now running (for the error sentence) */
    const char *last_op;        /* the op issued last (named when sync finds a fault) */
    int failed;                 /* sticky: set by the first failure */
    char error[CUDA_ERROR_CHARS];
} CudaCtx;

/* ---- errors (backend_cuda.cu) ---- */

/* The context of be for op `func` (its "cuda_" prefix dropped), or NULL once an error is
 * recorded: every op returns at once after the first failure. */
CudaCtx *cuda_begin(Backend *be, const char *func);
/* Records the first failure: "cuda: <op> failed at <file>:<line>: <cause>". */
void cuda_fail(CudaCtx *ctx, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int cuda_ok(CudaCtx *ctx, cudaError_t e, const char *call, const char *file, int line);
int cublas_ok(CudaCtx *ctx, cublasStatus_t s, const char *call, const char *file, int line);
int cuda_launched(CudaCtx *ctx, const char *file, int line);
/* A device buffer of at least `bytes` for partial sums, reused by every op (they run in
 * stream order); NULL with the error recorded. */
void *cuda_scratch(CudaCtx *ctx, size_t bytes);
/* Raises a kernel's dynamic shared-memory limit when it asks for more than 48 KiB. */
int cuda_smem_optin(CudaCtx *ctx, const void *kernel, size_t bytes, const char *file, int line);

/* Bad inputs found inside kernels (the CPU asserts on them): the first kernel to meet one
 * stores {code, row, value} in ctx->flags without stopping the stream; cuda_sync reads the
 * flags and turns them into the error sentence. No host round trip per op. */
enum CudaFlag { CUDA_FLAG_NONE = 0, CUDA_FLAG_TOKEN = 1, CUDA_FLAG_TARGET = 2 };

__device__ __forceinline__ void cuda_flag(int *flags, int code, int row, int value) {
    if (atomicCAS(flags, 0, code) == 0) {
        flags[1] = row;
        flags[2] = value;
    }
}

#define CUDA_OK(ctx, call) cuda_ok((ctx), (call), #call, __FILE__, __LINE__)
#define CUBLAS_OK(ctx, call) cublas_ok((ctx), (call), #call, __FILE__, __LINE__)
#define CUDA_LAUNCHED(ctx) cuda_launched((ctx), __FILE__, __LINE__)
#define CUDA_FAIL(ctx, ...) cuda_fail((ctx), __FILE__, __LINE__, __VA_ARGS__)

/* ---- launch geometry ---- */

enum { CUDA_BLOCK = 256 }; /* threads per block of the elementwise and row kernels */

/* Blocks for a grid-stride loop over n elements: enough to fill the device several times
 * over, no more (the loop covers the rest). */
static inline unsigned cuda_grid_for(const CudaCtx *ctx, size_t n, int block) {
    size_t blocks = (n + (size_t)block - 1) / (size_t)block;
    size_t cap = (size_t)ctx->sm_count * 32;
    if (blocks > cap) blocks = cap;
    return blocks ? (unsigned)blocks : 1u;
}

/* Threads per block for one block per row of C elements: a multiple of 32, at most 1024,
 * about one element per thread for short rows and a few per thread for long ones. */
static inline int cuda_row_block(int C) {
    int t = C < 1024 ? C : 1024;
    t = (t + 31) / 32 * 32;
    return t < 32 ? 32 : t;
}

/* ---- storage types ---- */

static __device__ __forceinline__ float lsc_ld(float x) { return x; }
static __device__ __forceinline__ float lsc_ld(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T lsc_st(float x);
template <> __device__ __forceinline__ float lsc_st<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 lsc_st<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

/* ---- reductions (fixed order: the result depends on the launch shape only) ---- */

template <typename A> __device__ __forceinline__ A warp_sum(A v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum of v over the block, returned to every thread. blockDim.x a multiple of 32; shared
 * holds 32 A. Ends with a barrier, so shared can be reused at once. */
template <typename A> __device__ A block_sum(A v, A *shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_sum(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    A total = lane < nwarps ? shared[lane] : (A)0;
    total = warp_sum(total);
    __syncthreads();
    return total;
}

/* Maximum of v over the block, as block_sum. */
__device__ __forceinline__ float block_max(float v, float *shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_max(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float m = lane < nwarps ? shared[lane] : -INFINITY;
    m = warp_max(m);
    __syncthreads();
    return m;
}

/* ---- deterministic column sums: out[c] (+)= sum_n f(n, c) over a [N, C] layout ----
 * Two launches, no atomics: chunk r of rows writes part[r, c] (threads run along c, so every
 * row is read coalesced), then one thread per column adds the R partials in order. R depends
 * on N only, so the sum order (and the bits) are the same on every device. Used by the norm
 * weight/bias gradients, bias_backward and col_dot. */

enum { COLSUM_MAX_CHUNKS = 64, COLSUM_MIN_ROWS = 16 };

static inline int colsum_rows_per_chunk(int N) {
    int rows = (N + COLSUM_MAX_CHUNKS - 1) / COLSUM_MAX_CHUNKS;
    return rows < COLSUM_MIN_ROWS ? COLSUM_MIN_ROWS : rows;
}

template <typename A, typename F>
__global__ void colsum_partial_kernel(A *part, int N, int C, int rows_per_chunk, F f) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
    if (c >= C) return;
    const int n0 = r * rows_per_chunk, n1 = min(N, n0 + rows_per_chunk);
    A acc = 0;
    for (int n = n0; n < n1; n++) acc += f(n, c);
    part[(size_t)r * C + c] = acc;
}

template <typename A, typename O>
__global__ void colsum_final_kernel(O *out, const A *part, int R, int C, int accumulate) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    A s = 0;
    for (int r = 0; r < R; r++) s += part[(size_t)r * C + c];
    out[c] = accumulate ? (O)((A)out[c] + s) : (O)s;
}

/* f(n, c) = y[n, c]: the plain column sum (bias and LayerNorm bias gradients). */
template <typename T> struct ColumnOf {
    const T *y;
    int C;
    __device__ float operator()(int n, int c) const { return lsc_ld(y[(size_t)n * C + c]); }
};

/* out[c] = (or +=) sum_n f(n, c); returns 0 with the error recorded on failure. */
template <typename A, typename O, typename F>
int cuda_colsum(CudaCtx *ctx, O *out, int N, int C, int accumulate, F f) {
    if (C <= 0) return 1;
    const int rows = colsum_rows_per_chunk(N > 0 ? N : 1), R = N > 0 ? (N + rows - 1) / rows : 1;
    A *part = (A *)cuda_scratch(ctx, (size_t)R * C * sizeof(A));
    if (!part) return 0;
    const int block = 128;
    const dim3 grid_p((C + block - 1) / block, R);
    colsum_partial_kernel<A, F><<<grid_p, block, 0, ctx->stream>>>(part, N, C, rows, f);
    if (!CUDA_LAUNCHED(ctx)) return 0;
    colsum_final_kernel<A, O><<<(C + block - 1) / block, block, 0, ctx->stream>>>(out, part, R, C,
                                                                                accumulate);
    return CUDA_LAUNCHED(ctx);
}

/* ---- the ops (same signatures and semantics as kernels/backend.h) ---- */

/* backend_cuda.cu: memory */
void *cuda_alloc(Backend *be, size_t bytes);
void cuda_free(Backend *be, void *ptr);
void cuda_to_device(Backend *be, void *dst, const void *src_host, size_t bytes);
void cuda_to_host(Backend *be, void *dst_host, const void *src, size_t bytes);
void cuda_copy(Backend *be, void *dst, const void *src, size_t bytes);
void cuda_zero(Backend *be, void *dst, size_t bytes);
int cuda_sync(Backend *be);

/* matmul.cu */
void cuda_matmul(Backend *be, Real *c, const Real *a, const Real *b, int M, int N, int K,
                 int trans_a, int trans_b, Real alpha, Real beta);
void cuda_to_bf16(Backend *be, uint16_t *dst, const Real *src, size_t n);
void cuda_from_bf16(Backend *be, Real *dst, const uint16_t *src, size_t n);
void cuda_matmul_bf16(Backend *be, Real *c, const Real *a, const uint16_t *w, int M, int N, int K,
                      int trans_w, Real alpha, Real beta);
void cuda_matmul_bf16_rounded(Backend *be, Real *c, const uint16_t *a16, const uint16_t *w, int M,
                              int N, int K, int trans_w, Real alpha, Real beta);
/* embedding.cu */
void cuda_embedding_forward(Backend *be, Real *out, const int32_t *tokens, const Real *table,
                            int N, int C);
void cuda_embedding_backward(Backend *be, Real *dtable, const Real *dout, const int32_t *tokens,
                             int N, int C);
/* rmsnorm.cu */
void cuda_rmsnorm_forward(Backend *be, Real *out, Real *rstd, const Real *x, const Real *weight,
                          int N, int C, float eps);
void cuda_rmsnorm_backward(Backend *be, Real *dx, Real *dweight, const Real *dout, const Real *x,
                           const Real *weight, const Real *rstd, int N, int C);
/* rope.cu */
void cuda_rope_forward(Backend *be, Real *x, const Real *cos_tab, const Real *sin_tab, int B,
                       int T, int NH, int HD, int pos0, RopeStyle style);
void cuda_rope_backward(Backend *be, Real *dx, const Real *cos_tab, const Real *sin_tab, int B,
                        int T, int NH, int HD, int pos0, RopeStyle style);
/* attention.cu */
void cuda_attention_forward(Backend *be, Real *out, Real *att, const Real *q, const Real *k,
                            const Real *v, int B, int T, int NH, int NKV, int HD);
void cuda_attention_backward(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                             const Real *dout, const Real *q, const Real *k, const Real *v,
                             const Real *att, int B, int T, int NH, int NKV, int HD);
void cuda_attention_full_forward(Backend *be, Real *out, Real *att, const Real *q, const Real *k,
                                 const Real *v, int B, int T, int NH, int NKV, int HD);
void cuda_attention_full_backward(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                                  const Real *dout, const Real *q, const Real *k, const Real *v,
                                  const Real *att, int B, int T, int NH, int NKV, int HD);
void cuda_attention_decode_forward(Backend *be, Real *out, const Real *q, const Real *kcache,
                                   const Real *vcache, int Tq, int pos0, int NH, int NKV, int HD);
/* attention_tc.cu */
void cuda_attention_forward_bf16(Backend *be, Real *out, Real *att, const Real *q, const Real *k,
                                 const Real *v, int B, int T, int NH, int NKV, int HD,
                                 int causal);
void cuda_attention_backward_bf16(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                                  const Real *dout, const Real *out, const Real *q,
                                  const Real *k, const Real *v, const Real *att, int B, int T,
                                  int NH, int NKV, int HD, int causal);
/* swiglu.cu */
void cuda_swiglu_forward(Backend *be, Real *out, const Real *gate, const Real *up, size_t n);
void cuda_swiglu_backward(Backend *be, Real *dgate, Real *dup, const Real *dout, const Real *gate,
                          const Real *up, size_t n);
/* residual.cu */
void cuda_residual_forward(Backend *be, Real *out, const Real *a, const Real *b, size_t n);
void cuda_residual_backward(Backend *be, Real *da, Real *db, const Real *dout, size_t n);
/* rowcol.cu */
void cuda_row_norm(Backend *be, Real *norm, const Real *x, int N, int C);
void cuda_col_dot(Backend *be, Real *out, const Real *a, const Real *b, int N, int C);
void cuda_scale_rows(Backend *be, Real *out, const Real *x, const Real *s, int N, int C);
void cuda_scale_cols(Backend *be, Real *out, const Real *x, const Real *s, int N, int C);
void cuda_divide(Backend *be, Real *out, const Real *a, const Real *b, size_t n);
/* cross_entropy.cu */
void cuda_cross_entropy_forward(Backend *be, Real *losses, Real *lse, const Real *logits,
                                const int32_t *targets, int N, int V);
void cuda_cross_entropy_backward(Backend *be, Real *dlogits, const Real *logits, const Real *lse,
                                 const int32_t *targets, const Real *dloss, int N, int V);
void cuda_cross_entropy_backward_bf16(Backend *be, uint16_t *dlogits16, const Real *logits,
                                      const Real *lse, const int32_t *targets, const Real *dloss,
                                      int N, int V);
void cuda_cross_entropy_forward_backward(Backend *be, Real *losses, Real *lse, Real *dlogits,
                                         uint16_t *dlogits16, const Real *logits,
                                         const int32_t *targets, const Real *dloss, int N, int V);
/* optim.cu */
void cuda_adamw_update(Backend *be, Real *p, const Real *g, Real *m, Real *v, size_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                       float bias_correction1, float bias_correction2);
double cuda_sum_squares(Backend *be, const Real *x, size_t n);
void cuda_scale(Backend *be, Real *x, size_t n, float s);
void cuda_axpy(Backend *be, Real *y, const Real *x, size_t n, float s);
void cuda_mean_to(Backend *be, double *out, const Real *x, size_t n, double divisor);
void cuda_sum_squares_acc(Backend *be, double *acc, const Real *x, size_t n);
void cuda_clip_scale(Backend *be, float *scale, double *norm, const double *acc, float max_norm);
void cuda_adamw_update_dev(Backend *be, Real *p, const Real *g, Real *m, Real *v, size_t n,
                           float lr, float beta1, float beta2, float eps, float weight_decay,
                           const float *grad_scale, float bias_correction1,
                           float bias_correction2);
/* noise.cu */
void cuda_add_uniform_noise(Backend *be, Real *w, size_t n, uint64_t seed, uint64_t stream,
                            float scale);
/* layernorm.cu */
void cuda_layernorm_forward(Backend *be, Real *out, Real *mean, Real *rstd, const Real *x,
                            const Real *weight, const Real *bias, int N, int C, float eps);
void cuda_layernorm_backward(Backend *be, Real *dx, Real *dweight, Real *dbias, const Real *dout,
                             const Real *x, const Real *weight, const Real *mean,
                             const Real *rstd, int N, int C);
/* gelu.cu */
void cuda_gelu_forward(Backend *be, Real *out, const Real *x, size_t n, GeluKind kind);
void cuda_gelu_backward(Backend *be, Real *dx, const Real *dout, const Real *x, size_t n,
                        GeluKind kind);
/* patchify.cu */
void cuda_patchify(Backend *be, Real *out, const Real *img, int B, int C, int H, int W, int P);
void cuda_bias_forward(Backend *be, Real *y, const Real *bias, int N, int C);
void cuda_bias_backward(Backend *be, Real *dbias, const Real *dy, int N, int C);

#endif
