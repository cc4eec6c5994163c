/* Image folders: the layout torchvision's ImageFolder reads and ImageNet, its robustness sets
 * (ImageNet-V2 / -Sketch / -R / -A, ImageNet-C's corruption/severity folders) and most image
 * datasets ship in: root/<class>/<image>, one folder per class. PNG (libpng) and JPEG
 * (libjpeg) files are decoded, brought to `channels` (3: RGB; 1: grey, ITU-R 601 luma as
 * PIL's convert("L")), resized and centre-cropped to a square as an ImagePreprocess says
 * (image_preprocess.h: torchvision's rule with torch's bilinear by default, or a Hugging Face
 * image processor's PIL resampling, e.g. CLIP's bicubic). Classes are the sub-folders in byte order of their
 * names (ImageFolder's order, so label i is the i-th WordNet id for ImageNet), any number of
 * them; images within a class in byte order of their file names; other files are skipped.
 * A set whose decoded bytes fit the memory budget (imagefolder_memory_budget) is decoded into
 * memory as uint8 (in parallel, OpenMP); a larger one is streamed: the ImageSet keeps its
 * file names and every use decodes them again, to the same bytes (ImageNet's 1.28 M training
 * images at 224 x 224 x 3 are 193 GB decoded). Also here: ImageNet's validation layout (flat
 * images listed with their classes in LOC_val_solution.csv). Tasks on these sets:
 * image_task.h. */
#ifndef LORASC_IMAGEFOLDER_H
#define LORASC_IMAGEFOLDER_H

#include "core/data/imagedata.h"

typedef struct ImageFolderClasses {
    int n;          /* classes (the sub-folders) */
    char **names;   /* [n] their names, in label order: byte order (strcmp's) */
} ImageFolderClasses;

/* Loads every image under root/<class>/ into s (channels 1 or 3, pp->crop square; name = root's
 * last component; in memory or streamed, above) and the class names into classes (may be
 * NULL). LSC_ERR with one sentence naming the folder or file and what is wrong: root missing
 * or without class folders, a class folder without images, a file that does not decode (for
 * a streamed set: when it is first used), sizes out of range. */
int imagefolder_load(ImageSet *s, ImageFolderClasses *classes, const char *root, int channels,
                     const ImagePreprocess *pp);
void imagefolder_classes_free(ImageFolderClasses *c);

/* A folder's name: root's last path component, trailing slashes ignored. */
void imagefolder_name(char *out, size_t cap, const char *root);

/* The label of class `name` (its position in classes, found by binary search), or -1. */
int imagefolder_class_index(const ImageFolderClasses *classes, const char *name);

/* 1 when root holds at least one sub-folder (the class-folder layout), else 0. */
int imagefolder_has_classes(const char *root);

/* ImageNet's validation layout, as the ILSVRC data ships on Kaggle: the images flat in dir
 * (ILSVRC2012_val_00000001.JPEG, ...) and csv (LOC_val_solution.csv) listing each ImageId with
 * its PredictionString, whose first token is the WordNet id of its class. Labels are the
 * positions of those ids in classes (the training folder's, sorted: ImageFolder's labels), so
 * the two sets share one label space; images in the CSV's row order. LSC_ERR with the file
 * and line for a malformed row, a class not in classes, an image not found. */
int imagefolder_load_solution(ImageSet *s, const char *dir, const char *csv,
                              const ImageFolderClasses *classes, int channels,
                              const ImagePreprocess *pp);

/* The bytes a set may take in memory before it is streamed: $LORASC_IMAGE_MEMORY_MB
 * mebibytes (0: stream every set), default 4096. */
size_t imagefolder_memory_budget(void);

/* One image file as a set holds it: decoded, resized and centre-cropped into
 * out[channels, pp->crop, pp->crop]. */
int imagefolder_read(const char *path, int channels, const ImagePreprocess *pp, uint8_t *out);
/* paths[idx[i]] (idx NULL: paths[i]) for i in 0..n into out[n, channels, pp->crop, pp->crop],
 * in parallel (OpenMP); on a failure, the sentence of the first image that fails. */
int imagefolder_read_many(char *const *paths, const int *idx, int n, int channels,
                          const ImagePreprocess *pp, uint8_t *out);

/* One image file decoded to channels (1 or 3) x h x w uint8 (malloc'd, *h, *w set): PNG or
 * JPEG by content, not by name. LSC_ERR with a sentence naming the file otherwise. */
int imagefolder_decode(const char *path, int channels, uint8_t **pixels, int *h, int *w);

#endif
