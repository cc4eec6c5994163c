/* lorasc.core.fs: the file-system services the harness needs beyond lorasc.core.sys for the
 * base-model cache (an exclusive lock file, a writer's pid alive or not, leftovers listed),
 * provenance (a file's SHA-256, size and modification time) and `lorasc slurm` (absolute
 * paths, this executable). Plain POSIX calls; no policy: the cache rules live in cache.lua. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/error.h"
#include "core/base/sha256.h"
#include "lua/bind.h"

/* fs.realpath(path) -> absolute path with no symbolic links, or nil and the reason */
static int l_realpath(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char buf[PATH_MAX];
    if (!realpath(path, buf)) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    lua_pushstring(L, buf);
    return 1;
}

/* fs.exe() -> the absolute path of the running lorasc executable */
static int l_exe(lua_State *L) {
    char buf[PATH_MAX];
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return luaL_error(L, "cannot find this executable's path (/proc/self/exe): %s",
                                  strerror(errno));
    buf[n] = '\0';
    lua_pushstring(L, buf);
    return 1;
}

/* fs.stat(path) -> {size=, mtime=(seconds, fractional), mtime_ns=, ctime_ns=, ino=, dir=} or
 * nil (ctime: the inode's last change, which no one can set back: provenance's hash cache) */
static int l_stat(lua_State *L) {
    struct stat st;
    if (stat(luaL_checkstring(L, 1), &st) != 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, (lua_Integer)st.st_size), lua_setfield(L, -2, "size");
    lua_pushnumber(L, (lua_Number)st.st_mtim.tv_sec + (lua_Number)st.st_mtim.tv_nsec * 1e-9);
    lua_setfield(L, -2, "mtime");
    lua_pushinteger(L, (lua_Integer)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
    lua_setfield(L, -2, "mtime_ns");
    lua_pushinteger(L, (lua_Integer)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec);
    lua_setfield(L, -2, "ctime_ns");
    lua_pushinteger(L, (lua_Integer)st.st_ino), lua_setfield(L, -2, "ino");
    lua_pushboolean(L, S_ISDIR(st.st_mode)), lua_setfield(L, -2, "dir");
    return 1;
}

/* fs.sha256(path) -> hex digest, size in bytes (an unreadable file is an error naming it) */
static int l_sha256(lua_State *L) {
    char hex[65];
    int64_t bytes = 0;
    if (sha256_file_hex(luaL_checkstring(L, 1), hex, &bytes) != LSC_OK) return bind_error(L);
    lua_pushstring(L, hex);
    lua_pushinteger(L, (lua_Integer)bytes);
    return 2;
}

/* fs.create_excl(path, text) -> true if this call created path (with text in it), false if
 * it existed already; any other failure is an error. The text goes into a file of this
 * process first, which link() then puts at path: atomic and exclusive (also on NFS), and
 * nobody who finds path sees it empty (a process waiting on a lock reads who holds it). Where
 * the file system has no hard links, O_EXCL and a write. */
static int l_create_excl(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *text = luaL_checklstring(L, 2, &n);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.%ld.excl", path, (long)getpid()) >= (int)sizeof tmp)
        return luaL_error(L, "cannot create %s: the path is too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return luaL_error(L, "cannot create %s: %s", tmp, strerror(errno));
    const ssize_t w = write(fd, text, n);
    int err = errno;
    close(fd);
    if (w != (ssize_t)n) {
        unlink(tmp);
        return luaL_error(L, "cannot write %s: %s", tmp, strerror(err));
    }
    const int linked = link(tmp, path);
    err = errno;
    unlink(tmp);
    if (linked == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (err == EEXIST) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (err != EPERM && err != ENOTSUP && err != EOPNOTSUPP && err != EXDEV)
        return luaL_error(L, "cannot create %s: %s", path, strerror(err));
    /* no hard links here: O_EXCL (atomic too; the text follows the create) */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        if (errno == EEXIST) {
            lua_pushboolean(L, 0);
            return 1;
        }
        return luaL_error(L, "cannot create %s: %s", path, strerror(errno));
    }
    const ssize_t w2 = write(fd, text, n);
    err = errno;
    close(fd);
    if (w2 != (ssize_t)n) {
        unlink(path);
        return luaL_error(L, "cannot write %s: %s", path, strerror(err));
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* fs.pid_alive(pid) -> whether a process with that id exists on this machine */
static int l_pid_alive(lua_State *L) {
    const lua_Integer pid = luaL_checkinteger(L, 1);
    lua_pushboolean(L, pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM));
    return 1;
}

/* fs.list(dir) -> array of the names in dir (no "." or ".."), or nil and the reason */
static int l_list(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (!d) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
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

/* fs.touch(path) -> sets its modification time to now (a lock file's heartbeat) */
static int l_touch(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lua_pushboolean(L, utimensat(AT_FDCWD, path, NULL, 0) == 0);
    return 1;
}

int luaopen_lorasc_core_fs(lua_State *L) {
    static const luaL_Reg fns[] = {{"realpath", l_realpath}, {"exe", l_exe},
                                   {"stat", l_stat},         {"sha256", l_sha256},
                                   {"create_excl", l_create_excl}, {"pid_alive", l_pid_alive},
                                   {"list", l_list},         {"touch", l_touch},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
