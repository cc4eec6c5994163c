/* An image classification task: a dataset's train file split into train and validation by a
 * seeded shuffle, its test file as test, restricted to a class subset relabelled 0..k-1 and
 * optionally capped in size; batches of a split; evaluation of a ViT on a split, clean or
 * under one corruption of core/data/corrupt.h at one severity, or on a shift set (another
 * image set of the same classes). Not here: the image files (core/data/imagedata.h),
 * training on a task (core/tasks/image_train.h). */
#ifndef LORASC_IMAGE_TASK_H
#define LORASC_IMAGE_TASK_H

#include <stdint.h>

#include "core/data/imagedata.h"
#include "core/data/imagefolder.h"
#include "core/model/vit.h"

enum { IMAGE_TRAIN = 0, IMAGE_VAL = 1, IMAGE_TEST = 2, IMAGE_NUM_SPLITS = 3 };

typedef struct ImageTaskOptions {
    double val;                        /* fraction in (0, 1) of the train file's task images
                                        * held out as validation */
    long max[IMAGE_NUM_SPLITS];        /* cap per split, 0 = none */
    uint64_t seed;                     /* the train/val shuffle and the test file's order */
    /* > 0: normalise by these per-channel statistics (a checkpoint's preprocessing, e.g.
     * CLIP's) instead of the train file's own; n_norm must equal the images' channels */
    int n_norm;
    float mean[4], std[4];
} ImageTaskOptions;

/* val 0.1, no caps, seed 1, the train file's statistics. */
ImageTaskOptions image_task_default_options(void);

typedef struct ImageTask {
    ImageSet train, test;              /* the two files */
    int *idx[IMAGE_NUM_SPLITS];        /* indices into train (TRAIN, VAL) or test (TEST) */
    int n[IMAGE_NUM_SPLITS];           /* images per split */
    int32_t *relabel;                  /* [train.n_classes]: original label -> task label, -1
                                        * if not in the task (image_task_label) */
    int n_classes;                     /* k; 0 before load and after free */
    float mean[4], std[4];             /* normalisation: the whole train file's statistics, or
                                        * the options' */
    ImageFolderClasses class_names;    /* the train file's class names (a folder task), or none */
    char name[128];
} ImageTask;

/* Loads dataset `name`'s train and test files (imagedata_load) and builds the task:
 * classes[0..n_classes) are original labels (classes NULL: every class of the train file, in
 * order), at least 2, each once. The val split is the first round(val * total) images of a
 * seeded shuffle of the train file's task images, train the rest; each split keeps at most
 * max[split] images (the first ones of that order); the test split follows a seeded shuffle
 * of the test file. On failure t is left empty (image_task_free is still safe). */
int image_task_load(ImageTask *t, const char *name, const int *classes, int n_classes,
                    const ImageTaskOptions *opt);
/* An image task on class folders (core/data/imagefolder.h) decoded with `channels` (1 or 3)
 * and brought to pp->crop x pp->crop as pp says (image_preprocess.h): root/train/<class>/ is
 * the train file; the test file is root/val/<class>/
 * (else root/test/<class>/), its classes matched to the train file's by name, or ImageNet's
 * validation layout: root/val/ holding the images flat, listed in root/LOC_val_solution.csv
 * (imagefolder_load_solution). Every class of the train file, in name order. */
int image_task_load_folder(ImageTask *t, const char *root, int channels,
                           const ImagePreprocess *pp, const ImageTaskOptions *opt);
/* The same from two sets already in memory; t takes them over (success or not). */
int image_task_build(ImageTask *t, const char *name, ImageSet *train, ImageSet *test,
                     const int *classes, int n_classes, const ImageTaskOptions *opt);
void image_task_free(ImageTask *t);

/* The task label of an original label of the train file: 0..n_classes-1, or -1 when the
 * label is not one of the task's (or out of range). */
int image_task_label(const ImageTask *t, int32_t original);

/* "train", "val", "test". */
const char *image_task_split_name(int split);
/* LSC_OK when a ViT of config c reads this task's images (same channels; any image size: the
 * batches are resized to the model's, see image_task_batch_sized) and predicts its classes;
 * else LSC_ERR with a sentence giving both shapes. */
int image_task_check_vit(const ImageTask *t, const ViTConfig *c);

/* Images at `positions` of a split (0..n[split]) into out[B, C, H, W] (normalised by the
 * train file's statistics) and their task labels into labels[B] (may be NULL); aug, seed and
 * step as imagedata_batch's. */
int image_task_batch(const ImageTask *t, int split, const int *positions, int B, Real *out,
                     int32_t *labels, const ImageAugment *aug, uint64_t seed, uint64_t step);
/* The same at size x size (a model's image size): the normalised, augmented images resized
 * with torch's bilinear (core/data/image_resize.h) when size differs from theirs; out is
 * [B, C, size, size]. */
int image_task_batch_sized(const ImageTask *t, int split, const int *positions, int B, int size,
                           Real *out, int32_t *labels, const ImageAugment *aug, uint64_t seed,
                           uint64_t step);

/* A corruption for evaluation: kind (CorruptKind), severity 1..5, and the seed of its noise. */
typedef struct ImageCorruption {
    int kind;
    int severity;
    uint64_t seed;
} ImageCorruption;

/* Whether a streamed set's next batch is decoded on a thread of its own while backend be
 * computes on this one (the sampler's prefetch, the evaluation loop): on a GPU yes, the host's
 * cores being idle meanwhile; on the CPU no, its cores being the computation's (two OpenMP
 * teams would contend for them). LORASC_IMAGE_PREFETCH=1 or 0 decides instead. */
int image_prefetch_wanted(const Backend *be);

/* Accuracy and mean loss of m on every image of a split once, in batches of B, at m's image
 * size. corruption NULL: clean images; else image i of the split gets the noise of (seed, kind,
 * severity, i) at the data's own size (before any resize), so every model sees the same
 * corrupted set. A stop request (core/base/stop.h) ends it between two batches with an error
 * that says so. */
int image_task_evaluate(const ImageTask *t, ViT *m, int split, int B,
                        const ImageCorruption *corruption, double *accuracy, double *loss);
/* image_task_evaluate, and whether each image was classified right (1 or 0) into
 * per_image[0 .. the split's count) when per_image is not NULL. */
int image_task_evaluate_images(const ImageTask *t, ViT *m, int split, int B,
                               const ImageCorruption *corruption, double *accuracy, double *loss,
                               double *per_image);

/* Accuracy and mean loss of m on a distribution shift: every image of `shift` (e.g. the UCI
 * digits, core/data/digits.h, for an MNIST task; ImageNet-V2 / -Sketch / -R / -A folders for
 * an ImageNet task) whose class is one of the task's, relabelled as the task's and normalised
 * as its test images are, in batches of B at m's image size; *n gets how many images that is.
 * shift_names NULL: the shift set's labels are the train file's; else they are the positions
 * in shift_names of its class names, matched to the task's (a folder task) by name, or, when
 * every name is a number 0..K-1 and none is a task class name, by number: the train file's
 * label (ImageNet-V2 ships its classes as folders 0..999, ImageNet's label order). The
 * prediction and the loss are over the logits of the task classes the shift set holds:
 * ImageNet-R's and -A's protocol for their 200-class subsets of a 1,000-way model (nothing
 * changes when it holds every task class). The shift set must have the task's image geometry
 * and hold at least one of its classes (else one sentence naming both). */
int image_task_evaluate_shift(const ImageTask *t, ViT *m, const ImageSet *shift,
                              const ImageFolderClasses *shift_names, int B, double *accuracy,
                              double *loss, int *n);

#endif
