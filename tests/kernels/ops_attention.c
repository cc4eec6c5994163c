/* kernels/cpu/attention.c: causal (Llama) and full (ViT) GQA attention against a naive double
 * loop (outputs and probabilities, the causal mask exact, rows summing to 1), and dq, dk, dv
 * against finite differences, on shapes off and on the kernel's tile sizes and its threaded
 * path. */
#include "tests/kernels/ops_check.h"

typedef struct {
    Real *q, *k, *v, *out, *att, *r;
    int B, T, NH, NKV, HD, causal;
} AttCtx;

static double att_loss(void *p) {
    AttCtx *c = p;
    if (c->causal)
        be->attention_forward(be, c->out, c->att, c->q, c->k, c->v, c->B, c->T, c->NH, c->NKV,
                              c->HD);
    else
        be->attention_full_forward(be, c->out, c->att, c->q, c->k, c->v, c->B, c->T, c->NH,
                                   c->NKV, c->HD);
    return dot(c->r, c->out, (size_t)c->B * c->T * c->NH * c->HD);
}

/* Naive GQA attention in double, causal or not: out and the probabilities. */
static void att_reference(Real *out, Real *att, const Real *q, const Real *k, const Real *v, int B,
                          int T, int NH, int NKV, int HD, int causal) {
    const double scale = 1 / sqrt((double)HD);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int kh = h / (NH / NKV);
            for (int t = 0; t < T; t++) {
                Real *row = att + (((size_t)b * NH + h) * T + t) * T;
                const Real *qt = q + (((size_t)b * T + t) * NH + h) * HD;
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s < T; s++) {
                    const Real *ks = k + (((size_t)b * T + s) * NKV + kh) * HD;
                    row[s] = !causal || s <= t ? dot(qt, ks, (size_t)HD) * scale : -INFINITY;
                    if (row[s] > mx) mx = row[s];
                }
                for (int s = 0; s < T; s++) sum += row[s] = exp(row[s] - mx);
                for (int s = 0; s < T; s++) row[s] /= sum;
                Real *ot = out + (((size_t)b * T + t) * NH + h) * HD;
                for (int d = 0; d < HD; d++) {
                    double o = 0;
                    for (int s = 0; s < T; s++)
                        o += row[s] * v[(((size_t)b * T + s) * NKV + kh) * HD + d];
                    ot[d] = o;
                }
            }
        }
}

static void check_attention(int causal, int B, int T, int NH, int NKV, int HD) {
    const size_t nq = (size_t)B * T * NH * HD, nk = (size_t)B * T * NKV * HD;
    const size_t na = (size_t)B * NH * T * T;
    const uint64_t st = causal ? 50 : 320; /* random streams */
    char what[96];
#define WHAT(s)                                                                                \
    (snprintf(what, sizeof what, "%s B%d T%d NH%d NKV%d HD%d %s",                             \
              causal ? "attention" : "attention_full", B, T, NH, NKV, HD, s),                  \
     what)
    Real *q = rand_nonzero(nq, st), *k = rand_nonzero(nk, st + 1), *v = rand_nonzero(nk, st + 2);
    Real *r = rand_nonzero(nq, st + 3), *out = vec(nq), *att = vec(na);
    Real *ref = vec(nq), *ref_att = vec(na);
    /* garbage in the outputs: the forward writes every probability (s <= t); above the
     * diagonal it writes only the zeros its backward reads, so the NaN left in the others
     * also checks that the backward never reads them */
    for (size_t i = 0; i < na; i++) att[i] = NAN;
    AttCtx c = {q, k, v, out, att, r, B, T, NH, NKV, HD, causal};
    att_loss(&c);
    att_reference(ref, ref_att, q, k, v, B, T, NH, NKV, HD, causal);
    expect_close(WHAT("out"), out, ref, nq, 1e-14, 1e-12);
    Real *probs = vec(na); /* att with the entries above the diagonal it left unwritten as 0 */
    Real *ones = vec((size_t)B * NH * T), *sums = vec((size_t)B * NH * T);
    for (size_t row = 0; row < (size_t)B * NH * T; row++) {
        int t = (int)(row % T);
        ones[row] = 1;
        for (int s = 0; s < T; s++) {
            const Real p = att[row * T + s];
            probs[row * T + s] = causal && s > t && isnan(p) ? 0 : p;
            sums[row] += probs[row * T + s];
            if (causal && s > t && !isnan(p) && p != 0)
                fail_msg("%s: att[row %zu][%d] = %g above the diagonal, expected 0 or unwritten",
                         WHAT("mask"), row, s, p);
        }
    }
    expect_close(WHAT("probabilities"), probs, ref_att, na, 1e-15, 1e-12);
    free(probs);
    expect_close(WHAT("row sums"), sums, ones, (size_t)B * NH * T, 1e-14, 0);
    /* backward writes dq, dk, dv (garbage in them must not leak through) */
    Real *dq = rand_nonzero(nq, st + 4), *dk = rand_nonzero(nk, st + 5);
    Real *dv = rand_nonzero(nk, st + 6), *datt = rand_nonzero(na, st + 7);
    if (causal)
        be->attention_backward(be, dq, dk, dv, datt, r, q, k, v, att, B, T, NH, NKV, HD);
    else
        be->attention_full_backward(be, dq, dk, dv, datt, r, q, k, v, att, B, T, NH, NKV, HD);
    expect_grad(WHAT("dq"), q, nq, dq, att_loss, &c);
    expect_grad(WHAT("dk"), k, nk, dk, att_loss, &c);
    expect_grad(WHAT("dv"), v, nk, dv, att_loss, &c);
#undef WHAT
    free(q), free(k), free(v), free(r), free(out), free(att), free(ref), free(ref_att);
    free(ones), free(sums), free(dq), free(dk), free(dv), free(datt);
}

static void test_attention(void **state) {
    (void)state;
    check_attention(1, 2, 5, 4, 2, 6);   /* GQA: two query heads per kv head */
    check_attention(1, 2, 5, 4, 4, 6);   /* plain multi-head */
    check_attention(1, 1, 5, 4, 1, 6);   /* multi-query */
    check_attention(1, 1, 21, 2, 1, 20); /* several row/column tiles, T and HD off the tile size */
    check_attention(1, 1, 18, 3, 3, 16); /* HD exactly one tile */
    check_attention(1, 2, 13, 4, 2, 20); /* big enough for the threaded path, 4 kv tasks */
}

static void test_attention_full(void **state) {
    (void)state;
    check_attention(0, 2, 5, 4, 4, 6);   /* plain multi-head (ViT) */
    check_attention(0, 2, 5, 4, 2, 6);   /* GQA */
    check_attention(0, 1, 21, 2, 2, 20); /* several tiles, T and HD off the tile size */
    check_attention(0, 2, 17, 4, 4, 16); /* ViT-like T = 1 + 16, threaded path */
}

int ops_attention_run(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_full),
    };
    return cmocka_run_group_tests_name("attention", tests, ops_setup, ops_teardown);
}
