/* kernels/cpu/rmsnorm.c and kernels/cpu/layernorm.c: forwards against naive loops, every
 * gradient against finite differences, accumulation into dx and the weights' gradients. */
#include "tests/kernels/ops_check.h"

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

/* ---- layernorm ---- */

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

int ops_norms_run(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_layernorm),
    };
    return cmocka_run_group_tests_name("norms", tests, ops_setup, ops_teardown);
}
