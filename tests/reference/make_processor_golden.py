#!/usr/bin/env python3
"""Golden values for lorasc's image preprocessing (core/data/image_preprocess.c) from the real
libraries: Pillow 10.4.0 (Image.resize, BILINEAR and BICUBIC) and transformers 4.44.2's
CLIPImageProcessor (the shorter side bicubic, then a centre crop) and ViTImageProcessor (an
exact bilinear resize), with rescaling and normalisation off so the outputs are the bytes.
Writes tests/golden/image_processor.bin (tests/golden_io.h's format). Records, per case k:
  case{k}.input   i32 [h, w, 3]  RGB bytes (random, seeded; some with flat and sharp regions)
  case{k}.spec    i32 [6]        resample (1 PIL bilinear, 2 PIL bicubic), shortest_edge
                                 (0: exact), height, width, crop, crop_floor
  case{k}.output  i32 [3, crop, crop]  the processor's (or Image.resize's) bytes, channels first
and two JPEG files Pillow writes (tests/golden/jpeg{0,1}.jpg: 4:2:0 at quality 90, and
progressive 4:2:2 at quality 80) with
  jpeg{k}.decoded i32 [h, w, 3]  Pillow's decoded RGB bytes
  jpeg{k}.clip    i32 [3, 16, 16] CLIPImageProcessor's bytes from the file (as case 0's spec)
Run: /work/venv/bin/python tests/reference/make_processor_golden.py (needs Pillow, numpy,
transformers; not needed by the tests, which read the committed file)."""
import os
import sys

import numpy as np
from PIL import Image
from transformers import CLIPImageProcessor, ViTImageProcessor

sys.path.insert(0, os.path.dirname(__file__))
from make_golden import write_golden  # noqa: E402

rng = np.random.default_rng(7)


def picture(h, w):
    """noise over a few flat rectangles and a sharp diagonal edge: every filter lobe matters"""
    img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    img[: h // 3, : w // 2] = (250, 10, 128)
    yy, xx = np.mgrid[0:h, 0:w]
    img[(yy * w > xx * h * 2)] = (0, 255, 3)
    return img


cases = []


def add(img, spec, out):
    cases.append((img, spec, out))


# 1. CLIPImageProcessor: shortest edge 16 bicubic, crop 16 (transformers' floor offsets):
# downscales (antialiased, several ratios), an upscale, odd differences for the crop
for (h, w) in [(37, 23), (50, 64), (96, 130), (9, 7), (33, 80), (16, 16), (16, 19)]:
    img = picture(h, w)
    p = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16},
                           do_rescale=False, do_normalize=False, do_convert_rgb=True)
    out = p(images=Image.fromarray(img), return_tensors="np")["pixel_values"][0]
    add(img, [2, 16, 0, 0, 16, 1], out)
# 2. ViTImageProcessor: exactly 12 x 12, bilinear, no crop
for (h, w) in [(37, 23), (100, 41), (5, 6)]:
    img = picture(h, w)
    p = ViTImageProcessor(size={"height": 12, "width": 12}, do_rescale=False, do_normalize=False)
    out = p(images=Image.fromarray(img), return_tensors="np")["pixel_values"][0]
    add(img, [1, 0, 12, 12, 12, 0], out)
# 3. Image.resize alone, bilinear and bicubic, not square (crop = the whole of a square result)
for (h, w, oh, ow, r) in [(40, 30, 13, 13, 1), (40, 30, 13, 13, 2), (11, 17, 29, 29, 2)]:
    img = picture(h, w)
    res = Image.fromarray(img).resize((ow, oh), resample=Image.BILINEAR if r == 1 else Image.BICUBIC)
    add(img, [r, 0, oh, ow, oh, 0], np.asarray(res).transpose(2, 0, 1))

records = []
golden_dir = os.path.join(os.path.dirname(__file__), "..", "golden")
for k, opts in enumerate([dict(quality=90), dict(quality=80, subsampling=1, progressive=True)]):
    img = picture(37, 53)
    path = os.path.join(golden_dir, f"jpeg{k}.jpg")
    Image.fromarray(img).save(path, **opts)
    im = Image.open(path).convert("RGB")
    p = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16},
                           do_rescale=False, do_normalize=False)
    records.append((f"jpeg{k}.decoded", np.asarray(im).astype(np.int32)))
    records.append((f"jpeg{k}.clip", p(images=im, return_tensors="np")["pixel_values"][0].astype(np.int32)))
for k, (img, spec, out) in enumerate(cases):
    out = np.asarray(out)
    assert np.all(out == np.round(out)) and out.min() >= 0 and out.max() <= 255
    records.append((f"case{k}.input", img.astype(np.int32)))
    records.append((f"case{k}.spec", np.array(spec, dtype=np.int32)))
    records.append((f"case{k}.output", out.astype(np.int32)))
path = os.path.join(golden_dir, "image_processor.bin")
write_golden(path, records)
print(f"wrote {len(cases)} cases to {os.path.normpath(path)}")
