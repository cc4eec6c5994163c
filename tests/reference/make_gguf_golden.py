#!/usr/bin/python3
"""Golden files for lorasc's GGUF reader and GGUF llama loader (tests/test_gguf.c).

Run with a Python that has numpy, torch, transformers (4.44) and the `gguf` package
(PyPI; here /work/venv/bin/python):

  LORASC_DATA=/path/to/data python3 tests/reference/make_gguf_golden.py

What it writes (tests/golden/):

  gguf_tiny.gguf        a crafted GGUF v3 file (gguf.GGUFWriter, general.alignment 64) with
                        one key of every value type (see META below: the C test checks the
                        same values), a string array, an int32 array, and one tensor per
                        dequantised type, quantised from seeded random data by
                        gguf.quants.quantize: t_f32 [2,32], t_f16 [3,2,32] (with f16 specials:
                        signed zeros, subnormals, the largest finite, infinities, a NaN),
                        t_bf16 [64], t_q8_0 [2,64], t_q4_0 [3,32], t_q4_1 [2,96]
  gguf_tiny_a32.gguf    the same tensors with the default alignment (32) and no metadata
                        but general.architecture
  gguf_llama_tiny.gguf  the weights of tests/golden/llama_dora.bin (a ROPE_HALF, untied Llama:
                        C=16 H=24 L=2 NH=4 NKV=2 V=23, theta 10000, eps 1e-5) written as
                        llama.cpp's converter writes a Hugging Face Llama: llama.* metadata,
                        blk.N.* F32 tensors, attn_q / attn_k rows permuted into the
                        interleaved rotary layout (convert_hf_to_gguf.py's permute); loaded
                        as ROPE_INTERLEAVED it must give that file's base_logits
  modelfetch_tiny.zip   a zip (Python's zipfile) for core/data/modelfetch.c's reader: member
                        "pkg/weights.txt" deflated ("lorasc " x 200 and a newline) and
                        "pkg/raw.bin" stored (bytes 0..255); tests/test_modelfetch.c
  gguf_tiny.bin         LSCGOLD1 records (tests/golden_io.h): for each tensor t_*, its values
                        as gguf.quants.dequantize returns them (f32, flattened)
  gguf_smollm2.bin      from the real SmolLM2-135M-Instruct Q4_1 file in $LORASC_DATA/
                        smollm2_135m/ (lorasc data fetch smollm2-135m):
    slice.<tensor>.rows  i32 [k]     row indices taken from <tensor>
    slice.<tensor>       f32 [k, n]  those rows dequantised by gguf.quants.dequantize
                         (token_embd.weight Q8_0, blk.0.attn_q.weight Q4_1,
                          blk.29.ffn_down.weight Q4_1, blk.3.attn_norm.weight F32 (k = 1))
    prompt<i>            i32 [T]     token ids (no BOS) of PROMPTS[i]
    logits<i>.ids        i32 [K]     vocabulary ids: the last position's top 32 and 224
                                     fixed random ids
    logits<i>            f32 [T, K]  logits at every position for those ids
    greedy<i>            i32 [T+N]   the prompt and its greedy continuation (N = 8)
  The logits come from transformers' LlamaForCausalLM in float64 on the dequantised weights
  (float32 values from gguf.quants.dequantize; q/k rows un-permuted from llama.cpp's rotary
  layout back to Hugging Face's), so they are the exact answer for the stored weights and
  the C engine's fp32 error is all the test measures. The script prints the decoded
  continuations ("The capital of France is" -> " Paris. ...") and the float32 model's
  deviation from float64 for scale.
"""
import os
import sys

import numpy as np
import torch

import gguf
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import write_golden  # noqa: E402  (the LSCGOLD1 writer)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "golden")

# Metadata of gguf_tiny.gguf; tests/test_gguf.c checks the same values.
META = [
    ("add_uint8", "lorasc.u8", 200), ("add_int8", "lorasc.i8", -100),
    ("add_uint16", "lorasc.u16", 60000), ("add_int16", "lorasc.i16", -30000),
    ("add_uint32", "lorasc.u32", 4000000000), ("add_int32", "lorasc.i32", -2000000000),
    ("add_float32", "lorasc.f32", 0.15625), ("add_uint64", "lorasc.u64", 1 << 40),
    ("add_int64", "lorasc.i64", -(1 << 40)), ("add_float64", "lorasc.f64", 1e-300),
    ("add_bool", "lorasc.bool", True), ("add_string", "lorasc.str", "h\u00e9llo"),
    ("add_array", "lorasc.strs", ["a", "", "\u0120t\u0120h", "<|im_start|>"]),
    ("add_array", "lorasc.ints", [3, -1, 7]),
]
F16_SPECIALS = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0xFBFF,
                0x7C00, 0xFC00, 0x7E00, 0x3555, 0xC000, 0x0200, 0x5640]
TINY = [("t_f32", Q.F32, (2, 32)), ("t_f16", Q.F16, (3, 2, 32)), ("t_bf16", Q.BF16, (64,)),
        ("t_q8_0", Q.Q8_0, (2, 64)), ("t_q4_0", Q.Q4_0, (3, 32)), ("t_q4_1", Q.Q4_1, (2, 96))]
PROMPTS = ["The capital of France is", "def fib(n):", "1 + 1 ="]
N_NEW = 8


def build_tiny():
    rng = np.random.default_rng(13)
    tensors, records = [], []
    for name, qtype, shape in TINY:
        x = rng.standard_normal(shape).astype(np.float32) * np.float32(rng.uniform(0.01, 3))
        if qtype == Q.F16:
            flat = x.astype(np.float16).reshape(-1)
            flat[: len(F16_SPECIALS)] = np.array(F16_SPECIALS, dtype=np.uint16).view(np.float16)
            raw = flat.reshape(shape)
        elif qtype == Q.F32:
            raw = x
        else:
            raw = quantize(x, qtype)
        tensors.append((name, qtype, raw))
        ref = dequantize(raw, qtype)
        records.append((name, np.ascontiguousarray(ref, dtype=np.float32).reshape(-1)))
    for fname, with_meta in (("gguf_tiny.gguf", True), ("gguf_tiny_a32.gguf", False)):
        w = gguf.GGUFWriter(os.path.join(OUT, fname), "lorasc-test")
        if with_meta:
            w.add_custom_alignment(64)
            for fn, key, val in META:
                getattr(w, fn)(key, val)
        for name, qtype, raw in tensors:
            if qtype in (Q.F32, Q.F16):
                w.add_tensor(name, raw)
            else:
                w.add_tensor(name, raw, raw_dtype=qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        print(f"{fname}: {os.path.getsize(os.path.join(OUT, fname))} bytes")
    path = os.path.join(OUT, "gguf_tiny.bin")
    write_golden(path, records)
    print(f"gguf_tiny.bin: {len(records)} records, {os.path.getsize(path)} bytes")


def build_zip():
    import zipfile
    path = os.path.join(OUT, "modelfetch_tiny.zip")
    with zipfile.ZipFile(path, "w") as z:
        for name, data, method in (("pkg/weights.txt", b"lorasc " * 200 + b"\n", zipfile.ZIP_DEFLATED),
                                   ("pkg/raw.bin", bytes(range(256)), zipfile.ZIP_STORED)):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            z.writestr(info, data)
    print(f"modelfetch_tiny.zip: {os.path.getsize(path)} bytes")


def read_golden(path):
    """The LSCGOLD1 records of path as {name: array} (the reader of tests/golden_io.h)."""
    import struct
    out = {}
    with open(path, "rb") as f:
        assert f.read(8) == b"LSCGOLD1"
        (n,) = struct.unpack("<I", f.read(4))
        for _ in range(n):
            (ln,) = struct.unpack("<I", f.read(4))
            name = f.read(ln).decode()
            dtype, ndim = struct.unpack("<II", f.read(8))
            dims = struct.unpack(f"<{ndim}I", f.read(4 * ndim))
            count = int(np.prod(dims)) if ndim else 1
            out[name] = np.frombuffer(f.read(4 * count), dtype="<f4" if dtype == 0 else "<i4").reshape(dims)
    return out


def permute(w, n_head):
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute: HF half-rotation rows -> pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def build_llama_tiny():
    g = read_golden(os.path.join(OUT, "llama_dora.bin"))
    C, H, L, NH, NKV, V, seq_len, tied, rope = (int(v) for v in g["config"][:9])
    theta, eps = (float(v) for v in g["config_f"][:2])
    assert rope == 1 and not tied  # ROPE_HALF, untied: the weights are in HF's layout
    w = gguf.GGUFWriter(os.path.join(OUT, "gguf_llama_tiny.gguf"), "llama")
    w.add_context_length(seq_len)
    w.add_embedding_length(C)
    w.add_block_count(L)
    w.add_feed_forward_length(H)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(eps)
    w.add_rope_dimension_count(C // NH)
    w.add_vocab_size(V)
    w.add_tensor("token_embd.weight", g["token_embedding"].copy())
    per_layer = [("attn_norm", "rms_att"), ("attn_q", "wq"), ("attn_k", "wk"), ("attn_v", "wv"),
                 ("attn_output", "wo"), ("ffn_norm", "rms_ffn"), ("ffn_gate", "w1"),
                 ("ffn_down", "w2"), ("ffn_up", "w3")]
    for layer in range(L):
        for gname, ename in per_layer:
            x = g[ename][layer].copy()
            if gname == "attn_q":
                x = permute(x, NH)
            elif gname == "attn_k":
                x = permute(x, NKV)
            w.add_tensor(f"blk.{layer}.{gname}.weight", np.ascontiguousarray(x))
    w.add_tensor("output_norm.weight", g["rms_final"].copy())
    w.add_tensor("output.weight", g["wcls"].copy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"gguf_llama_tiny.gguf: {os.path.getsize(os.path.join(OUT, 'gguf_llama_tiny.gguf'))} bytes")


def unpermute(w, n_head):
    """Inverse of llama.cpp's convert_hf_to_gguf.py LlamaModel.permute (HF -> Meta pairs)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def build_smollm2(data_dir):
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers import AutoTokenizer

    gguf_dir = os.path.join(data_dir, "smollm2_135m")
    fname = "SmolLM2-135M-Instruct.Q4_1.gguf"
    r = gguf.GGUFReader(os.path.join(gguf_dir, fname))

    def field(key):
        f = r.fields[key]
        return f.parts[f.data[0]][0]

    C = int(field("llama.embedding_length"))
    NH, NKV = int(field("llama.attention.head_count")), int(field("llama.attention.head_count_kv"))
    tensors = {t.name: t for t in r.tensors}
    deq = {name: np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
           for name, t in tensors.items()}
    V = deq["token_embd.weight"].shape[0]
    cfg = LlamaConfig(vocab_size=V, hidden_size=C,
                      intermediate_size=int(field("llama.feed_forward_length")),
                      num_hidden_layers=int(field("llama.block_count")), num_attention_heads=NH,
                      num_key_value_heads=NKV,
                      max_position_embeddings=int(field("llama.context_length")),
                      rope_theta=float(field("llama.rope.freq_base")),
                      rms_norm_eps=float(field("llama.attention.layer_norm_rms_epsilon")),
                      tie_word_embeddings="output.weight" not in tensors,
                      attention_bias=False, mlp_bias=False)
    names = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj",
             "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    sd = {"model.embed_tokens.weight": deq["token_embd.weight"],
          "model.norm.weight": deq["output_norm.weight"]}
    for name, x in deq.items():
        if not name.startswith("blk."):
            continue
        _, layer, kind, _ = name.split(".")
        if kind == "attn_q":
            x = unpermute(x, NH)
        elif kind == "attn_k":
            x = unpermute(x, NKV)
        sd[f"model.layers.{layer}.{names[kind]}.weight"] = x
    if "output.weight" in deq:
        sd["lm_head.weight"] = deq["output.weight"]
    else:
        sd["lm_head.weight"] = deq["token_embd.weight"]
    model = LlamaForCausalLM(cfg)
    missing = model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()},
                                    strict=True)
    print("state dict loaded:", missing)
    model64 = model.double().eval()
    model32 = LlamaForCausalLM(cfg)
    model32.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()})
    model32 = model32.float().eval()

    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=fname)
    rng = np.random.default_rng(135)
    fixed = np.sort(rng.choice(V, 224, replace=False))
    records = []
    for sl, rows in (("token_embd.weight", [0, 4649, V - 1]),
                     ("blk.0.attn_q.weight", [0, 64]),
                     ("blk.29.ffn_down.weight", [0, C - 1]),
                     ("blk.3.attn_norm.weight", None)):
        x = deq[sl]
        if rows is None:
            records += [(f"slice.{sl}.rows", np.array([0], dtype=np.int32)),
                        (f"slice.{sl}", x.reshape(1, -1).astype(np.float32))]
        else:
            records += [(f"slice.{sl}.rows", np.array(rows, dtype=np.int32)),
                        (f"slice.{sl}", np.ascontiguousarray(x[rows], dtype=np.float32))]
    for i, text in enumerate(PROMPTS):
        ids = tok(text, add_special_tokens=False).input_ids
        assert tok.decode(ids) == text, (text, tok.decode(ids))
        x = torch.tensor([ids])
        with torch.no_grad():
            l64 = model64(x).logits[0]
            l32 = model32(x).logits[0].double()
            seq = list(ids)
            for _ in range(N_NEW):
                nxt = int(model64(torch.tensor([seq])).logits[0, -1].argmax())
                seq.append(nxt)
        top = torch.topk(l64[-1], 32).indices.numpy()
        ids_k = np.concatenate([top, fixed[~np.isin(fixed, top)]]).astype(np.int32)
        err = (l32 - l64).abs().max().item()
        print(f"prompt {i} {text!r} ids {ids}: greedy {tok.decode(seq[len(ids):])!r} "
              f"ids {seq[len(ids):]}; fp32 torch vs fp64 max |diff| {err:.3g} "
              f"(logit range {l64.min().item():.2f} .. {l64.max().item():.2f})")
        records += [(f"prompt{i}", np.array(ids, dtype=np.int32)),
                    (f"logits{i}.ids", ids_k),
                    (f"logits{i}", l64[:, torch.from_numpy(ids_k).long()].float().numpy().copy()),
                    (f"greedy{i}", np.array(seq, dtype=np.int32))]
    path = os.path.join(OUT, "gguf_smollm2.bin")
    write_golden(path, records)
    print(f"gguf_smollm2.bin: {len(records)} records, {os.path.getsize(path)} bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    build_tiny()
    build_llama_tiny()
    build_zip()
    data_dir = os.environ.get("LORASC_DATA", "data")
    if not os.path.exists(os.path.join(data_dir, "smollm2_135m")):
        print(f"no {data_dir}/smollm2_135m: gguf_smollm2.bin not written "
              "(lorasc data fetch smollm2-135m)")
        return 1
    torch.set_num_threads(2)
    build_smollm2(data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
