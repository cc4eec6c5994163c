/* Bilinear resizing as torch computes it (see image_resize.h): output index i maps to input
 * (i + 0.5) * in / out - 0.5, clamped at 0 below; the two neighbours i0 and i0 + 1 (i0 at the
 * last row/column has no next) weighted 1 - l and l, in float. */
#include "core/data/image_resize.h"

#include <stdlib.h>

#include "core/base/error.h"

typedef struct Tap {
    int i0, i1;
    float l0, l1;
} Tap;

static void taps(Tap *t, int out, int in) {
    const float scale = (float)in / (float)out;
    for (int i = 0; i < out; i++) {
        float real = (float)((double)scale * ((double)i + 0.5) - 0.5);
        if (real < 0.0f) real = 0.0f;
        int i0 = (int)real;
        if (i0 > in - 1) i0 = in - 1;
        float l = real - (float)i0;
        l = l < 0.0f ? 0.0f : l > 1.0f ? 1.0f : l;
        t[i] = (Tap){i0, i0 < in - 1 ? i0 + 1 : i0, 1.0f - l, l};
    }
}

int image_resize_bilinear(Real *dst, int oh, int ow, const Real *src, int C, int h, int w) {
    Tap stack[2 * 512];
    Tap *ty = oh + ow <= 1024 ? stack : malloc((size_t)(oh + ow) * sizeof *ty);
    if (!ty) return error_set("Out of memory resizing images to %dx%d.", oh, ow);
    Tap *tx = ty + oh;
    taps(ty, oh, h);
    taps(tx, ow, w);
    for (int c = 0; c < C; c++) {
        const Real *s = src + (size_t)c * h * w;
        Real *d = dst + (size_t)c * oh * ow;
        for (int y = 0; y < oh; y++) {
            const Real *r0 = s + (size_t)ty[y].i0 * w, *r1 = s + (size_t)ty[y].i1 * w;
            for (int x = 0; x < ow; x++) {
                const Tap a = tx[x];
                const float top = a.l0 * (float)r0[a.i0] + a.l1 * (float)r0[a.i1];
                const float bot = a.l0 * (float)r1[a.i0] + a.l1 * (float)r1[a.i1];
                d[(size_t)y * ow + x] = (Real)(ty[y].l0 * top + ty[y].l1 * bot);
            }
        }
    }
    if (ty != stack) free(ty);
    return LSC_OK;
}
