/* The compute libraries' own version strings (see build_info.h). */
#include "kernels/build_info.h"

#include <cblas.h>
#include <stdio.h>

#if defined(LORASC_HAVE_DNNL) && !defined(LORASC_REAL_DOUBLE)
#include <oneapi/dnnl/dnnl.h>
#endif

/* A JSON string's content: printable ASCII without quotes or backslashes. */
static void json_safe(char *dst, size_t size, const char *src) {
    size_t n = 0;
    for (; src && *src && n + 1 < size; src++)
        if (*src >= 0x20 && *src < 0x7f && *src != '"' && *src != '\\') dst[n++] = *src;
    dst[n] = '\0';
}

void kernels_library_versions(char *out, size_t size) {
    char config[256], core[64];
    json_safe(config, sizeof config, openblas_get_config());
    json_safe(core, sizeof core, openblas_get_corename());
    const int n = snprintf(out, size, "\"openblas\":\"%s\",\"openblas_core\":\"%s\"", config, core);
#if defined(LORASC_HAVE_DNNL) && !defined(LORASC_REAL_DOUBLE)
    /* the float build's matmuls run here (kernels/cpu/matmul_dnnl.c) */
    const dnnl_version_t *v = dnnl_version();
    if (n >= 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, ",\"onednn\":\"%d.%d.%d\"", v->major, v->minor,
                 v->patch);
#else
    (void)n;
#endif
}
