/* The run store's provenance (store_provenance.c): the inputs a claim records, a done run
 * claimed again with STORE_RERUN_STALE only when its code version or inputs fingerprint
 * differs, inputs added mid-run, merges carrying inputs (the later-finished copy winning),
 * and a version-1 file migrated to version 2 with its runs kept. */
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
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/error.h"
#include "core/base/sha256.h"
#include "core/store/store.h"
#include "tests/core/store/store_test_util.h"

static const char FP1[] = "1111111111111111111111111111111111111111111111111111111111111111";
static const char FP2[] = "2222222222222222222222222222222222222222222222222222222222222222";
static const char SHA_A[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char SHA_B[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

static void set_meta(Store *s, const char *commit, int dirty) {
    const StoreRunMeta meta = {.device = "cpu", .git_commit = commit, .git_dirty = dirty};
    CHECK(store_meta_set(s, &meta));
}

static void set_inputs(Store *s, const char *fp, const char *data_sha) {
    const StoreInput in[2] = {{"data/apache.txt", "data", data_sha, 11358},
                              {"data/model.bin", "checkpoint", SHA_A, 1024}};
    CHECK(store_inputs_set(s, fp, in, 2));
}

typedef struct Inputs {
    int n;
    char path[8][64], kind[8][16], sha[8][65];
} Inputs;

static int collect_input(void *ud, const StoreInput *in) {
    Inputs *x = ud;
    if (x->n == 8) return error_set("more than 8 inputs");
    snprintf(x->path[x->n], 64, "%s", in->path);
    snprintf(x->kind[x->n], 16, "%s", in->kind);
    snprintf(x->sha[x->n], 65, "%s", in->sha256);
    x->n++;
    return LSC_OK;
}

/* claims run i with flags and says whether it was claimed; a claimed run is finished done */
static int claim_done(Store *s, int64_t exp, int i, unsigned flags) {
    StoreClaim c;
    claim_ok(s, exp, i, flags, &c);
    if (c.claimed) CHECK(store_run_finish(s, c.run_id, STORE_DONE, NULL, 1.0));
    return c.claimed;
}

static void test_stale_claims(void **state) {
    (void)state;
    char path[256], file[256];
    path_in_dir(path, sizeof path, "stale.db");
    path_in_dir(file, sizeof file, "base.ckpt");
    Store s;
    int64_t exp = 0;
    CHECK(store_open(&s, path));
    CHECK(store_experiment_upsert(&s, "prov", NULL, NULL, &exp));
    set_meta(&s, "c0ffee", 0);
    set_inputs(&s, FP1, SHA_B);
    assert_true(claim_done(&s, exp, 0, 0));
    assert_int_equal(query_int(&s, "SELECT count(*) FROM run_inputs WHERE run_id = 1"), 2);
    Inputs got = {0};
    CHECK(store_run_inputs(&s, 1, collect_input, &got));
    assert_int_equal(got.n, 2);
    assert_string_equal(got.kind[0], "checkpoint"); /* ordered by kind, then path */
    assert_string_equal(got.path[1], "data/apache.txt");
    assert_string_equal(got.sha[1], SHA_B);

    /* same code, same inputs: never claimed again, with or without the flag */
    assert_false(claim_done(&s, exp, 0, 0));
    assert_false(claim_done(&s, exp, 0, STORE_RERUN_STALE));
    /* other inputs: stale, but claimed only with the flag; the new inputs replace the old */
    set_inputs(&s, FP2, SHA_A);
    assert_false(claim_done(&s, exp, 0, STORE_RERUN_FAILED));
    assert_true(claim_done(&s, exp, 0, STORE_RERUN_STALE));
    assert_int_equal(query_int(&s, "SELECT attempts FROM runs WHERE id = 1"), 2);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM run_inputs WHERE run_id = 1 AND sha256 = "
                                   "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'"), 2);
    assert_false(claim_done(&s, exp, 0, STORE_RERUN_STALE));
    /* other code: another commit, then the same commit built dirty */
    set_meta(&s, "badc0de", 0);
    assert_true(claim_done(&s, exp, 0, STORE_RERUN_STALE));
    set_meta(&s, "badc0de", 1);
    assert_true(claim_done(&s, exp, 0, STORE_RERUN_STALE));
    assert_false(claim_done(&s, exp, 0, STORE_RERUN_STALE));
    assert_int_equal(query_int(&s, "SELECT attempts FROM runs WHERE id = 1"), 4);

    /* the rule itself: unknown never matches known; two unknown commits match */
    assert_false(store_done_is_stale(&s, "badc0de", 1, FP2));
    assert_true(store_done_is_stale(&s, "badc0de", 1, NULL));
    assert_true(store_done_is_stale(&s, NULL, -1, FP2));
    set_meta(&s, NULL, 0);
    assert_false(store_done_is_stale(&s, NULL, -1, FP2));
    assert_true(store_done_is_stale(&s, "badc0de", 0, FP2));
    CHECK(store_inputs_set(&s, NULL, NULL, 0));
    assert_true(store_done_is_stale(&s, NULL, -1, FP2));

    /* an input added mid-run (the cached base model): hashed, only while the run is held */
    FILE *f = fopen(file, "w");
    fputs("abc", f);
    fclose(f);
    StoreClaim c;
    claim_ok(&s, exp, 1, 0, &c);
    CHECK(store_input_add(&s, c.run_id, file, "base"));
    memset(&got, 0, sizeof got);
    CHECK(store_run_inputs(&s, c.run_id, collect_input, &got));
    assert_int_equal(got.n, 1);
    assert_string_equal(got.sha[0], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect_error(store_input_add(&s, c.run_id, "no/such/file", "base"), "no/such/file");
    CHECK(store_run_finish(&s, c.run_id, STORE_DONE, NULL, 1.0));
    expect_error(store_input_add(&s, c.run_id, file, "base"), "does not hold");
    /* a malformed input is refused by name */
    const StoreInput bad = {"x.bin", "data", "123", 3};
    expect_error(store_inputs_set(&s, FP1, &bad, 1), "x.bin");
    assert_integrity(&s);
    CHECK(store_close(&s));
}

/* one shard: run 0 done with the given inputs fingerprint and data hash */
static void make_shard(const char *path, const char *fp, const char *sha) {
    Store s;
    int64_t exp = 0;
    CHECK(store_open(&s, path));
    CHECK(store_experiment_upsert(&s, "prov", NULL, NULL, &exp));
    set_meta(&s, "c0ffee", 0);
    set_inputs(&s, fp, sha);
    assert_true(claim_done(&s, exp, 0, 0));
    CHECK(store_close(&s));
}

static void test_merge_carries_inputs(void **state) {
    (void)state;
    char a[256], b[256], out[256];
    path_in_dir(a, sizeof a, "prov_a.db");
    path_in_dir(b, sizeof b, "prov_b.db");
    path_in_dir(out, sizeof out, "prov_out.db");
    make_shard(a, FP1, SHA_B);
    usleep(5000); /* b's copy finishes later: a rerun from newer data */
    make_shard(b, FP2, SHA_A);
    Store s;
    StoreMergeStats st = {0};
    CHECK(store_open(&s, out));
    CHECK(store_merge(&s, a, &st));
    CHECK(store_merge(&s, b, &st));
    assert_int_equal(st.runs_added, 1);
    assert_int_equal(st.runs_replaced, 1);
    CHECK(store_merge(&s, a, &st)); /* the older copy never replaces the newer */
    assert_int_equal(st.runs_skipped, 1);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM runs WHERE inputs_sha256 = "
                                   "'2222222222222222222222222222222222222222222222222222222222222222'"), 1);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM run_inputs"), 2);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM run_inputs WHERE kind = 'data' AND sha256 = "
                                   "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'"), 1);
    assert_integrity(&s);
    CHECK(store_close(&s));
}

/* A version-1 file (made here by undoing migration 2 on a fresh store) is migrated on open:
 * its runs kept, their inputs unknown, so they count as stale. */
static void test_migrate_from_v1(void **state) {
    (void)state;
    char path[256];
    path_in_dir(path, sizeof path, "v1.db");
    Store s;
    int64_t exp = 0;
    CHECK(store_open(&s, path));
    CHECK(store_experiment_upsert(&s, "old", NULL, NULL, &exp));
    set_meta(&s, "c0ffee", 0);
    assert_true(claim_done(&s, exp, 0, 0));
    CHECK(store_close(&s));
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_sql(db, "DROP TABLE eval_examples; ALTER TABLE runs DROP COLUMN label; "
                 "DROP TABLE run_inputs; ALTER TABLE runs DROP COLUMN inputs_sha256; "
                 "DELETE FROM schema_version WHERE version > 1;");
    sqlite3_close(db);

    CHECK(store_open(&s, path));
    assert_int_equal(query_int(&s, "SELECT max(version) FROM schema_version"), STORE_SCHEMA_VERSION);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM runs WHERE status = 'done' AND "
                                   "inputs_sha256 IS NULL"), 1);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM run_inputs"), 0);
    set_meta(&s, "c0ffee", 0);
    set_inputs(&s, FP1, SHA_A);
    assert_true(claim_done(&s, exp, 0, STORE_RERUN_STALE)); /* unknown inputs: stale */
    assert_int_equal(query_int(&s, "SELECT count(*) FROM run_inputs"), 2);
    assert_integrity(&s);
    CHECK(store_close(&s));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale_claims),
        cmocka_unit_test(test_merge_carries_inputs),
        cmocka_unit_test(test_migrate_from_v1),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
