/* Shared pieces of the Lua bindings: module openers, the process-wide backend, and the
 * userdata type names. One binding file per Lua module (lorasc.core.model, ...). */
#ifndef LORASC_LUA_BIND_H
#define LORASC_LUA_BIND_H

#include <lauxlib.h>
#include <lua.h>

#include "core/llama.h"
#include "core/textdata.h"

#define BIND_MODEL "lorasc.Model"
#define BIND_FINETUNE "lorasc.Finetune"
#define BIND_TRAINER "lorasc.Trainer"
#define BIND_STORE "lorasc.Store"
#define BIND_TEXTDATA "lorasc.TextData"

typedef struct LModel {
    Llama m;
    int live; /* 1 once llama_create succeeded */
} LModel;

typedef struct LTextData {
    TextData d;
    int live;
} LTextData;

int luaopen_lorasc_core_model(lua_State *L);
int luaopen_lorasc_core_finetune(lua_State *L);
int luaopen_lorasc_core_store(lua_State *L);
int luaopen_lorasc_core_data(lua_State *L);
int luaopen_lorasc_core_sys(lua_State *L);
/* Registers all of the above in package.preload. */
void bind_preload(lua_State *L);

/* The CPU backend, created on first use with the thread count set by bind_set_threads. */
Backend *bind_backend(lua_State *L);
void bind_set_threads(int threads);
int bind_threads(void);
void bind_backend_destroy(void);

/* A live model / text-data argument (raises a Lua error otherwise). */
LModel *bind_check_model(lua_State *L, int idx);
LTextData *bind_check_textdata(lua_State *L, int idx);

/* Raises a Lua error with error_last() (never returns). */
int bind_error(lua_State *L);
/* Registers a metatable: methods under __index, plus metamethods. */
void bind_new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                    const luaL_Reg *metamethods);
/* Optional table fields: integer / number / string with a default. */
lua_Integer bind_opt_int(lua_State *L, int t, const char *key, lua_Integer def);
lua_Number bind_opt_num(lua_State *L, int t, const char *key, lua_Number def);
const char *bind_opt_str(lua_State *L, int t, const char *key, const char *def);

#endif
