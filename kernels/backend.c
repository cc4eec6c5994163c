/* Backends by name: the one place that turns a device name ("cpu", "cuda") into a Backend,
 * so the engine and the harness pick a device by a string (--device) and never call one
 * backend's own constructor. Not here: the backends themselves (kernels/cpu, kernels/cuda). */
#include <stdio.h>
#include <string.h>

#include "kernels/backend.h"

Backend *backend_create(const char *name, int threads, char *err, size_t err_size) {
    if (err && err_size) err[0] = '\0';
    if (!name) name = "(none)";
    if (strcmp(name, "cpu") == 0) {
        Backend *be = backend_cpu_create(threads);
        if (!be && err) snprintf(err, err_size, "cannot create the CPU backend (out of memory)");
        return be;
    }
    if (strcmp(name, "cuda") == 0) {
        if (err) snprintf(err, err_size, "lorasc was built without CUDA (meson setup -Dcuda=enabled)");
        return NULL;
    }
    if (err) snprintf(err, err_size, "unknown device '%s'; valid devices: cpu, cuda", name);
    return NULL;
}

void backend_destroy(Backend *be) {
    if (!be) return;
    if (strcmp(be->name, "cpu") == 0) backend_cpu_destroy(be);
}
