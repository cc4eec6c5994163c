/* lorasc.core.store: the SQLite run store (core/store/store.h) as userdata. Thin: every method is
 * one store_* call; the grid, hashing and report arithmetic are Lua's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/store/store.h"
#include "lua/bind.h"

typedef struct LStore {
    Store s;
    int live;
} LStore;

static LStore *check_store(lua_State *L) {
    LStore *s = luaL_checkudata(L, 1, BIND_STORE);
    if (!s->live) luaL_argerror(L, 1, "store is closed");
    return s;
}

/* store.open(path [, "r"]): "r" opens an existing database read-only (store_open_readonly) */
static int l_open(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    const int readonly = strcmp(luaL_optstring(L, 2, "w"), "r") == 0;
    LStore *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    luaL_setmetatable(L, BIND_STORE);
    if ((readonly ? store_open_readonly(&s->s, path) : store_open(&s->s, path)) != LSC_OK)
        return bind_error(L);
    s->live = 1;
    return 1;
}

static int s_close(lua_State *L) {
    LStore *s = luaL_checkudata(L, 1, BIND_STORE);
    int rc = LSC_OK;
    if (s->live) rc = store_close(&s->s);
    s->live = 0;
    (void)rc; /* from __gc / __close an error cannot be raised; s:close() reports it */
    return 0;
}

static int s_close_method(lua_State *L) {
    LStore *s = luaL_checkudata(L, 1, BIND_STORE);
    int rc = LSC_OK;
    if (s->live) rc = store_close(&s->s);
    s->live = 0;
    if (rc != LSC_OK) return bind_error(L);
    return 0;
}

static int s_tostring(lua_State *L) {
    LStore *s = luaL_checkudata(L, 1, BIND_STORE);
    lua_pushstring(L, s->live ? "run store" : "run store (closed)");
    return 1;
}

#define CHECK(call) \
    do { if ((call) != LSC_OK) return bind_error(L); } while (0)

/* s:meta_set{device=, git_commit=, git_dirty=, build_options=, lib_versions=, host=} */
static int s_meta_set(lua_State *L) {
    LStore *s = check_store(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    StoreRunMeta m = {0};
    m.host = bind_opt_str(L, 2, "host", NULL);
    m.device = bind_opt_str(L, 2, "device", NULL);
    m.git_commit = bind_opt_str(L, 2, "git_commit", NULL);
    m.git_dirty = (int)bind_opt_int(L, 2, "git_dirty", 0);
    m.build_options = bind_opt_str(L, 2, "build_options", NULL);
    m.lib_versions = bind_opt_str(L, 2, "lib_versions", NULL);
    CHECK(store_meta_set(&s->s, &m));
    return 0;
}

static int s_experiment_upsert(lua_State *L) {
    LStore *s = check_store(L);
    int64_t id;
    CHECK(store_experiment_upsert(&s->s, luaL_checkstring(L, 2), luaL_optstring(L, 3, NULL),
                                  luaL_optstring(L, 4, NULL), &id));
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

static int s_experiment_find(lua_State *L) {
    LStore *s = check_store(L);
    int64_t id;
    CHECK(store_experiment_find(&s->s, luaL_checkstring(L, 2), &id));
    if (id == 0) lua_pushnil(L); else lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

/* s:run_add(experiment_id, hash, json, seed) -> run_id */
static int s_run_add(lua_State *L) {
    LStore *s = check_store(L);
    int64_t id;
    CHECK(store_run_add(&s->s, luaL_checkinteger(L, 2), luaL_checkstring(L, 3),
                        luaL_checkstring(L, 4), luaL_checkinteger(L, 5), &id));
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

/* s:run_claim(experiment_id, hash, json, seed, rerun_failed [, rerun_stale [, keep_log]]) ->
 * {run_id, claimed, prior, was_stale, attempt}; keep_log: keep an earlier attempt's rows
 * (then s:rewind) */
static int s_run_claim(lua_State *L) {
    LStore *s = check_store(L);
    StoreClaim c;
    const unsigned flags = (lua_toboolean(L, 6) ? STORE_RERUN_FAILED : 0u) |
                           (lua_toboolean(L, 7) ? STORE_RERUN_STALE : 0u) |
                           (lua_toboolean(L, 8) ? STORE_KEEP_LOG : 0u);
    CHECK(store_run_claim(&s->s, luaL_checkinteger(L, 2), luaL_checkstring(L, 3),
                          luaL_checkstring(L, 4), luaL_checkinteger(L, 5), flags, &c));
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)c.run_id), lua_setfield(L, -2, "run_id");
    lua_pushboolean(L, c.claimed), lua_setfield(L, -2, "claimed");
    lua_pushstring(L, store_status_name(c.prior)), lua_setfield(L, -2, "prior");
    lua_pushboolean(L, c.was_stale), lua_setfield(L, -2, "was_stale");
    lua_pushinteger(L, c.attempt), lua_setfield(L, -2, "attempt");
    return 1;
}

/* s:log_count(run_id) -> the run's metric rows in the database */
static int s_log_count(lua_State *L) {
    LStore *s = check_store(L);
    int64_t n = 0;
    CHECK(store_run_log_count(&s->s, luaL_checkinteger(L, 2), &n));
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* s:rewind(run_id, keep): keeps the run's first `keep` metric rows, deletes the rest and its
 * evals and artifacts */
static int s_rewind(lua_State *L) {
    LStore *s = check_store(L);
    CHECK(store_run_rewind(&s->s, luaL_checkinteger(L, 2), luaL_checkinteger(L, 3)));
    return 0;
}

/* s:inputs_set(fingerprint or nil, {{path=, kind=, sha256=, bytes=}, ...}): what the next
 * claims record as the run's inputs (store_inputs_set) */
static int s_inputs_set(lua_State *L) {
    LStore *s = check_store(L);
    const char *fp = luaL_optstring(L, 2, NULL);
    luaL_checktype(L, 3, LUA_TTABLE);
    const int n = (int)luaL_len(L, 3);
    StoreInput *in = lua_newuserdatauv(L, sizeof *in * (size_t)(n > 0 ? n : 1), 0);
    for (int i = 0; i < n; i++) {
        lua_geti(L, 3, i + 1);
        luaL_checktype(L, -1, LUA_TTABLE);
        const int t = lua_gettop(L);
        in[i].path = bind_opt_str(L, t, "path", NULL);
        in[i].kind = bind_opt_str(L, t, "kind", NULL);
        in[i].sha256 = bind_opt_str(L, t, "sha256", NULL);
        in[i].bytes = bind_opt_int(L, t, "bytes", 0);
        lua_pop(L, 1); /* the strings stay alive in the caller's table */
    }
    CHECK(store_inputs_set(&s->s, fp, in, n));
    return 0;
}

/* s:input(run_id, path, kind): one more input of a held run, hashed now */
static int s_input(lua_State *L) {
    LStore *s = check_store(L);
    CHECK(store_input_add(&s->s, luaL_checkinteger(L, 2), luaL_checkstring(L, 3),
                          luaL_checkstring(L, 4)));
    return 0;
}

static int push_input(void *ud, const StoreInput *in) {
    lua_State *L = ud;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, in->path), lua_setfield(L, -2, "path");
    lua_pushstring(L, in->kind), lua_setfield(L, -2, "kind");
    lua_pushstring(L, in->sha256), lua_setfield(L, -2, "sha256");
    lua_pushinteger(L, (lua_Integer)in->bytes), lua_setfield(L, -2, "bytes");
    lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    return LSC_OK;
}

/* s:run_inputs(run_id) -> {{path=, kind=, sha256=, bytes=}, ...} */
static int s_run_inputs(lua_State *L) {
    LStore *s = check_store(L);
    lua_newtable(L);
    CHECK(store_run_inputs(&s->s, luaL_checkinteger(L, 2), push_input, L));
    return 1;
}

static int s_heartbeat(lua_State *L) {
    LStore *s = check_store(L);
    CHECK(store_run_heartbeat(&s->s, luaL_checkinteger(L, 2)));
    return 0;
}

/* s:run_finish(run_id, "done"|"failed"|"interrupted", error, wall_time_s) */
static int s_run_finish(lua_State *L) {
    LStore *s = check_store(L);
    static const char *const st[] = {"done", "failed", "interrupted", NULL};
    static const StoreRunStatus codes[] = {STORE_DONE, STORE_FAILED, STORE_INTERRUPTED};
    const int k = luaL_checkoption(L, 3, NULL, st);
    CHECK(store_run_finish(&s->s, luaL_checkinteger(L, 2), codes[k], luaL_optstring(L, 4, NULL),
                           luaL_optnumber(L, 5, NAN)));
    return 0;
}

static int s_metric(lua_State *L) {
    LStore *s = check_store(L);
    CHECK(store_metric_add(&s->s, luaL_checkinteger(L, 2), luaL_checkinteger(L, 3),
                           luaL_checkstring(L, 4), luaL_checknumber(L, 5)));
    return 0;
}

static int s_eval(lua_State *L) {
    LStore *s = check_store(L);
    CHECK(store_eval_add(&s->s, luaL_checkinteger(L, 2), luaL_checkstring(L, 3),
                         luaL_checkstring(L, 4), luaL_checknumber(L, 5)));
    return 0;
}

/* s:eval_examples(run_id, split, metric, { v1, v2, ... }): every example's outcome of an eval */
static int s_eval_examples(lua_State *L) {
    LStore *s = check_store(L);
    const lua_Integer run_id = luaL_checkinteger(L, 2);
    const char *split = luaL_checkstring(L, 3), *metric = luaL_checkstring(L, 4);
    luaL_checktype(L, 5, LUA_TTABLE);
    const lua_Integer n = luaL_len(L, 5);
    double *v = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *v, 0); /* freed by the GC */
    for (lua_Integer i = 0; i < n; i++) {
        lua_geti(L, 5, i + 1);
        int ok = 0;
        v[i] = lua_tonumberx(L, -1, &ok);
        if (!ok) return luaL_error(L, "eval_examples: value %d is not a number", (int)(i + 1));
        lua_pop(L, 1);
    }
    CHECK(store_eval_examples_set(&s->s, run_id, split, metric, v, n));
    return 0;
}

/* s:eval_examples_get(run_id, split, metric) -> { v1, ... } or nil when none are stored */
static int s_eval_examples_get(lua_State *L) {
    LStore *s = check_store(L);
    double *v = NULL;
    int64_t n = 0;
    CHECK(store_eval_examples_get(&s->s, luaL_checkinteger(L, 2), luaL_checkstring(L, 3),
                                  luaL_checkstring(L, 4), &v, &n));
    if (!v) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)(i + 1));
    }
    free(v);
    return 1;
}

/* s:run_label(run_id, label): the method's label of a run (runs.label) */
static int s_run_label(lua_State *L) {
    LStore *s = check_store(L);
    CHECK(store_run_label_set(&s->s, luaL_checkinteger(L, 2), luaL_optstring(L, 3, NULL)));
    return 0;
}

static int s_artifact(lua_State *L) {
    LStore *s = check_store(L);
    CHECK(store_artifact_add(&s->s, luaL_checkinteger(L, 2), luaL_checkstring(L, 3),
                             luaL_checkstring(L, 4)));
    return 0;
}

static int s_flush(lua_State *L) {
    CHECK(store_flush(&check_store(L)->s));
    return 0;
}

static void push_counts(lua_State *L, const StoreCounts *c) {
    lua_createtable(L, 0, STORE_NUM_STATUS + 2);
    for (int i = 0; i < STORE_NUM_STATUS; i++) {
        lua_pushinteger(L, c->n[i]);
        lua_setfield(L, -2, store_status_name((StoreRunStatus)i));
    }
    lua_pushinteger(L, c->stale), lua_setfield(L, -2, "stale");
    lua_pushinteger(L, c->total), lua_setfield(L, -2, "total");
}

static int s_status(lua_State *L) {
    LStore *s = check_store(L);
    StoreCounts c;
    CHECK(store_status(&s->s, luaL_optinteger(L, 2, 0), &c));
    push_counts(L, &c);
    return 1;
}

static void set_str(lua_State *L, const char *k, const char *v) {
    if (v) lua_pushstring(L, v), lua_setfield(L, -2, k);
}

static int push_run(void *ud, const StoreRun *r) {
    lua_State *L = ud;
    lua_createtable(L, 0, 24);
    lua_pushinteger(L, (lua_Integer)r->id), lua_setfield(L, -2, "id");
    lua_pushinteger(L, (lua_Integer)r->experiment_id), lua_setfield(L, -2, "experiment_id");
    lua_pushinteger(L, (lua_Integer)r->seed), lua_setfield(L, -2, "seed");
    set_str(L, "experiment", r->experiment);
    set_str(L, "config_hash", r->config_hash);
    set_str(L, "config", r->config);
    set_str(L, "status", store_status_name(r->status));
    lua_pushboolean(L, r->stale), lua_setfield(L, -2, "stale");
    lua_pushinteger(L, r->attempts), lua_setfield(L, -2, "attempts");
    set_str(L, "error", r->error);
    set_str(L, "created_at", r->created_at);
    set_str(L, "started_at", r->started_at);
    set_str(L, "finished_at", r->finished_at);
    set_str(L, "heartbeat_at", r->heartbeat_at);
    if (!isnan(r->wall_time_s)) lua_pushnumber(L, r->wall_time_s), lua_setfield(L, -2, "wall_time_s");
    set_str(L, "host", r->host);
    set_str(L, "device", r->device);
    set_str(L, "git_commit", r->git_commit);
    set_str(L, "build_options", r->build_options);
    set_str(L, "lib_versions", r->lib_versions);
    set_str(L, "inputs_sha256", r->inputs_sha256);
    set_str(L, "label", r->label);
    lua_pushinteger(L, r->pid), lua_setfield(L, -2, "pid");
    lua_pushinteger(L, r->git_dirty), lua_setfield(L, -2, "git_dirty");
    lua_createtable(L, 0, 3); /* evals[split][metric] = value */
    for (int i = 0; i < r->n_evals; i++) {
        const StoreEval *e = &r->evals[i];
        if (lua_getfield(L, -1, e->split) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, e->split);
        }
        lua_pushnumber(L, e->value);
        lua_setfield(L, -2, e->metric);
        lua_pop(L, 1);
    }
    lua_setfield(L, -2, "evals");
    lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    return LSC_OK;
}

/* s:runs(experiment_id or 0 [, {status names}]) -> array of run tables */
static int s_runs(lua_State *L) {
    LStore *s = check_store(L);
    const lua_Integer exp = luaL_optinteger(L, 2, 0);
    unsigned mask = STORE_MASK_ALL;
    if (lua_istable(L, 3)) {
        mask = 0;
        for (lua_Integer i = 1; i <= luaL_len(L, 3); i++) {
            lua_geti(L, 3, i);
            const int st = store_status_parse(luaL_checkstring(L, -1));
            if (st < 0) return luaL_error(L, "unknown run status '%s'", lua_tostring(L, -1));
            mask |= STORE_MASK(st);
            lua_pop(L, 1);
        }
    }
    lua_newtable(L);
    CHECK(store_runs_query(&s->s, exp, mask, push_run, L));
    return 1;
}

static int s_merge(lua_State *L) {
    LStore *s = check_store(L);
    StoreMergeStats st = {0};
    CHECK(store_merge(&s->s, luaL_checkstring(L, 2), &st));
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, st.experiments_added), lua_setfield(L, -2, "experiments_added");
    lua_pushinteger(L, st.runs_added), lua_setfield(L, -2, "runs_added");
    lua_pushinteger(L, st.runs_replaced), lua_setfield(L, -2, "runs_replaced");
    lua_pushinteger(L, st.runs_skipped), lua_setfield(L, -2, "runs_skipped");
    return 1;
}

/* s:metrics(run_id) -> {name = {count=, last=, min=}} (for `lorasc show`) */
static int s_metrics(lua_State *L);

/* One row of s:metric_rows: appended to series[name] = {steps = {...}, values = {...}} (the
 * series table at the top of the stack). */
static int add_metric_row(void *ud, int64_t step, const char *name, double value) {
    lua_State *L = ud;
    if (lua_getfield(L, -1, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 2);
        lua_newtable(L), lua_setfield(L, -2, "steps");
        lua_newtable(L), lua_setfield(L, -2, "values");
        lua_pushvalue(L, -1), lua_setfield(L, -3, name);
    }
    lua_getfield(L, -1, "steps");
    const lua_Integer n = (lua_Integer)luaL_len(L, -1) + 1;
    lua_pushinteger(L, (lua_Integer)step), lua_rawseti(L, -2, n);
    lua_getfield(L, -2, "values");
    lua_pushnumber(L, value), lua_rawseti(L, -2, n);
    lua_pop(L, 3);
    return LSC_OK;
}

/* s:metric_rows(run_id [, prefix]) -> {name = {steps = {...}, values = {...}}}: the run's metric
 * rows in the database (flushed ones) whose name starts with prefix, in the order written */
static int s_metric_rows(lua_State *L) {
    LStore *s = check_store(L);
    const lua_Integer run_id = luaL_checkinteger(L, 2);
    const char *prefix = luaL_optstring(L, 3, "");
    lua_newtable(L);
    CHECK(store_metric_rows(&s->s, run_id, prefix, add_metric_row, L));
    return 1;
}

static int l_sqlite_version(lua_State *L) {
    lua_pushstring(L, store_sqlite_version());
    return 1;
}

int luaopen_lorasc_core_store(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"meta_set", s_meta_set},   {"experiment_upsert", s_experiment_upsert},
        {"experiment_find", s_experiment_find}, {"run_add", s_run_add},
        {"run_claim", s_run_claim}, {"heartbeat", s_heartbeat}, {"run_finish", s_run_finish},
        {"log_count", s_log_count}, {"rewind", s_rewind},
        {"metric", s_metric},       {"eval", s_eval},       {"artifact", s_artifact},
        {"flush", s_flush},         {"status", s_status},   {"runs", s_runs},
        {"merge", s_merge},         {"metrics", s_metrics}, {"close", s_close_method},
        {"metric_rows", s_metric_rows},
        {"inputs_set", s_inputs_set}, {"input", s_input}, {"run_inputs", s_run_inputs},
        {"eval_examples", s_eval_examples}, {"eval_examples_get", s_eval_examples_get},
        {"run_label", s_run_label},
        {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", s_close}, {"__close", s_close},
                                    {"__tostring", s_tostring}, {NULL, NULL}};
    bind_new_class(L, BIND_STORE, methods, meta);
    static const luaL_Reg fns[] = {{"open", l_open}, {"sqlite_version", l_sqlite_version},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}

#include <sqlite3.h>

static int s_metrics(lua_State *L) {
    LStore *s = check_store(L);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->s.db,
                           "SELECT name, count(*), min(value), max(value), "
                           "(SELECT value FROM metrics m2 WHERE m2.run_id = m.run_id AND "
                           "m2.name = m.name ORDER BY step DESC LIMIT 1) "
                           "FROM metrics m WHERE run_id = ? GROUP BY name ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK)
        return luaL_error(L, "metrics query: %s", sqlite3_errmsg(s->s.db));
    sqlite3_bind_int64(st, 1, luaL_checkinteger(L, 2));
    lua_newtable(L);
    while (sqlite3_step(st) == SQLITE_ROW) {
        lua_createtable(L, 0, 4);
        lua_pushstring(L, (const char *)sqlite3_column_text(st, 0)), lua_setfield(L, -2, "name");
        lua_pushinteger(L, sqlite3_column_int64(st, 1)), lua_setfield(L, -2, "count");
        lua_pushnumber(L, sqlite3_column_double(st, 2)), lua_setfield(L, -2, "min");
        lua_pushnumber(L, sqlite3_column_double(st, 3)), lua_setfield(L, -2, "max");
        lua_pushnumber(L, sqlite3_column_double(st, 4)), lua_setfield(L, -2, "last");
        lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    }
    sqlite3_finalize(st);
    return 1;
}
