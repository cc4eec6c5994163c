/* Opening and closing a compute device by name, and the backend's sticky error turned into
 * the engine's (see device.h): a thin layer over kernels/backend.h. */
#include "core/model/device.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int device_open(Backend **be, const char *name, int threads) {
    char err[256];
    *be = backend_create(name, threads, err, sizeof err);
    if (!*be) return error_set("%s", err); /* the sentence names the device already */
    return LSC_OK;
}

void device_close(Backend *be) { backend_destroy(be); }

int device_sync(Backend *be) {
    if (be->sync(be) == 0) return LSC_OK;
    const char *e = be->error(be);
    return error_set("%s",
                     e ? e : "the device failed without saying why (backend sync returned -1)");
}

int device_check(Backend *be) {
    const char *e = be->error(be);
    return e ? error_set("%s", e) : LSC_OK;
}

int device_is_host(const Backend *be) { return strcmp(be->name, "cpu") == 0; }

int device_fail(Backend *be, const char *fmt, ...) {
    const char *e = be ? be->error(be) : NULL;
    if (e) return error_set("%s", e);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return error_set("%s", msg);
}
