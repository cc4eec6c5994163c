/* llama2.c legacy checkpoints (see llama2c.h): the header, a size check against it, and the
 * weights copied tensor by tensor into a Llama.
 *
 * Layout (run.c): int32 {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len}, then fp32 token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3,
 * rms_final, freq_cis_real and freq_cis_imag [seq_len, HD/2] (unused: we rebuild them), and
 * wcls when vocab_size < 0. */
#include "core/formats/llama2c.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/error.h"
#include "core/model/device.h"

int llama2c_load(const char *path, Llama *model, Backend *be) {
    memset(model, 0, sizeof *model);
    FILE *f = fopen(path, "rb");
    if (!f) return error_set("Cannot open llama2.c checkpoint %s: %s.", path, strerror(errno));
    int32_t h[7];
    struct stat st;
    int rc = LSC_OK;
    float *buf = NULL;
    if (fstat(fileno(f), &st) != 0 || fread(h, sizeof(int32_t), 7, f) != 7) {
        rc = error_set("%s is too short to be a llama2.c checkpoint (no 28-byte header).", path);
        goto cleanup;
    }
    if ((uint32_t)h[0] == 0x616b3432u) {
        rc = error_set("%s is a llama2.c version-1 export (magic 'ak42'); lorasc reads the legacy "
                       "format written by export.py --version 0.", path);
        goto cleanup;
    }
    LlamaConfig c = {.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3],
                     .n_kv_heads = h[4], .vocab_size = h[5] < 0 ? -h[5] : h[5], .seq_len = h[6],
                     .rope_theta = 10000.0f, .norm_eps = 1e-5f, .tied_embeddings = h[5] > 0,
                     .rope_style = ROPE_INTERLEAVED};
    if (llama_config_validate(&c) != LSC_OK) {
        rc = error_set("%s does not have a valid llama2.c header: %s", path, error_last());
        goto cleanup;
    }
    size_t sizes[LLAMA_NUM_PARAM_TENSORS], expected = 0;
    llama_param_sizes(&c, sizes);
    const size_t freq = (size_t)c.seq_len * (size_t)(c.dim / c.n_heads / 2);
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) expected += sizes[i];
    expected += 2 * freq;
    const uint64_t want_bytes = 28 + (uint64_t)expected * 4;
    if ((uint64_t)st.st_size != want_bytes) {
        rc = error_set("%s has %lld bytes but its header (dim %d, hidden %d, %d layers, %d heads, "
                       "%d kv heads, vocab %d, seq %d) implies %llu: the file is truncated or not "
                       "a legacy llama2.c checkpoint.", path, (long long)st.st_size, c.dim,
                       c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
                       (unsigned long long)want_bytes);
        goto cleanup;
    }
    if ((rc = llama_create(model, be, &c)) != LSC_OK) goto cleanup;
    buf = malloc((expected) * sizeof(float));
    if (!buf || fread(buf, sizeof(float), expected, f) != expected) {
        rc = error_set("Cannot read the weights of %s.", path);
        goto cleanup;
    }
    /* copy tensor by tensor, skipping the rope tables that sit before wcls */
    const float *src = buf;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        if (i == LLAMA_WCLS) src += 2 * freq;
        if (!sizes[i]) continue;
        Real *host = malloc(sizes[i] * sizeof(Real));
        if (!host) {
            rc = error_set("Out of memory loading %s.", path);
            goto cleanup;
        }
        for (size_t j = 0; j < sizes[i]; j++) host[j] = (Real)src[j];
        be->to_device(be, model->w.tensors[i], host, sizes[i] * sizeof(Real));
        free(host);
        src += sizes[i];
    }
    llama_weights_changed(model);
    rc = device_sync(be);
cleanup:
    if (rc != LSC_OK && model->be) llama_free(model);
    free(buf);
    fclose(f);
    return rc;
}
