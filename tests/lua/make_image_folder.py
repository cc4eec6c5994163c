#!/usr/bin/env python3
"""Writes small image folders for the folder-task tests (Python's standard library only: a
PNG is zlib-compressed scanlines in three chunks). Under OUT:
  pets/train/{cat,dog,emu}/  24 RGB images each, 9-14 pixels a side (not square)
  pets/val/{cat,dog,emu}/    8 each
  pets-sketch/{cat,emu}/     6 each, paler (a shift set holding 2 of the 3 classes)
Class k's images are bright in channel k (cat red, dog green, emu blue) over noise, so a
model can learn them; everything is seeded. usage: make_image_folder.py OUT"""
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


def main():
    out = sys.argv[1]
    pets = [(0, "cat"), (1, "dog"), (2, "emu")]
    folder(os.path.join(out, "pets", "train"), pets, 24, 1)
    folder(os.path.join(out, "pets", "val"), pets, 8, 2)
    folder(os.path.join(out, "pets-sketch"), [(0, "cat"), (2, "emu")], 6, 3, pale=True)


if __name__ == "__main__":
    main()
