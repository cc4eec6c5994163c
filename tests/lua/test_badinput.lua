-- Bad experiment files (issue 16), each an error before anything is written: one sentence
-- naming the file:line of the value itself (not the experiment's), what was wrong and what
-- would be right. Run by `lorasc lua` (the bounded evaluation needs its allocator).
local dsl = require "lorasc.dsl"
local runner = require "lorasc.runner"
local canon = require "lorasc.canon"
local sys = require "lorasc.core.sys"

local checks = require("checks").new("test_badinput")
local check = checks.check

local dir = os.tmpname()
os.remove(dir)
sys.mkdir(dir)
local file = dir .. "/exp.lua"
-- Loads, expands and plans (runner.plan: lengths against the data) the text as exp.lua;
-- returns ok, the error.
local function run_text(text)
  local f = assert(io.open(file, "w"))
  f:write(text)
  f:close()
  return pcall(function()
    local reg = dsl.load_file(file)
    for _, name in ipairs(reg.order) do runner.plan(dsl.expand_experiment(reg.experiments[name])) end
  end)
end

-- Every line of the base is its own, so a message's line says which value it found.
local base = [[
experiment "e" {
  model = llama { dim = 16, hidden_dim = 32, n_layers = 1, n_heads = 2, seq_len = 32,
                  pretrain = { corpus = "text:gpl3", steps = 4 } },
  tasks = { "text:apache" },
  train = {
    steps = 8,
    batch = 2,
    seq = 32,
    lr = 1e-3,
  },
  method = lorasc {
    rank = 2,
    experts = 2,
  },
}
]]
local ok, err = run_text(base)
check(ok, "the base experiment is valid: " .. tostring(err))

local function sub(a, b) return (base:gsub(a:gsub("%p", "%%%0"), (b:gsub("%%", "%%%%")))) end
local cases = {
  -- NaN and inf in any value: the key and its own line
  { sub("lr = 1e-3", "lr = 0/0"), { ":9: train.lr = nan is not a finite number" } },
  { sub("lr = 1e-3", "lr = math.huge"), { ":9: train.lr = inf is not a finite number" } },
  { sub("rank = 2", "rank = -1/0"), { ":12: rank = -inf is not a finite number" } },
  { sub("steps = 4 }", "steps = 4, lr = 0/0 }"), { ":3: pretrain.lr = nan is not a finite number" } },
  { base .. 'report "e" {\n  scale = 0/0,\n}\n', { ":17: scale = nan is not a finite number" } },
  -- a string hides its quotes no more; a list suggests grid{}
  { sub("lr = 1e-3", 'lr = "1e-3"'), { ':9: train.lr must be a number, got the string "1e-3"; write lr = 1e-3 (without quotes)' } },
  { sub("lr = 1e-3", "lr = { 1e-3, 3e-3 }"), { ":9: train.lr must be a number, got the list { 0.001, 0.003 }; to try several values write lr = grid { 0.001, 0.003 }" } },
  -- a bad value at its own line, not the experiment's
  { sub("batch = 2,", "batch = 0,"), { ":7: train.batch = 0 is invalid" } },
  { sub("rank = 2", "rank = 0"), { ":12: rank = 0 is invalid" } },
  -- a misspelled constructor names the nearest
  { sub("lorasc {", "lorsc {"), { ":11: 'lorsc' is not defined in an experiment file; did you mean lorasc?" } },
  { sub("model = llama", "model = lama"), { ":2: 'lama' is not defined in an experiment file; did you mean llama?" } },
  -- an unknown key or task names the nearest
  { sub("steps = 8", "stpes = 8"), { ":6: unknown key 'stpes' in train", "(did you mean 'steps'?)" } },
  { sub('"text:apache"', '"text:apahce"'), { ":4: unknown task 'text:apahce' (did you mean 'text:apache'?)" } },
  { sub('"text:apache"', '"sst"'), { ":4: unknown task 'sst' (did you mean 'sst2'?)" } },
  -- bounds, with the number in the message
  { sub("steps = 8", "epochs = 1e9"), { ":6: train.epochs = 1000000000 is invalid: lorasc's limit is 10000 epochs" } },
  { sub("steps = 8", "steps = 1e9"), { ":6: train.steps = 1000000000 is invalid: lorasc's limit is 100000000 steps" } },
  { sub("seq_len = 32", "seq_len = 1e8"), { ":2: seq_len = 100000000 is invalid: must be in [1, 1048576]" } },
  { sub("steps = 4 }", "steps = 1e9 }"), { ":3: pretrain.steps = 1000000000 is invalid" } },
  -- silently accepted before
  { sub("lr = 1e-3", "lr = 1e-3, grad_clip = -1"), { ":9: train.grad_clip = -1 is invalid: must be >= 0" } },
  { sub("lr = 1e-3", "lr = 1e-3, warmup = 9"), { "train.warmup = 9 is longer than the run (train.steps = 8)" } },
  { sub("rank = 2", "rank = 17"), { ":12: rank = 17 is larger than the 16 x 16 matrix of target q", "use rank <= 16" } },
  { sub("experts = 2", "experts = 9"), { ":13: 9 experts do not fit in a run of 8 steps (text:apache); use experts <= 8" } },
  { sub("steps = 8", "epochs = 1, warmup = 100000"), { "train.warmup = 100000 is longer than the run", "steps on text:apache" } },
  { sub("experts = 2", "experts = 100000"):gsub("steps = 8", "epochs = 1"), { ":13: 100000 experts do not fit in a run of", "1 epoch x" } },
  { sub("lr = 1e-3", "lr = 1e-3, diverge = 1"), { ":9: train.diverge = 1 is invalid: must be a factor > 1" } },
  { sub("lr = 1e-3", "lr = 1e-3, diverge = true"), { "train.diverge must be a number, got true" } },
  -- a grid too large to expand
  { "local v = {} for i = 1, 400 do v[i] = i * 1e-5 end\n" ..
      sub("lr = 1e-3", "lr = grid(v), weight_decay = grid(v)"):gsub("tasks = {", "seeds = { 1, 2 }, tasks = {"),
    { "expands to 320000 runs (160000 grid points x 1 tasks x 2 seeds)", "lorasc's limit of 100000 runs" } },
  -- an experiment file that never ends, or allocates without end
  { "local x = 0\nwhile true do\n  x = x + 1\nend\n", { ":3: the experiment file ran more than 200000000 Lua instructions" } },
  { "local t = {}\nfor i = 1, 1e9 do\n  t[i] = string.rep('x', 100) .. i\nend\n", { ":3: the experiment file took more than 256 MiB of memory" } },
  { "local s = string.rep('x', 1e9)\n", { ":1: the experiment file took more than 256 MiB of memory" } },
}
for i, case in ipairs(cases) do
  local okb, e = run_text(case[1])
  check(not okb, "case " .. i .. " must fail")
  if not okb then
    e = tostring(e)
    check(e:sub(1, 8) == "lorasc: ", "case " .. i .. " is a user error: " .. e)
    check(not e:find("traceback", 1, true), "case " .. i .. " has no traceback: " .. e)
    for _, needle in ipairs(case[2]) do
      check(e:find(needle, 1, true) ~= nil, "case " .. i .. ": '" .. needle .. "' in: " .. e)
    end
  end
end

-- The evaluation's bounds are lifted afterwards: the harness itself may allocate freely.
local big = string.rep("x", 300 * 1024 * 1024)
check(#big == 300 * 1024 * 1024, "no cap after an experiment file was evaluated")
big = nil
collectgarbage()

-- A case-typo in a checkpoint path names the path that exists, not a fetch command.
sys.mkdir(dir .. "/Models")
local f = assert(io.open(dir .. "/Models/base.ckpt", "w"))
f:write("x")
f:close()
local okc, ec = run_text(string.format([[
experiment "c" {
  model = llama { checkpoint = "%s/models/base.ckpt" },
  tasks = { "text:apache" },
  method = lora {},
}
]], dir))
check(not okc and tostring(ec):find("did you mean '" .. dir .. "/Models/base.ckpt'? (paths are case-sensitive)", 1, true) ~= nil,
      "case-typo checkpoint: " .. tostring(ec))
check(not tostring(ec):find("data fetch", 1, true), "a case typo does not advise a fetch: " .. tostring(ec))

-- canon.nearest: case ignored, at most a third of the letters edited
check(canon.nearest("LORASC", { "lora", "lorasc" }) == "lorasc", "nearest ignores case")
check(canon.nearest("xyz", { "lora", "lorasc" }) == nil, "nothing near")

os.execute("rm -rf '" .. dir .. "'")
return checks.finish()
