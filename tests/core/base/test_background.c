/* core/base/background.c: a job's status and sentence come back to the waiting thread (errors
 * are per thread) and a discarded one leaves the caller's sentence alone; one worker runs every
 * job of a Background, in order, until it is stopped, and a stopped one starts again; the
 * worker runs concurrently with the caller and blocks every signal. */
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/base/background.h"
#include "core/base/error.h"

typedef struct Job {
    int fail;               /* 1: the job fails with a sentence */
    int ran;
    pthread_t thread;       /* the thread it ran on */
    int sigint_blocked;
    _Atomic int *gate;      /* when set, the job waits until *gate != 0 */
    int sleep_us;           /* then sleeps this long */
} Job;

static int job(void *p) {
    Job *j = p;
    while (j->gate && !atomic_load(j->gate)) usleep(100);
    if (j->sleep_us) usleep((useconds_t)j->sleep_us);
    j->ran++;
    j->thread = pthread_self();
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    j->sigint_blocked = sigismember(&now, SIGINT) == 1;
    if (j->fail) return error_set("job %d failed", j->ran);
    return LSC_OK;
}

static void test_status_and_sentence(void **state) {
    (void)state;
    Background bg = {0};
    Job ok = {0}, bad = {.fail = 1};
    background_start(&bg, job, &ok);
    assert_int_equal(background_wait(&bg), LSC_OK);
    assert_int_equal(ok.ran, 1);
    assert_true(ok.sigint_blocked);
    assert_false(pthread_equal(ok.thread, pthread_self()));
    error_clear();
    background_start(&bg, job, &bad);
    assert_int_equal(background_wait(&bg), LSC_ERR);
    assert_string_equal(error_last(), "job 1 failed"); /* set on the worker, read here */
    /* a discarded failure leaves this thread's sentence as it was */
    error_set("the caller's own sentence");
    background_start(&bg, job, &bad);
    background_discard(&bg);
    assert_int_equal(bad.ran, 2);
    assert_string_equal(error_last(), "the caller's own sentence");
    assert_int_equal(background_wait(&bg), LSC_OK); /* nothing live: nothing to wait for */
    background_stop(&bg);
}

static void test_one_worker_many_jobs(void **state) {
    (void)state;
    Background bg = {0};
    Job jobs[50];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < 50; i++) {
        background_start(&bg, job, &jobs[i]);
        assert_int_equal(background_wait(&bg), LSC_OK);
        assert_int_equal(jobs[i].ran, 1);
        assert_true(pthread_equal(jobs[i].thread, jobs[0].thread)); /* the same worker */
    }
    background_stop(&bg);
    background_stop(&bg); /* twice is safe */
    Job again = {0};
    background_start(&bg, job, &again); /* started again after a stop */
    assert_int_equal(background_wait(&bg), LSC_OK);
    assert_int_equal(again.ran, 1);
    background_stop(&bg);
}

/* The caller goes on while the job runs (the job waits for a gate only the caller opens), and
 * stop waits for a job still running. */
static void test_concurrent(void **state) {
    (void)state;
    Background bg = {0};
    _Atomic int gate = 0;
    Job j = {.gate = &gate};
    background_start(&bg, job, &j);
    usleep(2000);
    assert_int_equal(j.ran, 0); /* read before the gate opens: the job has not run */
    atomic_store(&gate, 1);
    assert_int_equal(background_wait(&bg), LSC_OK);
    assert_int_equal(j.ran, 1);
    Job slow = {.sleep_us = 20000};
    background_start(&bg, job, &slow);
    background_stop(&bg);
    assert_int_equal(slow.ran, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_and_sentence),
        cmocka_unit_test(test_one_worker_many_jobs),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
