-- The experiment DSL: constructors an experiment file calls (experiment, grid, llama, lora,
-- lorasc, cascade, cola, relora, loraplus, report), their validation, and the expansion of
-- an experiment into runs (grid x tasks x seeds), each with its canonical config JSON and
-- hash. Nothing here touches the database or trains: every error is raised before that.
local json = require "lorasc.json"
local sys = require "lorasc.core.sys"
local data = require "lorasc.core.data"
local tasks_mod = require "lorasc.core.tasks"

local M = {}

local GRID = {}   -- metatable tagging grid{} values
local function fail(msg) error("lorasc: " .. msg, 0) end

-- "file:line" of the experiment file's call to a constructor.
local function where(level)
  local info = debug.getinfo(level + 1, "Sl")
  if not info then return "?" end
  local src = info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
  return src .. ":" .. (info.currentline or 0)
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b)
    if type(a) == type(b) and type(a) ~= "table" then return a < b end
    return type(a) < type(b)
  end)
  return ks
end

-- Unknown keys are errors that name the key, where, and the valid keys.
-- A typo inside a multi-line table is reported at the line that holds it: loc is the
-- "file:line" of the call that received the table, and the key is looked for in that file
-- from that line on (the first `key =` wins). Chunks that are not files keep loc.
local function key_loc(loc, key)
  local file, line = loc:match("^(.*):(%d+)$")
  if not file or type(key) ~= "string" then return loc end
  local f = io.open(file, "r")
  if not f then return loc end
  local start, n, found = tonumber(line), 0, nil
  local pattern = "%f[%w_]" .. key:gsub("%p", "%%%0") .. "%s*="
  for text in f:lines() do
    n = n + 1
    if n >= start and text:find(pattern) then
      found = n
      break
    end
    if n > start + 1000 then break end
  end
  f:close()
  return found and (file .. ":" .. found) or loc
end

local function check_keys(t, valid, what, loc)
  if type(t) ~= "table" then fail(string.format("%s: %s must be a table", loc, what)) end
  local set = {}
  for _, k in ipairs(valid) do set[k] = true end
  for _, k in ipairs(sorted_keys(t)) do
    if type(k) ~= "string" or not set[k] then
      local v = {}
      for _, x in ipairs(valid) do v[#v + 1] = x end
      table.sort(v)
      fail(string.format("%s: unknown key '%s' in %s; valid keys: %s", key_loc(loc, k), tostring(k), what,
                         table.concat(v, ", ")))
    end
  end
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return setmetatable(c, getmetatable(t))
end

-- grid { v1, v2, ... }: the values one hyper-parameter takes.
function M.grid(values)
  if type(values) ~= "table" or #values == 0 then
    fail(where(2) .. ": grid needs a non-empty list of values, e.g. grid { 1e-4, 1e-3 }")
  end
  return setmetatable({ values = values, where = where(2) }, GRID)
end
local function is_grid(v) return getmetatable(v) == GRID end

-- Model -----------------------------------------------------------------------------------
local LLAMA_KEYS = { "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "seq_len",
                     "vocab_size", "rope_theta", "norm_eps", "tied", "seed", "pretrain",
                     "checkpoint", "format", "tokenizer" }
local PRETRAIN_KEYS = { "corpus", "steps", "batch", "seq", "lr", "warmup", "schedule",
                        "weight_decay", "seed" }

function M.llama(t)
  local loc = where(2)
  check_keys(t, LLAMA_KEYS, "llama{}", loc)
  if t.pretrain ~= nil then check_keys(t.pretrain, PRETRAIN_KEYS, "llama{ pretrain = {} }", loc) end
  if t.checkpoint and t.pretrain then fail(loc .. ": llama{} takes checkpoint or pretrain, not both") end
  return { kind = "model", arch = "llama", spec = t, where = loc }
end

local VIT_KEYS = { "image_size", "patch_size", "channels", "dim", "n_layers", "n_heads", "mlp_dim",
                   "norm_eps", "seed", "pretrain", "checkpoint", "hf" }
local VIT_PRETRAIN_KEYS = { "task", "steps", "batch", "lr", "warmup", "schedule", "weight_decay",
                            "crop_pad", "flip", "seed" }

function M.vit(t)
  local loc = where(2)
  check_keys(t, VIT_KEYS, "vit{}", loc)
  if t.pretrain ~= nil then check_keys(t.pretrain, VIT_PRETRAIN_KEYS, "vit{ pretrain = {} }", loc) end
  if t.checkpoint and t.pretrain then fail(loc .. ": vit{} takes checkpoint or pretrain, not both") end
  if t.hf ~= nil and (t.checkpoint or t.pretrain) then fail(loc .. ": vit{} takes one of hf, checkpoint or pretrain") end
  return { kind = "model", arch = "vit", spec = t, where = loc }
end

-- Image tasks: "fashion-mnist", "fashion-mnist:5-9", "mnist:0,2,4" (a class subset,
-- relabelled 0..k-1 in the order given).
local IMAGE_SETS = { ["fashion-mnist"] = 10, mnist = 10 }
function M.parse_image_task(task)
  if type(task) ~= "string" then return nil end
  local name, spec = task:match("^([%w%-]+):(.+)$")
  if not name then name = task end
  if not IMAGE_SETS[name] then return nil end
  local classes = {}
  if not spec then
    for c = 0, IMAGE_SETS[name] - 1 do classes[#classes + 1] = c end
  else
    for part in (spec .. ","):gmatch("([^,]*),") do
      local a, b = part:match("^(%d+)%-(%d+)$")
      if a then
        for c = tonumber(a), tonumber(b) do classes[#classes + 1] = c end
      elseif part:match("^%d+$") then
        classes[#classes + 1] = tonumber(part)
      else
        return nil, string.format("task '%s': '%s' is not a class or a range; write classes as \"%s:5-9\" or \"%s:0,2,4\"", task, part, name, name)
      end
    end
  end
  local seen = {}
  for _, c in ipairs(classes) do
    if c >= IMAGE_SETS[name] then return nil, string.format("task '%s': class %d is not in %s (classes 0-%d)", task, c, name, IMAGE_SETS[name] - 1) end
    if seen[c] then return nil, string.format("task '%s': class %d is listed twice", task, c) end
    seen[c] = true
  end
  if #classes < 2 then return nil, string.format("task '%s': an image task needs at least 2 classes", task) end
  return { dataset = name, classes = classes }
end

-- Methods ---------------------------------------------------------------------------------
local COMMON = { "rank", "lora_alpha", "targets", "ratio", "lora_plus_ratio", "dora", "label" }
local METHODS = {
  lora = { keys = {}, defaults = {} },
  loraplus = { keys = {}, defaults = { ratio = 16 }, engine = "lora", label = "lora+" },
  cascade = { keys = { "experts" }, defaults = { experts = "epochs" }, label = "+cascade" },
  lorasc = { keys = { "alpha", "noise", "experts", "every", "slow_merge", "noise_std" },
             defaults = { alpha = 0.8, noise = 1.0, experts = "epochs" } },
  cola = { keys = { "experts" }, defaults = { experts = 2 } },
  relora = { keys = { "every", "rewarmup" }, defaults = { every = 100, rewarmup = 10 } },
}
M.METHODS = METHODS

local function method_ctor(name)
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
for name in pairs(METHODS) do M[name] = method_ctor(name) end

-- Experiments and reports -----------------------------------------------------------------
local EXP_KEYS = { "model", "tasks", "task", "split", "train", "method", "seeds", "select",
                   "eval", "log_every", "save" }
local TRAIN_KEYS = { "epochs", "steps", "batch", "seq", "lr", "schedule", "warmup",
                     "weight_decay", "grad_clip", "min_lr_ratio" }
local IMAGE_TRAIN_KEYS = { "epochs", "steps", "batch", "lr", "schedule", "warmup",
                           "weight_decay", "grad_clip", "min_lr_ratio", "crop_pad", "flip" }
local SPLIT_KEYS = { "train", "val", "test", "max_train", "max_val", "max_test" }
local EVAL_KEYS = { "batch", "max_windows", "corrupt", "corrupt_max", "max_examples", "max_new", "tasks" }
local REPORT_KEYS = { "rows", "cols", "metric", "metrics", "select", "scale", "digits", "title" }

function M.new_registry()
  local reg = { experiments = {}, reports = {}, order = {} }
  function reg.experiment(name)
    local loc = where(2)
    if type(name) ~= "string" or name == "" then fail(loc .. ": experiment needs a name: experiment \"name\" { ... }") end
    return function(t)
      loc = where(2)
      check_keys(t, EXP_KEYS, "experiment \"" .. name .. "\"", loc)
      if reg.experiments[name] then fail(loc .. ": experiment '" .. name .. "' is defined twice") end
      local is_vit = type(t.model) == "table" and t.model.arch == "vit"
      if t.train then check_keys(t.train, is_vit and IMAGE_TRAIN_KEYS or TRAIN_KEYS, "train", loc) end
      if t.split then check_keys(t.split, SPLIT_KEYS, "split", loc) end
      if t.eval then check_keys(t.eval, EVAL_KEYS, "eval", loc) end
      reg.experiments[name] = { name = name, spec = t, where = loc }
      reg.order[#reg.order + 1] = name
    end
  end
  function reg.report(name)
    return function(t)
      local loc = where(2)
      check_keys(t, REPORT_KEYS, "report \"" .. tostring(name) .. "\"", loc)
      reg.reports[name] = { name = name, spec = t, where = loc }
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
    experiment = reg.experiment, report = reg.report, grid = M.grid, llama = M.llama, vit = M.vit,
    math = math, string = string, table = table, ipairs = ipairs, pairs = pairs,
    tostring = tostring, tonumber = tonumber, print = print, os = { getenv = os.getenv },
  }
  for name in pairs(METHODS) do env[name] = M[name] end
  local chunk, perr = load(source, "@" .. path, "t", env)
  if not chunk then fail(perr) end
  local ok, rerr = pcall(chunk)
  if not ok then
    if type(rerr) == "string" and rerr:sub(1, 8) ~= "lorasc: " then rerr = "lorasc: " .. rerr end
    error(rerr, 0)
  end
  if #reg.order == 0 then fail(path .. ": no experiment defined (experiment \"name\" { ... })") end
  return reg, source
end

-- Expansion -------------------------------------------------------------------------------
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

local function num(v, what, loc, cond, msg)
  if type(v) ~= "number" then fail(string.format("%s: %s must be a number, got %s", loc, what, tostring(v))) end
  if cond and not cond(v) then fail(string.format("%s: %s = %s is invalid: %s", loc, what, json.number(v), msg)) end
  return v
end
local function int(v, what, loc, cond, msg)
  num(v, what, loc, cond, msg)
  if math.tointeger(v) == nil then fail(string.format("%s: %s must be an integer, got %s", loc, what, tostring(v))) end
  return math.tointeger(v)
end
local function pos(x) return x > 0 end
local function nonneg(x) return x >= 0 end

-- The IDX files of an image dataset: the data directory, then (Fashion-MNIST) Debian's
-- dataset-fashion-mnist; the error says how to get them.
local function check_image_files(task, name, loc)
  local rel = name .. "/train-images-idx3-ubyte.gz"
  local tried = sys.datadir_path(rel)
  if sys.exists(tried) then return end
  if name == "fashion-mnist" and sys.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") then return end
  if name == "fashion-mnist" then
    fail(string.format("%s: task '%s' needs Fashion-MNIST, not found at %s or /usr/share/datasets/fashion-mnist: install it with `apt-get install dataset-fashion-mnist`, or put the IDX files in $LORASC_DATA/fashion-mnist/", loc, task, tried))
  end
  fail(string.format("%s: task '%s' needs the MNIST IDX files (train/t10k images and labels), not found at %s: get them with `lorasc data fetch mnist` or copy them into $LORASC_DATA/%s/ (LORASC_DATA is the data directory, default data/)", loc, task, tried, name))
end

-- Language tasks (core/data/datasets.h): "sst2", "rte", ..., "gsm8k", "mmlu", "bbh", read from
-- their original files in the data directory. A dataset whose files are absent (SQuAD and
-- DROP are not in the mirror) is "unavailable here", with the fetch command.
local lang_checked = {}
function M.check_lang_task(task, loc, arch)
  if arch == "vit" then fail(string.format("%s: task '%s' is a language task; use model = llama { checkpoint = ..., tokenizer = ... } for it", loc, task)) end
  if lang_checked[task] == nil then
    local ok, err = tasks_mod.check(task)
    lang_checked[task] = ok and true or err
  end
  if lang_checked[task] ~= true then fail(string.format("%s: task '%s' is unavailable here: %s", loc, task, lang_checked[task])) end
  return task
end

-- A file of a language-task model: as given, else in the data directory.
function M.data_file(path)
  if sys.exists(path) then return path end
  if path:sub(1, 1) ~= "/" and sys.exists(sys.datadir_path(path)) then return sys.datadir_path(path) end
end

local function check_lang_model(model, loc)
  if model.arch ~= "llama" or not model.checkpoint or not model.tokenizer then
    fail(loc .. ": language tasks need a pretrained model with its tokenizer: llama { checkpoint = \"llama2c_stories260K/stories260K.bin\", tokenizer = \"llama2c_stories260K/tok512.bin\" }")
  end
  for _, k in ipairs { "checkpoint", "tokenizer" } do
    if not M.data_file(model[k]) then
      fail(string.format("%s: %s '%s' not found (looked in the working directory and in the data directory %s); get it with `lorasc data fetch %s --from DIR` (DIR a mirror such as ../shared/data)",
                         loc, k, model[k], sys.datadir_path(""), model[k]:match("^([^/]+)/") or "NAME"))
    end
  end
end

-- Language tasks' split (example counts, MeZO's sampling) and eval. Alpaca (Table 2) has no
-- metric of its own: the instruction-tuned model is evaluated on eval.tasks (default mmlu and
-- bbh), which enter the config only for experiments that train on alpaca.
local function canon_lang_split_eval(split, ev, loc, has_alpaca)
  for _, k in ipairs { "max_train", "max_val", "max_test" } do
    if split[k] ~= nil then fail(loc .. ": split." .. k .. " is for image tasks; language tasks take counts split = { train = 1000, val = 500, test = 1000 }") end
  end
  for _, k in ipairs { "batch", "max_windows", "corrupt", "corrupt_max" } do
    if ev[k] ~= nil then fail(loc .. ": eval." .. k .. " is not for language tasks; they take eval = { max_examples = 0 (all), max_new = 32 }") end
  end
  local function count(k, def, cond)
    local v = split[k] == nil and def or split[k]
    if type(v) == "number" and math.tointeger(v) == nil then
      fail(string.format("%s: split.%s = %s: language tasks take example counts (MeZO: train = 1000, val = 500, test = 1000), not fractions", loc, k, json.number(v)))
    end
    return int(v, "split." .. k, loc, cond, cond == pos and "must be > 0" or "must be >= 0")
  end
  local eval = { max_examples = int(ev.max_examples or 0, "eval.max_examples", loc, nonneg, "must be >= 0 (0: every example)"),
                 max_new = int(ev.max_new or 32, "eval.max_new", loc, pos, "must be > 0") }
  if ev.tasks ~= nil and not has_alpaca then fail(loc .. ": eval.tasks is for instruction tuning on alpaca (Table 2); other tasks evaluate on their own test split") end
  if has_alpaca then
    local list = ev.tasks or { "mmlu", "bbh" }
    if type(list) ~= "table" or #list == 0 then fail(loc .. ": eval.tasks must be a list of language tasks such as { \"mmlu\", \"bbh\" }") end
    eval.tasks = {}
    for _, t in ipairs(list) do
      if t == "alpaca" or not tasks_mod.parse(t) then fail(string.format("%s: eval.tasks: '%s' is not a task to evaluate alpaca on (valid: mmlu, bbh, or any other language task but alpaca)", loc, tostring(t))) end
      eval.tasks[#eval.tasks + 1] = M.check_lang_task(t, loc, "llama")
    end
  end
  return { train = count("train", 1000, pos), val = count("val", 500, nonneg), test = count("test", 1000, pos) }, eval
end

local function check_task(task, loc, arch)
  if type(task) ~= "string" then fail(loc .. ": a task must be a string such as \"text:apache\"") end
  if tasks_mod.parse(task) then return M.check_lang_task(task, loc, arch) end
  local img, ierr = M.parse_image_task(task)
  if ierr then fail(loc .. ": " .. ierr) end
  if arch == "vit" and not img then
    fail(string.format("%s: task '%s' is not an image task; a vit{} model takes image tasks: fashion-mnist, fashion-mnist:5-9, mnist, mnist:0,2,4", loc, task))
  end
  if img then
    if arch == "llama" then fail(string.format("%s: task '%s' is an image task; use model = vit { ... } for it", loc, task)) end
    check_image_files(task, img.dataset, loc)
    return task
  end
  local files, err = data.resolve(task)
  if not files then
    if not task:find(":", 1, true) then err = err .. "; language tasks (on llama{ checkpoint, tokenizer }): " .. tasks_mod.names() end
    fail(loc .. ": " .. err)
  end
  for file in files:gmatch("[^:]+") do
    if not sys.exists(file) then fail(string.format("%s: task '%s' needs file '%s', which does not exist", loc, task, file)) end
  end
  return task
end

-- The canonical model config (every field explicit) and its cache key.
-- vit{ hf = "dir" }: a Hugging Face ViT / CLIP-vision directory (config.json + safetensors);
-- a relative path is under the data directory. Its head is made for the task's classes, and
-- a 3-channel model is folded to MNIST's grey images (core/formats/vit_hf.h).
local function canon_vit_hf(s, mloc)
  if type(s.hf) ~= "string" or s.hf == "" then fail(mloc .. ": hf must be the path of a Hugging Face ViT or CLIP directory") end
  for _, k in ipairs { "image_size", "patch_size", "channels", "dim", "n_layers", "n_heads", "mlp_dim", "norm_eps", "seed" } do
    if s[k] ~= nil then fail(string.format("%s: vit{ hf = ... } takes its sizes from the checkpoint's config.json; drop %s", mloc, k)) end
  end
  local dir = s.hf:sub(1, 1) == "/" and s.hf or sys.datadir_path(s.hf)
  if not sys.exists(dir .. "/config.json") then
    fail(string.format("%s: hf = '%s': no Hugging Face checkpoint at %s (a directory with config.json and model.safetensors; relative paths are under the data directory $LORASC_DATA, default data/)", mloc, s.hf, dir))
  end
  local ok, c = pcall(require("lorasc.core.vit").hf_config, dir)
  if not ok then fail(mloc .. ": " .. tostring(c)) end
  if c.image_size ~= 28 then
    fail(string.format("%s: %s takes %dx%d images; MNIST and Fashion-MNIST are 28x28 (resizing and position-embedding interpolation are not implemented)", mloc, dir, c.image_size, c.image_size))
  end
  if c.channels ~= 1 and c.channels ~= 3 then
    fail(string.format("%s: %s takes %d-channel images; MNIST and Fashion-MNIST are grey (1 channel; a 3-channel model is folded)", mloc, dir, c.channels))
  end
  return { arch = "vit", hf = dir, channels = 1 }
end

local function canon_vit(s, mloc)
  if s.hf ~= nil then return canon_vit_hf(s, mloc) end
  if s.checkpoint then
    if type(s.checkpoint) ~= "string" then fail(mloc .. ": checkpoint must be a path") end
    return { arch = "vit", checkpoint = s.checkpoint }
  end
  if not s.pretrain then fail(mloc .. ": vit{} needs checkpoint = \"path\" or pretrain = { task = \"fashion-mnist:0-4\", steps = ... }") end
  local size = int(s.image_size or 28, "image_size", mloc, pos, "must be > 0")
  local patch = int(s.patch_size or 7, "patch_size", mloc, pos, "must be > 0")
  if size % patch ~= 0 then fail(string.format("%s: image_size %d is not a multiple of patch_size %d", mloc, size, patch)) end
  if size ~= 28 then fail(mloc .. ": image_size must be 28 for MNIST and Fashion-MNIST (resizing is not implemented)") end
  local dim = int(s.dim or 64, "dim", mloc, pos, "must be > 0")
  local heads = int(s.n_heads or 4, "n_heads", mloc, pos, "must be > 0")
  if dim % heads ~= 0 then fail(mloc .. ": dim must be a multiple of n_heads") end
  local c = {
    arch = "vit", image_size = size, patch_size = patch,
    channels = int(s.channels or 1, "channels", mloc, function(x) return x == 1 end, "MNIST and Fashion-MNIST are grey (1 channel)"),
    dim = dim, n_layers = int(s.n_layers or 2, "n_layers", mloc, pos, "must be > 0"), n_heads = heads,
    mlp_dim = int(s.mlp_dim or 4 * dim, "mlp_dim", mloc, pos, "must be > 0"),
    norm_eps = num(s.norm_eps or 1e-6, "norm_eps", mloc, pos, "must be > 0"),
    seed = int(s.seed or 1, "seed", mloc),
  }
  local p = s.pretrain
  if p.task == nil then fail(mloc .. ": vit{ pretrain = {} } needs task = \"fashion-mnist:0-4\" (an image task)") end
  c.pretrain = {
    task = check_task(p.task, mloc, "vit"),
    steps = int(p.steps or 500, "pretrain.steps", mloc, pos, "must be > 0"),
    batch = int(p.batch or 64, "pretrain.batch", mloc, pos, "must be > 0"),
    lr = num(p.lr or 2e-3, "pretrain.lr", mloc, pos, "must be > 0"),
    warmup = int(p.warmup or 0, "pretrain.warmup", mloc, nonneg, "must be >= 0"),
    schedule = p.schedule or "cosine",
    weight_decay = num(p.weight_decay or 0, "pretrain.weight_decay", mloc, nonneg, "must be >= 0"),
    crop_pad = int(p.crop_pad or 0, "pretrain.crop_pad", mloc, nonneg, "must be >= 0"),
    flip = p.flip == true,
    seed = int(p.seed or 1, "pretrain.seed", mloc),
  }
  return c
end

local function canon_model(m, loc)
  if type(m) ~= "table" or m.kind ~= "model" then fail(loc .. ": model must be llama { ... } or vit { ... }") end
  local s, mloc = m.spec, m.where
  if m.arch == "vit" then return canon_vit(s, mloc) end
  if s.checkpoint then
    if type(s.checkpoint) ~= "string" then fail(mloc .. ": checkpoint must be a path") end
    -- a model `lorasc data fetch` knows (smollm2-135m): its GGUF file, which holds the tokenizer too
    local src = require("lorasc.core.model").source(s.checkpoint)
    local checkpoint = src and src.path or s.checkpoint
    -- .bin: llama2.c; .gguf: GGUF; a directory with config.json: Hugging Face; else lorasc's own format
    local format = s.format or (checkpoint:match("%.bin$") and "llama2c") or (checkpoint:match("%.gguf$") and "gguf")
                   or (M.data_file(checkpoint .. "/config.json") and "hf") or "lorasc"
    if format ~= "lorasc" and format ~= "llama2c" and format ~= "hf" and format ~= "gguf" then
      fail(mloc .. ": format must be \"lorasc\", \"llama2c\", \"hf\" or \"gguf\", got '" .. tostring(format) .. "'")
    end
    for _, k in ipairs { "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "seq_len" } do
      if s[k] ~= nil then fail(mloc .. ": '" .. k .. "' comes from the checkpoint; remove it") end
    end
    if s.tokenizer ~= nil and type(s.tokenizer) ~= "string" then fail(mloc .. ": tokenizer must be a path") end
    return { arch = "llama", checkpoint = checkpoint, format = format,
             tokenizer = s.tokenizer or (format == "gguf" and checkpoint or nil) }
  end
  if not s.pretrain then fail(mloc .. ": llama{} needs checkpoint = \"path\" or pretrain = { corpus = ..., steps = ... }") end
  if s.tokenizer ~= nil then fail(mloc .. ": tokenizer goes with checkpoint (byte-level pretrained models need none)") end
  local dim = int(s.dim or 64, "dim", mloc, pos, "must be > 0")
  local heads = int(s.n_heads or 4, "n_heads", mloc, pos, "must be > 0")
  local c = {
    arch = "llama", dim = dim,
    hidden_dim = int(s.hidden_dim or 4 * dim, "hidden_dim", mloc, pos, "must be > 0"),
    n_layers = int(s.n_layers or 2, "n_layers", mloc, pos, "must be > 0"),
    n_heads = heads,
    n_kv_heads = int(s.n_kv_heads or heads, "n_kv_heads", mloc, pos, "must be > 0"),
    seq_len = int(s.seq_len or 64, "seq_len", mloc, pos, "must be > 0"),
    vocab_size = int(s.vocab_size or 256, "vocab_size", mloc, function(x) return x >= 256 end, "byte-level tasks need >= 256"),
    rope_theta = num(s.rope_theta or 10000, "rope_theta", mloc, pos, "must be > 0"),
    norm_eps = num(s.norm_eps or 1e-5, "norm_eps", mloc, pos, "must be > 0"),
    tied = s.tied == nil and true or not not s.tied,
    seed = int(s.seed or 1, "seed", mloc),
  }
  if dim % heads ~= 0 then fail(mloc .. ": dim must be a multiple of n_heads") end
  if heads % c.n_kv_heads ~= 0 then fail(mloc .. ": n_heads must be a multiple of n_kv_heads") end
  local p = s.pretrain
  c.pretrain = {
    corpus = check_task(p.corpus or "text:gnu", mloc, "llama"),
    steps = int(p.steps or 200, "pretrain.steps", mloc, pos, "must be > 0"),
    batch = int(p.batch or 8, "pretrain.batch", mloc, pos, "must be > 0"),
    seq = int(p.seq or c.seq_len, "pretrain.seq", mloc, function(x) return x > 0 and x <= c.seq_len end, "must be in [1, seq_len]"),
    lr = num(p.lr or 3e-3, "pretrain.lr", mloc, pos, "must be > 0"),
    warmup = int(p.warmup or 0, "pretrain.warmup", mloc, nonneg, "must be >= 0"),
    schedule = p.schedule or "cosine",
    weight_decay = num(p.weight_decay or 0, "pretrain.weight_decay", mloc, nonneg, "must be >= 0"),
    seed = int(p.seed or 1, "pretrain.seed", mloc),
  }
  return c
end

local SCHEDULES = { constant = true, linear = true, cosine = true }

local function canon_train(t, loc, arch, lang)
  t = t or {}
  if arch ~= "vit" and (t.crop_pad ~= nil or t.flip ~= nil) then
    fail(loc .. ": train.crop_pad and train.flip are image augmentations (vit{} models only)")
  end
  if t.epochs ~= nil and t.steps ~= nil then fail(loc .. ": train takes epochs or steps, not both") end
  local c = {
    batch = int(t.batch or 8, "train.batch", loc, pos, "must be > 0"),
    seq = int(t.seq or (lang and 256 or 64), "train.seq", loc, pos, "must be > 0"),
    lr = num(t.lr or 1e-3, "train.lr", loc, pos, "must be > 0"),
    schedule = t.schedule or "linear",
    warmup = int(t.warmup or 0, "train.warmup", loc, nonneg, "must be >= 0"),
    weight_decay = num(t.weight_decay or 0, "train.weight_decay", loc, nonneg, "must be >= 0"),
    grad_clip = num(t.grad_clip or 1.0, "train.grad_clip", loc),
    min_lr_ratio = num(t.min_lr_ratio or 0, "train.min_lr_ratio", loc, function(x) return x >= 0 and x <= 1 end, "must be in [0, 1]"),
  }
  if not SCHEDULES[c.schedule] then
    fail(string.format("%s: unknown schedule '%s'; valid: constant, cosine, linear", loc, tostring(c.schedule)))
  end
  if arch == "vit" then -- images: no sequence length; augmentation instead
    c.seq = nil
    c.crop_pad = int(t.crop_pad or 0, "train.crop_pad", loc, nonneg, "must be >= 0")
    c.flip = t.flip == true
  end
  if t.steps ~= nil then
    c.steps = int(t.steps, "train.steps", loc, lang and nonneg or pos, lang and "must be >= 0 (0: evaluate the base model only)" or "must be > 0")
  else
    c.epochs = int(t.epochs or 1, "train.epochs", loc, pos, "epochs must be > 0")
  end
  return c
end

local TARGET_NAMES = { q = true, k = true, v = true, o = true, gate = true, up = true, down = true }

local function canon_method(m, train, loc)
  if type(m) ~= "table" or m.kind ~= "method" then
    fail(loc .. ": method must be lora{}, loraplus{}, lorasc{}, cascade{}, cola{} or relora{} (or a list of them)")
  end
  local def, s, mloc = METHODS[m.name], m.spec, m.where
  local function get(k) if s[k] ~= nil then return s[k] end return def.defaults[k] end
  local c = {
    name = def.engine or m.name,
    rank = int(s.rank or 8, "rank", mloc, pos, "rank must be > 0"),
    lora_alpha = num(s.lora_alpha or 16, "lora_alpha", mloc, pos, "must be > 0"),
    ratio = num(s.ratio or s.lora_plus_ratio or def.defaults.ratio or 1, "ratio", mloc, pos, "the LoRA+ ratio must be > 0"),
  }
  local targets = s.targets or { "q", "v" }
  if type(targets) ~= "table" then fail(mloc .. ": targets must be a list such as { \"q\", \"v\" }") end
  local tset = {}
  for _, tg in ipairs(targets) do
    local short = type(tg) == "string" and tg:gsub("_proj$", "") or tg
    if not TARGET_NAMES[short] then
      fail(string.format("%s: unknown target '%s'; valid targets: down, gate, k, o, q, up, v", mloc, tostring(tg)))
    end
    tset[short] = true
  end
  c.targets = sorted_keys(tset)
  if s.dora ~= nil and type(s.dora) ~= "boolean" then fail(mloc .. ": dora must be true or false") end
  if s.dora then c.dora = true end -- only when on, so plain-LoRA configs keep their hashes
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
    c.slow_merge = s.slow_merge or "cumulative"
    c.noise_std = s.noise_std or "scaled"
    if c.slow_merge ~= "cumulative" and c.slow_merge ~= "replace" then fail(mloc .. ": slow_merge must be \"cumulative\" or \"replace\"") end
    if c.noise_std ~= "scaled" and c.noise_std ~= "unscaled" then fail(mloc .. ": noise_std must be \"scaled\" or \"unscaled\"") end
  end
  if m.name == "relora" then
    c.every = int(get("every"), "every", mloc, pos, "must be > 0")
    c.rewarmup = int(get("rewarmup"), "rewarmup", mloc, nonneg, "must be >= 0")
  end
  local label = s.label or def.label or m.name
  if def.label == nil and c.ratio ~= 1 and s.label == nil then label = label .. "+" end
  if c.dora and s.label == nil then label = label .. " (DoRA)" end
  return c, label
end

-- A method list { lora{}, lorasc{} } is a grid over methods.
local function methods_of(v)
  if type(v) == "table" and v.kind == nil and not is_grid(v) and #v > 0 then
    return M.grid(v)
  end
  return v
end

-- Expands one experiment into its runs: { config = table, json = string, hash = hex,
-- seed = int, task = string, label = string, model_hash = hex }.
function M.expand_experiment(e)
  local s, loc = e.spec, e.where
  local tasks = s.tasks or s.task
  if tasks == nil then fail(loc .. ": experiment '" .. e.name .. "' needs tasks = { \"text:apache\", ... }") end
  if type(tasks) == "string" then tasks = { tasks } end
  local seeds = s.seeds or { 1 }
  if type(seeds) ~= "table" or #seeds == 0 then fail(loc .. ": seeds must be a non-empty list of integers") end
  for i, x in ipairs(seeds) do seeds[i] = int(x, "seeds[" .. i .. "]", loc) end
  local arch0 = type(s.model) == "table" and s.model.arch or nil
  for _, t in ipairs(tasks) do check_task(t, loc, arch0) end
  local n_lang = 0
  for _, t in ipairs(tasks) do if tasks_mod.parse(t) then n_lang = n_lang + 1 end end
  local lang = n_lang > 0
  if lang and n_lang < #tasks then fail(loc .. ": an experiment takes language tasks (sst2, ...) or text tasks (text:...), not both: their splits differ (counts vs fractions)") end
  if s.model == nil then fail(loc .. ": experiment '" .. e.name .. "' needs model = llama { ... } or vit { ... }") end
  if s.method == nil then fail(loc .. ": experiment '" .. e.name .. "' needs method = lora { ... } (or a list of methods)") end
  local select = s.select or "val.score"
  if type(select) ~= "string" or not select:match("^%w+%.[%w_.]+$") then fail(loc .. ": select must look like \"val.score\"") end
  local split = s.split or {}
  local lang_split, lang_eval
  local has_alpaca = false
  for _, t in ipairs(tasks) do has_alpaca = has_alpaca or t == "alpaca" end
  if lang then lang_split, lang_eval = canon_lang_split_eval(split, s.eval or {}, loc, has_alpaca) end
  local train_frac = lang or num(split.train or 0.8, "split.train", loc, function(x) return x > 0 and x < 1 end, "must be in (0, 1)")
  local val_frac = lang or num(split.val or 0.1, "split.val", loc, function(x) return x > 0 and train_frac + x < 1 end, "must be > 0 with train + val < 1")
  local ev = s.eval or {}
  local eval, split_c
  if lang then
    eval, split_c = lang_eval, lang_split
  elseif arch0 == "vit" then
    if ev.max_windows ~= nil then fail(loc .. ": eval.max_windows is for text tasks; image tasks take eval = { batch, corrupt, corrupt_max }") end
    if split.train ~= nil then fail(loc .. ": split.train is for text tasks; image tasks take the val fraction of the train file (split.val) and optional caps max_train, max_val, max_test") end
    if ev.corrupt ~= nil and type(ev.corrupt) ~= "boolean" then fail(loc .. ": eval.corrupt must be true or false") end
    eval = { batch = int(ev.batch or 128, "eval.batch", loc, pos, "must be > 0"),
             corrupt = ev.corrupt ~= false,
             corrupt_max = int(ev.corrupt_max or 0, "eval.corrupt_max", loc, nonneg, "must be >= 0") }
    split_c = { val = val_frac,
                max_train = int(split.max_train or 0, "split.max_train", loc, nonneg, "must be >= 0"),
                max_val = int(split.max_val or 0, "split.max_val", loc, nonneg, "must be >= 0"),
                max_test = int(split.max_test or 0, "split.max_test", loc, nonneg, "must be >= 0") }
  else
    if ev.corrupt ~= nil or ev.corrupt_max ~= nil then fail(loc .. ": eval.corrupt and eval.corrupt_max are for image tasks (vit{} models)") end
    if split.test ~= nil then fail(loc .. ": split.test is for language tasks (counts); text tasks' test split is what train + val leave") end
    if ev.max_examples ~= nil or ev.max_new ~= nil then fail(loc .. ": eval.max_examples and eval.max_new are for language tasks") end
    if split.max_train or split.max_val or split.max_test then fail(loc .. ": split.max_train/max_val/max_test are for image tasks (vit{} models)") end
    eval = { batch = int(ev.batch or 16, "eval.batch", loc, pos, "must be > 0"),
             max_windows = int(ev.max_windows or 0, "eval.max_windows", loc, nonneg, "must be >= 0") }
    split_c = { train = train_frac, val = val_frac }
  end
  local log_every = int(s.log_every or 10, "log_every", loc, pos, "must be > 0")
  if s.save ~= nil and type(s.save) ~= "boolean" then fail(loc .. ": save must be true or false") end

  local space = { model = s.model, train = s.train or {}, method = methods_of(s.method) }
  local points = expand(space)
  local runs, seen = {}, {}
  for _, task in ipairs(tasks) do
    for _, p in ipairs(points) do
      local model = canon_model(p.model, loc)
      if lang then check_lang_model(model, loc) end
      local train = canon_train(p.train, loc, model.arch, lang)
      local method, label = canon_method(p.method, train, loc)
      if train.seq and train.seq > (model.seq_len or math.huge) then
        fail(string.format("%s: train.seq %d exceeds the model's seq_len %d", loc, train.seq, model.seq_len))
      end
      for _, seed in ipairs(seeds) do
        local config = { task = task, seed = seed, model = model, train = train, method = method,
                         split = split_c, eval = eval }
        local text = json.encode(config)
        local hash = sys.sha256(text)
        if not seen[hash] then
          seen[hash] = true
          runs[#runs + 1] = { config = config, json = text, hash = hash, seed = seed, task = task,
                              label = label, model_hash = sys.sha256(json.encode(model)),
                              log_every = log_every, select = select, save = s.save == true }
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
