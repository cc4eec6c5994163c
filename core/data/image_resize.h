/* Image resizing for models that take another size than the data's (a 224x224 Hugging Face
 * ViT fine-tuned on 28x28 MNIST): bilinear interpolation exactly as torch's
 * F.interpolate(mode="bilinear", align_corners=False, antialias=False) computes it for float
 * tensors, per channel. Not here: where images come from (imagedata.h), what the model does
 * with its position embeddings at the new size (core/formats/vit_hf.h). */
#ifndef LORASC_IMAGE_RESIZE_H
#define LORASC_IMAGE_RESIZE_H

#include "kernels/real.h"

/* src [C, h, w] -> dst [C, oh, ow]; dst must not overlap src. LSC_ERR only when out of
 * memory (sizes over 512 + 512). */
int image_resize_bilinear(Real *dst, int oh, int ow, const Real *src, int C, int h, int w);

#endif
