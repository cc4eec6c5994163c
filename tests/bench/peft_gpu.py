"""PyTorch + transformers + PEFT reference for tests/bench/bench_train_device.c (issue 11): the
same model and step on the same GPU. A Llama-2-7B-shaped LlamaForCausalLM made from a
LlamaConfig (random init, bf16, attn_implementation="sdpa"; dim 4096, 32 layers, 32 heads,
hidden 11008, vocabulary 32000), PEFT LoRA r = 8, alpha 16, on q_proj and v_proj (base frozen),
AdamW on the adapters with global-norm clipping at 1.0 (lorasc's defaults), random tokens,
sequence 1024, the batch lorasc used (--batch; on out-of-memory the batch is halved and the
failures recorded). Prints one JSON line: tokens/s (warm-up steps, then timed steps back to
back, one synchronisation), torch.cuda.max_memory_allocated over the whole run (weights
included), the bf16 matmul peak torch measures here (8192^3, random data, median of 10) and the
MFU with bench_train_device.c's formula (4N + 6N_lora + 12 L T d FLOPs per token).
--tiny: a 2-layer, dim-64 model, batch 2 x 64, for a dry run on a CPU (fp32 there).
--model vit: bench_train_device.c's ViT instead, a ViTForImageClassification of CLIP ViT-B/16's
vision shape (224 x 224 RGB, patch 16, dim 768, 12 layers, 12 heads, MLP 3072, quick GELU,
1,000 classes; --tiny: 32 x 32, patch 8, dim 64, 2 layers, 10 classes), LoRA r = 8 on query
and value with the classifier trained in full (modules_to_save), random images and labels;
the batch counts images, tokens/s counts their 1 + (224/16)^2 tokens.
Usage: python3 tests/bench/peft_gpu.py [--model llama|vit] [--batch B] [--seq T] [--steps N]
       [--warmup N] [--tiny] [--json FILE]
"""
import argparse
import contextlib
import gc
import json
import statistics
import sys
import time

import torch


def model_shape(tiny, seq):
    if tiny:
        return dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4, vocab_size=512,
                    max_position_embeddings=seq)
    return dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                max_position_embeddings=seq)


def flops_per_token(s, T, r=8):
    """bench_train_device.c's formula: 4N + 6N_lora + 12 L T d."""
    L, d, h, V = s["num_hidden_layers"], s["hidden_size"], s["intermediate_size"], s["vocab_size"]
    dkv = s["num_key_value_heads"] * (d // s["num_attention_heads"])
    n = L * (2 * d * d + 2 * d * dkv + 3 * d * h) + d * V
    n_lora = L * r * ((d + d) + (d + dkv))
    return 4 * n + 6 * n_lora + 12 * L * T * d


def vit_shape(tiny):
    if tiny:
        return dict(image_size=32, patch_size=8, num_channels=3, hidden_size=64,
                    num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                    num_labels=10)
    return dict(image_size=224, patch_size=16, num_channels=3, hidden_size=768,
                num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                num_labels=1000)


def vit_flops_per_token(s, r=8):
    """bench_train_device.c's ViT formula: 4N + 6N_lora + 12 L T d, N = L (4 d^2 + 2 d m) +
    C P^2 d + d K / T, N_lora = L r (2 d + 2 d)."""
    L, d, m, K = s["num_hidden_layers"], s["hidden_size"], s["intermediate_size"], s["num_labels"]
    T = 1 + (s["image_size"] // s["patch_size"]) ** 2
    n = L * (4 * d * d + 2 * d * m) + s["num_channels"] * s["patch_size"] ** 2 * d + d * K / T
    return 4 * n + 6 * L * r * (2 * d + 2 * d) + 12 * L * T * d, T


def bf16_matmul_tflops(device, n=8192, reps=10):
    """torch's bf16 matmul on n^3 random matrices: median of reps, CUDA events."""
    if device.type != "cuda":
        return None
    g = torch.Generator(device=device).manual_seed(7)
    a = torch.rand(n, n, device=device, dtype=torch.bfloat16, generator=g) * 2 - 1
    b = torch.rand(n, n, device=device, dtype=torch.bfloat16, generator=g) * 2 - 1
    times = []
    for i in range(reps + 2):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        torch.matmul(a, b)
        e1.record()
        torch.cuda.synchronize()
        if i >= 2:
            times.append(e0.elapsed_time(e1) / 1e3)
    del a, b
    torch.cuda.empty_cache()
    return 2 * n ** 3 / statistics.median(times) / 1e12


def from_config(config, attn, dtype):
    import transformers
    try:  # transformers 5 names it dtype, 4.x torch_dtype
        return transformers.AutoModelForCausalLM.from_config(
            config, attn_implementation=attn, dtype=dtype)
    except TypeError:
        return transformers.AutoModelForCausalLM.from_config(
            config, attn_implementation=attn, torch_dtype=dtype)


def build(shape, dtype, device, tiny):
    import transformers
    from peft import LoraConfig, get_peft_model
    config = transformers.LlamaConfig(rms_norm_eps=1e-5, tie_word_embeddings=False, **shape)
    # on the device directly (a 7B model initialised on the CPU takes minutes); torch >= 2.0
    where = torch.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with where:
        try:
            model = from_config(config, "sdpa", dtype)
        except ImportError:  # torch < 2.1.1 (a CPU dry run only: the GPU's torch has SDPA)
            if not tiny:
                raise
            model = from_config(config, "eager", dtype)
    model.to(device=device, dtype=dtype)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, bias="none",
                      target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    attn = getattr(model.config, "_attn_implementation", "?")
    return model, attn


def build_vit(shape, dtype, device):
    import transformers
    from peft import LoraConfig, get_peft_model
    config = transformers.ViTConfig(hidden_act="quick_gelu", layer_norm_eps=1e-5,
                                    qkv_bias=True, **shape)
    try:  # SDPA where this transformers' ViT has it (4.41 on)
        model = transformers.AutoModelForImageClassification.from_config(
            config, attn_implementation="sdpa")
    except (TypeError, ValueError, ImportError):
        model = transformers.AutoModelForImageClassification.from_config(config)
    model.to(device=device, dtype=dtype)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, bias="none",
                      target_modules=["query", "value"], modules_to_save=["classifier"])
    model = get_peft_model(model, lora)
    model.train()
    return model, getattr(model.config, "_attn_implementation", "?")


def time_steps(model, inputs, args, device):
    """Warm-up steps, then the timed steps back to back, one synchronisation: seconds per
    step, every step's loss, the trainable parameter count. model(**inputs) gives the loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step():
        out = model(**inputs)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.detach()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    losses = [step() for _ in range(args.warmup)]
    sync()
    t0 = time.perf_counter()
    losses += [step() for _ in range(args.steps)]
    sync()
    elapsed = time.perf_counter() - t0
    n_train = sum(p.numel() for p in params)
    del opt, params
    return elapsed / args.steps, [float(x) for x in losses], n_train


def run(args, device, dtype, B):
    """The model of --model at batch B, random inputs: (seconds per step, losses, attention
    implementation, trainable parameters, the model's shape)."""
    torch.manual_seed(0)
    g = torch.Generator(device="cpu").manual_seed(3)
    if args.model == "vit":
        shape = vit_shape(args.tiny)
        model, attn = build_vit(shape, dtype, device)
        side = shape["image_size"]
        pixels = (torch.rand(B, 3, side, side, generator=g) * 2 - 1).to(device=device, dtype=dtype)
        labels = torch.randint(0, shape["num_labels"], (B,), generator=g).to(device)
        inputs = dict(pixel_values=pixels, labels=labels)
    else:
        shape = model_shape(args.tiny, args.seq)
        model, attn = build(shape, dtype, device, args.tiny)
        ids = torch.randint(0, shape["vocab_size"], (B, args.seq), generator=g).to(device)
        labels = torch.randint(0, shape["vocab_size"], (B, args.seq), generator=g).to(device)
        inputs = dict(input_ids=ids, labels=labels)
    step_s, losses, n_train = time_steps(model, inputs, args, device)
    del model, inputs
    return step_s, losses, attn, n_train, shape


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["llama", "vit"], default="llama")
    ap.add_argument("--batch", type=int, default=0, help="0: 8 on a GPU, 2 with --tiny")
    ap.add_argument("--seq", type=int, default=0, help="0: 1024, 64 with --tiny")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.seq = args.seq or (64 if args.tiny else 1024)
    B = args.batch or (2 if args.tiny else 8)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.tiny:
        sys.exit("peft_gpu.py: no GPU here; --tiny runs the small model on the CPU")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    import peft
    import transformers
    res = {"bench": "peft_train_step", "torch": torch.__version__,
           "transformers": transformers.__version__, "peft": peft.__version__,
           "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
           "dtype": str(dtype).replace("torch.", ""), "seq": args.seq, "batch_asked": B,
           "oom_batches": [], "lora_rank": 8, "model": args.model,
           "lora_targets": "query,value" if args.model == "vit" else "q_proj,v_proj"}
    peak = bf16_matmul_tflops(device)
    oom = torch.cuda.OutOfMemoryError if device.type == "cuda" else MemoryError
    while True:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            step_s, losses, attn, n_train, shape = run(args, device, dtype, B)
            break
        except oom:
            res["oom_batches"].append(B)
        gc.collect()  # the failed attempt's model and activations, then the cache
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if B == 1:
            res["error"] = "out of memory at batch 1"
            print(json.dumps(res))
            sys.exit(1)
        B //= 2
    if args.model == "vit":
        fpt, T = vit_flops_per_token(shape)
        res.update({"seq": T, "images_per_s": B / step_s})
    else:
        fpt, T = flops_per_token(shape, args.seq), args.seq
    tokens_s = B * T / step_s
    res.update({"batch": B, "attn_implementation": attn, "trainable_params": n_train,
                "steps": args.steps, "warmup": args.warmup, "step_seconds": step_s,
                "tokens_per_s": tokens_s, "flops_per_token": fpt,
                "achieved_tflops": tokens_s * fpt / 1e12, "gemm_bf16_tflops": peak,
                "mfu_bf16": tokens_s * fpt / 1e12 / peak if peak else None,
                "max_memory_allocated": torch.cuda.max_memory_allocated()
                if device.type == "cuda" else None,
                "loss_first": losses[0], "loss_last": losses[-1]})
    line = json.dumps(res)
    print(line)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
