/* The SQLite run store (see store.h for the contract, core/store/STORE.md for the schema): opening
 * and migrating, claiming runs with stale-run recovery, buffered metrics written one
 * transaction per flush, status and report queries, and merging shard databases.
 * It is not the harness: which runs exist and what their config hashes are is Lua's business. */
#include "core/store/store.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/error.h"
#include "core/base/sha256.h"
#include "core/store/store_schema.h"

static const char *const STATUS_NAMES[STORE_NUM_STATUS] = {"pending", "running", "done", "failed",
                                                           "interrupted"};

/* ------------------------------------------------------------------------------------------
 * prepared statements: prepared once in store_open, reset after every use */

enum {
    ST_BEGIN_IMMEDIATE,
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_EXP_UPSERT,
    ST_EXP_FIND,
    ST_RUN_INSERT,
    ST_RUN_GET,
    ST_RUN_INTERRUPT,
    ST_RUN_START,
    ST_RUN_HEARTBEAT,
    ST_RUN_FINISH,
    ST_RUN_OWNER,
    ST_DEL_METRICS,
    ST_DEL_EVALS,
    ST_DEL_ARTIFACTS,
    ST_METRIC_INSERT,
    ST_EVAL_INSERT,
    ST_ARTIFACT_INSERT,
    ST_STATUS_COUNTS,
    ST_RUNNING_ROWS,
    ST_QUERY_RUNS,
    ST_QUERY_EVALS,
    ST_COUNT
};
_Static_assert(ST_COUNT <= STORE_MAX_STMTS, "raise STORE_MAX_STMTS in store.h");

#define RUN_COLUMNS                                                                               \
    "r.id, r.experiment_id, e.name, r.config_hash, r.config, r.seed, r.status, r.error, "        \
    "r.attempts, r.created_at, r.started_at, r.finished_at, r.heartbeat_at, r.wall_time_s, "     \
    "r.host, r.pid, r.device, r.git_commit, r.git_dirty, r.build_options, r.lib_versions"

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
    [ST_RUN_GET] = "SELECT id, config, seed, status, host, pid, heartbeat_at, started_at, attempts "
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
};

/* The statement, reset and unbound, ready to bind. */
static sqlite3_stmt *stmt(Store *s, int which) {
    sqlite3_stmt *st = s->stmt[which];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static int db_error(Store *s, const char *what) {
    return error_set("Run database %s: cannot %s: %s.", s->path, what, sqlite3_errmsg(s->db));
}

/* Steps a statement that returns no rows (or whose rows are ignored), then resets it. */
static int run_stmt(Store *s, sqlite3_stmt *st, const char *what) {
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
    }
    int rc = src == SQLITE_DONE ? LSC_OK : db_error(s, what);
    sqlite3_reset(st);
    return rc;
}

static int begin(Store *s, const char *what) {
    return run_stmt(s, stmt(s, ST_BEGIN_IMMEDIATE), what);
}
static int commit(Store *s, const char *what) { return run_stmt(s, stmt(s, ST_COMMIT), what); }
/* Rolls back if a transaction is open; keeps the error already set. */
static void rollback(Store *s) {
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_step(stmt(s, ST_ROLLBACK));
        sqlite3_reset(s->stmt[ST_ROLLBACK]);
    }
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *text) {
    if (text) sqlite3_bind_text(st, i, text, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i);
}

static char *dup_or_null(const char *text) {
    if (!text) return NULL;
    char *copy = malloc(strlen(text) + 1);
    if (copy) strcpy(copy, text);
    return copy;
}

static const char *col_text(sqlite3_stmt *st, int i) { return (const char *)sqlite3_column_text(st, i); }

static double col_real_or_nan(sqlite3_stmt *st, int i) {
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

int store_open(Store *s, const char *path) {
    memset(s, 0, sizeof *s);
    s->stale_after_s = STORE_STALE_AFTER_S;
    s->git_dirty = -1;
    set_default_host(s);
    int rc = check_directory(path);
    if (rc != LSC_OK) return rc;
    s->path = dup_or_null(path);
    if (!s->path) return error_set("Out of memory opening run database %s.", path);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = error_set("Cannot open run database %s: it is a directory; pass a file path such as "
                       "%s/lorasc.db.", path, path);
        goto fail;
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
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
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL) !=
            SQLITE_OK) {
            rc = error_set("Run database %s: cannot prepare statement %d (%s): %s.", path, i, SQL[i],
                           sqlite3_errmsg(s->db));
            goto fail;
        }
    }
    return LSC_OK;
fail:
    store_close(s);
    return rc;
}

/* Empties the buffers (keeping the interned names and the allocations). */
static void clear_buffers(Store *s) {
    for (long i = 0; i < s->n_evals; i++) {
        free(s->evals[i].split);
        free(s->evals[i].metric);
    }
    for (long i = 0; i < s->n_artifacts; i++) {
        free(s->artifacts[i].path);
        free(s->artifacts[i].kind);
    }
    s->n_metrics = s->n_evals = s->n_artifacts = 0;
}

static void free_buffers(Store *s) {
    clear_buffers(s);
    for (int i = 0; i < s->n_names; i++) free(s->names[i]);
    free(s->metrics);
    free(s->evals);
    free(s->artifacts);
    free(s->names);
}

int store_close(Store *s) {
    int rc = LSC_OK;
    if (s->db && s->stmt[ST_COUNT - 1]) rc = store_flush(s);
    for (int i = 0; i < STORE_MAX_STMTS; i++) sqlite3_finalize(s->stmt[i]);
    if (s->db) sqlite3_close(s->db);
    free_buffers(s);
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
        copy[i] = dup_or_null(given[i]);
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
    sqlite3_stmt *st = stmt(s, ST_EXP_UPSERT);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    bind_text_or_null(st, 2, file);
    bind_text_or_null(st, 3, source);
    if (source) {
        sha256_buffer_hex(source, strlen(source), hash);
        sqlite3_bind_text(st, 4, hash, -1, SQLITE_TRANSIENT);
    }
    sqlite3_bind_text(st, 5, now, -1, SQLITE_TRANSIENT);
    if (run_stmt(s, st, "record the experiment") != LSC_OK) return LSC_ERR;
    return store_experiment_find(s, name, id);
}

int store_experiment_find(Store *s, const char *name, int64_t *id) {
    sqlite3_stmt *st = stmt(s, ST_EXP_FIND);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    const int src = sqlite3_step(st);
    *id = src == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (src != SQLITE_ROW && src != SQLITE_DONE) return db_error(s, "look up the experiment");
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * runs: claim, heartbeat, finish */

/* A 'running' row is stale when its process is gone: on this host, its pid is not alive; on
 * any host, its heartbeat (or start, if it never beat) is older than stale_after_s. */
static int running_is_stale(const Store *s, const char *host, long pid, const char *heartbeat,
                            const char *started) {
    if (host && strcmp(host, s->host) == 0 && pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return 1;
    const char *beat = heartbeat ? heartbeat : started;
    if (!beat) return 1;
    char cutoff[32];
    store_schema_time_iso(cutoff, -s->stale_after_s);
    return strcmp(beat, cutoff) < 0;
}

/* Inserts the run as 'pending' unless present, then reads it back into the RUN_GET statement
 * (left on its row; the caller resets it). Checks that config and seed match. */
static int run_upsert_get(Store *s, int64_t experiment_id, const char *config_hash,
                          const char *config_json, int64_t seed, sqlite3_stmt **row) {
    char now[32];
    store_schema_time_iso(now, 0);
    sqlite3_stmt *st = stmt(s, ST_RUN_INSERT);
    sqlite3_bind_int64(st, 1, experiment_id);
    sqlite3_bind_text(st, 2, config_hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, config_json, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, seed);
    sqlite3_bind_text(st, 5, now, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE) {
        const int fk = sqlite3_errcode(s->db) == SQLITE_CONSTRAINT;
        sqlite3_reset(st);
        if (fk)
            return error_set("Run database %s has no experiment with id %lld; call "
                             "store_experiment_upsert first.", s->path, (long long)experiment_id);
        return db_error(s, "register the run");
    }
    sqlite3_reset(st);
    st = stmt(s, ST_RUN_GET);
    sqlite3_bind_int64(st, 1, experiment_id);
    sqlite3_bind_text(st, 2, config_hash, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return db_error(s, "read the run back");
    }
    if (strcmp(col_text(st, 1), config_json) != 0 || sqlite3_column_int64(st, 2) != seed) {
        error_set("Run database %s already holds config hash %s in experiment %lld with a different "
                  "config or seed (seed %lld, config %.200s); the config hash must cover the whole "
                  "canonical config including the seed.", s->path, config_hash,
                  (long long)experiment_id, (long long)sqlite3_column_int64(st, 2), col_text(st, 1));
        sqlite3_reset(st);
        return LSC_ERR;
    }
    *row = st;
    return LSC_OK;
}

int store_run_add(Store *s, int64_t experiment_id, const char *config_hash, const char *config_json,
                  int64_t seed, int64_t *run_id) {
    sqlite3_stmt *row = NULL;
    if (run_upsert_get(s, experiment_id, config_hash, config_json, seed, &row) != LSC_OK)
        return LSC_ERR;
    if (run_id) *run_id = sqlite3_column_int64(row, 0);
    sqlite3_reset(row);
    return LSC_OK;
}

static int delete_children(Store *s, int64_t run_id) {
    static const int which[3] = {ST_DEL_METRICS, ST_DEL_EVALS, ST_DEL_ARTIFACTS};
    for (int i = 0; i < 3; i++) {
        sqlite3_stmt *st = stmt(s, which[i]);
        sqlite3_bind_int64(st, 1, run_id);
        if (run_stmt(s, st, "clear an earlier attempt's rows") != LSC_OK) return LSC_ERR;
    }
    return LSC_OK;
}

int store_run_claim(Store *s, int64_t experiment_id, const char *config_hash,
                    const char *config_json, int64_t seed, unsigned flags, StoreClaim *out) {
    memset(out, 0, sizeof *out);
    int rc = begin(s, "start the claim transaction");
    if (rc != LSC_OK) return rc;
    sqlite3_stmt *row = NULL;
    rc = run_upsert_get(s, experiment_id, config_hash, config_json, seed, &row);
    if (rc != LSC_OK) goto done;
    out->run_id = sqlite3_column_int64(row, 0);
    out->prior = (StoreRunStatus)store_status_parse(col_text(row, 3));
    out->attempt = sqlite3_column_int(row, 8);
    int claim = out->prior == STORE_PENDING || out->prior == STORE_INTERRUPTED ||
                (out->prior == STORE_FAILED && (flags & STORE_RERUN_FAILED));
    if (out->prior == STORE_RUNNING) {
        const char *host = col_text(row, 4), *beat = col_text(row, 6);
        const long pid = (long)sqlite3_column_int64(row, 5);
        if (running_is_stale(s, host, pid, beat, col_text(row, 7))) {
            char why[512];
            snprintf(why, sizeof why, "interrupted: process %ld on %s stopped without finishing "
                     "(last heartbeat %s)", pid, host ? host : "?", beat ? beat : "never");
            sqlite3_reset(row);
            sqlite3_stmt *st = stmt(s, ST_RUN_INTERRUPT);
            sqlite3_bind_int64(st, 1, out->run_id);
            sqlite3_bind_text(st, 2, why, -1, SQLITE_TRANSIENT);
            rc = run_stmt(s, st, "mark a stale run interrupted");
            if (rc != LSC_OK) goto done;
            out->was_stale = 1;
            claim = 1;
        }
    }
    sqlite3_reset(row);
    if (claim) {
        char now[32];
        store_schema_time_iso(now, 0);
        rc = delete_children(s, out->run_id);
        if (rc != LSC_OK) goto done;
        sqlite3_stmt *st = stmt(s, ST_RUN_START);
        sqlite3_bind_int64(st, 1, out->run_id);
        sqlite3_bind_text(st, 2, now, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, s->host, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)getpid());
        bind_text_or_null(st, 5, s->device);
        bind_text_or_null(st, 6, s->git_commit);
        if (s->git_dirty >= 0) sqlite3_bind_int(st, 7, s->git_dirty);
        bind_text_or_null(st, 8, s->build_options);
        bind_text_or_null(st, 9, s->lib_versions);
        rc = run_stmt(s, st, "mark the run running");
        if (rc != LSC_OK) goto done;
        out->claimed = 1;
        out->attempt++;
    }
    rc = commit(s, "commit the claim");
done:
    if (rc != LSC_OK) {
        rollback(s);
        out->claimed = 0;
    }
    return rc;
}

/* Explains why this process does not hold run_id (its row says who does). */
static int not_held_error(Store *s, int64_t run_id) {
    sqlite3_stmt *st = stmt(s, ST_RUN_OWNER);
    sqlite3_bind_int64(st, 1, run_id);
    int rc;
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = error_set("Run database %s has no run %lld.", s->path, (long long)run_id);
    } else {
        const char *status = col_text(st, 0), *host = col_text(st, 1);
        rc = error_set("Run %lld in %s is not held by this process (it is '%s', by pid %lld on %s); "
                       "another process took it over after its heartbeat went stale, so stop "
                       "working on it.", (long long)run_id, s->path, status,
                       (long long)sqlite3_column_int64(st, 2), host ? host : "?");
    }
    sqlite3_reset(st);
    return rc;
}

/* Refreshes the heartbeat of run_id if this process holds it; *held says whether it does. */
static int heartbeat(Store *s, int64_t run_id, const char *now, int *held) {
    sqlite3_stmt *st = stmt(s, ST_RUN_HEARTBEAT);
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, s->host, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)getpid());
    if (run_stmt(s, st, "refresh the heartbeat") != LSC_OK) return LSC_ERR;
    *held = sqlite3_changes(s->db) > 0;
    return LSC_OK;
}

int store_run_heartbeat(Store *s, int64_t run_id) {
    char now[32];
    int held = 0;
    store_schema_time_iso(now, 0);
    if (heartbeat(s, run_id, now, &held) != LSC_OK) return LSC_ERR;
    return held ? LSC_OK : not_held_error(s, run_id);
}

/* Which runs of a flush this process holds: each distinct run's heartbeat is refreshed once
 * and remembered (buffers almost always hold one run, so a short list searched linearly). */
typedef struct HeldRuns {
    int64_t run[64];
    int held[64];
    int n;
    const char *now;
    int64_t dropped; /* a run whose rows were skipped, 0 if none */
} HeldRuns;

static int run_held(Store *s, HeldRuns *h, int64_t run_id, int *held) {
    for (int k = 0; k < h->n; k++) {
        if (h->run[k] == run_id) {
            *held = h->held[k];
            return LSC_OK;
        }
    }
    if (heartbeat(s, run_id, h->now, held) != LSC_OK) return LSC_ERR;
    if (h->n < 64) {
        h->run[h->n] = run_id;
        h->held[h->n++] = *held;
    }
    if (!*held) h->dropped = run_id;
    return LSC_OK;
}

/* Writes the buffered rows inside the caller's transaction, skipping rows of runs this
 * process does not hold (*dropped_run is one of those, 0 if none). */
static int write_buffers(Store *s, int64_t *dropped_run) {
    char now[32];
    store_schema_time_iso(now, 0);
    HeldRuns h = {.now = now};
    int held = 0;
    for (long i = 0; i < s->n_metrics; i++) {
        const StoreMetricRow *m = &s->metrics[i];
        if (run_held(s, &h, m->run_id, &held) != LSC_OK) return LSC_ERR;
        if (!held) continue;
        sqlite3_stmt *st = stmt(s, ST_METRIC_INSERT);
        sqlite3_bind_int64(st, 1, m->run_id);
        sqlite3_bind_int64(st, 2, m->step);
        sqlite3_bind_text(st, 3, s->names[m->name], -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 4, m->value);
        if (run_stmt(s, st, "write a metric") != LSC_OK) return LSC_ERR;
    }
    for (long i = 0; i < s->n_evals; i++) {
        const StoreEvalRow *e = &s->evals[i];
        if (run_held(s, &h, e->run_id, &held) != LSC_OK) return LSC_ERR;
        if (!held) continue;
        sqlite3_stmt *st = stmt(s, ST_EVAL_INSERT);
        sqlite3_bind_int64(st, 1, e->run_id);
        sqlite3_bind_text(st, 2, e->split, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, e->metric, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 4, e->value);
        if (run_stmt(s, st, "write an eval") != LSC_OK) return LSC_ERR;
    }
    for (long i = 0; i < s->n_artifacts; i++) {
        const StoreArtifactRow *a = &s->artifacts[i];
        if (run_held(s, &h, a->run_id, &held) != LSC_OK) return LSC_ERR;
        if (!held) continue;
        sqlite3_stmt *st = stmt(s, ST_ARTIFACT_INSERT);
        sqlite3_bind_int64(st, 1, a->run_id);
        sqlite3_bind_text(st, 2, a->path, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, a->kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, a->sha256, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, a->bytes);
        sqlite3_bind_text(st, 6, now, -1, SQLITE_STATIC);
        if (run_stmt(s, st, "write an artifact") != LSC_OK) return LSC_ERR;
    }
    *dropped_run = h.dropped;
    return LSC_OK;
}


int store_flush(Store *s) {
    if (s->n_metrics == 0 && s->n_evals == 0 && s->n_artifacts == 0) return LSC_OK;
    int64_t dropped = 0;
    int rc = begin(s, "start the flush transaction");
    if (rc == LSC_OK) rc = write_buffers(s, &dropped);
    if (rc == LSC_OK) rc = commit(s, "commit the flush");
    if (rc != LSC_OK) {
        rollback(s);
        return rc;
    }
    clear_buffers(s);
    return dropped ? not_held_error(s, dropped) : LSC_OK;
}

int store_run_finish(Store *s, int64_t run_id, StoreRunStatus status, const char *error,
                     double wall_time_s) {
    if (status != STORE_DONE && status != STORE_FAILED && status != STORE_INTERRUPTED)
        return error_set("A run can only finish as done, failed or interrupted, not as '%s'.",
                         store_status_name(status) ? store_status_name(status) : "?");
    char now[32];
    store_schema_time_iso(now, 0);
    int64_t dropped = 0;
    int rc = begin(s, "start the finish transaction");
    if (rc != LSC_OK) return rc;
    rc = write_buffers(s, &dropped);
    if (rc != LSC_OK) goto done;
    sqlite3_stmt *st = stmt(s, ST_RUN_FINISH);
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, STATUS_NAMES[status], -1, SQLITE_STATIC);
    bind_text_or_null(st, 3, error);
    sqlite3_bind_text(st, 4, now, -1, SQLITE_TRANSIENT);
    if (isfinite(wall_time_s)) sqlite3_bind_double(st, 5, wall_time_s);
    sqlite3_bind_text(st, 6, s->host, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)getpid());
    rc = run_stmt(s, st, "record the run's end");
    if (rc != LSC_OK) goto done;
    if (sqlite3_changes(s->db) == 0) dropped = run_id;
    rc = commit(s, "commit the run's end");
done:
    if (rc != LSC_OK) {
        rollback(s);
        return rc;
    }
    clear_buffers(s);
    return dropped ? not_held_error(s, dropped) : LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * buffered rows */

static int grow(void **items, long *cap, long need, size_t size) {
    if (need <= *cap) return LSC_OK;
    long cap2 = *cap ? *cap * 2 : 256;
    while (cap2 < need) cap2 *= 2;
    void *p = realloc(*items, (size_t)cap2 * size);
    if (!p) return error_set("Out of memory buffering run-store rows (%ld of them).", need);
    *items = p;
    *cap = cap2;
    return LSC_OK;
}

/* Index of name in the interned table, adding it if new; -1 when out of memory. Few distinct
 * names per run, and the same one repeated, so search from the most recent. */
static int intern(Store *s, const char *name) {
    for (int i = s->n_names - 1; i >= 0; i--)
        if (strcmp(s->names[i], name) == 0) return i;
    long cap = s->cap_names;
    if (grow((void **)&s->names, &cap, s->n_names + 1, sizeof *s->names) != LSC_OK) return -1;
    s->cap_names = (int)cap;
    char *copy = dup_or_null(name);
    if (!copy) return -1;
    s->names[s->n_names] = copy;
    return s->n_names++;
}

int store_metric_add(Store *s, int64_t run_id, int64_t step, const char *name, double value) {
    const int id = intern(s, name);
    if (id < 0) return error_set("Out of memory buffering metric '%s'.", name);
    if (grow((void **)&s->metrics, &s->cap_metrics, s->n_metrics + 1, sizeof *s->metrics) != LSC_OK)
        return LSC_ERR;
    s->metrics[s->n_metrics++] = (StoreMetricRow){run_id, step, id, value};
    return LSC_OK;
}

int store_eval_add(Store *s, int64_t run_id, const char *split, const char *metric, double value) {
    if (grow((void **)&s->evals, &s->cap_evals, s->n_evals + 1, sizeof *s->evals) != LSC_OK)
        return LSC_ERR;
    StoreEvalRow e = {run_id, dup_or_null(split), dup_or_null(metric), value};
    if (!e.split || !e.metric) {
        free(e.split);
        free(e.metric);
        return error_set("Out of memory buffering eval %s.%s.", split, metric);
    }
    s->evals[s->n_evals++] = e;
    return LSC_OK;
}

int store_artifact_add(Store *s, int64_t run_id, const char *path, const char *kind) {
    StoreArtifactRow a = {.run_id = run_id};
    if (sha256_file_hex(path, a.sha256, &a.bytes) != LSC_OK)
        return error_set("Cannot log artifact '%s' of run %lld: %s", path, (long long)run_id,
                         error_last());
    if (grow((void **)&s->artifacts, &s->cap_artifacts, s->n_artifacts + 1, sizeof *s->artifacts) !=
        LSC_OK)
        return LSC_ERR;
    a.path = dup_or_null(path);
    a.kind = dup_or_null(kind);
    if (!a.path || !a.kind) {
        free(a.path);
        free(a.kind);
        return error_set("Out of memory buffering artifact %s.", path);
    }
    s->artifacts[s->n_artifacts++] = a;
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * status and report queries */

int store_status(Store *s, int64_t experiment_id, StoreCounts *out) {
    memset(out, 0, sizeof *out);
    int rc = run_stmt(s, stmt(s, ST_BEGIN), "start a read");
    if (rc != LSC_OK) return rc;
    sqlite3_stmt *st = stmt(s, ST_STATUS_COUNTS);
    sqlite3_bind_int64(st, 1, experiment_id);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        const int status = store_status_parse(col_text(st, 0));
        if (status >= 0) out->n[status] = (long)sqlite3_column_int64(st, 1);
        out->total += (long)sqlite3_column_int64(st, 1);
    }
    if (src != SQLITE_DONE) rc = db_error(s, "count runs");
    sqlite3_reset(st);
    if (rc == LSC_OK) {
        st = stmt(s, ST_RUNNING_ROWS);
        sqlite3_bind_int64(st, 1, experiment_id);
        while ((src = sqlite3_step(st)) == SQLITE_ROW)
            out->stale += running_is_stale(s, col_text(st, 0), (long)sqlite3_column_int64(st, 1),
                                           col_text(st, 2), col_text(st, 3));
        if (src != SQLITE_DONE) rc = db_error(s, "list running runs");
        sqlite3_reset(st);
    }
    if (rc == LSC_OK) rc = commit(s, "end a read");
    if (rc != LSC_OK) rollback(s);
    return rc;
}

/* A run's evals for store_runs_query, copied out of the statement (whose text pointers die
 * at the next step) into one reusable string pool. */
typedef struct EvalScratch {
    StoreEval *evals;
    long cap;
    size_t *offsets; /* two per eval: split and metric, into pool */
    long cap_offsets;
    char *pool;
    long len, cap_pool;
} EvalScratch;

static int pool_add(EvalScratch *x, const char *text, size_t *offset) {
    const long n = (long)strlen(text ? text : "") + 1;
    if (grow((void **)&x->pool, &x->cap_pool, x->len + n, 1) != LSC_OK) return LSC_ERR;
    memcpy(x->pool + x->len, text ? text : "", (size_t)n);
    *offset = (size_t)x->len;
    x->len += n;
    return LSC_OK;
}

static int read_evals(Store *s, int64_t run_id, EvalScratch *x, int *n_evals) {
    int rc = LSC_OK, src, n = 0;
    x->len = 0;
    sqlite3_stmt *e = stmt(s, ST_QUERY_EVALS);
    sqlite3_bind_int64(e, 1, run_id);
    while (rc == LSC_OK && (src = sqlite3_step(e)) == SQLITE_ROW) {
        rc = grow((void **)&x->evals, &x->cap, n + 1, sizeof *x->evals);
        if (rc == LSC_OK) rc = grow((void **)&x->offsets, &x->cap_offsets, 2 * (n + 1), sizeof *x->offsets);
        if (rc == LSC_OK) rc = pool_add(x, col_text(e, 0), &x->offsets[2 * n]);
        if (rc == LSC_OK) rc = pool_add(x, col_text(e, 1), &x->offsets[2 * n + 1]);
        if (rc == LSC_OK) x->evals[n++].value = col_real_or_nan(e, 2);
        src = SQLITE_DONE;
    }
    if (rc == LSC_OK && src != SQLITE_DONE) rc = db_error(s, "read a run's evals");
    sqlite3_reset(e);
    for (int i = 0; rc == LSC_OK && i < n; i++) { /* the pool may have moved: point in now */
        x->evals[i].split = x->pool + x->offsets[2 * i];
        x->evals[i].metric = x->pool + x->offsets[2 * i + 1];
    }
    *n_evals = n;
    return rc;
}

int store_runs_query(Store *s, int64_t experiment_id, unsigned status_mask, StoreRunFn fn,
                     void *ud) {
    EvalScratch scratch = {0};
    int rc = run_stmt(s, stmt(s, ST_BEGIN), "start a read");
    if (rc != LSC_OK) return rc;
    sqlite3_stmt *q = stmt(s, ST_QUERY_RUNS);
    sqlite3_bind_int64(q, 1, experiment_id);
    int src = SQLITE_DONE;
    while (rc == LSC_OK && (src = sqlite3_step(q)) == SQLITE_ROW) {
        StoreRun r = {0};
        const int status = store_status_parse(col_text(q, 6));
        if (status < 0 || !(status_mask & STORE_MASK(status))) continue;
        r.id = sqlite3_column_int64(q, 0);
        r.experiment_id = sqlite3_column_int64(q, 1);
        r.experiment = col_text(q, 2);
        r.config_hash = col_text(q, 3);
        r.config = col_text(q, 4);
        r.seed = sqlite3_column_int64(q, 5);
        r.status = (StoreRunStatus)status;
        r.error = col_text(q, 7);
        r.attempts = sqlite3_column_int(q, 8);
        r.created_at = col_text(q, 9);
        r.started_at = col_text(q, 10);
        r.finished_at = col_text(q, 11);
        r.heartbeat_at = col_text(q, 12);
        r.wall_time_s = col_real_or_nan(q, 13);
        r.host = col_text(q, 14);
        r.pid = (long)sqlite3_column_int64(q, 15);
        r.device = col_text(q, 16);
        r.git_commit = col_text(q, 17);
        r.git_dirty = sqlite3_column_type(q, 18) == SQLITE_NULL ? -1 : sqlite3_column_int(q, 18);
        r.build_options = col_text(q, 19);
        r.lib_versions = col_text(q, 20);
        r.stale = r.status == STORE_RUNNING &&
                  running_is_stale(s, r.host, r.pid, r.heartbeat_at, r.started_at);
        rc = read_evals(s, r.id, &scratch, &r.n_evals);
        r.evals = scratch.evals;
        if (rc == LSC_OK) rc = fn(ud, &r);
        src = SQLITE_DONE;
    }
    if (rc == LSC_OK && src != SQLITE_DONE) rc = db_error(s, "read runs");
    sqlite3_reset(q);
    free(scratch.evals);
    free(scratch.offsets);
    free(scratch.pool);
    if (rc == LSC_OK) rc = commit(s, "end a read");
    else rollback(s);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * merge */

/* How good a copy of a run is, for choosing between duplicates: the higher wins. */
static const char *const RANK_SQL = "CASE %s WHEN 'done' THEN 3 WHEN 'failed' THEN 2 "
                                    "WHEN 'pending' THEN 0 ELSE 1 END";

enum {
    M_EXPERIMENTS,
    M_SRC_RUNS,
    M_DST_RUN,
    M_INSERT_RUN,
    M_REPLACE_RUN,
    M_COPY_METRICS,
    M_COPY_EVALS,
    M_COPY_ARTIFACTS,
    M_COUNT
};

int store_merge(Store *s, const char *in_path, StoreMergeStats *stats) {
    StoreMergeStats local = {0};
    sqlite3_stmt *m[M_COUNT] = {0};
    int rc = LSC_OK, attached = 0;
    struct stat a, b;
    if (stat(in_path, &a) != 0) {
        return error_set("Cannot merge %s into %s: %s (pass the path of a shard's run database).",
                         in_path, s->path, strerror(errno));
    }
    if (stat(s->path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return error_set("Cannot merge %s into itself; pass the shard databases after the output "
                         "database.", in_path);
    {   /* validates the input (one clear sentence if it is not a run store) and migrates it */
        Store in;
        rc = store_open(&in, in_path);
        if (rc != LSC_OK) return error_set("Cannot merge %s: %s", in_path, error_last());
        store_close(&in);
    }
    sqlite3_stmt *att = NULL;
    if (sqlite3_prepare_v2(s->db, "ATTACH ?1 AS src", -1, &att, NULL) != SQLITE_OK) {
        return db_error(s, "prepare ATTACH");
    }
    sqlite3_bind_text(att, 1, in_path, -1, SQLITE_TRANSIENT);
    const int src = sqlite3_step(att);
    sqlite3_finalize(att);
    if (src != SQLITE_DONE) return error_set("Cannot attach %s to merge it into %s: %s.", in_path,
                                             s->path, sqlite3_errmsg(s->db));
    attached = 1;

    char rank_main[160], rank_src[160], sql[1024];
    snprintf(rank_main, sizeof rank_main, RANK_SQL, "d.status");
    snprintf(rank_src, sizeof rank_src, RANK_SQL, "r.status");
    const char *texts[M_COUNT] = {
        [M_EXPERIMENTS] = "INSERT INTO main.experiments (name, file, source, source_sha256, "
                          "created_at, updated_at) SELECT name, file, source, source_sha256, "
                          "created_at, updated_at FROM src.experiments WHERE true "
                          "ON CONFLICT (name) DO NOTHING",
        [M_SRC_RUNS] = "SELECT r.id, de.id, r.config_hash FROM src.runs r JOIN src.experiments e ON "
                       "e.id = r.experiment_id JOIN main.experiments de ON de.name = e.name "
                       "ORDER BY r.id",
        [M_DST_RUN] = NULL, /* built below: needs the rank expressions */
        [M_INSERT_RUN] =
            "INSERT INTO main.runs (experiment_id, config_hash, config, seed, status, error, "
            "attempts, created_at, started_at, finished_at, heartbeat_at, wall_time_s, host, pid, "
            "device, git_commit, git_dirty, build_options, lib_versions) SELECT ?2, config_hash, "
            "config, seed, status, error, attempts, created_at, started_at, finished_at, "
            "heartbeat_at, wall_time_s, host, pid, device, git_commit, git_dirty, build_options, "
            "lib_versions FROM src.runs WHERE id = ?1",
        [M_REPLACE_RUN] =
            "UPDATE main.runs SET (config, seed, status, error, attempts, created_at, started_at, "
            "finished_at, heartbeat_at, wall_time_s, host, pid, device, git_commit, git_dirty, "
            "build_options, lib_versions) = (SELECT config, seed, status, error, attempts, "
            "created_at, started_at, finished_at, heartbeat_at, wall_time_s, host, pid, device, "
            "git_commit, git_dirty, build_options, lib_versions FROM src.runs WHERE id = ?1) "
            "WHERE id = ?2",
        [M_COPY_METRICS] = "INSERT INTO main.metrics (run_id, step, name, value) "
                           "SELECT ?2, step, name, value FROM src.metrics WHERE run_id = ?1 "
                           "ORDER BY rowid",
        [M_COPY_EVALS] = "INSERT INTO main.evals (run_id, split, metric, value) "
                         "SELECT ?2, split, metric, value FROM src.evals WHERE run_id = ?1",
        [M_COPY_ARTIFACTS] = "INSERT INTO main.artifacts (run_id, path, kind, sha256, bytes, "
                             "created_at) SELECT ?2, path, kind, sha256, bytes, created_at "
                             "FROM src.artifacts WHERE run_id = ?1",
    };
    /* The output's copy of the run (id, and whether the input's copy ranks higher). */
    snprintf(sql, sizeof sql,
             "SELECT d.id, (SELECT %s FROM src.runs r WHERE r.id = ?3) > %s FROM main.runs d "
             "WHERE d.experiment_id = ?1 AND d.config_hash = ?2", rank_src, rank_main);
    texts[M_DST_RUN] = sql;
    for (int i = 0; i < M_COUNT; i++) {
        if (sqlite3_prepare_v2(s->db, texts[i], -1, &m[i], NULL) != SQLITE_OK) {
            rc = db_error(s, "prepare the merge");
            goto done;
        }
    }
    rc = begin(s, "start the merge transaction");
    if (rc != LSC_OK) goto done;
    const int before = sqlite3_total_changes(s->db);
    rc = run_stmt(s, m[M_EXPERIMENTS], "merge experiments");
    if (rc != LSC_OK) goto done;
    local.experiments_added = sqlite3_total_changes(s->db) - before;
    int step;
    while ((step = sqlite3_step(m[M_SRC_RUNS])) == SQLITE_ROW) {
        const int64_t src_id = sqlite3_column_int64(m[M_SRC_RUNS], 0);
        const int64_t exp_id = sqlite3_column_int64(m[M_SRC_RUNS], 1);
        sqlite3_stmt *d = m[M_DST_RUN];
        sqlite3_reset(d);
        sqlite3_bind_int64(d, 1, exp_id);
        sqlite3_bind_value(d, 2, sqlite3_column_value(m[M_SRC_RUNS], 2));
        sqlite3_bind_int64(d, 3, src_id);
        int64_t dst_id = 0;
        int better = 0;
        const int found = sqlite3_step(d);
        if (found == SQLITE_ROW) {
            dst_id = sqlite3_column_int64(d, 0);
            better = sqlite3_column_int(d, 1);
        } else if (found != SQLITE_DONE) {
            rc = db_error(s, "look up a run to merge");
            goto done;
        }
        sqlite3_reset(d);
        if (dst_id && !better) {
            local.runs_skipped++;
            continue;
        }
        if (dst_id) {
            rc = delete_children(s, dst_id);
            sqlite3_stmt *u = m[M_REPLACE_RUN];
            sqlite3_reset(u);
            sqlite3_bind_int64(u, 1, src_id);
            sqlite3_bind_int64(u, 2, dst_id);
            if (rc == LSC_OK) rc = run_stmt(s, u, "replace a run");
            local.runs_replaced++;
        } else {
            sqlite3_stmt *ins = m[M_INSERT_RUN];
            sqlite3_reset(ins);
            sqlite3_bind_int64(ins, 1, src_id);
            sqlite3_bind_int64(ins, 2, exp_id);
            rc = run_stmt(s, ins, "copy a run");
            dst_id = sqlite3_last_insert_rowid(s->db);
            local.runs_added++;
        }
        for (int k = M_COPY_METRICS; rc == LSC_OK && k <= M_COPY_ARTIFACTS; k++) {
            sqlite3_reset(m[k]);
            sqlite3_bind_int64(m[k], 1, src_id);
            sqlite3_bind_int64(m[k], 2, dst_id);
            rc = run_stmt(s, m[k], "copy a run's metrics, evals and artifacts");
        }
        if (rc != LSC_OK) goto done;
    }
    if (step != SQLITE_DONE) {
        rc = db_error(s, "read the runs to merge");
        goto done;
    }
    sqlite3_reset(m[M_SRC_RUNS]);
    rc = commit(s, "commit the merge");
done:
    if (rc != LSC_OK) {
        const char *why = error_last();
        char saved[1024];
        snprintf(saved, sizeof saved, "%s", why);
        for (int i = 0; i < M_COUNT; i++) sqlite3_reset(m[i]);
        rollback(s);
        error_set("Merging %s into %s failed, nothing was merged: %s", in_path, s->path, saved);
    } else if (stats) {
        stats->experiments_added += local.experiments_added;
        stats->runs_added += local.runs_added;
        stats->runs_replaced += local.runs_replaced;
        stats->runs_skipped += local.runs_skipped;
    }
    for (int i = 0; i < M_COUNT; i++) sqlite3_finalize(m[i]);
    if (attached) sqlite3_exec(s->db, "DETACH src", NULL, NULL, NULL);
    return rc;
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
