/* Provenance in the run store: the files each run read (data, checkpoints, tokenizers, the
 * cached base model) with their SHA-256 in run_inputs, the fingerprint of them in
 * runs.inputs_sha256, and the rule that makes a done run stale (other code or other inputs).
 * Which files a run reads, and how the fingerprint is computed, is the harness's business. */
#include "core/store/store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/error.h"
#include "core/base/sha256.h"
#include "core/store/store_internal.h"

void store_inputs_free(Store *s) {
    for (long i = 0; i < s->n_inputs; i++) {
        free(s->inputs[i].path);
        free(s->inputs[i].kind);
    }
    free(s->inputs);
    free(s->inputs_sha256);
    s->inputs = NULL;
    s->inputs_sha256 = NULL;
    s->n_inputs = s->cap_inputs = 0;
}

int store_inputs_set(Store *s, const char *inputs_sha256, const StoreInput *inputs, int n) {
    for (long i = 0; i < s->n_inputs; i++) {
        free(s->inputs[i].path);
        free(s->inputs[i].kind);
    }
    s->n_inputs = 0;
    free(s->inputs_sha256);
    s->inputs_sha256 = NULL;
    if (inputs_sha256 && !(s->inputs_sha256 = store_text_dup(inputs_sha256)))
        return error_set("Out of memory recording a run's inputs.");
    if (n > 0 && store_grow((void **)&s->inputs, &s->cap_inputs, n, sizeof *s->inputs) != LSC_OK)
        return LSC_ERR;
    for (int i = 0; i < n; i++) {
        const StoreInput *in = &inputs[i];
        if (!in->path || !in->kind || !in->sha256 || strlen(in->sha256) != 64)
            return error_set("Input %d of a run has no path, kind or 64-digit sha256 (path %s); "
                             "every recorded input needs all three.", i + 1,
                             in->path ? in->path : "(none)");
        StoreInputRow *row = &s->inputs[s->n_inputs];
        row->path = store_text_dup(in->path);
        row->kind = store_text_dup(in->kind);
        if (!row->path || !row->kind) {
            free(row->path);
            free(row->kind);
            return error_set("Out of memory recording input %s.", in->path);
        }
        memcpy(row->sha256, in->sha256, 65);
        row->bytes = in->bytes;
        s->n_inputs++;
    }
    return LSC_OK;
}

/* One run_inputs row; held = 1 writes it only while this process holds the run. */
static int input_insert(Store *s, int64_t run_id, const char *path, const char *kind,
                        const char *sha256, int64_t bytes, int held, int *written) {
    sqlite3_stmt *st = store_stmt(s, ST_INPUT_INSERT);
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, sha256, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, bytes);
    sqlite3_bind_int(st, 6, held);
    sqlite3_bind_text(st, 7, s->host, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)getpid());
    if (store_stmt_run(s, st, "record a run's input") != LSC_OK) return LSC_ERR;
    if (written) *written = sqlite3_changes(s->db) > 0;
    return LSC_OK;
}

int store_inputs_write(Store *s, int64_t run_id) {
    sqlite3_stmt *st = store_stmt(s, ST_RUN_SET_INPUTS);
    sqlite3_bind_int64(st, 1, run_id);
    store_bind_text_or_null(st, 2, s->inputs_sha256);
    if (store_stmt_run(s, st, "record a run's inputs fingerprint") != LSC_OK) return LSC_ERR;
    for (long i = 0; i < s->n_inputs; i++) {
        const StoreInputRow *in = &s->inputs[i];
        if (input_insert(s, run_id, in->path, in->kind, in->sha256, in->bytes, 0, NULL) != LSC_OK)
            return LSC_ERR;
    }
    return LSC_OK;
}

int store_input_add(Store *s, int64_t run_id, const char *path, const char *kind) {
    char hex[65];
    int64_t bytes = 0;
    if (sha256_file_hex(path, hex, &bytes) != LSC_OK)
        return error_set("Cannot record input '%s' of run %lld: %s", path, (long long)run_id,
                         error_last());
    int written = 0;
    if (input_insert(s, run_id, path, kind, hex, bytes, 1, &written) != LSC_OK) return LSC_ERR;
    if (!written)
        return error_set("Cannot record input '%s' of run %lld in %s: this process does not hold "
                         "the run (another process took it over, or it has finished).", path,
                         (long long)run_id, s->path);
    return LSC_OK;
}

int store_run_inputs(Store *s, int64_t run_id, StoreInputFn fn, void *ud) {
    sqlite3_stmt *st = store_stmt(s, ST_QUERY_INPUTS);
    sqlite3_bind_int64(st, 1, run_id);
    int rc = LSC_OK, src;
    while (rc == LSC_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
        const StoreInput in = {store_col_text(st, 0), store_col_text(st, 1), store_col_text(st, 2),
                               sqlite3_column_int64(st, 3)};
        rc = fn(ud, &in);
        src = SQLITE_DONE;
    }
    if (rc == LSC_OK && src != SQLITE_DONE) rc = store_db_error(s, "read a run's inputs");
    sqlite3_reset(st);
    return rc;
}

static int same_text(const char *a, const char *b) {
    return a && b ? strcmp(a, b) == 0 : a == b;
}

int store_done_is_stale(const Store *s, const char *git_commit, int git_dirty,
                        const char *inputs_sha256) {
    /* unknown (NULL) never matches a known value: a result whose code or data is unknown is
     * not proof of anything; two unknown commits (builds outside git) do match */
    const int dirty_now = s->git_commit ? s->git_dirty : -1;
    const int dirty_then = git_commit ? git_dirty : -1;
    if (!same_text(git_commit, s->git_commit) || dirty_then != dirty_now) return 1;
    return !inputs_sha256 || !s->inputs_sha256 || strcmp(inputs_sha256, s->inputs_sha256) != 0;
}
