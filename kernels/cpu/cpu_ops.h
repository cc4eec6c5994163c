/* Private header of the CPU backend: the cpu_* ops that backend_cpu.c puts in the Backend
 * struct (same signatures and semantics as kernels/backend.h), plus the small inline math
 * helpers the op files share. Not part of the public interface: include kernels/backend.h. */
#ifndef LORASC_CPU_OPS_H
#define LORASC_CPU_OPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/bf16.h"

/* ---- shared helpers ---- */

/* Loops over fewer elements than this run on one thread: waking the pool costs more. */
#define CPU_PARALLEL_MIN 16384

/* e^x in float without a libm call, so loops over it vectorise (glibc's expf does not without
 * -ffast-math). Cephes expf: x = k ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), e^r by
 * a degree-7 minimax polynomial, 2^k built in the exponent bits as 2^(k/2) * 2^(k - k/2) so
 * results that end in the subnormal range stay right. Within 2 ulp of e^x; +inf above
 * ln(FLT_MAX), 0 below -104, NaN in gives NaN out. Checked against exp() in test_ops.c. */
static inline float cpu_expf(float x) {
    const float hi = 88.72283935546875f, lo = -104.0f;
    float xc = x < hi ? x : hi; /* a NaN lands on hi here and is put back at the end */
    xc = xc > lo ? xc : lo;
    float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = xc - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
                 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f) * (r * r) +
              r + 1.0f;
    int32_t ki = (int32_t)k;
    int32_t k1 = ki / 2, k2 = ki - k1;
    uint32_t b1 = (uint32_t)(k1 + 127) << 23, b2 = (uint32_t)(k2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    float y = p * s1 * s2;
    y = x > hi ? INFINITY : y;
    return x != x ? x : y;
}

/* cpu_expf on 16 floats at once, the same bits for every input (test_exp16_f32 checks it):
 * the same operations in the same order (the build does not contract a*b+c into FMAs: c11 sets
 * -ffp-contract=off), except that 2^k is applied by one vscalefps instead of two products by
 * 2^(k/2) and 2^(k-k/2). Both round the exact p*2^k once (p*2^(k/2) is exact: p is within
 * [0.7, 1.5] and k/2 >= -75), so they agree. GCC's vectorisation of the scalar form spends about
 * twice the instructions on the clamps and that split, and exponentials bound the softmaxes. */
#if defined(__AVX512F__) && !defined(LORASC_REAL_DOUBLE)
#include <immintrin.h>
#define CPU_HAVE_EXP16 1
static inline __m512 cpu_expf16(__m512 x) {
    const __m512 hi = _mm512_set1_ps(88.72283935546875f), lo = _mm512_set1_ps(-104.0f);
    const __m512 round = _mm512_set1_ps(12582912.0f);
    const __m512 xc = _mm512_max_ps(_mm512_min_ps(x, hi), lo); /* min: a NaN lands on hi */
    const __m512 k = _mm512_sub_ps(
        _mm512_add_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)), round), round);
    __m512 r = _mm512_sub_ps(xc, _mm512_mul_ps(k, _mm512_set1_ps(0.693359375f)));
    r = _mm512_sub_ps(r, _mm512_mul_ps(k, _mm512_set1_ps(-2.12194440e-4f)));
    __m512 p = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(1.9875691500e-4f), r),
                             _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r),
                      _mm512_set1_ps(1.0f));
    __m512 y = _mm512_scalef_ps(p, k);
    y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), _mm512_set1_ps(INFINITY));
    return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}
#else
#define CPU_HAVE_EXP16 0
#endif

/* e^x in Real: the vectorisable cpu_expf in float builds, libm's exp in double builds (the
 * double build exists for finite-difference checks, where accuracy is all that matters). */
static inline Real cpu_exp(Real x) {
#ifdef LORASC_REAL_DOUBLE
    return exp(x);
#else
    return cpu_expf(x);
#endif
}

/* The sum over i < n of e^((x[i] - m) * scale), in double: a softmax's denominator (the
 * attention rows', the cross-entropy's). Each term is also stored in e[i] unless e is NULL;
 * e may be x. With AVX-512, two blocks of 16 per iteration (an exponential is one long
 * dependency chain; two independent ones keep the vector units busy) and four double
 * accumulators, whose conversions otherwise bound the loop. */
static inline double cpu_exp_sum(Real *e, const Real *x, Real m, Real scale, int n) {
#if CPU_HAVE_EXP16
    const __m512 vm = _mm512_set1_ps(m), vs = _mm512_set1_ps(scale);
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 e0 = cpu_expf16(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm), vs));
        const __m512 e1 =
            cpu_expf16(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm), vs));
        if (e) {
            _mm512_storeu_ps(e + i, e0);
            _mm512_storeu_ps(e + i + 16, e1);
        }
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(e0)));
        a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e0, 1)));
        a2 = _mm512_add_pd(a2, _mm512_cvtps_pd(_mm512_castps512_ps256(e1)));
        a3 = _mm512_add_pd(a3, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e1, 1)));
    }
    for (; i < n; i += 16) { /* the last blocks: lanes past n are e^-inf = 0 */
        const __mmask16 k = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 xi = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + i);
        const __m512 ei = cpu_expf16(_mm512_mul_ps(_mm512_sub_ps(xi, vm), vs));
        if (e) _mm512_mask_storeu_ps(e + i, k, ei);
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(ei)));
        a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(ei, 1)));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
#else
    double sum = 0.0;
    if (!e) {
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < n; i++) sum += (double)cpu_exp((x[i] - m) * scale);
        return sum;
    }
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) {
        const Real ei = cpu_exp((x[i] - m) * scale);
        e[i] = ei;
        sum += (double)ei;
    }
    return sum;
#endif
}

/* dst[i] = bf16_from_float(src[i]) for i < n (kernels/bf16.h: to nearest even, NaN kept
 * quiet). Where the CPU has AVX512_BF16, 32 at a time by vcvtne2ps2bf16, which rounds the same
 * way except that it flushes subnormal inputs to zero: a block holding one is rounded by
 * bf16_from_float instead, so the bits are the same for every input (checked over all 2^32 in
 * test_cpu_exp16_f32). About 3x fewer instructions than the compiler's vectorised rounding. */
static inline void cpu_bf16_round(uint16_t *dst, const Real *src, size_t n) {
    size_t i = 0;
#if defined(__AVX512BF16__) && !defined(LORASC_REAL_DOUBLE)
    const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF), one = _mm512_set1_epi32(1);
    const __m512i subnormal_max = _mm512_set1_epi32(0x007FFFFE); /* |x| bits - 1 */
    for (const size_t blocks_end = n / 32 * 32; i < blocks_end; i += 32) {
        const __m512 a = _mm512_loadu_ps(src + i), b = _mm512_loadu_ps(src + i + 16);
        const __mmask16 sa = _mm512_cmple_epu32_mask(
            _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(a), magnitude), one), subnormal_max);
        const __mmask16 sb = _mm512_cmple_epu32_mask(
            _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(b), magnitude), one), subnormal_max);
        if (sa | sb) { /* a subnormal input: this block the portable way */
            for (int j = 0; j < 32; j++) dst[i + j] = bf16_from_float(src[i + j]);
            continue;
        }
        _mm512_storeu_si512(dst + i, (__m512i)_mm512_cvtne2ps_pbh(b, a)); /* a in the low half */
    }
#endif
    for (; i < n; i++) dst[i] = bf16_from_float(src[i]);
}

/* ---- the backend's context (be->ctx) ---- */

/* oneDNN in this build: the float build linked with it (meson defines LORASC_HAVE_DNNL). */
#if defined(LORASC_HAVE_DNNL) && !defined(LORASC_REAL_DOUBLE)
#define CPU_HAVE_DNNL 1
#else
#define CPU_HAVE_DNNL 0
#endif

typedef struct CpuDnnl CpuDnnl; /* matmul_dnnl.c: oneDNN engine, stream, primitive cache */
typedef BackendPacked CpuPacked; /* matmul_dnnl.c: a frozen weight in oneDNN's layout */

typedef struct CpuCtx {
    CpuGemm gemm;       /* the library choice (backend_cpu_set_gemm) */
    CpuDnnl *dnnl;      /* NULL in builds without oneDNN */
    CpuGemmStats stats;
    /* matmul_bf16's scratch, grown on demand: the activations rounded to bf16; and, where
     * oneDNN cannot build a bf16 primitive, both operands widened back to fp32 */
    uint16_t *bf16_a;
    size_t bf16_a_cap;  /* elements */
    float *bf16_wide;
    size_t bf16_wide_cap;
} CpuCtx;

#if CPU_HAVE_DNNL
/* ---- matmul_dnnl.c ---- */
CpuDnnl *cpu_dnnl_create(void); /* NULL when oneDNN cannot make a CPU engine */
void cpu_dnnl_destroy(CpuDnnl *d);
/* c = alpha op(a) op(b) + beta c as in Backend.matmul (M, N, K > 0); 0, or -1 (c untouched)
 * when oneDNN cannot build the primitive. */
int cpu_dnnl_matmul(CpuDnnl *d, CpuGemmStats *st, float *c, const float *a, const float *b,
                    int M, int N, int K, int trans_a, int trans_b, float alpha, float beta);
/* The same with bf16 operands (a [M,K] never transposed), f32 c, f32 accumulation. */
int cpu_dnnl_matmul_bf16(CpuDnnl *d, CpuGemmStats *st, float *c, const uint16_t *a,
                         const uint16_t *b, int M, int N, int K, int trans_b, float alpha,
                         float beta);
/* The same with b a frozen weight: *packed (NULL at first) receives b in the primitive's
 * blocked layout and serves later calls; a call whose primitive wants another layout
 * multiplies b as stored. 0, or -1 (c untouched) when oneDNN cannot. */
int cpu_dnnl_matmul_bf16_packed(CpuDnnl *d, CpuGemmStats *st, float *c, const uint16_t *a,
                                const uint16_t *b, CpuPacked **packed, int M, int N, int K,
                                int trans_b, float alpha, float beta);
/* The same in f32. */
int cpu_dnnl_matmul_packed(CpuDnnl *d, CpuGemmStats *st, float *c, const float *a,
                           const float *b, CpuPacked **packed, int M, int N, int K, int trans_b,
                           float alpha, float beta);
void cpu_dnnl_packed_free(CpuPacked *p);
#endif

/* ---- memory and setup (backend_cpu.c) ---- */
void *cpu_alloc(Backend *be, size_t bytes);
void cpu_free(Backend *be, void *ptr);
void cpu_to_device(Backend *be, void *dst, const void *src_host, size_t bytes);
void cpu_to_host(Backend *be, void *dst_host, const void *src, size_t bytes);
void cpu_copy(Backend *be, void *dst, const void *src, size_t bytes);
void cpu_zero(Backend *be, void *dst, size_t bytes);
int cpu_sync(Backend *be);
const char *cpu_error(Backend *be);
void cpu_describe(Backend *be, char *buf, size_t size);

/* ---- matmul.c ---- */
void cpu_matmul(Backend *be, Real *c, const Real *a, const Real *b, int M, int N, int K,
                int trans_a, int trans_b, Real alpha, Real beta);

#if CPU_HAVE_DNNL
void cpu_matmul_bf16(Backend *be, Real *c, const Real *a, const uint16_t *w, int M, int N, int K,
                     int trans_w, Real alpha, Real beta);
void cpu_matmul_bf16_rounded(Backend *be, Real *c, const uint16_t *a16, const uint16_t *w, int M,
                             int N, int K, int trans_w, Real alpha, Real beta);
void cpu_matmul_frozen(Backend *be, Real *c, const Real *a, const Real *w, BackendPacked **packed,
                       int M, int N, int K, int trans_w, Real alpha, Real beta);
void cpu_matmul_bf16_frozen(Backend *be, Real *c, const Real *a, const uint16_t *w,
                            BackendPacked **packed, int M, int N, int K, int trans_w, Real alpha,
                            Real beta);
void cpu_matmul_bf16_rounded_frozen(Backend *be, Real *c, const uint16_t *a16, const uint16_t *w,
                                    BackendPacked **packed, int M, int N, int K, int trans_w,
                                    Real alpha, Real beta);
void cpu_packed_free(Backend *be, BackendPacked **packed);
#endif

/* ---- bf16.c (float builds only) ---- */
#ifndef LORASC_REAL_DOUBLE
void cpu_to_bf16(Backend *be, uint16_t *dst, const Real *src, size_t n);
void cpu_from_bf16(Backend *be, Real *dst, const uint16_t *src, size_t n);
#endif

/* ---- embedding.c ---- */
void cpu_embedding_forward(Backend *be, Real *out, const int32_t *tokens, const Real *table, int N,
                           int C);
void cpu_embedding_backward(Backend *be, Real *dtable, const Real *dout, const int32_t *tokens,
                            int N, int C);

/* ---- rmsnorm.c ---- */
void cpu_rmsnorm_forward(Backend *be, Real *out, Real *rstd, const Real *x, const Real *weight,
                         int N, int C, float eps);
void cpu_rmsnorm_backward(Backend *be, Real *dx, Real *dweight, const Real *dout, const Real *x,
                          const Real *weight, const Real *rstd, int N, int C);

/* ---- rope.c ---- */
void cpu_rope_forward(Backend *be, Real *x, const Real *cos_tab, const Real *sin_tab, int B, int T,
                      int NH, int HD, int pos0, RopeStyle style);
void cpu_rope_backward(Backend *be, Real *dx, const Real *cos_tab, const Real *sin_tab, int B,
                       int T, int NH, int HD, int pos0, RopeStyle style);

/* ---- attention.c ---- */
void cpu_attention_forward(Backend *be, Real *out, Real *att, const Real *q, const Real *k,
                           const Real *v, int B, int T, int NH, int NKV, int HD);
void cpu_attention_backward(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                            const Real *dout, const Real *q, const Real *k, const Real *v,
                            const Real *att, int B, int T, int NH, int NKV, int HD);
void cpu_attention_decode_forward(Backend *be, Real *out, const Real *q, const Real *kcache,
                                  const Real *vcache, int Tq, int pos0, int NH, int NKV, int HD);

/* ---- swiglu.c ---- */
void cpu_swiglu_forward(Backend *be, Real *out, const Real *gate, const Real *up, size_t n);
void cpu_swiglu_backward(Backend *be, Real *dgate, Real *dup, const Real *dout, const Real *gate,
                         const Real *up, size_t n);

/* ---- residual.c ---- */
void cpu_residual_forward(Backend *be, Real *out, const Real *a, const Real *b, size_t n);
void cpu_residual_backward(Backend *be, Real *da, Real *db, const Real *dout, size_t n);

/* ---- rowcol.c ---- */
void cpu_row_norm(Backend *be, Real *norm, const Real *x, int N, int C);
void cpu_col_dot(Backend *be, Real *out, const Real *a, const Real *b, int N, int C);
void cpu_scale_rows(Backend *be, Real *out, const Real *x, const Real *s, int N, int C);
void cpu_scale_cols(Backend *be, Real *out, const Real *x, const Real *s, int N, int C);
void cpu_divide(Backend *be, Real *out, const Real *a, const Real *b, size_t n);

/* ---- cross_entropy.c ---- */
void cpu_cross_entropy_forward(Backend *be, Real *losses, Real *lse, const Real *logits,
                               const int32_t *targets, int N, int V);
void cpu_cross_entropy_backward(Backend *be, Real *dlogits, const Real *logits, const Real *lse,
                                const int32_t *targets, const Real *dloss, int N, int V);
void cpu_cross_entropy_backward_bf16(Backend *be, uint16_t *dlogits16, const Real *logits,
                                     const Real *lse, const int32_t *targets, const Real *dloss,
                                     int N, int V);
void cpu_cross_entropy_forward_backward(Backend *be, Real *losses, Real *lse, Real *dlogits,
                                        uint16_t *dlogits16, const Real *logits,
                                        const int32_t *targets, const Real *dloss, int N, int V);

/* ---- optim.c ---- */
void cpu_adamw_update(Backend *be, Real *p, const Real *g, Real *m, Real *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                      float bias_correction1, float bias_correction2);
double cpu_sum_squares(Backend *be, const Real *x, size_t n);
void cpu_mean_to(Backend *be, double *out, const Real *x, size_t n, double divisor);
void cpu_sum_squares_acc(Backend *be, double *acc, const Real *x, size_t n);
void cpu_clip_scale(Backend *be, float *scale, double *norm, const double *acc, float max_norm);
void cpu_adamw_update_dev(Backend *be, Real *p, const Real *g, Real *m, Real *v, size_t n,
                          float lr, float beta1, float beta2, float eps, float weight_decay,
                          const float *grad_scale, float bias_correction1,
                          float bias_correction2);
void cpu_scale(Backend *be, Real *x, size_t n, float s);
void cpu_axpy(Backend *be, Real *y, const Real *x, size_t n, float s);
void cpu_add_uniform_noise(Backend *be, Real *w, size_t n, uint64_t seed, uint64_t stream,
                           float scale);

/* ---- layernorm.c, gelu.c, patchify.c (ViT); attention.c's non-causal pair ---- */
void cpu_layernorm_forward(Backend *be, Real *out, Real *mean, Real *rstd, const Real *x,
                           const Real *weight, const Real *bias, int N, int C, float eps);
void cpu_layernorm_backward(Backend *be, Real *dx, Real *dweight, Real *dbias, const Real *dout,
                            const Real *x, const Real *weight, const Real *mean, const Real *rstd,
                            int N, int C);
void cpu_gelu_forward(Backend *be, Real *out, const Real *x, size_t n, GeluKind kind);
void cpu_gelu_backward(Backend *be, Real *dx, const Real *dout, const Real *x, size_t n,
                       GeluKind kind);
void cpu_attention_full_forward(Backend *be, Real *out, Real *att, const Real *q, const Real *k,
                                const Real *v, int B, int T, int NH, int NKV, int HD);
void cpu_attention_full_backward(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                                 const Real *dout, const Real *q, const Real *k, const Real *v,
                                 const Real *att, int B, int T, int NH, int NKV, int HD);
void cpu_patchify(Backend *be, Real *out, const Real *img, int B, int C, int H, int W, int P);
void cpu_bias_forward(Backend *be, Real *y, const Real *bias, int N, int C);
void cpu_bias_backward(Backend *be, Real *dbias, const Real *dy, int N, int C);

#endif
