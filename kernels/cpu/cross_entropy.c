/* Softmax cross-entropy on the CPU over logits[N,V], one row per iteration. The forward is
 * an online logsumexp over L1-sized chunks, so a row streams from memory once, and keeps only
 * lse; the backward recomputes softmax from lse in one read-write pass, which is what lets it
 * run in place (dlogits == logits). Sums of exponentials are taken in double. */
#include "kernels/bf16.h"
#include "kernels/kernel_assert.h"
#include "kernels/cpu/cpu_ops.h"

enum { CE_CHUNK = 2048 }; /* logits per chunk of the forward's online logsumexp (8 KiB) */

/* d[i] = softmax_i * dl for one row. Two versions so that both vectorise without a runtime
 * alias check falling back to scalar code: in place, and into a separate buffer. */
static void ce_softmax_scaled_inplace(Real *d, Real lse, Real dl, int V) {
    for (int i = 0; i < V; i++) d[i] = cpu_exp(d[i] - lse) * dl;
}

static void ce_softmax_scaled(Real *restrict d, const Real *restrict x, Real lse, Real dl, int V) {
    for (int i = 0; i < V; i++) d[i] = cpu_exp(x[i] - lse) * dl;
}

void cpu_cross_entropy_forward(Backend *be, Real *losses, Real *lse, const Real *logits,
                               const int32_t *targets, int N, int V) {
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * V >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const Real *x = logits + (size_t)n * V;
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
            const Real m = (Real)mx;
            double cs = 0.0;
#pragma omp simd reduction(+ : cs)
            for (int i = c0; i < c1; i++) cs += (double)cpu_exp(x[i] - m);
            sum += cs;
        }
        double l = (double)mx + log(sum);
        lse[n] = (Real)l;
        int tgt = targets[n];
        KERNEL_ASSERT(tgt < V);
        losses[n] = tgt < 0 ? 0 : (Real)(l - (double)x[tgt]);
    }
}

/* loss = lse - x_t, and dlse/dx_i = softmax_i, so dx_i = (softmax_i - [i == t]) * dloss. */
void cpu_cross_entropy_backward(Backend *be, Real *dlogits, const Real *logits, const Real *lse,
                                const int32_t *targets, const Real *dloss, int N, int V) {
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * V >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const Real *x = logits + (size_t)n * V; /* may be the same memory as d */
        Real *d = dlogits + (size_t)n * V;
        int tgt = targets[n];
        Real dl = dloss[n];
        if (tgt < 0 || dl == 0) {
            memset(d, 0, (size_t)V * sizeof(Real));
            continue;
        }
        KERNEL_ASSERT(tgt < V);
        if (d == x)
            ce_softmax_scaled_inplace(d, lse[n], dl, V);
        else
            ce_softmax_scaled(d, x, lse[n], dl, V);
        d[tgt] -= dl;
    }
}

#ifndef LORASC_REAL_DOUBLE
/* The backward written as bf16 (backend.h, cross_entropy_backward_bf16): each chunk of a row is
 * computed into an fp32 buffer exactly as above (the product, then the target's subtraction
 * as a separate store), then rounded, so the bits are those of to_bf16(cross_entropy_backward)
 * while the row is written once at 2 bytes per logit. */
void cpu_cross_entropy_backward_bf16(Backend *be, uint16_t *dlogits16, const Real *logits,
                                     const Real *lse, const int32_t *targets, const Real *dloss,
                                     int N, int V) {
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * V >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const Real *x = logits + (size_t)n * V;
        uint16_t *d = dlogits16 + (size_t)n * V;
        const int tgt = targets[n];
        const Real dl = dloss[n];
        if (tgt < 0 || dl == 0) {
            memset(d, 0, (size_t)V * sizeof *d);
            continue;
        }
        KERNEL_ASSERT(tgt < V);
        Real g[CE_CHUNK];
        for (int c0 = 0; c0 < V; c0 += CE_CHUNK) {
            const int len = c0 + CE_CHUNK < V ? CE_CHUNK : V - c0;
            ce_softmax_scaled(g, x + c0, lse[n], dl, len);
            if (tgt >= c0 && tgt < c0 + len) g[tgt - c0] -= dl;
#pragma omp simd
            for (int i = 0; i < len; i++) d[c0 + i] = bf16_from_float(g[i]);
        }
    }
}
#endif
