/* Error reporting for core/ and kernels/ callers: functions return an int status (0 = ok,
 * LSC_ERR = failure) and leave one human sentence in a thread-local last-error string.
 * Nothing here calls exit(): a Lua script can always recover. LSC_ASSERT is for internal
 * invariants only (programming errors), never for bad user input. */
#ifndef LORASC_ERROR_H
#define LORASC_ERROR_H

#include <stdio.h>
#include <stdlib.h>

#define LSC_OK 0
#define LSC_ERR (-1)

#if defined(__GNUC__)
#define LSC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define LSC_PRINTF(f, a)
#endif

/* Sets the last error (printf-style) and returns LSC_ERR, so callers can `return error_set(...)`. */
int error_set(const char *fmt, ...) LSC_PRINTF(1, 2);
/* The last error message set on this thread ("" if none). */
const char *error_last(void);
void error_clear(void);

#define LSC_ASSERT(cond)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "lorasc: internal error at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

#endif
