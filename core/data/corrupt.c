/* The ImageNet-C-style corruptions of corrupt.h: per-image, per-channel CPU code on small
 * images (no backend: evaluation corrupts host batches before the forward pass). */
#include "core/data/corrupt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/base/philox.h"

static const char *const NAMES[CORRUPT_NUM] = {
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "motion_blur",
    "contrast",       "brightness", "pixelate",      "jpeg",         "elastic"};

/* Severity tables (CIFAR-10-C's where it has one; spatial ones in pixels of a 28 x 28
 * image, scaled by min(H, W) / 28). */
static const double TABLE[CORRUPT_NUM][CORRUPT_SEVERITIES] = {
    {0.04, 0.06, 0.08, 0.09, 0.10},  /* gaussian: noise std */
    {500, 250, 100, 75, 50},         /* shot: photons per unit intensity */
    {0.01, 0.02, 0.03, 0.05, 0.07},  /* impulse: fraction of values hit */
    {0.6, 0.9, 1.2, 1.6, 2.0},       /* defocus: disk radius (px, scaled) */
    {1.5, 2.0, 2.5, 3.0, 4.0},       /* motion: kernel length (px, scaled) */
    {0.75, 0.5, 0.4, 0.3, 0.15},     /* contrast: factor */
    {0.05, 0.1, 0.15, 0.2, 0.3},     /* brightness: added to HSV value */
    {2, 3, 4, 5, 6},                 /* pixelate: block side (px, not scaled) */
    {65, 45, 30, 20, 10},            /* jpeg: quality */
    {0.5, 0.75, 1.0, 1.25, 1.5},     /* elastic: RMS displacement (px, scaled) */
};

const char *corrupt_name(int kind) {
    return kind >= 0 && kind < CORRUPT_NUM ? NAMES[kind] : "?";
}

int corrupt_parse(const char *name) {
    for (int k = 0; k < CORRUPT_NUM; k++)
        if (strcmp(name, NAMES[k]) == 0) return k;
    return -1;
}

/* Spatial sizes grow with the image above 28 px; below it they stay as for 28 px (a blur
 * radius under one pixel would do nothing). */
static double size_scale(int H, int W) {
    const double s = (H < W ? H : W) / 28.0;
    return s > 1 ? s : 1;
}

static int spatial(int kind) {
    return kind == CORRUPT_DEFOCUS_BLUR || kind == CORRUPT_MOTION_BLUR || kind == CORRUPT_ELASTIC;
}

double corrupt_param(int kind, int severity, int height, int width) {
    if (kind < 0 || kind >= CORRUPT_NUM || severity < 1 || severity > CORRUPT_SEVERITIES) return 0;
    const double p = TABLE[kind][severity - 1];
    return spatial(kind) ? p * size_scale(height, width) : p;
}

/* Random draws ------------------------------------------------------------------------- */
typedef struct Rng {
    uint64_t seed, stream, next;
} Rng;

static Rng rng_for(uint64_t seed, int kind, int severity, uint64_t index) {
    /* the image index is folded into the seed (splitmix64's finaliser), so any index works */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (index + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (Rng){z, philox_stream(RNG_PURPOSE_DATA, 0xC0u + (uint32_t)kind, (uint32_t)severity, 0),
                 0};
}

static double rng_unit(Rng *r) { /* [0, 1), 24 bits */
    return (double)(philox_u32(r->seed, r->stream, r->next++) >> 8) * (1.0 / 16777216.0);
}

static double rng_normal(Rng *r) {
    const double u1 = 1.0 - rng_unit(r), u2 = rng_unit(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Poisson(lambda) by inversion of the CDF (lambda here is at most a few hundred). */
static double rng_poisson(Rng *r, double lambda) {
    if (lambda <= 0) return 0;
    if (lambda > 200) { /* normal approximation: exp(-lambda) underflows the inversion */
        const double v = lambda + sqrt(lambda) * rng_normal(r);
        return v < 0 ? 0 : floor(v + 0.5);
    }
    const double u = rng_unit(r);
    double p = exp(-lambda), F = p;
    int k = 0;
    while (u > F && k < 10000) {
        k++;
        p *= lambda / k;
        F += p;
    }
    return k;
}

static Real clamp01(double v) { return (Real)(v < 0 ? 0 : v > 1 ? 1 : v); }

/* Bilinear sample of plane [H, W] at (y, x), coordinates clamped to the image (edge mode). */
static double sample(const Real *p, int H, int W, double y, double x) {
    if (y < 0) y = 0;
    if (y > H - 1) y = H - 1;
    if (x < 0) x = 0;
    if (x > W - 1) x = W - 1;
    const int y0 = (int)floor(y), x0 = (int)floor(x);
    const int y1 = y0 + 1 < H ? y0 + 1 : y0, x1 = x0 + 1 < W ? x0 + 1 : x0;
    const double fy = y - y0, fx = x - x0;
    return (1 - fy) * ((1 - fx) * p[y0 * W + x0] + fx * p[y0 * W + x1]) +
           fy * ((1 - fx) * p[y1 * W + x0] + fx * p[y1 * W + x1]);
}

/* The corruptions ------------------------------------------------------------------------ */
static void gaussian_noise(Real *img, size_t n, double s, Rng *r) {
    for (size_t i = 0; i < n; i++) img[i] = clamp01(img[i] + s * rng_normal(r));
}

static void shot_noise(Real *img, size_t n, double s, Rng *r) {
    for (size_t i = 0; i < n; i++) img[i] = clamp01(rng_poisson(r, img[i] * s) / s);
}

static void impulse_noise(Real *img, size_t n, double s, Rng *r) {
    for (size_t i = 0; i < n; i++) {
        const double u = rng_unit(r);
        if (u < s) img[i] = u < s / 2 ? 0 : 1; /* pepper or salt, half each */
    }
}

/* Convolution of every plane with a normalised kernel k[(2R+1)^2] (edge mode). */
static int convolve(Real *img, int C, int H, int W, const double *k, int R) {
    Real *src = malloc(sizeof(Real) * (size_t)H * W);
    if (!src) return error_set("Out of memory for a %d x %d blur.", H, W);
    const int K = 2 * R + 1;
    for (int c = 0; c < C; c++) {
        Real *p = img + (size_t)c * H * W;
        memcpy(src, p, sizeof(Real) * (size_t)H * W);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double acc = 0;
                for (int dy = -R; dy <= R; dy++)
                    for (int dx = -R; dx <= R; dx++) {
                        const double w = k[(dy + R) * K + dx + R];
                        if (w == 0) continue;
                        int yy = y + dy, xx = x + dx;
                        yy = yy < 0 ? 0 : yy >= H ? H - 1 : yy;
                        xx = xx < 0 ? 0 : xx >= W ? W - 1 : xx;
                        acc += w * src[yy * W + xx];
                    }
                p[y * W + x] = clamp01(acc);
            }
    }
    free(src);
    return LSC_OK;
}

static int defocus_blur(Real *img, int C, int H, int W, double radius) {
    const int R = (int)ceil(radius + 0.5);
    const int K = 2 * R + 1;
    double *k = calloc((size_t)K * K, sizeof(double));
    if (!k) return error_set("Out of memory for a blur kernel.");
    double sum = 0;
    for (int dy = -R; dy <= R; dy++)
        for (int dx = -R; dx <= R; dx++) {
            /* anti-aliased disk: coverage ramps from 1 to 0 across the rim */
            const double d = sqrt((double)(dx * dx + dy * dy));
            double w = radius + 0.5 - d;
            w = w < 0 ? 0 : w > 1 ? 1 : w;
            k[(dy + R) * K + dx + R] = w;
            sum += w;
        }
    for (int i = 0; i < K * K; i++) k[i] /= sum;
    const int rc = convolve(img, C, H, W, k, R);
    free(k);
    return rc;
}

static int motion_blur(Real *img, int C, int H, int W, double length, Rng *r) {
    const double angle = (rng_unit(r) - 0.5) * M_PI / 2; /* within +-45 degrees */
    const double uy = sin(angle), ux = cos(angle);
    const int n = 2 * (int)ceil(length) + 1; /* samples along the streak, one-sided as Wand's */
    Real *src = malloc(sizeof(Real) * (size_t)H * W);
    if (!src) return error_set("Out of memory for a %d x %d blur.", H, W);
    for (int c = 0; c < C; c++) {
        Real *p = img + (size_t)c * H * W;
        memcpy(src, p, sizeof(Real) * (size_t)H * W);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double acc = 0;
                for (int i = 0; i < n; i++) {
                    const double t = length * i / (n - 1);
                    acc += sample(src, H, W, y - t * uy, x - t * ux);
                }
                p[y * W + x] = clamp01(acc / n);
            }
    }
    free(src);
    return LSC_OK;
}

static void contrast(Real *img, size_t n, double s) {
    double mean = 0;
    for (size_t i = 0; i < n; i++) mean += img[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) img[i] = clamp01((img[i] - mean) * s + mean);
}

/* HSV value + s, hue and saturation kept: every channel scales by V' / V. */
static void brightness(Real *img, int C, int H, int W, double s) {
    const size_t hw = (size_t)H * W;
    for (size_t j = 0; j < hw; j++) {
        double v = 0;
        for (int c = 0; c < C; c++) v = img[c * hw + j] > v ? img[c * hw + j] : v;
        const double v2 = v + s > 1 ? 1 : v + s;
        for (int c = 0; c < C; c++)
            img[c * hw + j] = v > 0 ? clamp01(img[c * hw + j] * v2 / v) : clamp01(v2);
    }
}

static void pixelate(Real *img, int C, int H, int W, int block) {
    for (int c = 0; c < C; c++) {
        Real *p = img + (size_t)c * H * W;
        for (int by = 0; by < H; by += block)
            for (int bx = 0; bx < W; bx += block) {
                const int ey = by + block < H ? by + block : H, ex = bx + block < W ? bx + block : W;
                double sum = 0;
                for (int y = by; y < ey; y++)
                    for (int x = bx; x < ex; x++) sum += p[y * W + x];
                const Real m = (Real)(sum / ((ey - by) * (ex - bx)));
                for (int y = by; y < ey; y++)
                    for (int x = bx; x < ex; x++) p[y * W + x] = m;
            }
    }
}

/* JPEG's luminance quantisation table (ITU T.81, Annex K) and IJG's quality scaling. */
static const int JPEG_LUMA[64] = {
    16, 11, 10, 16, 24,  40,  51,  61,  12, 12, 14, 19, 26,  58,  60,  55,
    14, 13, 16, 24, 40,  57,  69,  56,  14, 17, 22, 29, 51,  87,  80,  62,
    18, 22, 37, 56, 68,  109, 103, 77,  24, 35, 55, 64, 81,  104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99};

/* Each 8x8 block (edge blocks padded by replicating the last row/column) of 255-scaled,
 * level-shifted values goes through DCT-II, rounding to multiples of the quantiser, and the
 * inverse DCT; only the in-image part is written back. */
static void jpeg(Real *img, int C, int H, int W, double quality) {
    const double q = quality < 1 ? 1 : quality > 100 ? 100 : quality;
    const double scale = q < 50 ? 5000.0 / q : 200.0 - 2.0 * q;
    double Q[64], cosv[8][8];
    for (int i = 0; i < 64; i++) {
        double v = floor((JPEG_LUMA[i] * scale + 50.0) / 100.0);
        Q[i] = v < 1 ? 1 : v > 255 ? 255 : v;
    }
    for (int x = 0; x < 8; x++)
        for (int u = 0; u < 8; u++)
            cosv[x][u] = cos((2 * x + 1) * u * M_PI / 16) * (u == 0 ? sqrt(0.125) : 0.5);
    for (int c = 0; c < C; c++) {
        Real *p = img + (size_t)c * H * W;
        for (int by = 0; by < H; by += 8)
            for (int bx = 0; bx < W; bx += 8) {
                double blk[64], coef[64], tmp[64];
                for (int y = 0; y < 8; y++)
                    for (int x = 0; x < 8; x++) {
                        const int yy = by + y < H ? by + y : H - 1, xx = bx + x < W ? bx + x : W - 1;
                        blk[y * 8 + x] = p[yy * W + xx] * 255.0 - 128.0;
                    }
                /* separable orthonormal DCT: rows then columns */
                for (int y = 0; y < 8; y++)
                    for (int u = 0; u < 8; u++) {
                        double s = 0;
                        for (int x = 0; x < 8; x++) s += cosv[x][u] * blk[y * 8 + x];
                        tmp[y * 8 + u] = s;
                    }
                for (int v = 0; v < 8; v++)
                    for (int u = 0; u < 8; u++) {
                        double s = 0;
                        for (int y = 0; y < 8; y++) s += cosv[y][v] * tmp[y * 8 + u];
                        coef[v * 8 + u] = Q[v * 8 + u] * floor(s / Q[v * 8 + u] + 0.5);
                    }
                for (int v = 0; v < 8; v++)
                    for (int x = 0; x < 8; x++) {
                        double s = 0;
                        for (int u = 0; u < 8; u++) s += cosv[x][u] * coef[v * 8 + u];
                        tmp[v * 8 + x] = s;
                    }
                for (int y = 0; y < 8 && by + y < H; y++)
                    for (int x = 0; x < 8 && bx + x < W; x++) {
                        double s = 0;
                        for (int v = 0; v < 8; v++) s += cosv[y][v] * tmp[v * 8 + x];
                        p[(by + y) * W + bx + x] = clamp01((s + 128.0) / 255.0);
                    }
            }
    }
}

/* One pass of a 1-D kernel k[2R+1] along rows (dx = 1) or columns (dx = 0) of src [H, W]
 * into dst, edge mode (indices clamped to the image). */
static void smooth_pass(double *dst, const double *src, int H, int W, const double *k, int R,
                        int dx) {
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double s = 0;
            for (int i = -R; i <= R; i++) {
                const int n = dx ? W : H, j = (dx ? x : y) + i, jc = j < 0 ? 0 : j >= n ? n - 1 : j;
                s += k[i + R] * src[dx ? y * W + jc : jc * W + x];
            }
            dst[y * W + x] = s;
        }
}

/* Separable Gaussian smoothing of a field [H, W] (edge mode), in place. */
static void smooth(double *f, double *tmp, int H, int W, double sigma) {
    const int R = (int)ceil(3 * sigma);
    double k[64];
    const int Rc = R > 31 ? 31 : R;
    double sum = 0;
    for (int i = -Rc; i <= Rc; i++) sum += k[i + Rc] = exp(-0.5 * i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * Rc; i++) k[i] /= sum;
    smooth_pass(tmp, f, H, W, k, Rc, 1);
    smooth_pass(f, tmp, H, W, k, Rc, 0);
}

/* A displacement field of uniform(-1, 1) draws smoothed by a Gaussian (sigma = H/10), then
 * scaled to RMS displacement s; every channel is resampled bilinearly at (y + dy, x + dx). */
static int elastic(Real *img, int C, int H, int W, double s, Rng *r) {
    const size_t hw = (size_t)H * W;
    double *f = malloc(sizeof(double) * 3 * hw);
    Real *src = malloc(sizeof(Real) * hw);
    if (!f || !src) {
        free(f);
        free(src);
        return error_set("Out of memory for a %d x %d displacement field.", H, W);
    }
    double *fy = f, *fx = f + hw, *tmp = f + 2 * hw;
    for (size_t j = 0; j < 2 * hw; j++) f[j] = 2 * rng_unit(r) - 1;
    const double sigma = (H < W ? H : W) / 10.0;
    smooth(fy, tmp, H, W, sigma);
    smooth(fx, tmp, H, W, sigma);
    double ms = 0;
    for (size_t j = 0; j < hw; j++) ms += fy[j] * fy[j] + fx[j] * fx[j];
    const double norm = ms > 0 ? s / sqrt(ms / (double)hw) : 0;
    for (int c = 0; c < C; c++) {
        Real *p = img + (size_t)c * hw;
        memcpy(src, p, sizeof(Real) * hw);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                const size_t j = (size_t)y * W + x;
                p[j] = clamp01(sample(src, H, W, y + norm * fy[j], x + norm * fx[j]));
            }
    }
    free(f);
    free(src);
    return LSC_OK;
}

int corrupt_image(Real *img, int C, int H, int W, int kind, int severity, uint64_t seed,
                  uint64_t index) {
    if (kind < 0 || kind >= CORRUPT_NUM)
        return error_set("Unknown corruption %d (valid: 0..%d, gaussian_noise..elastic).", kind,
                         CORRUPT_NUM - 1);
    if (severity < 1 || severity > CORRUPT_SEVERITIES)
        return error_set("Corruption severity %d is out of range (valid: 1..%d).", severity,
                         CORRUPT_SEVERITIES);
    if (C <= 0 || H <= 0 || W <= 0)
        return error_set("Cannot corrupt an image of shape [%d, %d, %d].", C, H, W);
    const double s = corrupt_param(kind, severity, H, W);
    const size_t n = (size_t)C * H * W;
    Rng r = rng_for(seed, kind, severity, index);
    switch ((CorruptKind)kind) {
    case CORRUPT_GAUSSIAN_NOISE: gaussian_noise(img, n, s, &r); break;
    case CORRUPT_SHOT_NOISE: shot_noise(img, n, s, &r); break;
    case CORRUPT_IMPULSE_NOISE: impulse_noise(img, n, s, &r); break;
    case CORRUPT_DEFOCUS_BLUR: return defocus_blur(img, C, H, W, s);
    case CORRUPT_MOTION_BLUR: return motion_blur(img, C, H, W, s, &r);
    case CORRUPT_CONTRAST: contrast(img, n, s); break;
    case CORRUPT_BRIGHTNESS: brightness(img, C, H, W, s); break;
    case CORRUPT_PIXELATE: pixelate(img, C, H, W, (int)s); break;
    case CORRUPT_JPEG: jpeg(img, C, H, W, s); break;
    case CORRUPT_ELASTIC: return elastic(img, C, H, W, s, &r);
    case CORRUPT_NUM: break;
    }
    return LSC_OK;
}

int corrupt_image_normalised(Real *img, int C, int H, int W, const float *mean,
                             const float *std, int kind, int severity, uint64_t seed,
                             uint64_t index) {
    const size_t hw = (size_t)H * W;
    for (int c = 0; c < C; c++)
        for (size_t j = 0; j < hw; j++)
            img[c * hw + j] = clamp01(img[c * hw + j] * std[c] + mean[c]);
    if (corrupt_image(img, C, H, W, kind, severity, seed, index) != LSC_OK) return LSC_ERR;
    for (int c = 0; c < C; c++)
        for (size_t j = 0; j < hw; j++) img[c * hw + j] = (Real)((img[c * hw + j] - mean[c]) / std[c]);
    return LSC_OK;
}
