/* Learning-rate schedules (see schedule.h): HF get_{constant,linear,cosine}_schedule_with_warmup,
 * plus an optional floor; ReLoRA's cosine with restarts. */
#include "core/model/schedule.h"

#include <math.h>
#include <string.h>

float schedule_lr(const Schedule *s, long step, long length) {
    if (step < s->warmup_steps)
        return s->peak_lr * (float)((double)step / (double)(s->warmup_steps > 1 ? s->warmup_steps : 1));
    const double decay_len = (double)(length - s->warmup_steps > 1 ? length - s->warmup_steps : 1);
    const double progress = (double)(step - s->warmup_steps) / decay_len;
    double factor;
    switch (s->kind) {
    case SCHEDULE_LINEAR: factor = fmax(0.0, (double)(length - step) / decay_len); break;
    case SCHEDULE_COSINE: factor = fmax(0.0, 0.5 * (1.0 + cos(M_PI * progress))); break;
    case SCHEDULE_CONSTANT:
    default: return s->peak_lr;
    }
    const double floor = s->min_lr_ratio;
    return (float)(s->peak_lr * (floor + (1.0 - floor) * factor));
}

static long max_long(long a, long b) { return a > b ? a : b; }

double schedule_relora_factor(long step, long length, long first_warmup, long restart_warmup,
                              long restart_every, double min_lr_ratio) {
    if (step < first_warmup) return (double)step / (double)max_long(1, first_warmup);
    const long restart_step = step % restart_every, restart_number = step / restart_every;
    if (restart_step < restart_warmup && step >= restart_every) {
        /* the envelope's value where this re-warm-up ends */
        const double end_of_warmup_progress =
            (double)(restart_number * restart_every + restart_warmup - first_warmup) /
            (double)max_long(1, length - first_warmup);
        const double decay = 0.5 * (1.0 + cos(M_PI * end_of_warmup_progress));
        const double multiplier = min_lr_ratio + (1.0 - min_lr_ratio) * decay;
        return (double)restart_step / (double)max_long(1, restart_warmup) * multiplier;
    }
    const double progress = (double)(step - first_warmup) / (double)max_long(1, length - first_warmup);
    const double decay = 0.5 * (1.0 + cos(M_PI * progress));
    return min_lr_ratio + (1.0 - min_lr_ratio) * decay;
}

static const char *const schedule_names[] = {"constant", "linear", "cosine"};

int schedule_kind_parse(const char *name) {
    for (int k = 0; k < 3; k++)
        if (strcmp(name, schedule_names[k]) == 0) return k;
    return -1;
}

const char *schedule_kind_name(ScheduleKind k) {
    return (k >= 0 && k <= SCHEDULE_COSINE) ? schedule_names[k] : "?";
}
