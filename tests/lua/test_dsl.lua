-- Lua-level tests of the DSL, hashing and report arithmetic (run by `lorasc lua`).
local dsl = require "lorasc.dsl"
local json = require "lorasc.json"
local report = require "lorasc.report"

local checks = require("checks").new("test_dsl")
local check = checks.check
local function eq(a, b, what) check(a == b, string.format("%s: got %s, expected %s", what, tostring(a), tostring(b))) end
local function near(a, b, what) check(math.abs(a - b) <= 1e-12 + 1e-9 * math.abs(b), string.format("%s: got %.17g, expected %.17g", what, a, b)) end

local tmp = os.tmpname()
local function load_text(text)
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  return pcall(dsl.load_file, tmp)
end
local function expand_text(text)
  local ok, reg = load_text(text)
  if not ok then return false, reg end
  return pcall(dsl.expand_experiment, reg.experiments[reg.order[1]])
end

-- Canonical JSON ------------------------------------------------------------------------
eq(json.encode { b = 1, a = { 0.1, 1e-3, 8.0, true, "x\"y" } }, '{"a":[0.1,0.001,8,true,"x\\"y"],"b":1}', "canonical json")
eq(json.number(1 / 3), "0.3333333333333333", "shortest round-trip")
eq(json.number(3e-4), "0.0003", "3e-4")
eq(json.number(1e-5), "1e-05", "1e-5")

-- Expansion and a fixed hash (a change of canonicalisation changes it: update on purpose) -
local base = [[
experiment "e" {
  model = llama { dim = 16, n_layers = 1, n_heads = 2, seq_len = 32, pretrain = { corpus = "text:gpl3", steps = 4 } },
  tasks = { "text:apache", "text:gpl2" },
  train = { epochs = 2, batch = 4, seq = 32, lr = grid { 1e-3, 3e-3 } },
  method = { lora { rank = grid { 4, 8 } }, lorasc { rank = 4 } },
  seeds = { 1, 2, 3 },
}
]]
local ok, runs = expand_text(base)
check(ok, "expansion: " .. tostring(runs))
if ok then
  eq(#runs, 2 * 2 * 3 * 3, "grid x tasks x seeds")
  local seen = {}
  for _, r in ipairs(runs) do
    check(not seen[r.hash], "hashes unique")
    seen[r.hash] = true
    check(r.json:find('"seed":' .. r.seed, 1, true) ~= nil, "seed inside the config")
  end
  eq(runs[1].json, '{"eval":{"batch":16,"max_windows":0},"method":{"lora_alpha":16,"name":"lora","rank":4,"ratio":1,"targets":["q","v"]},"model":{"arch":"llama","dim":16,"hidden_dim":64,"n_heads":2,"n_kv_heads":2,"n_layers":1,"norm_eps":1e-05,"pretrain":{"batch":8,"corpus":"text:gpl3","lr":0.003,"schedule":"cosine","seed":1,"seq":32,"steps":4,"warmup":0,"weight_decay":0},"rope_theta":10000,"seed":1,"seq_len":32,"tied":true,"vocab_size":256},"seed":1,"split":{"train":0.8,"val":0.1},"task":"text:apache","train":{"batch":4,"epochs":2,"grad_clip":1,"lr":0.001,"min_lr_ratio":0,"schedule":"linear","seq":32,"warmup":0,"weight_decay":0}}', "canonical config of run 1")
  eq(runs[1].hash, "6e186f4e9d11b543f477f4fb0f22923dc1435aa0f41411fec65fcf89acb3aa61", "fixed hash of run 1")
  -- lorasc's experts default to one per epoch
  local last = runs[#runs]
  eq(last.config.method.experts, 2, "lorasc experts = epochs")
  eq(last.label, "lorasc", "label")
end
-- DoRA is a method field: on, it changes the hash and the row label; off, it is not in the config
local okd, druns = expand_text((base:gsub("lorasc { rank = 4 }", "lorasc { rank = 4, dora = true }")))
check(okd, "dora expansion")
if okd then
  check(druns[#druns].config.method.dora == true, "dora in the config")
  check(druns[#druns].label == "lorasc (DoRA)", "dora label: " .. tostring(druns[#druns].label))
  check(druns[#druns].hash ~= runs[#runs].hash, "dora changes the hash")
  check(runs[#runs].config.method.dora == nil, "no dora key when off")
end
-- device is where the runs execute, not what they are: in no config, no hash
local okv, vruns = expand_text((base:gsub("seeds = { 1, 2, 3 },", 'seeds = { 1, 2, 3 }, device = "cuda",')))
check(okv, "device expansion: " .. tostring(vruns))
if okv then
  check(vruns[1].hash == runs[1].hash and not vruns[1].json:find("device", 1, true), "device stays out of the config")
end
-- precision: "bf16" is in the config and changes the hash; "fp32" is the default, left out
-- of the config (the same run as without the key); a grid gives both
local okp, pruns = expand_text((base:gsub("seeds = { 1, 2, 3 },", 'seeds = { 1, 2, 3 }, precision = "bf16",')))
check(okp, "precision expansion: " .. tostring(pruns))
if okp then
  eq(pruns[1].config.precision, "bf16", "bf16 in the config")
  check(pruns[1].json:find('"precision":"bf16"', 1, true) ~= nil, "bf16 in the canonical json")
  check(pruns[1].hash ~= runs[1].hash, "bf16 changes the hash")
end
local okf, fruns = expand_text((base:gsub("seeds = { 1, 2, 3 },", 'seeds = { 1, 2, 3 }, precision = "fp32",')))
check(okf and fruns[1].hash == runs[1].hash and not fruns[1].json:find("precision", 1, true),
      "precision = fp32 is the default run")
local okg, gruns = expand_text((base:gsub("seeds = { 1, 2, 3 },", 'seeds = { 1, 2, 3 }, precision = grid { "fp32", "bf16" },')))
check(okg and #gruns == 2 * #runs, "a grid over precision doubles the runs")
-- activations: like precision, "bf16" in the config and the hash, "fp32" the default run
local oka, aruns = expand_text((base:gsub("seeds = { 1, 2, 3 },", 'seeds = { 1, 2, 3 }, activations = "bf16",')))
check(oka, "activations expansion: " .. tostring(aruns))
if oka then
  eq(aruns[1].config.activations, "bf16", "activations bf16 in the config")
  check(aruns[1].hash ~= runs[1].hash, "activations bf16 changes the hash")
end
local oka32, a32 = expand_text((base:gsub("seeds = { 1, 2, 3 },", 'seeds = { 1, 2, 3 }, activations = "fp32",')))
check(oka32 and a32[1].hash == runs[1].hash and not a32[1].json:find("activations", 1, true),
      "activations = fp32 is the default run")
-- a Hugging Face directory as a checkpoint: its format is detected from config.json
local src = os.getenv("LORASC_SOURCE_ROOT")
if src then
  local okh, hruns = expand_text(string.format([[
experiment "h" {
  model = llama { checkpoint = "%s/tests/golden/hf_tiny/hf" },
  tasks = { "text:apache" }, train = { steps = 2, batch = 2, seq = 8 }, method = lora { rank = 2 },
}
]], src))
  check(okh, "hf checkpoint expansion: " .. tostring(hruns))
  if okh then eq(hruns[1].config.model.format, "hf", "hf format detected") end
end
-- the same values written differently hash the same
local ok2, runs2 = expand_text((base:gsub("1e%-3", "0.001"):gsub("rank = grid { 4, 8 }", "rank = grid { 4.0, 8 }")))
check(ok2 and runs2[1].hash == runs[1].hash, "1e-3 == 0.001 and 4.0 == 4 hash the same")

-- Bad input: each gives its message ------------------------------------------------------
local bad = {
  { base:gsub("epochs = 2", "epoch = 2"), { "unknown key 'epoch' in train", ":4:", "valid keys: batch, diverge, epochs" } }, -- the train line
  { base:gsub("lorasc { rank = 4 }", "lorasc { rank = 4, alpah = 0.5 }"), { "unknown key 'alpah' in lorasc{}", ":5:", "alpha" } },
  { base:gsub("lorasc { rank = 4 }", "lorasc { rank = 4, alpha = 1.5 }"), { "alpha", "must be in [0, 1]", ":5:" } },
  { base:gsub("lorasc { rank = 4 }", "lorasc { rank = 4, noise = -1 }"), { "noise", "must be >= 0" } },
  { base:gsub("rank = grid { 4, 8 }", "rank = grid { 0, 8 }"), { "rank = 0 is invalid", "rank must be > 0" } },
  { base:gsub("epochs = 2", "epochs = 0"), { "train.epochs = 0 is invalid" } },
  { base:gsub('"text:gpl2"', '"sst9"'), { "unknown task 'sst9'", "valid tasks: text:apache" } },
  { base:gsub('"text:gpl2"', '"text:/nonexistent/file.txt"'), { "/nonexistent/file.txt", "does not exist" } },
  { base:gsub("lorasc { rank = 4 }", "dora { rank = 4 }"), { "dora" } },
  { base:gsub("seeds", "sedes"), { "unknown key 'sedes' in experiment \"e\"", "valid keys:" } },
  { base:gsub("seeds = { 1, 2, 3 },", 'seeds = { 1, 2, 3 }, device = "gpu",'), { 'device must be "cpu" or "cuda", got gpu', ":1:" } },
  { base:gsub("n_layers = 1", "n_layer = 1"), { "unknown key 'n_layer' in llama{}", ":2:" } },
  { base:gsub("seeds = { 1, 2, 3 },", 'seeds = { 1, 2, 3 }, precision = "fp16",'), { 'precision must be "fp32" or "bf16", got "fp16"', ":6:" } },
  { base:gsub("lorasc { rank = 4 }", 'lorasc { rank = 4, dora = "yes" }'), { "dora must be true or false", ":5:" } },
  { base:gsub("seeds = { 1, 2, 3 },", 'seeds = { 1, 2, 3 }, activations = "bf61",'), { 'activations must be "fp32" or "bf16", got "bf61"', ":6:" } },
}
for i, case in ipairs(bad) do
  local okb, err = expand_text(case[1])
  check(not okb, "bad case " .. i .. " must fail")
  if not okb then
    check(tostring(err):sub(1, 8) == "lorasc: ", "bad case " .. i .. " is a user error: " .. tostring(err))
    for _, needle in ipairs(case[2]) do
      check(tostring(err):find(needle, 1, true) ~= nil, "bad case " .. i .. ": '" .. needle .. "' in: " .. tostring(err))
    end
  end
end

-- Report arithmetic against hand-computed values -----------------------------------------
-- Two lr values x 3 seeds for lora; lr 1e-3 has the better mean val (0.5 vs 0.4), so its
-- test scores {0.60, 0.62, 0.67} are reported: mean 0.63, sample std sqrt(0.0013) = 0.036056.
local ok3, rruns = expand_text([[
experiment "r" {
  model = llama { dim = 16, n_layers = 1, n_heads = 2, seq_len = 32, pretrain = { steps = 4 } },
  tasks = { "text:apache" },
  train = { steps = 4, batch = 2, seq = 32, lr = grid { 1e-3, 1e-2 } },
  method = lora { rank = 2 },
  seeds = { 1, 2, 3 },
}
]])
check(ok3, "report expansion: " .. tostring(rruns))
if ok3 then
  local vals = { [0.001] = { { 0.4, 0.60 }, { 0.5, 0.62 }, { 0.6, 0.67 } },
                 [0.01] = { { 0.45, 0.9 }, { 0.35, 0.9 }, { 0.4, 0.9 } } }
  local db = {}
  for _, r in ipairs(rruns) do
    local v = vals[r.config.train.lr][r.seed]
    db[#db + 1] = { status = "done", config_hash = r.hash, evals = { val = { score = v[1] }, test = { score = v[2] } } }
  end
  local t = report.compute(rruns, db, {})
  local c = t.cells["lora\0text:apache"]
  check(c ~= nil, "report cell")
  if c then
    near(c.mean, 0.63, "test mean")
    near(c.std, math.sqrt(((0.6 - 0.63) ^ 2 + (0.62 - 0.63) ^ 2 + (0.67 - 0.63) ^ 2) / 2), "sample std")
    near(c.std, 0.036055512754639, "sample std value")
    eq(c.n, 3, "n")
    near(c.select_mean, 0.5, "selected val mean")
    eq(c.selected, "train.lr=0.001", "selected hyper-parameters")
  end
  local md = report.render(t, { format = "markdown", title = "r" })
  check(md:find("| lora | 63.00 ± 3.61 (3) [54.04, 71.96] |", 1, true) ~= nil, "markdown cell: " .. md)
  local csv = report.render(t, { format = "csv", paper = { ["lora\0text:apache"] = 61.5 } })
  check(csv:find("lora,text:apache,63,3.605551275463", 1, true) ~= nil, "csv row: " .. csv)
  check(csv:find(",61.5,1.5", 1, true) ~= nil, "csv paper delta: " .. csv)
  local tex = report.render(t, { format = "latex", paper = { ["lora\0text:apache"] = 61.5 } })
  check(tex:find("63.00 $\\pm$ 3.61 (3) [54.04, 71.96] / 61.50 ($\\Delta$ +1.50)", 1, true) ~= nil, "latex cell: " .. tex)
  -- a failed or missing seed: n drops
  db[1].status = "failed"
  local c2 = report.compute(rruns, db, {}).cells["lora\0text:apache"]
  eq(c2.n, 2, "n without the failed run")
end

os.remove(tmp)
return checks.finish()
