/* Thread-local last-error string (see error.h). */
#include "core/error.h"

#include <stdarg.h>

static _Thread_local char last_error[1024];

int error_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return LSC_ERR;
}

const char *error_last(void) { return last_error; }

void error_clear(void) { last_error[0] = '\0'; }
