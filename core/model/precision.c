/* Precision names and the backend check (see precision.h). */
#include "core/model/precision.h"

#include <string.h>

#include "core/base/error.h"
#include "core/model/device.h"

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

int precision_widen(Backend *be, Real *fp32, const uint16_t *w16, size_t n, const char *name,
                    const char *what, Real **ptr, int *owned) {
    *owned = 0;
    *ptr = fp32;
    if (fp32 || !n) return LSC_OK;
    Real *wide = be->alloc(be, n * sizeof(Real));
    if (!wide)
        return device_fail(be, "Out of memory widening %s (%zu weights) of %s to fp32.", name, n, what);
    be->from_bf16(be, wide, w16, n);
    *ptr = wide;
    *owned = 1;
    return LSC_OK;
}

int stored_acts_check(const Backend *be, ModelPrecision p, const char *what) {
    if (p != PRECISION_FP32 && p != PRECISION_BF16)
        return error_set("Unknown activation storage %d for %s (fp32 or bf16).", (int)p, what);
    if (p == PRECISION_BF16 && (!be->to_bf16 || !be->from_bf16))
        return error_set("The %s backend of this build has no bf16 conversions: store the "
                         "activations in fp32 (activations = \"fp32\").", be->name);
    return LSC_OK;
}

void stored_acts_move(Backend *be, uint16_t *layer16, const StoredAct *list, int first,
                      int last, int pack) {
    uint16_t *p = layer16;
    for (int j = 0; j < last; j++) {
        if (j >= first) {
            if (pack) be->to_bf16(be, p, list[j].f32, list[j].n);
            else be->from_bf16(be, list[j].f32, p, list[j].n);
        }
        p += list[j].n;
    }
}
