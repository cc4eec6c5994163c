/* lorasc.core.data: byte-level text tasks (core/data/textdata.h) as userdata: load a task, count
 * its steps per epoch, evaluate a model on a split. */
#include <string.h>

#include "core/base/error.h"
#include "lua/bind.h"

LTextData *bind_check_textdata(lua_State *L, int idx) {
    LTextData *d = luaL_checkudata(L, idx, BIND_TEXTDATA);
    if (!d->live) luaL_argerror(L, idx, "dataset is closed");
    return d;
}

/* data.resolve(task) -> files | nil, message */
static int l_resolve(lua_State *L) {
    char buf[4096];
    if (textdata_resolve(luaL_checkstring(L, 1), buf, sizeof buf) != LSC_OK) {
        lua_pushnil(L);
        lua_pushstring(L, error_last());
        return 2;
    }
    lua_pushstring(L, buf);
    return 1;
}

static int l_tasks(lua_State *L) {
    lua_pushstring(L, textdata_task_names());
    return 1;
}

/* data.load(task, train_frac, val_frac, min_split) */
static int l_load(lua_State *L) {
    const char *task = luaL_checkstring(L, 1);
    const double train = luaL_optnumber(L, 2, 0.8), val = luaL_optnumber(L, 3, 0.1);
    const lua_Integer min_split = luaL_optinteger(L, 4, 2);
    LTextData *d = lua_newuserdatauv(L, sizeof *d, 0);
    memset(d, 0, sizeof *d);
    luaL_setmetatable(L, BIND_TEXTDATA);
    if (textdata_load(&d->d, task, train, val, (size_t)min_split) != LSC_OK) return bind_error(L);
    d->live = 1;
    return 1;
}

static int d_sizes(lua_State *L) {
    LTextData *d = bind_check_textdata(L, 1);
    for (int s = 0; s < TEXT_NUM_SPLITS; s++) lua_pushinteger(L, (lua_Integer)d->d.len[s]);
    return 3;
}

static int d_steps_per_epoch(lua_State *L) {
    LTextData *d = bind_check_textdata(L, 1);
    const int B = (int)luaL_checkinteger(L, 2), T = (int)luaL_checkinteger(L, 3);
    luaL_argcheck(L, B > 0 && T > 0, 2, "batch and seq must be > 0");
    lua_pushinteger(L, textdata_steps_per_epoch(&d->d, B, T));
    return 1;
}

/* d:evaluate(model, split, B, T [, max_windows]) -> loss, accuracy, { each window's accuracy } */
static int d_evaluate(lua_State *L) {
    LTextData *d = bind_check_textdata(L, 1);
    LModel *m = bind_check_model(L, 2);
    static const char *const splits[] = {"train", "val", "test", NULL};
    const int split = luaL_checkoption(L, 3, NULL, splits);
    const int B = (int)luaL_checkinteger(L, 4), T = (int)luaL_checkinteger(L, 5);
    luaL_argcheck(L, B > 0 && T > 0 && T <= m->m.config.seq_len, 5,
                  "batch must be > 0 and seq in [1, model seq_len]");
    double loss, acc;
    const long max_windows = (long)luaL_optinteger(L, 6, 0);
    const long n = text_eval_windows(&d->d, (TextSplit)split, T, max_windows);
    double *per = lua_newuserdatauv(L, sizeof(double) * (size_t)(n > 0 ? n : 1), 0); /* GC'd */
    if (text_eval_run_windows(&d->d, (TextSplit)split, &m->m, B, T, max_windows, &loss, &acc,
                              per) != LSC_OK)
        return bind_error(L);
    lua_pushnumber(L, loss);
    lua_pushnumber(L, acc);
    lua_createtable(L, (int)n, 0);
    for (long i = 0; i < n; i++) lua_pushnumber(L, per[i]), lua_rawseti(L, -2, i + 1);
    return 3;
}

static int d_close(lua_State *L) {
    LTextData *d = luaL_checkudata(L, 1, BIND_TEXTDATA);
    if (d->live) textdata_free(&d->d);
    d->live = 0;
    return 0;
}

static int d_tostring(lua_State *L) {
    LTextData *d = luaL_checkudata(L, 1, BIND_TEXTDATA);
    if (!d->live)
        lua_pushstring(L, "textdata (closed)");
    else
        lua_pushfstring(L, "textdata %s (%d bytes: train %d, val %d, test %d)", d->d.name,
                        (int)d->d.n, (int)d->d.len[0], (int)d->d.len[1], (int)d->d.len[2]);
    return 1;
}

int luaopen_lorasc_core_data(lua_State *L) {
    static const luaL_Reg methods[] = {{"sizes", d_sizes}, {"steps_per_epoch", d_steps_per_epoch},
                                       {"evaluate", d_evaluate}, {"close", d_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", d_close}, {"__close", d_close},
                                    {"__tostring", d_tostring}, {NULL, NULL}};
    bind_new_class(L, BIND_TEXTDATA, methods, meta);
    static const luaL_Reg fns[] = {{"resolve", l_resolve}, {"tasks", l_tasks}, {"load", l_load},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
