/* The results of training steps (loss, gradient norm) kept in backend memory until the host
 * asks: on a GPU a step then reads nothing back and waits for nothing; a log of
 * STEP_LOG_SLOTS steps is read in one copy when it fills or when the results are taken.
 * Used by fine-tuning (finetune.c), Llama pretraining (train.c's train_step_dev) and ViT
 * pretraining (core/tasks/image_train.c). Not here: what a step computes. */
#ifndef LORASC_STEP_LOG_H
#define LORASC_STEP_LOG_H

#include "core/model/train.h"

enum { STEP_LOG_SLOTS = 64 }; /* steps the device log holds before a read empties it */

typedef struct StepLog {
    Backend *be;
    double *dev;          /* [STEP_LOG_SLOTS][2] in backend memory: loss, gradient norm */
    int n;                /* steps written to dev, not read yet */
    StepResult *queue;    /* steps read from dev when it filled, oldest first */
    int queue_n, queue_cap;
} StepLog;

int step_log_init(StepLog *log, Backend *be);
void step_log_free(StepLog *log);
/* The next step's two doubles in backend memory (loss, then gradient norm), the log read
 * into the queue first if it is full; NULL on failure (error set). step_log_commit after the
 * step has written them. */
double *step_log_slot(StepLog *log);
void step_log_commit(StepLog *log);
/* Steps whose results were not taken. */
int step_log_pending(const StepLog *log);
/* Every pending result, oldest first, into out[0..step_log_pending(log)) (one read back and
 * a wait), none pending after. */
int step_log_take(StepLog *log, StepResult *out);
/* The newest step's result (one read back and a wait); the older ones stay pending. */
int step_log_take_last(StepLog *log, StepResult *out);
/* Forgets every pending result (a run restored from a saved state). */
void step_log_clear(StepLog *log);

#endif
