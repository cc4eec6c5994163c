/* Image classification tasks: the seeded train/val split, the class subset and its
 * relabelling, caps, batches and the evaluation loop of a ViT. See image_task.h. */
#include "core/tasks/image_task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/background.h"
#include "core/base/error.h"
#include "core/base/stop.h"
#include "core/data/image_resize.h"
#include "core/data/corrupt.h"

ImageTaskOptions image_task_default_options(void) {
    return (ImageTaskOptions){.val = 0.1, .max = {0, 0, 0}, .seed = 1, .n_norm = 0};
}

const char *image_task_split_name(int split) {
    return split == IMAGE_TRAIN ? "train" : split == IMAGE_VAL ? "val" : "test";
}

void image_task_free(ImageTask *t) {
    imagedata_free(&t->train);
    imagedata_free(&t->test);
    for (int s = 0; s < IMAGE_NUM_SPLITS; s++) free(t->idx[s]);
    free(t->relabel);
    imagefolder_classes_free(&t->class_names);
    memset(t, 0, sizeof *t);
}

int image_task_label(const ImageTask *t, int32_t original) {
    return original >= 0 && original < t->train.n_classes ? t->relabel[original] : -1;
}

/* relabel[] from the class list (NULL: every class of the train file). */
static int set_classes(ImageTask *t, const int *classes, int n_classes) {
    const int n_labels = t->train.n_classes > 0 ? t->train.n_classes : 1;
    if (!(t->relabel = malloc(sizeof(int32_t) * (size_t)n_labels)))
        return error_set("out of memory labelling %s's %d classes", t->name, n_labels);
    for (int i = 0; i < n_labels; i++) t->relabel[i] = -1;
    if (!classes) {
        for (int c = 0; c < t->train.n_classes; c++) t->relabel[c] = t->n_classes++;
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
    for (int i = 0; i < t->train.n; i++) total += image_task_label(t, t->train.labels[perm[i]]) >= 0;
    const int n_val = (int)(o->val * total + 0.5);
    int k = 0;
    for (int i = 0; i < t->train.n; i++) {
        const int j = perm[i];
        if (image_task_label(t, t->train.labels[j]) < 0) continue;
        const int s = k++ < n_val ? IMAGE_VAL : IMAGE_TRAIN;
        if (o->max[s] <= 0 || t->n[s] < o->max[s]) t->idx[s][t->n[s]++] = j;
    }
    for (int i = 0; i < t->test.n; i++) {
        const int j = tperm[i];
        if (image_task_label(t, t->test.labels[j]) < 0) continue;
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
    else if (o.n_norm > 0 && o.n_norm != t->train.channels)
        rc = error_set("%s: %d normalisation statistics given for %d-channel images", name,
                       o.n_norm, t->train.channels);
    if (rc == LSC_OK) rc = set_classes(t, classes, n_classes);
    if (rc == LSC_OK) {
        if (o.n_norm > 0) {
            memcpy(t->mean, o.mean, sizeof t->mean);
            memcpy(t->std, o.std, sizeof t->std);
        } else {
            rc = imagedata_stats(&t->train, t->mean, t->std);
        }
        if (rc == LSC_OK) rc = split_sets(t, &o);
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

/* The test file's labels, numbered by its own class names, renumbered as the train file's
 * (names); a class the train file lacks is an error naming both folders. */
static int match_classes(ImageSet *test, const ImageFolderClasses *test_names,
                         const ImageFolderClasses *train_names, const char *test_root,
                         const char *train_root) {
    int32_t *to_train = malloc(sizeof(int32_t) * (size_t)test_names->n);
    if (!to_train) return error_set("out of memory matching the classes of %s", test_root);
    int rc = LSC_OK;
    for (int c = 0; c < test_names->n && rc == LSC_OK; c++)
        if ((to_train[c] = imagefolder_class_index(train_names, test_names->names[c])) < 0)
            rc = error_set("%s has a class folder %s that %s does not have; the test images' "
                           "classes must be among the training images'", test_root,
                           test_names->names[c], train_root);
    for (int i = 0; i < test->n && rc == LSC_OK; i++) test->labels[i] = to_train[test->labels[i]];
    if (rc == LSC_OK) test->n_classes = train_names->n;
    free(to_train);
    return rc;
}

/* The test file of a folder task: root/val/<class>/, root/test/<class>/, or root/val/ flat
 * with root/LOC_val_solution.csv; labels in the train file's numbering. */
static int load_folder_test(ImageSet *test, const char *root, const char *train_root,
                            const ImageFolderClasses *train_names, int channels,
                            const ImagePreprocess *pp) {
    char dir[4096], csv[4200];
    snprintf(dir, sizeof dir, "%s/val", root);
    if (!imagefolder_has_classes(dir)) {
        snprintf(csv, sizeof csv, "%s/LOC_val_solution.csv", root);
        FILE *f = fopen(csv, "r");
        if (f) {
            fclose(f);
            return imagefolder_load_solution(test, dir, csv, train_names, channels, pp);
        }
        snprintf(dir, sizeof dir, "%s/test", root);
        if (!imagefolder_has_classes(dir))
            return error_set("%s has no test images: it needs val/<class>/ or test/<class>/ "
                             "folders beside train/, or ImageNet's val/ with "
                             "LOC_val_solution.csv", root);
    }
    ImageFolderClasses names = {0};
    if (imagefolder_load(test, &names, dir, channels, pp) != LSC_OK) return LSC_ERR;
    const int rc = match_classes(test, &names, train_names, dir, train_root);
    imagefolder_classes_free(&names);
    if (rc != LSC_OK) imagedata_free(test);
    return rc;
}

int image_task_load_folder(ImageTask *t, const char *root, int channels,
                           const ImagePreprocess *pp, const ImageTaskOptions *opt) {
    memset(t, 0, sizeof *t);
    ImageSet train = {0}, test = {0};
    ImageFolderClasses names = {0};
    char train_root[4096];
    snprintf(train_root, sizeof train_root, "%s/train", root);
    if (imagefolder_load(&train, &names, train_root, channels, pp) != LSC_OK) return LSC_ERR;
    if (load_folder_test(&test, root, train_root, &names, channels, pp) != LSC_OK) {
        imagedata_free(&train);
        imagefolder_classes_free(&names);
        return LSC_ERR;
    }
    char name[128];
    imagefolder_name(name, sizeof name, root);
    const int rc = image_task_build(t, name, &train, &test, NULL, 0, opt);
    if (rc == LSC_OK) t->class_names = names;
    else imagefolder_classes_free(&names);
    return rc;
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
    const int rc = imagedata_batch(set, out, labels, ix, B, t->mean, t->std, aug, seed, step);
    if (labels && rc == LSC_OK)
        for (int b = 0; b < B; b++) labels[b] = image_task_label(t, labels[b]);
    free(ix);
    return rc;
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

/* Prediction and loss over the logits of the kept classes only (a shift set holding a subset
 * of the task's classes): argmax and cross-entropy (in double) over row b's kept logits;
 * the number right, and the summed loss into *sum_loss. */
static int score_kept(ViT *m, const uint8_t *keep, const int32_t *labels, int b, int32_t *pred,
                      double *sum_loss) {
    const int K = m->config.n_classes;
    Real *logits = malloc(sizeof(Real) * (size_t)b * K);
    if (!logits) return error_set("out of memory reading %d x %d logits", b, K);
    if (vit_read_logits(m, logits) != LSC_OK) {
        free(logits);
        return LSC_ERR;
    }
    int right = 0;
    for (int i = 0; i < b; i++) {
        const Real *row = logits + (size_t)i * K;
        int best = -1;
        for (int j = 0; j < K; j++)
            if (keep[j] && (best < 0 || row[j] > row[best])) best = j;
        double z = 0;
        for (int j = 0; j < K; j++)
            if (keep[j]) z += exp((double)row[j] - row[best]);
        *sum_loss += log(z) + row[best] - row[labels[i]];
        pred[i] = best;
        right += best == labels[i];
    }
    free(logits);
    return right;
}

int image_prefetch_wanted(const Backend *be) {
    const char *env = getenv("LORASC_IMAGE_PREFETCH");
    if (env && (!strcmp(env, "0") || !strcmp(env, "1"))) return env[0] == '1';
    return strcmp(be->name, "cpu") != 0;
}

/* One evaluation batch to decode: images idx[0..b) of set into x and labels. */
typedef struct EvalBatch {
    const ImageTask *t;
    const ImageSet *set;
    const int *idx;
    int b;
    Real *x;
    int32_t *labels;
} EvalBatch;

static int eval_batch_make(void *p) {
    const EvalBatch *e = p;
    return imagedata_batch(e->set, e->x, e->labels, e->idx, e->b, e->t->mean, e->t->std, NULL, 0, 0);
}

/* The evaluation loop: images idx[0..n) of set (the task's train or test file, or a shift
 * set of the same geometry) in batches of B, labels through to_task[0..n_labels) (every idx
 * is of a task class), optionally corrupted, resized to the model's size; keep NULL: the
 * prediction over every class, else over the classes j with keep[j]; whether each image was
 * classified right (1 or 0) into per_image[0..n) when it is not NULL. A streamed set's next
 * batch is decoded in the background while the model runs on this one where
 * image_prefetch_wanted says so (two sets of batch buffers, used in turn). */
static int evaluate_images(const ImageTask *t, ViT *m, const ImageSet *set, const int32_t *to_task,
                           int n_labels, const uint8_t *keep, const int *idx, int n, int B,
                           const ImageCorruption *corruption, double *accuracy, double *loss,
                           double *per_image) {
    if (B <= 0) return error_set("evaluation batch must be > 0, got %d", B);
    if (image_task_check_vit(t, &m->config) != LSC_OK) return LSC_ERR;
    const int C = t->train.channels, H = t->train.height, W = t->train.width;
    const size_t img = (size_t)C * H * W;
    const int S = m->config.image_size, resize = !same_size(t, S);
    const int ahead = set->files && n > B && image_prefetch_wanted(m->be);
    EvalBatch batch[2] = {{.t = t, .set = set}, {.t = t, .set = set}};
    Real *resized = resize ? malloc(sizeof(Real) * (size_t)C * S * S * (size_t)B) : NULL;
    int32_t *pred = malloc(sizeof(int32_t) * (size_t)B);
    int rc = (resize && !resized) || !pred ? LSC_ERR : LSC_OK;
    for (int k = 0; k < 1 + ahead && rc == LSC_OK; k++) {
        batch[k].x = malloc(sizeof(Real) * img * (size_t)B);
        batch[k].labels = malloc(sizeof(int32_t) * (size_t)B);
        if (!batch[k].x || !batch[k].labels) rc = LSC_ERR;
    }
    if (rc != LSC_OK) rc = error_set("out of memory evaluating on %s", set->name);
    Background worker = {0};
    long correct = 0;
    double sum_loss = 0;
    for (int start = 0, cur = 0; start < n && rc == LSC_OK; start += B, cur = ahead ? 1 - cur : 0) {
        if (stop_requested()) { /* Ctrl-C or a scheduler's signal: the run is to stop now */
            rc = error_set("Stopped by signal %d while evaluating on %s (image %d of %d).",
                           stop_requested(), set->name, start, n);
            break;
        }
        const int b = n - start < B ? n - start : B;
        EvalBatch *e = &batch[cur];
        if (worker.live) { /* this batch, made in the background since the last one */
            if ((rc = background_wait(&worker)) != LSC_OK) break;
        } else {
            e->idx = idx + start, e->b = b;
            if ((rc = eval_batch_make(e)) != LSC_OK) break;
        }
        if (ahead && start + B < n) {
            EvalBatch *next = &batch[1 - cur];
            next->idx = idx + start + B;
            next->b = n - start - B < B ? n - start - B : B;
            background_start(&worker, eval_batch_make, next);
        }
        Real *x = e->x, *y = resize ? resized : x;
        int32_t *labels = e->labels;
        for (int i = 0; i < b; i++)
            labels[i] = labels[i] >= 0 && labels[i] < n_labels ? to_task[labels[i]] : -1;
        for (int i = 0; i < b && corruption && rc == LSC_OK; i++)
            rc = corrupt_image_normalised(x + i * img, C, H, W, t->mean, t->std, corruption->kind,
                                          corruption->severity, corruption->seed,
                                          (uint64_t)(start + i));
        if (rc == LSC_OK && resize) rc = resize_batch(t, y, S, x, b);
        if (rc == LSC_OK) rc = vit_forward(m, y, labels, b);
        if (rc == LSC_OK) {
            const int right = keep ? score_kept(m, keep, labels, b, pred, &sum_loss)
                                   : vit_predict(m, pred, labels);
            if (right < 0) rc = LSC_ERR;
            correct += right;
            if (!keep) sum_loss += m->mean_loss * b;
            for (int i = 0; per_image && right >= 0 && i < b; i++)
                per_image[start + i] = pred[i] == labels[i] ? 1.0 : 0.0;
        }
    }
    background_stop(&worker); /* and a batch being made when the loop stopped on an error */
    for (int k = 0; k < 2; k++) free(batch[k].x), free(batch[k].labels);
    free(resized), free(pred);
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
    return evaluate_images(t, m, split == IMAGE_TEST ? &t->test : &t->train, t->relabel,
                           t->train.n_classes, NULL, t->idx[split], t->n[split], B, corruption,
                           accuracy, loss, per_image);
}

/* 1 when every name is a decimal class number of the task's train file (0..n-1) and none is
 * one of its class names: ImageNet-V2's layout (folders 0..999 for ImageNet's labels). */
static int numbered_classes(const ImageTask *t, const ImageFolderClasses *names) {
    for (int c = 0; c < names->n; c++) {
        const char *s = names->names[c];
        char *end;
        const long v = strtol(s, &end, 10);
        if (!*s || *end || s[0] == '-' || s[0] == '+' || v >= t->train.n_classes ||
            imagefolder_class_index(&t->class_names, s) >= 0)
            return 0;
    }
    return names->n > 0;
}

/* to_task[0..shift's classes): a shift label's task label (-1: not a task class), through the
 * train file's labels (names NULL), the class names, or class numbers (numbered_classes) */
static int shift_labels(const ImageTask *t, const ImageSet *shift, const ImageFolderClasses *names,
                        int32_t *to_task) {
    if (!names) {
        for (int c = 0; c < shift->n_classes; c++) to_task[c] = image_task_label(t, c);
        return LSC_OK;
    }
    if (t->class_names.n == 0)
        return error_set("the shift set %s names its classes, task %s does not (only a folder "
                         "task matches classes by name)", shift->name, t->name);
    const int numbered = numbered_classes(t, names);
    for (int c = 0; c < shift->n_classes; c++)
        to_task[c] = image_task_label(t, numbered ? (int32_t)strtol(names->names[c], NULL, 10)
                                                  : imagefolder_class_index(&t->class_names, names->names[c]));
    return LSC_OK;
}

int image_task_evaluate_shift(const ImageTask *t, ViT *m, const ImageSet *shift,
                              const ImageFolderClasses *shift_names, int B, double *accuracy,
                              double *loss, int *n) {
    *n = 0;
    if (shift->channels != t->train.channels || shift->height != t->train.height ||
        shift->width != t->train.width)
        return error_set("the shift set %s (%d x %d x %d images) does not have the geometry of task %s "
                         "(%d x %d x %d)", shift->name, shift->channels, shift->height, shift->width, t->name,
                         t->train.channels, t->train.height, t->train.width);
    if (shift_names && shift_names->n != shift->n_classes)
        return error_set("the shift set %s has %d classes but %d class names", shift->name,
                         shift->n_classes, shift_names->n);
    const int n_labels = shift->n_classes > 0 ? shift->n_classes : 1;
    int *idx = malloc(sizeof(int) * (size_t)(shift->n > 0 ? shift->n : 1));
    int32_t *to_task = malloc(sizeof(int32_t) * (size_t)n_labels);
    uint8_t *keep = calloc((size_t)t->n_classes, 1);
    int rc = idx && to_task && keep ? shift_labels(t, shift, shift_names, to_task)
                                    : error_set("out of memory evaluating on %s", shift->name);
    int k = 0, kept = 0;
    for (int i = 0; i < shift->n && rc == LSC_OK; i++) {
        const int32_t l = shift->labels[i];
        const int32_t task_label = l >= 0 && l < shift->n_classes ? to_task[l] : -1;
        if (task_label < 0) continue;
        idx[k++] = i;
        kept += !keep[task_label];
        keep[task_label] = 1;
    }
    if (rc == LSC_OK && k == 0)
        rc = error_set("the shift set %s holds no image of task %s's classes", shift->name, t->name);
    else if (rc == LSC_OK) /* every class present: the plain prediction (the same bits) */
        rc = evaluate_images(t, m, shift, to_task, shift->n_classes, kept < t->n_classes ? keep : NULL,
                             idx, k, B, NULL, accuracy, loss, NULL);
    free(idx), free(to_task), free(keep);
    if (rc == LSC_OK) *n = k;
    return rc;
}
