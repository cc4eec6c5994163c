/* Reading the run store: run counts per status (`lorasc status`), the runs with their
 * evals, one consistent snapshot, for listings and reports, and a run's metric rows (plots).
 * Not here: the report arithmetic, which is the Lua harness's; writing runs (store_runs.c). */
#include "core/store/store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/store/store_internal.h"

/* ------------------------------------------------------------------------------------------
 * status and report queries */

int store_status(Store *s, int64_t experiment_id, StoreCounts *out) {
    memset(out, 0, sizeof *out);
    int rc = store_stmt_run(s, store_stmt(s, ST_BEGIN), "start a read");
    if (rc != LSC_OK) return rc;
    sqlite3_stmt *st = store_stmt(s, ST_STATUS_COUNTS);
    sqlite3_bind_int64(st, 1, experiment_id);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        const int status = store_status_parse(store_col_text(st, 0));
        if (status >= 0) out->n[status] = (long)sqlite3_column_int64(st, 1);
        out->total += (long)sqlite3_column_int64(st, 1);
    }
    if (src != SQLITE_DONE) rc = store_db_error(s, "count runs");
    sqlite3_reset(st);
    if (rc == LSC_OK) {
        st = store_stmt(s, ST_RUNNING_ROWS);
        sqlite3_bind_int64(st, 1, experiment_id);
        while ((src = sqlite3_step(st)) == SQLITE_ROW)
            out->stale += store_running_is_stale(s, store_col_text(st, 0), (long)sqlite3_column_int64(st, 1),
                                           store_col_text(st, 2), store_col_text(st, 3));
        if (src != SQLITE_DONE) rc = store_db_error(s, "list running runs");
        sqlite3_reset(st);
    }
    if (rc == LSC_OK) rc = store_commit(s, "end a read");
    if (rc != LSC_OK) store_rollback(s);
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
    if (store_grow((void **)&x->pool, &x->cap_pool, x->len + n, 1) != LSC_OK) return LSC_ERR;
    memcpy(x->pool + x->len, text ? text : "", (size_t)n);
    *offset = (size_t)x->len;
    x->len += n;
    return LSC_OK;
}

static int read_evals(Store *s, int64_t run_id, EvalScratch *x, int *n_evals) {
    int rc = LSC_OK, src, n = 0;
    x->len = 0;
    sqlite3_stmt *e = store_stmt(s, ST_QUERY_EVALS);
    sqlite3_bind_int64(e, 1, run_id);
    while (rc == LSC_OK && (src = sqlite3_step(e)) == SQLITE_ROW) {
        rc = store_grow((void **)&x->evals, &x->cap, n + 1, sizeof *x->evals);
        if (rc == LSC_OK) rc = store_grow((void **)&x->offsets, &x->cap_offsets, 2 * (n + 1), sizeof *x->offsets);
        if (rc == LSC_OK) rc = pool_add(x, store_col_text(e, 0), &x->offsets[2 * n]);
        if (rc == LSC_OK) rc = pool_add(x, store_col_text(e, 1), &x->offsets[2 * n + 1]);
        if (rc == LSC_OK) x->evals[n++].value = store_col_real_or_nan(e, 2);
        src = SQLITE_DONE;
    }
    if (rc == LSC_OK && src != SQLITE_DONE) rc = store_db_error(s, "read a run's evals");
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
    int rc = store_stmt_run(s, store_stmt(s, ST_BEGIN), "start a read");
    if (rc != LSC_OK) return rc;
    sqlite3_stmt *q = store_stmt(s, ST_QUERY_RUNS);
    sqlite3_bind_int64(q, 1, experiment_id);
    int src = SQLITE_DONE;
    while (rc == LSC_OK && (src = sqlite3_step(q)) == SQLITE_ROW) {
        StoreRun r = {0};
        const int status = store_status_parse(store_col_text(q, 6));
        if (status < 0 || !(status_mask & STORE_MASK(status))) continue;
        r.id = sqlite3_column_int64(q, 0);
        r.experiment_id = sqlite3_column_int64(q, 1);
        r.experiment = store_col_text(q, 2);
        r.config_hash = store_col_text(q, 3);
        r.config = store_col_text(q, 4);
        r.seed = sqlite3_column_int64(q, 5);
        r.status = (StoreRunStatus)status;
        r.error = store_col_text(q, 7);
        r.attempts = sqlite3_column_int(q, 8);
        r.created_at = store_col_text(q, 9);
        r.started_at = store_col_text(q, 10);
        r.finished_at = store_col_text(q, 11);
        r.heartbeat_at = store_col_text(q, 12);
        r.wall_time_s = store_col_real_or_nan(q, 13);
        r.host = store_col_text(q, 14);
        r.pid = (long)sqlite3_column_int64(q, 15);
        r.device = store_col_text(q, 16);
        r.git_commit = store_col_text(q, 17);
        r.git_dirty = sqlite3_column_type(q, 18) == SQLITE_NULL ? -1 : sqlite3_column_int(q, 18);
        r.build_options = store_col_text(q, 19);
        r.lib_versions = store_col_text(q, 20);
        r.inputs_sha256 = store_col_text(q, 21);
        r.label = store_col_text(q, 22);
        r.stale = r.status == STORE_RUNNING &&
                  store_running_is_stale(s, r.host, r.pid, r.heartbeat_at, r.started_at);
        rc = read_evals(s, r.id, &scratch, &r.n_evals);
        r.evals = scratch.evals;
        if (rc == LSC_OK) rc = fn(ud, &r);
        src = SQLITE_DONE;
    }
    if (rc == LSC_OK && src != SQLITE_DONE) rc = store_db_error(s, "read runs");
    sqlite3_reset(q);
    free(scratch.evals);
    free(scratch.offsets);
    free(scratch.pool);
    if (rc == LSC_OK) rc = store_commit(s, "end a read");
    else store_rollback(s);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * a run's metric rows (plots) */

int store_metric_rows(Store *s, int64_t run_id, const char *prefix, StoreMetricFn fn, void *ud) {
    int rc = store_stmt_run(s, store_stmt(s, ST_BEGIN), "start a read");
    if (rc != LSC_OK) return rc;
    sqlite3_stmt *q = store_stmt(s, ST_QUERY_METRICS);
    sqlite3_bind_int64(q, 1, run_id);
    sqlite3_bind_text(q, 2, prefix ? prefix : "", -1, SQLITE_TRANSIENT);
    int src = SQLITE_DONE;
    while (rc == LSC_OK && (src = sqlite3_step(q)) == SQLITE_ROW) {
        rc = fn(ud, sqlite3_column_int64(q, 0), store_col_text(q, 1), store_col_real_or_nan(q, 2));
        src = SQLITE_DONE;
    }
    if (rc == LSC_OK && src != SQLITE_DONE) rc = store_db_error(s, "read a run's metrics");
    sqlite3_reset(q);
    if (rc == LSC_OK) rc = store_commit(s, "end a read");
    else store_rollback(s);
    return rc;
}
