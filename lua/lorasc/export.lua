-- What a run keeps (the DSL's save = "model" | "adapter" | both) and `lorasc export RUN_ID
-- --hf DIR | --peft DIR`: the trained model as a Hugging Face directory transformers loads, the
-- adapter as a PEFT directory. The files are core's (core/formats: hf_llama, vit_hf, peft);
-- this file decides what to keep, where it lies (<results>/runs/<hash>.lsc|.ckpt for the merged
-- model, <results>/runs/<hash>.adapter/ for the adapter; <results> is --results DIR, by default
-- the database's directory), and how a stored run is rebuilt for an export (its config from the
-- database, its base model as its family loads it).
local sys = require "lorasc.core.sys"
local interop = require "lorasc.core.interop"
local canon = require "lorasc.canon"
local train = require "lorasc.train"

local M = {}

local fail = canon.fail

-- The DSL ------------------------------------------------------------------------------------

-- save = "model" (the trained model, the learned update merged in: a lorasc checkpoint),
-- "adapter" (the run's PEFT adapter), a list of both, true (= "model", what true meant before
-- "adapter" existed) or false. Returns { model = bool, adapter = bool }.
function M.canon_save(v, loc)
  local kinds = { model = false, adapter = false }
  if v == nil or v == false then return kinds end
  if v == true then kinds.model = true; return kinds end
  local list = type(v) == "table" and v or { v }
  if type(v) == "table" and #v == 0 then list = { {} } end
  for _, k in ipairs(list) do
    if k ~= "model" and k ~= "adapter" then
      fail(string.format("%s: save must be \"model\", \"adapter\", { \"model\", \"adapter\" }, true (= \"model\") or false, got %s",
                         loc, type(k) == "string" and ("\"" .. k .. "\"") or type(k)))
    end
    kinds[k] = true
  end
  return kinds
end

-- The method runs several experts (merges) whatever the data's size says.
local function several_experts(mc)
  return (mc.experts and mc.experts > 1) or mc.every ~= nil or mc.name == "relora"
end

-- save = "adapter" is refused before anything runs when the run cannot have an exact adapter
-- (core/model/cascade.h, cascade_merged_adapter): noise between experts, DoRA over several
-- experts, a CLIP-layout ViT (no PEFT model matches it), or nothing trained and none imported.
function M.check_save(save, config, loc)
  if not save.adapter then return end
  local mc, model = config.method, config.model
  local why
  if (mc.noise or 0) > 0 and several_experts(mc) then
    why = string.format("lorasc{ noise = %g } adds noise to the base weights between experts; that noise is no low-rank update, so no adapter reproduces the trained model: the merged model (save = \"model\", then lorasc export --hf) is the only exact export (or set noise = 0)", mc.noise)
  elseif mc.dora and several_experts(mc) then
    why = "a DoRA cascade of several experts rescales whole rows at every merge, which no single DoRA adapter reproduces: the merged model (save = \"model\", then lorasc export --hf) is the only exact export"
  elseif config.train.steps == 0 and not model.adapter then
    why = "train.steps = 0 trains nothing, so there is no adapter to keep"
  elseif model.hf and require("lorasc.core.vit").hf_config(model.hf).layout == "clip" then
    why = "a CLIP vision tower has no PEFT image-classification model with lorasc's head; keep the model (save = \"model\")"
  end
  if why then fail(string.format("%s: save = \"adapter\": %s", loc, why)) end
end

-- llama{ adapter = DIR }: the directory of a PEFT adapter (as given, else under the data
-- directory) and what it holds, checked (whatever lorasc does not implement is an error here).
local infos = {}
function M.adapter_info(path, loc)
  local dir = canon.data_file(path .. "/adapter_config.json") and canon.data_file(path .. "/adapter_config.json"):match("^(.*)/adapter_config.json$")
  if not dir then
    fail(string.format("%s: adapter = '%s': no PEFT adapter there (a directory with adapter_config.json and adapter_model.safetensors; looked in the working directory and in the data directory %s)", loc, path, sys.datadir_path("")))
  end
  if not infos[dir] then
    local ok, info = pcall(interop.peft_info, dir, "llama")
    if not ok then fail(loc .. ": " .. tostring(info)) end
    infos[dir] = info
  end
  return dir, infos[dir]
end

-- The method's adapter must be the imported one (a run continues training it): its rank,
-- lora_alpha, targets and DoRA default to the adapter's; given ones must equal them.
function M.adapter_defaults(info)
  local targets = {}
  for i, t in ipairs(info.targets) do targets[i] = t end
  return { rank = info.r, lora_alpha = info.lora_alpha, targets = targets, dora = info.dora }
end

-- Keeping (lorasc run) --------------------------------------------------------------------------

local function runs_dir(results) return results .. "/runs" end
local function model_path(results, hash, ext)
  return string.format("%s/%s.%s", runs_dir(results), hash:sub(1, 16), ext)
end
local function adapter_dir(results, hash)
  return string.format("%s/%s.adapter", runs_dir(results), hash:sub(1, 16))
end

local function copy_file(from, to)
  local a = assert(io.open(from, "rb"))
  local data = a:read("a")
  a:close()
  local b, err = io.open(to, "wb")
  if not b then error("cannot write " .. to .. ": " .. tostring(err), 0) end
  b:write(data)
  b:close()
end

-- The base model as base_model_name_or_path names it: the HF directory (absolute) it came
-- from, else the checkpoint the run started from.
local function base_name(config)
  local m = config.model
  local path = m.hf or (m.checkpoint and (canon.data_file(m.checkpoint) or m.checkpoint))
  if path and path:sub(1, 1) ~= "/" then
    local pwd = os.getenv("PWD")
    if pwd then path = pwd .. "/" .. path end
  end
  return path
end
M.base_name = base_name

-- save = "model": the merged model to <results>/runs/<hash>.<ext>, listed in artifacts.
function M.keep_model(store, run, run_id, m, results, ext)
  sys.mkdir(runs_dir(results))
  local path = model_path(results, run.hash, ext)
  m:save(path)
  store:artifact(run_id, path, "model")
end

-- save = "adapter": the run's adapter to <results>/runs/<hash>.adapter/ (f: the finished
-- fine-tuning run, before it is closed; nil: an imported adapter evaluated as it is).
function M.keep_adapter(store, run, run_id, f, results)
  sys.mkdir(runs_dir(results))
  local dir = adapter_dir(results, run.hash)
  sys.mkdir(dir)
  if f then
    f:save_adapter(dir, base_name(run.config))
  else
    local src = M.adapter_info(run.config.model.adapter, "adapter")
    for _, file in ipairs { "adapter_config.json", "adapter_model.safetensors" } do copy_file(src .. "/" .. file, dir .. "/" .. file) end
  end
  store:artifact(run_id, dir .. "/adapter_model.safetensors", "adapter")
  store:artifact(run_id, dir .. "/adapter_config.json", "adapter_config")
end

-- lorasc export ----------------------------------------------------------------------------

-- The run `id` of the database: its row and its config (decoded).
local function find_run(store, id, db)
  for _, r in ipairs(store:runs(0)) do
    if r.id == id then
      if r.status ~= "done" then fail(string.format("export: run %d is %s, not done: only a finished run has a trained model", id, r.status)) end
      return r, interop.json_decode(r.config)
    end
  end
  fail(string.format("export: no run with id %d in %s", id, db))
end

-- The family of a stored config (as dsl.lua picked it for the experiment).
local function family_of(config)
  local families = require "lorasc.families"
  if config.model.arch == "vit" then return families.image end
  return families.of_task(config.task, "export")
end

-- The base model a run started from, as its family loads it (a pretrained base from the
-- cache, pretrained again, deterministically, if the cache lost it).
local function load_base(config, fam, results)
  local run = { config = config, model_hash = sys.sha256(require("lorasc.json").encode(config.model)) }
  return (fam.base(run, results .. "/cache", function(msg) print("  " .. msg) end))
end

local function write_file(path, text)
  local f, err = io.open(path, "wb")
  if not f then fail("export: cannot write " .. path .. ": " .. tostring(err)) end
  f:write(text)
  f:close()
end

-- --peft DIR: the kept adapter, with base_model_name_or_path set to the run's base.
local function export_peft(run_row, config, results, out)
  local src = adapter_dir(results, run_row.config_hash)
  if not sys.exists(src .. "/adapter_config.json") then
    fail(string.format("export: run %d did not keep its adapter (its experiment had save = %s): %s", run_row.id,
      sys.exists(model_path(results, run_row.config_hash, config.model.arch == "vit" and "ckpt" or "lsc")) and "\"model\"" or "false",
      "a run keeps one with save = \"adapter\" (or { \"model\", \"adapter\" }); `lorasc export --hf` exports a kept model"))
  end
  sys.mkdir(out)
  copy_file(src .. "/adapter_model.safetensors", out .. "/adapter_model.safetensors")
  local f = assert(io.open(src .. "/adapter_config.json", "rb"))
  local text = f:read("a")
  f:close()
  local base = base_name(config)
  if base then
    local quoted = require("lorasc.json").encode(base)
    text = text:gsub('"base_model_name_or_path": [^\n]-(,?)\n', function(comma) return '"base_model_name_or_path": ' .. quoted:gsub("%%", "%%%%") .. comma .. "\n" end, 1)
  end
  write_file(out .. "/adapter_config.json", text)
  local notes = {}
  if not config.model.hf and not (config.model.format == "hf") then
    notes[#notes + 1] = string.format("its base (%s) is not a Hugging Face model, so PEFT has nothing to load it onto: `lorasc export %d --hf DIR` gives the merged model instead", tostring(base), run_row.id)
  end
  if config.model.arch == "vit" then
    local info = interop.peft_info(out, "vit")
    notes[#notes + 1] = string.format("load the base with ViTForImageClassification.from_pretrained(base, num_labels=%d, ignore_mismatched_sizes=True) (the classifier is the adapter's modules_to_save)%s%s",
      #require("lorasc.family_image").parse(config.task).classes,
      config.model.channels == 1 and "; the run saw grey images: copy them into the 3 channels" or "",
      config.model.image_size and string.format("; images are %dx%d: call the model with interpolate_pos_encoding=True", config.model.image_size, config.model.image_size) or "")
    assert(info.head)
  end
  return notes
end

-- --hf DIR: the kept model, or the base with the kept adapter merged, as an HF directory.
local function export_hf(run_row, config, fam, results, out, dtype)
  local vit = config.model.arch == "vit"
  local ckpt = model_path(results, run_row.config_hash, vit and "ckpt" or "lsc")
  local adapter = adapter_dir(results, run_row.config_hash)
  local m
  if sys.exists(ckpt) then
    m = vit and require("lorasc.core.vit").load(ckpt) or require("lorasc.core.model").load(ckpt, "lorasc")
  elseif sys.exists(adapter .. "/adapter_config.json") then
    local base = load_base(config, fam, results)
    if vit then
      m = base:clone(#require("lorasc.family_image").parse(config.task).classes, config.seed)
    else
      m = base:clone()
    end
    m:merge_adapter(adapter)
  else
    fail(string.format("export: run %d kept neither its model nor its adapter (its experiment had no save = ...); a run keeps them with save = \"model\" or \"adapter\"", run_row.id))
  end
  sys.mkdir(out)
  local notes = {}
  if vit then
    local opts = { dtype = dtype }
    local ok, d = pcall(function()
      local t = require("lorasc.family_image").parse(config.task)
      return require("lorasc.core.images").load(t.dataset, t.classes, { val = config.split.val })
    end)
    if ok then
      local info = d:info()
      opts.mean, opts.std = info.mean, info.std
      d:close()
    else
      notes[#notes + 1] = "the task's images are not here, so no preprocessor_config.json (normalisation) was written: " .. tostring(d)
    end
    m:save_hf(out, opts)
  else
    local mc = config.model
    local opts = { dtype = dtype }
    if mc.format == "hf" then
      opts.source = canon.data_file(mc.checkpoint .. "/config.json"):match("^(.*)/config.json$")
    elseif mc.tokenizer then
      local tok = require("lorasc.core.tasks").tokenizer(canon.data_file(mc.tokenizer))
      local ids = tok:special_ids()
      opts.bos, opts.eos, opts.pad = ids.bos or -1, ids.eos or -1, ids.pad or -1
      notes[#notes + 1] = string.format("the base was %s (%s): config.json has its bos/eos/pad ids, but there is no tokenizer file to copy", mc.checkpoint, mc.format)
    else
      notes[#notes + 1] = "the model is byte-level (no tokenizer): config.json has transformers' default bos 1 / eos 2"
    end
    m:save_hf(out, opts)
  end
  m:close()
  return notes
end

-- `lorasc export RUN_ID --hf DIR | --peft DIR [--db PATH] [--results DIR] [--dtype f32|bf16|f16]`
function M.command(opts, pos)
  local id = math.tointeger(tonumber(pos[1] or ""))
  if not id then fail("export needs a run id (an integer; `lorasc status FILE` lists them), e.g. lorasc export 12 --hf out/") end
  if not opts.hf and not opts.peft then fail("export needs --hf DIR (the trained model for transformers) and/or --peft DIR (the adapter for PEFT)") end
  if not sys.exists(opts.db) then fail("export: no database at " .. opts.db) end
  local store <close> = require("lorasc.core.store").open(opts.db)
  local row, config = find_run(store, id, opts.db)
  local fam = family_of(config)
  local results = opts.results or train.dirname(opts.db)
  local dtype = opts.dtype or "f32"
  if dtype ~= "f32" and dtype ~= "f16" and dtype ~= "bf16" then fail("export: --dtype must be f32, f16 or bf16, got '" .. dtype .. "'") end
  local notes = {}
  local function run(kind, dir, f)
    local ok, res = pcall(f)
    if not ok then fail(tostring(res):gsub("^lorasc: ", "")) end
    print(string.format("lorasc export: run %d %s -> %s", id, kind, dir))
    for _, n in ipairs(res) do notes[#notes + 1] = n end
  end
  if opts.peft then run("adapter (PEFT)", opts.peft, function() return export_peft(row, config, results, opts.peft) end) end
  if opts.hf then run("model (Hugging Face)", opts.hf, function() return export_hf(row, config, fam, results, opts.hf, dtype) end) end
  for _, n in ipairs(notes) do print("  note: " .. n) end
  return 0
end

return M
