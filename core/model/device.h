/* A compute device for the engine, opened by name: "cpu" or "cuda" and a thread count become a
 * Backend (kernels/backend.h), a failure one sentence in error_last(). Callers (the Lua host,
 * tools) open one device and hand it to model constructors. Not here: the backends themselves,
 * or which device a run uses (the harness's --device). */
#ifndef LORASC_DEVICE_H
#define LORASC_DEVICE_H

#include "kernels/backend.h"

/* *be = the backend of device `name` (threads <= 0: the backend's default). On failure *be is
 * NULL and the error says which device and how to get it (e.g. a build with CUDA). */
int device_open(Backend **be, const char *name, int threads);
/* Frees the backend after every model on it has been freed; NULL does nothing. */
void device_close(Backend *be);

#endif
