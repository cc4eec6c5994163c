/* The stop request (see stop.h): one lock-free flag a signal handler may write. */
#include "core/base/stop.h"

#include <signal.h>

static volatile sig_atomic_t requested;

void stop_request(int signal) {
    if (!requested && signal > 0) requested = signal;
}

int stop_requested(void) { return (int)requested; }

void stop_clear(void) { requested = 0; }
