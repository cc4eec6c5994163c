/* Thread-local last-error string (see error.h). */
#include "core/base/error.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char last_error[1024];

/* Formats into a scratch buffer first, so a message may quote the previous one
 * (error_set("...: %s", error_last())) without reading the buffer it is writing. */
int error_set(const char *fmt, ...) {
    char message[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    memcpy(last_error, message, sizeof last_error);
    return LSC_ERR;
}

const char *error_last(void) { return last_error; }

void error_clear(void) { last_error[0] = '\0'; }
