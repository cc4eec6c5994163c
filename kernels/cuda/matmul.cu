/* Dense matmul on CUDA through cuBLASLt, the backend's handle and 32 MiB workspace: row-major
 * c = alpha op(a) op(b) + beta c computed as the column-major c^T = op(b)^T op(a)^T, which
 * is the same memory. fp32 in, fp32 out, fp32 compute (CUBLAS_COMPUTE_32F: no tf32 rounding
 * unless LORASC_CUDA_TF32=1, so the CPU and CUDA backends agree to fp32 tolerance).
 * cublasGemmEx on the same workspace covers shapes for which the heuristic offers no algorithm.
 * A bf16 frozen base: matmul_bf16 rounds the fp32 activations to bf16 (the conversion kernel,
 * into the backend's scratch) and multiplies bf16 x bf16 -> fp32 with fp32 accumulation
 * (CUBLAS_COMPUTE_32F, tensor cores); to_bf16 / from_bf16 convert arrays with the rounding of
 * kernels/bf16.h, the CPU's bits. Not here: epilogue fusion. */
#include "kernels/bf16.h"
#include "kernels/cuda/cuda_common.cuh"

/* ---- kernels ---- */

/* c = beta c over n elements: BLAS's answer for an empty inner product (K = 0). */
__global__ void matmul_scale_kernel(float *c, size_t n, float beta) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        c[i] = beta == 0.0f ? 0.0f : beta * c[i];
}

/* dst[i] = bf16(src[i]) (round to nearest even; NaN quiet) */
__global__ void to_bf16_kernel(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = bf16_from_float(src[i]);
}

/* dst[i] = the fp32 value of src[i] */
__global__ void from_bf16_kernel(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = bf16_to_float(src[i]);
}

/* ---- launchers ---- */

/* The largest power of two (up to 256) that divides the address: cuBLASLt assumes 256-byte
 * aligned operands unless told otherwise, and the model passes offsets into its buffers. */
static uint32_t matmul_alignment(const void *p) {
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p % a) != 0) a /= 2;
    return a;
}

/* Column-major D[m,n] = alpha opA(A)[m,k] opB(B)[k,n] + beta C, C = D (ld = m). */
static int cuda_gemm(CudaCtx *ctx, void *d, cudaDataType_t dtype, const void *A,
                     cudaDataType_t atype, int lda, int transa, const void *B,
                     cudaDataType_t btype, int ldb, int transb, int m, int n, int k, float alpha,
                     float beta) {
    /* tf32 applies to fp32 operands; bf16 ones always compute in fp32 */
    const cublasComputeType_t compute = ctx->tf32 && atype == CUDA_R_32F
                                            ? CUBLAS_COMPUTE_32F_FAST_TF32
                                            : CUBLAS_COMPUTE_32F;
    const cublasOperation_t opa = transa ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opb = transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0, ok = 1;
    const size_t ws = CUDA_WORKSPACE_BYTES;
    const uint32_t al_a = matmul_alignment(A), al_b = matmul_alignment(B),
                   al_d = matmul_alignment(d);
    /* stored shapes: an operand used transposed is stored [k, m] (column-major) */
    ok = CUBLAS_OK(ctx, cublasLtMatmulDescCreate(&desc, compute, CUDA_R_32F)) &&
         CUBLAS_OK(ctx, cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa,
                                                       sizeof opa)) &&
         CUBLAS_OK(ctx, cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb,
                                                       sizeof opb)) &&
         CUBLAS_OK(ctx, cublasLtMatrixLayoutCreate(&la, atype, transa ? k : m, transa ? m : k,
                                                   lda)) &&
         CUBLAS_OK(ctx, cublasLtMatrixLayoutCreate(&lb, btype, transb ? n : k, transb ? k : n,
                                                   ldb)) &&
         CUBLAS_OK(ctx, cublasLtMatrixLayoutCreate(&ld, dtype, m, n, m)) &&
         CUBLAS_OK(ctx, cublasLtMatmulPreferenceCreate(&pref)) &&
         CUBLAS_OK(ctx, cublasLtMatmulPreferenceSetAttribute(
                            pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws)) &&
         CUBLAS_OK(ctx, cublasLtMatmulPreferenceSetAttribute(
                            pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                            sizeof al_a)) &&
         CUBLAS_OK(ctx, cublasLtMatmulPreferenceSetAttribute(
                            pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                            sizeof al_b)) &&
         CUBLAS_OK(ctx, cublasLtMatmulPreferenceSetAttribute(
                            pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d,
                            sizeof al_d)) &&
         CUBLAS_OK(ctx, cublasLtMatmulPreferenceSetAttribute(
                            pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d,
                            sizeof al_d));
    if (ok) {
        /* no algorithm for this shape is not an error: the cuBLAS path below takes it */
        cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(ctx->lt, desc, la, lb, ld, ld, pref, 1,
                                                          &heur, &found);
        if (s != CUBLAS_STATUS_SUCCESS && s != CUBLAS_STATUS_NOT_SUPPORTED)
            ok = CUBLAS_OK(ctx, s);
    }
    if (ok && found > 0)
        ok = CUBLAS_OK(ctx, cublasLtMatmul(ctx->lt, desc, &alpha, A, la, B, lb, &beta, d, ld, d,
                                           ld, &heur.algo, ctx->workspace, ws, ctx->stream));
    else if (ok)
        ok = CUBLAS_OK(ctx, cublasGemmEx(ctx->blas, opa, opb, m, n, k, &alpha, A, atype, lda, B,
                                         btype, ldb, &beta, d, dtype, m, compute,
                                         CUBLAS_GEMM_DEFAULT));
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (desc) cublasLtMatmulDescDestroy(desc);
    return ok;
}

/* An empty inner product (K <= 0): c = beta * c; 1 when it applied (the caller is done). */
static int matmul_empty_k(CudaCtx *ctx, Real *c, int M, int N, int K, Real beta) {
    if (K > 0) return 0;
    const size_t n = (size_t)M * N;
    matmul_scale_kernel<<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(c, n,
                                                                                         beta);
    CUDA_LAUNCHED(ctx);
    return 1;
}

/* Row-major c[M,N] = alpha a16[M,K] op(w)[K,N] + beta c with bf16 operands and fp32 c: the
 * column-major c^T = op(w)^T a16^T (as cuda_matmul). */
static void gemm_bf16(CudaCtx *ctx, Real *c, const uint16_t *a16, const uint16_t *w, int M, int N,
                      int K, int trans_w, Real alpha, Real beta) {
    const int ldw = trans_w ? K : N;
    cuda_gemm(ctx, c, CUDA_R_32F, w, CUDA_R_16BF, ldw, trans_w, a16, CUDA_R_16BF, K, 0, N, M, K,
              alpha, beta);
}

/* Row-major c[M,N] = alpha op(a) op(b) + beta c is column-major c^T[N,M] = op(b)^T op(a)^T:
 * b's memory is the first operand and a's the second, with the same transposition flags
 * and leading dimensions as the CPU's row-major call (see kernels/cpu/matmul.c). */
void cuda_matmul(Backend *be, Real *c, const Real *a, const Real *b, int M, int N, int K,
                 int trans_a, int trans_b, Real alpha, Real beta) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || M <= 0 || N <= 0) return;
    if (matmul_empty_k(ctx, c, M, N, K, beta)) return;
    const int lda = trans_a ? M : K, ldb = trans_b ? K : N;
    cuda_gemm(ctx, c, CUDA_R_32F, b, CUDA_R_32F, ldb, trans_b, a, CUDA_R_32F, lda, trans_a, N, M,
              K, alpha, beta);
}

void cuda_to_bf16(Backend *be, uint16_t *dst, const Real *src, size_t n) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0) return;
    to_bf16_kernel<<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(dst, src, n);
    CUDA_LAUNCHED(ctx);
}

void cuda_from_bf16(Backend *be, Real *dst, const uint16_t *src, size_t n) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0) return;
    from_bf16_kernel<<<cuda_grid_for(ctx, n, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(dst, src,
                                                                                        n);
    CUDA_LAUNCHED(ctx);
}

/* Row-major c[M,N] = alpha bf16(a)[M,K] op(w)[K,N] + beta c: a rounded into the scratch, then
 * gemm_bf16. */
void cuda_matmul_bf16(Backend *be, Real *c, const Real *a, const uint16_t *w, int M, int N, int K,
                      int trans_w, Real alpha, Real beta) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || M <= 0 || N <= 0) return;
    if (matmul_empty_k(ctx, c, M, N, K, beta)) return;
    const size_t na = (size_t)M * K;
    uint16_t *a16 = (uint16_t *)cuda_scratch(ctx, na * sizeof(uint16_t));
    if (!a16) return; /* the failure is recorded */
    to_bf16_kernel<<<cuda_grid_for(ctx, na, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(a16, a, na);
    if (!CUDA_LAUNCHED(ctx)) return;
    gemm_bf16(ctx, c, a16, w, M, N, K, trans_w, alpha, beta);
}

/* The same with a already bf16 (backend.h, matmul_bf16_rounded): no conversion pass. */
void cuda_matmul_bf16_rounded(Backend *be, Real *c, const uint16_t *a16, const uint16_t *w, int M,
                              int N, int K, int trans_w, Real alpha, Real beta) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || M <= 0 || N <= 0) return;
    if (matmul_empty_k(ctx, c, M, N, K, beta)) return;
    gemm_bf16(ctx, c, a16, w, M, N, K, trans_w, alpha, beta);
}
