-- `lorasc run`: register an experiment's runs, claim each in turn (the store skips done ones
-- and re-claims stale ones), train, log, evaluate, finish. A failing run is marked failed
-- and the sweep goes on. The pretrained base model is a cached checkpoint, not a run: it is
-- keyed by the hash of its config (which every run's config contains), built by the first
-- run that needs it and reused by every later run, process and shard. One run is the same
-- steps for every task family; what it loads, trains and evaluates is its family's.
local sys = require "lorasc.core.sys"
local progress = require "lorasc.progress"
local families = require "lorasc.families"
local methods = require "lorasc.methods"
local train = require "lorasc.train"
local provenance = require "lorasc.provenance"
local export = require "lorasc.export" -- what a run keeps (save = "model" | "adapter")

local M = {}

-- Where base models are cached and trained models saved: --results DIR, by default the
-- database's directory.
function M.results_dir(opts)
  return opts.results or train.dirname(opts.db)
end

-- One run: the base model (pretrained and cached on first use), the data, a clone of the
-- base fine-tuned with the run's method (train.steps = 0: evaluated as it is), the
-- evaluation, what save = keeps (the adapter before the run is closed, the merged model
-- after). Returns the scores { val, test [, corrupt] }.
local function train_one(store, run, run_id, prog, index, opts)
  local c = run.config
  local fam = families[run.family]
  local base, base_path = fam.base(run, M.results_dir(opts) .. "/cache", function(msg) prog:message(msg) end)
  if base_path then store:input(run_id, base_path, "base") end
  for _, pm in ipairs(run.pretrain_metrics or {}) do store:metric(run_id, 0, pm[1], pm[2]) end
  local ctx = fam.prepare(run, base, prog)
  local total = c.train.steps or c.train.epochs * ctx.spe
  local m <close> = fam.clone(base, ctx, c)
  if total > 0 then
    local eo = methods.engine_options(c.method, c.train, c.seed, total, ctx.spe)
    eo.keep_adapter = run.save.adapter and 1 or 0 -- the run keeps its merges for its adapter
    local f <close> = fam.finetune(m, ctx, eo, c.train, c.model)
    prog:run_start(index, string.format("%s %s seed %d", c.task, run.label, c.seed), total, ctx.spe)
    train.loop(store, run, run_id, prog, total, function() return fam.step(f, ctx) end)
    if run.save.adapter then export.keep_adapter(store, run, run_id, f, M.results_dir(opts)) end
    f:close() -- the cascade's last merge leaves the learned update in m's weights
  else
    prog:run_start(index, string.format("%s (evaluation only) seed %d", c.task, c.seed), 1, 1)
  end
  local scores = fam.evaluate(store, run, run_id, m, ctx)
  if run.save.adapter and total == 0 then export.keep_adapter(store, run, run_id, nil, M.results_dir(opts)) end
  if run.save.model then export.keep_model(store, run, run_id, m, M.results_dir(opts), fam.save_ext) end
  return scores
end

-- Runs the given runs (already expanded and filtered to this shard). Returns the numbers of
-- failed, run and skipped runs, and of the skipped done runs that are stale (made by other
-- code or from other inputs than this run would use; run again with opts.rerun_stale).
function M.run(store, exp_id, runs, opts)
  for _, r in ipairs(runs) do store:run_add(exp_id, r.hash, r.json, r.seed) end
  local done = {}
  for _, db in ipairs(store:runs(exp_id, { "done" })) do done[db.config_hash] = db end
  local prog = progress.new(#runs)
  local failed, ran, skipped, stale = 0, 0, 0, 0
  for i, r in ipairs(runs) do
    local inputs = provenance.inputs(r)
    -- why a done run is stale, told before a claim replaces its recorded inputs
    local why = done[r.hash] and provenance.stale_reason(done[r.hash], inputs, store)
    store:inputs_set(inputs.fingerprint, inputs.list)
    local claim = store:run_claim(exp_id, r.hash, r.json, r.seed, opts.rerun_failed, opts.rerun_stale)
    if claim.prior ~= "done" then why = nil end
    if not claim.claimed then
      skipped = skipped + 1
      if why then stale = stale + 1 end
      if opts.verbose then prog:message(string.format("[%d/%d] skip %s (%s%s)", i, #runs, r.hash:sub(1, 12), claim.prior, why and ", stale: " .. why or "")) end
    else
      if claim.was_stale then prog:message(string.format("[%d/%d] run %d was interrupted (its process is gone): running it again", i, #runs, claim.run_id)) end
      if claim.prior == "done" then prog:message(string.format("[%d/%d] run %d is stale (%s): running it again", i, #runs, claim.run_id, why or "other code or inputs")) end
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
  return failed, ran, skipped, stale
end

return M
