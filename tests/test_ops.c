/* Every CPU op, in double precision: each backward against central finite differences of a
 * random projection L = sum(r * forward(x)) on tiny shapes, forwards against naive loops, and
 * the interface conventions (write vs accumulate, in-place cross-entropy, AdamW as torch does
 * it, deterministic sum_squares). Also the float exp approximation the float build uses. */
#ifndef LORASC_REAL_DOUBLE
#error "test_ops checks gradients by finite differences: build it with -DLORASC_REAL_DOUBLE"
#endif

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/check.h"

#define SEED 20240611u
#define FD_STEP 1e-6
#define FD_ATOL 1e-7 /* central differences at step 1e-6 carry ~1e-9 of rounding noise */
#define FD_RTOL 1e-6

static Backend *be;

/* ---- bookkeeping: every comparison goes through expect_close ---- */

static size_t n_checks, n_elems;
static double worst_fd_abs, worst_fd_rel, worst_ratio; /* ratio = |err| / tol */
static const char *worst_what = "";

/* Fails the test (after check_close_f64 has printed index and values) when any element of
 * got is farther than atol + rtol * |ref| from ref. */
static void expect_close(const char *what, const Real *got, const Real *ref, size_t n, double atol,
                         double rtol) {
    int is_fd = atol == FD_ATOL && rtol == FD_RTOL;
    for (size_t i = 0; i < n; i++) {
        double err = fabs(got[i] - ref[i]), tol = atol + rtol * fabs(ref[i]);
        if (tol > 0 && err / tol > worst_ratio) {
            worst_ratio = err / tol;
            worst_what = what;
        }
        if (is_fd) {
            if (err > worst_fd_abs) worst_fd_abs = err;
            if (fabs(ref[i]) > 1e-3 && err / fabs(ref[i]) > worst_fd_rel)
                worst_fd_rel = err / fabs(ref[i]);
        }
    }
    n_checks++;
    n_elems += n;
    size_t bad = check_close_f64(what, got, ref, n, atol, rtol);
    if (bad) fail_msg("%s: %zu of %zu elements out of tolerance", what, bad, n);
}

static Real *vec(size_t n) {
    Real *x = calloc(n ? n : 1, sizeof(Real));
    assert_non_null(x);
    return x;
}

static Real *rand_vec(size_t n, uint64_t stream, double lo, double hi) {
    Real *x = vec(n);
    check_fill_uniform(x, n, SEED, stream, lo, hi);
    return x;
}

/* Uniform in [-1, 1] with |x| >= 0.05: random points, never zeros. */
static Real *rand_nonzero(size_t n, uint64_t stream) {
    Real *x = rand_vec(n, stream, 0.05, 1.0);
    Real *sign = rand_vec(n, stream + 1000, -1.0, 1.0);
    for (size_t i = 0; i < n; i++)
        if (sign[i] < 0) x[i] = -x[i];
    free(sign);
    return x;
}

static Real *copy_vec(const Real *x, size_t n) {
    Real *y = vec(n);
    memcpy(y, x, n * sizeof(Real));
    return y;
}

static double dot(const Real *a, const Real *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---- finite differences ---- */

typedef double (*LossFn)(void *ctx);

/* Central differences of loss(ctx) with respect to each x[i] (x is perturbed in place and
 * restored), compared with the analytic gradient. */
static void expect_grad(const char *what, Real *x, size_t n, const Real *analytic, LossFn loss,
                        void *ctx) {
    Real *num = vec(n);
    for (size_t i = 0; i < n; i++) {
        Real x0 = x[i];
        x[i] = x0 + FD_STEP;
        double lp = loss(ctx);
        x[i] = x0 - FD_STEP;
        double lm = loss(ctx);
        x[i] = x0;
        num[i] = (Real)((lp - lm) / (2 * FD_STEP));
    }
    expect_close(what, analytic, num, n, FD_ATOL, FD_RTOL);
    free(num);
}

/* ---- memory ---- */

static void test_memory(void **state) {
    (void)state;
    size_t sizes[] = {0, 1, 100, 4096, 100003};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = be->alloc(be, sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        for (size_t j = 0; j < sizes[i]; j++) assert_int_equal(p[j], 0);
        be->free(be, p);
    }
    const size_t n = 257;
    Real *host = rand_nonzero(n, 1), *back = vec(n);
    Real *d1 = be->alloc(be, n * sizeof(Real)), *d2 = be->alloc(be, n * sizeof(Real));
    be->to_device(be, d1, host, n * sizeof(Real));
    be->copy(be, d2, d1, n * sizeof(Real));
    be->sync(be);
    be->to_host(be, back, d2, n * sizeof(Real));
    expect_close("memory round trip", back, host, n, 0, 0);
    be->zero(be, d2, n * sizeof(Real));
    be->to_host(be, back, d2, n * sizeof(Real));
    for (size_t i = 0; i < n; i++) assert_true(back[i] == 0);
    be->free(be, d1);
    be->free(be, d2);
    free(host);
    free(back);
}

/* ---- matmul ---- */

/* All four transpose combinations, with and without beta, against a naive triple loop. */
static void check_matmul(int M, int N, int K) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int with_beta = 0; with_beta < 2; with_beta++) {
                Real *a = rand_nonzero((size_t)M * K, 10), *b = rand_nonzero((size_t)K * N, 11);
                Real *c = rand_nonzero((size_t)M * N, 12), *ref = vec((size_t)M * N);
                const Real alpha = 0.7, beta = with_beta ? 0.3 : 0;
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double s = 0;
                        for (int p = 0; p < K; p++) {
                            double aip = ta ? a[p * M + i] : a[i * K + p];
                            double bpj = tb ? b[j * K + p] : b[p * N + j];
                            s += aip * bpj;
                        }
                        ref[i * N + j] = alpha * s + beta * c[i * N + j];
                    }
                if (!with_beta) /* beta = 0 writes: whatever c held is ignored */
                    for (int i = 0; i < M * N; i++) c[i] = NAN;
                be->matmul(be, c, a, b, M, N, K, ta, tb, alpha, beta);
                char what[64];
                snprintf(what, sizeof what, "matmul %dx%dx%d ta=%d tb=%d beta=%g", M, N, K, ta,
                         tb, (double)beta);
                expect_close(what, c, ref, (size_t)M * N, 1e-13, 1e-12);
                free(a), free(b), free(c), free(ref);
            }
}

static void test_matmul(void **state) {
    (void)state;
    check_matmul(5, 7, 3);
    check_matmul(100, 60, 50); /* threaded: slabs of rows */
    check_matmul(40, 90, 80);  /* threaded: slabs of columns */
    check_matmul(333, 37, 29); /* rows not a multiple of the slab alignment */
    /* the documented linear layer: y[N,out] = x[N,in] W^T, W [out,in] */
    const int rows = 4, in = 6, out = 3;
    Real *x = rand_nonzero((size_t)rows * in, 13), *w = rand_nonzero((size_t)out * in, 14);
    Real *y = vec((size_t)rows * out), *ref = vec((size_t)rows * out);
    for (int n = 0; n < rows; n++)
        for (int o = 0; o < out; o++) ref[n * out + o] = dot(x + n * in, w + o * in, (size_t)in);
    be->matmul(be, y, x, w, rows, out, in, 0, 1, 1, 0);
    expect_close("matmul linear layer", y, ref, (size_t)rows * out, 1e-14, 1e-12);
    free(x), free(w), free(y), free(ref);
}

/* ---- embedding ---- */

typedef struct {
    Real *table, *out, *r;
    const int32_t *tokens;
    int N, C;
} EmbCtx;

static double emb_loss(void *p) {
    EmbCtx *c = p;
    be->embedding_forward(be, c->out, c->tokens, c->table, c->N, c->C);
    return dot(c->r, c->out, (size_t)c->N * c->C);
}

static void test_embedding(void **state) {
    (void)state;
    enum { V = 11, C = 8, N = 10 };
    const int32_t tokens[N] = {3, 0, 10, 3, 7, 3, 1, 10, 5, 2}; /* repeats scatter-add */
    Real *table = rand_nonzero(V * C, 20), *out = vec(N * C), *r = rand_nonzero(N * C, 21);
    EmbCtx c = {table, out, r, tokens, N, C};
    emb_loss(&c);
    for (int n = 0; n < N; n++)
        expect_close("embedding forward row", out + n * C, table + tokens[n] * C, C, 0, 0);
    Real *dtable = vec(V * C);
    be->embedding_backward(be, dtable, r, tokens, N, C);
    expect_grad("embedding dtable", table, V * C, dtable, emb_loss, &c);
    /* parameter gradients accumulate: a second call doubles */
    Real *twice = vec(V * C);
    for (int i = 0; i < V * C; i++) twice[i] = 2 * dtable[i];
    be->embedding_backward(be, dtable, r, tokens, N, C);
    expect_close("embedding dtable accumulates", dtable, twice, V * C, 1e-15, 1e-15);
    free(table), free(out), free(r), free(dtable), free(twice);
}

/* ---- rmsnorm ---- */

typedef struct {
    Real *x, *w, *out, *rstd, *r;
    int N, C;
    float eps;
} NormCtx;

static double norm_loss(void *p) {
    NormCtx *c = p;
    be->rmsnorm_forward(be, c->out, c->rstd, c->x, c->w, c->N, c->C, c->eps);
    return dot(c->r, c->out, (size_t)c->N * c->C);
}

static void test_rmsnorm(void **state) {
    (void)state;
    enum { N = 6, C = 8 };
    const float eps = 1e-5f;
    Real *x = rand_nonzero(N * C, 30), *w = rand_nonzero(C, 31), *r = rand_nonzero(N * C, 32);
    Real *out = vec(N * C), *rstd = vec(N), *ref = vec(N * C), *ref_rstd = vec(N);
    NormCtx c = {x, w, out, rstd, r, N, C, eps};
    norm_loss(&c);
    for (int n = 0; n < N; n++) {
        ref_rstd[n] = 1 / sqrt(dot(x + n * C, x + n * C, C) / C + (double)eps);
        for (int i = 0; i < C; i++) ref[n * C + i] = x[n * C + i] * ref_rstd[n] * w[i];
    }
    expect_close("rmsnorm rstd", rstd, ref_rstd, N, 1e-15, 1e-13);
    expect_close("rmsnorm forward", out, ref, N * C, 1e-15, 1e-13);

    /* dx and dweight both accumulate: start from random values and subtract them */
    Real *dx0 = rand_nonzero(N * C, 33), *dw0 = rand_nonzero(C, 34);
    Real *dx = copy_vec(dx0, N * C), *dw = copy_vec(dw0, C);
    be->rmsnorm_backward(be, dx, dw, r, x, w, rstd, N, C);
    Real *gx = vec(N * C), *gw = vec(C);
    for (int i = 0; i < N * C; i++) gx[i] = dx[i] - dx0[i];
    for (int i = 0; i < C; i++) gw[i] = dw[i] - dw0[i];
    expect_grad("rmsnorm dx", x, N * C, gx, norm_loss, &c);
    expect_grad("rmsnorm dweight", w, C, gw, norm_loss, &c);
    norm_loss(&c); /* restore rstd for the unperturbed x */
    be->rmsnorm_backward(be, dx, dw, r, x, w, rstd, N, C);
    for (int i = 0; i < N * C; i++) ref[i] = dx0[i] + 2 * gx[i];
    expect_close("rmsnorm dx accumulates", dx, ref, N * C, 1e-14, 1e-13);
    Real *ref_w = vec(C);
    for (int i = 0; i < C; i++) ref_w[i] = dw0[i] + 2 * gw[i];
    expect_close("rmsnorm dweight accumulates", dw, ref_w, C, 1e-14, 1e-13);
    /* dweight == NULL leaves the norm weight's gradient alone */
    be->rmsnorm_backward(be, dx, NULL, r, x, w, rstd, N, C);
    free(x), free(w), free(r), free(out), free(rstd), free(ref), free(ref_rstd);
    free(dx0), free(dw0), free(dx), free(dw), free(gx), free(gw), free(ref_w);
}

/* ---- rope ---- */

typedef struct {
    Real *x, *y, *r;
    const Real *cos_tab, *sin_tab;
    int B, T, NH, HD, pos0;
    RopeStyle style;
} RopeCtx;

static double rope_loss(void *p) {
    RopeCtx *c = p;
    size_t n = (size_t)c->B * c->T * c->NH * c->HD;
    memcpy(c->y, c->x, n * sizeof(Real));
    be->rope_forward(be, c->y, c->cos_tab, c->sin_tab, c->B, c->T, c->NH, c->HD, c->pos0, c->style);
    return dot(c->r, c->y, n);
}

static void test_rope(void **state) {
    (void)state;
    enum { B = 2, T = 5, NH = 4, HD = 6, POS0 = 3, TMAX = POS0 + T };
    const size_t n = (size_t)B * T * NH * HD;
    const double theta = 10000.0;
    Real *cos_tab = vec(TMAX * HD / 2), *sin_tab = vec(TMAX * HD / 2);
    for (int p = 0; p < TMAX; p++)
        for (int i = 0; i < HD / 2; i++) {
            double ang = p * pow(theta, -2.0 * i / HD);
            cos_tab[p * HD / 2 + i] = cos(ang);
            sin_tab[p * HD / 2 + i] = sin(ang);
        }
    for (int style = ROPE_INTERLEAVED; style <= ROPE_HALF; style++) {
        Real *x = rand_nonzero(n, 40), *y = vec(n), *r = rand_nonzero(n, 41), *ref = vec(n);
        RopeCtx c = {x, y, r, cos_tab, sin_tab, B, T, NH, HD, POS0, (RopeStyle)style};
        rope_loss(&c);
        /* naive: pair i of the head at time t turns by (POS0 + t) * theta^(-2i/HD) */
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int h = 0; h < NH; h++)
                    for (int i = 0; i < HD / 2; i++) {
                        size_t base = (((size_t)b * T + t) * NH + h) * HD;
                        size_t i0 = base + (style == ROPE_INTERLEAVED ? 2 * i : i);
                        size_t i1 = base + (style == ROPE_INTERLEAVED ? 2 * i + 1 : i + HD / 2);
                        double ang = (POS0 + t) * pow(theta, -2.0 * i / HD);
                        ref[i0] = x[i0] * cos(ang) - x[i1] * sin(ang);
                        ref[i1] = x[i0] * sin(ang) + x[i1] * cos(ang);
                    }
        expect_close(style == ROPE_HALF ? "rope half forward" : "rope interleaved forward", y, ref,
                     n, 1e-14, 1e-12);
        /* forward then backward is the identity */
        be->rope_backward(be, y, cos_tab, sin_tab, B, T, NH, HD, POS0, (RopeStyle)style);
        expect_close(style == ROPE_HALF ? "rope half round trip" : "rope interleaved round trip",
                     y, x, n, 1e-14, 1e-12);
        Real *dx = copy_vec(r, n);
        be->rope_backward(be, dx, cos_tab, sin_tab, B, T, NH, HD, POS0, (RopeStyle)style);
        expect_grad(style == ROPE_HALF ? "rope half dx" : "rope interleaved dx", x, n, dx,
                    rope_loss, &c);
        free(x), free(y), free(r), free(ref), free(dx);
    }
    free(cos_tab), free(sin_tab);
}

/* ---- attention ---- */

typedef struct {
    Real *q, *k, *v, *out, *att, *r;
    int B, T, NH, NKV, HD;
} AttCtx;

static double att_loss(void *p) {
    AttCtx *c = p;
    be->attention_forward(be, c->out, c->att, c->q, c->k, c->v, c->B, c->T, c->NH, c->NKV, c->HD);
    return dot(c->r, c->out, (size_t)c->B * c->T * c->NH * c->HD);
}

/* Naive causal GQA attention in double: out and the probabilities. */
static void att_reference(Real *out, Real *att, const Real *q, const Real *k, const Real *v, int B,
                          int T, int NH, int NKV, int HD) {
    const double scale = 1 / sqrt((double)HD);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int kh = h / (NH / NKV);
            for (int t = 0; t < T; t++) {
                Real *row = att + (((size_t)b * NH + h) * T + t) * T;
                const Real *qt = q + (((size_t)b * T + t) * NH + h) * HD;
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s < T; s++) {
                    const Real *ks = k + (((size_t)b * T + s) * NKV + kh) * HD;
                    row[s] = s <= t ? dot(qt, ks, (size_t)HD) * scale : -INFINITY;
                    if (row[s] > mx) mx = row[s];
                }
                for (int s = 0; s < T; s++) sum += row[s] = exp(row[s] - mx);
                for (int s = 0; s < T; s++) row[s] /= sum;
                Real *ot = out + (((size_t)b * T + t) * NH + h) * HD;
                for (int d = 0; d < HD; d++) {
                    double o = 0;
                    for (int s = 0; s < T; s++)
                        o += row[s] * v[(((size_t)b * T + s) * NKV + kh) * HD + d];
                    ot[d] = o;
                }
            }
        }
}

static void check_attention(int B, int T, int NH, int NKV, int HD) {
    const size_t nq = (size_t)B * T * NH * HD, nk = (size_t)B * T * NKV * HD;
    const size_t na = (size_t)B * NH * T * T;
    char what[96];
#define WHAT(s)                                                                                \
    (snprintf(what, sizeof what, "attention B%d T%d NH%d NKV%d HD%d %s", B, T, NH, NKV, HD, s), \
     what)
    Real *q = rand_nonzero(nq, 50), *k = rand_nonzero(nk, 51), *v = rand_nonzero(nk, 52);
    Real *r = rand_nonzero(nq, 53), *out = vec(nq), *att = vec(na);
    Real *ref = vec(nq), *ref_att = vec(na);
    /* garbage in the outputs: the forward writes every element, masked ones included */
    for (size_t i = 0; i < na; i++) att[i] = NAN;
    AttCtx c = {q, k, v, out, att, r, B, T, NH, NKV, HD};
    att_loss(&c);
    att_reference(ref, ref_att, q, k, v, B, T, NH, NKV, HD);
    expect_close(WHAT("out"), out, ref, nq, 1e-14, 1e-12);
    expect_close(WHAT("probabilities"), att, ref_att, na, 1e-15, 1e-12);
    Real *ones = vec((size_t)B * NH * T), *sums = vec((size_t)B * NH * T);
    for (size_t row = 0; row < (size_t)B * NH * T; row++) {
        int t = (int)(row % T);
        ones[row] = 1;
        for (int s = 0; s < T; s++) {
            sums[row] += att[row * T + s];
            if (s > t && att[row * T + s] != 0)
                fail_msg("%s: att[row %zu][%d] = %g above the diagonal, expected exactly 0",
                         WHAT("mask"), row, s, att[row * T + s]);
        }
    }
    expect_close(WHAT("row sums"), sums, ones, (size_t)B * NH * T, 1e-14, 0);
    /* backward writes dq, dk, dv (garbage in them must not leak through) */
    Real *dq = rand_nonzero(nq, 54), *dk = rand_nonzero(nk, 55), *dv = rand_nonzero(nk, 56);
    Real *datt = rand_nonzero(na, 57);
    be->attention_backward(be, dq, dk, dv, datt, r, q, k, v, att, B, T, NH, NKV, HD);
    expect_grad(WHAT("dq"), q, nq, dq, att_loss, &c);
    expect_grad(WHAT("dk"), k, nk, dk, att_loss, &c);
    expect_grad(WHAT("dv"), v, nk, dv, att_loss, &c);
#undef WHAT
    free(q), free(k), free(v), free(r), free(out), free(att), free(ref), free(ref_att);
    free(ones), free(sums), free(dq), free(dk), free(dv), free(datt);
}

static void test_attention(void **state) {
    (void)state;
    check_attention(2, 5, 4, 2, 6);  /* GQA: two query heads per kv head */
    check_attention(2, 5, 4, 4, 6);  /* plain multi-head */
    check_attention(1, 5, 4, 1, 6);  /* multi-query */
    check_attention(1, 21, 2, 1, 20); /* several row/column tiles, T and HD off the tile size */
    check_attention(1, 18, 3, 3, 16); /* HD exactly one tile */
    check_attention(2, 13, 4, 2, 20); /* big enough for the threaded path, 4 kv tasks */
}

/* ---- swiglu ---- */

typedef struct {
    Real *g, *u, *out, *r;
    size_t n;
} SwiCtx;

static double swi_loss(void *p) {
    SwiCtx *c = p;
    be->swiglu_forward(be, c->out, c->g, c->u, c->n);
    return dot(c->r, c->out, c->n);
}

static void test_swiglu(void **state) {
    (void)state;
    const size_t n = 40;
    Real *g = rand_vec(n, 60, -4, 4), *u = rand_nonzero(n, 61), *r = rand_nonzero(n, 62);
    for (size_t i = 0; i < n; i++)
        if (fabs(g[i]) < 0.05) g[i] = 0.3;
    g[0] = -60, g[1] = 60; /* saturated sigmoid stays finite */
    Real *out = vec(n), *ref = vec(n);
    SwiCtx c = {g, u, out, r, n};
    swi_loss(&c);
    for (size_t i = 0; i < n; i++) ref[i] = g[i] / (1 + exp(-g[i])) * u[i];
    expect_close("swiglu forward", out, ref, n, 1e-15, 1e-13);
    Real *dg = rand_nonzero(n, 63), *du = rand_nonzero(n, 64); /* written, not accumulated */
    be->swiglu_backward(be, dg, du, r, g, u, n);
    expect_grad("swiglu dgate", g, n, dg, swi_loss, &c);
    expect_grad("swiglu dup", u, n, du, swi_loss, &c);
    free(g), free(u), free(r), free(out), free(ref), free(dg), free(du);
}

/* ---- residual ---- */

static void test_residual(void **state) {
    (void)state;
    const size_t n = 50;
    Real *a = rand_nonzero(n, 70), *b = rand_nonzero(n, 71), *out = vec(n), *ref = vec(n);
    for (size_t i = 0; i < n; i++) ref[i] = a[i] + b[i];
    be->residual_forward(be, out, a, b, n);
    expect_close("residual forward", out, ref, n, 0, 0);
    Real *a2 = copy_vec(a, n);
    be->residual_forward(be, a2, a2, b, n); /* out aliases a */
    expect_close("residual forward in place", a2, ref, n, 0, 0);
    /* backward accumulates dout into both, and skips a NULL branch */
    Real *dout = rand_nonzero(n, 72), *da = rand_nonzero(n, 73), *db = rand_nonzero(n, 74);
    Real *ref_a = vec(n), *ref_b = copy_vec(db, n);
    for (size_t i = 0; i < n; i++) ref_a[i] = da[i] + 2 * dout[i];
    be->residual_backward(be, da, NULL, dout, n);
    be->residual_backward(be, da, NULL, dout, n);
    expect_close("residual da accumulates", da, ref_a, n, 1e-15, 1e-15);
    expect_close("residual NULL da leaves db", db, ref_b, n, 0, 0);
    for (size_t i = 0; i < n; i++) ref_b[i] += dout[i];
    be->residual_backward(be, NULL, db, dout, n);
    expect_close("residual db accumulates", db, ref_b, n, 1e-15, 1e-15);
    free(a), free(b), free(out), free(ref), free(a2), free(dout), free(da), free(db);
    free(ref_a), free(ref_b);
}

/* ---- per-row and per-column ops ----
 * Against naive double loops at a small shape and at one above CPU_PARALLEL_MIN (threaded),
 * aliasing where allowed, and 1 vs 2 threads bit for bit. A finite-difference check of the
 * composite they serve (DoRA's magnitude backward) is in test_gradcheck_model.c. */

static void check_rowcol(int N, int C, uint64_t stream) {
    const size_t nc = (size_t)N * C;
    Real *x = rand_nonzero(nc, stream), *y = rand_nonzero(nc, stream + 1);
    Real *sr = rand_nonzero((size_t)N, stream + 2), *sc = rand_nonzero((size_t)C, stream + 3);
    Real *got = rand_nonzero(nc, stream + 4), *ref = vec(nc); /* written: garbage must go */
    char what[96];

    Real *norm = rand_nonzero((size_t)N, stream + 5), *nref = vec((size_t)N);
    for (int n = 0; n < N; n++) nref[n] = sqrt(dot(x + (size_t)n * C, x + (size_t)n * C, (size_t)C));
    be->row_norm(be, norm, x, N, C);
    snprintf(what, sizeof what, "row_norm %dx%d", N, C);
    expect_close(what, norm, nref, (size_t)N, 1e-15, 1e-13);

    Real *cd = rand_nonzero((size_t)C, stream + 6), *cref = vec((size_t)C);
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++) cref[c] += x[(size_t)n * C + c] * y[(size_t)n * C + c];
    be->col_dot(be, cd, x, y, N, C);
    snprintf(what, sizeof what, "col_dot %dx%d", N, C);
    expect_close(what, cd, cref, (size_t)C, 1e-13, 1e-12);

    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) ref[(size_t)n * C + c] = sr[n] * x[(size_t)n * C + c];
    be->scale_rows(be, got, x, sr, N, C);
    snprintf(what, sizeof what, "scale_rows %dx%d", N, C);
    expect_close(what, got, ref, nc, 0, 0);
    memcpy(got, x, nc * sizeof(Real));
    be->scale_rows(be, got, got, sr, N, C);
    snprintf(what, sizeof what, "scale_rows in place %dx%d", N, C);
    expect_close(what, got, ref, nc, 0, 0);

    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) ref[(size_t)n * C + c] = x[(size_t)n * C + c] * sc[c];
    be->scale_cols(be, got, x, sc, N, C);
    snprintf(what, sizeof what, "scale_cols %dx%d", N, C);
    expect_close(what, got, ref, nc, 0, 0);
    memcpy(got, x, nc * sizeof(Real));
    be->scale_cols(be, got, got, sc, N, C);
    snprintf(what, sizeof what, "scale_cols in place %dx%d", N, C);
    expect_close(what, got, ref, nc, 0, 0);

    for (size_t i = 0; i < nc; i++) ref[i] = x[i] / y[i];
    be->divide(be, got, x, y, nc);
    snprintf(what, sizeof what, "divide n=%zu", nc);
    expect_close(what, got, ref, nc, 0, 0);
    Real *a2 = copy_vec(x, nc), *b2 = copy_vec(y, nc);
    be->divide(be, a2, a2, y, nc); /* out aliases a */
    be->divide(be, b2, x, b2, nc); /* out aliases b */
    snprintf(what, sizeof what, "divide out = a, n=%zu", nc);
    expect_close(what, a2, ref, nc, 0, 0);
    snprintf(what, sizeof what, "divide out = b, n=%zu", nc);
    expect_close(what, b2, ref, nc, 0, 0);
    free(x), free(y), free(sr), free(sc), free(got), free(ref), free(norm), free(nref);
    free(cd), free(cref), free(a2), free(b2);
}

static void test_rowcol(void **state) {
    (void)state;
    check_rowcol(7, 5, 140);
    check_rowcol(1, 13, 150);    /* one row: scale_cols is an elementwise product */
    check_rowcol(90, 600, 160);  /* threaded; col_dot spans three column chunks */
    /* zero row: norm 0, no NaN */
    Real z[6] = {0, 0, 0, 3, 4, 0}, nz[2];
    be->row_norm(be, nz, z, 2, 3);
    assert_true(nz[0] == 0 && nz[1] == 5);
    /* the reductions give the same bits on 1 and 2 threads */
    enum { N = 300, C = 700 };
    Real *x = rand_nonzero((size_t)N * C, 170), *y = rand_nonzero((size_t)N * C, 171);
    Real n1[N], n2[N], c1[C], c2[C];
    Backend *saved = be;
    be = backend_cpu_create(1);
    be->row_norm(be, n1, x, N, C);
    be->col_dot(be, c1, x, y, N, C);
    backend_cpu_destroy(be);
    be = backend_cpu_create(2);
    be->row_norm(be, n2, x, N, C);
    be->col_dot(be, c2, x, y, N, C);
    backend_cpu_destroy(be);
    be = saved;
    expect_close("row_norm: 1 vs 2 threads", n2, n1, N, 0, 0);
    expect_close("col_dot: 1 vs 2 threads", c2, c1, C, 0, 0);
    free(x), free(y);
}

/* ---- cross-entropy ---- */

typedef struct {
    Real *logits, *losses, *lse, *dloss;
    const int32_t *targets;
    int N, V;
} CeCtx;

static double ce_loss(void *p) {
    CeCtx *c = p;
    be->cross_entropy_forward(be, c->losses, c->lse, c->logits, c->targets, c->N, c->V);
    return dot(c->dloss, c->losses, (size_t)c->N);
}

static void test_cross_entropy(void **state) {
    (void)state;
    enum { N = 7, V = 11 };
    const int32_t targets[N] = {3, -1, 0, 10, -100, 5, 7}; /* two ignored rows */
    Real *logits = rand_vec(N * V, 80, -3, 3), *losses = vec(N), *lse = vec(N);
    Real dloss[N] = {0.3, 0.2, -0.7, 1.1, 0.5, 0, 0.9}; /* non-uniform; one zero */
    CeCtx c = {logits, losses, lse, dloss, targets, N, V};
    ce_loss(&c);
    Real ref_loss[N], ref_lse[N];
    for (int n = 0; n < N; n++) {
        double s = 0;
        for (int i = 0; i < V; i++) s += exp(logits[n * V + i]);
        ref_lse[n] = log(s);
        ref_loss[n] = targets[n] < 0 ? 0 : ref_lse[n] - logits[n * V + targets[n]];
    }
    expect_close("cross_entropy lse", lse, ref_lse, N, 1e-14, 1e-13);
    expect_close("cross_entropy losses", losses, ref_loss, N, 1e-14, 1e-13);

    Real *dlogits = rand_nonzero(N * V, 81); /* written: garbage must go */
    be->cross_entropy_backward(be, dlogits, logits, lse, targets, dloss, N, V);
    expect_grad("cross_entropy dlogits", logits, N * V, dlogits, ce_loss, &c);
    for (int n = 0; n < N; n++)
        if (targets[n] < 0 || dloss[n] == 0)
            for (int i = 0; i < V; i++)
                if (dlogits[n * V + i] != 0)
                    fail_msg("cross_entropy: dlogits[%d][%d] = %g in a skipped row, expected 0", n,
                             i, dlogits[n * V + i]);
    /* in place, the common case: dlogits == logits (lse again from the unperturbed logits) */
    ce_loss(&c);
    be->cross_entropy_backward(be, dlogits, logits, lse, targets, dloss, N, V);
    Real *inplace = copy_vec(logits, N * V);
    be->cross_entropy_backward(be, inplace, inplace, lse, targets, dloss, N, V);
    expect_close("cross_entropy in place", inplace, dlogits, N * V, 0, 0);

    /* large logits: logsumexp stays finite and exact (one row spans several online chunks) */
    enum { BIGV = 5000 };
    Real *big = rand_vec(BIGV, 82, -30, 30), bl, blse, dl1 = 1;
    big[4321] = 700;
    int32_t bt = 17;
    be->cross_entropy_forward(be, &bl, &blse, big, &bt, 1, BIGV);
    double mx = 700, s = 0;
    for (int i = 0; i < BIGV; i++) s += exp(big[i] - mx);
    Real ref_big = mx + log(s);
    expect_close("cross_entropy large logits lse", &blse, &ref_big, 1, 1e-12, 1e-14);
    be->cross_entropy_backward(be, big, big, &blse, &bt, &dl1, 1, BIGV);
    double total = 0;
    for (int i = 0; i < BIGV; i++) total += big[i];
    Real zero = 0, got = total; /* softmax sums to 1, minus the one-hot */
    expect_close("cross_entropy large logits grad sum", &got, &zero, 1, 1e-12, 0);
    free(logits), free(losses), free(lse), free(dlogits), free(inplace), free(big);
}

/* ---- optimizer and reductions ---- */

static void test_adamw(void **state) {
    (void)state;
    const size_t n = 37;
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    Real *p = rand_nonzero(n, 90), *m = vec(n), *v = vec(n);
    double rp[37], rm[37] = {0}, rv[37] = {0};
    for (size_t i = 0; i < n; i++) rp[i] = p[i];
    for (int step = 1; step <= 3; step++) {
        Real *g = rand_nonzero(n, 90 + (uint64_t)step);
        float bc1 = 1 - powf(b1, (float)step), bc2 = 1 - powf(b2, (float)step);
        be->adamw_update(be, p, g, m, v, n, lr, b1, b2, eps, wd, gs, bc1, bc2);
        /* torch.optim.AdamW (single tensor): p *= 1 - lr wd; m.lerp_(g, 1 - b1);
         * v = v b2 + (1 - b2) g g; p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps) */
        for (size_t i = 0; i < n; i++) {
            double gi = g[i] * (double)gs;
            rp[i] *= 1 - (double)lr * wd;
            rm[i] = fma(1 - (double)b1, gi - rm[i], rm[i]);
            rv[i] = rv[i] * b2 + (1 - (double)b2) * gi * gi;
            rp[i] -= (double)lr / bc1 * rm[i] / (sqrt(rv[i]) / sqrt((double)bc2) + eps);
        }
        free(g);
    }
    expect_close("adamw params after 3 steps", p, rp, n, 1e-15, 1e-13);
    expect_close("adamw m after 3 steps", m, rm, n, 1e-16, 1e-13);
    expect_close("adamw v after 3 steps", v, rv, n, 1e-18, 1e-13);
    free(p), free(m), free(v);
}

static void test_sum_squares(void **state) {
    (void)state;
    const size_t n = 200003; /* several blocks */
    Real *x = vec(n);
    double ref = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = (Real)((int)(i % 7) - 3);
        ref += x[i] * x[i];
    }
    Real got = (Real)be->sum_squares(be, x, n), want = (Real)ref;
    expect_close("sum_squares exact", &got, &want, 1, 0, 0);
    Real empty = be->sum_squares(be, x, 0), zero = 0;
    expect_close("sum_squares empty", &empty, &zero, 1, 0, 0);
    /* the same bits whatever the thread count */
    Real *y = rand_vec(n, 100, -1, 1);
    Backend *one = backend_cpu_create(1);
    Real s1 = one->sum_squares(one, y, n);
    backend_cpu_destroy(one);
    Backend *two = backend_cpu_create(2);
    Real s2 = two->sum_squares(two, y, n), s3 = two->sum_squares(two, y, n);
    backend_cpu_destroy(two);
    expect_close("sum_squares 1 vs 2 threads", &s1, &s2, 1, 0, 0);
    expect_close("sum_squares repeat", &s2, &s3, 1, 0, 0);
    free(x), free(y);
}

static void test_scale_axpy(void **state) {
    (void)state;
    const size_t n = 40000; /* over the parallel threshold */
    Real *x = rand_nonzero(n, 110), *y = rand_nonzero(n, 111), *ref = vec(n);
    for (size_t i = 0; i < n; i++) ref[i] = y[i] + 0.25 * x[i];
    be->axpy(be, y, x, n, 0.25f);
    expect_close("axpy", y, ref, n, 1e-16, 1e-15);
    for (size_t i = 0; i < n; i++) ref[i] = x[i] * -1.5;
    be->scale(be, x, n, -1.5f);
    expect_close("scale", x, ref, n, 0, 0);
    free(x), free(y), free(ref);
}

/* ---- threaded paths ----
 * Shapes above CPU_PARALLEL_MIN run on both threads; every op splits work so that each output
 * is computed by one thread in a fixed order, so 1 and 2 threads must agree bit for bit. */

static void run_ops_at_size(Real *outs[8], size_t sizes[8]) {
    enum { N = 64, C = 300, NV = 6, V = 4000, B = 2, T = 40, NH = 4, NKV = 2, HD = 24 };
    const size_t nq = (size_t)B * T * NH * HD, nk = (size_t)B * T * NKV * HD;
    Real *x = rand_nonzero(N * C, 120), *w = rand_nonzero(C, 121), *g = rand_nonzero(N * C, 122);
    Real *rstd = vec(N);
    sizes[0] = N * C, outs[0] = vec(sizes[0]); /* rmsnorm out */
    sizes[1] = N * C, outs[1] = vec(sizes[1]); /* rmsnorm dx */
    sizes[2] = C, outs[2] = vec(sizes[2]);     /* rmsnorm dweight */
    be->rmsnorm_forward(be, outs[0], rstd, x, w, N, C, 1e-5f);
    be->rmsnorm_backward(be, outs[1], outs[2], g, x, w, rstd, N, C);
    Real *logits = rand_vec(NV * V, 123, -4, 4), *lse = vec(NV), dloss[NV] = {1, 2, 3, 4, 5, 6};
    const int32_t tg[NV] = {0, 3999, -1, 17, 2000, 5};
    sizes[3] = NV, outs[3] = vec(sizes[3]); /* cross-entropy losses */
    sizes[4] = NV * V, outs[4] = vec(sizes[4]); /* dlogits */
    be->cross_entropy_forward(be, outs[3], lse, logits, tg, NV, V);
    be->cross_entropy_backward(be, outs[4], logits, lse, tg, dloss, NV, V);
    Real *q = rand_nonzero(nq, 124), *k = rand_nonzero(nk, 125), *v = rand_nonzero(nk, 126);
    Real *att = vec((size_t)B * NH * T * T), *datt = vec((size_t)B * NH * T * T);
    sizes[5] = nq, outs[5] = vec(sizes[5]);     /* attention out */
    sizes[6] = nq + 2 * nk, outs[6] = vec(sizes[6]); /* dq, dk, dv */
    be->attention_forward(be, outs[5], att, q, k, v, B, T, NH, NKV, HD);
    be->attention_backward(be, outs[6], outs[6] + nq, outs[6] + nq + nk, datt, q, q, k, v, att, B,
                           T, NH, NKV, HD);
    sizes[7] = 2 * 40000, outs[7] = vec(sizes[7]); /* swiglu dgate, dup */
    Real *sg = rand_vec(40000, 127, -5, 5), *su = rand_nonzero(40000, 128);
    be->swiglu_backward(be, outs[7], outs[7] + 40000, su, sg, su, 40000);
    /* the parallel rmsnorm and cross-entropy against naive loops too */
    if (omp_get_max_threads() > 1) {
        Real *ref = vec(N * C), *refw = vec(C);
        for (int n = 0; n < N; n++) {
            double r = 1 / sqrt(dot(x + n * C, x + n * C, C) / C + 1e-5), wgx = 0;
            for (int i = 0; i < C; i++) wgx += w[i] * g[n * C + i] * x[n * C + i];
            for (int i = 0; i < C; i++) {
                ref[n * C + i] = r * w[i] * g[n * C + i] - r * r * r / C * x[n * C + i] * wgx;
                refw[i] += g[n * C + i] * x[n * C + i] * r;
            }
        }
        expect_close("rmsnorm dx, threaded", outs[1], ref, N * C, 1e-12, 1e-12);
        expect_close("rmsnorm dweight, threaded", outs[2], refw, C, 1e-12, 1e-12);
        free(ref), free(refw);
        Real ref_loss[NV];
        for (int n = 0; n < NV; n++) {
            double sum = 0;
            for (int i = 0; i < V; i++) sum += exp(logits[n * V + i]);
            ref_loss[n] = tg[n] < 0 ? 0 : log(sum) - logits[n * V + tg[n]];
        }
        expect_close("cross_entropy losses, threaded", outs[3], ref_loss, NV, 1e-13, 1e-13);
    }
    free(x), free(w), free(g), free(rstd), free(logits), free(lse), free(q), free(k), free(v);
    free(att), free(datt), free(sg), free(su);
}

static void test_threads_agree(void **state) {
    (void)state;
    Real *one[8], *two[8];
    size_t sizes[8];
    Backend *saved = be;
    be = backend_cpu_create(1);
    run_ops_at_size(one, sizes);
    backend_cpu_destroy(be);
    be = backend_cpu_create(2);
    /* creating the backend must leave OpenMP with the threads asked for (with OpenBLAS's
     * OpenMP build, openblas_set_num_threads is omp_set_num_threads) */
    assert_int_equal(omp_get_max_threads(), 2);
    run_ops_at_size(two, sizes);
    backend_cpu_destroy(be);
    be = saved;
    const char *names[8] = {"rmsnorm out", "rmsnorm dx", "rmsnorm dweight", "ce losses",
                            "ce dlogits", "attention out", "attention dq dk dv", "swiglu grads"};
    for (int i = 0; i < 8; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s: 1 vs 2 threads", names[i]);
        expect_close(what, two[i], one[i], sizes[i], 0, 0);
        free(one[i]), free(two[i]);
    }
}

/* The float build's exp: within 2.5 ulp over the range that matters, exact at the edges. */
static void test_expf(void **state) {
    (void)state;
    const size_t n = 20001;
    Real *got = vec(n), *ref = vec(n);
    for (size_t i = 0; i < n; i++) {
        float x = -87.0f + 175.0f * (float)i / (float)(n - 1); /* [-87, 88]: normal results */
        got[i] = cpu_expf(x);
        ref[i] = exp((double)x);
    }
    expect_close("cpu_expf on [-87, 88]", got, ref, n, 0, 2.5 * 5.96e-8);
    for (size_t i = 0; i < 1000; i++) { /* subnormal results: absolute error below one step */
        float x = -104.0f + 17.0f * (float)i / 999.0f;
        got[i] = cpu_expf(x);
        ref[i] = exp((double)x);
    }
    expect_close("cpu_expf on [-104, -87]", got, ref, 1000, 1.5e-45, 2.5 * 5.96e-8);
    assert_true(cpu_expf(0.0f) == 1.0f);
    assert_true(cpu_expf(-200.0f) == 0.0f && cpu_expf(-INFINITY) == 0.0f);
    assert_true(isinf(cpu_expf(89.0f)) && isinf(cpu_expf(INFINITY)));
    assert_true(cpu_expf(88.7f) < INFINITY);
    assert_true(isnan(cpu_expf(NAN)));
    free(got), free(ref);
}

/* ---- ViT ops: layernorm, gelu, non-causal attention, patchify, bias ---- */

typedef struct {
    Real *x, *w, *b, *out, *mean, *rstd, *r;
    int N, C;
    float eps;
} LnCtx;

static double ln_loss(void *p) {
    LnCtx *c = p;
    be->layernorm_forward(be, c->out, c->mean, c->rstd, c->x, c->w, c->b, c->N, c->C, c->eps);
    return dot(c->r, c->out, (size_t)c->N * c->C);
}

static void test_layernorm(void **state) {
    (void)state;
    const int N = 5, C = 7;
    const size_t nc = (size_t)N * C;
    Real *x = rand_nonzero(nc, 300), *w = rand_vec(C, 301, 0.5, 1.5), *b = rand_nonzero(C, 302);
    Real *r = rand_nonzero(nc, 303), *out = vec(nc), *mean = vec(N), *rstd = vec(N);
    for (size_t i = 0; i < (size_t)C; i++) x[i] += 3; /* a row far from zero mean */
    LnCtx c = {x, w, b, out, mean, rstd, r, N, C, 1e-3f};
    ln_loss(&c);
    Real *ref = vec(nc), *ref_m = vec(N), *ref_r = vec(N);
    for (int n = 0; n < N; n++) {
        double mu = 0, var = 0;
        for (int j = 0; j < C; j++) mu += x[n * C + j] / C;
        for (int j = 0; j < C; j++) var += (x[n * C + j] - mu) * (x[n * C + j] - mu) / C;
        ref_m[n] = mu, ref_r[n] = 1 / sqrt(var + (double)1e-3f);
        for (int j = 0; j < C; j++) ref[n * C + j] = (x[n * C + j] - mu) * ref_r[n] * w[j] + b[j];
    }
    expect_close("layernorm mean", mean, ref_m, N, 1e-15, 1e-13);
    expect_close("layernorm rstd", rstd, ref_r, N, 1e-15, 1e-13);
    expect_close("layernorm forward", out, ref, nc, 1e-14, 1e-13);
    /* backward accumulates into dx, dweight and dbias: start from zero, then check += */
    Real *dx = vec(nc), *dw = vec(C), *db = vec(C);
    be->layernorm_backward(be, dx, dw, db, r, x, w, mean, rstd, N, C);
    expect_grad("layernorm dx", x, nc, dx, ln_loss, &c);
    expect_grad("layernorm dweight", w, C, dw, ln_loss, &c);
    expect_grad("layernorm dbias", b, C, db, ln_loss, &c);
    Real *dx2 = copy_vec(dx, nc), *dw2 = copy_vec(dw, C), *db2 = copy_vec(db, C);
    be->layernorm_backward(be, dx2, dw2, db2, r, x, w, mean, rstd, N, C);
    for (size_t i = 0; i < nc; i++) ref[i] = 2 * dx[i];
    expect_close("layernorm dx accumulates", dx2, ref, nc, 1e-14, 1e-13);
    for (int i = 0; i < C; i++) ref[i] = 2 * dw[i];
    expect_close("layernorm dweight accumulates", dw2, ref, C, 1e-14, 1e-13);
    for (int i = 0; i < C; i++) ref[i] = 2 * db[i];
    expect_close("layernorm dbias accumulates", db2, ref, C, 1e-14, 1e-13);
    be->layernorm_backward(be, dx2, NULL, NULL, r, x, w, mean, rstd, N, C); /* NULL params ok */
    /* threaded path (N*C above CPU_PARALLEL_MIN) against the single-row loops */
    const int N2 = 300, C2 = 70;
    const size_t n2 = (size_t)N2 * C2;
    Real *x2 = rand_nonzero(n2, 304), *w2 = rand_nonzero(C2, 305), *b2 = rand_nonzero(C2, 306);
    Real *g2 = rand_nonzero(n2, 307), *o2 = vec(n2), *m2 = vec(N2), *r2 = vec(N2);
    Real *dxa = vec(n2), *dwa = vec(C2), *dba = vec(C2), *dxb = vec(n2), *dwb = vec(C2), *dbb = vec(C2);
    be->layernorm_forward(be, o2, m2, r2, x2, w2, b2, N2, C2, 1e-5f);
    be->layernorm_backward(be, dxa, dwa, dba, g2, x2, w2, m2, r2, N2, C2);
    for (int n = 0; n < N2; n++) /* one row at a time: never threaded */
        be->layernorm_backward(be, dxb + (size_t)n * C2, dwb, dbb, g2 + (size_t)n * C2,
                               x2 + (size_t)n * C2, w2, m2 + n, r2 + n, 1, C2);
    expect_close("layernorm dx, threaded", dxa, dxb, n2, 1e-13, 1e-12);
    expect_close("layernorm dweight, threaded", dwa, dwb, C2, 1e-12, 1e-12);
    expect_close("layernorm dbias, threaded", dba, dbb, C2, 1e-12, 1e-12);
    free(x), free(w), free(b), free(r), free(out), free(mean), free(rstd), free(ref), free(ref_m);
    free(ref_r), free(dx), free(dw), free(db), free(dx2), free(dw2), free(db2);
    free(x2), free(w2), free(b2), free(g2), free(o2), free(m2), free(r2);
    free(dxa), free(dwa), free(dba), free(dxb), free(dwb), free(dbb);
}

typedef struct {
    Real *x, *out, *r;
    size_t n;
    GeluKind kind;
} GeluCtx;

static double gelu_loss(void *p) {
    GeluCtx *c = p;
    be->gelu_forward(be, c->out, c->x, c->n, c->kind);
    return dot(c->r, c->out, c->n);
}

static void test_gelu(void **state) {
    (void)state;
    const size_t n = 41;
    const char *names[3] = {"gelu erf", "gelu tanh", "gelu quick"};
    for (int kind = GELU_ERF; kind <= GELU_QUICK; kind++) {
        Real *x = rand_vec(n, 310, -5, 5), *r = rand_nonzero(n, 311), *out = vec(n), *ref = vec(n);
        x[0] = -30, x[1] = 30, x[2] = 0.0; /* saturated tails stay finite; gelu(0) = 0 */
        GeluCtx c = {x, out, r, n, (GeluKind)kind};
        gelu_loss(&c);
        for (size_t i = 0; i < n; i++) {
            const double v = x[i];
            ref[i] = kind == GELU_ERF    ? 0.5 * v * (1 + erf(v / sqrt(2.0)))
                     : kind == GELU_TANH ? 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)))
                                         : v / (1 + exp(-1.702 * v));
        }
        char what[64];
        snprintf(what, sizeof what, "%s forward", names[kind]);
        expect_close(what, out, ref, n, 1e-15, 1e-13);
        Real *dx = rand_nonzero(n, 312); /* written, not accumulated */
        be->gelu_backward(be, dx, r, x, n, (GeluKind)kind);
        snprintf(what, sizeof what, "%s dx", names[kind]);
        expect_grad(what, x, n, dx, gelu_loss, &c);
        Real *dr = copy_vec(r, n);
        be->gelu_backward(be, dr, dr, x, n, (GeluKind)kind); /* dx may alias dout */
        snprintf(what, sizeof what, "%s dx in place", names[kind]);
        expect_close(what, dr, dx, n, 0, 0);
        free(x), free(r), free(out), free(ref), free(dx), free(dr);
    }
}

static double att_full_loss(void *p) {
    AttCtx *c = p;
    be->attention_full_forward(be, c->out, c->att, c->q, c->k, c->v, c->B, c->T, c->NH, c->NKV,
                               c->HD);
    return dot(c->r, c->out, (size_t)c->B * c->T * c->NH * c->HD);
}

/* Naive non-causal GQA attention in double. */
static void att_full_reference(Real *out, Real *att, const Real *q, const Real *k, const Real *v,
                               int B, int T, int NH, int NKV, int HD) {
    const double scale = 1 / sqrt((double)HD);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int kh = h / (NH / NKV);
            for (int t = 0; t < T; t++) {
                Real *row = att + (((size_t)b * NH + h) * T + t) * T;
                const Real *qt = q + (((size_t)b * T + t) * NH + h) * HD;
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s < T; s++) {
                    row[s] = dot(qt, k + (((size_t)b * T + s) * NKV + kh) * HD, (size_t)HD) * scale;
                    if (row[s] > mx) mx = row[s];
                }
                for (int s = 0; s < T; s++) sum += row[s] = exp(row[s] - mx);
                for (int s = 0; s < T; s++) row[s] /= sum;
                Real *ot = out + (((size_t)b * T + t) * NH + h) * HD;
                for (int d = 0; d < HD; d++) {
                    double o = 0;
                    for (int s = 0; s < T; s++)
                        o += row[s] * v[(((size_t)b * T + s) * NKV + kh) * HD + d];
                    ot[d] = o;
                }
            }
        }
}

static void check_attention_full(int B, int T, int NH, int NKV, int HD) {
    const size_t nq = (size_t)B * T * NH * HD, nk = (size_t)B * T * NKV * HD;
    const size_t na = (size_t)B * NH * T * T;
    char what[96];
#define WHAT(s)                                                                                   \
    (snprintf(what, sizeof what, "attention_full B%d T%d NH%d NKV%d HD%d %s", B, T, NH, NKV, HD, \
              s),                                                                                 \
     what)
    Real *q = rand_nonzero(nq, 320), *k = rand_nonzero(nk, 321), *v = rand_nonzero(nk, 322);
    Real *r = rand_nonzero(nq, 323), *out = vec(nq), *att = vec(na);
    Real *ref = vec(nq), *ref_att = vec(na);
    for (size_t i = 0; i < na; i++) att[i] = NAN;
    AttCtx c = {q, k, v, out, att, r, B, T, NH, NKV, HD};
    att_full_loss(&c);
    att_full_reference(ref, ref_att, q, k, v, B, T, NH, NKV, HD);
    expect_close(WHAT("out"), out, ref, nq, 1e-14, 1e-12);
    expect_close(WHAT("probabilities"), att, ref_att, na, 1e-15, 1e-12);
    Real *dq = rand_nonzero(nq, 324), *dk = rand_nonzero(nk, 325), *dv = rand_nonzero(nk, 326);
    Real *datt = rand_nonzero(na, 327);
    be->attention_full_backward(be, dq, dk, dv, datt, r, q, k, v, att, B, T, NH, NKV, HD);
    expect_grad(WHAT("dq"), q, nq, dq, att_full_loss, &c);
    expect_grad(WHAT("dk"), k, nk, dk, att_full_loss, &c);
    expect_grad(WHAT("dv"), v, nk, dv, att_full_loss, &c);
#undef WHAT
    free(q), free(k), free(v), free(r), free(out), free(att), free(ref), free(ref_att);
    free(dq), free(dk), free(dv), free(datt);
}

static void test_attention_full(void **state) {
    (void)state;
    check_attention_full(2, 5, 4, 4, 6);   /* plain multi-head (ViT) */
    check_attention_full(2, 5, 4, 2, 6);   /* GQA */
    check_attention_full(1, 21, 2, 2, 20); /* several tiles, T and HD off the tile size */
    check_attention_full(2, 17, 4, 4, 16); /* ViT-like T = 1 + 16, threaded path */
}

static void test_patchify(void **state) {
    (void)state;
    const int B = 2, C = 3, H = 8, W = 12, P = 4, GW = W / P, NP = (H / P) * GW, K = C * P * P;
    const size_t ni = (size_t)B * C * H * W, no = (size_t)B * NP * K;
    Real *img = rand_nonzero(ni, 330), *out = rand_nonzero(no, 331), *ref = vec(no);
    for (int b = 0; b < B; b++)
        for (int p = 0; p < NP; p++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < P; i++)
                    for (int j = 0; j < P; j++)
                        ref[((size_t)b * NP + p) * K + (c * P + i) * P + j] =
                            img[(((size_t)b * C + c) * H + (p / GW) * P + i) * W + (p % GW) * P + j];
    be->patchify(be, out, img, B, C, H, W, P);
    expect_close("patchify", out, ref, no, 0, 0);
    /* conv as matmul: one output of a stride-P convolution equals the patch row . weight */
    const Real *wconv = rand_nonzero((size_t)K, 332); /* one filter [C, P, P] */
    double conv = 0;
    const int b = 1, py = 1, px = 2;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < P; i++)
            for (int j = 0; j < P; j++)
                conv += wconv[(c * P + i) * P + j] *
                        img[(((size_t)b * C + c) * H + py * P + i) * W + px * P + j];
    Real got = (Real)dot(out + ((size_t)b * NP + py * GW + px) * K, wconv, (size_t)K), want = conv;
    expect_close("patchify conv equivalence", &got, &want, 1, 1e-14, 1e-13);
    free(img), free(out), free(ref), free((void *)wconv);
}

typedef struct {
    Real *y0, *y, *bias, *r;
    int N, C;
} BiasCtx;

static double bias_loss(void *p) {
    BiasCtx *c = p;
    memcpy(c->y, c->y0, (size_t)c->N * c->C * sizeof(Real));
    be->bias_forward(be, c->y, c->bias, c->N, c->C);
    return dot(c->r, c->y, (size_t)c->N * c->C);
}

static void test_bias(void **state) {
    (void)state;
    const int sizes[2][2] = {{6, 9}, {400, 90}}; /* the second runs threaded */
    for (int z = 0; z < 2; z++) {
        const int N = sizes[z][0], C = sizes[z][1];
        const size_t nc = (size_t)N * C;
        Real *y0 = rand_nonzero(nc, 340), *y = vec(nc), *bias = rand_nonzero(C, 341);
        Real *r = rand_nonzero(nc, 342), *ref = vec(nc);
        BiasCtx c = {y0, y, bias, r, N, C};
        bias_loss(&c);
        for (size_t i = 0; i < nc; i++) ref[i] = y0[i] + bias[i % C];
        expect_close("bias forward", y, ref, nc, 0, 0);
        Real *db = rand_nonzero(C, 343), *db0 = copy_vec(db, C), *refd = vec(C);
        be->bias_backward(be, db, r, N, C); /* accumulates */
        for (int j = 0; j < C; j++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += r[(size_t)n * C + j];
            refd[j] = db0[j] + s;
        }
        expect_close("bias backward accumulates", db, refd, C, 1e-13, 1e-13);
        if (z == 0) {
            for (int j = 0; j < C; j++) db[j] -= db0[j];
            expect_grad("bias dbias", bias, C, db, bias_loss, &c);
        }
        free(y0), free(y), free(bias), free(r), free(ref), free(db), free(db0), free(refd);
    }
}

static int setup(void **state) {
    (void)state;
    be = backend_cpu_create(2);
    return be ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    printf("[ summary  ] %zu comparisons over %zu elements; finite differences: max |err| %.3g, "
           "max rel err %.3g; worst err/tol %.3g (%s)\n",
           n_checks, n_elems, worst_fd_abs, worst_fd_rel, worst_ratio, worst_what);
    backend_cpu_destroy(be);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),     cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_embedding),  cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),       cmocka_unit_test(test_attention),
        cmocka_unit_test(test_swiglu),     cmocka_unit_test(test_residual),
        cmocka_unit_test(test_rowcol),
        cmocka_unit_test(test_cross_entropy), cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_sum_squares), cmocka_unit_test(test_scale_axpy),
        cmocka_unit_test(test_threads_agree), cmocka_unit_test(test_expf),
        cmocka_unit_test(test_layernorm),  cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_attention_full), cmocka_unit_test(test_patchify),
        cmocka_unit_test(test_bias),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
