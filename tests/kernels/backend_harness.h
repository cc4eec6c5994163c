/* The machinery of the backend parity harness (tests/kernels/backend_harness.c), shared by
 * tests/test_backend_ops.c: the backends under test, seeded inputs, NaN-poisoned device
 * buffers, and check(), which holds an output to a double reference (and a backend after
 * the CPU also to the CPU's float result) within factor * f32 epsilon * the error's scale. */
#ifndef LORASC_TESTS_BACKEND_HARNESS_H
#define LORASC_TESTS_BACKEND_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

#define F32_EPS 1.1920928955078125e-07 /* 2^-23: the f32 storage dtype's epsilon */
enum { MAX_BACKENDS = 2 };

extern Backend *g_be[MAX_BACKENDS]; /* g_be[0] is the CPU */
extern int g_nbe;

void *xmalloc(size_t bytes);                                /* zeroed; fails the test on NULL */
float *rnd(size_t n, uint64_t stream, double lo, double hi); /* uniform, seeded */
double *dvec(size_t n);
double *widen(const float *x, size_t n);
float *narrow(const double *x, size_t n);
int32_t *ids(size_t n, uint64_t stream, int32_t hi); /* ids in [0, hi) */

void *dput(Backend *be, const void *h, size_t bytes); /* alloc + to_device */
float *dputf(Backend *be, const float *h, size_t n);
float *dpoison(Backend *be, size_t n);                /* n NaNs on the device */
float *dget(Backend *be, const float *d, size_t n);   /* sync (fails on error), to_host */

/* Counts elements with |got - ref| > factor * F32_EPS * scale_i, scale_i = mag[i] or, when
 * mag is NULL, |ref_i| + max|ref| / 16; prints the first few; adds them to the failures. */
size_t compare(const char *against, const char *what, const float *got, const double *ref,
               const double *mag, size_t n, double factor, int note);
/* compare() against the reference, then (second backend) against the CPU's same check */
void check(const char *what, const float *got, const double *ref, const double *mag, size_t n,
           double factor);

/* check(), and a backend after the CPU must give the CPU's bits (the ops written to round
 * exactly as the CPU does: AdamW, scale, axpy, the noise) */
void check_bitwise(const char *what, const float *got, const double *ref, const double *mag,
                   size_t n, double factor);

void op_begin(const char *op);   /* names the op for messages and the summary */
void backend_begin(int bi);      /* the checks that follow are backend bi's */
void op_end(void);               /* fails the test if any check failed since op_begin */
int is_cpu(const Backend *be);
void harness_summary_print(void); /* the worst |err|/tol per op and backend */

/* the cases in tests/kernels/backend_cases.c (cmocka tests) */
void test_elementwise(void **state);
void test_rowcol(void **state);
void test_cross_entropy(void **state);
void test_optim(void **state);
void test_step_stats(void **state);
void test_noise(void **state);
void test_vision(void **state);
/* tests/kernels/backend_cases_bf16.c */
void test_bf16_convert(void **state);
void test_bf16_matmul(void **state);
void test_bf16_matmul_frozen(void **state);
void test_bf16_head(void **state);
void test_bf16_attention(void **state);

#endif
