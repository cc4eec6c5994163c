-- The language family: the paper's Table 1 / Table 2 tasks ("sst2", "rte", ..., "gsm8k",
-- "mmlu", "bbh", "alpaca"; core/data/datasets.h) in their original files, on a pretrained
-- Llama with its tokenizer (the text family's llama{}). Its canonicalisation (example-count
-- splits, MeZO's sampling; eval through each task's metric) and, for `lorasc run`, the
-- sampled datasets, the tokenizer, the engine and the evaluation (eval.tasks for alpaca).
local sys = require "lorasc.core.sys"
local finetune = require "lorasc.core.finetune"
local tasks_mod = require "lorasc.core.tasks"
local json = require "lorasc.json"
local canon = require "lorasc.canon"
local text = require "lorasc.family_text"

local fail, int, pos, nonneg = canon.fail, canon.int, canon.pos, canon.nonneg

local F = { name = "language", arch = "llama", save_ext = "lsc", cost_unit = "tokens" }

-- train = { ... } takes the text family's keys; seq defaults to 256 tokens, steps = 0
-- evaluates the base model only, and sampling = "epoch" (default: every epoch visits each
-- training example once, in a seeded order) or "replacement" (every row drawn independently).
F.train_keys = text.train_keys
F.train = { seq = 256, augment = false, eval_only = true, sampling = true }

function F.owns(task) return tasks_mod.parse(task) ~= nil end

function F.wrong_arch(task)
  return string.format("task '%s' is a language task; use model = llama { checkpoint = ..., tokenizer = ... } for it", task)
end

-- A dataset whose files are absent (SQuAD and DROP are not in the mirror) is "unavailable
-- here", with the fetch command. Checked once per process.
local checked = {}
function F.check_task(task, loc)
  if checked[task] == nil then
    local ok, err = tasks_mod.check(task)
    checked[task] = ok and true or err
  end
  if checked[task] ~= true then fail(string.format("%s: task '%s' is unavailable here: %s", loc, task, checked[task])) end
  return task
end

-- The split (example counts, MeZO's sampling) and eval. Alpaca (Table 2) has no metric of
-- its own: the instruction-tuned model is evaluated on eval.tasks (default mmlu and bbh),
-- which enter the config only for experiments that train on alpaca.
function F.canon_split_eval(split, ev, loc, tasks)
  local has_alpaca = false
  for _, t in ipairs(tasks) do has_alpaca = has_alpaca or t == "alpaca" end
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
      eval.tasks[#eval.tasks + 1] = F.check_task(t, loc)
    end
  end
  return { train = count("train", 1000, pos), val = count("val", 500, nonneg), test = count("test", 1000, pos) }, eval
end

F.canon_model = text.canon_model
F.target_shapes = text.target_shapes

-- Language tasks need a pretrained model with its tokenizer, both present.
function F.check_model(model, loc)
  if model.arch ~= "llama" or not model.checkpoint or not model.tokenizer then
    fail(loc .. ": language tasks need a pretrained model with its tokenizer: llama { checkpoint = \"llama2c_stories260K/stories260K.bin\", tokenizer = \"llama2c_stories260K/tok512.bin\" }")
  end
  for _, k in ipairs { "checkpoint", "tokenizer" } do
    if not canon.data_file(model[k]) then fail(loc .. ": " .. canon.missing_file(k, model[k])) end
  end
end

-- Running -----------------------------------------------------------------------------------
-- MeZO-sampled datasets (keyed by task, sizes and seed) and tokenizers, cached per process.
local sets, tokenizers = {}, {}
local function get_set(task, split, seed)
  local key = table.concat({ task, split.train, split.val, split.test, seed }, "|")
  if not sets[key] then sets[key] = tasks_mod.load(task, split, seed) end
  return sets[key]
end

local function get_tokenizer(path)
  local file = canon.data_file(path)
  if not file then error("lorasc: " .. canon.missing_file("tokenizer", path), 0) end
  if not tokenizers[file] then tokenizers[file] = tasks_mod.tokenizer(file) end
  return tokenizers[file]
end

F.base = text.base

-- The run's steps per epoch (runner.lua checks every run with it before any starts):
-- ceil(train / batch) of the examples the sample holds. The tokenizer is loaded here too, so
-- an unreadable one is an error before any run, not a failure of every run.
function F.plan(run)
  local c = run.config
  local ok, err = pcall(get_tokenizer, c.model.tokenizer)
  if not ok then error({ key = "model", message = err }, 0) end -- reported at the model's line
  local n_train = get_set(c.task, c.split, c.seed):sizes()
  return math.max(1, (n_train + c.train.batch - 1) // c.train.batch)
end

-- The files a run reads, for its provenance (provenance.lua): the folders of its task and of
-- the tasks it is evaluated on (every file in them), the checkpoint and the tokenizer.
function F.inputs(run)
  local c = run.config
  local list = text.model_inputs(c.model, {})
  list[#list + 1] = { path = sys.datadir_path(c.task), kind = "data" }
  for _, t in ipairs(c.eval.tasks or {}) do list[#list + 1] = { path = sys.datadir_path(t), kind = "data" } end
  return list
end

-- The tokenizer, the sampled dataset (its note, e.g. fewer examples than asked, shown) and
-- the steps per epoch: ceil(train / batch), the epoch sampler's (its last batch short).
function F.prepare(run, base, prog)
  local c = run.config
  local tok = get_tokenizer(c.model.tokenizer)
  if tok:vocab_size() > base:config().vocab_size then
    error(string.format("the tokenizer has %d pieces, more than the model's vocabulary (%d)", tok:vocab_size(), base:config().vocab_size), 0)
  end
  local d = get_set(c.task, c.split, c.seed)
  local info = d:info()
  local n_train, n_val, n_test = d:sizes()
  if info.note ~= "" then prog:message(info.note) end
  return { data = d, tok = tok, info = info, n_train = n_train, n_val = n_val, n_test = n_test,
           spe = math.max(1, (n_train + c.train.batch - 1) // c.train.batch) }
end

F.borrow = text.borrow

function F.finetune(m, ctx, opts, tr, mc)
  opts.seq, opts.sampling = tr.seq, tr.sampling
  opts.init_adapter = mc and text.adapter_dir(mc) -- a run continues the model's PEFT adapter
  return finetune.new(m, opts)
end

function F.step(f, ctx) return f:step(ctx.data, ctx.tok) end

-- One split through the task's metric, beside the majority-class baseline, as a list of
-- { metric, value [, per-example outcomes] } (empty when the split has no examples): score,
-- f1, em, majority, n; for alpaca (Table 2) each of eval.tasks' as "<task>.score" etc., and
-- "score" their mean. A task's score carries each example's outcome (s.examples). The final
-- evaluation's, and eval.every's validation curve (train.lua).
local KEYS = { "score", "f1", "em", "majority", "n" }
function F.eval_split(run, m, ctx, split)
  local c, list = run.config, {}
  if c.eval.tasks then
    -- the instruction-tuned model on other tasks (alpaca has no metric of its own)
    local sum, count = 0, 0
    for _, et in ipairs(c.eval.tasks) do
      local ed = get_set(et, c.split, c.seed)
      local _, ev_n_val, ev_n_test = ed:sizes()
      if (split == "val" and ev_n_val or ev_n_test) > 0 then
        local s = ed:evaluate(m, ctx.tok, split, c.eval.max_examples, c.eval.max_new)
        for _, k in ipairs(KEYS) do
          list[#list + 1] = { et .. "." .. k, s[k], k == "score" and s.examples or nil }
        end
        sum, count = sum + s.score, count + 1
      end
    end
    if count > 0 then list[#list + 1] = { "score", sum / count } end
  elseif (split == "val" and ctx.n_val or ctx.n_test) > 0 then
    local s = ctx.data:evaluate(m, ctx.tok, split, c.eval.max_examples, c.eval.max_new)
    for _, k in ipairs(KEYS) do
      list[#list + 1] = { k, s[k], k == "score" and s.examples or nil }
    end
  end
  return list
end

-- val and test (F.eval_split); "subset" = 1 marks a dataset that holds only part of the
-- original data (not the paper's protocol). Each test example's outcome of the score is
-- stored too (the report's paired bootstrap).
function F.evaluate(store, run, run_id, m, ctx)
  local c, info, scores = run.config, ctx.info, {}
  for _, split in ipairs { "val", "test" } do
    local list = F.eval_split(run, m, ctx, split)
    scores[split] = 0 / 0
    for _, e in ipairs(list) do
      store:eval(run_id, split, e[1], e[2])
      if split == "test" and e[3] then store:eval_examples(run_id, split, e[1], e[3]) end
      if e[1] == "score" then scores[split] = e[2] end
    end
    if #list > 0 or c.eval.tasks then store:eval(run_id, split, "subset", info.subset and 1 or 0) end
    store:flush()
  end
  store:metric(run_id, 0, "data.train_n", ctx.n_train)
  store:metric(run_id, 0, "data.subset", info.subset and 1 or 0)
  return scores
end

return F
