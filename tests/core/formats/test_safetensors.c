/* safetensors: writer -> reader round trip in F32 / BF16 / F16, scalar conversions on
 * special values, and one clear error per kind of malformed file (built in memory). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <math.h>

#include "core/base/error.h"
#include "core/formats/safetensors.h"
#include "tests/check.h"

static void test_roundtrip(void **state) {
    (void)state;
    float a[6 * 5], b[7];
    Real ra[6 * 5];
    check_fill_uniform(ra, 30, 11, 0, -3.0, 3.0);
    for (int i = 0; i < 30; i++) a[i] = (float)ra[i];
    for (int i = 0; i < 7; i++) b[i] = (float)i * 0.37f - 1.0f;
    const StWriteEntry e[2] = {{"w.a", 2, {6, 5}, a}, {"w.b", 1, {7}, b}};
    const char *meta[] = {"format", "pt", NULL};
    char path[] = "/tmp/lorasc_st_XXXXXX";
    close(mkstemp(path));
    const StDtype dts[3] = {ST_F32, ST_BF16, ST_F16};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(safetensors_write(path, e, 2, dts[k], meta), LSC_OK);
        SafeTensors st;
        if (safetensors_open(&st, path) != LSC_OK) fail_msg("%s", error_last());
        assert_int_equal(st.n_tensors, 2);
        assert_int_equal(st.data_offset % 8, 0);
        const StTensor *t = safetensors_find(&st, "w.a");
        assert_non_null(t);
        assert_int_equal(t->dtype, dts[k]);
        assert_int_equal(t->ndim, 2);
        Real got[30];
        const int64_t shape[2] = {6, 5};
        assert_int_equal(safetensors_read_shaped(&st, "w.a", 2, shape, got), LSC_OK);
        for (int i = 0; i < 30; i++) {
            const float want = k == 0 ? a[i] : k == 1 ? safetensors_bf16_to_f32(safetensors_f32_to_bf16(a[i]))
                                                      : safetensors_f16_to_f32(safetensors_f32_to_f16(a[i]));
            assert_true((float)got[i] == want);
            assert_true(fabsf(want - a[i]) <= (k == 1 ? 1.0f / 128 : 1.0f / 1024) * fabsf(a[i]));
        }
        const int64_t wrong[2] = {5, 6};
        assert_int_equal(safetensors_read_shaped(&st, "w.a", 2, wrong, got), LSC_ERR);
        assert_non_null(strstr(error_last(), "has shape [6, 5], but the config implies [5, 6]"));
        assert_int_equal(safetensors_read_shaped(&st, "nope", 2, wrong, got), LSC_ERR);
        safetensors_close(&st);
    }
    remove(path);
}

static void test_conversions(void **state) {
    (void)state;
    assert_true(safetensors_bf16_to_f32(0x3F80) == 1.0f);
    assert_true(safetensors_f16_to_f32(0x3C00) == 1.0f);
    assert_true(safetensors_f16_to_f32(0xC000) == -2.0f);
    assert_true(safetensors_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(safetensors_f16_to_f32(0x7BFF) == 65504.0f);
    assert_true(isinf(safetensors_f16_to_f32(0x7C00)));
    assert_true(isnan(safetensors_f16_to_f32(0x7E00)));
    assert_int_equal(safetensors_f32_to_f16(65504.0f), 0x7BFF);
    assert_int_equal(safetensors_f32_to_f16(1e6f), 0x7C00);
    assert_int_equal(safetensors_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);
    assert_int_equal(safetensors_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(safetensors_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3F80); /* tie -> even */
    assert_int_equal(safetensors_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3F82);
    assert_true(isnan(safetensors_bf16_to_f32(safetensors_f32_to_bf16(NAN))));
    /* every f16 value survives f16 -> f32 -> f16 */
    for (uint32_t h = 0; h < 0x10000; h++) {
        const float f = safetensors_f16_to_f32((uint16_t)h);
        if (!isnan(f) && safetensors_f32_to_f16(f) != h) fail_msg("f16 0x%04X -> %g -> 0x%04X", h, (double)f, safetensors_f32_to_f16(f));
    }
}

/* A file in memory: u64 header length (or `len` when not ~0), header text, data bytes. */
static size_t build(unsigned char *buf, const char *hdr, uint64_t len, size_t data) {
    const uint64_t n = strlen(hdr);
    const uint64_t l = len == ~0ull ? n : len;
    memcpy(buf, &l, 8);
    memcpy(buf + 8, hdr, n);
    memset(buf + 8 + n, 0x3c, data);
    return 8 + n + data;
}

static void expect(const char *hdr, uint64_t len, size_t data, const char *needle) {
    static unsigned char buf[4096];
    const size_t n = build(buf, hdr, len, data);
    SafeTensors st;
    assert_int_equal(safetensors_open_mem(&st, buf, n, "bad.safetensors"), LSC_ERR);
    if (!strstr(error_last(), needle) || !strstr(error_last(), "bad.safetensors"))
        fail_msg("error \"%s\" lacks \"%s\"", error_last(), needle);
    printf("  ok: %s\n", error_last());
}

static void test_malformed(void **state) {
    (void)state;
    SafeTensors st;
    assert_int_equal(safetensors_open_mem(&st, "abc", 3, "bad.safetensors"), LSC_ERR);
    assert_non_null(strstr(error_last(), "too short"));
    const char *ok = "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}";
    expect(ok, 1000, 8, "runs past the end of the file");
    expect(ok, ~0ull, 4, "truncated");
    expect("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}", ~0ull, 8, "corrupt safetensors header");
    expect("[1, 2]", ~0ull, 0, "must be a JSON object");
    expect("{\"a\": {\"dtype\": \"F31\", \"shape\": [2], \"data_offsets\": [0, 8]}}", ~0ull, 8, "unknown dtype \"F31\"");
    expect("{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", ~0ull, 8, "need 12");
    expect("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", ~0ull, 8, "begin <= end");
    expect("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
           " \"b\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [4, 8]}}", ~0ull, 8, "overlap");
    expect("{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", ~0ull, 8, "non-negative");
    expect("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
           " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", ~0ull, 8, "duplicate");
    expect("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], "
           "\"data_offsets\": [0, 8]}}", ~0ull, 8, "absurd shape");
    expect("{\"a\": {\"dtype\": \"F32\"}}", ~0ull, 0, "needs \"dtype\"");
    /* a known dtype lorasc does not convert */
    static unsigned char buf[512];
    const size_t n = build(buf, "{\"a\": {\"dtype\": \"I64\", \"shape\": [1], \"data_offsets\": [0, 8]}, "
                               "\"__metadata__\": {\"format\": \"pt\"}}", ~0ull, 8);
    assert_int_equal(safetensors_open_mem(&st, buf, n, "i64.safetensors"), LSC_OK);
    Real x[1];
    assert_int_equal(safetensors_read(&st, &st.tensors[0], x), LSC_ERR);
    assert_non_null(strstr(error_last(), "is I64; lorasc reads F32, F16 and BF16"));
    printf("  ok: %s\n", error_last());
    safetensors_close(&st);
    assert_int_equal(safetensors_open(&st, "/nonexistent/x.safetensors"), LSC_ERR);
    assert_non_null(strstr(error_last(), "/nonexistent/x.safetensors"));
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_conversions),
                                       cmocka_unit_test(test_malformed)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
