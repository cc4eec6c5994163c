/* lorasc.Snapshot: the weights a fine-tuning run changes in a shared base model, saved by
 * model:snapshot(targets) (Llama and ViT) and written back by snap:restore() or when the
 * snapshot is closed (`local snap <close> = base:snapshot(...)`: every run of a sweep starts
 * from the same base, with no clone of the whole model). Garbage collection only frees it. */
#include <string.h>

#include "core/base/error.h"
#include "lua/bind.h"

LSnapshot *bind_new_snapshot(lua_State *L, int owner, const int *owner_live) {
    owner = lua_absindex(L, owner);
    LSnapshot *s = lua_newuserdatauv(L, sizeof *s, 1);
    memset(s, 0, sizeof *s);
    s->owner_live = owner_live;
    luaL_setmetatable(L, BIND_SNAPSHOT);
    lua_pushvalue(L, owner); /* the model outlives its snapshot */
    lua_setiuservalue(L, -2, 1);
    return s;
}

static int restore(lua_State *L, LSnapshot *s) {
    if (!s->live) return luaL_error(L, "this snapshot is closed");
    if (!*s->owner_live)
        return luaL_error(L, "the model of this snapshot was closed before the snapshot was "
                             "restored: close the snapshot first");
    if (snapshot_restore(&s->s) != LSC_OK) return bind_error(L);
    return 0;
}

static int s_restore(lua_State *L) { return restore(L, luaL_checkudata(L, 1, BIND_SNAPSHOT)); }

/* close / __close: restore, then free (a closed snapshot closes again as a no-op) */
static int s_close(lua_State *L) {
    LSnapshot *s = luaL_checkudata(L, 1, BIND_SNAPSHOT);
    if (!s->live) return 0;
    if (*s->owner_live && snapshot_restore(&s->s) != LSC_OK) {
        snapshot_free(&s->s);
        s->live = 0;
        return bind_error(L);
    }
    snapshot_free(&s->s);
    s->live = 0;
    return 0;
}

static int s_gc(lua_State *L) {
    LSnapshot *s = luaL_checkudata(L, 1, BIND_SNAPSHOT);
    if (s->live) snapshot_free(&s->s);
    s->live = 0;
    return 0;
}

static int s_tostring(lua_State *L) {
    LSnapshot *s = luaL_checkudata(L, 1, BIND_SNAPSHOT);
    if (!s->live)
        lua_pushstring(L, "snapshot (closed)");
    else
        lua_pushfstring(L, "snapshot (%d tensors, %d values)", s->s.n, (int)s->s.total);
    return 1;
}

void bind_snapshot_class(lua_State *L) {
    static const luaL_Reg methods[] = {{"restore", s_restore}, {"close", s_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", s_gc}, {"__close", s_close}, {"__tostring", s_tostring}, {NULL, NULL}};
    bind_new_class(L, BIND_SNAPSHOT, methods, meta);
}
