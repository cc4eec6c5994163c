/* The SQLite run store: schema creation and migrations, the claim/finish lifecycle, stale
 * runs after a real SIGKILL, two processes claiming from one database, metrics written one
 * transaction per flush and read back (plots), merging shard databases, bad paths giving one
 * clear sentence, and SHA-256 against the FIPS 180-2 vectors. Everything runs in a fresh
 * temporary directory. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/base/error.h"
#include "core/base/sha256.h"
#include "core/store/store.h"
#include "tests/core/store/store_test_util.h"

/* ------------------------------------------------------------------------------------------ */

static void test_sha256_vectors(void **state) {
    (void)state;
    char hex[65];
    sha256_buffer_hex("abc", 3, hex); /* FIPS 180-2 B.1 */
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *b2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* B.2 */
    sha256_buffer_hex(b2, strlen(b2), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    sha256_buffer_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* B.3: one million 'a', fed in uneven pieces to exercise the partial-block path */
    static char a[1000000];
    memset(a, 'a', sizeof a);
    Sha256 c;
    unsigned char digest[32];
    sha256_init(&c);
    for (size_t off = 0, piece = 1; off < sizeof a; off += piece, piece = piece * 3 % 997 + 1)
        sha256_update(&c, a + off, off + piece > sizeof a ? sizeof a - off : piece);
    sha256_final(&c, digest);
    sha256_hex(digest, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* the file path agrees with the buffer path */
    char path[256], hex2[65];
    int64_t bytes = 0;
    path_in_dir(path, sizeof path, "million_a.bin");
    FILE *f = fopen(path, "wb");
    fwrite(a, 1, sizeof a, f);
    fclose(f);
    CHECK(sha256_file_hex(path, hex2, &bytes));
    assert_string_equal(hex2, hex);
    assert_int_equal(bytes, 1000000);
    path_in_dir(path, sizeof path, "no_such_file");
    expect_error(sha256_file_hex(path, hex2, NULL), "no_such_file");
}

static void test_open_create_reopen(void **state) {
    (void)state;
    char path[256];
    path_in_dir(path, sizeof path, "reopen.db");
    Store s;
    int64_t id1 = 0, id2 = 0, id3 = 0;
    CHECK(store_open(&s, path));
    assert_int_equal(query_int(&s, "SELECT max(version) FROM schema_version"), STORE_SCHEMA_VERSION);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(s.db, "PRAGMA journal_mode", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    assert_int_equal(query_int(&s, "PRAGMA foreign_keys"), 1);
    CHECK(store_experiment_upsert(&s, "table4", "experiments/table4.lua", "experiment 'table4' {}", &id1));
    assert_true(id1 > 0);
    CHECK(store_close(&s));

    CHECK(store_open(&s, path)); /* re-open: nothing to migrate, nothing duplicated */
    assert_int_equal(query_int(&s, "SELECT count(*) FROM schema_version"), STORE_SCHEMA_VERSION);
    CHECK(store_experiment_upsert(&s, "table4", "experiments/table4.lua", "changed source", &id2));
    CHECK(store_experiment_find(&s, "table4", &id3));
    assert_int_equal(id1, id2);
    assert_int_equal(id1, id3);
    CHECK(store_experiment_find(&s, "nope", &id3));
    assert_int_equal(id3, 0);
    char hex[65];
    sha256_buffer_hex("changed source", strlen("changed source"), hex);
    sqlite3_prepare_v2(s.db, "SELECT source_sha256 FROM experiments", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), hex);
    sqlite3_finalize(st);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM experiments"), 1);
    assert_integrity(&s);
    CHECK(store_close(&s));
    CHECK(store_close(&s)); /* closing twice is harmless */
}

static void test_open_errors(void **state) {
    (void)state;
    char path[256];
    Store s;
    /* missing directory */
    path_in_dir(path, sizeof path, "no_such_dir/lorasc.db");
    expect_error(store_open(&s, path), "does not exist");
    assert_non_null(strstr(error_last(), path));
    /* a text file */
    path_in_dir(path, sizeof path, "notes.txt");
    FILE *f = fopen(path, "w");
    fputs("these are my notes, not a database; they are long enough to fill a header.\n", f);
    fclose(f);
    expect_error(store_open(&s, path), "is not an SQLite database");
    assert_non_null(strstr(error_last(), path));
    f = fopen(path, "r"); /* and it was left alone */
    char line[16] = {0};
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_memory_equal(line, "these are my", 12);
    /* someone else's SQLite database */
    path_in_dir(path, sizeof path, "other.db");
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_sql(db, "CREATE TABLE recipes (name TEXT)");
    sqlite3_close(db);
    expect_error(store_open(&s, path), "not a lorasc run store");
    /* a store written by a newer lorasc */
    path_in_dir(path, sizeof path, "future.db");
    CHECK(store_open(&s, path));
    exec_sql(s.db, "INSERT INTO schema_version VALUES (99, '2099-01-01T00:00:00.000Z')");
    CHECK(store_close(&s));
    expect_error(store_open(&s, path), "schema version 99");
    assert_non_null(strstr(error_last(), "newer lorasc"));
    /* a directory */
    expect_error(store_open(&s, dir), "is a directory");
    CHECK(store_close(&s)); /* a failed open leaves a closable Store */
}

static void test_claim_lifecycle(void **state) {
    (void)state;
    char path[256];
    path_in_dir(path, sizeof path, "lifecycle.db");
    Store s;
    int64_t exp = 0;
    StoreClaim c;
    CHECK(store_open(&s, path));
    const StoreRunMeta meta = {.device = "cpu (2 threads)", .git_commit = "0123abcd", .git_dirty = 1,
                               .build_options = "{\"buildtype\":\"release\"}",
                               .lib_versions = "{\"sqlite\":\"3\"}"};
    CHECK(store_meta_set(&s, &meta));
    CHECK(store_experiment_upsert(&s, "life", "experiments/life.lua", NULL, &exp));
    expect_error(store_run_claim(&s, exp + 100, "ff", "{}", 1, 0, &c), "no experiment with id");

    /* registered runs count as pending before they start */
    char hash[32], json[128];
    for (int i = 0; i < 3; i++) {
        config_of(i, hash, json);
        CHECK(store_run_add(&s, exp, hash, json, i, NULL));
        CHECK(store_run_add(&s, exp, hash, json, i, NULL));
    }
    StoreCounts n;
    CHECK(store_status(&s, exp, &n));
    assert_int_equal(n.n[STORE_PENDING], 3);
    assert_int_equal(n.total, 3);
    config_of(0, hash, json);
    expect_error(store_run_add(&s, exp, hash, "{\"lr\":1}", 0, NULL), "different config or seed");

    /* claim -> running; a second claim by anyone (this live process too) is refused */
    const int64_t a = claim_ok(&s, exp, 0, 0, &c);
    assert_true(c.claimed);
    assert_int_equal(c.prior, STORE_PENDING);
    assert_int_equal(c.attempt, 1);
    claim_ok(&s, exp, 0, 0, &c);
    assert_false(c.claimed);
    assert_int_equal(c.prior, STORE_RUNNING);
    assert_int_equal(c.run_id, a);
    CHECK(store_run_heartbeat(&s, a));
    CHECK(store_metric_add(&s, a, 1, "train.loss", 2.5));
    CHECK(store_eval_add(&s, a, "val", "score", 0.75));
    CHECK(store_run_finish(&s, a, STORE_DONE, NULL, 12.5));
    claim_ok(&s, exp, 0, STORE_RERUN_FAILED, &c);
    assert_false(c.claimed);
    assert_int_equal(c.prior, STORE_DONE);
    expect_error(store_run_finish(&s, a, STORE_DONE, NULL, 1.0), "not held by this process");
    expect_error(store_run_heartbeat(&s, a), "not held by this process");
    expect_error(store_run_finish(&s, a, STORE_RUNNING, NULL, 1.0), "done, failed or interrupted");
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics"), 1);
    assert_int_equal(query_int(&s, "SELECT git_dirty FROM runs WHERE status = 'done'"), 1);
    assert_int_equal(query_int(&s, "SELECT pid FROM runs WHERE status = 'done'"), getpid());

    /* a failed run is skipped, unless rerun_failed; the rerun clears the old error and rows */
    const int64_t b = claim_ok(&s, exp, 1, 0, &c);
    assert_true(c.claimed);
    CHECK(store_metric_add(&s, b, 1, "train.loss", 9.0));
    CHECK(store_run_finish(&s, b, STORE_FAILED, "loss became NaN at step 1", 0.5));
    claim_ok(&s, exp, 1, 0, &c);
    assert_false(c.claimed);
    assert_int_equal(c.prior, STORE_FAILED);
    claim_ok(&s, exp, 1, STORE_RERUN_FAILED, &c);
    assert_true(c.claimed);
    assert_int_equal(c.prior, STORE_FAILED);
    assert_int_equal(c.attempt, 2);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics WHERE run_id IN "
                                   "(SELECT id FROM runs WHERE seed = 1)"), 0);
    assert_int_equal(query_int(&s, "SELECT error IS NULL FROM runs WHERE seed = 1"), 1);
    CHECK(store_run_finish(&s, b, STORE_INTERRUPTED, "stopped by Ctrl-C", 0.1));
    claim_ok(&s, exp, 1, 0, &c); /* interrupted runs are always claimed again */
    assert_true(c.claimed);
    assert_int_equal(c.prior, STORE_INTERRUPTED);
    assert_int_equal(c.attempt, 3);
    CHECK(store_run_finish(&s, b, STORE_FAILED, "out of memory", NAN));

    CHECK(store_status(&s, exp, &n));
    assert_int_equal(n.n[STORE_DONE], 1);
    assert_int_equal(n.n[STORE_FAILED], 1);
    assert_int_equal(n.n[STORE_PENDING], 1);
    assert_int_equal(n.n[STORE_RUNNING], 0);
    assert_int_equal(n.stale, 0);
    assert_int_equal(n.total, 3);
    /* store_close writes what is still buffered */
    const int64_t r2 = claim_ok(&s, exp, 2, 0, &c);
    CHECK(store_metric_add(&s, r2, 7, "lr", 1e-3));
    CHECK(store_close(&s));
    CHECK(store_open(&s, path));
    assert_int_equal(query_int(&s, "SELECT step FROM metrics WHERE name = 'lr'"), 7);
    CHECK(store_status(&s, exp, &n));
    assert_int_equal(n.n[STORE_RUNNING], 1);
    assert_int_equal(n.n[STORE_PENDING], 0);
    assert_int_equal(n.stale, 0); /* this process is alive */
    assert_string_equal(store_status_name(STORE_INTERRUPTED), "interrupted");
    assert_int_equal(store_status_parse("failed"), STORE_FAILED);
    assert_int_equal(store_status_parse("bogus"), -1);
    assert_integrity(&s);
    CHECK(store_close(&s));
}

/* A run resumed from a saved state keeps what it logged before the state was saved and loses
 * what it logged after: claimed with STORE_KEEP_LOG, rewound to the count saved with the
 * state, in the order the rows were written (another run's rows in between stay). */
static void test_resume_keeps_log_until_state(void **state) {
    (void)state;
    char path[256];
    path_in_dir(path, sizeof path, "resume.db");
    Store s;
    int64_t exp = 0, n = -1;
    StoreClaim c;
    CHECK(store_open(&s, path));
    CHECK(store_experiment_upsert(&s, "resume", "r.lua", NULL, &exp));
    const int64_t a = claim_ok(&s, exp, 0, 0, &c), other = claim_ok(&s, exp, 1, 0, &c);
    CHECK(store_metric_add(&s, a, 0, "base.pretrain_loss", 3.0)); /* step 0, before training */
    for (int step = 1; step <= 4; step++) {
        CHECK(store_metric_add(&s, a, step, "train.loss", 1.0 / step));
        CHECK(store_metric_add(&s, other, step, "train.loss", 5.0));
    }
    CHECK(store_flush(&s));
    CHECK(store_run_log_count(&s, a, &n)); /* the state is saved here */
    assert_int_equal(n, 5);
    for (int step = 5; step <= 6; step++) CHECK(store_metric_add(&s, a, step, "train.loss", 1.0 / step));
    CHECK(store_metric_add(&s, a, 0, "data.train_n", 100)); /* step 0, yet after the state */
    CHECK(store_eval_add(&s, a, "val", "score", 0.5));
    CHECK(store_artifact_add(&s, a, path, "model"));
    CHECK(store_run_finish(&s, a, STORE_INTERRUPTED, "stopped by SIGTERM", 1.0));
    expect_error(store_run_rewind(&s, a, 5), "not held by this process");

    claim_ok(&s, exp, 0, STORE_KEEP_LOG, &c);
    assert_true(c.claimed);
    assert_int_equal(c.prior, STORE_INTERRUPTED);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics WHERE run_id = 1"), 8);
    CHECK(store_run_log_count(&s, a, &n));
    assert_int_equal(n, 8);
    CHECK(store_run_rewind(&s, a, 5));
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics WHERE run_id = 1"), 5);
    assert_int_equal(query_int(&s, "SELECT max(step) FROM metrics WHERE run_id = 1"), 4);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics WHERE run_id = 1 AND step = 0"), 1);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics WHERE name = 'data.train_n'"), 0);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM evals"), 0);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM artifacts"), 0);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics WHERE run_id = 2"), 4);
    /* rows logged after the rewind come after the kept ones */
    CHECK(store_metric_add(&s, a, 5, "train.loss", 0.2));
    CHECK(store_flush(&s));
    CHECK(store_run_rewind(&s, a, 6));
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics WHERE run_id = 1"), 6);
    CHECK(store_run_rewind(&s, a, 0)); /* a state that cannot be used: start again */
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics WHERE run_id = 1"), 0);
    expect_error(store_run_rewind(&s, a, -1), ">= 0");
    assert_integrity(&s);
    CHECK(store_close(&s));
}

/* store_metric_rows: a run's rows in the order written (a resumed run's rewound and
 * re-logged rows in step order), filtered by name prefix, NaN kept, other runs' rows left out;
 * a callback's error stops the read. */
typedef struct Rows {
    int n;
    int64_t step[16];
    char name[16][24];
    double value[16];
} Rows;
static int collect_row(void *ud, int64_t step, const char *name, double value) {
    Rows *r = ud;
    if (r->n == 16) return error_set("Too many rows.");
    r->step[r->n] = step;
    snprintf(r->name[r->n], sizeof r->name[0], "%s", name);
    r->value[r->n++] = value;
    return LSC_OK;
}

static void test_metric_rows(void **state) {
    (void)state;
    char path[256];
    path_in_dir(path, sizeof path, "rows.db");
    Store s;
    int64_t exp = 0;
    StoreClaim c;
    CHECK(store_open(&s, path));
    CHECK(store_experiment_upsert(&s, "rows", "r.lua", NULL, &exp));
    const int64_t a = claim_ok(&s, exp, 0, 0, &c), other = claim_ok(&s, exp, 1, 0, &c);
    for (int step = 1; step <= 4; step++) {
        CHECK(store_metric_add(&s, a, step, "train.loss", 4.0 - step));
        CHECK(store_metric_add(&s, other, step, "val.score", 9.0));
        if (step % 2 == 0) CHECK(store_metric_add(&s, a, step, "val.score", step * 0.1));
    }
    CHECK(store_metric_add(&s, a, 5, "val.loss", NAN));
    CHECK(store_metric_add(&s, a, 5, "validation", 1.0)); /* shares "val" but not "val." */
    Rows r = {0};
    CHECK(store_metric_rows(&s, a, "val.", collect_row, &r)); /* buffered rows: not yet seen */
    assert_int_equal(r.n, 0);
    CHECK(store_flush(&s));
    CHECK(store_metric_rows(&s, a, "val.", collect_row, &r));
    assert_int_equal(r.n, 3);
    assert_int_equal(r.step[0], 2);
    assert_string_equal(r.name[0], "val.score");
    assert_true(r.value[0] == 0.2);
    assert_int_equal(r.step[1], 4);
    assert_true(r.value[1] == 0.4);
    assert_string_equal(r.name[2], "val.loss");
    assert_true(isnan(r.value[2]));
    memset(&r, 0, sizeof r);
    CHECK(store_metric_rows(&s, a, NULL, collect_row, &r)); /* every row, in written order */
    assert_int_equal(r.n, 8);
    assert_string_equal(r.name[0], "train.loss");
    assert_string_equal(r.name[7], "validation");
    /* a resumed run: the rows after its state are dropped and logged again, in step order */
    CHECK(store_run_rewind(&s, a, 3));
    CHECK(store_metric_add(&s, a, 3, "train.loss", 1.5));
    CHECK(store_metric_add(&s, a, 4, "val.score", 0.45));
    CHECK(store_flush(&s));
    memset(&r, 0, sizeof r);
    CHECK(store_metric_rows(&s, a, "", collect_row, &r));
    assert_int_equal(r.n, 5);
    const int64_t steps[5] = {1, 2, 2, 3, 4};
    for (int i = 0; i < 5; i++)
        if (r.step[i] != steps[i]) fail_msg("row %d: step %lld, expected %lld", i, (long long)r.step[i], (long long)steps[i]);
    assert_true(r.value[4] == 0.45);
    /* the callback's error ends the read with that error */
    Rows full = {.n = 16};
    expect_error(store_metric_rows(&s, a, NULL, collect_row, &full), "Too many rows");
    CHECK(store_metric_rows(&s, a, NULL, collect_row, &(Rows){0})); /* the store is usable after */
    CHECK(store_close(&s));
}

static int commits;
static int count_commit(void *ud) {
    (void)ud;
    commits++;
    return 0;
}

static void test_flush_one_transaction(void **state) {
    (void)state;
    char path[256], artifact[256];
    path_in_dir(path, sizeof path, "flush.db");
    path_in_dir(artifact, sizeof artifact, "adapter.safetensors");
    FILE *f = fopen(artifact, "wb");
    fputs("abc", f);
    fclose(f);
    Store s;
    int64_t exp = 0;
    StoreClaim c;
    CHECK(store_open(&s, path));
    CHECK(store_experiment_upsert(&s, "flush", NULL, NULL, &exp));
    const int64_t run = claim_ok(&s, exp, 0, 0, &c);
    exec_sql(s.db, "UPDATE runs SET heartbeat_at = '2000-01-01T00:00:00.000Z'");
    for (int step = 0; step < 1000; step++) {
        CHECK(store_metric_add(&s, run, step, "train.loss", 3.0 - step * 1e-3));
        CHECK(store_metric_add(&s, run, step, step % 2 ? "lr" : "grad_norm", step));
    }
    CHECK(store_metric_add(&s, run, 1000, "train.loss", NAN));
    CHECK(store_eval_add(&s, run, "val", "score", 0.5));
    CHECK(store_eval_add(&s, run, "val", "score", 0.625)); /* the last one wins */
    CHECK(store_eval_add(&s, run, "test", "score", 0.25));
    CHECK(store_artifact_add(&s, run, artifact, "adapter"));
    path_in_dir(path, sizeof path, "missing.bin");
    expect_error(store_artifact_add(&s, run, path, "adapter"), "missing.bin");
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics"), 0); /* buffered only */
    commits = 0;
    sqlite3_commit_hook(s.db, count_commit, NULL);
    CHECK(store_flush(&s));
    assert_int_equal(commits, 1);
    CHECK(store_flush(&s)); /* nothing buffered: no transaction at all */
    assert_int_equal(commits, 1);
    sqlite3_commit_hook(s.db, NULL, NULL);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics"), 2001);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics WHERE value IS NULL"), 1);
    assert_int_equal(query_int(&s, "SELECT count(DISTINCT name) FROM metrics"), 3);
    assert_int_equal(query_int(&s, "SELECT value * 1000 FROM evals WHERE split = 'val'"), 625);
    assert_int_equal(query_int(&s, "SELECT bytes FROM artifacts"), 3);
    assert_int_equal(query_int(&s, "SELECT sha256 = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410"
                                   "ff61f20015ad' FROM artifacts"), 1);
    /* the flush refreshed the heartbeat */
    assert_int_equal(query_int(&s, "SELECT heartbeat_at > '2001' FROM runs"), 1);
    CHECK(store_run_finish(&s, run, STORE_DONE, NULL, 1.0));
    assert_integrity(&s);
    CHECK(store_close(&s));
}

static void test_stale_heartbeat_other_host(void **state) {
    (void)state;
    char path[256];
    path_in_dir(path, sizeof path, "hosts.db");
    Store s;
    int64_t exp = 0;
    StoreClaim c;
    CHECK(store_open(&s, path));
    CHECK(store_experiment_upsert(&s, "hosts", NULL, NULL, &exp));
    CHECK(store_meta_set(&s, &(StoreRunMeta){.host = "node-a"}));
    const int64_t run = claim_ok(&s, exp, 0, 0, &c);
    assert_true(c.claimed);
    assert_int_equal(query_int(&s, "SELECT git_dirty FROM runs"), -1); /* no commit: unknown */
    CHECK(store_meta_set(&s, &(StoreRunMeta){.host = "node-b"}));
    claim_ok(&s, exp, 0, 0, &c); /* fresh heartbeat on another host: leave it alone */
    assert_false(c.claimed);
    StoreCounts n;
    CHECK(store_status(&s, exp, &n));
    assert_int_equal(n.stale, 0);
    exec_sql(s.db, "UPDATE runs SET heartbeat_at = '2000-01-01T00:00:00.000Z'");
    CHECK(store_status(&s, exp, &n));
    assert_int_equal(n.n[STORE_RUNNING], 1);
    assert_int_equal(n.stale, 1);
    claim_ok(&s, exp, 0, 0, &c);
    assert_true(c.claimed);
    assert_true(c.was_stale);
    assert_int_equal(c.prior, STORE_RUNNING);
    assert_int_equal(c.attempt, 2);
    /* node-a wakes up: its heartbeat and its rows are refused */
    CHECK(store_meta_set(&s, &(StoreRunMeta){.host = "node-a"}));
    expect_error(store_run_heartbeat(&s, run), "node-b");
    CHECK(store_metric_add(&s, run, 5, "train.loss", 1.0));
    expect_error(store_flush(&s), "not held by this process");
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics"), 0);
    CHECK(store_meta_set(&s, &(StoreRunMeta){.host = "node-b"}));
    CHECK(store_run_finish(&s, run, STORE_DONE, NULL, 2.0));
    CHECK(store_close(&s));
}

/* A child claims run 0, finishes run 1, then logs metrics in a tight flush loop until the
 * parent kills it with SIGKILL: likely mid-transaction. The parent must find the database
 * intact, run 0 'running' but stale, and claim it again. */
static void test_sigkill_leaves_stale_run(void **state) {
    (void)state;
    char path[256];
    path_in_dir(path, sizeof path, "killed.db");
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    const pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(ready[0]);
        Store s;
        int64_t exp = 0;
        StoreClaim c;
        char hash[32], json[128];
        if (store_open(&s, path) != LSC_OK || store_experiment_upsert(&s, "kill", NULL, NULL, &exp) != LSC_OK)
            _exit(2);
        config_of(1, hash, json);
        if (store_run_claim(&s, exp, hash, json, 1, 0, &c) != LSC_OK || !c.claimed ||
            store_run_finish(&s, c.run_id, STORE_DONE, NULL, 0.1) != LSC_OK)
            _exit(3);
        config_of(0, hash, json);
        if (store_run_claim(&s, exp, hash, json, 0, 0, &c) != LSC_OK || !c.claimed) _exit(4);
        for (long step = 0;; step++) {
            for (int k = 0; k < 50; k++) store_metric_add(&s, c.run_id, step * 50 + k, "train.loss", 1.0 / (1 + step));
            if (store_flush(&s) != LSC_OK) _exit(5);
            if (step == 2 && write(ready[1], "r", 1) != 1) _exit(6);
        }
    }
    close(ready[1]);
    char byte = 0;
    assert_int_equal(read(ready[0], &byte, 1), 1);
    close(ready[0]);
    usleep(30 * 1000);
    assert_int_equal(kill(child, SIGKILL), 0);
    int wstatus = 0;
    assert_int_equal(waitpid(child, &wstatus, 0), child);
    assert_true(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);

    Store s;
    int64_t exp = 0;
    StoreClaim c;
    CHECK(store_open(&s, path));
    assert_integrity(&s);
    CHECK(store_experiment_find(&s, "kill", &exp));
    StoreCounts n;
    CHECK(store_status(&s, exp, &n));
    assert_int_equal(n.n[STORE_RUNNING], 1);
    assert_int_equal(n.stale, 1);
    assert_int_equal(n.n[STORE_DONE], 1);
    assert_true(query_int(&s, "SELECT count(*) FROM metrics") >= 150);
    const int64_t run = claim_ok(&s, exp, 0, 0, &c);
    assert_true(c.claimed);
    assert_true(c.was_stale);
    assert_int_equal(c.prior, STORE_RUNNING);
    assert_int_equal(c.attempt, 2);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics"), 0); /* the dead attempt's rows */
    assert_int_equal(query_int(&s, "SELECT pid FROM runs WHERE status = 'running'"), getpid());
    claim_ok(&s, exp, 1, 0, &c);
    assert_false(c.claimed);
    assert_int_equal(c.prior, STORE_DONE);
    CHECK(store_run_finish(&s, run, STORE_DONE, NULL, 0.2));
    assert_integrity(&s);
    CHECK(store_close(&s));
}

/* Two processes open a fresh database at the same moment and sweep the same 40 runs, each
 * claim -> metrics -> flush -> eval -> finish. Every run must be claimed exactly once. */
enum { SWEEP_RUNS = 40, SWEEP_METRICS = 5 };

static int sweep(const char *path) {
    Store s;
    int64_t exp = 0;
    int claimed = 0;
    if (store_open(&s, path) != LSC_OK || store_experiment_upsert(&s, "sweep", NULL, NULL, &exp) != LSC_OK)
        goto fail;
    for (int i = 0; i < SWEEP_RUNS; i++) {
        char hash[32], json[128];
        StoreClaim c;
        config_of(i, hash, json);
        if (store_run_claim(&s, exp, hash, json, i, 0, &c) != LSC_OK) goto fail;
        if (!c.claimed) continue;
        claimed++;
        for (int k = 0; k < SWEEP_METRICS; k++)
            if (store_metric_add(&s, c.run_id, k, "train.loss", i + k * 0.1) != LSC_OK) goto fail;
        usleep(2000); /* "training": lets the other process claim in between */
        if (store_flush(&s) != LSC_OK || store_eval_add(&s, c.run_id, "test", "score", i) != LSC_OK ||
            store_run_finish(&s, c.run_id, STORE_DONE, NULL, 0.01) != LSC_OK)
            goto fail;
    }
    if (store_close(&s) != LSC_OK) goto fail;
    return claimed;
fail:
    fprintf(stderr, "sweep process %d: %s\n", (int)getpid(), error_last());
    return -1;
}

static void test_two_processes_claim_each_run_once(void **state) {
    (void)state;
    char path[256];
    path_in_dir(path, sizeof path, "sweep.db");
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            close(go[1]);
            char byte;
            if (read(go[0], &byte, 1) != 0) _exit(255); /* wait until the parent closes the pipe */
            const int n = sweep(path);
            _exit(n < 0 ? 255 : n);
        }
    }
    close(go[0]);
    close(go[1]); /* both start now */
    int total = 0;
    for (int k = 0; k < 2; k++) {
        int wstatus = 0;
        assert_int_equal(waitpid(kids[k], &wstatus, 0), kids[k]);
        assert_true(WIFEXITED(wstatus));
        if (WEXITSTATUS(wstatus) == 255) fail_msg("sweep process %d failed", (int)kids[k]);
        total += WEXITSTATUS(wstatus);
        print_message("sweep process %d claimed %d runs\n", k + 1, WEXITSTATUS(wstatus));
    }
    assert_int_equal(total, SWEEP_RUNS);
    Store s;
    CHECK(store_open(&s, path));
    assert_integrity(&s);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM runs WHERE status = 'done'"), SWEEP_RUNS);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM runs"), SWEEP_RUNS);
    assert_int_equal(query_int(&s, "SELECT max(attempts) FROM runs"), 1);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics"), SWEEP_RUNS * SWEEP_METRICS);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM evals"), SWEEP_RUNS);
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM runs WHERE pid NOT IN (%d, %d)", (int)kids[0], (int)kids[1]);
    assert_int_equal(query_int(&s, sql), 0);
    CHECK(store_close(&s));
}

/* Fills a shard: runs [from, to) of experiment "merge" (and one of experiment "only_b" when
 * asked), done with evals = score, except the seeds in failed_mask, which fail. */
static void make_shard(const char *path, int from, int to, double score, unsigned failed_mask, int extra) {
    Store s;
    int64_t exp = 0;
    StoreClaim c;
    CHECK(store_open(&s, path));
    CHECK(store_experiment_upsert(&s, "merge", "experiments/merge.lua", "src", &exp));
    for (int i = from; i < to; i++) {
        const int64_t run = claim_ok(&s, exp, i, 0, &c);
        assert_true(c.claimed);
        for (int k = 0; k < 3; k++) CHECK(store_metric_add(&s, run, k, "train.loss", score + k));
        if (failed_mask & (1u << i)) {
            CHECK(store_run_finish(&s, run, STORE_FAILED, "diverged", 1.0));
            continue;
        }
        CHECK(store_eval_add(&s, run, "val", "score", score + i));
        CHECK(store_eval_add(&s, run, "test", "score", score - i));
        CHECK(store_run_finish(&s, run, STORE_DONE, NULL, 1.0));
    }
    if (extra) {
        CHECK(store_experiment_upsert(&s, "only_b", NULL, NULL, &exp));
        claim_ok(&s, exp, 0, 0, &c);
        CHECK(store_run_finish(&s, c.run_id, STORE_DONE, NULL, 1.0));
    }
    CHECK(store_close(&s));
}

typedef struct Collected {
    int n;
    int64_t seeds[16];
    double val[16];
    int n_evals[16];
    StoreRunStatus status[16];
} Collected;

static int collect(void *ud, const StoreRun *r) {
    Collected *c = ud;
    if (c->n == 16) return LSC_ERR;
    c->seeds[c->n] = r->seed;
    c->status[c->n] = r->status;
    c->n_evals[c->n] = r->n_evals;
    c->val[c->n] = NAN;
    for (int i = 0; i < r->n_evals; i++)
        if (strcmp(r->evals[i].split, "val") == 0 && strcmp(r->evals[i].metric, "score") == 0)
            c->val[c->n] = r->evals[i].value;
    assert_string_equal(r->experiment, "merge");
    assert_non_null(r->config_hash);
    assert_non_null(strstr(r->config, "\"seed\":"));
    c->n++;
    return LSC_OK;
}

static int stop_at_first(void *ud, const StoreRun *r) {
    (void)r;
    ++*(int *)ud;
    return error_set("stop");
}

static void test_merge_shards(void **state) {
    (void)state;
    char a[256], b[256], out[256];
    path_in_dir(a, sizeof a, "shard_a.db");
    path_in_dir(b, sizeof b, "shard_b.db");
    path_in_dir(out, sizeof out, "merged.db");
    make_shard(a, 0, 4, 100.0, 1u << 3, 0); /* runs 0-3, run 3 failed */
    usleep(5000);                           /* b's runs finish measurably later than a's */
    make_shard(b, 2, 6, 200.0, 0, 1);       /* runs 2-5 all done, plus another experiment */
    Store s;
    StoreMergeStats st = {0};
    CHECK(store_open(&s, out));
    CHECK(store_merge(&s, a, &st));
    assert_int_equal(st.experiments_added, 1);
    assert_int_equal(st.runs_added, 4);
    CHECK(store_merge(&s, b, &st));
    assert_int_equal(st.experiments_added, 2);
    assert_int_equal(st.runs_added, 4 + 3);  /* 4, 5 and only_b's run */
    assert_int_equal(st.runs_replaced, 2);   /* run 3: failed in a, done in b; run 2: done */
    assert_int_equal(st.runs_skipped, 0);    /* in both, b's finished later */
    StoreMergeStats again = {0};
    CHECK(store_merge(&s, a, &again));       /* merging is idempotent */
    CHECK(store_merge(&s, b, &again));
    assert_int_equal(again.runs_added + again.runs_replaced, 0);
    assert_int_equal(again.runs_skipped, 4 + 5);

    int64_t exp = 0;
    CHECK(store_experiment_find(&s, "merge", &exp));
    StoreCounts n;
    CHECK(store_status(&s, exp, &n));
    assert_int_equal(n.n[STORE_DONE], 6);
    assert_int_equal(n.total, 6);
    CHECK(store_status(&s, 0, &n));
    assert_int_equal(n.total, 7);
    Collected got = {0};
    CHECK(store_runs_query(&s, exp, STORE_MASK(STORE_DONE), collect, &got));
    assert_int_equal(got.n, 6);
    for (int i = 0; i < got.n; i++) {
        const int64_t seed = got.seeds[i];
        const double want = (seed <= 1 ? 100.0 : 200.0) + (double)seed; /* a's 0-1, b's 2-5 */
        if (got.val[i] != want) fail_msg("seed %lld: val %g, expected %g", (long long)seed, got.val[i], want);
        assert_int_equal(got.n_evals[i], 2);
    }
    /* metrics carried with remapped run ids: 3 per run, none dangling */
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics"), 6 * 3);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM metrics m JOIN runs r ON r.id = m.run_id "
                                   "JOIN experiments e ON e.id = r.experiment_id "
                                   "WHERE e.name = 'merge'"), 6 * 3);
    assert_integrity(&s);
    int calls = 0;
    expect_error(store_runs_query(&s, 0, STORE_MASK_ALL, stop_at_first, &calls), "stop");
    assert_int_equal(calls, 1);
    Collected none = {0};
    CHECK(store_runs_query(&s, exp, STORE_MASK(STORE_FAILED), collect, &none));
    assert_int_equal(none.n, 0);

    /* bad inputs: one sentence, nothing merged */
    char bad[256];
    path_in_dir(bad, sizeof bad, "no_shard.db");
    expect_error(store_merge(&s, bad, NULL), "no_shard.db");
    path_in_dir(bad, sizeof bad, "notes.txt");
    FILE *f = fopen(bad, "w");
    fputs("not a database, definitely not one, and long enough to have a header of sorts\n", f);
    fclose(f);
    expect_error(store_merge(&s, bad, NULL), "is not an SQLite database");
    expect_error(store_merge(&s, out, NULL), "into itself");
    CHECK(store_status(&s, 0, &n));
    assert_int_equal(n.total, 7);
    CHECK(store_close(&s));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_open_create_reopen),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_claim_lifecycle),
        cmocka_unit_test(test_resume_keeps_log_until_state),
        cmocka_unit_test(test_metric_rows),
        cmocka_unit_test(test_flush_one_transaction),
        cmocka_unit_test(test_stale_heartbeat_other_host),
        cmocka_unit_test(test_sigkill_leaves_stale_run),
        cmocka_unit_test(test_two_processes_claim_each_run_once),
        cmocka_unit_test(test_merge_shards),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
