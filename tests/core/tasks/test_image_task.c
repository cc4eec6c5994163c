/* Image tasks and ViT training on them (core/tasks/image_task.h, image_train.h), model cloning
 * (vit_clone, llama_clone) and devices by name (core/model/device.h), on small image sets
 * made in memory: split sizes and disjointness, relabelling, caps, errors; evaluation against
 * a hand loop (clean and corrupted, and on a shift set), ended by a stop request; the sampler's per-epoch
 * permutation; a pretraining run and a cascade fine-tuning run. */
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
#include "core/base/philox.h"
#include "core/base/stop.h"
#include "core/data/corrupt.h"
#include "core/data/image_resize.h"
#include "core/model/device.h"
#include "core/tasks/image_train.h"

enum { NC = 6, HW = 8, N_TRAIN = 60, N_TEST = 30 };

/* n grey HW x HW images; label (7i + 3) % NC; pixels 30 * label + noise in [0, 40), so the
 * label can be learned from the mean brightness. */
static void make_set(ImageSet *s, int n, uint64_t seed) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "synthetic");
    s->n = n, s->channels = 1, s->height = HW, s->width = HW, s->n_classes = NC;
    s->pixels = malloc((size_t)n * HW * HW);
    s->labels = malloc(sizeof(int32_t) * (size_t)n);
    assert_non_null(s->pixels);
    assert_non_null(s->labels);
    for (int i = 0; i < n; i++) {
        s->labels[i] = (7 * i + 3) % NC;
        for (int j = 0; j < HW * HW; j++)
            s->pixels[i * HW * HW + j] =
                (uint8_t)(30 * s->labels[i] + philox_u32(seed, 0x51, (uint64_t)(i * HW * HW + j)) % 40);
    }
}

static int build(ImageTask *t, const int *classes, int n_classes, const ImageTaskOptions *o) {
    ImageSet train, test;
    make_set(&train, N_TRAIN, 1);
    make_set(&test, N_TEST, 2);
    return image_task_build(t, "synthetic", &train, &test, classes, n_classes, o);
}

static void build_ok(ImageTask *t, const int *classes, int n_classes, const ImageTaskOptions *o) {
    if (build(t, classes, n_classes, o) != LSC_OK) fail_msg("image_task_build: %s", error_last());
}

static const int CLASSES[3] = {4, 1, 3};

/* Train and val: disjoint, together every train-file image of the task's classes once; test:
 * every test-file image of those classes once; sizes from round(val * total). */
static void test_split(void **state) {
    (void)state;
    ImageTaskOptions o = image_task_default_options();
    o.val = 0.25, o.seed = 7;
    ImageTask t;
    build_ok(&t, CLASSES, 3, &o);
    int in_task = 0, in_test = 0;
    for (int i = 0; i < N_TRAIN; i++) in_task += t.relabel[t.train.labels[i]] >= 0;
    for (int i = 0; i < N_TEST; i++) in_test += t.relabel[t.test.labels[i]] >= 0;
    assert_int_equal(in_task, 30);
    const int n_val = (int)(0.25 * in_task + 0.5);
    assert_int_equal(t.n[IMAGE_VAL], n_val);
    assert_int_equal(t.n[IMAGE_TRAIN], in_task - n_val);
    assert_int_equal(t.n[IMAGE_TEST], in_test);
    int seen[N_TRAIN] = {0}, seen_test[N_TEST] = {0};
    for (int s = IMAGE_TRAIN; s <= IMAGE_VAL; s++)
        for (int i = 0; i < t.n[s]; i++) {
            const int j = t.idx[s][i];
            if (seen[j]) fail_msg("train image %d is in train and val (or twice)", j);
            seen[j] = 1;
            assert_true(t.relabel[t.train.labels[j]] >= 0);
        }
    for (int i = 0; i < t.n[IMAGE_TEST]; i++) {
        const int j = t.idx[IMAGE_TEST][i];
        assert_int_equal(seen_test[j], 0);
        seen_test[j] = 1;
        assert_true(t.relabel[t.test.labels[j]] >= 0);
    }
    /* another seed draws another validation set */
    ImageTask u;
    o.seed = 8;
    build_ok(&u, CLASSES, 3, &o);
    assert_int_equal(u.n[IMAGE_VAL], n_val);
    assert_memory_not_equal(t.idx[IMAGE_VAL], u.idx[IMAGE_VAL], sizeof(int) * (size_t)n_val);
    image_task_free(&u);
    image_task_free(&t);
    assert_int_equal(t.n_classes, 0);
    assert_null(t.idx[IMAGE_TRAIN]);
}

/* Task labels are positions in the class list; no list keeps every label. */
static void test_relabel(void **state) {
    (void)state;
    ImageTask t;
    build_ok(&t, CLASSES, 3, NULL);
    assert_int_equal(t.n_classes, 3);
    for (int s = 0; s < IMAGE_NUM_SPLITS; s++) {
        const int n = t.n[s];
        int *pos = malloc(sizeof(int) * (size_t)n);
        int32_t *labels = malloc(sizeof(int32_t) * (size_t)n);
        Real *x = malloc(sizeof(Real) * (size_t)n * HW * HW);
        for (int i = 0; i < n; i++) pos[i] = i;
        assert_int_equal(image_task_batch(&t, s, pos, n, x, labels, NULL, 0, 0), LSC_OK);
        const ImageSet *set = s == IMAGE_TEST ? &t.test : &t.train;
        for (int i = 0; i < n; i++) {
            const int orig = set->labels[t.idx[s][i]];
            const int want = orig == 4 ? 0 : orig == 1 ? 1 : orig == 3 ? 2 : -1;
            if (labels[i] != want)
                fail_msg("%s position %d: original label %d became %d, expected %d",
                         image_task_split_name(s), i, orig, labels[i], want);
        }
        free(pos), free(labels), free(x);
    }
    image_task_free(&t);
    build_ok(&t, NULL, 0, NULL);
    assert_int_equal(t.n_classes, NC);
    for (int c = 0; c < NC; c++) assert_int_equal(t.relabel[c], c);
    assert_int_equal(t.n[IMAGE_TRAIN] + t.n[IMAGE_VAL], N_TRAIN);
    assert_int_equal(t.n[IMAGE_TEST], N_TEST);
    image_task_free(&t);
}

/* A capped split is the first max images of the uncapped split's order. */
static void test_caps(void **state) {
    (void)state;
    ImageTaskOptions o = image_task_default_options();
    o.val = 0.3;
    ImageTask full, capped;
    build_ok(&full, CLASSES, 3, &o);
    const long max[IMAGE_NUM_SPLITS] = {10, 3, 5};
    memcpy(o.max, max, sizeof max);
    build_ok(&capped, CLASSES, 3, &o);
    for (int s = 0; s < IMAGE_NUM_SPLITS; s++) {
        assert_true(full.n[s] > max[s]);
        assert_int_equal(capped.n[s], max[s]);
        assert_memory_equal(capped.idx[s], full.idx[s], sizeof(int) * (size_t)max[s]);
    }
    image_task_free(&full);
    image_task_free(&capped);
}

static void expect_error(const int *classes, int n_classes, const ImageTaskOptions *o,
                         const char *msg) {
    ImageTask t;
    memset(&t, 0x5A, sizeof t);
    assert_int_equal(build(&t, classes, n_classes, o), LSC_ERR);
    if (!strstr(error_last(), msg)) fail_msg("expected '%s', got '%s'", msg, error_last());
    assert_int_equal(t.n_classes, 0); /* left empty */
    assert_null(t.train.pixels);
    image_task_free(&t);
}

static void test_errors(void **state) {
    (void)state;
    const int bad[2] = {1, 9}, twice[3] = {2, 5, 2}, one[1] = {2};
    expect_error(bad, 2, NULL, "class 9 is not in synthetic (classes 0..5)");
    expect_error(twice, 3, NULL, "class 2 is listed twice");
    expect_error(one, 1, NULL, "an image task needs at least 2 classes, got 1");
    ImageTaskOptions o = image_task_default_options();
    o.val = 0.01; /* round(0.3) = 0 validation images */
    expect_error(CLASSES, 3, &o, "synthetic: the task's val split is empty");
    o.val = 1.5;
    expect_error(CLASSES, 3, &o, "val must be in (0, 1)");
}

static ViTConfig tiny_vit(int n_classes) {
    return (ViTConfig){.image_size = HW, .patch_size = 4, .channels = 1, .dim = 8, .n_layers = 1,
                       .n_heads = 2, .mlp_dim = 16, .n_classes = n_classes, .norm_eps = 1e-6f,
                       .gelu = GELU_ERF, .patch_bias = 1};
}

/* The synthetic task on CLASSES, a CPU device and a random tiny ViT for it. */
typedef struct Fixture {
    Backend *be;
    ImageTask t;
    ViTConfig c;
    ViT m;
} Fixture;

static void fixture_open(Fixture *f, uint64_t vit_seed) {
    assert_int_equal(device_open(&f->be, "cpu", 1), LSC_OK);
    build_ok(&f->t, CLASSES, 3, NULL);
    f->c = tiny_vit(3);
    assert_int_equal(vit_create(&f->m, f->be, &f->c), LSC_OK);
    vit_init_random(&f->m, vit_seed);
}

static void fixture_close(Fixture *f) {
    vit_free(&f->m);
    image_task_free(&f->t);
    device_close(f->be);
}

/* image_task_evaluate against one image at a time, by hand. */
static void hand_evaluate(const ImageTask *t, ViT *m, int split, const ImageCorruption *cor,
                          double *acc, double *loss) {
    Real x[HW * HW];
    long correct = 0;
    double sum = 0;
    for (int i = 0; i < t->n[split]; i++) {
        const int j = t->idx[split][i];
        const ImageSet *set = split == IMAGE_TEST ? &t->test : &t->train;
        int32_t label;
        imagedata_batch(set, x, &label, &j, 1, t->mean, t->std, NULL, 0, 0);
        label = t->relabel[label];
        if (cor)
            assert_int_equal(corrupt_image_normalised(x, 1, HW, HW, t->mean, t->std, cor->kind,
                                                      cor->severity, cor->seed, (uint64_t)i),
                             LSC_OK);
        assert_int_equal(vit_forward(m, x, &label, 1), LSC_OK);
        const Real *lg = m->acts.logits;
        int best = 0;
        for (int k = 1; k < t->n_classes; k++)
            if (lg[k] > lg[best]) best = k;
        correct += best == label;
        sum += m->mean_loss;
    }
    *acc = (double)correct / t->n[split];
    *loss = sum / t->n[split];
}

static void test_evaluate(void **state) {
    (void)state;
    Fixture fx;
    fixture_open(&fx, 11);
    const ImageCorruption cor = {.kind = CORRUPT_GAUSSIAN_NOISE, .severity = 3, .seed = 5};
    for (int k = 0; k < 2; k++)
        for (int s = 0; s < IMAGE_NUM_SPLITS; s++) {
            const ImageCorruption *cp = k ? &cor : NULL;
            double acc, loss, hacc, hloss;
            /* batch 4 leaves a short last batch on every split */
            if (image_task_evaluate(&fx.t, &fx.m, s, 4, cp, &acc, &loss) != LSC_OK)
                fail_msg("evaluate: %s", error_last());
            hand_evaluate(&fx.t, &fx.m, s, cp, &hacc, &hloss);
            if (acc != hacc || fabs(loss - hloss) > 1e-5 + 1e-5 * fabs(hloss))
                fail_msg("%s%s: evaluate gives accuracy %.9g loss %.9g, the hand loop %.9g %.9g",
                         image_task_split_name(s), k ? " (corrupted)" : "", acc, loss, hacc,
                         hloss);
        }
    /* a ViT for another task is refused with both shapes */
    ViT other;
    const ViTConfig c4 = tiny_vit(4);
    assert_int_equal(vit_create(&other, fx.be, &c4), LSC_OK);
    double acc, loss;
    assert_int_equal(image_task_evaluate(&fx.t, &other, IMAGE_VAL, 4, NULL, &acc, &loss), LSC_ERR);
    assert_non_null(strstr(error_last(), "the ViT (1 x 8 x 8 images, 4 classes) does not fit "
                                         "task synthetic (1 x 8 x 8, 3 classes)"));
    vit_free(&other);
    /* a stop request (Ctrl-C, SIGTERM) ends an evaluation before its next batch */
    stop_request(10);
    assert_int_equal(image_task_evaluate(&fx.t, &fx.m, IMAGE_TEST, 4, NULL, &acc, &loss), LSC_ERR);
    if (!strstr(error_last(), "Stopped by signal 10 while evaluating on synthetic"))
        fail_msg("%s", error_last());
    stop_clear();
    if (image_task_evaluate(&fx.t, &fx.m, IMAGE_TEST, 4, NULL, &acc, &loss) != LSC_OK)
        fail_msg("evaluate after the stop was cleared: %s", error_last());
    fixture_close(&fx);
}

/* image_task_evaluate_shift: the shift set's images of the task's classes (relabelled,
 * normalised by the task's statistics), against a hand loop; the geometry and class checks. */
static void test_shift(void **state) {
    (void)state;
    Fixture fx;
    fixture_open(&fx, 13);
    ImageSet shift;
    make_set(&shift, 25, 9); /* labels (7i + 3) % 6: every class, the task's {4, 1, 3} among them */
    Real x[HW * HW];
    long correct = 0, n = 0;
    double sum = 0;
    for (int i = 0; i < shift.n; i++) {
        if (fx.t.relabel[shift.labels[i]] < 0) continue;
        int32_t label;
        imagedata_batch(&shift, x, &label, &i, 1, fx.t.mean, fx.t.std, NULL, 0, 0);
        label = fx.t.relabel[label];
        assert_int_equal(vit_forward(&fx.m, x, &label, 1), LSC_OK);
        int best = 0;
        for (int k = 1; k < fx.t.n_classes; k++)
            if (fx.m.acts.logits[k] > fx.m.acts.logits[best]) best = k;
        correct += best == label, sum += fx.m.mean_loss, n++;
    }
    double acc, loss;
    int got_n;
    if (image_task_evaluate_shift(&fx.t, &fx.m, &shift, NULL, 4, &acc, &loss, &got_n) != LSC_OK)
        fail_msg("evaluate_shift: %s", error_last());
    if (got_n != n || acc != (double)correct / n || fabs(loss - sum / n) > 1e-5 + 1e-5 * fabs(sum / n))
        fail_msg("evaluate_shift gives %d images, accuracy %.9g, loss %.9g; the hand loop %ld, %.9g, %.9g",
                 got_n, acc, loss, n, (double)correct / n, sum / n);
    assert_true(n > 0 && n < shift.n);
    /* no image of the task's classes: refused */
    for (int i = 0; i < shift.n; i++) shift.labels[i] = (int32_t)(i % 2 ? 0 : 5);
    assert_int_equal(image_task_evaluate_shift(&fx.t, &fx.m, &shift, NULL, 4, &acc, &loss, &got_n), LSC_ERR);
    assert_non_null(strstr(error_last(), "holds no image of task synthetic's classes"));
    /* another geometry: refused with both */
    shift.width = HW / 2, shift.height = 2 * HW;
    assert_int_equal(image_task_evaluate_shift(&fx.t, &fx.m, &shift, NULL, 4, &acc, &loss, &got_n), LSC_ERR);
    if (!strstr(error_last(), "(1 x 16 x 4 images) does not have the geometry of task synthetic (1 x 8 x 8)"))
        fail_msg("%s", error_last());
    imagedata_free(&shift);
    fixture_close(&fx);
}

/* A shift set naming its classes (a folder task's ImageNet-R / -A): labels matched by name,
 * the prediction and loss over the logits of the task classes it holds, against a hand loop;
 * a set holding every task class gives the unnamed evaluation's bits; names on a task without
 * them are refused. */
static void test_shift_named(void **state) {
    (void)state;
    Fixture fx;
    fixture_open(&fx, 17);
    ImageSet shift;
    make_set(&shift, 25, 9);
    double acc0, loss0, acc, loss;
    int n0, n;
    ImageFolderClasses all = {.n = NC, .names = malloc(sizeof(char *) * NC)};
    for (int c = 0; c < NC; c++) all.names[c] = strdup((char[]){'c', (char)('0' + c), 0});
    /* a task without class names: refused */
    assert_int_equal(image_task_evaluate_shift(&fx.t, &fx.m, &shift, &all, 4, &acc, &loss, &n), LSC_ERR);
    assert_non_null(strstr(error_last(), "only a folder task matches classes by name"));
    /* the task's train file named c0..c5 */
    fx.t.class_names.n = NC;
    fx.t.class_names.names = malloc(sizeof(char *) * NC);
    for (int c = 0; c < NC; c++) fx.t.class_names.names[c] = strdup(all.names[c]);
    assert_int_equal(image_task_evaluate_shift(&fx.t, &fx.m, &shift, NULL, 4, &acc0, &loss0, &n0), LSC_OK);
    assert_int_equal(image_task_evaluate_shift(&fx.t, &fx.m, &shift, &all, 4, &acc, &loss, &n), LSC_OK);
    assert_true(acc == acc0 && loss == loss0 && n == n0); /* every class held: the same bits */
    /* a subset: the set's classes "c3", "c4" and "zz" (not the task's) */
    for (int i = 0; i < shift.n; i++)
        shift.labels[i] = shift.labels[i] == 3 ? 0 : shift.labels[i] == 4 ? 1 : 2;
    shift.n_classes = 3;
    ImageFolderClasses sub = {.n = 3, .names = (char *[]){"c3", "c4", "zz"}};
    const int32_t to_task[2] = {image_task_label(&fx.t, 3), image_task_label(&fx.t, 4)};
    Real x[HW * HW];
    long correct = 0, count = 0;
    double sum = 0;
    for (int i = 0; i < shift.n; i++) {
        if (shift.labels[i] == 2) continue;
        int32_t label;
        imagedata_batch(&shift, x, &label, &i, 1, fx.t.mean, fx.t.std, NULL, 0, 0);
        label = to_task[label];
        assert_int_equal(vit_forward(&fx.m, x, &label, 1), LSC_OK);
        const Real *lg = fx.m.acts.logits;
        const int best = lg[to_task[0]] >= lg[to_task[1]] ? to_task[0] : to_task[1];
        const double z = exp((double)lg[to_task[0]]) + exp((double)lg[to_task[1]]);
        correct += best == label, sum += log(z) - lg[label], count++;
    }
    if (image_task_evaluate_shift(&fx.t, &fx.m, &shift, &sub, 4, &acc, &loss, &n) != LSC_OK)
        fail_msg("evaluate_shift: %s", error_last());
    if (n != count || acc != (double)correct / count || fabs(loss - sum / count) > 1e-5)
        fail_msg("the named subset gives %d images, accuracy %.9g, loss %.9g; the hand loop %ld, "
                 "%.9g, %.9g", n, acc, loss, count, (double)correct / count, sum / count);
    assert_true(count > 0 && count < shift.n);
    /* ImageNet-V2's layout: the classes named by number ("3", "4", "5": the train file's
     * labels, 5 not the task's) give the same as the names c3, c4, zz */
    double acc_n, loss_n;
    int n_n;
    ImageFolderClasses numbered = {.n = 3, .names = (char *[]){"3", "4", "5"}};
    assert_int_equal(image_task_evaluate_shift(&fx.t, &fx.m, &shift, &numbered, 4, &acc_n, &loss_n, &n_n), LSC_OK);
    assert_true(acc_n == acc && loss_n == loss && n_n == n);
    /* a number among names that are not all numbers is a name: no class matches "4"; and a
     * number beyond the train file's classes ("9") is no class number either */
    ImageFolderClasses mixed = {.n = 3, .names = (char *[]){"c3", "4", "zz"}};
    if (image_task_evaluate_shift(&fx.t, &fx.m, &shift, &mixed, 4, &acc_n, &loss_n, &n_n) != LSC_OK)
        fail_msg("mixed names: %s", error_last());
    assert_true(n_n < n);
    ImageFolderClasses beyond = {.n = 3, .names = (char *[]){"3", "4", "9"}};
    assert_int_equal(image_task_evaluate_shift(&fx.t, &fx.m, &shift, &beyond, 4, &acc_n, &loss_n, &n_n), LSC_ERR);
    assert_non_null(strstr(error_last(), "holds no image of task synthetic's classes"));
    imagefolder_classes_free(&all);
    imagedata_free(&shift);
    fixture_close(&fx);
}

/* Every train image once per epoch, in the order of that epoch's seeded shuffle; a batch is a
 * function of its step only. */
static void test_sampler(void **state) {
    (void)state;
    ImageTask t;
    build_ok(&t, CLASSES, 3, NULL);
    const ViTConfig c = tiny_vit(3);
    const int n = t.n[IMAGE_TRAIN], B = 5, epochs = 3;
    const ImageSamplerConfig sc = {.batch = B, .seed = 9};
    ImageSampler s, fresh;
    assert_int_equal(image_sampler_init(&s, &t, &c, &sc), LSC_OK);
    int *order = malloc(sizeof(int) * (size_t)(epochs * n + B));
    int *perm = malloc(sizeof(int) * (size_t)n);
    const long steps = (long)(epochs * n + B - 1) / B;
    for (long step = 0; step < steps; step++) {
        VitBatch b;
        assert_int_equal(image_sampler_batch(&s, step, &b), LSC_OK);
        assert_int_equal(b.B, B);
        Real want[5 * HW * HW];
        int32_t want_labels[5];
        assert_int_equal(image_task_batch(&t, IMAGE_TRAIN, s.now.pos, B, want, want_labels, &sc.aug,
                                          sc.seed, (uint64_t)step), LSC_OK);
        assert_memory_equal(b.images, want, sizeof want);
        assert_memory_equal(b.labels, want_labels, sizeof want_labels);
        memcpy(order + step * B, s.now.pos, sizeof(int) * B);
        if (step == 7) { /* a new sampler asked for step 7 first draws the same batch */
            assert_int_equal(image_sampler_init(&fresh, &t, &c, &sc), LSC_OK);
            VitBatch f;
            assert_int_equal(image_sampler_batch(&fresh, step, &f), LSC_OK);
            assert_memory_equal(f.images, b.images, sizeof want);
            image_sampler_free(&fresh);
        }
    }
    for (int e = 0; e < epochs; e++) {
        int *count = calloc((size_t)n, sizeof(int));
        for (int i = 0; i < n; i++) count[order[e * n + i]]++;
        for (int i = 0; i < n; i++)
            if (count[i] != 1) fail_msg("epoch %d: train position %d drawn %d times", e, i, count[i]);
        imagedata_shuffle(perm, n, sc.seed, (uint64_t)e);
        assert_memory_equal(order + e * n, perm, sizeof(int) * (size_t)n);
        free(count);
    }
    assert_memory_not_equal(order, order + n, sizeof(int) * (size_t)n);
    image_sampler_free(&s);
    /* a batch size of 0 and a ViT of another shape are refused */
    const ImageSamplerConfig zero = {.batch = 0, .seed = 1};
    assert_int_equal(image_sampler_init(&s, &t, &c, &zero), LSC_ERR);
    assert_non_null(strstr(error_last(), "batch must be > 0, got 0"));
    const ViTConfig c4 = tiny_vit(4);
    assert_int_equal(image_sampler_init(&s, &t, &c4, &sc), LSC_ERR);
    assert_non_null(strstr(error_last(), "does not fit task synthetic"));
    free(order), free(perm);
    image_task_free(&t);
}

/* A ViT of another image size (a Hugging Face model's): sampler batches and evaluation see
 * the task's normalised images resized to it (torch's bilinear), corruptions applied before
 * the resize. */
static void test_other_size(void **state) {
    (void)state;
    Fixture fx;
    fixture_open(&fx, 5);
    ViT big;
    ViTConfig c12 = tiny_vit(3);
    c12.image_size = 12;
    assert_int_equal(vit_create(&big, fx.be, &c12), LSC_OK);
    vit_init_random(&big, 6);
    const ImageSamplerConfig sc = {.batch = 4, .seed = 3};
    ImageSampler s;
    assert_int_equal(image_sampler_init(&s, &fx.t, &c12, &sc), LSC_OK);
    VitBatch b;
    assert_int_equal(image_sampler_batch(&s, 2, &b), LSC_OK);
    Real native[4 * HW * HW], want[4 * 12 * 12];
    assert_int_equal(
        image_task_batch(&fx.t, IMAGE_TRAIN, s.now.pos, 4, native, NULL, &sc.aug, sc.seed, 2), LSC_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(
            image_resize_bilinear(want + i * 144, 12, 12, native + i * HW * HW, 1, HW, HW), LSC_OK);
    assert_memory_equal(b.images, want, sizeof want);
    image_sampler_free(&s);
    /* evaluation at 12x12: a hand loop over the resized (corrupted) images */
    const ImageCorruption cp = {.kind = 1, .severity = 3, .seed = 1};
    for (int k = 0; k < 2; k++) {
        double acc, loss, hand_loss = 0;
        long correct = 0;
        assert_int_equal(
            image_task_evaluate(&fx.t, &big, IMAGE_VAL, 4, k ? &cp : NULL, &acc, &loss), LSC_OK);
        const int n = fx.t.n[IMAGE_VAL];
        for (int i = 0; i < n; i++) {
            Real x[HW * HW], y[144];
            int32_t label, pred;
            assert_int_equal(image_task_batch(&fx.t, IMAGE_VAL, &i, 1, x, &label, NULL, 0, 0),
                             LSC_OK);
            if (k)
                assert_int_equal(corrupt_image_normalised(x, 1, HW, HW, fx.t.mean, fx.t.std,
                                                          cp.kind, cp.severity, cp.seed,
                                                          (uint64_t)i),
                                 LSC_OK);
            assert_int_equal(image_resize_bilinear(y, 12, 12, x, 1, HW, HW), LSC_OK);
            assert_int_equal(vit_forward(&big, y, &label, 1), LSC_OK);
            correct += vit_predict(&big, &pred, &label);
            hand_loss += big.mean_loss;
        }
        if (acc != (double)correct / n || fabs(loss - hand_loss / n) > 1e-5)
            fail_msg("12x12 evaluation: %.9g %.9g, by hand %.9g %.9g", acc, loss,
                     (double)correct / n, hand_loss / n);
    }
    vit_free(&big);
    fixture_close(&fx);
}

/* Pretraining on the learnable set lowers the loss; steps report the schedule's rate. */
static void test_trainer(void **state) {
    (void)state;
    Fixture fx;
    fixture_open(&fx, 3);
    const long steps = 70; /* more than a StepLog holds (STEP_LOG_SLOTS) */
    ImageTrainConfig cfg = {.total_steps = steps,
                            .schedule = {.kind = SCHEDULE_LINEAR, .peak_lr = 1e-2f},
                            .adamw = adamw_default_config()};
    const ImageSamplerConfig sc = {.batch = 8, .seed = 2, .aug = {.crop_pad = 1}};
    ImageTrainer tr;
    if (image_trainer_begin(&tr, &fx.m, &fx.t, &cfg, &sc) != LSC_OK) fail_msg("%s", error_last());
    double first = 0, last = 0;
    StepResult now[70];
    for (long i = 0; i < steps; i++) {
        StepResult r;
        float lr;
        assert_int_equal(image_trainer_step(&tr, &r, &lr), LSC_OK);
        assert_true(lr == schedule_lr(&cfg.schedule, i, steps));
        assert_true(r.grad_norm > 0 && isfinite(r.loss));
        if (i < 10) first += r.loss / 10;
        if (i >= steps - 10) last += r.loss / 10;
        now[i] = r;
    }
    if (!(last < 0.7 * first)) fail_msg("pretraining: mean loss %.4f over the first 10 steps, %.4f over the last 10", first, last);
    assert_int_equal(tr.step, steps);
    image_trainer_end(&tr);
    Real *trained = malloc(fx.m.num_params * sizeof(Real));
    memcpy(trained, fx.m.params, fx.m.num_params * sizeof(Real));

    /* deferred (as on a GPU): the results stay in the step log, taken after step 25 and at
     * the end (the log fills at 64 and is read into its queue): the same bits */
    vit_free(&fx.m);
    assert_int_equal(vit_create(&fx.m, fx.be, &fx.c), LSC_OK);
    vit_init_random(&fx.m, 3);
    if (image_trainer_begin(&tr, &fx.m, &fx.t, &cfg, &sc) != LSC_OK) fail_msg("%s", error_last());
    StepResult later[70];
    int taken = 0;
    for (long i = 0; i < steps; i++) {
        float lr;
        assert_int_equal(image_trainer_step(&tr, NULL, &lr), LSC_OK);
        if (i == 25 || i == steps - 1) {
            assert_int_equal(step_log_pending(&tr.log), i == 25 ? 26 : (int)steps - 26);
            assert_int_equal(step_log_take(&tr.log, later + taken), LSC_OK);
            taken = (int)i + 1;
            assert_int_equal(step_log_pending(&tr.log), 0);
        }
    }
    for (long i = 0; i < steps; i++)
        if (memcmp(&now[i], &later[i], sizeof now[i]) != 0)
            fail_msg("deferred step %ld: loss %.17g / %.17g, norm %.17g / %.17g", i, now[i].loss,
                     later[i].loss, now[i].grad_norm, later[i].grad_norm);
    assert_memory_equal(trained, fx.m.params, fx.m.num_params * sizeof(Real));
    free(trained);
    image_trainer_end(&tr);
    image_trainer_end(&tr); /* twice is safe */
    cfg.total_steps = 0;
    assert_int_equal(image_trainer_begin(&tr, &fx.m, &fx.t, &cfg, &sc), LSC_ERR);
    assert_non_null(strstr(error_last(), "pretraining: steps must be > 0"));
    fixture_close(&fx);
}

/* A 2-expert cascade: one boundary per expert at the expert's last step, the merged update in
 * the base weights afterwards, no step past the end. */
static void test_finetune(void **state) {
    (void)state;
    Fixture fx;
    fixture_open(&fx, 4);
    Real *before = malloc(sizeof(Real) * fx.m.num_params);
    memcpy(before, fx.m.params, sizeof(Real) * fx.m.num_params);
    FinetuneConfig cfg = {.total_steps = 10, .schedule = {.kind = SCHEDULE_CONSTANT, .peak_lr = 1e-2f},
                          .adamw = adamw_default_config(), .lora_plus_ratio = 1, .seed = 3};
    assert_int_equal(cascade_preset("lorasc", &cfg.cascade), LSC_OK);
    cfg.cascade.n_experts = 2;
    const LoraConfig lc = {.rank = 2, .alpha = 4, .targets = LORA_DEFAULT_TARGETS};
    const ImageSamplerConfig sc = {.batch = 4, .seed = 5};
    ImageFinetune f;
    if (image_finetune_begin(&f, &fx.m, &fx.t, &cfg, &lc, &sc) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(f.ft.config.batch, 4);
    int boundaries = 0;
    for (long i = 0; i < cfg.total_steps; i++) {
        StepResult r;
        float lr;
        CascadeEvent ev;
        const int rc = image_finetune_step(&f, &r, &lr, &ev);
        assert_true(rc == 0 || rc == 1);
        if (rc == 1) {
            boundaries++;
            assert_int_equal(ev.expert, boundaries);
            assert_int_equal(ev.step, i + 1);
        }
    }
    assert_int_equal(boundaries, 2);
    StepResult r;
    CascadeEvent ev;
    assert_int_equal(image_finetune_step(&f, &r, NULL, &ev), LSC_ERR);
    assert_non_null(strstr(error_last(), "no steps left"));
    image_finetune_end(&f);
    assert_null(fx.m.lora);
    const Real *wq = fx.m.w.tensors[VIT_WQ], *wq0 = before + (wq - fx.m.params);
    assert_memory_not_equal(wq, wq0, sizeof(Real) * (size_t)fx.c.dim * fx.c.dim);
    const Real *wk = fx.m.w.tensors[VIT_WK], *wk0 = before + (wk - fx.m.params);
    assert_memory_equal(wk, wk0, sizeof(Real) * (size_t)fx.c.dim * fx.c.dim); /* not a target */
    free(before);
    fixture_close(&fx);
}

static void test_clone(void **state) {
    (void)state;
    Backend *be;
    assert_int_equal(device_open(&be, "cpu", 1), LSC_OK);
    const ViTConfig c = tiny_vit(3);
    ViT src, same, head, head2;
    assert_int_equal(vit_create(&src, be, &c), LSC_OK);
    philox_uniform(src.params, src.num_params, 21, 0x52, -1, 1); /* no zero biases */
    assert_int_equal(vit_clone(&same, &src), LSC_OK);
    assert_memory_equal(&same.config, &src.config, sizeof c);
    assert_memory_equal(same.params, src.params, sizeof(Real) * src.num_params);
    assert_int_equal(vit_clone_new_head(&head, &src, 5, 7), LSC_OK);
    assert_int_equal(vit_clone_new_head(&head2, &src, 5, 7), LSC_OK);
    assert_int_equal(head.config.n_classes, 5);
    for (int k = 0; k < VIT_NUM_PARAM_TENSORS; k++) {
        if (k == VIT_HEAD_W || k == VIT_HEAD_B || src.param_sizes[k] == 0) continue;
        if (memcmp(head.w.tensors[k], src.w.tensors[k], sizeof(Real) * src.param_sizes[k]))
            fail_msg("tensor %s differs from the source's", vit_param_name(k));
    }
    const size_t nw = head.param_sizes[VIT_HEAD_W];
    assert_int_equal(nw, 5 * (size_t)c.dim);
    double sq = 0;
    for (size_t i = 0; i < nw; i++) sq += (double)head.w.tensors[VIT_HEAD_W][i] * head.w.tensors[VIT_HEAD_W][i];
    const double sd = sqrt(sq / (double)nw);
    if (!(sd > 0.01 && sd < 0.04)) fail_msg("new head weights have rms %.4f, expected about 0.02", sd);
    for (int i = 0; i < 5; i++) assert_true(head.w.tensors[VIT_HEAD_B][i] == 0);
    assert_memory_equal(head.params, head2.params, sizeof(Real) * head.num_params); /* seeded */
    ViT bad;
    assert_int_equal(vit_clone_new_head(&bad, &src, 0, 1), LSC_ERR);
    vit_free(&head2), vit_free(&head), vit_free(&same), vit_free(&src);

    const LlamaConfig lc = {.dim = 16, .hidden_dim = 32, .n_layers = 1, .n_heads = 2,
                            .n_kv_heads = 2, .vocab_size = 32, .seq_len = 8, .rope_theta = 10000,
                            .norm_eps = 1e-5f, .tied_embeddings = 1};
    Llama a, b;
    assert_int_equal(llama_create(&a, be, &lc), LSC_OK);
    philox_uniform(a.params, a.num_params, 5, 0x53, -1, 1);
    assert_int_equal(llama_clone(&b, &a), LSC_OK);
    assert_memory_equal(&b.config, &a.config, sizeof lc);
    assert_int_equal(b.num_params, a.num_params);
    assert_memory_equal(b.params, a.params, sizeof(Real) * a.num_params);
    assert_ptr_not_equal(b.params, a.params);
    llama_free(&b), llama_free(&a);
    device_close(be);
}

static void test_device(void **state) {
    (void)state;
    Backend *be;
    assert_int_equal(device_open(&be, "cpu", 2), LSC_OK);
    assert_string_equal(be->name, "cpu");
    device_close(be);
    device_close(NULL);
    /* "cuda" opens only in a CUDA build on a machine with a GPU; otherwise the sentence says
     * why (in a CPU-only build: "lorasc was built without CUDA (meson setup -Dcuda=enabled)") */
    if (device_open(&be, "cuda", 0) == LSC_OK) {
        assert_string_equal(be->name, "cuda");
        device_close(be);
    } else {
        assert_null(be);
        assert_non_null(strstr(error_last(), "CUDA"));
    }
    assert_int_equal(device_open(&be, "tpu", 0), LSC_ERR);
    assert_string_equal(error_last(), "unknown device 'tpu'; valid devices: cpu, cuda");
    char err[8];
    assert_null(backend_create("tpu", 0, err, sizeof err)); /* truncated, terminated */
    assert_int_equal(strlen(err), sizeof err - 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),      cmocka_unit_test(test_relabel),
        cmocka_unit_test(test_caps),       cmocka_unit_test(test_errors),
        cmocka_unit_test(test_evaluate),   cmocka_unit_test(test_sampler),
        cmocka_unit_test(test_trainer),    cmocka_unit_test(test_finetune),
        cmocka_unit_test(test_clone),      cmocka_unit_test(test_device),
        cmocka_unit_test(test_other_size), cmocka_unit_test(test_shift), cmocka_unit_test(test_shift_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
