/* The UCI digits (core/data/digits.h): the transform to MNIST's geometry on hand-made 8x8
 * images (expected 28x28 outputs computed here from torch's bilinear weights, orientation,
 * the centre of mass within half a pixel of (14, 14)), the CSV reader and its errors, and,
 * where Debian's python3-sklearn is installed (skipped otherwise), the real file: fetched
 * into a data directory, its checksum, 1,797 rows, label order and class counts, no ink
 * lost, a modified copy refused. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "core/base/error.h"
#include "core/base/philox.h"
#include "core/base/sha256.h"
#include "core/data/digits.h"

enum { F = DIGITS_FIELD, PIX = 64 };

static void centre_of_mass(const uint8_t *img, int side, double *cy, double *cx) {
    double m = 0, y = 0, x = 0;
    for (int i = 0; i < side; i++)
        for (int j = 0; j < side; j++) m += img[i * side + j], y += (double)img[i * side + j] * i, x += (double)img[i * side + j] * j;
    *cy = y / m, *cx = x / m;
}

static void expect_equal_images(const uint8_t *got, const uint8_t *want, const char *what) {
    for (int i = 0; i < F * F; i++)
        if (got[i] != want[i]) fail_msg("%s: pixel (%d, %d) is %d, expected %d", what, i / F, i % F, got[i], want[i]);
}

/* Every count 16: the 20x20 box is all 255, its centre of mass (9.5, 9.5), the offset
 * floor(14 - 9.5 + 0.5) = 5: the box fills rows and columns 5..24. */
static void test_full_frame(void **state) {
    (void)state;
    uint8_t counts[PIX], out[F * F], want[F * F] = {0};
    memset(counts, 16, sizeof counts);
    for (int y = 5; y < 25; y++)
        for (int x = 5; x < 25; x++) want[y * F + x] = 255;
    long clipped = -1;
    assert_int_equal(digits_to_mnist(counts, out, &clipped), LSC_OK);
    expect_equal_images(out, want, "an all-16 frame");
    assert_int_equal(clipped, 0);
}

/* One ink block, count 12 (intensity 191.25) at the top-left: torch's bilinear (align_corners
 * False) spreads input 0 over outputs 0..3 with weights 1, 0.9, 0.5, 0.1 (output i samples
 * (i + 0.5) * 8 / 20 - 0.5, clamped at 0), so box(y, x) = round(191.25 w_y w_x); no product
 * is near a half, so float rounding cannot move it. */
static void test_one_block(void **state) {
    (void)state;
    static const double w[4] = {1.0, 0.9, 0.5, 0.1};
    uint8_t counts[PIX] = {0}, out[F * F], want[F * F] = {0}, box[DIGITS_BOX * DIGITS_BOX] = {0};
    counts[0] = 12;
    double m = 0, my = 0, mx = 0;
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            box[y * DIGITS_BOX + x] = (uint8_t)floor(191.25 * w[y] * w[x] + 0.5);
            m += box[y * DIGITS_BOX + x], my += box[y * DIGITS_BOX + x] * y, mx += box[y * DIGITS_BOX + x] * x;
        }
    const int oy = (int)floor(14 - my / m + 0.5), ox = (int)floor(14 - mx / m + 0.5);
    assert_int_equal(oy, 13); /* the centre of mass (0.88, 0.88) moves to (13.88, 13.88) */
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) want[(y + oy) * F + x + ox] = box[y * DIGITS_BOX + x];
    assert_int_equal(want[13 * F + 13], 191);
    assert_int_equal(want[14 * F + 14], 155); /* 191.25 * 0.81 = 154.91 */
    assert_int_equal(want[13 * F + 16], 19);  /* 191.25 * 0.1 = 19.125 */
    assert_int_equal(digits_to_mnist(counts, out, NULL), LSC_OK);
    expect_equal_images(out, want, "one block at the top-left");
}

/* Rows stay rows: a bar down column 0 becomes a tall thin stroke, along row 0 a wide flat one
 * (the CSV is row-major, top row first, as MNIST's pixels). */
static void test_orientation(void **state) {
    (void)state;
    for (int k = 0; k < 2; k++) {
        uint8_t counts[PIX] = {0}, out[F * F];
        for (int i = 0; i < 8; i++) counts[k ? i : i * 8] = 16; /* k = 0: column 0; 1: row 0 */
        assert_int_equal(digits_to_mnist(counts, out, NULL), LSC_OK);
        int rows = 0, cols = 0;
        for (int y = 0; y < F; y++) {
            int any = 0;
            for (int x = 0; x < F; x++) any |= out[y * F + x];
            rows += any != 0;
        }
        for (int x = 0; x < F; x++) {
            int any = 0;
            for (int y = 0; y < F; y++) any |= out[y * F + x];
            cols += any != 0;
        }
        const int tall = k ? cols : rows, thin = k ? rows : cols;
        if (tall != 20 || thin != 4) fail_msg("a bar along %s covers %d rows and %d columns", k ? "row 0" : "column 0", rows, cols);
    }
}

/* Seeded random digits-like images: the centre of mass within half a pixel of (14, 14), no
 * ink lost, and the total ink is the 20x20 box's. Bad counts and empty images refused. */
static void test_centre_random(void **state) {
    (void)state;
    for (int t = 0; t < 300; t++) {
        uint8_t counts[PIX] = {0}, out[F * F];
        const int r0 = (int)(philox_u32(7, 1, (uint64_t)t) % 8), c0 = (int)(philox_u32(7, 2, (uint64_t)t) % 8);
        for (int i = 0; i < PIX; i++) /* ink somewhere, a blob off-centre, nothing sometimes */
            if (abs(i / 8 - r0) + abs(i % 8 - c0) < 4) counts[i] = (uint8_t)(philox_u32(7, 3, (uint64_t)(t * PIX + i)) % 17);
        counts[r0 * 8 + c0] = 16;
        long clipped = -1;
        assert_int_equal(digits_to_mnist(counts, out, &clipped), LSC_OK);
        double cy, cx;
        centre_of_mass(out, F, &cy, &cx);
        if (fabs(cy - 14) > 0.5 || fabs(cx - 14) > 0.5 || clipped != 0)
            fail_msg("image %d: centre of mass (%.4f, %.4f), %ld ink clipped", t, cy, cx, clipped);
    }
    uint8_t counts[PIX] = {0}, out[F * F];
    assert_int_equal(digits_to_mnist(counts, out, NULL), LSC_ERR);
    assert_non_null(strstr(error_last(), "has no ink"));
    counts[9] = 17;
    assert_int_equal(digits_to_mnist(counts, out, NULL), LSC_ERR);
    assert_non_null(strstr(error_last(), "count is 17 at pixel 9"));
}

/* Two hand-written lines parsed in order; each malformed line one sentence with its number. */
static void test_csv(void **state) {
    (void)state;
    char text[1024] = "", line[400];
    for (int r = 0; r < 2; r++) {
        line[0] = 0;
        for (int i = 0; i < PIX; i++) snprintf(line + strlen(line), sizeof line - strlen(line), "%d,", (i * 3 + r) % 17);
        snprintf(line + strlen(line), sizeof line - strlen(line), "%d\r\n", 7 - r);
        strcat(text, line);
    }
    uint8_t counts[3 * PIX];
    int32_t labels[3];
    int n;
    assert_int_equal(digits_parse_csv(text, strlen(text), "t.csv", counts, labels, 3, &n), LSC_OK);
    assert_int_equal(n, 2);
    assert_int_equal(labels[0], 7);
    assert_int_equal(labels[1], 6);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < PIX; i++)
            if (counts[r * PIX + i] != (i * 3 + r) % 17) fail_msg("row %d pixel %d: %d", r, i, counts[r * PIX + i]);
    static const struct { const char *text, *says; } bad[] = {
        {"1,2,3\n", "t.csv line 1 holds 3 fields; each line holds 65"},
        {"17,0,0\n", "t.csv line 1: pixel 1 is 17; counts are 0..16"},
        {"1,x,3\n", "t.csv line 1: field 2 is not a small non-negative integer"},
        {"", "t.csv holds no images"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        assert_int_equal(digits_parse_csv(bad[k].text, strlen(bad[k].text), "t.csv", counts, labels, 3, &n), LSC_ERR);
        if (!strstr(error_last(), bad[k].says)) fail_msg("case %zu: '%s' does not say '%s'", k, error_last(), bad[k].says);
    }
    /* a label of 10, on line 2 */
    char two[1024];
    snprintf(two, sizeof two, "%s", text);
    char *last = strrchr(two, ',');
    snprintf(last, sizeof two - (size_t)(last - two), ",10\n");
    assert_int_equal(digits_parse_csv(two, strlen(two), "t.csv", counts, labels, 3, &n), LSC_ERR);
    assert_non_null(strstr(error_last(), "t.csv line 2: the label is 10"));
}

/* The real file (Debian's python3-sklearn). */
static void test_real_file(void **state) {
    (void)state;
    if (access(DIGITS_SKLEARN_PATH, R_OK) != 0) {
        print_message("skipped: %s is absent (apt-get install python3-sklearn)\n", DIGITS_SKLEARN_PATH);
        skip();
    }
    char dir[128], path[256], src[4200];
    snprintf(dir, sizeof dir, "/tmp/lsc_digits_%d", (int)getpid());
    if (digits_fetch(NULL, dir, src, sizeof src) != LSC_OK) fail_msg("fetch: %s", error_last());
    assert_string_equal(src, DIGITS_SKLEARN_PATH);
    if (digits_fetch(NULL, dir, NULL, 0) != LSC_OK) fail_msg("fetch again: %s", error_last()); /* kept */
    snprintf(path, sizeof path, "%s/digits/digits.csv.gz", dir);
    char a[65], b[65];
    int64_t na, nb;
    assert_int_equal(sha256_file_hex(path, a, &na), LSC_OK);
    assert_int_equal(sha256_file_hex(DIGITS_SKLEARN_PATH, b, &nb), LSC_OK);
    assert_string_equal(a, b); /* copied unchanged */
    setenv("LORASC_DATA", dir, 1);
    ImageSet s;
    if (digits_load(&s) != LSC_OK) fail_msg("load: %s", error_last());
    assert_int_equal(s.n, DIGITS_ROWS);
    assert_int_equal(s.height, 28);
    assert_int_equal(s.width, 28);
    assert_int_equal(s.n_classes, 10);
    for (int i = 0; i < 20; i++) assert_int_equal(s.labels[i], i % 10); /* sklearn's target[:20] */
    static const int per_class[10] = {178, 182, 177, 183, 181, 182, 181, 179, 174, 180};
    int hist[10] = {0};
    for (int i = 0; i < s.n; i++) hist[s.labels[i]]++;
    for (int c = 0; c < 10; c++) if (hist[c] != per_class[c]) fail_msg("class %d: %d images, expected %d", c, hist[c], per_class[c]);
    double ink = 0;
    for (int i = 0; i < s.n; i++) {
        double cy, cx;
        centre_of_mass(s.pixels + (size_t)i * F * F, F, &cy, &cx);
        if (fabs(cy - 14) > 0.5 || fabs(cx - 14) > 0.5) fail_msg("image %d: centre of mass (%.4f, %.4f)", i, cy, cx);
        for (int j = 0; j < F * F; j++) ink += s.pixels[(size_t)i * F * F + j];
    }
    print_message("digits: mean intensity %.4f (MNIST t10k: 0.1325)\n", ink / 255.0 / s.n / (F * F));
    imagedata_free(&s);
    /* no ink lost at the border: every row's 20x20 box fits */
    gzFile g = gzopen(path, "rb");
    static char text[300000];
    const int len = gzread(g, text, sizeof text);
    gzclose(g);
    char hex[65];
    sha256_buffer_hex(text, (size_t)len, hex);
    assert_string_equal(hex, DIGITS_CSV_SHA256);
    uint8_t *counts = malloc((size_t)DIGITS_ROWS * PIX), out[F * F];
    int32_t labels[DIGITS_ROWS];
    int n;
    assert_int_equal(digits_parse_csv(text, (size_t)len, path, counts, labels, DIGITS_ROWS, &n), LSC_OK);
    for (int i = 0; i < n; i++) {
        long clipped;
        assert_int_equal(digits_to_mnist(counts + (size_t)i * PIX, out, &clipped), LSC_OK);
        if (clipped) fail_msg("row %d loses ink %ld at the border", i + 1, clipped);
    }
    /* one count changed: the loader and the fetch refuse the copy */
    char *comma = strchr(text, ',');
    comma[-1] = comma[-1] == '0' ? '1' : '0';
    g = gzopen(path, "wb");
    gzwrite(g, text, (unsigned)len);
    gzclose(g);
    assert_int_equal(digits_load(&s), LSC_ERR);
    if (!strstr(error_last(), "is not scikit-learn's digits file: its text has sha256"))
        fail_msg("%s", error_last());
    assert_int_equal(digits_fetch(dir, "/tmp/lsc_digits_unused", NULL, 0), LSC_ERR);
    /* the verified fetch repairs the data directory */
    assert_int_equal(digits_fetch(NULL, dir, NULL, 0), LSC_OK);
    assert_int_equal(digits_load(&s), LSC_OK);
    imagedata_free(&s);
    /* absent: one sentence naming the fetch command */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(digits_load(&s), LSC_ERR);
    assert_non_null(strstr(error_last(), "run `lorasc data fetch digits`"));
    free(counts);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_frame),    cmocka_unit_test(test_one_block),
        cmocka_unit_test(test_orientation),   cmocka_unit_test(test_centre_random),
        cmocka_unit_test(test_csv),           cmocka_unit_test(test_real_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
