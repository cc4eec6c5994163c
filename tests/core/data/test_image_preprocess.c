/* Image preprocessing (core/data/image_preprocess.c) against the real libraries: the bytes
 * transformers 4.44's CLIPImageProcessor (bicubic shorter side, centre crop with floor
 * offsets) and ViTImageProcessor (exact bilinear resize) give, and Pillow 10.4's
 * Image.resize alone, on 13 seeded pictures (downscales by several ratios, upscales, odd crop
 * margins, one whose floor and round differ): every byte equal (tests/golden/image_processor.bin from
 * tests/reference/make_processor_golden.py). Also: the default (torchvision's rule, torch's
 * bilinear) crops with rounded offsets, and image_preprocess_check's sentences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "core/data/image_preprocess.h"
#include "core/data/imagefolder.h"
#include "tests/golden_io.h"

/* tests/golden/image_processor.bin (make_processor_golden.py) */
static void open_golden(Golden *g) {
    char path[600];
    snprintf(path, sizeof path, "%s/image_processor.bin", LORASC_GOLDEN_DIR);
    if (golden_load(g, path) != 0) fail_msg("%s", g->error);
}

static void test_against_pillow_and_transformers(void **state) {
    (void)state;
    Golden g;
    open_golden(&g);
    int cases = 0, worst = 0;
    for (int k = 0;; k++) {
        char name[64];
        snprintf(name, sizeof name, "case%d.input", k);
        const GoldenTensor *in = golden_find(&g, name);
        if (!in) break;
        const int h = (int)in->dims[0], w = (int)in->dims[1];
        snprintf(name, sizeof name, "case%d.spec", k);
        const int32_t *spec = golden_i32(&g, name, GOLDEN_SHAPE(6));
        assert_non_null(spec);
        const ImagePreprocess p = {.resample = (ImageResample)spec[0], .shortest_edge = spec[1],
                                   .height = spec[2], .width = spec[3], .crop = spec[4],
                                   .crop_floor = spec[5]};
        assert_int_equal(image_preprocess_check(&p), LSC_OK);
        const int S = p.crop;
        snprintf(name, sizeof name, "case%d.output", k);
        const int32_t *want = golden_i32(&g, name, GOLDEN_SHAPE(3, S, S));
        if (!want) fail_msg("%s", g.error);
        /* the golden input is [h, w, 3]; lorasc's images are channels first */
        uint8_t *src = malloc((size_t)3 * h * w), *out = malloc((size_t)3 * S * S);
        const int32_t *px = in->data;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < h * w; i++) src[(size_t)c * h * w + i] = (uint8_t)px[(size_t)i * 3 + c];
        assert_int_equal(image_preprocess_apply(&p, src, 3, h, w, out), LSC_OK);
        int diff = 0;
        for (int i = 0; i < 3 * S * S; i++) {
            const int d = abs((int)out[i] - want[i]);
            if (d > diff) diff = d;
        }
        printf("  case %d: %dx%d -> %s %d, crop %d: max |byte difference| %d\n", k, w, h,
               p.resample == RESAMPLE_PIL_BICUBIC ? "bicubic" : "bilinear",
               p.shortest_edge ? p.shortest_edge : p.height, S, diff);
        if (diff > worst) worst = diff;
        free(src), free(out);
        cases++;
    }
    golden_free(&g);
    assert_int_equal(cases, 13);
    assert_int_equal(worst, 0);
}

/* JPEG files Pillow wrote: libjpeg's decoding here equals Pillow's, byte for byte, and the
 * file through CLIP's processor equals transformers' bytes. */
static void test_jpeg_files(void **state) {
    (void)state;
    Golden g;
    open_golden(&g);
    for (int k = 0; k < 2; k++) {
        char name[64], file[600];
        snprintf(file, sizeof file, "%s/jpeg%d.jpg", LORASC_GOLDEN_DIR, k);
        uint8_t *px;
        int h, w;
        if (imagefolder_decode(file, 3, &px, &h, &w) != LSC_OK) fail_msg("%s", error_last());
        snprintf(name, sizeof name, "jpeg%d.decoded", k);
        const int32_t *want = golden_i32(&g, name, GOLDEN_SHAPE(h, w, 3));
        if (!want) fail_msg("%s", g.error);
        int diff = 0;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < h * w; i++) {
                const int d = abs((int)px[(size_t)c * h * w + i] - want[(size_t)i * 3 + c]);
                if (d > diff) diff = d;
            }
        uint8_t out[3 * 16 * 16];
        const ImagePreprocess clip = {.resample = RESAMPLE_PIL_BICUBIC, .shortest_edge = 16, .crop = 16,
                                      .crop_floor = 1};
        assert_int_equal(imagefolder_read(file, 3, &clip, out), LSC_OK);
        snprintf(name, sizeof name, "jpeg%d.clip", k);
        const int32_t *want_clip = golden_i32(&g, name, GOLDEN_SHAPE(3, 16, 16));
        if (!want_clip) fail_msg("%s", g.error);
        int diff_clip = 0;
        for (int i = 0; i < 3 * 16 * 16; i++) {
            const int d = abs((int)out[i] - want_clip[i]);
            if (d > diff_clip) diff_clip = d;
        }
        printf("  jpeg%d (%dx%d): decoded max |difference| %d, through CLIP's processor %d\n", k, w, h, diff, diff_clip);
        assert_int_equal(diff, 0);
        assert_int_equal(diff_clip, 0);
        free(px);
    }
    golden_free(&g);
}

/* torchvision's CenterCrop rounds the offset (Python's round, half to even); transformers'
 * floors it: a 4-wide crop of a 7-wide row starts at 2 (round(1.5)) or 1. */
static void test_crop_offsets(void **state) {
    (void)state;
    uint8_t row[7 * 4], out[4 * 4];
    for (int i = 0; i < 7 * 4; i++) row[i] = (uint8_t)(i % 7); /* 4 rows 0..6, w 7, h 4 */
    ImagePreprocess p = image_preprocess_default(4);
    assert_int_equal(image_preprocess_apply(&p, row, 1, 4, 7, out), LSC_OK);
    assert_int_equal(out[0], 2);
    p.crop_floor = 1;
    assert_int_equal(image_preprocess_apply(&p, row, 1, 4, 7, out), LSC_OK);
    assert_int_equal(out[0], 1);
}

static void test_check(void **state) {
    (void)state;
    ImagePreprocess p = image_preprocess_default(0);
    assert_int_equal(image_preprocess_check(&p), LSC_ERR);
    assert_non_null(strstr(error_last(), "outside 1..4096"));
    p = image_preprocess_default(8);
    p.shortest_edge = 6;
    assert_int_equal(image_preprocess_check(&p), LSC_ERR);
    assert_non_null(strstr(error_last(), "does not cover the 8 x 8 centre crop"));
    p = (ImagePreprocess){.resample = RESAMPLE_PIL_BILINEAR, .height = 8, .width = 5, .crop = 6};
    assert_int_equal(image_preprocess_check(&p), LSC_ERR);
    p.resample = (ImageResample)7, p.width = 9;
    assert_int_equal(image_preprocess_check(&p), LSC_ERR);
    assert_non_null(strstr(error_last(), "Unknown resampling filter 7"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_pillow_and_transformers),
        cmocka_unit_test(test_jpeg_files),
        cmocka_unit_test(test_crop_offsets),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
