#!/bin/sh
# `lorasc run --device cuda` end to end on the CUDA kernels run in the CPU emulation
# (lorasc_cuda_emu: the lorasc program with kernels/cuda run by kernels/cuda/emu, whose guard
# makes any host read of device memory fault): a small text experiment (a Llama pretrained,
# then LoRA and LoRASC) and, with Fashion-MNIST, a small image one (LoRA and LoRASC with DoRA
# on a ViT), a streamed image folder (each next batch decoded in the background, the device's
# default) and three language tasks (classification, generation through the key/value cache),
# each against the same experiment on the CPU: the same runs (hashes), every
# evaluation loss and logged training loss within 1e-5 relative, the same accuracies (a bf16
# base with bf16 stored activations: losses within 1e-3), the
# device's description recorded with every run. Then `device = "cuda"` in the file, and a
# model the device cannot run (a head size above the CUDA attention's 256): its run fails with
# the backend's sentence and the sweep stops, the next run left pending.
# usage: test_cuda_emu_cli.sh LORASC_CUDA_EMU LORASC SOURCE_ROOT WRITE_TASK_FIXTURE
set -u
EMU=$(realpath "$1")
LORASC=$(realpath "$2")
SRC=$(realpath "$3")
FIXTURE=$(realpath "$4")
. "$(dirname "$0")/cli_lib.sh"
export LORASC_CUDA_EMU_GUARD=1

# same_results CPU_DB CUDA_DB [TOL]: the same evaluations and train.loss metrics, losses within
# TOL relative (default 1e-5) and accuracies equal; with TOL given, the losses only (a bf16
# run's accuracies may move by an example).
same_results() {
  tol=${3:-1e-5}
  losses_only=${3:+1}
  for db in "$1" "$2"; do
    q "$db" "SELECT r.config_hash || ' eval.' || e.split || '.' || e.metric, printf('%.9e', e.value)
             FROM evals e JOIN runs r ON r.id = e.run_id
             UNION ALL SELECT r.config_hash || ' ' || m.name || '@' || m.step, printf('%.9e', m.value)
             FROM metrics m JOIN runs r ON r.id = m.run_id WHERE m.name = 'train.loss'
             ORDER BY 1" | tr '|' ' ' > "$db.txt"
  done
  [ -s "$1.txt" ] || fail "$1: no results"
  cut -d' ' -f1-2 "$1.txt" > keys1.txt
  cut -d' ' -f1-2 "$2.txt" > keys2.txt
  cmp -s keys1.txt keys2.txt || fail "$2: other runs or metrics than on the CPU"
  paste -d' ' "$1.txt" "$2.txt" | awk -v what="$2" -v tol="$tol" -v lo="${losses_only:-0}" '
    { a = $3 + 0; b = $6 + 0; d = a - b; if (d < 0) d = -d; s = a < 0 ? -a : a
      loss = $2 ~ /loss/
      if (!loss && lo == 1) next
      if ((loss && d > tol * s) || (!loss && d > 0)) { printf "  %s %s: cpu %s cuda %s\n", $1, $2, $3, $6; bad++ }
      if (s > 0 && d / s > worst) worst = d / s }
    END { printf "%s: %d values, worst relative difference %.2e\n", what, NR, worst; exit bad > 0 }' ||
    fail "$2: results differ from the CPU beyond $tol"
  q "$2" "SELECT DISTINCT device FROM runs" | grep -qF '"backend":"cuda"' || fail "$2: device not recorded"
}

# 1. Text: a Llama pretrained on the device, LoRA and LoRASC (noise, 2 experts).
sed 's/seeds = { 1, 2 }/seeds = { 1 }/' "$SRC/tests/lua/tiny.lua" > text.lua
"$LORASC" run text.lua --db cpu/text.db > cpu_text.log 2>&1 || fail "text on the CPU: $(tail -3 cpu_text.log)"
"$EMU" run text.lua --device cuda --db cuda/text.db > cuda_text.log 2>&1 || fail "text on cuda: $(tail -3 cuda_text.log)"
same_results cpu/text.db cuda/text.db

# 1b. The same with a bf16 base and the activations stored in bf16: on the device the attention
# runs on the tensor cores (bf16 q, k, v and probabilities) where the CPU keeps fp32, so the
# two agree within a bf16-scale tolerance (losses within 1e-3 relative; measured 5e-6 on this
# tiny model), not 1e-5.
sed 's/log_every = 4,/log_every = 4, precision = "bf16", activations = "bf16",/' text.lua > text16.lua
"$LORASC" run text16.lua --db cpu/text16.db > cpu_text16.log 2>&1 || fail "bf16 text on the CPU: $(tail -3 cpu_text16.log)"
"$EMU" run text16.lua --device cuda --db cuda/text16.db > cuda_text16.log 2>&1 || fail "bf16 text on cuda: $(tail -3 cuda_text16.log)"
same_results cpu/text16.db cuda/text16.db 1e-3

# 2. Image: LoRA and LoRASC with DoRA on a ViT the CPU pretrained (the device reads it from the
# shared cache: pretraining evaluates thousands of images, too slow in the emulation; ViT full
# training on the device is test device_step_cuda_emu's), no corruptions.
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
   [ -e "${LORASC_DATA:-data}/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
  sed -e 's/max_train = 200, max_val = 50, max_test = 100/max_train = 64, max_val = 32, max_test = 32/' \
      -e 's/eval = { batch = 50, corrupt_max = 50 }/eval = { batch = 32, corrupt = false }/' \
      -e 's/steps = 8, batch = 16/steps = 4, batch = 16/' \
      -e 's/lorasc { rank = 2, experts = 2 }/lorasc { rank = 2, experts = 2, dora = true }/' \
      "$SRC/tests/lua/tiny_image.lua" > image.lua
  "$LORASC" run image.lua --db img/cpu.db > cpu_image.log 2>&1 || fail "image on the CPU: $(tail -3 cpu_image.log)"
  "$EMU" run image.lua --device cuda --db img/cuda.db > cuda_image.log 2>&1 || fail "image on cuda: $(tail -3 cuda_image.log)"
  grep -q "pretraining" cuda_image.log && fail "the device pretrained the ViT again instead of reading the cache"
  same_results img/cpu.db img/cuda.db
else
  echo "Fashion-MNIST not installed: the image experiment is skipped"
fi

# 2b. A streamed image folder (every set decoded from its files at each batch) on a CLIP tower
# in colour: on the device each next batch is decoded in the background while the device runs
# on this one (the default there), in training and in evaluation (with a shift folder); the
# CPU's results, and every batch read only after its decoding ended (the guard faults on
# device memory the decoding thread might touch).
if command -v python3 > /dev/null && python3 "$SRC/tests/lua/make_image_folder.py" data > /dev/null; then
  cat > folder.lua <<LUA
experiment "folder" {
  model = vit { hf = "$SRC/tests/golden/clip_vit_tiny", channels = 3 },
  tasks = { "folder:pets" },
  split = { val = 0.15 },
  train = { steps = 6, batch = 8, lr = 1e-2 },
  method = { lora { rank = 2 }, lorasc { rank = 2, experts = 2 } },
  seeds = { 1 },
  log_every = 1,
  eval = { batch = 16, corrupt = false, shift = { "folder:pets-sketch" } },
}
LUA
  LORASC_DATA=$W/data LORASC_IMAGE_MEMORY_MB=0 "$LORASC" run folder.lua --db cpu/folder.db > cpu_folder.log 2>&1 ||
    fail "a streamed folder on the CPU: $(tail -3 cpu_folder.log)"
  LORASC_DATA=$W/data LORASC_IMAGE_MEMORY_MB=0 "$EMU" run folder.lua --device cuda --db cuda/folder.db > cuda_folder.log 2>&1 ||
    fail "a streamed folder on cuda: $(tail -3 cuda_folder.log)"
  same_results cpu/folder.db cuda/folder.db
else
  echo "python3 cannot write the image folders: the streamed folder experiment is skipped"
fi

# 3. Language tasks on test-written files (tests/task_fixture.h): a classification task scored
# by the loss of each label, and two generation tasks through the key/value-cache decoder.
"$FIXTURE" "$W/data" > /dev/null || fail "cannot write the task fixture"
mkdir -p data/tiny
cat > mk.lua <<'LUA'
local m = require("lorasc.core.model").new { dim = 16, hidden_dim = 32, n_layers = 1, n_heads = 2,
  vocab_size = 260, seq_len = 96, seed = 1 }
m:save(os.getenv("LORASC_DATA") .. "/tiny/model.lsc")
LUA
LORASC_DATA=$W/data "$LORASC" lua mk.lua || fail "cannot write the tiny model"
cat > lang.lua <<'LUA'
experiment "lang" {
  model = llama { checkpoint = "tiny/model.lsc", tokenizer = "tok/tokenizer.bin" },
  tasks = { "sst2", "squad", "gsm8k" },
  split = { train = 4, val = 2, test = 2 },
  train = { steps = 3, batch = 2, seq = 96, lr = 1e-3 },
  method = lorasc { rank = 2, experts = 2 },
  eval = { max_new = 4 },
  log_every = 1,
}
LUA
LORASC_DATA=$W/data "$LORASC" run lang.lua --db cpu/lang.db > cpu_lang.log 2>&1 || fail "language tasks on the CPU: $(tail -3 cpu_lang.log)"
LORASC_DATA=$W/data "$EMU" run lang.lua --device cuda --db cuda/lang.db > cuda_lang.log 2>&1 || fail "language tasks on cuda: $(tail -3 cuda_lang.log)"
same_results cpu/lang.db cuda/lang.db

# 4. The device from the file, and a device failure mid-sweep: the first run's model has a head
# size of 300; its pretraining fails on the device, the sweep stops, the second run stays
# pending, the sentence names the op, file and line.
sed -e 's/experiment "tiny" {/experiment "tiny" {\n  device = "cuda",/' \
    -e 's/dim = 16, hidden_dim = 32, n_layers = 1, n_heads = 2/dim = grid { 600, 16 }, hidden_dim = 32, n_layers = 1, n_heads = 2/' \
    -e 's/method = { lora { rank = 2 }, lorasc { rank = 2, experts = 2 } }/method = lora { rank = 2 }/' \
    -e 's/seeds = { 1, 2 }/seeds = { 1 }/' "$SRC/tests/lua/tiny.lua" > broken.lua
if "$EMU" run broken.lua --db broken/x.db > broken.log 2>&1; then fail "a sweep with a failing device exited 0"; fi
grep -qF "cuda: attention_forward failed at kernels/cuda/attention.cu:" broken.log || fail "no device sentence: $(cat broken.log)"
grep -qF "the sweep stops here" broken.log || fail "the sweep did not stop: $(cat broken.log)"
[ "$(q broken/x.db "SELECT count(*) FROM runs WHERE status = 'failed'")" = 1 ] || fail "expected 1 failed run"
[ "$(q broken/x.db "SELECT count(*) FROM runs WHERE status = 'pending'")" = 1 ] || fail "expected 1 pending run"
q broken/x.db "SELECT error FROM runs WHERE status = 'failed'" | grep -qF "head size 300" ||
  fail "the failed run's error: $(q broken/x.db "SELECT error FROM runs")"

cli_done test_cuda_emu_cli
