/* The bf16 ops of kernels/backend.h in the parity harness: to_bf16 and from_bf16 bit for bit
 * (ties to even, NaN, infinities, overflow, subnormals; random values against the nearest
 * bf16 found in double), and matmul_bf16 against a double reference made from the
 * bf16-rounded inputs (fp32-accumulation tolerance) and against the fp32 product of the
 * unrounded inputs (bf16 tolerance, 2^-7 of the sum of |products|). A backend without the
 * bf16 matmul (the CPU built without oneDNN) is skipped with that reason. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/bf16.h"
#include "tests/kernels/backend_harness.h"
#include "tests/kernels/backend_ref.h"

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The bf16 nearest to x found in double (ties to the even pattern), for finite x within
 * range; an independent reading of round-to-nearest-even. */
static uint16_t nearest_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    const uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1); /* toward zero, away */
    const double dl = fabs((double)x - bf16_to_float(lo)), dh = fabs((double)x - bf16_to_float(hi));
    if (dl < dh) return lo;
    if (dh < dl) return hi;
    return (lo & 1) ? hi : lo;
}

/* to_bf16 of n fp32 values on be, back on the host */
static uint16_t *convert(Backend *be, const float *x, size_t n) {
    float *dx = dputf(be, x, n);
    uint16_t *dy = be->alloc(be, n * sizeof(uint16_t)), *y = xmalloc(n * sizeof(uint16_t));
    be->to_bf16(be, dy, dx, n);
    assert_int_equal(be->sync(be), 0);
    be->to_host(be, y, dy, n * sizeof(uint16_t));
    be->free(be, dx), be->free(be, dy);
    return y;
}

void test_bf16_convert(void **state) {
    (void)state;
    /* {fp32 bits, bf16 bits}: written out by hand */
    static const uint32_t cases[][2] = {
        {0x3F800000u, 0x3F80u}, /* 1 */
        {0x3F808000u, 0x3F80u}, /* 1 + 2^-8: a tie, to the even 1 */
        {0x3F818000u, 0x3F82u}, /* a tie, to the even 0x3F82 (up) */
        {0x3F807FFFu, 0x3F80u}, /* just below a tie: down */
        {0x3F808001u, 0x3F81u}, /* just above a tie: up */
        {0xBF808001u, 0xBF81u}, /* the same, negative: away from zero */
        {0xBF818000u, 0xBF82u}, /* a negative tie, to even */
        {0x80000000u, 0x8000u}, /* -0 */
        {0x00008000u, 0x0000u}, /* a subnormal tie, to the even 0 */
        {0x00018000u, 0x0002u}, /* a subnormal tie, to the even 2 */
        {0x7F800000u, 0x7F80u}, /* +inf */
        {0xFF800000u, 0xFF80u}, /* -inf */
        {0x7F7FFFFFu, 0x7F80u}, /* FLT_MAX rounds past the largest bf16: +inf */
        {0x7F7F7FFFu, 0x7F7Fu}, /* the largest bf16 stays */
        {0x7FC00000u, 0x7FC0u}, /* quiet NaN */
        {0x7F800001u, 0x7FC0u}, /* a signalling NaN whose payload is in the dropped half: quiet */
        {0xFFA00000u, 0xFFE0u}, /* a negative NaN keeps its sign and payload, quieted */
        {0x7FFFFFFFu, 0x7FFFu}, /* a NaN with every bit set must not round into the sign */
    };
    const size_t nc = sizeof cases / sizeof cases[0], nr = 4099, n = nc + nr;
    float *x = rnd(n, 40, -3, 3);
    for (size_t i = 0; i < nc; i++) x[i] = from_bits(cases[i][0]);
    for (size_t i = nc; i < n; i += 7) x[i] *= 1e-30f; /* some tiny values */
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        if (!be->to_bf16 || !be->from_bf16) {
            printf("  %s: no bf16 conversions in this build, skipped\n", be->name);
            continue;
        }
        op_begin("to_bf16");
        uint16_t *y = convert(be, x, n);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            const uint16_t want = i < nc ? (uint16_t)cases[i][1] : nearest_bf16(x[i]);
            if (y[i] != want && bad++ < 5)
                fprintf(stderr, "  %s to_bf16[%zu]: 0x%08x gave 0x%04x, want 0x%04x\n", be->name,
                        i, (unsigned)(i < nc ? cases[i][0] : 0), y[i], want);
        }
        if (bad) fail_msg("%s: to_bf16 wrong on %zu of %zu values", be->name, bad, n);
        op_end();
        op_begin("from_bf16");
        uint16_t *dy = dput(be, y, n * sizeof(uint16_t));
        float *dz = dpoison(be, n);
        be->from_bf16(be, dz, dy, n);
        float *z = dget(be, dz, n);
        for (size_t i = 0; i < n; i++) {
            const float want = bf16_to_float(y[i]);
            if (memcmp(&z[i], &want, sizeof want) != 0)
                fail_msg("%s: from_bf16[%zu] of 0x%04x gave %.9g, want %.9g", be->name, i, y[i],
                         (double)z[i], (double)want);
        }
        op_end();
        be->free(be, dy), be->free(be, dz);
        free(y), free(z);
    }
    free(x);
}

void test_bf16_matmul(void **state) {
    (void)state;
    op_begin("matmul_bf16");
    /* the model's two uses (forward: trans_w, beta 0 or 1; backward: no trans, beta 0 or 1),
     * odd shapes, a K of one, an empty K, and a shape where oneDNN blocks */
    const struct {
        int M, N, K, tw;
        float alpha, beta;
    } cs[] = {{37, 29, 53, 1, 1, 0}, {37, 29, 53, 1, 1, 1},       {37, 29, 53, 0, 1, 0},
              {37, 29, 53, 0, 1, 1}, {64, 96, 288, 1, 0.5f, 0.25f}, {130, 70, 300, 0, -1, 0},
              {1, 64, 17, 1, 2, 0},  {9, 5, 1, 0, 1, 0},          {5, 3, 0, 1, 1, 0.5f}};
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        const int M = cs[ci].M, N = cs[ci].N, K = cs[ci].K, tw = cs[ci].tw;
        const size_t na = (size_t)M * K, nw = (size_t)K * N, nc = (size_t)M * N;
        float *a = rnd(na + 1, 41, -1, 1), *w = rnd(nw + 1, 42, -1, 1), *c0 = rnd(nc, 43, -1, 1);
        uint16_t *w16 = xmalloc((nw + 1) * sizeof(uint16_t));
        float *ar = xmalloc((na + 1) * sizeof(float)), *wr = xmalloc((nw + 1) * sizeof(float));
        for (size_t i = 0; i < nw; i++) w16[i] = bf16_from_float(w[i]), wr[i] = bf16_to_float(w16[i]);
        for (size_t i = 0; i < na; i++) ar[i] = bf16_to_float(bf16_from_float(a[i]));
        /* reference 1: the rounded inputs, exactly; reference 2: the fp32 inputs */
        double *ref = widen(c0, nc), *mag = dvec(nc), *ref32 = widen(c0, nc), *mag32 = dvec(nc);
        ref_matmul(ref, mag, ar, wr, M, N, K, 0, tw, cs[ci].alpha, cs[ci].beta);
        ref_matmul(ref32, mag32, a, w, M, N, K, 0, tw, cs[ci].alpha, cs[ci].beta);
        for (int bi = 0; bi < g_nbe; bi++) {
            backend_begin(bi);
            Backend *be = g_be[bi];
            if (!be->matmul_bf16) {
                if (ci == 0) printf("  %s: no matmul_bf16 (built without oneDNN), skipped\n", be->name);
                continue;
            }
            float *da = dputf(be, a, na + 1);
            uint16_t *dw = dput(be, w16, (nw + 1) * sizeof(uint16_t));
            float *dc = cs[ci].beta == 0 ? dpoison(be, nc) : dputf(be, c0, nc);
            be->matmul_bf16(be, dc, da, dw, M, N, K, tw, cs[ci].alpha, cs[ci].beta);
            float *got = dget(be, dc, nc);
            compare("expected", "c (rounded inputs)", got, ref, mag, nc, 16, 1);
            /* bf16 rounding: each input within 2^-8 relative (half an ulp of an 8-bit
             * significand), each product within 2^-7 (+ 2^-16), so |err| <= 2^-7 sum|a w| */
            compare("fp32", "c (vs fp32 inputs)", got, ref32, mag32, nc,
                    1.01 * ldexp(1.0, -7) / F32_EPS, 0);
            be->free(be, da), be->free(be, dw), be->free(be, dc), free(got);
        }
        free(a), free(w), free(c0), free(w16), free(ar), free(wr);
        free(ref), free(mag), free(ref32), free(mag32);
    }
    op_end();
}

/* c = a . op(w) through matmul_bf16_frozen with the slot *slot, on the host (fresh c) */
static float *frozen_product(Backend *be, const float *a, const uint16_t *dw, BackendPacked **slot,
                             int M, int N, int K, int tw) {
    float *da = dputf(be, a, (size_t)M * K), *dc = dpoison(be, (size_t)M * N);
    be->matmul_bf16_frozen(be, dc, da, dw, slot, M, N, K, tw, 1, 0);
    float *got = dget(be, dc, (size_t)M * N);
    be->free(be, da), be->free(be, dc);
    return got;
}

/* matmul_bf16_frozen (a frozen weight in the backend's own layout): within matmul_bf16's
 * tolerance of the rounded-input reference, on the first call (which packs), on later calls
 * with other activations, at another M (which may read w as stored), in both uses; the copy
 * is what later calls read: w rewritten without packed_free still gives the old product at
 * the packed M, and after packed_free (which empties the slot) the new one. */
void test_bf16_matmul_frozen(void **state) {
    (void)state;
    op_begin("matmul_bf16_frozen");
    const struct {
        int M, N, K, tw;
    } cs[] = {{64, 96, 288, 1}, {64, 288, 96, 0}, {37, 29, 53, 1}};
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        const int M = cs[ci].M, N = cs[ci].N, K = cs[ci].K, tw = cs[ci].tw, M2 = 3;
        const size_t nw = (size_t)K * N, nc = (size_t)M * N;
        uint16_t *w16[2];
        float *wr[2], *a[2];
        for (int v = 0; v < 2; v++) { /* two weights (the second: w rewritten), two inputs */
            float *w = rnd(nw, 150 + (uint64_t)v, -1, 1);
            a[v] = rnd((size_t)M * K, 152 + (uint64_t)v, -1, 1);
            w16[v] = xmalloc(nw * sizeof(uint16_t));
            wr[v] = xmalloc(nw * sizeof(float));
            for (size_t i = 0; i < nw; i++) w16[v][i] = bf16_from_float(w[i]), wr[v][i] = bf16_to_float(w16[v][i]);
            for (size_t i = 0; i < (size_t)M * K; i++) a[v][i] = bf16_to_float(bf16_from_float(a[v][i]));
            free(w);
        }
        double *ref[2][2], *mag[2][2]; /* [weight][input] */
        for (int v = 0; v < 2; v++)
            for (int x = 0; x < 2; x++) {
                ref[v][x] = dvec(nc), mag[v][x] = dvec(nc);
                ref_matmul(ref[v][x], mag[v][x], a[x], wr[v], M, N, K, 0, tw, 1, 0);
            }
        double *ref_m2 = dvec((size_t)M2 * N), *mag_m2 = dvec((size_t)M2 * N);
        ref_matmul(ref_m2, mag_m2, a[1], wr[0], M2, N, K, 0, tw, 1, 0);
        for (int bi = 0; bi < g_nbe; bi++) {
            backend_begin(bi);
            Backend *be = g_be[bi];
            if (!be->matmul_bf16_frozen) {
                if (ci == 0) printf("  %s: no matmul_bf16_frozen (reads w as stored), skipped\n", be->name);
                continue;
            }
            uint16_t *dw = dput(be, w16[0], nw * sizeof(uint16_t));
            BackendPacked *slot = NULL;
            float *got = frozen_product(be, a[0], dw, &slot, M, N, K, tw);
            compare("expected", "first call", got, ref[0][0], mag[0][0], nc, 16, 1);
            free(got);
            got = frozen_product(be, a[1], dw, &slot, M, N, K, tw);
            compare("expected", "a later call", got, ref[0][1], mag[0][1], nc, 16, 1);
            free(got);
            got = frozen_product(be, a[1], dw, &slot, M2, N, K, tw);
            compare("expected", "another M", got, ref_m2, mag_m2, (size_t)M2 * N, 16, 1);
            free(got);
            be->to_device(be, dw, w16[1], nw * sizeof(uint16_t)); /* w rewritten ... */
            if (slot) { /* ... the packed copy still serves the packed M */
                got = frozen_product(be, a[0], dw, &slot, M, N, K, tw);
                compare("expected", "the copy, w rewritten", got, ref[0][0], mag[0][0], nc, 16, 1);
                free(got);
                be->packed_free(be, &slot);
                assert_null(slot);
            }
            got = frozen_product(be, a[0], dw, &slot, M, N, K, tw); /* ... re-packed: the new w */
            compare("expected", "after packed_free", got, ref[1][0], mag[1][0], nc, 16, 1);
            free(got);
            if (slot) be->packed_free(be, &slot);
            be->free(be, dw);
        }
        for (int v = 0; v < 2; v++) {
            free(w16[v]), free(wr[v]), free(a[v]);
            for (int x = 0; x < 2; x++) free(ref[v][x]), free(mag[v][x]);
        }
        free(ref_m2), free(mag_m2);
    }
    op_end();
}

/* n bf16 values of device array d, back on the host */
static uint16_t *get16(Backend *be, const uint16_t *d, size_t n) {
    uint16_t *h = xmalloc(n * sizeof *h);
    assert_int_equal(be->sync(be), 0);
    be->to_host(be, h, d, n * sizeof *h);
    return h;
}

static void same_bits16(const char *what, const char *be_name, const uint16_t *got,
                        const uint16_t *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("%s: %s[%zu] is 0x%04x, want 0x%04x", be_name, what, i, got[i], want[i]);
}

/* The head of a frozen bf16 classifier: cross_entropy_backward_bf16 writes the bits of
 * to_bf16(cross_entropy_backward) (rows longer than the CPU's 2048-logit chunks, the target in
 * a later chunk, ignored and zero-weight rows), and they lie within bf16 rounding of the double
 * reference; matmul_bf16_rounded on to_bf16(a) gives matmul_bf16's bits. */
void test_bf16_head(void **state) {
    (void)state;
    const int N = 7, V = 4099;
    const size_t n = (size_t)N * V;
    float *logits = rnd(n, 140, -6, 6), *dloss = rnd(N, 141, 0.1, 1);
    int32_t *tgt = ids(N, 142, V);
    tgt[1] = -1, dloss[3] = 0;                        /* an ignored row; a zero-weight row */
    tgt[0] = 2047, tgt[4] = 2048, tgt[5] = 4098, tgt[6] = 0; /* at the CPU chunks' edges */
    double *rl = dvec(N), *rlse = dvec(N), *rd = dvec(n);
    ref_cross_entropy_forward(rl, rlse, logits, tgt, N, V);
    float *lse = narrow(rlse, N);
    ref_cross_entropy_backward(rd, logits, lse, tgt, dloss, N, V);
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        if (!be->cross_entropy_backward_bf16 || !be->matmul_bf16_rounded) {
            printf("  %s: no bf16 head ops (built without oneDNN), skipped\n", be->name);
            continue;
        }
        op_begin("cross_entropy_backward_bf16");
        float *dlog = dputf(be, logits, n), *ddl = dputf(be, dloss, N), *dlse = dputf(be, lse, N);
        int32_t *dt = dput(be, tgt, N * sizeof(int32_t));
        float *od = dpoison(be, n);
        uint16_t *want16 = be->alloc(be, n * sizeof(uint16_t)), *got16 = be->alloc(be, n * sizeof(uint16_t));
        be->cross_entropy_backward(be, od, dlog, dlse, dt, ddl, N, V);
        be->to_bf16(be, want16, od, n);
        be->cross_entropy_backward_bf16(be, got16, dlog, dlse, dt, ddl, N, V);
        uint16_t *want = get16(be, want16, n), *got = get16(be, got16, n);
        same_bits16("dlogits16", be->name, got, want, n);
        /* the one-pass op: the bits of the backend's own forward, then backward, then to_bf16 */
        {
            float *ol = dpoison(be, N), *olse = dpoison(be, N), *od2 = dpoison(be, n);
            float *fl = dpoison(be, N), *flse = dpoison(be, N);
            uint16_t *w16d = be->alloc(be, n * sizeof(uint16_t));
            be->cross_entropy_forward(be, ol, olse, dlog, dt, N, V);
            be->cross_entropy_backward(be, od2, dlog, olse, dt, ddl, N, V);
            be->to_bf16(be, w16d, od2, n);
            be->cross_entropy_forward_backward(be, fl, flse, NULL, got16, dlog, dt, ddl, N, V);
            uint16_t *fused = get16(be, got16, n), *want2 = get16(be, w16d, n);
            same_bits16("dlogits16 (forward_backward)", be->name, fused, want2, n);
            float *a1 = dget(be, ol, N), *a2 = dget(be, fl, N), *b1 = dget(be, olse, N),
                  *b2 = dget(be, flse, N);
            if (memcmp(a1, a2, N * sizeof *a1) || memcmp(b1, b2, N * sizeof *b1))
                fail_msg("%s: forward_backward's losses or lse differ from the forward's", be->name);
            free(fused), free(want2), free(a1), free(a2), free(b1), free(b2);
            be->free(be, ol), be->free(be, olse), be->free(be, od2), be->free(be, fl);
            be->free(be, flse), be->free(be, w16d);
        }
        for (size_t i = 0; i < n; i++) { /* independent: the double reference, rounded */
            const double g = bf16_to_float(got[i]), tol = ldexp(fabs(rd[i]), -8) + 16 * F32_EPS * fabs(rd[i]) + 1e-30;
            if (fabs(g - rd[i]) > tol)
                fail_msg("%s: dlogits16[%zu] = %.9g, reference %.9g (tolerance %.3g)", be->name, i,
                         g, rd[i], tol);
        }
        op_end();

        /* dx = dlogits W (the head's backward shape) and a forward-shaped product */
        op_begin("matmul_bf16_rounded");
        const int C = 37;
        float *w = rnd((size_t)V * C, 143, -1, 1), *c0 = rnd((size_t)N * C, 144, -1, 1);
        uint16_t *w16 = xmalloc((size_t)V * C * sizeof *w16);
        for (size_t i = 0; i < (size_t)V * C; i++) w16[i] = bf16_from_float(w[i]);
        uint16_t *dw = dput(be, w16, (size_t)V * C * sizeof *w16);
        for (int beta = 0; beta <= 1; beta++) {
            float *c1 = dputf(be, c0, (size_t)N * C), *c2 = dputf(be, c0, (size_t)N * C);
            be->matmul_bf16(be, c1, od, dw, N, C, V, 0, 1, (Real)beta);
            be->matmul_bf16_rounded(be, c2, want16, dw, N, C, V, 0, 1, (Real)beta);
            float *h1 = dget(be, c1, (size_t)N * C), *h2 = dget(be, c2, (size_t)N * C);
            if (memcmp(h1, h2, (size_t)N * C * sizeof *h1) != 0)
                for (size_t i = 0; i < (size_t)N * C; i++)
                    if (memcmp(&h1[i], &h2[i], sizeof *h1) != 0)
                        fail_msg("%s: beta %d: c[%zu] is %.9g, matmul_bf16 gave %.9g", be->name,
                                 beta, i, (double)h2[i], (double)h1[i]);
            be->free(be, c1), be->free(be, c2), free(h1), free(h2);
        }
        /* forward shape: y[N, C'] = dlogits16[N, V] . W'^T with W' [C', V] */
        float *y1 = dpoison(be, (size_t)N * 5), *y2 = dpoison(be, (size_t)N * 5);
        be->matmul_bf16(be, y1, od, dw, N, 5, V, 1, 0.5f, 0);
        be->matmul_bf16_rounded(be, y2, want16, dw, N, 5, V, 1, 0.5f, 0);
        float *h1 = dget(be, y1, (size_t)N * 5), *h2 = dget(be, y2, (size_t)N * 5);
        for (size_t i = 0; i < (size_t)N * 5; i++)
            if (memcmp(&h1[i], &h2[i], sizeof *h1) != 0)
                fail_msg("%s: trans_w: y[%zu] is %.9g, matmul_bf16 gave %.9g", be->name, i,
                         (double)h2[i], (double)h1[i]);
        op_end();
        be->free(be, y1), be->free(be, y2), free(h1), free(h2);
        be->free(be, dw), free(w), free(c0), free(w16);
        be->free(be, dlog), be->free(be, ddl), be->free(be, dlse), be->free(be, dt);
        be->free(be, od), be->free(be, want16), be->free(be, got16);
        free(want), free(got);
    }
    free(logits), free(dloss), free(tgt), free(rl), free(rlse), free(rd), free(lse);
}

/* ---- tensor-core attention (attention_forward_bf16 / attention_backward_bf16) ----
 * Held to the double reference of the unrounded inputs within bf16's tolerance: 2^-6 of each
 * element's first-order error measure, a sum of |terms| in which each probability P counts
 * with the weight 1 + scale sum_d |q_d k_d| (rounding q and k moves a score by up to 2^-8 of
 * that sum, and P relatively by as much) and dP with sum_d |dO_d v_d| in place of |dP|:
 * out = sum_s P v -> sum_s P' |v|; dv -> sum_t P' |dO|; dq = scale sum_s P (dP - D) k ->
 * scale sum_s P' (sum|dO v| + |D|) |k|, and dk with |q|. Attention outputs are averages that
 * cancel, so a tolerance relative to the result itself would be meaningless. A wrong mask, a
 * missed rescale or a tile read twice moves an element by its whole measure. The log-sum-exp is held the same way; a second forward must give the same bits
 * (no atomics). A backend without the ops (the CPU) is skipped with that reason. */
/* The sums of |terms| of the attention's outputs (see above), from the reference probabilities
 * p[B,NH,T,T] and the inputs: mo[B,T,NH,HD], mq likewise, mk and mv [B,T,NKV,HD]. */
static void attention_magnitudes(double *mo, double *mq, double *mk, double *mv, const double *p,
                                 const float *q, const float *k, const float *v, const float *g,
                                 int B, int T, int NH, int NKV, int HD) {
    const double scale = 1.0 / sqrt((double)HD);
    double *dP = dvec(2 * (size_t)T); /* per key: sum_d |dO_d v_d|, P' */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const int kh = h / (NH / NKV);
            for (int t = 0; t < T; t++) {
                const double *pr = p + (((size_t)b * NH + h) * T + t) * T;
                const size_t qi = (((size_t)b * T + t) * NH + h) * HD;
                double D = 0;
                for (int s = 0; s < T; s++) {
                    const size_t ki = (((size_t)b * T + s) * NKV + kh) * HD;
                    double dp = 0, gv = 0, qk = 0;
                    for (int d = 0; d < HD; d++) {
                        dp += (double)g[qi + d] * v[ki + d];
                        gv += fabs((double)g[qi + d] * v[ki + d]);
                        qk += fabs((double)q[qi + d] * k[ki + d]);
                    }
                    D += pr[s] * dp;
                    dP[2 * s] = gv, dP[2 * s + 1] = pr[s] * (1 + scale * qk); /* P' */
                }
                for (int s = 0; s < T; s++) {
                    const size_t ki = (((size_t)b * T + s) * NKV + kh) * HD;
                    const double pw = dP[2 * s + 1], w = pw * (dP[2 * s] + fabs(D)) * scale;
                    for (int d = 0; d < HD; d++) {
                        mo[qi + d] += pw * fabs(v[ki + d]);
                        mq[qi + d] += w * fabs(k[ki + d]);
                        mk[ki + d] += w * fabs(q[qi + d]);
                        mv[ki + d] += pw * fabs(g[qi + d]);
                    }
                }
            }
        }
    free(dP);
}

static void bf16_attention_case(int B, int T, int NH, int NKV, int HD, int causal) {
    const size_t nq = (size_t)B * T * NH * HD, nkv = (size_t)B * T * NKV * HD;
    const size_t natt = (size_t)B * NH * T * T, nlse = (size_t)B * NH * T;
    const double tol = 0x1p-6 / F32_EPS;
    float *q = rnd(nq, 70, -1.5, 1.5), *k = rnd(nkv, 71, -1.5, 1.5), *v = rnd(nkv, 72, -1, 1);
    float *g = rnd(nq, 73, -1, 1);
    double *ro = dvec(nq), *rp = dvec(natt), *rl = dvec(nlse), *rdq = dvec(nq), *rdk = dvec(nkv);
    double *rdv = dvec(nkv);
    ref_attention_forward(ro, rp, rl, q, k, v, B, T, NH, NKV, HD, causal);
    ref_attention_backward(rdq, rdk, rdv, g, q, k, v, B, T, NH, NKV, HD, causal);
    double *mo = dvec(nq), *mq = dvec(nq), *mk = dvec(nkv), *mv = dvec(nkv);
    attention_magnitudes(mo, mq, mk, mv, rp, q, k, v, g, B, T, NH, NKV, HD);
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        if (!be->attention_forward_bf16 || !be->attention_backward_bf16) {
            if (HD == 16) printf("  %s: no tensor-core attention (uses the fp32 pair), skipped\n",
                                 be->name);
            continue;
        }
        float *dq = dputf(be, q, nq), *dk = dputf(be, k, nkv), *dv = dputf(be, v, nkv);
        float *dg = dputf(be, g, nq), *out = dpoison(be, nq), *out2 = dpoison(be, nq);
        float *att = dpoison(be, natt);
        op_begin("attention_forward_bf16");
        be->attention_forward_bf16(be, out, att, dq, dk, dv, B, T, NH, NKV, HD, causal);
        be->attention_forward_bf16(be, out2, att, dq, dk, dv, B, T, NH, NKV, HD, causal);
        float *got = dget(be, out, nq), *got2 = dget(be, out2, nq), *lse = dget(be, att, nlse);
        compare("expected", "out", got, ro, mo, nq, tol, 1);
        compare("expected", "att (log-sum-exp)", lse, rl, NULL, nlse, tol, 1);
        if (memcmp(got, got2, nq * sizeof(float)) != 0)
            fail_msg("%s attention_forward_bf16: two runs on the same inputs differ", be->name);
        op_end();
        op_begin("attention_backward_bf16");
        float *gq = dpoison(be, nq), *gk = dpoison(be, nkv), *gv = dpoison(be, nkv);
        float *datt = dpoison(be, natt);
        be->attention_backward_bf16(be, gq, gk, gv, datt, dg, out, dq, dk, dv, att, B, T, NH, NKV,
                                    HD, causal);
        float *hq = dget(be, gq, nq), *hk = dget(be, gk, nkv), *hv = dget(be, gv, nkv);
        compare("expected", "dq", hq, rdq, mq, nq, tol, 1);
        compare("expected", "dk", hk, rdk, mk, nkv, tol, 1);
        compare("expected", "dv", hv, rdv, mv, nkv, tol, 1);
        op_end();
        free(got), free(got2), free(lse), free(hq), free(hk), free(hv);
        be->free(be, dq), be->free(be, dk), be->free(be, dv), be->free(be, dg), be->free(be, out);
        be->free(be, out2), be->free(be, att), be->free(be, gq), be->free(be, gk);
        be->free(be, gv), be->free(be, datt);
    }
    free(q), free(k), free(v), free(g), free(ro), free(rp), free(rl), free(rdq), free(rdk),
        free(rdv), free(mo), free(mq), free(mk), free(mv);
}

/* Shapes: T of one token, below, across and at tile edges (64), grouped-query heads, every
 * padded head width (16 -> 32, 48 -> 64, 80 -> 128, 128), and a head above 128 (the fp32
 * kernels behind the op). */
void test_bf16_attention(void **state) {
    (void)state;
    bf16_attention_case(2, 37, 4, 2, 16, 1);
    bf16_attention_case(1, 130, 3, 1, 48, 1);
    bf16_attention_case(1, 64, 2, 2, 128, 1);
    bf16_attention_case(1, 20, 1, 1, 200, 1);
    bf16_attention_case(2, 37, 4, 4, 16, 0);
    bf16_attention_case(1, 100, 3, 1, 64, 0);
    bf16_attention_case(2, 1, 2, 1, 32, 1);   /* one token */
    bf16_attention_case(1, 65, 4, 2, 80, 1);  /* a head padded to 128, one row past a tile */
    bf16_attention_case(1, 129, 2, 2, 64, 0); /* ViT-like: 3 tiles, the last one row */
}
