#!/usr/bin/env python3
"""CLIP's zero-shot classifier as a lorasc ViT head (vit{ hf = ..., channels = 3, head = FILE }).

CLIP classifies an image by the cosine between its embedding P·h (h: the vision tower's pooled,
post-layernorm output, which lorasc's ViT head reads; P: visual_projection) and each class's
text embedding t_k (the class name in prompt templates through the text tower, normalised,
averaged over the templates, normalised again), times tau = exp(logit_scale):
    logit_k = tau * t_k . (P h) / |P h|.
A linear head cannot divide by |P h|, which changes with the image; it can be
    W = (tau / c) * T P        (weight [classes, width], bias 0)
whose logits are the zero-shot logits times |P h| / c: the same ranking for every image (a
positive factor per image), so the head starts at CLIP's zero-shot predictions exactly, and
with c the mean |P h| over training images its logits are CLIP's on average. lorasc then
fine-tunes this head with the adapters, as it does a random one.

usage: clip_zeroshot_head.py CLIP_DIR CLASSES TRAIN_FOLDER OUT [--templates FILE] [--images N]
  CLIP_DIR      a Hugging Face CLIPModel directory (text and vision towers, tokenizer, image
                processor), e.g. openai/clip-vit-base-patch16
  CLASSES       one line per class: "<folder name><TAB><class name>" (e.g. "n01440764<TAB>tench");
                every class folder of TRAIN_FOLDER must be named, and the head's rows follow
                the folders' byte order (lorasc's labels)
  TRAIN_FOLDER  the task's train/ folder: its class folders, and the images that set c
  OUT           the safetensors file to write
  --templates   one prompt template per line with {} for the class name (default: CLIP's
                "a photo of a {}."); OpenAI's 80 ImageNet templates are the usual choice
  --images N    how many training images (seeded, spread over the classes) set c (default 256)
Needs torch, transformers, Pillow and safetensors (not lorasc's build or tests).
"""
import argparse
import os
import random
import sys

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

EXTENSIONS = (".png", ".jpg", ".jpeg")


def class_folders(train):
    """the class folders in byte order (lorasc's and ImageFolder's labels)"""
    names = [n for n in os.listdir(train) if not n.startswith(".") and os.path.isdir(os.path.join(train, n))]
    return sorted(names, key=lambda n: n.encode("utf-8"))


def read_classes(path, folders):
    names = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if "\t" not in line:
                sys.exit(f"{path}:{i}: expected '<folder name><TAB><class name>', got {line!r}")
            folder, name = line.split("\t", 1)
            names[folder] = name
    missing = [f for f in folders if f not in names]
    if missing:
        sys.exit(f"{path} names no class for the folder(s) {', '.join(missing[:5])}; every class folder needs a line")
    return [names[f] for f in folders]


@torch.no_grad()
def text_classifier(model, tokenizer, class_names, templates):
    """T [classes, E]: per class the normalised mean of the normalised template embeddings"""
    rows = []
    for name in class_names:
        tokens = tokenizer([t.format(name) for t in templates], padding=True, return_tensors="pt")
        e = model.get_text_features(**tokens)
        e = e / e.norm(dim=-1, keepdim=True)
        m = e.mean(dim=0)
        rows.append(m / m.norm())
    return torch.stack(rows)


@torch.no_grad()
def mean_embedding_norm(model, processor, train, folders, n, seed=0):
    """c: the mean |P h| over n training images, drawn round-robin over the classes"""
    rng = random.Random(seed)
    per_class = []
    for folder in folders:
        d = os.path.join(train, folder)
        files = sorted(f for f in os.listdir(d) if f.lower().endswith(EXTENSIONS))
        rng.shuffle(files)
        per_class.append([os.path.join(d, f) for f in files])
    picked, k = [], 0
    while len(picked) < n and any(per_class):
        files = per_class[k % len(per_class)]
        if files:
            picked.append(files.pop())
        k += 1
    norms = []
    for i in range(0, len(picked), 32):
        images = [Image.open(p).convert("RGB") for p in picked[i:i + 32]]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        norms.append(model.get_image_features(pixel_values=pixels).norm(dim=-1))
    return torch.cat(norms).mean().item(), len(picked)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clip_dir")
    ap.add_argument("classes")
    ap.add_argument("train_folder")
    ap.add_argument("out")
    ap.add_argument("--templates")
    ap.add_argument("--images", type=int, default=256)
    a = ap.parse_args()
    templates = ["a photo of a {}."]
    if a.templates:
        with open(a.templates, encoding="utf-8") as f:
            templates = [t.rstrip("\n") for t in f if "{}" in t]
    folders = class_folders(a.train_folder)
    if len(folders) < 2:
        sys.exit(f"{a.train_folder} has {len(folders)} class folder(s); a task needs at least 2")
    names = read_classes(a.classes, folders)
    model = CLIPModel.from_pretrained(a.clip_dir).eval()
    tokenizer = CLIPTokenizer.from_pretrained(a.clip_dir)
    processor = CLIPImageProcessor.from_pretrained(a.clip_dir)
    T = text_classifier(model, tokenizer, names, templates)
    c, used = mean_embedding_norm(model, processor, a.train_folder, folders, a.images)
    tau = model.logit_scale.exp().item()
    W = (tau / c) * T @ model.visual_projection.weight
    save_file({"weight": W.float().contiguous()}, a.out)
    print(f"wrote {a.out}: {W.shape[0]} classes x width {W.shape[1]} "
          f"({len(templates)} template(s), tau {tau:.2f}, c {c:.4f} over {used} images)")


if __name__ == "__main__":
    main()
