/* Helpers shared by the run-store tests (test_store.c, test_store_provenance.c): a fresh
 * temporary directory per test program, error and SQL checks, and a run config per index.
 * Static functions in a header: each test program includes it once. */
#ifndef LORASC_TESTS_STORE_TEST_UTIL_H
#define LORASC_TESTS_STORE_TEST_UTIL_H

static char dir[] = "/tmp/lorasc_store_XXXXXX";

static void path_in_dir(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static void expect_error(int rc, const char *needle) {
    assert_int_equal(rc, LSC_ERR);
    if (!strstr(error_last(), needle)) fail_msg("error \"%s\" does not mention \"%s\"", error_last(), needle);
}

#define CHECK(call)                                                                               \
    do {                                                                                          \
        if ((call) != LSC_OK) fail_msg("%s failed: %s", #call, error_last());                     \
    } while (0)

/* The single integer a query returns (-1 for NULL). */
static int64_t query_int(Store *s, const char *sql) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(s->db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const int64_t v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void exec_sql(sqlite3 *db, const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
}

static void assert_integrity(Store *s) {
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    assert_int_equal(query_int(s, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
}

static void config_of(int i, char hash[32], char json[128]) {
    snprintf(hash, 32, "%016x", 0x9e3779b9u * (unsigned)(i + 1));
    snprintf(json, 128, "{\"lr\":%g,\"rank\":%d,\"seed\":%d}", 1e-4 * (1 + i % 5), 4 << (i % 3), i);
}

static int64_t claim_ok(Store *s, int64_t exp, int i, unsigned flags, StoreClaim *c) {
    char hash[32], json[128];
    config_of(i, hash, json);
    CHECK(store_run_claim(s, exp, hash, json, i, flags, c));
    return c->run_id;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static int setup(void **state) {
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
