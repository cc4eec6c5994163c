#!/usr/bin/env python3
"""Rewrites one kernels/cuda/*.cu file as C++ for the CPU emulation (cuda_emu.h): every launch
`kernel<<<grid, block, smem, stream>>>(args)` becomes `emu_launch(kernel, grid, block, smem,
stream, args)` and `extern __shared__ T name[];` becomes a pointer to the block's dynamic shared
memory; `#include "kernels/cuda/X.cuh"` is replaced by X.cuh translated the same way (it holds
launches too). Everything else is left as written, and #line directives keep __FILE__ and line
numbers those of the CUDA files. Usage: translate.py SOURCE.cu OUTPUT.cc"""
import os
import re
import sys


def matching(text, i, open_ch, close_ch, step):
    """Index of the bracket matching text[i], scanning by step (+1 forward, -1 backward)."""
    depth = 0
    while 0 <= i < len(text):
        if text[i] == open_ch:
            depth += 1
        elif text[i] == close_ch:
            depth -= 1
            if depth == 0:
                return i
        i += step
    raise SystemExit("translate.py: unbalanced %s%s" % (open_ch, close_ch))


def split_top(text):
    """Splits on the commas outside any brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def rewrite_launches(src):
    out, pos = [], 0
    while True:
        i = src.find("<<<", pos)
        if i < 0:
            out.append(src[pos:])
            return "".join(out)
        # the kernel expression: an identifier, possibly with template arguments
        k = i
        if src[k - 1] == ">":
            k = matching(src, k - 1, ">", "<", -1)
        while k > 0 and (src[k - 1].isalnum() or src[k - 1] == "_"):
            k -= 1
        kernel = src[k:i]
        j = src.find(">>>", i)
        config = src[i + 3:j]
        if len(split_top(config)) != 4:
            raise SystemExit("translate.py: a launch needs <<<grid, block, smem, stream>>>: " + config)
        a = j + 3
        while src[a].isspace():
            a += 1
        if src[a] != "(":
            raise SystemExit("translate.py: no argument list after >>> for " + kernel)
        b = matching(src, a, "(", ")", 1)
        args = src[a + 1:b]
        sep = ", " if args.strip() else ""
        out.append(src[pos:k])
        out.append("emu_launch(%s, %s%s%s)" % (kernel, config, sep, args))
        pos = b + 1


def translate(path):
    """The translated text of one CUDA file, its own headers inlined."""
    with open(path, encoding="utf-8") as f:
        src = f.read()
    src = re.sub(r"extern __shared__ (\w+) (\w+)\[\];",
                 r"\1 *\2 = (\1 *)emu_dynamic_shared();", src)
    src = rewrite_launches(src)
    name = path[path.rfind("kernels/"):] if "kernels/" in path else path
    lines, out = src.split("\n"), ['#line 1 "%s"' % name]
    for n, line in enumerate(lines, start=1):
        m = re.match(r'\s*#\s*include\s+"kernels/cuda/(\w+\.cuh)"', line)
        if m:
            out.append(translate(os.path.join(os.path.dirname(path), m.group(1))))
            out.append('#line %d "%s"' % (n + 1, name))
        else:
            out.append(line)
    return "\n".join(out)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    text = translate(sys.argv[1])
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
