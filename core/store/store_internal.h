/* Internals shared by the run store's files, private to core/store/store*.c (store.c: the
 * statements, these helpers, open/close, experiments; store_runs.c: claims, heartbeats, the
 * buffered rows, flush and finish; store_query.c; store_merge.c). Not an API: callers use
 * core/store/store.h. */
#ifndef LORASC_STORE_INTERNAL_H
#define LORASC_STORE_INTERNAL_H

#include <sqlite3.h>
#include <stddef.h>

#include "core/store/store.h"

/* The prepared statements (their SQL is in store.c): prepared once in store_open, reset after
 * every use. */
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
    ST_METRIC_COUNT,
    ST_METRIC_REWIND,
    ST_METRIC_INSERT,
    ST_EVAL_INSERT,
    ST_ARTIFACT_INSERT,
    ST_STATUS_COUNTS,
    ST_RUNNING_ROWS,
    ST_QUERY_RUNS,
    ST_QUERY_EVALS,
    ST_DEL_INPUTS,
    ST_INPUT_INSERT,
    ST_RUN_SET_INPUTS,
    ST_QUERY_INPUTS,
    ST_QUERY_METRICS,
    ST_COUNT
};
_Static_assert(ST_COUNT <= STORE_MAX_STMTS, "raise STORE_MAX_STMTS in store.h");

/* statements and transactions (store.c) */
/* The statement, reset and unbound, ready to bind. */
sqlite3_stmt *store_stmt(Store *s, int which);
/* LSC_ERR with "Run database PATH: cannot WHAT: <SQLite's message>." */
int store_db_error(Store *s, const char *what);
/* Steps a statement that returns no rows (or whose rows are ignored), then resets it. */
int store_stmt_run(Store *s, sqlite3_stmt *st, const char *what);
int store_begin(Store *s, const char *what); /* BEGIN IMMEDIATE */
int store_commit(Store *s, const char *what);
/* Rolls back if a transaction is open; keeps the error already set. */
void store_rollback(Store *s);
void store_bind_text_or_null(sqlite3_stmt *st, int i, const char *text);
const char *store_col_text(sqlite3_stmt *st, int i);
double store_col_real_or_nan(sqlite3_stmt *st, int i);
/* A malloc'd copy of text; NULL for NULL or when out of memory. */
char *store_text_dup(const char *text);
/* "file:PATH?PARAMS", PATH escaped for a URI (store.c). */
int store_uri(char *out, size_t size, const char *path, const char *params);

/* runs and buffers (store_runs.c) */
/* Grows *items (of *cap elements of size bytes) to hold need, doubling. */
int store_grow(void **items, long *cap, long need, size_t size);
/* A 'running' row is stale when its process is gone (see store.h). */
int store_running_is_stale(const Store *s, const char *host, long pid, const char *heartbeat,
                           const char *started);
/* Deletes the run's metrics, evals, artifacts and inputs (an earlier attempt's, or a merged
 * copy's). */
int store_children_delete(Store *s, int64_t run_id);
/* Deletes the run's per-example outcomes (store_examples.c), with its evals. */
int store_examples_delete(Store *s, int64_t run_id);
/* Frees the buffered rows and interned metric names (store_close). */
void store_buffers_free(Store *s);

/* provenance (store_provenance.c) */
/* Writes the inputs set by store_inputs_set as run_id's (its inputs_sha256 and run_inputs
 * rows), inside the caller's transaction. */
int store_inputs_write(Store *s, int64_t run_id);
/* Frees what store_inputs_set copied (store_close). */
void store_inputs_free(Store *s);

#endif
