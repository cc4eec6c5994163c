/* lorasc.core.vit: ViT models as userdata (create, load/save a ViT checkpoint, load a Hugging
 * Face ViT / CLIP-vision directory (load_hf, hf_config: core/formats/vit_hf.h), clone with a
 * fresh head for a new task), a full-training run (pretraining) and a LoRA / cascade
 * fine-tuning run over an image task (lorasc.core.images), both core/tasks/image_train.h.
 * One Lua call per optimiser step: the batch is drawn in C. */
#include <math.h>
#include <string.h>

#include "core/base/error.h"
#include "core/formats/hf_config.h"
#include "core/formats/vit_checkpoint.h"
#include "core/formats/peft.h"
#include "core/formats/safetensors.h"
#include "core/formats/vit_hf.h"
#include "core/tasks/image_train.h"
#include "core/model/device.h"
#include "lua/bind.h"

LVit *bind_check_vit(lua_State *L, int idx) {
    LVit *m = luaL_checkudata(L, idx, BIND_VIT);
    if (!m->live) luaL_argerror(L, idx, "ViT is closed");
    return m;
}

static LVit *new_vit(lua_State *L) {
    LVit *m = lua_newuserdatauv(L, sizeof *m, 0);
    memset(m, 0, sizeof *m);
    luaL_setmetatable(L, BIND_VIT);
    return m;
}

/* vit.new{image_size=28, patch_size=7, channels=1, dim=64, n_layers=2, n_heads=4,
 *         mlp_dim=4*dim, n_classes=10, norm_eps=1e-6, seed=1}: HF ViT layout (GELU erf,
 * patch bias, no pre-norm), random initialisation. */
static int l_new(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    ViTConfig c = {0};
    c.image_size = (int)bind_opt_int(L, 1, "image_size", 28);
    c.patch_size = (int)bind_opt_int(L, 1, "patch_size", 7);
    c.channels = (int)bind_opt_int(L, 1, "channels", 1);
    c.dim = (int)bind_opt_int(L, 1, "dim", 64);
    c.n_layers = (int)bind_opt_int(L, 1, "n_layers", 2);
    c.n_heads = (int)bind_opt_int(L, 1, "n_heads", 4);
    c.mlp_dim = (int)bind_opt_int(L, 1, "mlp_dim", 4 * c.dim);
    c.n_classes = (int)bind_opt_int(L, 1, "n_classes", 10);
    c.norm_eps = (float)bind_opt_num(L, 1, "norm_eps", 1e-6);
    c.gelu = GELU_ERF;
    c.patch_bias = 1;
    const uint64_t seed = (uint64_t)bind_opt_int(L, 1, "seed", 1);
    if (vit_config_validate(&c) != LSC_OK) return bind_error(L);
    Backend *be = bind_backend(L);
    LVit *m = new_vit(L);
    if (vit_create(&m->m, be, &c) != LSC_OK) return bind_error(L);
    m->live = 1;
    vit_init_random(&m->m, seed);
    return 1;
}

static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    Backend *be = bind_backend(L);
    LVit *m = new_vit(L);
    if (vit_checkpoint_load(path, &m->m, be) != LSC_OK) return bind_error(L);
    m->live = 1;
    return 1;
}

/* vit.load_hf(dir [, {n_classes=K, head_seed=0, channels=0, image_size=0}]): a Hugging Face
 * ViTForImageClassification / ViTModel or CLIP vision directory (core/formats/vit_hf.h). */
static int l_load_hf(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    ViTHfOptions o = {0};
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        o.n_classes = (int)bind_opt_int(L, 2, "n_classes", 0);
        o.head_seed = (uint64_t)bind_opt_int(L, 2, "head_seed", 0);
        o.channels = (int)bind_opt_int(L, 2, "channels", 0);
        o.image_size = (int)bind_opt_int(L, 2, "image_size", 0);
    }
    Backend *be = bind_backend(L);
    LVit *m = new_vit(L);
    if (vit_hf_load(dir, &m->m, be, &o) != LSC_OK) return bind_error(L);
    m->live = 1;
    return 1;
}

/* vit.hf_config(dir): {layout = "vit"|"clip", image_size, patch_size, channels, dim,
 * n_layers, n_heads, mlp_dim, n_classes (0 for CLIP)} from dir/config.json. */
static int l_hf_config(lua_State *L) {
    ViTConfig c;
    ViTHfLayout layout;
    if (vit_hf_read_config(luaL_checkstring(L, 1), &c, &layout) != LSC_OK) return bind_error(L);
    lua_createtable(L, 0, 9);
    lua_pushstring(L, layout == VIT_HF_CLIP ? "clip" : "vit");
    lua_setfield(L, -2, "layout");
    bind_set_int(L, "image_size", c.image_size);
    bind_set_int(L, "patch_size", c.patch_size);
    bind_set_int(L, "channels", c.channels);
    bind_set_int(L, "dim", c.dim);
    bind_set_int(L, "n_layers", c.n_layers);
    bind_set_int(L, "n_heads", c.n_heads);
    bind_set_int(L, "mlp_dim", c.mlp_dim);
    bind_set_int(L, "n_classes", c.n_classes);
    return 1;
}

/* vit.hf_processor(dir) -> {mean = {..}, std = {..}, from_file = bool, resample =
 * "pil-bilinear" | "pil-bicubic", shortest_edge =, height =, width =, crop =}: how dir's
 * checkpoint prepares its images (vit_hf_read_processor; crop 0: none). */
static int l_hf_processor(lua_State *L) {
    ViTHfProcessor p;
    if (vit_hf_read_processor(luaL_checkstring(L, 1), &p) != LSC_OK) return bind_error(L);
    lua_createtable(L, 0, 8);
    for (int k = 0; k < 2; k++) {
        lua_createtable(L, p.channels, 0);
        for (int i = 0; i < p.channels; i++)
            lua_pushnumber(L, hf_config_float_value(k ? p.std[i] : p.mean[i])), lua_rawseti(L, -2, i + 1);
        lua_setfield(L, -2, k ? "std" : "mean");
    }
    lua_pushboolean(L, p.from_file);
    lua_setfield(L, -2, "from_file");
    lua_pushstring(L, p.resample == 3 ? "pil-bicubic" : "pil-bilinear");
    lua_setfield(L, -2, "resample");
    bind_set_int(L, "shortest_edge", p.shortest_edge);
    bind_set_int(L, "height", p.height);
    bind_set_int(L, "width", p.width);
    bind_set_int(L, "crop", p.crop);
    return 1;
}

static int m_save(lua_State *L) {
    LVit *m = bind_check_vit(L, 1);
    if (vit_checkpoint_save(luaL_checkstring(L, 2), &m->m) != LSC_OK) return bind_error(L);
    return 0;
}

/* m:save_hf(dir [, {dtype = "f32"|"f16"|"bf16", mean = {...}, std = {...}}]): the model as
 * ViTForImageClassification (core/formats/vit_hf.h); mean and std (per channel) add a
 * preprocessor_config.json. */
static int m_save_hf(lua_State *L) {
    LVit *m = bind_check_vit(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    ViTHfSaveOptions o = {.dtype = ST_F32};
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        o.dtype = bind_st_dtype(L, bind_opt_str(L, 3, "dtype", "f32"));
        lua_getfield(L, 3, "mean");
        lua_getfield(L, 3, "std");
        if (lua_istable(L, -2) && lua_istable(L, -1)) {
            o.n_norm = (int)luaL_len(L, -2);
            if (o.n_norm < 1 || o.n_norm > 4 || luaL_len(L, -1) != o.n_norm)
                return luaL_error(L, "mean and std must list 1 to 4 channels each");
            for (int i = 0; i < o.n_norm; i++) {
                lua_geti(L, -2, i + 1), lua_geti(L, -2, i + 1);
                o.image_mean[i] = (float)luaL_checknumber(L, -2);
                o.image_std[i] = (float)luaL_checknumber(L, -1);
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 2);
    }
    if (vit_hf_save(dir, &m->m, &o) != LSC_OK) return bind_error(L);
    return 0;
}

/* m:merge_adapter(dir): merges a PEFT ViT adapter (and its classifier) into the weights. */
static int m_merge_adapter(lua_State *L) {
    LVit *m = bind_check_vit(L, 1);
    if (peft_merge_vit(luaL_checkstring(L, 2), &m->m) != LSC_OK) return bind_error(L);
    return 0;
}

/* m:clone([n_classes, head_seed]): a copy; with n_classes, every weight but the head is
 * copied and the head is new (normal(0, 0.02) weights, zero bias, from head_seed), as a
 * transfer to a new label set does. */
static int m_clone(lua_State *L) {
    LVit *src = bind_check_vit(L, 1);
    const int new_head = !lua_isnoneornil(L, 2);
    const int n_classes = new_head ? (int)luaL_checkinteger(L, 2) : 0;
    const uint64_t head_seed = (uint64_t)luaL_optinteger(L, 3, 1);
    LVit *m = new_vit(L);
    const int rc = new_head ? vit_clone_new_head(&m->m, &src->m, n_classes, head_seed)
                            : vit_clone(&m->m, &src->m);
    if (rc != LSC_OK) return bind_error(L);
    m->live = 1;
    return 1;
}

/* m:snapshot([targets]): saves the matrices of the LoRA targets (default { "q", "v" }) of
 * every layer and the head (a run trains it); closing the snapshot writes them back. */
static int m_snapshot(lua_State *L) {
    LVit *m = bind_check_vit(L, 1);
    const unsigned targets = bind_target_list(L, 2,
                                              ((1u << LORA_NUM_TARGETS) - 1) & ~LORA_BIT(LORA_GATE),
                                              "q, k, v, o, up (fc1), down (fc2)");
    LSnapshot *s = bind_new_snapshot(L, 1, &m->live);
    if (snapshot_vit(&s->s, &m->m, targets, 1) != LSC_OK) return bind_error(L);
    s->live = 1;
    return 1;
}

/* m:init_head(seed): a new head in place (normal(0, 0.02) weights, zero bias), the head
 * m:clone(n_classes, seed) would give. */
static int m_init_head(lua_State *L) {
    LVit *m = bind_check_vit(L, 1);
    if (vit_init_head(&m->m, (uint64_t)luaL_checkinteger(L, 2)) != LSC_OK) return bind_error(L);
    return 0;
}

/* vit.check_head(path, K, D): an error (vit_head_read's sentence) unless path holds a head of
 * K classes for a model of width D. */
static int l_check_head(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    const lua_Integer K = luaL_checkinteger(L, 2), D = luaL_checkinteger(L, 3);
    luaL_argcheck(L, K > 0 && D > 0 && K * D < (1 << 30), 2, "head sizes out of range");
    if (vit_head_read(path, (int)K, (int)D, NULL) != LSC_OK) return bind_error(L);
    return 0;
}

/* m:load_head(path): the head from a safetensors file (vit_head_read: "weight" [K, D], optional
 * "bias" [K]), e.g. a CLIP zero-shot head; K and D must be the model's. */
static int m_load_head(lua_State *L) {
    LVit *m = bind_check_vit(L, 1);
    const char *path = luaL_checkstring(L, 2);
    const int K = m->m.config.n_classes, D = m->m.config.dim;
    Real *head = lua_newuserdatauv(L, sizeof(Real) * ((size_t)K * D + (size_t)K), 0); /* GC'd */
    if (vit_head_read(path, K, D, head) != LSC_OK || vit_set_head(&m->m, head) != LSC_OK)
        return bind_error(L);
    return 0;
}

static int m_config(lua_State *L) {
    const ViTConfig *c = &bind_check_vit(L, 1)->m.config;
    lua_createtable(L, 0, 9);
    bind_set_int(L, "image_size", c->image_size);
    bind_set_int(L, "patch_size", c->patch_size);
    bind_set_int(L, "channels", c->channels);
    bind_set_int(L, "dim", c->dim);
    bind_set_int(L, "n_layers", c->n_layers);
    bind_set_int(L, "n_heads", c->n_heads);
    bind_set_int(L, "mlp_dim", c->mlp_dim);
    bind_set_int(L, "n_classes", c->n_classes);
    return 1;
}

/* m:set_precision("fp32"|"bf16"): the precision of the frozen base (core/model/vit.h). */
static int m_set_precision(lua_State *L) {
    LVit *m = bind_check_vit(L, 1);
    static const char *const names[] = {"fp32", "bf16", NULL};
    const int p = luaL_checkoption(L, 2, NULL, names);
    if (vit_set_precision(&m->m, (ModelPrecision)p) != LSC_OK) return bind_error(L);
    return 0;
}

/* m:set_activations("fp32"|"bf16"): how the activations a backward reads are stored
 * (core/model/vit.h, vit_set_activations). */
static int m_set_activations(lua_State *L) {
    LVit *m = bind_check_vit(L, 1);
    static const char *const names[] = {"fp32", "bf16", NULL};
    const int p = luaL_checkoption(L, 2, NULL, names);
    if (vit_set_activations(&m->m, (ModelPrecision)p) != LSC_OK) return bind_error(L);
    return 0;
}

/* m:weights_finite() -> true when every weight is finite (their sum of squares, in double,
 * is finite exactly then): a diverged run is failed, never scored. */
static int m_weights_finite(lua_State *L) {
    LVit *m = bind_check_vit(L, 1);
    Backend *be = m->m.be;
    const double sq = vit_weight_sum_squares(&m->m);
    if (device_sync(be) != LSC_OK) return bind_error(L); /* a failed device, not a divergence */
    lua_pushboolean(L, isfinite(sq));
    return 1;
}

static int m_num_params(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)bind_check_vit(L, 1)->m.num_params);
    return 1;
}

static int m_close(lua_State *L) {
    LVit *m = luaL_checkudata(L, 1, BIND_VIT);
    if (m->live) vit_free(&m->m);
    m->live = 0;
    return 0;
}

static int m_tostring(lua_State *L) {
    LVit *m = luaL_checkudata(L, 1, BIND_VIT);
    if (!m->live) {
        lua_pushstring(L, "vit (closed)");
        return 1;
    }
    const ViTConfig *c = &m->m.config;
    lua_pushfstring(L, "vit (%dx%dx%d images, patch %d, dim %d, layers %d, heads %d, %d classes, %d params)",
                    c->channels, c->image_size, c->image_size, c->patch_size, c->dim, c->n_layers,
                    c->n_heads, c->n_classes, (int)m->m.num_params);
    return 1;
}

/* The sampler fields of a run's config table at t: batch, data_seed, crop_pad, flip; batches
 * prefetched as image_prefetch_wanted says for the model's backend. */
static ImageSamplerConfig sampler_config(lua_State *L, int t, const ViT *m) {
    ImageSamplerConfig c; /* one field at a time: a bad field is reported in this order */
    c.batch = (int)bind_opt_int(L, t, "batch", 32);
    c.seed = (uint64_t)bind_opt_int(L, t, "data_seed", 1);
    c.aug.crop_pad = (int)bind_opt_int(L, t, "crop_pad", 0);
    c.aug.flip = (int)bind_opt_int(L, t, "flip", 0);
    c.prefetch = image_prefetch_wanted(m->be);
    c.steps = 0; /* the trainer and the fine-tuning run bound it by their total steps */
    return c;
}

/* A run (argument 1) must be open (`live`, else the error `what`), and so must its model and
 * task (user values 1 and 2), which the core run uses at every step. */
static void check_run(lua_State *L, int live, const char *what) {
    if (!live) luaL_argerror(L, 1, what);
    lua_getiuservalue(L, 1, 1);
    bind_check_vit(L, -1);
    lua_getiuservalue(L, 1, 2);
    bind_check_images(L, -1);
    lua_pop(L, 2);
}

/* Full training (pretraining) --------------------------------------------------------------- */

/* vit.trainer(model, images, {total_steps=, batch=, lr=, schedule=, warmup=, weight_decay=,
 * grad_clip=, data_seed=, crop_pad=, flip=}) */
static int l_trainer(lua_State *L) {
    LVit *m = bind_check_vit(L, 1);
    ImageTask *d = bind_check_images(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    ImageTrainConfig cfg = {.total_steps = (long)bind_opt_int(L, 3, "total_steps", 100)};
    if (cfg.total_steps <= 0) return luaL_error(L, "pretraining: steps must be > 0");
    cfg.schedule = bind_schedule(L, 3);
    const ImageSamplerConfig scfg = sampler_config(L, 3, &m->m);
    cfg.adamw = adamw_default_config();
    cfg.adamw.grad_clip = (float)bind_opt_num(L, 3, "grad_clip", cfg.adamw.grad_clip);
    cfg.weight_decay = (float)bind_opt_num(L, 3, "weight_decay", 0.0);
    ImageTrainer *t = lua_newuserdatauv(L, sizeof *t, 2);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, BIND_VIT_TRAINER);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 2);
    if (image_trainer_begin(t, &m->m, d, &cfg, &scfg) != LSC_OK) return bind_error(L);
    return 1;
}

/* t:step() -> loss, grad_norm, lr; on a device nil, nil, lr (t:results() reads them) */
static int t_step(lua_State *L) {
    ImageTrainer *t = luaL_checkudata(L, 1, BIND_VIT_TRAINER);
    check_run(L, t->opt_live, "trainer is closed");
    StepResult r;
    float lr;
    const int defer = bind_step_defers(t->opt.be);
    if (image_trainer_step(t, defer ? NULL : &r, &lr) != LSC_OK) return bind_error(L);
    if (defer) lua_pushnil(L), lua_pushnil(L);
    else lua_pushnumber(L, r.loss), lua_pushnumber(L, r.grad_norm);
    lua_pushnumber(L, lr);
    return 3;
}

/* t:results() -> the deferred steps' losses and gradient norms (bind_step_log_results) */
static int t_results(lua_State *L) {
    ImageTrainer *t = luaL_checkudata(L, 1, BIND_VIT_TRAINER);
    check_run(L, t->opt_live, "trainer is closed");
    return bind_step_log_results(L, &t->log);
}

static int t_close(lua_State *L) {
    image_trainer_end(luaL_checkudata(L, 1, BIND_VIT_TRAINER));
    return 0;
}

static int t_tostring(lua_State *L) {
    ImageTrainer *t = luaL_checkudata(L, 1, BIND_VIT_TRAINER);
    lua_pushfstring(L, "vit trainer (step %d of %d)", (int)t->step, (int)t->total_steps);
    return 1;
}

/* Fine-tuning ------------------------------------------------------------------------------ */

/* vit.finetune(model, images, cfg): cfg as lorasc.core.finetune.new's (method, rank,
 * lora_alpha, targets, dora, total_steps, batch, lr, schedule, warmup, min_lr_ratio,
 * weight_decay, grad_clip, ratio, alpha, noise, n_experts, steps_per_expert,
 * rewarmup_steps, slow_merge, noise_std, seed, data_seed) plus crop_pad and flip. The head
 * is trained in full beside the adapters. */
static int l_finetune(lua_State *L) {
    LVit *m = bind_check_vit(L, 1);
    ImageTask *d = bind_check_images(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    FinetuneConfig cfg;
    LoraConfig lc;
    bind_finetune_config(L, 3, &cfg, &lc, ((1u << LORA_NUM_TARGETS) - 1) & ~LORA_BIT(LORA_GATE),
                         "q, k, v, o, up (fc1), down (fc2)");
    const ImageSamplerConfig scfg = sampler_config(L, 3, &m->m);
    ImageFinetune *f = lua_newuserdatauv(L, sizeof *f, 2);
    memset(f, 0, sizeof *f);
    luaL_setmetatable(L, BIND_VIT_FINETUNE);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 2);
    if (image_finetune_begin(f, &m->m, d, &cfg, &lc, &scfg) != LSC_OK) return bind_error(L);
    return 1;
}

/* f:step() -> loss, grad_norm, lr, event (a table at an expert boundary, else nil) */
static int f_step(lua_State *L) {
    ImageFinetune *f = luaL_checkudata(L, 1, BIND_VIT_FINETUNE);
    check_run(L, f->ft_live, "fine-tuning run is closed");
    StepResult r;
    float lr;
    CascadeEvent ev;
    const int defer = bind_step_defers(f->ft.opt.be);
    const int boundary = image_finetune_step(f, defer ? NULL : &r, &lr, &ev);
    if (boundary < 0) return bind_error(L);
    return bind_push_step(L, defer ? NULL : &r, lr, boundary == 1 ? &ev : NULL);
}

/* f:results() -> the pending steps' losses and gradient norms (bind_step_log_results) */
static int f_results(lua_State *L) {
    ImageFinetune *f = luaL_checkudata(L, 1, BIND_VIT_FINETUNE);
    check_run(L, f->ft_live, "fine-tuning run is closed");
    return bind_step_log_results(L, &f->ft.log);
}

/* f:save_state(path, key, mark [, {numbers}]), f:load_state(path, key) -> mark, step,
 * {numbers} (bind_finetune.c) */
static int f_save_state(lua_State *L) {
    ImageFinetune *f = luaL_checkudata(L, 1, BIND_VIT_FINETUNE);
    check_run(L, f->ft_live, "fine-tuning run is closed");
    return bind_finetune_save_state(L, &f->ft);
}
static int f_load_state(lua_State *L) {
    ImageFinetune *f = luaL_checkudata(L, 1, BIND_VIT_FINETUNE);
    check_run(L, f->ft_live, "fine-tuning run is closed");
    return bind_finetune_load_state(L, &f->ft);
}

/* Ends the run and detaches the adapter: the model then holds the merged result. */
static int f_close(lua_State *L) {
    image_finetune_end(luaL_checkudata(L, 1, BIND_VIT_FINETUNE));
    return 0;
}

/* f:save_adapter(dir [, base_model]): after the last step, the run's adapter and the head
 * (modules_to_save "classifier") as a PEFT directory; an error when it has none. */
static int f_save_adapter(lua_State *L) {
    ImageFinetune *f = luaL_checkudata(L, 1, BIND_VIT_FINETUNE);
    check_run(L, f->ft_live, "fine-tuning run is closed");
    if (peft_save_run(luaL_checkstring(L, 2), &f->ft, NULL, f->model, luaL_optstring(L, 3, NULL)) !=
        LSC_OK)
        return bind_error(L);
    return 0;
}

static int f_tostring(lua_State *L) {
    ImageFinetune *f = luaL_checkudata(L, 1, BIND_VIT_FINETUNE);
    if (!f->ft_live)
        lua_pushstring(L, "vit finetune (closed)");
    else
        lua_pushfstring(L, "vit finetune (step %d of %d, %d experts)", (int)f->ft.step,
                        (int)f->ft.config.total_steps, f->ft.cascade.n_experts);
    return 1;
}

int luaopen_lorasc_core_vit(lua_State *L) {
    static const luaL_Reg methods[] = {{"clone", m_clone},     {"snapshot", m_snapshot},
                                       {"init_head", m_init_head}, {"load_head", m_load_head}, {"save", m_save},
                                       {"save_hf", m_save_hf}, {"merge_adapter", m_merge_adapter},
                                       {"config", m_config},   {"num_params", m_num_params},
                                       {"weights_finite", m_weights_finite},
                                       {"set_precision", m_set_precision},
                                       {"set_activations", m_set_activations},
                                       {"close", m_close},     {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", m_close}, {"__close", m_close},
                                    {"__tostring", m_tostring}, {NULL, NULL}};
    bind_new_class(L, BIND_VIT, methods, meta);
    bind_snapshot_class(L);
    static const luaL_Reg tmethods[] = {
        {"step", t_step}, {"results", t_results}, {"close", t_close}, {NULL, NULL}};
    static const luaL_Reg tmeta[] = {{"__gc", t_close}, {"__close", t_close},
                                     {"__tostring", t_tostring}, {NULL, NULL}};
    bind_new_class(L, BIND_VIT_TRAINER, tmethods, tmeta);
    static const luaL_Reg fmethods[] = {{"step", f_step},
                                        {"results", f_results},
                                        {"save_state", f_save_state},
                                        {"load_state", f_load_state},
                                        {"close", f_close},
                                        {"save_adapter", f_save_adapter},
                                        {NULL, NULL}};
    static const luaL_Reg fmeta[] = {{"__gc", f_close}, {"__close", f_close},
                                     {"__tostring", f_tostring}, {NULL, NULL}};
    bind_new_class(L, BIND_VIT_FINETUNE, fmethods, fmeta);
    static const luaL_Reg fns[] = {{"new", l_new}, {"load", l_load}, {"load_hf", l_load_hf}, {"hf_config", l_hf_config},
                                   {"hf_processor", l_hf_processor}, {"check_head", l_check_head}, {"trainer", l_trainer},
                                   {"finetune", l_finetune}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
