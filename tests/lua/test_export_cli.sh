#!/bin/sh
# Process-level test of `lorasc run` with save = "adapter" / "model" and `lorasc export`
# (issue 15), from a Hugging Face base (tests/golden/interop/llama, saved by transformers):
#  - LoRA, LoRA+, DoRA, +Cascade (3 experts) and LoRASC without noise (3 experts) keep their
#    adapter; export --peft writes it (rank 2, or 3 x 2 = 6 for the stacked cascades) with
#    base_model_name_or_path, export --hf the merged model with the source's metadata and files;
#  - the three views of a run agree (eval loss on the same windows): the kept lorasc model, the
#    exported HF directory read back, the base with the exported adapter merged;
#  - a run continues from an exported adapter (llama{ checkpoint, adapter });
#  - refusals: save = "adapter" with noise (before anything runs), --peft of a model-only run,
#    an unknown run id, no --hf / --peft;
#  - a ViT for 224x224 images fine-tuned on 28x28 Fashion-MNIST resized to 32 (interpolated
#    position embeddings), exported both ways (skipped without Fashion-MNIST).
# LORASC_EXPORT_KEEP=DIR keeps the exports as DIR/hf_N, DIR/peft_N for
# tests/reference/make_interop_golden.py --verify DIR (transformers and PEFT on them).
# usage: test_export_cli.sh LORASC SOURCE_ROOT
set -u
LORASC=$(realpath "$1")
SRC=$(realpath "$2")
GOLD=$SRC/tests/golden/interop
. "$(dirname "$0")/cli_lib.sh"

cat > llm.lua <<LUA
experiment "hf_llama" {
  model = llama { checkpoint = "$GOLD/llama" },
  tasks = { "text:apache" },
  train = { steps = 6, batch = 2, seq = 32, lr = 1e-2 },
  method = { lora { rank = 2 }, loraplus { rank = 2 }, lora { rank = 2, dora = true },
             cascade { rank = 2, experts = 3 }, lorasc { rank = 2, experts = 3, noise = 0, alpha = 0.5 } },
  seeds = { 1 },
  eval = { max_windows = 4, batch = 2 },
  save = { "adapter", "model" },
}
LUA

# 1. refused before anything runs: an adapter of a noisy cascade
sed 's/noise = 0, //' llm.lua > noisy.lua
if "$LORASC" run noisy.lua --db bad/x.db > out.txt 2>&1; then fail "save = adapter with noise: exit 0"; fi
grep -q 'noisy.lua:[0-9]*: save = "adapter": lorasc{ noise = 1 } adds noise' out.txt || fail "noise refusal: $(cat out.txt)"
grep -q "only exact export" out.txt || fail "noise refusal says what to do: $(cat out.txt)"
[ ! -e bad ] || fail "a refused experiment wrote to the database directory"

# 2. five runs keep adapter and model; each is exported both ways
"$LORASC" run llm.lua --db r/x.db > run.log 2>&1 || fail "run: $(cat run.log)"
[ "$(q r/x.db "SELECT count(*) FROM runs WHERE status='done'")" = 5 ] || fail "runs: $(q r/x.db 'SELECT status, error FROM runs')"
[ "$(q r/x.db "SELECT count(*) FROM artifacts WHERE kind='adapter'")" = 5 ] || fail "adapter artifacts"
[ "$(q r/x.db "SELECT count(*) FROM artifacts WHERE kind='model'")" = 5 ] || fail "model artifacts"
for id in 1 2 3 4 5; do
  "$LORASC" export $id --db r/x.db --hf hf_$id --peft peft_$id > exp_$id.log 2>&1 || fail "export $id: $(cat exp_$id.log)"
  for f in config.json model.safetensors generation_config.json tokenizer.json tokenizer_config.json special_tokens_map.json; do
    [ -s hf_$id/$f ] || fail "export $id: hf_$id/$f missing"
  done
  for f in generation_config.json tokenizer.json; do cmp -s "$GOLD/llama/$f" hf_$id/$f || fail "export $id: $f not copied as it is"; done
  grep -q "\"base_model_name_or_path\": \"$GOLD/llama\"" peft_$id/adapter_config.json || fail "export $id: base_model_name_or_path: $(grep base_model peft_$id/adapter_config.json)"
done
# metadata of the source kept: ids, eps as written, keys lorasc does not model
for kv in '"bos_token_id": 1' '"eos_token_id": 2' '"pad_token_id": 0' '"initializer_range": 0.037' '"rope_theta": 500000'; do
  grep -qF "$kv" hf_1/config.json || fail "config.json lacks $kv: $(cat hf_1/config.json)"
done
grep -Eq '"rms_norm_eps": 1(\.0000000000000001)?e-05' hf_1/config.json || fail "rms_norm_eps: $(grep rms hf_1/config.json)"
# ranks: one expert r = 2; three stacked experts r = 6 with lora_alpha 3 x 16
for case in "1:2:16" "2:2:16" "3:2:16" "4:6:48" "5:6:48"; do
  id=${case%%:*}; rest=${case#*:}; r=${rest%%:*}; a=${rest#*:}
  grep -q "\"r\": $r," peft_$id/adapter_config.json || fail "run $id: r != $r"
  grep -q "\"lora_alpha\": $a" peft_$id/adapter_config.json || fail "run $id: lora_alpha != $a"
done
grep -q '"use_dora": true' peft_3/adapter_config.json || fail "the DoRA run's adapter is not DoRA"

# 3. the three views of each run agree
cat > views.lua <<LUA
local model = require "lorasc.core.model"
local data = require "lorasc.core.data"
local d = data.load("text:apache", 0.8, 0.1, 33)
local bad = 0
for id, hash in ("$(q r/x.db "SELECT id || '=' || config_hash FROM runs ORDER BY id" | tr '\n' ' ')"):gmatch("(%d+)=(%x+)") do
  local kept = model.load("r/runs/" .. hash:sub(1, 16) .. ".lsc", "lorasc")
  local hf = model.load("hf_" .. id, "hf")
  local merged = model.load("$GOLD/llama", "hf")
  local base_loss = d:evaluate(merged, "val", 2, 32, 4)
  merged:merge_adapter("peft_" .. id)
  local a, b, c = d:evaluate(kept, "val", 2, 32, 4), d:evaluate(hf, "val", 2, 32, 4), d:evaluate(merged, "val", 2, 32, 4)
  local diff = math.max(math.abs(a - b), math.abs(a - c))
  print(string.format("run %s: val loss kept %.7f, HF export %.7f, base + PEFT export %.7f (base %.7f)", id, a, b, c, base_loss))
  if diff > 1e-5 * math.abs(a) or math.abs(a - base_loss) < 1e-4 then bad = bad + 1 end
end
return bad
LUA
"$LORASC" lua views.lua > views.log 2>&1 || fail "the views of a run differ (or training did nothing): $(cat views.log)"

# 4. a run continues from an exported adapter
cat > cont.lua <<LUA
experiment "continue" {
  model = llama { checkpoint = "$GOLD/llama", adapter = "peft_4" },
  tasks = { "text:apache" },
  train = { steps = 3, batch = 2, seq = 32, lr = 1e-2 },
  method = lora {},
  seeds = { 1 },
  eval = { max_windows = 4, batch = 2 },
  save = "adapter",
}
LUA
"$LORASC" run cont.lua --db c/x.db > cont.log 2>&1 || fail "continue: $(cat cont.log)"
"$LORASC" export 1 --db c/x.db --peft peft_c > exp_c.log 2>&1 || fail "export continued: $(cat exp_c.log)"
grep -q '"r": 6,' peft_c/adapter_config.json || fail "the continued adapter keeps the imported rank 6"
sed 's/method = lora {}/method = lora { rank = 2 }/' cont.lua > cont_bad.lua
if "$LORASC" run cont_bad.lua --db c2/x.db > out.txt 2>&1; then fail "a rank other than the adapter's: exit 0"; fi
grep -q "rank = 2, but the run continues the model's PEFT adapter, whose rank is 6" out.txt || fail "rank mismatch: $(cat out.txt)"

# 5. export refusals
sed 's/save = { "adapter", "model" }/save = "model"/; s/lorasc { rank = 2, experts = 3, noise = 0, alpha = 0.5 }/lorasc { rank = 2, experts = 3 }/' llm.lua > model_only.lua
"$LORASC" run model_only.lua --db m/x.db --experiment hf_llama > mo.log 2>&1 || fail "model-only run: $(cat mo.log)"
id=$(q m/x.db "SELECT id FROM runs WHERE config LIKE '%\"noise\":1%'")
"$LORASC" export "$id" --db m/x.db --hf hf_noisy > out.txt 2>&1 || fail "export --hf of a noisy cascade: $(cat out.txt)"
if "$LORASC" export "$id" --db m/x.db --peft p_noisy > out.txt 2>&1; then fail "--peft of a model-only run: exit 0"; fi
grep -q 'did not keep its adapter (its experiment had save = "model")' out.txt || fail "--peft of a model-only run: $(cat out.txt)"
if "$LORASC" export 99 --db m/x.db --hf x > out.txt 2>&1; then fail "unknown run: exit 0"; fi
grep -q "no run with id 99" out.txt || fail "unknown run: $(cat out.txt)"
if "$LORASC" export 1 --db m/x.db > out.txt 2>&1; then fail "no --hf/--peft: exit 0"; fi
grep -q "export needs --hf DIR" out.txt || fail "no --hf/--peft: $(cat out.txt)"
"$LORASC" export --help | grep -q "usage: lorasc export" || fail "export --help"

# 6. a 224x224 ViT on 28x28 images resized to 32, both exports
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
   [ -e "${LORASC_DATA:-data}/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
  cat > vit.lua <<LUA
experiment "hf_vit" {
  model = vit { hf = "$GOLD/vit", image_size = 32 },
  tasks = { "fashion-mnist:5-9" },
  split = { val = 0.1, max_train = 64, max_val = 32, max_test = 32 },
  train = { epochs = 2, batch = 8, lr = 3e-3 },
  method = { lora { rank = 2 }, cascade { rank = 2 } },
  seeds = { 1 },
  eval = { batch = 16, corrupt = false },
  save = { "adapter", "model" },
}
LUA
  "$LORASC" run vit.lua --db v/x.db > vrun.log 2>&1 || fail "vit run: $(cat vrun.log)"
  for id in 1 2; do
    "$LORASC" export $id --db v/x.db --hf vhf_$id --peft vpeft_$id > vexp_$id.log 2>&1 || fail "vit export $id: $(cat vexp_$id.log)"
    grep -q '"image_size": 32' vhf_$id/config.json || fail "vit export $id: image_size"
    grep -q '"num_channels": 1' vhf_$id/config.json || fail "vit export $id: num_channels"
    [ -s vhf_$id/preprocessor_config.json ] || fail "vit export $id: preprocessor_config.json"
    grep -q 'interpolate_pos_encoding=True' vexp_$id.log || fail "vit export $id: note: $(cat vexp_$id.log)"
  done
  grep -q '"r": 4,' vpeft_2/adapter_config.json || fail "the 2-expert ViT cascade's adapter has r 4"
  cat > vviews.lua <<LUA
local vit = require "lorasc.core.vit"
local images = require "lorasc.core.images"
local d = images.load("fashion-mnist", { 5, 6, 7, 8, 9 }, { val = 0.1, max_train = 64, max_val = 32, max_test = 32 })
local bad = 0
for id, hash in ("$(q v/x.db "SELECT id || '=' || config_hash FROM runs ORDER BY id" | tr '\n' ' ')"):gmatch("(%d+)=(%x+)") do
  local kept = vit.load("v/runs/" .. hash:sub(1, 16) .. ".ckpt")
  local hf = vit.load_hf("vhf_" .. id)
  local merged = vit.load_hf("$GOLD/vit", { n_classes = 5, channels = 1, image_size = 32 })
  merged:merge_adapter("vpeft_" .. id)
  local acc_a, a = d:evaluate(kept, "val", 16)
  local acc_b, b = d:evaluate(hf, "val", 16)
  local acc_c, c = d:evaluate(merged, "val", 16)
  print(string.format("vit run %s: val loss kept %.7f, HF export %.7f, base + PEFT export %.7f", id, a, b, c))
  if math.max(math.abs(a - b), math.abs(a - c)) > 1e-5 * math.abs(a) or acc_a ~= acc_b or acc_a ~= acc_c then bad = bad + 1 end
end
return bad
LUA
  "$LORASC" lua vviews.lua > vviews.log 2>&1 || fail "the views of a ViT run differ: $(cat vviews.log)"
else
  echo "Fashion-MNIST not installed: the ViT part skipped"
fi

# 7. a language task on the base with a PEFT-made adapter: evaluated as it is (train.steps = 0;
# the adapter kept is the imported one), and trained further (skipped without sst2)
if [ -e "${LORASC_DATA:-data}/sst2/dev.tsv" ]; then
  cat > lang.lua <<LUA
experiment "lang" {
  model = llama { checkpoint = "$GOLD/llama", adapter = "$GOLD/peft_lora" },
  tasks = { "sst2" },
  split = { train = 8, val = 4, test = 4 },
  train = { steps = grid { 0, 2 }, batch = 2, seq = 64 },
  method = lora {},
  eval = { max_examples = 4 },
  save = "adapter",
}
LUA
  "$LORASC" run lang.lua --db l/x.db > lang.log 2>&1 || fail "language runs: $(cat lang.log)"
  id=$(q l/x.db "SELECT id FROM runs WHERE config LIKE '%\"steps\":0%'")
  "$LORASC" export "$id" --db l/x.db --peft lp > out.txt 2>&1 || fail "export of the evaluated adapter: $(cat out.txt)"
  cmp -s lp/adapter_model.safetensors "$GOLD/peft_lora/adapter_model.safetensors" || fail "the evaluated adapter is not the imported one"
  [ "$(q l/x.db "SELECT count(*) FROM evals WHERE metric='score'")" -ge 4 ] || fail "language evals: $(q l/x.db 'SELECT * FROM evals')"
else
  echo "sst2 not in \$LORASC_DATA: the language part skipped"
fi

if [ -n "${LORASC_EXPORT_KEEP:-}" ]; then
  mkdir -p "$LORASC_EXPORT_KEEP"
  for d in hf_? peft_? vhf_? vpeft_?; do
    [ -d "$d" ] || continue
    n=$(echo "$d" | sed 's/^v\(hf\|peft\)_/\1_vit/')
    rm -rf "${LORASC_EXPORT_KEEP:?}/$n" && cp -r "$d" "$LORASC_EXPORT_KEEP/$n"
  done
fi
cat views.log vviews.log 2>/dev/null
cli_done test_export_cli
