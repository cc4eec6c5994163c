/* kernels/cpu/swiglu.c and kernels/cpu/gelu.c (erf, tanh and quick): forwards against the
 * formulas, saturated tails finite, gradients against finite differences, aliasing. */
#include "tests/kernels/ops_check.h"

/* ---- swiglu ---- */

typedef struct {
    Real *g, *u, *out, *r;
    size_t n;
} SwiCtx;

static double swi_loss(void *p) {
    SwiCtx *c = p;
    be->swiglu_forward(be, c->out, c->g, c->u, c->n);
    return dot(c->r, c->out, c->n);
}

static void test_swiglu(void **state) {
    (void)state;
    const size_t n = 40;
    Real *g = rand_vec(n, 60, -4, 4), *u = rand_nonzero(n, 61), *r = rand_nonzero(n, 62);
    for (size_t i = 0; i < n; i++)
        if (fabs(g[i]) < 0.05) g[i] = 0.3;
    g[0] = -60, g[1] = 60; /* saturated sigmoid stays finite */
    Real *out = vec(n), *ref = vec(n);
    SwiCtx c = {g, u, out, r, n};
    swi_loss(&c);
    for (size_t i = 0; i < n; i++) ref[i] = g[i] / (1 + exp(-g[i])) * u[i];
    expect_close("swiglu forward", out, ref, n, 1e-15, 1e-13);
    Real *dg = rand_nonzero(n, 63), *du = rand_nonzero(n, 64); /* written, not accumulated */
    be->swiglu_backward(be, dg, du, r, g, u, n);
    expect_grad("swiglu dgate", g, n, dg, swi_loss, &c);
    expect_grad("swiglu dup", u, n, du, swi_loss, &c);
    free(g), free(u), free(r), free(out), free(ref), free(dg), free(du);
}

/* ---- gelu ---- */

typedef struct {
    Real *x, *out, *r;
    size_t n;
    GeluKind kind;
} GeluCtx;

static double gelu_loss(void *p) {
    GeluCtx *c = p;
    be->gelu_forward(be, c->out, c->x, c->n, c->kind);
    return dot(c->r, c->out, c->n);
}

static void test_gelu(void **state) {
    (void)state;
    const size_t n = 41;
    const char *names[3] = {"gelu erf", "gelu tanh", "gelu quick"};
    for (int kind = GELU_ERF; kind <= GELU_QUICK; kind++) {
        Real *x = rand_vec(n, 310, -5, 5), *r = rand_nonzero(n, 311), *out = vec(n), *ref = vec(n);
        x[0] = -30, x[1] = 30, x[2] = 0.0; /* saturated tails stay finite; gelu(0) = 0 */
        GeluCtx c = {x, out, r, n, (GeluKind)kind};
        gelu_loss(&c);
        for (size_t i = 0; i < n; i++) {
            const double v = x[i];
            ref[i] = kind == GELU_ERF    ? 0.5 * v * (1 + erf(v / sqrt(2.0)))
                     : kind == GELU_TANH ? 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)))
                                         : v / (1 + exp(-1.702 * v));
        }
        char what[64];
        snprintf(what, sizeof what, "%s forward", names[kind]);
        expect_close(what, out, ref, n, 1e-15, 1e-13);
        Real *dx = rand_nonzero(n, 312); /* written, not accumulated */
        be->gelu_backward(be, dx, r, x, n, (GeluKind)kind);
        snprintf(what, sizeof what, "%s dx", names[kind]);
        expect_grad(what, x, n, dx, gelu_loss, &c);
        Real *dr = copy_vec(r, n);
        be->gelu_backward(be, dr, dr, x, n, (GeluKind)kind); /* dx may alias dout */
        snprintf(what, sizeof what, "%s dx in place", names[kind]);
        expect_close(what, dr, dx, n, 0, 0);
        free(x), free(r), free(out), free(ref), free(dx), free(dr);
    }
}

int ops_activations_run(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_gelu),
    };
    return cmocka_run_group_tests_name("activations", tests, ops_setup, ops_teardown);
}
