/* Test fixtures for image folders: PNG (libpng) and JPEG (libjpeg) files written from RGB
 * pixels, folders, text files and paths. Header-only, shared by test_imagefolder.c and
 * test_image_folder_task.c; needs cmocka.h included first (fail_msg, assert_non_null). */
#ifndef LORASC_TESTS_IMAGE_FILES_H
#define LORASC_TESTS_IMAGE_FILES_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

static inline void mkdir_p(const char *path) {
    if (mkdir(path, 0755) != 0 && access(path, F_OK) != 0) fail_msg("cannot create %s", path);
}

/* rgb [h, w, 3] to path as PNG */
static inline void write_png(const char *path, const uint8_t *rgb, int w, int h) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w, img.height = (png_uint_32)h, img.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&img, path, 0, rgb, 0, NULL)) fail_msg("png: %s", img.message);
}

static inline void write_jpeg(const char *path, const uint8_t *rgb, int w, int h) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h;
    c.input_components = 3, c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 95, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)c.next_scanline * w * 3);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

static inline void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* an h x w image of one colour */
static inline uint8_t *flat(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) p[3 * i] = r, p[3 * i + 1] = g, p[3 * i + 2] = b;
    return p;
}

static inline char *path_of(const char *fmt, ...) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ % 4];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, 512, fmt, ap);
    va_end(ap);
    return p;
}

/* root = /tmp/<prefix>_<pid>, created: a test group's setup (0 on success) */
static inline int temp_root_make(char *root, size_t cap, const char *prefix) {
    snprintf(root, cap, "/tmp/%s_%d", prefix, (int)getpid());
    mkdir_p(root);
    return 0;
}

/* rm -rf root: a test group's teardown (0 on success) */
static inline int temp_root_remove(const char *root) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
