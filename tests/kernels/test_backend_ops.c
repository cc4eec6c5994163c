/* The backend parity harness (ggml's test-backend-ops, for lorasc): every op of
 * kernels/backend.h on seeded random inputs, on every backend present (the CPU float backend
 * always; CUDA when this lorasc is built with it and a device answers), each held to a
 * double-precision reference written from the op's definition (tests/kernels/backend_ref.c). A second
 * backend is also held to the CPU's float result, and the Philox noise to the same bits on
 * every backend. Written outputs are poisoned with NaN first, so an element left unwritten
 * fails. Tolerance: a per-op factor times the storage dtype's epsilon (f32 is the only storage
 * the interface has) times the error's natural scale. Without a GPU the CUDA half is skipped
 * with the reason; LORASC_REQUIRE_CUDA=1 (tests/gpu/check.sh) turns that skip into a failure.
 * LORASC_TEST_FILTER=test_attention runs only the tests whose name matches (cmocka's filter). */
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
#include "kernels/philox_block.h"
#include "tests/kernels/backend_harness.h"
#include "tests/kernels/backend_ref.h"

/* ---- memory and errors ---- */

static void test_memory(void **state) {
    (void)state;
    op_begin("memory");
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        const size_t sizes[] = {0, 1, 100, 4097};
        for (size_t s = 0; s < 4; s++) {
            unsigned char *d = be->alloc(be, sizes[s]), *h = xmalloc(sizes[s] + 1);
            assert_non_null(d);
            if (sizes[s]) be->to_host(be, h, d, sizes[s]);
            for (size_t j = 0; j < sizes[s]; j++)
                if (h[j] != 0)
                    fail_msg("%s: alloc(%zu) byte %zu is %d, not 0", be->name, sizes[s], j, h[j]);
            be->free(be, d);
            free(h);
        }
        const size_t n = 1031;
        float *x = rnd(n, 1, -1, 1);
        float *d1 = dputf(be, x, n), *d2 = be->alloc(be, n * sizeof(float));
        be->copy(be, d2, d1, n * sizeof(float));
        float *back = dget(be, d2, n);
        if (memcmp(back, x, n * sizeof(float)) != 0)
            fail_msg("%s: to_device/copy/to_host changed the data", be->name);
        be->zero(be, d2 + 7, 100 * sizeof(float));
        free(back);
        back = dget(be, d2, n);
        for (size_t i = 0; i < n; i++)
            if (back[i] != (i >= 7 && i < 107 ? 0.0f : x[i]))
                fail_msg("%s: zero() wrote outside [7, 107) or missed %zu", be->name, i);
        char desc[512];
        be->describe(be, desc, sizeof desc);
        printf("  %s: %s\n", be->name, desc);
        if (!strstr(desc, "\"backend\":\"")) fail_msg("%s: describe() gave %s", be->name, desc);
        assert_int_equal(be->sync(be), 0);
        assert_null(be->error(be));
        be->free(be, d1);
        be->free(be, d2);
        free(x);
        free(back);
    }
    op_end();
}

/* The emulation's count of stream waits (kernels/cuda/emu); none outside it, as in
 * tests/core/model/test_device_step.c. */
#ifdef LORASC_CUDA_EMU
long cuda_emu_waits(void);
#else
static long cuda_emu_waits(void) { return 0; }
#endif

/* The byte at offset j of upload u: a pattern that differs between uploads. */
static unsigned char upload_byte(size_t j, int u) { return (unsigned char)(j * 131 + u * 7 + 1); }

/* to_device's contract: the host buffer may be rewritten as soon as the call returns, at every
 * size (CUDA: a staging slot up to 1 MiB, the grown double buffer above it, a plain waited
 * copy above 256 MiB). Each upload's source is overwritten at once, then all are read back.
 * In the emulation the uploads up to 256 MiB must also leave the stream unwaited. */
static void test_uploads(void **state) {
    (void)state;
    op_begin("uploads");
    enum { N_UPLOADS = 6 };
    const size_t sizes[N_UPLOADS] = {1000, 3 << 20, 5 << 20, 3 << 20, 2 << 20, (size_t)257 << 20};
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        unsigned char *dev[N_UPLOADS], *host = xmalloc(sizes[N_UPLOADS - 1]);
        for (int u = 0; u < N_UPLOADS; u++) {
            dev[u] = be->alloc(be, sizes[u]);
            assert_non_null(dev[u]);
            assert_int_equal(be->sync(be), 0);
            for (size_t j = 0; j < sizes[u]; j++) host[j] = upload_byte(j, u);
            const long waits_before = cuda_emu_waits();
            be->to_device(be, dev[u], host, sizes[u]);
            const long waits = cuda_emu_waits() - waits_before;
            if (!is_cpu(be) && sizes[u] <= ((size_t)256 << 20) && waits != 0)
                fail_msg("%s: an upload of %zu bytes waited for the stream %ld time(s)", be->name,
                         sizes[u], waits);
            memset(host, 0xee, sizes[u]); /* the caller reuses its buffer at once */
        }
        for (int u = 0; u < N_UPLOADS; u++) {
            assert_int_equal(be->sync(be), 0);
            be->to_host(be, host, dev[u], sizes[u]);
            for (size_t j = 0; j < sizes[u]; j++)
                if (host[j] != upload_byte(j, u))
                    fail_msg("%s: upload %d (%zu bytes) arrived changed at byte %zu", be->name, u,
                             sizes[u], j);
            be->free(be, dev[u]);
        }
        free(host);
    }
    op_end();
}

/* CUDA reports a failure as one sentence naming op, file and line, and stays failed; the
 * CPU's ops cannot fail. Each case takes a fresh backend: the error is sticky. */
static void test_errors(void **state) {
    (void)state;
    for (int bi = 0; bi < g_nbe; bi++) {
        if (is_cpu(g_be[bi])) {
            assert_null(g_be[bi]->error(g_be[bi]));
            continue;
        }
        char err[256];
        Backend *be = backend_create(g_be[bi]->name, 0, err, sizeof err);
        assert_non_null(be);
        float *x = be->alloc(be, 4096 * sizeof(float));
        be->attention_forward(be, x, x, x, x, x, 1, 2, 1, 1, 300); /* head size above 256 */
        assert_int_equal(be->sync(be), -1);
        const char *msg = be->error(be);
        printf("  %s shape error: %s\n", be->name, msg ? msg : "(none)");
        assert_non_null(msg);
        assert_non_null(strstr(msg, "attention_forward failed at kernels/cuda/attention.cu:"));
        assert_non_null(strstr(msg, "head size 300"));
        be->free(be, x);
        backend_destroy(be);

        be = backend_create(g_be[bi]->name, 0, err, sizeof err);
        assert_non_null(be);
        const int32_t tgt[2] = {1, 9};
        float *logits = dpoison(be, 2 * 5), *loss = be->alloc(be, 8), *lse = be->alloc(be, 8);
        int32_t *dt = dput(be, tgt, sizeof tgt);
        float *h = rnd(10, 2, -1, 1);
        be->to_device(be, logits, h, 10 * sizeof(float));
        be->cross_entropy_forward(be, loss, lse, logits, dt, 2, 5); /* target 9 >= V = 5 */
        assert_int_equal(be->sync(be), -1);
        msg = be->error(be);
        printf("  %s input error: %s\n", be->name, msg ? msg : "(none)");
        assert_non_null(msg);
        assert_non_null(strstr(msg, "cross_entropy_forward"));
        assert_non_null(strstr(msg, "target 9 of row 1"));
        be->free(be, logits);
        be->free(be, loss);
        be->free(be, lse);
        be->free(be, dt);
        backend_destroy(be);
        free(h);
    }
}

/* ---- ops ---- */

/* ---- dense linear algebra ---- */

static void test_matmul(void **state) {
    (void)state;
    op_begin("matmul");
    /* off = 1 shifts every operand by one float: 4-byte alignment, which cuBLASLt must be told */
    const struct {
        int M, N, K, ta, tb;
        float alpha, beta;
        int off;
    } cs[] = {{37, 29, 53, 0, 0, 0.7f, 0.3f, 0}, {37, 29, 53, 1, 0, 1, 0, 1},
              {37, 29, 53, 0, 1, -0.5f, 1, 1},   {37, 29, 53, 1, 1, 1, 0.5f, 0},
              {130, 70, 300, 0, 1, 1, 0, 0},     {1, 64, 17, 0, 1, 2, 0, 1},
              {5, 3, 0, 0, 0, 1, 0.5f, 0},       {5, 3, 0, 0, 0, 1, 0, 0}};
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        const int M = cs[ci].M, N = cs[ci].N, K = cs[ci].K, off = cs[ci].off;
        const size_t na = (size_t)M * K + 1, nb = (size_t)K * N + 1, nc = (size_t)M * N;
        float *a = rnd(na, 10, -1, 1), *b = rnd(nb, 11, -1, 1), *c0 = rnd(nc + 1, 12, -1, 1);
        double *ref = widen(c0 + off, nc), *mag = dvec(nc);
        ref_matmul(ref, mag, a + off, b + off, M, N, K, cs[ci].ta, cs[ci].tb, cs[ci].alpha,
                   cs[ci].beta);
        for (int bi = 0; bi < g_nbe; bi++) {
            backend_begin(bi);
            Backend *be = g_be[bi];
            float *da = dputf(be, a, na), *db = dputf(be, b, nb);
            float *dc = cs[ci].beta == 0 ? dpoison(be, nc + 1) : dputf(be, c0, nc + 1);
            be->matmul(be, dc + off, da + off, db + off, M, N, K, cs[ci].ta, cs[ci].tb,
                       cs[ci].alpha, cs[ci].beta);
            float *got = dget(be, dc + off, nc);
            check("c", got, ref, mag, nc, 16);
            be->free(be, da), be->free(be, db), be->free(be, dc), free(got);
        }
        free(a), free(b), free(c0), free(ref), free(mag);
    }
    op_end();
}

/* ---- embedding ---- */

static void test_embedding(void **state) {
    (void)state;
    const int V = 50, C = 37, N = 23;
    int32_t *tok = ids(N, 20, V);
    tok[5] = tok[11] = tok[3]; /* repeated tokens add into one row */
    float *table = rnd((size_t)V * C, 21, -1, 1), *dout = rnd((size_t)N * C, 22, -1, 1);
    float *dt0 = rnd((size_t)V * C, 23, -1, 1);
    double *rout = dvec((size_t)N * C), *rdt = widen(dt0, (size_t)V * C);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            rout[(size_t)n * C + c] = table[(size_t)tok[n] * C + c];
            rdt[(size_t)tok[n] * C + c] += dout[(size_t)n * C + c];
        }
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        int32_t *dtok = dput(be, tok, N * sizeof(int32_t));
        float *dtab = dputf(be, table, (size_t)V * C), *out = dpoison(be, (size_t)N * C);
        op_begin("embedding_forward");
        be->embedding_forward(be, out, dtok, dtab, N, C);
        float *got = dget(be, out, (size_t)N * C);
        check("out", got, rout, NULL, (size_t)N * C, 0); /* a copy: exact */
        op_end();
        free(got);
        op_begin("embedding_backward");
        float *ddt = dputf(be, dt0, (size_t)V * C), *ddo = dputf(be, dout, (size_t)N * C);
        be->embedding_backward(be, ddt, ddo, dtok, N, C);
        got = dget(be, ddt, (size_t)V * C);
        check("dtable", got, rdt, NULL, (size_t)V * C, 4);
        op_end();
        free(got);
        be->free(be, dtok), be->free(be, dtab), be->free(be, out), be->free(be, ddt),
            be->free(be, ddo);
    }
    free(tok), free(table), free(dout), free(dt0), free(rout), free(rdt);
}

/* ---- RMSNorm and LayerNorm ---- */

static void test_norms(void **state) {
    (void)state;
    const int N = 19, C = 77;
    const size_t n = (size_t)N * C;
    const float eps = 1e-5f;
    float *x = rnd(n, 30, -2, 2), *w = rnd(C, 31, 0.5, 1.5), *bias = rnd(C, 32, -1, 1);
    float *g = rnd(n, 33, -1, 1), *dx0 = rnd(n, 34, -1, 1), *dw0 = rnd(C, 35, -1, 1);
    float *db0 = rnd(C, 36, -1, 1);
    double *ro = dvec(n), *rm = dvec(N), *rr = dvec(N), *rdx = widen(dx0, n);
    double *rdw = widen(dw0, C), *rdb = widen(db0, C), *rdx_ln = widen(dx0, n);
    double *rdw_ln = widen(dw0, C), *ro_ln = dvec(n);
    ref_rmsnorm_forward(ro, rr, x, w, N, C, eps);
    float *rstd = narrow(rr, N); /* the backward's inputs: the same on every backend */
    ref_rmsnorm_backward(rdx, rdw, g, x, w, rstd, N, C);
    ref_layernorm_forward(ro_ln, rm, rr, x, w, bias, N, C, eps);
    float *mean_ln = narrow(rm, N), *rstd_ln = narrow(rr, N);
    ref_layernorm_backward(rdx_ln, rdw_ln, rdb, g, x, w, mean_ln, rstd_ln, N, C);
    double *rrstd = widen(rstd, N), *rmean_ln = widen(mean_ln, N), *rrstd_ln = widen(rstd_ln, N);
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        float *dx = dputf(be, x, n), *dw = dputf(be, w, C), *dbias = dputf(be, bias, C);
        float *dg = dputf(be, g, n), *out = dpoison(be, n), *r = dpoison(be, N),
              *m = dpoison(be, N);
        op_begin("rmsnorm_forward");
        be->rmsnorm_forward(be, out, r, dx, dw, N, C, eps);
        float *got = dget(be, out, n), *gotr = dget(be, r, N);
        check("out", got, ro, NULL, n, 8), check("rstd", gotr, rrstd, NULL, N, 8);
        free(got), free(gotr);
        op_end();
        op_begin("rmsnorm_backward");
        for (int with_dw = 1; with_dw >= 0; with_dw--) {
            float *ddx = dputf(be, dx0, n), *ddw = with_dw ? dputf(be, dw0, C) : NULL;
            float *dr = dputf(be, rstd, N);
            be->rmsnorm_backward(be, ddx, ddw, dg, dx, dw, dr, N, C);
            got = dget(be, ddx, n);
            check("dx", got, rdx, NULL, n, 32);
            free(got);
            if (with_dw) {
                got = dget(be, ddw, C);
                check("dweight", got, rdw, NULL, C, 16);
                free(got);
            }
            be->free(be, ddx), be->free(be, ddw), be->free(be, dr);
        }
        op_end();
        op_begin("layernorm_forward");
        be->layernorm_forward(be, out, m, r, dx, dw, dbias, N, C, eps);
        got = dget(be, out, n), gotr = dget(be, r, N);
        float *gotm = dget(be, m, N);
        check("out", got, ro_ln, NULL, n, 16), check("rstd", gotr, rrstd_ln, NULL, N, 16);
        check("mean", gotm, rmean_ln, NULL, N, 16);
        free(got), free(gotr), free(gotm);
        op_end();
        op_begin("layernorm_backward");
        for (int with_wb = 1; with_wb >= 0; with_wb--) {
            float *ddx = dputf(be, dx0, n), *ddw = with_wb ? dputf(be, dw0, C) : NULL;
            float *ddb = with_wb ? dputf(be, db0, C) : NULL;
            float *dm = dputf(be, mean_ln, N), *dr = dputf(be, rstd_ln, N);
            be->layernorm_backward(be, ddx, ddw, ddb, dg, dx, dw, dm, dr, N, C);
            got = dget(be, ddx, n);
            check("dx", got, rdx_ln, NULL, n, 32);
            free(got);
            if (with_wb) {
                got = dget(be, ddw, C), gotm = dget(be, ddb, C);
                check("dweight", got, rdw_ln, NULL, C, 16), check("dbias", gotm, rdb, NULL, C, 16);
                free(got), free(gotm);
            }
            be->free(be, ddx), be->free(be, ddw), be->free(be, ddb), be->free(be, dm),
                be->free(be, dr);
        }
        op_end();
        be->free(be, dx), be->free(be, dw), be->free(be, dbias), be->free(be, dg);
        be->free(be, out), be->free(be, r), be->free(be, m);
    }
    free(x), free(w), free(bias), free(g), free(dx0), free(dw0), free(db0), free(ro), free(rm);
    free(rr), free(rdx), free(rdw), free(rdb), free(rdx_ln), free(rdw_ln), free(ro_ln), free(rstd);
    free(mean_ln), free(rstd_ln), free(rrstd), free(rmean_ln), free(rrstd_ln);
}

/* ---- rotary embedding ---- */

static void test_rope(void **state) {
    (void)state;
    const int B = 2, T = 7, NH = 3, HD = 8, pos0 = 2, TM = pos0 + T + 3, half = HD / 2;
    const size_t n = (size_t)B * T * NH * HD;
    float *cs = xmalloc((size_t)TM * half * sizeof(float)),
          *sn = xmalloc((size_t)TM * half * sizeof(float));
    for (int p = 0; p < TM; p++)
        for (int i = 0; i < half; i++) {
            const double ang = p * pow(10000.0, -2.0 * i / HD);
            cs[p * half + i] = (float)cos(ang);
            sn[p * half + i] = (float)sin(ang);
        }
    float *x = rnd(n, 40, -1, 1);
    double *mag = dvec(n); /* a rotated pair's error scales with the pair, |x0| + |x1| */
    for (int style = 0; style < 2; style++)
        for (int dir = 0; dir < 2; dir++) {
            op_begin(dir ? "rope_backward" : "rope_forward");
            double *ref = widen(x, n);
            ref_rope(ref, cs, sn, B, T, NH, HD, pos0, style == ROPE_INTERLEAVED, dir ? -1 : 1);
            for (size_t h = 0; h < n / HD; h++)
                for (int i = 0; i < half; i++) {
                    const size_t i0 = h * HD + (style == ROPE_INTERLEAVED ? 2 * i : i);
                    const size_t i1 = h * HD + (style == ROPE_INTERLEAVED ? 2 * i + 1 : i + half);
                    mag[i0] = mag[i1] = fabs(x[i0]) + fabs(x[i1]);
                }
            for (int bi = 0; bi < g_nbe; bi++) {
                backend_begin(bi);
                Backend *be = g_be[bi];
                float *dx = dputf(be, x, n), *dc = dputf(be, cs, (size_t)TM * half);
                float *ds = dputf(be, sn, (size_t)TM * half);
                (dir ? be->rope_backward : be->rope_forward)(be, dx, dc, ds, B, T, NH, HD, pos0,
                                                             (RopeStyle)style);
                float *got = dget(be, dx, n);
                check(style == ROPE_INTERLEAVED ? "x interleaved" : "x half", got, ref, mag, n, 4);
                be->free(be, dx), be->free(be, dc), be->free(be, ds), free(got);
            }
            free(ref);
            op_end();
        }
    free(cs), free(sn), free(x), free(mag);
}

/* ---- attention ---- */

typedef struct AttCase {
    int B, T, NH, NKV, HD;
} AttCase;

/* Forward and backward of one shape on every backend. The forward's att is backend-private
 * (kernels/backend.h): the CPU's probabilities or CUDA's log-sum-exp, each checked against its
 * own reference; the backward reads the att its own backend's forward wrote. */
static void attention_case(AttCase c, int causal) {
    const size_t nq = (size_t)c.B * c.T * c.NH * c.HD, nkv = (size_t)c.B * c.T * c.NKV * c.HD;
    const size_t natt = (size_t)c.B * c.NH * c.T * c.T, nlse = (size_t)c.B * c.NH * c.T;
    float *q = rnd(nq, 50, -1.5, 1.5), *k = rnd(nkv, 51, -1.5, 1.5), *v = rnd(nkv, 52, -1, 1);
    float *g = rnd(nq, 53, -1, 1);
    double *ro = dvec(nq), *rp = dvec(natt), *rl = dvec(nlse), *rdq = dvec(nq), *rdk = dvec(nkv);
    double *rdv = dvec(nkv);
    ref_attention_forward(ro, rp, rl, q, k, v, c.B, c.T, c.NH, c.NKV, c.HD, causal);
    ref_attention_backward(rdq, rdk, rdv, g, q, k, v, c.B, c.T, c.NH, c.NKV, c.HD, causal);
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        float *dq = dputf(be, q, nq), *dk = dputf(be, k, nkv), *dv = dputf(be, v, nkv);
        float *dg = dputf(be, g, nq), *out = dpoison(be, nq), *att = dpoison(be, natt);
        op_begin(causal ? "attention_forward" : "attention_full_forward");
        (causal ? be->attention_forward : be->attention_full_forward)(be, out, att, dq, dk, dv, c.B,
                                                                      c.T, c.NH, c.NKV, c.HD);
        float *got = dget(be, out, nq), *gota = dget(be, att, is_cpu(be) ? natt : nlse);
        check("out", got, ro, NULL, nq, 64);
        if (is_cpu(be)) { /* s <= t; above the diagonal the CPU's own (att_zeros_end) */
            if (causal)
                for (size_t i = 0; i < natt; i++)
                    if (i % c.T > i / c.T % c.T) gota[i] = 0; /* column s > row t */
            compare("expected", "att (probabilities)", gota, rp, NULL, natt, 64, 1);
        }
        else
            compare("expected", "att (log-sum-exp)", gota, rl, NULL, nlse, 64, 1);
        free(got), free(gota);
        op_end();
        op_begin(causal ? "attention_backward" : "attention_full_backward");
        float *gq = dpoison(be, nq), *gk = dpoison(be, nkv), *gv = dpoison(be, nkv);
        float *datt = dpoison(be, natt);
        (causal ? be->attention_backward : be->attention_full_backward)(
            be, gq, gk, gv, datt, dg, dq, dk, dv, att, c.B, c.T, c.NH, c.NKV, c.HD);
        float *hq = dget(be, gq, nq), *hk = dget(be, gk, nkv), *hv = dget(be, gv, nkv);
        check("dq", hq, rdq, NULL, nq, 128), check("dk", hk, rdk, NULL, nkv, 128);
        check("dv", hv, rdv, NULL, nkv, 128);
        free(hq), free(hk), free(hv);
        op_end();
        be->free(be, dq), be->free(be, dk), be->free(be, dv), be->free(be, dg), be->free(be, out);
        be->free(be, att), be->free(be, gq), be->free(be, gk), be->free(be, gv), be->free(be, datt);
    }
    free(q), free(k), free(v), free(g), free(ro), free(rp), free(rl), free(rdq), free(rdk),
        free(rdv);
}

/* Decoding with a key/value cache: Tq new rows at positions pos0.. over a cache of pos0 + Tq
 * keys equal rows pos0.. of the causal forward of the whole sequence (one batch). */
static void attention_decode_case(int pos0, int Tq, int NH, int NKV, int HD) {
    const int T = pos0 + Tq;
    const size_t nq = (size_t)T * NH * HD, nkv = (size_t)T * NKV * HD, qs = (size_t)NH * HD;
    float *q = rnd(nq, 60, -1.5, 1.5), *k = rnd(nkv, 61, -1.5, 1.5), *v = rnd(nkv, 62, -1, 1);
    double *ro = dvec(nq), *rp = dvec((size_t)NH * T * T), *rl = dvec((size_t)NH * T);
    ref_attention_forward(ro, rp, rl, q, k, v, 1, T, NH, NKV, HD, 1);
    for (int bi = 0; bi < g_nbe; bi++) {
        backend_begin(bi);
        Backend *be = g_be[bi];
        float *dq = dputf(be, q + (size_t)pos0 * qs, (size_t)Tq * qs), *dk = dputf(be, k, nkv);
        float *dv = dputf(be, v, nkv), *out = dpoison(be, (size_t)Tq * qs);
        op_begin("attention_decode_forward");
        be->attention_decode_forward(be, out, dq, dk, dv, Tq, pos0, NH, NKV, HD);
        float *got = dget(be, out, (size_t)Tq * qs);
        check("out", got, ro + (size_t)pos0 * qs, NULL, (size_t)Tq * qs, 64);
        free(got);
        op_end();
        be->free(be, dq), be->free(be, dk), be->free(be, dv), be->free(be, out);
    }
    free(q), free(k), free(v), free(ro), free(rp), free(rl);
}

/* Head sizes cover every dims-per-lane variant of the CUDA kernels (6 and 40 pad to 8 and
 * 64, 200 takes the 256 variant); T crosses tile edges; NH / NKV > 1 is grouped-query. */
static void test_attention(void **state) {
    (void)state;
    const AttCase causal[] = {{2, 37, 4, 2, 16},
                              {1, 70, 3, 1, 48},
                              {1, 33, 2, 2, 128},
                              {2, 9, 2, 1, 6},
                              {1, 20, 1, 1, 200}};
    const AttCase full[] = {{2, 37, 4, 4, 16}, {1, 50, 3, 1, 40}, {1, 17, 2, 2, 128}};
    for (size_t i = 0; i < sizeof causal / sizeof causal[0]; i++) attention_case(causal[i], 1);
    for (size_t i = 0; i < sizeof full / sizeof full[0]; i++) attention_case(full[i], 0);
    attention_decode_case(0, 5, 4, 2, 16);   /* a prompt from position 0 */
    attention_decode_case(37, 1, 9, 3, 64);  /* one token after 37 (SmolLM2's heads) */
    attention_decode_case(100, 3, 3, 1, 48); /* a chunk after 100 */
    attention_decode_case(20, 2, 1, 1, 200);
    attention_decode_case(12, 4, 4, 2, 128); /* Llama-2-7B's head size (its own inlined loop) */
    /* prompts of 16 rows or more: the CPU's tiled prefill (kernels/cpu/attention.c) */
    attention_decode_case(0, 40, 9, 3, 64);  /* a prompt from 0, across tile edges */
    attention_decode_case(33, 21, 4, 2, 48); /* a chunk of a prompt after 33 cached keys */
    attention_decode_case(0, 16, 2, 1, 6);   /* the threshold, a tiny head */
}
/* ---- determinism: the reductions give the same bits when run again ---- */

static void expect_same_bits(const char *op, Backend *be, const float *d1, const float *d2,
                             size_t n) {
    float *a = dget(be, d1, n), *b = dget(be, d2, n);
    if (memcmp(a, b, n * sizeof(float)) != 0)
        fail_msg("%s %s: two runs on the same inputs differ", be->name, op);
    free(a), free(b);
}

static void test_determinism(void **state) {
    (void)state;
    const int N = 2000, C = 67, V = 40; /* N above 1024 rows: several column-sum chunks */
    const size_t n = (size_t)N * C;
    float *x = rnd(n, 120, -1, 1), *g = rnd(n, 121, -1, 1), *w = rnd(C, 122, 0.5, 1.5);
    float *rs = rnd(N, 123, 0.5, 2);
    int32_t *tok = ids(N, 124, V);
    const AttCase a = {2, 45, 4, 2, 16};
    const size_t nq = (size_t)a.B * a.T * a.NH * a.HD, nkv = (size_t)a.B * a.T * a.NKV * a.HD;
    const size_t natt = (size_t)a.B * a.NH * a.T * a.T;
    for (int bi = 0; bi < g_nbe; bi++) {
        Backend *be = g_be[bi];
        float *dx = dputf(be, x, n), *dg = dputf(be, g, n), *dw = dputf(be, w, C),
              *dr = dputf(be, rs, N);
        int32_t *dt = dput(be, tok, N * sizeof(int32_t));
        float *o[2];
        for (int r = 0; r < 2; r++) { /* dweight of RMSNorm, dbias, col_dot, dtable */
            o[r] = be->alloc(be, (3 * (size_t)C + (size_t)V * C) * sizeof(float));
            float *dummy = be->alloc(be, n * sizeof(float));
            be->rmsnorm_backward(be, dummy, o[r], dg, dx, dw, dr, N, C);
            be->bias_backward(be, o[r] + C, dg, N, C);
            be->col_dot(be, o[r] + 2 * C, dx, dg, N, C);
            be->embedding_backward(be, o[r] + 3 * C, dg, dt, N, C);
            be->free(be, dummy);
        }
        expect_same_bits("rmsnorm_backward / bias_backward / col_dot / embedding_backward", be,
                         o[0], o[1], 3 * (size_t)C + (size_t)V * C);
        const double s1 = be->sum_squares(be, dx, n), s2 = be->sum_squares(be, dx, n);
        if (memcmp(&s1, &s2, sizeof s1) != 0)
            fail_msg("%s sum_squares: %.17g then %.17g", be->name, s1, s2);
        float *q = rnd(nq, 125, -1, 1), *kv = rnd(nkv, 126, -1, 1), *gq = rnd(nq, 127, -1, 1);
        float *dq = dputf(be, q, nq), *dk = dputf(be, kv, nkv), *dgq = dputf(be, gq, nq);
        float *att = be->alloc(be, natt * sizeof(float)),
              *datt = be->alloc(be, natt * sizeof(float));
        float *out = be->alloc(be, nq * sizeof(float)), *grads[2];
        be->attention_forward(be, out, att, dq, dk, dk, a.B, a.T, a.NH, a.NKV, a.HD);
        for (int r = 0; r < 2; r++) {
            grads[r] = be->alloc(be, (nq + 2 * nkv) * sizeof(float));
            be->attention_backward(be, grads[r], grads[r] + nq, grads[r] + nq + nkv, datt, dgq, dq,
                                   dk, dk, att, a.B, a.T, a.NH, a.NKV, a.HD);
        }
        expect_same_bits("attention_backward", be, grads[0], grads[1], nq + 2 * nkv);
        for (int r = 0; r < 2; r++) be->free(be, o[r]), be->free(be, grads[r]);
        be->free(be, dx), be->free(be, dg), be->free(be, dw), be->free(be, dr), be->free(be, dt);
        be->free(be, dq), be->free(be, dk), be->free(be, dgq), be->free(be, att),
            be->free(be, datt), be->free(be, out);
        free(q), free(kv), free(gq);
        printf("  %s: reductions and attention backward repeat bit for bit\n", be->name);
    }
    free(x), free(g), free(w), free(rs), free(tok);
}

/* ---- driver ---- */

int main(void) {
    char err[512];
    g_be[g_nbe++] = backend_create("cpu", 2, err, sizeof err);
    if (!g_be[0]) {
        fprintf(stderr, "cannot create the CPU backend: %s\n", err);
        return 1;
    }
    Backend *cuda = backend_create("cuda", 0, err, sizeof err);
    const char *require = getenv("LORASC_REQUIRE_CUDA");
    if (cuda) {
        g_be[g_nbe++] = cuda;
    } else {
        printf("SKIP cuda: %s\n", err);
        if (require && strcmp(require, "1") == 0) {
            fprintf(stderr, "LORASC_REQUIRE_CUDA=1 but the CUDA backend is unavailable: %s\n", err);
            return 1;
        }
    }
    printf("backends:");
    for (int i = 0; i < g_nbe; i++) printf(" %s", g_be[i]->name);
    printf("\n");

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),        cmocka_unit_test(test_uploads),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_embedding),     cmocka_unit_test(test_norms),
        cmocka_unit_test(test_rope),          cmocka_unit_test(test_attention),
        cmocka_unit_test(test_elementwise),   cmocka_unit_test(test_rowcol),
        cmocka_unit_test(test_cross_entropy), cmocka_unit_test(test_optim),
        cmocka_unit_test(test_step_stats),
        cmocka_unit_test(test_noise),         cmocka_unit_test(test_vision),
        cmocka_unit_test(test_bf16_convert),  cmocka_unit_test(test_bf16_matmul),
        cmocka_unit_test(test_bf16_matmul_frozen),
        cmocka_unit_test(test_bf16_head),
        cmocka_unit_test(test_bf16_attention),
        cmocka_unit_test(test_determinism),   cmocka_unit_test(test_errors),
    };
    const char *filter = getenv("LORASC_TEST_FILTER"); /* e.g. test_attention (tests/gpu) */
    if (filter && filter[0]) cmocka_set_test_filter(filter);
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);

    harness_summary_print();
    for (int i = 0; i < g_nbe; i++) backend_destroy(g_be[i]);
    return failed;
}
