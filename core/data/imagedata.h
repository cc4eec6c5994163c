/* Image datasets from their standard files, and batches for the ViT: MNIST and
 * Fashion-MNIST IDX files (gzip or plain), per-channel normalisation, and seeded
 * augmentation (random crop with zero padding, horizontal flip). Pixels stay uint8 in
 * memory, or, for a set streamed from image files (imagefolder.h: larger than the memory
 * budget), are decoded from its files at each use, to the same bytes; a batch is made on
 * demand. Not here: the robustness corruptions (issue 6's suite),
 * the UCI digits' CSV and transform (digits.h), PNG/JPEG class folders (imagefolder.h). */
#ifndef LORASC_IMAGEDATA_H
#define LORASC_IMAGEDATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/data/image_preprocess.h"
#include "kernels/real.h"

typedef struct ImageSet {
    char name[64];        /* "mnist", "fashion-mnist", or the file name */
    int n;                /* images */
    int channels, height, width;
    int n_classes;        /* max label + 1 */
    uint8_t *pixels;      /* [n, channels, height, width]; NULL for a streamed set */
    int32_t *labels;      /* [n] */
    char **files;         /* a streamed set: [n] image files, decoded (imagefolder_read) at
                           * each use; NULL for a set in memory */
    ImagePreprocess preprocess; /* a folder set's: how its files become its images */
} ImageSet;

/* Reads an IDX image file (magic 0x00000803, [n, H, W] uint8) and its label file
 * (0x00000801, [n] uint8), each gzip-compressed or not. Returns LSC_ERR with a sentence naming
 * the file and what is wrong (missing, not IDX, counts that disagree). */
int imagedata_load_idx(ImageSet *s, const char *images_path, const char *labels_path);

/* A named dataset split: name "mnist" or "fashion-mnist", split "train" or "test" (t10k).
 * Looks in the data directory ($LORASC_DATA, default data/) under <name>/, then for
 * Fashion-MNIST in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).
 * The error names the files it tried and how to get them.
 * "mnist-t10k": MNIST's t10k file alone (where the 60,000 train images are absent, as in a
 * data directory filled from ../shared/data), cut in two by a fixed seeded permutation:
 * "train" = 8,000 of its images, "test" = the other 2,000 (load_t10k_part in imagedata.c).
 * "digits": the UCI handwritten digits in MNIST's geometry, "test" only (core/data/digits.h). */
int imagedata_load(ImageSet *s, const char *name, const char *split);
enum { MNIST_T10K_TRAIN = 8000, MNIST_T10K_SEED = 0x710 };
/* dst = the images idx[0..n) of src, in that order (a copy; of the file names for a streamed
 * set). */
int imagedata_subset(ImageSet *dst, const ImageSet *src, const int *idx, int n);
void imagedata_free(ImageSet *s);

/* Per-channel mean and standard deviation of the pixels in [0, 1] (computed in double, in
 * image order: a streamed set gives its in-memory twin's bits). LSC_ERR when a streamed
 * image does not decode. */
int imagedata_stats(const ImageSet *s, float *mean, float *std);

typedef struct ImageAugment {
    int crop_pad;   /* random crop of the image padded by this many zero pixels (0: none) */
    int flip;       /* 1: horizontal flip with probability 1/2 (not for digits) */
} ImageAugment;

/* Images indices[0..B) into out[B, C, H, W] as (pixel / 255 - mean[c]) / std[c], and their
 * labels into labels[B] (may be NULL). aug may be NULL (no augmentation); its random draws
 * come from Philox (seed, RNG_PURPOSE_DATA, step, image index), so a batch is a pure function
 * of its arguments. A streamed set's images are decoded in parallel (OpenMP); LSC_ERR with
 * the file's sentence when one does not decode. */
int imagedata_batch(const ImageSet *s, Real *out, int32_t *labels, const int *indices, int B,
                     const float *mean, const float *std, const ImageAugment *aug, uint64_t seed,
                     uint64_t step);

/* A seeded permutation of 0..n-1 (Fisher-Yates on Philox draws keyed by seed and epoch). */
void imagedata_shuffle(int *perm, int n, uint64_t seed, uint64_t epoch);

#endif
