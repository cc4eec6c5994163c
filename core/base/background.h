/* A worker thread that runs one function at a time while the caller goes on: how the image
 * sampler and the evaluation loop decode the next batch of a streamed image set while the
 * device computes on this one (core/tasks/image_train.c, core/tasks/image_task.c). The thread
 * is made at the first job and kept until background_stop, so the OpenMP team the decoding
 * runs on is made once, not per batch. The function's status and error sentence come back to
 * the waiting thread (errors are per thread, core/base/error.h). The worker blocks every
 * signal, so Ctrl-C and a scheduler's SIGTERM keep reaching the threads that handle them. */
#ifndef LORASC_BACKGROUND_H
#define LORASC_BACKGROUND_H

#include <pthread.h>

typedef struct Background {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int made;             /* the thread (and lock, cond) exist */
    int pending;          /* a job is posted and not yet done (under lock) */
    int quit;             /* the thread is to end (under lock) */
    int live;             /* a job was started and not yet waited for */
    int (*fn)(void *);
    void *arg;
    int rc;               /* the last job's status */
    char error[1024];     /* its error sentence when rc != LSC_OK */
} Background;

/* Starts fn(arg) on the worker (zero-initialise bg before the first start). Where no thread
 * can be made, fn runs here, now: the result is the same, only later. bg must not be live. */
void background_start(Background *bg, int (*fn)(void *), void *arg);
/* Waits for the job (no-op when bg is not live) and returns its status; on failure its
 * sentence is this thread's last error. */
int background_wait(Background *bg);
/* Waits for the job and drops its result: this thread's last error stays as it was. */
void background_discard(Background *bg);
/* Waits for any job, ends the thread; bg is zeroed (it may be started again). */
void background_stop(Background *bg);

#endif
