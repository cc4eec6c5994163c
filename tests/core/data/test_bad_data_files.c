/* Malformed data files give one sentence, never a crash and never an allocation of what a
 * header claims: IDX files whose dimensions multiply past 2^64 (a heap overflow before),
 * past lorasc's 2^32-byte limit, or beyond what the file holds (plain and gzip), and empty or
 * whitespace-only tokenizer files (called "too short to be a llama2.c tokenizer" before). CI
 * runs this under AddressSanitizer (tests/run.sh). */
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
#include "core/data/imagedata.h"
#include "core/data/tokenizer.h"

static char dir[] = "/tmp/lorasc_baddata_XXXXXX";

static void path_in_dir(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static void expect_error(int rc, const char *needle) {
    assert_int_equal(rc, LSC_ERR);
    if (!strstr(error_last(), needle)) fail_msg("error \"%s\" does not mention \"%s\"", error_last(), needle);
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* An IDX image file with dims n x h x w and `body` bytes of pixels (gzip when gz), and a
 * valid label file of n labels (n small) or of 2 labels. */
static void write_idx(const char *img, uint32_t n, uint32_t h, uint32_t w, size_t body, int gz) {
    unsigned char *buf = calloc(16 + body, 1);
    put_be32(buf, 0x803), put_be32(buf + 4, n), put_be32(buf + 8, h), put_be32(buf + 12, w);
    if (gz) {
        gzFile f = gzopen(img, "wb");
        gzwrite(f, buf, (unsigned)(16 + body));
        gzclose(f);
    } else {
        FILE *f = fopen(img, "wb");
        fwrite(buf, 1, 16 + body, f);
        fclose(f);
    }
    free(buf);
}

/* A gzip IDX label file of n zero labels. */
static void write_labels(const char *lab, uint32_t n) {
    unsigned char hdr[8], zeros[4096] = {0};
    put_be32(hdr, 0x801), put_be32(hdr + 4, n);
    gzFile f = gzopen(lab, "wb");
    gzwrite(f, hdr, sizeof hdr);
    for (uint32_t done = 0; done < n;) {
        const uint32_t k = n - done < sizeof zeros ? n - done : (uint32_t)sizeof zeros;
        gzwrite(f, zeros, k);
        done += k;
    }
    gzclose(f);
}

/* Loads the pair; on (wrong) success computes the statistics as a run does, which walks
 * n x h x w pixels: the heap overflow of the wrapped size, which AddressSanitizer reports. */
static int load_pair(ImageSet *s, const char *img, const char *lab) {
    const int rc = imagedata_load_idx(s, img, lab);
    if (rc == LSC_OK) {
        float mean[4], std[4];
        imagedata_stats(s, mean, std);
        imagedata_free(s);
    }
    return rc;
}

static void test_idx(void **state) {
    (void)state;
    char img[256], lab[256];
    path_in_dir(img, sizeof img, "img");
    path_in_dir(lab, sizeof lab, "lab");
    ImageSet s;
    for (int gz = 0; gz < 2; gz++) {
        /* 2^24 x 2^24 x 2^24 = 2^72 bytes: the product wrapped around to 0, the file "loaded"
         * with 2^24 images in an empty buffer, and the statistics read far past it */
        write_labels(lab, 1u << 24);
        write_idx(img, 1u << 24, 1u << 24, 1u << 24, 64, gz);
        expect_error(load_pair(&s, img, lab), "make more than 4294967296 bytes of pixels");
        assert_non_null(strstr(error_last(), "16777216 x 16777216"));
        write_labels(lab, 2);
        /* just past the limit: 3 x 2^16 x 2^15 = 1.5 x 2^32 bytes */
        write_idx(img, 3, 1u << 16, 1u << 15, 64, gz);
        expect_error(load_pair(&s, img, lab), "lorasc's limit for an IDX file");
        /* exactly the limit (2^32 bytes) claimed over 64 bytes: truncated, and the buffer
         * grows with what is read (AddressSanitizer fails a 4 GiB allocation) */
        write_idx(img, 1, 1u << 16, 1u << 16, 64, gz);
        expect_error(load_pair(&s, img, lab), "is truncated: 64 of 4294967296 data bytes");
        /* a small file one byte short */
        write_idx(img, 2, 3, 3, 17, gz);
        expect_error(load_pair(&s, img, lab), "is truncated: 17 of 18 data bytes");
    }
    /* and a good one still loads */
    write_idx(img, 2, 3, 3, 18, 1);
    if (imagedata_load_idx(&s, img, lab) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(s.n, 2);
    assert_int_equal(s.height, 3);
    imagedata_free(&s);
}

static void test_empty_tokenizer(void **state) {
    (void)state;
    char path[256];
    Tokenizer t;
    const char *names[] = {"tokenizer.json", "tok.bin"};
    const char *contents[] = {"", "  \n\t\n"};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            path_in_dir(path, sizeof path, names[i]);
            FILE *f = fopen(path, "wb");
            fputs(contents[j], f);
            fclose(f);
            expect_error(tokenizer_load(&t, path), "is empty");
            assert_null(strstr(error_last(), "too short to be a llama2.c"));
        }
    /* a .json file that is not JSON: the JSON reader says so, not the llama2.c one */
    path_in_dir(path, sizeof path, "tokenizer.json");
    FILE *f = fopen(path, "wb");
    fputs("not json at all", f);
    fclose(f);
    assert_int_equal(tokenizer_load(&t, path), LSC_ERR);
    assert_null(strstr(error_last(), "too short to be a llama2.c"));
    assert_non_null(strstr(error_last(), path));
}

static int make_dir(void **state) {
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_idx), cmocka_unit_test(test_empty_tokenizer)};
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
