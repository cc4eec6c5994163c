/* Double-precision references for tests/test_backend_ops.c: each op of kernels/backend.h
 * written from its definition, in plain loops, sharing no code with the kernels. Inputs
 * are the float arrays the backends read; outputs are double. "acc" outputs hold their
 * starting values and are added to, as the ops' accumulating outputs are. */
#ifndef LORASC_TESTS_BACKEND_REF_H
#define LORASC_TESTS_BACKEND_REF_H

#include <stddef.h>
#include <stdint.h>

/* c[M,N] = alpha op(a) op(b) + beta c (c holds its starting values); mag[M,N] gets
 * |alpha| sum |a||b| + |beta c|, the scale of the rounding error. */
void ref_matmul(double *c, double *mag, const float *a, const float *b, int M, int N, int K,
                int trans_a, int trans_b, double alpha, double beta);

void ref_rmsnorm_forward(double *out, double *rstd, const float *x, const float *w, int N, int C,
                         double eps);
/* dx (acc) and, when not NULL, dw (acc); rstd is the float the backend was given */
void ref_rmsnorm_backward(double *dx, double *dw, const float *dout, const float *x,
                          const float *w, const float *rstd, int N, int C);
void ref_layernorm_forward(double *out, double *mean, double *rstd, const float *x,
                           const float *w, const float *b, int N, int C, double eps);
void ref_layernorm_backward(double *dx, double *dw, double *db, const float *dout, const float *x,
                            const float *w, const float *mean, const float *rstd, int N, int C);

/* x[B,T,NH,HD] rotated in place by sign * angle (tables [T_max, HD/2], row pos0 + t) */
void ref_rope(double *x, const float *cos_tab, const float *sin_tab, int B, int T, int NH, int HD,
              int pos0, int interleaved, double sign);

/* out[B,T,NH,HD]; probs[B,NH,T,T] (zeros where masked) and lse[B,NH,T] of the scaled scores,
 * each when not NULL */
void ref_attention_forward(double *out, double *probs, double *lse, const float *q,
                           const float *k, const float *v, int B, int T, int NH, int NKV, int HD,
                           int causal);
/* dq, dk, dv written */
void ref_attention_backward(double *dq, double *dk, double *dv, const float *dout, const float *q,
                            const float *k, const float *v, int B, int T, int NH, int NKV, int HD,
                            int causal);

/* GELU of x for GeluKind kind; its derivative in *deriv */
double ref_gelu(double x, int kind, double *deriv);

void ref_cross_entropy_forward(double *losses, double *lse, const float *logits,
                               const int32_t *targets, int N, int V);
/* lse is the float the backend was given */
void ref_cross_entropy_backward(double *dlogits, const float *logits, const float *lse,
                                const int32_t *targets, const float *dloss, int N, int V);

/* torch.optim.AdamW's step on p, m, v (starting values in, results out), in double */
void ref_adamw(double *p, double *m, double *v, const float *g, size_t n, double lr,
               double beta1, double beta2, double eps, double wd, double grad_scale, double bc1,
               double bc2);

void ref_patchify(double *out, const float *img, int B, int C, int H, int W, int P);

#endif
