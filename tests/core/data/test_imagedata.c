/* Image data: IDX reading (gzip and plain), the error for a missing dataset, normalisation,
 * seeded augmentation and shuffling. Uses Fashion-MNIST from Debian's dataset-fashion-mnist
 * or MNIST t10k from the data directory when present (skipped otherwise), and always a small
 * IDX pair written by the test itself. */
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
#include "core/data/imagedata.h"

enum { N = 6, H = 5, W = 4 };

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* A tiny IDX pair: pixel (i, y, x) = 10 i + y * W + x, label i % 3; gzip when gz. */
static void write_pair(const char *img, const char *lab, int gz) {
    unsigned char buf[16 + N * H * W];
    put_be32(buf, 0x803), put_be32(buf + 4, N), put_be32(buf + 8, H), put_be32(buf + 12, W);
    for (int i = 0; i < N * H * W; i++) buf[16 + i] = (unsigned char)(10 * (i / (H * W)) + i % (H * W));
    unsigned char lb[8 + N];
    put_be32(lb, 0x801), put_be32(lb + 4, N);
    for (int i = 0; i < N; i++) lb[8 + i] = (unsigned char)(i % 3);
    if (gz) {
        gzFile f = gzopen(img, "wb");
        gzwrite(f, buf, sizeof buf);
        gzclose(f);
        f = gzopen(lab, "wb");
        gzwrite(f, lb, sizeof lb);
        gzclose(f);
    } else {
        FILE *f = fopen(img, "wb");
        fwrite(buf, 1, sizeof buf, f);
        fclose(f);
        f = fopen(lab, "wb");
        fwrite(lb, 1, sizeof lb, f);
        fclose(f);
    }
}

static void test_idx_roundtrip(void **state) {
    (void)state;
    char img[64], lab[64];
    for (int gz = 0; gz < 2; gz++) {
        snprintf(img, sizeof img, "/tmp/lsc_idx_%d_img", (int)getpid());
        snprintf(lab, sizeof lab, "/tmp/lsc_idx_%d_lab", (int)getpid());
        write_pair(img, lab, gz);
        ImageSet s;
        assert_int_equal(imagedata_load_idx(&s, img, lab), LSC_OK);
        assert_int_equal(s.n, N);
        assert_int_equal(s.height, H);
        assert_int_equal(s.width, W);
        assert_int_equal(s.channels, 1);
        assert_int_equal(s.n_classes, 3);
        assert_int_equal(s.pixels[2 * H * W + 7], 27);
        assert_int_equal(s.labels[4], 1);
        /* batch without augmentation: (p / 255 - mean) / std */
        int idx[2] = {3, 1};
        Real out[2 * H * W];
        int32_t labels[2];
        const float mean = 0.5f, sd = 0.25f;
        imagedata_batch(&s, out, labels, idx, 2, &mean, &sd, NULL, 1, 0);
        assert_int_equal(labels[0], 0);
        assert_int_equal(labels[1], 1);
        assert_true(fabs(out[5] - ((30 + 5) / 255.0 - 0.5) / 0.25) < 1e-5);
        /* crop with padding: every output pixel is a shifted input pixel or padding */
        ImageAugment aug = {.crop_pad = 2, .flip = 1};
        Real a1[2 * H * W], a2[2 * H * W];
        imagedata_batch(&s, a1, NULL, idx, 2, NULL, NULL, &aug, 7, 3);
        imagedata_batch(&s, a2, NULL, idx, 2, NULL, NULL, &aug, 7, 3);
        assert_memory_equal(a1, a2, sizeof a1); /* a pure function of (seed, step) */
        int differs = 0;
        for (int step = 0; step < 8 && !differs; step++) {
            imagedata_batch(&s, a2, NULL, idx, 2, NULL, NULL, &aug, 7, 4 + (uint64_t)step);
            differs = memcmp(a1, a2, sizeof a1) != 0;
        }
        assert_true(differs);
        for (int i = 0; i < H * W; i++) {
            const double v = a1[i] * 255.0;
            assert_true(v == 0.0 || (v >= 30 - 1e-3 && v <= 30 + H * W));
        }
        imagedata_free(&s);
        remove(img);
        remove(lab);
    }
}

static void test_errors(void **state) {
    (void)state;
    ImageSet s;
    assert_int_equal(imagedata_load_idx(&s, "/nonexistent/x.gz", "/nonexistent/y.gz"), LSC_ERR);
    printf("[ error    ] %s\n", error_last());
    const char *old = getenv("LORASC_DATA");
    char saved[1024] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    setenv("LORASC_DATA", "/nonexistent-lorasc-data", 1);
    assert_int_equal(imagedata_load(&s, "mnist", "test"), LSC_ERR);
    printf("[ error    ] %s\n", error_last());
    assert_non_null(strstr(error_last(), "t10k-images-idx3-ubyte.gz"));
    assert_int_equal(imagedata_load(&s, "cifar", "test"), LSC_ERR);
    assert_int_equal(imagedata_load(&s, "mnist", "val"), LSC_ERR);
    /* a label file given as images: wrong magic */
    char img[64], lab[64];
    snprintf(img, sizeof img, "/tmp/lsc_idx_%d_img", (int)getpid());
    snprintf(lab, sizeof lab, "/tmp/lsc_idx_%d_lab", (int)getpid());
    write_pair(img, lab, 1);
    assert_int_equal(imagedata_load_idx(&s, lab, img), LSC_ERR);
    printf("[ error    ] %s\n", error_last());
    remove(img);
    remove(lab);
    if (old) setenv("LORASC_DATA", saved, 1);
    else unsetenv("LORASC_DATA");
}

static void test_shuffle(void **state) {
    (void)state;
    int p[100], q[100], seen[100] = {0};
    imagedata_shuffle(p, 100, 5, 0);
    imagedata_shuffle(q, 100, 5, 0);
    assert_memory_equal(p, q, sizeof p);
    for (int i = 0; i < 100; i++) seen[p[i]]++;
    for (int i = 0; i < 100; i++) assert_int_equal(seen[i], 1);
    imagedata_shuffle(q, 100, 5, 1);
    assert_true(memcmp(p, q, sizeof p) != 0);
}

/* "mnist-t10k": the t10k file cut into 8,000 "train" and 2,000 "test" images, disjoint and
 * together the whole file (each image once, compared pixel for pixel), the same every time;
 * "digits" has no train split. Skipped without $LORASC_DATA/mnist. */
static void test_mnist_t10k(void **state) {
    (void)state;
    ImageSet all, tr, te, again;
    if (imagedata_load(&all, "mnist", "test") != LSC_OK) {
        printf("[ skipped  ] mnist-t10k: %s\n", error_last());
        skip();
    }
    if (imagedata_load(&tr, "mnist-t10k", "train") != LSC_OK) fail_msg("%s", error_last());
    if (imagedata_load(&te, "mnist-t10k", "test") != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(tr.n, MNIST_T10K_TRAIN);
    assert_int_equal(te.n, all.n - MNIST_T10K_TRAIN);
    assert_string_equal(tr.name, "mnist-t10k");
    /* each part keeps the file's order: walk the file once, matching the next image of either */
    const size_t px = 28 * 28;
    int a = 0, b = 0;
    for (int i = 0; i < all.n; i++) {
        const uint8_t *p = all.pixels + i * px;
        if (a < tr.n && memcmp(p, tr.pixels + a * px, px) == 0 && all.labels[i] == tr.labels[a]) a++;
        else if (b < te.n && memcmp(p, te.pixels + b * px, px) == 0 && all.labels[i] == te.labels[b]) b++;
        else fail_msg("t10k image %d is in neither part (after %d train and %d test images)", i, a, b);
    }
    assert_int_equal(a, tr.n);
    assert_int_equal(b, te.n);
    assert_int_equal(imagedata_load(&again, "mnist-t10k", "test"), LSC_OK);
    assert_memory_equal(again.pixels, te.pixels, (size_t)te.n * px);
    imagedata_free(&again);
    assert_int_equal(imagedata_load(&again, "digits", "train"), LSC_ERR);
    assert_non_null(strstr(error_last(), "are a test set only"));
    imagedata_free(&all), imagedata_free(&tr), imagedata_free(&te);
}

/* The real files, when installed: Fashion-MNIST t10k (Debian) and MNIST t10k (data dir). */
static void test_real_datasets(void **state) {
    (void)state;
    const char *names[2] = {"fashion-mnist", "mnist"};
    int found = 0;
    for (int k = 0; k < 2; k++) {
        ImageSet s;
        if (imagedata_load(&s, names[k], "test") != LSC_OK) {
            printf("[ skip     ] %s\n", error_last());
            continue;
        }
        found++;
        assert_int_equal(s.n, 10000);
        assert_int_equal(s.height, 28);
        assert_int_equal(s.width, 28);
        assert_int_equal(s.n_classes, 10);
        float mean, sd;
        imagedata_stats(&s, &mean, &sd);
        printf("[ %-8s ] %d images %dx%d, %d classes, pixel mean %.4f std %.4f\n", names[k], s.n,
               s.height, s.width, s.n_classes, (double)mean, (double)sd);
        assert_true(mean > 0.1f && mean < 0.4f && sd > 0.2f && sd < 0.45f);
        imagedata_free(&s);
    }
    if (!found) skip();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_roundtrip),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_shuffle),
        cmocka_unit_test(test_real_datasets),
        cmocka_unit_test(test_mnist_t10k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
