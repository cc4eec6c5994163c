/* kernels/cpu/patchify.c, the ViT's input ops: patchify against a naive gather and as a
 * stride-P convolution, and the bias add (forward, accumulating backward, finite differences). */
#include "tests/kernels/ops_check.h"

static void test_patchify(void **state) {
    (void)state;
    const int B = 2, C = 3, H = 8, W = 12, P = 4, GW = W / P, NP = (H / P) * GW, K = C * P * P;
    const size_t ni = (size_t)B * C * H * W, no = (size_t)B * NP * K;
    Real *img = rand_nonzero(ni, 330), *out = rand_nonzero(no, 331), *ref = vec(no);
    for (int b = 0; b < B; b++)
        for (int p = 0; p < NP; p++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < P; i++)
                    for (int j = 0; j < P; j++)
                        ref[((size_t)b * NP + p) * K + (c * P + i) * P + j] =
                            img[(((size_t)b * C + c) * H + (p / GW) * P + i) * W + (p % GW) * P + j];
    be->patchify(be, out, img, B, C, H, W, P);
    expect_close("patchify", out, ref, no, 0, 0);
    /* conv as matmul: one output of a stride-P convolution equals the patch row . weight */
    const Real *wconv = rand_nonzero((size_t)K, 332); /* one filter [C, P, P] */
    double conv = 0;
    const int b = 1, py = 1, px = 2;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < P; i++)
            for (int j = 0; j < P; j++)
                conv += wconv[(c * P + i) * P + j] *
                        img[(((size_t)b * C + c) * H + py * P + i) * W + px * P + j];
    Real got = (Real)dot(out + ((size_t)b * NP + py * GW + px) * K, wconv, (size_t)K), want = conv;
    expect_close("patchify conv equivalence", &got, &want, 1, 1e-14, 1e-13);
    free(img), free(out), free(ref), free((void *)wconv);
}

typedef struct {
    Real *y0, *y, *bias, *r;
    int N, C;
} BiasCtx;

static double bias_loss(void *p) {
    BiasCtx *c = p;
    memcpy(c->y, c->y0, (size_t)c->N * c->C * sizeof(Real));
    be->bias_forward(be, c->y, c->bias, c->N, c->C);
    return dot(c->r, c->y, (size_t)c->N * c->C);
}

static void test_bias(void **state) {
    (void)state;
    const int sizes[2][2] = {{6, 9}, {400, 90}}; /* the second runs threaded */
    for (int z = 0; z < 2; z++) {
        const int N = sizes[z][0], C = sizes[z][1];
        const size_t nc = (size_t)N * C;
        Real *y0 = rand_nonzero(nc, 340), *y = vec(nc), *bias = rand_nonzero(C, 341);
        Real *r = rand_nonzero(nc, 342), *ref = vec(nc);
        BiasCtx c = {y0, y, bias, r, N, C};
        bias_loss(&c);
        for (size_t i = 0; i < nc; i++) ref[i] = y0[i] + bias[i % C];
        expect_close("bias forward", y, ref, nc, 0, 0);
        Real *db = rand_nonzero(C, 343), *db0 = copy_vec(db, C), *refd = vec(C);
        be->bias_backward(be, db, r, N, C); /* accumulates */
        for (int j = 0; j < C; j++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += r[(size_t)n * C + j];
            refd[j] = db0[j] + s;
        }
        expect_close("bias backward accumulates", db, refd, C, 1e-13, 1e-13);
        if (z == 0) {
            for (int j = 0; j < C; j++) db[j] -= db0[j];
            expect_grad("bias dbias", bias, C, db, bias_loss, &c);
        }
        free(y0), free(y), free(bias), free(r), free(ref), free(db), free(db0), free(refd);
    }
}

int ops_patchify_run(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patchify),
        cmocka_unit_test(test_bias),
    };
    return cmocka_run_group_tests_name("patchify", tests, ops_setup, ops_teardown);
}
