/* kernels/cpu/residual.c and kernels/cpu/rowcol.c (the per-row and per-column ops DoRA
 * uses): against naive loops, aliasing where allowed, accumulation, 1 vs 2 threads. */
#include "tests/kernels/ops_check.h"

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

    /* scale_rows: out[n,c] = s[n] x[n,c]; scale_cols: out[n,c] = x[n,c] s[c]; out may be x */
    for (int cols = 0; cols < 2; cols++) {
        void (*scale)(Backend *, Real *, const Real *, const Real *, int, int) =
            cols ? be->scale_cols : be->scale_rows;
        const Real *s = cols ? sc : sr;
        const char *name = cols ? "scale_cols" : "scale_rows";
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) ref[(size_t)n * C + c] = x[(size_t)n * C + c] * s[cols ? c : n];
        scale(be, got, x, s, N, C);
        snprintf(what, sizeof what, "%s %dx%d", name, N, C);
        expect_close(what, got, ref, nc, 0, 0);
        memcpy(got, x, nc * sizeof(Real));
        scale(be, got, got, s, N, C);
        snprintf(what, sizeof what, "%s in place %dx%d", name, N, C);
        expect_close(what, got, ref, nc, 0, 0);
    }

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

int ops_elementwise_run(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_residual),
        cmocka_unit_test(test_rowcol),
    };
    return cmocka_run_group_tests_name("elementwise", tests, ops_setup, ops_teardown);
}
