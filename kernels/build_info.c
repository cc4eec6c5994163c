/* The compute libraries' own version strings (see build_info.h). */
#include "kernels/build_info.h"

#include <cblas.h>
#include <stdio.h>

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
    snprintf(out, size, "\"openblas\":\"%s\",\"openblas_core\":\"%s\"", config, core);
}
