/* The UCI handwritten digits as a distribution shift for MNIST: the 1,797 8x8 images that
 * scikit-learn ships (sklearn/datasets/data/digits.csv.gz, the test set of UCI's "Optical
 * Recognition of Handwritten Digits": other writers, other scanner and preprocessing, the
 * same ten classes), read from the data directory and brought to MNIST's geometry; and
 * `lorasc data fetch digits`, which copies the file from Debian's python3-sklearn (or a
 * folder) into it, checked. Not here: IDX files (imagedata.h), evaluation (core/tasks).
 *
 * The file: gzip-compressed CSV, no header, one image a line: 64 integers 0..16 (the 8x8
 * image row by row, top row first; each value counts the "on" pixels of a 4x4 block of a
 * 32x32 binary bitmap, so higher is more ink, white on black as MNIST) and the label 0..9.
 *
 * The transform to MNIST's geometry (MNIST: each digit size-normalised, aspect kept, to fit
 * a 20x20 box, then placed in a 28x28 field with its intensity centre of mass at the centre,
 * at (14, 14) in pixel indices: measured on MNIST's t10k, every image's centre of mass is
 * within 0.5 pixel of (14, 14)):
 *   1. scale the counts 0..16 to intensities v * 255 / 16 (16 -> 255, as MNIST's 0..255);
 *   2. upsample the 8x8 frame to 20x20 with bilinear interpolation as torch's
 *      F.interpolate(mode = "bilinear", align_corners = False) defines it (output i samples
 *      input (i + 0.5) * 8 / 20 - 0.5, clamped at 0; weights in tenths here), computed in
 *      exact integer arithmetic. The UCI bitmaps are size-normalised with the aspect ratio
 *      kept: every one of the 1,797 images has ink in its top and bottom rows (height 8,
 *      widths 2..8, mostly 6), so the whole square frame maps to MNIST's 20x20 box and the
 *      digit's height becomes 20 as in MNIST;
 *   3. round to the nearest integer, exact halves up: the 20x20 box in uint8 (torch's
 *      float32 F.interpolate gives the same box but for exact halves, which its rounding
 *      error sends either way: 1,659 of the file's 718,800 box pixels, all exact halves, differ
 *      by 1; checked against an exact rational transcription in Python: identical);
 *   4. place the box in a zero 28x28 field at the integer offset (oy, ox) =
 *      (floor(14 - cy + 0.5), floor(14 - cx + 0.5)), (cy, cx) the box's intensity centre of
 *      mass in pixel indices, so the image's centre of mass is within half a pixel of
 *      (14, 14); ink shifted outside the field would be dropped (none is, for the 1,797). */
#ifndef LORASC_DIGITS_H
#define LORASC_DIGITS_H

#include <stddef.h>
#include <stdint.h>

#include "core/data/imagedata.h"

enum { DIGITS_ROWS = 1797, DIGITS_SIDE = 8, DIGITS_BOX = 20, DIGITS_FIELD = 28 };

/* SHA-256 of the decompressed CSV (the same data whatever gzip made the .gz), and of the
 * .gz Debian 12's python3-sklearn 1.2.1 installs (for the record; the check uses the first). */
#define DIGITS_CSV_SHA256 "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"
#define DIGITS_DEBIAN_GZ_SHA256 "46abec6b12486ad9e51943373abcf22bbea1b5a51a1619b361570d8893f1464a"
/* Where Debian's python3-sklearn installs it: the default source of `lorasc data fetch`. */
#define DIGITS_SKLEARN_PATH "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"
/* Its place in the data directory. */
#define DIGITS_DATA_PATH "digits/digits.csv.gz"

/* One 8x8 image of counts (row-major, each 0..16) -> out[28 * 28] by the transform above.
 * *clipped (may be NULL) gets the ink (sum of intensities) that fell outside the field.
 * LSC_ERR for a count above 16 or an image without ink (no centre of mass). */
int digits_to_mnist(const uint8_t counts[DIGITS_SIDE * DIGITS_SIDE], uint8_t out[DIGITS_FIELD * DIGITS_FIELD],
                    long *clipped);

/* Parses the CSV text (len bytes; `what` names it in errors) into counts[cap * 64] and
 * labels[cap]; *n gets the rows. Every line must hold 65 integers (64 in 0..16, a label in
 * 0..9); a bad line is an error naming its number. */
int digits_parse_csv(const char *text, size_t len, const char *what, uint8_t *counts, int32_t *labels,
                     int cap, int *n);

/* Reads a digits.csv(.gz) file into s as 28x28 MNIST-geometry images (name "digits"). With
 * verify, the decompressed text must have DIGITS_CSV_SHA256 and DIGITS_ROWS rows (else an
 * error naming the file, both hashes and the fetch command). */
int digits_load_file(ImageSet *s, const char *path, int verify);
/* The data directory's copy ($LORASC_DATA/digits/digits.csv.gz), verified; missing: one
 * sentence naming the path and `lorasc data fetch digits` (python3-sklearn). */
int digits_load(ImageSet *s);

/* Copies a verified digits.csv.gz into dest_dir/digits/ (dest_dir NULL: the data directory)
 * with a SOURCE.txt in the mirror's format (so `lorasc data fetch digits --from` that
 * directory works too). from NULL: Debian's python3-sklearn file (DIGITS_SKLEARN_PATH);
 * else a folder holding digits/digits.csv.gz (a mirror) or digits.csv.gz (e.g. a
 * scikit-learn install's datasets/data). An existing verified copy is kept. *src_out (may
 * be NULL) gets the file copied from. */
int digits_fetch(const char *from, const char *dest_dir, char *src_out, size_t src_size);

#endif
