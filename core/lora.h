/* LoRA adapters (Hu et al. 2021) for any model made of linear layers y = x W^T.
 * For each adapted weight W [out,in]: y = x W^T + s * (x A^T) B^T, A [r,in], B [out,r],
 * s = lora_alpha / r. Initialisation as PEFT: A kaiming-uniform with a = sqrt(5)
 * (bound 1/sqrt(in)), B = 0, so a fresh adapter leaves the model unchanged.
 * This file knows slot shapes, not models: a model lists its adaptable matrices as slots
 * (layer, target) with (in, out) dims, and calls lora_forward/lora_backward per slot. */
#ifndef LORASC_LORA_H
#define LORASC_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

/* Adaptable matrices of a transformer block. Llama: q k v o gate up down;
 * ViT reuses q k v o and maps its MLP to up/down. */
typedef enum LoraTarget {
    LORA_Q = 0,
    LORA_K,
    LORA_V,
    LORA_O,
    LORA_GATE,
    LORA_UP,
    LORA_DOWN,
    LORA_NUM_TARGETS
} LoraTarget;

#define LORA_BIT(t) (1u << (t))
#define LORA_DEFAULT_TARGETS (LORA_BIT(LORA_Q) | LORA_BIT(LORA_V))

typedef struct LoraConfig {
    int rank;          /* r > 0 */
    float alpha;       /* lora_alpha; scaling s = alpha / rank */
    unsigned targets;  /* bitmask of LORA_BIT(LoraTarget) */
} LoraConfig;

/* Name of a target as PEFT spells the module ("q_proj", ..., "down_proj"). */
const char *lora_target_name(LoraTarget t);
/* Parses "q", "q_proj", "gate", ... into a target; returns -1 if unknown. */
int lora_target_parse(const char *name);

typedef struct LoraAdapters {
    LoraConfig config;
    float scaling;          /* alpha / rank */
    int n_layers;
    int in_dim[LORA_NUM_TARGETS];  /* per target; 0 if not adapted */
    int out_dim[LORA_NUM_TARGETS];
    Backend *be;

    /* One block for parameters and one for gradients, carved in the same order:
     * for layer l, for each enabled target t: A [r, in], then B [out, r]. */
    Real *params;
    Real *grads;
    size_t num_params;
    size_t *a_offset;       /* [n_layers * LORA_NUM_TARGETS] offset of A in the block; B follows */
    int merged;             /* 1 while s*B*A has been added into the base weights */

    /* Saved forward activations x A^T, [n_layers][targets][max_rows, r]. */
    Real *xa;
    Real *dxa;              /* scratch [max_rows, r] */
    int max_rows;
} LoraAdapters;

/* Shapes: in_dim/out_dim per target (only those in config->targets are used).
 * Allocates params and grads on be, initialised as PEFT does from (seed). */
int lora_create(LoraAdapters *lora, Backend *be, const LoraConfig *config, int n_layers,
                const int in_dim[LORA_NUM_TARGETS], const int out_dim[LORA_NUM_TARGETS],
                uint64_t seed);
void lora_free(LoraAdapters *lora);
int lora_enabled(const LoraAdapters *lora, int target);

/* Re-initialises every adapter (A kaiming-uniform from (seed, stream index), B = 0). */
void lora_init(LoraAdapters *lora, uint64_t seed);

Real *lora_a(const LoraAdapters *lora, int layer, int target);
Real *lora_b(const LoraAdapters *lora, int layer, int target);
Real *lora_da(const LoraAdapters *lora, int layer, int target);
Real *lora_db(const LoraAdapters *lora, int layer, int target);

/* Makes sure activation buffers hold `rows` rows (B*T); returns LSC_ERR on OOM. */
int lora_reserve(LoraAdapters *lora, int rows);

/* y[rows,out] += s * (x A^T) B^T; saves x A^T for the backward. No-op when merged. */
void lora_forward(LoraAdapters *lora, Real *y, const Real *x, int layer, int target, int rows);
/* Given dy [rows,out] and the forward input x [rows,in]: accumulates dA, dB, and (if dx is
 * not NULL) dx[rows,in] += s * (dy B) A.  dB += s dy^T (xA^T);  dA += s (dy B)^T x. */
void lora_backward(LoraAdapters *lora, Real *dx, const Real *dy, const Real *x, int layer,
                   int target, int rows);

/* W[out,in] += sign * s * B A for one slot (sign = +1 merge, -1 unmerge). */
void lora_apply_to_weight(LoraAdapters *lora, Real *weight, int layer, int target, float sign);

#endif
