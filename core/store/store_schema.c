/* The run store's versioned schema: an ordered list of migrations, migration i bringing a
 * file from version i-1 to version i, and the code that applies them. Never edit a released
 * migration: append a new one (and document the change in core/store/STORE.md). */
#include "core/store/store_schema.h"

#include <sqlite3.h>
#include <string.h>
#include <time.h>

#include "core/base/error.h"
#include "core/store/store.h"

static const char *const MIGRATIONS[STORE_SCHEMA_VERSION] = {
    /* 1: the initial schema */
    "CREATE TABLE schema_version (\n"
    "  version    INTEGER PRIMARY KEY,\n"
    "  applied_at TEXT NOT NULL\n"
    ");\n"
    "CREATE TABLE experiments (\n"
    "  id            INTEGER PRIMARY KEY,\n"
    "  name          TEXT NOT NULL UNIQUE,\n"
    "  file          TEXT,\n"
    "  source        TEXT,\n"
    "  source_sha256 TEXT,\n"
    "  created_at    TEXT NOT NULL,\n"
    "  updated_at    TEXT NOT NULL\n"
    ");\n"
    "CREATE TABLE runs (\n"
    "  id            INTEGER PRIMARY KEY,\n"
    "  experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,\n"
    "  config_hash   TEXT NOT NULL,\n"
    "  config        TEXT NOT NULL,\n"
    "  seed          INTEGER NOT NULL,\n"
    "  status        TEXT NOT NULL DEFAULT 'pending'\n"
    "                CHECK (status IN ('pending','running','done','failed','interrupted')),\n"
    "  error         TEXT,\n"
    "  attempts      INTEGER NOT NULL DEFAULT 0,\n"
    "  created_at    TEXT NOT NULL,\n"
    "  started_at    TEXT,\n"
    "  finished_at   TEXT,\n"
    "  heartbeat_at  TEXT,\n"
    "  wall_time_s   REAL,\n"
    "  host          TEXT,\n"
    "  pid           INTEGER,\n"
    "  device        TEXT,\n"
    "  git_commit    TEXT,\n"
    "  git_dirty     INTEGER CHECK (git_dirty IN (0, 1)),\n"
    "  build_options TEXT,\n"
    "  lib_versions  TEXT,\n"
    "  UNIQUE (experiment_id, config_hash)\n"
    ");\n"
    "CREATE INDEX runs_by_status ON runs (experiment_id, status);\n"
    "CREATE TABLE metrics (\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  step   INTEGER NOT NULL,\n"
    "  name   TEXT NOT NULL,\n"
    "  value  REAL\n"
    ");\n"
    "CREATE INDEX metrics_by_run ON metrics (run_id, name, step);\n"
    "CREATE TABLE evals (\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  split  TEXT NOT NULL,\n"
    "  metric TEXT NOT NULL,\n"
    "  value  REAL,\n"
    "  PRIMARY KEY (run_id, split, metric)\n"
    ");\n"
    "CREATE TABLE artifacts (\n"
    "  id         INTEGER PRIMARY KEY,\n"
    "  run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  path       TEXT NOT NULL,\n"
    "  kind       TEXT NOT NULL,\n"
    "  sha256     TEXT NOT NULL,\n"
    "  bytes      INTEGER NOT NULL,\n"
    "  created_at TEXT NOT NULL,\n"
    "  UNIQUE (run_id, path)\n"
    ");\n",
    /* 2: provenance: the fingerprint of what each run read, and the files themselves */
    "ALTER TABLE runs ADD COLUMN inputs_sha256 TEXT;\n"
    "CREATE TABLE run_inputs (\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  path   TEXT NOT NULL,\n"
    "  kind   TEXT NOT NULL,\n"
    "  sha256 TEXT NOT NULL,\n"
    "  bytes  INTEGER NOT NULL,\n"
    "  PRIMARY KEY (run_id, path)\n"
    ");\n",
    /* 3: the method's label of each run (the report's row name; not part of its config, so
     * config hashes are unchanged), and the per-example outcomes of an eval (paired
     * bootstraps over test examples) */
    "ALTER TABLE runs ADD COLUMN label TEXT;\n"
    "CREATE TABLE eval_examples (\n"
    "  run_id   INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  split    TEXT NOT NULL,\n"
    "  metric   TEXT NOT NULL,\n"
    "  n        INTEGER NOT NULL,\n"
    "  outcomes BLOB NOT NULL,\n"
    "  PRIMARY KEY (run_id, split, metric)\n"
    ");\n",
};

void store_schema_time_iso(char out[32], double delta_s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const double t = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + delta_s;
    time_t sec = (time_t)t;
    if ((double)sec > t) sec--; /* floor for negative fractions */
    int ms = (int)((t - (double)sec) * 1000.0);
    ms = ms < 0 ? 0 : ms > 999 ? 999 : ms;
    struct tm tm;
    gmtime_r(&sec, &tm);
    const size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm); /* 19 characters */
    out[n] = '.';
    out[n + 1] = (char)('0' + ms / 100);
    out[n + 2] = (char)('0' + ms / 10 % 10);
    out[n + 3] = (char)('0' + ms % 10);
    out[n + 4] = 'Z';
    out[n + 5] = '\0';
}

/* The file's version: 0 for an empty database, -1 (error set) for a file that is not an
 * SQLite database or is one without our schema_version table. */
static int read_version(sqlite3 *db, const char *path, int *version) {
    sqlite3_stmt *st = NULL;
    int rc = LSC_OK, n_tables = 0, has_version = 0;
    int src = sqlite3_prepare_v2(db,
                                 "SELECT name FROM sqlite_schema WHERE type = 'table' "
                                 "AND name NOT LIKE 'sqlite_%'", -1, &st, NULL);
    if (src == SQLITE_OK) {
        while ((src = sqlite3_step(st)) == SQLITE_ROW) {
            n_tables++;
            if (strcmp((const char *)sqlite3_column_text(st, 0), "schema_version") == 0) has_version = 1;
        }
    }
    if (src == SQLITE_NOTADB) {
        rc = error_set("%s is not an SQLite database (%s); pass the path of a lorasc run database, "
                       "or a path that does not exist yet to create one.", path, sqlite3_errmsg(db));
        goto done;
    }
    if (src != SQLITE_DONE) {
        rc = error_set("Cannot read the schema of run database %s: %s.", path, sqlite3_errmsg(db));
        goto done;
    }
    *version = 0;
    if (!has_version) {
        if (n_tables > 0)
            rc = error_set("%s is an SQLite database but not a lorasc run store (it has %d tables and "
                           "no schema_version table); pass another path.", path, n_tables);
        goto done;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM schema_version", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        rc = error_set("Cannot read the schema version of run database %s: %s.", path,
                       sqlite3_errmsg(db));
        goto done;
    }
    *version = sqlite3_column_int(st, 0);
    if (*version > STORE_SCHEMA_VERSION)
        rc = error_set("%s has run-store schema version %d but this lorasc reads versions up to %d; "
                       "use a newer lorasc with this database.", path, *version, STORE_SCHEMA_VERSION);
done:
    sqlite3_finalize(st);
    return rc;
}

static int exec(sqlite3 *db, const char *path, const char *sql, const char *what) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return LSC_OK;
    error_set("Cannot %s in run database %s: %s.", what, path, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return LSC_ERR;
}

int store_schema_check(sqlite3 *db, const char *path) {
    int version = 0;
    if (read_version(db, path, &version) != LSC_OK) return LSC_ERR;
    if (version == STORE_SCHEMA_VERSION) return LSC_OK;
    if (version == 0) return error_set("%s is an empty database, not a lorasc run store yet.", path);
    return error_set("%s has run-store schema version %d, older than this lorasc's %d, and is "
                     "read-only here: open it once with write access (e.g. a copy of it) to "
                     "migrate it.", path, version, STORE_SCHEMA_VERSION);
}

int store_schema_migrate(sqlite3 *db, const char *path) {
    int version = 0;
    if (read_version(db, path, &version) != LSC_OK) return LSC_ERR;
    if (version == STORE_SCHEMA_VERSION) return LSC_OK;
    /* Take the write lock, then read again: another process may have migrated meanwhile. */
    if (exec(db, path, "BEGIN IMMEDIATE", "start the schema migration") != LSC_OK) return LSC_ERR;
    int rc = read_version(db, path, &version);
    for (int v = version + 1; rc == LSC_OK && v <= STORE_SCHEMA_VERSION; v++) {
        char what[64], now[32], sql[128];
        snprintf(what, sizeof what, "apply schema migration %d", v);
        store_schema_time_iso(now, 0);
        snprintf(sql, sizeof sql, "INSERT INTO schema_version (version, applied_at) VALUES (%d, '%s')",
                 v, now);
        rc = exec(db, path, MIGRATIONS[v - 1], what);
        if (rc == LSC_OK) rc = exec(db, path, sql, what);
    }
    if (rc == LSC_OK) rc = exec(db, path, "COMMIT", "commit the schema migration");
    if (rc != LSC_OK) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}
