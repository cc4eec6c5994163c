/* The LoRASC cascade (LoRA Slow Cascade learning, arXiv 2407.01491, Algorithm 1) and the
 * baselines that are configurations of it. A run of S optimiser steps is split into T
 * experts; each expert trains the fast adapter on the current (noised) base. At the end of
 * expert t, in this order:
 *   1. slow <- alpha * slow + (1 - alpha) * fast            (A and B separately; the
 *      slow-fast update)
 *   2. W <- W + s * B_slow * A_slow                          (the merge, the paper's eq. 12;
 *      "cumulative")
 *   3. W <- W + U(-lambda/2, lambda/2) * std(s * B_slow * A_slow)   (the cascading noise for
 *      expert t+1, the paper's eqs. 7-8; one scalar std per adapted matrix, Philox keyed by
 *      (seed, expert, layer, target))
 *   4. fast <- PEFT re-initialisation (A kaiming-uniform, B = 0)
 *   5. the optimizer reset: by default the adapters' AdamW moments and step counts only (see
 *      `reset` below)
 *   6. the learning-rate schedule restarts, compressed to expert t+1's length.
 * At t = 1 the fast adapter starts equal to the slow one (both the PEFT initialisation,
 * B = 0, so there is no noise before the first expert). After the last expert the merge
 * happens as well and the fast adapter is re-initialised, so the trained model is the
 * merged base alone.
 *
 * Choices where the paper is ambiguous (each a named option; defaults are the literal text):
 *  - slow_merge CUMULATIVE (default): Algorithm 1 merges the whole slow adapter into W at
 *    every boundary, so earlier experts are merged again through the moving average.
 *    REPLACE: W holds the slow adapter once; each boundary removes the previous slow
 *    contribution before adding the new one (W = W0 + noise + s*B_slow*A_slow).
 *  - noise_std SCALED (default, the text): std(s * B_slow * A_slow), the spread of
 *    the update that was merged into W. UNSCALED: std(B_slow * A_slow) (ARCHITECTURE.md's
 *    wording); the two differ by the factor s = lora_alpha / r.
 *  - std is torch.std's default, the unbiased estimator (divide by N - 1).
 *  - schedule RESTART compresses the warm-up too: warmup_steps * expert_len / S.
 *  - reset ADAPTERS (default): DoRA's magnitude is trained continuously across experts, and
 *    so is a ViT's head, so a boundary resets the moments and step counts of the adapters'
 *    A and B only; groups marked continuous (adamw.h) keep their AdamW state.
 *    ALL: every group is reset (a new optimizer, the behaviour before this option existed).
 * The std and the merged-update norm are computed from r x r Gram matrices
 * (||BA||_F^2 = sum((B^T B) .* (A A^T))) and column/row sums, never materialising B*A.
 *
 * DoRA under the cascade: the magnitude m is trained continuously (never averaged, never
 * re-initialised, its optimizer state kept under reset = adapters); each merge folds the slow
 * direction into W and rescales every row to the current m (see lora.h), so the next expert
 * starts from the merged layer exactly.
 *
 * Baselines as configurations: LoRA = one expert, alpha = lambda = 0; "+Cascade" = one
 * expert per epoch, alpha = lambda = 0; "++Slow LoRA" adds alpha; "+++Noise" adds lambda;
 * COLA = 2 experts, alpha = lambda = 0, one global schedule.
 * ReLoRA as its authors ship it (Guitaricet/relora, torchrun_main.py and
 * peft_pretraining/training_utils.py), schedule JAGGED:
 *  - the schedule is their cosine_restarts whatever the experiment's schedule kind:
 *    schedule_relora_factor (schedule.h) with the run's warm-up, re-warm-up rewarmup_steps,
 *    a restart every steps_per_expert, envelope floor min_lr_ratio (their default 0.1);
 *  - the update at a restart step k * N has lr 0 and runs before their merge and optimizer
 *    reset (they happen once update_step % N == 1), so the experts here are [0, N + 1),
 *    [N + 1, 2N + 1), ...: the first is one step longer, and the zero-lr step's gradient is
 *    wiped by the reset as in their loop;
 *  - the reset prunes the adapters' moments and leaves the step count (torch keeps its
 *    per-parameter step): moment_pruning 0 zeroes them (their reset_optimizer_on_relora,
 *    which they implement as random pruning of 99.9% to work around ZeroRedundancyOptimizer;
 *    zeroing is what it stands for), moment_pruning in (0, 1) is their
 *    optimizer_magnitude_pruning (adamw_prune_magnitude, per A and per B tensor);
 *  - they require the run to be a whole number of cycles; here a shorter last cycle is
 *    allowed (their formula is defined for every step); their assertion that the warm-up
 *    ends before the first restart is kept (finetune_begin). */
#ifndef LORASC_CASCADE_H
#define LORASC_CASCADE_H

#include <stdint.h>

#include "core/model/lora.h"
#include "core/model/adamw.h"
#include "core/model/schedule.h"

typedef enum SlowMerge { SLOW_MERGE_CUMULATIVE = 0, SLOW_MERGE_REPLACE = 1 } SlowMerge;
typedef enum NoiseStd { NOISE_STD_SCALED = 0, NOISE_STD_UNSCALED = 1 } NoiseStd;
typedef enum ExpertSchedule {
    EXPERT_SCHEDULE_RESTART = 0, /* LoRASC: a fresh schedule compressed to each expert */
    EXPERT_SCHEDULE_GLOBAL = 1,  /* COLA: one schedule over the whole run */
    EXPERT_SCHEDULE_JAGGED = 2,  /* ReLoRA: their cosine with restarts and re-warm-ups */
} ExpertSchedule;
typedef enum OptimizerReset {
    OPTIMIZER_RESET_ADAPTERS = 0, /* A and B only; continuous groups keep their state */
    OPTIMIZER_RESET_ALL = 1,      /* every group */
} OptimizerReset;

typedef struct CascadeConfig {
    int n_experts;          /* > 0: T experts over the run (Table 4's expert counts) */
    long steps_per_expert;  /* used when n_experts == 0: a boundary every k steps (the last
                             * expert may be shorter); <= 0 with n_experts == 0: one expert */
    float alpha;            /* slow-fast retention in [0, 1]; 0 = no slow expert */
    float noise;            /* lambda >= 0; 0 = no cascading noise */
    int merge;              /* merge the slow adapter into the base at boundaries */
    int reinit_fast;        /* re-initialise the fast adapter after a boundary */
    int reset_optimizer;    /* reset AdamW state after a boundary */
    OptimizerReset reset;   /* which groups the reset touches */
    int reset_step_count;   /* 1: their step counts restart too (a new optimizer: LoRASC, COLA);
                             * 0: the bias correction carries on (ReLoRA) */
    float moment_pruning;   /* 0: zero the moments; in (0, 1): ReLoRA's
                             * optimizer_magnitude_pruning ratio (the moments kept are those
                             * above that quantile of each tensor's magnitudes) */
    ExpertSchedule schedule;
    long rewarmup_steps;    /* JAGGED: length of the re-warm-up after each restart */
    float min_lr_ratio;     /* JAGGED: floor of the cosine envelope (ReLoRA's 0.1) */
    SlowMerge slow_merge;
    NoiseStd noise_std;
    int keep_merges; /* 1: keep a host copy of the slow adapter at every merge, so
                             * cascade_merged_adapter can give the adapter of the run */
} CascadeConfig;

/* Presets by method name: "lora", "cascade" (+Cascade), "lorasc", "cola", "relora".
 * Callers then override fields (alpha, noise, n_experts, ...). LSC_ERR if unknown.
 * These are the method defaults of the whole project: the Lua DSL reads them from here
 * (lorasc.core.finetune.preset), it holds no copy. */
int cascade_preset(const char *method, CascadeConfig *config);

/* The names of the named options, in value order ("cumulative", "replace"; "scaled",
 * "unscaled"; "adapters", "all"; cascade_preset's methods): name(i) for i = 0, 1, ... until
 * NULL. Callers parse against these lists and report an unknown name with them, never a
 * default. */
const char *cascade_slow_merge_name(int value);
const char *cascade_noise_std_name(int value);
const char *cascade_reset_name(int value);
const char *cascade_method_name(int index);

/* One expert boundary, for the run store. */
typedef struct CascadeEvent {
    int expert;             /* 1-based index of the expert that just ended */
    long step;              /* optimiser steps done when it ended */
    double merged_norm;     /* ||s B_slow A_slow||_F over all adapted matrices (0 if no merge) */
    double noise_std_mean;  /* mean over matrices of the std that scaled the next noise (0 if none) */
    double noise_std_max;
    double boundary_seconds; /* wall time of the boundary work */
} CascadeEvent;

/* The base weight W [out,in] of slot (layer, target), writable: the cascade merges and
 * noises it in place. Llama and ViT provide one (see finetune.h). */
typedef Real *(*CascadeWeightFn)(void *model, int layer, int target);

typedef struct Cascade {
    CascadeConfig config;
    CascadeWeightFn weight;
    void *model;
    LoraAdapters *fast;     /* attached to the model, trained */
    LoraAdapters slow;      /* same shapes, never attached */
    AdamW *opt;
    long total_steps;
    int n_experts;
    uint64_t seed;
    Real *kept; /* keep_merges: host copies of the slow block at each merge
                             * [n_kept][slow.num_params] (REPLACE: the last one only) */
    int n_kept;
    Real *ones;             /* [max(in, out)] for row/column sums */
    Real *scratch;          /* 2 r^2 + 2 r: Gram matrices and sums */
} Cascade;

/* Validates config against total_steps (experts <= steps, alpha in [0,1], lambda >= 0,
 * pruning ratio in [0, 1), JAGGED: a restart period > 0 and min_lr_ratio in (0, 1]) and sets
 * the slow adapter equal to the fast one. */
int cascade_create(Cascade *c, CascadeWeightFn weight, void *model, LoraAdapters *fast, AdamW *opt,
                   const CascadeConfig *config, long total_steps, uint64_t seed);
void cascade_free(Cascade *c);

/* First step of expert e (0-based); cascade_expert_start(c, n_experts) == total_steps.
 * JAGGED (ReLoRA): e * steps_per_expert + 1 for e >= 1 (see above). */
long cascade_expert_start(const Cascade *c, int expert);
/* The 0-based expert that global step `step` belongs to. */
int cascade_expert_of_step(const Cascade *c, long step);
/* Learning rate of global step `step` under base schedule s and the configured mode. */
float cascade_lr(const Cascade *c, const Schedule *s, long step);
/* The seed the fast adapter is initialised from for expert e (0-based; e = 0 is `seed`). */
uint64_t cascade_expert_seed(uint64_t seed, int expert);

/* Call after the optimiser update of global step `step`. If it was the last step of an
 * expert, does the boundary work, fills *event and returns 1; else returns 0; -1 (error set)
 * when the boundary work fails (out of memory pruning the moments). */
int cascade_after_step(Cascade *c, long step, CascadeEvent *event);

/* The one adapter that reproduces every merge of the run on the base it started from
 * (keep_merges must be set; call after the last boundary). CUMULATIVE merges W += s B_t A_t
 * at each of T boundaries, so the adapter is the T slow adapters stacked: A = [A_1; ...; A_T]
 * [T r, in], B = [B_1 ... B_T] [out, T r], lora_alpha = T alpha (scaling alpha / r
 * unchanged): B A = sum_t B_t A_t, exact up to float summation order. REPLACE: the last slow
 * adapter. One expert of DoRA: the slow adapter with its magnitudes (PEFT's DoRA forward is
 * the DoRA merge). There is none, and the error says so in one sentence, when lambda > 0
 * noised the base between experts (the noise is no low-rank update: the merged model is the
 * only exact export), for DoRA over several experts (each merge rescales whole rows), without
 * merges, or before the first boundary. *out is created on the cascade's backend. */
int cascade_merged_adapter(const Cascade *c, LoraAdapters *out);
/* Why a run with this config and these experts has no exact adapter (a sentence), or NULL
 * when it has one: the checks of cascade_merged_adapter that the config alone decides. */
const char *cascade_adapter_obstacle(const CascadeConfig *config, int n_experts, int use_dora);

/* std (torch.std, unbiased) and squared Frobenius norm of scale * B * A for one slot,
 * from Gram matrices; exposed for tests. */
void cascade_product_stats(Cascade *c, const LoraAdapters *lora, int layer, int target,
                           double scale, double *std, double *sq_norm);

#endif
