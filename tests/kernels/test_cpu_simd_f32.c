/* kernels/cpu/cpu_ops.h's vector helpers in the float build: cpu_expf16 (the AVX-512
 * exponential the softmaxes use) gives cpu_expf's bits on every input class; cpu_exp_sum (the
 * softmax denominators of the attention and the cross-entropy) stores cpu_expf's terms and sums
 * them like a double sum, at every length around its blocks of 16 and 32; cpu_bf16_round
 * (AVX512_BF16's conversion with subnormal blocks done apart) gives bf16_from_float's bits for
 * all 2^32 inputs. The double-precision `ops` test checks cpu_expf itself against exp(). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/bf16.h"
#include "kernels/cpu/cpu_ops.h"

#ifdef LORASC_REAL_DOUBLE
#error "test_cpu_simd_f32 checks the float build's vector helpers: list it in tests_f32"
#endif

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Every 61st bit pattern (all signs, exponents and NaN payload classes; 70 million inputs)
 * and every float in [-110, 90] at a 1/4096 step, 16 lanes at a time, bit for bit. */
static void test_exp16_bits(void **state) {
    (void)state;
#if CPU_HAVE_EXP16
    size_t checked = 0, bad = 0;
    float in[16], out[16];
    uint32_t u = 0;
    for (uint64_t i = 0; i < (1ull << 32) / 61; i += 16) {
        for (int j = 0; j < 16; j++) in[j] = from_bits(u += 61);
        _mm512_storeu_ps(out, cpu_expf16(_mm512_loadu_ps(in)));
        for (int j = 0; j < 16; j++, checked++) {
            const float s = cpu_expf(in[j]);
            if (memcmp(&s, &out[j], sizeof s) != 0 && bad++ < 5)
                print_error("cpu_expf16(%a) = %a, cpu_expf = %a\n", in[j], out[j], s);
        }
    }
    for (int i = 0; i < 200 * 4096; i += 16) {
        for (int j = 0; j < 16; j++) in[j] = -110.0f + (float)(i + j) / 4096.0f;
        _mm512_storeu_ps(out, cpu_expf16(_mm512_loadu_ps(in)));
        for (int j = 0; j < 16; j++, checked++) {
            const float s = cpu_expf(in[j]);
            if (memcmp(&s, &out[j], sizeof s) != 0 && bad++ < 5)
                print_error("cpu_expf16(%a) = %a, cpu_expf = %a\n", in[j], out[j], s);
        }
    }
    print_message("cpu_expf16: %zu inputs, %zu differ from cpu_expf\n", checked, bad);
    assert_int_equal(bad, 0);
#else
    skip(); /* this CPU (or build) has no AVX-512: the softmaxes use cpu_expf directly */
#endif
}

/* cpu_exp_sum at lengths around its blocks: the stored terms are cpu_expf's, the sum is
 * within double rounding of the sum in order, and e == NULL gives the same sum. */
static void test_exp_sum(void **state) {
    (void)state;
    static float x[2100], e[2100];
    const int lengths[] = {0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 100, 2047, 2048, 2049};
    for (int i = 0; i < 2100; i++) x[i] = (float)sin(0.37 * i) * 30.0f - 12.0f;
    x[5] = -INFINITY; /* a masked logit */
    for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
        const int n = lengths[li];
        const float m = 7.5f, scale = 0.8f;
        memset(e, 0xFF, sizeof e); /* NaN: a term not stored shows */
        const double sum = cpu_exp_sum(e, x, m, scale, n);
        double ref = 0.0;
        for (int i = 0; i < n; i++) {
            const float t = cpu_expf((x[i] - m) * scale);
            if (memcmp(&t, &e[i], sizeof t) != 0)
                fail_msg("n = %d: term %d is %a, cpu_expf gives %a", n, i, e[i], t);
            ref += (double)t;
        }
        for (int i = n; i < n + 16 && i < 2100; i++) /* nothing past n is written */
            if (!isnan(e[i])) fail_msg("n = %d: e[%d] was written", n, i);
        if (fabs(sum - ref) > 1e-14 * ref) fail_msg("n = %d: sum %.17g, in order %.17g", n, sum, ref);
        const double sum_only = cpu_exp_sum(NULL, x, m, scale, n);
        if (sum_only != sum) fail_msg("n = %d: without storing %.17g, storing %.17g", n, sum_only, sum);
        memcpy(e, x, sizeof e); /* in place */
        if (cpu_exp_sum(e, e, m, scale, n) != sum) fail_msg("n = %d: in place differs", n);
    }
}

/* Every float bit pattern, in blocks of 2^16 (so blocks of 32 mix subnormals, zeros, NaNs and
 * normals at the boundaries), and lengths that end mid-block. */
static void test_bf16_round_bits(void **state) {
    (void)state;
    enum { BLOCK = 1 << 16 };
    static float in[BLOCK];
    static uint16_t out[BLOCK];
    size_t bad = 0;
    for (uint64_t base = 0; base < (1ull << 32); base += BLOCK) {
        for (uint32_t j = 0; j < BLOCK; j++) in[j] = from_bits((uint32_t)(base + j));
        cpu_bf16_round(out, in, BLOCK);
        for (uint32_t j = 0; j < BLOCK; j++)
            if (out[j] != bf16_from_float(in[j]) && bad++ < 5)
                print_error("cpu_bf16_round(%08x) = %04x, bf16_from_float %04x\n", (unsigned)(base + j),
                            out[j], bf16_from_float(in[j]));
    }
    const int lengths[] = {0, 1, 31, 32, 33, 63, 100};
    for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
        const int n = lengths[li];
        for (int j = 0; j < 128; j++) in[j] = (float)j * 0.37f - 11.0f;
        in[40] = from_bits(0x00000101u); /* a subnormal in the second block */
        memset(out, 0xAB, 256);
        cpu_bf16_round(out, in, (size_t)n);
        for (int j = 0; j < 128; j++) {
            const uint16_t want = j < n ? bf16_from_float(in[j]) : 0xABAB;
            if (out[j] != want && bad++ < 5) print_error("n = %d: element %d is %04x, want %04x\n", n, j, out[j], want);
        }
    }
    assert_int_equal(bad, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp16_bits),
        cmocka_unit_test(test_exp_sum),
        cmocka_unit_test(test_bf16_round_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
