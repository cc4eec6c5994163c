/* Internal invariants of the kernels (programming errors, never bad user input): prints
 * file:line and the condition, then aborts. kernels/ includes nothing from core/, so this is
 * its own small copy of core/base/error.h's LSC_ASSERT (the same message). */
#ifndef LORASC_KERNEL_ASSERT_H
#define LORASC_KERNEL_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define KERNEL_ASSERT(cond)                                                                    \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "lorasc: internal error at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

#endif
