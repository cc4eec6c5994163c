/* Shared by the op-family files of the `ops` test (tests/kernels/ops_*.c): the backend under
 * test, tolerance checks that keep a summary of the worst error, seeded random buffers, and
 * each backward against central differences of a random projection L = sum(r * forward(x)).
 * Double precision only (the f64 build). Not the ops' tests themselves. */
#ifndef LORASC_TESTS_KERNELS_OPS_CHECK_H
#define LORASC_TESTS_KERNELS_OPS_CHECK_H

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

#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/check.h"
#include "tests/fd.h"

#define SEED 20240611u
#define FD_STEP 1e-6
#define FD_ATOL 1e-7 /* central differences at step 1e-6 carry ~1e-9 of rounding noise */
#define FD_RTOL 1e-6

/* The CPU backend with 2 threads, created by ops_setup; a test may swap it for another and
 * must put it back. */
extern Backend *be;

/* Fails the test (after check_close_f64 has printed index and values) when any element of
 * got is farther than atol + rtol * |ref| from ref; every comparison goes through here. */
void expect_close(const char *what, const Real *got, const Real *ref, size_t n, double atol,
                  double rtol);
/* Central differences of loss(ctx) with respect to each x[i] against the analytic gradient. */
void expect_grad(const char *what, Real *x, size_t n, const Real *analytic, FdLoss loss,
                 void *ctx);

Real *vec(size_t n);                                              /* zeros, never NULL */
Real *rand_vec(size_t n, uint64_t stream, double lo, double hi); /* uniform [lo, hi) */
Real *rand_nonzero(size_t n, uint64_t stream);                    /* [-1, 1], |x| >= 0.05 */
Real *copy_vec(const Real *x, size_t n);
double dot(const Real *a, const Real *b, size_t n);

/* Group setup (creates be) and teardown (prints the group's worst errors, destroys be). */
int ops_setup(void **state);
int ops_teardown(void **state);

/* One per family file: runs its tests as a cmocka group, returns the number that failed. */
int ops_backend_run(void);
int ops_matmul_run(void);
int ops_norms_run(void);
int ops_rope_run(void);
int ops_attention_run(void);
int ops_activations_run(void);
int ops_elementwise_run(void);
int ops_cross_entropy_run(void);
int ops_optim_run(void);
int ops_patchify_run(void);

#endif
