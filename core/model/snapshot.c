/* Saving and restoring the weights a run changes (see snapshot.h). */
#include "core/model/snapshot.h"

#include <stdlib.h>
#include <string.h>

#include "core/model/device.h"

/* Takes ranges (ptr[i], len[i]) of be's memory into one device block. */
static int snapshot_take(Snapshot *s, Backend *be, Real *const *ptr, const size_t *len, int n) {
    memset(s, 0, sizeof *s);
    s->be = be;
    s->ptr = malloc((size_t)(n ? n : 1) * sizeof *s->ptr);
    s->len = malloc((size_t)(n ? n : 1) * sizeof *s->len);
    if (!s->ptr || !s->len) {
        snapshot_free(s);
        return error_set("Out of memory listing %d tensors to save.", n);
    }
    for (int i = 0; i < n; i++) {
        s->ptr[i] = ptr[i];
        s->len[i] = len[i];
        s->total += len[i];
    }
    s->n = n;
    if (s->total) {
        s->block = be->alloc(be, s->total * sizeof(Real));
        if (!s->block) {
            const size_t total = s->total;
            snapshot_free(s);
            return device_fail(be, "Out of memory saving %zu weights of the base model.", total);
        }
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        be->copy(be, s->block + at, s->ptr[i], s->len[i] * sizeof(Real));
        at += s->len[i];
    }
    if (device_sync(be) != LSC_OK) {
        snapshot_free(s);
        return LSC_ERR;
    }
    return LSC_OK;
}

int snapshot_llama(Snapshot *s, Llama *m, unsigned targets) {
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS], n = 0;
    memset(s, 0, sizeof *s);
    if (llama_ensure_masters(m, targets) != LSC_OK) return LSC_ERR;
    Real *ptr[LORA_NUM_TARGETS];
    size_t len[LORA_NUM_TARGETS];
    llama_lora_shapes(&m->config, in, out);
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!(targets & LORA_BIT(t))) continue;
        ptr[n] = llama_target_weight(m, t, 0); /* a target's layers are one stacked tensor */
        len[n++] = (size_t)m->config.n_layers * (size_t)in[t] * (size_t)out[t];
    }
    if (snapshot_take(s, m->be, ptr, len, n) != LSC_OK) return LSC_ERR;
    s->llama = m;
    s->targets = targets;
    return LSC_OK;
}

int snapshot_vit(Snapshot *s, ViT *m, unsigned targets, int head) {
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS], n = 0;
    memset(s, 0, sizeof *s);
    if (vit_ensure_masters(m, targets) != LSC_OK) return LSC_ERR;
    Real *ptr[LORA_NUM_TARGETS + 1];
    size_t len[LORA_NUM_TARGETS + 1];
    vit_lora_shapes(&m->config, in, out);
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        Real *w = vit_target_weight(m, t, 0);
        if (!(targets & LORA_BIT(t)) || !w) continue;
        ptr[n] = w;
        len[n++] = (size_t)m->config.n_layers * (size_t)in[t] * (size_t)out[t];
    }
    if (head) {
        ptr[n] = m->head_params;
        len[n++] = m->head_size;
    }
    if (snapshot_take(s, m->be, ptr, len, n) != LSC_OK) return LSC_ERR;
    s->vit = m;
    s->targets = targets;
    return LSC_OK;
}

int snapshot_restore(const Snapshot *s) {
    Backend *be = s->be;
    if (!be) return error_set("This snapshot of base weights was freed; nothing to restore.");
    size_t at = 0;
    for (int i = 0; i < s->n; i++) {
        be->copy(be, s->ptr[i], s->block + at, s->len[i] * sizeof(Real));
        at += s->len[i];
    }
    if (s->llama) s->llama->stale |= s->targets; /* bf16 and packed copies refreshed */
    if (s->vit && s->vit->precision == PRECISION_BF16) s->vit->stale |= s->targets;
    return device_sync(be);
}

void snapshot_free(Snapshot *s) {
    if (s->be && s->block) s->be->free(s->be, s->block);
    free(s->ptr);
    free(s->len);
    memset(s, 0, sizeof *s);
}
