/* How a decoded image file becomes a model's square input, as the preprocessing a checkpoint
 * was trained with does it: a resize (the shorter side to an edge, or to exactly height x
 * width) and a centre crop, in bytes. Two families of resampling:
 *   - torchvision's default here: torch's F.interpolate bilinear on floats (image_resize.h),
 *     rounded to bytes, centre-crop offsets round((h - crop) / 2) as torchvision's CenterCrop;
 *   - PIL's Image.resize, which Hugging Face image processors call (CLIPImageProcessor:
 *     bicubic, the shorter side, then a centre crop with offsets floor((h - crop) / 2);
 *     ViTImageProcessor: bilinear to exactly height x width): PIL's separable, antialiased
 *     filters (the support widened by the downscaling factor) in its 8-bit fixed point
 *     (22-bit coefficients, a horizontal pass to bytes, then a vertical one), reproduced
 *     exactly (test image_preprocess against Pillow 10.4 and transformers 4.44).
 * Not here: decoding (imagefolder.h), normalisation (imagedata.h). */
#ifndef LORASC_IMAGE_PREPROCESS_H
#define LORASC_IMAGE_PREPROCESS_H

#include <stdint.h>

typedef enum ImageResample {
    RESAMPLE_TORCH_BILINEAR = 0, /* torch's bilinear on floats (align_corners False, no antialias) */
    RESAMPLE_PIL_BILINEAR = 1,   /* PIL.Image.BILINEAR (2) */
    RESAMPLE_PIL_BICUBIC = 2,    /* PIL.Image.BICUBIC (3) */
} ImageResample;

typedef struct ImagePreprocess {
    ImageResample resample;
    /* > 0: the shorter side resized to this, the longer to int(edge * long / short) (both
     * torchvision's and transformers' rule); 0: resized to exactly height x width */
    int shortest_edge;
    int height, width;
    int crop;       /* the centre crop's side: the images' size */
    int crop_floor; /* 1: crop offsets floor((h - crop) / 2) (transformers); 0: round (torchvision) */
} ImagePreprocess;

/* torchvision's Resize(size) + CenterCrop(size) with torch's bilinear: lorasc's default. */
ImagePreprocess image_preprocess_default(int size);

/* LSC_OK when p can run (sizes in 1..4096, a resize that covers the crop), else LSC_ERR with a
 * sentence. */
int image_preprocess_check(const ImagePreprocess *p);

/* src [C, h, w] bytes -> out [C, crop, crop] bytes. LSC_ERR when out of memory. */
int image_preprocess_apply(const ImagePreprocess *p, const uint8_t *src, int C, int h, int w,
                           uint8_t *out);

/* PIL's Image.resize(mode RGB or L, resample) of src [C, h, w] to dst [C, oh, ow]
 * (resample RESAMPLE_PIL_BILINEAR or RESAMPLE_PIL_BICUBIC). LSC_ERR when out of memory. */
int image_resize_pil(uint8_t *dst, int oh, int ow, const uint8_t *src, int C, int h, int w,
                     ImageResample resample);

#endif
