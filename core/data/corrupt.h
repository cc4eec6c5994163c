/* A robustness suite in the spirit of ImageNet-C (Hendrycks & Dietterich, ICLR 2019):
 * ten corruptions at five severities on float images, deterministic from a seed (Philox).
 * Parameter tables follow the paper's CIFAR-10-C tables, with spatial sizes (blur radii,
 * displacements) scaled by max(1, min(H, W) / 28); pixel blocks are not scaled. Images are
 * [C, H, W] with values in [0, 1] (corrupt_image) or normalised per channel
 * (corrupt_image_normalised); results are clamped to [0, 1] before renormalising.
 * Not here: the distribution shifts from real data (other datasets) and ImageNet-C's frost,
 * fog, snow and zoom blur, which need texture files or large images. */
#ifndef LORASC_CORRUPT_H
#define LORASC_CORRUPT_H

#include <stdint.h>

#include "kernels/real.h"

typedef enum CorruptKind {
    CORRUPT_GAUSSIAN_NOISE = 0, /* x + N(0, s^2) */
    CORRUPT_SHOT_NOISE,         /* Poisson(x * s) / s */
    CORRUPT_IMPULSE_NOISE,      /* salt and pepper on a fraction s of the values */
    CORRUPT_DEFOCUS_BLUR,       /* anti-aliased disk kernel of radius s */
    CORRUPT_MOTION_BLUR,        /* line kernel of length s at a seeded angle */
    CORRUPT_CONTRAST,           /* (x - mean) * s + mean */
    CORRUPT_BRIGHTNESS,         /* HSV value + s (grey: x + s) */
    CORRUPT_PIXELATE,           /* s x s blocks replaced by their mean */
    CORRUPT_JPEG,               /* 8x8 DCT, JPEG luminance table at quality s, per channel */
    CORRUPT_ELASTIC,            /* smoothed random displacement field, RMS s pixels */
    CORRUPT_NUM
} CorruptKind;

#define CORRUPT_SEVERITIES 5

/* Short names: "gaussian_noise", "shot_noise", ..., "jpeg", "elastic". */
const char *corrupt_name(int kind);
/* Kind for a name from corrupt_name, or -1. */
int corrupt_parse(const char *name);
/* The severity parameter s of the table above (severity 1..5). */
double corrupt_param(int kind, int severity, int height, int width);

/* Corrupts img [C, H, W] (values in [0, 1]) in place at severity 1..5. Random draws come from
 * Philox keyed by (seed, kind, severity, index): the same arguments give the same image, and
 * `index` (e.g. the image's index in its dataset) gives each image its own noise. Returns
 * LSC_ERR with a sentence for a bad kind, severity or shape. */
int corrupt_image(Real *img, int C, int H, int W, int kind, int severity, uint64_t seed,
                  uint64_t index);

/* The same on a normalised image ((x - mean[c]) / std[c]): un-normalise, corrupt, clamp,
 * normalise again. */
int corrupt_image_normalised(Real *img, int C, int H, int W, const float *mean,
                             const float *std, int kind, int severity, uint64_t seed,
                             uint64_t index);

#endif
