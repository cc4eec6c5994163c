/* Softmax cross-entropy on the CPU over logits[N,V], one row per iteration. The forward is
 * an online logsumexp over L1-sized chunks, so a row streams from memory once, and keeps only
 * lse; the backward recomputes softmax from lse in one read-write pass, which is what lets it
 * run in place (dlogits == logits). Sums of exponentials are taken in double.
 * forward_backward runs both on a row while it is in cache (a 32000-logit row is 125 KiB, L2
 * holds it), so a training step reads the logits from memory once instead of twice. */
#include "kernels/bf16.h"
#include "kernels/kernel_assert.h"
#include "kernels/cpu/cpu_ops.h"

enum { CE_CHUNK = 2048 }; /* logits per chunk of the forward's online logsumexp (8 KiB) */

#if !CPU_HAVE_EXP16
/* the loop below into a separate buffer: restrict lets it vectorise without an alias check */
static void ce_softmax_scaled_apart(Real *restrict d, const Real *restrict x, Real lse, Real dl,
                                    int n) {
    for (int i = 0; i < n; i++) d[i] = cpu_exp(x[i] - lse) * dl;
}
#endif

/* d[i] = softmax_i * dl = e^(x[i] - lse) * dl over n logits; d may be x (each block of 16 is
 * read before it is written). With AVX-512, two blocks per iteration: the exponential is one
 * long dependency chain, and two independent ones keep the vector units busy. */
static void ce_softmax_scaled(Real *d, const Real *x, Real lse, Real dl, int n) {
    int i = 0;
#if CPU_HAVE_EXP16
    const __m512 vl = _mm512_set1_ps(lse), vd = _mm512_set1_ps(dl);
    for (; i + 32 <= n; i += 32) {
        const __m512 e0 = cpu_expf16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vl));
        const __m512 e1 = cpu_expf16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vl));
        _mm512_storeu_ps(d + i, _mm512_mul_ps(e0, vd));
        _mm512_storeu_ps(d + i + 16, _mm512_mul_ps(e1, vd));
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = cpu_expf16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vl));
        _mm512_mask_storeu_ps(d + i, m, _mm512_mul_ps(e, vd));
    }
#else
    if (d != x) {
        ce_softmax_scaled_apart(d, x, lse, dl, n);
        return;
    }
    for (; i < n; i++) d[i] = cpu_exp(d[i] - lse) * dl;
#endif
}

/* One row's forward: *lse and its loss (0 for an ignored row, target < 0). */
static void ce_row_forward(const Real *x, int tgt, int V, Real *lse, Real *loss) {
    /* online logsumexp over L1-sized chunks: the row streams from memory once */
    double mx = -INFINITY, sum = 0.0;
    for (int c0 = 0; c0 < V; c0 += CE_CHUNK) {
        const int c1 = c0 + CE_CHUNK < V ? c0 + CE_CHUNK : V;
        Real cm = x[c0];
#pragma omp simd reduction(max : cm)
        for (int i = c0; i < c1; i++) cm = x[i] > cm ? x[i] : cm;
        if (cm > mx) { /* rescale the running sum to the new max */
            sum *= exp(mx - cm);
            mx = cm;
        }
        sum += cpu_exp_sum(NULL, x + c0, (Real)mx, 1, c1 - c0);
    }
    const double l = (double)mx + log(sum);
    *lse = (Real)l;
    KERNEL_ASSERT(tgt < V);
    *loss = tgt < 0 ? 0 : (Real)(l - (double)x[tgt]);
}

/* One row's gradient into d (may be x): (softmax - onehot(tgt)) * dl, zeros when ignored. */
static void ce_row_backward(Real *d, const Real *x, Real lse, int tgt, Real dl, int V) {
    if (tgt < 0 || dl == 0) {
        memset(d, 0, (size_t)V * sizeof(Real));
        return;
    }
    KERNEL_ASSERT(tgt < V);
    ce_softmax_scaled(d, x, lse, dl, V);
    d[tgt] -= dl;
}

#ifndef LORASC_REAL_DOUBLE
/* The same gradient as bf16 (backend.h, cross_entropy_backward_bf16): each chunk of the row is
 * computed into an fp32 buffer exactly as above (the product, then the target's subtraction as
 * a separate store), then rounded, so the bits are those of to_bf16(ce_row_backward) while the
 * row is written once at 2 bytes per logit. (Rounding in registers instead, without the
 * buffer, was slower here: 16-bit packing of 16 lanes at a time; cpu_bf16_round packs 32.) */
static void ce_row_backward_bf16(uint16_t *d, const Real *x, Real lse, int tgt, Real dl, int V) {
    if (tgt < 0 || dl == 0) {
        memset(d, 0, (size_t)V * sizeof *d);
        return;
    }
    KERNEL_ASSERT(tgt < V);
    Real g[CE_CHUNK];
    for (int c0 = 0; c0 < V; c0 += CE_CHUNK) {
        const int len = c0 + CE_CHUNK < V ? CE_CHUNK : V - c0;
        ce_softmax_scaled(g, x + c0, lse, dl, len);
        if (tgt >= c0 && tgt < c0 + len) g[tgt - c0] -= dl;
        cpu_bf16_round(d + c0, g, (size_t)len);
    }
}
#endif

void cpu_cross_entropy_forward(Backend *be, Real *losses, Real *lse, const Real *logits,
                               const int32_t *targets, int N, int V) {
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * V >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++)
        ce_row_forward(logits + (size_t)n * V, targets[n], V, &lse[n], &losses[n]);
}

/* loss = lse - x_t, and dlse/dx_i = softmax_i, so dx_i = (softmax_i - [i == t]) * dloss. */
void cpu_cross_entropy_backward(Backend *be, Real *dlogits, const Real *logits, const Real *lse,
                                const int32_t *targets, const Real *dloss, int N, int V) {
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * V >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++)
        ce_row_backward(dlogits + (size_t)n * V, logits + (size_t)n * V, lse[n], targets[n],
                        dloss[n], V);
}

#ifndef LORASC_REAL_DOUBLE
void cpu_cross_entropy_backward_bf16(Backend *be, uint16_t *dlogits16, const Real *logits,
                                     const Real *lse, const int32_t *targets, const Real *dloss,
                                     int N, int V) {
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * V >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++)
        ce_row_backward_bf16(dlogits16 + (size_t)n * V, logits + (size_t)n * V, lse[n],
                             targets[n], dloss[n], V);
}
#endif

/* Both passes per row (backend.h, cross_entropy_forward_backward): the forward's bits, then
 * the backward's (fp32 into dlogits, or bf16 into dlogits16) from the row still in cache. */
void cpu_cross_entropy_forward_backward(Backend *be, Real *losses, Real *lse, Real *dlogits,
                                        uint16_t *dlogits16, const Real *logits,
                                        const int32_t *targets, const Real *dloss, int N, int V) {
    (void)be;
#ifdef LORASC_REAL_DOUBLE
    KERNEL_ASSERT(dlogits16 == NULL); /* the double build has no bf16 */
#endif
#pragma omp parallel for schedule(static) if ((size_t)N * V >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const Real *x = logits + (size_t)n * V;
        ce_row_forward(x, targets[n], V, &lse[n], &losses[n]);
#ifndef LORASC_REAL_DOUBLE
        if (dlogits16) {
            ce_row_backward_bf16(dlogits16 + (size_t)n * V, x, lse[n], targets[n], dloss[n], V);
            continue;
        }
#endif
        ce_row_backward(dlogits + (size_t)n * V, x, lse[n], targets[n], dloss[n], V);
    }
}
