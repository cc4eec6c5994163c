/* The base-model weights a fine-tuning run changes, saved before the run and put back after
 * it, so that every run of a sweep starts from one shared base on the device instead of a
 * clone of the whole model: the cascade's merges and noise (and DoRA's merges) write into the
 * adapted matrices only (q and v by default), and a ViT run also trains its head. A snapshot
 * costs one device copy of those tensors. Not here: the adapters and the optimiser (a run
 * owns and frees them), or which targets a run adapts (the caller says). */
#ifndef LORASC_SNAPSHOT_H
#define LORASC_SNAPSHOT_H

#include <stddef.h>

#include "core/model/llama.h"
#include "core/model/vit.h"

typedef struct Snapshot {
    Backend *be;
    Real *block;  /* the saved values, the ranges end to end (device memory) */
    int n;        /* ranges */
    Real **ptr;   /* [n] where each range lives in the model */
    size_t *len;  /* [n] its length in Reals */
    size_t total; /* sum of len */
    Llama *llama; /* the model (one of the two): its bf16 copies of `targets` are refreshed */
    ViT *vit;     /* after a restore (the ranges are then the fp32 masters) */
    unsigned targets;
} Snapshot;

/* Saves the weights of the targets (a LORA_BIT mask) of every layer of m; for a bf16 base,
 * their fp32 masters (made first if missing), and a restore marks their bf16 copies stale. */
int snapshot_llama(Snapshot *s, Llama *m, unsigned targets);
/* Saves the targets of every layer of m (LORA_GATE, no ViT matrix, is ignored) and, when
 * head is 1, the classification head. */
int snapshot_vit(Snapshot *s, ViT *m, unsigned targets, int head);
/* Writes the saved values back (the snapshot stays valid: it can be restored again). The
 * model must still be the one it was taken from, with the same shapes. */
int snapshot_restore(const Snapshot *s);
void snapshot_free(Snapshot *s);

#endif
