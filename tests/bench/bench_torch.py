"""PyTorch reference for tests/bench/bench_llama.c: the same Llama (RMSNorm, interleaved
rotary, causal attention written out as matmul + mask + softmax, SwiGLU, tied classifier),
the same LoRA (q and v, r = 8, alpha = 16, base frozen), AdamW on the adapters with the same
clipping, the same shapes and the same timing protocol (warm-up, then the median of timed
steps). It prints tokens/s and, with --json, writes them for run_bench.sh.
Not a correctness reference (tests/reference/ is): only the work per step must match.
Run with Debian's interpreter: /usr/bin/python3 tests/bench/bench_torch.py --shape all
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = {
    # name: (dim, n_layers, n_heads, hidden, vocab, seq, B, warmup, steps) as in bench_llama.c
    "small": dict(dim=288, n_layers=6, n_heads=6, hidden=768, vocab=32000, T=256, B=4,
                  warmup=2, steps=6),
    "large": dict(dim=768, n_layers=12, n_heads=12, hidden=2048, vocab=32000, T=256, B=2,
                  warmup=1, steps=4),
    # SmolLM2-135M: grouped-query attention (9 query / 3 key-value heads), vocab 49,152
    "smollm2": dict(dim=576, n_layers=30, n_heads=9, n_kv_heads=3, hidden=1536, vocab=49152,
                    T=256, B=2, warmup=1, steps=4, theta=100000.0),
}
LORA_RANK, LORA_ALPHA, LR = 8, 16.0, 1e-3


def rope_tables(T, hd, theta=10000.0):
    freq = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()  # [T, hd/2]


def rope(x, cos, sin):
    """Interleaved (Meta / llama2.c) rotation of pairs (2i, 2i+1); x [B, NH, T, HD]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


def rmsnorm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


class LoraLlama(torch.nn.Module):
    """Frozen base weights are plain tensors (requires_grad=False): autograd computes only
    activation gradients through them, as lorasc's LoRA mode does."""

    def __init__(self, dim, n_layers, n_heads, hidden, vocab, T, n_kv_heads=None, theta=10000.0):
        super().__init__()
        g = torch.Generator().manual_seed(42)

        def normal(*shape):
            return torch.randn(*shape, generator=g) * 0.02

        self.n_heads, self.hd = n_heads, dim // n_heads
        self.n_kv = n_kv_heads or n_heads
        kvdim = self.n_kv * self.hd
        self.emb = normal(vocab, dim)  # tied: also the classifier
        self.layers = []
        for _ in range(n_layers):
            self.layers.append(dict(
                rms_att=torch.ones(dim), wq=normal(dim, dim), wk=normal(kvdim, dim),
                wv=normal(kvdim, dim), wo=normal(dim, dim), rms_ffn=torch.ones(dim),
                w1=normal(hidden, dim), w2=normal(dim, hidden), w3=normal(hidden, dim)))
        self.rms_final = torch.ones(dim)
        self.scaling = LORA_ALPHA / LORA_RANK
        self.lora = torch.nn.ParameterList()
        bound = 1.0 / math.sqrt(dim)  # PEFT: kaiming_uniform(a=sqrt(5)) on A, B = 0
        for layer in self.layers:
            for t, out in (("q", dim), ("v", kvdim)):
                a = torch.nn.Parameter(torch.empty(LORA_RANK, dim).uniform_(-bound, bound, generator=g))
                b = torch.nn.Parameter(torch.zeros(out, LORA_RANK))
                layer["A" + t], layer["B" + t] = a, b
                self.lora.extend([a, b])
        self.cos, self.sin = rope_tables(T, self.hd, theta)
        self.mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)

    def lora_linear(self, x, w, a, b):
        return F.linear(x, w) + self.scaling * F.linear(F.linear(x, a), b)

    def forward(self, tokens, targets):
        B, T = tokens.shape
        NH, NKV, HD = self.n_heads, self.n_kv, self.hd
        x = F.embedding(tokens, self.emb)
        cos, sin = self.cos[:T], self.sin[:T]
        mask = self.mask[:T, :T]
        for ly in self.layers:
            xn = rmsnorm(x, ly["rms_att"])
            q = self.lora_linear(xn, ly["wq"], ly["Aq"], ly["Bq"])
            k = F.linear(xn, ly["wk"])
            v = self.lora_linear(xn, ly["wv"], ly["Av"], ly["Bv"])
            q = rope(q.view(B, T, NH, HD).transpose(1, 2), cos, sin)
            k = rope(k.view(B, T, NKV, HD).transpose(1, 2), cos, sin)
            v = v.view(B, T, NKV, HD).transpose(1, 2)
            if NKV != NH:  # grouped-query attention: query head h reads kv head h // (NH / NKV)
                k = k.repeat_interleave(NH // NKV, dim=1)
                v = v.repeat_interleave(NH // NKV, dim=1)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HD))
            att = torch.softmax(att.masked_fill(mask, float("-inf")), dim=-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, NH * HD)
            x = x + F.linear(y, ly["wo"])
            xn = rmsnorm(x, ly["rms_ffn"])
            x = x + F.linear(F.silu(F.linear(xn, ly["w1"])) * F.linear(xn, ly["w3"]), ly["w2"])
        logits = F.linear(rmsnorm(x, self.rms_final), self.emb)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def cpu_ticks():
    """(busy ticks of all CPUs less this process's own, total ticks) from /proc/stat, or None:
    other processes on the cores invalidate the timings, so the report says how busy they were."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
        busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7] - (int(own[11]) + int(own[12]))
        return busy, busy + (int(own[11]) + int(own[12])) + v[3] + v[4]
    except (OSError, ValueError, IndexError):
        return None


def busy_since(mark):
    now = cpu_ticks()
    if not mark or not now or now[1] <= mark[1]:
        return -1.0
    return max(0, now[0] - mark[0]) / (now[1] - mark[1])


def n_params(cfg):
    C, H, L, V = cfg["dim"], cfg["hidden"], cfg["n_layers"], cfg["vocab"]
    kv = C // cfg["n_heads"] * cfg.get("n_kv_heads", cfg["n_heads"])
    return V * C + L * (2 * C * C + 2 * C * kv + 3 * C * H + 2 * C) + C  # tied embedding counted once


def bench_shape(name, cfg, steps):
    torch.manual_seed(0)
    model = LoraLlama(cfg["dim"], cfg["n_layers"], cfg["n_heads"], cfg["hidden"], cfg["vocab"], cfg["T"],
                      cfg.get("n_kv_heads"), cfg.get("theta", 10000.0))
    opt = torch.optim.AdamW(model.lora.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.0)
    g = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, cfg["vocab"], (cfg["B"], cfg["T"]), generator=g)
    targets = torch.randint(0, cfg["vocab"], (cfg["B"], cfg["T"]), generator=g)

    def step():
        loss = model(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.lora.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    loss_first = None
    for i in range(cfg["warmup"]):
        loss = step()
        loss_first = loss if i == 0 else loss_first
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss_last = step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    tokens_per_step = cfg["B"] * cfg["T"]
    N = n_params(cfg)
    res = dict(name=name, B=cfg["B"], T=cfg["T"], n_params=N, flops_per_token=4 * N, steps=steps,
               warmup=cfg["warmup"], step_ms_median=1e3 * med, step_ms_min=1e3 * min(times),
               step_ms_max=1e3 * max(times), tokens_per_s=tokens_per_step / med,
               gflops=tokens_per_step / med * 4 * N * 1e-9, loss_first=loss_first, loss_last=loss_last)
    print(f"== {name}: {res['tokens_per_s']:.1f} tokens/s (median step {res['step_ms_median']:.1f} ms, "
          f"min {res['step_ms_min']:.1f}, max {res['step_ms_max']:.1f} over {steps} steps), "
          f"{res['gflops']:.1f} GFLOP/s at 4N, loss {loss_first:.4f} -> {loss_last:.4f}")
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=["small", "large", "smollm2", "all"], default="all")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: per shape)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    mark = cpu_ticks()
    torch.set_num_threads(args.threads)
    env = {k: os.environ.get(k, "unset") for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                                   "OPENBLAS_NUM_THREADS")}
    print(f"bench_torch: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          + " ".join(f"{k}={v}" for k, v in env.items()))
    names = list(SHAPES) if args.shape == "all" else [args.shape]
    results = [bench_shape(n, SHAPES[n], args.steps or SHAPES[n]["steps"]) for n in names]
    busy = busy_since(mark)
    print(f"other processes kept {100 * busy:.0f}% of the CPUs busy during the run"
          + (" (WARNING: timings are unreliable)" if busy > 0.05 else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(engine="torch", torch_version=torch.__version__, threads=args.threads,
                           env=env, busy_during=busy, timing="median of timed steps after warm-up",
                           shapes=results), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
