/* lorasc.core.interop: what the Hugging Face exchange needs beyond the model userdata's own
 * methods (m:save_hf, m:merge_adapter, f:save_adapter): an adapter directory's description, read
 * and checked by core/formats/peft.h without a model, a JSON reader (a run's stored config,
 * for `lorasc export`), and the dtype names shared by the exporters. */
#include <string.h>

#include <jansson.h>

#include "core/base/error.h"
#include "core/formats/peft.h"
#include "core/formats/safetensors.h"
#include "lua/bind.h"

int bind_st_dtype(lua_State *L, const char *name) {
    static const char *const names[] = {"f32", "f16", "bf16", NULL};
    static const int values[] = {ST_F32, ST_F16, ST_BF16};
    for (int i = 0; names[i]; i++)
        if (strcmp(name, names[i]) == 0) return values[i];
    return luaL_error(L, "unknown dtype '%s'; valid: f32, f16, bf16", name);
}

/* interop.peft_info(dir, "llama"|"vit") -> {r, lora_alpha, dora, targets = {"q", ...},
 * n_layers, head (ViT: the adapter holds the classifier), base_model (or nil)}; an error
 * sentence naming whatever the adapter holds that lorasc does not implement. */
static int l_peft_info(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    static const char *const kinds[] = {"llama", "vit", NULL};
    const int kind = luaL_checkoption(L, 2, "llama", kinds);
    PeftInfo info;
    if (peft_read_info(dir, kind == 1 ? PEFT_VIT : PEFT_LLAMA, &info) != LSC_OK)
        return bind_error(L);
    static const char *const short_names[LORA_NUM_TARGETS] = {"q",    "k",  "v",   "o",
                                                              "gate", "up", "down"};
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, info.lora.rank), lua_setfield(L, -2, "r");
    lua_pushnumber(L, info.lora.alpha), lua_setfield(L, -2, "lora_alpha");
    lua_pushboolean(L, info.lora.use_dora), lua_setfield(L, -2, "dora");
    lua_pushinteger(L, info.n_layers), lua_setfield(L, -2, "n_layers");
    lua_pushboolean(L, info.has_head), lua_setfield(L, -2, "head");
    if (info.base_model[0]) lua_pushstring(L, info.base_model), lua_setfield(L, -2, "base_model");
    lua_newtable(L);
    for (int t = 0, k = 1; t < LORA_NUM_TARGETS; t++)
        if (info.lora.targets & LORA_BIT(t))
            lua_pushstring(L, short_names[t]), lua_rawseti(L, -2, k++);
    lua_setfield(L, -2, "targets");
    return 1;
}

/* Pushes j as a Lua value: objects as tables by key (nulls left out), arrays as sequences,
 * integers as integers. */
static void push_json(lua_State *L, const json_t *j, int depth) {
    if (depth > 64) luaL_error(L, "JSON nested deeper than 64 levels");
    luaL_checkstack(L, 4, "JSON");
    if (json_is_object(j)) {
        lua_newtable(L);
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)j, key, v) {
            if (json_is_null(v)) continue;
            push_json(L, v, depth + 1);
            lua_setfield(L, -2, key);
        }
    } else if (json_is_array(j)) {
        lua_newtable(L);
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            push_json(L, v, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
    } else if (json_is_integer(j)) {
        lua_pushinteger(L, (lua_Integer)json_integer_value(j));
    } else if (json_is_real(j)) {
        lua_pushnumber(L, json_real_value(j));
    } else if (json_is_string(j)) {
        lua_pushlstring(L, json_string_value(j), json_string_length(j));
    } else if (json_is_boolean(j)) {
        lua_pushboolean(L, json_is_true(j));
    } else {
        lua_pushnil(L);
    }
}

/* interop.json_decode(text) -> the value (a run's canonical config, an adapter_config.json). */
static int l_json_decode(lua_State *L) {
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    json_error_t err;
    json_t *j = json_loadb(text, n, JSON_DECODE_ANY, &err);
    if (!j)
        return luaL_error(L, "invalid JSON: %s (line %d, column %d)", err.text, err.line,
                          err.column);
    push_json(L, j, 0);
    json_decref(j);
    return 1;
}

int luaopen_lorasc_core_interop(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"peft_info", l_peft_info}, {"json_decode", l_json_decode}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
