/* Resize and centre crop of decoded images: torchvision's rule with torch's bilinear, and
 * PIL's resampling as Hugging Face image processors use it. See image_preprocess.h. */
#include "core/data/image_preprocess.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/data/image_resize.h"

ImagePreprocess image_preprocess_default(int size) {
    return (ImagePreprocess){.resample = RESAMPLE_TORCH_BILINEAR, .shortest_edge = size,
                             .height = 0, .width = 0, .crop = size, .crop_floor = 0};
}

/* The size an image of h x w is resized to. */
static void resized_size(const ImagePreprocess *p, int h, int w, int *oh, int *ow) {
    if (p->shortest_edge <= 0) {
        *oh = p->height, *ow = p->width;
    } else if (h <= w) {
        *oh = p->shortest_edge, *ow = (int)((long long)p->shortest_edge * w / h);
    } else {
        *ow = p->shortest_edge, *oh = (int)((long long)p->shortest_edge * h / w);
    }
}

int image_preprocess_check(const ImagePreprocess *p) {
    const int in_range = p->crop >= 1 && p->crop <= 4096 &&
                         (p->shortest_edge > 0 ? p->shortest_edge <= 4096
                                               : p->height >= 1 && p->height <= 4096 &&
                                                     p->width >= 1 && p->width <= 4096);
    if (!in_range) return error_set("Image size %d (resize %d, %d x %d) is outside 1..4096.",
                                    p->crop, p->shortest_edge, p->height, p->width);
    if (p->resample < RESAMPLE_TORCH_BILINEAR || p->resample > RESAMPLE_PIL_BICUBIC)
        return error_set("Unknown resampling filter %d.", (int)p->resample);
    if (p->shortest_edge > 0 ? p->shortest_edge < p->crop : p->height < p->crop || p->width < p->crop)
        return error_set("A resize to %s %d x %d does not cover the %d x %d centre crop.",
                         p->shortest_edge > 0 ? "a shorter side of" : "",
                         p->shortest_edge > 0 ? p->shortest_edge : p->height,
                         p->shortest_edge > 0 ? p->shortest_edge : p->width, p->crop, p->crop);
    return LSC_OK;
}

/* ---- PIL's resampling (Pillow's libImaging/Resample.c, 8 bits per channel) ---- */

enum { PIL_PRECISION_BITS = 32 - 8 - 2 };

static double pil_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double pil_bicubic(double x) { /* Keys' cubic with a = -0.5 */
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* For each output position, the first input index and count (bounds[2 out]) and ksize fixed-
 * point weights (kk[out * ksize]), as Pillow's precompute_coeffs and normalize_coeffs_8bpc.
 * Contraction into fused multiply-adds is off: the weights must round as Pillow's do. */
__attribute__((optimize("fp-contract=off")))
static int pil_coeffs(int in_size, int out_size, ImageResample resample, int **bounds, int32_t **kk,
                      int *ksize) {
    const int bicubic = resample == RESAMPLE_PIL_BICUBIC;
    const double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = (bicubic ? 2.0 : 1.0) * filterscale;
    const int k = (int)ceil(support) * 2 + 1;
    double *w = malloc(sizeof(double) * (size_t)k);
    *bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    *kk = malloc(sizeof(int32_t) * (size_t)out_size * (size_t)k);
    if (!w || !*bounds || !*kk) {
        free(w), free(*bounds), free(*kk);
        *bounds = NULL, *kk = NULL;
        return error_set("Out of memory resizing %d to %d pixels.", in_size, out_size);
    }
    for (int xx = 0; xx < out_size; xx++) {
        const double center = (xx + 0.5) * scale, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            const double t = (x + xmin - center + 0.5) * ss;
            w[x] = bicubic ? pil_bicubic(t) : pil_bilinear(t);
            ww += w[x];
        }
        for (int x = 0; x < k; x++) {
            const double v = x < xmax ? (ww != 0.0 ? w[x] / ww : w[x]) : 0.0;
            const double f = v * (1 << PIL_PRECISION_BITS);
            (*kk)[(size_t)xx * k + x] = (int32_t)(v < 0 ? -0.5 + f : 0.5 + f);
        }
        (*bounds)[2 * xx] = xmin, (*bounds)[2 * xx + 1] = xmax;
    }
    free(w);
    *ksize = k;
    return LSC_OK;
}

static uint8_t pil_clip8(int32_t v) {
    v >>= PIL_PRECISION_BITS; /* arithmetic: floor for the negative */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int image_resize_pil(uint8_t *dst, int oh, int ow, const uint8_t *src, int C, int h, int w,
                     ImageResample resample) {
    int *bx = NULL, *by = NULL;
    int32_t *kx = NULL, *ky = NULL;
    int nx, ny;
    uint8_t *tmp = malloc((size_t)C * h * ow);
    int32_t *acc = malloc(sizeof(int32_t) * (size_t)ow);
    int rc = tmp ? pil_coeffs(w, ow, resample, &bx, &kx, &nx)
                 : error_set("Out of memory resizing a %dx%d image.", w, h);
    if (rc == LSC_OK) rc = pil_coeffs(h, oh, resample, &by, &ky, &ny);
    if (rc == LSC_OK) {
        /* horizontal pass: every row to ow columns, in bytes (PIL keeps an 8-bit image) */
        for (int c = 0; c < C; c++)
            for (int y = 0; y < h; y++) {
                const uint8_t *row = src + ((size_t)c * h + y) * w;
                for (int x = 0; x < ow; x++) {
                    const int32_t *k = kx + (size_t)x * nx;
                    int32_t ss = 1 << (PIL_PRECISION_BITS - 1);
                    for (int i = 0; i < bx[2 * x + 1]; i++) ss += row[bx[2 * x] + i] * k[i];
                    tmp[((size_t)c * h + y) * ow + x] = pil_clip8(ss);
                }
            }
        /* vertical pass: whole rows at a time (integer sums: any order gives Pillow's) */
        for (int c = 0; c < C && acc; c++)
            for (int y = 0; y < oh; y++) {
                const int32_t *k = ky + (size_t)y * ny;
                for (int x = 0; x < ow; x++) acc[x] = 1 << (PIL_PRECISION_BITS - 1);
                for (int i = 0; i < by[2 * y + 1]; i++) {
                    const uint8_t *row = tmp + ((size_t)c * h + by[2 * y] + i) * ow;
                    for (int x = 0; x < ow; x++) acc[x] += row[x] * k[i];
                }
                for (int x = 0; x < ow; x++) dst[((size_t)c * oh + y) * ow + x] = pil_clip8(acc[x]);
            }
        if (!acc) rc = error_set("Out of memory resizing a %dx%d image.", w, h);
    }
    free(tmp), free(acc), free(bx), free(by), free(kx), free(ky);
    return rc;
}

/* ---- the resize and the crop ---- */

/* torch's bilinear on floats, rounded to the nearest byte */
static int resize_torch(uint8_t *dst, int oh, int ow, const uint8_t *src, int C, int h, int w) {
    const size_t n_in = (size_t)C * h * w, n_out = (size_t)C * oh * ow;
    Real *a = malloc(n_in * sizeof *a), *b = malloc(n_out * sizeof *b);
    int rc = a && b ? LSC_OK : error_set("Out of memory resizing a %dx%d image.", w, h);
    if (rc == LSC_OK) {
        for (size_t i = 0; i < n_in; i++) a[i] = (Real)src[i];
        if (oh == h && ow == w) memcpy(b, a, n_in * sizeof *a);
        else rc = image_resize_bilinear(b, oh, ow, a, C, h, w);
    }
    for (size_t i = 0; rc == LSC_OK && i < n_out; i++) {
        const Real r = floorf((float)b[i] + 0.5f);
        dst[i] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
    }
    free(a), free(b);
    return rc;
}

/* the crop's offset in a side of n: torchvision's round((n - crop) / 2) (Python's round, to
 * even) or transformers' floor */
static int crop_offset(int n, int crop, int floor_it) {
    return floor_it ? (n - crop) / 2 : (int)nearbyint((n - crop) / 2.0);
}

int image_preprocess_apply(const ImagePreprocess *p, const uint8_t *src, int C, int h, int w,
                           uint8_t *out) {
    int oh, ow;
    resized_size(p, h, w, &oh, &ow);
    uint8_t *r = malloc((size_t)C * oh * ow);
    int rc = r ? LSC_OK : error_set("Out of memory resizing a %dx%d image.", w, h);
    if (rc == LSC_OK)
        rc = p->resample == RESAMPLE_TORCH_BILINEAR ? resize_torch(r, oh, ow, src, C, h, w)
                                                    : image_resize_pil(r, oh, ow, src, C, h, w, p->resample);
    if (rc == LSC_OK) {
        const int S = p->crop, top = crop_offset(oh, S, p->crop_floor), left = crop_offset(ow, S, p->crop_floor);
        for (int c = 0; c < C; c++)
            for (int y = 0; y < S; y++)
                memcpy(out + ((size_t)c * S + y) * S, r + ((size_t)c * oh + top + y) * ow + left, (size_t)S);
    }
    free(r);
    return rc;
}
