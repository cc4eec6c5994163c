/* The CPU backend: host memory is device memory, so the memory functions are malloc and
 * memcpy; the ops live one family per file (matmul.c, attention.c, ...) and are plugged into
 * the Backend struct here. Threads: one OpenMP pool for everything, GEMM included. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "kernels/cpu/cpu_ops.h"

/* ---- memory ---- */

void *cpu_alloc(Backend *be, size_t bytes) {
    (void)be;
    size_t rounded = (bytes + 63) / 64 * 64; /* aligned_alloc wants a multiple of the alignment */
    if (rounded == 0) rounded = 64;
    if (rounded < bytes) return NULL; /* overflow */
    void *p = aligned_alloc(64, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}

void cpu_free(Backend *be, void *ptr) {
    (void)be;
    free(ptr);
}

void cpu_to_device(Backend *be, void *dst, const void *src_host, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, src_host, bytes);
}

void cpu_to_host(Backend *be, void *dst_host, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst_host, src, bytes);
}

void cpu_copy(Backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes && dst != src) memmove(dst, src, bytes);
}

void cpu_zero(Backend *be, void *dst, size_t bytes) {
    (void)be;
    if (bytes) memset(dst, 0, bytes);
}

int cpu_sync(Backend *be) { /* every CPU op has finished when it returns */
    (void)be;
    return 0;
}

/* ---- errors and description ---- */

const char *cpu_error(Backend *be) { /* the CPU ops cannot fail (see kernels/backend.h) */
    (void)be;
    return NULL;
}

void cpu_describe(Backend *be, char *buf, size_t size) {
    if (!size) return;
    char blas[160];
    snprintf(blas, sizeof blas, "%s", openblas_get_config());
    for (char *c = blas; *c; c++) /* keep the JSON string valid whatever the build says */
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = ' ';
    static const char *const gemm_names[] = {"auto", "openblas", "onednn"};
    const CpuCtx *ctx = be->ctx;
    snprintf(buf, size,
             "{\"backend\":\"cpu\",\"threads\":%d,\"blas\":\"%s\",\"gemm\":\"%s\",\"real\":\"%s\"}",
             omp_get_max_threads(), blas, ctx->dnnl ? gemm_names[ctx->gemm] : "openblas",
             REAL_NAME);
}

/* ---- create / destroy ---- */

/* threads > 0 sets the OpenMP pool size. One pool must own the cores (see matmul.c): the
 * pthreads build of OpenBLAS is made single-threaded and called from our OpenMP threads; the
 * OpenMP build already shares libgomp's pool (and its set_num_threads is omp_set_num_threads,
 * so calling it with 1 would make every kernel single-threaded); oneDNN (Debian builds it
 * with the OpenMP runtime) opens its parallel regions on the same pool. */
Backend *backend_cpu_create(int threads) {
    Backend *be = calloc(1, sizeof *be);
    CpuCtx *ctx = calloc(1, sizeof *ctx);
    if (!be || !ctx) {
        free(be);
        free(ctx);
        return NULL;
    }
    if (threads > 0) omp_set_num_threads(threads);
    if (openblas_get_parallel() == OPENBLAS_THREAD) openblas_set_num_threads(1);
    ctx->gemm = CPU_GEMM_AUTO;
#if CPU_HAVE_DNNL
    ctx->dnnl = cpu_dnnl_create(); /* NULL (no CPU engine): every matmul runs OpenBLAS */
#endif
    be->name = "cpu";
    be->ctx = ctx;
    be->destroy = backend_cpu_destroy;
    be->error = cpu_error;
    be->describe = cpu_describe;

    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->to_device = cpu_to_device;
    be->to_host = cpu_to_host;
    be->copy = cpu_copy;
    be->zero = cpu_zero;
    be->sync = cpu_sync;

    be->matmul = cpu_matmul;
#if CPU_HAVE_DNNL
    if (ctx->dnnl) be->matmul_frozen = cpu_matmul_frozen;
#endif
#ifndef LORASC_REAL_DOUBLE /* bf16 storage: float builds; its matmul needs oneDNN */
    be->to_bf16 = cpu_to_bf16;
    be->from_bf16 = cpu_from_bf16;
#if CPU_HAVE_DNNL
    if (ctx->dnnl) {
        be->matmul_bf16 = cpu_matmul_bf16;
        be->matmul_bf16_rounded = cpu_matmul_bf16_rounded;
        be->matmul_bf16_frozen = cpu_matmul_bf16_frozen;
        be->matmul_bf16_rounded_frozen = cpu_matmul_bf16_rounded_frozen;
        be->packed_free = cpu_packed_free;
        be->cross_entropy_backward_bf16 = cpu_cross_entropy_backward_bf16;
    }
#endif
#endif
    be->embedding_forward = cpu_embedding_forward;
    be->embedding_backward = cpu_embedding_backward;
    be->rmsnorm_forward = cpu_rmsnorm_forward;
    be->rmsnorm_backward = cpu_rmsnorm_backward;
    be->rope_forward = cpu_rope_forward;
    be->rope_backward = cpu_rope_backward;
    be->attention_forward = cpu_attention_forward;
    be->attention_backward = cpu_attention_backward;
    be->attention_decode_forward = cpu_attention_decode_forward;
    be->swiglu_forward = cpu_swiglu_forward;
    be->swiglu_backward = cpu_swiglu_backward;
    be->residual_forward = cpu_residual_forward;
    be->residual_backward = cpu_residual_backward;
    be->row_norm = cpu_row_norm;
    be->col_dot = cpu_col_dot;
    be->scale_rows = cpu_scale_rows;
    be->scale_cols = cpu_scale_cols;
    be->divide = cpu_divide;
    be->cross_entropy_forward = cpu_cross_entropy_forward;
    be->cross_entropy_backward = cpu_cross_entropy_backward;
    be->cross_entropy_forward_backward = cpu_cross_entropy_forward_backward;

    be->adamw_update = cpu_adamw_update;
    be->sum_squares = cpu_sum_squares;
    be->scale = cpu_scale;
    be->axpy = cpu_axpy;
    be->add_uniform_noise = cpu_add_uniform_noise;

    be->layernorm_forward = cpu_layernorm_forward;
    be->layernorm_backward = cpu_layernorm_backward;
    be->gelu_forward = cpu_gelu_forward;
    be->gelu_backward = cpu_gelu_backward;
    be->attention_full_forward = cpu_attention_full_forward;
    be->attention_full_backward = cpu_attention_full_backward;
    be->patchify = cpu_patchify;
    be->bias_forward = cpu_bias_forward;
    be->bias_backward = cpu_bias_backward;

    be->mean_to = cpu_mean_to;
    be->sum_squares_acc = cpu_sum_squares_acc;
    be->clip_scale = cpu_clip_scale;
    be->adamw_update_dev = cpu_adamw_update_dev;
    return be;
}

void backend_cpu_destroy(Backend *be) {
    if (!be) return;
    CpuCtx *ctx = be->ctx;
#if CPU_HAVE_DNNL
    if (ctx) cpu_dnnl_destroy(ctx->dnnl);
#endif
    if (ctx) {
        free(ctx->bf16_a);
        free(ctx->bf16_wide);
    }
    free(ctx);
    free(be);
}

int backend_cpu_has_onednn(void) { return CPU_HAVE_DNNL; }

int backend_cpu_set_gemm(Backend *be, CpuGemm gemm) {
    CpuCtx *ctx = be->ctx;
    if (gemm == CPU_GEMM_ONEDNN && !ctx->dnnl) return -1;
    ctx->gemm = gemm;
    return 0;
}

void backend_cpu_gemm_stats(const Backend *be, CpuGemmStats *out) {
    const CpuCtx *ctx = be->ctx;
    *out = ctx->stats;
}
