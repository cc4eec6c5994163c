/* A compute device for the engine, opened by name: "cpu" or "cuda" and a thread count become a
 * Backend (kernels/backend.h), a failure one sentence in error_last(). Callers (the Lua host,
 * tools) open one device and hand it to model constructors. Also the engine's side of the
 * backend's sticky error: at its sync points (the end of a forward, a backward, an optimiser
 * step, an expert boundary, a read back to the host) core calls device_sync, which turns a
 * failed op into the engine's error, the backend's sentence naming the op, file and line.
 * Not here: the backends themselves, or which device a run uses (the harness's --device). */
#ifndef LORASC_DEVICE_H
#define LORASC_DEVICE_H

#include "core/base/error.h"
#include "kernels/backend.h"

/* *be = the backend of device `name` (threads <= 0: the backend's default). On failure *be is
 * NULL and the error says which device and how to get it (e.g. a build with CUDA). */
int device_open(Backend **be, const char *name, int threads);
/* Frees the backend after every model on it has been freed; NULL does nothing. */
void device_close(Backend *be);

/* Waits for every op issued on be: LSC_OK, or LSC_ERR with the backend's error sentence
 * (the first op that failed, its file and line, the cause) in error_last(). */
int device_sync(Backend *be);
/* Without waiting: LSC_ERR with the backend's sentence once it has recorded an error, else
 * LSC_OK. A training step's check between reads (a fault the device has not reported yet
 * surfaces at the next device_sync). */
int device_check(Backend *be);
/* 1 when be's memory is the host's (the CPU backend): reading it back costs nothing, so
 * loops may read every step's loss there. */
int device_is_host(const Backend *be);
/* For a failed allocation (or anything else the backend may have caused): LSC_ERR with the
 * backend's sentence when it recorded one (CUDA: the size asked and the memory free), else
 * with the sentence given here. */
int device_fail(Backend *be, const char *fmt, ...) LSC_PRINTF(2, 3);

#endif
