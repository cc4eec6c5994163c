#!/usr/bin/python3
"""Golden files for lorasc's PyTorch parity test (tests/test_golden.c).

What it builds: two tiny Llama models (llama2.c weight layout, every weight [out, in],
y = x W^T, no biases) written out with everything the C engine must reproduce:

  llama_interleaved_tied  C=32 H=64 L=2 NH=4 NKV=2 (GQA) V=37, tied embeddings,
                          ROPE_INTERLEAVED, theta 10000, norm eps 1e-5, B=2 T=7,
                          LoRA r=4 alpha=8 on q k v o gate up down
  llama_half_untied       C=24 H=40 L=2 NH=6 NKV=3 V=29, untied classifier,
                          ROPE_HALF, theta 500, B=2 T=6, LoRA r=2 alpha=4 on q v
                          (theta 500 and norm eps 1e-3 make both visible: mean(x^2) of
                          the embeddings is ~0.04, so an ignored or misplaced eps, or
                          theta 10000, moves logits by 0.05 to 0.15, thousands of times
                          the test's tolerance)
  llama_dora              C=16 H=24 L=2 NH=4 NKV=2 V=23, untied, ROPE_HALF, theta 10000,
                          B=2 T=5, DoRA r=2 alpha=6 on q k v o gate up down: every adapted
                          layer is PEFT's DoraLinearLayer, written out literally in linear():
                            weight_norm = ||W + s * (B @ A).detach()||_row, .detach()ed
                            y = x W^T + (m / weight_norm - 1) * x W^T
                                      + (m / weight_norm) * s * (x A^T) B^T
                          m_init = ||W + s B A||_row (PEFT's initialisation, with this
                          scenario's non-zero B); the m used everywhere below is m_init times
                          a random factor in [0.7, 1.3), so m / weight_norm is not 1

For each: the weights, the adapters (B initialised NON-zero, else dA would be 0), tokens and
targets (a few masked with -1), then
  - base model (no LoRA): logits, mean loss, and the gradient of every weight tensor
    (full training; a tied classifier's gradient is folded into token_embedding);
  - LoRA model (base frozen): logits, mean loss, the gradient of every A and B (and m for
    DoRA);
  - 10 steps of torch.optim.AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0.01, constant
    lr 1e-2, clip_grad_norm_ 1.0 before each step) on the adapters, same batch every step:
    the loss before each update plus the loss after the last (11 numbers), and the
    pre-clip global gradient norm of each step (10 numbers).
Weights are drawn in float64 from a fixed seed, rounded to float32 and stored; all reference
arithmetic then runs in float64 on those float32 values, and results are rounded to float32
at the end, so the golden values are the exact answer for the stored inputs.

ViT scenarios (core/model/vit.h; tests/test_golden_vit.c), one file each:

  vit_tiny   HF ViT layout: image 8x8, patch 4, 3 channels, D=16, L=2, NH=2, MLP 32,
             5 classes, exact (erf) GELU, patch bias, LayerNorm eps 1e-12, B=3,
             LoRA r=2 alpha=4 on q v
  vit_clip   CLIP vision layout: the same sizes with quick_gelu, a LayerNorm on the
             embeddings before the blocks (pre_layrnorm), no patch bias, eps 1e-5, and one
             image's label masked (-1); LoRA r=2 alpha=4 on q k v o up (fc1) down (fc2)
The patch embedding runs as torch's Conv2d (F.conv2d with stride = kernel = P), its weight
stored flattened [D, C*P*P], so the file checks the engine's patchify layout too. Records:
    config   i32 [14]: image_size, patch_size, channels, D, L, NH, MLP, K, B, lora_rank,
                       lora_targets (bitmask as above), gelu (0 erf, 1 tanh, 2 quick),
                       pre_norm, patch_bias
    config_f f32 [2]:  norm_eps, lora_alpha
    every weight by its core/model/vit.c name (patch_w [D,C*P*P], patch_b [D] (if any), cls [D],
    pos [T,D], ln_pre_w/b [D] (if any), ln1_w/b [L,D], wq/wk/wv/wo [L,D,D],
    bq/bk/bv/bo [L,D], ln2_w/b [L,D], w1 [L,M,D], b1 [L,M], w2 [L,D,M], b2 [L,D],
    lnf_w/b [D], head_w [K,D], head_b [K]), lora.<t>.A [L,r,in], lora.<t>.B [L,out,r],
    images f32 [B,C,H,W], labels i32 [B],
    base_logits [B,K], base_loss [1], full_grad.<weight name> (full training, no LoRA),
    logits [B,K], loss [1], lora_grad.<t>.A/B, head_grad.head_w [K,D], head_grad.head_b [K]
    (LoRA model: base frozen, head trained in full).

Regenerate (only when the model definition or the scenarios change; CI never regenerates,
the .bin files are committed):
    /usr/bin/python3 tests/reference/make_golden.py [--out tests/golden]
A different torch version may draw different random numbers: the new files are then just as
valid, but commit them together with the reason.

File format (tests/golden_io.h reads it), all integers little-endian u32:
    magic "LSCGOLD1" (8 bytes), count,
    then `count` records: name_len, name (utf-8, no NUL), dtype (0 = f32, 1 = i32), ndim,
    dims[ndim], raw little-endian data (prod(dims) elements; scalars have shape [1]).
Records:
    config    i32 [14]: C, H, L, NH, NKV, V, seq_len, tied, rope_style (0 interleaved,
                        1 half), B, T, lora_rank, lora_targets (bitmask, bit t for
                        q k v o gate up down = 0..6), adamw_steps
    config_f  f32 [9]:  rope_theta, norm_eps, lora_alpha, lr, weight_decay, grad_clip,
                        beta1, beta2, adam_eps
    token_embedding [V,C], rms_att [L,C], wq [L,NH*HD,C], wk [L,NKV*HD,C], wv [L,NKV*HD,C],
    wo [L,C,NH*HD], rms_ffn [L,C], w1 [L,H,C], w2 [L,C,H], w3 [L,H,C], rms_final [C],
    wcls [V,C] (untied only)
    lora.<t>.A [L,r,in], lora.<t>.B [L,out,r]   for each enabled target t in
                                                q k v o gate up down
    lora.<t>.m_init [L,out], lora.<t>.m [L,out] DoRA scenarios only
    tokens i32 [B,T], targets i32 [B,T] (-1 = masked)
    base_logits [B*T,V], base_loss [1]             model without LoRA
    full_grad.<weight name>  same shape as the weight (every weight tensor, no LoRA)
    logits [B*T,V], loss [1]                       model with LoRA
    lora_grad.<t>.A [L,r,in], lora_grad.<t>.B [L,out,r]
    lora_grad.<t>.m [L,out]                        DoRA scenarios only
    adamw_losses [11], adamw_grad_norms [10]       (DoRA: AdamW over A, B and m)
"""

import argparse
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

MAGIC = b"LSCGOLD1"
DTYPE_F32, DTYPE_I32 = 0, 1

TARGETS = ["q", "k", "v", "o", "gate", "up", "down"]  # LoraTarget order in core/model/lora.h
TARGET_WEIGHT = {"q": "wq", "k": "wk", "v": "wv", "o": "wo", "gate": "w1", "up": "w3", "down": "w2"}
WEIGHT_NAMES = ["token_embedding", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn",
                "w1", "w2", "w3", "rms_final", "wcls"]  # LLAMA_* order in core/model/llama.h
ROPE_INTERLEAVED, ROPE_HALF = 0, 1

SCENARIOS = [
    dict(name="llama_interleaved_tied", seed=1234,
         C=32, H=64, L=2, NH=4, NKV=2, V=37, seq_len=16, theta=10000.0, eps=1e-5,
         tied=1, rope=ROPE_INTERLEAVED, B=2, T=7,
         rank=4, alpha=8.0, targets=["q", "k", "v", "o", "gate", "up", "down"],
         masked=[(0, 2), (1, 0), (1, 6)]),
    dict(name="llama_half_untied", seed=5678,
         C=24, H=40, L=2, NH=6, NKV=3, V=29, seq_len=16, theta=500.0, eps=1e-3,
         tied=0, rope=ROPE_HALF, B=2, T=6,
         rank=2, alpha=4.0, targets=["q", "v"],
         masked=[(0, 4), (1, 1)]),
    dict(name="llama_dora", seed=2468,
         C=16, H=24, L=2, NH=4, NKV=2, V=23, seq_len=8, theta=10000.0, eps=1e-5,
         tied=0, rope=ROPE_HALF, B=2, T=5,
         rank=2, alpha=6.0, targets=["q", "k", "v", "o", "gate", "up", "down"],
         masked=[(0, 3), (1, 1)], dora=True),
]
ADAMW = dict(lr=1e-2, weight_decay=0.01, grad_clip=1.0, beta1=0.9, beta2=0.999, eps=1e-8, steps=10)


# ---------------------------------------------------------------- the model (float64)

def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, theta, style):
    """x [B,T,NH,HD]; angle(p, i) = p * theta^(-2i/HD), p = t."""
    _, T, _, HD = x.shape
    i = torch.arange(HD // 2, dtype=torch.float64)
    freqs = theta ** (-2.0 * i / HD)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freqs[None, :]  # [T, HD/2]
    c, s = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    if style == ROPE_INTERLEAVED:
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).reshape(x.shape)
    x0, x1 = x[..., : HD // 2], x[..., HD // 2:]
    return torch.cat([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1)


def linear(x, w, lora, scaling):
    """lora: None, (A, B) for LoRA, or (A, B, m) for DoRA."""
    y = x @ w.t()
    if lora is None:
        return y
    if len(lora) == 2:
        a, b = lora
        return y + scaling * ((x @ a.t()) @ b.t())
    # DoRA as peft/tuners/lora/dora.py (DoraLinearLayer.forward) computes it, with
    # base_result = x W^T (no bias, no dropout), added to the base layer's output:
    a, b, m = lora
    lora_weight = b @ a
    weight_norm = torch.linalg.norm(w + scaling * lora_weight.detach(), dim=1)  # get_weight_norm
    weight_norm = weight_norm.detach()  # "see section 4.3 of DoRA: detach the norm"
    mag_norm_scale = (m / weight_norm).view(1, -1)
    lora_result = (x @ a.t()) @ b.t()
    result_dora = (mag_norm_scale - 1) * (x @ w.t()) + mag_norm_scale * lora_result * scaling
    return y + result_dora


def forward(sc, w, lora, tokens, targets):
    """Returns (logits [B*T, V], mean loss over unmasked targets). lora: {target: [(A, B)] per layer}."""
    B, T = tokens.shape
    C, NH, NKV = sc["C"], sc["NH"], sc["NKV"]
    HD = C // NH
    s = sc["alpha"] / sc["rank"]

    def ad(t, l):  # (A, B) or (A, B, m) of layer l, or None
        return lora[t][l] if lora is not None and t in lora else None

    h = w["token_embedding"][tokens]  # [B,T,C]
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    for l in range(sc["L"]):
        xn = rmsnorm(h, w["rms_att"][l], sc["eps"])
        q = linear(xn, w["wq"][l], ad("q", l), s).view(B, T, NH, HD)
        k = linear(xn, w["wk"][l], ad("k", l), s).view(B, T, NKV, HD)
        v = linear(xn, w["wv"][l], ad("v", l), s).view(B, T, NKV, HD)
        q, k = rope(q, sc["theta"], sc["rope"]), rope(k, sc["theta"], sc["rope"])
        rep = NH // NKV  # query head h reads kv head h // rep
        q = q.transpose(1, 2)
        k = k.repeat_interleave(rep, dim=2).transpose(1, 2)
        v = v.repeat_interleave(rep, dim=2).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) / (HD ** 0.5)
        att = att.masked_fill(causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, NH * HD)
        h = h + linear(y, w["wo"][l], ad("o", l), s)
        xn2 = rmsnorm(h, w["rms_ffn"][l], sc["eps"])
        g = linear(xn2, w["w1"][l], ad("gate", l), s)
        u = linear(xn2, w["w3"][l], ad("up", l), s)
        h = h + linear(F.silu(g) * u, w["w2"][l], ad("down", l), s)
    wcls = w["token_embedding"] if sc["tied"] else w["wcls"]
    logits = rmsnorm(h, w["rms_final"], sc["eps"]) @ wcls.t()
    logits = logits.reshape(B * T, -1)
    loss = F.cross_entropy(logits, targets.reshape(-1), ignore_index=-1)
    return logits, loss


# ---------------------------------------------------------------- data

def weight_shapes(sc):
    C, H, L, NH, NKV, V = sc["C"], sc["H"], sc["L"], sc["NH"], sc["NKV"], sc["V"]
    HD = C // NH
    shapes = {
        "token_embedding": [V, C], "rms_att": [L, C], "wq": [L, NH * HD, C],
        "wk": [L, NKV * HD, C], "wv": [L, NKV * HD, C], "wo": [L, C, NH * HD],
        "rms_ffn": [L, C], "w1": [L, H, C], "w2": [L, C, H], "w3": [L, H, C], "rms_final": [C],
    }
    if not sc["tied"]:
        shapes["wcls"] = [V, C]
    return shapes


def f32_rounded(t):
    """A float64 tensor holding exactly the float32 values that get stored."""
    return t.to(torch.float32).to(torch.float64)


def make_inputs(sc):
    g = torch.Generator().manual_seed(sc["seed"])
    w = {}
    for name, shape in weight_shapes(sc).items():
        if name.startswith("rms_"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            t = 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)
        w[name] = f32_rounded(t)
    wsh = weight_shapes(sc)
    lora = {}
    for t in sc["targets"]:
        out_dim, in_dim = wsh[TARGET_WEIGHT[t]][1:]
        bound = 1.0 / in_dim ** 0.5  # PEFT's kaiming-uniform bound for A
        a = (torch.rand([sc["L"], sc["rank"], in_dim], generator=g, dtype=torch.float64) * 2 - 1) * bound
        b = 0.1 * torch.randn([sc["L"], out_dim, sc["rank"]], generator=g, dtype=torch.float64)
        lora[t] = (f32_rounded(a), f32_rounded(b))
    B, T, V = sc["B"], sc["T"], sc["V"]
    tokens = torch.randint(0, V, (B, T), generator=g)
    tokens[1, 3] = tokens[0, 1]  # a repeated token: the embedding gradient must accumulate
    targets = torch.randint(0, V, (B, T), generator=g)
    for bi, ti in sc["masked"]:
        targets[bi, ti] = -1
    m_init = {}
    if sc.get("dora"):  # drawn last: the other scenarios' inputs do not move
        s = sc["alpha"] / sc["rank"]
        for t in sc["targets"]:
            a, b = lora[t]
            m0 = torch.linalg.norm(w[TARGET_WEIGHT[t]] + s * (b @ a), dim=2)  # [L, out]
            factor = 0.7 + 0.6 * torch.rand(m0.shape, generator=g, dtype=torch.float64)
            m_init[t] = m0
            lora[t] = (a, b, f32_rounded(m0 * factor))
    return w, lora, m_init, tokens, targets


def per_layer(lora_stacked, L):
    """{t: (A [L,..], B [L,..][, m [L,..]])} -> {t: [(A_l, B_l[, m_l])] per layer}, keeping
    autograd links."""
    return {t: [tuple(p[l] for p in ps) for l in range(L)] for t, ps in lora_stacked.items()}


# ---------------------------------------------------------------- file

def write_golden(path, records):
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<I", len(records)))
        for name, arr in records:
            if arr.dtype == np.float32:
                dtype, raw = DTYPE_F32, arr.astype("<f4")
            elif arr.dtype == np.int32:
                dtype, raw = DTYPE_I32, arr.astype("<i4")
            else:
                raise TypeError(f"{name}: unsupported dtype {arr.dtype}")
            nb = name.encode("utf-8")
            f.write(struct.pack("<I", len(nb)) + nb)
            f.write(struct.pack("<II", dtype, arr.ndim))
            f.write(struct.pack(f"<{arr.ndim}I", *arr.shape))
            f.write(np.ascontiguousarray(raw).tobytes())


def f32(t):
    return np.ascontiguousarray(t.detach().to(torch.float32).numpy())


def i32(t):
    return np.ascontiguousarray(np.asarray(t, dtype=np.int32))


def param_records(names, w, lora, m_init=None):
    """The weights in the engine's order, then each adapter's A and B (DoRA: m_init and m)."""
    recs = [(name, f32(w[name])) for name in names if name in w]
    for t in TARGETS:
        if t in lora:
            recs.append((f"lora.{t}.A", f32(lora[t][0])))
            recs.append((f"lora.{t}.B", f32(lora[t][1])))
            if m_init and t in m_init:
                recs.append((f"lora.{t}.m_init", f32(m_init[t])))
                recs.append((f"lora.{t}.m", f32(lora[t][2])))
    return recs


def full_grad_records(names, w, run):
    """Base model, full training: run(weights) -> (logits, loss). Returns the records (logits,
    loss, the gradient of every weight) and the loss."""
    wg = {k: v.clone().requires_grad_(True) for k, v in w.items()}
    logits, loss = run(wg)
    loss.backward()
    recs = [("base_logits", f32(logits)), ("base_loss", f32(loss.reshape(1)))]
    recs += [(f"full_grad.{name}", f32(wg[name].grad)) for name in names if name in wg]
    return recs, loss


def adapter_grad_records(lora, L, run, kinds):
    """Adapters trained, base frozen: run(per-layer adapters) -> (logits, loss). Returns the
    records (logits, loss, the gradient of each adapter tensor named by kinds, "AB" or "ABm")
    and the loss."""
    lg = {t: tuple(p.clone().requires_grad_(True) for p in ps) for t, ps in lora.items()}
    logits, loss = run(per_layer(lg, L))
    loss.backward()
    recs = [("logits", f32(logits)), ("loss", f32(loss.reshape(1)))]
    for t in TARGETS:
        if t in lg:
            for name, p in zip(kinds, lg[t]):
                recs.append((f"lora_grad.{t}.{name}", f32(p.grad)))
    return recs, loss


def build(sc):
    torch.manual_seed(0)  # nothing below draws from the global generator; belt and braces
    w, lora, m_init, tokens, targets = make_inputs(sc)
    L = sc["L"]
    recs = []
    mask = sum(1 << TARGETS.index(t) for t in sc["targets"])
    recs.append(("config", i32([sc["C"], sc["H"], L, sc["NH"], sc["NKV"], sc["V"], sc["seq_len"],
                                sc["tied"], sc["rope"], sc["B"], sc["T"], sc["rank"], mask,
                                ADAMW["steps"]])))
    recs.append(("config_f", np.array([sc["theta"], sc["eps"], sc["alpha"], ADAMW["lr"],
                                       ADAMW["weight_decay"], ADAMW["grad_clip"], ADAMW["beta1"],
                                       ADAMW["beta2"], ADAMW["eps"]], dtype=np.float32)))
    recs += param_records(WEIGHT_NAMES, w, lora, m_init)
    recs.append(("tokens", i32(tokens)))
    recs.append(("targets", i32(targets)))

    # Base model, full training: gradients of every weight.
    more, loss = full_grad_records(WEIGHT_NAMES, w,
                                   lambda wg: forward(sc, wg, None, tokens, targets))
    recs += more
    info = f"base loss {loss.item():.6f}"

    # LoRA (or DoRA) model, base frozen.
    more, loss = adapter_grad_records(lora, L, lambda lg: forward(sc, w, lg, tokens, targets),
                                      "ABm")
    recs += more
    info += f", {'dora' if m_init else 'lora'} loss {loss.item():.6f}"

    # AdamW trajectory on the adapters, same batch every step.
    lt = {t: tuple(p.clone().requires_grad_(True) for p in ps) for t, ps in lora.items()}
    params = [p for t in TARGETS if t in lt for p in lt[t]]
    opt = torch.optim.AdamW(params, lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]),
                            eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"])
    losses, norms = [], []
    for _ in range(ADAMW["steps"]):
        opt.zero_grad()
        _, loss = forward(sc, w, per_layer(lt, L), tokens, targets)
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(params, ADAMW["grad_clip"]).item())
        losses.append(loss.item())
        opt.step()
    with torch.no_grad():
        losses.append(forward(sc, w, per_layer(lt, L), tokens, targets)[1].item())
    recs.append(("adamw_losses", np.array(losses, dtype=np.float32)))
    recs.append(("adamw_grad_norms", np.array(norms, dtype=np.float32)))
    info += f", adamw loss {losses[0]:.6f} -> {losses[-1]:.6f}, grad norm {norms[0]:.4f} -> {norms[-1]:.4f}"
    return recs, info


# ---------------------------------------------------------------- ViT (core/model/vit.h)

VIT_SCENARIOS = [
    dict(name="vit_tiny", seed=4321, image=8, patch=4, chans=3, D=16, L=2, NH=2, M=32, K=5,
         B=3, eps=1e-12, gelu=0, pre_norm=0, patch_bias=1, rank=2, alpha=4.0,
         targets=["q", "v"], masked=[]),
    dict(name="vit_clip", seed=8765, image=8, patch=4, chans=3, D=16, L=2, NH=2, M=32, K=5,
         B=3, eps=1e-5, gelu=2, pre_norm=1, patch_bias=0, rank=2, alpha=4.0,
         targets=["q", "k", "v", "o", "up", "down"], masked=[1]),
]
VIT_TARGET_WEIGHT = {"q": "wq", "k": "wk", "v": "wv", "o": "wo", "up": "w1", "down": "w2"}
VIT_WEIGHT_NAMES = ["patch_w", "patch_b", "cls", "pos", "ln_pre_w", "ln_pre_b", "ln1_w", "ln1_b",
                    "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo", "ln2_w", "ln2_b",
                    "w1", "b1", "w2", "b2", "lnf_w", "lnf_b", "head_w", "head_b"]  # VIT_* order


def vit_shapes(sc):
    D, L, M, K, P, C = sc["D"], sc["L"], sc["M"], sc["K"], sc["patch"], sc["chans"]
    T = 1 + (sc["image"] // P) ** 2
    sh = {"patch_w": [D, C * P * P], "cls": [D], "pos": [T, D],
          "ln1_w": [L, D], "ln1_b": [L, D], "wq": [L, D, D], "bq": [L, D], "wk": [L, D, D],
          "bk": [L, D], "wv": [L, D, D], "bv": [L, D], "wo": [L, D, D], "bo": [L, D],
          "ln2_w": [L, D], "ln2_b": [L, D], "w1": [L, M, D], "b1": [L, M], "w2": [L, D, M],
          "b2": [L, D], "lnf_w": [D], "lnf_b": [D], "head_w": [K, D], "head_b": [K]}
    if sc["patch_bias"]:
        sh["patch_b"] = [D]
    if sc["pre_norm"]:
        sh["ln_pre_w"], sh["ln_pre_b"] = [D], [D]
    return sh


def vit_gelu(x, kind):
    if kind == 0:
        return F.gelu(x)
    if kind == 1:
        return F.gelu(x, approximate="tanh")
    return x * torch.sigmoid(1.702 * x)


def vit_forward(sc, w, lora, images, labels):
    """HF ViTForImageClassification / CLIP vision tower + linear head, written out."""
    B = images.shape[0]
    D, NH, P, C, eps = sc["D"], sc["NH"], sc["patch"], sc["chans"], sc["eps"]
    HD = D // NH
    s = sc["alpha"] / sc["rank"]

    def ad(t, l):
        return lora[t][l] if lora is not None and t in lora else None

    def lin(x, wt, b, a):
        return linear(x, wt, a, s) + b

    x = F.conv2d(images, w["patch_w"].view(D, C, P, P), w.get("patch_b"), stride=P)
    x = x.flatten(2).transpose(1, 2)  # [B, Np, D], patches row-major over (py, px)
    x = torch.cat([w["cls"].view(1, 1, D).expand(B, 1, D), x], dim=1) + w["pos"][None]
    T = x.shape[1]
    if sc["pre_norm"]:
        x = F.layer_norm(x, (D,), w["ln_pre_w"], w["ln_pre_b"], eps)
    for l in range(sc["L"]):
        xn = F.layer_norm(x, (D,), w["ln1_w"][l], w["ln1_b"][l], eps)
        q = lin(xn, w["wq"][l], w["bq"][l], ad("q", l)).view(B, T, NH, HD).transpose(1, 2)
        k = lin(xn, w["wk"][l], w["bk"][l], ad("k", l)).view(B, T, NH, HD).transpose(1, 2)
        v = lin(xn, w["wv"][l], w["bv"][l], ad("v", l)).view(B, T, NH, HD).transpose(1, 2)
        att = ((q @ k.transpose(-1, -2)) / (HD ** 0.5)).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, D)
        x = x + lin(y, w["wo"][l], w["bo"][l], ad("o", l))
        xn2 = F.layer_norm(x, (D,), w["ln2_w"][l], w["ln2_b"][l], eps)
        h = vit_gelu(lin(xn2, w["w1"][l], w["b1"][l], ad("up", l)), sc["gelu"])
        x = x + lin(h, w["w2"][l], w["b2"][l], ad("down", l))
    c = F.layer_norm(x[:, 0], (D,), w["lnf_w"], w["lnf_b"], eps)
    logits = c @ w["head_w"].t() + w["head_b"]
    return logits, F.cross_entropy(logits, labels, ignore_index=-1)


def vit_build(sc):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(sc["seed"])
    shapes = vit_shapes(sc)
    w = {}
    for name in VIT_WEIGHT_NAMES:
        if name not in shapes:
            continue
        shape = shapes[name]
        if name.startswith("ln") and name.endswith("_w"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif name in ("cls", "pos"):
            t = 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            t = 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)
        w[name] = f32_rounded(t)
    lora = {}
    for t in sc["targets"]:
        out_dim, in_dim = shapes[VIT_TARGET_WEIGHT[t]][1:]
        bound = 1.0 / in_dim ** 0.5
        a = (torch.rand([sc["L"], sc["rank"], in_dim], generator=g, dtype=torch.float64) * 2 - 1) * bound
        b = 0.1 * torch.randn([sc["L"], out_dim, sc["rank"]], generator=g, dtype=torch.float64)
        lora[t] = (f32_rounded(a), f32_rounded(b))
    B, C, H = sc["B"], sc["chans"], sc["image"]
    images = f32_rounded(torch.randn([B, C, H, H], generator=g, dtype=torch.float64))
    labels = torch.randint(0, sc["K"], (B,), generator=g)
    for i in sc["masked"]:
        labels[i] = -1
    L = sc["L"]
    mask = sum(1 << TARGETS.index(t) for t in sc["targets"])
    recs = [("config", i32([sc["image"], sc["patch"], C, sc["D"], L, sc["NH"], sc["M"], sc["K"],
                            B, sc["rank"], mask, sc["gelu"], sc["pre_norm"], sc["patch_bias"]])),
            ("config_f", np.array([sc["eps"], sc["alpha"]], dtype=np.float32))]
    recs += param_records(VIT_WEIGHT_NAMES, w, lora)
    recs.append(("images", f32(images)))
    recs.append(("labels", i32(labels)))

    more, loss = full_grad_records(VIT_WEIGHT_NAMES, w,
                                   lambda wg: vit_forward(sc, wg, None, images, labels))
    recs += more
    info = f"base loss {loss.item():.6f}"

    # LoRA: base frozen, adapters and the head (modules_to_save) trained
    wl = dict(w)
    wl["head_w"] = w["head_w"].clone().requires_grad_(True)
    wl["head_b"] = w["head_b"].clone().requires_grad_(True)
    more, loss = adapter_grad_records(lora, L, lambda lg: vit_forward(sc, wl, lg, images, labels),
                                      "AB")
    recs += more
    recs.append(("head_grad.head_w", f32(wl["head_w"].grad)))
    recs.append(("head_grad.head_b", f32(wl["head_b"].grad)))
    info += f", lora loss {loss.item():.6f}"
    return recs, info


# ------------------------------------------------------------------------------------------
# Hugging Face layout and PEFT adapters (tests/test_hf.c). Writes tests/golden/hf_tiny/ only.

HF_TINY = dict(dim=32, hidden=64, L=2, nh=4, nkv=2, V=48, seq=16, eps=1e-5, theta=10000.0)


def hf_permute(w, n_heads):
    """convert_llama_weights_to_hf.py: Meta (interleaved rotary pairs) -> HF (rotate_half)."""
    dim1, dim2 = w.shape
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def st_write(path, tensors, dtype="F32"):
    """safetensors by hand: u64 header length, JSON header, raw little-endian data."""
    import json
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().to(torch.float32).contiguous()
        if dtype == "F32":
            raw = t.numpy().astype("<f4").tobytes()
        elif dtype == "F16":
            raw = t.numpy().astype("<f2").tobytes()
        else:  # BF16: round to nearest even via torch
            raw = t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def hf_forward(w, tokens, c, lora=None, scaling=0.0):
    """HF LlamaForCausalLM in float64 (rotate_half RoPE), optional PEFT LoRA per module:
    y = x W^T + scaling * (x A^T) B^T (PEFT's Linear.forward with dropout 0)."""
    B, T = tokens.shape
    hd = c["dim"] // c["nh"]
    inv = 1.0 / (c["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    fr = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    cos, sin = torch.cat([fr, fr], -1).cos(), torch.cat([fr, fr], -1).sin()

    def rot(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def norm(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c["eps"]) * g

    def lin(x, name):
        y = x @ w[name].T
        key = "base_model.model." + name[: -len(".weight")]
        if lora is not None and key + ".lora_A.weight" in lora:
            y = y + scaling * (x @ lora[key + ".lora_A.weight"].T) @ lora[key + ".lora_B.weight"].T
        return y

    x = w["model.embed_tokens.weight"][tokens]
    for l in range(c["L"]):
        p = f"model.layers.{l}."
        h = norm(x, w[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj.weight").view(B, T, c["nh"], hd).transpose(1, 2)
        k = lin(h, p + "self_attn.k_proj.weight").view(B, T, c["nkv"], hd).transpose(1, 2)
        v = lin(h, p + "self_attn.v_proj.weight").view(B, T, c["nkv"], hd).transpose(1, 2)
        q, k = rot(q), rot(k)
        rep = c["nh"] // c["nkv"]
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, c["dim"])
        x = x + lin(y, p + "self_attn.o_proj.weight")
        h = norm(x, w[p + "post_attention_layernorm.weight"])
        x = x + lin(F.silu(lin(h, p + "mlp.gate_proj.weight")) * lin(h, p + "mlp.up_proj.weight"),
                    p + "mlp.down_proj.weight")
    x = norm(x, w["model.norm.weight"])
    return x @ w["lm_head.weight"].T


def build_hf_tiny(out_dir):
    """A tiny untied GQA Llama in both layouts + a PEFT adapter + torch logits:
      meta.bin                llama2.c legacy .bin (Meta layout: interleaved q/k rows)
      hf/                     config.json + model.safetensors F32 (q/k rows HF-permuted)
      hf_bf16/, hf_f16/       the same weights stored BF16 / F16
      hf_sharded/             2 shards + model.safetensors.index.json
      peft/                   adapter_config.json + adapter_model.safetensors (PEFT keys,
                              r=4, alpha=8, all 7 targets, non-zero A and B, HF layout)
      expected.bin            i32 B, T, V; i32 tokens[B*T]; f32 logits[B*T*V] (base);
                              f32 logits[B*T*V] (with the adapter), from hf_forward"""
    import json
    c = HF_TINY
    g = torch.Generator().manual_seed(777)
    C, H, L, NH, NKV, V = c["dim"], c["hidden"], c["L"], c["nh"], c["nkv"], c["V"]
    hd = C // NH

    def rnd(*shape, std=0.2):
        return (torch.randn(*shape, generator=g) * std).to(torch.float32)

    meta = {"tok": rnd(V, C, std=0.5), "rms_att": 1 + rnd(L, C, std=0.1), "wq": rnd(L, C, C),
            "wk": rnd(L, NKV * hd, C), "wv": rnd(L, NKV * hd, C), "wo": rnd(L, C, C),
            "rms_ffn": 1 + rnd(L, C, std=0.1), "w1": rnd(L, H, C), "w2": rnd(L, C, H),
            "w3": rnd(L, H, C), "rms_final": 1 + rnd(C, std=0.1), "wcls": rnd(V, C)}
    d = os.path.join(out_dir, "hf_tiny")
    for sub in ("hf", "hf_bf16", "hf_f16", "hf_sharded", "peft"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    # llama2.c legacy: header, weights in run.c order, freq_cis tables, untied classifier
    with open(os.path.join(d, "meta.bin"), "wb") as f:
        f.write(struct.pack("<7i", C, H, L, NH, NKV, -V, c["seq"]))
        for k in ("tok", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final"):
            f.write(meta[k].numpy().astype("<f4").tobytes())
        f.write(np.zeros(c["seq"] * hd, dtype="<f4").tobytes())  # freq_cis_real / imag
        f.write(meta["wcls"].numpy().astype("<f4").tobytes())
    hf = {"model.embed_tokens.weight": meta["tok"], "model.norm.weight": meta["rms_final"],
          "lm_head.weight": meta["wcls"]}
    for l in range(L):
        p = f"model.layers.{l}."
        hf[p + "input_layernorm.weight"] = meta["rms_att"][l]
        hf[p + "self_attn.q_proj.weight"] = hf_permute(meta["wq"][l], NH)
        hf[p + "self_attn.k_proj.weight"] = hf_permute(meta["wk"][l], NKV)
        hf[p + "self_attn.v_proj.weight"] = meta["wv"][l]
        hf[p + "self_attn.o_proj.weight"] = meta["wo"][l]
        hf[p + "post_attention_layernorm.weight"] = meta["rms_ffn"][l]
        hf[p + "mlp.gate_proj.weight"] = meta["w1"][l]
        hf[p + "mlp.down_proj.weight"] = meta["w2"][l]
        hf[p + "mlp.up_proj.weight"] = meta["w3"][l]
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C,
              "intermediate_size": H, "num_hidden_layers": L, "num_attention_heads": NH,
              "num_key_value_heads": NKV, "vocab_size": V, "max_position_embeddings": c["seq"],
              "rms_norm_eps": c["eps"], "rope_theta": c["theta"], "tie_word_embeddings": False,
              "hidden_act": "silu", "torch_dtype": "float32", "rope_scaling": None}
    for sub, dt in (("hf", "F32"), ("hf_bf16", "BF16"), ("hf_f16", "F16")):
        with open(os.path.join(d, sub, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
        st_write(os.path.join(d, sub, "model.safetensors"), hf, dt)
    with open(os.path.join(d, "hf_sharded", "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    names = list(hf)
    shards = [names[: len(names) // 2], names[len(names) // 2:]]
    wmap = {}
    for i, part in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-00002.safetensors"
        st_write(os.path.join(d, "hf_sharded", fn), {n: hf[n] for n in part})
        wmap.update({n: fn for n in part})
    with open(os.path.join(d, "hf_sharded", "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(t.numel() * 4 for t in hf.values())},
                   "weight_map": wmap}, f, indent=2)
    # PEFT adapter (HF layout: it adapts the HF modules as stored)
    r, alpha = 4, 8.0
    mods = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = {}
    for l in range(L):
        for m in mods:
            sub = "self_attn" if m[0] in "qkvo" else "mlp"
            wname = f"model.layers.{l}.{sub}.{m}.weight"
            out_f, in_f = hf[wname].shape
            key = f"base_model.model.model.layers.{l}.{sub}.{m}"
            lora[key + ".lora_A.weight"] = rnd(r, in_f, std=0.3)
            lora[key + ".lora_B.weight"] = rnd(out_f, r, std=0.3)
    st_write(os.path.join(d, "peft", "adapter_model.safetensors"), lora)
    with open(os.path.join(d, "peft", "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
                   "target_modules": mods, "lora_dropout": 0.0, "bias": "none",
                   "use_dora": False, "use_rslora": False, "fan_in_fan_out": False,
                   "base_model_name_or_path": "hf_tiny", "inference_mode": True}, f, indent=2)
    # logits (float64 forward on the float32 values)
    Bt, Tt = 2, 7
    tokens = torch.randint(0, V, (Bt, Tt), generator=g)
    w64 = {k: v.double() for k, v in hf.items()}
    l64 = {k: v.double() for k, v in lora.items()}
    base = hf_forward(w64, tokens, c)
    with_lora = hf_forward(w64, tokens, c, l64, alpha / r)
    # (Meta layout + interleaved RoPE giving these logits is what tests/test_hf.c checks)
    with open(os.path.join(d, "expected.bin"), "wb") as f:
        f.write(struct.pack("<3i", Bt, Tt, V))
        f.write(tokens.numpy().astype("<i4").tobytes())
        f.write(base.float().numpy().astype("<f4").tobytes())
        f.write(with_lora.float().numpy().astype("<f4").tobytes())
    diff = (with_lora - base).abs().max().item()
    return f"{d}: meta.bin, hf{{,_bf16,_f16,_sharded}}/, peft/, expected.bin (adapter moves logits by up to {diff:.3f})"


# ------------------------------------------------------------------------------------------
# Hugging Face ViT / CLIP-vision layouts (tests/test_vit_hf.c). Writes tests/golden/
# hf_vit_tiny/ (ViTForImageClassification, the vit_tiny scenario's weights) and
# clip_vit_tiny/ (CLIPVisionModel, the vit_clip scenario's weights; CLIP has no classifier,
# so the test puts the scenario's head in itself), plus hf_vit_tiny_sharded/ (two shards and
# model.safetensors.index.json). The logits to compare with are the .bin files' base_logits.

def build_hf_vit(out_dir):
    import json
    msgs = []
    for sc in VIT_SCENARIOS:
        recs, _ = vit_build(sc)
        w = {name: torch.from_numpy(arr) for name, arr in recs if name in VIT_WEIGHT_NAMES}
        D, L, C, P, K = sc["D"], sc["L"], sc["chans"], sc["patch"], sc["K"]
        T = 1 + (sc["image"] // P) ** 2
        clip = sc["pre_norm"] == 1
        st = {}
        if clip:
            v = "vision_model."
            st[v + "embeddings.class_embedding"] = w["cls"]
            st[v + "embeddings.patch_embedding.weight"] = w["patch_w"].view(D, C, P, P)
            st[v + "embeddings.position_embedding.weight"] = w["pos"]
            st[v + "pre_layrnorm.weight"], st[v + "pre_layrnorm.bias"] = w["ln_pre_w"], w["ln_pre_b"]
            mods = {"ln1": "layer_norm1", "q": "self_attn.q_proj", "k": "self_attn.k_proj",
                    "v": "self_attn.v_proj", "o": "self_attn.out_proj", "ln2": "layer_norm2",
                    "1": "mlp.fc1", "2": "mlp.fc2"}
            layer = v + "encoder.layers.{}."
            st[v + "post_layernorm.weight"], st[v + "post_layernorm.bias"] = w["lnf_w"], w["lnf_b"]
        else:
            v = "vit."
            st[v + "embeddings.cls_token"] = w["cls"].view(1, 1, D)
            st[v + "embeddings.position_embeddings"] = w["pos"].view(1, T, D)
            st[v + "embeddings.patch_embeddings.projection.weight"] = w["patch_w"].view(D, C, P, P)
            st[v + "embeddings.patch_embeddings.projection.bias"] = w["patch_b"]
            mods = {"ln1": "layernorm_before", "q": "attention.attention.query",
                    "k": "attention.attention.key", "v": "attention.attention.value",
                    "o": "attention.output.dense", "ln2": "layernorm_after",
                    "1": "intermediate.dense", "2": "output.dense"}
            layer = v + "encoder.layer.{}."
            st[v + "layernorm.weight"], st[v + "layernorm.bias"] = w["lnf_w"], w["lnf_b"]
            st["classifier.weight"], st["classifier.bias"] = w["head_w"], w["head_b"]
        for l in range(L):
            p = layer.format(l)
            for key, (wn, bn) in {"ln1": ("ln1_w", "ln1_b"), "q": ("wq", "bq"), "k": ("wk", "bk"),
                                  "v": ("wv", "bv"), "o": ("wo", "bo"), "ln2": ("ln2_w", "ln2_b"),
                                  "1": ("w1", "b1"), "2": ("w2", "b2")}.items():
                st[p + mods[key] + ".weight"] = w[wn][l]
                st[p + mods[key] + ".bias"] = w[bn][l]
        if clip:
            d = os.path.join(out_dir, "clip_vit_tiny")
            config = {"architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model",
                      "hidden_size": D, "intermediate_size": sc["M"], "num_hidden_layers": L,
                      "num_attention_heads": sc["NH"], "num_channels": C, "image_size": sc["image"],
                      "patch_size": P, "hidden_act": "quick_gelu", "layer_norm_eps": sc["eps"],
                      "projection_dim": 8, "torch_dtype": "float32"}
        else:
            d = os.path.join(out_dir, "hf_vit_tiny")
            config = {"architectures": ["ViTForImageClassification"], "model_type": "vit",
                      "hidden_size": D, "intermediate_size": sc["M"], "num_hidden_layers": L,
                      "num_attention_heads": sc["NH"], "num_channels": C, "image_size": sc["image"],
                      "patch_size": P, "hidden_act": "gelu", "layer_norm_eps": sc["eps"],
                      "qkv_bias": True, "id2label": {str(i): f"class_{i}" for i in range(K)},
                      "label2id": {f"class_{i}": i for i in range(K)}, "torch_dtype": "float32"}
        dirs = [d] if clip else [d, d + "_sharded"]
        for dd in dirs:
            os.makedirs(dd, exist_ok=True)
            with open(os.path.join(dd, "config.json"), "w") as f:
                json.dump(config, f, indent=2)
        st_write(os.path.join(d, "model.safetensors"), st)
        if not clip:  # the same tensors in two shards
            names = list(st)
            wmap = {}
            for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
                fn = f"model-{i + 1:05d}-of-00002.safetensors"
                st_write(os.path.join(d + "_sharded", fn), {n: st[n] for n in part})
                wmap.update({n: fn for n in part})
            with open(os.path.join(d + "_sharded", "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {"total_size": sum(t.numel() * 4 for t in st.values())},
                           "weight_map": wmap}, f, indent=2)
        msgs.append(f"{', '.join(dirs)}: config.json + {len(st)} tensors ({sc['name']} weights)")
    # hf_vit_mnist/: a 28x28 RGB ViTForImageClassification (patch 14, D=8, 1 layer, 10 labels,
    # random weights) for the harness test of vit{ hf = ... } on MNIST-sized images
    # (tests/lua/test_vit_hf_cli.sh): no logits, only the layout.
    g = torch.Generator().manual_seed(2468)
    D, M, P, C, K, T = 8, 16, 14, 3, 10, 5
    shapes = {"vit.embeddings.cls_token": [1, 1, D], "vit.embeddings.position_embeddings": [1, T, D],
              "vit.embeddings.patch_embeddings.projection.weight": [D, C, P, P],
              "vit.embeddings.patch_embeddings.projection.bias": [D],
              "vit.layernorm.weight": [D], "vit.layernorm.bias": [D],
              "classifier.weight": [K, D], "classifier.bias": [K]}
    for mod, o, i in (("layernorm_before", D, 0), ("attention.attention.query", D, D),
                      ("attention.attention.key", D, D), ("attention.attention.value", D, D),
                      ("attention.output.dense", D, D), ("layernorm_after", D, 0),
                      ("intermediate.dense", M, D), ("output.dense", D, M)):
        shapes[f"vit.encoder.layer.0.{mod}.weight"] = [o, i] if i else [o]
        shapes[f"vit.encoder.layer.0.{mod}.bias"] = [o]
    st = {n: (1.0 if "layernorm" in n and n.endswith("weight") else 0.0) +
          0.05 * torch.randn(sh, generator=g) for n, sh in shapes.items()}
    d = os.path.join(out_dir, "hf_vit_mnist")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"architectures": ["ViTForImageClassification"], "model_type": "vit",
                   "hidden_size": D, "intermediate_size": M, "num_hidden_layers": 1,
                   "num_attention_heads": 2, "image_size": 28, "patch_size": P,
                   "id2label": {str(i): str(i) for i in range(K)}}, f, indent=2)
    st_write(os.path.join(d, "model.safetensors"), st)
    msgs.append(f"{d}: config.json + {len(st)} tensors (random, 28x28 RGB)")
    return "; ".join(msgs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "golden"),
                    help="output directory (default: tests/golden)")
    ap.add_argument("--only", choices=["hf_vit"],
                    help="write only these files (hf_vit: hf_vit_tiny*/, clip_vit_tiny/, hf_vit_mnist/)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.only == "hf_vit":
        print(build_hf_vit(args.out))
        return 0
    for sc in SCENARIOS:
        recs, info = build(sc)
        path = os.path.join(args.out, sc["name"] + ".bin")
        write_golden(path, recs)
        print(f"{path}: {len(recs)} records, {os.path.getsize(path)} bytes; {info}")
    for sc in VIT_SCENARIOS:
        recs, info = vit_build(sc)
        path = os.path.join(args.out, sc["name"] + ".bin")
        write_golden(path, recs)
        print(f"{path}: {len(recs)} records, {os.path.getsize(path)} bytes; {info}")
    print(build_hf_tiny(args.out))
    print(build_hf_vit(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
