/* Llama inference with a key/value cache: the forward of llama.c for one sequence, fed in
 * chunks, keeping every layer's rotated keys and values so that the next token only needs
 * its own row. Used for greedy generation (GSM8K, SQuAD, DROP, BBH evaluation).
 * Not here: training (llama.c), sampling other than greedy, batches of sequences. */
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/model/device.h"
#include "core/model/llama.h"
#include "core/model/llama_internal.h"

enum { DECODE_CHUNK = 128 }; /* prompt rows per forward: bounds the scratch, not the prompt */

/* Carves the cache and the chunk scratch from d->arena (measuring when it has no block). */
static void decoder_carve(LlamaDecoder *d) {
    const LlamaConfig *c = &d->m->config;
    const size_t L = (size_t)c->n_layers, C = (size_t)c->dim, H = (size_t)c->hidden_dim;
    const size_t HD = (size_t)llama_head_dim(c), qdim = (size_t)c->n_heads * HD;
    const size_t kvdim = (size_t)c->n_kv_heads * HD, R = (size_t)d->rows;
    arena_reset(&d->arena);
    d->k = arena_alloc(&d->arena, L * (size_t)d->capacity * kvdim);
    d->v = arena_alloc(&d->arena, L * (size_t)d->capacity * kvdim);
    d->x = arena_alloc(&d->arena, R * C);
    d->xn = arena_alloc(&d->arena, R * C);
    d->q = arena_alloc(&d->arena, R * qdim);
    d->atty = arena_alloc(&d->arena, R * qdim);
    d->mid = arena_alloc(&d->arena, R * C);
    d->gate = arena_alloc(&d->arena, R * H);
    d->up = arena_alloc(&d->arena, R * H);
    d->proj = arena_alloc(&d->arena, R * C);
    d->logits = arena_alloc(&d->arena, (size_t)c->vocab_size);
    /* token ids travel as int32 in a Real-sized slot (4 or 8 bytes each, so it always fits) */
    d->tokens = (int32_t *)arena_alloc(&d->arena, R);
}

int llama_decoder_create(LlamaDecoder *d, Llama *m, int capacity) {
    memset(d, 0, sizeof *d);
    if (capacity <= 0 || capacity > m->config.seq_len) capacity = m->config.seq_len;
    d->m = m;
    d->capacity = capacity;
    d->rows = capacity < DECODE_CHUNK ? capacity : DECODE_CHUNK;
    d->arena = arena_measure();
    decoder_carve(d);
    const size_t bytes = d->arena.used;
    d->arena = (Arena){0};
    if (arena_reserve(&d->arena, m->be, bytes) != LSC_OK)
        return device_fail(m->be, "Out of memory for a key/value cache of %d positions (%zu MiB).",
                           capacity, bytes >> 20);
    decoder_carve(d);
    return LSC_OK;
}

void llama_decoder_free(LlamaDecoder *d) {
    arena_free(&d->arena);
    memset(d, 0, sizeof *d);
}

void llama_decoder_reset(LlamaDecoder *d) { d->pos = 0; }

/* One chunk of n <= rows tokens at positions d->pos..: llama_forward's layer loop, with k and v
 * written into the cache and attention reading the cache. Only the last row's logits. */
static int decoder_chunk(LlamaDecoder *d, const int32_t *tokens, int n) {
    Llama *m = d->m;
    const LlamaConfig *c = &m->config;
    Backend *be = m->be;
    const int C = c->dim, H = c->hidden_dim, pos = d->pos;
    const int NH = c->n_heads, NKV = c->n_kv_heads, HD = llama_head_dim(c);
    const int qdim = NH * HD, kvdim = NKV * HD;
    Real *const *w = m->w.tensors;
    if (m->lora && !m->lora->merged && lora_reserve(m->lora, n) != LSC_OK) return LSC_ERR;
    llama_refresh_bf16(m);

    be->to_device(be, d->tokens, tokens, (size_t)n * sizeof(int32_t));
    be->embedding_forward(be, d->x, d->tokens, w[LLAMA_TOKEN_EMBEDDING], n, C);
    for (int l = 0; l < c->n_layers; l++) {
        Real *kc = d->k + (size_t)l * d->capacity * kvdim, *vc = d->v + (size_t)l * d->capacity * kvdim;
        Real *knew = kc + (size_t)pos * kvdim, *vnew = vc + (size_t)pos * kvdim;
        /* attention block (llama.c: mid = x + attn(...) Wo^T), new keys/values into the cache */
        be->rmsnorm_forward(be, d->xn, d->mid, d->x, llama_layer_slice(w[LLAMA_RMS_ATT], C, l), n, C,
                            c->norm_eps); /* mid holds rstd here: it is free until the residual */
        llama_weight_matmul(m, d->q, d->xn, llama_tensor_of_target(LORA_Q), l, n, 0, 0);
        llama_adapter_forward(m, d->q, d->xn, l, LORA_Q, n);
        llama_weight_matmul(m, knew, d->xn, llama_tensor_of_target(LORA_K), l, n, 0, 0);
        llama_adapter_forward(m, knew, d->xn, l, LORA_K, n);
        llama_weight_matmul(m, vnew, d->xn, llama_tensor_of_target(LORA_V), l, n, 0, 0);
        llama_adapter_forward(m, vnew, d->xn, l, LORA_V, n);
        be->rope_forward(be, d->q, m->rope_cos, m->rope_sin, 1, n, NH, HD, pos, c->rope_style);
        be->rope_forward(be, knew, m->rope_cos, m->rope_sin, 1, n, NKV, HD, pos, c->rope_style);
        be->attention_decode_forward(be, d->atty, d->q, kc, vc, n, pos, NH, NKV, HD);
        llama_residual_projection(m, d->mid, d->x, d->atty, l, LORA_O, n, qdim, d->proj);
        /* feed-forward block: x = mid + (silu(xn W1^T) * (xn W3^T)) W2^T */
        be->rmsnorm_forward(be, d->xn, d->x, d->mid, llama_layer_slice(w[LLAMA_RMS_FFN], C, l), n,
                            C, c->norm_eps); /* x holds rstd: it is rewritten below */
        llama_weight_matmul(m, d->gate, d->xn, llama_tensor_of_target(LORA_GATE), l, n, 0, 0);
        llama_adapter_forward(m, d->gate, d->xn, l, LORA_GATE, n);
        llama_weight_matmul(m, d->up, d->xn, llama_tensor_of_target(LORA_UP), l, n, 0, 0);
        llama_adapter_forward(m, d->up, d->xn, l, LORA_UP, n);
        be->swiglu_forward(be, d->gate, d->gate, d->up, (size_t)n * H);
        llama_residual_projection(m, d->x, d->mid, d->gate, l, LORA_DOWN, n, H, d->proj);
    }
    /* the last row only: final norm and classifier */
    const Real *last = d->x + (size_t)(n - 1) * C;
    be->rmsnorm_forward(be, d->xn, d->mid, last, w[LLAMA_RMS_FINAL], 1, C, c->norm_eps);
    llama_weight_matmul(m, d->logits, d->xn, LLAMA_WCLS, 0, 1, 0, 0);
    d->pos += n;
    return LSC_OK;
}

int llama_decoder_feed(LlamaDecoder *d, const int32_t *tokens, int n, Real *logits) {
    const int V = d->m->config.vocab_size;
    if (n <= 0) return error_set("llama_decoder_feed needs at least one token, got %d.", n);
    if (d->pos + n > d->capacity)
        return error_set("The key/value cache holds %d positions; %d + %d tokens do not fit.",
                         d->capacity, d->pos, n);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return error_set("Token %d at position %d is outside the vocabulary [0, %d).",
                             tokens[i], d->pos + i, V);
    for (int i = 0; i < n; i += d->rows) {
        const int chunk = n - i < d->rows ? n - i : d->rows;
        if (decoder_chunk(d, tokens + i, chunk) != LSC_OK) return LSC_ERR;
    }
    if (logits) d->m->be->to_host(d->m->be, logits, d->logits, (size_t)V * sizeof(Real));
    return device_sync(d->m->be); /* the chunk's ops (and the read) have run */
}

int llama_argmax(const Real *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

int llama_generate_greedy(Llama *m, int32_t *tokens, int n_prompt, int n_total) {
    const int V = m->config.vocab_size;
    if (n_prompt <= 0 || n_total > m->config.seq_len)
        return error_set("Greedy generation needs 0 < prompt (%d) and total length (%d) <= seq_len %d.",
                         n_prompt, n_total, m->config.seq_len);
    if (n_total <= n_prompt) return LSC_OK;
    Real *row = malloc((size_t)V * sizeof(Real));
    if (!row) return error_set("Out of memory for a row of %d logits.", V);
    LlamaDecoder d;
    int rc = llama_decoder_create(&d, m, n_total);
    if (rc == LSC_OK) rc = llama_decoder_feed(&d, tokens, n_prompt, row);
    for (int t = n_prompt; rc == LSC_OK && t < n_total; t++) {
        tokens[t] = llama_argmax(row, V);
        if (t + 1 < n_total) rc = llama_decoder_feed(&d, tokens + t, 1, row);
    }
    llama_decoder_free(&d);
    free(row);
    return rc;
}
