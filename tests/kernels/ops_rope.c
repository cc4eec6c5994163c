/* kernels/cpu/rope.c: both layouts (interleaved pairs, half split) against a naive rotation,
 * forward then backward as the identity, dx against finite differences. */
#include "tests/kernels/ops_check.h"

/* ---- rope ---- */

typedef struct {
    Real *x, *y, *r;
    const Real *cos_tab, *sin_tab;
    int B, T, NH, HD, pos0;
    RopeStyle style;
} RopeCtx;

static double rope_loss(void *p) {
    RopeCtx *c = p;
    size_t n = (size_t)c->B * c->T * c->NH * c->HD;
    memcpy(c->y, c->x, n * sizeof(Real));
    be->rope_forward(be, c->y, c->cos_tab, c->sin_tab, c->B, c->T, c->NH, c->HD, c->pos0, c->style);
    return dot(c->r, c->y, n);
}

static void test_rope(void **state) {
    (void)state;
    enum { B = 2, T = 5, NH = 4, HD = 6, POS0 = 3, TMAX = POS0 + T };
    const size_t n = (size_t)B * T * NH * HD;
    const double theta = 10000.0;
    Real *cos_tab = vec(TMAX * HD / 2), *sin_tab = vec(TMAX * HD / 2);
    for (int p = 0; p < TMAX; p++)
        for (int i = 0; i < HD / 2; i++) {
            double ang = p * pow(theta, -2.0 * i / HD);
            cos_tab[p * HD / 2 + i] = cos(ang);
            sin_tab[p * HD / 2 + i] = sin(ang);
        }
    for (int style = ROPE_INTERLEAVED; style <= ROPE_HALF; style++) {
        Real *x = rand_nonzero(n, 40), *y = vec(n), *r = rand_nonzero(n, 41), *ref = vec(n);
        RopeCtx c = {x, y, r, cos_tab, sin_tab, B, T, NH, HD, POS0, (RopeStyle)style};
        rope_loss(&c);
        /* naive: pair i of the head at time t turns by (POS0 + t) * theta^(-2i/HD) */
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int h = 0; h < NH; h++)
                    for (int i = 0; i < HD / 2; i++) {
                        size_t base = (((size_t)b * T + t) * NH + h) * HD;
                        size_t i0 = base + (style == ROPE_INTERLEAVED ? 2 * i : i);
                        size_t i1 = base + (style == ROPE_INTERLEAVED ? 2 * i + 1 : i + HD / 2);
                        double ang = (POS0 + t) * pow(theta, -2.0 * i / HD);
                        ref[i0] = x[i0] * cos(ang) - x[i1] * sin(ang);
                        ref[i1] = x[i0] * sin(ang) + x[i1] * cos(ang);
                    }
        expect_close(style == ROPE_HALF ? "rope half forward" : "rope interleaved forward", y, ref,
                     n, 1e-14, 1e-12);
        /* forward then backward is the identity */
        be->rope_backward(be, y, cos_tab, sin_tab, B, T, NH, HD, POS0, (RopeStyle)style);
        expect_close(style == ROPE_HALF ? "rope half round trip" : "rope interleaved round trip",
                     y, x, n, 1e-14, 1e-12);
        Real *dx = copy_vec(r, n);
        be->rope_backward(be, dx, cos_tab, sin_tab, B, T, NH, HD, POS0, (RopeStyle)style);
        expect_grad(style == ROPE_HALF ? "rope half dx" : "rope interleaved dx", x, n, dx,
                    rope_loss, &c);
        free(x), free(y), free(r), free(ref), free(dx);
    }
    free(cos_tab), free(sin_tab);
}

int ops_rope_run(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rope),
    };
    return cmocka_run_group_tests_name("rope", tests, ops_setup, ops_teardown);
}
