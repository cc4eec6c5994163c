"""The benchmark comparison tests/gpu/check.sh writes to bench_summary.txt: lorasc's training-step
JSON line (bench_train_device) against PyTorch + PEFT's (peft_gpu.py), for the Llama-2-7B
shape (with issue 11's targets) or the ViT-B/16 shape. A file that is missing or unreadable is
said in one line and its half left out.
Usage: python3 tests/gpu/bench_summary.py llama|vit LORASC_JSON PEFT_JSON"""
import json
import sys


def load(p):
    try:
        return json.load(open(p))
    except Exception as e:
        print("(%s: %s)" % (p, e)); return None


def fmt(x, f="%.4g"):
    return "n/a" if x is None else f % x


def llama(a, b):
    if a:
        gib = 1 << 30
        print("lorasc %s: batch %d x %d, %s tokens/s, MFU %s of the bf16 peak (%s TFLOP/s), peak alloc %s GiB, boundary %s s = %s of an epoch"
              % (a["precision"] + " base, " + a.get("activations", "fp32") + " activations", a["batch"], a["seq"], fmt(a["tokens_per_s"], "%.0f"), fmt(a.get("mfu_bf16"), "%.3f"),
                 fmt(a.get("gemm_bf16_tflops"), "%.0f"), fmt(a["peak_alloc_bytes"] / gib, "%.1f"),
                 fmt(a.get("boundary_seconds")), fmt(a.get("boundary_frac_epoch"), "%.2e")))
    if b and "tokens_per_s" in b:
        print("PEFT %s: batch %d x %d, %s tokens/s, MFU %s, max_memory_allocated %s GiB, OOM at %s"
              % (b["dtype"], b["batch"], b["seq"], fmt(b["tokens_per_s"], "%.0f"), fmt(b.get("mfu_bf16"), "%.3f"),
                 fmt(b["max_memory_allocated"] / (1 << 30) if b.get("max_memory_allocated") else None, "%.1f"),
                 b.get("oom_batches") or "none"))
    if a and b and "tokens_per_s" in b:
        speed = a["tokens_per_s"] / b["tokens_per_s"]
        mem = a["peak_alloc_bytes"] / b["max_memory_allocated"] if b.get("max_memory_allocated") else None
        print("targets (issue 11): tokens/s %.2fx PEFT's (>= 2: %s); MFU %s (>= 0.5: %s); memory %s of PEFT's (<= 1: %s); boundary %s of an epoch (< 0.01: %s)"
              % (speed, "met" if speed >= 2 else "missed", fmt(a.get("mfu_bf16"), "%.3f"),
                 "met" if (a.get("mfu_bf16") or 0) >= 0.5 else "missed", fmt(mem, "%.2f"),
                 "met" if mem is not None and mem <= 1 else "missed", fmt(a.get("boundary_frac_epoch"), "%.2e"),
                 "met" if (a.get("boundary_frac_epoch") or 1) < 0.01 else "missed"))


def vit(a, b):
    if a:
        print("lorasc ViT-B/16 %s base, %s activations: batch %d images, %s images/s, MFU %s, peak alloc %s GiB"
              % (a["precision"], a["activations"], a["batch"], fmt(a["images_per_s"], "%.0f"),
                 fmt(a.get("mfu_bf16"), "%.3f"), fmt(a["peak_alloc_bytes"] / (1 << 30), "%.1f")))
    if b and "images_per_s" in b:
        print("PEFT ViT %s (%s attention): batch %d images, %s images/s, MFU %s, max_memory_allocated %s GiB, OOM at %s"
              % (b["dtype"], b.get("attn_implementation"), b["batch"], fmt(b["images_per_s"], "%.0f"),
                 fmt(b.get("mfu_bf16"), "%.3f"),
                 fmt(b["max_memory_allocated"] / (1 << 30) if b.get("max_memory_allocated") else None, "%.1f"),
                 b.get("oom_batches") or "none"))
    if a and b and "images_per_s" in b:
        mem = a["peak_alloc_bytes"] / b["max_memory_allocated"] if b.get("max_memory_allocated") else None
        print("ViT: images/s %.2fx PEFT's; memory %s of PEFT's" % (a["images_per_s"] / b["images_per_s"], fmt(mem, "%.2f")))


if __name__ == "__main__":
    kind, a, b = sys.argv[1], load(sys.argv[2]), load(sys.argv[3])
    {"llama": llama, "vit": vit}[kind](a, b)
