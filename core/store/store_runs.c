/* A run's life in the store: registering and claiming it (with stale-run recovery), its
 * heartbeat, the metrics, evals and artifacts it buffers in memory, and the flush and finish
 * that write them one transaction at a time. Not here: reading runs back (store_query.c). */
#include "core/store/store.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/error.h"
#include "core/base/sha256.h"
#include "core/store/store_internal.h"
#include "core/store/store_schema.h"

/* ------------------------------------------------------------------------------------------
 * runs: claim, heartbeat, finish */

/* A 'running' row is stale when its process is gone: on this host, its pid is not alive; on
 * any host, its heartbeat (or start, if it never beat) is older than stale_after_s. */
int store_running_is_stale(const Store *s, const char *host, long pid, const char *heartbeat,
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
    sqlite3_stmt *st = store_stmt(s, ST_RUN_INSERT);
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
        return store_db_error(s, "register the run");
    }
    sqlite3_reset(st);
    st = store_stmt(s, ST_RUN_GET);
    sqlite3_bind_int64(st, 1, experiment_id);
    sqlite3_bind_text(st, 2, config_hash, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return store_db_error(s, "read the run back");
    }
    if (strcmp(store_col_text(st, 1), config_json) != 0 || sqlite3_column_int64(st, 2) != seed) {
        error_set("Run database %s already holds config hash %s in experiment %lld with a different "
                  "config or seed (seed %lld, config %.200s); the config hash must cover the whole "
                  "canonical config including the seed.", s->path, config_hash,
                  (long long)experiment_id, (long long)sqlite3_column_int64(st, 2), store_col_text(st, 1));
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

int store_children_delete(Store *s, int64_t run_id) {
    static const int which[4] = {ST_DEL_METRICS, ST_DEL_EVALS, ST_DEL_ARTIFACTS, ST_DEL_INPUTS};
    for (int i = 0; i < 4; i++) {
        sqlite3_stmt *st = store_stmt(s, which[i]);
        sqlite3_bind_int64(st, 1, run_id);
        if (store_stmt_run(s, st, "clear an earlier attempt's rows") != LSC_OK) return LSC_ERR;
    }
    return store_examples_delete(s, run_id);
}

int store_run_claim(Store *s, int64_t experiment_id, const char *config_hash,
                    const char *config_json, int64_t seed, unsigned flags, StoreClaim *out) {
    memset(out, 0, sizeof *out);
    int rc = store_begin(s, "start the claim transaction");
    if (rc != LSC_OK) return rc;
    sqlite3_stmt *row = NULL;
    rc = run_upsert_get(s, experiment_id, config_hash, config_json, seed, &row);
    if (rc != LSC_OK) goto done;
    out->run_id = sqlite3_column_int64(row, 0);
    out->prior = (StoreRunStatus)store_status_parse(store_col_text(row, 3));
    out->attempt = sqlite3_column_int(row, 8);
    int claim = out->prior == STORE_PENDING || out->prior == STORE_INTERRUPTED ||
                (out->prior == STORE_FAILED && (flags & STORE_RERUN_FAILED)) ||
                (out->prior == STORE_DONE && (flags & STORE_RERUN_STALE) &&
                 store_done_is_stale(s, store_col_text(row, 9),
                                     sqlite3_column_type(row, 10) == SQLITE_NULL
                                         ? -1 : sqlite3_column_int(row, 10),
                                     store_col_text(row, 11)));
    if (out->prior == STORE_RUNNING) {
        const char *host = store_col_text(row, 4), *beat = store_col_text(row, 6);
        const long pid = (long)sqlite3_column_int64(row, 5);
        if (store_running_is_stale(s, host, pid, beat, store_col_text(row, 7))) {
            char why[512];
            snprintf(why, sizeof why, "interrupted: process %ld on %s stopped without finishing "
                     "(last heartbeat %s)", pid, host ? host : "?", beat ? beat : "never");
            sqlite3_reset(row);
            sqlite3_stmt *st = store_stmt(s, ST_RUN_INTERRUPT);
            sqlite3_bind_int64(st, 1, out->run_id);
            sqlite3_bind_text(st, 2, why, -1, SQLITE_TRANSIENT);
            rc = store_stmt_run(s, st, "mark a stale run interrupted");
            if (rc != LSC_OK) goto done;
            out->was_stale = 1;
            claim = 1;
        }
    }
    sqlite3_reset(row);
    if (claim) {
        char now[32];
        store_schema_time_iso(now, 0);
        if (!(flags & STORE_KEEP_LOG)) rc = store_children_delete(s, out->run_id);
        if (rc != LSC_OK) goto done;
        sqlite3_stmt *st = store_stmt(s, ST_RUN_START);
        sqlite3_bind_int64(st, 1, out->run_id);
        sqlite3_bind_text(st, 2, now, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, s->host, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)getpid());
        store_bind_text_or_null(st, 5, s->device);
        store_bind_text_or_null(st, 6, s->git_commit);
        if (s->git_dirty >= 0) sqlite3_bind_int(st, 7, s->git_dirty);
        store_bind_text_or_null(st, 8, s->build_options);
        store_bind_text_or_null(st, 9, s->lib_versions);
        rc = store_stmt_run(s, st, "mark the run running");
        if (rc == LSC_OK) rc = store_inputs_write(s, out->run_id);
        if (rc != LSC_OK) goto done;
        out->claimed = 1;
        out->attempt++;
    }
    rc = store_commit(s, "commit the claim");
done:
    if (rc != LSC_OK) {
        store_rollback(s);
        out->claimed = 0;
    }
    return rc;
}

/* Explains why this process does not hold run_id (its row says who does). */
static int not_held_error(Store *s, int64_t run_id) {
    sqlite3_stmt *st = store_stmt(s, ST_RUN_OWNER);
    sqlite3_bind_int64(st, 1, run_id);
    int rc;
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = error_set("Run database %s has no run %lld.", s->path, (long long)run_id);
    } else {
        const char *status = store_col_text(st, 0), *host = store_col_text(st, 1);
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
    sqlite3_stmt *st = store_stmt(s, ST_RUN_HEARTBEAT);
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, s->host, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)getpid());
    if (store_stmt_run(s, st, "refresh the heartbeat") != LSC_OK) return LSC_ERR;
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

/* ------------------------------------------------------------------------------------------
 * resuming a run from a saved state: what it had logged then */

int store_run_log_count(Store *s, int64_t run_id, int64_t *n) {
    sqlite3_stmt *st = store_stmt(s, ST_METRIC_COUNT);
    sqlite3_bind_int64(st, 1, run_id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return store_db_error(s, "count a run's metrics");
    }
    *n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return LSC_OK;
}

int store_run_rewind(Store *s, int64_t run_id, int64_t keep) {
    if (keep < 0) return error_set("A run keeps a number of metric rows >= 0, not %lld.", (long long)keep);
    char now[32];
    store_schema_time_iso(now, 0);
    int held = 0;
    int rc = store_begin(s, "start rewinding a run");
    if (rc != LSC_OK) return rc;
    rc = heartbeat(s, run_id, now, &held);
    if (rc == LSC_OK && !held) rc = not_held_error(s, run_id);
    if (rc == LSC_OK) {
        sqlite3_stmt *st = store_stmt(s, ST_METRIC_REWIND);
        sqlite3_bind_int64(st, 1, run_id);
        sqlite3_bind_int64(st, 2, keep);
        rc = store_stmt_run(s, st, "delete the metrics logged after the saved state");
    }
    static const int which[2] = {ST_DEL_EVALS, ST_DEL_ARTIFACTS};
    for (int i = 0; rc == LSC_OK && i < 2; i++) {
        sqlite3_stmt *st = store_stmt(s, which[i]);
        sqlite3_bind_int64(st, 1, run_id);
        rc = store_stmt_run(s, st, "clear an earlier attempt's rows");
    }
    if (rc == LSC_OK) rc = store_examples_delete(s, run_id);
    if (rc == LSC_OK) rc = store_commit(s, "commit the rewind");
    if (rc != LSC_OK) store_rollback(s);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * buffered rows */

int store_grow(void **items, long *cap, long need, size_t size) {
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
    if (store_grow((void **)&s->names, &cap, s->n_names + 1, sizeof *s->names) != LSC_OK) return -1;
    s->cap_names = (int)cap;
    char *copy = store_text_dup(name);
    if (!copy) return -1;
    s->names[s->n_names] = copy;
    return s->n_names++;
}

int store_metric_add(Store *s, int64_t run_id, int64_t step, const char *name, double value) {
    const int id = intern(s, name);
    if (id < 0) return error_set("Out of memory buffering metric '%s'.", name);
    if (store_grow((void **)&s->metrics, &s->cap_metrics, s->n_metrics + 1, sizeof *s->metrics) != LSC_OK)
        return LSC_ERR;
    s->metrics[s->n_metrics++] = (StoreMetricRow){run_id, step, id, value};
    return LSC_OK;
}

int store_eval_add(Store *s, int64_t run_id, const char *split, const char *metric, double value) {
    if (store_grow((void **)&s->evals, &s->cap_evals, s->n_evals + 1, sizeof *s->evals) != LSC_OK)
        return LSC_ERR;
    StoreEvalRow e = {run_id, store_text_dup(split), store_text_dup(metric), value};
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
    if (store_grow((void **)&s->artifacts, &s->cap_artifacts, s->n_artifacts + 1, sizeof *s->artifacts) !=
        LSC_OK)
        return LSC_ERR;
    a.path = store_text_dup(path);
    a.kind = store_text_dup(kind);
    if (!a.path || !a.kind) {
        free(a.path);
        free(a.kind);
        return error_set("Out of memory buffering artifact %s.", path);
    }
    s->artifacts[s->n_artifacts++] = a;
    return LSC_OK;
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

void store_buffers_free(Store *s) {
    clear_buffers(s);
    for (int i = 0; i < s->n_names; i++) free(s->names[i]);
    free(s->metrics);
    free(s->evals);
    free(s->artifacts);
    free(s->names);
}

/* ------------------------------------------------------------------------------------------
 * writing the buffers: flush and finish */

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
        sqlite3_stmt *st = store_stmt(s, ST_METRIC_INSERT);
        sqlite3_bind_int64(st, 1, m->run_id);
        sqlite3_bind_int64(st, 2, m->step);
        sqlite3_bind_text(st, 3, s->names[m->name], -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 4, m->value);
        if (store_stmt_run(s, st, "write a metric") != LSC_OK) return LSC_ERR;
    }
    for (long i = 0; i < s->n_evals; i++) {
        const StoreEvalRow *e = &s->evals[i];
        if (run_held(s, &h, e->run_id, &held) != LSC_OK) return LSC_ERR;
        if (!held) continue;
        sqlite3_stmt *st = store_stmt(s, ST_EVAL_INSERT);
        sqlite3_bind_int64(st, 1, e->run_id);
        sqlite3_bind_text(st, 2, e->split, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, e->metric, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 4, e->value);
        if (store_stmt_run(s, st, "write an eval") != LSC_OK) return LSC_ERR;
    }
    for (long i = 0; i < s->n_artifacts; i++) {
        const StoreArtifactRow *a = &s->artifacts[i];
        if (run_held(s, &h, a->run_id, &held) != LSC_OK) return LSC_ERR;
        if (!held) continue;
        sqlite3_stmt *st = store_stmt(s, ST_ARTIFACT_INSERT);
        sqlite3_bind_int64(st, 1, a->run_id);
        sqlite3_bind_text(st, 2, a->path, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, a->kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, a->sha256, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, a->bytes);
        sqlite3_bind_text(st, 6, now, -1, SQLITE_STATIC);
        if (store_stmt_run(s, st, "write an artifact") != LSC_OK) return LSC_ERR;
    }
    *dropped_run = h.dropped;
    return LSC_OK;
}

int store_flush(Store *s) {
    if (s->n_metrics == 0 && s->n_evals == 0 && s->n_artifacts == 0) return LSC_OK;
    int64_t dropped = 0;
    int rc = store_begin(s, "start the flush transaction");
    if (rc == LSC_OK) rc = write_buffers(s, &dropped);
    if (rc == LSC_OK) rc = store_commit(s, "commit the flush");
    if (rc != LSC_OK) {
        store_rollback(s);
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
    int rc = store_begin(s, "start the finish transaction");
    if (rc != LSC_OK) return rc;
    rc = write_buffers(s, &dropped);
    if (rc != LSC_OK) goto done;
    sqlite3_stmt *st = store_stmt(s, ST_RUN_FINISH);
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, store_status_name(status), -1, SQLITE_STATIC);
    store_bind_text_or_null(st, 3, error);
    sqlite3_bind_text(st, 4, now, -1, SQLITE_TRANSIENT);
    if (isfinite(wall_time_s)) sqlite3_bind_double(st, 5, wall_time_s);
    sqlite3_bind_text(st, 6, s->host, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)getpid());
    rc = store_stmt_run(s, st, "record the run's end");
    if (rc != LSC_OK) goto done;
    if (sqlite3_changes(s->db) == 0) dropped = run_id;
    rc = store_commit(s, "commit the run's end");
done:
    if (rc != LSC_OK) {
        store_rollback(s);
        return rc;
    }
    clear_buffers(s);
    return dropped ? not_held_error(s, dropped) : LSC_OK;
}
