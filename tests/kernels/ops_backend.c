/* The CPU backend itself (kernels/cpu/backend_cpu.c): aligned zeroed memory and copies; the
 * thread count it sets, and every threaded op giving the same bits on 1 and 2 threads; the
 * float exp approximation the float build's kernels use (cpu_ops.h). */
#include "tests/kernels/ops_check.h"

#include <omp.h>

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

int ops_backend_run(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_threads_agree),
        cmocka_unit_test(test_expf),
    };
    return cmocka_run_group_tests_name("backend", tests, ops_setup, ops_teardown);
}
