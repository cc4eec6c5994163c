/* The image processor of a Hugging Face ViT / CLIP checkpoint (preprocessor_config.json):
 * normalisation, resize and crop over the processor class's defaults. See vit_hf.h
 * (vit_hf_read_processor). */
#include <stdio.h>
#include <string.h>

#include "core/base/error.h"
#include "core/formats/hf_config.h"
#include "core/formats/vit_hf.h"

/* OpenAI CLIP's normalisation (CLIPImageProcessor's defaults, transformers' OPENAI_CLIP_MEAN /
 * OPENAI_CLIP_STD) and ViTImageProcessor's (IMAGENET_STANDARD_MEAN / _STD) */
static const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};
static const float STANDARD_MEAN_STD = 0.5f;

/* A list of per-channel statistics, key of preprocessor_config.json: a number (every
 * channel) or a list of `channels` numbers. */
static int read_stats(const HfConfig *f, const char *key, int channels, const float *def, float *out) {
    const json_t *v = hf_config_get(f, NULL, key);
    if (!v) {
        memcpy(out, def, sizeof(float) * (size_t)channels);
        return LSC_OK;
    }
    if (json_is_number(v)) {
        for (int c = 0; c < channels; c++) out[c] = (float)json_number_value(v);
        return LSC_OK;
    }
    if (!json_is_array(v) || (int)json_array_size(v) != channels)
        return error_set("%s: %s must be a number or a list of %d numbers (one per channel)",
                         f->path, key, channels);
    for (int c = 0; c < channels; c++) {
        const json_t *x = json_array_get(v, (size_t)c);
        if (!json_is_number(x)) return error_set("%s: %s[%d] is not a number", f->path, key, c);
        out[c] = (float)json_number_value(x);
    }
    return LSC_OK;
}

/* A size of preprocessor_config.json: an int (both sides; `as_edge`: the shortest edge), or
 * {"shortest_edge": N} or {"height": H, "width": W}. */
static int read_size(const HfConfig *f, const char *key, int as_edge, int *edge, int *h, int *w) {
    const json_t *v = hf_config_get(f, NULL, key);
    if (!v) return LSC_OK; /* the processor's default stays */
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        const int n = (int)json_integer_value(v);
        if (as_edge) *edge = n, *h = *w = 0;
        else *edge = 0, *h = *w = n;
        return LSC_OK;
    }
    if (json_is_object(v)) {
        const json_t *e = json_object_get(v, "shortest_edge"), *hh = json_object_get(v, "height"),
                     *ww = json_object_get(v, "width");
        if (json_is_integer(e) && json_integer_value(e) > 0 && !hh && !ww) {
            *edge = (int)json_integer_value(e), *h = *w = 0;
            return LSC_OK;
        }
        if (json_is_integer(hh) && json_is_integer(ww) && json_integer_value(hh) > 0 &&
            json_integer_value(ww) > 0 && !e) {
            *edge = 0, *h = (int)json_integer_value(hh), *w = (int)json_integer_value(ww);
            return LSC_OK;
        }
    }
    return error_set("%s: %s must be a positive integer, {\"shortest_edge\": N} or {\"height\": H, "
                     "\"width\": W} (lorasc reads no other resize)", f->path, key);
}

/* The processor's resize and crop from the file, over the defaults already in p. */
static int read_resize(const HfConfig *f, int clip, ViTHfProcessor *p) {
    int do_resize = 1, do_crop = p->crop > 0;
    if (hf_config_bool(f, NULL, "do_resize", 1, &do_resize) != LSC_OK) return LSC_ERR;
    if (!do_resize)
        return error_set("%s: do_resize is false; lorasc brings every image to the model's size "
                         "and cannot follow a processor that does not resize", f->path);
    if (read_size(f, "size", clip, &p->shortest_edge, &p->height, &p->width) != LSC_OK) return LSC_ERR;
    const json_t *r = hf_config_get(f, NULL, "resample");
    if (r) {
        if (!json_is_integer(r) || (json_integer_value(r) != 2 && json_integer_value(r) != 3))
            return error_set("%s: resample must be 2 (bilinear) or 3 (bicubic), the filters lorasc "
                             "reproduces", f->path);
        p->resample = (int)json_integer_value(r);
    }
    if (hf_config_bool(f, NULL, "do_center_crop", do_crop, &do_crop) != LSC_OK) return LSC_ERR;
    if (!do_crop) {
        p->crop = 0;
        return LSC_OK;
    }
    int edge = 0, ch = p->crop, cw = p->crop;
    if (read_size(f, "crop_size", 0, &edge, &ch, &cw) != LSC_OK) return LSC_ERR;
    if (ch != cw || ch <= 0)
        return error_set("%s: crop_size %d x %d is not square; lorasc's images are", f->path, ch, cw);
    p->crop = ch;
    return LSC_OK;
}

int vit_hf_read_processor(const char *dir, ViTHfProcessor *p) {
    memset(p, 0, sizeof *p);
    ViTConfig c;
    ViTHfLayout layout;
    if (vit_hf_read_config(dir, &c, &layout) != LSC_OK) return LSC_ERR;
    if (c.channels > 4) return error_set("%s has %d channels; at most 4 are supported", dir, c.channels);
    char path[4200];
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    FILE *probe = fopen(path, "r");
    p->from_file = probe != NULL;
    if (probe) fclose(probe);
    HfConfig f = {0};
    if (p->from_file && hf_config_open(&f, dir, "preprocessor_config.json", "image processor config") != LSC_OK)
        return LSC_ERR;
    /* the processor class: CLIP's or ViT's defaults (by the file's type, else the layout) */
    const char *type = NULL;
    int rc = LSC_OK;
    if (p->from_file) {
        rc = hf_config_string(&f, NULL, "image_processor_type", NULL, &type);
        if (rc == LSC_OK && !type) rc = hf_config_string(&f, NULL, "feature_extractor_type", NULL, &type);
    }
    const int clip = type ? strstr(type, "CLIP") != NULL : layout == VIT_HF_CLIP;
    p->channels = c.channels;
    for (int k = 0; k < c.channels; k++) {
        const int clip_stats = clip && c.channels == 3;
        p->mean[k] = clip_stats ? CLIP_MEAN[k] : STANDARD_MEAN_STD;
        p->std[k] = clip_stats ? CLIP_STD[k] : STANDARD_MEAN_STD;
    }
    if (clip) /* CLIPImageProcessor: the shorter side bicubic, then the centre crop */
        p->resample = 3, p->shortest_edge = c.image_size, p->crop = c.image_size;
    else /* ViTImageProcessor: exactly the model's size, bilinear, no crop */
        p->resample = 2, p->height = p->width = c.image_size, p->crop = 0;
    if (!p->from_file) return rc;
    float mean[4], std[4];
    if (rc == LSC_OK) rc = read_stats(&f, "image_mean", c.channels, p->mean, mean);
    if (rc == LSC_OK) rc = read_stats(&f, "image_std", c.channels, p->std, std);
    for (int k = 0; k < c.channels && rc == LSC_OK; k++)
        if (!(std[k] > 0)) rc = error_set("%s: image_std[%d] must be > 0", f.path, k);
    if (rc == LSC_OK) {
        memcpy(p->mean, mean, sizeof mean);
        memcpy(p->std, std, sizeof std);
        const json_t *normalize = hf_config_get(&f, NULL, "do_normalize");
        if (normalize && json_is_false(normalize))
            for (int k = 0; k < c.channels; k++) p->mean[k] = 0, p->std[k] = 1;
        rc = read_resize(&f, clip, p);
    }
    if (rc == LSC_OK && !p->crop && p->height != p->width)
        rc = error_set("%s: a resize to %d x %d without a centre crop gives images that are not "
                       "square; lorasc's images are", f.path, p->height, p->width);
    hf_config_close(&f);
    return rc;
}
