#!/work/venv/bin/python
"""Golden files for lorasc's Hugging Face interop (issue 15), made with the real libraries.

Pins (a virtualenv over Debian 12's python3-torch; transformers, peft and accelerate
installed with --no-deps, plus Jinja2 and protobuf < 5):
    torch 1.13.0a0 (Debian python3-torch 1.13.0+dfsg-5)
    transformers 4.44.2, peft 0.12.0, accelerate 0.34.2, tokenizers 0.19.1, safetensors,
    gguf (only for the optional Llama-vocabulary tokenizer vectors, read from $LORASC_DATA)
CI never runs this: it reads the committed files in tests/golden/interop/. Regenerate only when
a scenario changes (another torch may draw other random weights: the new files are then just as
valid, commit them with the reason):
    /work/venv/bin/python tests/reference/make_interop_golden.py [--out tests/golden/interop]
    /work/venv/bin/python tests/reference/make_interop_golden.py --verify DIR
(--verify: loads what lorasc exported into DIR with transformers and PEFT and prints the largest
logit differences; see verify() for the layout; the tests write DIR when LORASC_EXPORT_KEEP is
set.)

What it writes (all small):
  llama/            a tiny LlamaForCausalLM (dim 32, 2 layers, 4 heads / 2 KV heads, tied
                    embeddings, vocab = the tokenizer's) saved by save_pretrained in bf16, with
                    metadata lorasc must keep on export: bos 1, eos 2, pad 0, rms_norm_eps 1e-05
                    (a float32 would print 9.99999974737875e-06), rope_theta 500000,
                    initializer_range 0.037, a generation_config.json (do_sample, temperature
                    0.7, top_p 0.9, max_new_tokens 17), and the tokenizer files
                    (tokenizer.json: SentencePiece-style BPE as LlamaConverter(legacy=False)
                    writes it: byte fallback, Metaspace pre-tokenizer with prepend_scheme "first",
                    split false; tokenizer_config.json, special_tokens_map.json)
  peft_lora/        PEFT LoRA on it: r 4, lora_alpha 8, the 7 projections, A and B random
                    (init_lora_weights=False)
  peft_dora/        PEFT DoRA: r 2, lora_alpha 6, q v o down, magnitudes scaled by random factors
  refused/base/     a smaller Llama (vocab 40, dim 16, no tokenizer) for the refused adapters
  refused/NAME/     adapters PEFT makes on it and lorasc must refuse by name: modules_to_save,
                    layer_replication, rslora, rank_pattern, alpha_pattern, regex (a regular-
                    expression target_modules), embeddings (save_embedding_layers: tensors a
                    LoRA adapter of this config does not have), bias (bias="all")
  vit/              a tiny ViTForImageClassification for 224x224 RGB images (patch 16, dim 16,
                    2 layers, 5 labels) in bf16
  vit_peft/         PEFT LoRA on it for 3 classes: r 2, lora_alpha 4, query, value,
                    intermediate.dense and each layer's output.dense (fc2) by full name,
                    modules_to_save ["classifier"] (a new 3-class head, random)
  interop.bin       (tests/golden_io.h format) tokens [2,7]; llama_logits, lora_logits,
                    dora_logits [2,7,V] (transformers / PEFT, float32); vit: grey [2,1,28,28]
                    images in [0,1]; resized_32, resized_48 [2,1,N,N] (torch bilinear,
                    align_corners False); pos_32, pos_48 [1+g*g, 16] (ViTEmbeddings.
                    interpolate_pos_encoding); vit_logits_224 / _32 / _48 [2,5] (the base on the
                    grey images resized and copied to RGB, interpolate_pos_encoding=True),
                    vit_peft_logits_224 / _32 / _48 [2,3] (PeftModel likewise)
  tokenizer.json    (golden ids) {"strings": [...], "ids": {variant: [[...], ...]}} for the
                    llama/ tokenizer as written (metaspace_first), with split true
                    (metaspace_split), prepend_scheme "never" (metaspace_never) and the legacy
                    Prepend + Replace normalizer (legacy), encoded by tokenizers without special
                    tokens; and, when $LORASC_DATA/llama_spm_vocab is there, the 32000-piece
                    Llama vocabulary built as tests/core/data/test_tokenizer.c builds it with a
                    Metaspace "first" pre-tokenizer (llama32k_metaspace_first) on llama.cpp's test
                    strings each also with one and two leading spaces.
"""
import argparse
import copy
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch

import peft
import tokenizers
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM, ViTConfig, ViTForImageClassification

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import write_golden  # noqa: E402  (the golden_io.h writer)

PINS = {"transformers": "4.44.2", "peft": "0.12.0", "tokenizers": "0.19.1"}
SP = "\u2581"

TRAIN_TEXT = (
    "the quick brown fox jumps over the lazy dog. the dog sleeps in the sun, the fox runs "
    "into the forest. a tokenizer splits text into pieces; pieces merge into words and words "
    "into sentences. there are three hundred and thirty three trees in the forest and the "
    "fox knows every one of them. hello world, hello there, hello again."
)

STRINGS = [
    "", " ", "  ", "   ", "hello", " hello", "  hello", "   hello", "hello world", "hello  world",
    " hello world ", "hello world  ", "the fox", " the fox", "the  fox", "\tthe fox", "\n the fox",
    "the quick brown fox jumps over the lazy dog.", " the quick brown fox jumps over the lazy dog.",
    "  the quick brown fox", "a", " a", "  a", "a b", " a b", "a  b", "ab", "the", " the", "thethe",
    "forest", " forest", "forests", " tokenizer splits", "Hello World", " Hello", "HELLO",
    "\u00c4pfel", " \u00c4pfel", "caf\u00e9", " na\u00efve caf\u00e9", "\U0001f600", " \U0001f600 ok",
    "\u65e5\u672c\u8a9e", " \u65e5\u672c", "333", " 333 trees", "3.14", " x=1; y=2", "\u2581", " \u2581 ",
    "end.", " end. ", "one\ntwo", " one\n two", "    four spaces", "tab\there",
]


# ---------------------------------------------------------------- tokenizer

def train_spm_like(text, n_merges):
    """A SentencePiece-style BPE vocabulary from text: pieces with scores (-merge rank for merged
    pieces, lower for single characters), ids in score order after <unk> <s> </s> and the 256
    byte pieces."""
    words = {}
    for w in text.split(" "):
        if w:
            words[SP + w] = words.get(SP + w, 0) + 1
    seqs = {w: list(w) for w in words}
    merged = []
    for _ in range(n_merges):
        counts = {}
        for w, s in seqs.items():
            for a, b in zip(s, s[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + words[w]
        if not counts:
            break
        (a, b) = min(counts, key=lambda p: (-counts[p], p))
        merged.append(a + b)
        for w, s in seqs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    chars = sorted(set("".join(words)))
    pieces = [p for p in merged] + [c for c in chars if c not in merged]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = 3 + b
    scores = {}
    for i, p in enumerate(pieces):
        if p not in vocab:
            vocab[p] = len(vocab)
            scores[p] = -float(i)
    return vocab, scores


def converter_merges(vocab, scores):
    """transformers' SentencePieceExtractor.extract: every split of every piece whose two halves
    are pieces, by (id of left, id of right) within a piece, then by the piece's score."""
    merges = []
    for piece, score in scores.items():
        local = []
        for k in range(1, len(piece)):
            l, r = piece[:k], piece[k:]
            if l in vocab and r in vocab:
                local.append((l, r, score))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda x: x[2], reverse=True)
    return [f"{l} {r}" for l, r, _ in merges]


def tokenizer_json(vocab, merges, variant):
    """LlamaConverter(legacy=False)'s tokenizer.json, or a variant of it."""
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": SP, "prepend_scheme": "first", "split": False},
        "post_processor": None,
        "decoder": {"type": "Metaspace", "replacement": SP, "prepend_scheme": "first", "split": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }
    if variant == "metaspace_split":
        tok["pre_tokenizer"]["split"] = True
    elif variant == "metaspace_never":
        tok["pre_tokenizer"]["prepend_scheme"] = "never"
    elif variant == "legacy":
        tok["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SP},
            {"type": "Replace", "pattern": {"String": " "}, "content": SP}]}
        tok["pre_tokenizer"] = None
    return tok


VARIANTS = ["metaspace_first", "metaspace_split", "metaspace_never", "legacy"]


def encode_all(tok_dict, strings):
    t = tokenizers.Tokenizer.from_str(json.dumps(tok_dict))
    return [t.encode(s, add_special_tokens=False).ids for s in strings]


def llama32k(data_dir):
    """The Llama vocabulary of $LORASC_DATA/llama_spm_vocab as test_tokenizer.c's write_hf_json
    builds it (merges: every byte split into two normal pieces, by (score desc, left id, right
    id)), with a Metaspace "first" pre-tokenizer instead of the Prepend normalizer; llama.cpp's
    test strings, each also with one and two leading spaces."""
    path = os.path.join(data_dir, "llama_spm_vocab", "ggml-vocab-llama-spm.gguf")
    if not os.path.exists(path):
        return None
    import gguf
    r = gguf.GGUFReader(path)
    f = r.fields
    toks = [bytes(f["tokenizer.ggml.tokens"].parts[i]) for i in f["tokenizer.ggml.tokens"].data]
    scores = [float(f["tokenizer.ggml.scores"].parts[i][0]) for i in f["tokenizer.ggml.scores"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    index = {}
    for i, t in enumerate(toks):
        index.setdefault(t, i)
    vocab = {t.decode("utf-8", "replace"): i for i, t in enumerate(toks)}
    ms = []
    for i, p in enumerate(toks):
        if types[i] != 1:
            continue
        for k in range(1, len(p)):
            l, rr = index.get(p[:k]), index.get(p[k:])
            if l is None or rr is None or types[l] != 1 or types[rr] != 1:
                continue
            ms.append((-scores[i], l, rr))
    ms.sort()
    merges = [toks[l].decode() + " " + toks[rr].decode() for _, l, rr in ms]
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    tok = {"version": "1.0", "added_tokens": added, "normalizer": None,
           "pre_tokenizer": {"type": "Metaspace", "replacement": SP, "prepend_scheme": "first", "split": False},
           "model": {"type": "BPE", "vocab": vocab, "merges": merges, "unk_token": "<unk>",
                     "byte_fallback": True}}
    with open(os.path.join(data_dir, "llama_spm_vocab", "ggml-vocab-llama-spm.gguf.inp"), encoding="utf-8") as fh:
        base = fh.read().split("\n__ggml_vocab_test__\n")[:-1]
    strings = []
    for s in base:
        strings += [s, " " + s, "  " + s]
    return strings, encode_all(tok, strings)


def build_tokenizer(out):
    vocab, scores = train_spm_like(TRAIN_TEXT, 90)
    merges = converter_merges(vocab, scores)
    tok = tokenizer_json(vocab, merges, "metaspace_first")
    ids = {v: encode_all(tokenizer_json(vocab, merges, v), STRINGS) for v in VARIANTS}
    golden = {"pins": PINS, "strings": STRINGS, "ids": ids}
    big = llama32k(os.environ.get("LORASC_DATA", "data"))
    if big:
        golden["llama32k_strings"], golden["ids"]["llama32k_metaspace_first"] = big
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as fh:
        json.dump(golden, fh, ensure_ascii=False, indent=None, separators=(",", ":"))
    return tok, len(vocab), golden


# ---------------------------------------------------------------- llama

def save_tokenizer_files(d, tok):
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as fh:
        json.dump(tok, fh, ensure_ascii=False, indent=1)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as fh:
        json.dump({"tokenizer_class": "LlamaTokenizerFast", "legacy": False, "add_bos_token": True,
                   "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                   "pad_token": "<unk>", "model_max_length": 64, "clean_up_tokenization_spaces": False},
                  fh, indent=1)
    with open(os.path.join(d, "special_tokens_map.json"), "w") as fh:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"}, fh, indent=1)


def llama_logits(model, tokens):
    with torch.no_grad():
        return model(input_ids=torch.tensor(tokens)).logits.float().numpy()


def build_llama(out, tok, vocab_size, recs):
    torch.manual_seed(15)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.037)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms away from 1 so a misplaced weight shows
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(0.8 + 0.4 * torch.rand_like(p))
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=1, eos_token_id=2, pad_token_id=0, do_sample=True, temperature=0.7, top_p=0.9,
        max_new_tokens=17)
    d = os.path.join(out, "llama")
    shutil.rmtree(d, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
    save_tokenizer_files(d, tok)
    base = LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(3, vocab_size, (2, 7), generator=g).numpy().astype(np.int32)
    recs += [("tokens", tokens), ("llama_logits", llama_logits(base, tokens))]

    def adapter(name, lcfg, tweak=None, save_kw=None, base_dir=d):
        m = get_peft_model(LlamaForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32), lcfg).eval()
        if tweak:
            tweak(m)
        path = os.path.join(out, name)
        shutil.rmtree(path, ignore_errors=True)
        m.save_pretrained(path, **(save_kw or {}))
        os.remove(os.path.join(path, "README.md"))  # PEFT's model card template
        with open(os.path.join(path, "adapter_config.json")) as fh:  # the path this script used
            c = json.load(fh)
        c["base_model_name_or_path"] = os.path.relpath(base_dir, out)
        with open(os.path.join(path, "adapter_config.json"), "w") as fh:
            json.dump(c, fh, indent=2, sort_keys=True)
        return m

    torch.manual_seed(16)
    all7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    m = adapter("peft_lora", LoraConfig(r=4, lora_alpha=8, target_modules=all7, init_lora_weights=False,
                                        task_type="CAUSAL_LM"))
    recs.append(("lora_logits", llama_logits(m, tokens)))

    def scale_magnitudes(mm):
        with torch.no_grad():
            for n, p in mm.named_parameters():
                if "lora_magnitude_vector" in n:
                    p.mul_(0.7 + 0.6 * torch.rand_like(p))

    torch.manual_seed(17)
    m = adapter("peft_dora", LoraConfig(r=2, lora_alpha=6, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
                                        init_lora_weights=False, use_dora=True, task_type="CAUSAL_LM"),
                scale_magnitudes)
    recs.append(("dora_logits", llama_logits(m, tokens)))

    return build_refused(out, adapter, tokens)


def build_refused(out, adapter_fn, tokens):
    """The refused adapters, on their own Llama (vocab 40, dim 16) so that modules_to_save's
    lm_head and the saved embeddings stay small: refused/base/, refused/NAME/."""
    torch.manual_seed(19)
    cfg = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16,
                      tie_word_embeddings=True)
    d = os.path.join(out, "refused", "base")
    shutil.rmtree(d, ignore_errors=True)
    LlamaForCausalLM(cfg).save_pretrained(d, safe_serialization=True)
    tokens = tokens % 40
    base_logits = llama_logits(LlamaForCausalLM.from_pretrained(d).eval(), tokens)
    qv = ["q_proj", "v_proj"]
    kw = dict(r=2, lora_alpha=4, init_lora_weights=False, task_type="CAUSAL_LM")
    refused = {
        "modules_to_save": LoraConfig(target_modules=qv, modules_to_save=["lm_head"], **kw),
        "layer_replication": LoraConfig(target_modules=qv, layer_replication=[[0, 2], [1, 2]], **kw),
        "rslora": LoraConfig(target_modules=qv, use_rslora=True, **kw),
        "rank_pattern": LoraConfig(target_modules=qv, rank_pattern={"v_proj": 3}, **kw),
        "alpha_pattern": LoraConfig(target_modules=qv, alpha_pattern={"v_proj": 8}, **kw),
        "regex": LoraConfig(target_modules=r".*\.(q_proj|v_proj)", **kw),
        "embeddings": LoraConfig(target_modules=qv, **kw),
        "bias": LoraConfig(target_modules=qv, bias="all", **kw),
    }
    shifts = {}
    for name, lc in refused.items():
        torch.manual_seed(20)

        def perturb(mm, name=name):
            with torch.no_grad():
                for n, p in mm.named_parameters():
                    if "modules_to_save" in n or (name == "bias" and n.endswith("bias")):
                        p.add_(0.5 * torch.randn_like(p))

        m = adapter_fn(os.path.join("refused", name), lc, perturb,
                       {"save_embedding_layers": True} if name == "embeddings" else None, base_dir=d)
        shifts[name] = float(np.abs(llama_logits(m, tokens) - base_logits).max())
    return shifts


# ---------------------------------------------------------------- ViT

def bilinear(x, n):
    return torch.nn.functional.interpolate(x, size=(n, n), mode="bilinear", align_corners=False)


def vit_logits(model, grey, n):
    x = bilinear(grey, n).repeat(1, 3, 1, 1)
    with torch.no_grad():
        return model(pixel_values=x, interpolate_pos_encoding=True).logits.float().numpy()


def build_vit(out, recs):
    torch.manual_seed(21)
    cfg = ViTConfig(image_size=224, patch_size=16, num_channels=3, hidden_size=16, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=32, num_labels=5, hidden_act="gelu",
                    layer_norm_eps=1e-12, qkv_bias=True)
    model = ViTForImageClassification(cfg).eval()
    with torch.no_grad():  # the init leaves biases 0, position embeddings tiny: make them matter
        for n, p in model.named_parameters():
            if n.endswith("bias") or "position_embeddings" in n or "cls_token" in n:
                p.copy_(0.3 * torch.randn_like(p))
            if "layernorm" in n and n.endswith("weight"):
                p.copy_(0.8 + 0.4 * torch.rand_like(p))
    d = os.path.join(out, "vit")
    shutil.rmtree(d, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
    base = ViTForImageClassification.from_pretrained(d, torch_dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(5)
    grey = torch.rand(2, 1, 28, 28, generator=g)
    recs.append(("vit_images", grey.numpy()))
    emb = base.vit.embeddings
    for n in (32, 48):
        recs.append((f"resized_{n}", bilinear(grey, n).numpy()))
        gg = n // 16
        dummy = torch.zeros(1, 1 + gg * gg, 16)
        with torch.no_grad():
            recs.append((f"pos_{n}", emb.interpolate_pos_encoding(dummy, n, n)[0].float().numpy()))
    for n in (224, 32, 48):
        recs.append((f"vit_logits_{n}", vit_logits(base, grey, n)))
    torch.manual_seed(22)
    head3 = ViTForImageClassification.from_pretrained(d, torch_dtype=torch.float32, num_labels=3,
                                                      ignore_mismatched_sizes=True)
    targets = ["query", "value", "intermediate.dense"] + [f"vit.encoder.layer.{l}.output.dense" for l in range(2)]
    pm = get_peft_model(head3, LoraConfig(r=2, lora_alpha=4, target_modules=targets, modules_to_save=["classifier"],
                                          init_lora_weights=False)).eval()
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "modules_to_save" in n:
                p.add_(0.3 * torch.randn_like(p))
    pd = os.path.join(out, "vit_peft")
    shutil.rmtree(pd, ignore_errors=True)
    pm.save_pretrained(pd)
    os.remove(os.path.join(pd, "README.md"))
    with open(os.path.join(pd, "adapter_config.json")) as fh:
        c = json.load(fh)
    c["base_model_name_or_path"] = "vit"
    with open(os.path.join(pd, "adapter_config.json"), "w") as fh:
        json.dump(c, fh, indent=2, sort_keys=True)
    for n in (224, 32, 48):
        recs.append((f"vit_peft_logits_{n}", vit_logits(pm, grey, n)))


# ---------------------------------------------------------------- verify lorasc's exports

def read_golden(path):
    """The records of a tests/golden_io.h file as numpy arrays."""
    out = {}
    with open(path, "rb") as f:
        assert f.read(8) == b"LSCGOLD1", path
        (count,) = struct.unpack("<I", f.read(4))
        for _ in range(count):
            (nl,) = struct.unpack("<I", f.read(4))
            name = f.read(nl).decode()
            dtype, ndim = struct.unpack("<II", f.read(8))
            dims = struct.unpack(f"<{ndim}I", f.read(4 * ndim))
            n = int(np.prod(dims))
            out[name] = np.frombuffer(f.read(4 * n), dtype="<f4" if dtype == 0 else "<i4").reshape(dims)
    return out


def max_diff(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a.reshape(b.shape) - b).max())


def verify(d):
    """DIR holds what a lorasc test exported, each beside lorasc's own logits (golden_io format,
    records tokens [B,T] + logits for Llamas, images [B,C,N,N] + logits for ViTs):
      llama_hf/ (+ llama_hf.bin)          an HF Llama directory: LlamaForCausalLM
      llama_peft/ (+ llama_peft.bin)      a PEFT adapter on base dir llama_base/: PeftModel
      vit_hf/ (+ vit_hf.bin)              an HF ViT directory: ViTForImageClassification
      vit_peft/ (+ vit_peft.bin)          a PEFT ViT adapter on vit_base/ (num_labels from the
                                          adapter's classifier, grey images copied to RGB,
                                          interpolate_pos_encoding=True)
      hf_N/ + peft_N/                     `lorasc export N --hf --peft` of a trained run: the
                                          merged model under transformers against the adapter
                                          under PEFT on its base_model_name_or_path
    Any that is absent is skipped. Prints one line per model."""
    done = 0
    for name in ("llama_hf", "llama_peft", "llama_stacked", "vit_hf", "vit_peft"):
        p = os.path.join(d, name)
        if not os.path.isdir(p):
            continue
        ref = read_golden(p + ".bin")
        if name.startswith("llama"):
            if name == "llama_hf":
                m = LlamaForCausalLM.from_pretrained(p, torch_dtype=torch.float32).eval()
            else:
                base = LlamaForCausalLM.from_pretrained(os.path.join(d, "llama_base"), torch_dtype=torch.float32)
                m = PeftModel.from_pretrained(base, p).eval()
            got = llama_logits(m, ref["tokens"])
        else:
            x = torch.tensor(ref["images"])
            if name == "vit_hf":
                m = ViTForImageClassification.from_pretrained(p, torch_dtype=torch.float32).eval()
                if m.config.num_channels == 3 and x.shape[1] == 1:
                    x = x.repeat(1, 3, 1, 1)
            else:
                from safetensors.numpy import load_file
                k = load_file(os.path.join(p, "adapter_model.safetensors"))["base_model.model.classifier.weight"].shape[0]
                base = ViTForImageClassification.from_pretrained(os.path.join(d, "vit_base"), torch_dtype=torch.float32,
                                                                 num_labels=k, ignore_mismatched_sizes=True)
                m = PeftModel.from_pretrained(base, p).eval()
                if x.shape[1] == 1:
                    x = x.repeat(1, 3, 1, 1)
            with torch.no_grad():
                got = m(pixel_values=x, interpolate_pos_encoding=True).logits.float().numpy()
        print(f"{name}: max |logit diff| lorasc vs {'PEFT' if 'peft' in name or 'stacked' in name else 'transformers'}"
              f" = {max_diff(got, ref['logits']):.3g} over {got.size} logits (max |logit| {np.abs(got).max():.3g})")
        done += 1
    # lorasc export RUN --hf hf_N --peft peft_N of trained runs (tests/lua/test_export_cli.sh):
    # transformers on the merged model against PEFT on the adapter's base + the adapter (for a
    # cascade, the experts stacked into one adapter)
    for name in sorted(os.listdir(d)):
        if not name.startswith("hf_") or not os.path.isdir(os.path.join(d, "peft_" + name[3:])):
            continue
        hf, pe = os.path.join(d, name), os.path.join(d, "peft_" + name[3:])
        with open(os.path.join(pe, "adapter_config.json")) as fh:
            c = json.load(fh)
        with open(os.path.join(hf, "config.json")) as fh:
            arch = json.load(fh)["architectures"][0]
        if arch == "LlamaForCausalLM":
            g = torch.Generator().manual_seed(1)
            x = torch.randint(0, 256, (2, 12), generator=g)
            merged = LlamaForCausalLM.from_pretrained(hf, torch_dtype=torch.float32).eval()
            base = LlamaForCausalLM.from_pretrained(c["base_model_name_or_path"], torch_dtype=torch.float32)
            run = lambda m: m(input_ids=x).logits
        else:
            merged = ViTForImageClassification.from_pretrained(hf, torch_dtype=torch.float32).eval()
            from safetensors.numpy import load_file
            k = load_file(os.path.join(pe, "adapter_model.safetensors"))["base_model.model.classifier.weight"].shape[0]
            base = ViTForImageClassification.from_pretrained(c["base_model_name_or_path"], torch_dtype=torch.float32,
                                                             num_labels=k, ignore_mismatched_sizes=True)
            n = merged.config.image_size
            grey = torch.rand(3, 1, n, n, generator=torch.Generator().manual_seed(1))
            run = lambda m: m(pixel_values=grey if m.config.num_channels == 1 else grey.repeat(1, 3, 1, 1),
                              interpolate_pos_encoding=True).logits
        with torch.no_grad():
            before = run(base)
            pm = PeftModel.from_pretrained(base, pe).eval()
            a, b = run(merged), run(pm)
        print(f"run {name[3:]}: transformers on lorasc's merged export vs PEFT on its adapter (r {c['r']}, "
              f"lora_alpha {c['lora_alpha']}{', DoRA' if c.get('use_dora') else ''}): max |logit diff| "
              f"{max_diff(a, b):.3g}; the run moved the logits by {max_diff(a, before):.3g}")
        done += 1
    if not done:
        print(f"nothing to verify in {d}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "golden", "interop"))
    ap.add_argument("--verify", metavar="DIR")
    args = ap.parse_args(argv)
    for mod, want in PINS.items():
        got = sys.modules[mod].__version__
        if got != want:
            print(f"warning: {mod} {got}, the goldens were made with {want}", file=sys.stderr)
    if args.verify:
        return verify(args.verify)
    os.makedirs(args.out, exist_ok=True)
    tok, vocab_size, golden = build_tokenizer(args.out)
    recs = []
    shifts = build_llama(args.out, tok, vocab_size, recs)
    build_vit(args.out, recs)
    write_golden(os.path.join(args.out, "interop.bin"), [(n, np.ascontiguousarray(a)) for n, a in recs])
    print(f"{args.out}: vocab {vocab_size}; {len(golden['strings'])} tokenizer strings"
          + (f" + {len(golden['llama32k_strings'])} on the Llama vocabulary" if "llama32k_strings" in golden else ""))
    print("refused adapters, max |logit change| over the base model under PEFT: "
          + ", ".join(f"{k} {v:.3g}" for k, v in shifts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
