/* The whole state of a fine-tuning run (core/model/finetune.h) in one lorasc container
 * (container.h), so that a run killed mid-way resumes from it and, on the CPU, ends bit for
 * bit as the uninterrupted run would have. Stored: the weights the run changes (every adapted
 * matrix, which the cascade merges into and noises, and the extra group trained in full, such
 * as a ViT's head), the fast and the slow adapter (DoRA magnitudes included), AdamW's moments
 * and step counts (per group) and the step. Not stored, because each is a pure function of
 * the run's config and the step: the data order (the epoch samplers of core/tasks/task.h and
 * of the images), the Philox streams (keyed by seed, purpose and step or expert), the expert
 * index and the learning rate; nor the base weights the run never writes. So the caller
 * rebuilds the run as it began (the same base, the same finetune_begin) and loads the state
 * over it. Not here: when to save (the harness decides), model checkpoints (checkpoint.h).
 *
 * Sections: "state.key" (u8: the caller's name for the run), "state.step",
 * "state.total_steps", "state.mark" (i64), "weight.<layer>.<target>" (f32 [out, in]),
 * "weight.extra", "fast.params", "slow.params", "lora.magnitudes_set" (i32 {fast, slow}),
 * "adamw.m", "adamw.v", "adamw.step", "adamw.group_steps" (i64). Reals are stored as f32,
 * exact where Real is float (the lorasc executable), rounded in the double-precision build. */
#ifndef LORASC_FINETUNE_STATE_H
#define LORASC_FINETUNE_STATE_H

#include <stdint.h>

#include "core/model/finetune.h"

/* Writes ft's state to path: PATH.tmp, fsync, rename, so a kill never leaves a half-written
 * state at path. key names the run (the harness: its config hash and the build that trains
 * it); the state loads only under the same key. mark is any integer the caller wants back
 * (the harness: how many metric rows the run had logged when it saved). Call it between
 * steps (after finetune_after_step), never inside one. */
int finetune_state_save(const char *path, const Finetune *ft, const char *key, int64_t mark);

/* Loads the state at path into ft, a run rebuilt as it began (finetune_begin on the same base
 * and config). Everything is read and checked before anything is written (the key, the total
 * step count, every section's size and checksum), so on any error ft is as it was: a state of
 * another run, another build or another shape, a truncated or corrupt file is one sentence
 * naming the file and the problem, and the caller can start the run from step 0 instead.
 * Holds the state's blocks in host memory while it loads. */
int finetune_state_load(const char *path, Finetune *ft, const char *key, int64_t *mark);

#endif
