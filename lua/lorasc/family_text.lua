-- The text family: next-byte prediction on a text ("text:apache", "text:gnu", ...,
-- "text:PATH"; core/data/textdata.h) with a byte-level Llama. Its canonicalisation (the
-- llama{} model, which the language family shares; positional split fractions; eval) and,
-- for `lorasc run`, the base Llama (loaded, or pretrained once and cached), the data, the
-- engine and the evaluation. The generic run (steps, methods, logging) is runner.lua's.
local sys = require "lorasc.core.sys"
local data = require "lorasc.core.data"
local model_mod = require "lorasc.core.model"
local finetune = require "lorasc.core.finetune"
local tasks_mod = require "lorasc.core.tasks"
local canon = require "lorasc.canon"
local train = require "lorasc.train"
local cache = require "lorasc.cache"
local provenance = require "lorasc.provenance"

local fail, num, int, pos, nonneg = canon.fail, canon.num, canon.int, canon.pos, canon.nonneg

local F = { name = "text", arch = "llama", save_ext = "lsc", cost_unit = "tokens" }

-- train = { ... }: its keys, and how canon_train (dsl.lua) treats this family.
-- (sampling is the language family's, which shares these keys; canon_train refuses it here)
F.train_keys = { "epochs", "steps", "batch", "seq", "lr", "schedule", "warmup",
                 "weight_decay", "grad_clip", "min_lr_ratio", "sampling", "diverge" }
F.train = { seq = 64, augment = false, eval_only = false }

-- Text is the family of every task no other family owns (families.lua asks it last).
function F.owns() return true end

function F.wrong_arch(task)
  return string.format("task '%s' is not an image task; a vit{} model takes image tasks: fashion-mnist, fashion-mnist:5-9, mnist, mnist:0,2,4", task)
end

function F.check_task(task, loc)
  local files, err = data.resolve(task)
  if not files then
    if not task:find(":", 1, true) then err = err .. "; language tasks (on llama{ checkpoint, tokenizer }): " .. tasks_mod.names() end
    local names = { "mnist", "fashion-mnist" }
    for n in (data.tasks() .. ", " .. tasks_mod.names()):gmatch("[%w:%-]+") do
      if n:match("^text:%w") or not n:find(":", 1, true) then names[#names + 1] = n end
    end
    local hint = canon.nearest(task, names)
    if hint then err = err:gsub("^(unknown task '[^']*')", "%1 (did you mean '" .. hint .. "'?)", 1) end
    fail(loc .. ": " .. err)
  end
  for file in files:gmatch("[^:]+") do
    if not sys.exists(file) then fail(string.format("%s: task '%s' needs file '%s', which does not exist", loc, task, file)) end
  end
  return task
end

-- split = { train, val }: positional fractions (test is what they leave); the image family
-- takes split.val the same way.
function F.fractions(split, loc)
  local train_frac = num(split.train or 0.8, "split.train", loc, function(x) return x > 0 and x < 1 end, "must be in (0, 1)")
  local val_frac = num(split.val or 0.1, "split.val", loc, function(x) return x > 0 and train_frac + x < 1 end, "must be > 0 with train + val < 1")
  return train_frac, val_frac
end

function F.canon_split_eval(split, ev, loc)
  local train_frac, val_frac = F.fractions(split, loc)
  if ev.corrupt ~= nil or ev.corrupt_max ~= nil then fail(loc .. ": eval.corrupt and eval.corrupt_max are for image tasks (vit{} models)") end
  if split.test ~= nil then fail(loc .. ": split.test is for language tasks (counts); text tasks' test split is what train + val leave") end
  if ev.max_examples ~= nil or ev.max_new ~= nil then fail(loc .. ": eval.max_examples and eval.max_new are for language tasks") end
  if split.max_train or split.max_val or split.max_test then fail(loc .. ": split.max_train/max_val/max_test are for image tasks (vit{} models)") end
  local eval = { batch = int(ev.batch or 16, "eval.batch", loc, pos, "must be > 0"),
                 max_windows = int(ev.max_windows or 0, "eval.max_windows", loc, nonneg, "must be >= 0") }
  return { train = train_frac, val = val_frac }, eval
end

-- A checkpoint that is not there is an error before anything is written (a case typo
-- names the path that exists).
function F.check_model(model, loc)
  if model.checkpoint and not canon.data_file(model.checkpoint) then
    fail(loc .. ": " .. canon.missing_file("checkpoint", model.checkpoint))
  end
end

-- The canonical llama{} config (every field explicit); its hash keys the base-model cache.
function F.canon_model(m)
  local s, mloc = m.spec, m.where
  if s.checkpoint then
    if type(s.checkpoint) ~= "string" then fail(mloc .. ": checkpoint must be a path") end
    -- a model `lorasc data fetch` knows (smollm2-135m): its GGUF file, which holds the tokenizer too
    local src = require("lorasc.core.model").source(s.checkpoint)
    local checkpoint = src and src.path or s.checkpoint
    -- .bin: llama2.c; .gguf: GGUF; a directory with config.json: Hugging Face; else lorasc's own format
    local format = s.format or (checkpoint:match("%.bin$") and "llama2c") or (checkpoint:match("%.gguf$") and "gguf")
                   or (canon.data_file(checkpoint .. "/config.json") and "hf") or "lorasc"
    if format ~= "lorasc" and format ~= "llama2c" and format ~= "hf" and format ~= "gguf" then
      fail(mloc .. ": format must be \"lorasc\", \"llama2c\", \"hf\" or \"gguf\", got '" .. tostring(format) .. "'")
    end
    for _, k in ipairs { "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "seq_len" } do
      if s[k] ~= nil then fail(mloc .. ": '" .. k .. "' comes from the checkpoint; remove it") end
    end
    if s.tokenizer ~= nil and type(s.tokenizer) ~= "string" then fail(mloc .. ": tokenizer must be a path") end
    -- the tokenizer: named, else the GGUF file itself, else a Hugging Face directory's tokenizer.json
    local tokenizer = s.tokenizer or (format == "gguf" and checkpoint or nil)
    if not tokenizer and format == "hf" and canon.data_file(checkpoint .. "/tokenizer.json") then
      tokenizer = checkpoint .. "/tokenizer.json"
    end
    local c = { arch = "llama", checkpoint = checkpoint, format = format, tokenizer = tokenizer }
    if s.adapter ~= nil then -- a PEFT adapter of this checkpoint (checked here: lorasc.export)
      if type(s.adapter) ~= "string" then fail(mloc .. ": adapter must be the path of a PEFT adapter directory") end
      require("lorasc.export").adapter_info(s.adapter, mloc)
      c.adapter = s.adapter
    end
    return c
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
    seq_len = int(s.seq_len or 64, "seq_len", mloc, function(x) return x > 0 and x <= model_mod.MAX_SEQ_LEN end,
                  string.format("must be in [1, %d] (lorasc's limit)", model_mod.MAX_SEQ_LEN)),
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
    corpus = require("lorasc.families").check_task(p.corpus or "text:gnu", mloc, "llama"),
    steps = int(p.steps or 200, "pretrain.steps", mloc, function(x) return x > 0 and x <= canon.LIMITS.steps end,
                string.format("must be in [1, %d] (lorasc's limit)", canon.LIMITS.steps)),
    batch = int(p.batch or 8, "pretrain.batch", mloc, pos, "must be > 0"),
    seq = int(p.seq or c.seq_len, "pretrain.seq", mloc, function(x) return x > 0 and x <= c.seq_len end, "must be in [1, seq_len]"),
    lr = num(p.lr or 3e-3, "pretrain.lr", mloc, pos, "must be > 0"),
    warmup = int(p.warmup or 0, "pretrain.warmup", mloc, nonneg, "must be >= 0"),
    schedule = p.schedule or "cosine",
    weight_decay = num(p.weight_decay or 0, "pretrain.weight_decay", mloc, nonneg, "must be >= 0"),
    seed = int(p.seed or 1, "pretrain.seed", mloc),
    diverge = canon.diverge(p.diverge, "pretrain.diverge", mloc),
  }
  return c
end

-- The shape (rows, cols) of each LoRA target of a llama{} config whose sizes the config
-- holds (pretrained here; a checkpoint's come from its file, checked when it loads), for the
-- DSL's rank check: core's llama_lora_shapes.
function F.target_shapes(mc)
  if not mc.dim then return nil end
  local kv = mc.n_kv_heads * (mc.dim // mc.n_heads)
  return { q = { mc.dim, mc.dim }, k = { kv, mc.dim }, v = { kv, mc.dim }, o = { mc.dim, mc.dim },
           gate = { mc.hidden_dim, mc.dim }, up = { mc.hidden_dim, mc.dim }, down = { mc.dim, mc.hidden_dim } }
end

-- Running -----------------------------------------------------------------------------------
-- Base models and datasets are cached in the process: loaded once per sweep.
local bases, datasets = {}, {}

local function get_data(task, train_frac, val_frac, min_split)
  local key = table.concat({ task, train_frac, val_frac }, "|")
  if not datasets[key] then datasets[key] = data.load(task, train_frac, val_frac, min_split) end
  return datasets[key]
end

local function pretrain(mc, path, report, beat)
  local p = mc.pretrain
  local m <close> = model_mod.new { dim = mc.dim, hidden_dim = mc.hidden_dim, n_layers = mc.n_layers,
                            n_heads = mc.n_heads, n_kv_heads = mc.n_kv_heads, seq_len = mc.seq_len,
                            vocab_size = mc.vocab_size, rope_theta = mc.rope_theta,
                            norm_eps = mc.norm_eps, tied = mc.tied, seed = mc.seed }
  local corpus = get_data(p.corpus, 0.98, 0.01, p.seq + 1)
  local t <close> = finetune.trainer(m, { total_steps = p.steps, batch = p.batch, seq = p.seq, lr = p.lr,
                                  warmup = p.warmup, schedule = p.schedule,
                                  weight_decay = p.weight_decay, data_seed = p.seed })
  report(string.format("pretraining the base model (%s, %d steps on %s) -> %s", tostring(m), p.steps, p.corpus, path))
  local t0, loss = train.pretrain_steps(p.steps, report, function() beat(); return t:step(corpus) end, p.diverge,
                                        function() return t:results() end)
  t:close()
  train.check_weights(m, "pretraining the base model (it is not cached)")
  cache.save_atomic(m, path)
  m:close()
  return { { "base.pretrain_seconds", sys.now() - t0 }, { "base.pretrain_loss", loss } }
end

-- The files a run reads, for its provenance (provenance.lua): the task's text, and the base
-- model's checkpoint, tokenizer and PEFT adapter or, for a base pretrained here, its corpus.
function F.model_inputs(mc, list)
  if mc.checkpoint then
    list[#list + 1] = { path = canon.data_file(mc.checkpoint), kind = "checkpoint" }
    if mc.tokenizer then list[#list + 1] = { path = canon.data_file(mc.tokenizer), kind = "tokenizer" } end
    if mc.adapter then -- the PEFT adapter the run starts from (a directory: every file of it)
      list[#list + 1] = { path = F.adapter_dir(mc), kind = "adapter" }
    end
  elseif mc.pretrain then
    for file in (data.resolve(mc.pretrain.corpus) or ""):gmatch("[^:]+") do list[#list + 1] = { path = file, kind = "corpus" } end
  end
  return list
end

function F.inputs(run)
  local list = {}
  for file in (data.resolve(run.config.task) or ""):gmatch("[^:]+") do list[#list + 1] = { path = file, kind = "data" } end
  return F.model_inputs(run.config.model, list)
end

-- The cache key of a pretrained base: its canonical config and its corpus's contents.
function F.cache_key(run)
  local parts = { run.model_hash }
  for _, i in ipairs(F.model_inputs(run.config.model, {})) do
    parts[#parts + 1] = (i.path or "?") .. " " .. (provenance.file_sha256(i.path or "") or "missing")
  end
  return sys.sha256(table.concat(parts, "\n"))
end

-- The base model of a run (a Model userdata shared by every run: see F.borrow) and,
-- for a cached one, its path. A run that pretrains it gets run.pretrain_metrics, logged by
-- the runner.
-- A run with precision = "bf16" gets its own base, loaded (or read from the pretraining
-- cache, which is fp32) and converted: its matrices in bf16, fp32 masters made for the
-- targets each run adapts (core/model/llama.h).
function F.base(run, cache_dir, report)
  local mc = run.config.model
  local key = mc.checkpoint and run.model_hash or F.cache_key(run)
  local precision = run.config.precision or "fp32"
  local bkey = precision == "fp32" and key or (key .. " " .. precision)
  if bases[bkey] then return bases[bkey].m, bases[bkey].path end
  local m, path
  if mc.checkpoint then
    local path = canon.data_file(mc.checkpoint)
    if not path then error("lorasc: " .. canon.missing_file("checkpoint", mc.checkpoint), 0) end
    m = model_mod.load(path, mc.format)
  else
    -- a base that diverged in pretraining is not cached, and not pretrained again by this process
    m, path, run.pretrain_metrics = train.pretrain_once(key, function()
      return cache.get(cache_dir, string.format("base-%s.ckpt", key:sub(1, 16)),
        function(p, beat) return pretrain(mc, p, report, beat) end,
        function(p) return model_mod.load(p, "lorasc") end, report)
    end)
  end
  if m:config().vocab_size < 256 then error("the base model's vocabulary (" .. m:config().vocab_size .. ") is smaller than 256 bytes", 0) end
  if precision ~= "fp32" then m:set_precision(precision) end
  bases[bkey] = { m = m, path = path }
  return m, path
end

-- The run's steps per epoch, from its data (loaded once per process): what `lorasc run`
-- checks every run against before it starts (runner.lua). A split too short is an error.
function F.plan(run)
  local c = run.config
  return get_data(c.task, c.split.train, c.split.val, c.train.seq + 1):steps_per_epoch(c.train.batch, c.train.seq)
end

-- The run's data and steps per epoch.
function F.prepare(run)
  local c = run.config
  local d = get_data(c.task, c.split.train, c.split.val, c.train.seq + 1)
  return { data = d, spe = d:steps_per_epoch(c.train.batch, c.train.seq) }
end

-- A run trains on the shared base itself: the matrices its method adapts (which the cascade's
-- merges and noise change) are saved first and written back when the returned snapshot is
-- closed, so every run starts from the same base and no run copies the whole model. A run
-- that evaluates an imported PEFT adapter without training (train.steps = 0) gets it merged
-- in (its targets are the method's: methods.canon takes the adapter's).
function F.borrow(base, ctx, c)
  base:set_activations(c.activations or "fp32") -- per run: the base is shared
  local snap = base:snapshot(c.method.targets)
  if c.model.adapter and c.train.steps == 0 then base:merge_adapter(F.adapter_dir(c.model)) end
  return base, snap
end

-- The directory of the model's PEFT adapter (nil without one).
function F.adapter_dir(mc)
  return mc.adapter and (require("lorasc.export").adapter_info(mc.adapter, "adapter"))
end

function F.finetune(m, ctx, opts, tr, mc)
  opts.seq = tr.seq
  opts.init_adapter = mc and F.adapter_dir(mc) -- a run continues the model's PEFT adapter
  return finetune.new(m, opts)
end

function F.step(f, ctx) return f:step(ctx.data) end

-- Next-byte accuracy ("score") and loss on consecutive windows of one split, as a list of
-- { metric, value [, per-example outcomes] } (the final evaluation's, and eval.every's
-- validation curve: train.lua); the score carries each window's accuracy.
function F.eval_split(run, m, ctx, split)
  local c = run.config
  local loss, acc, per_window = ctx.data:evaluate(m, split, c.eval.batch, c.train.seq, c.eval.max_windows)
  return { { "score", acc, per_window }, { "loss", loss } }
end

-- Next-byte accuracy ("score") and loss on val and test; each test window's accuracy is
-- stored too (the report's paired bootstrap over test examples).
function F.evaluate(store, run, run_id, m, ctx)
  local scores = {}
  for _, split in ipairs { "val", "test" } do
    local list = F.eval_split(run, m, ctx, split)
    for _, e in ipairs(list) do
      store:eval(run_id, split, e[1], e[2])
      if split == "test" and e[3] then store:eval_examples(run_id, split, e[1], e[3]) end
    end
    scores[split] = list[1][2] -- the score
  end
  return scores
end

return F
