/* A CPU emulation of the slice of CUDA that kernels/cuda uses, so that the backend's own
 * kernel sources run (slowly, exactly) on a machine without a GPU: tests/meson.build builds
 * the kernels/cuda sources through translate.py (which rewrites launches) as C++ against this header
 * and runs the parity harness on the result. Not a simulator of performance, of memory
 * models or of the GPU's float rounding (expf, rsqrt are the host's).
 *
 * Threads of a block are fibers (ucontext) run one at a time; __syncthreads, __syncwarp and
 * the shuffles are barriers at which the scheduler switches, releasing a warp when all its
 * live lanes wait at a warp barrier and the block when all its live threads wait at a block
 * barrier; anything else is reported as a divergent barrier (a deadlock on the GPU). The
 * order threads run in between barriers is forward, reverse or seeded-random
 * (LORASC_CUDA_EMU_ORDER=forward|reverse|random), so a missing barrier changes results.
 * Blocks run one after another. Launch configurations are checked as the driver does (block
 * size, grid limits, dynamic shared memory above 48 KiB only after cudaFuncSetAttribute);
 * cuBLASLt checks operand alignment against the preference the caller declared. With
 * LORASC_CUDA_EMU_GUARD=1 device memory is unreadable outside emulated device operations, so
 * host code that dereferences a device pointer faults here as it would with a GPU. */
#ifndef LORASC_CUDA_EMU_H
#define LORASC_CUDA_EMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

/* ---- language ---- */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct __nv_bfloat16 {
    uint16_t bits;
};

struct EmuThreadIds {
    dim3 tid, bid, bdim, gdim;
};
extern EmuThreadIds *emu_ids; /* the running fiber's */
#define threadIdx (emu_ids->tid)
#define blockIdx (emu_ids->bid)
#define blockDim (emu_ids->bdim)
#define gridDim (emu_ids->gdim)

void __syncthreads(void);
void __syncwarp(unsigned mask = 0xffffffffu);
void emu_shfl_exchange(const void *mine, void *theirs, size_t bytes, int src_lane);
void *emu_dynamic_shared(void);

template <typename T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    (void)mask;
    T out;
    emu_shfl_exchange(&v, &out, sizeof(T), lane_mask);
    return out;
}

/* fibers never run concurrently, so the atomics are plain read-modify-writes */
inline int atomicCAS(int *p, int compare, int val) {
    const int old = *p;
    if (old == compare) *p = val;
    return old;
}

/* round-to-nearest intrinsics: this file is compiled with -ffp-contract=off */
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __bfloat162float(__nv_bfloat16 h) {
    const uint32_t u = (uint32_t)h.bits << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    __nv_bfloat16 h;
    h.bits = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16); /* NaN handling omitted */
    return h;
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

/* ---- warp matrix multiply-accumulate (nvcuda::wmma of <mma.h>) ----
 * The 16x16x16 shape with bf16 operands and float accumulators. The hardware's placement of a
 * fragment's elements over the lanes is unspecified, so the emulation scrambles it (a different
 * bijection per fragment kind): code that assumes a placement computes wrong results here.
 * Loads and stores check what the hardware requires (a 256-bit aligned pointer, ldm a multiple
 * of 16 bytes) and fail the process with a sentence otherwise; mma_sync is warp-collective (it
 * meets the warp twice: a lane that skips it deadlocks the warp, reported as on the GPU).
 * Products of bf16 values are exact in float and accumulate in float in k order; the tensor
 * cores' own accumulation order and rounding are not modelled (tests hold the kernels to bf16
 * tolerances, not bits). */
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "the emulation has the 16x16x16 shape only");
    enum { num_elements = 8 };
    T x[8];
};

template <typename Use> struct emu_kind;
template <> struct emu_kind<matrix_a> { enum { id = 0 }; };
template <> struct emu_kind<matrix_b> { enum { id = 1 }; };
template <> struct emu_kind<accumulator> { enum { id = 2 }; };
/* element i of `lane`'s fragment of kind `kind`: its position row * 16 + col in the tile */
inline int emu_wmma_pos(int kind, int lane, int i) {
    static const int mult[3] = {37, 101, 181}, add[3] = {11, 0, 77}; /* odd: bijections mod 256 */
    return ((lane * 8 + i) * mult[kind] + add[kind]) & 255;
}
void emu_wmma_check(const void *p, unsigned ldm, size_t elem_bytes, const char *what);
/* the warp's tiles meet: out = c + a b for the calling lane's 8 accumulator elements */
void emu_wmma_mma(float out[8], const float a[8], const float b[8], const float c[8]);
inline float emu_wmma_float(float x) { return x; }
inline float emu_wmma_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename Use, typename T, typename L>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
    emu_wmma_check(p, ldm, sizeof(T), "load_matrix_sync");
    const int lane = (int)(emu_ids->tid.x & 31u);
    for (int i = 0; i < 8; i++) {
        const int pos = emu_wmma_pos(emu_kind<Use>::id, lane, i), r = pos / 16, c = pos % 16;
        f.x[i] = std::is_same<L, row_major>::value ? p[r * ldm + c] : p[c * ldm + r];
    }
}
template <typename T>
void load_matrix_sync(fragment<accumulator, 16, 16, 16, T> &f, const T *p, unsigned ldm,
                      layout_t layout) {
    emu_wmma_check(p, ldm, sizeof(T), "load_matrix_sync");
    const int lane = (int)(emu_ids->tid.x & 31u);
    for (int i = 0; i < 8; i++) {
        const int pos = emu_wmma_pos(2, lane, i), r = pos / 16, c = pos % 16;
        f.x[i] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
    }
}
template <typename T>
void store_matrix_sync(T *p, const fragment<accumulator, 16, 16, 16, T> &f, unsigned ldm,
                       layout_t layout) {
    emu_wmma_check(p, ldm, sizeof(T), "store_matrix_sync");
    const int lane = (int)(emu_ids->tid.x & 31u);
    for (int i = 0; i < 8; i++) {
        const int pos = emu_wmma_pos(2, lane, i), r = pos / 16, c = pos % 16;
        (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[i];
    }
}
template <typename Use, typename T, typename L>
void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, const T &v) {
    for (int i = 0; i < 8; i++) f.x[i] = v;
}
template <typename LA, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
              const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
              const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b,
              const fragment<accumulator, 16, 16, 16, float> &c) {
    float fa[8], fb[8];
    for (int i = 0; i < 8; i++) fa[i] = emu_wmma_float(a.x[i]), fb[i] = emu_wmma_float(b.x[i]);
    emu_wmma_mma(d.x, fa, fb, c.x);
}
} // namespace wmma
} // namespace nvcuda

/* ---- runtime ---- */

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100,
    cudaErrorLaunchFailure = 719,
} cudaError_t;
typedef struct EmuStream *cudaStream_t;
typedef struct EmuEvent *cudaEvent_t;
#define cudaEventDisableTiming 2u
typedef enum cudaMemcpyKind {
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
} cudaMemcpyKind;
typedef enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
#define cudaStreamNonBlocking 1u

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlockOptin;
    int major, minor, multiProcessorCount;
};

const char *cudaGetErrorName(cudaError_t e);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s);
cudaError_t cudaMemset(void *p, int v, size_t bytes);
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s);
cudaError_t cudaFuncSetAttribute(const void *kernel, cudaFuncAttribute attr, int value);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);

/* What the host read back or waited for since the program started (tests count a training
 * step's round trips with these): copies device -> host, and stream synchronisations. */
extern "C" long cuda_emu_reads_to_host(void);
extern "C" long cuda_emu_waits(void);

/* Runs body() as every thread of every block of the grid; 0, or the launch error. */
cudaError_t emu_run_grid(const void *kernel, dim3 grid, dim3 block, size_t smem,
                         void (*body)(void *), void *arg);

template <typename... P, typename... A>
void emu_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                A &&...args) {
    (void)stream;
    struct Call {
        void (*k)(P...);
        std::tuple<P...> params;
        static void run(void *self) {
            Call *c = (Call *)self;
            std::tuple<P...> mine = c->params; /* each thread its own copy of the parameters */
            std::apply(c->k, mine);
        }
    } call{kernel, std::tuple<P...>(std::forward<A>(args)...)};
    emu_run_grid((const void *)kernel, grid, block, smem, &Call::run, &call);
}

/* ---- cuBLAS / cuBLASLt ---- */

typedef enum cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
} cublasStatus_t;
typedef enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType_t;
typedef enum cublasComputeType_t {
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
} cublasComputeType_t;
typedef enum cublasMath_t { CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;
typedef enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef enum cublasLtMatmulDescAttributes_t {
    CUBLASLT_MATMUL_DESC_TRANSA = 3,
    CUBLASLT_MATMUL_DESC_TRANSB = 4,
} cublasLtMatmulDescAttributes_t;
typedef enum cublasLtMatmulPreferenceAttributes_t {
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
} cublasLtMatmulPreferenceAttributes_t;

typedef struct EmuBlas *cublasHandle_t;
typedef struct EmuBlas *cublasLtHandle_t;
typedef struct EmuLtDesc *cublasLtMatmulDesc_t;
typedef struct EmuLtLayout *cublasLtMatrixLayout_t;
typedef struct EmuLtPref *cublasLtMatmulPreference_t;
typedef struct cublasLtMatmulAlgo_t {
    uint32_t align[4]; /* the alignments the algorithm was chosen for: A, B, C, D */
} cublasLtMatmulAlgo_t;
typedef struct cublasLtMatmulHeuristicResult_t {
    cublasLtMatmulAlgo_t algo;
} cublasLtMatmulHeuristicResult_t;

const char *cublasGetStatusName(cublasStatus_t s);
const char *cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo);
size_t cublasLtGetVersion(void);
cublasStatus_t cublasLtCreate(cublasLtHandle_t *h);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h);
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t c,
                                        cudaDataType_t scale);
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d);
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                              cublasLtMatmulDescAttributes_t a, const void *v,
                                              size_t bytes);
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t t,
                                          uint64_t rows, uint64_t cols, int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l);
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p);
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a,
                                                    const void *v, size_t bytes);
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dl,
                                              cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t *results,
                                              int *found);
cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t la, const void *B,
                              cublasLtMatrixLayout_t lb, const void *beta, const void *C,
                              cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes,
                              cudaStream_t s);

#endif
