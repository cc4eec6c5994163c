/* The robustness suite (core/data/corrupt.h): determinism from the seed, severity monotonicity of
 * every corruption, clamping to [0, 1], and one property per corruption that says it does
 * what its name says (brightness shifts the mean, contrast shrinks the std, pixelate is
 * constant on blocks, JPEG keeps each 8x8 block's mean up to the DC quantiser, ...). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/data/corrupt.h"
#include "core/base/error.h"
#include "core/base/philox.h"

/* A smooth random image in [lo, hi]: a few Gaussian blobs over a gradient, plus fine noise
 * (like a photograph: mostly low frequencies, some texture). */
static void make_image(Real *img, int C, int H, int W, uint64_t seed, double lo, double hi) {
    Real r[32];
    philox_uniform(r, 32, seed, 77, 0, 1);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double v = 0.3 * (double)x / W + 0.2 * r[c] * (double)y / H;
                for (int b = 0; b < 4; b++) {
                    const double cy = r[4 + 6 * b] * H, cx = r[5 + 6 * b] * W;
                    const double s = 1.5 + 4 * r[6 + 6 * b];
                    v += (r[7 + 6 * b] - 0.3) * exp(-((y - cy) * (y - cy) + (x - cx) * (x - cx)) / (2 * s * s));
                }
                Real u;
                philox_uniform(&u, 1, seed, 1000 + (uint64_t)(c * H + y) * W + (uint64_t)x, -0.08, 0.08);
                v += u;
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                img[(c * H + y) * W + x] = (Real)(lo + (hi - lo) * v);
            }
}

static double mean_abs_diff(const Real *a, const Real *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fabs((double)a[i] - (double)b[i]);
    return s / (double)n;
}

static void mean_std(const Real *a, size_t n, double *mean, double *std) {
    double s = 0, q = 0;
    for (size_t i = 0; i < n; i++) s += a[i];
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++) q += (a[i] - *mean) * (a[i] - *mean);
    *std = sqrt(q / (double)n);
}

static void test_names(void **state) {
    (void)state;
    for (int k = 0; k < CORRUPT_NUM; k++) assert_int_equal(corrupt_parse(corrupt_name(k)), k);
    assert_int_equal(corrupt_parse("fog"), -1);
    Real img[16] = {0.5f};
    assert_int_equal(corrupt_image(img, 1, 4, 4, CORRUPT_NUM, 1, 1, 0), LSC_ERR);
    assert_non_null(strstr(error_last(), "Unknown corruption"));
    assert_int_equal(corrupt_image(img, 1, 4, 4, 0, 6, 1, 0), LSC_ERR);
    assert_non_null(strstr(error_last(), "severity 6"));
    assert_int_equal(corrupt_image(img, 1, 4, 4, 0, 0, 1, 0), LSC_ERR);
}

static void test_determinism(void **state) {
    (void)state;
    enum { C = 1, H = 28, W = 28, N = C * H * W };
    Real x[N], a[N], b[N];
    make_image(x, C, H, W, 5, 0, 1);
    for (int k = 0; k < CORRUPT_NUM; k++) {
        memcpy(a, x, sizeof x);
        memcpy(b, x, sizeof x);
        assert_int_equal(corrupt_image(a, C, H, W, k, 3, 42, 7), LSC_OK);
        assert_int_equal(corrupt_image(b, C, H, W, k, 3, 42, 7), LSC_OK);
        if (memcmp(a, b, sizeof a) != 0) fail_msg("%s is not deterministic", corrupt_name(k));
        /* the random ones depend on the seed and on the image index */
        if (k == CORRUPT_GAUSSIAN_NOISE || k == CORRUPT_SHOT_NOISE || k == CORRUPT_IMPULSE_NOISE ||
            k == CORRUPT_ELASTIC || k == CORRUPT_MOTION_BLUR) {
            memcpy(b, x, sizeof x);
            assert_int_equal(corrupt_image(b, C, H, W, k, 3, 43, 7), LSC_OK);
            if (memcmp(a, b, sizeof a) == 0) fail_msg("%s ignores the seed", corrupt_name(k));
            memcpy(b, x, sizeof x);
            assert_int_equal(corrupt_image(b, C, H, W, k, 3, 42, 8), LSC_OK);
            if (memcmp(a, b, sizeof a) == 0) fail_msg("%s ignores the image index", corrupt_name(k));
        }
    }
}

/* Mean |corrupted - clean| over a few images grows strictly with the severity, for grey
 * 28 x 28 images and for RGB 16 x 16 ones; and every value stays in [0, 1]. */
static void check_monotone(int C, int H, int W) {
    enum { NIMG = 6 };
    const size_t n = (size_t)C * H * W;
    Real *x = malloc(sizeof(Real) * n * NIMG), *y = malloc(sizeof(Real) * n);
    assert_non_null(x);
    assert_non_null(y);
    for (int i = 0; i < NIMG; i++) make_image(x + i * n, C, H, W, 100 + (uint64_t)i, 0, 1);
    for (int k = 0; k < CORRUPT_NUM; k++) {
        double prev = 0;
        printf("%-15s C=%d %2dx%-2d:", corrupt_name(k), C, H, W);
        for (int s = 1; s <= CORRUPT_SEVERITIES; s++) {
            double d = 0;
            for (int i = 0; i < NIMG; i++) {
                memcpy(y, x + i * n, sizeof(Real) * n);
                assert_int_equal(corrupt_image(y, C, H, W, k, s, 9, (uint64_t)i), LSC_OK);
                for (size_t j = 0; j < n; j++)
                    if (!(y[j] >= 0 && y[j] <= 1))
                        fail_msg("%s severity %d: value %g at %zu is outside [0, 1]",
                                 corrupt_name(k), s, (double)y[j], j);
                d += mean_abs_diff(y, x + i * n, n) / NIMG;
            }
            printf(" %.4f", d);
            if (!(d > prev)) fail_msg("%s: mean |corrupted - clean| %.5f at severity %d is not above %.5f at %d",
                                      corrupt_name(k), d, s, prev, s - 1);
            prev = d;
        }
        printf("\n");
    }
    free(x);
    free(y);
}

static void test_monotone_grey(void **state) {
    (void)state;
    check_monotone(1, 28, 28);
}

static void test_monotone_rgb(void **state) {
    (void)state;
    check_monotone(3, 16, 16);
}

static void test_clamping_extremes(void **state) {
    (void)state;
    enum { C = 3, H = 12, W = 12, N = C * H * W };
    Real x[N];
    for (int i = 0; i < N; i++) x[i] = (Real)((i * 7919) % 3 == 0 ? 0 : (i % 5 == 0 ? 1 : 0.5));
    for (int k = 0; k < CORRUPT_NUM; k++)
        for (int s = 1; s <= CORRUPT_SEVERITIES; s++) {
            Real y[N];
            memcpy(y, x, sizeof x);
            assert_int_equal(corrupt_image(y, C, H, W, k, s, 3, 0), LSC_OK);
            for (int i = 0; i < N; i++)
                if (!(y[i] >= 0 && y[i] <= 1))
                    fail_msg("%s severity %d: %g at %d outside [0, 1]", corrupt_name(k), s, (double)y[i], i);
        }
}

static void test_brightness_contrast(void **state) {
    (void)state;
    enum { C = 1, H = 20, W = 20, N = C * H * W };
    Real x[N], y[N];
    make_image(x, C, H, W, 11, 0.1, 0.6); /* room for +0.3 without clamping */
    double m0, s0, m1, s1;
    mean_std(x, N, &m0, &s0);
    for (int s = 1; s <= CORRUPT_SEVERITIES; s++) {
        const double p = corrupt_param(CORRUPT_BRIGHTNESS, s, H, W);
        memcpy(y, x, sizeof x);
        assert_int_equal(corrupt_image(y, C, H, W, CORRUPT_BRIGHTNESS, s, 1, 0), LSC_OK);
        mean_std(y, N, &m1, &s1);
        if (fabs(m1 - (m0 + p)) > 1e-5) fail_msg("brightness %d: mean %.6f, expected %.6f", s, m1, m0 + p);
        if (fabs(s1 - s0) > 1e-5) fail_msg("brightness %d: std changed %.6f -> %.6f", s, s0, s1);
        const double f = corrupt_param(CORRUPT_CONTRAST, s, H, W);
        memcpy(y, x, sizeof x);
        assert_int_equal(corrupt_image(y, C, H, W, CORRUPT_CONTRAST, s, 1, 0), LSC_OK);
        mean_std(y, N, &m1, &s1);
        if (fabs(m1 - m0) > 1e-5) fail_msg("contrast %d: mean moved %.6f -> %.6f", s, m0, m1);
        if (fabs(s1 - f * s0) > 1e-5) fail_msg("contrast %d: std %.6f, expected %.6f", s, s1, f * s0);
    }
    /* RGB brightness keeps hue: the channel ratios of a pixel stay the same */
    Real rgb[3] = {0.2f, 0.4f, 0.5f};
    assert_int_equal(corrupt_image(rgb, 3, 1, 1, CORRUPT_BRIGHTNESS, 3, 1, 0), LSC_OK);
    assert_true(fabs(rgb[2] - 0.65) < 1e-6 && fabs(rgb[0] / rgb[2] - 0.4) < 1e-6 &&
                fabs(rgb[1] / rgb[2] - 0.8) < 1e-6);
}

static void test_pixelate_blocks(void **state) {
    (void)state;
    enum { C = 2, H = 17, W = 13, N = C * H * W };
    Real x[N], y[N];
    make_image(x, C, H, W, 12, 0, 1);
    for (int s = 1; s <= CORRUPT_SEVERITIES; s++) {
        const int b = (int)corrupt_param(CORRUPT_PIXELATE, s, H, W);
        memcpy(y, x, sizeof x);
        assert_int_equal(corrupt_image(y, C, H, W, CORRUPT_PIXELATE, s, 1, 0), LSC_OK);
        for (int c = 0; c < C; c++)
            for (int by = 0; by < H; by += b)
                for (int bx = 0; bx < W; bx += b) {
                    double sum = 0;
                    int cnt = 0;
                    for (int yy = by; yy < by + b && yy < H; yy++)
                        for (int xx = bx; xx < bx + b && xx < W; xx++) {
                            const int i = (c * H + yy) * W + xx;
                            if (y[i] != y[(c * H + by) * W + bx])
                                fail_msg("pixelate %d: block (%d, %d) not constant at (%d, %d)", s, by, bx, yy, xx);
                            sum += x[i];
                            cnt++;
                        }
                    if (fabs(y[(c * H + by) * W + bx] - sum / cnt) > 1e-6)
                        fail_msg("pixelate %d: block (%d, %d) holds %g, its mean is %g", s, by, bx,
                                 (double)y[(c * H + by) * W + bx], sum / cnt);
                }
    }
}

/* JPEG: the block mean is the DC coefficient / 8, rounded to a multiple of the DC quantiser
 * Q00 (<= 80 at quality 10): each 8x8 block's mean moves by at most Q00 / 16 / 255. */
static void test_jpeg_dc(void **state) {
    (void)state;
    enum { C = 1, H = 16, W = 24, N = C * H * W };
    Real x[N], y[N];
    make_image(x, C, H, W, 13, 0.3, 0.7);
    const double q00[CORRUPT_SEVERITIES] = {11, 18, 27, 40, 80}; /* IJG scaling of 16 */
    for (int s = 1; s <= CORRUPT_SEVERITIES; s++) {
        memcpy(y, x, sizeof x);
        assert_int_equal(corrupt_image(y, C, H, W, CORRUPT_JPEG, s, 1, 0), LSC_OK);
        for (int by = 0; by < H; by += 8)
            for (int bx = 0; bx < W; bx += 8) {
                double a = 0, b = 0;
                for (int yy = by; yy < by + 8; yy++)
                    for (int xx = bx; xx < bx + 8; xx++) a += x[yy * W + xx], b += y[yy * W + xx];
                const double tol = q00[s - 1] / 16 / 255 + 1e-4;
                if (fabs(a - b) / 64 > tol)
                    fail_msg("jpeg %d: block (%d, %d) mean %.5f -> %.5f (tolerance %.5f)", s, by, bx,
                             a / 64, b / 64, tol);
            }
    }
    /* a constant 8x8-aligned image whose level is on the DC grid passes unchanged */
    for (int i = 0; i < N; i++) x[i] = y[i] = (Real)((128.0 + 8 * 11 / 8.0) / 255.0);
    assert_int_equal(corrupt_image(y, C, H, W, CORRUPT_JPEG, 1, 1, 0), LSC_OK);
    for (int i = 0; i < N; i++) assert_true(fabs(y[i] - x[i]) < 1e-5);
}

/* Noise has the advertised size: Gaussian noise std ~ s on mid-grey, impulse noise hits a
 * fraction ~ s of the values, shot noise is unbiased. Blurs and elastic keep the mean of a
 * smooth image and leave a constant image alone. */
static void test_noise_and_blur_properties(void **state) {
    (void)state;
    enum { C = 1, H = 64, W = 64, N = C * H * W };
    static Real x[N], y[N];
    for (int s = 1; s <= CORRUPT_SEVERITIES; s++) {
        for (int i = 0; i < N; i++) y[i] = 0.5f;
        assert_int_equal(corrupt_image(y, C, H, W, CORRUPT_GAUSSIAN_NOISE, s, 4, 0), LSC_OK);
        double m, sd;
        mean_std(y, N, &m, &sd);
        const double p = corrupt_param(CORRUPT_GAUSSIAN_NOISE, s, H, W);
        if (fabs(sd - p) > 0.05 * p || fabs(m - 0.5) > 0.01) fail_msg("gaussian %d: mean %.4f std %.4f", s, m, sd);
        int hit = 0;
        for (uint64_t img = 0; img < 8; img++) { /* 8 x 4096 draws: the fraction within ~10% */
            for (int i = 0; i < N; i++) y[i] = 0.5f;
            assert_int_equal(corrupt_image(y, C, H, W, CORRUPT_IMPULSE_NOISE, s, 4, img), LSC_OK);
            for (int i = 0; i < N; i++) hit += y[i] != 0.5f;
        }
        const double frac = (double)hit / (8.0 * N), want = corrupt_param(CORRUPT_IMPULSE_NOISE, s, H, W);
        if (fabs(frac - want) > 0.25 * want) fail_msg("impulse %d: %.4f of values hit, expected %.4f", s, frac, want);
        for (int i = 0; i < N; i++) y[i] = 0.5f;
        assert_int_equal(corrupt_image(y, C, H, W, CORRUPT_SHOT_NOISE, s, 4, 0), LSC_OK);
        mean_std(y, N, &m, &sd);
        if (fabs(m - 0.5) > 0.01) fail_msg("shot %d: mean %.4f, expected 0.5", s, m);
    }
    const int smooth_kinds[] = {CORRUPT_DEFOCUS_BLUR, CORRUPT_MOTION_BLUR, CORRUPT_ELASTIC};
    for (int t = 0; t < 3; t++) {
        const int k = smooth_kinds[t];
        for (int i = 0; i < N; i++) y[i] = 0.25f;
        assert_int_equal(corrupt_image(y, C, H, W, k, 5, 4, 0), LSC_OK);
        for (int i = 0; i < N; i++)
            if (fabs(y[i] - 0.25) > 1e-6) fail_msg("%s changed a constant image at %d: %g", corrupt_name(k), i, (double)y[i]);
        make_image(x, C, H, W, 21, 0, 1);
        memcpy(y, x, sizeof x);
        assert_int_equal(corrupt_image(y, C, H, W, k, 3, 4, 0), LSC_OK);
        double m0, s0, m1, s1;
        mean_std(x, N, &m0, &s0);
        mean_std(y, N, &m1, &s1);
        if (fabs(m1 - m0) > 0.02) fail_msg("%s moved the mean %.4f -> %.4f", corrupt_name(k), m0, m1);
        if (k != CORRUPT_ELASTIC && !(s1 < s0)) fail_msg("%s did not smooth: std %.4f -> %.4f", corrupt_name(k), s0, s1);
    }
}

/* The normalised entry point is the raw one between un-normalising and normalising. */
static void test_normalised(void **state) {
    (void)state;
    enum { C = 3, H = 8, W = 8, N = C * H * W };
    const float mean[3] = {0.3f, 0.4f, 0.5f}, std[3] = {0.2f, 0.25f, 0.3f};
    Real x[N], raw[N], norm[N];
    make_image(x, C, H, W, 31, 0, 1);
    for (int k = 0; k < CORRUPT_NUM; k++) {
        memcpy(raw, x, sizeof x);
        assert_int_equal(corrupt_image(raw, C, H, W, k, 2, 8, 3), LSC_OK);
        for (int c = 0; c < C; c++)
            for (int j = 0; j < H * W; j++) norm[c * H * W + j] = (x[c * H * W + j] - mean[c]) / std[c];
        assert_int_equal(corrupt_image_normalised(norm, C, H, W, mean, std, k, 2, 8, 3), LSC_OK);
        for (int c = 0; c < C; c++)
            for (int j = 0; j < H * W; j++) {
                const double want = (raw[c * H * W + j] - mean[c]) / std[c];
                if (fabs(norm[c * H * W + j] - want) > 1e-4)
                    fail_msg("%s normalised [%d]: %g, expected %g", corrupt_name(k), c * H * W + j,
                             (double)norm[c * H * W + j], want);
            }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_monotone_grey),
        cmocka_unit_test(test_monotone_rgb),
        cmocka_unit_test(test_clamping_extremes),
        cmocka_unit_test(test_brightness_contrast),
        cmocka_unit_test(test_pixelate_blocks),
        cmocka_unit_test(test_jpeg_dc),
        cmocka_unit_test(test_noise_and_blur_properties),
        cmocka_unit_test(test_normalised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
