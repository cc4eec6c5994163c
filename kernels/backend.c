/* Backends by name: backend_create("cpu" | "cuda") and backend_destroy, so that callers
 * (core, the Lua bindings, tests) choose a device with a string and never include a
 * device's header. Not a backend itself: kernels/cpu and kernels/cuda fill the struct. */
#include <stdio.h>
#include <string.h>

#include "kernels/backend.h"
#include "lorasc_config.h"

/* The CUDA backend is built in float only: the double build (finite-difference checks)
 * links the CPU kernels alone. LORASC_CUDA_EMU: the test build that runs the CUDA kernels in
 * the CPU emulation (kernels/cuda/emu) also offers "cuda". */
#if (LORASC_HAVE_CUDA || defined(LORASC_CUDA_EMU)) && !defined(LORASC_REAL_DOUBLE)
#define BACKEND_WITH_CUDA 1
#else
#define BACKEND_WITH_CUDA 0
#endif

static void backend_error(char *err, size_t err_size, const char *fmt, const char *arg) {
    if (err && err_size) snprintf(err, err_size, fmt, arg);
}

Backend *backend_create(const char *name, int threads, char *err, size_t err_size) {
    if (err && err_size) err[0] = '\0';
    if (!name) name = "(null)";
    if (strcmp(name, "cpu") == 0) {
        Backend *be = backend_cpu_create(threads);
        if (!be) backend_error(err, err_size, "%s", "cannot create the CPU backend: out of memory");
        return be;
    }
    if (strcmp(name, "cuda") == 0) {
#if BACKEND_WITH_CUDA
        return backend_cuda_create(err, err_size);
#else
        backend_error(err, err_size, "%s",
#ifdef LORASC_REAL_DOUBLE
                      "the CUDA backend is not built into the double-precision kernels "
                      "(they exist for gradient checks); use device cpu there");
#else
                      "this lorasc was built without the CUDA backend; reconfigure with "
                      "meson setup -Dcuda=enabled (needs nvcc and cuBLAS) or use device cpu");
#endif
        return NULL;
#endif
    }
    backend_error(err, err_size, "unknown device '%s'; valid devices: cpu, cuda", name);
    return NULL;
}

void backend_destroy(Backend *be) {
    if (be) be->destroy(be);
}
