#!/usr/bin/env python3
"""Golden token ids for lorasc's byte-level BPE (core/data/tokenizer_bpe.c), made by Hugging
Face's own libraries (tokenizers 0.19.1, transformers 4.44.2). Two files:

tests/golden/bpe_smollm2.json: SmolLM2-135M-Instruct's tokenizer, built with `tokenizers` from
  the GGUF metadata ($LORASC_DATA/smollm2_135m/SmolLM2-135M-Instruct.Q4_1.gguf: tokens,
  token_type, merges) in the configuration of the model's published tokenizer.json: BPE without
  dropout / unk / byte fallback, pre-tokenizer Sequence[Digits(individual_digits=True),
  ByteLevel(add_prefix_space=False, use_regex=True)], no normalizer, ByteLevel decoder, the 17
  control tokens (token_type 3) as special added tokens (normalized=False). For each string:
  encode(add_special_tokens=False).ids and decode(ids, skip_special_tokens=True); decodes of id
  slices that cut characters apart (U+FFFD); and conversations rendered by transformers'
  apply_chat_template with the GGUF's chat template (and with plain ChatML), text and ids.
  (transformers 4.44's own GGUF conversion, AutoTokenizer.from_pretrained(gguf_file=...), is
  not used as the reference: it builds this "gpt2" vocabulary as a Llama-3-style tokenizer
  without the Digits step; the script prints how many strings it tokenizes differently.)

tests/golden/bpe_tiny.json: two small byte-level tokenizers trained here with `tokenizers`
  (BpeTrainer, fixed corpus), each stored as its tokenizer.json object together with the ids it
  gives for a set of strings; they cover what SmolLM2 does not use: add_prefix_space, no regex,
  contiguous Digits, ignore_merges, added tokens with lstrip / rstrip / normalized=True, a
  post-processor that adds BOS. It also carries SmolLM2's chat template text (for the
  renderer's tests without the data directory).

Usage (from the repository root, with the GGUF present):
  LORASC_DATA=../shared/data python3 tests/reference/make_bpe_golden.py  (transformers 4.44.2,
  tokenizers 0.19.1, gguf)
"""
import json
import os
import random

import numpy as np
from gguf import GGUFReader
from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers, processors, trainers
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerFast

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
GGUF = os.path.join(os.environ.get("LORASC_DATA", "data"), "smollm2_135m", "SmolLM2-135M-Instruct.Q4_1.gguf")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
          "{% endif %}")


def gguf_field(r, key):
    f = r.fields[key]
    if f.types[0].name == "ARRAY":
        if f.types[1].name == "STRING":
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [int(f.parts[i][0]) for i in f.data]
    if f.types[0].name == "STRING":
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]][0].item()


def smollm2_tokenizer(r):
    tokens = gguf_field(r, "tokenizer.ggml.tokens")
    types = gguf_field(r, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ")) for m in gguf_field(r, "tokenizer.ggml.merges")]
    assert gguf_field(r, "tokenizer.ggml.model") == "gpt2" and gguf_field(r, "tokenizer.ggml.pre") == "smollm"
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(BPE(vocab, merges, dropout=None, unk_token=None, continuing_subword_prefix="",
                        end_of_word_suffix="", fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                          use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i in range(len(tokens)) if types[i] == 3])
    return tok


HANDWRITTEN = [
    "", " ", "  ", "\n", "\t", "Hello world", "Hello, World!", " Hello", "hello  world", "a", "A",
    "The capital of France is", "The capital of France is Paris.",
    # contractions (GPT-2's regex is case-sensitive)
    "I'm", "don't", "we'll", "they've", "She'd", "it's", "you're", "IT'S", "I'M", "'s", "'sup",
    "rock 'n' roll", "''", "'", "O'Neil's dog's bone", "can't won't shouldn't've", "l'amour",
    # whitespace runs
    "a  b", "a   b", "a    b", "\t\tx", "\n\n", "\n\n\n", "  leading", "trailing  ", " \n ",
    "line1\r\nline2", "x \t y", "end   ", "   ", "a\u00a0b", "a\u3000b", "a\u2009b", "tab\tafter",
    "\u00a0\u00a0x", "x\u2028y", "two\n\nparagraphs\n\nhere", " \u00a0 ", "a \n b",
    # digits and numbers
    "12345", "3.14159", "1,000,000", "x1y2z3", " 2024", "in 2024, 15% more", "007", "-42", "+1e-10",
    "\u0663\u0664\u0665", "\u2460\u2461", "\u00bd cup", "x\u00b2 + y\u00b2", "\U00011f50\U00011f51",
    "\u2163 IV", "0x1F", "v1.2.3", "$19.99", "10:30am", "2+2=4", "١٢٣ and 123",
    # emoji
    "😀", "I love it 😀👍", "👍🏽", "🇺🇸🇫🇷", "❤️", "👨‍👩‍👧‍👦 family", "🤖🤖🤖", " 🎉", "smile:)😀",
    # code
    "def foo(x):\n    return x ** 2  # comment",
    "int main(void) { printf(\"%d\\n\", 42); return 0; }",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "<div class=\"x\">Hello &amp; bye</div>",
    "SELECT * FROM users WHERE id = 7;",
    "x = re.compile(r'\\s+(?!\\S)')",
    "    indented\n        more\n",
    "#include <stdio.h>\n",
    "if __name__ == '__main__':\n    main()",
    "a_b_c __init__ CamelCaseName snake_case",
    "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2",
    "foo@example.com", "~/path/to/file.txt", "C:\\Windows\\System32",
    # Unicode
    "Café naïve résumé façade Ångström", "e\u0301 combining", "你好，世界！这是一个测试。",
    "日本語のテキストとカタカナ ー", "한국어 텍스트입니다", "Россия и Україна", "مرحبا بالعالم",
    "नमस्ते दुनिया", "สวัสดีชาวโลก", "Ελληνικά γράμματα", "עברית", "ﬁ ligature", "Ⅻ", "ß ẞ",
    "zero\u200bwidth", "\ufeffbom", "\U0001d400\U0001d401 math", "a\u0000b", "\u00ad soft",
    # bytes whose character SmolLM2's vocabulary lacks (HF drops them: no unk_token)
    "a\x04b", "!\x06!", "\x13\x14", "x \x16 y", "\x1d", "..\x04..",
    # special tokens in the text
    "<|im_start|>user\nHi<|im_end|>", "<|endoftext|>", "text<|endoftext|>more",
    "<|im_start|><|im_end|>", "<|im_start", "<|im_end|><|im_end|>", "<repo_name>lorasc<file_sep>",
    " <|im_start|> ", "<|endoftext|><|endoftext|>x", "<|im_start|>assistant\n", "<filename>a.py",
    "<gh_stars>100", "<|im_start|user", "<|IM_START|>", "<jupyter_code>print(1)<jupyter_output>1",
    # prompts shaped like the project's tasks
    "Review: a gripping, funny film.\nSentiment: positive",
    "Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?\nAnswer:",
    "Passage: The quick brown fox jumps over the lazy dog.\nQuestion: What jumps?\nAnswer: the fox",
    "Q: Is the following sentence plausible? \"Joao Moutinho caught the screen pass.\"\nA: Let's think step by step.",
]

POOL = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") * 3 + list("0123456789") * 2 +
        list(" " * 20) + list("\n\t\r") + list(".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`") +
        list("éàüñçøßÆ") + list("中文字日本語한글") + ["😀", "👍", "🏽", "\u200d", "\u00a0", "\u3000",
                                                       "\u0663", "\u00bd", "\U00011f50", "'s", "'ll",
                                                       "<|im_end|>", "<|endoftext|>", "  ", "\n\n"])


def random_strings(n, seed):
    rng = random.Random(seed)
    return ["".join(rng.choice(POOL) for _ in range(rng.randint(1, 40))) for _ in range(n)]


CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi!"}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3+3?\n"}],
    [{"role": "user", "content": "Classify: \"a gripping, funny film\" 😀"},
     {"role": "assistant", "content": "positive"}],
]


def chat_cases(tok, template, name):
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=template,
                                   clean_up_tokenization_spaces=False)
    out = []
    for conv in CONVERSATIONS:
        for gen in (False, True):
            text = fast.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
            ids = fast.apply_chat_template(conv, tokenize=True, add_generation_prompt=gen)
            assert ids == tok.encode(text, add_special_tokens=False).ids
            out.append({"template": name, "messages": conv, "add_generation_prompt": gen, "text": text,
                        "ids": ids})
    return out


def smollm2_golden():
    r = GGUFReader(GGUF)
    tok = smollm2_tokenizer(r)
    strings = HANDWRITTEN + random_strings(250, 13) + [" ".join(HANDWRITTEN), "\n".join(HANDWRITTEN[::-1])]
    cases = []
    for s in strings:
        ids = tok.encode(s, add_special_tokens=False).ids
        cases.append({"text": s, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True)})
    # decodes of slices: prefixes that may cut a character, special tokens skipped
    rng = random.Random(5)
    decodes = []
    for c in cases:
        if len(c["ids"]) >= 2 and rng.random() < 0.3:
            k = rng.randint(1, len(c["ids"]) - 1)
            ids = c["ids"][:k]
            decodes.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True)})
    for ids in ([216, 216, 216], [1, 2, 0], [9160], [48, 49, 50, 51]):
        decodes.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True)})
    template = gguf_field(r, "tokenizer.chat_template")
    chats = chat_cases(tok, template, "gguf") + chat_cases(tok, CHATML, "chatml")
    # for the record: transformers 4.44's own conversion of the GGUF tokenizer
    try:
        from transformers import AutoTokenizer
        conv = AutoTokenizer.from_pretrained(os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF))
        differ = sum(conv(c["text"], add_special_tokens=False).input_ids != c["ids"] for c in cases)
        print("transformers' GGUF conversion differs on %d of %d strings" % (differ, len(cases)))
    except Exception as e:  # informational only
        print("transformers' GGUF conversion not compared:", e)
    return {
        "source": "tests/reference/make_bpe_golden.py: tokenizers built from %s" % os.path.basename(GGUF),
        "vocab_size": len(gguf_field(r, "tokenizer.ggml.tokens")),
        "bos_id": gguf_field(r, "tokenizer.ggml.bos_token_id"),
        "eos_id": gguf_field(r, "tokenizer.ggml.eos_token_id"),
        "pad_id": gguf_field(r, "tokenizer.ggml.padding_token_id"),
        "chat_template": template,
        "chatml_template": CHATML,
        "cases": cases,
        "decodes": decodes,
        "chats": chats,
    }


CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 12 o'clock and we're 3450 km away.",
    "def add(a, b):\n    return a + b  # adds 2 numbers\n",
    "In 1969, 600 million people watched; they'll remember it. Don't they?",
    "Café, naïve, 日本語, 한국어 — and emoji 😀 too. Prices: $4.99, €10, 1,000,000.",
    "  spaces   everywhere \t tabs\nnewlines\n\nend",
] * 20


def tiny(kind):
    tok = Tokenizer(BPE(unk_token=None, ignore_merges=(kind == "b")))
    if kind == "a":  # SmolLM2's chain on a small vocabulary, with stripping added tokens
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    else:  # add_prefix_space, contiguous digits, BOS post-processor
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=False),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=True)])
        specials = ["<s>", "</s>"]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    if kind == "a":
        tok.add_special_tokens([AddedToken("<L>", lstrip=True, special=True, normalized=False),
                                AddedToken("<R>", rstrip=True, special=True, normalized=False)])
        tok.add_tokens([AddedToken("dog", special=False, normalized=True),
                        AddedToken("<both>", lstrip=True, rstrip=True, normalized=False)])
    else:
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
        tok.add_tokens([AddedToken("fox", special=False, normalized=True)])
    strings = HANDWRITTEN[:120] + random_strings(60, 7 if kind == "a" else 8) + [
        "a <L>b", "a  <L>  b", "x<R>   y", "<R>\n\nz", "  <both>  ", "hotdog dogs", "<L><L>", " <L>",
        "the fox", "foxes", "1234 56", "x\u00b2\u00b3", "<s>hi</s>", "  a", "a12b345"]
    cases = []
    for s in strings:
        ids = tok.encode(s, add_special_tokens=(kind == "b")).ids
        cases.append({"text": s, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True)})
    return {"tokenizer": json.loads(tok.to_str()), "bos": kind == "b", "cases": cases}


def fuzz_seeds(t, template):
    """Seeds for tests/fuzz (tokenizer harness): the tiny tokenizers as tokenizer.json and "a"
    as a vocabulary-only GGUF with a chat template, each named by its sha1 as libFuzzer does."""
    import hashlib
    import tempfile
    from gguf import GGUFWriter
    seeds = [json.dumps(t[k]["tokenizer"], ensure_ascii=False, separators=(",", ":")).encode() for k in "ab"]
    tok = t["a"]["tokenizer"]
    vocab = dict(tok["model"]["vocab"])
    for a in tok["added_tokens"]:
        vocab[a["content"]] = a["id"]
    pieces = [p for p, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    with tempfile.NamedTemporaryFile(suffix=".gguf") as f:
        w = GGUFWriter(f.name, "llama")
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("smollm")
        w.add_token_list(pieces)
        w.add_token_types([3 if p.startswith("<|") else 1 for p in pieces])
        w.add_token_merges(merges)
        w.add_bos_token_id(vocab["<|im_start|>"])
        w.add_eos_token_id(vocab["<|im_end|>"])
        w.add_chat_template(template)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.close()
        seeds.append(open(f.name, "rb").read())
    out = os.path.join(ROOT, "tests", "fuzz", "corpus", "tokenizer")
    for b in seeds:
        with open(os.path.join(out, hashlib.sha1(b).hexdigest()), "wb") as f:
            f.write(b)
    return len(seeds)


def main():
    out = os.path.join(ROOT, "tests", "golden")
    g = smollm2_golden()
    with open(os.path.join(out, "bpe_smollm2.json"), "w") as f:
        json.dump(g, f, ensure_ascii=False, separators=(",", ":"))
    t = {"source": "tests/reference/make_bpe_golden.py", "smollm2_template": g["chat_template"],
         "a": tiny("a"), "b": tiny("b")}
    with open(os.path.join(out, "bpe_tiny.json"), "w") as f:
        json.dump(t, f, ensure_ascii=False, separators=(",", ":"))
    print("fuzz seeds: %d" % fuzz_seeds(t, g["chat_template"]))
    print("bpe_smollm2.json: %d strings, %d decodes, %d chats; bpe_tiny.json: %d + %d strings" %
          (len(g["cases"]), len(g["decodes"]), len(g["chats"]), len(t["a"]["cases"]), len(t["b"]["cases"])))


if __name__ == "__main__":
    main()
