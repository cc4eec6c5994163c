-- The fine-tuning methods of the DSL (lora, loraplus, cascade, lorasc, cola, relora): their
-- constructors' keys, their canonical config, and the one translation of a method config
-- into the engine's options (lorasc.core.finetune.new and lorasc.core.vit.finetune take the
-- same table). The methods' defaults are core's (cascade_preset in core/model/cascade.c,
-- read through lorasc.core.finetune.preset); this file holds only what core has no field for.
local finetune = require "lorasc.core.finetune"
local canon = require "lorasc.canon"

local fail, where, check_keys = canon.fail, canon.where, canon.check_keys
local num, int, pos, nonneg = canon.num, canon.int, canon.pos, canon.nonneg

local M = {}

-- Keys every method takes, and the defaults of the adapter itself (not a cascade field).
local COMMON = { "rank", "lora_alpha", "targets", "ratio", "lora_plus_ratio", "dora", "label" }
local RANK, LORA_ALPHA, TARGETS, NO_LORA_PLUS = 8, 16, { "q", "v" }, 1

-- engine: the method core runs (cascade_preset's name) when it differs from the DSL's;
-- label: the report's row name when it differs; defaults: the DSL's own, which core cannot
-- hold: experts = "epochs" (one expert per epoch, resolved against train.epochs; core's
-- preset has one expert) and LoRA+'s ratio 16 (its paper's value).
-- reset: which AdamW state an expert boundary resets ("adapters": A and B only, DoRA's
-- magnitudes and a ViT head continue; "all"); relora's optimizer_magnitude_pruning (0: reset
-- to zero) and min_lr_ratio (the floor of its cosine envelope) are Guitaricet/relora's.
local METHODS = {
  lora = { keys = {} },
  loraplus = { keys = {}, engine = "lora", label = "lora+", defaults = { ratio = 16 } },
  cascade = { keys = { "experts", "reset" }, label = "+cascade", defaults = { experts = "epochs" } },
  lorasc = { keys = { "alpha", "noise", "experts", "every", "slow_merge", "noise_std", "reset" },
             defaults = { experts = "epochs" } },
  cola = { keys = { "experts", "reset" } },
  relora = { keys = { "every", "rewarmup", "reset", "optimizer_magnitude_pruning", "min_lr_ratio" } },
}
M.METHODS = METHODS

-- A DSL key and the field of core's preset that is its default.
local PRESET_FIELD = { alpha = "alpha", noise = "noise", experts = "n_experts",
                       every = "steps_per_expert", rewarmup = "rewarmup_steps",
                       slow_merge = "slow_merge", noise_std = "noise_std", reset = "reset",
                       optimizer_magnitude_pruning = "moment_pruning", min_lr_ratio = "min_lr_ratio" }
for name, def in pairs(METHODS) do
  def.preset = finetune.preset(def.engine or name)
  def.defaults = def.defaults or {}
end
local SLOW_MERGE, NOISE_STD = finetune.choices("slow_merge"), finetune.choices("noise_std")
local RESET = finetune.choices("reset")

-- The default of a method's key: the DSL's own, else core's preset.
function M.default(name, key)
  local def = METHODS[name]
  if def.defaults[key] ~= nil then return def.defaults[key] end
  return PRESET_FIELD[key] and def.preset[PRESET_FIELD[key]]
end

-- The constructor an experiment file calls: lorasc { ... } and so on.
function M.constructor(name)
  return function(t)
    t = t or {}
    local loc = where(2)
    local valid = {}
    for _, k in ipairs(COMMON) do valid[#valid + 1] = k end
    for _, k in ipairs(METHODS[name].keys) do valid[#valid + 1] = k end
    check_keys(t, valid, name .. "{}", loc)
    if t.ratio ~= nil and t.lora_plus_ratio ~= nil then
      fail(loc .. ": give ratio or lora_plus_ratio, not both")
    end
    return { kind = "method", name = name, spec = t, where = loc }
  end
end

local TARGET_NAMES = { q = true, k = true, v = true, o = true, gate = true, up = true, down = true }

-- The canonical method config (every default filled in) and its report label. adapter (may
-- be nil): { rank, lora_alpha, targets, dora } of the PEFT adapter the run continues; the
-- method takes them as defaults and may not set others.
function M.canon(m, train, loc, adapter)
  if type(m) ~= "table" or m.kind ~= "method" then
    fail(loc .. ": method must be lora{}, loraplus{}, lorasc{}, cascade{}, cola{} or relora{} (or a list of them)")
  end
  local def, s, mloc = METHODS[m.name], m.spec, m.where
  local function get(k) if s[k] ~= nil then return s[k] end return M.default(m.name, k) end
  local c = {
    name = def.engine or m.name,
    rank = int(s.rank or RANK, "rank", mloc, pos, "rank must be > 0"),
    lora_alpha = num(s.lora_alpha or LORA_ALPHA, "lora_alpha", mloc, pos, "must be > 0"),
    ratio = num(s.ratio or s.lora_plus_ratio or def.defaults.ratio or NO_LORA_PLUS, "ratio", mloc, pos, "the LoRA+ ratio must be > 0"),
  }
  local targets = s.targets or TARGETS
  if type(targets) ~= "table" then fail(mloc .. ": targets must be a list such as { \"q\", \"v\" }") end
  local tset = {}
  for _, tg in ipairs(targets) do
    local short = type(tg) == "string" and tg:gsub("_proj$", "") or tg
    if not TARGET_NAMES[short] then
      fail(string.format("%s: unknown target '%s'; valid targets: down, gate, k, o, q, up, v", mloc, tostring(tg)))
    end
    tset[short] = true
  end
  c.targets = canon.sorted_keys(tset)
  if s.dora ~= nil and type(s.dora) ~= "boolean" then fail(mloc .. ": dora must be true or false") end
  if s.dora then c.dora = true end -- only when on, so plain-LoRA configs keep their hashes
  if adapter then
    local ts = {}
    for _, t in ipairs(adapter.targets) do ts[t] = true end
    local want = { rank = adapter.rank, lora_alpha = adapter.lora_alpha, targets = table.concat(canon.sorted_keys(ts), ","), dora = adapter.dora }
    local given = { rank = s.rank, lora_alpha = s.lora_alpha, targets = s.targets and table.concat(c.targets, ","),
                    dora = s.dora }
    for _, k in ipairs { "rank", "lora_alpha", "targets", "dora" } do
      if given[k] ~= nil and given[k] ~= want[k] then
        fail(string.format("%s: %s = %s, but the run continues the model's PEFT adapter, whose %s is %s (leave %s out to take the adapter's)",
                           mloc, k, tostring(given[k]), k, tostring(want[k]), k))
      end
    end
    c.rank, c.lora_alpha = adapter.rank, adapter.lora_alpha
    c.targets = canon.sorted_keys(ts)
    c.dora = adapter.dora or nil
  end
  if m.name == "cascade" or m.name == "lorasc" or m.name == "cola" then
    local e = get("experts")
    if m.name == "lorasc" and s.every ~= nil then
      if s.experts ~= nil then fail(mloc .. ": give experts or every, not both") end
      c.every = int(s.every, "every", mloc, pos, "must be > 0")
    elseif e == "epochs" then
      if not train.epochs then fail(mloc .. ": experts defaults to one per epoch; set experts = N when train uses steps") end
      c.experts = train.epochs
    else
      c.experts = int(e, "experts", mloc, pos, "experts must be > 0")
    end
  end
  if m.name == "lorasc" then
    c.alpha = num(get("alpha"), "alpha", mloc, function(x) return x >= 0 and x <= 1 end, "alpha (slow-fast retention) must be in [0, 1]")
    c.noise = num(get("noise"), "noise", mloc, nonneg, "lambda (noise) must be >= 0")
    c.slow_merge = canon.choice(get("slow_merge"), "slow_merge", mloc, SLOW_MERGE)
    c.noise_std = canon.choice(get("noise_std"), "noise_std", mloc, NOISE_STD)
  end
  if m.name == "relora" then
    c.every = int(get("every"), "every", mloc, pos, "must be > 0")
    c.rewarmup = int(get("rewarmup"), "rewarmup", mloc, nonneg, "must be >= 0")
    c.optimizer_magnitude_pruning = num(get("optimizer_magnitude_pruning"), "optimizer_magnitude_pruning", mloc,
      function(x) return x >= 0 and x < 1 end, "must be in [0, 1) (0: reset the moments to zero; ReLoRA suggests 0.9)")
    c.min_lr_ratio = num(get("min_lr_ratio"), "min_lr_ratio", mloc, function(x) return x > 0 and x <= 1 end, "must be in (0, 1]")
    if train.warmup > c.every then
      fail(string.format("%s: train.warmup = %d is longer than relora's first cycle (every = %d): ReLoRA's warm-up must end before the first restart", mloc, train.warmup, c.every))
    end
  end
  if m.name ~= "lora" and m.name ~= "loraplus" then
    c.reset = canon.choice(get("reset"), "reset", mloc, RESET)
  end
  local label = s.label or def.label or m.name
  if def.label == nil and c.ratio ~= 1 and s.label == nil then label = label .. "+" end
  if c.dora and s.label == nil then label = label .. " (DoRA)" end
  return c, label
end

-- The engine's options for a run of `total` steps (`spe` per epoch) with method config mc
-- and train config tr: the method, the adapter, the cascade and the optimiser. The family
-- adds its own (seq for Llamas, crop_pad and flip for ViTs).
function M.engine_options(mc, tr, seed, total, spe)
  local n_experts = mc.experts or 0
  if mc.name == "lora" then n_experts = 1 end
  if n_experts > total then
    error(string.format("%d experts do not fit in %d steps (%d per epoch)", n_experts, total, spe), 0)
  end
  return {
    method = mc.name, rank = mc.rank, lora_alpha = mc.lora_alpha, targets = mc.targets,
    ratio = mc.ratio, dora = mc.dora and 1 or 0, alpha = mc.alpha, noise = mc.noise, n_experts = n_experts,
    steps_per_expert = mc.every or 0, rewarmup_steps = mc.rewarmup,
    slow_merge = mc.slow_merge, noise_std = mc.noise_std, reset = mc.reset,
    optimizer_magnitude_pruning = mc.optimizer_magnitude_pruning, relora_min_lr_ratio = mc.min_lr_ratio,
    total_steps = total, batch = tr.batch, lr = tr.lr, schedule = tr.schedule,
    warmup = tr.warmup, min_lr_ratio = tr.min_lr_ratio, weight_decay = tr.weight_decay,
    grad_clip = tr.grad_clip, seed = seed, data_seed = seed,
  }
end

return M
