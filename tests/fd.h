/* Central finite differences for the gradient checks (double-precision builds): d loss / d x[i]
 * for every element of a buffer on a backend, one element perturbed at a time and restored.
 * Shared by the per-op checks (tests/kernels/) and the whole-model ones
 * (tests/core/model/test_gradcheck_*.c). Not a tolerance check: see check.h. */
#ifndef LORASC_TESTS_FD_H
#define LORASC_TESTS_FD_H

#include <stddef.h>

#include "kernels/backend.h"

/* The scalar whose derivatives are taken, evaluated at the buffer's current contents. */
typedef double (*FdLoss)(void *ctx);

/* out[i] = (loss(x + step e_i) - loss(x - step e_i)) / (2 step) for i < n; x lives on be. */
static inline void fd_central(Backend *be, Real *x, size_t n, double step, FdLoss loss, void *ctx,
                              double *out) {
    for (size_t i = 0; i < n; i++) {
        Real orig, shifted;
        be->to_host(be, &orig, x + i, sizeof(Real));
        shifted = (Real)(orig + step);
        be->to_device(be, x + i, &shifted, sizeof(Real));
        const double plus = loss(ctx);
        shifted = (Real)(orig - step);
        be->to_device(be, x + i, &shifted, sizeof(Real));
        const double minus = loss(ctx);
        be->to_device(be, x + i, &orig, sizeof(Real));
        out[i] = (plus - minus) / (2 * step);
    }
}

#endif
