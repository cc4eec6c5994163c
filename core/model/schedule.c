/* Learning-rate schedules (see schedule.h): HF get_{constant,linear,cosine}_schedule_with_warmup,
 * plus an optional floor. */
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

static const char *const schedule_names[] = {"constant", "linear", "cosine"};

int schedule_kind_parse(const char *name) {
    for (int k = 0; k < 3; k++)
        if (strcmp(name, schedule_names[k]) == 0) return k;
    return -1;
}

const char *schedule_kind_name(ScheduleKind k) {
    return (k >= 0 && k <= SCHEDULE_COSINE) ? schedule_names[k] : "?";
}
