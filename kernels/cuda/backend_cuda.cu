/* The CUDA backend: context (stream, cuBLASLt + cuBLAS handles sharing a 32 MiB workspace,
 * scratch, the sticky error), device memory, and the Backend struct filled with the ops of
 * the other kernels/cuda files. Not the ops themselves; not multi-GPU (one device, the
 * current one, one stream). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

/* ---- errors ---- */

/* "kernels/cuda/x.cu" out of whatever path the build passed to the compiler. */
static const char *cuda_short_path(const char *file) {
    const char *k = strstr(file, "kernels/");
    return k ? k : file;
}

CudaCtx *cuda_begin(Backend *be, const char *func) {
    CudaCtx *ctx = (CudaCtx *)be->ctx;
    if (ctx->failed) return NULL;
    ctx->op = strncmp(func, "cuda_", 5) == 0 ? func + 5 : func;
    ctx->last_op = ctx->op;
    return ctx;
}

void cuda_fail(CudaCtx *ctx, const char *file, int line, const char *fmt, ...) {
    if (ctx->failed) return; /* the first failure is the one worth reading */
    ctx->failed = 1;
    char cause[CUDA_ERROR_CHARS / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cause, sizeof cause, fmt, ap);
    va_end(ap);
    const char *op = ctx->op ? ctx->op : "backend";
    if (line > 0) /* line 0: a bad input flagged inside a kernel, known by its file only */
        snprintf(ctx->error, sizeof ctx->error, "cuda: %s failed at %s:%d: %s", op,
                 cuda_short_path(file), line, cause);
    else
        snprintf(ctx->error, sizeof ctx->error, "cuda: %s failed in %s: %s", op,
                 cuda_short_path(file), cause);
}

/* The called function's name out of the stringified call ("cudaMemcpyAsync(dst, ..." ->
 * "cudaMemcpyAsync"). */
static void cuda_call_name(char *buf, size_t size, const char *call) {
    size_t n = strcspn(call, "(");
    if (n >= size) n = size - 1;
    memcpy(buf, call, n);
    buf[n] = '\0';
}

int cuda_ok(CudaCtx *ctx, cudaError_t e, const char *call, const char *file, int line) {
    if (e == cudaSuccess) return 1;
    char name[64];
    cuda_call_name(name, sizeof name, call);
    cuda_fail(ctx, file, line, "%s returned %s (%s)", name, cudaGetErrorName(e),
              cudaGetErrorString(e));
    return 0;
}

int cublas_ok(CudaCtx *ctx, cublasStatus_t s, const char *call, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return 1;
    char name[64];
    cuda_call_name(name, sizeof name, call);
    cuda_fail(ctx, file, line, "%s returned %s (%s)", name, cublasGetStatusName(s),
              cublasGetStatusString(s));
    return 0;
}

int cuda_launched(CudaCtx *ctx, const char *file, int line) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
        cuda_fail(ctx, file, line, "kernel launch: %s (%s)", cudaGetErrorName(e),
                  cudaGetErrorString(e));
        return 0;
    }
    if (!ctx->sync_each_op) return 1;
    e = cudaStreamSynchronize(ctx->stream);
    if (e != cudaSuccess) {
        cuda_fail(ctx, file, line, "kernel execution: %s (%s)", cudaGetErrorName(e),
                  cudaGetErrorString(e));
        return 0;
    }
    return 1;
}

void *cuda_scratch(CudaCtx *ctx, size_t bytes) {
    if (bytes <= ctx->scratch_bytes) return ctx->scratch;
    size_t want = ctx->scratch_bytes ? ctx->scratch_bytes : (size_t)1 << 20;
    while (want < bytes) want *= 2;
    /* cudaFree waits for the device, so no op still reads the old buffer */
    if (ctx->scratch && !CUDA_OK(ctx, cudaFree(ctx->scratch))) return NULL;
    ctx->scratch = NULL;
    ctx->scratch_bytes = 0;
    if (!CUDA_OK(ctx, cudaMalloc(&ctx->scratch, want))) return NULL;
    ctx->scratch_bytes = want;
    return ctx->scratch;
}

int cuda_smem_optin(CudaCtx *ctx, const void *kernel, size_t bytes, const char *file, int line) {
    if (bytes <= 48 * 1024) return 1;
    if (bytes > ctx->smem_optin) {
        cuda_fail(ctx, file, line,
                  "the kernel needs %zu bytes of shared memory, more than this device's %zu",
                  bytes, ctx->smem_optin);
        return 0;
    }
    return cuda_ok(ctx, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)bytes),
                   "cudaFuncSetAttribute", file, line);
}

static const char *cuda_error(Backend *be) {
    CudaCtx *ctx = (CudaCtx *)be->ctx;
    return ctx->failed ? ctx->error : NULL;
}

/* ---- memory ---- */

/* Zero-filled like the CPU's; cudaMalloc aligns to 256 bytes (the interface asks for 64). */
void *cuda_alloc(Backend *be, size_t bytes) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx) return NULL;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* an allocation failure is not sticky for CUDA itself */
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        CUDA_FAIL(ctx, "cudaMalloc of %zu bytes returned %s (%zu MiB free of %zu MiB)", bytes,
                  cudaGetErrorName(e), free_b >> 20, total_b >> 20);
        return NULL;
    }
    if (bytes && !CUDA_OK(ctx, cudaMemsetAsync(p, 0, bytes, ctx->stream))) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

void cuda_free(Backend *be, void *ptr) {
    CudaCtx *ctx = (CudaCtx *)be->ctx;
    /* freeing still works after a failure, so callers can always clean up */
    if (ptr) {
        cudaError_t e = cudaFree(ptr);
        if (e != cudaSuccess && !ctx->failed) {
            ctx->op = "free";
            cuda_ok(ctx, e, "cudaFree", __FILE__, __LINE__);
        }
    }
}

/* A copy between host and device on the backend's stream, waited for: the host buffer may
 * be pageable and reused (or read) as soon as the op returns. */
static void cuda_copy_wait(Backend *be, const char *func, void *dst, const void *src,
                           size_t bytes, cudaMemcpyKind kind) {
    CudaCtx *ctx = cuda_begin(be, func);
    if (!ctx || !bytes) return;
    if (CUDA_OK(ctx, cudaMemcpyAsync(dst, src, bytes, kind, ctx->stream)))
        CUDA_OK(ctx, cudaStreamSynchronize(ctx->stream));
}

/* The pinned buffer of a large upload: the next of the double buffer, once its previous copy
 * has run, grown to `bytes` if it is smaller; NULL where pinning more memory fails (the
 * upload then waits instead; the failure is not the run's). */
static char *cuda_big_buffer(CudaCtx *ctx, size_t bytes, int *slot) {
    *slot = ctx->big_next;
    if (!CUDA_OK(ctx, cudaEventSynchronize(ctx->big_done[*slot]))) return NULL;
    if (ctx->big_bytes[*slot] < bytes) {
        if (ctx->big[*slot]) cudaFreeHost(ctx->big[*slot]);
        ctx->big_bytes[*slot] = 0;
        if (cudaMallocHost((void **)&ctx->big[*slot], bytes) != cudaSuccess) {
            (void)cudaGetLastError();
            ctx->big[*slot] = NULL; /* whatever the failed call left there */
            return NULL;
        }
        ctx->big_bytes[*slot] = bytes;
    }
    return ctx->big[*slot];
}

/* An upload does not wait for the device: the host's bytes are copied into pinned memory (the
 * caller may reuse its buffer at once) and sent in stream order. Up to CUDA_STAGE_BYTES they
 * go through a ring of CUDA_STAGE_SLOTS slots (a training step's batch, targets and loss
 * weights), larger ones (an image batch: 77 MB at 128 x 3 x 224 x 224) through a double buffer
 * grown on demand; a slot or buffer is reused only once its last copy has run (its event), so
 * the host runs a bounded number of uploads ahead and a step never waits for the one before
 * it. The copy itself still runs in stream order, after the previous step's kernels (a copy
 * stream would overlap it with them, but the model's one device batch buffer may still be
 * read by them). Uploads above CUDA_BIG_MAX_BYTES (whole models, once) wait, pinning nothing
 * more. */
void cuda_to_device(Backend *be, void *dst, const void *src_host, size_t bytes) {
    CudaCtx *ctx = (CudaCtx *)be->ctx;
    if (!ctx->stage || bytes > CUDA_BIG_MAX_BYTES) {
        cuda_copy_wait(be, __func__, dst, src_host, bytes, cudaMemcpyHostToDevice);
        return;
    }
    if (!cuda_begin(be, __func__) || !bytes) return;
    cudaEvent_t done;
    char *buf;
    if (bytes <= CUDA_STAGE_BYTES) {
        const int slot = ctx->stage_next;
        if (!CUDA_OK(ctx, cudaEventSynchronize(ctx->stage_done[slot]))) return;
        buf = ctx->stage + (size_t)slot * CUDA_STAGE_BYTES;
        done = ctx->stage_done[slot];
        ctx->stage_next = (slot + 1) % CUDA_STAGE_SLOTS;
    } else {
        int slot;
        buf = cuda_big_buffer(ctx, bytes, &slot);
        if (!buf) {
            if (!ctx->failed)
                cuda_copy_wait(be, __func__, dst, src_host, bytes, cudaMemcpyHostToDevice);
            return;
        }
        done = ctx->big_done[slot];
        ctx->big_next = (slot + 1) % CUDA_BIG_SLOTS;
    }
    memcpy(buf, src_host, bytes);
    if (CUDA_OK(ctx, cudaMemcpyAsync(dst, buf, bytes, cudaMemcpyHostToDevice, ctx->stream)))
        CUDA_OK(ctx, cudaEventRecord(done, ctx->stream));
}

void cuda_to_host(Backend *be, void *dst_host, const void *src, size_t bytes) {
    cuda_copy_wait(be, __func__, dst_host, src, bytes, cudaMemcpyDeviceToHost);
}

void cuda_copy(Backend *be, void *dst, const void *src, size_t bytes) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || !bytes || dst == src) return;
    CUDA_OK(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx->stream));
}

void cuda_zero(Backend *be, void *dst, size_t bytes) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || !bytes) return;
    CUDA_OK(ctx, cudaMemsetAsync(dst, 0, bytes, ctx->stream));
}

/* Waits for the stream, then reads the bad-input flags the kernels may have raised. */
int cuda_sync(Backend *be) {
    CudaCtx *ctx = (CudaCtx *)be->ctx;
    if (ctx->failed) return -1;
    const char *last = ctx->last_op ? ctx->last_op : "(none)";
    ctx->op = "sync";
    cudaError_t e = cudaStreamSynchronize(ctx->stream);
    if (e != cudaSuccess) {
        CUDA_FAIL(ctx,
                  "%s (%s) surfaced at a sync; the op issued last was %s (LORASC_CUDA_SYNC=1 "
                  "makes every op wait, so the failing op names itself)",
                  cudaGetErrorName(e), cudaGetErrorString(e), last);
        return -1;
    }
    int flags[3];
    if (!CUDA_OK(ctx, cudaMemcpy(flags, ctx->flags, sizeof flags, cudaMemcpyDeviceToHost)))
        return -1;
    if (flags[0] == CUDA_FLAG_TOKEN) {
        ctx->op = "embedding_forward";
        cuda_fail(ctx, "kernels/cuda/embedding.cu", 0,
                  "token id %d at position %d is negative (found at a sync)", flags[2], flags[1]);
    } else if (flags[0] == CUDA_FLAG_TARGET) {
        ctx->op = "cross_entropy_forward";
        cuda_fail(ctx, "kernels/cuda/cross_entropy.cu", 0,
                  "target %d of row %d is not below the vocabulary size (found at a sync)",
                  flags[2], flags[1]);
    }
    return ctx->failed ? -1 : 0;
}

/* ---- description ---- */

static void cuda_describe(Backend *be, char *buf, size_t size) {
    CudaCtx *ctx = (CudaCtx *)be->ctx;
    if (!size) return;
    cudaDeviceProp p;
    int driver = 0, runtime = 0, lt = (int)cublasLtGetVersion();
    memset(&p, 0, sizeof p);
    cudaGetDeviceProperties(&p, ctx->device);
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    char name[sizeof p.name];
    snprintf(name, sizeof name, "%s", p.name);
    for (char *c = name; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = ' ';
    snprintf(buf, size,
             "{\"backend\":\"cuda\",\"device\":\"%s\",\"index\":%d,\"sm\":\"%d.%d\","
             "\"multiprocessors\":%d,\"memory_mib\":%zu,\"driver\":%d,\"runtime\":%d,"
             "\"cublaslt\":%d,\"tf32\":%s,\"real\":\"%s\"}",
             name, ctx->device, p.major, p.minor, p.multiProcessorCount,
             (size_t)(p.totalGlobalMem >> 20), driver, runtime, lt, ctx->tf32 ? "true" : "false",
             REAL_NAME);
}

/* ---- create / destroy ---- */

static int cuda_env_flag(const char *name) {
    const char *v = getenv(name);
    return v && v[0] && strcmp(v, "0") != 0;
}

void backend_cuda_destroy(Backend *be) {
    if (!be) return;
    CudaCtx *ctx = (CudaCtx *)be->ctx;
    if (ctx) {
        if (ctx->stream) cudaStreamSynchronize(ctx->stream);
        if (ctx->lt) cublasLtDestroy(ctx->lt);
        if (ctx->blas) cublasDestroy(ctx->blas);
        cudaFree(ctx->workspace);
        cudaFree(ctx->scratch);
        cudaFree(ctx->flags);
        if (ctx->host_result) cudaFreeHost(ctx->host_result);
        if (ctx->stage) cudaFreeHost(ctx->stage);
        for (int i = 0; i < CUDA_STAGE_SLOTS; i++)
            if (ctx->stage_done[i]) cudaEventDestroy(ctx->stage_done[i]);
        for (int i = 0; i < CUDA_BIG_SLOTS; i++) {
            if (ctx->big[i]) cudaFreeHost(ctx->big[i]);
            if (ctx->big_done[i]) cudaEventDestroy(ctx->big_done[i]);
        }
        if (ctx->stream) cudaStreamDestroy(ctx->stream);
        free(ctx);
    }
    free(be);
}

static void cuda_fill_ops(Backend *be);

extern "C" Backend *backend_cuda_create(char *err, size_t err_size) {
    if (err && err_size) err[0] = '\0';
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        if (err && err_size)
            snprintf(err, err_size,
                     "no CUDA device is usable here (%s); run on a machine with an NVIDIA GPU "
                     "and driver, or use device cpu",
                     e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 devices");
        (void)cudaGetLastError();
        return NULL;
    }
    Backend *be = (Backend *)calloc(1, sizeof *be);
    CudaCtx *ctx = (CudaCtx *)calloc(1, sizeof *ctx);
    if (!be || !ctx) {
        free(be);
        free(ctx);
        if (err && err_size) snprintf(err, err_size, "cannot create the CUDA backend: out of memory");
        return NULL;
    }
    be->name = "cuda";
    be->ctx = ctx;
    ctx->op = "create";
    ctx->tf32 = cuda_env_flag("LORASC_CUDA_TF32");
    ctx->sync_each_op = cuda_env_flag("LORASC_CUDA_SYNC");
    cudaDeviceProp p;
    int ok = CUDA_OK(ctx, cudaGetDevice(&ctx->device)) &&
             CUDA_OK(ctx, cudaGetDeviceProperties(&p, ctx->device));
    if (ok && p.major < 8) {
        CUDA_FAIL(ctx, "device %d (%s) has compute capability %d.%d; lorasc's CUDA kernels need "
                       "8.0 or newer (built for sm_90 with a compute_90 PTX fallback)",
                  ctx->device, p.name, p.major, p.minor);
        ok = 0;
    }
    if (ok) {
        ctx->sm_count = p.multiProcessorCount;
        ctx->smem_optin = p.sharedMemPerBlockOptin;
    }
    ok = ok && CUDA_OK(ctx, cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking)) &&
         CUDA_OK(ctx, cudaMalloc(&ctx->workspace, CUDA_WORKSPACE_BYTES)) &&
         CUDA_OK(ctx, cudaMallocHost((void **)&ctx->host_result, 64)) &&
         CUDA_OK(ctx, cudaMallocHost((void **)&ctx->stage,
                                     (size_t)CUDA_STAGE_SLOTS * CUDA_STAGE_BYTES)) &&
         CUDA_OK(ctx, cudaMalloc((void **)&ctx->flags, 3 * sizeof(int))) &&
         CUDA_OK(ctx, cudaMemsetAsync(ctx->flags, 0, 3 * sizeof(int), ctx->stream)) &&
         CUBLAS_OK(ctx, cublasLtCreate(&ctx->lt)) && CUBLAS_OK(ctx, cublasCreate(&ctx->blas)) &&
         CUBLAS_OK(ctx, cublasSetStream(ctx->blas, ctx->stream)) &&
         CUBLAS_OK(ctx, cublasSetWorkspace(ctx->blas, ctx->workspace, CUDA_WORKSPACE_BYTES)) &&
         CUBLAS_OK(ctx, cublasSetMathMode(ctx->blas, ctx->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                               : CUBLAS_PEDANTIC_MATH));
    for (int i = 0; ok && i < CUDA_STAGE_SLOTS; i++)
        ok = CUDA_OK(ctx, cudaEventCreateWithFlags(&ctx->stage_done[i], cudaEventDisableTiming));
    for (int i = 0; ok && i < CUDA_BIG_SLOTS; i++)
        ok = CUDA_OK(ctx, cudaEventCreateWithFlags(&ctx->big_done[i], cudaEventDisableTiming));
    if (!ok) {
        if (err && err_size) snprintf(err, err_size, "%s", ctx->error);
        backend_cuda_destroy(be);
        return NULL;
    }
    cuda_fill_ops(be);
    return be;
}

static void cuda_fill_ops(Backend *be) {
    be->destroy = backend_cuda_destroy;
    be->error = cuda_error;
    be->describe = cuda_describe;

    be->alloc = cuda_alloc;
    be->free = cuda_free;
    be->to_device = cuda_to_device;
    be->to_host = cuda_to_host;
    be->copy = cuda_copy;
    be->zero = cuda_zero;
    be->sync = cuda_sync;

    be->matmul = cuda_matmul;
    be->to_bf16 = cuda_to_bf16;
    be->from_bf16 = cuda_from_bf16;
    be->matmul_bf16 = cuda_matmul_bf16;
    be->matmul_bf16_rounded = cuda_matmul_bf16_rounded;
    be->embedding_forward = cuda_embedding_forward;
    be->embedding_backward = cuda_embedding_backward;
    be->rmsnorm_forward = cuda_rmsnorm_forward;
    be->rmsnorm_backward = cuda_rmsnorm_backward;
    be->rope_forward = cuda_rope_forward;
    be->rope_backward = cuda_rope_backward;
    be->attention_forward = cuda_attention_forward;
    be->attention_backward = cuda_attention_backward;
    be->attention_forward_bf16 = cuda_attention_forward_bf16;
    be->attention_backward_bf16 = cuda_attention_backward_bf16;
    be->attention_decode_forward = cuda_attention_decode_forward;
    be->swiglu_forward = cuda_swiglu_forward;
    be->swiglu_backward = cuda_swiglu_backward;
    be->residual_forward = cuda_residual_forward;
    be->residual_backward = cuda_residual_backward;
    be->row_norm = cuda_row_norm;
    be->col_dot = cuda_col_dot;
    be->scale_rows = cuda_scale_rows;
    be->scale_cols = cuda_scale_cols;
    be->divide = cuda_divide;
    be->cross_entropy_forward = cuda_cross_entropy_forward;
    be->cross_entropy_backward = cuda_cross_entropy_backward;
    be->cross_entropy_backward_bf16 = cuda_cross_entropy_backward_bf16;
    be->cross_entropy_forward_backward = cuda_cross_entropy_forward_backward;

    be->adamw_update = cuda_adamw_update;
    be->sum_squares = cuda_sum_squares;
    be->scale = cuda_scale;
    be->axpy = cuda_axpy;
    be->add_uniform_noise = cuda_add_uniform_noise;

    be->layernorm_forward = cuda_layernorm_forward;
    be->layernorm_backward = cuda_layernorm_backward;
    be->gelu_forward = cuda_gelu_forward;
    be->gelu_backward = cuda_gelu_backward;
    be->attention_full_forward = cuda_attention_full_forward;
    be->attention_full_backward = cuda_attention_full_backward;
    be->patchify = cuda_patchify;
    be->bias_forward = cuda_bias_forward;
    be->bias_backward = cuda_bias_backward;

    be->mean_to = cuda_mean_to;
    be->sum_squares_acc = cuda_sum_squares_acc;
    be->clip_scale = cuda_clip_scale;
    be->adamw_update_dev = cuda_adamw_update_dev;
}
