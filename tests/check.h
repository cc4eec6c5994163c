/* Shared helpers for the cmocka tests: tolerance comparisons that name the failing index
 * and both values, and seeded random fills (tests never use all-zero inputs). */
#ifndef LORASC_TESTS_CHECK_H
#define LORASC_TESTS_CHECK_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/base/philox.h"
#include "kernels/real.h"

/* Counts elements with |got - ref| > atol + rtol * |ref| (or non-finite got); prints the
 * first few with their index and the worst error. Returns the count (0 = pass). */
static inline size_t check_close_f64(const char *what, const double *got, const double *ref,
                                     size_t n, double atol, double rtol) {
    size_t bad = 0, worst = 0;
    double worst_excess = 0.0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs(got[i] - ref[i]);
        double tol = atol + rtol * fabs(ref[i]);
        if (!(err <= tol)) {
            if (bad < 5)
                fprintf(stderr, "  %s[%zu]: got %.9g, expected %.9g (|diff| %.3g > tol %.3g)\n",
                        what, i, got[i], ref[i], err, tol);
            if (!(err - tol <= worst_excess)) { worst_excess = err - tol; worst = i; }
            bad++;
        }
    }
    if (bad)
        fprintf(stderr, "  %s: %zu of %zu elements out of tolerance (atol %.3g, rtol %.3g), worst at %zu\n",
                what, bad, n, atol, rtol, worst);
    return bad;
}

/* Same for Real (float or double) data against a float reference (golden files). */
static inline size_t check_close_real(const char *what, const Real *got, const float *ref, size_t n,
                                      double atol, double rtol) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - (double)ref[i]);
        double tol = atol + rtol * fabs((double)ref[i]);
        if (!(err <= tol)) {
            if (bad < 5)
                fprintf(stderr, "  %s[%zu]: got %.9g, expected %.9g (|diff| %.3g > tol %.3g)\n",
                        what, i, (double)got[i], (double)ref[i], err, tol);
            bad++;
        }
    }
    if (bad)
        fprintf(stderr, "  %s: %zu of %zu elements out of tolerance (atol %.3g, rtol %.3g)\n", what,
                bad, n, atol, rtol);
    return bad;
}

/* Uniform random fill in [lo, hi) from a fixed (seed, stream). */
static inline void check_fill_uniform(Real *x, size_t n, uint64_t seed, uint64_t stream, double lo,
                                      double hi) {
    philox_uniform(x, n, seed, stream, lo, hi);
}

#endif
