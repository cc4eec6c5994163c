/* See background.h. */
#include "core/base/background.h"

#include <signal.h>
#include <stdio.h>

#include "core/base/error.h"

/* The worker: runs the function and keeps its sentence (errors are thread-local). */
static void *background_main(void *p) {
    Background *bg = p;
    bg->rc = bg->fn(bg->arg);
    if (bg->rc != LSC_OK) snprintf(bg->error, sizeof bg->error, "%s", error_last());
    return NULL;
}

void background_start(Background *bg, int (*fn)(void *), void *arg) {
    LSC_ASSERT(!bg->live);
    bg->fn = fn, bg->arg = arg, bg->rc = LSC_OK, bg->error[0] = '\0';
    /* the new thread inherits this mask: every signal blocked, so Ctrl-C and a scheduler's
     * SIGTERM keep reaching the thread that handles them */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    const int made = pthread_create(&bg->thread, NULL, background_main, bg) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!made) background_main(bg); /* no thread to be had: the work, done here */
    bg->threaded = made;
    bg->live = 1;
}

int background_wait(Background *bg) {
    if (!bg->live) return LSC_OK;
    if (bg->threaded) pthread_join(bg->thread, NULL);
    bg->live = 0;
    if (bg->rc != LSC_OK) return error_set("%s", bg->error);
    return LSC_OK;
}

void background_discard(Background *bg) {
    if (bg->live && bg->threaded) pthread_join(bg->thread, NULL);
    bg->live = 0;
}
