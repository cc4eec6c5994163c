/* A process-wide request to stop: Ctrl-C, SIGTERM, a scheduler's preemption signal. The host
 * sets it from a signal handler (lua/bind_sys.c installs one for `lorasc run`); long loops in
 * core read it between units of work (task_evaluate between examples) and return an error
 * that says so, and the harness's training loop reads it after every step to save the run's
 * state and stop. Only the flag: no handler, no policy. */
#ifndef LORASC_STOP_H
#define LORASC_STOP_H

/* Records the request (the signal's number, > 0). Async-signal-safe. */
void stop_request(int signal);
/* The signal number of the first request since the last stop_clear, or 0. */
int stop_requested(void);
void stop_clear(void);

#endif
