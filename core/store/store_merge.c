/* Merging shard databases (`lorasc merge OUT.db IN.db...`): the input is attached and its
 * experiments, runs, metrics, evals, artifacts and inputs copied in one transaction,
 * duplicates resolved by status, then by which finished later. Not here: opening and migrating the input (store.c, store_schema.c). */
#include "core/store/store.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/error.h"
#include "core/store/store_internal.h"

/* ------------------------------------------------------------------------------------------
 * merge */

/* How good a copy of a run is, for choosing between duplicates: the higher wins; between
 * equal ranks the one that finished later (a stale run rerun by newer code, or from newer
 * data), and OUT's copy on a tie, so merging the same file twice changes nothing. */
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
    M_COPY_INPUTS,
    M_COPY_EXAMPLES,
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
    /* validates the input (one clear sentence if it is not a run store) and migrates it;
     * an input lorasc cannot write (a finished sweep on a read-only share) is read as it is */
    int readonly = 0;
    {
        Store in;
        if (access(in_path, W_OK) == 0) {
            rc = store_open(&in, in_path);
        } else {
            rc = store_open_readonly(&in, in_path);
            readonly = 1;
        }
        if (rc != LSC_OK) return error_set("Cannot merge %s: %s", in_path, error_last());
        readonly |= in.readonly;
        store_close(&in);
    }
    /* read-only inputs are attached by URI (mode=ro; immutable when a WAL file cannot get
     * its -shm file beside it) */
    int src = SQLITE_ERROR;
    for (int attempt = readonly ? 1 : 0; attempt < 3 && src != SQLITE_DONE; attempt++) {
        char uri[4200];
        const char *name = in_path;
        if (attempt > 0) {
            if (store_uri(uri, sizeof uri, in_path, attempt == 1 ? "mode=ro" : "mode=ro&immutable=1") != LSC_OK)
                return LSC_ERR;
            name = uri;
        }
        sqlite3_stmt *att = NULL;
        if (sqlite3_prepare_v2(s->db, "ATTACH ?1 AS src", -1, &att, NULL) != SQLITE_OK)
            return store_db_error(s, "prepare ATTACH");
        sqlite3_bind_text(att, 1, name, -1, SQLITE_TRANSIENT);
        src = sqlite3_step(att);
        sqlite3_finalize(att);
        /* an attached WAL file that cannot be read fails on first use: probe it */
        if (src == SQLITE_DONE && sqlite3_exec(s->db, "SELECT count(*) FROM src.sqlite_schema", NULL,
                                               NULL, NULL) != SQLITE_OK) {
            sqlite3_exec(s->db, "DETACH src", NULL, NULL, NULL);
            src = SQLITE_ERROR;
        }
        if (!readonly) break;
    }
    if (src != SQLITE_DONE) return error_set("Cannot attach %s to merge it into %s: %s.", in_path,
                                             s->path, sqlite3_errmsg(s->db));
    attached = 1;

    char rank_main[160], rank_src[160], sql[2048];
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
            "device, git_commit, git_dirty, build_options, lib_versions, inputs_sha256, label) SELECT ?2, "
            "config_hash, config, seed, status, error, attempts, created_at, started_at, "
            "finished_at, heartbeat_at, wall_time_s, host, pid, device, git_commit, git_dirty, "
            "build_options, lib_versions, inputs_sha256, label FROM src.runs WHERE id = ?1",
        [M_REPLACE_RUN] =
            "UPDATE main.runs SET (config, seed, status, error, attempts, created_at, started_at, "
            "finished_at, heartbeat_at, wall_time_s, host, pid, device, git_commit, git_dirty, "
            "build_options, lib_versions, inputs_sha256, label) = (SELECT config, seed, status, "
            "error, attempts, created_at, started_at, finished_at, heartbeat_at, wall_time_s, "
            "host, pid, device, git_commit, git_dirty, build_options, lib_versions, inputs_sha256, "
            "label "
            "FROM src.runs WHERE id = ?1) WHERE id = ?2",
        [M_COPY_METRICS] = "INSERT INTO main.metrics (run_id, step, name, value) "
                           "SELECT ?2, step, name, value FROM src.metrics WHERE run_id = ?1 "
                           "ORDER BY rowid",
        [M_COPY_EVALS] = "INSERT INTO main.evals (run_id, split, metric, value) "
                         "SELECT ?2, split, metric, value FROM src.evals WHERE run_id = ?1",
        [M_COPY_ARTIFACTS] = "INSERT INTO main.artifacts (run_id, path, kind, sha256, bytes, "
                             "created_at) SELECT ?2, path, kind, sha256, bytes, created_at "
                             "FROM src.artifacts WHERE run_id = ?1",
        [M_COPY_INPUTS] = "INSERT INTO main.run_inputs (run_id, path, kind, sha256, bytes) "
                          "SELECT ?2, path, kind, sha256, bytes FROM src.run_inputs "
                          "WHERE run_id = ?1",
        [M_COPY_EXAMPLES] = "INSERT INTO main.eval_examples (run_id, split, metric, n, outcomes) "
                            "SELECT ?2, split, metric, n, outcomes FROM src.eval_examples "
                            "WHERE run_id = ?1",
    };
    /* The output's copy of the run (id, and whether the input's copy ranks higher). */
    snprintf(sql, sizeof sql,
             "SELECT d.id, (SELECT (%s) > (%s) OR ((%s) = (%s) AND r.finished_at > d.finished_at) "
             "FROM src.runs r WHERE r.id = ?3) FROM main.runs d "
             "WHERE d.experiment_id = ?1 AND d.config_hash = ?2", rank_src, rank_main, rank_src,
             rank_main);
    texts[M_DST_RUN] = sql;
    for (int i = 0; i < M_COUNT; i++) {
        if (sqlite3_prepare_v2(s->db, texts[i], -1, &m[i], NULL) != SQLITE_OK) {
            rc = store_db_error(s, "prepare the merge");
            goto done;
        }
    }
    rc = store_begin(s, "start the merge transaction");
    if (rc != LSC_OK) goto done;
    const int before = sqlite3_total_changes(s->db);
    rc = store_stmt_run(s, m[M_EXPERIMENTS], "merge experiments");
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
            rc = store_db_error(s, "look up a run to merge");
            goto done;
        }
        sqlite3_reset(d);
        if (dst_id && !better) {
            local.runs_skipped++;
            continue;
        }
        if (dst_id) {
            rc = store_children_delete(s, dst_id);
            sqlite3_stmt *u = m[M_REPLACE_RUN];
            sqlite3_reset(u);
            sqlite3_bind_int64(u, 1, src_id);
            sqlite3_bind_int64(u, 2, dst_id);
            if (rc == LSC_OK) rc = store_stmt_run(s, u, "replace a run");
            local.runs_replaced++;
        } else {
            sqlite3_stmt *ins = m[M_INSERT_RUN];
            sqlite3_reset(ins);
            sqlite3_bind_int64(ins, 1, src_id);
            sqlite3_bind_int64(ins, 2, exp_id);
            rc = store_stmt_run(s, ins, "copy a run");
            dst_id = sqlite3_last_insert_rowid(s->db);
            local.runs_added++;
        }
        for (int k = M_COPY_METRICS; rc == LSC_OK && k <= M_COPY_EXAMPLES; k++) {
            sqlite3_reset(m[k]);
            sqlite3_bind_int64(m[k], 1, src_id);
            sqlite3_bind_int64(m[k], 2, dst_id);
            rc = store_stmt_run(s, m[k], "copy a run's metrics, evals, artifacts, inputs and outcomes");
        }
        if (rc != LSC_OK) goto done;
    }
    if (step != SQLITE_DONE) {
        rc = store_db_error(s, "read the runs to merge");
        goto done;
    }
    sqlite3_reset(m[M_SRC_RUNS]);
    rc = store_commit(s, "commit the merge");
done:
    if (rc != LSC_OK) {
        const char *why = error_last();
        char saved[1024];
        snprintf(saved, sizeof saved, "%s", why);
        for (int i = 0; i < M_COUNT; i++) sqlite3_reset(m[i]);
        store_rollback(s);
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
