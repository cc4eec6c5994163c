/* See background.h. */
#include "core/base/background.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "core/base/error.h"

/* Runs the posted job; keeps its sentence (errors are thread-local). */
static void run_job(Background *bg) {
    bg->rc = bg->fn(bg->arg);
    if (bg->rc != LSC_OK) snprintf(bg->error, sizeof bg->error, "%s", error_last());
}

static void *worker_main(void *p) {
    Background *bg = p;
    pthread_mutex_lock(&bg->lock);
    for (;;) {
        while (!bg->pending && !bg->quit) pthread_cond_wait(&bg->cond, &bg->lock);
        if (bg->quit) break;
        pthread_mutex_unlock(&bg->lock);
        run_job(bg);
        pthread_mutex_lock(&bg->lock);
        bg->pending = 0;
        pthread_cond_broadcast(&bg->cond);
    }
    pthread_mutex_unlock(&bg->lock);
    return NULL;
}

/* Makes the worker; 0 when no thread can be had. */
static int make_worker(Background *bg) {
    if (pthread_mutex_init(&bg->lock, NULL) != 0) return 0;
    if (pthread_cond_init(&bg->cond, NULL) != 0) {
        pthread_mutex_destroy(&bg->lock);
        return 0;
    }
    /* the new thread inherits this mask: every signal blocked */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    bg->made = pthread_create(&bg->thread, NULL, worker_main, bg) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!bg->made) pthread_cond_destroy(&bg->cond), pthread_mutex_destroy(&bg->lock);
    return bg->made;
}

void background_start(Background *bg, int (*fn)(void *), void *arg) {
    LSC_ASSERT(!bg->live);
    bg->fn = fn, bg->arg = arg, bg->rc = LSC_OK, bg->error[0] = '\0';
    bg->live = 1;
    if (!bg->made && !make_worker(bg)) {
        run_job(bg); /* no thread to be had: the work, done here */
        return;
    }
    pthread_mutex_lock(&bg->lock);
    bg->pending = 1;
    pthread_cond_broadcast(&bg->cond);
    pthread_mutex_unlock(&bg->lock);
}

/* Waits until the worker has finished the posted job. */
static void join_job(Background *bg) {
    if (!bg->made) return;
    pthread_mutex_lock(&bg->lock);
    while (bg->pending) pthread_cond_wait(&bg->cond, &bg->lock);
    pthread_mutex_unlock(&bg->lock);
}

int background_wait(Background *bg) {
    if (!bg->live) return LSC_OK;
    join_job(bg);
    bg->live = 0;
    if (bg->rc != LSC_OK) return error_set("%s", bg->error);
    return LSC_OK;
}

void background_discard(Background *bg) {
    if (bg->live) join_job(bg);
    bg->live = 0;
}

void background_stop(Background *bg) {
    background_discard(bg);
    if (bg->made) {
        pthread_mutex_lock(&bg->lock);
        bg->quit = 1;
        pthread_cond_broadcast(&bg->cond);
        pthread_mutex_unlock(&bg->lock);
        pthread_join(bg->thread, NULL);
        pthread_cond_destroy(&bg->cond);
        pthread_mutex_destroy(&bg->lock);
    }
    memset(bg, 0, sizeof *bg);
}
