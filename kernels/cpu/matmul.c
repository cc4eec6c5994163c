/* Dense matmul on the CPU. Float builds run oneDNN's matmul primitive (matmul_dnnl.c) except
 * for the shape classes where OpenBLAS measured faster (matmul_use_onednn below); the double
 * build (finite-difference checks) and builds without oneDNN run OpenBLAS (dgemm / sgemm).
 *
 * OpenBLAS path: each OpenMP thread multiplies one slab of c with a single-threaded GEMM
 * (OpenBLAS's OpenMP build runs single-threaded inside a parallel region;
 * backend_cpu_create makes the pthreads build single-threaded). Measured on 2 cores with the
 * pthreads build: its own pool (spinning after each call) next to OpenMP's made a layer's
 * 1024x288x288 GEMMs interleaved with attention 1.7-1.9x slower than this shared pool. With
 * the OpenMP build, slabs and OpenBLAS's own threading run at the same speed. oneDNN threads
 * itself, on the same libgomp pool. */
#include <omp.h>
#include <stdlib.h>

#include <cblas.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/kernel_assert.h"

#ifdef LORASC_REAL_DOUBLE
#define CPU_GEMM cblas_dgemm
#define CPU_GEMV cblas_dgemv
#else
#define CPU_GEMM cblas_sgemm
#define CPU_GEMV cblas_sgemv
#endif

enum {
    MATMUL_SLAB_ALIGN = 16, /* slab edges on multiples of 16 rows/columns (64-byte lines) */
};
#define MATMUL_PARALLEL_MIN_WORK (64.0 * 64.0 * 64.0) /* M*N*K below this: one thread */

/* Start of slab i of n over [0, len), rounded down to MATMUL_SLAB_ALIGN (slab n ends at len). */
static int matmul_slab_start(int len, int i, int n) {
    if (i >= n) return len;
    return (int)((long long)len * i / n) / MATMUL_SLAB_ALIGN * MATMUL_SLAB_ALIGN;
}

/* c[1,N] = alpha * a[1,K] op(b) + beta * c: one row (a decoding step's every matmul), as
 * matrix-vector products over slabs of c's columns, one per OpenMP thread. A row of a is
 * contiguous whether a is stored [1,K] or [K,1]. Measured on 2 cores (SmolLM2's decoding
 * shapes, fastest of 20): 2.5-3.5x faster than oneDNN's matmul with M = 1 (which packs the
 * whole weight for one row: 49152 x 576 in 4.1 ms against 1.7 ms). */
static void matmul_row(Real *c, const Real *a, const Real *b, int N, int K, int trans_b, Real alpha,
                       Real beta) {
    const int nt = omp_get_max_threads();
    if (nt <= 1 || (double)N * K < MATMUL_PARALLEL_MIN_WORK) { /* a parallel region costs more */
        if (trans_b) CPU_GEMV(CblasRowMajor, CblasNoTrans, N, K, alpha, b, K, a, 1, beta, c, 1);
        else CPU_GEMV(CblasRowMajor, CblasTrans, K, N, alpha, b, N, a, 1, beta, c, 1);
        return;
    }
#pragma omp parallel
    {
        const int n = omp_get_num_threads(), id = omp_get_thread_num();
        const int s0 = matmul_slab_start(N, id, n), s1 = matmul_slab_start(N, id + 1, n);
        if (s1 > s0) {
            if (trans_b) /* b [N,K]: c[s0..s1) = b[s0..s1) a */
                CPU_GEMV(CblasRowMajor, CblasNoTrans, s1 - s0, K, alpha, b + (size_t)s0 * K, K, a, 1,
                         beta, c + s0, 1);
            else /* b [K,N]: c[s0..s1) = b[:, s0..s1)^T a */
                CPU_GEMV(CblasRowMajor, CblasTrans, K, s1 - s0, alpha, b + s0, N, a, 1, beta, c + s0, 1);
        }
    }
}

/* The OpenBLAS path (K > 0, M > 0, N > 0). */
static void matmul_blas(Real *c, const Real *a, const Real *b, int M, int N, int K, int trans_a,
                        int trans_b, Real alpha, Real beta) {
    const int lda = trans_a ? M : K; /* a is stored [K,M] when transposed, else [M,K] */
    const int ldb = trans_b ? K : N; /* b is stored [N,K] when transposed, else [K,N] */
    const enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    const enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    if (M == 1) {
        matmul_row(c, a, b, N, K, trans_b, alpha, beta);
        return;
    }
    const int split_rows = M >= N, len = split_rows ? M : N;
    const int nt = omp_get_max_threads();
    if (nt <= 1 || len < 2 * MATMUL_SLAB_ALIGN ||
        (double)M * N * K < MATMUL_PARALLEL_MIN_WORK) {
        CPU_GEMM(CblasRowMajor, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, N);
        return;
    }
    /* Rows m0..m1 of c need rows m0..m1 of op(a) (columns of a when transposed); columns
     * n0..n1 need columns n0..n1 of op(b) (rows of b when transposed). */
#pragma omp parallel
    {
        const int n = omp_get_num_threads(), id = omp_get_thread_num();
        const int s0 = matmul_slab_start(len, id, n), s1 = matmul_slab_start(len, id + 1, n);
        if (s1 > s0) {
            if (split_rows)
                CPU_GEMM(CblasRowMajor, ta, tb, s1 - s0, N, K, alpha,
                         a + (trans_a ? (size_t)s0 : (size_t)s0 * lda), lda, b, ldb, beta,
                         c + (size_t)s0 * N, N);
            else
                CPU_GEMM(CblasRowMajor, ta, tb, M, s1 - s0, K, alpha, a, lda,
                         b + (trans_b ? (size_t)s0 * ldb : (size_t)s0), ldb, beta, c + s0, N);
        }
    }
}

#if CPU_HAVE_DNNL
/* AUTO's choice: oneDNN unless the shape is one where OpenBLAS measured faster. Measured on the
 * 2-core AMD EPYC (Zen 5, AVX-512) with 2 threads, fastest call of many (tests/bench/bench_gemm
 * and RESULTS.md): oneDNN wins every GEMM of the benchmark's training steps, 1.3-2x on the
 * frozen-base and classifier shapes and 1.0-3x on the rank-8 LoRA ones (K = 8, N = 8 or M = 8;
 * the closest, dB = dy^T xa with N = 8 and K = rows, is a tie). OpenBLAS wins only tiny GEMMs:
 * below about 64x32x32 of work oneDNN's fixed cost per call (~1 us with its 2-thread launch)
 * exceeds OpenBLAS's whole single-threaded call (32^3: 0.65 us against 1.0 us; 48^3: 1.9
 * against 1.3). A single row (M = 1: decoding) runs as matrix-vector products (matmul_row).
 * The choice depends on the shape only, so runs stay deterministic. */
#define MATMUL_ONEDNN_MIN_WORK 65536.0 /* M*N*K at and above which oneDNN runs */
static int matmul_use_onednn(int M, int N, int K) {
    return M > 1 && (double)M * N * K >= MATMUL_ONEDNN_MIN_WORK;
}
#endif

/* An empty inner product (K <= 0): c = beta * c, zeros when beta = 0 (as BLAS does); 1 when it
 * applied, so the caller has nothing left to do. */
static int matmul_empty_k(Real *c, int M, int N, int K, Real beta) {
    if (K > 0) return 0;
    for (size_t i = 0; i < (size_t)M * N; i++) c[i] = beta == 0 ? 0 : beta * c[i];
    return 1;
}

void cpu_matmul(Backend *be, Real *c, const Real *a, const Real *b, int M, int N, int K,
                int trans_a, int trans_b, Real alpha, Real beta) {
    CpuCtx *ctx = be->ctx;
    if (M <= 0 || N <= 0) return;
    if (matmul_empty_k(c, M, N, K, beta)) return;
#if CPU_HAVE_DNNL
    if (ctx->dnnl && (ctx->gemm == CPU_GEMM_ONEDNN ||
                      (ctx->gemm == CPU_GEMM_AUTO && matmul_use_onednn(M, N, K)))) {
        if (cpu_dnnl_matmul(ctx->dnnl, &ctx->stats, c, a, b, M, N, K, trans_a, trans_b, alpha,
                            beta) == 0) {
            ctx->stats.onednn_calls++;
            return;
        }
        ctx->stats.onednn_fallbacks++;
    }
#endif
    ctx->stats.openblas_calls++;
    matmul_blas(c, a, b, M, N, K, trans_a, trans_b, alpha, beta);
}

#if CPU_HAVE_DNNL
/* matmul_frozen (kernels/backend.h): oneDNN with w in its blocked layout, packed into *packed
 * on the first call (matmul_dnnl.c), where matmul would take oneDNN; else matmul. */
void cpu_matmul_frozen(Backend *be, Real *c, const Real *a, const Real *w, BackendPacked **packed,
                       int M, int N, int K, int trans_w, Real alpha, Real beta) {
    CpuCtx *ctx = be->ctx;
    if (M <= 0 || N <= 0) return;
    if (matmul_empty_k(c, M, N, K, beta)) return;
    if (ctx->dnnl && (ctx->gemm == CPU_GEMM_ONEDNN ||
                      (ctx->gemm == CPU_GEMM_AUTO && matmul_use_onednn(M, N, K))) &&
        cpu_dnnl_matmul_packed(ctx->dnnl, &ctx->stats, c, a, w, packed, M, N, K, trans_w, alpha,
                               beta) == 0) {
        ctx->stats.onednn_calls++;
        return;
    }
    cpu_matmul(be, c, a, w, M, N, K, 0, trans_w, alpha, beta);
}
#endif

#if CPU_HAVE_DNNL
/* A scratch array of at least n elements of `size` bytes in *buf (capacity *cap), grown on
 * demand; NULL when out of memory. */
static void *bf16_scratch(void **buf, size_t *cap, size_t n, size_t size) {
    if (n <= *cap) return *buf;
    free(*buf);
    *buf = NULL;
    *cap = 0;
    const size_t bytes = (n * size + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes);
    if (!p) return NULL;
    *buf = p;
    *cap = n;
    return p;
}

/* matmul_bf16_rounded (kernels/backend.h): oneDNN's bf16 x bf16 -> f32 matmul. Where oneDNN
 * cannot build that primitive (a processor without the instructions it needs), both operands
 * are widened back to fp32 (exactly: a bf16 is an fp32) and OpenBLAS multiplies them: the
 * products of bf16 values are exact in fp32, so only the order of the fp32 sums differs. */
void cpu_matmul_bf16_rounded(Backend *be, Real *c, const uint16_t *a16, const uint16_t *w, int M,
                             int N, int K, int trans_w, Real alpha, Real beta) {
    CpuCtx *ctx = be->ctx;
    if (M <= 0 || N <= 0) return;
    if (matmul_empty_k(c, M, N, K, beta)) return;
    if (ctx->dnnl && cpu_dnnl_matmul_bf16(ctx->dnnl, &ctx->stats, c, a16, w, M, N, K, trans_w,
                                          alpha, beta) == 0) {
        ctx->stats.onednn_calls++;
        return;
    }
    ctx->stats.onednn_fallbacks++;
    ctx->stats.openblas_calls++;
    const size_t na = (size_t)M * K, nw = (size_t)K * N;
    float *wide = bf16_scratch((void **)&ctx->bf16_wide, &ctx->bf16_wide_cap, na + nw,
                               sizeof *wide);
    KERNEL_ASSERT(wide != NULL); /* the CPU's ops cannot fail: out of memory is fatal here */
    cpu_from_bf16(be, wide, a16, na);
    cpu_from_bf16(be, wide + na, w, nw);
    matmul_blas(c, wide, wide + na, M, N, K, 0, trans_w, alpha, beta);
}

/* a rounded to bf16 into the context's scratch */
static const uint16_t *bf16_round_a(Backend *be, const Real *a, int M, int K) {
    CpuCtx *ctx = be->ctx;
    const size_t na = K > 0 ? (size_t)M * K : 0;
    uint16_t *a16 = bf16_scratch((void **)&ctx->bf16_a, &ctx->bf16_a_cap, na, sizeof *a16);
    KERNEL_ASSERT(na == 0 || a16 != NULL); /* out of memory is fatal in the CPU's ops */
    cpu_to_bf16(be, a16, a, na);
    return a16;
}

/* matmul_bf16 (kernels/backend.h): a rounded to bf16, then matmul_bf16_rounded. */
void cpu_matmul_bf16(Backend *be, Real *c, const Real *a, const uint16_t *w, int M, int N, int K,
                     int trans_w, Real alpha, Real beta) {
    if (M <= 0 || N <= 0) return;
    cpu_matmul_bf16_rounded(be, c, bf16_round_a(be, a, M, K), w, M, N, K, trans_w, alpha, beta);
}

/* matmul_bf16_rounded_frozen (kernels/backend.h): oneDNN with w in its blocked layout, packed
 * into *packed on the first call (matmul_dnnl.c); where oneDNN cannot, as matmul_bf16_rounded. */
void cpu_matmul_bf16_rounded_frozen(Backend *be, Real *c, const uint16_t *a16, const uint16_t *w,
                                    BackendPacked **packed, int M, int N, int K, int trans_w,
                                    Real alpha, Real beta) {
    CpuCtx *ctx = be->ctx;
    if (M <= 0 || N <= 0) return;
    if (matmul_empty_k(c, M, N, K, beta)) return;
    if (ctx->dnnl && cpu_dnnl_matmul_bf16_packed(ctx->dnnl, &ctx->stats, c, a16, w, packed, M, N,
                                                 K, trans_w, alpha, beta) == 0) {
        ctx->stats.onednn_calls++;
        return;
    }
    cpu_matmul_bf16_rounded(be, c, a16, w, M, N, K, trans_w, alpha, beta);
}

void cpu_matmul_bf16_frozen(Backend *be, Real *c, const Real *a, const uint16_t *w,
                            BackendPacked **packed, int M, int N, int K, int trans_w, Real alpha,
                            Real beta) {
    if (M <= 0 || N <= 0) return;
    cpu_matmul_bf16_rounded_frozen(be, c, bf16_round_a(be, a, M, K), w, packed, M, N, K, trans_w,
                                   alpha, beta);
}

void cpu_packed_free(Backend *be, BackendPacked **packed) {
    (void)be;
    cpu_dnnl_packed_free(*packed);
    *packed = NULL;
}
#endif
