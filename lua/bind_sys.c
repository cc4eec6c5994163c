/* lorasc.core.sys: the few operating-system services the harness needs (clock, tty, files,
 * hashing, host name) plus the helpers shared by the other binding files. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/data/datadir.h"
#include "core/base/error.h"
#include "core/base/sha256.h"
#include "core/model/device.h"
#include "lua/bind.h"

static Backend *g_backend;
static int g_threads;
static char g_device[16] = "cpu";

Backend *bind_backend(lua_State *L) {
    if (!g_backend && device_open(&g_backend, g_device, g_threads) != LSC_OK) bind_error(L);
    return g_backend;
}
void bind_set_threads(int threads) { g_threads = threads; }
int bind_threads(void) { return g_threads; }
void bind_backend_destroy(void) {
    device_close(g_backend);
    g_backend = NULL;
}

int bind_error(lua_State *L) { return luaL_error(L, "%s", error_last()); }

void bind_new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                    const luaL_Reg *metamethods) {
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, metamethods, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

lua_Integer bind_opt_int(lua_State *L, int t, const char *key, lua_Integer def) {
    lua_getfield(L, t, key);
    lua_Integer v = def;
    if (!lua_isnil(L, -1)) {
        int ok;
        v = lua_tointegerx(L, -1, &ok);
        if (!ok) luaL_error(L, "field '%s' must be an integer", key);
    }
    lua_pop(L, 1);
    return v;
}
lua_Number bind_opt_num(lua_State *L, int t, const char *key, lua_Number def) {
    lua_getfield(L, t, key);
    lua_Number v = def;
    if (!lua_isnil(L, -1)) {
        int ok;
        v = lua_tonumberx(L, -1, &ok);
        if (!ok) luaL_error(L, "field '%s' must be a number", key);
    }
    lua_pop(L, 1);
    return v;
}
const char *bind_opt_str(lua_State *L, int t, const char *key, const char *def) {
    lua_getfield(L, t, key);
    const char *v = def;
    if (!lua_isnil(L, -1)) {
        v = lua_tostring(L, -1);
        if (!v) luaL_error(L, "field '%s' must be a string", key);
    }
    lua_pop(L, 1); /* the string stays alive in the table */
    return v;
}

static int l_now(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}
static int l_isatty(lua_State *L) {
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}
static int l_getpid(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}
static int l_hostname(lua_State *L) {
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    lua_pushstring(L, host);
    return 1;
}
static int l_sha256(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char hex[65];
    sha256_buffer_hex(s, n, hex);
    lua_pushstring(L, hex);
    return 1;
}
static int l_mkdir(lua_State *L) { /* mkdir -p */
    const char *path = luaL_checkstring(L, 1);
    char buf[4096];
    if (strlen(path) >= sizeof buf) return luaL_error(L, "path too long: %s", path);
    strcpy(buf, path);
    for (char *p = buf + 1;; p++) {
        const int end = *p == '\0';
        if (*p == '/' || end) {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return luaL_error(L, "cannot create directory '%s': %s", buf, strerror(errno));
            if (end) break;
            *p = '/';
        }
    }
    return 0;
}
static int l_exists(lua_State *L) {
    struct stat st;
    lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0);
    return 1;
}
static int l_datadir_path(lua_State *L) {
    char buf[4096];
    if (datadir_path(buf, sizeof buf, luaL_checkstring(L, 1)) != LSC_OK) return bind_error(L);
    lua_pushstring(L, buf);
    return 1;
}
static int l_sleep(lua_State *L) {
    const double sec = luaL_checknumber(L, 1);
    struct timespec ts = {.tv_sec = (time_t)sec, .tv_nsec = (long)((sec - (double)(time_t)sec) * 1e9)};
    nanosleep(&ts, NULL);
    return 0;
}
static int l_set_threads(lua_State *L) {
    bind_set_threads((int)luaL_checkinteger(L, 1));
    return 0;
}
static int l_threads(lua_State *L) {
    lua_pushinteger(L, bind_threads());
    return 1;
}
/* sys.set_device("cpu"|"cuda"): the device of every model made from now on. The backend is
 * opened at the first model (device_open's error if the device is not built in) and stays for
 * the process, so the device cannot change once a model exists. */
static int l_set_device(lua_State *L) {
    static const char *const devices[] = {"cpu", "cuda", NULL};
    const char *name = devices[luaL_checkoption(L, 1, NULL, devices)];
    if (g_backend && strcmp(g_backend->name, name) != 0)
        return luaL_error(L, "the device is %s already (a model exists); set the device before "
                          "making the first model", g_backend->name);
    snprintf(g_device, sizeof g_device, "%s", name);
    return 0;
}
static int l_device(lua_State *L) {
    lua_pushstring(L, g_device);
    return 1;
}

int luaopen_lorasc_core_sys(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"now", l_now},       {"isatty", l_isatty},     {"getpid", l_getpid},
        {"hostname", l_hostname}, {"sha256", l_sha256}, {"mkdir", l_mkdir},
        {"exists", l_exists}, {"datadir_path", l_datadir_path},
        {"sleep", l_sleep}, {"set_threads", l_set_threads}, {"threads", l_threads},
        {"set_device", l_set_device}, {"device", l_device}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}

void bind_preload(lua_State *L) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    static const luaL_Reg mods[] = {{"lorasc.core.model", luaopen_lorasc_core_model},
                                    {"lorasc.core.finetune", luaopen_lorasc_core_finetune},
                                    {"lorasc.core.store", luaopen_lorasc_core_store},
                                    {"lorasc.core.data", luaopen_lorasc_core_data},
                                    {"lorasc.core.sys", luaopen_lorasc_core_sys},
                                    {"lorasc.core.vit", luaopen_lorasc_core_vit},
                                    {"lorasc.core.images", luaopen_lorasc_core_images},
                                    {"lorasc.core.tasks", luaopen_lorasc_core_tasks},
                                    {"lorasc.core.interop", luaopen_lorasc_core_interop},
                                    {"lorasc.core.fs", luaopen_lorasc_core_fs},
                                    {NULL, NULL}};
    luaL_setfuncs(L, mods, 0);
    lua_pop(L, 1);
}
