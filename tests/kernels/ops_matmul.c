/* kernels/cpu/matmul.c (every transpose combination, beta, the threaded slabs) and
 * kernels/cpu/embedding.c (a row lookup whose backward scatter-adds: a one-hot matmul). */
#include "tests/kernels/ops_check.h"

/* ---- matmul ---- */

/* All four transpose combinations, with and without beta, against a naive triple loop. */
static void check_matmul(int M, int N, int K) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int with_beta = 0; with_beta < 2; with_beta++) {
                Real *a = rand_nonzero((size_t)M * K, 10), *b = rand_nonzero((size_t)K * N, 11);
                Real *c = rand_nonzero((size_t)M * N, 12), *ref = vec((size_t)M * N);
                const Real alpha = 0.7, beta = with_beta ? 0.3 : 0;
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double s = 0;
                        for (int p = 0; p < K; p++) {
                            double aip = ta ? a[p * M + i] : a[i * K + p];
                            double bpj = tb ? b[j * K + p] : b[p * N + j];
                            s += aip * bpj;
                        }
                        ref[i * N + j] = alpha * s + beta * c[i * N + j];
                    }
                if (!with_beta) /* beta = 0 writes: whatever c held is ignored */
                    for (int i = 0; i < M * N; i++) c[i] = NAN;
                be->matmul(be, c, a, b, M, N, K, ta, tb, alpha, beta);
                char what[64];
                snprintf(what, sizeof what, "matmul %dx%dx%d ta=%d tb=%d beta=%g", M, N, K, ta,
                         tb, (double)beta);
                expect_close(what, c, ref, (size_t)M * N, 1e-13, 1e-12);
                free(a), free(b), free(c), free(ref);
            }
}

static void test_matmul(void **state) {
    (void)state;
    check_matmul(5, 7, 3);
    check_matmul(100, 60, 50); /* threaded: slabs of rows */
    check_matmul(40, 90, 80);  /* threaded: slabs of columns */
    check_matmul(333, 37, 29); /* rows not a multiple of the slab alignment */
    /* the documented linear layer: y[N,out] = x[N,in] W^T, W [out,in] */
    const int rows = 4, in = 6, out = 3;
    Real *x = rand_nonzero((size_t)rows * in, 13), *w = rand_nonzero((size_t)out * in, 14);
    Real *y = vec((size_t)rows * out), *ref = vec((size_t)rows * out);
    for (int n = 0; n < rows; n++)
        for (int o = 0; o < out; o++) ref[n * out + o] = dot(x + n * in, w + o * in, (size_t)in);
    be->matmul(be, y, x, w, rows, out, in, 0, 1, 1, 0);
    expect_close("matmul linear layer", y, ref, (size_t)rows * out, 1e-14, 1e-12);
    free(x), free(w), free(y), free(ref);
}

/* ---- embedding ---- */

typedef struct {
    Real *table, *out, *r;
    const int32_t *tokens;
    int N, C;
} EmbCtx;

static double emb_loss(void *p) {
    EmbCtx *c = p;
    be->embedding_forward(be, c->out, c->tokens, c->table, c->N, c->C);
    return dot(c->r, c->out, (size_t)c->N * c->C);
}

static void test_embedding(void **state) {
    (void)state;
    enum { V = 11, C = 8, N = 10 };
    const int32_t tokens[N] = {3, 0, 10, 3, 7, 3, 1, 10, 5, 2}; /* repeats scatter-add */
    Real *table = rand_nonzero(V * C, 20), *out = vec(N * C), *r = rand_nonzero(N * C, 21);
    EmbCtx c = {table, out, r, tokens, N, C};
    emb_loss(&c);
    for (int n = 0; n < N; n++)
        expect_close("embedding forward row", out + n * C, table + tokens[n] * C, C, 0, 0);
    Real *dtable = vec(V * C);
    be->embedding_backward(be, dtable, r, tokens, N, C);
    expect_grad("embedding dtable", table, V * C, dtable, emb_loss, &c);
    /* parameter gradients accumulate: a second call doubles */
    Real *twice = vec(V * C);
    for (int i = 0; i < V * C; i++) twice[i] = 2 * dtable[i];
    be->embedding_backward(be, dtable, r, tokens, N, C);
    expect_close("embedding dtable accumulates", dtable, twice, V * C, 1e-15, 1e-15);
    free(table), free(out), free(r), free(dtable), free(twice);
}

int ops_matmul_run(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_embedding),
    };
    return cmocka_run_group_tests_name("matmul", tests, ops_setup, ops_teardown);
}
