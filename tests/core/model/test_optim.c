/* Learning-rate schedules against hand-computed values of HF's schedules and ReLoRA's against
 * its authors' own function (tests/golden/relora_schedule.h); AdamW's global-norm clipping,
 * groups and per-group step counts against a double-precision transcription of torch; ReLoRA's
 * magnitude pruning of the moments against a hand computation. */
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
#include "tests/golden/relora_schedule.h"

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

/* ReLoRA's jagged cosine at every step of four small runs equals the value their Python
 * function gives (made by tests/reference/make_relora_schedule.py). */
static void test_relora_schedule(void **state) {
    (void)state;
    int checked = 0;
    for (size_t k = 0; k < sizeof relora_golden / sizeof relora_golden[0]; k++) {
        const ReloraGolden *g = &relora_golden[k];
        for (long step = 0; step < g->total; step++) {
            const double got = schedule_relora_factor(step, g->total, g->warmup, g->rewarmup,
                                                      g->every, g->min_lr_ratio);
            const double want = g->factor[step];
            if (!(fabs(got - want) <= 1e-14 + 1e-12 * fabs(want)))
                fail_msg("config %zu (total %ld, warmup %ld, rewarmup %ld, every %ld, min %g) step %ld: "
                         "got %.17g, ReLoRA %.17g", k, g->total, g->warmup, g->rewarmup, g->every,
                         g->min_lr_ratio, step, got, want);
            checked++;
        }
    }
    assert_int_equal(checked, 40 + 30 + 24 + 12);
    /* the shape, for a reader: 0 at each restart, back up to the envelope, floor 0.1 */
    assert_true(relora_golden[0].factor[10] == 0.0 && relora_golden[0].factor[13] > 0.8);
}

/* Per-group step counts: a group whose state is reset restarts its bias correction while
 * another carries on, as two torch optimizers would; reset without restart_step keeps the
 * count (ReLoRA). Reference: the torch transcription, per group. */
static void test_adamw_group_steps(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    enum { NA = 4, NB = 3, N = NA + NB };
    Real *p = be->alloc(be, N * sizeof(Real)), *g = be->alloc(be, N * sizeof(Real));
    double rp[N], rm[N] = {0}, rv[N] = {0};
    long rstep[2] = {0, 0};
    for (int i = 0; i < N; i++) rp[i] = p[i] = (Real)(0.2 * cos(i + 0.5));
    const ParamGroup groups[2] = {{.p = p, .g = g, .n = NA, .lr_scale = 1.0f},
                                  {.p = p + NA, .g = g + NA, .n = NB, .lr_scale = 2.0f, .continuous = 1}};
    AdamWConfig cfg = adamw_default_config();
    cfg.grad_clip = 0; /* no clipping: the bias corrections alone */
    AdamW opt;
    assert_int_equal(adamw_create(&opt, be, &cfg, groups, 2), LSC_OK);
    const double lr = 1e-2;
    for (int step = 1; step <= 7; step++) {
        if (step == 4) { /* group 0 restarts (a new expert), group 1 carries on */
            adamw_reset_group(&opt, 0, 1);
            for (int i = 0; i < NA; i++) rm[i] = rv[i] = 0;
            rstep[0] = 0;
            assert_int_equal(opt.group_step[0], 0);
            assert_int_equal(opt.group_step[1], 3);
        }
        if (step == 6) { /* moments zeroed, count kept (ReLoRA) */
            adamw_reset_group(&opt, 1, 0);
            for (int i = NA; i < N; i++) rm[i] = rv[i] = 0;
            assert_int_equal(opt.group_step[1], 5);
        }
        for (int i = 0; i < N; i++) g[i] = (Real)(sin(2.0 * i + step) * (i + 1));
        adamw_step(&opt, (float)lr);
        for (int k = 0; k < 2; k++) rstep[k]++;
        for (int i = 0; i < N; i++) {
            const int k = i < NA ? 0 : 1;
            const double glr = lr * (k ? 2.0 : 1.0);
            rm[i] = 0.9 * rm[i] + 0.1 * g[i];
            rv[i] = 0.999 * rv[i] + 0.001 * (double)g[i] * g[i];
            const double denom = sqrt(rv[i]) / sqrt(1 - pow(0.999, (double)rstep[k])) + 1e-8;
            rp[i] -= glr / (1 - pow(0.9, (double)rstep[k])) * rm[i] / denom;
        }
        for (int i = 0; i < N; i++)
            if (fabs(p[i] - rp[i]) > 1e-6 + 1e-5 * fabs(rp[i]))
                fail_msg("step %d parameter %d: %.9g, torch transcription %.9g", step, i, (double)p[i], rp[i]);
    }
    assert_int_equal(opt.group_step[0], 4);
    assert_int_equal(opt.group_step[1], 7);
    assert_int_equal(opt.step, 7);
    adamw_reset(&opt); /* a new optimizer: every count */
    assert_true(opt.step == 0 && opt.group_step[0] == 0 && opt.group_step[1] == 0);
    adamw_free(&opt);
    be->free(be, p);
    be->free(be, g);
    backend_cpu_destroy(be);
}

/* ReLoRA's magnitude_pruning_ on a slice of one group and on another group, by hand:
 * threshold = torch.quantile(|x|, ratio) (linear interpolation), entries not above it zeroed,
 * m and v each with their own threshold; nothing outside the slice moves. */
static void test_adamw_magnitude_pruning(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    Real p[10], g[10];
    const ParamGroup groups[2] = {{.p = p, .g = g, .n = 6, .lr_scale = 1}, {.p = p + 6, .g = g + 6, .n = 4, .lr_scale = 1}};
    AdamW opt;
    assert_int_equal(adamw_create(&opt, be, &(AdamWConfig){.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f}, groups, 2), LSC_OK);
    const Real m0[10] = {9, 0.5f, -0.1f, 0.3f, -0.7f, 0.2f, 1, -2, 3, 4};
    const Real v0[10] = {9, 0.04f, 0.01f, 0.09f, 0.16f, 0.25f, 5, 6, 7, 8};
    memcpy(opt.m, m0, sizeof m0);
    memcpy(opt.v, v0, sizeof v0);
    opt.group_step[0] = 5;
    /* slice p[1..6) at 0.5: |m| sorted 0.1 0.2 0.3 0.5 0.7, rank 0.5 * 4 = 2 -> 0.3, and 0.3
     * itself is pruned (kept: > threshold); |v| sorted .01 .04 .09 .16 .25 -> 0.09 */
    assert_int_equal(adamw_prune_magnitude(&opt, p + 1, 5, 0.5), LSC_OK);
    /* group 1 at 0.9: rank 0.9 * 3 = 2.7 between 3 and 4 -> 3.7 (m), 7.7 (v): only the top one stays */
    assert_int_equal(adamw_prune_magnitude(&opt, p + 6, 4, 0.9), LSC_OK);
    const Real m1[10] = {9, 0.5f, 0, 0, -0.7f, 0, 0, 0, 0, 4};
    const Real v1[10] = {9, 0, 0, 0, 0.16f, 0.25f, 0, 0, 0, 8};
    for (int i = 0; i < 10; i++)
        if (opt.m[i] != m1[i] || opt.v[i] != v1[i])
            fail_msg("moment %d: m %g v %g, by hand m %g v %g", i, (double)opt.m[i], (double)opt.v[i],
                     (double)m1[i], (double)v1[i]);
    assert_int_equal(opt.group_step[0], 5); /* the step count stays (torch's step is untouched) */
    /* interpolation, not the nearest rank: 0.7 * 4 = 2.8 -> 0.3 + 0.8 * 0.2 = 0.46 keeps 0.5
     * (the nearest order statistic, 0.5, would prune it; so would group 1's above, 4) */
    memcpy(opt.m, m0, sizeof m0);
    assert_int_equal(adamw_prune_magnitude(&opt, p + 1, 5, 0.7), LSC_OK);
    assert_true(opt.m[1] == 0.5f && opt.m[3] == 0 && opt.m[4] == -0.7f && opt.m[0] == 9);
    assert_int_equal(adamw_prune_magnitude(&opt, p + 1, 5, 1.0), LSC_ERR);
    assert_non_null(strstr(error_last(), "(0, 1)"));
    adamw_free(&opt);
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
        cmocka_unit_test(test_relora_schedule),
        cmocka_unit_test(test_adamw_group_steps),
        cmocka_unit_test(test_adamw_magnitude_pruning),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
