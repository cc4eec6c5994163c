/* Llama inference with a key/value cache: the forward of llama.c for one sequence, fed in
 * chunks, keeping every layer's rotated keys and values so that the next token only needs
 * its own row. Used for greedy generation (GSM8K, SQuAD, DROP, BBH evaluation).
 * A batch of decoders can also take one token each in a single forward (llama_decode_batch_step).
 * Not here: training (llama.c), sampling other than greedy. */
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

/* A layer's query, key and value projections of the n rows of xn (adapters applied). */
static void decode_qkv(Llama *m, Real *q, Real *k, Real *v, const Real *xn, int l, int n) {
    llama_weight_matmul(m, q, xn, llama_tensor_of_target(LORA_Q), l, n, 0, 0);
    llama_adapter_forward(m, q, xn, l, LORA_Q, n);
    llama_weight_matmul(m, k, xn, llama_tensor_of_target(LORA_K), l, n, 0, 0);
    llama_adapter_forward(m, k, xn, l, LORA_K, n);
    llama_weight_matmul(m, v, xn, llama_tensor_of_target(LORA_V), l, n, 0, 0);
    llama_adapter_forward(m, v, xn, l, LORA_V, n);
}

/* A layer's feed-forward block on n rows: x = mid + (silu(xn W1^T) * (xn W3^T)) W2^T with
 * xn = rmsnorm(mid); xn, gate, up and proj are scratch (x holds the norm's rstd meanwhile). */
static void decode_ffn(Llama *m, Real *x, const Real *mid, Real *xn, Real *gate, Real *up,
                       Real *proj, int l, int n) {
    const LlamaConfig *c = &m->config;
    Backend *be = m->be;
    const int C = c->dim, H = c->hidden_dim;
    be->rmsnorm_forward(be, xn, x, mid, llama_layer_slice(m->w.tensors[LLAMA_RMS_FFN], C, l), n,
                        C, c->norm_eps); /* x holds rstd: it is rewritten below */
    llama_weight_matmul(m, gate, xn, llama_tensor_of_target(LORA_GATE), l, n, 0, 0);
    llama_adapter_forward(m, gate, xn, l, LORA_GATE, n);
    llama_weight_matmul(m, up, xn, llama_tensor_of_target(LORA_UP), l, n, 0, 0);
    llama_adapter_forward(m, up, xn, l, LORA_UP, n);
    be->swiglu_forward(be, gate, gate, up, (size_t)n * H);
    llama_residual_projection(m, x, mid, gate, l, LORA_DOWN, n, H, proj);
}

/* One chunk of n <= rows tokens at positions d->pos..: llama_forward's layer loop, with k and v
 * written into the cache and attention reading the cache. Only the last row's logits. */
static int decoder_chunk(LlamaDecoder *d, const int32_t *tokens, int n) {
    Llama *m = d->m;
    const LlamaConfig *c = &m->config;
    Backend *be = m->be;
    const int C = c->dim, pos = d->pos;
    const int NH = c->n_heads, NKV = c->n_kv_heads, HD = llama_head_dim(c);
    const int qdim = NH * HD, kvdim = NKV * HD;
    Real *const *w = m->w.tensors;
    if (m->lora && !m->lora->merged && lora_reserve(m->lora, n) != LSC_OK) return LSC_ERR;
    llama_refresh_copies(m);

    be->to_device(be, d->tokens, tokens, (size_t)n * sizeof(int32_t));
    be->embedding_forward(be, d->x, d->tokens, w[LLAMA_TOKEN_EMBEDDING], n, C);
    for (int l = 0; l < c->n_layers; l++) {
        Real *kc = d->k + (size_t)l * d->capacity * kvdim, *vc = d->v + (size_t)l * d->capacity * kvdim;
        Real *knew = kc + (size_t)pos * kvdim, *vnew = vc + (size_t)pos * kvdim;
        /* attention block (llama.c: mid = x + attn(...) Wo^T), new keys/values into the cache */
        be->rmsnorm_forward(be, d->xn, d->mid, d->x, llama_layer_slice(w[LLAMA_RMS_ATT], C, l), n, C,
                            c->norm_eps); /* mid holds rstd here: it is free until the residual */
        decode_qkv(m, d->q, knew, vnew, d->xn, l, n);
        be->rope_forward(be, d->q, m->rope_cos, m->rope_sin, 1, n, NH, HD, pos, c->rope_style);
        be->rope_forward(be, knew, m->rope_cos, m->rope_sin, 1, n, NKV, HD, pos, c->rope_style);
        be->attention_decode_forward(be, d->atty, d->q, kc, vc, n, pos, NH, NKV, HD);
        llama_residual_projection(m, d->mid, d->x, d->atty, l, LORA_O, n, qdim, d->proj);
        decode_ffn(m, d->x, d->mid, d->xn, d->gate, d->up, d->proj, l, n);
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

/* ---- one token for each of several decoders ---- */

static void batch_carve(LlamaDecodeBatch *b) {
    const LlamaConfig *c = &b->m->config;
    const size_t C = (size_t)c->dim, H = (size_t)c->hidden_dim, R = (size_t)b->max_rows;
    const size_t HD = (size_t)llama_head_dim(c), qdim = (size_t)c->n_heads * HD;
    const size_t kvdim = (size_t)c->n_kv_heads * HD;
    arena_reset(&b->arena);
    b->x = arena_alloc(&b->arena, R * C);
    b->xn = arena_alloc(&b->arena, R * C);
    b->q = arena_alloc(&b->arena, R * qdim);
    b->k = arena_alloc(&b->arena, R * kvdim);
    b->v = arena_alloc(&b->arena, R * kvdim);
    b->atty = arena_alloc(&b->arena, R * qdim);
    b->mid = arena_alloc(&b->arena, R * C);
    b->gate = arena_alloc(&b->arena, R * H);
    b->up = arena_alloc(&b->arena, R * H);
    b->proj = arena_alloc(&b->arena, R * C);
    b->logits = arena_alloc(&b->arena, R * (size_t)c->vocab_size);
    b->tokens = (int32_t *)arena_alloc(&b->arena, R); /* int32 in Real-sized slots */
}

int llama_decode_batch_create(LlamaDecodeBatch *b, Llama *m, int max_rows) {
    memset(b, 0, sizeof *b);
    if (max_rows <= 0) return error_set("A decoding batch needs at least one row, got %d.", max_rows);
    b->m = m;
    b->max_rows = max_rows;
    b->arena = arena_measure();
    batch_carve(b);
    const size_t bytes = b->arena.used;
    b->arena = (Arena){0};
    if (arena_reserve(&b->arena, m->be, bytes) != LSC_OK)
        return device_fail(m->be, "Out of memory for a decoding batch of %d rows (%zu MiB).",
                           max_rows, bytes >> 20);
    batch_carve(b);
    return LSC_OK;
}

void llama_decode_batch_free(LlamaDecodeBatch *b) {
    arena_free(&b->arena);
    memset(b, 0, sizeof *b);
}

int llama_decode_batch_step(LlamaDecodeBatch *b, LlamaDecoder *const *ds, const int32_t *tokens,
                            int n, Real *logits) {
    Llama *m = b->m;
    const LlamaConfig *c = &m->config;
    Backend *be = m->be;
    const int C = c->dim, V = c->vocab_size;
    const int NH = c->n_heads, NKV = c->n_kv_heads, HD = llama_head_dim(c);
    const int qdim = NH * HD, kvdim = NKV * HD;
    Real *const *w = m->w.tensors;
    if (n <= 0 || n > b->max_rows)
        return error_set("A decoding batch of %d rows takes 1 to %d sequences, got %d.",
                         b->max_rows, b->max_rows, n);
    for (int i = 0; i < n; i++) {
        if (ds[i]->m != m) return error_set("Decoder %d of the batch is on another model.", i);
        if (ds[i]->pos >= ds[i]->capacity)
            return error_set("The key/value cache of sequence %d holds %d positions; it is full.",
                             i, ds[i]->capacity);
        if (tokens[i] < 0 || tokens[i] >= V)
            return error_set("Token %d of sequence %d is outside the vocabulary [0, %d).",
                             tokens[i], i, V);
    }
    if (m->lora && !m->lora->merged && lora_reserve(m->lora, n) != LSC_OK) return LSC_ERR;
    llama_refresh_copies(m);

    be->to_device(be, b->tokens, tokens, (size_t)n * sizeof(int32_t));
    be->embedding_forward(be, b->x, b->tokens, w[LLAMA_TOKEN_EMBEDDING], n, C);
    for (int l = 0; l < c->n_layers; l++) {
        /* attention block: the projections on all rows, then per row its position's rotation,
         * its cache row and its attention (decoder_chunk's layer, one row per sequence) */
        be->rmsnorm_forward(be, b->xn, b->mid, b->x, llama_layer_slice(w[LLAMA_RMS_ATT], C, l), n,
                            C, c->norm_eps); /* mid holds rstd here: it is free until the residual */
        decode_qkv(m, b->q, b->k, b->v, b->xn, l, n);
        for (int i = 0; i < n; i++) {
            const LlamaDecoder *d = ds[i];
            const size_t layer = (size_t)l * d->capacity * kvdim, at = (size_t)d->pos * kvdim;
            Real *qi = b->q + (size_t)i * qdim, *ki = d->k + layer + at, *vi = d->v + layer + at;
            be->copy(be, ki, b->k + (size_t)i * kvdim, (size_t)kvdim * sizeof(Real));
            be->copy(be, vi, b->v + (size_t)i * kvdim, (size_t)kvdim * sizeof(Real));
            be->rope_forward(be, qi, m->rope_cos, m->rope_sin, 1, 1, NH, HD, d->pos, c->rope_style);
            be->rope_forward(be, ki, m->rope_cos, m->rope_sin, 1, 1, NKV, HD, d->pos, c->rope_style);
            be->attention_decode_forward(be, b->atty + (size_t)i * qdim, qi, d->k + layer,
                                         d->v + layer, 1, d->pos, NH, NKV, HD);
        }
        llama_residual_projection(m, b->mid, b->x, b->atty, l, LORA_O, n, qdim, b->proj);
        decode_ffn(m, b->x, b->mid, b->xn, b->gate, b->up, b->proj, l, n);
    }
    be->rmsnorm_forward(be, b->xn, b->mid, b->x, w[LLAMA_RMS_FINAL], n, C, c->norm_eps);
    llama_weight_matmul(m, b->logits, b->xn, LLAMA_WCLS, 0, n, 0, 0);
    for (int i = 0; i < n; i++) ds[i]->pos++;
    if (logits) be->to_host(be, logits, b->logits, (size_t)n * V * sizeof(Real));
    return device_sync(be); /* the step's ops (and the read) have run */
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
