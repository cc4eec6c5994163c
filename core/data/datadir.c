/* Data-directory lookup (see datadir.h). */
#include "core/data/datadir.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/base/error.h"

const char *datadir_root(void) {
    const char *env = getenv("LORASC_DATA");
    return (env && *env) ? env : "data";
}

int datadir_path(char *out, size_t size, const char *relative) {
    int n = snprintf(out, size, "%s/%s", datadir_root(), relative);
    if (n < 0 || (size_t)n >= size) return error_set("Data path too long: %s/%s", datadir_root(), relative);
    return LSC_OK;
}

int datadir_has(const char *relative) {
    char path[4096];
    return datadir_path(path, sizeof path, relative) == LSC_OK && access(path, R_OK) == 0;
}
