#!/bin/sh
# Process-level test of vit{ hf = "dir" } (issue 6): a Hugging Face ViTForImageClassification
# directory (tests/golden/hf_vit_mnist: 28x28 RGB, folded to grey) fine-tuned with LoRA on a
# Fashion-MNIST task whose class count sets the head, end to end; DSL errors with file:line for
# a missing directory, a relative path under the data directory, hf beside checkpoint, sizes
# given beside hf, and a CLIP checkpoint asked for another image size (no interpolation for CLIP;
# resizing the images to a checkpoint's own size is test_export_cli's).
# Needs Fashion-MNIST: skipped (77) without it.
# usage: test_vit_hf_cli.sh LORASC SOURCE_ROOT
set -u
LORASC=$(realpath "$1")
SRC=$(realpath "$2")
. "$(dirname "$0")/cli_lib.sh"
need_fashion_mnist

write() { # write FILE MODEL-ARGS
  cat > "$1" <<LUA
experiment "hf_vit" {
  model = vit { $2 },
  tasks = { "fashion-mnist:0-2" },
  split = { val = 0.1, max_train = 64, max_val = 16, max_test = 32 },
  train = { steps = 4, batch = 8, lr = 3e-3 },
  method = { lora { rank = 2 } },
  seeds = { 1 },
  eval = { batch = 16, corrupt = false },
}
LUA
}

# 1. errors: message, location, nothing written
write bad1.lua 'hf = "no/such/dir"'
write bad2.lua "hf = \"$SRC/tests/golden/hf_vit_mnist\", checkpoint = \"x.ckpt\""
write bad3.lua "hf = \"$SRC/tests/golden/hf_vit_mnist\", dim = 16"
write bad4.lua "hf = \"$SRC/tests/golden/clip_vit_tiny\", image_size = 12"
for case in "bad1.lua:2:no Hugging Face checkpoint at" "bad2.lua:2:takes one of hf, checkpoint or pretrain" \
            "bad3.lua:2:drop dim" "bad4.lua:2:interpolates the position embeddings of ViT checkpoints only"; do
  f=${case%%:*}; rest=${case#*:}; line=${rest%%:*}; msg=${rest#*:}
  if "$LORASC" run "$f" --db bad/x.db > out.txt 2>&1; then fail "$f: exit status 0"; fi
  grep -qF "$msg" out.txt || fail "$f: expected '$msg', got: $(cat out.txt)"
  grep -qF "$f:$line:" out.txt || fail "$f: expected the location $f:$line, got: $(cat out.txt)"
  grep -q "traceback" out.txt && fail "$f: a user error printed a traceback"
done
[ ! -e bad ] || fail "bad input wrote to the database directory"

# 2. a relative path is under the data directory; the run goes end to end
mkdir -p data/models
cp -r "$SRC/tests/golden/hf_vit_mnist" data/models/
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then :; else
  ln -s "$(realpath "${LORASC_DATA:-data}")/fashion-mnist" data/fashion-mnist 2>/dev/null; fi
write ok.lua 'hf = "models/hf_vit_mnist"'
LORASC_DATA=$W/data "$LORASC" run ok.lua --db r/x.db > r1.log 2>&1 || fail "run: $(cat r1.log)"
grep -q "loading the Hugging Face ViT" r1.log || fail "no loading message: $(cat r1.log)"
[ "$(sqlite3 r/x.db "SELECT count(*) FROM runs WHERE status='done'")" = 1 ] ||
  fail "runs: $(sqlite3 r/x.db 'SELECT status, error FROM runs')"
v=$(sqlite3 r/x.db "SELECT value FROM evals WHERE split='test' AND metric='score' LIMIT 1")
awk -v v="$v" 'BEGIN { exit !(v >= 0 && v <= 1 && v != "") }' || fail "test score '$v' is not an accuracy"

cli_done test_vit_hf_cli
