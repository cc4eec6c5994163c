/* Test fixtures: tiny random Llama models and batches, seeded, never zeros. Header-only so
 * that both the f32 and the f64 test builds can include it. */
#ifndef LORASC_TESTS_MODEL_FIXTURE_H
#define LORASC_TESTS_MODEL_FIXTURE_H

#include <stdlib.h>

#include "core/model/llama.h"
#include "core/base/philox.h"

/* A tiny GQA config: C=8, H=12, L=2, NH=4, NKV=2, V=11, seq 8. */
static inline LlamaConfig fixture_tiny_config(RopeStyle style, int tied) {
    return (LlamaConfig){.dim = 8, .hidden_dim = 12, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                         .vocab_size = 11, .seq_len = 8, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                         .tied_embeddings = tied, .rope_style = style};
}

/* Matrices uniform in [-scale, scale), norm weights in [0.8, 1.2). */
static inline void fixture_randomize(Llama *m, uint64_t seed, double scale) {
    Real *host = malloc(m->num_params * sizeof(Real));
    Real *p = host;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        const size_t n = m->param_sizes[i];
        const int norm = i == LLAMA_RMS_ATT || i == LLAMA_RMS_FFN || i == LLAMA_RMS_FINAL;
        philox_uniform(p, n, seed, (uint64_t)(100 + i), norm ? 0.8 : -scale, norm ? 1.2 : scale);
        p += n;
    }
    m->be->to_device(m->be, m->params, host, m->num_params * sizeof(Real));
    free(host);
    llama_weights_changed(m);
}

/* Random tokens; targets are the next tokens (random too) with position 1 of each row masked. */
static inline void fixture_batch(int32_t *tokens, int32_t *targets, int B, int T, int V,
                                 uint64_t seed) {
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (int32_t)(philox_u32(seed, 7, (uint64_t)i) % (uint32_t)V);
        targets[i] = (int32_t)(philox_u32(seed, 8, (uint64_t)i) % (uint32_t)V);
    }
    for (int b = 0; b < B; b++) targets[b * T + 1] = -1;
}

/* Overwrites every adapter parameter (A and B) with uniform values, so B != 0 and dA != 0. */
static inline void fixture_randomize_lora(LoraAdapters *lora, uint64_t seed, double scale) {
    Real *host = malloc(lora->num_params * sizeof(Real));
    philox_uniform(host, lora->num_params, seed, 999, -scale, scale);
    lora->be->to_device(lora->be, lora->params, host, lora->num_params * sizeof(Real));
    free(host);
}

#endif
