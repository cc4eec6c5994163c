#!/bin/sh
# Process-level test of image folder tasks (issue 14's paper-scale Table 3 pieces):
# "folder:<path>" tasks (train/ and val/ class folders under the data directory, written by
# make_image_folder.py), a Hugging Face CLIP vision tower in colour (channels = 3: its own
# RGB weights, CLIP's image processor in the config) with eval.shift on a folder holding 2 of
# the 3 classes (test.shift.<folder>, scored over those 2 classes' logits) and the corruption
# suite on RGB images, the same numbers with every set streamed from its files; a ViT pretrained from scratch on a folder task; and the DSL's
# sentences, each with file:line, for a colour checkpoint whose channels are unsaid, a missing
# folder, a folder shift on an MNIST task, a colour model on a grey task, and a lorasc
# checkpoint on a folder task; and experiments/paper/table3_clip_imagenet.lua on a miniature of
# ImageNet's layouts (its 135 runs expanded; one run end to end with the four shift folders,
# the file's warm-up and batch cut to the miniature's size); a CLIP zero-shot head
# (head = file) scoring what transformers' CLIP predicts zero-shot.
# usage: test_folder_cli.sh LORASC SOURCE_ROOT
set -u
LORASC=$(realpath "$1")
SRC=$(realpath "$2")
. "$(dirname "$0")/cli_lib.sh"
command -v python3 >/dev/null || { echo "python3 not found: skipped"; exit 77; }
python3 "$SRC/tests/lua/make_image_folder.py" data || { echo "FAIL: make_image_folder.py"; exit 1; }
export LORASC_DATA=$W/data
CLIP=$SRC/tests/golden/clip_vit_tiny

# one_run FILE MODEL-ARGS STEPS LR: one LoRA run on folder:pets with the pets-sketch shift
one_run() {
  cat > "$1" <<LUA
experiment "one" {
  model = vit { $2 },
  tasks = { "folder:pets" },
  split = { val = 0.15 },
  train = { steps = $3, batch = 8, lr = $4 },
  method = lora { rank = 2 },
  eval = { batch = 16, corrupt = false, shift = "folder:pets-sketch" },
}
LUA
}

# 1. a CLIP tower in colour on a folder task, a folder shift of 2 of its 3 classes
cat > clip.lua <<LUA
experiment "folder_clip" {
  model = vit { hf = "$CLIP", channels = 3 },
  tasks = { "folder:pets" },
  split = { val = 0.15 },
  train = { epochs = 2, batch = 8, lr = 1e-2 },
  method = { lora { rank = 2 }, lorasc { rank = 2 } },
  seeds = { 1 },
  eval = { batch = 16, corrupt = true, corrupt_max = 8, shift = { "folder:pets-sketch" } },
}
LUA
"$LORASC" run clip.lua --db r/clip.db > clip.log 2>&1 || fail "clip run: $(cat clip.log)"
[ "$(q r/clip.db "SELECT count(*) FROM runs WHERE status='done'")" = 2 ] ||
  fail "clip runs: $(q r/clip.db 'SELECT status, error FROM runs')"
# 72 train-folder images: 11 val (round(0.15 * 72)), 61 train; 24 test images from val/
[ "$(q r/clip.db "SELECT value FROM evals WHERE metric='shift.pets-sketch.n' LIMIT 1")" = 12.0 ] ||
  fail "shift images: $(q r/clip.db "SELECT metric, value FROM evals WHERE metric LIKE 'shift%'")"
for m in score shift.pets-sketch corrupt.mean; do
  v=$(q r/clip.db "SELECT value FROM evals WHERE split='test' AND metric='$m' LIMIT 1")
  awk -v v="$v" 'BEGIN { exit !(v != "" && v >= 0 && v <= 1) }' || fail "test.$m '$v' is not an accuracy"
done
# the checkpoint's image processor (CLIPImageProcessor's defaults: no preprocessor_config.json)
# is in the config: the shorter side bicubic, the centre crop floored, CLIP's statistics
q r/clip.db "SELECT config FROM runs LIMIT 1" | grep -qF '"processor":{"crop":8,"crop_floor":true,"mean":[0.48145467,0.4578275,0.40821072],"resample":"pil-bicubic","shortest_edge":8,"std":[0.26862955,0.2613026,0.2757771]}' ||
  fail "no CLIP processor in the config: $(q r/clip.db 'SELECT config FROM runs LIMIT 1')"
# the task's and the shift's images are inputs of the run, each folder one row (ImageNet would
# be 1.4 million rows per run otherwise): the hash of its files' paths under it and their
# hashes, in the order of a walk that sorts each directory's names (computed here by Python)
tree() {
  python3 - "$1" <<'PY'
import hashlib, os, sys
def walk(d, rel, out):
    for n in sorted(os.listdir(d), key=os.fsencode):
        p = os.path.join(d, n)
        if os.path.isdir(p): walk(p, rel + n + "/", out)
        elif n != "SOURCE.txt": out.append(rel + n + " " + hashlib.sha256(open(p, "rb").read()).hexdigest())
    return out
print(hashlib.sha256("\n".join(walk(sys.argv[1], "", [])).encode()).hexdigest())
PY
}
[ "$(q r/clip.db "SELECT count(*) FROM run_inputs WHERE run_id = 1 AND kind = 'data'")" = 2 ] ||
  fail "inputs: $(q r/clip.db "SELECT kind, path FROM run_inputs WHERE run_id = 1")"
for f in pets pets-sketch; do
  [ "$(q r/clip.db "SELECT sha256 FROM run_inputs WHERE run_id = 1 AND path = '$W/data/$f'")" = "$(tree data/$f)" ] ||
    fail "input $f: $(q r/clip.db "SELECT path, sha256 FROM run_inputs WHERE run_id = 1") vs $(tree data/$f)"
done
# a changed image makes the runs stale, named by its folder
img=$(find data/pets-sketch -type f | sort | head -1)
cp "$img" saved.img && printf x >> "$img"
"$LORASC" status clip.lua --db r/clip.db > st.txt 2>&1
[ "$(grep -c "stale .*data: pets-sketch changed" st.txt)" = 2 ] || fail "a changed shift image: $(cat st.txt)"
cp saved.img "$img"
"$LORASC" status clip.lua --db r/clip.db > st.txt 2>&1
! grep -q stale st.txt || fail "the image restored, still stale: $(cat st.txt)"
# a folder's files are in its own hash cache file (named by the hash of its real path) by
# their real paths (files older than 2 s), and what is there is what the next command uses:
# a wrong hash for one image says it changed
sleep 3
"$LORASC" status clip.lua --db r/clip.db > st.txt 2>&1
HC=r/cache/file_hashes-$(printf %s "$(realpath data/pets-sketch)" | sha256sum | cut -c1-16).tsv
for f in $(find data/pets-sketch -type f ! -name SOURCE.txt); do
  grep -q "^$(sha256sum "$f" | cut -d' ' -f1) .* $(realpath "$f")\$" "$HC" ||
    fail "$f is not in the folder's hash cache $HC: $(ls r/cache; head -3 "$HC")"
done
zeros=0000000000000000000000000000000000000000000000000000000000000000
sed -i "s|^[0-9a-f]* \(.* $(realpath "$img")\)\$|$zeros \1|" "$HC"
"$LORASC" status clip.lua --db r/clip.db > st.txt 2>&1
[ "$(grep -c "stale .*data: pets-sketch changed" st.txt)" = 2 ] || fail "the cached hash of an image was not used: $(cat st.txt)"
rm r/cache/file_hashes*.tsv
"$LORASC" report clip.lua --db r/clip.db > report.txt 2>&1 || fail "report: $(cat report.txt)"
# the same runs with every set streamed from its files (a memory budget of 0): the same numbers
LORASC_IMAGE_MEMORY_MB=0 "$LORASC" run clip.lua --db r/stream.db > stream.log 2>&1 || fail "streamed run: $(cat stream.log)"
evals() { q "$1" "SELECT r.config_hash, e.split, e.metric, e.value FROM evals e JOIN runs r ON r.id = e.run_id ORDER BY 1, 2, 3"; }
[ -n "$(evals r/clip.db)" ] && [ "$(evals r/clip.db)" = "$(evals r/stream.db)" ] ||
  fail "streamed sets changed the evaluations: $(evals r/clip.db | head -3) vs $(evals r/stream.db | head -3)"
# and with each next batch decoded in the background (the GPU's default; here forced)
LORASC_IMAGE_MEMORY_MB=0 LORASC_IMAGE_PREFETCH=1 "$LORASC" run clip.lua --db r/ahead.db > ahead.log 2>&1 ||
  fail "streamed run, prefetched: $(cat ahead.log)"
[ "$(evals r/clip.db)" = "$(evals r/ahead.db)" ] ||
  fail "prefetched batches changed the evaluations: $(evals r/clip.db | head -3) vs $(evals r/ahead.db | head -3)"

# the two settings' typos are sentences, not their defaults in silence
for env in LORASC_IMAGE_MEMORY_MB=lots LORASC_IMAGE_PREFETCH=yes; do
  env "$env" "$LORASC" run clip.lua --db r/env.db > env.log 2>&1 && fail "$env: exit status 0"
  grep -q "^lorasc: ${env%%=*}=${env#*=} " env.log && ! grep -q traceback env.log || fail "$env: $(cat env.log)"
  [ ! -e r/env.db ] || fail "$env: a database was made"
done

# 2. a ViT pretrained from scratch on a folder task (RGB by default), fine-tuned on it
one_run scratch.lua "image_size = 8, patch_size = 4, dim = 16, n_layers = 1, n_heads = 2,
                pretrain = { task = \"folder:pets\", steps = 20, batch = 8, lr = 3e-3 }" 6 1e-2
"$LORASC" run scratch.lua --db r/scratch.db > scratch.log 2>&1 || fail "scratch run: $(cat scratch.log)"
[ "$(q r/scratch.db "SELECT count(*) FROM runs WHERE status='done'")" = 1 ] ||
  fail "scratch runs: $(q r/scratch.db 'SELECT status, error FROM runs')"
grep -q "pretraining the base ViT" scratch.log || fail "no pretraining: $(cat scratch.log)"

# 3. the DSL's sentences: file:line, non-zero exit, nothing written
bad() { # bad FILE LINE MESSAGE MODEL TASK [EVAL]
  cat > "$1" <<LUA
experiment "bad" {
  model = vit { $4 },
  tasks = { "$5" },
  train = { steps = 2, batch = 8, lr = 1e-2 },
  method = lora { rank = 2 },
  eval = { ${6:-} },
}
LUA
  if "$LORASC" run "$1" --db bad/x.db > out.txt 2>&1; then fail "$1: exit status 0"; fi
  grep -qF "$3" out.txt || fail "$1: expected '$3', got: $(cat out.txt)"
  grep -qF "$1:$2:" out.txt || fail "$1: expected the location $1:$2, got: $(cat out.txt)"
  grep -q "traceback" out.txt && fail "$1: a user error printed a traceback"
}
bad b1.lua 3 "holds colour images and $CLIP is a colour (3-channel) checkpoint: write channels = 3" "hf = \"$CLIP\"" folder:pets
bad b2.lua 3 "task 'folder:nowhere' needs an image folder at $W/data/nowhere" "hf = \"$CLIP\", channels = 3" folder:nowhere
bad b3.lua 6 "eval.shift 'folder:pets-sketch' is a folder of named classes" "hf = \"$CLIP\"" fashion-mnist:0-2 'shift = { "folder:pets-sketch" }'
bad b4.lua 3 "task 'fashion-mnist:0-2' is grey (1 channel); the vit{} takes 3-channel images" "hf = \"$CLIP\", channels = 3" fashion-mnist:0-2
bad b5.lua 3 "a lorasc checkpoint does not say before it is loaded" 'checkpoint = "x.ckpt"' folder:pets
bad b6.lua 2 "channels = 2 is invalid: must be 1" "hf = \"$CLIP\", channels = 2" folder:pets
bad b7.lua 6 "no folder at $W/data/absent" "hf = \"$CLIP\", channels = 3" folder:pets 'shift = { "folder:absent" }'
[ ! -e bad ] || fail "bad input wrote to the database directory"

# 4. the paper-scale Table 3 file on a miniature of its data (make_image_folder.py --imagenet:
# ImageNet's Kaggle validation layout, V2's numbered folders, A's and R's class subsets), the
# tiny CLIP tower standing for ViT-B/16
python3 "$SRC/tests/lua/make_image_folder.py" data --imagenet || fail "make_image_folder.py --imagenet"
mkdir -p data/models && ln -s "$CLIP" data/models/clip-vit-base-patch16
sed -e 's/warmup = 500/warmup = 0/' -e 's/batch = 128/batch = 8/' \
  "$SRC/experiments/paper/table3_clip_imagenet.lua" > mini.lua
"$LORASC" run mini.lua --dry-run > dry.txt 2>&1 || fail "dry run: $(cat dry.txt)"
[ "$(grep -c ' folder:imagenet ' dry.txt)" = 135 ] || fail "expected 135 runs: $(tail -3 dry.txt)"
"$LORASC" run mini.lua --shard 1/135 --device cpu --db r/mini.db > mini.log 2>&1 || fail "mini run: $(cat mini.log)"
# images per shift: V2 3 x 4, Sketch 3 x 4, A 5 (1 class), R 2 x 3
for m in imagenet-v2:12.0 imagenet-sketch:12.0 imagenet-a:5.0 imagenet-r:6.0; do
  got=$(q r/mini.db "SELECT value FROM evals WHERE metric='shift.${m%%:*}.n'")
  [ "$got" = "${m#*:}" ] || fail "shift.${m%%:*}.n = '$got', expected ${m#*:}"
done
[ "$(q r/mini.db "SELECT value FROM evals WHERE metric='shift.imagenet-a.loss'")" = 0.0 ] ||
  fail "a 1-class shift set scored over its one logit must have loss 0"
[ "$(q r/mini.db "SELECT count(*) FROM evals WHERE split='test' AND metric='score'")" = 1 ] ||
  fail "mini: $(cat mini.log)"
# its report: metric names with "-" (test.shift.imagenet-r), scaled as scores
"$LORASC" report mini.lua --db r/mini.db > mini_report.txt 2>&1 || fail "mini report: $(cat mini_report.txt)"
grep -q "| lora | .* | 100.00 ± — (1) |" mini_report.txt || fail "mini report: $(cat mini_report.txt)"

# 5. CLIP's zero-shot head (tools/clip_zeroshot_head.py, tests/golden/clip_zeroshot from
# tests/reference/make_zeroshot_golden.py): a run whose one step has lr 1e-12 (no prediction can
# move) scores what transformers' CLIPModel predicts zero-shot, on the test folder and on the
# shift folder over its two classes; a head of another class count is refused before any run
ZS=$SRC/tests/golden/clip_zeroshot
one_run zs.lua "hf = \"$ZS\", channels = 3, head = \"$ZS/head.safetensors\"" 1 1e-12
"$LORASC" run zs.lua --db r/zs.db > zs.log 2>&1 || fail "zero-shot run: $(cat zs.log)"
for m in test:score shift:shift.pets-sketch; do
  want=$(awk -v k="${m%%:*}" '$1 == k { print $2 }' "$ZS/expected.txt")
  got=$(q r/zs.db "SELECT value FROM evals WHERE split='test' AND metric='${m#*:}'")
  awk -v a="$got" -v b="$want" 'BEGIN { exit !(a != "" && (a - b) ^ 2 < 1e-18) }' ||
    fail "zero-shot ${m#*:}: lorasc $got, transformers' CLIP $want"
done
mkdir -p data/two/train data/two/val
cp -r data/pets/train/cat data/pets/train/dog data/two/train/ && cp -r data/pets/val/cat data/two/val/
sed 's/folder:pets"/folder:two"/; s/, shift = "folder:pets-sketch"//' zs.lua > zs2.lua
if "$LORASC" run zs2.lua --db r/zs2.db > zs2.log 2>&1; then fail "a 3-class head on a 2-class task ran"; fi
grep -qF "head.safetensors: the head's weight is [3, 16], the task needs [2, 16] (2 classes" zs2.log || fail "zs2: $(cat zs2.log)"
[ "$(q r/zs2.db "SELECT count(*) FROM runs WHERE status='done'" 2>/dev/null || echo 0)" = 0 ] || fail "zs2 ran a run"

cli_done test_folder_cli
