/* Philox-4x32-10: known-answer vectors from Random123's kat_vectors, counter independence,
 * and the moments of the uniform and normal fills. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/base/philox.h"

static void test_known_answers(void **state) {
    (void)state;
    const struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        philox4x32_10(out, kat[i].ctr, kat[i].key);
        for (int j = 0; j < 4; j++) assert_int_equal(out[j], kat[i].out[j]);
    }
}

/* Any slice can be regenerated on its own: word i does not depend on the words before it. */
static void test_random_access(void **state) {
    (void)state;
    Real all[64], one;
    philox_uniform(all, 64, 42, 7, 0.0, 1.0);
    for (uint64_t i = 0; i < 64; i++) {
        one = (Real)((philox_u32(42, 7, i) >> 8) * (1.0 / 16777216.0));
        assert_true(one == all[i]);
    }
    Real other[64];
    philox_uniform(other, 64, 42, 8, 0.0, 1.0); /* another stream differs */
    int same = 0;
    for (int i = 0; i < 64; i++) same += other[i] == all[i];
    assert_true(same < 4);
}

static void test_moments(void **state) {
    (void)state;
    const size_t n = 1 << 20;
    Real *x = malloc(n * sizeof(Real));
    philox_uniform(x, n, 1, philox_stream(RNG_PURPOSE_NOISE, 1, 2, 3), -0.5, 0.5);
    double mean = 0, var = 0, lo = 1, hi = -1;
    for (size_t i = 0; i < n; i++) {
        mean += x[i];
        lo = fmin(lo, x[i]);
        hi = fmax(hi, x[i]);
    }
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)n;
    assert_true(lo >= -0.5 && hi < 0.5);
    assert_true(fabs(mean) < 3e-3);              /* sd of the mean: 0.29/1024 */
    assert_true(fabs(var - 1.0 / 12.0) < 1e-3);

    philox_normal(x, n, 2, 5, 1.0, 2.0);
    mean = var = 0;
    for (size_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)n;
    assert_true(fabs(mean - 1.0) < 1e-2);
    assert_true(fabs(var - 4.0) < 4e-2);
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_random_access),
        cmocka_unit_test(test_moments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
