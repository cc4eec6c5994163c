/* Image tasks on image folders (image_task_load_folder) on folders this test writes: the
 * train/ + val/ layout with a test subset of the classes matched by name, train/ + test/,
 * ImageNet's flat val/ with LOC_val_solution.csv (header, CRLF, JPEG), a checkpoint's
 * normalisation instead of the data's, tasks of more than 256 classes, one sentence for
 * each bad layout, and sets streamed from their files (beyond the memory budget) giving their
 * in-memory twins' bits, their next batches decoded in the background too. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "core/tasks/image_task.h"
#include "core/tasks/image_train.h"
#include "core/model/device.h"
#include "core/data/corrupt.h"
#include "tests/image_files.h"

/* lorasc's default preprocessing (torchvision's rule, torch's bilinear) at size x size */
#define PP(size) ((const ImagePreprocess[]){image_preprocess_default(size)})

static char root[256];

static int setup(void **state) {
    (void)state;
    return temp_root_make(root, sizeof root, "lorasc_folder_task");
}

static int teardown(void **state) {
    (void)state;
    return temp_root_remove(root);
}

/* The colour of class `name`'s images: its first letter, so a label can be read off a pixel. */
static uint8_t shade(const char *name) { return (uint8_t)(name[0] * 2); }

/* dir/<name>/ with n flat PNGs of the class's shade, w x h (not square: resized and cropped) */
static void write_class(const char *dir_arg, const char *name, int n, int w, int h) {
    char dir[512]; /* path_of's buffers rotate: keep our own copy */
    snprintf(dir, sizeof dir, "%s", dir_arg);
    mkdir_p(path_of("%s/%s", dir, name));
    uint8_t *p = flat(w, h, shade(name), 10, 200);
    for (int i = 0; i < n; i++) write_png(path_of("%s/%s/img%02d.png", dir, name, i), p, w, h);
    free(p);
}

/* root/<dataset>/train with classes cat, dog, emu (10 images each) */
static void write_train(const char *ds) {
    mkdir_p(path_of("%s/%s", root, ds));
    char train[512];
    snprintf(train, sizeof train, "%s/%s/train", root, ds);
    mkdir_p(train);
    write_class(train, "cat", 10, 6, 5);
    write_class(train, "dog", 10, 5, 7);
    write_class(train, "emu", 10, 4, 4);
}

static const char *const TRAIN_CLASSES[3] = {"cat", "dog", "emu"};

/* Every test image's label names the class whose shade it has (the red channel's pixel). */
static void check_labels(const ImageTask *t, const ImageSet *set) {
    const size_t per = (size_t)set->channels * set->height * set->width;
    for (int i = 0; i < set->n; i++) {
        const int32_t l = set->labels[i];
        assert_true(l >= 0 && l < 3);
        assert_int_equal(set->pixels[i * per], shade(TRAIN_CLASSES[l]));
        assert_int_equal(image_task_label(t, l), l);
    }
}

static ImageTask load_ok(const char *ds, int channels, int size, const ImageTaskOptions *o) {
    ImageTask t;
    if (image_task_load_folder(&t, path_of("%s/%s", root, ds), channels, PP(size), o) != LSC_OK)
        fail_msg("%s: %s", ds, error_last());
    return t;
}

/* train/ + val/ whose classes are a subset (cat, emu): labels in the train file's numbering. */
static void test_val_folders(void **state) {
    (void)state;
    write_train("pets");
    char val[512];
    snprintf(val, sizeof val, "%s/pets/val", root);
    mkdir_p(val);
    write_class(val, "cat", 3, 8, 8);
    write_class(val, "emu", 4, 9, 3);
    ImageTask t = load_ok("pets", 3, 4, NULL);
    assert_string_equal(t.name, "pets");
    assert_int_equal(t.n_classes, 3);
    assert_int_equal(t.class_names.n, 3);
    for (int c = 0; c < 3; c++) assert_string_equal(t.class_names.names[c], TRAIN_CLASSES[c]);
    assert_int_equal(t.train.channels, 3);
    assert_int_equal(t.train.height, 4);
    assert_int_equal(t.test.n, 7);
    assert_int_equal(t.n[IMAGE_TEST], 7);
    assert_int_equal(t.n[IMAGE_TRAIN] + t.n[IMAGE_VAL], 30);
    assert_int_equal(t.n[IMAGE_VAL], 3); /* round(0.1 * 30) */
    check_labels(&t, &t.train);
    check_labels(&t, &t.test);
    int emu = 0;
    for (int i = 0; i < t.test.n; i++) emu += t.test.labels[i] == 2;
    assert_int_equal(emu, 4);
    image_task_free(&t);
    /* grey decoding of the same folders (a grey model's view) */
    t = load_ok("pets", 1, 4, NULL);
    assert_int_equal(t.train.channels, 1);
    image_task_free(&t);
}

/* train/ + test/ (no val/) */
static void test_test_folder(void **state) {
    (void)state;
    write_train("zoo");
    char test[512];
    snprintf(test, sizeof test, "%s/zoo/test", root);
    mkdir_p(test);
    write_class(test, "dog", 2, 4, 4);
    ImageTask t = load_ok("zoo/", 3, 2, NULL); /* a trailing slash: the name is still zoo */
    assert_string_equal(t.name, "zoo");
    assert_int_equal(t.n[IMAGE_TEST], 2);
    assert_int_equal(t.test.labels[0], 1);
    check_labels(&t, &t.test);
    image_task_free(&t);
}

/* ImageNet's validation layout: flat JPEGs named by ImageId and LOC_val_solution.csv, whose
 * rows (out of order, CRLF, several boxes per row) give each image's WordNet id. */
static void test_ilsvrc_layout(void **state) {
    (void)state;
    write_train("inet");
    char val[512];
    snprintf(val, sizeof val, "%s/inet/val", root);
    mkdir_p(val);
    const char *ids[4] = {"ILSVRC2012_val_00000003", "ILSVRC2012_val_00000001",
                          "ILSVRC2012_val_00000002", "ILSVRC2012_val_00000004"};
    const char *cls[4] = {"emu", "cat", "emu", "dog"};
    for (int i = 0; i < 4; i++) {
        uint8_t *p = flat(16, 12, shade(cls[i]), 10, 200);
        write_jpeg(path_of("%s/%s.JPEG", val, ids[i]), p, 16, 12);
        free(p);
    }
    write_text(path_of("%s/inet/LOC_val_solution.csv", root),
               "ImageId,PredictionString\r\n"
               "ILSVRC2012_val_00000003,emu 1 2 3 4 emu 5 6 7 8\r\n"
               "ILSVRC2012_val_00000001,cat 0 0 9 9\r\n"
               "ILSVRC2012_val_00000002,emu 0 0 9 9\r\n"
               "ILSVRC2012_val_00000004,dog 0 0 9 9 \r\n");
    ImageTask t = load_ok("inet", 3, 4, NULL);
    assert_int_equal(t.test.n, 4);
    const int want[4] = {2, 0, 2, 1}; /* the CSV's row order */
    const size_t per = 3 * 4 * 4;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(t.test.labels[i], want[i]);
        /* JPEG: within its coding error of the shade */
        assert_true(abs((int)t.test.pixels[i * per] - shade(cls[i])) <= 3);
    }
    image_task_free(&t);
}

static void expect_error(const char *ds, const char *needle) {
    ImageTask t;
    if (image_task_load_folder(&t, path_of("%s/%s", root, ds), 3, PP(4), NULL) == LSC_OK)
        fail_msg("%s loaded; expected an error with '%s'", ds, needle);
    if (!strstr(error_last(), needle)) fail_msg("%s: error '%s' lacks '%s'", ds, error_last(), needle);
    assert_int_equal(t.n_classes, 0);
    assert_null(t.relabel);
}

static void test_errors(void **state) {
    (void)state;
    expect_error("absent", "Cannot open the folder");
    write_train("notest");
    expect_error("notest", "has no test images: it needs val/<class>/ or test/<class>/");
    write_train("stranger");
    mkdir_p(path_of("%s/stranger/val", root));
    write_class(path_of("%s/stranger/val", root), "yak", 1, 4, 4);
    expect_error("stranger", "has a class folder yak that");
    /* the ImageNet layout's errors: file and line */
    const char *cases[3][2] = {
        {"ImageId,PredictionString\nILSVRC2012_val_00000001,yak 1 2 3 4\n",
         "LOC_val_solution.csv:2: the class \"yak 1 2 3 4\" of ILSVRC2012_val_00000001 is not a folder"},
        {"ILSVRC2012_val_00000009,cat 1 2 3 4\n", "LOC_val_solution.csv:1: no image ILSVRC2012_val_00000009.JPEG"},
        {"ImageId,PredictionString\njust one field\n", "LOC_val_solution.csv:2: expected ImageId,PredictionString"},
    };
    for (int k = 0; k < 3; k++) {
        char ds[16];
        snprintf(ds, sizeof ds, "csv%d", k);
        write_train(ds);
        mkdir_p(path_of("%s/%s/val", root, ds));
        uint8_t *p = flat(4, 4, 1, 2, 3);
        write_png(path_of("%s/%s/val/ILSVRC2012_val_00000001.png", root, ds), p, 4, 4);
        free(p);
        write_text(path_of("%s/%s/LOC_val_solution.csv", root, ds), cases[k][0]);
        expect_error(ds, cases[k][1]);
    }
}

/* A checkpoint's normalisation (CLIP's) replaces the data's statistics in every batch. */
static void test_given_normalisation(void **state) {
    (void)state;
    write_train("norm");
    mkdir_p(path_of("%s/norm/val", root));
    write_class(path_of("%s/norm/val", root), "dog", 1, 4, 4);
    ImageTaskOptions o = image_task_default_options();
    const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    o.n_norm = 3;
    memcpy(o.mean, clip_mean, sizeof clip_mean);
    memcpy(o.std, clip_std, sizeof clip_std);
    ImageTask t = load_ok("norm", 3, 4, &o);
    Real x[3 * 4 * 4];
    int32_t label;
    const int pos = 0;
    assert_int_equal(image_task_batch(&t, IMAGE_TEST, &pos, 1, x, &label, NULL, 0, 0), LSC_OK);
    const uint8_t rgb[3] = {shade("dog"), 10, 200};
    for (int c = 0; c < 3; c++)
        assert_float_equal(x[c * 16 + 5], (rgb[c] / 255.0 - clip_mean[c]) / clip_std[c], 1e-5);
    image_task_free(&t);
    o.n_norm = 1; /* statistics for one channel, images of three */
    ImageTask bad;
    assert_int_equal(image_task_load_folder(&bad, path_of("%s/norm", root), 3, PP(4), &o), LSC_ERR);
    assert_non_null(strstr(error_last(), "1 normalisation statistics given for 3-channel images"));
}

/* 300 classes (beyond a byte of labels): every class its own label, a subset relabelled. */
static void test_many_classes(void **state) {
    (void)state;
    enum { K = 300, N = 2 * K };
    ImageSet sets[2];
    for (int s = 0; s < 2; s++) {
        ImageSet *p = &sets[s];
        memset(p, 0, sizeof *p);
        p->n = N, p->channels = 1, p->height = p->width = 2, p->n_classes = K;
        p->pixels = calloc((size_t)N * 4, 1);
        p->labels = malloc(sizeof(int32_t) * N);
        for (int i = 0; i < N; i++) p->labels[i] = (int32_t)((i * 7 + s) % K), p->pixels[4 * i] = (uint8_t)i;
    }
    ImageSet train = sets[0], test = sets[1];
    ImageTask t;
    if (image_task_build(&t, "many", &train, &test, NULL, 0, NULL) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(t.n_classes, K);
    for (int c = 0; c < K; c++) assert_int_equal(image_task_label(&t, c), c);
    assert_int_equal(image_task_label(&t, K), -1);
    assert_int_equal(t.n[IMAGE_TRAIN] + t.n[IMAGE_VAL], N);
    assert_int_equal(t.n[IMAGE_TEST], N);
    image_task_free(&t);
    /* the subset {299, 256, 3}: task labels 0, 1, 2; every other class out */
    for (int s = 0; s < 2; s++) {
        ImageSet *p = &sets[s];
        p->pixels = calloc((size_t)N * 4, 1);
        p->labels = malloc(sizeof(int32_t) * N);
        for (int i = 0; i < N; i++) p->labels[i] = (int32_t)((i * 7 + s) % K);
    }
    train = sets[0], test = sets[1];
    const int classes[3] = {299, 256, 3};
    if (image_task_build(&t, "many", &train, &test, classes, 3, NULL) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(t.n_classes, 3);
    assert_int_equal(image_task_label(&t, 299), 0);
    assert_int_equal(image_task_label(&t, 256), 1);
    assert_int_equal(image_task_label(&t, 3), 2);
    assert_int_equal(image_task_label(&t, 0), -1);
    assert_int_equal(t.n[IMAGE_TRAIN] + t.n[IMAGE_VAL], 6); /* two images per class */
    int32_t labels[6];
    int pos[6] = {0, 1, 2, 3, 4, 5};
    Real x[6 * 4];
    const int n_train = t.n[IMAGE_TRAIN];
    assert_int_equal(image_task_batch(&t, IMAGE_TRAIN, pos, n_train, x, labels, NULL, 0, 0), LSC_OK);
    for (int i = 0; i < n_train; i++) assert_true(labels[i] >= 0 && labels[i] < 3);
    image_task_free(&t);
}

/* Every image of every split of t, normalised, into out (the split's images in order). */
static void all_batches(const ImageTask *t, int split, Real *out) {
    const size_t img = (size_t)t->train.channels * t->train.height * t->train.width;
    for (int i = 0; i < t->n[split]; i++) {
        int32_t label;
        if (image_task_batch(t, split, &i, 1, out + (size_t)i * img, &label, NULL, 0, 0) != LSC_OK)
            fail_msg("batch: %s", error_last());
    }
}

/* A set larger than the memory budget is streamed (its files decoded at each use): the same
 * statistics, splits and batches, bit for bit, as in memory (folders and ImageNet's layout,
 * augmented batches too); a file that stops decoding is an error when it is used. */
static void test_streamed(void **state) {
    (void)state;
    write_train("stream");
    mkdir_p(path_of("%s/stream/val", root));
    write_class(path_of("%s/stream/val", root), "emu", 3, 7, 5);
    for (int layout = 0; layout < 2; layout++) {
        const char *ds = layout ? "inet" : "stream"; /* inet: test_ilsvrc_layout's folder */
        unsetenv("LORASC_IMAGE_MEMORY_MB");
        ImageTask mem = load_ok(ds, 3, 4, NULL);
        setenv("LORASC_IMAGE_MEMORY_MB", "0", 1);
        ImageTask str = load_ok(ds, 3, 4, NULL);
        unsetenv("LORASC_IMAGE_MEMORY_MB");
        assert_null(mem.train.files);
        assert_non_null(str.train.files);
        assert_null(str.train.pixels);
        assert_null(str.test.pixels);
        for (int c = 0; c < 3; c++) assert_true(str.mean[c] == mem.mean[c] && str.std[c] == mem.std[c]);
        for (int split = 0; split < IMAGE_NUM_SPLITS; split++) {
            assert_int_equal(str.n[split], mem.n[split]);
            assert_memory_equal(str.idx[split], mem.idx[split], sizeof(int) * (size_t)mem.n[split]);
            const size_t bytes = sizeof(Real) * 48 * (size_t)mem.n[split];
            Real *a = malloc(bytes), *b = malloc(bytes);
            all_batches(&mem, split, a);
            all_batches(&str, split, b);
            assert_memory_equal(a, b, bytes);
            free(a), free(b);
        }
        const ImageAugment aug = {.crop_pad = 1, .flip = 1};
        int pos[4] = {0, 3, 1, 2};
        Real a[4 * 48], b[4 * 48];
        int32_t la[4], lb[4];
        assert_int_equal(image_task_batch(&mem, IMAGE_TRAIN, pos, 4, a, la, &aug, 5, 9), LSC_OK);
        assert_int_equal(image_task_batch(&str, IMAGE_TRAIN, pos, 4, b, lb, &aug, 5, 9), LSC_OK);
        assert_memory_equal(a, b, sizeof a);
        assert_memory_equal(la, lb, sizeof la);
        image_task_free(&mem);
        image_task_free(&str);
    }
    /* a streamed image that no longer decodes: its sentence at the batch that uses it */
    setenv("LORASC_IMAGE_MEMORY_MB", "0", 1);
    ImageTask t = load_ok("stream", 3, 4, NULL);
    unsetenv("LORASC_IMAGE_MEMORY_MB");
    write_text(path_of("%s/stream/val/emu/img01.png", root), "not an image any more");
    Real x[3 * 48];
    int pos[3] = {0, 1, 2};
    assert_int_equal(image_task_batch(&t, IMAGE_TEST, pos, 3, x, NULL, NULL, 0, 0), LSC_ERR);
    if (!strstr(error_last(), "img01.png is neither PNG nor JPEG"))
        fail_msg("error '%s' does not name the file", error_last());
    image_task_free(&t);
}

/* The sampler of a streamed set decoding each next batch on a thread of its own while the
 * caller computes (prefetch) gives the in-memory sampler's batches bit for bit: augmented,
 * across epochs (batches straddling them), after a jump to another step (the prefetched batch
 * discarded) and back; so does the evaluation loop's. A file that stops decoding fails the
 * call that needs its batch, with the file's sentence, also when that batch was being made in
 * the background. */
static void test_prefetched(void **state) {
    (void)state;
    write_train("ahead");
    mkdir_p(path_of("%s/ahead/val", root));
    write_class(path_of("%s/ahead/val", root), "emu", 3, 7, 5);
    write_class(path_of("%s/ahead/val", root), "cat", 4, 5, 6);
    /* CLIP's statistics: each class's images are flat, so a channel's own std can be 0 */
    ImageTaskOptions o = image_task_default_options();
    o.n_norm = 3;
    for (int ch = 0; ch < 3; ch++) o.mean[ch] = 0.48f, o.std[ch] = 0.27f;
    ImageTask mem = load_ok("ahead", 3, 4, &o);
    setenv("LORASC_IMAGE_MEMORY_MB", "0", 1);
    ImageTask str = load_ok("ahead", 3, 4, &o);
    unsetenv("LORASC_IMAGE_MEMORY_MB");
    const ViTConfig c = {.image_size = 4, .channels = 3, .n_classes = 3};
    const ImageSamplerConfig plain = {.batch = 7, .seed = 4, .aug = {.crop_pad = 1, .flip = 1}};
    ImageSamplerConfig ahead = plain;
    ahead.prefetch = 1;
    ImageSampler a, b, in_memory;
    assert_int_equal(image_sampler_init(&a, &mem, &c, &plain), LSC_OK);
    assert_int_equal(image_sampler_init(&b, &str, &c, &ahead), LSC_OK);
    assert_int_equal(image_sampler_init(&in_memory, &mem, &c, &ahead), LSC_OK);
    assert_false(a.prefetching);
    assert_true(b.prefetching);
    assert_false(in_memory.prefetching); /* nothing to decode */
    const long steps[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 3, 4, 20, 21, 22, 0};
    for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
        VitBatch x, y;
        assert_int_equal(image_sampler_batch(&a, steps[k], &x), LSC_OK);
        if (image_sampler_batch(&b, steps[k], &y) != LSC_OK) fail_msg("step %ld: %s", steps[k], error_last());
        assert_true(b.worker.live && b.ahead_step == steps[k] + 1);
        assert_memory_equal(x.images, y.images, sizeof(Real) * 7 * 48);
        assert_memory_equal(x.labels, y.labels, sizeof(int32_t) * 7);
    }
    image_sampler_free(&b);
    image_sampler_free(&in_memory);
    /* a run of 3 steps: its last batch starts no fourth (decoded only to be thrown away);
     * asked for anyway (never, in a run), step 3 is made where it is wanted, as without one */
    ImageSamplerConfig bounded = ahead;
    bounded.steps = 3;
    assert_int_equal(image_sampler_init(&b, &str, &c, &bounded), LSC_OK);
    for (long step = 0; step < 4; step++) {
        VitBatch x, y;
        assert_int_equal(image_sampler_batch(&a, step, &x), LSC_OK);
        assert_int_equal(image_sampler_batch(&b, step, &y), LSC_OK);
        assert_int_equal(b.worker.live, step < 2);
        assert_memory_equal(x.images, y.images, sizeof(Real) * 7 * 48);
    }
    image_sampler_free(&b);
    /* cat/img09.png stops decoding: the first step whose batch holds it fails */
    int file = -1, position = -1;
    for (int i = 0; i < str.train.n; i++)
        if (strstr(str.train.files[i], "/cat/img09.png")) file = i;
    for (int p = 0; p < str.n[IMAGE_TRAIN]; p++)
        if (str.idx[IMAGE_TRAIN][p] == file) position = p;
    assert_true(file >= 0 && position >= 0); /* in the train split */
    long first = -1;
    for (long step = 0; first < 0; step++) {
        VitBatch x;
        assert_int_equal(image_sampler_batch(&a, step, &x), LSC_OK);
        for (int i = 0; i < 7; i++)
            if (a.now.pos[i] == position) first = step;
    }
    assert_true(first >= 1); /* so that its batch is one made in the background */
    /* evaluation, each next batch decoded in the background (LORASC_IMAGE_PREFETCH=1 on the
     * CPU; batch 2 leaves a short last one): the in-memory set's accuracy, loss and per-image
     * outcomes, clean and corrupted */
    Backend *be;
    assert_int_equal(device_open(&be, "cpu", 1), LSC_OK);
    const ViTConfig vc = {.image_size = 4, .patch_size = 2, .channels = 3, .dim = 8,
                          .n_layers = 1, .n_heads = 2, .mlp_dim = 16, .n_classes = 3,
                          .norm_eps = 1e-6f, .gelu = GELU_ERF, .patch_bias = 1};
    ViT m;
    assert_int_equal(vit_create(&m, be, &vc), LSC_OK);
    vit_init_random(&m, 8);
    assert_false(image_prefetch_wanted(be));
    const ImageCorruption noise = {.kind = CORRUPT_GAUSSIAN_NOISE, .severity = 2, .seed = 3};
    for (int split = 0; split < IMAGE_NUM_SPLITS; split++)
        for (int k = 0; k < 2; k++) {
            double acc[2], loss[2], per[2][32];
            assert_true(str.n[split] <= 32 && str.n[split] > 2);
            for (int streamed = 0; streamed < 2; streamed++) {
                if (streamed) setenv("LORASC_IMAGE_PREFETCH", "1", 1);
                const int rc = image_task_evaluate_images(streamed ? &str : &mem, &m, split, 2,
                                                          k ? &noise : NULL, &acc[streamed],
                                                          &loss[streamed], per[streamed]);
                unsetenv("LORASC_IMAGE_PREFETCH");
                if (rc != LSC_OK) fail_msg("evaluate: %s", error_last());
            }
            if (!(acc[0] == acc[1] && loss[0] == loss[1] && isfinite(loss[0])))
                fail_msg("%s%s: in memory %.17g, %.17g; streamed %.17g, %.17g",
                         image_task_split_name(split), k ? " (corrupted)" : "", acc[0], loss[0],
                         acc[1], loss[1]);
            assert_memory_equal(per[0], per[1], sizeof(double) * (size_t)str.n[split]);
        }
    /* a test image that stops decoding, in a batch made in the background */
    setenv("LORASC_IMAGE_PREFETCH", "1", 1);
    assert_true(image_prefetch_wanted(be));
    write_text(path_of("%s/ahead/val/emu/img02.png", root), "not an image any more");
    double acc, loss;
    assert_int_equal(image_task_evaluate(&str, &m, IMAGE_TEST, 1, NULL, &acc, &loss), LSC_ERR);
    unsetenv("LORASC_IMAGE_PREFETCH");
    if (!strstr(error_last(), "img02.png is neither PNG nor JPEG"))
        fail_msg("error '%s' does not name the file", error_last());
    vit_free(&m);
    device_close(be);

    write_text(path_of("%s/ahead/train/cat/img09.png", root), "not an image any more");
    assert_int_equal(image_sampler_init(&b, &str, &c, &ahead), LSC_OK);
    for (long step = 0; step <= first; step++) {
        VitBatch y;
        const int rc = image_sampler_batch(&b, step, &y);
        assert_int_equal(rc, step < first ? LSC_OK : LSC_ERR);
    }
    if (!strstr(error_last(), "img09.png is neither PNG nor JPEG"))
        fail_msg("error '%s' does not name the file", error_last());
    image_sampler_free(&b);
    image_sampler_free(&a);
    image_task_free(&mem);
    image_task_free(&str);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_val_folders),   cmocka_unit_test(test_test_folder),
        cmocka_unit_test(test_ilsvrc_layout), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_given_normalisation), cmocka_unit_test(test_many_classes),
        cmocka_unit_test(test_streamed),      cmocka_unit_test(test_prefetched),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
