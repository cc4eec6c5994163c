/* The SQLite run store (see store.h for the contract, core/store/STORE.md for the schema):
 * the prepared statements and the helpers the store's files share, opening and closing,
 * run metadata, experiments and status names. Not here: runs and their buffered rows
 * (store_runs.c), queries (store_query.c), merging (store_merge.c), migrations (store_schema.c). */
#include "core/store/store.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/error.h"
#include "core/base/sha256.h"
#include "core/store/store_internal.h"
#include "core/store/store_schema.h"

static const char *const STATUS_NAMES[STORE_NUM_STATUS] = {"pending", "running", "done", "failed",
                                                           "interrupted"};

/* ------------------------------------------------------------------------------------------
 * prepared statements: prepared once in store_open, reset after every use */

#define RUN_COLUMNS                                                                               \
    "r.id, r.experiment_id, e.name, r.config_hash, r.config, r.seed, r.status, r.error, "        \
    "r.attempts, r.created_at, r.started_at, r.finished_at, r.heartbeat_at, r.wall_time_s, "     \
    "r.host, r.pid, r.device, r.git_commit, r.git_dirty, r.build_options, r.lib_versions, "      \
    "r.inputs_sha256, r.label"

static const char *const SQL[ST_COUNT] = {
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_BEGIN] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_EXP_UPSERT] =
        "INSERT INTO experiments (name, file, source, source_sha256, created_at, updated_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (name) DO UPDATE SET file = excluded.file, "
        "source = excluded.source, source_sha256 = excluded.source_sha256, updated_at = "
        "excluded.updated_at WHERE file IS NOT excluded.file OR source_sha256 IS NOT "
        "excluded.source_sha256",
    [ST_EXP_FIND] = "SELECT id FROM experiments WHERE name = ?1",
    [ST_RUN_INSERT] =
        "INSERT INTO runs (experiment_id, config_hash, config, seed, status, created_at) "
        "VALUES (?1, ?2, ?3, ?4, 'pending', ?5) ON CONFLICT (experiment_id, config_hash) DO NOTHING",
    [ST_RUN_GET] = "SELECT id, config, seed, status, host, pid, heartbeat_at, started_at, attempts, "
                   "git_commit, git_dirty, inputs_sha256 "
                   "FROM runs WHERE experiment_id = ?1 AND config_hash = ?2",
    [ST_RUN_INTERRUPT] = "UPDATE runs SET status = 'interrupted', error = ?2 WHERE id = ?1",
    [ST_RUN_START] =
        "UPDATE runs SET status = 'running', error = NULL, attempts = attempts + 1, "
        "started_at = ?2, heartbeat_at = ?2, finished_at = NULL, wall_time_s = NULL, host = ?3, "
        "pid = ?4, device = ?5, git_commit = ?6, git_dirty = ?7, build_options = ?8, "
        "lib_versions = ?9 WHERE id = ?1",
    [ST_RUN_HEARTBEAT] = "UPDATE runs SET heartbeat_at = ?2 "
                         "WHERE id = ?1 AND status = 'running' AND host = ?3 AND pid = ?4",
    [ST_RUN_FINISH] =
        "UPDATE runs SET status = ?2, error = ?3, finished_at = ?4, heartbeat_at = ?4, "
        "wall_time_s = ?5 WHERE id = ?1 AND status = 'running' AND host = ?6 AND pid = ?7",
    [ST_RUN_OWNER] = "SELECT status, host, pid FROM runs WHERE id = ?1",
    [ST_DEL_METRICS] = "DELETE FROM metrics WHERE run_id = ?1",
    [ST_DEL_EVALS] = "DELETE FROM evals WHERE run_id = ?1",
    [ST_DEL_ARTIFACTS] = "DELETE FROM artifacts WHERE run_id = ?1",
    [ST_METRIC_COUNT] = "SELECT count(*) FROM metrics WHERE run_id = ?1",
    /* rowids grow with every insert while the run's own rows are there: insertion order */
    [ST_METRIC_REWIND] = "DELETE FROM metrics WHERE run_id = ?1 AND rowid NOT IN "
                         "(SELECT rowid FROM metrics WHERE run_id = ?1 ORDER BY rowid LIMIT ?2)",
    [ST_METRIC_INSERT] = "INSERT INTO metrics (run_id, step, name, value) VALUES (?1, ?2, ?3, ?4)",
    [ST_EVAL_INSERT] = "INSERT INTO evals (run_id, split, metric, value) VALUES (?1, ?2, ?3, ?4) "
                       "ON CONFLICT (run_id, split, metric) DO UPDATE SET value = excluded.value",
    [ST_ARTIFACT_INSERT] =
        "INSERT INTO artifacts (run_id, path, kind, sha256, bytes, created_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (run_id, path) DO UPDATE SET "
        "kind = excluded.kind, sha256 = excluded.sha256, bytes = excluded.bytes, "
        "created_at = excluded.created_at",
    [ST_STATUS_COUNTS] = "SELECT status, count(*) FROM runs WHERE ?1 = 0 OR experiment_id = ?1 "
                         "GROUP BY status",
    [ST_RUNNING_ROWS] = "SELECT host, pid, heartbeat_at, started_at FROM runs "
                        "WHERE status = 'running' AND (?1 = 0 OR experiment_id = ?1)",
    [ST_QUERY_RUNS] = "SELECT " RUN_COLUMNS " FROM runs r JOIN experiments e ON "
                      "e.id = r.experiment_id WHERE ?1 = 0 OR r.experiment_id = ?1 ORDER BY r.id",
    [ST_QUERY_EVALS] = "SELECT split, metric, value FROM evals WHERE run_id = ?1 "
                       "ORDER BY split, metric",
    [ST_DEL_INPUTS] = "DELETE FROM run_inputs WHERE run_id = ?1",
    [ST_INPUT_INSERT] =
        "INSERT INTO run_inputs (run_id, path, kind, sha256, bytes) SELECT ?1, ?2, ?3, ?4, ?5 "
        "WHERE ?6 = 0 OR EXISTS (SELECT 1 FROM runs WHERE id = ?1 AND status = 'running' AND "
        "host = ?7 AND pid = ?8) ON CONFLICT (run_id, path) DO UPDATE SET kind = excluded.kind, "
        "sha256 = excluded.sha256, bytes = excluded.bytes",
    [ST_RUN_SET_INPUTS] = "UPDATE runs SET inputs_sha256 = ?2 WHERE id = ?1",
    [ST_QUERY_INPUTS] = "SELECT path, kind, sha256, bytes FROM run_inputs WHERE run_id = ?1 "
                        "ORDER BY kind, path",
    /* ?2: a name prefix, "" for every row */
    [ST_QUERY_METRICS] = "SELECT step, name, value FROM metrics WHERE run_id = ?1 AND "
                         "substr(name, 1, length(?2)) = ?2 ORDER BY rowid",
};

/* ------------------------------------------------------------------------------------------
 * helpers shared by the store's files (store_internal.h) */

/* The statement, reset and unbound, ready to bind. */
sqlite3_stmt *store_stmt(Store *s, int which) {
    sqlite3_stmt *st = s->stmt[which];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

int store_db_error(Store *s, const char *what) {
    return error_set("Run database %s: cannot %s: %s.", s->path, what, sqlite3_errmsg(s->db));
}

/* Steps a statement that returns no rows (or whose rows are ignored), then resets it. */
int store_stmt_run(Store *s, sqlite3_stmt *st, const char *what) {
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
    }
    int rc = src == SQLITE_DONE ? LSC_OK : store_db_error(s, what);
    sqlite3_reset(st);
    return rc;
}

int store_begin(Store *s, const char *what) {
    return store_stmt_run(s, store_stmt(s, ST_BEGIN_IMMEDIATE), what);
}
int store_commit(Store *s, const char *what) {
    return store_stmt_run(s, store_stmt(s, ST_COMMIT), what);
}
/* Rolls back if a transaction is open; keeps the error already set. */
void store_rollback(Store *s) {
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_step(store_stmt(s, ST_ROLLBACK));
        sqlite3_reset(s->stmt[ST_ROLLBACK]);
    }
}

void store_bind_text_or_null(sqlite3_stmt *st, int i, const char *text) {
    if (text) sqlite3_bind_text(st, i, text, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i);
}

char *store_text_dup(const char *text) {
    if (!text) return NULL;
    char *copy = malloc(strlen(text) + 1);
    if (copy) strcpy(copy, text);
    return copy;
}

const char *store_col_text(sqlite3_stmt *st, int i) {
    return (const char *)sqlite3_column_text(st, i);
}

double store_col_real_or_nan(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

/* ------------------------------------------------------------------------------------------
 * open / close */

/* The directory part of path must exist: we never create directories behind the user's back. */
static int check_directory(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash || strcmp(path, ":memory:") == 0) return LSC_OK;
    char dir[4096];
    const size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof dir) return error_set("Run database path is too long: %s.", path);
    memcpy(dir, path, n);
    dir[n] = '\0';
    struct stat st;
    if (stat(dir, &st) != 0)
        return error_set("Cannot open run database %s: directory %s does not exist (create it, or "
                         "pass a database path in an existing directory).", path, dir);
    if (!S_ISDIR(st.st_mode))
        return error_set("Cannot open run database %s: %s is not a directory.", path, dir);
    return LSC_OK;
}

static void set_default_host(Store *s) {
    if (gethostname(s->host, sizeof s->host) != 0) strcpy(s->host, "unknown");
    s->host[sizeof s->host - 1] = '\0';
}

/* "file:PATH?PARAMS" with the characters a URI path cannot hold as they are (%, ?, #) escaped. */
int store_uri(char *out, size_t size, const char *path, const char *params) {
    size_t n = (size_t)snprintf(out, size, "file:");
    for (const char *p = path; *p && n + 4 < size; p++) {
        if (*p == '%' || *p == '?' || *p == '#') n += (size_t)snprintf(out + n, size - n, "%%%02X", (unsigned char)*p);
        else out[n++] = *p;
    }
    if (n + 2 + strlen(params) >= size) return error_set("Run database path is too long: %s.", path);
    snprintf(out + n, size - n, "?%s", params);
    return LSC_OK;
}

/* The sentence for a run database lorasc cannot write: the file, or its directory (SQLite
 * writes its -wal and -shm files beside it), is read-only. NULL when both are writable. */
static const char *unwritable(const char *path) {
    if (strcmp(path, ":memory:") == 0) return NULL;
    const char *slash = strrchr(path, '/');
    char dir[4096] = ".";
    if (slash) snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    if (access(path, F_OK) == 0 && access(path, W_OK) != 0) return "the file is read-only";
    if (access(dir, W_OK) != 0) return "its directory is read-only";
    return NULL;
}

static int prepare_all(Store *s, const char *path) {
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL) !=
            SQLITE_OK)
            return error_set("Run database %s: cannot prepare statement %d (%s): %s.", path, i,
                             SQL[i], sqlite3_errmsg(s->db));
    }
    return LSC_OK;
}

static int open_begin(Store *s, const char *path) {
    memset(s, 0, sizeof *s);
    s->stale_after_s = STORE_STALE_AFTER_S;
    s->git_dirty = -1;
    set_default_host(s);
    int rc = check_directory(path);
    if (rc != LSC_OK) return rc;
    s->path = store_text_dup(path);
    if (!s->path) return error_set("Out of memory opening run database %s.", path);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = error_set("Cannot open run database %s: it is a directory; pass a file path such as "
                       "%s/lorasc.db.", path, path);
        store_close(s);
    }
    return rc;
}

int store_open(Store *s, const char *path) {
    int rc = open_begin(s, path);
    if (rc != LSC_OK) return rc;
    const char *ro = unwritable(path);
    if (ro) {
        rc = error_set("Cannot write the run database %s: %s. `lorasc report`, `status`, `show` "
                       "and `merge` read it as it is; to run, pass --db a writable path (e.g. a "
                       "copy of it).", path, ro);
        goto fail;
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI,
                        NULL) != SQLITE_OK) {
        rc = error_set("Cannot open run database %s: %s.", path,
                       s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 30000);
    rc = store_schema_migrate(s->db, path);
    if (rc != LSC_OK) goto fail;
    /* WAL: readers never block the writer and a killed writer leaves the file intact.
     * synchronous=NORMAL is safe in WAL against process crashes (a power loss may drop the
     * last commits, never corrupt). Switching a new file to WAL needs an exclusive lock and
     * SQLite does not wait for it, so processes opening a new file together retry here. */
    char *msg = NULL;
    int src;
    for (int waited_ms = 0;; waited_ms += 20) {
        src = sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", NULL, NULL, &msg);
        if ((src != SQLITE_BUSY && src != SQLITE_LOCKED) || waited_ms >= 30000) break;
        sqlite3_free(msg);
        msg = NULL;
        sqlite3_sleep(20);
    }
    if (src == SQLITE_OK)
        src = sqlite3_exec(s->db, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;", NULL,
                           NULL, &msg);
    if (src != SQLITE_OK) {
        rc = error_set("Cannot set up run database %s: %s.", path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        goto fail;
    }
    rc = prepare_all(s, path);
    if (rc != LSC_OK) goto fail;
    return LSC_OK;
fail:
    store_close(s);
    return rc;
}

int store_open_readonly(Store *s, const char *path) {
    int rc = open_begin(s, path);
    if (rc != LSC_OK) return rc;
    if (access(path, R_OK) != 0) {
        rc = error_set("Cannot read run database %s: %s.", path, strerror(errno));
        goto fail;
    }
    /* mode=ro first; a WAL database in a read-only directory cannot get its -shm file, and
     * is then opened immutable (nobody can be writing it there) */
    for (int attempt = 0; attempt < 2; attempt++) {
        char uri[4200];
        if ((rc = store_uri(uri, sizeof uri, path, attempt ? "mode=ro&immutable=1" : "mode=ro")) != LSC_OK)
            goto fail;
        if (sqlite3_open_v2(uri, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK)
            rc = error_set("Cannot open run database %s: %s.", path,
                           s->db ? sqlite3_errmsg(s->db) : "out of memory");
        else
            rc = store_schema_check(s->db, path);
        if (rc == LSC_OK) break;
        sqlite3_close(s->db);
        s->db = NULL;
    }
    if (rc != LSC_OK) goto fail;
    sqlite3_busy_timeout(s->db, 30000);
    s->readonly = 1;
    rc = prepare_all(s, path);
    if (rc != LSC_OK) goto fail;
    return LSC_OK;
fail:
    store_close(s);
    return rc;
}

int store_close(Store *s) {
    int rc = LSC_OK;
    if (s->db && s->stmt[ST_COUNT - 1] && !s->readonly) rc = store_flush(s);
    for (int i = 0; i < STORE_MAX_STMTS; i++) sqlite3_finalize(s->stmt[i]);
    if (s->db) sqlite3_close(s->db);
    store_buffers_free(s);
    store_inputs_free(s);
    free(s->path);
    free(s->device);
    free(s->git_commit);
    free(s->build_options);
    free(s->lib_versions);
    const double stale = s->stale_after_s;
    memset(s, 0, sizeof *s);
    s->stale_after_s = stale;
    return rc;
}

int store_meta_set(Store *s, const StoreRunMeta *meta) {
    const char *given[4] = {meta->device, meta->git_commit, meta->build_options, meta->lib_versions};
    char *copy[4];
    int missing = 0;
    for (int i = 0; i < 4; i++) {
        copy[i] = store_text_dup(given[i]);
        missing |= given[i] && !copy[i];
    }
    if (missing) {
        for (int i = 0; i < 4; i++) free(copy[i]);
        return error_set("Out of memory recording run metadata.");
    }
    char **fields[4] = {&s->device, &s->git_commit, &s->build_options, &s->lib_versions};
    for (int i = 0; i < 4; i++) {
        free(*fields[i]);
        *fields[i] = copy[i];
    }
    s->git_dirty = meta->git_commit ? meta->git_dirty != 0 : -1;
    if (meta->host) snprintf(s->host, sizeof s->host, "%s", meta->host);
    else set_default_host(s);
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * experiments */

int store_experiment_upsert(Store *s, const char *name, const char *file, const char *source,
                            int64_t *id) {
    char now[32], hash[65];
    store_schema_time_iso(now, 0);
    sqlite3_stmt *st = store_stmt(s, ST_EXP_UPSERT);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    store_bind_text_or_null(st, 2, file);
    store_bind_text_or_null(st, 3, source);
    if (source) {
        sha256_buffer_hex(source, strlen(source), hash);
        sqlite3_bind_text(st, 4, hash, -1, SQLITE_TRANSIENT);
    }
    sqlite3_bind_text(st, 5, now, -1, SQLITE_TRANSIENT);
    if (store_stmt_run(s, st, "record the experiment") != LSC_OK) return LSC_ERR;
    return store_experiment_find(s, name, id);
}

int store_experiment_find(Store *s, const char *name, int64_t *id) {
    sqlite3_stmt *st = store_stmt(s, ST_EXP_FIND);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    const int src = sqlite3_step(st);
    *id = src == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (src != SQLITE_ROW && src != SQLITE_DONE) return store_db_error(s, "look up the experiment");
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * names */

const char *store_status_name(StoreRunStatus status) {
    return (int)status >= 0 && status < STORE_NUM_STATUS ? STATUS_NAMES[status] : NULL;
}

int store_status_parse(const char *name) {
    for (int i = 0; name && i < STORE_NUM_STATUS; i++)
        if (strcmp(name, STATUS_NAMES[i]) == 0) return i;
    return -1;
}

const char *store_sqlite_version(void) { return sqlite3_libversion(); }
