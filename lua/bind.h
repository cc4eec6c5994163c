/* Shared pieces of the Lua bindings: module openers, the process-wide backend, and the
 * userdata type names. One binding file per Lua module (lorasc.core.model, ...). */
#ifndef LORASC_LUA_BIND_H
#define LORASC_LUA_BIND_H

#include <lauxlib.h>
#include <lua.h>

#include "core/model/llama.h"
#include "core/data/imagedata.h"
#include "core/model/adamw.h"
#include "core/model/schedule.h"
#include "core/tasks/task.h"
#include "core/tasks/text_eval.h"
#include "core/model/vit.h"

#define BIND_MODEL "lorasc.Model"
#define BIND_FINETUNE "lorasc.Finetune"
#define BIND_TRAINER "lorasc.Trainer"
#define BIND_STORE "lorasc.Store"
#define BIND_TEXTDATA "lorasc.TextData"
#define BIND_VIT "lorasc.ViT"
#define BIND_VIT_FINETUNE "lorasc.ViTFinetune"
#define BIND_VIT_TRAINER "lorasc.ViTTrainer"
#define BIND_IMAGES "lorasc.Images"
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

/* An image classification task: a dataset's train file split into train/val, its test file
 * as test, each restricted to a class subset relabelled 0..k-1 (bind_images.c). */
enum { IMG_TRAIN = 0, IMG_VAL = 1, IMG_TEST = 2, IMG_NUM_SPLITS = 3 };
typedef struct LImages {
    ImageSet train, test;       /* the two files */
    int *idx[IMG_NUM_SPLITS];   /* indices into train (TRAIN, VAL) or test (TEST) */
    int n[IMG_NUM_SPLITS];
    int32_t relabel[256];       /* original label -> task label, -1 if not in the task */
    int n_classes;
    float mean[4], std[4];      /* normalisation: the whole train file's statistics */
    char name[128];
    int live;
} LImages;

/* Images indices `positions` of a split into out[B, C, H, W] (normalised) and task labels. */
void bind_images_batch(const LImages *d, int split, const int *positions, int B, Real *out,
                       int32_t *labels, const ImageAugment *aug, uint64_t seed, uint64_t step);

int luaopen_lorasc_core_model(lua_State *L);
int luaopen_lorasc_core_vit(lua_State *L);
int luaopen_lorasc_core_images(lua_State *L);
int luaopen_lorasc_core_finetune(lua_State *L);
int luaopen_lorasc_core_store(lua_State *L);
int luaopen_lorasc_core_data(lua_State *L);
int luaopen_lorasc_core_sys(lua_State *L);
int luaopen_lorasc_core_tasks(lua_State *L);
/* Registers all of the above in package.preload. */
void bind_preload(lua_State *L);
/* Wraps L's allocator with the byte count sys.run_limited caps (call once, right after
 * luaL_newstate). */
void bind_limits_install(lua_State *L);

/* The CPU backend, created on first use with the thread count set by bind_set_threads. */
Backend *bind_backend(lua_State *L);
void bind_set_threads(int threads);
int bind_threads(void);
void bind_backend_destroy(void);

/* A live model / text-data argument (raises a Lua error otherwise). */
LModel *bind_check_model(lua_State *L, int idx);
LTextData *bind_check_textdata(lua_State *L, int idx);
LVit *bind_check_vit(lua_State *L, int idx);
LImages *bind_check_images(lua_State *L, int idx);

/* If the value at idx is a language-task dataset (bind_tasks.c): fills tokens/targets [B*T]
 * for `step` with the examples the sampler picks (task.h; set up for this dataset, mode,
 * batch B and seed on first use) and the tokenizer at tok_idx, trims the padding after the
 * last target (task_batch_trim: rows at stride *T_used), sets *B_used (B, or fewer for an
 * epoch's short last batch), returns 1; else returns 0. */
int bind_task_batch(lua_State *L, int idx, int tok_idx, TaskSampler *sampler, TaskSampling mode,
                    uint64_t seed, long step, int B, int T, int32_t *tokens, int32_t *targets,
                    int *B_used, int *T_used);

/* Raises "lorasc: " .. error_last() as a Lua error, without a position (never returns). */
int bind_error(lua_State *L);
/* One training step of a Finetune on batch; pushes loss, grad_norm, lr, event|nil (4 values). */
struct Finetune;
int bind_finetune_step(lua_State *L, struct Finetune *ft, const void *batch);
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

#endif
