/* Optimizer arithmetic on the CPU: the AdamW step (torch.optim.AdamW's arithmetic, operation
 * for operation) and the reductions/BLAS-1 ops that gradient clipping and LoRA merges need.
 * sum_squares is deterministic for any thread count: fixed blocks, partials summed in order. */
#include "kernels/cpu/cpu_ops.h"

#ifdef LORASC_REAL_DOUBLE
#define REAL_SQRT sqrt
#define REAL_FMA fma
#else
#define REAL_SQRT sqrtf
#define REAL_FMA fmaf
#endif

/* torch's single-tensor AdamW, step by step (scalars rounded to Real as torch does):
 *   p *= 1 - lr*wd;  m = lerp(m, g, 1 - b1);  v = v*b2 + (1 - b2)*g*g;
 *   p += -(lr/bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
 * ATen's vectorised lerp(a, b, w) is fma(w, b - a, a) for w < 0.5, else fma(w - 1, b - a, b). */
void cpu_adamw_update(Backend *be, Real *p, const Real *g, Real *m, Real *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                      float bias_correction1, float bias_correction2) {
    (void)be;
    const Real decay = (Real)(1.0 - (double)lr * weight_decay);
    const Real w1 = (Real)(1.0 - (double)beta1);
    const Real b2 = beta2, w2 = (Real)(1.0 - (double)beta2);
    const Real neg_step = (Real)(-((double)lr / bias_correction1));
    const Real bc2_sqrt = (Real)sqrt((double)bias_correction2);
    const Real e = eps, gs = grad_scale;
    const int small_w1 = w1 < (Real)0.5;
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        Real gi = g[i] * gs;
        Real mi = small_w1 ? REAL_FMA(w1, gi - m[i], m[i]) : REAL_FMA(w1 - 1, gi - m[i], gi);
        Real vi = v[i] * b2 + w2 * gi * gi;
        Real denom = REAL_SQRT(vi) / bc2_sqrt + e;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay + neg_step * mi / denom;
    }
}

double cpu_sum_squares(Backend *be, const Real *x, size_t n) {
    (void)be;
    enum { MAX_BLOCKS = 1024, MIN_BLOCK = 65536 };
    size_t bs = n / MAX_BLOCKS + 1;
    if (bs < MIN_BLOCK) bs = MIN_BLOCK;
    size_t nb = (n + bs - 1) / bs;
    double part[MAX_BLOCKS];
#pragma omp parallel for schedule(static) if (nb > 1)
    for (size_t blk = 0; blk < nb; blk++) {
        size_t i0 = blk * bs, i1 = i0 + bs < n ? i0 + bs : n;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (size_t i = i0; i < i1; i++) s += (double)x[i] * x[i];
        part[blk] = s;
    }
    double total = 0.0;
    for (size_t blk = 0; blk < nb; blk++) total += part[blk];
    return total;
}

void cpu_scale(Backend *be, Real *x, size_t n, float s) {
    (void)be;
    const Real rs = s;
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= rs;
}

void cpu_axpy(Backend *be, Real *y, const Real *x, size_t n, float s) {
    (void)be;
    const Real rs = s;
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) y[i] += rs * x[i];
}

/* ---- device-resident step statistics (backend.h): host memory here, so each is the host
 * code it replaces, operation for operation (the same bits) ---- */

void cpu_mean_to(Backend *be, double *out, const Real *x, size_t n, double divisor) {
    (void)be;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += x[i];
    *out = divisor != 0.0 ? sum / divisor : 0.0;
}

void cpu_sum_squares_acc(Backend *be, double *acc, const Real *x, size_t n) {
    *acc += cpu_sum_squares(be, x, n);
}

void cpu_clip_scale(Backend *be, float *scale, double *norm, const double *acc, float max_norm) {
    (void)be;
    const double nrm = sqrt(*acc);
    *norm = nrm;
    *scale = max_norm > 0.0f ? (float)fmin(1.0, max_norm / (nrm + 1e-6)) : 1.0f;
}

void cpu_adamw_update_dev(Backend *be, Real *p, const Real *g, Real *m, Real *v, size_t n,
                          float lr, float beta1, float beta2, float eps, float weight_decay,
                          const float *grad_scale, float bias_correction1,
                          float bias_correction2) {
    cpu_adamw_update(be, p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, *grad_scale,
                     bias_correction1, bias_correction2);
}
