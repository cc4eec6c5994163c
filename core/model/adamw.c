/* AdamW over parameter groups with global-norm clipping (see adamw.h). */
#include "core/model/adamw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"

AdamWConfig adamw_default_config(void) {
    return (AdamWConfig){.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f,
                         .grad_clip = 1.0f};
}

int adamw_create(AdamW *opt, Backend *be, const AdamWConfig *config, const ParamGroup *groups,
                 int n_groups) {
    memset(opt, 0, sizeof *opt);
    if (n_groups <= 0) return error_set("AdamW needs at least one parameter group, got %d.", n_groups);
    if (!(config->beta1 >= 0.0f && config->beta1 < 1.0f) || !(config->beta2 >= 0.0f && config->beta2 < 1.0f))
        return error_set("AdamW betas must lie in [0, 1), got %g and %g.", (double)config->beta1,
                         (double)config->beta2);
    if (!(config->eps > 0.0f)) return error_set("AdamW eps must be positive, got %g.", (double)config->eps);
    opt->config = *config;
    opt->be = be;
    opt->groups = malloc((size_t)n_groups * sizeof *groups);
    if (!opt->groups) return error_set("Out of memory allocating %d AdamW groups.", n_groups);
    opt->n_groups = n_groups;
    for (int i = 0; i < n_groups; i++) {
        opt->groups[i] = groups[i];
        opt->n_total += groups[i].n;
    }
    opt->m = be->alloc(be, opt->n_total * sizeof(Real));
    opt->v = be->alloc(be, opt->n_total * sizeof(Real));
    if (!opt->m || !opt->v) {
        adamw_free(opt);
        return error_set("Out of memory allocating AdamW moments for %zu parameters.", opt->n_total);
    }
    return LSC_OK;
}

void adamw_free(AdamW *opt) {
    free(opt->groups);
    if (opt->be) {
        if (opt->m) opt->be->free(opt->be, opt->m);
        if (opt->v) opt->be->free(opt->be, opt->v);
    }
    memset(opt, 0, sizeof *opt);
}

void adamw_reset(AdamW *opt) {
    opt->be->zero(opt->be, opt->m, opt->n_total * sizeof(Real));
    opt->be->zero(opt->be, opt->v, opt->n_total * sizeof(Real));
    opt->step = 0;
}

double adamw_grad_norm(AdamW *opt) {
    double sum = 0.0;
    for (int i = 0; i < opt->n_groups; i++)
        sum += opt->be->sum_squares(opt->be, opt->groups[i].g, opt->groups[i].n);
    return sqrt(sum);
}

double adamw_step(AdamW *opt, float lr) {
    const AdamWConfig *c = &opt->config;
    const double norm = adamw_grad_norm(opt);
    /* torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1 */
    double grad_scale = 1.0;
    if (c->grad_clip > 0.0f) grad_scale = fmin(1.0, c->grad_clip / (norm + 1e-6));
    opt->step++;
    const double bc1 = 1.0 - pow(c->beta1, (double)opt->step);
    const double bc2 = 1.0 - pow(c->beta2, (double)opt->step);
    size_t offset = 0;
    for (int i = 0; i < opt->n_groups; i++) {
        const ParamGroup *g = &opt->groups[i];
        opt->be->adamw_update(opt->be, g->p, g->g, opt->m + offset, opt->v + offset, g->n,
                              lr * g->lr_scale, c->beta1, c->beta2, c->eps, g->weight_decay,
                              (float)grad_scale, (float)bc1, (float)bc2);
        offset += g->n;
    }
    return norm;
}
