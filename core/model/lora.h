/* LoRA adapters (Hu et al. 2021) and DoRA (Liu et al. 2024) for any model made of linear
 * layers y = x W^T.
 * LoRA, for each adapted weight W [out,in]: y = x W^T + s * (x A^T) B^T, A [r,in], B [out,r],
 * s = lora_alpha / r. Initialisation as PEFT: A kaiming-uniform with a = sqrt(5)
 * (bound 1/sqrt(in)), B = 0, so a fresh adapter leaves the model unchanged.
 * DoRA (config.use_dora) adds a trainable magnitude m [out] per adapted weight:
 *     y = (m / n) (.) (x W^T + s (x A^T) B^T),   n = ||W + s B A||_row
 * where ||.||_row is the L2 norm of each output row (over in; the paper's "column norm" of
 * W^T [in,out]) and (.) scales output column o of y by m[o] / n[o]. As in PEFT, n is
 * detached: a constant in backward, so no gradient flows through it (to A, B or W); dm, dA,
 * dB and dx flow through the scaled output. m starts as PEFT's, ||W + s B A||_row
 * (= ||W||_row while B = 0, so a fresh DoRA adapter leaves the model unchanged too); see
 * lora_init_magnitudes. Weight decay, when an optimizer applies it to the block, reaches m
 * too (as with PEFT under a plain torch AdamW).
 * Merge (DoRA): W <- (m / n) (.) (W + s B A), row by row, after which ||W||_row = m: a fresh
 * adapter (B = 0) keeping the same m reproduces the merged layer, which lets a cascade train m
 * continuously across experts while each expert carries a new direction. Unmerge divides by
 * the factor saved at merge time and subtracts s B A (exact up to rounding, except rows with
 * m = 0, which the merge zeroed and cannot be recovered).
 * This file knows slot shapes, not models: a model lists its adaptable matrices as slots
 * (layer, target) with (in, out) dims, and calls, per slot,
 *     forward:  y = x W^T; lora_forward(y, x); lora_magnitude_forward(y, W)
 *     backward: g = lora_magnitude_backward(dy); dx = g W; lora_backward(dx, g, x)
 * where y must hold the projection alone (no residual added into it) when DoRA is on. */
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
    int use_dora;      /* 0: LoRA; 1: DoRA (each adapted weight also gets a magnitude m [out]) */
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
     * for layer l, for each enabled target t: A [r, in], then B [out, r], then (DoRA only)
     * m [out]. An optimizer sees all of them as one flat vector. */
    Real *params;
    Real *grads;
    size_t num_params;
    size_t *a_offset;       /* [n_layers * LORA_NUM_TARGETS] offset of A in the block; B follows */
    int merged;             /* 1 while the adapters have been merged into the base weights */

    /* Saved forward activations x A^T, [n_layers][targets][max_rows, r]. */
    Real *xa;
    Real *dxa;              /* scratch [max_rows, r] */
    int max_rows;

    /* DoRA only (NULL / 0 otherwise). Per-slot vectors are packed over the enabled slots,
     * slot (l, t) at vec_offset[l * LORA_NUM_TARGETS + t], out_dim[t] long. */
    int magnitudes_set;     /* 1 once m holds values: set by lora_init_magnitudes; anything
                             * else that writes m (a checkpoint loader, a test) sets it too,
                             * else llama_attach_lora initialises m over it */
    int freeze_norms;       /* 1: lora_magnitude_forward reuses the norms n of the last forward
                             * instead of recomputing them (n held fixed, as backward assumes;
                             * finite-difference checks use it; valid only while A, B and W
                             * are unchanged) */
    size_t *vec_offset;     /* [n_layers * LORA_NUM_TARGETS] */
    size_t vec_total;       /* sum of out_dim over enabled slots */
    Real *norm;             /* [vec_total] n = ||W + sBA||_row of the last forward */
    Real *mag_scale;        /* [vec_total] m / n of the last forward */
    Real *unmerge_scale;    /* [vec_total] n / m at merge time (undoes the merge's scaling) */
    Real *wtmp;             /* scratch [max out*in]: W + s B A, the one extra matrix */
    Real *vtmp;             /* scratch [max out] */
    Real *ypre;             /* saved unscaled projections, slot (l, t) at
                             * vec_offset * max_rows: [max_rows, out] */
} LoraAdapters;

/* Shapes: in_dim/out_dim per target (only those in config->targets are used).
 * Allocates params and grads on be, A and B initialised as PEFT does from (seed). DoRA's m
 * needs the base weights: it stays 0 (magnitudes_set = 0) until lora_init_magnitudes, which
 * llama_attach_lora calls for such an adapter. */
/* A rank above min(rows, cols) of a trained adapter adds parameters but no expressiveness
 * (B·A of a d x k matrix has rank at most min(d, k)): a mistake, not a choice. LSC_ERR with a
 * sentence naming the target and the largest sensible rank. Checked when an adapter is
 * trained (finetune_begin), not by lora_create: an exported stack of T experts (rank T x r)
 * may exceed it and is still exact. */
int lora_check_rank(const LoraConfig *config, const int in_dim[LORA_NUM_TARGETS],
                    const int out_dim[LORA_NUM_TARGETS]);
int lora_create(LoraAdapters *lora, Backend *be, const LoraConfig *config, int n_layers,
                const int in_dim[LORA_NUM_TARGETS], const int out_dim[LORA_NUM_TARGETS],
                uint64_t seed);
void lora_free(LoraAdapters *lora);
int lora_enabled(const LoraAdapters *lora, int target);

/* Re-initialises every adapter (A kaiming-uniform from (seed, stream index), B = 0).
 * DoRA's m is left as it is: the magnitude carries over (call lora_init_magnitudes to reset
 * it from the weights). */
void lora_init(LoraAdapters *lora, uint64_t seed);

/* 1 when (target) carries a DoRA magnitude (use_dora and the target is adapted). */
int lora_has_magnitude(const LoraAdapters *lora, int target);

/* The base weight W [out,in] of slot (layer, target), as the model stores it. */
typedef const Real *(*LoraWeightFn)(void *ctx, int layer, int target);
/* DoRA: m = ||W + s B A||_row for every slot (PEFT's initialisation; = ||W||_row while
 * B = 0), W from weight(ctx, layer, target); sets magnitudes_set. No-op without DoRA. */
void lora_init_magnitudes(LoraAdapters *lora, LoraWeightFn weight, void *ctx);

Real *lora_a(const LoraAdapters *lora, int layer, int target);
Real *lora_b(const LoraAdapters *lora, int layer, int target);
Real *lora_da(const LoraAdapters *lora, int layer, int target);
Real *lora_db(const LoraAdapters *lora, int layer, int target);
/* DoRA's m [out] and its gradient (the slot must have a magnitude). */
Real *lora_magnitude(const LoraAdapters *lora, int layer, int target);
Real *lora_dmagnitude(const LoraAdapters *lora, int layer, int target);

/* Makes sure activation buffers hold `rows` rows (B*T); returns LSC_ERR on OOM. */
int lora_reserve(LoraAdapters *lora, int rows);

/* y[rows,out] += s * (x A^T) B^T; saves x A^T for the backward. No-op when merged. */
void lora_forward(LoraAdapters *lora, Real *y, const Real *x, int layer, int target, int rows);
/* Given dy [rows,out] and the forward input x [rows,in]: accumulates dA, dB, and (if dx is
 * not NULL) dx[rows,in] += s * (dy B) A.  dB += s dy^T (xA^T);  dA += s (dy B)^T x. */
void lora_backward(LoraAdapters *lora, Real *dx, const Real *dy, const Real *x, int layer,
                   int target, int rows);

/* DoRA's output scaling, forward: y[rows,out] holds the unscaled projection x W^T plus the
 * LoRA branch; saves it, computes n = ||W + s B A||_row from weight (unless freeze_norms) and
 * scales y by m / n per column. No-op without a magnitude on this slot or when merged. */
void lora_magnitude_forward(LoraAdapters *lora, Real *y, const Real *weight, int layer, int target,
                            int rows);
/* Its backward, n held constant: dm += sum_rows(dy (.) y_unscaled) / n, and the gradient of
 * the unscaled projection, dy (.) m / n, is written to dproj (which may alias dy) and
 * returned. Without a magnitude on this slot, returns dy and writes nothing. */
const Real *lora_magnitude_backward(LoraAdapters *lora, Real *dproj, const Real *dy, int layer,
                                    int target, int rows);

/* LoRA: W[out,in] += sign * s * B A for one slot (sign = +1 merge, -1 unmerge).
 * DoRA (sign must be +1 or -1): merge W <- (m / n) (.) (W + s B A) per row, saving n / m;
 * unmerge W <- W (.) (n / m) - s B A with the saved factor. */
void lora_apply_to_weight(LoraAdapters *lora, Real *weight, int layer, int target, float sign);

#endif
