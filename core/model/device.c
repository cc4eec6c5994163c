/* Opening and closing a compute device by name (see device.h): a thin layer over
 * kernels/backend.c's backend_create that puts its failure into the engine's error string. */
#include "core/model/device.h"

#include "core/base/error.h"

int device_open(Backend **be, const char *name, int threads) {
    char err[256];
    *be = backend_create(name, threads, err, sizeof err);
    if (!*be) return error_set("%s", err); /* the sentence names the device already */
    return LSC_OK;
}

void device_close(Backend *be) { backend_destroy(be); }
