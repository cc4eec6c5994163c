/* What the compute libraries this binary runs on say about themselves, for the run store:
 * a run records them beside the commit it was built from (lua/build_info.h). */
#ifndef LORASC_KERNELS_BUILD_INFO_H
#define LORASC_KERNELS_BUILD_INFO_H

#include <stddef.h>

/* Writes a JSON object's members (no braces), e.g. "openblas":"OpenBLAS 0.3.21 ...",
 * "openblas_core":"Haswell", and in float builds linked with oneDNN "onednn":"2.6.3", into
 * out. */
void kernels_library_versions(char *out, size_t size);

#endif
