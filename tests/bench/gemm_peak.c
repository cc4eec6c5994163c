/* The machine's GEMM peak (gemm_peak.h): OpenBLAS sgemm and oneDNN f32 / bf16 matmul on
 * n^3, best of `reps` timed runs after one untimed one, each spot-checked against double. */
#include "tests/bench/gemm_peak.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "core/base/philox.h"
#ifdef LORASC_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

enum { PEAK_SAMPLES = 64 }; /* elements of C checked against double */

static double peak_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Largest |c - exact| / sum_p |a_ip b_pj| over sampled (i, j); a, b row-major n x n (values
 * as the GEMM saw them). */
static double peak_spot_error(const float *a, const float *b, const float *c, int n) {
    double worst = 0;
    for (int s = 0; s < PEAK_SAMPLES; s++) {
        const int i = (int)(philox_u32(99, 1, (uint64_t)s) % (uint32_t)n);
        const int j = (int)(philox_u32(99, 2, (uint64_t)s) % (uint32_t)n);
        double dot = 0, mag = 0;
        for (int p = 0; p < n; p++) {
            const double x = (double)a[(size_t)i * n + p] * b[(size_t)p * n + j];
            dot += x;
            mag += fabs(x);
        }
        const double e = fabs(c[(size_t)i * n + j] - dot) / (mag > 0 ? mag : 1);
        if (e > worst) worst = e;
    }
    return worst;
}

/* a, b filled uniform in [-1, 1), c zeroed; NULL when out of memory. */
static float *peak_alloc(int n, float **b, float **c) {
    const size_t nn = (size_t)n * n;
    float *a = malloc(nn * sizeof *a);
    *b = malloc(nn * sizeof **b);
    *c = calloc(nn, sizeof **c);
    if (!a || !*b || !*c) {
        free(a), free(*b), free(*c);
        *b = *c = NULL;
        return NULL;
    }
    philox_uniform(a, nn, 1234, 1, -1.0, 1.0);
    philox_uniform(*b, nn, 1234, 2, -1.0, 1.0);
    return a;
}

GemmPeak gemm_peak_openblas(int threads, int n, int reps) {
    GemmPeak r = {0, 0, "openblas", NULL};
    float *b, *c, *a = peak_alloc(n, &b, &c);
    if (!a) {
        r.why = "out of memory";
        return r;
    }
    /* OpenBLAS's OpenMP build sets libgomp's count and reports its own: put both back */
    const int prev = openblas_get_num_threads(), prev_omp = omp_get_max_threads();
    openblas_set_num_threads(threads);
    double best = 1e30;
    for (int k = 0; k <= reps; k++) {
        const double t0 = peak_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        const double dt = peak_now() - t0;
        if (k > 0 && dt < best) best = dt;
    }
    openblas_set_num_threads(prev);
    omp_set_num_threads(prev_omp);
    r.gflops = 2.0 * n * n * (double)n / best * 1e-9;
    r.max_error = peak_spot_error(a, b, c, n);
    free(a), free(b), free(c);
    return r;
}

#ifdef LORASC_HAVE_DNNL

/* float -> bf16, round to nearest even (inputs are finite) */
static uint16_t peak_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float peak_bf16_to_float(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

const char *gemm_peak_onednn_info(void) {
    static char buf[96];
    const dnnl_version_t *v = dnnl_version();
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    const char *name = isa == dnnl_cpu_isa_avx512_core_amx     ? "avx512_core_amx"
                       : isa == dnnl_cpu_isa_avx512_core_bf16  ? "avx512_core_bf16"
                       : isa == dnnl_cpu_isa_avx512_core_vnni  ? "avx512_core_vnni"
                       : isa == dnnl_cpu_isa_avx512_core       ? "avx512_core"
                       : isa == dnnl_cpu_isa_avx2_vnni         ? "avx2_vnni"
                       : isa == dnnl_cpu_isa_avx2              ? "avx2"
                                                               : "older than avx2";
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d, isa %s", v->major, v->minor, v->patch, name);
    return buf;
}

GemmPeak gemm_peak_onednn(int threads, int n, int reps, int bf16) {
    GemmPeak r = {0, 0, "", NULL};
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (bf16 && (isa & dnnl_cpu_isa_avx512_core_bf16) != dnnl_cpu_isa_avx512_core_bf16) {
        r.why = "the CPU has no AVX512_BF16 (oneDNN would run its reference loops)";
        return r;
    }
    float *b, *c, *a = peak_alloc(n, &b, &c);
    uint16_t *a16 = bf16 ? malloc((size_t)n * n * 2) : NULL, *b16 = bf16 ? malloc((size_t)n * n * 2) : NULL;
    const int prev = omp_get_max_threads();
    omp_set_num_threads(threads); /* oneDNN plans for the thread count at creation */
    dnnl_engine_t eng = NULL;
    dnnl_stream_t stream = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
    dnnl_memory_desc_t da, db, dc;
    const dnnl_dims_t dims = {n, n};
    const dnnl_data_type_t in_type = bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_matmul_desc_t desc;
    const char *impl = NULL;
    if (!a || (bf16 && (!a16 || !b16))) {
        r.why = "out of memory";
    } else if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
               dnnl_stream_create(&stream, eng, dnnl_stream_default_flags) != dnnl_success ||
               dnnl_memory_desc_init_by_tag(&da, 2, dims, in_type, dnnl_ab) != dnnl_success ||
               dnnl_memory_desc_init_by_tag(&db, 2, dims, in_type, dnnl_ab) != dnnl_success ||
               dnnl_memory_desc_init_by_tag(&dc, 2, dims, dnnl_f32, dnnl_ab) != dnnl_success ||
               dnnl_matmul_desc_init(&desc, &da, &db, NULL, &dc) != dnnl_success ||
               dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL) != dnnl_success ||
               dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success ||
               dnnl_primitive_create(&prim, pd) != dnnl_success) {
        r.why = "oneDNN could not build the matmul";
    } else {
        snprintf(r.impl, sizeof r.impl, "%s", impl);
        if (bf16) /* the GEMM sees bf16 values: round the float inputs, keep them for the check */
            for (size_t i = 0; i < (size_t)n * n; i++) {
                a16[i] = peak_bf16(a[i]), b16[i] = peak_bf16(b[i]);
                a[i] = peak_bf16_to_float(a16[i]), b[i] = peak_bf16_to_float(b16[i]);
            }
        if (dnnl_memory_create(&ma, &da, eng, bf16 ? (void *)a16 : a) != dnnl_success ||
            dnnl_memory_create(&mb, &db, eng, bf16 ? (void *)b16 : b) != dnnl_success ||
            dnnl_memory_create(&mc, &dc, eng, c) != dnnl_success) {
            r.why = "oneDNN could not wrap the buffers";
        } else {
            const dnnl_exec_arg_t args[3] = {
                {DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
            double best = 1e30;
            for (int k = 0; k <= reps && !r.why; k++) {
                const double t0 = peak_now();
                if (dnnl_primitive_execute(prim, stream, 3, args) != dnnl_success ||
                    dnnl_stream_wait(stream) != dnnl_success)
                    r.why = "oneDNN's matmul failed to run";
                const double dt = peak_now() - t0;
                if (k > 0 && dt < best) best = dt;
            }
            if (!r.why) {
                r.gflops = 2.0 * n * n * (double)n / best * 1e-9;
                r.max_error = peak_spot_error(a, b, c, n);
            }
        }
    }
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (mc) dnnl_memory_destroy(mc);
    if (prim) dnnl_primitive_destroy(prim);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (stream) dnnl_stream_destroy(stream);
    if (eng) dnnl_engine_destroy(eng);
    omp_set_num_threads(prev);
    free(a), free(b), free(c), free(a16), free(b16);
    return r;
}

#else

const char *gemm_peak_onednn_info(void) { return "no oneDNN in this build"; }

GemmPeak gemm_peak_onednn(int threads, int n, int reps, int bf16) {
    (void)threads, (void)n, (void)reps, (void)bf16;
    GemmPeak r = {0, 0, "", "this build has no oneDNN (libdnnl-dev)"};
    return r;
}

#endif
