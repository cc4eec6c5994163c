/* Image folders (core/data/imagefolder.c) on folders this test writes with libpng and libjpeg:
 * classes in byte order of their names and images in byte order within them; PNG pixels
 * exactly, RGB and grey (PIL's luma, computed here from its definition in double); JPEG
 * within its lossy coding of a flat colour; the shorter side to the size and the centre crop
 * (torchvision's offsets); 300 classes (beyond a byte); non-image files skipped; and one
 * sentence for each bad folder or file. */
#include <math.h>
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
#include "core/data/imagefolder.h"
#include "tests/image_files.h"

/* lorasc's default preprocessing (torchvision's rule, torch's bilinear) at size x size */
#define PP(size) ((const ImagePreprocess[]){image_preprocess_default(size)})

static char root[256];

static int setup(void **state) {
    (void)state;
    return temp_root_make(root, sizeof root, "lorasc_imagefolder");
}

static int teardown(void **state) {
    (void)state;
    return temp_root_remove(root);
}

/* Two classes, "Zebra" before "apple" (byte order), two PNGs in one (file order), a JPEG and
 * a README in the other; the images at their own size (4 x 4): pixels exact. */
static void test_order_and_pixels(void **state) {
    (void)state;
    char d[512];
    snprintf(d, sizeof d, "%s", path_of("%s/basic", root));
    mkdir_p(d);
    mkdir_p(path_of("%s/apple", d));
    mkdir_p(path_of("%s/Zebra", d));
    uint8_t px[4 * 4 * 3];
    for (int i = 0; i < 48; i++) px[i] = (uint8_t)(i * 5 + 1);
    write_png(path_of("%s/Zebra/b.png", d), px, 4, 4);
    uint8_t *red = flat(4, 4, 250, 10, 20);
    write_png(path_of("%s/Zebra/a.PNG", d), red, 4, 4);
    uint8_t *green = flat(4, 4, 10, 200, 30);
    write_jpeg(path_of("%s/apple/x.jpg", d), green, 4, 4);
    write_text(path_of("%s/apple/README.txt", d), "not an image");
    ImageSet s;
    ImageFolderClasses cl;
    if (imagefolder_load(&s, &cl, d, 3, PP(4)) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(cl.n, 2);
    assert_string_equal(cl.names[0], "Zebra");
    assert_string_equal(cl.names[1], "apple");
    assert_int_equal(s.n, 3);
    assert_int_equal(s.n_classes, 2);
    assert_int_equal(s.channels, 3);
    assert_int_equal(s.height, 4);
    assert_string_equal(s.name, "basic");
    assert_int_equal(s.labels[0], 0), assert_int_equal(s.labels[1], 0), assert_int_equal(s.labels[2], 1);
    /* image 0 is a.PNG (red), image 1 is b.png ([C, H, W] from [H, W, C]) */
    for (int i = 0; i < 16; i++) {
        assert_int_equal(s.pixels[i], 250), assert_int_equal(s.pixels[16 + i], 10);
        assert_int_equal(s.pixels[32 + i], 20);
        for (int c = 0; c < 3; c++) assert_int_equal(s.pixels[48 + c * 16 + i], px[3 * i + c]);
    }
    /* the JPEG: a flat colour comes back within its coding error */
    for (int i = 0; i < 16; i++) {
        const uint8_t *p = s.pixels + 2 * 48;
        if (abs(p[i] - 10) > 4 || abs(p[16 + i] - 200) > 4 || abs(p[32 + i] - 30) > 4)
            fail_msg("jpeg pixel %d: %d %d %d, written 10 200 30", i, p[i], p[16 + i], p[32 + i]);
    }
    imagedata_free(&s);
    imagefolder_classes_free(&cl);
    free(red), free(green);
}

/* Grey: PIL's convert("L"), L = R 299/1000 + G 587/1000 + B 114/1000, rounded (within 1 of
 * the double value: PIL rounds its 16-bit fixed point). */
static void test_grey(void **state) {
    (void)state;
    char d[512];
    snprintf(d, sizeof d, "%s", path_of("%s/grey", root));
    mkdir_p(d);
    mkdir_p(path_of("%s/c", d));
    uint8_t px[3 * 3 * 3];
    for (int i = 0; i < 27; i++) px[i] = (uint8_t)((i * 37 + 11) % 256);
    write_png(path_of("%s/c/a.png", d), px, 3, 3);
    ImageSet s;
    if (imagefolder_load(&s, NULL, d, 1, PP(3)) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(s.channels, 1);
    for (int i = 0; i < 9; i++) {
        const double want = 0.299 * px[3 * i] + 0.587 * px[3 * i + 1] + 0.114 * px[3 * i + 2];
        if (fabs(s.pixels[i] - want) > 1.0) fail_msg("pixel %d: %d, luma %.3f", i, s.pixels[i], want);
    }
    imagedata_free(&s);
}

/* Geometry: a 20 x 10 image (red, green, blue bands of 5, 10, 5 columns) at size 10 keeps its
 * height and crops columns 5..14 (torchvision: left = round((20 - 10) / 2)): all green; at
 * size 4 it is resized to 4 x 8 then cropped at columns 2..5, which the bilinear resize fills
 * from the green band only. A 10 x 30 image (tall) crops rows 10..19. */
static void test_geometry(void **state) {
    (void)state;
    char d[512];
    snprintf(d, sizeof d, "%s", path_of("%s/geo", root));
    mkdir_p(d);
    mkdir_p(path_of("%s/c", d));
    uint8_t wide[10 * 20 * 3], tall[30 * 10 * 3];
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 20; x++) {
            uint8_t *p = wide + ((size_t)y * 20 + x) * 3;
            p[0] = x < 5 ? 255 : 0, p[1] = x >= 5 && x < 15 ? 255 : 0, p[2] = x >= 15 ? 255 : 0;
        }
    for (int y = 0; y < 30; y++)
        for (int x = 0; x < 10; x++) {
            uint8_t *p = tall + ((size_t)y * 10 + x) * 3;
            p[0] = (uint8_t)(y < 10 ? 255 : 0), p[1] = (uint8_t)(y >= 10 && y < 20 ? 255 : 0);
            p[2] = (uint8_t)(y >= 20 ? 255 : 0);
        }
    write_png(path_of("%s/c/1.png", d), wide, 20, 10);
    write_png(path_of("%s/c/2.png", d), tall, 10, 30);
    const int sizes[2] = {10, 4};
    for (int k = 0; k < 2; k++) {
        const int S = sizes[k];
        ImageSet s;
        if (imagefolder_load(&s, NULL, d, 3, PP(S)) != LSC_OK) fail_msg("%s", error_last());
        assert_int_equal(s.n, 2);
        for (int img = 0; img < 2; img++)
            for (int i = 0; i < S * S; i++) {
                const uint8_t *p = s.pixels + (size_t)img * 3 * S * S;
                if (p[i] != 0 || p[S * S + i] != 255 || p[2 * S * S + i] != 0)
                    fail_msg("size %d image %d pixel %d: %d %d %d, expected pure green", S, img,
                             i, p[i], p[S * S + i], p[2 * S * S + i]);
            }
        imagedata_free(&s);
    }
}

/* 300 classes, one 2 x 2 image each: labels beyond a byte, in name order */
static void test_many_classes(void **state) {
    (void)state;
    char d[512];
    snprintf(d, sizeof d, "%s", path_of("%s/many", root));
    mkdir_p(d);
    for (int c = 0; c < 300; c++) {
        mkdir_p(path_of("%s/n%04d", d, 299 - c)); /* created in reverse: order is by name */
        uint8_t *p = flat(2, 2, (uint8_t)((299 - c) % 256), (uint8_t)((299 - c) / 256), 7);
        write_png(path_of("%s/n%04d/img.png", d, 299 - c), p, 2, 2);
        free(p);
    }
    ImageSet s;
    ImageFolderClasses cl;
    if (imagefolder_load(&s, &cl, d, 3, PP(2)) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(s.n, 300);
    assert_int_equal(s.n_classes, 300);
    for (int i = 0; i < 300; i++) {
        assert_int_equal(s.labels[i], i);
        const uint8_t *p = s.pixels + (size_t)i * 12;
        assert_int_equal(p[0] + 256 * p[4], i); /* the colour written for class i */
    }
    assert_string_equal(cl.names[299], "n0299");
    imagedata_free(&s);
    imagefolder_classes_free(&cl);
}

static void expect_error(const char *dir, int channels, int size, const char *needle) {
    ImageSet s;
    if (imagefolder_load(&s, NULL, dir, channels, PP(size)) == LSC_OK)
        fail_msg("%s loaded; expected an error with '%s'", dir, needle);
    if (!strstr(error_last(), needle)) fail_msg("error '%s' lacks '%s'", error_last(), needle);
    assert_null(s.pixels);
}

static void test_errors(void **state) {
    (void)state;
    expect_error(path_of("%s/nowhere", root), 3, 8, "Cannot open the folder");
    char flatdir[512];
    snprintf(flatdir, sizeof flatdir, "%s", path_of("%s/flat", root));
    mkdir_p(flatdir);
    uint8_t *p = flat(2, 2, 1, 2, 3);
    write_png(path_of("%s/a.png", flatdir), p, 2, 2);
    expect_error(flatdir, 3, 8, "has no class folders");
    char empty[512];
    snprintf(empty, sizeof empty, "%s", path_of("%s/empty", root));
    mkdir_p(empty);
    mkdir_p(path_of("%s/c", empty));
    write_text(path_of("%s/c/notes.txt", empty), "x");
    expect_error(empty, 3, 8, "holds no PNG or JPEG images");
    char bad[512];
    snprintf(bad, sizeof bad, "%s", path_of("%s/bad", root));
    mkdir_p(bad);
    mkdir_p(path_of("%s/c", bad));
    write_png(path_of("%s/c/a.png", bad), p, 2, 2);
    write_text(path_of("%s/c/b.png", bad), "this is text named .png");
    expect_error(bad, 3, 8, "b.png is neither PNG nor JPEG");
    /* a PNG cut short after its header */
    char cut[512];
    snprintf(cut, sizeof cut, "%s", path_of("%s/cut", root));
    mkdir_p(cut);
    mkdir_p(path_of("%s/c", cut));
    write_png(path_of("%s/c/a.png", cut), p, 2, 2);
    FILE *f = fopen(path_of("%s/c/a.png", cut), "r+b");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 40), 0);
    fclose(f);
    expect_error(cut, 3, 8, "does not decode as PNG");
    /* a JPEG whose marker is right and whose data is not (libjpeg's error, through longjmp) */
    char junk[512];
    snprintf(junk, sizeof junk, "%s", path_of("%s/junk", root));
    mkdir_p(junk);
    mkdir_p(path_of("%s/c", junk));
    write_text(path_of("%s/c/a.jpg", junk), "\xff\xd8\xff\xe0 and then nothing a JPEG has");
    expect_error(junk, 3, 8, "does not decode as JPEG");
    expect_error(bad, 2, 8, "1 or 3 channels");
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_pixels), cmocka_unit_test(test_grey),
        cmocka_unit_test(test_geometry),         cmocka_unit_test(test_many_classes),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
