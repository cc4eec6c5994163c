/* Dense matmul on the CPU: a thin row-major wrapper over OpenBLAS GEMM (sgemm for float
 * builds, dgemm for double). Call it from sequential code only: OpenBLAS runs its own thread
 * pool and nesting it inside an OpenMP region oversubscribes the cores. */
#include <cblas.h>

#include "kernels/cpu/cpu_ops.h"

#ifdef LORASC_REAL_DOUBLE
#define CPU_GEMM cblas_dgemm
#else
#define CPU_GEMM cblas_sgemm
#endif

void cpu_matmul(Backend *be, Real *c, const Real *a, const Real *b, int M, int N, int K,
                int trans_a, int trans_b, Real alpha, Real beta) {
    (void)be;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* empty inner product: c = beta * c (beta = 0 writes zeros, as BLAS does) */
        for (size_t i = 0; i < (size_t)M * N; i++) c[i] = beta == 0 ? 0 : beta * c[i];
        return;
    }
    int lda = trans_a ? M : K; /* a is stored [K,M] when transposed, else [M,K] */
    int ldb = trans_b ? K : N; /* b is stored [N,K] when transposed, else [K,N] */
    CPU_GEMM(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
             trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, a, lda, b, ldb, beta, c, N);
}
