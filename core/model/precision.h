/* The precision a model's frozen base is stored and multiplied in: fp32 (the default,
 * bit-identical to a build without this choice) or bf16 (the matrices in bf16, adapters,
 * gradients, optimiser and every accumulation in fp32; ARCHITECTURE.md, "Devices and
 * precision"). Names for the harness and the check that a backend can run bf16. Not here:
 * the conversion of a model (llama_set_precision, vit_set_precision). */
#ifndef LORASC_PRECISION_H
#define LORASC_PRECISION_H

#include "kernels/backend.h"

typedef enum ModelPrecision {
    PRECISION_FP32 = 0,
    PRECISION_BF16 = 1,
} ModelPrecision;

/* "fp32", "bf16"; NULL past the end (callers list the names in their errors). */
const char *precision_name(int p);
/* The precision named s, or -1. */
int precision_parse(const char *s);
/* LSC_OK when be runs the bf16 ops, else LSC_ERR with a sentence naming the backend and the
 * fix; `what` names the model ("a Llama model"). */
int precision_check_backend(const Backend *be, const char *what);
/* A tensor's fp32 values for a reader (checkpoint save, HF export): *ptr = fp32 when it is
 * not NULL (or n is 0), *owned = 0; else a new fp32 copy of the n bf16 values w16, *owned =
 * 1 (free it with be->free). LSC_ERR on out of memory, naming `name` of `what`. */
int precision_widen(Backend *be, Real *fp32, const uint16_t *w16, size_t n, const char *name,
                    const char *what, Real **ptr, int *owned);

/* LSC_OK when be can store activations in precision p (fp32 always; bf16 with the backend's
 * bf16 conversions), else LSC_ERR with a sentence; `what` names the model ("a ViT"). The check
 * of llama_set_activations and vit_set_activations. */
int stored_acts_check(const Backend *be, ModelPrecision p, const char *what);
/* Stored activations (llama_set_activations, vit_set_activations): a layer's entries follow
 * one another in its bf16 store; entry j's fp32 working buffer is list[j].f32, n values. */
typedef struct StoredAct {
    Real *f32;
    size_t n;
} StoredAct;
/* Entries [first, last) of a layer whose store starts at layer16: to bf16 (pack) or back to
 * the working buffers (exactly the rounded values). */
void stored_acts_move(Backend *be, uint16_t *layer16, const StoredAct *list, int first,
                      int last, int pack);

#endif
