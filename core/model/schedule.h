/* Learning-rate schedules: warm-up then constant, linear or cosine decay, as Hugging Face's
 * get_*_schedule_with_warmup, plus an optional floor; and ReLoRA's jagged cosine. Pure functions of (step, length), so a
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
/* ReLoRA's jagged cosine (Guitaricet/relora, peft_pretraining/training_utils.py,
 * _get_cosine_schedule_with_multiple_warmups_lambda, adjust_step = 0), the multiplier of the
 * peak lr at update `step` (0-based) of `length`: a linear warm-up over first_warmup steps; a
 * cosine envelope from 1 down to min_lr_ratio over the steps after it; after each restart
 * (every restart_every steps), a linear re-warm-up over restart_warmup steps from 0 up to the
 * envelope's value at the end of that re-warm-up. Their formula, line for line, in double. */
double schedule_relora_factor(long step, long length, long first_warmup, long restart_warmup,
                              long restart_every, double min_lr_ratio);
/* "constant", "linear", "cosine" -> kind; -1 if unknown. */
int schedule_kind_parse(const char *name);
const char *schedule_kind_name(ScheduleKind k);

#endif
