/* The run store's per-example outcomes and run labels (store_examples.c, schema version 3):
 * outcomes round-trip bit for bit, replace per (split, metric), are refused for a run this
 * process does not hold, go with a new claim and a rewind, travel with a merge; labels are
 * stored and merged; a version-2 file is migrated with its runs and evals kept. */
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
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/error.h"
#include "core/store/store.h"
#include "tests/core/store/store_test_util.h"

static const double OUT[5] = {1.0, 0.0, 0.25, 1.0 / 3.0, -0.0};

static void expect_outcomes(Store *s, int64_t run, const char *split, const char *metric,
                            const double *want, int64_t n) {
    double *v = NULL;
    int64_t got = -1;
    CHECK(store_eval_examples_get(s, run, split, metric, &v, &got));
    if (got != n) fail_msg("run %lld %s.%s: %lld outcomes, expected %lld", (long long)run, split,
                           metric, (long long)got, (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&v[i], &want[i], sizeof(double)) != 0)
            fail_msg("outcome %lld: got %.17g, expected %.17g (bit for bit)", (long long)i, v[i], want[i]);
    if (n == 0) assert_null(v);
    free(v);
}

/* claims run i and returns its id (claimed) */
static int64_t claim(Store *s, int64_t exp, int i, unsigned flags) {
    StoreClaim c;
    claim_ok(s, exp, i, flags, &c);
    assert_true(c.claimed);
    return c.run_id;
}

static void test_outcomes_round_trip(void **state) {
    (void)state;
    char path[256];
    path_in_dir(path, sizeof path, "examples.db");
    Store s;
    int64_t exp = 0;
    CHECK(store_open(&s, path));
    CHECK(store_experiment_upsert(&s, "ex", NULL, NULL, &exp));
    const int64_t run = claim(&s, exp, 0, 0);
    CHECK(store_eval_examples_set(&s, run, "test", "score", OUT, 5));
    CHECK(store_eval_examples_set(&s, run, "test", "corrupt.mean", OUT + 2, 2));
    expect_outcomes(&s, run, "test", "score", OUT, 5);
    expect_outcomes(&s, run, "test", "corrupt.mean", OUT + 2, 2);
    expect_outcomes(&s, run, "val", "score", NULL, 0); /* none stored */
    CHECK(store_eval_examples_set(&s, run, "test", "score", OUT + 1, 3)); /* replaces */
    expect_outcomes(&s, run, "test", "score", OUT + 1, 3);
    CHECK(store_run_label_set(&s, run, "lora+"));
    CHECK(store_eval_add(&s, run, "test", "score", 0.5));
    CHECK(store_run_finish(&s, run, STORE_DONE, NULL, 1.0));
    /* a done run is not held: no more outcomes for it */
    expect_error(store_eval_examples_set(&s, run, "test", "score", OUT, 5), "not held");
    expect_error(store_run_label_set(&s, 999, "x"), "no run 999");
    assert_int_equal(query_int(&s, "SELECT count(*) FROM runs WHERE label = 'lora+'"), 1);

    /* a second run: rewind clears its outcomes with its evals; a new claim clears them too */
    const int64_t r2 = claim(&s, exp, 1, 0);
    CHECK(store_eval_examples_set(&s, r2, "test", "score", OUT, 5));
    CHECK(store_run_rewind(&s, r2, 0));
    expect_outcomes(&s, r2, "test", "score", NULL, 0);
    CHECK(store_eval_examples_set(&s, r2, "test", "score", OUT, 4));
    CHECK(store_run_finish(&s, r2, STORE_FAILED, "boom", 1.0));
    (void)claim(&s, exp, 1, STORE_RERUN_FAILED);
    expect_outcomes(&s, r2, "test", "score", NULL, 0);
    assert_integrity(&s);
    CHECK(store_close(&s));

    /* a merge carries outcomes and labels */
    char out[256];
    path_in_dir(out, sizeof out, "examples_out.db");
    StoreMergeStats st = {0};
    CHECK(store_open(&s, out));
    CHECK(store_merge(&s, path, &st));
    assert_int_equal(st.runs_added, 2);
    int64_t merged = query_int(&s, "SELECT id FROM runs WHERE label = 'lora+'");
    assert_true(merged > 0);
    expect_outcomes(&s, merged, "test", "score", OUT + 1, 3);
    expect_outcomes(&s, merged, "test", "corrupt.mean", OUT + 2, 2);
    assert_integrity(&s);
    CHECK(store_close(&s));
}

/* A version-2 file (made by undoing migration 3) is migrated on open: runs, evals and
 * inputs kept, no labels and no outcomes; new outcomes can then be written. */
static void test_migrate_from_v2(void **state) {
    (void)state;
    char path[256];
    path_in_dir(path, sizeof path, "v2.db");
    Store s;
    int64_t exp = 0;
    CHECK(store_open(&s, path));
    CHECK(store_experiment_upsert(&s, "old", NULL, NULL, &exp));
    const int64_t run = claim(&s, exp, 0, 0);
    CHECK(store_eval_add(&s, run, "test", "score", 0.75));
    CHECK(store_run_finish(&s, run, STORE_DONE, NULL, 2.0));
    CHECK(store_close(&s));
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_sql(db, "DROP TABLE eval_examples; ALTER TABLE runs DROP COLUMN label; "
                 "DELETE FROM schema_version WHERE version > 2;");
    sqlite3_close(db);

    /* read-only, an older file is refused with the way out */
    expect_error(store_open_readonly(&s, path), "migrate");
    store_close(&s);
    CHECK(store_open(&s, path));
    assert_int_equal(query_int(&s, "SELECT max(version) FROM schema_version"), 3);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM runs WHERE status = 'done' AND label IS NULL"), 1);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM evals WHERE value = 0.75"), 1);
    assert_int_equal(query_int(&s, "SELECT count(*) FROM eval_examples"), 0);
    const int64_t r2 = claim(&s, exp, 1, 0);
    CHECK(store_eval_examples_set(&s, r2, "test", "score", OUT, 5));
    expect_outcomes(&s, r2, "test", "score", OUT, 5);
    assert_integrity(&s);
    CHECK(store_close(&s));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outcomes_round_trip),
        cmocka_unit_test(test_migrate_from_v2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
