/* The CPU emulation of CUDA behind kernels/cuda/emu/cuda_emu.h: device memory is host
 * memory, streams are synchronous, blocks run one after another and a block's threads are
 * fibers switched at barriers (see the header for what it checks and what it does not). */
#include "kernels/cuda/emu/cuda_emu.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <map>
#include <vector>

/* ---- the device-memory guard (LORASC_CUDA_EMU_GUARD=1) ----
 * Device memory is host memory here, so host code that reads a device pointer (a bug that
 * faults on a GPU) would pass unseen. With the guard on, device memory comes from one
 * reserved stretch of address space, inaccessible (PROT_NONE) except while an emulated device
 * operation runs (a kernel, a copy, a memset, a cuBLAS call): a host dereference of device
 * memory then faults here too. One mprotect of the stretch's used part per operation and
 * direction; allocations are whole pages, first fit, freed pages returned to the system. */
static char *emu_guard_base;                   /* the reserved stretch */
static size_t emu_guard_top;                   /* bytes from base ever handed out */
static std::map<size_t, size_t> emu_guard_free; /* offset -> bytes, coalesced, below top */
static std::map<size_t, size_t> emu_guard_used; /* offset -> bytes */
static int emu_guard_depth;
static const size_t EMU_GUARD_RESERVE = (size_t)64 << 30; /* address space, not memory */

static bool emu_guard_on(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("LORASC_CUDA_EMU_GUARD");
        on = e && e[0] && strcmp(e, "0") != 0;
    }
    return on != 0;
}

static void emu_guard_protect(int prot) {
    if (emu_guard_top && mprotect(emu_guard_base, emu_guard_top, prot) != 0) {
        perror("cuda_emu: mprotect");
        abort();
    }
}

/* Device memory is reachable while one of these lives (they nest). */
struct EmuDeviceAccess {
    EmuDeviceAccess() {
        if (emu_guard_depth++ == 0) emu_guard_protect(PROT_READ | PROT_WRITE);
    }
    ~EmuDeviceAccess() {
        if (--emu_guard_depth == 0) emu_guard_protect(PROT_NONE);
    }
    EmuDeviceAccess(const EmuDeviceAccess &) = delete;
    EmuDeviceAccess &operator=(const EmuDeviceAccess &) = delete;
};

static void *emu_guard_alloc(size_t bytes) {
    static const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (!emu_guard_base) {
        void *m = mmap(NULL, EMU_GUARD_RESERVE, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) return NULL;
        emu_guard_base = (char *)m;
    }
    const size_t len = (bytes ? (bytes + page - 1) / page : 1) * page;
    size_t at = emu_guard_top;
    for (std::map<size_t, size_t>::iterator f = emu_guard_free.begin(); f != emu_guard_free.end();
         ++f)
        if (f->second >= len) { /* first fit */
            at = f->first;
            if (f->second > len) emu_guard_free[at + len] = f->second - len;
            emu_guard_free.erase(f);
            break;
        }
    if (at == emu_guard_top) {
        if (emu_guard_top + len > EMU_GUARD_RESERVE) return NULL;
        emu_guard_top += len;
    }
    emu_guard_used[at] = len;
    char *p = emu_guard_base + at;
    if (mprotect(p, len, PROT_READ | PROT_WRITE) != 0) abort();
    memset(p, 0xa5, bytes); /* device memory starts as garbage too */
    if (emu_guard_depth == 0 && mprotect(p, len, PROT_NONE) != 0) abort();
    return p;
}

/* 1 when p was a guarded allocation (now freed). */
static int emu_guard_release(void *p) {
    if (!emu_guard_base || (char *)p < emu_guard_base ||
        (char *)p >= emu_guard_base + emu_guard_top)
        return 0;
    const size_t at = (size_t)((char *)p - emu_guard_base);
    std::map<size_t, size_t>::iterator u = emu_guard_used.find(at);
    if (u == emu_guard_used.end()) return 0;
    size_t off = at, len = u->second;
    emu_guard_used.erase(u);
    madvise(emu_guard_base + off, len, MADV_DONTNEED); /* the memory goes back */
    std::map<size_t, size_t>::iterator next = emu_guard_free.lower_bound(off);
    if (next != emu_guard_free.end() && next->first == off + len) { /* coalesce forward */
        len += next->second;
        emu_guard_free.erase(next);
    }
    std::map<size_t, size_t>::iterator prev = emu_guard_free.lower_bound(off);
    if (prev != emu_guard_free.begin()) { /* and backward */
        --prev;
        if (prev->first + prev->second == off) {
            off = prev->first;
            len += prev->second;
            emu_guard_free.erase(prev);
        }
    }
    emu_guard_free[off] = len;
    return 1;
}

/* ---- the thread model ---- */

enum { EMU_STACK = 256 * 1024, EMU_MAX_THREADS = 1024 };
enum EmuState { EMU_RUN, EMU_WARP_WAIT, EMU_BLOCK_WAIT, EMU_DONE };

struct EmuFiber {
    ucontext_t ctx;
    EmuThreadIds ids;
    EmuState state;
    char *stack;
};

EmuThreadIds *emu_ids;
static EmuFiber *emu_cur;
static ucontext_t emu_sched;
static void (*emu_body)(void *);
static void *emu_arg;
static void *emu_smem;
static uint64_t emu_shfl[EMU_MAX_THREADS]; /* one slot per thread for the shuffles */
static std::vector<EmuFiber> emu_fibers;
static struct EmuStacks { /* the fibers' stacks live as long as the process */
    ~EmuStacks() {
        for (EmuFiber &f : emu_fibers) free(f.stack);
    }
} emu_stacks;
static cudaError_t emu_last_error = cudaSuccess;
static std::map<const void *, int> emu_smem_limit; /* cudaFuncSetAttribute's raises */

static void emu_wait(EmuState kind) {
    emu_cur->state = kind;
    swapcontext(&emu_cur->ctx, &emu_sched);
}

void __syncthreads(void) { emu_wait(EMU_BLOCK_WAIT); }
void __syncwarp(unsigned mask) {
    (void)mask;
    emu_wait(EMU_WARP_WAIT);
}

/* every lane publishes, the warp meets, each reads its source lane, the warp meets again
 * (so no slot is overwritten before it is read) */
void emu_shfl_exchange(const void *mine, void *theirs, size_t bytes, int lane_mask) {
    const unsigned t = emu_ids->tid.x, src = (t & ~31u) | ((t & 31u) ^ (unsigned)lane_mask);
    memcpy(&emu_shfl[t], mine, bytes);
    emu_wait(EMU_WARP_WAIT);
    memcpy(theirs, &emu_shfl[src < emu_fibers.size() ? src : t], bytes);
    emu_wait(EMU_WARP_WAIT);
}

void *emu_dynamic_shared(void) { return emu_smem; }

/* ---- wmma ---- */

void nvcuda::wmma::emu_wmma_check(const void *p, unsigned ldm, size_t elem_bytes, const char *what) {
    if ((uintptr_t)p % 32 != 0 || (ldm * elem_bytes) % 16 != 0) {
        fprintf(stderr,
                "cuda_emu: wmma::%s with pointer %p and ldm %u (%zu-byte elements): the pointer "
                "must be 256-bit aligned and ldm a multiple of 16 bytes\n",
                what, p, ldm, elem_bytes);
        abort();
    }
}

/* one slot per warp for the three tiles; a warp's lanes meet before and after reading them */
static float emu_wmma_tiles[EMU_MAX_THREADS / 32][3][256];

void nvcuda::wmma::emu_wmma_mma(float out[8], const float a[8], const float b[8], const float c[8]) {
    const unsigned t = emu_ids->tid.x;
    const int lane = (int)(t & 31u);
    float(*tile)[256] = emu_wmma_tiles[t / 32];
    for (int i = 0; i < 8; i++) {
        tile[0][emu_wmma_pos(0, lane, i)] = a[i];
        tile[1][emu_wmma_pos(1, lane, i)] = b[i];
        tile[2][emu_wmma_pos(2, lane, i)] = c[i];
    }
    emu_wait(EMU_WARP_WAIT);
    float d[8];
    for (int i = 0; i < 8; i++) {
        const int pos = emu_wmma_pos(2, lane, i), r = pos / 16, col = pos % 16;
        float acc = tile[2][pos];
        for (int kk = 0; kk < 16; kk++) acc += tile[0][r * 16 + kk] * tile[1][kk * 16 + col];
        d[i] = acc;
    }
    emu_wait(EMU_WARP_WAIT);
    memcpy(out, d, sizeof d); /* out may be c: written only after every lane has read */
}

static void emu_entry(void) {
    emu_body(emu_arg);
    emu_cur->state = EMU_DONE;
    swapcontext(&emu_cur->ctx, &emu_sched);
}

/* the order fibers run in between barriers (LORASC_CUDA_EMU_ORDER) */
static void emu_order(std::vector<unsigned> &order, unsigned n, uint64_t *rng) {
    static int mode = -1;
    if (mode < 0) {
        const char *e = getenv("LORASC_CUDA_EMU_ORDER");
        mode = !e || strcmp(e, "forward") == 0 ? 0 : strcmp(e, "reverse") == 0 ? 1 : 2;
    }
    order.resize(n);
    for (unsigned i = 0; i < n; i++) order[i] = mode == 1 ? n - 1 - i : i;
    if (mode == 2)
        for (unsigned i = n - 1; i > 0; i--) { /* Fisher-Yates on an xorshift stream */
            *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
            std::swap(order[i], order[*rng % (i + 1)]);
        }
}

/* Runs one block to completion; returns 0, or -1 on a divergent barrier. */
static int emu_run_block(unsigned nthreads, uint64_t *rng) {
    std::vector<unsigned> order;
    for (;;) {
        emu_order(order, nthreads, rng);
        for (unsigned i : order) {
            EmuFiber *f = &emu_fibers[i];
            if (f->state != EMU_RUN) continue;
            emu_cur = f;
            emu_ids = &f->ids;
            swapcontext(&emu_sched, &f->ctx);
        }
        /* release a warp whose live lanes all wait at a warp barrier, else the block */
        int released = 0, live = 0;
        for (unsigned w0 = 0; w0 < nthreads; w0 += 32) {
            int waiting = 0, alive = 0;
            for (unsigned i = w0; i < w0 + 32 && i < nthreads; i++) {
                alive += emu_fibers[i].state != EMU_DONE;
                waiting += emu_fibers[i].state == EMU_WARP_WAIT;
            }
            live += alive;
            if (alive && waiting == alive) {
                for (unsigned i = w0; i < w0 + 32 && i < nthreads; i++)
                    emu_fibers[i].state = EMU_RUN;
                released = 1;
            }
        }
        if (!live) return 0;
        if (released) continue;
        int at_block = 0;
        for (unsigned i = 0; i < nthreads; i++) at_block += emu_fibers[i].state == EMU_BLOCK_WAIT;
        if (at_block != live) return -1; /* some wait at a warp barrier, others at the block's */
        for (unsigned i = 0; i < nthreads; i++)
            if (emu_fibers[i].state == EMU_BLOCK_WAIT) emu_fibers[i].state = EMU_RUN;
    }
}

static cudaError_t emu_run_grid_guarded(const void *kernel, dim3 grid, dim3 block, size_t smem,
                                       void (*body)(void *), void *arg);

/* (the guard lives out here: the function that calls getcontext holds no object) */
cudaError_t emu_run_grid(const void *kernel, dim3 grid, dim3 block, size_t smem,
                         void (*body)(void *), void *arg) {
    EmuDeviceAccess access;
    return emu_run_grid_guarded(kernel, grid, block, smem, body, arg);
}

static cudaError_t emu_run_grid_guarded(const void *kernel, dim3 grid, dim3 block, size_t smem,
                                        void (*body)(void *), void *arg) {
    const unsigned nthreads = block.x * block.y * block.z;
    std::map<const void *, int>::const_iterator lim = emu_smem_limit.find(kernel);
    const size_t smem_max = lim != emu_smem_limit.end() ? (size_t)lim->second : 48 * 1024;
    if (nthreads == 0 || nthreads > EMU_MAX_THREADS || block.z > 64 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.y > 65535 || grid.z > 65535 || smem > smem_max) {
        fprintf(stderr,
                "cuda_emu: invalid launch: grid (%u,%u,%u) block (%u,%u,%u) smem %zu (limit %zu)\n",
                grid.x, grid.y, grid.z, block.x, block.y, block.z, smem, smem_max);
        emu_last_error = cudaErrorInvalidConfiguration;
        return emu_last_error;
    }
    if (emu_fibers.size() < nthreads) {
        size_t old = emu_fibers.size();
        emu_fibers.resize(nthreads);
        for (size_t i = old; i < nthreads; i++) emu_fibers[i].stack = (char *)malloc(EMU_STACK);
    }
    emu_body = body;
    emu_arg = arg;
    emu_smem = smem ? aligned_alloc(128, (smem + 127) / 128 * 128) : NULL;
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                if (emu_smem) memset(emu_smem, 0xff, smem); /* shared memory starts as garbage */
                for (unsigned t = 0; t < nthreads; t++) {
                    EmuFiber *f = &emu_fibers[t];
                    f->ids.tid = dim3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
                    f->ids.bid = dim3(bx, by, bz);
                    f->ids.bdim = block;
                    f->ids.gdim = grid;
                    f->state = EMU_RUN;
                    getcontext(&f->ctx);
                    f->ctx.uc_stack.ss_sp = f->stack;
                    f->ctx.uc_stack.ss_size = EMU_STACK;
                    f->ctx.uc_link = &emu_sched;
                    makecontext(&f->ctx, emu_entry, 0);
                }
                if (emu_run_block(nthreads, &rng) != 0) {
                    fprintf(stderr,
                            "cuda_emu: divergent barrier in block (%u,%u,%u): some threads "
                            "wait at __syncthreads, others at a warp barrier\n",
                            bx, by, bz);
                    free(emu_smem);
                    emu_last_error = cudaErrorLaunchFailure;
                    return emu_last_error;
                }
            }
    free(emu_smem);
    emu_smem = NULL;
    return cudaSuccess;
}

/* ---- runtime ---- */

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess:
        return "cudaSuccess";
    case cudaErrorInvalidValue:
        return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
        return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
        return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice:
        return "cudaErrorNoDevice";
    default:
        return "cudaErrorLaunchFailure";
    }
}
const char *cudaGetErrorString(cudaError_t e) {
    return e == cudaSuccess ? "no error" : "emulated error";
}
cudaError_t cudaGetLastError(void) {
    cudaError_t e = emu_last_error;
    emu_last_error = cudaSuccess;
    return e;
}
cudaError_t cudaGetDeviceCount(int *count) { return *count = 1, cudaSuccess; }
cudaError_t cudaGetDevice(int *device) { return *device = 0, cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
    (void)device;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "lorasc CPU emulation of an sm_90 device");
    p->totalGlobalMem = (size_t)8 << 30;
    p->sharedMemPerBlockOptin = 227 * 1024;
    p->major = 9;
    p->multiProcessorCount = 4; /* few: grid-stride loops then take several turns */
    return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *v) { return *v = 0, cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int *v) { return *v = 0, cudaSuccess; }
struct EmuStream {
    int unused;
};
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    (void)flags;
    *s = new EmuStream();
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) { return delete s, cudaSuccess; }
static long emu_reads_to_host, emu_waits;
extern "C" long cuda_emu_reads_to_host(void) { return emu_reads_to_host; }
extern "C" long cuda_emu_waits(void) { return emu_waits; }
cudaError_t cudaStreamSynchronize(cudaStream_t s) { return (void)s, emu_waits++, cudaSuccess; }
struct EmuEvent {
    int recorded;
};
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    (void)flags;
    *e = new EmuEvent();
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) { return delete e, cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    (void)s;
    e->recorded = 1;
    return cudaSuccess;
}
/* work runs as it is issued here, so a recorded event has always completed (not counted as a
 * wait: it drains nothing, and on a GPU it blocks only a host that runs that far ahead) */
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    e->recorded = 0;
    return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t bytes) {
    if (emu_guard_on()) {
        *p = emu_guard_alloc(bytes);
        return *p ? cudaSuccess : cudaErrorMemoryAllocation;
    }
    *p = aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (*p) memset(*p, 0xa5, bytes); /* device memory starts as garbage too */
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void *p) {
    if (!p || emu_guard_release(p)) return cudaSuccess;
    return free(p), cudaSuccess;
}
/* pinned host memory is the host's: never guarded */
cudaError_t cudaMallocHost(void **p, size_t bytes) {
    *p = aligned_alloc(256, (bytes + 255) / 256 * 256);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void *p) { return free(p), cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *free_b = *total_b = (size_t)8 << 30;
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if (kind == cudaMemcpyDeviceToHost) emu_reads_to_host++;
    EmuDeviceAccess access;
    memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s) {
    (void)s;
    return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void *p, int v, size_t bytes) {
    EmuDeviceAccess access;
    return memset(p, v, bytes), cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s) {
    (void)s;
    return cudaMemset(p, v, bytes);
}
cudaError_t cudaFuncSetAttribute(const void *kernel, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > 227 * 1024)
        return cudaErrorInvalidValue;
    emu_smem_limit[kernel] = value;
    return cudaSuccess;
}

/* ---- cuBLAS / cuBLASLt: column-major GEMM in double, fp32 out ---- */

struct EmuBlas {
    int unused;
};
struct EmuLtDesc {
    cublasOperation_t ta, tb;
    cublasComputeType_t compute;
};
struct EmuLtLayout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};
struct EmuLtPref {
    uint32_t align[4];
};

const char *cublasGetStatusName(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS:
        return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE:
        return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED:
        return "CUBLAS_STATUS_NOT_SUPPORTED";
    default:
        return "CUBLAS_STATUS_NOT_INITIALIZED";
    }
}
const char *cublasGetStatusString(cublasStatus_t s) { return s ? "emulated error" : "success"; }
cublasStatus_t cublasCreate(cublasHandle_t *h) { return *h = new EmuBlas(), CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t h) { return delete h, CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    return (void)h, (void)s, CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes) {
    return (void)h, (void)ws, (void)bytes, CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
    return (void)h, (void)mode, CUBLAS_STATUS_SUCCESS;
}

/* Element i of an operand stored as `type` (fp32, or bf16: the upper half of an fp32). */
static double emu_elem(const void *p, cudaDataType_t type, size_t i) {
    if (type == CUDA_R_16BF) {
        const uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    return ((const float *)p)[i];
}

/* D[m,n] = alpha op(A) op(B) + beta C, column-major, A and B fp32 or bf16, C and D fp32;
 * sums in double */
static void emu_gemm(int ta, int tb, int m, int n, int k, float alpha, const void *A,
                     cudaDataType_t at, int lda, const void *B, cudaDataType_t bt, int ldb,
                     float beta, const float *C, float *D, int ldd) {
    std::vector<float> out((size_t)m * n);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += emu_elem(A, at, ta ? (size_t)i * lda + p : (size_t)p * lda + i) *
                     emu_elem(B, bt, tb ? (size_t)p * ldb + j : (size_t)j * ldb + p);
            const double c = beta == 0 ? 0.0 : (double)beta * C[(size_t)j * ldd + i];
            out[(size_t)j * m + i] = (float)(alpha * s + c);
        }
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) D[(size_t)j * ldd + i] = out[(size_t)j * m + i];
}

static int emu_operand_type(cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16BF; }

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo) {
    (void)h, (void)algo;
    EmuDeviceAccess access;
    /* bf16 operands need fp32 compute (cuBLAS refuses tf32 with them) */
    if (!emu_operand_type(at) || at != bt || ct != CUDA_R_32F || ldc < m ||
        lda < (ta ? k : m) || ldb < (tb ? n : k) ||
        (at == CUDA_R_16BF && compute != CUBLAS_COMPUTE_32F))
        return CUBLAS_STATUS_INVALID_VALUE;
    emu_gemm(ta, tb, m, n, k, *(const float *)alpha, A, at, lda, B, bt, ldb,
             *(const float *)beta, (const float *)C, (float *)C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

size_t cublasLtGetVersion(void) { return 0; }
cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    return *h = new EmuBlas(), CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) { return delete h, CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t c,
                                        cudaDataType_t scale) {
    (void)scale;
    *d = new EmuLtDesc{CUBLAS_OP_N, CUBLAS_OP_N, c};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    return delete d, CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                              cublasLtMatmulDescAttributes_t a, const void *v,
                                              size_t bytes) {
    if (bytes != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
    if (a == CUBLASLT_MATMUL_DESC_TRANSA)
        d->ta = *(const cublasOperation_t *)v;
    else if (a == CUBLASLT_MATMUL_DESC_TRANSB)
        d->tb = *(const cublasOperation_t *)v;
    else
        return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t t,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
    if (ld < (int64_t)rows) return CUBLAS_STATUS_INVALID_VALUE;
    *l = new EmuLtLayout{t, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    return delete l, CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new EmuLtPref{{256, 256, 256, 256}}; /* cuBLASLt's default: 256-byte operands */
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    return delete p, CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a,
                                                    const void *v, size_t bytes) {
    if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES)
        return bytes == sizeof(size_t) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
    if (a < CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES ||
        a > CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES || bytes != sizeof(uint32_t))
        return CUBLAS_STATUS_INVALID_VALUE;
    p->align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = *(const uint32_t *)v;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dl,
                                              cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t *results,
                                              int *found) {
    (void)h, (void)d, (void)a, (void)b, (void)c, (void)dl;
    if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(results[0].algo.align, p->align, sizeof p->align);
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

static int emu_aligned(const void *ptr, uint32_t a) { return a && (uintptr_t)ptr % a == 0; }

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t la, const void *B,
                              cublasLtMatrixLayout_t lb, const void *beta, const void *C,
                              cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes,
                              cudaStream_t s) {
    (void)h, (void)ws, (void)ws_bytes, (void)s;
    EmuDeviceAccess access;
    /* an algorithm chosen for more alignment than the operands have would fault on a GPU */
    if (!emu_aligned(A, algo->align[0]) || !emu_aligned(B, algo->align[1]) ||
        !emu_aligned(C, algo->align[2]) || !emu_aligned(D, algo->align[3])) {
        fprintf(stderr,
                "cuda_emu: cublasLtMatmul operand less aligned than the preference declared\n");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    const int m = (int)ld->rows, n = (int)ld->cols, ta = d->ta == CUBLAS_OP_T,
              tb = d->tb == CUBLAS_OP_T;
    const int k = (int)(ta ? la->rows : la->cols);
    if ((uint64_t)(ta ? la->cols : la->rows) != (uint64_t)m ||
        (tb ? lb->cols : lb->rows) != (uint64_t)k || (tb ? lb->rows : lb->cols) != (uint64_t)n ||
        lc->rows != ld->rows || lc->cols != ld->cols || lc->ld != ld->ld)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!emu_operand_type(la->type) || la->type != lb->type || lc->type != CUDA_R_32F ||
        ld->type != CUDA_R_32F || (la->type == CUDA_R_16BF && d->compute != CUBLAS_COMPUTE_32F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    emu_gemm(ta, tb, m, n, k, *(const float *)alpha, A, la->type, (int)la->ld, B, lb->type,
             (int)lb->ld, *(const float *)beta, (const float *)C, (float *)D, (int)ld->ld);
    return CUBLAS_STATUS_SUCCESS;
}
