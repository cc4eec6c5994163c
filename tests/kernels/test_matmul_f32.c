/* kernels/cpu/matmul.c and matmul_dnnl.c in the float build: oneDNN's matmul and OpenBLAS's
 * sgemm (and the AUTO choice between them) each against a double reference computed here, on
 * every transpose pair, alpha/beta mixes, odd sizes and K = 511; oneDNN run to run
 * bit-identical at a fixed thread count; the primitive cache (hits, thread-count changes,
 * eviction); which library AUTO picks. The double-precision ops test covers the dgemm path. */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/backend.h"
#include "tests/check.h"

#ifdef LORASC_REAL_DOUBLE
#error "test_matmul_f32 checks the float build's GEMMs: list it in tests_f32"
#endif

#define SEED 20250117u
#define THREADS 2

static Backend *be;

static float *rand_f32(size_t n, uint64_t stream) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    check_fill_uniform(x, n, SEED, stream, -1.0, 1.0);
    return x;
}

typedef struct Gemm {
    int M, N, K, ta, tb;
    float alpha, beta;
} Gemm;

/* ref = alpha op(a) op(b) + beta c0 in double, and per element the bound a float GEMM meets
 * whatever its summation order: (K + 4) u (|alpha| sum_p |a_ip b_pj| + |beta c0|), u = 2^-24
 * (K products and additions, the alpha scale, the beta scale and the final add). */
static void gemm_reference(const Gemm *g, const float *a, const float *b, const float *c0,
                           double *ref, double *bound) {
    const double u = ldexp(1.0, -24);
    /* op(a) as rows [M,K] and op(b) as columns [N,K], so the inner loop runs contiguously */
    double *ar = malloc((size_t)g->M * g->K * sizeof *ar), *bc = malloc((size_t)g->N * g->K * sizeof *bc);
    assert_true(ar && bc);
    for (int i = 0; i < g->M; i++)
        for (int p = 0; p < g->K; p++)
            ar[(size_t)i * g->K + p] = g->ta ? a[(size_t)p * g->M + i] : a[(size_t)i * g->K + p];
    for (int j = 0; j < g->N; j++)
        for (int p = 0; p < g->K; p++)
            bc[(size_t)j * g->K + p] = g->tb ? b[(size_t)j * g->K + p] : b[(size_t)p * g->N + j];
    for (int i = 0; i < g->M; i++)
        for (int j = 0; j < g->N; j++) {
            const double *x = ar + (size_t)i * g->K, *y = bc + (size_t)j * g->K;
            double s = 0, sabs = 0;
            for (int p = 0; p < g->K; p++) {
                s += x[p] * y[p];
                sabs += fabs(x[p] * y[p]);
            }
            const size_t ij = (size_t)i * g->N + j;
            const double cterm = g->beta == 0 ? 0.0 : (double)g->beta * c0[ij];
            ref[ij] = g->alpha * s + cterm;
            bound[ij] = (g->K + 4) * u * (fabs(g->alpha) * sabs + fabs(cterm)) + 1e-30;
        }
    free(ar), free(bc);
}

/* Number of elements outside the bound; prints the first few with index and both values.
 * *worst gets the largest |got - ref| / bound seen (1 = at the bound). */
static size_t gemm_check(const char *what, const float *got, const double *ref,
                         const double *bound, size_t n, double *worst) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - ref[i]);
        if (err / bound[i] > *worst) *worst = err / bound[i];
        if (!(err <= bound[i])) {
            if (bad < 5)
                fprintf(stderr, "  %s[%zu]: got %.9g, expected %.9g (|diff| %.3g > bound %.3g)\n",
                        what, i, (double)got[i], ref[i], err, bound[i]);
            bad++;
        }
    }
    if (bad) fprintf(stderr, "  %s: %zu of %zu elements out of bounds\n", what, bad, n);
    return bad;
}

static const char *const gemm_names[] = {"auto", "openblas", "onednn"};

/* One GEMM through each library (and AUTO) against the double reference. beta = 0 starts
 * from NaNs in c: a written output must not read them. Returns the number of failures. */
static size_t gemm_check_libraries(const Gemm *g, double worst[3]) {
    const size_t na = (size_t)g->M * g->K, nb = (size_t)g->K * g->N, nc = (size_t)g->M * g->N;
    float *a = rand_f32(na, 1), *b = rand_f32(nb, 2), *c0 = rand_f32(nc, 3);
    float *c = malloc(nc * sizeof *c);
    double *ref = malloc(nc * sizeof *ref), *bound = malloc(nc * sizeof *bound);
    assert_true(c && ref && bound);
    gemm_reference(g, a, b, c0, ref, bound);
    size_t bad = 0;
    for (int lib = CPU_GEMM_AUTO; lib <= CPU_GEMM_ONEDNN; lib++) {
        assert_int_equal(backend_cpu_set_gemm(be, (CpuGemm)lib), 0);
        for (size_t i = 0; i < nc; i++) c[i] = g->beta == 0 ? NAN : c0[i];
        be->matmul(be, c, a, b, g->M, g->N, g->K, g->ta, g->tb, g->alpha, g->beta);
        char what[128];
        snprintf(what, sizeof what, "%s %dx%dx%d ta=%d tb=%d alpha=%g beta=%g", gemm_names[lib],
                 g->M, g->N, g->K, g->ta, g->tb, (double)g->alpha, (double)g->beta);
        bad += gemm_check(what, c, ref, bound, nc, &worst[lib]);
    }
    assert_int_equal(backend_cpu_set_gemm(be, CPU_GEMM_AUTO), 0);
    free(a), free(b), free(c0), free(c), free(ref), free(bound);
    return bad;
}

static int setup(void **state) {
    (void)state;
    be = backend_cpu_create(THREADS);
    return be ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    backend_cpu_destroy(be);
    be = NULL;
    return 0;
}

static void skip_without_onednn(void) {
    if (!backend_cpu_has_onednn()) {
        printf("this build has no oneDNN (meson: libdnnl-dev not found): OpenBLAS only\n");
        skip();
    }
}

/* Parity of the two libraries: both within the float bound of the same double reference. */
static void test_parity(void **state) {
    (void)state;
    skip_without_onednn();
    static const int shapes[][3] = {
        {1, 1, 1},     {5, 7, 3},     {1, 300, 17},  {17, 1, 511}, {64, 64, 64},
        {100, 60, 50}, {40, 90, 80},  {333, 37, 29}, {257, 33, 511}, {512, 96, 8},
        {8, 96, 512},  {96, 8, 512},  {31, 129, 511},
        {1, 2000, 257}, {1, 4099, 96}, /* one row: matrix-vector products over column slabs */
    };
    static const float ab[][2] = {{1, 0}, {1, 1}, {0.7f, 0}, {0.7f, 1}, {-0.25f, 0.3f}, {2, -1}};
    size_t bad = 0;
    double worst[3] = {0, 0, 0};
    int n = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (size_t k = 0; k < sizeof ab / sizeof ab[0]; k++, n++) {
                const Gemm g = {shapes[s][0], shapes[s][1], shapes[s][2], t >> 1, t & 1,
                                ab[k][0], ab[k][1]};
                bad += gemm_check_libraries(&g, worst);
            }
    printf("%d GEMMs, largest error / bound: auto %.3g, openblas %.3g, onednn %.3g\n", n,
           worst[0], worst[1], worst[2]);
    assert_int_equal(bad, 0);
}

/* Same inputs, same threads: oneDNN's output is bit-identical from call to call and from a
 * freshly created backend (new primitives), with and without accumulation. The shapes are
 * the model's kinds: activations x weights, weight gradients (long K), LoRA rank 8. */
static void test_onednn_deterministic(void **state) {
    (void)state;
    skip_without_onednn();
    static const Gemm gs[] = {
        {1024, 288, 288, 0, 1, 1, 0}, {1024, 288, 288, 0, 0, 1, 1}, {288, 288, 1024, 1, 0, 1, 1},
        {8, 768, 1024, 1, 0, 1, 1},   {768, 8, 1024, 1, 0, 2, 1},   {1024, 2000, 288, 0, 1, 1, 0},
        {1024, 288, 4000, 0, 0, 1, 0},
    };
    Backend *fresh = backend_cpu_create(THREADS);
    assert_non_null(fresh);
    assert_int_equal(backend_cpu_set_gemm(be, CPU_GEMM_ONEDNN), 0);
    assert_int_equal(backend_cpu_set_gemm(fresh, CPU_GEMM_ONEDNN), 0);
    for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) {
        const Gemm *g = &gs[i];
        const size_t nc = (size_t)g->M * g->N;
        float *a = rand_f32((size_t)g->M * g->K, 4), *b = rand_f32((size_t)g->K * g->N, 5);
        float *c0 = rand_f32(nc, 6), *c[3];
        for (int r = 0; r < 3; r++) {
            Backend *use = r == 2 ? fresh : be;
            c[r] = malloc(nc * sizeof(float));
            assert_non_null(c[r]);
            memcpy(c[r], c0, nc * sizeof(float));
            use->matmul(use, c[r], a, b, g->M, g->N, g->K, g->ta, g->tb, g->alpha, g->beta);
        }
        for (int r = 1; r < 3; r++)
            if (memcmp(c[0], c[r], nc * sizeof(float)) != 0) {
                size_t j = 0;
                while (c[0][j] == c[r][j]) j++;
                fail_msg("onednn %dx%dx%d ta=%d tb=%d: run %d differs at [%zu]: %.9g vs %.9g",
                         g->M, g->N, g->K, g->ta, g->tb, r, j, (double)c[r][j], (double)c[0][j]);
            }
        free(a), free(b), free(c0), free(c[0]), free(c[1]), free(c[2]);
    }
    assert_int_equal(backend_cpu_set_gemm(be, CPU_GEMM_AUTO), 0);
    backend_cpu_destroy(fresh);
}

/* The primitive cache: a repeated call builds nothing; a new thread count, alpha or beta
 * builds a new primitive; hundreds of shapes evict old ones, and an evicted shape is rebuilt
 * and still right. */
static void test_onednn_cache(void **state) {
    (void)state;
    skip_without_onednn();
    assert_int_equal(backend_cpu_set_gemm(be, CPU_GEMM_ONEDNN), 0);
    CpuGemmStats s0, s1;
    const int M = 37, N = 21, K = 19;
    float *a = rand_f32((size_t)M * K, 7), *b = rand_f32((size_t)K * N, 8);
    float *c = rand_f32((size_t)M * N, 9);
    be->matmul(be, c, a, b, M, N, K, 0, 0, 1, 0);
    backend_cpu_gemm_stats(be, &s0);
    be->matmul(be, c, a, b, M, N, K, 0, 0, 1, 0);
    backend_cpu_gemm_stats(be, &s1);
    assert_int_equal(s1.onednn_primitives, s0.onednn_primitives);
    assert_int_equal(s1.onednn_calls, s0.onednn_calls + 1);
    be->matmul(be, c, a, b, M, N, K, 0, 0, 0.5f, 0);
    be->matmul(be, c, a, b, M, N, K, 0, 0, 1, 1);
    backend_cpu_gemm_stats(be, &s1);
    assert_int_equal(s1.onednn_primitives, s0.onednn_primitives + 2);

    /* one thread, then back to THREADS: a primitive each, results within bounds */
    double worst[3] = {0, 0, 0};
    size_t bad = 0;
    omp_set_num_threads(1);
    const Gemm g1 = {300, 40, 511, 1, 1, 0.7f, 1};
    bad += gemm_check_libraries(&g1, worst);
    omp_set_num_threads(THREADS);
    bad += gemm_check_libraries(&g1, worst);

    /* more shapes than the cache holds */
    assert_int_equal(backend_cpu_set_gemm(be, CPU_GEMM_ONEDNN), 0); /* the checks reset it */
    backend_cpu_gemm_stats(be, &s0);
    for (int m = 1; m <= 400; m++) be->matmul(be, c, a, b, m % M + 1, N, m / M + 1, 0, 0, 1, 0);
    backend_cpu_gemm_stats(be, &s1);
    assert_true(s1.onednn_evictions > s0.onednn_evictions);
    const Gemm g2 = {M, N, K, 0, 0, 1, 0}; /* built first above: evicted by now */
    bad += gemm_check_libraries(&g2, worst);
    assert_int_equal(s1.onednn_fallbacks, 0);
    assert_int_equal(bad, 0);
    assert_int_equal(backend_cpu_set_gemm(be, CPU_GEMM_AUTO), 0);
    free(a), free(b), free(c);
}

/* AUTO sends tiny GEMMs (below 64x32x32 of work) and single rows (decoding) to OpenBLAS and
 * the rest to oneDNN. */
static void test_auto_choice(void **state) {
    (void)state;
    skip_without_onednn();
    static const int shapes[][3] = {{4, 4, 4}, {32, 32, 32}, {40, 40, 40}, {48, 48, 48},
                                    {1024, 8, 288}, {8, 288, 1024}, {1, 1024, 288}};
    static const int onednn[] = {0, 0, 0, 1, 1, 1, 0};
    float *a = rand_f32(1024 * 288, 10), *b = rand_f32(1024 * 288, 11);
    float *c = rand_f32(1024 * 288, 12);
    assert_int_equal(backend_cpu_set_gemm(be, CPU_GEMM_AUTO), 0);
    for (size_t i = 0; i < sizeof onednn / sizeof onednn[0]; i++) {
        CpuGemmStats s0, s1;
        backend_cpu_gemm_stats(be, &s0);
        be->matmul(be, c, a, b, shapes[i][0], shapes[i][1], shapes[i][2], 0, 0, 1, 0);
        backend_cpu_gemm_stats(be, &s1);
        if (s1.onednn_calls - s0.onednn_calls != onednn[i] ||
            s1.openblas_calls - s0.openblas_calls != 1 - onednn[i])
            fail_msg("auto ran %dx%dx%d through %s, expected %s", shapes[i][0], shapes[i][1],
                     shapes[i][2], s1.onednn_calls > s0.onednn_calls ? "onednn" : "openblas",
                     onednn[i] ? "onednn" : "openblas");
    }
    free(a), free(b), free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity),
        cmocka_unit_test(test_onednn_deterministic),
        cmocka_unit_test(test_onednn_cache),
        cmocka_unit_test(test_auto_choice),
    };
    return cmocka_run_group_tests_name("matmul_f32", tests, setup, teardown);
}
