-- `lorasc run`: register an experiment's runs, claim each in turn (the store skips done ones
-- and re-claims stale ones), train, log, evaluate, finish. A failing run is marked failed
-- and the sweep goes on. The pretrained base model is a cached checkpoint, not a run: it is
-- keyed by the hash of its config (which every run's config contains), built by the first
-- run that needs it and reused by every later run, process and shard.
local sys = require "lorasc.core.sys"
local model_mod = require "lorasc.core.model"
local finetune = require "lorasc.core.finetune"
local data = require "lorasc.core.data"
local progress = require "lorasc.progress"
local vit_mod = require "lorasc.core.vit"
local images = require "lorasc.core.images"
local dsl = require "lorasc.dsl"
local tasks_mod = require "lorasc.core.tasks"

local M = {}

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Base models and datasets are cached in the process: loading them once per sweep.
local bases, datasets = {}, {}

local function get_data(task, train_frac, val_frac, min_split)
  local key = table.concat({ task, train_frac, val_frac }, "|")
  if not datasets[key] then datasets[key] = data.load(task, train_frac, val_frac, min_split) end
  return datasets[key]
end

local function pretrain(mc, path, report)
  local p = mc.pretrain
  local m = model_mod.new { dim = mc.dim, hidden_dim = mc.hidden_dim, n_layers = mc.n_layers,
                            n_heads = mc.n_heads, n_kv_heads = mc.n_kv_heads, seq_len = mc.seq_len,
                            vocab_size = mc.vocab_size, rope_theta = mc.rope_theta,
                            norm_eps = mc.norm_eps, tied = mc.tied, seed = mc.seed }
  local corpus = get_data(p.corpus, 0.98, 0.01, p.seq + 1)
  local t = finetune.trainer(m, { total_steps = p.steps, batch = p.batch, seq = p.seq, lr = p.lr,
                                  warmup = p.warmup, schedule = p.schedule,
                                  weight_decay = p.weight_decay, data_seed = p.seed })
  report(string.format("pretraining the base model (%s, %d steps on %s) -> %s", tostring(m), p.steps, p.corpus, path))
  local t0, loss = sys.now(), 0
  for step = 1, p.steps do
    loss = t:step(corpus)
    if step % math.max(1, p.steps // 5) == 0 then
      report(string.format("  pretrain step %d/%d loss %.4f (%.1fs)", step, p.steps, loss, sys.now() - t0))
    end
  end
  t:close()
  -- Concurrent processes may pretrain the same base: each writes its own file, then renames
  -- it into place atomically (identical contents: pretraining is deterministic).
  local tmp = path .. "." .. sys.getpid()
  m:save(tmp)
  local ok, err = os.rename(tmp, path)
  if not ok then error("cannot move the pretrained checkpoint into place: " .. tostring(err), 0) end
  m:close()
  return sys.now() - t0, loss
end

-- The base model of a run (a Model userdata shared by every run: clone before training).
local function get_base(run, cache_dir, report)
  local mc = run.config.model
  if bases[run.model_hash] then return bases[run.model_hash] end
  local m
  if mc.checkpoint then
    local path = mc.checkpoint
    if not sys.exists(path) and path:sub(1, 1) ~= "/" then
      local in_data = sys.datadir_path(path)
      if sys.exists(in_data) then path = in_data end
    end
    if not sys.exists(path) then
      error(string.format("checkpoint '%s' not found (looked in the working directory and in the data directory %s)",
                          mc.checkpoint, sys.datadir_path("")), 0)
    end
    m = model_mod.load(path, mc.format)
  else
    sys.mkdir(cache_dir)
    local path = string.format("%s/base-%s.ckpt", cache_dir, run.model_hash:sub(1, 16))
    if not sys.exists(path) then
      local seconds, loss = pretrain(mc, path, report)
      run.pretrain_seconds, run.pretrain_loss = seconds, loss
    end
    m = model_mod.load(path, "lorasc")
  end
  if m:config().vocab_size < 256 then error("the base model's vocabulary (" .. m:config().vocab_size .. ") is smaller than 256 bytes", 0) end
  bases[run.model_hash] = m
  return m
end

-- Image tasks ---------------------------------------------------------------------------
local image_sets = {}
local function get_images(task, split)
  split = split or { val = 0.1 }
  local key = table.concat({ task, split.val, split.max_train or 0, split.max_val or 0, split.max_test or 0 }, "|")
  if not image_sets[key] then
    local t = assert(dsl.parse_image_task(task))
    image_sets[key] = images.load(t.dataset, t.classes, { val = split.val, max_train = split.max_train,
                                                          max_val = split.max_val, max_test = split.max_test })
  end
  return image_sets[key]
end

local function pretrain_vit(mc, path, report)
  local p = mc.pretrain
  local d = get_images(p.task)
  local m = vit_mod.new { image_size = mc.image_size, patch_size = mc.patch_size, channels = mc.channels,
                          dim = mc.dim, n_layers = mc.n_layers, n_heads = mc.n_heads, mlp_dim = mc.mlp_dim,
                          norm_eps = mc.norm_eps, n_classes = d:info().n_classes, seed = mc.seed }
  local t = vit_mod.trainer(m, d, { total_steps = p.steps, batch = p.batch, lr = p.lr, warmup = p.warmup,
                                    schedule = p.schedule, weight_decay = p.weight_decay,
                                    crop_pad = p.crop_pad, flip = p.flip and 1 or 0, data_seed = p.seed })
  report(string.format("pretraining the base ViT (%s, %d steps on %s) -> %s", tostring(m), p.steps, p.task, path))
  local t0, loss = sys.now(), 0
  for step = 1, p.steps do
    loss = t:step()
    if step % math.max(1, p.steps // 5) == 0 then
      report(string.format("  pretrain step %d/%d loss %.4f (%.1fs)", step, p.steps, loss, sys.now() - t0))
    end
  end
  t:close()
  local acc = d:evaluate(m, "val", 256)
  report(string.format("  pretrained: val accuracy %.4f on %s", acc, p.task))
  local tmp = path .. "." .. sys.getpid()
  m:save(tmp)
  local ok, err = os.rename(tmp, path)
  if not ok then error("cannot move the pretrained checkpoint into place: " .. tostring(err), 0) end
  m:close()
  return sys.now() - t0, loss, acc
end

local function get_vit_base(run, cache_dir, report)
  local mc = run.config.model
  if bases[run.model_hash] then return bases[run.model_hash] end
  if mc.hf then -- a Hugging Face ViT / CLIP directory; the head is sized for this run's task
    local t = assert(dsl.parse_image_task(run.config.task))
    report(string.format("loading the Hugging Face ViT in %s", mc.hf))
    bases[run.model_hash] = vit_mod.load_hf(mc.hf, { n_classes = #t.classes, channels = mc.channels })
    return bases[run.model_hash]
  end
  local path = mc.checkpoint
  if path then
    if not sys.exists(path) then error(string.format("ViT checkpoint '%s' not found", path), 0) end
  else
    sys.mkdir(cache_dir)
    path = string.format("%s/vit-%s.ckpt", cache_dir, run.model_hash:sub(1, 16))
    if not sys.exists(path) then
      run.pretrain_seconds, run.pretrain_loss, run.pretrain_acc = pretrain_vit(mc, path, report)
    end
  end
  bases[run.model_hash] = vit_mod.load(path)
  return bases[run.model_hash]
end

-- save = true: the trained model (the learned update merged in) goes to
-- <db dir>/runs/<hash>.<ext>, hashed into the run's artifacts.
local function save_model(store, run, run_id, m, opts, ext)
  local dir = dirname(opts.db) .. "/runs"
  sys.mkdir(dir)
  local path = string.format("%s/%s.%s", dir, run.hash:sub(1, 16), ext)
  m:save(path)
  store:artifact(run_id, path, "model")
end

-- The training loop shared by every model and task: one Lua call per step (step() returns
-- loss, grad_norm, lr and the expert-boundary event or nil), train.loss / lr / grad_norm every
-- log_every steps, boundary events as metrics, the progress bar, and a flush (which also
-- refreshes the heartbeat) at least every 10 s.
local function train_loop(store, run, run_id, prog, total, step)
  local delay = tonumber(os.getenv("LORASC_TEST_STEP_DELAY") or "")
  local last_flush = sys.now()
  for i = 1, total do
    local loss, gnorm, lr, ev = step()
    if loss ~= loss then error(string.format("the training loss is NaN at step %d", i), 0) end
    if i % run.log_every == 0 or i == 1 or i == total then
      store:metric(run_id, i, "train.loss", loss)
      store:metric(run_id, i, "lr", lr)
      store:metric(run_id, i, "grad_norm", gnorm)
    end
    if ev then
      store:metric(run_id, ev.step, "expert.end", ev.expert)
      store:metric(run_id, ev.step, "expert.merged_norm", ev.merged_norm)
      store:metric(run_id, ev.step, "expert.noise_std_mean", ev.noise_std_mean)
      store:metric(run_id, ev.step, "expert.boundary_seconds", ev.boundary_seconds)
    end
    prog:step(i, loss)
    if delay then sys.sleep(delay) end
    if sys.now() - last_flush > 10 then
      store:flush()
      last_flush = sys.now()
    end
  end
end

local function train_one_vit(store, run, run_id, prog, index, opts)
  local c = run.config
  local tr, mc = c.train, c.method
  local base = get_vit_base(run, dirname(opts.db) .. "/cache", function(msg) prog:message(msg) end)
  if run.pretrain_seconds then
    store:metric(run_id, 0, "base.pretrain_seconds", run.pretrain_seconds)
    store:metric(run_id, 0, "base.pretrain_loss", run.pretrain_loss)
    store:metric(run_id, 0, "base.pretrain_val_acc", run.pretrain_acc)
  end
  local d = get_images(c.task, c.split)
  local info = d:info()
  local spe = math.max(1, info.train // tr.batch)
  local total = tr.steps or tr.epochs * spe
  local n_experts = mc.experts or 0
  if mc.name == "lora" then n_experts = 1 end
  if n_experts > total then
    error(string.format("%d experts do not fit in %d steps (%d per epoch)", n_experts, total, spe), 0)
  end
  local m <close> = base:clone(info.n_classes, c.seed)
  local f <close> = vit_mod.finetune(m, d, {
    method = mc.name, rank = mc.rank, lora_alpha = mc.lora_alpha, targets = mc.targets,
    ratio = mc.ratio, dora = mc.dora and 1 or 0, alpha = mc.alpha, noise = mc.noise, n_experts = n_experts,
    steps_per_expert = mc.every or 0, rewarmup_steps = mc.rewarmup,
    slow_merge = mc.slow_merge, noise_std = mc.noise_std,
    total_steps = total, batch = tr.batch, lr = tr.lr, schedule = tr.schedule,
    warmup = tr.warmup, min_lr_ratio = tr.min_lr_ratio, weight_decay = tr.weight_decay,
    grad_clip = tr.grad_clip, crop_pad = tr.crop_pad, flip = tr.flip and 1 or 0,
    seed = c.seed, data_seed = c.seed })
  prog:run_start(index, string.format("%s %s seed %d", c.task, run.label, c.seed), total, spe)
  train_loop(store, run, run_id, prog, total, function() return f:step() end)
  f:close()
  local scores = {}
  for _, split in ipairs { "val", "test" } do
    local acc, loss = d:evaluate(m, split, c.eval.batch)
    store:eval(run_id, split, "score", acc)
    store:eval(run_id, split, "loss", loss)
    scores[split] = acc
  end
  if c.eval.corrupt then
    -- ImageNet-C's protocol: per corruption, the accuracy averaged over the five severities;
    -- then the mean over corruptions. The corrupted images are the same for every run
    -- (seed 1, keyed by each test image's position).
    local total_acc, names = 0, images.corruptions()
    local cap = c.eval.corrupt_max > 0 and c.eval.corrupt_max or nil
    local dc = cap and get_images(c.task, { val = c.split.val, max_train = c.split.max_train,
                                            max_val = c.split.max_val, max_test = math.min(cap, c.split.max_test > 0 and c.split.max_test or cap) }) or d
    for _, name in ipairs(names) do
      local sum = 0
      for sev = 1, 5 do sum = sum + dc:evaluate(m, "test", c.eval.batch, name, sev, 1) end
      store:eval(run_id, "test", "corrupt." .. name, sum / 5)
      total_acc = total_acc + sum / 5
      store:flush()
    end
    store:eval(run_id, "test", "corrupt.mean", total_acc / #names)
    scores.corrupt = total_acc / #names
  end
  if run.save then save_model(store, run, run_id, m, opts, "ckpt") end
  return scores
end

-- Language tasks ------------------------------------------------------------------------
-- MeZO-sampled datasets (keyed by task, sizes and seed) and tokenizers, cached per process.
local lang_sets, tokenizers = {}, {}
local function get_lang(task, split, seed)
  local key = table.concat({ task, split.train, split.val, split.test, seed }, "|")
  if not lang_sets[key] then lang_sets[key] = tasks_mod.load(task, split, seed) end
  return lang_sets[key]
end

local function get_tokenizer(path)
  local file = dsl.data_file(path)
  if not file then error(string.format("tokenizer '%s' not found (looked in the working directory and in the data directory %s); get it with `lorasc data fetch`", path, sys.datadir_path("")), 0) end
  if not tokenizers[file] then tokenizers[file] = tasks_mod.tokenizer(file) end
  return tokenizers[file]
end

local function train_one_lang(store, run, run_id, prog, index, opts)
  local c = run.config
  local tr, mc = c.train, c.method
  local base = get_base(run, dirname(opts.db) .. "/cache", function(msg) prog:message(msg) end)
  local tok = get_tokenizer(c.model.tokenizer)
  if tok:vocab_size() > base:config().vocab_size then
    error(string.format("the tokenizer has %d pieces, more than the model's vocabulary (%d)", tok:vocab_size(), base:config().vocab_size), 0)
  end
  local d = get_lang(c.task, c.split, c.seed)
  local info = d:info()
  local n_train, n_val, n_test = d:sizes()
  if info.note ~= "" then prog:message(info.note) end
  local spe = math.max(1, (n_train + tr.batch - 1) // tr.batch)
  local total = tr.steps or tr.epochs * spe
  local m <close> = base:clone()
  if total > 0 then
    local n_experts = mc.experts or 0
    if mc.name == "lora" then n_experts = 1 end
    if n_experts > total then
      error(string.format("%d experts do not fit in %d steps (%d per epoch)", n_experts, total, spe), 0)
    end
    local f <close> = finetune.new(m, {
      method = mc.name, rank = mc.rank, lora_alpha = mc.lora_alpha, targets = mc.targets,
      ratio = mc.ratio, dora = mc.dora and 1 or 0, alpha = mc.alpha, noise = mc.noise, n_experts = n_experts,
      steps_per_expert = mc.every or 0, rewarmup_steps = mc.rewarmup,
      slow_merge = mc.slow_merge, noise_std = mc.noise_std,
      total_steps = total, batch = tr.batch, seq = tr.seq, lr = tr.lr, schedule = tr.schedule,
      warmup = tr.warmup, min_lr_ratio = tr.min_lr_ratio, weight_decay = tr.weight_decay,
      grad_clip = tr.grad_clip, seed = c.seed, data_seed = c.seed })
    prog:run_start(index, string.format("%s %s seed %d", c.task, run.label, c.seed), total, spe)
    train_loop(store, run, run_id, prog, total, function() return f:step(d, tok) end)
    f:close() -- the learned update is merged into m
  else
    prog:run_start(index, string.format("%s (evaluation only) seed %d", c.task, c.seed), 1, 1)
  end
  -- val and test with the task's metric, beside the majority-class baseline; "subset" = 1
  -- marks a dataset that holds only part of the original data (not the paper's protocol).
  local scores = {}
  if c.eval.tasks then
    -- Table 2: the instruction-tuned model on other tasks (alpaca has no metric of its own).
    -- Each task's numbers are logged as "<task>.score" etc.; "score" is their mean.
    for _, split in ipairs { "val", "test" } do
      local sum, count = 0, 0
      for _, et in ipairs(c.eval.tasks) do
        local ed = get_lang(et, c.split, c.seed)
        local _, ev_n_val, ev_n_test = ed:sizes()
        if (split == "val" and ev_n_val or ev_n_test) > 0 then
          local s = ed:evaluate(m, tok, split, c.eval.max_examples, c.eval.max_new)
          for _, k in ipairs { "score", "f1", "em", "majority", "n" } do store:eval(run_id, split, et .. "." .. k, s[k]) end
          sum, count = sum + s.score, count + 1
        end
      end
      scores[split] = count > 0 and sum / count or 0 / 0
      if count > 0 then store:eval(run_id, split, "score", scores[split]) end
      store:eval(run_id, split, "subset", info.subset and 1 or 0)
      store:flush()
    end
  else
    for _, split in ipairs { "val", "test" } do
      local n = split == "val" and n_val or n_test
      if n > 0 then
        local s = d:evaluate(m, tok, split, c.eval.max_examples, c.eval.max_new)
        for _, k in ipairs { "score", "f1", "em", "majority", "n" } do store:eval(run_id, split, k, s[k]) end
        store:eval(run_id, split, "subset", info.subset and 1 or 0)
        scores[split] = s.score
        store:flush()
      else
        scores[split] = 0 / 0
      end
    end
  end
  store:metric(run_id, 0, "data.train_n", n_train)
  store:metric(run_id, 0, "data.subset", info.subset and 1 or 0)
  if run.save then save_model(store, run, run_id, m, opts, "lsc") end
  return scores
end

local function train_one(store, run, run_id, prog, index, opts)
  local c = run.config
  if c.model.arch == "vit" then return train_one_vit(store, run, run_id, prog, index, opts) end
  if tasks_mod.parse(c.task) then return train_one_lang(store, run, run_id, prog, index, opts) end
  local tr, mc = c.train, c.method
  local cache_dir = dirname(opts.db) .. "/cache"
  local base = get_base(run, cache_dir, function(msg) prog:message(msg) end)
  if run.pretrain_seconds then
    store:metric(run_id, 0, "base.pretrain_seconds", run.pretrain_seconds)
    store:metric(run_id, 0, "base.pretrain_loss", run.pretrain_loss)
  end
  local seq = tr.seq
  local d = get_data(c.task, c.split.train, c.split.val, seq + 1)
  local spe = d:steps_per_epoch(tr.batch, seq)
  local total = tr.steps or tr.epochs * spe
  local n_experts = mc.experts or 0
  if mc.name == "lora" then n_experts = 1 end
  if n_experts > total then
    error(string.format("%d experts do not fit in %d steps (%d per epoch)", n_experts, total, spe), 0)
  end
  local m <close> = base:clone()
  local f <close> = finetune.new(m, {
    method = mc.name, rank = mc.rank, lora_alpha = mc.lora_alpha, targets = mc.targets,
    ratio = mc.ratio, dora = mc.dora and 1 or 0, alpha = mc.alpha, noise = mc.noise, n_experts = n_experts,
    steps_per_expert = mc.every or 0, rewarmup_steps = mc.rewarmup,
    slow_merge = mc.slow_merge, noise_std = mc.noise_std,
    total_steps = total, batch = tr.batch, seq = seq, lr = tr.lr, schedule = tr.schedule,
    warmup = tr.warmup, min_lr_ratio = tr.min_lr_ratio, weight_decay = tr.weight_decay,
    grad_clip = tr.grad_clip, seed = c.seed, data_seed = c.seed })
  prog:run_start(index, string.format("%s %s seed %d", c.task, run.label, c.seed), total, spe)
  train_loop(store, run, run_id, prog, total, function() return f:step(d) end)
  f:close() -- the cascade's last merge leaves the learned update in m's weights
  local scores = {}
  for _, split in ipairs { "val", "test" } do
    local loss, acc = d:evaluate(m, split, c.eval.batch, seq, c.eval.max_windows)
    store:eval(run_id, split, "score", acc)
    store:eval(run_id, split, "loss", loss)
    scores[split] = acc
  end
  if run.save then save_model(store, run, run_id, m, opts, "lsc") end
  return scores
end

-- Runs the given runs (already expanded and filtered to this shard). Returns the number of
-- failed runs.
function M.run(store, exp_id, runs, opts)
  for _, r in ipairs(runs) do store:run_add(exp_id, r.hash, r.json, r.seed) end
  local prog = progress.new(#runs)
  local failed, ran, skipped = 0, 0, 0
  for i, r in ipairs(runs) do
    local claim = store:run_claim(exp_id, r.hash, r.json, r.seed, opts.rerun_failed)
    if not claim.claimed then
      skipped = skipped + 1
      if opts.verbose then prog:message(string.format("[%d/%d] skip %s (%s)", i, #runs, r.hash:sub(1, 12), claim.prior)) end
    else
      if claim.was_stale then prog:message(string.format("[%d/%d] run %d was interrupted (its process is gone): running it again", i, #runs, claim.run_id)) end
      local t0 = sys.now()
      local ok, res = xpcall(train_one, function(e)
        local msg = type(e) == "string" and e or tostring(e)
        if os.getenv("LORASC_DEBUG") then msg = debug.traceback(msg, 2) end
        return msg
      end, store, r, claim.run_id, prog, i, opts)
      local wall = sys.now() - t0
      ran = ran + 1
      if ok then
        store:run_finish(claim.run_id, "done", nil, wall)
        prog:run_end(string.format("run %d done in %s: val %.4f test %.4f%s (%s)", claim.run_id,
          progress.fmt_time(wall), res.val, res.test,
          res.corrupt and string.format(" corrupt %.4f", res.corrupt) or "", r.hash:sub(1, 12)))
      else
        failed = failed + 1
        local fok, ferr = pcall(store.run_finish, store, claim.run_id, "failed", res, wall)
        if not fok then prog:message("cannot record the failure: " .. tostring(ferr)) end
        prog:run_end(string.format("run %d FAILED: %s", claim.run_id, res))
      end
    end
    collectgarbage()
  end
  return failed, ran, skipped
end

return M
