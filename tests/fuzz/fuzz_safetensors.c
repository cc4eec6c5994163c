/* libFuzzer harness: the safetensors parser on arbitrary bytes; every tensor it accepts must
 * be readable within the buffer (ASan checks the bounds). Replayed over the corpus by
 * replay.c in the regular build. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/base/error.h"
#include "core/formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    SafeTensors st;
    if (safetensors_open_mem(&st, data, size, "fuzz.safetensors") != LSC_OK) return 0;
    for (int i = 0; i < st.n_tensors; i++) {
        const StTensor *t = &st.tensors[i];
        if (t->numel > (1u << 20)) continue;
        Real *out = malloc((t->numel ? t->numel : 1) * sizeof *out);
        if (out) (void)safetensors_read(&st, t, out);
        free(out);
    }
    safetensors_close(&st);
    return 0;
}
