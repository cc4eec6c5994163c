/* Double-precision references for the backend parity harness (tests/kernels/backend_ref.h): naive
 * loops over the definitions in kernels/backend.h; slow on purpose, shapes are tiny. */
#include "tests/kernels/backend_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_matmul(double *c, double *mag, const float *a, const float *b, int M, int N, int K,
                int trans_a, int trans_b, double alpha, double beta) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0, sa = 0;
            for (int p = 0; p < K; p++) {
                const double x = trans_a ? a[(size_t)p * M + i] : a[(size_t)i * K + p];
                const double y = trans_b ? b[(size_t)j * K + p] : b[(size_t)p * N + j];
                s += x * y;
                sa += fabs(x * y);
            }
            const size_t o = (size_t)i * N + j;
            const double c0 = beta == 0 ? 0 : beta * c[o]; /* beta = 0 never reads c */
            mag[o] = fabs(alpha) * sa + fabs(c0);
            c[o] = alpha * s + c0;
        }
}

void ref_rmsnorm_forward(double *out, double *rstd, const float *x, const float *w, int N, int C,
                         double eps) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        const double r = 1 / sqrt(ss / C + eps);
        rstd[n] = r;
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = xr[c] * r * w[c];
    }
}

/* y_c = w_c x_c r: dx_j = r w_j g_j - r^3 x_j sum_c(w_c g_c x_c) / C, dw_c = sum_n g_c x_c r */
void ref_rmsnorm_backward(double *dx, double *dw, const float *dout, const float *x,
                          const float *w, const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const size_t o = (size_t)n * C;
        const double r = rstd[n];
        double dot = 0;
        for (int c = 0; c < C; c++) dot += (double)w[c] * dout[o + c] * x[o + c];
        for (int c = 0; c < C; c++) {
            dx[o + c] += r * w[c] * dout[o + c] - r * r * r * dot / C * x[o + c];
            if (dw) dw[c] += (double)dout[o + c] * x[o + c] * r;
        }
    }
}

void ref_layernorm_forward(double *out, double *mean, double *rstd, const float *x,
                           const float *w, const float *b, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        double mu = 0, var = 0;
        for (int c = 0; c < C; c++) mu += xr[c];
        mu /= C;
        for (int c = 0; c < C; c++) var += (xr[c] - mu) * (xr[c] - mu);
        const double r = 1 / sqrt(var / C + eps);
        mean[n] = mu;
        rstd[n] = r;
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = (xr[c] - mu) * r * w[c] + b[c];
    }
}

/* xhat = (x - mean) rstd, gw = g w: dx = rstd (gw - mean(gw) - xhat mean(gw xhat)) */
void ref_layernorm_backward(double *dx, double *dw, double *db, const float *dout, const float *x,
                            const float *w, const float *mean, const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const size_t o = (size_t)n * C;
        const double m = mean[n], r = rstd[n];
        double a = 0, bb = 0;
        for (int c = 0; c < C; c++) {
            a += (double)dout[o + c] * w[c];
            bb += (double)dout[o + c] * w[c] * (x[o + c] - m) * r;
        }
        a /= C;
        bb /= C;
        for (int c = 0; c < C; c++) {
            const double xhat = (x[o + c] - m) * r;
            dx[o + c] += r * ((double)dout[o + c] * w[c] - a - xhat * bb);
            if (dw) dw[c] += dout[o + c] * xhat;
            if (db) db[c] += dout[o + c];
        }
    }
}

void ref_rope(double *x, const float *cos_tab, const float *sin_tab, int B, int T, int NH, int HD,
              int pos0, int interleaved, double sign) {
    const int half = HD / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                double *xh = x + (((size_t)b * T + t) * NH + h) * HD;
                for (int i = 0; i < half; i++) {
                    const int i0 = interleaved ? 2 * i : i, i1 = interleaved ? 2 * i + 1 : i + half;
                    const double c = cos_tab[(size_t)(pos0 + t) * half + i];
                    const double s = sign * sin_tab[(size_t)(pos0 + t) * half + i];
                    const double x0 = xh[i0], x1 = xh[i1];
                    xh[i0] = x0 * c - x1 * s;
                    xh[i1] = x0 * s + x1 * c;
                }
            }
}

/* P[t, s] = softmax_s(scale q_t . k_s) over the keys row t sees, for one (b, h) */
static void ref_attention_probs(double *P, double *lse, const float *q, const float *k, int b,
                                int h, int T, int NH, int NKV, int HD, int causal) {
    const int kh = h / (NH / NKV);
    const double scale = 1 / sqrt((double)HD);
    for (int t = 0; t < T; t++) {
        const float *qt = q + (((size_t)b * T + t) * NH + h) * HD;
        const int last = causal ? t : T - 1;
        double mx = -INFINITY;
        for (int s = 0; s < T; s++) {
            double d = 0;
            if (s <= last) {
                const float *ks = k + (((size_t)b * T + s) * NKV + kh) * HD;
                for (int i = 0; i < HD; i++) d += (double)qt[i] * ks[i];
                d *= scale;
                if (d > mx) mx = d;
            }
            P[(size_t)t * T + s] = d;
        }
        double sum = 0;
        for (int s = 0; s <= last; s++) sum += exp(P[(size_t)t * T + s] - mx);
        for (int s = 0; s < T; s++)
            P[(size_t)t * T + s] = s <= last ? exp(P[(size_t)t * T + s] - mx) / sum : 0;
        if (lse) lse[t] = mx + log(sum);
    }
}

void ref_attention_forward(double *out, double *probs, double *lse, const float *q,
                           const float *k, const float *v, int B, int T, int NH, int NKV, int HD,
                           int causal) {
    double *P = malloc((size_t)T * T * sizeof(double));
    const int kh_of = NH / NKV;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const size_t bh = (size_t)b * NH + h;
            ref_attention_probs(P, lse ? lse + bh * T : NULL, q, k, b, h, T, NH, NKV, HD, causal);
            if (probs) memcpy(probs + bh * T * T, P, (size_t)T * T * sizeof(double));
            for (int t = 0; t < T; t++)
                for (int i = 0; i < HD; i++) {
                    double o = 0;
                    for (int s = 0; s < T; s++)
                        o += P[(size_t)t * T + s] *
                             v[(((size_t)b * T + s) * NKV + h / kh_of) * HD + i];
                    out[(((size_t)b * T + t) * NH + h) * HD + i] = o;
                }
        }
    free(P);
}

/* dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(P dP)), dQ = scale dS K, dK = scale dS^T Q */
void ref_attention_backward(double *dq, double *dk, double *dv, const float *dout, const float *q,
                            const float *k, const float *v, int B, int T, int NH, int NKV, int HD,
                            int causal) {
    double *P = malloc((size_t)T * T * sizeof(double)), *dS = malloc((size_t)T * sizeof(double));
    const int rep = NH / NKV;
    const double scale = 1 / sqrt((double)HD);
    memset(dk, 0, (size_t)B * T * NKV * HD * sizeof(double));
    memset(dv, 0, (size_t)B * T * NKV * HD * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const int kh = h / rep;
            ref_attention_probs(P, NULL, q, k, b, h, T, NH, NKV, HD, causal);
            for (int t = 0; t < T; t++) {
                const float *g = dout + (((size_t)b * T + t) * NH + h) * HD;
                const float *qt = q + (((size_t)b * T + t) * NH + h) * HD;
                double D = 0;
                for (int s = 0; s < T; s++) {
                    const float *vs = v + (((size_t)b * T + s) * NKV + kh) * HD;
                    double dp = 0;
                    for (int i = 0; i < HD; i++) dp += (double)g[i] * vs[i];
                    dS[s] = dp;
                    D += P[(size_t)t * T + s] * dp;
                }
                double *dqt = dq + (((size_t)b * T + t) * NH + h) * HD;
                for (int i = 0; i < HD; i++) dqt[i] = 0;
                for (int s = 0; s < T; s++) {
                    const double p = P[(size_t)t * T + s], ds = p * (dS[s] - D) * scale;
                    const size_t ko = (((size_t)b * T + s) * NKV + kh) * HD;
                    for (int i = 0; i < HD; i++) {
                        dqt[i] += ds * k[ko + i];
                        dk[ko + i] += ds * qt[i];
                        dv[ko + i] += p * g[i];
                    }
                }
            }
        }
    free(P);
    free(dS);
}

double ref_gelu(double x, int kind, double *deriv) {
    if (kind == 1) { /* tanh */
        const double c = sqrt(2 / M_PI), u = c * (x + 0.044715 * x * x * x), th = tanh(u);
        *deriv = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x);
        return 0.5 * x * (1 + th);
    }
    if (kind == 2) { /* quick */
        const double s = 1 / (1 + exp(-1.702 * x));
        *deriv = s + 1.702 * x * s * (1 - s);
        return x * s;
    }
    const double cdf = 0.5 * (1 + erf(x / sqrt(2.0)));
    *deriv = cdf + x * exp(-0.5 * x * x) / sqrt(2 * M_PI);
    return x * cdf;
}

void ref_cross_entropy_forward(double *losses, double *lse, const float *logits,
                               const int32_t *targets, int N, int V) {
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
        for (int i = 0; i < V; i++) sum += exp(x[i] - mx);
        lse[n] = mx + log(sum);
        losses[n] = targets[n] < 0 ? 0 : lse[n] - x[targets[n]];
    }
}

void ref_cross_entropy_backward(double *dlogits, const float *logits, const float *lse,
                                const int32_t *targets, const float *dloss, int N, int V) {
    for (int n = 0; n < N; n++)
        for (int i = 0; i < V; i++) {
            const size_t o = (size_t)n * V + i;
            if (targets[n] < 0 || dloss[n] == 0) {
                dlogits[o] = 0;
                continue;
            }
            dlogits[o] = (exp((double)logits[o] - lse[n]) - (i == targets[n])) * dloss[n];
        }
}

void ref_adamw(double *p, double *m, double *v, const float *g, size_t n, double lr,
               double beta1, double beta2, double eps, double wd, double grad_scale, double bc1,
               double bc2) {
    for (size_t i = 0; i < n; i++) {
        const double gi = g[i] * grad_scale;
        p[i] *= 1 - lr * wd;
        m[i] = beta1 * m[i] + (1 - beta1) * gi;
        v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
        p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
    }
}

void ref_patchify(double *out, const float *img, int B, int C, int H, int W, int P) {
    const int GW = W / P, NP = (H / P) * GW, K = C * P * P;
    for (int b = 0; b < B; b++)
        for (int p = 0; p < NP; p++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < P; i++)
                    for (int j = 0; j < P; j++)
                        out[((size_t)b * NP + p) * K + (size_t)c * P * P + i * P + j] =
                            img[(((size_t)b * C + c) * H + (size_t)(p / GW) * P + i) * W +
                                (size_t)(p % GW) * P + j];
}
