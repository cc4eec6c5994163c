/* Image classification tasks: the seeded train/val split, the class subset and its
 * relabelling, caps, batches and the evaluation loop of a ViT. See image_task.h. */
#include "core/tasks/image_task.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/base/stop.h"
#include "core/data/image_resize.h"
#include "core/data/corrupt.h"

ImageTaskOptions image_task_default_options(void) {
    return (ImageTaskOptions){.val = 0.1, .max = {0, 0, 0}, .seed = 1};
}

const char *image_task_split_name(int split) {
    return split == IMAGE_TRAIN ? "train" : split == IMAGE_VAL ? "val" : "test";
}

void image_task_free(ImageTask *t) {
    imagedata_free(&t->train);
    imagedata_free(&t->test);
    for (int s = 0; s < IMAGE_NUM_SPLITS; s++) free(t->idx[s]);
    memset(t, 0, sizeof *t);
}

/* relabel[] from the class list (NULL: every class of the train file). */
static int set_classes(ImageTask *t, const int *classes, int n_classes) {
    for (int i = 0; i < 256; i++) t->relabel[i] = -1;
    if (!classes) {
        for (int c = 0; c < t->train.n_classes && c < 256; c++) t->relabel[c] = t->n_classes++;
        return LSC_OK;
    }
    if (n_classes < 2)
        return error_set("an image task needs at least 2 classes, got %d", n_classes);
    for (int i = 0; i < n_classes; i++) {
        const int c = classes[i];
        if (c < 0 || c >= t->train.n_classes)
            return error_set("class %d is not in %s (classes 0..%d)", c, t->name,
                             t->train.n_classes - 1);
        if (t->relabel[c] >= 0) return error_set("class %d is listed twice", c);
        t->relabel[c] = t->n_classes++;
    }
    return LSC_OK;
}

/* The three index lists: train/val from a seeded shuffle of the train file's task images
 * (the first round(val * total) go to val), test from a seeded shuffle of the test file;
 * a capped split keeps its first max[s] images in that order. */
static int split_sets(ImageTask *t, const ImageTaskOptions *o) {
    int *perm = malloc(sizeof(int) * (size_t)t->train.n);
    int *tperm = malloc(sizeof(int) * (size_t)t->test.n);
    for (int s = 0; s < IMAGE_NUM_SPLITS; s++)
        t->idx[s] = malloc(sizeof(int) * (size_t)(s == IMAGE_TEST ? t->test.n : t->train.n));
    if (!perm || !tperm || !t->idx[0] || !t->idx[1] || !t->idx[2]) {
        free(perm);
        free(tperm);
        return error_set("out of memory loading %s", t->name);
    }
    imagedata_shuffle(perm, t->train.n, o->seed, 0xA11);
    imagedata_shuffle(tperm, t->test.n, o->seed, 0xA12);
    int total = 0;
    for (int i = 0; i < t->train.n; i++) total += t->relabel[t->train.labels[perm[i]] & 0xFF] >= 0;
    const int n_val = (int)(o->val * total + 0.5);
    int k = 0;
    for (int i = 0; i < t->train.n; i++) {
        const int j = perm[i];
        if (t->relabel[t->train.labels[j] & 0xFF] < 0) continue;
        const int s = k++ < n_val ? IMAGE_VAL : IMAGE_TRAIN;
        if (o->max[s] <= 0 || t->n[s] < o->max[s]) t->idx[s][t->n[s]++] = j;
    }
    for (int i = 0; i < t->test.n; i++) {
        const int j = tperm[i];
        if (t->relabel[t->test.labels[j] & 0xFF] < 0) continue;
        if (o->max[IMAGE_TEST] <= 0 || t->n[IMAGE_TEST] < o->max[IMAGE_TEST])
            t->idx[IMAGE_TEST][t->n[IMAGE_TEST]++] = j;
    }
    free(perm);
    free(tperm);
    for (int s = 0; s < IMAGE_NUM_SPLITS; s++)
        if (t->n[s] == 0)
            return error_set("%s: the task's %s split is empty", t->name, image_task_split_name(s));
    return LSC_OK;
}

int image_task_build(ImageTask *t, const char *name, ImageSet *train, ImageSet *test,
                     const int *classes, int n_classes, const ImageTaskOptions *opt) {
    memset(t, 0, sizeof *t);
    t->train = *train;
    t->test = *test;
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    snprintf(t->name, sizeof t->name, "%s", name);
    const ImageTaskOptions o = opt ? *opt : image_task_default_options();
    int rc = LSC_OK;
    if (!(o.val > 0 && o.val < 1))
        rc = error_set("%s: val must be in (0, 1), got %g", name, o.val);
    else if (t->train.channels > 4)
        rc = error_set("%s has %d channels; at most 4 are supported", name, t->train.channels);
    else if (t->test.channels != t->train.channels || t->test.height != t->train.height ||
             t->test.width != t->train.width)
        rc = error_set("%s: the test images (%d x %d x %d) differ from the train images "
                       "(%d x %d x %d)", name, t->test.channels, t->test.height, t->test.width,
                       t->train.channels, t->train.height, t->train.width);
    if (rc == LSC_OK) rc = set_classes(t, classes, n_classes);
    if (rc == LSC_OK) {
        imagedata_stats(&t->train, t->mean, t->std);
        rc = split_sets(t, &o);
    }
    if (rc != LSC_OK) image_task_free(t);
    return rc;
}

int image_task_load(ImageTask *t, const char *name, const int *classes, int n_classes,
                    const ImageTaskOptions *opt) {
    memset(t, 0, sizeof *t);
    ImageSet train = {0}, test = {0};
    if (imagedata_load(&train, name, "train") != LSC_OK) return LSC_ERR;
    if (imagedata_load(&test, name, "test") != LSC_OK) {
        imagedata_free(&train);
        return LSC_ERR;
    }
    return image_task_build(t, name, &train, &test, classes, n_classes, opt);
}

int image_task_check_vit(const ImageTask *t, const ViTConfig *c) {
    const int C = t->train.channels, H = t->train.height, W = t->train.width;
    if (c->channels != C || c->n_classes != t->n_classes)
        return error_set("the ViT (%d x %d x %d images, %d classes) does not fit task %s "
                         "(%d x %d x %d, %d classes)", c->channels, c->image_size, c->image_size,
                         c->n_classes, t->name, C, H, W, t->n_classes);
    return LSC_OK;
}

int image_task_batch(const ImageTask *t, int split, const int *positions, int B, Real *out,
                     int32_t *labels, const ImageAugment *aug, uint64_t seed, uint64_t step) {
    int *ix = malloc(sizeof(int) * (size_t)B);
    if (!ix) return error_set("out of memory drawing a batch of %d images from %s", B, t->name);
    for (int b = 0; b < B; b++) ix[b] = t->idx[split][positions[b]];
    const ImageSet *set = split == IMAGE_TEST ? &t->test : &t->train;
    imagedata_batch(set, out, labels, ix, B, t->mean, t->std, aug, seed, step);
    if (labels)
        for (int b = 0; b < B; b++) labels[b] = t->relabel[labels[b] & 0xFF];
    free(ix);
    return LSC_OK;
}

/* native [B, C, H, W] -> out [B, C, size, size] */
static int resize_batch(const ImageTask *t, Real *out, int size, const Real *native, int B) {
    const int C = t->train.channels, H = t->train.height, W = t->train.width;
    for (int b = 0; b < B; b++)
        if (image_resize_bilinear(out + (size_t)b * C * size * size, size, size,
                                  native + (size_t)b * C * H * W, C, H, W) != LSC_OK)
            return LSC_ERR;
    return LSC_OK;
}

static int same_size(const ImageTask *t, int size) {
    return size == t->train.height && size == t->train.width;
}

int image_task_batch_sized(const ImageTask *t, int split, const int *positions, int B, int size,
                           Real *out, int32_t *labels, const ImageAugment *aug, uint64_t seed,
                           uint64_t step) {
    if (same_size(t, size))
        return image_task_batch(t, split, positions, B, out, labels, aug, seed, step);
    Real *native =
        malloc(sizeof(Real) * (size_t)B * t->train.channels * t->train.height * t->train.width);
    if (!native) return error_set("out of memory resizing a batch of %d images of %s", B, t->name);
    int rc = image_task_batch(t, split, positions, B, native, labels, aug, seed, step);
    if (rc == LSC_OK) rc = resize_batch(t, out, size, native, B);
    free(native);
    return rc;
}

/* The evaluation loop: images idx[0..n) of set (the task's train or test file, or a shift
 * set of the same geometry) in batches of B, labels through the task's relabelling (every
 * idx is of a task class), optionally corrupted, resized to the model's size; whether each
 * image was classified right (1 or 0) into per_image[0..n) when it is not NULL. */
static int evaluate_images(const ImageTask *t, ViT *m, const ImageSet *set, const int *idx, int n, int B,
                           const ImageCorruption *corruption, double *accuracy, double *loss,
                           double *per_image) {
    if (B <= 0) return error_set("evaluation batch must be > 0, got %d", B);
    if (image_task_check_vit(t, &m->config) != LSC_OK) return LSC_ERR;
    const int C = t->train.channels, H = t->train.height, W = t->train.width;
    const size_t img = (size_t)C * H * W;
    const int S = m->config.image_size, resize = !same_size(t, S);
    Real *x = malloc(sizeof(Real) * img * (size_t)B);
    Real *y = resize ? malloc(sizeof(Real) * (size_t)C * S * S * (size_t)B) : x;
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)B), *pred = malloc(sizeof(int32_t) * (size_t)B);
    int rc = LSC_OK;
    if (!x || !y || !labels || !pred)
        rc = error_set("out of memory evaluating on %s", set->name);
    long correct = 0;
    double sum_loss = 0;
    for (int start = 0; start < n && rc == LSC_OK; start += B) {
        if (stop_requested()) { /* Ctrl-C or a scheduler's signal: the run is to stop now */
            rc = error_set("Stopped by signal %d while evaluating on %s (image %d of %d).",
                           stop_requested(), set->name, start, n);
            break;
        }
        const int b = n - start < B ? n - start : B;
        imagedata_batch(set, x, labels, idx + start, b, t->mean, t->std, NULL, 0, 0);
        for (int i = 0; i < b; i++) labels[i] = t->relabel[labels[i] & 0xFF];
        for (int i = 0; i < b && corruption && rc == LSC_OK; i++)
            rc = corrupt_image_normalised(x + i * img, C, H, W, t->mean, t->std, corruption->kind,
                                          corruption->severity, corruption->seed,
                                          (uint64_t)(start + i));
        if (rc == LSC_OK && resize) rc = resize_batch(t, y, S, x, b);
        if (rc == LSC_OK) rc = vit_forward(m, y, labels, b);
        if (rc == LSC_OK) {
            const int right = vit_predict(m, pred, labels);
            if (right < 0) rc = LSC_ERR;
            correct += right;
            sum_loss += m->mean_loss * b;
            for (int i = 0; per_image && right >= 0 && i < b; i++)
                per_image[start + i] = pred[i] == labels[i] ? 1.0 : 0.0;
        }
    }
    if (y != x) free(y);
    free(x), free(labels), free(pred);
    if (rc != LSC_OK) return LSC_ERR;
    *accuracy = (double)correct / n;
    *loss = sum_loss / n;
    return LSC_OK;
}

int image_task_evaluate(const ImageTask *t, ViT *m, int split, int B,
                        const ImageCorruption *corruption, double *accuracy, double *loss) {
    return image_task_evaluate_images(t, m, split, B, corruption, accuracy, loss, NULL);
}

int image_task_evaluate_images(const ImageTask *t, ViT *m, int split, int B,
                               const ImageCorruption *corruption, double *accuracy, double *loss,
                               double *per_image) {
    return evaluate_images(t, m, split == IMAGE_TEST ? &t->test : &t->train, t->idx[split], t->n[split], B,
                           corruption, accuracy, loss, per_image);
}

int image_task_evaluate_shift(const ImageTask *t, ViT *m, const ImageSet *shift, int B,
                              double *accuracy, double *loss, int *n) {
    *n = 0;
    if (shift->channels != t->train.channels || shift->height != t->train.height ||
        shift->width != t->train.width)
        return error_set("the shift set %s (%d x %d x %d images) does not have the geometry of task %s "
                         "(%d x %d x %d)", shift->name, shift->channels, shift->height, shift->width, t->name,
                         t->train.channels, t->train.height, t->train.width);
    int *idx = malloc(sizeof(int) * (size_t)(shift->n > 0 ? shift->n : 1));
    if (!idx) return error_set("out of memory evaluating on %s", shift->name);
    int k = 0;
    for (int i = 0; i < shift->n; i++)
        if (shift->labels[i] >= 0 && shift->labels[i] < 256 && t->relabel[shift->labels[i]] >= 0) idx[k++] = i;
    int rc = LSC_OK;
    if (k == 0)
        rc = error_set("the shift set %s holds no image of task %s's classes", shift->name, t->name);
    else
        rc = evaluate_images(t, m, shift, idx, k, B, NULL, accuracy, loss, NULL);
    free(idx);
    if (rc == LSC_OK) *n = k;
    return rc;
}
