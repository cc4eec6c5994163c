/* IDX readers (through zlib's gzread, which reads plain files too), normalisation and seeded
 * augmentation for image batches. See imagedata.h. */
#include "core/data/imagedata.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "core/data/datadir.h"
#include "core/data/digits.h"
#include "core/data/imagefolder.h"
#include "core/base/error.h"
#include "core/base/philox.h"

#define IDX_IMAGES 0x00000803u
#define IDX_LABELS 0x00000801u
/* The most pixel (or label) bytes one IDX file may hold: 2^32, 57x MNIST's training file. */
#define IDX_MAX_BYTES ((uint64_t)1 << 32)

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads an IDX header (magic, then ndim big-endian u32 dims) and the uint8 body into a
 * malloc'd buffer. */
static int read_idx(const char *path, uint32_t magic, int ndim, uint32_t dims[3], uint8_t **data) {
    *data = NULL;
    gzFile f = gzopen(path, "rb");
    if (!f) return error_set("Cannot open %s (missing or unreadable).", path);
    int rc = LSC_ERR;
    unsigned char hdr[16];
    const int hlen = 4 * (1 + ndim);
    if (gzread(f, hdr, 4) != 4) {
        error_set("%s is too short for an IDX header (truncated download?).", path);
        goto done;
    }
    if (be32(hdr) != magic) {
        error_set("%s is not an IDX %s file (magic 0x%08x, expected 0x%08x).", path,
                  magic == IDX_IMAGES ? "image" : "label", be32(hdr), magic);
        goto done;
    }
    if (gzread(f, hdr + 4, (unsigned)(hlen - 4)) != hlen - 4) {
        error_set("%s is too short for an IDX header (truncated download?).", path);
        goto done;
    }
    /* the dimensions multiply in 64 bits with an overflow check, and the buffer grows with
     * the data actually read: a header that claims more than the file holds fails as
     * truncated without allocating what it claims */
    uint64_t total = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = be32(hdr + 4 * (i + 1));
        if (dims[i] == 0 || dims[i] > (1u << 24)) {
            error_set("%s: dimension %d is %u, not a plausible size.", path, i, dims[i]);
            goto done;
        }
        total *= dims[i];
        if (total > IDX_MAX_BYTES) {
            char msg[512];
            int len = snprintf(msg, sizeof msg, "%s: its dimensions (%u", path, dims[0]);
            for (int j = 1; j <= i && len > 0 && (size_t)len < sizeof msg; j++)
                len += snprintf(msg + len, sizeof msg - (size_t)len, " x %u", dims[j]);
            error_set("%s) make more than %llu bytes of pixels, lorasc's limit for an IDX file "
                      "(a corrupt header?).", msg, (unsigned long long)IDX_MAX_BYTES);
            goto done;
        }
    }
    size_t got = 0, cap = 0;
    for (;;) {
        if (got == cap) {
            if (cap == total) break;
            const size_t next = cap == 0 ? 1u << 20 : 2 * cap;
            cap = next < total ? next : (size_t)total;
            uint8_t *grown = realloc(*data, cap ? cap : 1);
            if (!grown) {
                error_set("Out of memory reading %llu bytes from %s.", (unsigned long long)total, path);
                goto done;
            }
            *data = grown;
        }
        const size_t want = cap - got;
        const int r = gzread(f, *data + got, want > (1u << 30) ? (1u << 30) : (unsigned)want);
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (got != total) {
        error_set("%s is truncated: %zu of %llu data bytes.", path, got, (unsigned long long)total);
        goto done;
    }
    rc = LSC_OK;
done:
    gzclose(f);
    if (rc != LSC_OK) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

int imagedata_load_idx(ImageSet *s, const char *images_path, const char *labels_path) {
    memset(s, 0, sizeof *s);
    uint32_t idims[3] = {0}, ldims[3] = {0};
    uint8_t *labels8 = NULL;
    if (read_idx(images_path, IDX_IMAGES, 3, idims, &s->pixels) != LSC_OK) return LSC_ERR;
    if (read_idx(labels_path, IDX_LABELS, 1, ldims, &labels8) != LSC_OK) {
        imagedata_free(s);
        return LSC_ERR;
    }
    if (ldims[0] != idims[0]) {
        free(labels8);
        imagedata_free(s);
        return error_set("%s holds %u labels but %s holds %u images.", labels_path, ldims[0],
                         images_path, idims[0]);
    }
    s->n = (int)idims[0];
    s->channels = 1;
    s->height = (int)idims[1];
    s->width = (int)idims[2];
    s->labels = malloc((size_t)s->n * sizeof(int32_t));
    if (!s->labels) {
        free(labels8);
        imagedata_free(s);
        return error_set("Out of memory for %d labels.", s->n);
    }
    for (int i = 0; i < s->n; i++) {
        s->labels[i] = labels8[i];
        if (s->labels[i] + 1 > s->n_classes) s->n_classes = s->labels[i] + 1;
    }
    free(labels8);
    const char *base = strrchr(images_path, '/');
    snprintf(s->name, sizeof s->name, "%s", base ? base + 1 : images_path);
    return LSC_OK;
}

static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

int imagedata_subset(ImageSet *dst, const ImageSet *src, const int *idx, int n) {
    memset(dst, 0, sizeof *dst);
    const size_t img = (size_t)src->channels * src->height * src->width;
    const size_t cap = (size_t)(n > 0 ? n : 1);
    uint8_t *pixels = src->files ? NULL : malloc(img * cap);
    char **files = src->files ? calloc(cap, sizeof *files) : NULL;
    int32_t *labels = malloc(sizeof(int32_t) * cap);
    *dst = (ImageSet){.n = n, .channels = src->channels, .height = src->height, .width = src->width,
                      .n_classes = src->n_classes, .pixels = pixels, .labels = labels, .files = files,
                      .preprocess = src->preprocess};
    int ok = labels && (src->files ? files != NULL : pixels != NULL);
    for (int i = 0; i < n && ok; i++) {
        LSC_ASSERT(idx[i] >= 0 && idx[i] < src->n);
        if (files) ok = (files[i] = strdup(src->files[idx[i]])) != NULL;
        else memcpy(pixels + (size_t)i * img, src->pixels + (size_t)idx[i] * img, img);
        labels[i] = src->labels[idx[i]];
    }
    if (!ok) {
        imagedata_free(dst);
        return error_set("Out of memory for %d images of %s.", n, src->name);
    }
    snprintf(dst->name, sizeof dst->name, "%s", src->name);
    return LSC_OK;
}

/* "mnist-t10k": MNIST's t10k file alone, cut in two by a fixed Philox permutation (seed
 * MNIST_T10K_SEED): the images at its first MNIST_T10K_TRAIN positions are the "train" file,
 * the rest the "test" file, each in the t10k file's order. */
static int load_t10k_part(ImageSet *s, const char *split) {
    ImageSet all;
    if (imagedata_load(&all, "mnist", "test") != LSC_OK) return LSC_ERR;
    int *perm = malloc(sizeof(int) * (size_t)all.n);
    char *in_train = calloc((size_t)all.n, 1);
    int *idx = malloc(sizeof(int) * (size_t)all.n);
    if (!perm || !in_train || !idx) {
        free(perm), free(in_train), free(idx), imagedata_free(&all);
        return error_set("Out of memory splitting MNIST's t10k file.");
    }
    imagedata_shuffle(perm, all.n, MNIST_T10K_SEED, 0);
    const int n_train = all.n < MNIST_T10K_TRAIN ? all.n : MNIST_T10K_TRAIN;
    for (int i = 0; i < n_train; i++) in_train[perm[i]] = 1;
    const int want = strcmp(split, "train") == 0;
    int n = 0;
    for (int i = 0; i < all.n; i++)
        if (in_train[i] == want) idx[n++] = i;
    const int rc = imagedata_subset(s, &all, idx, n);
    free(perm), free(in_train), free(idx), imagedata_free(&all);
    if (rc == LSC_OK) snprintf(s->name, sizeof s->name, "mnist-t10k");
    return rc;
}

int imagedata_load(ImageSet *s, const char *name, const char *split) {
    memset(s, 0, sizeof *s);
    const int fashion = strcmp(name, "fashion-mnist") == 0;
    const int is_t10k = strcmp(name, "mnist-t10k") == 0, is_digits = strcmp(name, "digits") == 0;
    if (!fashion && !is_t10k && !is_digits && strcmp(name, "mnist") != 0)
        return error_set("Unknown image dataset \"%s\" (known: mnist, mnist-t10k, fashion-mnist, digits).", name);
    const char *prefix = strcmp(split, "train") == 0 ? "train" : strcmp(split, "test") == 0 ? "t10k" : NULL;
    if (!prefix)
        return error_set("Unknown split \"%s\" for %s (use \"train\" or \"test\").", split, name);
    if (is_t10k) return load_t10k_part(s, split);
    if (is_digits) {
        if (strcmp(split, "test") != 0)
            return error_set("The UCI digits (\"digits\") are a test set only: a distribution shift to "
                             "evaluate MNIST models on (eval.shift), not a task to train on.");
        return digits_load(s);
    }
    char img[1024], lab[1024], rel[256];
    /* 1. the data directory: <root>/<name>/<prefix>-images-idx3-ubyte.gz */
    snprintf(rel, sizeof rel, "%s/%s-images-idx3-ubyte.gz", name, prefix);
    if (datadir_path(img, sizeof img, rel) != LSC_OK) return LSC_ERR;
    snprintf(rel, sizeof rel, "%s/%s-labels-idx1-ubyte.gz", name, prefix);
    if (datadir_path(lab, sizeof lab, rel) != LSC_OK) return LSC_ERR;
    char tried[1024];
    snprintf(tried, sizeof tried, "%s", img);
    if (!file_exists(img) && fashion) {
        /* 2. Debian's dataset-fashion-mnist */
        snprintf(img, sizeof img, "/usr/share/datasets/fashion-mnist/%s-images-idx3-ubyte.gz", prefix);
        snprintf(lab, sizeof lab, "/usr/share/datasets/fashion-mnist/%s-labels-idx1-ubyte.gz", prefix);
    }
    if (!file_exists(img)) {
        if (fashion)
            return error_set("Fashion-MNIST %s split not found (tried %s and %s): install it with "
                             "`apt-get install dataset-fashion-mnist`, or put the IDX files in "
                             "$LORASC_DATA/fashion-mnist/.", split, tried, img);
        return error_set("MNIST %s split not found at %s: copy the IDX files "
                         "(%s-images-idx3-ubyte.gz, %s-labels-idx1-ubyte.gz) into "
                         "$LORASC_DATA/mnist/ (default data/mnist/), e.g. from the mirror "
                         "../shared/data/mnist, or run `lorasc data fetch mnist`.",
                         split, tried, prefix, prefix);
    }
    if (imagedata_load_idx(s, img, lab) != LSC_OK) return LSC_ERR;
    snprintf(s->name, sizeof s->name, "%s", name);
    return LSC_OK;
}

void imagedata_free(ImageSet *s) {
    free(s->pixels);
    free(s->labels);
    for (int i = 0; s->files && i < s->n; i++) free(s->files[i]);
    free(s->files);
    memset(s, 0, sizeof *s);
}

/* Streamed sets are decoded this many images at a time (for the statistics). */
enum { STREAM_CHUNK = 256 };

int imagedata_stats(const ImageSet *s, float *mean, float *std) {
    const size_t hw = (size_t)s->height * s->width, img = hw * (size_t)s->channels;
    double sum[4] = {0}, sq[4] = {0};
    uint8_t *chunk = s->files ? malloc(img * STREAM_CHUNK) : NULL;
    if (s->files && !chunk) return error_set("Out of memory decoding %s.", s->name);
    /* image by image, channel by channel, pixel by pixel: the same order for both kinds */
    for (int start = 0; start < s->n; start += STREAM_CHUNK) {
        const int b = s->n - start < STREAM_CHUNK ? s->n - start : STREAM_CHUNK;
        const uint8_t *base = s->pixels + (size_t)start * img;
        if (s->files) {
            if (imagefolder_read_many(s->files + start, NULL, b, s->channels, &s->preprocess, chunk) != LSC_OK) {
                free(chunk);
                return LSC_ERR;
            }
            base = chunk;
        }
        for (int c = 0; c < s->channels && c < 4; c++)
            for (int i = 0; i < b; i++) {
                const uint8_t *p = base + (size_t)i * img + (size_t)c * hw;
                for (size_t j = 0; j < hw; j++) {
                    const double v = p[j] / 255.0;
                    sum[c] += v;
                    sq[c] += v * v;
                }
            }
    }
    free(chunk);
    for (int c = 0; c < s->channels && c < 4; c++) {
        const double cnt = (double)s->n * (double)hw, mu = sum[c] / cnt;
        mean[c] = (float)mu;
        std[c] = (float)sqrt(sq[c] / cnt - mu * mu > 0 ? sq[c] / cnt - mu * mu : 0);
    }
    return LSC_OK;
}

int imagedata_batch(const ImageSet *s, Real *out, int32_t *labels, const int *indices, int B,
                    const float *mean, const float *std, const ImageAugment *aug, uint64_t seed,
                    uint64_t step) {
    const int C = s->channels, H = s->height, W = s->width;
    const size_t hw = (size_t)H * W;
    uint8_t *decoded = NULL; /* a streamed set's images of this batch */
    if (s->files) {
        for (int b = 0; b < B; b++) LSC_ASSERT(indices[b] >= 0 && indices[b] < s->n);
        decoded = malloc((size_t)C * hw * (size_t)(B > 0 ? B : 1));
        if (!decoded) return error_set("Out of memory decoding a batch of %d images of %s.", B, s->name);
        if (imagefolder_read_many(s->files, indices, B, s->channels, &s->preprocess, decoded) != LSC_OK) {
            free(decoded);
            return LSC_ERR;
        }
    }
    const uint64_t stream = philox_stream(RNG_PURPOSE_DATA, 0xA06, (uint32_t)(step >> 32),
                                          (uint32_t)step);
    for (int b = 0; b < B; b++) {
        const int idx = indices[b];
        LSC_ASSERT(idx >= 0 && idx < s->n);
        int dy = 0, dx = 0, flip = 0;
        if (aug && aug->crop_pad > 0) {
            const uint32_t span = 2u * (uint32_t)aug->crop_pad + 1u;
            dy = (int)(philox_u32(seed, stream, 3 * (uint64_t)b) % span) - aug->crop_pad;
            dx = (int)(philox_u32(seed, stream, 3 * (uint64_t)b + 1) % span) - aug->crop_pad;
        }
        if (aug && aug->flip) flip = philox_u32(seed, stream, 3 * (uint64_t)b + 2) & 1u;
        for (int c = 0; c < C; c++) {
            const uint8_t *src = decoded ? decoded + ((size_t)b * C + c) * hw
                                         : s->pixels + ((size_t)idx * C + c) * hw;
            Real *dst = out + ((size_t)b * C + c) * hw;
            const float m = mean ? mean[c] : 0.0f, sd = std ? std[c] : 1.0f;
            /* out(y, x) = padded(y + dy, x + dx): a crop of the image padded with zeros,
             * mirrored in x when flipped */
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    const int sy = y + dy, sx0 = x + dx, sx = flip ? W - 1 - sx0 : sx0;
                    const int in = sy >= 0 && sy < H && sx >= 0 && sx < W;
                    const float v = in ? src[(size_t)sy * W + sx] / 255.0f : 0.0f;
                    dst[(size_t)y * W + x] = (Real)((v - m) / sd);
                }
        }
        if (labels) labels[b] = s->labels[idx];
    }
    free(decoded);
    return LSC_OK;
}

void imagedata_shuffle(int *perm, int n, uint64_t seed, uint64_t epoch) {
    philox_permutation(perm, n, seed, philox_stream(RNG_PURPOSE_DATA, 0xA07, (uint32_t)(epoch >> 32),
                                                    (uint32_t)epoch));
}
