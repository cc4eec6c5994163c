/* A log of training steps' results in backend memory (step_log.h). */
#include "core/model/step_log.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/model/device.h"

int step_log_init(StepLog *log, Backend *be) {
    memset(log, 0, sizeof *log);
    log->be = be;
    log->dev = be->alloc(be, 2 * STEP_LOG_SLOTS * sizeof(double));
    if (!log->dev) return device_fail(be, "Out of memory allocating the step log.");
    return LSC_OK;
}

void step_log_free(StepLog *log) {
    if (log->dev) log->be->free(log->be, log->dev);
    free(log->queue);
    memset(log, 0, sizeof *log);
}

/* Reads the device log's n results into the queue (one read, then a wait). */
static int read_dev(StepLog *log) {
    if (log->n == 0) return LSC_OK;
    Backend *be = log->be;
    if (log->queue_n + log->n > log->queue_cap) {
        const int cap = 2 * (log->queue_n + log->n);
        StepResult *q = realloc(log->queue, (size_t)cap * sizeof *q);
        if (!q) return error_set("Out of memory keeping %d steps' results.", cap);
        log->queue = q;
        log->queue_cap = cap;
    }
    double host[2 * STEP_LOG_SLOTS];
    be->to_host(be, host, log->dev, 2 * (size_t)log->n * sizeof(double));
    if (device_sync(be) != LSC_OK) return LSC_ERR; /* every op of those steps has run */
    for (int i = 0; i < log->n; i++)
        log->queue[log->queue_n++] = (StepResult){.loss = host[2 * i], .grad_norm = host[2 * i + 1]};
    log->n = 0;
    return LSC_OK;
}

double *step_log_slot(StepLog *log) {
    if (log->n == STEP_LOG_SLOTS && read_dev(log) != LSC_OK) return NULL;
    return log->dev + 2 * log->n;
}

void step_log_commit(StepLog *log) { log->n++; }

int step_log_pending(const StepLog *log) { return log->queue_n + log->n; }

int step_log_take(StepLog *log, StepResult *out) {
    if (read_dev(log) != LSC_OK) return LSC_ERR;
    if (log->queue_n) memcpy(out, log->queue, (size_t)log->queue_n * sizeof *out);
    log->queue_n = 0;
    return LSC_OK;
}

int step_log_take_last(StepLog *log, StepResult *out) {
    if (read_dev(log) != LSC_OK) return LSC_ERR;
    LSC_ASSERT(log->queue_n > 0);
    *out = log->queue[--log->queue_n];
    return LSC_OK;
}

void step_log_clear(StepLog *log) { log->n = log->queue_n = 0; }
