/* The lorasc executable: embeds Lua 5.4, preloads the C bindings (lorasc.core.*), finds the
 * Lua harness (the lorasc/ folder of Lua files) and runs `lorasc.cli` under lua_pcall with a traceback.
 * Everything user-facing (subcommands, options, the DSL) is in Lua; this file only boots it.
 * The Lua directory is $LORASC_LUA_DIR if set, else the source tree's lua/ compiled in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "kernels/build_info.h"
#include "lorasc_build_info.h"
#include "lorasc_lua_config.h"
#include "lua/bind.h"

static int traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = luaL_tolstring(L, 1, NULL);
    /* User errors (bad experiment files, bad options) are raised as tables {msg = ...} or as
     * strings starting with "lorasc: " and print without a traceback. */
    if (strncmp(msg, "lorasc: ", 8) == 0) {
        lua_pushstring(L, msg);
        return 1;
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* OpenMP's threads spin while they wait for work by default. On a machine whose cores other
 * processes also use (several lorasc shards, a benchmark, a compiler) the spinning takes the
 * cores from the threads that have work: an SST-2 evaluation on SmolLM2 took 19.6 s spinning
 * and 2.9 s with passive waits on 2 busy cores. libgomp reads OMP_WAIT_POLICY when it loads,
 * before main, so lorasc sets it and starts itself again once; a policy the user set stays. */
static void omp_wait_passive(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv); /* returns only on failure: then run with the default policy */
}

int main(int argc, char **argv) {
    omp_wait_passive(argv);
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "lorasc: cannot create the Lua state (out of memory)\n");
        return 1;
    }
    bind_limits_install(L);
    luaL_openlibs(L);
    bind_preload(L);
    const char *dir = getenv("LORASC_LUA_DIR");
    if (!dir || !*dir) dir = LORASC_LUA_DIR;
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", dir, dir);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_pushstring(L, LORASC_VERSION);
    lua_setglobal(L, "LORASC_VERSION");
    lua_pushstring(L, LORASC_SOURCE_ROOT);
    lua_setglobal(L, "LORASC_SOURCE_ROOT");
    lua_pushstring(L, LORASC_BUILD_COMMIT);
    lua_setglobal(L, "LORASC_BUILD_COMMIT");
    char libs[512];
    kernels_library_versions(libs, sizeof libs);
    lua_pushstring(L, libs);
    lua_setglobal(L, "LORASC_KERNEL_LIBS");

    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushstring(L, "lorasc.cli");
    int rc = 1;
    if (lua_pcall(L, 1, 1, 1) != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
    } else {
        lua_getfield(L, -1, "main");
        lua_createtable(L, argc, 0);
        for (int i = 1; i < argc; i++) {
            lua_pushstring(L, argv[i]);
            lua_rawseti(L, -2, i);
        }
        if (lua_pcall(L, 1, 1, 1) != LUA_OK) {
            fprintf(stderr, "%s\n", lua_tostring(L, -1));
        } else {
            rc = (int)luaL_optinteger(L, -1, 0);
        }
    }
    fflush(stdout);
    lua_close(L); /* frees every model before the backend goes */
    bind_backend_destroy();
    return rc;
}
