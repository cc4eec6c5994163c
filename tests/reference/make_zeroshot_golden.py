#!/usr/bin/env python3
"""Golden files for CLIP zero-shot heads (tools/clip_zeroshot_head.py; test lua_folder_cli):
a tiny random CLIPModel with both towers (text and vision width 16, 2 layers, 8x8 images in
patches of 4, projection 8), a character-level CLIP tokenizer (every byte, with and without
</w>; no merges), a CLIPImageProcessor at 8 pixels, the class names of make_image_folder.py's
pets, the head the tool makes from them, and what transformers' CLIP predicts zero-shot:
  tests/golden/clip_zeroshot/{config.json, model.safetensors, vocab.json, merges.txt,
    tokenizer_config.json, special_tokens_map.json, preprocessor_config.json,
    classes.txt, head.safetensors, expected.txt}
expected.txt: "test <accuracy>" over pets/val (every image) and "shift <accuracy>" over
pets-sketch scored over its two classes' logits (cat, emu), the zero-shot argmax of
tau * t_k . normalise(P h) with the tool's class embeddings t_k.
Run: /work/venv/bin/python tests/reference/make_zeroshot_golden.py (torch, transformers 4.44.2,
Pillow, safetensors)."""
import json
import os
import subprocess
import sys
import tempfile

import torch
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer
from transformers.models.clip.tokenization_clip import bytes_to_unicode

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "golden", "clip_zeroshot")
os.makedirs(OUT, exist_ok=True)

# tokenizer: every byte's character, alone and word-final; the special tokens
chars = list(bytes_to_unicode().values())
vocab = {}
for tok in chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]:
    vocab[tok] = len(vocab)
with tempfile.TemporaryDirectory() as tmp:
    vf, mf = os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")
    with open(vf, "w") as f:
        json.dump(vocab, f)
    with open(mf, "w") as f:
        f.write("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vf, mf)
    tokenizer.save_pretrained(OUT)

torch.manual_seed(0)
config = CLIPConfig(
    text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                     num_attention_heads=2, max_position_embeddings=64,
                     bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"]),
    vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                       image_size=8, patch_size=4),
    projection_dim=8)
model = CLIPModel(config).eval()
model.save_pretrained(OUT, safe_serialization=True)
processor = CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
processor.save_pretrained(OUT)

with open(os.path.join(OUT, "classes.txt"), "w") as f:
    f.write("cat\tcat\ndog\tdog\nemu\temu\n")

with tempfile.TemporaryDirectory() as data:
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "lua", "make_image_folder.py"), data], check=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "clip_zeroshot_head.py"), OUT,
                    os.path.join(OUT, "classes.txt"), os.path.join(data, "pets", "train"),
                    os.path.join(OUT, "head.safetensors")], check=True)
    # the classifier the tool used, again: the template's embeddings, normalised
    with torch.no_grad():
        e = model.get_text_features(**tokenizer(["a photo of a cat.", "a photo of a dog.", "a photo of a emu."],
                                                padding=True, return_tensors="pt"))
        T = e / e.norm(dim=-1, keepdim=True)

    def accuracy(folder, classes):
        """zero-shot accuracy over folder/<class>/*, the argmax over `classes` (rows of T)"""
        right = total = 0
        for k, name in classes:
            d = os.path.join(folder, name)
            for f in sorted(os.listdir(d)):
                pixels = processor(images=Image.open(os.path.join(d, f)).convert("RGB"), return_tensors="pt")["pixel_values"]
                with torch.no_grad():
                    z = model.get_image_features(pixel_values=pixels)[0]
                logits = T @ (z / z.norm())
                best = max((logits[j].item(), j) for j, _ in classes)[1]
                right += best == k
                total += 1
        return right / total, total

    test, n_test = accuracy(os.path.join(data, "pets", "val"), [(0, "cat"), (1, "dog"), (2, "emu")])
    shift, n_shift = accuracy(os.path.join(data, "pets-sketch"), [(0, "cat"), (2, "emu")])
with open(os.path.join(OUT, "expected.txt"), "w") as f:
    f.write(f"test {test!r} {n_test}\nshift {shift!r} {n_shift}\n")
print(f"zero-shot: test {test:.4f} ({n_test} images), shift {shift:.4f} ({n_shift} images)")
