/* Precision names and the backend check (see precision.h). */
#include "core/model/precision.h"

#include <string.h>

#include "core/base/error.h"

static const char *const names[] = {[PRECISION_FP32] = "fp32", [PRECISION_BF16] = "bf16", NULL};

const char *precision_name(int p) {
    return p >= 0 && p < (int)(sizeof names / sizeof names[0]) ? names[p] : NULL;
}

int precision_parse(const char *s) {
    for (int i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

int precision_check_backend(const Backend *be, const char *what) {
    if (be->to_bf16 && be->from_bf16 && be->matmul_bf16) return LSC_OK;
#ifdef LORASC_REAL_DOUBLE
    return error_set("The double-precision build has no bf16 ops (it exists for gradient "
                     "checks): %s stays in fp32 there.", what);
#else
    return error_set("precision = \"bf16\" needs a bf16 matmul, which the %s backend of this "
                     "lorasc lacks for %s (the CPU's comes with oneDNN: install libdnnl-dev "
                     "and rebuild); use precision = \"fp32\".", be->name, what);
#endif
}
