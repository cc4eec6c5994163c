/* lorasc.core.finetune: a fine-tuning run (core/model/finetune.h) and a full-training run
 * (pretraining) as userdata, and the methods' presets (core/model/cascade.h) the DSL reads.
 * One Lua call, f:step(data), draws the batch, runs a whole optimiser step and the expert
 * boundary, so the binding costs nothing next to the step. The model userdata is kept alive
 * in the user value while the run holds it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/formats/finetune_state.h"
#include "core/formats/peft.h"
#include "core/model/device.h"
#include "core/model/finetune.h"
#include "lua/bind.h"

typedef struct LFinetune {
    Finetune ft;
    LoraAdapters lora;
    int32_t *tokens, *targets;
    uint64_t data_seed;
    TaskSampling sampling;   /* language tasks: an epoch is a pass, or draws with replacement */
    TaskSampler sampler;
    Llama *model;
    int lora_live, ft_live;
} LFinetune;

typedef struct LTrainer {
    Llama *model;
    AdamW opt;
    Schedule schedule;
    long total_steps, step;
    int B, T;
    uint64_t data_seed;
    int32_t *tokens, *targets;
    StepLog log;    /* on a device: the steps' results, read when the loop reports */
    int opt_live;
} LTrainer;

/* The list of target names at idx (nil: q and v), each in `valid` (a LORA_BIT mask) or an
 * error that lists valid_names. */
unsigned bind_target_list(lua_State *L, int idx, unsigned valid, const char *valid_names) {
    if (lua_isnoneornil(L, idx)) return LORA_DEFAULT_TARGETS;
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    unsigned mask = 0;
    const lua_Integer n = luaL_len(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        const char *name = lua_tostring(L, -1);
        const int tg = name ? lora_target_parse(name) : -1;
        if (tg < 0 || !(valid & LORA_BIT(tg)))
            luaL_error(L, "unknown LoRA target '%s'; valid targets: %s", name ? name : "?",
                       valid_names);
        mask |= LORA_BIT(tg);
        lua_pop(L, 1);
    }
    return mask;
}

/* cfg.targets (see bind_target_list). */
static unsigned parse_targets(lua_State *L, int t, unsigned valid, const char *valid_names) {
    lua_getfield(L, t, "targets");
    const unsigned mask = bind_target_list(L, -1, valid, valid_names);
    lua_pop(L, 1);
    return mask;
}

Schedule bind_schedule(lua_State *L, int t) {
    Schedule s = {0};
    const char *kind = bind_opt_str(L, t, "schedule", "linear");
    const int k = schedule_kind_parse(kind);
    if (k < 0) luaL_error(L, "unknown schedule '%s'; valid: constant, linear, cosine", kind);
    s.kind = (ScheduleKind)k;
    s.peak_lr = (float)bind_opt_num(L, t, "lr", 1e-3);
    s.warmup_steps = (long)bind_opt_int(L, t, "warmup", 0);
    s.min_lr_ratio = (float)bind_opt_num(L, t, "min_lr_ratio", 0.0);
    return s;
}

static void fill_batch(lua_State *L, const LTextData *d, uint64_t seed, long step, int B, int T,
                       int32_t *tokens, int32_t *targets) {
    if (textdata_batch(&d->d, TEXT_TRAIN, seed, step, B, T, tokens, targets) != LSC_OK)
        bind_error(L);
}

/* The named options of the cascade (core/model/cascade.h): their names, in value order. */
typedef const char *(*ChoiceName)(int value);
static ChoiceName choice_names(const char *option) {
    if (strcmp(option, "slow_merge") == 0) return cascade_slow_merge_name;
    if (strcmp(option, "noise_std") == 0) return cascade_noise_std_name;
    if (strcmp(option, "reset") == 0) return cascade_reset_name;
    if (strcmp(option, "sampling") == 0) return task_sampling_name;
    if (strcmp(option, "method") == 0) return cascade_method_name;
    return NULL;
}

/* Pushes "a, b, c": the valid names of an option. */
static void push_choices(lua_State *L, ChoiceName names) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; names(i); i++) {
        if (i > 0) luaL_addstring(&b, ", ");
        luaL_addstring(&b, names(i));
    }
    luaL_pushresult(&b);
}

/* The value of name for option, or a Lua error that lists the valid names: an unknown
 * name is never silently the default. */
static int parse_choice(lua_State *L, const char *option, const char *name) {
    const ChoiceName names = choice_names(option);
    for (int i = 0; names(i); i++)
        if (strcmp(names(i), name) == 0) return i;
    push_choices(L, names);
    return luaL_error(L, "unknown %s '%s'; valid: %s", option, name, lua_tostring(L, -1));
}

/* A float pushed as the shortest decimal that reads back as the same float (0.8f -> 0.8,
 * not 0.800000011920929), so a preset enters a canonical config as its source text. */
static void push_float_shortest(lua_State *L, float x) {
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    lua_pushnumber(L, strtod(buf, NULL));
}

/* finetune.preset(method) -> {alpha=, noise=, n_experts=, steps_per_expert=,
 * rewarmup_steps=, slow_merge=, noise_std=, reset=, moment_pruning=, min_lr_ratio=}: core's
 * cascade_preset, the one source of the methods' defaults. */
static int l_preset(lua_State *L) {
    CascadeConfig c;
    if (cascade_preset(luaL_checkstring(L, 1), &c) != LSC_OK) return bind_error(L);
    lua_createtable(L, 0, 10);
    push_float_shortest(L, c.alpha), lua_setfield(L, -2, "alpha");
    push_float_shortest(L, c.noise), lua_setfield(L, -2, "noise");
    lua_pushinteger(L, c.n_experts), lua_setfield(L, -2, "n_experts");
    lua_pushinteger(L, c.steps_per_expert), lua_setfield(L, -2, "steps_per_expert");
    lua_pushinteger(L, c.rewarmup_steps), lua_setfield(L, -2, "rewarmup_steps");
    lua_pushstring(L, cascade_slow_merge_name(c.slow_merge)), lua_setfield(L, -2, "slow_merge");
    lua_pushstring(L, cascade_noise_std_name(c.noise_std)), lua_setfield(L, -2, "noise_std");
    lua_pushstring(L, cascade_reset_name(c.reset)), lua_setfield(L, -2, "reset");
    push_float_shortest(L, c.moment_pruning), lua_setfield(L, -2, "moment_pruning");
    push_float_shortest(L, c.min_lr_ratio), lua_setfield(L, -2, "min_lr_ratio");
    return 1;
}

/* finetune.choices(option) -> { name, ... }: the valid names of "slow_merge", "noise_std",
 * "reset", "sampling" or "method", in the order core defines them. */
static int l_choices(lua_State *L) {
    const char *option = luaL_checkstring(L, 1);
    const ChoiceName names = choice_names(option);
    if (!names)
        return luaL_error(L, "unknown option '%s'; valid: slow_merge, noise_std, reset, sampling, method",
                          option);
    lua_newtable(L);
    for (int i = 0; names(i); i++) {
        lua_pushstring(L, names(i));
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

void bind_finetune_config(lua_State *L, int t, FinetuneConfig *cfg, LoraConfig *lc,
                          unsigned valid_targets, const char *valid_names) {
    memset(cfg, 0, sizeof *cfg);
    const char *method = bind_opt_str(L, t, "method", "lora");
    if (cascade_preset(method, &cfg->cascade) != LSC_OK) bind_error(L);
    cfg->total_steps = (long)bind_opt_int(L, t, "total_steps", 100);
    if (cfg->total_steps <= 0) luaL_error(L, "total_steps must be > 0");
    cfg->schedule = bind_schedule(L, t);
    cfg->adamw = adamw_default_config();
    cfg->adamw.grad_clip = (float)bind_opt_num(L, t, "grad_clip", cfg->adamw.grad_clip);
    cfg->weight_decay = (float)bind_opt_num(L, t, "weight_decay", 0.0);
    cfg->lora_plus_ratio = (float)bind_opt_num(L, t, "ratio", 1.0);
    cfg->cascade.alpha = (float)bind_opt_num(L, t, "alpha", cfg->cascade.alpha);
    cfg->cascade.noise = (float)bind_opt_num(L, t, "noise", cfg->cascade.noise);
    cfg->cascade.n_experts = (int)bind_opt_int(L, t, "n_experts", cfg->cascade.n_experts);
    cfg->cascade.steps_per_expert = (long)bind_opt_int(L, t, "steps_per_expert",
                                                       cfg->cascade.steps_per_expert);
    cfg->cascade.rewarmup_steps = (long)bind_opt_int(L, t, "rewarmup_steps",
                                                     cfg->cascade.rewarmup_steps);
    const char *sm = bind_opt_str(L, t, "slow_merge", NULL);
    if (sm) cfg->cascade.slow_merge = (SlowMerge)parse_choice(L, "slow_merge", sm);
    const char *ns = bind_opt_str(L, t, "noise_std", NULL);
    if (ns) cfg->cascade.noise_std = (NoiseStd)parse_choice(L, "noise_std", ns);
    const char *rs = bind_opt_str(L, t, "reset", NULL);
    if (rs) cfg->cascade.reset = (OptimizerReset)parse_choice(L, "reset", rs);
    cfg->cascade.moment_pruning = (float)bind_opt_num(L, t, "optimizer_magnitude_pruning",
                                                      cfg->cascade.moment_pruning);
    cfg->cascade.min_lr_ratio = (float)bind_opt_num(L, t, "relora_min_lr_ratio",
                                                    cfg->cascade.min_lr_ratio);
    cfg->seed = (uint64_t)bind_opt_int(L, t, "seed", 1);
    /* keep_adapter: the run keeps its merges, so f:save_adapter can write its PEFT adapter */
    cfg->cascade.keep_merges = bind_opt_int(L, t, "keep_adapter", 0) != 0;
    *lc = (LoraConfig){.rank = (int)bind_opt_int(L, t, "rank", 8),
                       .alpha = (float)bind_opt_num(L, t, "lora_alpha", 16.0),
                       .targets = parse_targets(L, t, valid_targets, valid_names),
                       .use_dora = bind_opt_int(L, t, "dora", 0) != 0};
    if (lc->rank <= 0) luaL_error(L, "rank must be > 0, got %d", lc->rank);
}

/* finetune.new(model, cfg): cfg = {method=, rank=, lora_alpha=, targets={...}, dora=0|1, total_steps=,
 * batch=, seq=, lr=, schedule=, warmup=, min_lr_ratio=, weight_decay=, grad_clip=, ratio=,
 * alpha=, noise=, n_experts=, steps_per_expert=, rewarmup_steps=, slow_merge=, noise_std=,
 * reset=, optimizer_magnitude_pruning=, relora_min_lr_ratio=, seed=, data_seed=,
 * sampling="epoch"|"replacement" (language tasks; core/tasks/task.h)} */
static int l_new(lua_State *L) {
    LModel *m = bind_check_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    FinetuneConfig cfg;
    LoraConfig lc;
    bind_finetune_config(L, 2, &cfg, &lc, (1u << LORA_NUM_TARGETS) - 1,
                         "q, k, v, o, gate, up, down");
    cfg.batch = (int)bind_opt_int(L, 2, "batch", 8);
    cfg.seq = (int)bind_opt_int(L, 2, "seq", 64);
    if (cfg.batch <= 0 || cfg.seq <= 0 || cfg.seq > m->m.config.seq_len)
        return luaL_error(L, "batch must be > 0 and seq in [1, %d] (the model's seq_len)",
                          m->m.config.seq_len);
    const uint64_t data_seed = (uint64_t)bind_opt_int(L, 2, "data_seed", (lua_Integer)cfg.seed);

    LFinetune *f = lua_newuserdatauv(L, sizeof *f, 1);
    memset(f, 0, sizeof *f);
    luaL_setmetatable(L, BIND_FINETUNE);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1); /* keep the model alive */
    f->data_seed = data_seed;
    f->sampling = (TaskSampling)parse_choice(L, "sampling", bind_opt_str(L, 2, "sampling", "epoch"));
    f->tokens = malloc(sizeof(int32_t) * (size_t)cfg.batch * (size_t)cfg.seq);
    f->targets = malloc(sizeof(int32_t) * (size_t)cfg.batch * (size_t)cfg.seq);
    if (!f->tokens || !f->targets) return luaL_error(L, "out of memory");
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&m->m.config, in, out);
    if (lora_create(&f->lora, m->m.be, &lc, m->m.config.n_layers, in, out, cfg.seed) != LSC_OK)
        return bind_error(L);
    f->lora_live = 1;
    f->model = &m->m;
    const char *init = bind_opt_str(L, 2, "init_adapter", NULL); /* continue a PEFT adapter */
    if (init && peft_load_into(init, &m->m, &f->lora) != LSC_OK) return bind_error(L);
    const FinetuneModel fm = finetune_model_llama(&m->m);
    if (finetune_begin(&f->ft, &fm, &f->lora, &cfg) != LSC_OK) return bind_error(L);
    f->ft_live = 1;
    return 1;
}

static LFinetune *check_ft(lua_State *L) {
    LFinetune *f = luaL_checkudata(L, 1, BIND_FINETUNE);
    if (!f->ft_live) luaL_argerror(L, 1, "fine-tuning run is closed");
    return f;
}

int bind_push_step(lua_State *L, const StepResult *r, float lr, const CascadeEvent *ev) {
    if (r) {
        lua_pushnumber(L, r->loss);
        lua_pushnumber(L, r->grad_norm);
    } else {
        lua_pushnil(L);
        lua_pushnil(L);
    }
    lua_pushnumber(L, lr);
    if (ev) {
        lua_createtable(L, 0, 6);
        lua_pushinteger(L, ev->expert), lua_setfield(L, -2, "expert");
        lua_pushinteger(L, ev->step), lua_setfield(L, -2, "step");
        lua_pushnumber(L, ev->merged_norm), lua_setfield(L, -2, "merged_norm");
        lua_pushnumber(L, ev->noise_std_mean), lua_setfield(L, -2, "noise_std_mean");
        lua_pushnumber(L, ev->noise_std_max), lua_setfield(L, -2, "noise_std_max");
        lua_pushnumber(L, ev->boundary_seconds), lua_setfield(L, -2, "boundary_seconds");
    } else {
        lua_pushnil(L);
    }
    return 4;
}

/* One finetune_step + finetune_after_step on batch, pushing loss, grad_norm, lr and the
 * expert-boundary event (a table, or nil): the body of the Llama run's f:step. */
int bind_finetune_step(lua_State *L, Finetune *ft, const void *batch) {
    StepResult r;
    float lr;
    const int defer = bind_step_defers(ft->opt.be);
    if (finetune_step(ft, batch, defer ? NULL : &r, &lr) != LSC_OK) return bind_error(L);
    CascadeEvent ev;
    const int boundary = finetune_after_step(ft, &ev);
    if (boundary < 0) return bind_error(L);
    return bind_push_step(L, defer ? NULL : &r, lr, boundary == 1 ? &ev : NULL);
}

int bind_step_defers(Backend *be) { return !device_is_host(be); }

int bind_step_log_results(lua_State *L, StepLog *log) {
    const int n = step_log_pending(log);
    StepResult *r = malloc((size_t)(n > 0 ? n : 1) * sizeof *r);
    if (!r) return luaL_error(L, "out of memory");
    if (step_log_take(log, r) != LSC_OK) {
        free(r);
        return bind_error(L);
    }
    lua_createtable(L, 2 * n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushnumber(L, r[i].loss);
        lua_rawseti(L, -2, 2 * i + 1);
        lua_pushnumber(L, r[i].grad_norm);
        lua_rawseti(L, -2, 2 * i + 2);
    }
    free(r);
    return 1;
}

/* f:step(data [, tokenizer]) -> loss, grad_norm, lr, event (a table at an expert boundary,
 * else nil), tokens (the positions the step's forward ran: B x T after a language batch is
 * cut after its last target). data: a text dataset, or a language-task dataset with its
 * tokenizer. */
static int f_step(lua_State *L) {
    LFinetune *f = check_ft(L);
    if (finetune_done(&f->ft)) return luaL_error(L, "the fine-tuning run has no steps left");
    const int B = f->ft.config.batch, T = f->ft.config.seq;
    int B_used = B, T_used = T;
    if (!bind_task_batch(L, 2, 3, &f->sampler, f->sampling, f->data_seed, f->ft.step, B, T,
                         f->tokens, f->targets, &B_used, &T_used))
        fill_batch(L, bind_check_textdata(L, 2), f->data_seed, f->ft.step, B, T, f->tokens, f->targets);
    const LlamaBatch batch = {.tokens = f->tokens, .targets = f->targets, .B = B_used, .T = T_used};
    const int n = bind_finetune_step(L, &f->ft, &batch);
    lua_pushinteger(L, (lua_Integer)B_used * T_used);
    return n + 1;
}

/* f:save_state(path, key, mark [, {numbers}]) and f:load_state(path, key) -> mark, step,
 * {numbers}: the run's whole state (core/formats/finetune_state.h) with the caller's notes;
 * the bodies of every model's methods. */
int bind_finetune_save_state(lua_State *L, Finetune *ft) {
    FinetuneStateNotes notes = {.mark = (int64_t)luaL_checkinteger(L, 4)};
    if (!lua_isnoneornil(L, 5)) {
        luaL_checktype(L, 5, LUA_TTABLE);
        const lua_Integer n = luaL_len(L, 5);
        if (n > FINETUNE_STATE_MAX_NOTES)
            return luaL_error(L, "a run's state keeps at most %d numbers, got %d",
                              FINETUNE_STATE_MAX_NOTES, (int)n);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, 5, i);
            notes.values[i - 1] = luaL_checknumber(L, -1);
            lua_pop(L, 1);
        }
        notes.n_values = (int)n;
    }
    if (finetune_state_save(luaL_checkstring(L, 2), ft, luaL_checkstring(L, 3), &notes) != LSC_OK)
        return bind_error(L);
    return 0;
}

int bind_finetune_load_state(lua_State *L, Finetune *ft) {
    FinetuneStateNotes notes;
    if (finetune_state_load(luaL_checkstring(L, 2), ft, luaL_checkstring(L, 3), &notes) != LSC_OK)
        return bind_error(L);
    lua_pushinteger(L, (lua_Integer)notes.mark);
    lua_pushinteger(L, (lua_Integer)ft->step);
    lua_createtable(L, notes.n_values, 0);
    for (int i = 0; i < notes.n_values; i++) {
        lua_pushnumber(L, notes.values[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 3;
}

static int f_save_state(lua_State *L) { return bind_finetune_save_state(L, &check_ft(L)->ft); }
static int f_load_state(lua_State *L) { return bind_finetune_load_state(L, &check_ft(L)->ft); }
static int f_results(lua_State *L) { return bind_step_log_results(L, &check_ft(L)->ft.log); }

static int f_info(lua_State *L) {
    LFinetune *f = check_ft(L);
    lua_pushinteger(L, f->ft.step);
    lua_pushinteger(L, f->ft.config.total_steps);
    lua_pushboolean(L, finetune_done(&f->ft));
    lua_pushinteger(L, f->ft.cascade.n_experts);
    return 4;
}

/* Ends the run and detaches the adapter: the model then holds the merged result. */
/* f:save_adapter(dir [, base_model]): after the last step, the run's adapter (everything it
 * merged into the base) as a PEFT directory; an error when it has none (noise, DoRA experts). */
static int f_save_adapter(lua_State *L) {
    LFinetune *f = check_ft(L);
    if (peft_save_run(luaL_checkstring(L, 2), &f->ft, f->model, NULL, luaL_optstring(L, 3, NULL)) !=
        LSC_OK)
        return bind_error(L);
    return 0;
}

static int f_close(lua_State *L) {
    LFinetune *f = luaL_checkudata(L, 1, BIND_FINETUNE);
    if (f->ft_live) finetune_end(&f->ft);
    if (f->model && f->model->lora == &f->lora) llama_attach_lora(f->model, NULL);
    f->model = NULL;
    if (f->lora_live) lora_free(&f->lora);
    f->ft_live = f->lora_live = 0;
    free(f->tokens);
    free(f->targets);
    f->tokens = f->targets = NULL;
    task_sampler_free(&f->sampler);
    return 0;
}

static int f_tostring(lua_State *L) {
    LFinetune *f = luaL_checkudata(L, 1, BIND_FINETUNE);
    if (!f->ft_live)
        lua_pushstring(L, "finetune (closed)");
    else
        lua_pushfstring(L, "finetune (step %d of %d, %d experts)", (int)f->ft.step,
                        (int)f->ft.config.total_steps, f->ft.cascade.n_experts);
    return 1;
}

/* finetune.trainer(model, {total_steps=, batch=, seq=, lr=, schedule=, warmup=,
 * weight_decay=, grad_clip=, data_seed=}): full training of every weight (pretraining). */
static int l_trainer(lua_State *L) {
    LModel *m = bind_check_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    LTrainer *t = lua_newuserdatauv(L, sizeof *t, 1);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, BIND_TRAINER);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    t->model = &m->m;
    t->total_steps = (long)bind_opt_int(L, 2, "total_steps", 100);
    t->B = (int)bind_opt_int(L, 2, "batch", 8);
    t->T = (int)bind_opt_int(L, 2, "seq", m->m.config.seq_len);
    if (t->total_steps <= 0 || t->B <= 0 || t->T <= 0 || t->T > m->m.config.seq_len)
        return luaL_error(L, "pretraining: steps and batch must be > 0 and seq in [1, %d]",
                          m->m.config.seq_len);
    t->schedule = bind_schedule(L, 2);
    t->data_seed = (uint64_t)bind_opt_int(L, 2, "data_seed", 1);
    t->tokens = malloc(sizeof(int32_t) * (size_t)t->B * (size_t)t->T);
    t->targets = malloc(sizeof(int32_t) * (size_t)t->B * (size_t)t->T);
    if (!t->tokens || !t->targets) return luaL_error(L, "out of memory");
    if (!m->m.grads && llama_enable_full_grads(&m->m) != LSC_OK) return bind_error(L);
    AdamWConfig oc = adamw_default_config();
    oc.grad_clip = (float)bind_opt_num(L, 2, "grad_clip", oc.grad_clip);
    ParamGroup g;
    train_param_groups(&m->m, (float)bind_opt_num(L, 2, "weight_decay", 0.0), &g);
    if (adamw_create(&t->opt, m->m.be, &oc, &g, 1) != LSC_OK) return bind_error(L);
    t->opt_live = 1;
    if (step_log_init(&t->log, m->m.be) != LSC_OK) return bind_error(L);
    return 1;
}

static LTrainer *check_trainer(lua_State *L) {
    LTrainer *t = luaL_checkudata(L, 1, BIND_TRAINER);
    if (!t->opt_live) luaL_argerror(L, 1, "trainer is closed");
    return t;
}

/* t:step(data) -> loss, grad_norm, lr; on a device nil, nil, lr (t:results() reads them) */
static int t_step(lua_State *L) {
    LTrainer *t = check_trainer(L);
    LTextData *d = bind_check_textdata(L, 2);
    fill_batch(L, d, t->data_seed, t->step, t->B, t->T, t->tokens, t->targets);
    const float lr = schedule_lr(&t->schedule, t->step, t->total_steps);
    StepResult r;
    const int defer = bind_step_defers(t->opt.be);
    if (defer) {
        double *slot = step_log_slot(&t->log);
        if (!slot || train_step_dev(t->model, &t->opt, t->tokens, t->targets, t->B, t->T, lr,
                                    slot) != LSC_OK)
            return bind_error(L);
        step_log_commit(&t->log);
    } else if (train_step(t->model, &t->opt, t->tokens, t->targets, t->B, t->T, lr, &r) != LSC_OK) {
        return bind_error(L);
    }
    t->step++;
    if (defer) lua_pushnil(L), lua_pushnil(L);
    else lua_pushnumber(L, r.loss), lua_pushnumber(L, r.grad_norm);
    lua_pushnumber(L, lr);
    return 3;
}

/* t:results() -> the deferred steps' losses and gradient norms (bind_step_log_results) */
static int t_results(lua_State *L) { return bind_step_log_results(L, &check_trainer(L)->log); }

static int t_close(lua_State *L) {
    LTrainer *t = luaL_checkudata(L, 1, BIND_TRAINER);
    if (t->opt_live) adamw_free(&t->opt);
    t->opt_live = 0;
    step_log_free(&t->log);
    free(t->tokens);
    free(t->targets);
    t->tokens = t->targets = NULL;
    return 0;
}

static int t_tostring(lua_State *L) {
    LTrainer *t = luaL_checkudata(L, 1, BIND_TRAINER);
    lua_pushfstring(L, "trainer (step %d of %d)", (int)t->step, (int)t->total_steps);
    return 1;
}

int luaopen_lorasc_core_finetune(lua_State *L) {
    static const luaL_Reg fmethods[] = {{"step", f_step},
                                        {"results", f_results},
                                        {"info", f_info},
                                        {"save_state", f_save_state},
                                        {"load_state", f_load_state},
                                        {"close", f_close},
                                        {"save_adapter", f_save_adapter},
                                        {NULL, NULL}};
    static const luaL_Reg fmeta[] = {{"__gc", f_close}, {"__close", f_close},
                                     {"__tostring", f_tostring}, {NULL, NULL}};
    bind_new_class(L, BIND_FINETUNE, fmethods, fmeta);
    static const luaL_Reg tmethods[] = {
        {"step", t_step}, {"results", t_results}, {"close", t_close}, {NULL, NULL}};
    static const luaL_Reg tmeta[] = {{"__gc", t_close}, {"__close", t_close},
                                     {"__tostring", t_tostring}, {NULL, NULL}};
    bind_new_class(L, BIND_TRAINER, tmethods, tmeta);
    static const luaL_Reg fns[] = {{"new", l_new},       {"trainer", l_trainer},
                                   {"preset", l_preset}, {"choices", l_choices},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
