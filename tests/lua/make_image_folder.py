#!/usr/bin/env python3
"""Writes small image folders for the folder-task tests (Python's standard library only: a
PNG is zlib-compressed scanlines in three chunks). Under OUT:
  pets/train/{cat,dog,emu}/  24 RGB images each, 9-14 pixels a side (not square)
  pets/val/{cat,dog,emu}/    8 each
  pets-sketch/{cat,emu}/     6 each, paler (a shift set holding 2 of the 3 classes)
and with --imagenet a miniature of ImageNet's layouts (3 WordNet ids) for
experiments/paper/table3_clip_imagenet.lua:
  imagenet/train/<wnid>/     24 each
  imagenet/val/ILSVRC2012_val_0000000N.png + imagenet/LOC_val_solution.csv   (12 images)
  imagenet-v2/{0,1,2}/       4 each (folders are label numbers)
  imagenet-sketch/<wnid>/    4 each, paler
  imagenet-a/<wnid 1>/       5 (a 1-class subset)
  imagenet-r/<wnids 0, 2>/   3 each (a 2-class subset)
Class k's images are bright in channel k (cat red, dog green, emu blue) over noise, so a
model can learn them; everything is seeded. usage: make_image_folder.py OUT [--imagenet]"""
import os
import random
import struct
import sys
import zlib


def png(path, w, h, rgb):
    """rgb: a list of h rows of w (r, g, b) tuples"""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + bytes(v for px in row for v in px) for row in rgb)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw)))
        f.write(chunk(b"IEND", b""))


def image(rng, k, pale):
    w, h = rng.randint(9, 14), rng.randint(9, 14)
    hi, lo = (150, 90) if pale else (230, 40)
    rows = []
    for _ in range(h):
        row = []
        for _ in range(w):
            px = [lo + rng.randint(0, 25) for _ in range(3)]
            px[k] = hi + rng.randint(0, 25)
            row.append(tuple(px))
        rows.append(row)
    return w, h, rows


def folder(out, classes, n, seed, pale=False):
    rng = random.Random(seed)
    for k, name in classes:
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            w, h, rows = image(rng, k, pale)
            png(os.path.join(d, "%03d.png" % i), w, h, rows)


WNIDS = ["n01440764", "n01443537", "n01484850"]


def imagenet(out):
    ids = list(enumerate(WNIDS))
    folder(os.path.join(out, "imagenet", "train"), ids, 24, 11)
    val = os.path.join(out, "imagenet", "val")
    os.makedirs(val, exist_ok=True)
    rng = random.Random(12)
    rows = ["ImageId,PredictionString"]
    for i in range(12):
        k = (i * 7) % 3
        w, h, pixels = image(rng, k, False)
        name = "ILSVRC2012_val_%08d" % (i + 1)
        png(os.path.join(val, name + ".png"), w, h, pixels)
        rows.append("%s,%s 0 0 %d %d" % (name, WNIDS[k], w - 1, h - 1))
    with open(os.path.join(out, "imagenet", "LOC_val_solution.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    folder(os.path.join(out, "imagenet-v2"), [(k, str(k)) for k in range(3)], 4, 13)
    folder(os.path.join(out, "imagenet-sketch"), ids, 4, 14, pale=True)
    folder(os.path.join(out, "imagenet-a"), [ids[1]], 5, 15, pale=True)
    folder(os.path.join(out, "imagenet-r"), [ids[0], ids[2]], 3, 16, pale=True)


def main():
    out = sys.argv[1]
    if "--imagenet" in sys.argv[2:]:
        imagenet(out)
    pets = [(0, "cat"), (1, "dog"), (2, "emu")]
    folder(os.path.join(out, "pets", "train"), pets, 24, 1)
    folder(os.path.join(out, "pets", "val"), pets, 8, 2)
    folder(os.path.join(out, "pets-sketch"), [(0, "cat"), (2, "emu")], 6, 3, pale=True)


if __name__ == "__main__":
    main()
