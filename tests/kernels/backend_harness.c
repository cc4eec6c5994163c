/* The machinery of the backend parity harness (tests/test_backend_ops.c): seeded inputs,
 * device buffers poisoned with NaN, and the checks that hold each backend to a double
 * reference and a later backend also to the CPU's float result, with a per-op summary. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/philox_block.h"
#include "tests/kernels/backend_harness.h"

#define SEED 20250111u

enum { MAX_SLOTS = 16, MAX_OPS = 64 };

Backend *g_be[MAX_BACKENDS];
int g_nbe;
static int g_bi;                     /* index of the backend now running */
static int g_slot;                   /* checks so far in this (case, backend) */
static float *g_cpu[MAX_SLOTS];      /* the CPU's outputs of this case, by check order */
static size_t g_failures;            /* bad elements in the current test */
static const char *g_op = "";
static struct { const char *op; double worst[MAX_BACKENDS]; } g_sum[MAX_OPS];
static int g_nsum;

/* ---- inputs ---- */

void *xmalloc(size_t bytes) {
    void *p = calloc(bytes ? bytes : 1, 1);
    assert_non_null(p);
    return p;
}

/* uniform in [lo, hi) from Philox (SEED, stream): the same inputs on every run */
float *rnd(size_t n, uint64_t stream, double lo, double hi) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        uint32_t w[4];
        philox_sequence_block(w, SEED, stream, i / 4);
        x[i] = (float)(lo + (hi - lo) * philox_unit_float(w[i % 4]));
    }
    return x;
}

float *narrow(const double *x, size_t n) {
    float *y = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}

double *dvec(size_t n) { return xmalloc(n * sizeof(double)); }

double *widen(const float *x, size_t n) {
    double *y = dvec(n);
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

int32_t *ids(size_t n, uint64_t stream, int32_t hi) { /* in [0, hi) */
    int32_t *t = xmalloc(n * sizeof(int32_t));
    float *u = rnd(n, stream, 0, 1);
    for (size_t i = 0; i < n; i++) t[i] = (int32_t)(u[i] * hi) % hi;
    free(u);
    return t;
}

/* ---- device buffers ---- */

void *dput(Backend *be, const void *h, size_t bytes) {
    void *d = be->alloc(be, bytes);
    if (!d) fail_msg("%s: alloc of %zu bytes failed: %s", be->name, bytes,
                     be->error(be) ? be->error(be) : "(no message)");
    be->to_device(be, d, h, bytes);
    return d;
}

float *dputf(Backend *be, const float *h, size_t n) { return dput(be, h, n * sizeof(float)); }

float *dpoison(Backend *be, size_t n) { /* NaN everywhere: unwritten elements fail */
    float *h = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    float *d = dputf(be, h, n);
    free(h);
    return d;
}

/* waits for the backend (failing the test on an error) and reads n floats back */
float *dget(Backend *be, const float *d, size_t n) {
    if (be->sync(be) != 0) fail_msg("%s", be->error(be)); /* the sentence names the backend */
    float *h = xmalloc(n * sizeof(float));
    be->to_host(be, h, d, n * sizeof(float));
    if (be->sync(be) != 0) fail_msg("%s", be->error(be));
    return h;
}

/* ---- checks ---- */

static void summary_note(double ratio) {
    int i = 0;
    while (i < g_nsum && strcmp(g_sum[i].op, g_op) != 0) i++;
    if (i == g_nsum) {
        assert_true(g_nsum < MAX_OPS);
        g_sum[g_nsum].op = g_op;
        for (int b = 0; b < MAX_BACKENDS; b++) g_sum[g_nsum].worst[b] = -1;
        g_nsum++;
    }
    if (ratio > g_sum[i].worst[g_bi]) g_sum[i].worst[g_bi] = ratio;
}

/* Counts elements with |got - ref| > factor * F32_EPS * scale_i (scale_i = mag[i], or
 * |ref_i| + max|ref| / 16 when mag is NULL), printing the first few. */
size_t compare(const char *against, const char *what, const float *got, const double *ref,
                      const double *mag, size_t n, double factor, int note) {
    double mx = 0, worst = 0;
    for (size_t i = 0; i < n; i++) mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        const double scale = mag ? mag[i] : fabs(ref[i]) + mx / 16;
        const double tol = factor * F32_EPS * scale + 1e-30, err = fabs((double)got[i] - ref[i]);
        if (err / tol > worst || got[i] != got[i]) worst = got[i] != got[i] ? INFINITY : err / tol;
        if (!(err <= tol)) {
            if (bad < 5)
                fprintf(stderr, "  %s %s %s[%zu]: got %.9g, %s %.9g (|diff| %.3g > tol %.3g)\n",
                        g_be[g_bi]->name, g_op, what, i, (double)got[i], against, ref[i], err, tol);
            bad++;
        }
    }
    if (bad)
        fprintf(stderr, "  %s %s %s: %zu of %zu elements out of tolerance (worst |err|/tol %.3g)\n",
                g_be[g_bi]->name, g_op, what, bad, n, worst);
    if (note) summary_note(worst);
    g_failures += bad;
    return bad;
}

/* got against the double reference; a backend after the CPU also against the CPU's result
 * for the same check (within twice the tolerance: both carry their own rounding). */
void check(const char *what, const float *got, const double *ref, const double *mag,
                  size_t n, double factor) {
    compare("expected", what, got, ref, mag, n, factor, 1);
    assert_true(g_slot < MAX_SLOTS);
    if (g_bi == 0) {
        free(g_cpu[g_slot]);
        g_cpu[g_slot] = xmalloc(n * sizeof(float));
        memcpy(g_cpu[g_slot], got, n * sizeof(float));
    } else {
        double *cpu = widen(g_cpu[g_slot], n);
        char label[64];
        snprintf(label, sizeof label, "%s vs cpu", what);
        compare("cpu", label, got, cpu, mag, n, 2 * factor, 0);
        free(cpu);
    }
    g_slot++;
}

void check_bitwise(const char *what, const float *got, const double *ref, const double *mag,
                   size_t n, double factor) {
    const int slot = g_slot;
    check(what, got, ref, mag, n, factor);
    if (g_bi == 0) return;
    size_t differ = 0, first = n;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &g_cpu[slot][i], sizeof(float)) != 0) {
            if (first == n) first = i;
            differ++;
        }
    if (differ) {
        fprintf(stderr, "  %s %s %s: %zu of %zu elements differ from the cpu's bits (first at %zu: "
                        "%.9g vs %.9g)\n", g_be[g_bi]->name, g_op, what, differ, n, first,
                (double)got[first], (double)g_cpu[slot][first]);
        g_failures += differ;
    }
}

void backend_begin(int bi) {
    g_bi = bi;
    g_slot = 0;
}

void op_begin(const char *op) {
    g_op = op;
    g_failures = 0;
}

void op_end(void) {
    if (g_failures) fail_msg("%s: %zu elements out of tolerance (see above)", g_op, g_failures);
}

int is_cpu(const Backend *be) { return strcmp(be->name, "cpu") == 0; }

void harness_summary_print(void) {
    printf("\nworst |err| / tolerance per op (1.0 = at the tolerance; - = not run):\n");
    printf("  %-22s", "op");
    for (int b = 0; b < g_nbe; b++) printf(" %10s", g_be[b]->name);
    printf("\n");
    for (int i = 0; i < g_nsum; i++) {
        printf("  %-22s", g_sum[i].op);
        for (int b = 0; b < g_nbe; b++) {
            if (g_sum[i].worst[b] < 0) printf(" %10s", "-");
            else printf(" %10.3g", g_sum[i].worst[b]);
        }
        printf("\n");
    }
    for (int s = 0; s < MAX_SLOTS; s++) {
        free(g_cpu[s]);
        g_cpu[s] = NULL;
    }
}
