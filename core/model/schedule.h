/* Learning-rate schedules: warm-up then constant, linear or cosine decay, as Hugging Face's
 * get_*_schedule_with_warmup, plus an optional floor. Pure functions of (step, length), so a
 * cascade can restart or compress them per expert. Not here: the optimizer (adamw.h). */
#ifndef LORASC_SCHEDULE_H
#define LORASC_SCHEDULE_H

typedef enum ScheduleKind {
    SCHEDULE_CONSTANT = 0,
    SCHEDULE_LINEAR,
    SCHEDULE_COSINE,
} ScheduleKind;

typedef struct Schedule {
    ScheduleKind kind;
    float peak_lr;
    long warmup_steps;  /* linear ramp from 0 */
    float min_lr_ratio; /* floor of linear/cosine decay, as a fraction of peak (0 = HF) */
} Schedule;

/* Learning rate for the update with 0-based index `step` of a schedule `length` updates
 * long; identical to HF's LambdaLR value for that step (so step 0 has lr 0 under warmup). */
float schedule_lr(const Schedule *s, long step, long length);
/* "constant", "linear", "cosine" -> kind; -1 if unknown. */
int schedule_kind_parse(const char *name);
const char *schedule_kind_name(ScheduleKind k);

#endif
