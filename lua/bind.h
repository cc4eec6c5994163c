/* Shared pieces of the Lua bindings: module openers, the process-wide backend, and the
 * userdata type names. One binding file per Lua module (lorasc.core.model, ...); a binding
 * checks its arguments and makes one call into core/, where the engine logic lives. */
#ifndef LORASC_LUA_BIND_H
#define LORASC_LUA_BIND_H

#include <lauxlib.h>
#include <lua.h>

#include "core/model/cascade.h"
#include "core/model/llama.h"
#include "core/data/imagedata.h"
#include "core/model/adamw.h"
#include "core/model/schedule.h"
#include "core/model/snapshot.h"
#include "core/model/train.h"
#include "core/tasks/task.h"
#include "core/tasks/text_eval.h"
#include "core/model/vit.h"
#include "core/tasks/image_task.h"

#define BIND_MODEL "lorasc.Model"
#define BIND_FINETUNE "lorasc.Finetune"
#define BIND_TRAINER "lorasc.Trainer"
#define BIND_STORE "lorasc.Store"
#define BIND_TEXTDATA "lorasc.TextData"
#define BIND_VIT "lorasc.ViT"
#define BIND_VIT_FINETUNE "lorasc.ViTFinetune"
#define BIND_VIT_TRAINER "lorasc.ViTTrainer"
#define BIND_IMAGES "lorasc.Images"
#define BIND_IMAGESET "lorasc.ImageSet"
#define BIND_TASK "lorasc.Task"
#define BIND_TOKENIZER "lorasc.Tokenizer"

typedef struct LModel {
    Llama m;
    int live; /* 1 once llama_create succeeded */
} LModel;

typedef struct LTextData {
    TextData d;
    int live;
} LTextData;

typedef struct LVit {
    ViT m;
    int live; /* 1 once vit_create succeeded */
} LVit;

int luaopen_lorasc_core_model(lua_State *L);
int luaopen_lorasc_core_vit(lua_State *L);
int luaopen_lorasc_core_images(lua_State *L);
int luaopen_lorasc_core_finetune(lua_State *L);
int luaopen_lorasc_core_store(lua_State *L);
int luaopen_lorasc_core_data(lua_State *L);
int luaopen_lorasc_core_sys(lua_State *L);
int luaopen_lorasc_core_tasks(lua_State *L);
int luaopen_lorasc_core_interop(lua_State *L);
/* "f32" | "f16" | "bf16" -> StDtype (a Lua error otherwise). */
int bind_st_dtype(lua_State *L, const char *name);
int luaopen_lorasc_core_fs(lua_State *L);
/* Registers all of the above in package.preload. */
void bind_preload(lua_State *L);
/* Wraps L's allocator with the byte count sys.run_limited caps (call once, right after
 * luaL_newstate). */
void bind_limits_install(lua_State *L);

/* The process-wide backend, opened on first use (device_open) on the device and thread count
 * set by bind_set_device / bind_set_threads (default "cpu", the backend's default threads). */
Backend *bind_backend(lua_State *L);
void bind_set_threads(int threads);
int bind_threads(void);
void bind_backend_destroy(void);

/* A live model / text-data / ViT / image-task argument (raises a Lua error otherwise). The
 * image-task userdata is a core ImageTask (live while n_classes > 0). */
LModel *bind_check_model(lua_State *L, int idx);
LTextData *bind_check_textdata(lua_State *L, int idx);
LVit *bind_check_vit(lua_State *L, int idx);
ImageTask *bind_check_images(lua_State *L, int idx);

/* If the value at idx is a language-task dataset (bind_tasks.c): fills tokens/targets [B*T]
 * for `step` with the examples the sampler picks (task.h; set up for this dataset, mode,
 * batch B and seed on first use) and the tokenizer at tok_idx, trims the padding after the
 * last target (task_batch_trim: rows at stride *T_used), sets *B_used (B, or fewer for an
 * epoch's short last batch), returns 1; else returns 0. */
int bind_task_batch(lua_State *L, int idx, int tok_idx, TaskSampler *sampler, TaskSampling mode,
                    uint64_t seed, long step, int B, int T, int32_t *tokens, int32_t *targets,
                    int *B_used, int *T_used);

/* The list of LoRA target names at idx (nil: q and v) as a LORA_BIT mask; each must lie in
 * valid, else an error listing valid_names. */
unsigned bind_target_list(lua_State *L, int idx, unsigned valid, const char *valid_names);

/* Snapshots of the weights a run changes (bind_snapshot.c, core/model/snapshot.h): the class
 * (registered by the model modules) and a new empty one, pushed, that keeps the model at
 * stack index owner alive and restores only while *owner_live; live once the caller has
 * taken the snapshot. */
#define BIND_SNAPSHOT "lorasc.Snapshot"
typedef struct LSnapshot {
    Snapshot s;
    int live;
    const int *owner_live;
} LSnapshot;
void bind_snapshot_class(lua_State *L);
LSnapshot *bind_new_snapshot(lua_State *L, int owner, const int *owner_live);

/* Raises "lorasc: " .. error_last() as a Lua error, without a position (never returns). */
int bind_error(lua_State *L);
/* One training step of a Finetune on batch; pushes loss, grad_norm, lr, event|nil (4 values).
 * On a device whose memory is not the host's the step's loss and gradient norm stay there:
 * loss and grad_norm are nil, and f:results() reads them when the loop logs. */
struct Finetune;
int bind_finetune_step(lua_State *L, struct Finetune *ft, const void *batch);
/* 1 when a training step on be leaves its results on the device (a nil loss and grad_norm
 * from f:step and t:step; f:results() / t:results() read them): memory not the host's. */
int bind_step_defers(Backend *be);
/* f:results() and t:results() -> { loss, grad_norm, loss, grad_norm, ... } of the steps whose
 * loss was nil, oldest first (one read back from the device); an empty table when none is
 * pending. */
struct StepLog;
int bind_step_log_results(lua_State *L, struct StepLog *log);
/* f:save_state(path, key, mark [, {numbers}]) (nothing pushed) and f:load_state(path, key)
 * (pushes the mark, the step and the numbers) on a Finetune: its whole state
 * (core/formats/finetune_state.h). */
int bind_finetune_save_state(lua_State *L, struct Finetune *ft);
int bind_finetune_load_state(lua_State *L, struct Finetune *ft);
/* Pushes what a fine-tuning step returns to Lua: loss, grad_norm (nil, nil when r is NULL: the
 * step's results stay on the device), lr and the expert-boundary event as a table (ev not
 * NULL) or nil; returns 4. */
int bind_push_step(lua_State *L, const StepResult *r, float lr, const CascadeEvent *ev);
/* The learning-rate schedule of a config table at t: schedule, lr, warmup, min_lr_ratio. */
Schedule bind_schedule(lua_State *L, int t);
/* The method, optimiser, cascade and adapter fields of a config table at t (method, total_steps,
 * lr, schedule, warmup, min_lr_ratio, grad_clip, weight_decay, ratio, alpha, noise, n_experts,
 * steps_per_expert, rewarmup_steps, slow_merge, noise_std, reset, optimizer_magnitude_pruning,
 * relora_min_lr_ratio, seed, rank, lora_alpha, targets, dora); batch and seq are the caller's. targets must lie in valid_targets (LORA_BIT mask). */
struct FinetuneConfig;
void bind_finetune_config(lua_State *L, int t, struct FinetuneConfig *cfg, LoraConfig *lc,
                          unsigned valid_targets, const char *valid_names);
/* Registers a metatable: methods under __index, plus metamethods. */
void bind_new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                    const luaL_Reg *metamethods);
/* Optional table fields: integer / number / string with a default. */
lua_Integer bind_opt_int(lua_State *L, int t, const char *key, lua_Integer def);
lua_Number bind_opt_num(lua_State *L, int t, const char *key, lua_Number def);
const char *bind_opt_str(lua_State *L, int t, const char *key, const char *def);
/* t[key] = v for the table on the top of the stack (the fields of a table a binding returns). */
void bind_set_int(lua_State *L, const char *key, lua_Integer v);

#endif
