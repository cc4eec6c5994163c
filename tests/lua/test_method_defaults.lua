-- The methods' defaults have one source, core's cascade_preset (issue 10): the DSL reads
-- them through lorasc.core.finetune.preset, so a canonical config holds exactly core's
-- values; they are checked here once (lorasc's alpha 0.8 and lambda 1 are picked from the
-- paper's grids; ReLoRA's from Guitaricet/relora). An unknown slow_merge / noise_std / reset /
-- sampling is an error listing the valid names, in the DSL (with file:line) and in the binding.
local dsl = require "lorasc.dsl"
local methods = require "lorasc.methods"
local finetune = require "lorasc.core.finetune"
local model_mod = require "lorasc.core.model"

-- Fails at the first wrong value, naming it and both values.
local function check(cond, what)
  if not cond then error("FAIL: " .. what, 2) end
end
local function eq(a, b, what)
  check(a == b and math.type(a) == math.type(b), string.format("%s: got %s (%s), expected %s (%s)", what,
        tostring(a), tostring(math.type(a) or type(a)), tostring(b), tostring(math.type(b) or type(b))))
end

-- core's presets (README "Methods"), as the decimals written there
local want = {
  lora = { alpha = 0.0, noise = 0.0, n_experts = 1, steps_per_expert = 0, rewarmup_steps = 0, min_lr_ratio = 0.0 },
  cascade = { alpha = 0.0, noise = 0.0, n_experts = 1, steps_per_expert = 0, rewarmup_steps = 0, min_lr_ratio = 0.0 },
  lorasc = { alpha = 0.8, noise = 1.0, n_experts = 1, steps_per_expert = 0, rewarmup_steps = 0, min_lr_ratio = 0.0 },
  cola = { alpha = 0.0, noise = 0.0, n_experts = 2, steps_per_expert = 0, rewarmup_steps = 0, min_lr_ratio = 0.0 },
  relora = { alpha = 0.0, noise = 0.0, n_experts = 0, steps_per_expert = 100, rewarmup_steps = 10, min_lr_ratio = 0.1 },
}
local names = finetune.choices("method")
eq(#names, 5, "core's methods")
for _, name in ipairs(names) do
  local p = finetune.preset(name)
  check(want[name] ~= nil, "unexpected core method " .. name)
  for k, v in pairs(want[name] or {}) do eq(p[k], v, name .. "." .. k) end
  eq(p.slow_merge, "cumulative", name .. ".slow_merge")
  eq(p.noise_std, "scaled", name .. ".noise_std")
  eq(p.reset, "adapters", name .. ".reset")
  eq(p.moment_pruning, 0.0, name .. ".moment_pruning")
end
local ok, err = pcall(finetune.preset, "loraSC")
check(not ok and tostring(err):find("known: lora, cascade, lorasc, cola, relora", 1, true), "unknown preset: " .. tostring(err))
eq(table.concat(finetune.choices("slow_merge"), ","), "cumulative,replace", "slow_merge names")
eq(table.concat(finetune.choices("noise_std"), ","), "scaled,unscaled", "noise_std names")
eq(table.concat(finetune.choices("reset"), ","), "adapters,all", "reset names")
eq(table.concat(finetune.choices("sampling"), ","), "epoch,replacement", "sampling names")

-- every DSL method's defaults come from its engine's preset, but for the DSL's own
eq(methods.default("lorasc", "alpha"), 0.8, "lorasc alpha")
eq(methods.default("lorasc", "noise"), 1.0, "lorasc noise")
eq(methods.default("lorasc", "experts"), "epochs", "lorasc experts (the DSL's: one per epoch)")
eq(methods.default("cascade", "experts"), "epochs", "cascade experts")
eq(methods.default("cola", "experts"), 2, "cola experts")
eq(methods.default("relora", "every"), 100, "relora every")
eq(methods.default("relora", "rewarmup"), 10, "relora rewarmup")
eq(methods.default("loraplus", "ratio"), 16, "loraplus ratio")
eq(methods.default("lorasc", "slow_merge"), "cumulative", "lorasc slow_merge")
eq(methods.default("lorasc", "noise_std"), "scaled", "lorasc noise_std")
eq(methods.default("lorasc", "reset"), "adapters", "lorasc reset")
eq(methods.default("relora", "optimizer_magnitude_pruning"), 0.0, "relora optimizer_magnitude_pruning")
eq(methods.default("relora", "min_lr_ratio"), 0.1, "relora min_lr_ratio")

-- ... and reach the canonical config (the pinned hashes hold the rest)
local tmp = os.tmpname()
local function expand(method, train_extra)
  local f = assert(io.open(tmp, "w"))
  f:write(string.format([[
experiment "e" {
  model = llama { dim = 16, n_layers = 1, n_heads = 2, seq_len = 32, pretrain = { corpus = "text:gpl3", steps = 4 } },
  tasks = { "text:apache" },
  train = { epochs = 3, batch = 2, seq = 16%s },
  method = %s,
}
]], train_extra or "", method))
  f:close()
  local okl, reg = pcall(dsl.load_file, tmp)
  if not okl then return false, reg end
  return pcall(dsl.expand_experiment, reg.experiments[reg.order[1]])
end
local okc, runs = expand("{ lorasc {}, cola {}, relora {} }")
check(okc, "expansion: " .. tostring(runs))
do
  local m = runs[1].config.method
  eq(m.alpha, 0.8, "lorasc{} alpha in the config")
  eq(m.noise, 1.0, "lorasc{} noise in the config")
  eq(m.experts, 3, "lorasc{} experts = epochs")
  eq(m.slow_merge, "cumulative", "lorasc{} slow_merge")
  eq(m.noise_std, "scaled", "lorasc{} noise_std")
  check(runs[1].json:find('"alpha":0.8,', 1, true) ~= nil, "alpha is 0.8 in the JSON: " .. runs[1].json)
  eq(runs[2].config.method.experts, 2, "cola{} experts")
  eq(runs[3].config.method.every, 100, "relora{} every")
  eq(runs[3].config.method.rewarmup, 10, "relora{} rewarmup")
  eq(m.reset, "adapters", "lorasc{} reset")
  eq(runs[2].config.method.reset, "adapters", "cola{} reset")
  eq(runs[3].config.method.reset, "adapters", "relora{} reset")
  eq(runs[3].config.method.optimizer_magnitude_pruning, 0.0, "relora{} optimizer_magnitude_pruning")
  eq(runs[3].config.method.min_lr_ratio, 0.1, "relora{} min_lr_ratio")
  eq(runs[1].config.train.sampling, nil, "text tasks have no train.sampling")
end
local okp, pruned = expand('relora { optimizer_magnitude_pruning = 0.9, reset = "all" }')
check(okp, "relora with pruning: " .. tostring(pruned))
eq(pruned[1].config.method.optimizer_magnitude_pruning, 0.9, "relora{} pruning ratio in the config")
eq(pruned[1].config.method.reset, "all", "relora{} reset = all in the config")

-- unknown names: an error at the method's line, listing the valid names
for _, case in ipairs {
  { 'lorasc { slow_merge = "cumulativ" }', "unknown slow_merge 'cumulativ'; valid: cumulative, replace" },
  { 'lorasc { noise_std = "SCALED" }', "unknown noise_std 'SCALED'; valid: scaled, unscaled" },
  { 'lorasc { slow_merge = 1 }', "unknown slow_merge '1'; valid: cumulative, replace" },
  { 'cascade { reset = "everything" }', "unknown reset 'everything'; valid: adapters, all" },
  { 'relora { optimizer_magnitude_pruning = 1 }', "optimizer_magnitude_pruning = 1 is invalid: must be in [0, 1)" },
  { 'relora { every = 4, rewarmup = 1 }', "train.warmup = 6 is longer than relora's first cycle (every = 4)" },
} do
  local okb, e = expand(case[1], case[1]:find("every = 4", 1, true) and ", warmup = 6" or nil)
  check(not okb, case[1] .. " must fail")
  e = tostring(e)
  check(e:find(case[2], 1, true) ~= nil, case[1] .. ": '" .. case[2] .. "' in: " .. e)
  check(e:find(tmp .. ":5: ", 1, true) ~= nil, case[1] .. ": file:line in: " .. e)
end

-- train.sampling belongs to language tasks: refused for text tasks at its line
do
  local okb, e = expand("lora {}", ',\n    sampling = "epoch"')
  e = tostring(e)
  check(not okb and e:find("train.sampling is for language tasks", 1, true) ~= nil, "sampling on a text task: " .. e)
  check(e:find(tmp .. ":5: ", 1, true) ~= nil, "sampling on a text task: file:line in: " .. e)
end

-- the binding: never silently the default
local model <close> = model_mod.new { dim = 16, hidden_dim = 32, n_layers = 1, n_heads = 2, n_kv_heads = 2,
                                      seq_len = 16, vocab_size = 256, rope_theta = 10000, norm_eps = 1e-5,
                                      tied = true, seed = 1 }
for _, case in ipairs {
  { { slow_merge = "replac" }, "unknown slow_merge 'replac'; valid: cumulative, replace" },
  { { noise_std = "unscale" }, "unknown noise_std 'unscale'; valid: scaled, unscaled" },
  { { reset = "adapter" }, "unknown reset 'adapter'; valid: adapters, all" },
  { { sampling = "epochs" }, "unknown sampling 'epochs'; valid: epoch, replacement" },
} do
  local opts = { method = "lorasc", total_steps = 4, batch = 1, seq = 8 }
  for k, v in pairs(case[1]) do opts[k] = v end
  local okf, e = pcall(finetune.new, model, opts)
  check(not okf and tostring(e):find(case[2], 1, true) ~= nil, "finetune.new: '" .. case[2] .. "' in: " .. tostring(e))
end
for _, opts in ipairs { { slow_merge = "replace", noise_std = "unscaled" }, { slow_merge = "cumulative", noise_std = "scaled" } } do
  local o = { method = "lorasc", total_steps = 4, batch = 1, seq = 8, n_experts = 2 }
  for k, v in pairs(opts) do o[k] = v end
  local okf, f = pcall(finetune.new, model, o)
  check(okf, "finetune.new with valid names: " .. tostring(f))
  f:close()
end

os.remove(tmp)
print("test_method_defaults: all passed")
return 0
