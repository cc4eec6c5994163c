/* kernels/cpu/cross_entropy.c: losses and logsumexp against naive loops, dlogits against
 * finite differences, ignored rows, in place, and large logits over several online chunks. */
#include "tests/kernels/ops_check.h"

/* ---- cross-entropy ---- */

typedef struct {
    Real *logits, *losses, *lse, *dloss;
    const int32_t *targets;
    int N, V;
} CeCtx;

static double ce_loss(void *p) {
    CeCtx *c = p;
    be->cross_entropy_forward(be, c->losses, c->lse, c->logits, c->targets, c->N, c->V);
    return dot(c->dloss, c->losses, (size_t)c->N);
}

static void test_cross_entropy(void **state) {
    (void)state;
    enum { N = 7, V = 11 };
    const int32_t targets[N] = {3, -1, 0, 10, -100, 5, 7}; /* two ignored rows */
    Real *logits = rand_vec(N * V, 80, -3, 3), *losses = vec(N), *lse = vec(N);
    Real dloss[N] = {0.3, 0.2, -0.7, 1.1, 0.5, 0, 0.9}; /* non-uniform; one zero */
    CeCtx c = {logits, losses, lse, dloss, targets, N, V};
    ce_loss(&c);
    Real ref_loss[N], ref_lse[N];
    for (int n = 0; n < N; n++) {
        double s = 0;
        for (int i = 0; i < V; i++) s += exp(logits[n * V + i]);
        ref_lse[n] = log(s);
        ref_loss[n] = targets[n] < 0 ? 0 : ref_lse[n] - logits[n * V + targets[n]];
    }
    expect_close("cross_entropy lse", lse, ref_lse, N, 1e-14, 1e-13);
    expect_close("cross_entropy losses", losses, ref_loss, N, 1e-14, 1e-13);

    Real *dlogits = rand_nonzero(N * V, 81); /* written: garbage must go */
    be->cross_entropy_backward(be, dlogits, logits, lse, targets, dloss, N, V);
    expect_grad("cross_entropy dlogits", logits, N * V, dlogits, ce_loss, &c);
    for (int n = 0; n < N; n++)
        if (targets[n] < 0 || dloss[n] == 0)
            for (int i = 0; i < V; i++)
                if (dlogits[n * V + i] != 0)
                    fail_msg("cross_entropy: dlogits[%d][%d] = %g in a skipped row, expected 0", n,
                             i, dlogits[n * V + i]);
    /* in place, the common case: dlogits == logits (lse again from the unperturbed logits) */
    ce_loss(&c);
    be->cross_entropy_backward(be, dlogits, logits, lse, targets, dloss, N, V);
    Real *inplace = copy_vec(logits, N * V);
    be->cross_entropy_backward(be, inplace, inplace, lse, targets, dloss, N, V);
    expect_close("cross_entropy in place", inplace, dlogits, N * V, 0, 0);

    /* large logits: logsumexp stays finite and exact (one row spans several online chunks) */
    enum { BIGV = 5000 };
    Real *big = rand_vec(BIGV, 82, -30, 30), bl, blse, dl1 = 1;
    big[4321] = 700;
    int32_t bt = 17;
    be->cross_entropy_forward(be, &bl, &blse, big, &bt, 1, BIGV);
    double mx = 700, s = 0;
    for (int i = 0; i < BIGV; i++) s += exp(big[i] - mx);
    Real ref_big = mx + log(s);
    expect_close("cross_entropy large logits lse", &blse, &ref_big, 1, 1e-12, 1e-14);
    be->cross_entropy_backward(be, big, big, &blse, &bt, &dl1, 1, BIGV);
    double total = 0;
    for (int i = 0; i < BIGV; i++) total += big[i];
    Real zero = 0, got = total; /* softmax sums to 1, minus the one-hot */
    expect_close("cross_entropy large logits grad sum", &got, &zero, 1, 1e-12, 0);
    free(logits), free(losses), free(lse), free(dlogits), free(inplace), free(big);
}

int ops_cross_entropy_run(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cross_entropy),
    };
    return cmocka_run_group_tests_name("cross-entropy", tests, ops_setup, ops_teardown);
}
