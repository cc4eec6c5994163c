/* One function run on a thread of its own while the caller goes on: how the image sampler and
 * the evaluation loop decode the next batch of a streamed image set while the device computes
 * on this one (core/tasks/image_train.c, core/tasks/image_task.c). The function's status and
 * error sentence come back to the waiting thread (errors are per thread, core/base/error.h).
 * Signals stay with the threads that had them: the worker blocks them all. */
#ifndef LORASC_BACKGROUND_H
#define LORASC_BACKGROUND_H

#include <pthread.h>

typedef struct Background {
    pthread_t thread;
    int (*fn)(void *);
    void *arg;
    int live;             /* started, not yet waited for */
    int threaded;         /* it runs on `thread` (else it ran in background_start) */
    int rc;               /* fn's status */
    char error[1024];     /* fn's error sentence when rc != LSC_OK */
} Background;

/* Starts fn(arg) on a new thread. Where no thread can be made, fn runs here, now: the
 * result is the same, only later. bg must not be live. */
void background_start(Background *bg, int (*fn)(void *), void *arg);
/* Waits for the function (no-op when bg is not live) and returns its status; on failure its
 * sentence is this thread's last error. */
int background_wait(Background *bg);
/* Waits for the function and drops its result: this thread's last error stays as it was. */
void background_discard(Background *bg);

#endif
