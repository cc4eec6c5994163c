/* Learning-rate schedules against hand-computed values of HF's schedules, and AdamW's
 * global-norm clipping and groups against a double-precision transcription of torch. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "core/model/adamw.h"
#include "core/model/schedule.h"

static void test_schedules(void **state) {
    (void)state;
    const Schedule lin = {.kind = SCHEDULE_LINEAR, .peak_lr = 1.0f, .warmup_steps = 10};
    const Schedule cosine = {.kind = SCHEDULE_COSINE, .peak_lr = 2.0f, .warmup_steps = 0};
    const Schedule cst = {.kind = SCHEDULE_CONSTANT, .peak_lr = 0.5f, .warmup_steps = 4};
    const Schedule floor = {.kind = SCHEDULE_COSINE, .peak_lr = 1.0f, .min_lr_ratio = 0.1f};
    /* warm-up: step/warmup, so the first update has lr 0 (as HF) */
    assert_float_equal(schedule_lr(&lin, 0, 110), 0.0, 1e-7);
    assert_float_equal(schedule_lr(&lin, 5, 110), 0.5, 1e-7);
    /* linear decay: (length - step) / (length - warmup) */
    assert_float_equal(schedule_lr(&lin, 10, 110), 1.0, 1e-7);
    assert_float_equal(schedule_lr(&lin, 60, 110), 0.5, 1e-7);
    assert_float_equal(schedule_lr(&lin, 110, 110), 0.0, 1e-7);
    assert_float_equal(schedule_lr(&lin, 200, 110), 0.0, 1e-7);
    /* cosine: 0.5 (1 + cos(pi progress)) */
    assert_float_equal(schedule_lr(&cosine, 0, 100), 2.0, 1e-6);
    assert_float_equal(schedule_lr(&cosine, 50, 100), 1.0, 1e-6);
    assert_float_equal(schedule_lr(&cosine, 25, 100), 2.0 * 0.5 * (1 + cos(M_PI / 4)), 1e-6);
    assert_float_equal(schedule_lr(&cosine, 100, 100), 0.0, 1e-6);
    assert_float_equal(schedule_lr(&cst, 1, 100), 0.125, 1e-7);
    assert_float_equal(schedule_lr(&cst, 50, 100), 0.5, 1e-7);
    /* a floor keeps min_lr_ratio * peak at the end */
    assert_float_equal(schedule_lr(&floor, 100, 100), 0.1, 1e-6);
    /* compressing a schedule = evaluating it with a shorter length */
    assert_float_equal(schedule_lr(&lin, 35, 60), 0.5, 1e-7);
    assert_int_equal(schedule_kind_parse("cosine"), SCHEDULE_COSINE);
    assert_int_equal(schedule_kind_parse("cosin"), -1);
}

/* Two groups (different lr scales and decay), clipping active: compare with a double
 * transcription of clip_grad_norm_ + torch.optim.AdamW for 3 steps. */
static void test_adamw_groups_and_clipping(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    enum { NA = 5, NB = 3 };
    Real *p = be->alloc(be, (NA + NB) * sizeof(Real)), *g = be->alloc(be, (NA + NB) * sizeof(Real));
    double rp[NA + NB], rm[NA + NB] = {0}, rv[NA + NB] = {0};
    for (int i = 0; i < NA + NB; i++) rp[i] = p[i] = (Real)(0.3 * sin(i + 1.0));
    const ParamGroup groups[2] = {
        {.p = p, .g = g, .n = NA, .lr_scale = 1.0f, .weight_decay = 0.1f},
        {.p = p + NA, .g = g + NA, .n = NB, .lr_scale = 16.0f, .weight_decay = 0.0f},
    };
    AdamWConfig cfg = adamw_default_config();
    cfg.grad_clip = 0.5f;
    AdamW opt;
    assert_int_equal(adamw_create(&opt, be, &cfg, groups, 2), LSC_OK);
    const double lr = 1e-2;
    for (int step = 1; step <= 3; step++) {
        double norm2 = 0;
        for (int i = 0; i < NA + NB; i++) {
            g[i] = (Real)(cos(3.0 * i + step) * (i + 1));
            norm2 += (double)g[i] * g[i];
        }
        const double coef = fmin(1.0, 0.5 / (sqrt(norm2) + 1e-6));
        const double norm = adamw_step(&opt, (float)lr);
        assert_float_equal(norm, sqrt(norm2), 1e-9 * sqrt(norm2));
        for (int i = 0; i < NA + NB; i++) {
            const double glr = lr * (i < NA ? 1.0 : 16.0), wd = i < NA ? 0.1 : 0.0;
            const double gi = g[i] * coef;
            rm[i] = 0.9 * rm[i] + 0.1 * gi;
            rv[i] = 0.999 * rv[i] + 0.001 * gi * gi;
            rp[i] *= 1.0 - glr * wd;
            const double denom = sqrt(rv[i]) / sqrt(1 - pow(0.999, step)) + 1e-8;
            rp[i] -= glr / (1 - pow(0.9, step)) * rm[i] / denom;
        }
    }
    for (int i = 0; i < NA + NB; i++) assert_float_equal(p[i], rp[i], 1e-6);
    adamw_reset(&opt);
    assert_int_equal(opt.step, 0);
    assert_true(opt.m[0] == 0 && opt.v[NA + NB - 1] == 0);
    adamw_free(&opt);
    be->free(be, p);
    be->free(be, g);
    backend_cpu_destroy(be);
}

static void test_adamw_bad_config(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    Real x[2], gx[2];
    ParamGroup grp = {.p = x, .g = gx, .n = 2, .lr_scale = 1};
    AdamWConfig cfg = adamw_default_config();
    cfg.beta1 = 1.0f;
    AdamW opt;
    assert_int_equal(adamw_create(&opt, be, &cfg, &grp, 1), LSC_ERR);
    assert_non_null(strstr(error_last(), "betas"));
    backend_cpu_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_adamw_groups_and_clipping),
        cmocka_unit_test(test_adamw_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
