/* Causal self-attention on the CPU with grouped-query heads: one (batch, head) per task,
 * plain loops that touch only the lower triangle (s <= t) of each T x T score matrix.
 * att[B,NH,T,T] keeps the probabilities (exact zeros above the diagonal) for the backward.
 * Not a flash kernel: the T x T matrices are materialised, as the Backend interface asks. */
#include "kernels/cpu/cpu_ops.h"

static inline Real att_dot(const Real *a, const Real *b, int n) {
    Real s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void cpu_attention_forward(Backend *be, Real *out, Real *att, const Real *q, const Real *k,
                           const Real *v, int B, int T, int NH, int NKV, int HD) {
    (void)be;
    const int rep = NH / NKV;
    const Real scale = (Real)(1.0 / sqrt((double)HD));
    const size_t qs = (size_t)NH * HD, ks = (size_t)NKV * HD; /* row strides over t */
#pragma omp parallel for schedule(static) if ((size_t)B * NH * T * T * HD >= CPU_PARALLEL_MIN)
    for (int bh = 0; bh < B * NH; bh++) {
        const int b = bh / NH, h = bh % NH, kh = h / rep;
        const Real *qh = q + (size_t)b * T * qs + (size_t)h * HD;
        const Real *kb = k + (size_t)b * T * ks + (size_t)kh * HD;
        const Real *vb = v + (size_t)b * T * ks + (size_t)kh * HD;
        Real *oh = out + (size_t)b * T * qs + (size_t)h * HD;
        for (int t = 0; t < T; t++) {
            const Real *qt = qh + t * qs;
            Real *row = att + ((size_t)bh * T + t) * T;
            /* scores and their max */
            Real mx = -INFINITY;
            for (int s = 0; s <= t; s++) {
                Real x = att_dot(qt, kb + s * ks, HD) * scale;
                row[s] = x;
                mx = x > mx ? x : mx;
            }
            /* softmax over s <= t, sum in double; the masked tail is exactly zero */
            double sum = 0.0;
#pragma omp simd reduction(+ : sum)
            for (int s = 0; s <= t; s++) {
                Real e = cpu_exp(row[s] - mx);
                row[s] = e;
                sum += (double)e;
            }
            const Real inv = (Real)(1.0 / sum);
            for (int s = 0; s <= t; s++) row[s] *= inv;
            for (int s = t + 1; s < T; s++) row[s] = 0;
            /* out_t = sum_s p_s v_s */
            Real *ot = oh + t * qs;
            for (int d = 0; d < HD; d++) ot[d] = 0;
            for (int s = 0; s <= t; s++) {
                const Real p = row[s], *vs = vb + s * ks;
#pragma omp simd
                for (int d = 0; d < HD; d++) ot[d] += p * vs[d];
            }
        }
    }
}

/* With P = softmax(S), S = scale Q K^T, O = P V:
 *   dV = P^T dO; dP = dO V^T; dS = P * (dP - rowsum(dP * P)); dQ = scale dS K; dK = scale dS^T Q.
 * One task per (batch, kv head) so the query heads of a group add into dk/dv without races. */
void cpu_attention_backward(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                            const Real *dout, const Real *q, const Real *k, const Real *v,
                            const Real *att, int B, int T, int NH, int NKV, int HD) {
    (void)be;
    const int rep = NH / NKV;
    const Real scale = (Real)(1.0 / sqrt((double)HD));
    const size_t qs = (size_t)NH * HD, ks = (size_t)NKV * HD;
#pragma omp parallel for schedule(static) if ((size_t)B * NH * T * T * HD >= CPU_PARALLEL_MIN)
    for (int bk = 0; bk < B * NKV; bk++) {
        const int b = bk / NKV, kh = bk % NKV;
        const Real *kb = k + (size_t)b * T * ks + (size_t)kh * HD;
        const Real *vb = v + (size_t)b * T * ks + (size_t)kh * HD;
        Real *dkb = dk + (size_t)b * T * ks + (size_t)kh * HD;
        Real *dvb = dv + (size_t)b * T * ks + (size_t)kh * HD;
        for (int t = 0; t < T; t++) {
            memset(dkb + t * ks, 0, (size_t)HD * sizeof(Real));
            memset(dvb + t * ks, 0, (size_t)HD * sizeof(Real));
        }
        for (int h = kh * rep; h < (kh + 1) * rep; h++) {
            const size_t bh = (size_t)b * NH + h;
            const size_t hoff = (size_t)b * T * qs + (size_t)h * HD;
            for (int t = 0; t < T; t++) {
                const Real *arow = att + (bh * T + t) * T;
                Real *drow = datt + (bh * T + t) * T;
                const Real *qt = q + hoff + t * qs, *got = dout + hoff + t * qs;
                Real *dqt = dq + hoff + t * qs;
                /* dP[t,s] = dO_t . V_s, and the row sum of dP * P */
                double rs = 0.0;
                for (int s = 0; s <= t; s++) {
                    Real x = att_dot(got, vb + s * ks, HD);
                    drow[s] = x;
                    rs += (double)x * arow[s];
                }
                const Real rsr = (Real)rs;
                /* dS, pre-multiplied by scale (it is only ever used scaled) */
                for (int s = 0; s <= t; s++) drow[s] = arow[s] * (drow[s] - rsr) * scale;
                for (int d = 0; d < HD; d++) dqt[d] = 0;
                for (int s = 0; s <= t; s++) {
                    const Real c = drow[s], a = arow[s];
                    const Real *kss = kb + s * ks;
                    Real *dks = dkb + s * ks, *dvs = dvb + s * ks;
#pragma omp simd
                    for (int d = 0; d < HD; d++) {
                        dqt[d] += c * kss[d];
                        dks[d] += c * qt[d];
                        dvs[d] += a * got[d];
                    }
                }
            }
        }
    }
}
