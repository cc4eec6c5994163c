/* AdamW over parameter groups with global-norm clipping (see adamw.h). */
#include "core/model/adamw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/model/device.h"

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
    opt->group_step = calloc((size_t)n_groups, sizeof *opt->group_step);
    if (!opt->groups || !opt->group_step) {
        adamw_free(opt);
        return error_set("Out of memory allocating %d AdamW groups.", n_groups);
    }
    opt->n_groups = n_groups;
    for (int i = 0; i < n_groups; i++) {
        opt->groups[i] = groups[i];
        opt->n_total += groups[i].n;
    }
    opt->m = be->alloc(be, opt->n_total * sizeof(Real));
    opt->v = be->alloc(be, opt->n_total * sizeof(Real));
    opt->stats = be->alloc(be, ADAMW_STATS_BYTES);
    if (!opt->m || !opt->v || !opt->stats) {
        const size_t n = opt->n_total;
        adamw_free(opt);
        return device_fail(be, "Out of memory allocating AdamW moments for %zu parameters.", n);
    }
    return LSC_OK;
}

void adamw_free(AdamW *opt) {
    free(opt->groups);
    free(opt->group_step);
    if (opt->be) {
        if (opt->m) opt->be->free(opt->be, opt->m);
        if (opt->v) opt->be->free(opt->be, opt->v);
        if (opt->stats) opt->be->free(opt->be, opt->stats);
    }
    memset(opt, 0, sizeof *opt);
}

void adamw_reset(AdamW *opt) {
    opt->be->zero(opt->be, opt->m, opt->n_total * sizeof(Real));
    opt->be->zero(opt->be, opt->v, opt->n_total * sizeof(Real));
    opt->step = 0;
    for (int i = 0; i < opt->n_groups; i++) opt->group_step[i] = 0;
}

static size_t group_offset(const AdamW *opt, int group) {
    size_t offset = 0;
    for (int i = 0; i < group; i++) offset += opt->groups[i].n;
    return offset;
}

void adamw_reset_group(AdamW *opt, int group, int restart_step) {
    LSC_ASSERT(group >= 0 && group < opt->n_groups);
    const size_t offset = group_offset(opt, group), n = opt->groups[group].n;
    opt->be->zero(opt->be, opt->m + offset, n * sizeof(Real));
    opt->be->zero(opt->be, opt->v + offset, n * sizeof(Real));
    if (restart_step) opt->group_step[group] = 0;
}

static int compare_real(const void *a, const void *b) {
    const Real x = *(const Real *)a, y = *(const Real *)b;
    return (x > y) - (x < y);
}

/* torch.quantile(x, q) of the magnitudes |x| in x's precision: rank q (n - 1), the two order
 * statistics around it, torch.lerp between them. */
static Real magnitude_quantile(const Real *x, size_t n, double q, Real *sorted) {
    for (size_t i = 0; i < n; i++) sorted[i] = (Real)fabs((double)x[i]);
    qsort(sorted, n, sizeof *sorted, compare_real);
    const Real rank = (Real)q * (Real)(n - 1);
    const size_t below = (size_t)rank, above = (size_t)ceil((double)rank);
    const Real w = rank - (Real)below, lo = sorted[below], hi = sorted[above < n ? above : n - 1];
    return w < (Real)0.5 ? lo + w * (hi - lo) : hi - (hi - lo) * ((Real)1 - w);
}

int adamw_prune_magnitude(AdamW *opt, const Real *p, size_t n, double ratio) {
    if (!(ratio > 0.0 && ratio < 1.0))
        return error_set("The optimizer's magnitude-pruning ratio must lie in (0, 1), got %g.", ratio);
    int group = -1;
    size_t offset = 0;
    for (int i = 0; i < opt->n_groups; i++) {
        const ParamGroup *g = &opt->groups[i];
        if (p >= g->p && p + n <= g->p + g->n) {
            group = i;
            offset += (size_t)(p - g->p);
            break;
        }
        offset += g->n;
    }
    LSC_ASSERT(group >= 0); /* the caller names a slice of one of its own groups */
    if (n == 0) return LSC_OK;
    Real *host = malloc(2 * n * sizeof(Real));
    if (!host) return error_set("Out of memory pruning the moments of %zu parameters.", n);
    Real *sorted = host + n;
    Real *moments[2] = {opt->m + offset, opt->v + offset};
    for (int k = 0; k < 2; k++) {
        opt->be->to_host(opt->be, host, moments[k], n * sizeof(Real));
        if (device_sync(opt->be) != LSC_OK) {
            free(host);
            return LSC_ERR;
        }
        const Real threshold = magnitude_quantile(host, n, ratio, sorted);
        for (size_t i = 0; i < n; i++)
            if (!((Real)fabs((double)host[i]) > threshold)) host[i] = 0;
        opt->be->to_device(opt->be, moments[k], host, n * sizeof(Real));
    }
    free(host);
    return LSC_OK;
}

double adamw_grad_norm(AdamW *opt) {
    double sum = 0.0;
    for (int i = 0; i < opt->n_groups; i++)
        sum += opt->be->sum_squares(opt->be, opt->groups[i].g, opt->groups[i].n);
    return sqrt(sum);
}

void adamw_step_dev(AdamW *opt, float lr, double *norm_out) {
    const AdamWConfig *c = &opt->config;
    Backend *be = opt->be;
    double *sumsq = opt->stats;
    float *scale = (float *)(opt->stats + 2);
    /* torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1 */
    be->zero(be, sumsq, sizeof *sumsq);
    for (int i = 0; i < opt->n_groups; i++)
        be->sum_squares_acc(be, sumsq, opt->groups[i].g, opt->groups[i].n);
    be->clip_scale(be, scale, norm_out ? norm_out : opt->stats + 1, sumsq, c->grad_clip);
    opt->step++;
    size_t offset = 0;
    for (int i = 0; i < opt->n_groups; i++) {
        const ParamGroup *g = &opt->groups[i];
        const long t = ++opt->group_step[i];
        const double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
        be->adamw_update_dev(be, g->p, g->g, opt->m + offset, opt->v + offset, g->n,
                             lr * g->lr_scale, c->beta1, c->beta2, c->eps, g->weight_decay,
                             scale, (float)bc1, (float)bc2);
        offset += g->n;
    }
}

double adamw_step(AdamW *opt, float lr) {
    double norm = NAN;
    adamw_step_dev(opt, lr, NULL);
    opt->be->to_host(opt->be, &norm, opt->stats + 1, sizeof norm);
    return norm;
}
