/* The run store's per-example outcomes (eval_examples, schema version 3: one blob of n
 * little-endian float64 per (run, split, metric)) and the method label of each run
 * (runs.label). Not here: the statistics made from them (lua/lorasc/stats.lua). */
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/error.h"
#include "core/store/store.h"
#include "core/store/store_internal.h"

/* One statement prepared, stepped to its end, finalized; rows are ignored. */
static int run_sql(Store *s, const char *sql, int64_t run_id, const char *what) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return store_db_error(s, what);
    sqlite3_bind_int64(st, 1, run_id);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {}
    sqlite3_finalize(st);
    return src == SQLITE_DONE ? LSC_OK : store_db_error(s, what);
}

int store_examples_delete(Store *s, int64_t run_id) {
    return run_sql(s, "DELETE FROM eval_examples WHERE run_id = ?1", run_id,
                   "clear a run's per-example outcomes");
}

static void put_f64(unsigned char *p, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(u >> (8 * i));
}

static double get_f64(const unsigned char *p) {
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u |= (uint64_t)p[i] << (8 * i);
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

int store_eval_examples_set(Store *s, int64_t run_id, const char *split, const char *metric,
                            const double *values, int64_t n) {
    if (!split || !metric || n < 0 || (n > 0 && !values))
        return error_set("Per-example outcomes need a split, a metric and n >= 0 values.");
    if (n > INT32_MAX / 8)
        return error_set("%lld per-example outcomes of %s.%s are more than the run store keeps "
                         "(%d).", (long long)n, split, metric, INT32_MAX / 8);
    unsigned char *blob = malloc(n > 0 ? (size_t)n * 8 : 1);
    if (!blob) return error_set("Out of memory for %lld per-example outcomes.", (long long)n);
    for (int64_t i = 0; i < n; i++) put_f64(blob + 8 * i, values[i]);
    sqlite3_stmt *st = NULL;
    int rc = store_begin(s, "start writing per-example outcomes");
    if (rc == LSC_OK &&
        sqlite3_prepare_v2(s->db,
                           "INSERT INTO eval_examples (run_id, split, metric, n, outcomes) "
                           "SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM runs WHERE "
                           "id = ?1 AND status = 'running' AND host = ?6 AND pid = ?7) "
                           "ON CONFLICT (run_id, split, metric) DO UPDATE SET n = excluded.n, "
                           "outcomes = excluded.outcomes", -1, &st, NULL) != SQLITE_OK)
        rc = store_db_error(s, "prepare the per-example outcomes");
    if (rc == LSC_OK) {
        sqlite3_bind_int64(st, 1, run_id);
        sqlite3_bind_text(st, 2, split, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, metric, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, n);
        sqlite3_bind_blob(st, 5, blob, (int)(n * 8), SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 6, s->host, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)getpid());
        if (sqlite3_step(st) != SQLITE_DONE) rc = store_db_error(s, "write per-example outcomes");
        else if (sqlite3_changes(s->db) == 0)
            rc = error_set("Run %lld is not held by this process (pid %ld on %s): its per-example "
                           "outcomes were not written.", (long long)run_id, (long)getpid(), s->host);
    }
    sqlite3_finalize(st);
    free(blob);
    if (rc == LSC_OK) rc = store_commit(s, "commit per-example outcomes");
    if (rc != LSC_OK) store_rollback(s);
    return rc;
}

int store_eval_examples_get(Store *s, int64_t run_id, const char *split, const char *metric,
                            double **values, int64_t *n) {
    *values = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT n, outcomes FROM eval_examples WHERE run_id = ?1 AND "
                                  "split = ?2 AND metric = ?3", -1, &st, NULL) != SQLITE_OK)
        return store_db_error(s, "prepare reading per-example outcomes");
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, split, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, metric, -1, SQLITE_TRANSIENT);
    int rc = LSC_OK;
    const int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        const int64_t count = sqlite3_column_int64(st, 0);
        const unsigned char *blob = sqlite3_column_blob(st, 1);
        const int bytes = sqlite3_column_bytes(st, 1);
        if (count < 0 || (int64_t)bytes != count * 8) {
            rc = error_set("Run database %s: the per-example outcomes of run %lld (%s.%s) hold %d "
                           "bytes for %lld values; the row is damaged.", s->path,
                           (long long)run_id, split, metric, bytes, (long long)count);
        } else if (count > 0) {
            double *v = malloc((size_t)count * sizeof *v);
            if (!v) rc = error_set("Out of memory for %lld per-example outcomes.", (long long)count);
            for (int64_t i = 0; v && i < count; i++) v[i] = get_f64(blob + 8 * i);
            *values = v;
            *n = v ? count : 0;
        }
    } else if (src != SQLITE_DONE) {
        rc = store_db_error(s, "read per-example outcomes");
    }
    sqlite3_finalize(st);
    return rc;
}

int store_run_label_set(Store *s, int64_t run_id, const char *label) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "UPDATE runs SET label = ?2 WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return store_db_error(s, "prepare recording a run's label");
    sqlite3_bind_int64(st, 1, run_id);
    store_bind_text_or_null(st, 2, label);
    const int src = sqlite3_step(st);
    const int changed = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    if (src != SQLITE_DONE) return store_db_error(s, "record a run's label");
    if (changed == 0) return error_set("Run database %s has no run %lld to label.", s->path, (long long)run_id);
    return LSC_OK;
}
