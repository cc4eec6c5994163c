-- GGUF checkpoints in the DSL (issue 13): llama { checkpoint = "smollm2-135m" } names the
-- fetched model's file (format gguf, the same file as tokenizer), a .gguf path is detected as
-- GGUF, and model.load(path, "gguf") reads tests/golden/gguf_llama_tiny.gguf. Run by `lorasc lua`.
local dsl = require "lorasc.dsl"
local model = require "lorasc.core.model"

local checks = require("checks").new("test_gguf_dsl")
local check = checks.check
local function eq(a, b, what) check(a == b, string.format("%s: got %s, expected %s", what, tostring(a), tostring(b))) end

local tmp = os.tmpname()
local function expand_model(model_text)
  local f = assert(io.open(tmp, "w"))
  f:write(string.format([[
experiment "g" {
  model = %s,
  tasks = { "text:apache" }, train = { steps = 2, batch = 2, seq = 8 }, method = lora { rank = 2 },
}
]], model_text))
  f:close()
  local ok, reg = pcall(dsl.load_file, tmp)
  if not ok then return false, reg end
  return pcall(dsl.expand_experiment, reg.experiments[reg.order[1]])
end

local src = model.source("smollm2-135m")
check(src ~= nil, "smollm2-135m is a known model")
eq(src and src.path, "smollm2_135m/SmolLM2-135M-Instruct.Q4_1.gguf", "its file in the data directory")
eq(model.source("smollm2_135m") and model.source("smollm2_135m").name, "smollm2-135m", "found by folder too")
eq(model.source("no-such-model"), nil, "unknown names")

local ok, runs = expand_model('llama { checkpoint = "smollm2-135m" }')
if not ok and tostring(runs):find("not found", 1, true) then
  -- a data directory without the model (a checkout that has not fetched it): the expansion
  -- must say so in one sentence that names the fetch command
  check(tostring(runs):find("lorasc data fetch smollm2_135m", 1, true),
        "a missing smollm2-135m names its fetch command: " .. tostring(runs))
  print("note: smollm2-135m is not in the data directory; its expansion was checked for the missing-file sentence only")
else
  check(ok, "smollm2-135m expansion: " .. tostring(runs))
end
if ok then
  local mc = runs[1].config.model
  eq(mc.format, "gguf", "smollm2-135m format")
  eq(mc.checkpoint, src.path, "smollm2-135m checkpoint")
  eq(mc.tokenizer, src.path, "the GGUF file is the tokenizer too")
end

local root = os.getenv("LORASC_SOURCE_ROOT")
if root then
  local path = root .. "/tests/golden/gguf_llama_tiny.gguf"
  local okp, pruns = expand_model(string.format('llama { checkpoint = "%s", tokenizer = "tok.json" }', path))
  check(okp, ".gguf expansion: " .. tostring(pruns))
  if okp then
    eq(pruns[1].config.model.format, "gguf", ".gguf detected")
    eq(pruns[1].config.model.tokenizer, "tok.json", "an explicit tokenizer wins")
  end
  local m = model.load(path, "gguf")
  local c = m:config()
  eq(c.dim, 16, "tiny gguf dim")
  eq(c.vocab_size, 23, "tiny gguf vocab")
  eq(c.tied, false, "tiny gguf untied")
  m:close()
  local okb, err = pcall(model.load, root .. "/tests/golden/gguf_tiny.gguf", "gguf")
  check(not okb and tostring(err):find("holds a \"lorasc%-test\" model"), "non-llama GGUF refused: " .. tostring(err))
end
os.remove(tmp)
return checks.finish()
