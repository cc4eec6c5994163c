/* lorasc.core.sys: the few operating-system services the harness needs (clock, tty, files,
 * hashing, host name), the bounded evaluation of experiment files (an allocator with a cap and
 * an instruction-count hook), plus the helpers shared by the other binding files. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/data/datadir.h"
#include "core/base/error.h"
#include "core/base/sha256.h"
#include "core/base/stop.h"
#include "core/model/device.h"
#include "lorasc_config.h"
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

/* core's messages are user-facing sentences: raised as "lorasc: <sentence>", without the
 * position of the Lua line that called the binding (a harness file the user never wrote),
 * so the host prints them without a traceback and the runner records them as they are. */
int bind_error(lua_State *L) {
    lua_pushfstring(L, "lorasc: %s", error_last());
    return lua_error(L);
}

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
void bind_set_int(lua_State *L, const char *key, lua_Integer v) {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, key);
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
/* sys.listdir(path) -> { names } (without . and ..), or nil when it is not a readable directory */
static int l_listdir(lua_State *L) {
    DIR *d = opendir(luaL_checkstring(L, 1));
    if (!d) return 0;
    lua_newtable(L);
    lua_Integer i = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++i);
    }
    closedir(d);
    return 1;
}
static int l_datadir_path(lua_State *L) {
    char buf[4096];
    if (datadir_path(buf, sizeof buf, luaL_checkstring(L, 1)) != LSC_OK) return bind_error(L);
    lua_pushstring(L, buf);
    return 1;
}
/* sys.sleep(seconds): the whole time, a signal caught meanwhile (a stop request) included,
 * as a step of that length would take it. */
static int l_sleep(lua_State *L) {
    const double sec = luaL_checknumber(L, 1);
    struct timespec ts = {.tv_sec = (time_t)sec, .tv_nsec = (long)((sec - (double)(time_t)sec) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return 0;
}
/* ------------------------------------------------------------------------------------------
 * bounded evaluation: an experiment file is code, and `while true do end` or a loop that
 * allocates without end must end in a sentence naming its line, not hang or take the machine.
 * The allocator counts every byte the Lua state holds; while a cap is set, growth past it
 * fails (Lua then collects garbage, retries, and raises a memory error). A hook counts
 * instructions and remembers the last line run in the file being evaluated. */

typedef struct Limits {
    lua_Alloc inner; /* the allocator luaL_newstate installed */
    void *inner_ud;
    int64_t used;    /* bytes the state holds (relative: allocations before the wrap are not counted) */
    int64_t cap;     /* growth fails past it while capped */
    int capped;
    const char *source; /* "@path" of the chunk whose lines are tracked */
    int line;           /* the last line run in it */
    int64_t instructions, max_instructions;
} Limits;
static Limits g_limits;

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    Limits *lim = ud;
    const int64_t old = ptr ? (int64_t)osize : 0; /* without ptr, osize is a type tag */
    if (nsize > (size_t)old && lim->capped && lim->used + (int64_t)nsize - old > lim->cap) return NULL;
    void *p = lim->inner(lim->inner_ud, ptr, osize, nsize);
    if (p || nsize == 0) lim->used += (int64_t)nsize - old;
    return p;
}

void bind_limits_install(lua_State *L) {
    g_limits.inner = lua_getallocf(L, &g_limits.inner_ud);
    lua_setallocf(L, limited_alloc, &g_limits);
}

#define HOOK_COUNT 1000

static void limit_hook(lua_State *L, lua_Debug *ar) {
    Limits *lim = &g_limits;
    if (ar->event == LUA_HOOKLINE) {
        if (lua_getinfo(L, "S", ar) && lim->source && strcmp(ar->source, lim->source) == 0)
            lim->line = ar->currentline;
        return;
    }
    lim->instructions += HOOK_COUNT;
    if (lim->instructions > lim->max_instructions) {
        lua_sethook(L, NULL, 0, 0);
        lua_pushfstring(L, "lorasc: %s:%d: the experiment file ran more than %I Lua "
                           "instructions while it was evaluated (an endless loop?); lorasc stops "
                           "an experiment file there", lim->source ? lim->source + 1 : "?",
                        lim->line, (lua_Integer)lim->max_instructions);
        lua_error(L);
    }
}

/* sys.run_limited(fn, chunkname, max_instructions, max_bytes) -> ok, err: calls fn() with
 * at most max_instructions Lua instructions and max_bytes of new memory; a memory error is
 * reported at the last line of chunkname ("@path") that ran. */
static int l_run_limited(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    const char *source = luaL_checkstring(L, 2);
    const lua_Integer max_ins = luaL_checkinteger(L, 3), max_bytes = luaL_checkinteger(L, 4);
    if (lua_getallocf(L, NULL) != limited_alloc) return luaL_error(L, "run_limited: the allocator is not installed");
    Limits *lim = &g_limits;
    if (lim->capped) return luaL_error(L, "run_limited cannot nest");
    lua_settop(L, 2); /* the chunkname stays on the stack: lim->source points into it */
    lua_pushvalue(L, 1);
    lim->source = lua_tostring(L, 2);
    lim->line = 0;
    lim->instructions = 0;
    lim->max_instructions = max_ins;
    lim->cap = lim->used + max_bytes;
    lim->capped = 1;
    lua_sethook(L, limit_hook, LUA_MASKCOUNT | LUA_MASKLINE, HOOK_COUNT);
    const int status = lua_pcall(L, 0, 0, 0);
    lua_sethook(L, NULL, 0, 0);
    lim->capped = 0;
    if (status == LUA_OK) {
        lim->source = NULL;
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    if (status == LUA_ERRMEM) {
        lua_pushfstring(L, "lorasc: %s:%d: the experiment file took more than %d MiB of memory while "
                           "it was evaluated (a loop that allocates without end?); lorasc stops an "
                           "experiment file there", source[0] == '@' ? source + 1 : source,
                        lim->line, (int)(max_bytes >> 20));
    } else {
        lua_pushvalue(L, -2); /* the error object */
    }
    lim->source = NULL;
    return 2;
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
/* sys.device_info(): opens the device now (the error is backend_create's sentence when it
 * cannot start) and returns its description, one JSON object (kernels/backend.h describe:
 * CPU threads and BLAS; CUDA device name, memory, driver, runtime and cuBLAS versions). */
static int l_device_info(lua_State *L) {
    Backend *be = bind_backend(L);
    char desc[1024];
    be->describe(be, desc, sizeof desc);
    lua_pushstring(L, desc);
    return 1;
}
/* sys.device_error(): the open device's error sentence once an op has failed on it (sticky:
 * the device is unusable for the rest of the process), else nil. */
static int l_device_error(lua_State *L) {
    const char *e = g_backend ? g_backend->error(g_backend) : NULL;
    if (e) lua_pushstring(L, e);
    else lua_pushnil(L);
    return 1;
}
/* sys.cuda_built(): true when this lorasc was built with the CUDA backend (-Dcuda). */
static int l_cuda_built(lua_State *L) {
    lua_pushboolean(L, LORASC_HAVE_CUDA);
    return 1;
}

/* The stop signals of `lorasc run`: Ctrl-C (SIGINT), SIGTERM (kill's default, and what Slurm
 * sends on preemption or at the time limit) and SIGUSR1 (sbatch --signal=B:USR1@SECONDS, an
 * early warning). The first one only records a stop request (core/base/stop.h), which the
 * run reads after its current step; a second Ctrl-C stops the process at once. */
static const int STOP_SIGNALS[] = {SIGINT, SIGTERM, SIGUSR1};

static void on_stop_signal(int sig) {
    if (sig == SIGINT && stop_requested()) {
        signal(SIGINT, SIG_DFL);
        raise(SIGINT);
        return;
    }
    stop_request(sig);
}

/* sys.catch_stop_signals(): from now on SIGINT, SIGTERM and SIGUSR1 request a stop. */
static int l_catch_stop_signals(lua_State *L) {
    (void)L;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof STOP_SIGNALS / sizeof *STOP_SIGNALS; i++)
        sigaction(STOP_SIGNALS[i], &sa, NULL);
    return 0;
}

/* sys.stop_signal() -> number, name ("SIGINT", "SIGTERM", "SIGUSR1"), or nil if no stop was
 * requested. */
static int l_stop_signal(lua_State *L) {
    const int sig = stop_requested();
    if (!sig) return 0;
    lua_pushinteger(L, sig);
    lua_pushstring(L, sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGUSR1 ? "SIGUSR1" : "a signal");
    return 2;
}

int luaopen_lorasc_core_sys(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"now", l_now},       {"isatty", l_isatty},     {"getpid", l_getpid},
        {"hostname", l_hostname}, {"sha256", l_sha256}, {"mkdir", l_mkdir},
        {"exists", l_exists}, {"datadir_path", l_datadir_path},
        {"sleep", l_sleep}, {"set_threads", l_set_threads}, {"threads", l_threads},
        {"set_device", l_set_device}, {"device", l_device}, {"device_info", l_device_info},
        {"device_error", l_device_error}, {"cuda_built", l_cuda_built},
        {"run_limited", l_run_limited}, {"listdir", l_listdir},
        {"catch_stop_signals", l_catch_stop_signals}, {"stop_signal", l_stop_signal}, {NULL, NULL}};
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
