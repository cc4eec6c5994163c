/* The parity cases of the pointwise, row/column, loss, optimizer, noise and vision ops, run
 * by tests/test_backend_ops.c (which holds the matmul, embedding, norm, rotary and attention
 * cases, the error and determinism tests and the driver) through tests/kernels/backend_harness.h. */
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
#include "tests/kernels/backend_ref.h"

/* ---- elementwise ---- */

/* One elementwise op on every backend: inputs in[0..nin) uploaded, outputs out[0..nout)
 * either poisoned (write) or starting at init (accumulate / in place), run() calls the op. */
typedef void (*EwRun)(Backend *be, float **d, size_t n, int variant);

static void elementwise_case(const char *op, EwRun run, int variant, float **in, int nin,
                             float **init, const double **ref, const char **names, int nout,
                             size_t n, const double *mag, double factor) {
    op_begin(op);
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        float *d[8];
        for (int o = 0; o < nout; o++) d[o] = init[o] ? dputf(be, init[o], n) : dpoison(be, n);
        for (int i = 0; i < nin; i++) d[nout + i] = dputf(be, in[i], n);
        run(be, d, n, variant);
        for (int o = 0; o < nout; o++) {
            float *got = dget(be, d[o], n);
            /* scale and axpy round exactly as the CPU does: same bits */
            if (strcmp(op, "scale") == 0 || strcmp(op, "axpy") == 0)
                check_bitwise(names[o], got, ref[o], mag, n, factor);
            else
                check(names[o], got, ref[o], mag, n, factor);
            free(got);
        }
        for (int i = 0; i < nout + nin; i++) be->free(be, d[i]);
    }
    op_end();
}

static void run_swiglu_f(Backend *be, float **d, size_t n, int v) {
    (void)v;
    be->swiglu_forward(be, d[0], d[1], d[2], n);
}
static void run_swiglu_b(Backend *be, float **d, size_t n, int v) {
    (void)v;
    be->swiglu_backward(be, d[0], d[1], d[2], d[3], d[4], n);
}
static void run_residual_f(Backend *be, float **d, size_t n, int v) {
    be->residual_forward(be, d[0], v ? d[0] : d[1], d[2], n);
}
static void run_residual_b(Backend *be, float **d, size_t n, int v) { /* v: db = NULL */
    if (v)
        be->residual_backward(be, d[0], NULL, d[1], n);
    else
        be->residual_backward(be, d[0], d[1], d[2], n);
}
static void run_gelu_f(Backend *be, float **d, size_t n, int v) {
    be->gelu_forward(be, d[0], d[1], n, (GeluKind)v);
}
static void run_gelu_b(Backend *be, float **d, size_t n, int v) {
    be->gelu_backward(be, d[0], d[0], d[1], n, (GeluKind)v);
} /* dx aliases dout */
static void run_divide(Backend *be, float **d, size_t n, int v) {
    (void)v;
    be->divide(be, d[0], d[1], d[2], n);
}
static void run_scale(Backend *be, float **d, size_t n, int v) {
    (void)v;
    be->scale(be, d[0], n, -0.37f);
}
static void run_axpy(Backend *be, float **d, size_t n, int v) {
    (void)v;
    be->axpy(be, d[0], d[1], n, 0.61f);
}

void test_elementwise(void **state) {
    (void)state;
    const size_t n = 1031;
    float *a = rnd(n, 60, -3, 3), *b = rnd(n, 61, -3, 3), *g = rnd(n, 62, -1, 1);
    float *pos = rnd(n, 63, 0.5, 2);
    double *r0 = dvec(n), *r1 = dvec(n);
    const double *refs[2] = {r0, r1};
    for (size_t i = 0; i < n; i++) {
        const double s = 1 / (1 + exp(-(double)a[i]));
        r0[i] = a[i] * s * b[i];
    }
    elementwise_case("swiglu_forward", run_swiglu_f, 0, (float *[]){a, b}, 2, (float *[]){NULL},
                     refs, (const char *[]){"out"}, 1, n, NULL, 8);
    for (size_t i = 0; i < n; i++) {
        const double s = 1 / (1 + exp(-(double)a[i]));
        r0[i] = g[i] * b[i] * s * (1 + a[i] * (1 - s));
        r1[i] = g[i] * a[i] * s;
    }
    elementwise_case("swiglu_backward", run_swiglu_b, 0, (float *[]){g, a, b}, 3,
                     (float *[]){NULL, NULL}, refs, (const char *[]){"dgate", "dup"}, 2, n, NULL,
                     8);
    for (size_t i = 0; i < n; i++) r0[i] = (double)a[i] + b[i];
    elementwise_case("residual_forward", run_residual_f, 0, (float *[]){a, b}, 2, (float *[]){NULL},
                     refs, (const char *[]){"out"}, 1, n, NULL, 1);
    elementwise_case("residual_forward", run_residual_f, 1, (float *[]){a, b}, 2, (float *[]){a},
                     refs, (const char *[]){"out = a + b in place"}, 1, n, NULL, 1);
    for (size_t i = 0; i < n; i++) r0[i] = (double)a[i] + g[i], r1[i] = (double)b[i] + g[i];
    elementwise_case("residual_backward", run_residual_b, 0, (float *[]){g}, 1, (float *[]){a, b},
                     refs, (const char *[]){"da", "db"}, 2, n, NULL, 1);
    elementwise_case("residual_backward", run_residual_b, 1, (float *[]){g}, 1, (float *[]){a},
                     refs, (const char *[]){"da (db NULL)"}, 1, n, NULL, 1);
    /* GELU's derivative is a difference of terms of size 1 + |x|: that is its error's scale */
    double *gmag = dvec(n);
    for (size_t i = 0; i < n; i++) gmag[i] = fabs(g[i]) * (1 + fabs(a[i]));
    for (int kind = 0; kind < 3; kind++) {
        for (size_t i = 0; i < n; i++) {
            double dd;
            r0[i] = ref_gelu(a[i], kind, &dd);
            r1[i] = g[i] * dd;
        }
        elementwise_case("gelu_forward", run_gelu_f, kind, (float *[]){a}, 1, (float *[]){NULL},
                         refs, (const char *[]){"out"}, 1, n, NULL, 16);
        const double *rb[1] = {r1};
        elementwise_case("gelu_backward", run_gelu_b, kind, (float *[]){a}, 1, (float *[]){g}, rb,
                         (const char *[]){"dx (in place)"}, 1, n, gmag, 16);
    }
    for (size_t i = 0; i < n; i++) r0[i] = (double)a[i] / pos[i];
    elementwise_case("divide", run_divide, 0, (float *[]){a, pos}, 2, (float *[]){NULL}, refs,
                     (const char *[]){"out"}, 1, n, NULL, 1);
    for (size_t i = 0; i < n; i++) r0[i] = (double)a[i] * -0.37f;
    elementwise_case("scale", run_scale, 0, NULL, 0, (float *[]){a}, refs, (const char *[]){"x"}, 1,
                     n, NULL, 1);
    for (size_t i = 0; i < n; i++) r0[i] = (double)a[i] + 0.61f * (double)b[i];
    elementwise_case("axpy", run_axpy, 0, (float *[]){b}, 1, (float *[]){a}, refs,
                     (const char *[]){"y"}, 1, n, NULL, 2);
    free(a), free(b), free(g), free(pos), free(r0), free(r1), free(gmag);
}

/* ---- rows and columns (DoRA) ---- */

void test_rowcol(void **state) {
    (void)state;
    const int N = 23, C = 301;
    const size_t n = (size_t)N * C;
    float *x = rnd(n, 70, -1, 1), *y = rnd(n, 71, -1, 1), *sr = rnd(N, 72, -2, 2),
          *sc = rnd(C, 73, -2, 2);
    double *rn = dvec(N), *rc = dvec(C), *rr = dvec(n), *rcol = dvec(n);
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) {
            const size_t o = (size_t)i * C + c;
            rn[i] += (double)x[o] * x[o];
            rc[c] += (double)x[o] * y[o];
            rr[o] = (double)sr[i] * x[o];
            rcol[o] = (double)x[o] * sc[c];
        }
    for (int i = 0; i < N; i++) rn[i] = sqrt(rn[i]);
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        float *dx = dputf(be, x, n), *dy = dputf(be, y, n), *dsr = dputf(be, sr, N),
              *dsc = dputf(be, sc, C);
        float *on = dpoison(be, N), *oc = dpoison(be, C), *orr = dpoison(be, n),
              *ocol = dputf(be, x, n);
        op_begin("row_norm"), be->row_norm(be, on, dx, N, C);
        float *got = dget(be, on, N);
        check("norm", got, rn, NULL, N, 2), free(got), op_end();
        op_begin("col_dot"), be->col_dot(be, oc, dx, dy, N, C);
        got = dget(be, oc, C);
        check("out", got, rc, NULL, C, 2), free(got), op_end();
        op_begin("scale_rows"), be->scale_rows(be, orr, dx, dsr, N, C);
        got = dget(be, orr, n);
        check("out", got, rr, NULL, n, 1), free(got), op_end();
        op_begin("scale_cols"), be->scale_cols(be, ocol, ocol, dsc, N, C); /* out aliases x */
        got = dget(be, ocol, n);
        check("out (in place)", got, rcol, NULL, n, 1), free(got), op_end();
        be->free(be, dx), be->free(be, dy), be->free(be, dsr), be->free(be, dsc);
        be->free(be, on), be->free(be, oc), be->free(be, orr), be->free(be, ocol);
    }
    free(x), free(y), free(sr), free(sc), free(rn), free(rc), free(rr), free(rcol);
}

/* ---- cross-entropy ---- */

void test_cross_entropy(void **state) {
    (void)state;
    const int N = 13, V = 301;
    const size_t n = (size_t)N * V;
    float *logits = rnd(n, 80, -4, 4), *dloss = rnd(N, 81, 0.1, 1);
    int32_t *tgt = ids(N, 82, V);
    tgt[2] = tgt[7] = -1; /* ignored rows */
    dloss[4] = 0;         /* a masked row */
    double *rl = dvec(N), *rlse = dvec(N), *rd = dvec(n);
    ref_cross_entropy_forward(rl, rlse, logits, tgt, N, V);
    float *lse = narrow(rlse, N);
    ref_cross_entropy_backward(rd, logits, lse, tgt, dloss, N, V);
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        float *dlog = dputf(be, logits, n), *ddl = dputf(be, dloss, N), *dlse = dputf(be, lse, N);
        int32_t *dt = dput(be, tgt, N * sizeof(int32_t));
        float *ol = dpoison(be, N), *olse = dpoison(be, N), *od = dpoison(be, n);
        op_begin("cross_entropy_forward");
        be->cross_entropy_forward(be, ol, olse, dlog, dt, N, V);
        float *got = dget(be, ol, N), *got2 = dget(be, olse, N);
        check("losses", got, rl, NULL, N, 16), check("lse", got2, rlse, NULL, N, 16);
        free(got), free(got2), op_end();
        op_begin("cross_entropy_backward");
        be->cross_entropy_backward(be, od, dlog, dlse, dt, ddl, N, V);
        got = dget(be, od, n);
        check("dlogits", got, rd, NULL, n, 16), free(got);
        be->cross_entropy_backward(be, dlog, dlog, dlse, dt, ddl, N, V); /* in place */
        got = dget(be, dlog, n);
        check("dlogits (in place)", got, rd, NULL, n, 16), free(got), op_end();
        /* both in one pass: the bits of the backend's forward, then its backward from the lse
         * that forward computed */
        op_begin("cross_entropy_forward_backward");
        float *dlog2 = dputf(be, logits, n);
        be->cross_entropy_backward(be, od, dlog2, olse, dt, ddl, N, V);
        float *want_l = dget(be, ol, N), *want_lse = dget(be, olse, N), *want_d = dget(be, od, n);
        float *fl = dpoison(be, N), *flse = dpoison(be, N), *fd = dpoison(be, n);
        for (int inplace = 0; inplace <= 1; inplace++) {
            be->cross_entropy_forward_backward(be, fl, flse, inplace ? dlog2 : fd, NULL, dlog2, dt,
                                               ddl, N, V);
            float *gl = dget(be, fl, N), *glse = dget(be, flse, N);
            float *gd = dget(be, inplace ? dlog2 : fd, n);
            if (memcmp(gl, want_l, N * sizeof *gl) || memcmp(glse, want_lse, N * sizeof *glse) ||
                memcmp(gd, want_d, n * sizeof *gd))
                fail_msg("%s: cross_entropy_forward_backward (%s) differs from the separate ops",
                         be->name, inplace ? "in place" : "separate output");
            free(gl), free(glse), free(gd);
        }
        op_end();
        free(want_l), free(want_lse), free(want_d);
        be->free(be, fl), be->free(be, flse), be->free(be, fd), be->free(be, dlog2);
        be->free(be, dlog), be->free(be, ddl), be->free(be, dlse), be->free(be, dt);
        be->free(be, ol), be->free(be, olse), be->free(be, od);
    }
    free(logits), free(dloss), free(tgt), free(rl), free(rlse), free(rd), free(lse);
}

/* ---- optimizer and reductions ---- */

void test_optim(void **state) {
    (void)state;
    const size_t n = 1001;
    float *p = rnd(n, 90, -1, 1), *g = rnd(n, 91, -1, 1), *m = rnd(n, 92, -0.1, 0.1);
    float *v = rnd(n, 93, 0, 0.01);
    const float beta1s[2] = {0.9f, 0.3f}; /* 1 - beta1 below and above 0.5: both lerp forms */
    for (int k = 0; k < 2; k++) {
        const float lr = 1e-2f, b1 = beta1s[k], b2 = 0.999f, eps = 1e-8f, wd = 0.01f, gs = 0.5f;
        const float bc1 = (float)(1 - pow(b1, 3)), bc2 = (float)(1 - pow(b2, 3));
        double *rp = widen(p, n), *rm = widen(m, n), *rv = widen(v, n);
        ref_adamw(rp, rm, rv, g, n, lr, b1, b2, eps, wd, gs, bc1, bc2);
        op_begin("adamw_update");
        for (int bi = 0; bi < g_nbe; bi++) {
            backend_begin(bi);
            Backend *be = g_be[bi];
            float *dp = dputf(be, p, n), *dg = dputf(be, g, n), *dm = dputf(be, m, n),
                  *dv = dputf(be, v, n);
            be->adamw_update(be, dp, dg, dm, dv, n, lr, b1, b2, eps, wd, gs, bc1, bc2);
            float *hp = dget(be, dp, n), *hm = dget(be, dm, n), *hv = dget(be, dv, n);
            check_bitwise("p", hp, rp, NULL, n, 8), check_bitwise("m", hm, rm, NULL, n, 8);
            check_bitwise("v", hv, rv, NULL, n, 8);
            be->free(be, dp), be->free(be, dg), be->free(be, dm), be->free(be, dv);
            free(hp), free(hm), free(hv);
        }
        op_end();
        free(rp), free(rm), free(rv);
    }
    /* sum_squares: squares of floats are exact in double, so only the double sum rounds */
    const size_t ns = 100003;
    float *x = rnd(ns, 94, -1, 1);
    double ref = 0;
    for (size_t i = 0; i < ns; i++) ref += (double)x[i] * x[i];
    for (int bi = 0; bi < g_nbe; bi++) {
        Backend *be = g_be[bi];
        float *dx = dputf(be, x, ns);
        const double got = be->sum_squares(be, dx, ns);
        printf("  %s sum_squares: %.17g (double reference %.17g)\n", be->name, got, ref);
        if (!(fabs(got - ref) <= 1e-11 * ref)) /* n eps: the summation bound */
            fail_msg("%s sum_squares: %.17g, expected %.17g", be->name, got, ref);
        be->free(be, dx);
    }
    free(p), free(g), free(m), free(v), free(x);
}

/* n doubles of backend memory on the host (the sync checked). */
static void dget_doubles(Backend *be, double *h, const double *d, size_t n) {
    be->to_host(be, h, d, n * sizeof(double));
    if (be->sync(be) != 0) fail_msg("%s", be->error(be));
}

/* The device-resident step statistics: a mean loss in double against the double reference
 * (every backend) and the CPU's index-order sum (its bits); sum_squares_acc adding exactly
 * what sum_squares returns, group after group; clip_scale's norm and scale the bits of the
 * host formula (clipping, not clipping, off); adamw_update_dev the bits of adamw_update. */
void test_step_stats(void **state) {
    (void)state;
    const size_t nl = 3001, ng[3] = {100003, 17, 4099};
    float *loss = rnd(nl, 95, 0, 12);
    float *gr[3];
    for (int k = 0; k < 3; k++) gr[k] = rnd(ng[k], 96 + (uint64_t)k, -1, 1);
    double ref = 0, seq = 0;
    for (size_t i = 0; i < nl; i++) ref += (double)loss[i], seq += loss[i];
    for (int bi = 0; bi < g_nbe; bi++) {
        Backend *be = g_be[bi];
        op_begin("mean_to / sum_squares_acc / clip_scale");
        backend_begin(bi);
        float *dl = dputf(be, loss, nl);
        double *dd = dput(be, (double[4]){NAN, NAN, NAN, NAN}, 4 * sizeof(double));
        double h[4];
        be->mean_to(be, dd, dl, nl, 1000.0);
        be->mean_to(be, dd + 1, dl, nl, 0.0); /* no unmasked rows: 0 */
        dget_doubles(be, h, dd, 2);
        printf("  %s mean_to: %.17g (double reference %.17g)\n", be->name, h[0], ref / 1000.0);
        if (!(fabs(h[0] - ref / 1000.0) <= 1e-13 * ref / 1000.0) || h[1] != 0.0)
            fail_msg("%s mean_to: %.17g and %.17g, expected %.17g and 0", be->name, h[0], h[1],
                     ref / 1000.0);
        if (is_cpu(be) && h[0] != seq / 1000.0)
            fail_msg("cpu mean_to %.17g is not the index-order sum's %.17g", h[0], seq / 1000.0);
        /* the norm of three gradients, as adamw_step adds them */
        double host_sum = 0.0;
        be->zero(be, dd, sizeof(double));
        for (int k = 0; k < 3; k++) {
            float *dg = dputf(be, gr[k], ng[k]);
            host_sum += be->sum_squares(be, dg, ng[k]);
            be->sum_squares_acc(be, dd, dg, ng[k]);
            be->free(be, dg);
        }
        dget_doubles(be, h, dd, 1);
        if (memcmp(&h[0], &host_sum, sizeof h[0]) != 0)
            fail_msg("%s sum_squares_acc: %.17g, the sum_squares of the groups add to %.17g",
                     be->name, h[0], host_sum);
        const float clips[3] = {1.0f, 1e6f, 0.0f}; /* clips, does not clip, off */
        for (int c = 0; c < 3; c++) {
            float *ds = dputf(be, (float[1]){NAN}, 1);
            be->clip_scale(be, ds, dd + 1, dd, clips[c]);
            float *sc = dget(be, ds, 1);
            dget_doubles(be, h, dd, 2);
            const double norm = sqrt(host_sum);
            const float want = clips[c] > 0.0f ? (float)fmin(1.0, clips[c] / (norm + 1e-6)) : 1.0f;
            if (memcmp(&h[1], &norm, sizeof norm) != 0 || memcmp(sc, &want, sizeof want) != 0)
                fail_msg("%s clip_scale (max %g): norm %.17g scale %.9g, expected %.17g and %.9g",
                         be->name, (double)clips[c], h[1], (double)sc[0], norm, (double)want);
            free(sc);
            be->free(be, ds);
        }
        be->free(be, dl), be->free(be, dd);
        op_end();
    }
    /* adamw_update_dev = adamw_update with the scale it reads */
    const size_t n = 1001;
    float *p = rnd(n, 97, -1, 1), *g = rnd(n, 98, -1, 1), *m = rnd(n, 99, -0.1, 0.1);
    float *v = rnd(n, 100, 0, 0.01);
    const float gs = 0.37f;
    op_begin("adamw_update_dev");
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        float *out[2][3];
        for (int k = 0; k < 2; k++) {
            float *dp = dputf(be, p, n), *dg = dputf(be, g, n), *dm = dputf(be, m, n),
                  *dv = dputf(be, v, n), *ds = dputf(be, &gs, 1);
            if (k == 0)
                be->adamw_update(be, dp, dg, dm, dv, n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, gs,
                                 0.271f, 0.002997f);
            else
                be->adamw_update_dev(be, dp, dg, dm, dv, n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f,
                                     ds, 0.271f, 0.002997f);
            out[k][0] = dget(be, dp, n), out[k][1] = dget(be, dm, n), out[k][2] = dget(be, dv, n);
            be->free(be, dp), be->free(be, dg), be->free(be, dm), be->free(be, dv);
            be->free(be, ds);
        }
        for (int j = 0; j < 3; j++) {
            if (memcmp(out[0][j], out[1][j], n * sizeof(float)) != 0)
                fail_msg("%s adamw_update_dev: %s differs from adamw_update's", be->name,
                         j == 0 ? "p" : j == 1 ? "m" : "v");
            free(out[0][j]), free(out[1][j]);
        }
    }
    op_end();
    free(loss), free(p), free(g), free(m), free(v);
    for (int k = 0; k < 3; k++) free(gr[k]);
}

/* The LoRASC noise: every backend gives the bits of the float formula w + scale (u - 1/2). */
void test_noise(void **state) {
    (void)state;
    const size_t n = 1027; /* not a multiple of the 4-word Philox block */
    const uint64_t seed = 0x0123456789abcdefULL, stream = 77;
    const float scale = 0.3f;
    float *w = rnd(n, 100, -1, 1), *bits = xmalloc(n * sizeof(float));
    double *ref = dvec(n);
    for (size_t i = 0; i < n; i++) {
        uint32_t r[4];
        philox_sequence_block(r, seed, stream, i / 4);
        const float u = philox_unit_float(r[i % 4]);
        bits[i] = w[i] + (float)(scale * (u - 0.5f));
        ref[i] = w[i] + (double)scale * (u - 0.5);
    }
    op_begin("add_uniform_noise");
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        float *dw = dputf(be, w, n);
        be->add_uniform_noise(be, dw, n, seed, stream, scale);
        float *got = dget(be, dw, n);
        check("w", got, ref, NULL, n, 2);
        size_t differ = 0;
        for (size_t i = 0; i < n; i++) differ += memcmp(&got[i], &bits[i], sizeof(float)) != 0;
        if (differ)
            fail_msg("%s add_uniform_noise: %zu of %zu elements are not bit-identical to the float "
                     "formula",
                     be->name, differ, n);
        be->free(be, dw), free(got);
    }
    op_end();
    free(w), free(bits), free(ref);
}

/* ---- vision ---- */

void test_vision(void **state) {
    (void)state;
    const int B = 2, C = 3, H = 8, W = 12, P = 4, N = 37, D = 29;
    const size_t nimg = (size_t)B * C * H * W, ny = (size_t)N * D;
    float *img = rnd(nimg, 110, -1, 1), *y = rnd(ny, 111, -1, 1), *bias = rnd(D, 112, -1, 1);
    float *db0 = rnd(D, 113, -1, 1);
    double *rp = dvec(nimg), *ry = widen(y, ny), *rdb = widen(db0, D);
    ref_patchify(rp, img, B, C, H, W, P);
    for (int i = 0; i < N; i++)
        for (int c = 0; c < D; c++)
            ry[(size_t)i * D + c] += bias[c], rdb[c] += y[(size_t)i * D + c];
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        float *dimg = dputf(be, img, nimg), *out = dpoison(be, nimg), *dy = dputf(be, y, ny);
        float *dbias = dputf(be, bias, D), *ddb = dputf(be, db0, D);
        op_begin("patchify"), be->patchify(be, out, dimg, B, C, H, W, P);
        float *got = dget(be, out, nimg);
        check("out", got, rp, NULL, nimg, 0), free(got), op_end(); /* a permutation: exact */
        op_begin("bias_backward"), be->bias_backward(be, ddb, dy, N, D);
        got = dget(be, ddb, D);
        check("dbias", got, rdb, NULL, D, 16), free(got), op_end();
        op_begin("bias_forward"), be->bias_forward(be, dy, dbias, N, D);
        got = dget(be, dy, ny);
        check("y", got, ry, NULL, ny, 1), free(got), op_end();
        be->free(be, dimg), be->free(be, out), be->free(be, dy), be->free(be, dbias),
            be->free(be, ddb);
    }
    free(img), free(y), free(bias), free(db0), free(rp), free(ry), free(rdb);
}
