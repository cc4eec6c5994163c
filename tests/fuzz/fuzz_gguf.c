/* libFuzzer harness: the GGUF container reader on arbitrary bytes; every key/value, string
 * array and tensor it accepts must be readable within the buffer (ASan checks the bounds),
 * and every dequantisable tensor is dequantised. Replayed over the corpus by replay.c. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/base/error.h"
#include "core/base/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Gguf g;
    if (gguf_open_mem(&g, data, size, "fuzz.gguf") != LSC_OK) return 0;
    volatile unsigned sum = 0;
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const GgufKV *kv = &g.kv[i];
        for (uint64_t j = 0; j < kv->key.len; j++) sum += (unsigned char)kv->key.data[j];
        if (kv->type == GGUF_TYPE_STRING && kv->str.len) sum += (unsigned char)kv->str.data[kv->str.len - 1];
        if (kv->type != GGUF_TYPE_ARRAY || !kv->n) continue;
        if (kv->elem_type == GGUF_TYPE_STRING) {
            for (uint64_t j = 0; j < kv->n; j++)
                if (kv->strings[j].len) sum += (unsigned char)kv->strings[j].data[kv->strings[j].len - 1];
        } else if (kv->elem_type != GGUF_TYPE_ARRAY && kv->elem_type != GGUF_TYPE_BOOL) {
            sum += (unsigned)gguf_array_float(kv, kv->n - 1) != 0;
        }
        char key[64];
        const size_t n = kv->key.len < sizeof key - 1 ? kv->key.len : sizeof key - 1;
        for (size_t j = 0; j < n; j++) key[j] = kv->key.data[j];
        key[n] = 0;
        int64_t v;
        double f;
        GgufString s;
        (void)gguf_get_int(&g, key, &v);
        (void)gguf_get_float(&g, key, &f);
        (void)gguf_get_string(&g, key, &s);
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const GgufTensor *t = &g.tensors[i];
        if (t->n_bytes) sum += t->data[t->n_bytes - 1];
        if (t->n_elements > (1u << 20) || !ggml_can_dequantize(t->type)) continue;
        float *out = malloc((t->n_elements ? t->n_elements : 1) * sizeof *out);
        if (out) (void)gguf_tensor_to_float(&g, t, out, t->n_elements);
        free(out);
    }
    gguf_close(&g);
    return 0;
}
