/* kernels/cpu/optim.c: AdamW against torch's formula, sum_squares exact and deterministic
 * whatever the thread count, axpy and scale. (noise.c: tests/core/model/test_cascade.c.) */
#include "tests/kernels/ops_check.h"

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

int ops_optim_run(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_sum_squares),
        cmocka_unit_test(test_scale_axpy),
    };
    return cmocka_run_group_tests_name("optim", tests, ops_setup, ops_teardown);
}
