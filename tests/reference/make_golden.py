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
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

MAGIC = b"LSCGOLD1"
DTYPE_F32, DTYPE_I32 = 0, 1

TARGETS = ["q", "k", "v", "o", "gate", "up", "down"]  # LoraTarget order in core/lora.h
TARGET_WEIGHT = {"q": "wq", "k": "wk", "v": "wv", "o": "wo", "gate": "w1", "up": "w3", "down": "w2"}
WEIGHT_NAMES = ["token_embedding", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn",
                "w1", "w2", "w3", "rms_final", "wcls"]  # LLAMA_* order in core/llama.h
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
    for name in WEIGHT_NAMES:
        if name in w:
            recs.append((name, f32(w[name])))
    for t in TARGETS:
        if t in lora:
            recs.append((f"lora.{t}.A", f32(lora[t][0])))
            recs.append((f"lora.{t}.B", f32(lora[t][1])))
            if t in m_init:
                recs.append((f"lora.{t}.m_init", f32(m_init[t])))
                recs.append((f"lora.{t}.m", f32(lora[t][2])))
    recs.append(("tokens", i32(tokens)))
    recs.append(("targets", i32(targets)))

    # Base model, full training: gradients of every weight.
    wg = {k: v.clone().requires_grad_(True) for k, v in w.items()}
    logits, loss = forward(sc, wg, None, tokens, targets)
    loss.backward()
    recs.append(("base_logits", f32(logits)))
    recs.append(("base_loss", f32(loss.reshape(1))))
    for name in WEIGHT_NAMES:
        if name in wg:
            recs.append((f"full_grad.{name}", f32(wg[name].grad)))
    info = f"base loss {loss.item():.6f}"

    # LoRA (or DoRA) model, base frozen.
    lg = {t: tuple(p.clone().requires_grad_(True) for p in ps) for t, ps in lora.items()}
    logits, loss = forward(sc, w, per_layer(lg, L), tokens, targets)
    loss.backward()
    recs.append(("logits", f32(logits)))
    recs.append(("loss", f32(loss.reshape(1))))
    for t in TARGETS:
        if t in lg:
            for name, p in zip("ABm", lg[t]):
                recs.append((f"lora_grad.{t}.{name}", f32(p.grad)))
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "golden"),
                    help="output directory (default: tests/golden)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for sc in SCENARIOS:
        recs, info = build(sc)
        path = os.path.join(args.out, sc["name"] + ".bin")
        write_golden(path, recs)
        print(f"{path}: {len(recs)} records, {os.path.getsize(path)} bytes; {info}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
