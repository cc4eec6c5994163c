/* The shared part of the `ops` test: bookkeeping of every comparison, random buffers, the
 * finite-difference check and the group setup (see ops_check.h). */
#include "tests/kernels/ops_check.h"

Backend *be;

/* The worst errors of the running group, printed by ops_teardown. */
static size_t n_checks, n_elems;
static double worst_fd_abs, worst_fd_rel, worst_ratio; /* ratio = |err| / tol */
static char worst_what[96]; /* copied: callers often pass a stack buffer */

void expect_close(const char *what, const Real *got, const Real *ref, size_t n, double atol,
                  double rtol) {
    int is_fd = atol == FD_ATOL && rtol == FD_RTOL;
    for (size_t i = 0; i < n; i++) {
        double err = fabs(got[i] - ref[i]), tol = atol + rtol * fabs(ref[i]);
        if (tol > 0 && err / tol > worst_ratio) {
            worst_ratio = err / tol;
            snprintf(worst_what, sizeof worst_what, "%s", what);
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

void expect_grad(const char *what, Real *x, size_t n, const Real *analytic, FdLoss loss,
                 void *ctx) {
    Real *num = vec(n);
    fd_central(be, x, n, FD_STEP, loss, ctx, num);
    expect_close(what, analytic, num, n, FD_ATOL, FD_RTOL);
    free(num);
}

Real *vec(size_t n) {
    Real *x = calloc(n ? n : 1, sizeof(Real));
    assert_non_null(x);
    return x;
}

Real *rand_vec(size_t n, uint64_t stream, double lo, double hi) {
    Real *x = vec(n);
    check_fill_uniform(x, n, SEED, stream, lo, hi);
    return x;
}

Real *rand_nonzero(size_t n, uint64_t stream) {
    Real *x = rand_vec(n, stream, 0.05, 1.0);
    Real *sign = rand_vec(n, stream + 1000, -1.0, 1.0);
    for (size_t i = 0; i < n; i++)
        if (sign[i] < 0) x[i] = -x[i];
    free(sign);
    return x;
}

Real *copy_vec(const Real *x, size_t n) {
    Real *y = vec(n);
    memcpy(y, x, n * sizeof(Real));
    return y;
}

double dot(const Real *a, const Real *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

int ops_setup(void **state) {
    (void)state;
    n_checks = n_elems = 0;
    worst_fd_abs = worst_fd_rel = worst_ratio = 0;
    worst_what[0] = 0;
    be = backend_cpu_create(2);
    return be ? 0 : -1;
}

int ops_teardown(void **state) {
    (void)state;
    printf("[ summary  ] %zu comparisons over %zu elements; finite differences: max |err| %.3g, "
           "max rel err %.3g; worst err/tol %.3g (%s)\n",
           n_checks, n_elems, worst_fd_abs, worst_fd_rel, worst_ratio, worst_what);
    backend_cpu_destroy(be);
    return 0;
}
