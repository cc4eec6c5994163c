-- Lua-level tests of the DSL's Hugging Face parts (run by `lorasc lua`): save = "model" |
-- "adapter", refused up front where no exact adapter exists; llama{ adapter = PEFT_DIR } (the
-- method takes the adapter's shape, a different one is an error, what the adapter holds that
-- lorasc does not implement is an error naming it); an HF directory's tokenizer.json found
-- without naming it; vit{ hf, image_size }; the JSON reader export uses.
local dsl = require "lorasc.dsl"
local interop = require "lorasc.core.interop"

local src = assert(os.getenv("LORASC_SOURCE_ROOT"), "LORASC_SOURCE_ROOT must be set")
local gold = src .. "/tests/golden/interop"
local checks = require("checks").new("test_interop_dsl")
local check = checks.check
local function eq(a, b, what) check(a == b, string.format("%s: got %s, expected %s", what, tostring(a), tostring(b))) end

local tmp = os.tmpname()
local function expand(text)
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  local ok, reg = pcall(dsl.load_file, tmp)
  if not ok then return false, reg end
  return pcall(dsl.expand_experiment, reg.experiments[reg.order[1]])
end
local function llama_exp(model, method, extra, steps)
  return string.format([[
experiment "x" {
  model = llama { %s },
  tasks = { "text:apache" }, train = { steps = %d, batch = 2, seq = 8 },
  method = %s,
  %s
}
]], model, steps or 2, method, extra or "")
end
local function fails_with(text, needles, what)
  local ok, err = expand(text)
  check(not ok, what .. ": must fail")
  if ok then return end
  err = tostring(err)
  check(err:sub(1, 8) == "lorasc: ", what .. ": a user error: " .. err)
  for _, n in ipairs(needles) do check(err:find(n, 1, true) ~= nil, what .. ": '" .. n .. "' in: " .. err) end
end

local hf = string.format('checkpoint = "%s/llama"', gold)

-- save -------------------------------------------------------------------------------------
local ok, runs = expand(llama_exp(hf, "lora { rank = 2 }", 'save = "adapter",'))
check(ok, "save = adapter: " .. tostring(runs))
if ok then check(runs[1].save.adapter and not runs[1].save.model, "save = adapter keeps the adapter only") end
ok, runs = expand(llama_exp(hf, "lora { rank = 2 }", "save = true,"))
check(ok and runs[1].save.model and not runs[1].save.adapter, "save = true keeps the model (as before)")
ok, runs = expand(llama_exp(hf, "lora { rank = 2 }", 'save = { "model", "adapter" },'))
check(ok and runs[1].save.model and runs[1].save.adapter, "save = { model, adapter }")
ok, runs = expand(llama_exp(hf, "lora { rank = 2 }", ""))
check(ok and not runs[1].save.model and not runs[1].save.adapter, "no save")
local no_save_hash = ok and runs[1].hash
ok, runs = expand(llama_exp(hf, "lora { rank = 2 }", 'save = "adapter",'))
check(ok and runs[1].hash == no_save_hash, "save is not part of a run's identity")
fails_with(llama_exp(hf, "lora { rank = 2 }", 'save = "weights",'), { 'save must be "model", "adapter"', '"weights"' }, "unknown save")
-- no exact adapter: refused before anything runs, saying why and what to do
fails_with(llama_exp(hf, "lorasc { rank = 2, experts = 2 }", 'save = "adapter",'),
  { "noise", "the merged model", "only exact export" }, "lorasc with noise")
ok = expand(llama_exp(hf, "lorasc { rank = 2, experts = 2, noise = 0 }", 'save = "adapter",'))
check(ok, "lorasc without noise keeps an adapter")
ok = expand(llama_exp(hf, "lorasc { rank = 2, experts = 1 }", 'save = "adapter",'))
check(ok, "one expert: the noise never enters")
fails_with(llama_exp(hf, "cascade { rank = 2, experts = 2, dora = true }", 'save = "adapter",'),
  { "DoRA cascade", "only exact export" }, "DoRA over several experts")
ok = expand(llama_exp(hf, "relora { rank = 2, every = 1 }", 'save = "adapter",'))
check(ok, "relora keeps its stacked adapter")

-- the tokenizer of an HF directory --------------------------------------------------------
ok, runs = expand(llama_exp(hf, "lora { rank = 2 }"))
if ok then
  eq(runs[1].config.model.format, "hf", "hf format")
  eq(runs[1].config.model.tokenizer, gold .. "/llama/tokenizer.json", "tokenizer.json found without naming it")
end
ok, runs = expand(llama_exp(string.format('checkpoint = "%s/refused/base"', gold), "lora { rank = 2 }"))
check(ok and runs[1].config.model.tokenizer == nil, "no tokenizer.json: none")

-- llama{ adapter = } ------------------------------------------------------------------------
local with = string.format('%s, adapter = "%s/peft_lora"', hf, gold)
ok, runs = expand(llama_exp(with, "lora {}"))
check(ok, "adapter: " .. tostring(runs))
if ok then
  local m = runs[1].config.method
  eq(m.rank, 4, "rank from the adapter")
  eq(m.lora_alpha, 8, "lora_alpha from the adapter")
  eq(table.concat(m.targets, ","), "down,gate,k,o,q,up,v", "targets from the adapter")
  eq(runs[1].config.model.adapter, gold .. "/peft_lora", "adapter in the model config")
end
ok, runs = expand(llama_exp(string.format('%s, adapter = "%s/peft_dora"', hf, gold), "cascade { experts = 2 }"))
check(ok and runs[1].config.method.dora == true and runs[1].config.method.rank == 2, "DoRA adapter: dora and rank from it")
fails_with(llama_exp(with, "lora { rank = 8 }"), { "rank = 8", "whose rank is 4" }, "a rank other than the adapter's")
fails_with(llama_exp(with, 'lora { targets = { "q", "v" } }'), { "targets = q,v", "down,gate,k,o,q,up,v" }, "targets other than the adapter's")
ok = expand(llama_exp(with, 'lora { rank = 4, targets = { "v", "q", "k", "o", "up", "down", "gate" } }'))
check(ok, "the adapter's shape given explicitly, in another order")
fails_with(llama_exp(string.format('adapter = "%s/peft_lora"', gold), "lora {}"), { "give checkpoint" }, "adapter without checkpoint")
fails_with(llama_exp(string.format('%s, adapter = "no/such/adapter"', hf), "lora {}"), { "no PEFT adapter there" }, "missing adapter")
for _, case in ipairs { { "modules_to_save", "modules_to_save" }, { "layer_replication", "layer_replication" },
                        { "rslora", "use_rslora" }, { "rank_pattern", "rank_pattern" }, { "alpha_pattern", "alpha_pattern" },
                        { "regex", "regular expression" } } do
  fails_with(llama_exp(string.format('checkpoint = "%s/refused/base", adapter = "%s/refused/%s"', gold, gold, case[1]), "lora {}"),
    { case[2], ":2:" }, "refused adapter " .. case[1])
end
-- train.steps = 0 (language tasks): an imported adapter is evaluated as it is, and can be kept
local data = os.getenv("LORASC_DATA")
local sst2 = data and io.open(data .. "/sst2/dev.tsv")
if sst2 then
  sst2:close()
  local lang = function(model, extra)
    return (llama_exp(model, "lora {}", extra, 0):gsub('"text:apache"', '"sst2"'):gsub("seq = 8", "seq = 32"))
  end
  ok, runs = expand(lang(with, 'save = "adapter",'))
  check(ok, "an imported adapter evaluated as it is can be kept: " .. tostring(runs))
  fails_with(lang(hf, 'save = "adapter",'), { "trains nothing" }, "steps = 0 without an adapter")
else
  print("sst2 not in $LORASC_DATA: train.steps = 0 cases skipped")
end

-- vit{ hf, image_size } ------------------------------------------------------------------------
local function vit_exp(model)
  return string.format([[
experiment "v" {
  model = vit { %s },
  tasks = { "fashion-mnist:5-9" }, train = { steps = 2, batch = 2 }, method = lora { rank = 2 },
}
]], model)
end
local fm = os.getenv("LORASC_DATA") and io.open(os.getenv("LORASC_DATA") .. "/fashion-mnist/train-images-idx3-ubyte.gz")
  or io.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
if fm then
  fm:close()
  ok, runs = expand(vit_exp(string.format('hf = "%s/vit"', gold)))
  check(ok, "vit hf 224: " .. tostring(runs))
  if ok then eq(runs[1].config.model.image_size, 224, "default: the checkpoint's own size (images resized)") end
  ok, runs = expand(vit_exp(string.format('hf = "%s/vit", image_size = 32', gold)))
  if ok then eq(runs[1].config.model.image_size, 32, "image_size = 32 (interpolated positions)") end
  ok, runs = expand(vit_exp(string.format('hf = "%s/hf_vit_mnist"', src .. "/tests/golden")))
  check(ok and runs[1].config.model.image_size == nil, "a 28x28 checkpoint: no image_size key (hashes as before)")
  fails_with(vit_exp(string.format('hf = "%s/vit", image_size = 30', gold)), { "not a multiple of the patch size 16", "e.g. 32" }, "size not a multiple of the patch")
  fails_with(vit_exp(string.format('hf = "%s/tests/golden/clip_vit_tiny", image_size = 12', src)), { "CLIP vision tower", "ViT checkpoints only" }, "CLIP interpolation")
  ok, runs = expand((vit_exp(string.format('hf = "%s/vit"', gold)):gsub("method = ", 'activations = "bf16", method = ')))
  check(ok and runs[1].config.activations == "bf16", "a ViT's activations in bf16: " .. tostring(runs))
else
  print("Fashion-MNIST not installed: vit{} cases skipped")
end

-- the JSON reader ----------------------------------------------------------------------------
local j = interop.json_decode('{"a":[1,2.5,"x"],"b":{"c":true,"d":null},"e":-3}')
check(j.a[1] == 1 and math.type(j.a[1]) == "integer" and j.a[2] == 2.5 and j.a[3] == "x", "json arrays")
check(j.b.c == true and j.b.d == nil and j.e == -3, "json objects, null left out")
check(not pcall(interop.json_decode, "{"), "invalid JSON is an error")

os.remove(tmp)
return checks.finish()
