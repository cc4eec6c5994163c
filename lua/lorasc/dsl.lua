-- The experiment DSL: the constructors an experiment file calls (experiment, grid, llama,
-- vit, the methods, report), the sandbox that loads a file, and the expansion of an
-- experiment into runs (grid x tasks x seeds), each with its canonical config JSON and
-- hash. What differs between text, language and image tasks is their family's
-- (families.lua); the methods are methods.lua's. Nothing here touches the database or
-- trains: every error is raised before that.
local json = require "lorasc.json"
local sys = require "lorasc.core.sys"
local canon = require "lorasc.canon"
local methods = require "lorasc.methods"
local families = require "lorasc.families"
local export = require "lorasc.export"

local M = {}

local fail, where, check_keys, sorted_keys = canon.fail, canon.where, canon.check_keys, canon.sorted_keys
local num, int, pos, nonneg = canon.num, canon.int, canon.pos, canon.nonneg

local GRID = {}   -- metatable tagging grid{} values

-- grid { v1, v2, ... }: the values one hyper-parameter takes.
function M.grid(values)
  if type(values) ~= "table" or #values == 0 then
    fail(where(2) .. ": grid needs a non-empty list of values, e.g. grid { 1e-4, 1e-3 }")
  end
  return setmetatable({ values = values, where = where(2) }, GRID)
end
local function is_grid(v) return getmetatable(v) == GRID end

-- Models ----------------------------------------------------------------------------------
-- llama{} is canonicalised by the text family (language tasks share it), vit{} by the image
-- family.
local LLAMA_KEYS = { "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "seq_len",
                     "vocab_size", "rope_theta", "norm_eps", "tied", "seed", "pretrain",
                     "checkpoint", "format", "tokenizer", "adapter" }
local PRETRAIN_KEYS = { "corpus", "steps", "batch", "seq", "lr", "warmup", "schedule",
                        "weight_decay", "seed", "diverge" }

function M.llama(t)
  local loc = where(2)
  check_keys(t, LLAMA_KEYS, "llama{}", loc)
  if t.pretrain ~= nil then check_keys(t.pretrain, PRETRAIN_KEYS, "llama{ pretrain = {} }", loc) end
  if t.checkpoint and t.pretrain then fail(loc .. ": llama{} takes checkpoint or pretrain, not both") end
  if t.adapter ~= nil and not t.checkpoint then fail(loc .. ": llama{ adapter = ... } starts from a PEFT adapter of a checkpoint: give checkpoint = the base it was trained on") end
  return { kind = "model", arch = "llama", spec = t, where = loc }
end

local VIT_KEYS = { "image_size", "patch_size", "channels", "dim", "n_layers", "n_heads", "mlp_dim",
                   "norm_eps", "seed", "pretrain", "checkpoint", "hf", "head" }
local VIT_PRETRAIN_KEYS = { "task", "steps", "batch", "lr", "warmup", "schedule", "weight_decay",
                            "crop_pad", "flip", "seed", "diverge" }

function M.vit(t)
  local loc = where(2)
  check_keys(t, VIT_KEYS, "vit{}", loc)
  if t.pretrain ~= nil then check_keys(t.pretrain, VIT_PRETRAIN_KEYS, "vit{ pretrain = {} }", loc) end
  if t.checkpoint and t.pretrain then fail(loc .. ": vit{} takes checkpoint or pretrain, not both") end
  if t.hf ~= nil and (t.checkpoint or t.pretrain) then fail(loc .. ": vit{} takes one of hf, checkpoint or pretrain") end
  return { kind = "model", arch = "vit", spec = t, where = loc }
end

-- The kind of model ("llama", "vit") a model value has, looking through a grid of models,
-- or nil when it is no model. A grid mixing kinds is an error at loc when loc is given.
local function model_arch(v, loc)
  if is_grid(v) then
    local arch
    for _, x in ipairs(v.values) do
      local a = model_arch(x, loc)
      if a and arch and a ~= arch then
        if loc then fail(loc .. ": a grid over models takes models of one kind (all llama{} or all vit{}): their tasks differ") end
        return nil
      end
      arch = arch or a
    end
    return arch
  end
  return type(v) == "table" and v.kind == "model" and v.arch or nil
end

-- Methods ---------------------------------------------------------------------------------
for name in pairs(methods.METHODS) do M[name] = methods.constructor(name) end

-- Experiments and reports -----------------------------------------------------------------
local EXP_KEYS = { "model", "tasks", "task", "split", "train", "method", "seeds", "select",
                   "eval", "log_every", "save", "device", "precision", "activations" }
local SPLIT_KEYS = { "train", "val", "test", "max_train", "max_val", "max_test" }
local EVAL_KEYS = { "batch", "max_windows", "corrupt", "corrupt_max", "shift", "max_examples", "max_new", "tasks", "every" }
local REPORT_KEYS = { "rows", "cols", "metric", "metrics", "select", "scale", "digits", "title", "baseline",
                      "experiment" }
local FIGURE_KEYS = { "experiment", "x", "y", "series", "select", "task", "scale", "logx", "title", "xlabel", "ylabel" }

function M.new_registry()
  local reg = { experiments = {}, reports = {}, report_order = {}, figures = {}, figure_order = {}, order = {} }
  function reg.experiment(name)
    local loc = where(2)
    if type(name) ~= "string" or name == "" then fail(loc .. ": experiment needs a name: experiment \"name\" { ... }") end
    return function(t)
      loc = where(2)
      check_keys(t, EXP_KEYS, "experiment \"" .. name .. "\"", loc)
      if reg.experiments[name] then fail(loc .. ": experiment '" .. name .. "' is defined twice") end
      if t.train then check_keys(t.train, families.of_arch(model_arch(t.model)).train_keys, "train", loc) end
      if t.split then check_keys(t.split, SPLIT_KEYS, "split", loc) end
      if t.eval then check_keys(t.eval, EVAL_KEYS, "eval", loc) end
      -- where the runs execute, not what they are: no part of a run's config or hash
      if t.device ~= nil and t.device ~= "cpu" and t.device ~= "cuda" then
        fail(string.format("%s: device must be \"cpu\" or \"cuda\", got %s", loc, tostring(t.device)))
      end
      reg.experiments[name] = { name = name, spec = t, where = loc }
      reg.order[#reg.order + 1] = name
    end
  end
  function reg.report(name)
    return function(t)
      local loc = where(2)
      check_keys(t, REPORT_KEYS, "report \"" .. tostring(name) .. "\"", loc)
      if t.scale ~= nil then num(t.scale, "scale", loc, pos, "must be > 0 (100: percentages)") end
      if t.digits ~= nil then int(t.digits, "digits", loc, function(x) return x >= 0 and x <= 10 end, "must be in [0, 10]") end
      for _, k in ipairs { "rows", "cols", "metric", "select", "baseline", "title", "experiment" } do
        if t[k] ~= nil and type(t[k]) ~= "string" then
          fail(string.format("%s: report \"%s\": %s must be a string, got %s", canon.key_loc(loc, k), tostring(name), k, canon.show(t[k])))
        end
      end
      if reg.reports[name] then fail(loc .. ": report '" .. tostring(name) .. "' is defined twice") end
      reg.reports[name] = { name = name, spec = t, where = loc, experiment = t.experiment or name }
      reg.report_order[#reg.report_order + 1] = name
    end
  end
  -- figure "name" { x = "method.rank", y = "test.score", series = "method", ... }: drawn by
  -- `lorasc plot FILE --figure name` (plot.lua, which checks the paths against the runs)
  function reg.figure(name)
    local loc = where(2)
    if type(name) ~= "string" or not name:match("^[%w_.-]+$") then
      fail(loc .. ": figure needs a name of letters, digits, '_', '-' or '.' (it names its files): figure \"rank\" { ... }")
    end
    return function(t)
      loc = where(2)
      check_keys(t, FIGURE_KEYS, "figure \"" .. name .. "\"", loc)
      if reg.figures[name] then fail(loc .. ": figure '" .. name .. "' is defined twice") end
      if type(t.x) ~= "string" then fail(canon.key_loc(loc, "x") .. ": figure '" .. name .. "' needs x = the config value on its x axis, e.g. x = \"method.rank\"") end
      for _, k in ipairs { "experiment", "series", "task", "title", "xlabel", "ylabel" } do
        if t[k] ~= nil and type(t[k]) ~= "string" then fail(string.format("%s: figure '%s': %s must be a string, got %s", canon.key_loc(loc, k), name, k, canon.show(t[k]))) end
      end
      for _, k in ipairs { "y", "select" } do
        if t[k] ~= nil and (type(t[k]) ~= "string" or not t[k]:match("^%w+%.[%w_.%-]+$")) then
          fail(string.format("%s: figure '%s': %s must look like \"%s\", got %s", canon.key_loc(loc, k), name, k, k == "y" and "test.score" or "val.score", canon.show(t[k])))
        end
      end
      if t.scale ~= nil then num(t.scale, "scale", loc, pos, "must be > 0 (100: percentages)") end
      if t.logx ~= nil and type(t.logx) ~= "boolean" then fail(canon.key_loc(loc, "logx") .. ": figure '" .. name .. "': logx must be true or false") end
      reg.figures[name] = { name = name, spec = t, where = loc }
      reg.figure_order[#reg.figure_order + 1] = name
    end
  end
  return reg
end

-- Loads an experiment file in a sandbox holding the DSL; returns the registry and source.
function M.load_file(path)
  local f, err = io.open(path, "rb")
  if not f then fail("cannot read experiment file '" .. path .. "': " .. tostring(err)) end
  local source = f:read("a")
  f:close()
  local reg = M.new_registry()
  local env = {
    experiment = reg.experiment, report = reg.report, figure = reg.figure, grid = M.grid, llama = M.llama, vit = M.vit,
    math = math, string = string, table = table, ipairs = ipairs, pairs = pairs,
    tostring = tostring, tonumber = tonumber, print = print, os = { getenv = os.getenv },
  }
  for name in pairs(methods.METHODS) do env[name] = M[name] end
  -- A name the DSL does not define (a misspelled constructor such as lorsc{}) is an error at
  -- its line naming the nearest defined name, not Lua's "attempt to call a nil value".
  setmetatable(env, { __index = function(_, name)
    local names = {}
    for k in pairs(env) do if type(k) == "string" then names[#names + 1] = k end end
    table.sort(names)
    local hint = canon.nearest(name, names)
    fail(string.format("%s: '%s' is not defined in an experiment file%s", where(2), tostring(name),
      hint and string.format("; did you mean %s?", hint) or ("; defined: " .. table.concat(names, ", "))))
  end })
  local chunk, perr = load(source, "@" .. path, "t", env)
  if not chunk then fail(perr) end
  -- The file's evaluation is bounded (canon.LIMITS): an endless loop or a loop that
  -- allocates without end stops with its file:line.
  local ok, rerr = sys.run_limited(chunk, "@" .. path, canon.LIMITS.file_instructions,
                                   canon.LIMITS.file_mib * 1024 * 1024)
  if not ok then
    if type(rerr) == "string" and rerr:sub(1, 8) ~= "lorasc: " then rerr = "lorasc: " .. rerr end
    error(rerr, 0)
  end
  if #reg.order == 0 then fail(path .. ": no experiment defined (experiment \"name\" { ... })") end
  -- a report is the table of the experiment of its name, or of the one its `experiment` names
  -- (several views of one experiment)
  for _, name in ipairs(reg.report_order) do
    local r = reg.reports[name]
    if not reg.experiments[r.experiment] then
      if r.spec.experiment then
        fail(string.format("%s: report '%s': experiment '%s' is not an experiment of this file%s; experiments: %s",
          canon.key_loc(r.where, "experiment"), tostring(name), r.experiment, canon.did_you_mean(r.experiment, reg.order),
          table.concat(reg.order, ", ")))
      end
      fail(string.format("%s: report '%s' names no experiment of this file%s; experiments: %s (a report is the table of the experiment of its name, or of the one its experiment = names)",
        r.where, tostring(name), canon.did_you_mean(name, reg.order), table.concat(reg.order, ", ")))
    end
  end
  return reg, source
end

-- Expansion -------------------------------------------------------------------------------
-- How many values expand(v) gives, counted without expanding (a float: grids can multiply
-- past any integer).
local function count(v)
  if is_grid(v) then
    local n = 0
    for _, x in ipairs(v.values) do n = n + count(x) end
    return n
  end
  if type(v) ~= "table" then return 1 end
  local n = 1.0
  for _, x in pairs(v) do n = n * count(x) end
  return n
end

-- The first non-finite number in a canonical config, as "key.path", or nil (json.encode
-- cannot write nan or inf; every value checked by canon.num is finite already).
local function non_finite(t, prefix)
  for k, v in pairs(t) do
    local key = prefix and (prefix .. "." .. tostring(k)) or tostring(k)
    if type(v) == "number" and not canon.finite(v) then return key, v end
    if type(v) == "table" then
      local bad, x = non_finite(v, key)
      if bad then return bad, x end
    end
  end
end

-- Every concrete value a (possibly grid-holding) value takes, in a fixed order.
local function expand(v)
  if is_grid(v) then
    local out = {}
    for _, x in ipairs(v.values) do
      for _, y in ipairs(expand(x)) do out[#out + 1] = y end
    end
    return out
  end
  if type(v) ~= "table" then return { v } end
  local out = { {} }
  for _, k in ipairs(sorted_keys(v)) do
    local options = expand(v[k])
    local next_out = {}
    for _, partial in ipairs(out) do
      for _, o in ipairs(options) do
        local c = {}
        for kk, vv in pairs(partial) do c[kk] = vv end
        c[k] = o
        next_out[#next_out + 1] = c
      end
    end
    out = next_out
  end
  for i, o in ipairs(out) do out[i] = setmetatable(o, getmetatable(v)) end
  return out
end
M.expand = expand

local SCHEDULES = { constant = true, linear = true, cosine = true }
local SAMPLING = require("lorasc.core.finetune").choices("sampling")

-- The canonical train config; the family says the default seq (none for images: they
-- augment instead) and whether steps = 0 (evaluate the base model only) is allowed.
local function canon_train(t, loc, fam)
  t = t or {}
  local ft = fam.train
  if not ft.augment and (t.crop_pad ~= nil or t.flip ~= nil) then
    fail(loc .. ": train.crop_pad and train.flip are image augmentations (vit{} models only)")
  end
  if t.epochs ~= nil and t.steps ~= nil then fail(loc .. ": train takes epochs or steps, not both") end
  local c = {
    batch = int(t.batch or 8, "train.batch", loc, pos, "must be > 0"),
    seq = int(t.seq or ft.seq or 64, "train.seq", loc, pos, "must be > 0"),
    lr = num(t.lr or 1e-3, "train.lr", loc, pos, "must be > 0"),
    schedule = t.schedule or "linear",
    warmup = int(t.warmup or 0, "train.warmup", loc, nonneg, "must be >= 0"),
    weight_decay = num(t.weight_decay or 0, "train.weight_decay", loc, nonneg, "must be >= 0"),
    grad_clip = num(t.grad_clip or 1.0, "train.grad_clip", loc, nonneg, "must be >= 0 (the largest gradient norm; 0 turns clipping off)"),
    min_lr_ratio = num(t.min_lr_ratio or 0, "train.min_lr_ratio", loc, function(x) return x >= 0 and x <= 1 end, "must be in [0, 1]"),
  }
  if not SCHEDULES[c.schedule] then
    fail(string.format("%s: unknown schedule '%s'; valid: constant, cosine, linear", loc, tostring(c.schedule)))
  end
  -- How a step picks its training examples (core/tasks/task.h): language tasks only; text
  -- tasks draw random windows of a byte stream, image tasks shuffle every epoch already.
  if ft.sampling then
    c.sampling = canon.choice(t.sampling or "epoch", "train.sampling", canon.key_loc(loc, "sampling"), SAMPLING)
  elseif t.sampling ~= nil then
    fail(canon.key_loc(loc, "sampling") .. ": train.sampling is for language tasks (sst2, ...); text tasks draw random windows of the text and image tasks shuffle the images every epoch")
  end
  -- divergence (train.lua): in the config only when not the default, so runs that never
  -- set it keep their hashes
  c.diverge = canon.diverge(t.diverge, "train.diverge", loc)
  if ft.augment then
    c.seq = nil
    c.crop_pad = int(t.crop_pad or 0, "train.crop_pad", loc, nonneg, "must be >= 0")
    c.flip = t.flip == true
  end
  local L = canon.LIMITS
  if t.steps ~= nil then
    c.steps = int(t.steps, "train.steps", loc, ft.eval_only and nonneg or pos, ft.eval_only and "must be >= 0 (0: evaluate the base model only)" or "must be > 0")
    int(c.steps, "train.steps", loc, function(x) return x <= L.steps end, string.format("lorasc's limit is %d steps", L.steps))
  else
    c.epochs = int(t.epochs or 1, "train.epochs", loc, pos, "epochs must be > 0")
    int(c.epochs, "train.epochs", loc, function(x) return x <= L.epochs end, string.format("lorasc's limit is %d epochs", L.epochs))
  end
  -- a warm-up longer than a run given in steps never reaches the learning rate (in epochs,
  -- the run's length is known once its data is: runner.lua checks it there)
  if c.steps and c.steps > 0 and c.warmup > c.steps then
    fail(string.format("%s: train.warmup = %d is longer than the run (train.steps = %d): the learning rate would never reach train.lr; use warmup < steps",
                       canon.key_loc(loc, "train.warmup"), c.warmup, c.steps))
  end
  return c
end

-- The canonical model config, by the experiment's family.
local function canon_model(m, loc, fam)
  if type(m) ~= "table" or m.kind ~= "model" then fail(loc .. ": model must be llama { ... } or vit { ... }") end
  local c = fam.canon_model(m)
  if fam.check_model then fam.check_model(c, loc) end
  return c
end

-- A method list { lora{}, lorasc{} } is a grid over methods.
local function methods_of(v)
  if type(v) == "table" and v.kind == nil and not is_grid(v) and #v > 0 then
    return M.grid(v)
  end
  return v
end

-- Expands one experiment into its runs: { config = table, json = string, hash = hex,
-- seed = int, task = string, label = string, model_hash = hex, family = name, ... }.
-- precision = "fp32" | "bf16": nil (the default, fp32) or "bf16"; anything else an error.
local function canon_precision(v, loc, fam)
  if v == nil or v == "fp32" then return nil end
  if v ~= "bf16" then
    fail(string.format("%s: precision must be \"fp32\" or \"bf16\", got %s", canon.key_loc(loc, "precision"), canon.show(v)))
  end
  if fam.bf16 == false then
    fail(string.format("%s: precision = \"bf16\" is not available for %s experiments (their models run in fp32 only)", canon.key_loc(loc, "precision"), fam.name))
  end
  return v
end

-- activations = "fp32" | "bf16": how a model keeps the activations its backward reads
-- (llama_set_activations, vit_set_activations); nil (fp32, the default) or "bf16".
local function canon_activations(v, loc)
  if v == nil or v == "fp32" then return nil end
  if v ~= "bf16" then
    fail(string.format("%s: activations must be \"fp32\" or \"bf16\", got %s", canon.key_loc(loc, "activations"), canon.show(v)))
  end
  return v
end

function M.expand_experiment(e)
  local s, loc = e.spec, e.where
  local tasks = s.tasks or s.task
  if tasks == nil then fail(loc .. ": experiment '" .. e.name .. "' needs tasks = { \"text:apache\", ... }") end
  if type(tasks) == "string" then tasks = { tasks } end
  local seeds = s.seeds or { 1 }
  if type(seeds) ~= "table" or #seeds == 0 then fail(loc .. ": seeds must be a non-empty list of integers") end
  for i, x in ipairs(seeds) do seeds[i] = int(x, "seeds[" .. i .. "]", loc) end
  local arch0 = model_arch(s.model, loc)
  local n_lang = 0
  local tasks_loc = canon.key_loc(loc, s.tasks and "tasks" or "task")
  for _, t in ipairs(tasks) do
    local _, f = families.check_task(t, tasks_loc, arch0)
    if f == families.language then n_lang = n_lang + 1 end
  end
  if n_lang > 0 and n_lang < #tasks then fail(loc .. ": an experiment takes language tasks (sst2, ...) or text tasks (text:...), not both: their splits differ (counts vs fractions)") end
  -- The experiment's family: language for language tasks, else the model's kind says it
  -- (the tasks were checked above to suit the model).
  local fam = n_lang > 0 and families.language or families.of_arch(arch0)
  if s.model == nil then fail(loc .. ": experiment '" .. e.name .. "' needs model = llama { ... } or vit { ... }") end
  if s.method == nil then fail(loc .. ": experiment '" .. e.name .. "' needs method = lora { ... } (or a list of methods)") end
  local select = s.select or "val.score"
  if type(select) ~= "string" or not select:match("^%w+%.[%w_.%-]+$") then fail(loc .. ": select must look like \"val.score\"") end
  local split_c, eval = fam.canon_split_eval(s.split or {}, s.eval or {}, loc, tasks)
  -- validation curves (train.lua): in the config only when set, so runs without keep their hashes
  if s.eval and s.eval.every ~= nil then
    eval.every = int(s.eval.every, "eval.every", loc, pos, "must be > 0 (evaluate on the validation split every k training steps)")
    if split_c.val == 0 then fail(canon.key_loc(loc, "eval.every") .. ": eval.every needs a validation split to evaluate on; split.val is 0") end
  end
  local log_every = int(s.log_every or 10, "log_every", loc, pos, "must be > 0")
  local save = export.canon_save(s.save, loc)

  -- precision: the frozen base's storage (core/model/precision.h); a grid like any value.
  -- "fp32" is the default and is left out of the config, so the runs of files without the
  -- key, and with precision = "fp32", keep their hashes.
  local space = { model = s.model, train = s.train or {}, method = methods_of(s.method),
                  precision = s.precision, activations = s.activations }
  local n_runs = count(space) * #tasks * #seeds
  if n_runs > canon.LIMITS.runs then
    fail(string.format("%s: experiment '%s' expands to %.0f runs (%.0f grid points x %d tasks x %d seeds), more than lorasc's limit of %d runs per experiment; split it into several experiments or files (each can be sharded with --shard)",
                       loc, e.name, n_runs, count(space), #tasks, #seeds, canon.LIMITS.runs))
  end
  local points = expand(space)
  local runs, seen = {}, {}
  local models = {} -- expand shares a model's table between points: canonicalised once
  for _, task in ipairs(tasks) do
    for _, p in ipairs(points) do
      local mm = models[p.model]
      if not mm then
        local c = canon_model(p.model, loc, fam)
        mm = { config = c, hash = sys.sha256(json.encode(c)) }
        models[p.model] = mm
      end
      local model = mm.config
      if fam.check_task_model then fam.check_task_model(task, model, tasks_loc) end
      local train = canon_train(p.train, loc, fam)
      -- a run that starts from a PEFT adapter trains that adapter: the method takes its shape
      local adapter
      if model.adapter then
        local _, info = export.adapter_info(model.adapter, loc)
        adapter = export.adapter_defaults(info)
      end
      local method, label = methods.canon(p.method, train, loc, adapter)
      -- a rank above min(rows, cols) of an adapted matrix adds parameters, not rank
      local shapes = fam.target_shapes and fam.target_shapes(model)
      for _, tg in ipairs(shapes and method.targets or {}) do
        local sh = shapes[tg]
        if sh and method.rank > math.min(sh[1], sh[2]) then
          local lim = math.min(sh[1], sh[2])
          fail(string.format("%s: rank = %d is larger than the %d x %d matrix of target %s: B·A cannot have a rank above %d; use rank <= %d",
                             canon.key_loc(p.method.where or loc, "rank"), method.rank, sh[1], sh[2], tg, lim, lim))
        end
      end
      if train.seq and train.seq > (model.seq_len or math.huge) then
        fail(string.format("%s: train.seq %d exceeds the model's seq_len %d", loc, train.seq, model.seq_len))
      end
      for _, seed in ipairs(seeds) do
        local config = { task = task, seed = seed, model = model, train = train, method = method,
                         split = split_c, eval = eval, precision = canon_precision(p.precision, loc, fam),
                         activations = canon_activations(p.activations, loc) }
        export.check_save(save, config, loc)
        local bad, x = non_finite(config)
        if bad then fail(string.format("%s: %s = %s is not a finite number", canon.key_loc(loc, bad), bad, canon.show(x))) end
        local text = json.encode(config)
        local hash = sys.sha256(text)
        if not seen[hash] then
          seen[hash] = true
          runs[#runs + 1] = { config = config, json = text, hash = hash, seed = seed, task = task,
                              label = label, model_hash = mm.hash,
                              family = fam.name, log_every = log_every, select = select,
                              save = save, where = loc,
                              method_where = type(p.method) == "table" and p.method.where or loc }
        end
      end
    end
  end
  return runs
end

-- Hyper-parameters that differ between runs (for labels): "method.rank=8 train.lr=0.001".
local function flatten(t, prefix, out)
  for k, v in pairs(t) do
    local key = prefix and (prefix .. "." .. k) or k
    if type(v) == "table" and not (#v > 0) then flatten(v, key, out)
    elseif type(v) == "table" then out[key] = json.encode(v)
    else out[key] = type(v) == "number" and json.number(v) or tostring(v) end
  end
  return out
end
M.flatten = flatten

function M.varying_keys(runs)
  local values = {}
  for _, r in ipairs(runs) do
    for k, v in pairs(flatten(r.config, nil, {})) do
      values[k] = values[k] or {}
      values[k][v] = true
    end
  end
  local keys = {}
  for k, vs in pairs(values) do
    local n = 0
    for _ in pairs(vs) do n = n + 1 end
    if n > 1 and k ~= "seed" and k ~= "task" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

function M.describe(run, keys)
  local flat = flatten(run.config, nil, {})
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(flat[k]) end
  return table.concat(parts, " ")
end

return M
