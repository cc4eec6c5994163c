-- `lorasc run`: check every run's length against its data, register the runs, claim each in
-- turn (the store skips done ones and re-claims interrupted ones), train, log, evaluate,
-- finish; done runs made by other code or data are stale (provenance.lua). A
-- failing run (an error, or a diverged one: train.lua) is marked failed and the sweep goes on.
-- A run's result is found by its config hash whatever experiment asked for it: a
-- configuration done in another experiment of the database is not trained again. The
-- pretrained base model is a cached checkpoint, not a run: it is keyed by the hash of its
-- config (which every run's config contains), built by the first run that needs it and
-- reused by every later run, process and shard. One run is the same steps for every task
-- family; what it loads, trains and evaluates is its family's. A run saves its state now and
-- then and resumes from it after a kill; a stop signal (Ctrl-C, SIGTERM, SIGUSR1) ends the
-- run after its current step, marks it interrupted and ends the sweep (resume.lua).
local sys = require "lorasc.core.sys"
local progress = require "lorasc.progress"
local families = require "lorasc.families"
local methods = require "lorasc.methods"
local train = require "lorasc.train"
local resume = require "lorasc.resume"
local canon = require "lorasc.canon"
local provenance = require "lorasc.provenance"
local export = require "lorasc.export" -- what a run keeps (save = "model" | "adapter")

local M = {}

-- Where base models are cached and trained models saved: --results DIR, by default the
-- database's directory.
function M.results_dir(opts)
  return opts.results or train.dirname(opts.db)
end

-- A failure as it is recorded and shown: one sentence, without the "lorasc: " that marks
-- user errors for the host.
local sentence = canon.sentence

-- One run: the base model (pretrained and cached on first use), the data, the base
-- fine-tuned with the run's method (train.steps = 0: evaluated as it is; an interrupted run
-- resumes from its saved state), the evaluation, what save = keeps (the adapter before the
-- run is closed, the merged model after); the weights the run changed are restored when
-- `restore` closes (the family's borrow: no copy of the whole model per run). Returns the
-- scores { val, test [, corrupt] [, ["shift.<name>"] ] }.
local function train_one(store, run, claim, prog, index, opts)
  local c, run_id = run.config, claim.run_id
  local fam = families[run.family]
  local base, base_path = fam.base(run, M.results_dir(opts) .. "/cache", function(msg) prog:message(msg) end)
  if base_path then store:input(run_id, base_path, "base") end
  for _, pm in ipairs(run.pretrain_metrics or {}) do store:metric(run_id, 0, pm[1], pm[2]) end
  local ctx = fam.prepare(run, base, prog)
  local total = c.train.steps or c.train.epochs * ctx.spe
  local m, restore <close> = fam.borrow(base, ctx, c)
  if total > 0 then
    local eo = methods.engine_options(c.method, c.train, c.seed, total, ctx.spe)
    eo.keep_adapter = run.save.adapter and 1 or 0 -- the run keeps its merges for its adapter
    local f <close> = fam.finetune(m, ctx, eo, c.train, c.model)
    local state = resume.start(store, run, claim, f, opts, function(msg) prog:message(msg) end)
    prog:run_start(index, string.format("%s %s seed %d", c.task, run.label, c.seed), total, ctx.spe)
    train.loop(store, run, run_id, prog, total, function() return fam.step(f, ctx) end, state,
               c.eval.every and function() return M.curve_metrics(fam.eval_split(run, m, ctx, "val")) end,
               function() return f:results() end)
    if run.save.adapter then export.keep_adapter(store, run, run_id, f, M.results_dir(opts)) end
    f:close() -- the cascade's last merge leaves the learned update in m's weights
    train.check_weights(m, string.format("its last step (%d) and the final merge", total))
  else
    if claim.kept_log then store:rewind(run_id, 0) end
    prog:run_start(index, string.format("%s (evaluation only) seed %d", c.task, c.seed), 0, 1)
  end
  local scores = fam.evaluate(store, run, run_id, m, ctx)
  if run.save.adapter and total == 0 then export.keep_adapter(store, run, run_id, nil, M.results_dir(opts)) end
  if run.save.model then export.keep_model(store, run, run_id, m, M.results_dir(opts), fam.save_ext) end
  return scores
end

-- A validation-curve point (eval.every: train.val_curve): the split's metrics but its constants
-- (a language task's majority baseline and example count).
function M.curve_metrics(list)
  local out = {}
  for _, e in ipairs(list) do
    if not (e[1]:match("majority$") or e[1] == "n" or e[1]:match("%.n$")) then out[#out + 1] = e end
  end
  return out
end

-- Every run's length, from its data (loaded once per process), checked before anything is
-- written or trained: a split without data, more steps than canon.LIMITS.steps, a warm-up
-- longer than the run, more experts than steps are errors at their file:line, not a failure
-- of every run at run time. Sets run.total (steps) on each run.
function M.plan(runs)
  local L = canon.LIMITS
  for _, r in ipairs(runs) do
    local c, fam = r.config, families[r.family]
    local ok, spe = pcall(fam.plan, r)
    if not ok then -- the data's errors are the split's; a family may name another key
      local key, msg = "split", spe
      if type(spe) == "table" then key, msg = spe.key, spe.message end
      canon.fail(canon.key_loc(r.where, key) .. ": " .. sentence(msg))
    end
    local total = c.train.steps or c.train.epochs * spe
    if total > L.steps then
      canon.fail(string.format("%s: train.epochs = %d at %d steps per epoch (%s) is %d steps, more than lorasc's limit of %d steps",
                               canon.key_loc(r.where, "train.epochs"), c.train.epochs, spe, c.task, total, L.steps))
    end
    if total > 0 and c.train.warmup > total then
      canon.fail(string.format("%s: train.warmup = %d is longer than the run (%d steps on %s): the learning rate would never reach train.lr; use warmup < %d",
                               canon.key_loc(r.where, "train.warmup"), c.train.warmup, total, c.task, total))
    end
    local experts = c.method.experts
    if total > 0 and experts and experts > total then
      canon.fail(string.format("%s: %d experts do not fit in a run of %d steps (%s%s); use experts <= %d",
                               canon.key_loc(r.method_where, "experts"), experts, total, c.task,
                               c.train.steps and "" or string.format(", %d epoch%s x %d steps", c.train.epochs, c.train.epochs == 1 and "" or "s", spe), total))
    end
    if total > 0 and c.eval.every and c.eval.every > total then
      canon.fail(string.format("%s: eval.every = %d is longer than the run (%d steps on %s): no validation point would be logged; use every <= %d",
                               canon.key_loc(r.where, "eval.every"), c.eval.every, total, c.task, total))
    end
    r.total = total
  end
end

-- One line for a finished run's score; an empty split has none ("—", not nan).
local function score(x) return x == x and string.format("%.4f", x) or "— (empty split)" end

-- Runs the experiments' runs (exps: { { id = experiment id, runs = expanded runs of this
-- shard, planned by M.plan } }) as one sweep with one progress bar and ETA. A run's result
-- is found by its config hash in any experiment of the database; a done result made by other
-- code or from other inputs (provenance.lua) is stale: kept and counted, run again with
-- opts.rerun_stale. Returns counts: { ran, failed, skipped (done already or held by another
-- process), elsewhere (of those, done in another experiment), failed_before (failed earlier,
-- not run again without --rerun-failed), stale (skipped done runs that are stale), stop (the
-- { signal =, name = } that ended the sweep early, or nil) }. A run stopped by a signal is
-- marked interrupted; its saved state stays for the next `lorasc run`.
function M.run_all(store, exps, opts)
  sys.catch_stop_signals()
  local done = {} -- config hash -> a done run, this experiment's first, else any experiment's
  local n = { ran = 0, failed = 0, skipped = 0, elsewhere = 0, failed_before = 0, stale = 0 }
  local todo, steps = {}, 0
  local all_done = store:runs(0, { "done" })
  for _, e in ipairs(exps) do
    local mine = {}
    for _, r in ipairs(store:runs(e.id)) do mine[r.config_hash] = r end
    for _, r in ipairs(all_done) do
      local d = done[r.config_hash]
      if not d or (d.experiment_id ~= e.id and r.experiment_id == e.id) then done[r.config_hash] = r end
    end
    for _, r in ipairs(e.runs) do
      local d, own = done[r.hash], mine[r.hash]
      local inputs = provenance.inputs(r)
      -- why a done run is stale, told before a claim replaces its recorded inputs
      local why = d and provenance.stale_reason(d, inputs, store)
      if d and not (why and opts.rerun_stale) then
        n.skipped = n.skipped + 1
        if why then n.stale = n.stale + 1 end
        if d.experiment_id ~= e.id then n.elsewhere = n.elsewhere + 1 end
        if opts.verbose then
          io.stderr:write(string.format("skip %s: done%s%s\n", r.hash:sub(1, 12),
            d.experiment_id ~= e.id and string.format(" in experiment '%s' (run %d)", d.experiment, d.id) or "",
            why and (", stale: " .. why) or ""))
        end
      elseif own and own.status == "failed" and not opts.rerun_failed then
        n.failed_before = n.failed_before + 1
      else
        if not own then store:run_add(e.id, r.hash, r.json, r.seed) end
        todo[#todo + 1] = { exp_id = e.id, run = r, inputs = inputs, why = why }
        steps = steps + r.total
      end
    end
  end
  local prog = progress.new(#todo, steps)
  for i, t in ipairs(todo) do
    local r = t.run
    local sig, signame = sys.stop_signal()
    if sig then
      n.stop = { signal = sig, name = signame }
      break
    end
    store:inputs_set(t.inputs.fingerprint, t.inputs.list)
    local has_state = sys.exists(resume.path(opts.db, r.hash))
    local claim = store:run_claim(t.exp_id, r.hash, r.json, r.seed, opts.rerun_failed, opts.rerun_stale, has_state)
    claim.kept_log = has_state
    if not claim.claimed then
      if has_state and claim.prior == "done" then resume.remove(opts.db, r.hash) end
      -- another process finished or holds it since the list above was made
      if claim.prior == "failed" then n.failed_before = n.failed_before + 1 else n.skipped = n.skipped + 1 end
      prog:skip(r.total)
      if opts.verbose then prog:message(string.format("[%d/%d] skip %s (%s)", i, #todo, r.hash:sub(1, 12), claim.prior)) end
    else
      -- the method's label beside the run (runs.label; not part of its config or hash)
      store:run_label(claim.run_id, r.label)
      if claim.was_stale then prog:message(string.format("[%d/%d] run %d was interrupted (its process is gone): running it again", i, #todo, claim.run_id)) end
      if claim.prior == "done" then prog:message(string.format("[%d/%d] run %d is stale (%s): running it again", i, #todo, claim.run_id, t.why or "other code or inputs")) end
      local t0 = sys.now()
      prog.index = i
      local ok, res = xpcall(train_one, function(e)
        if resume.is_stop(e) then return e end
        local msg = sentence(e)
        if os.getenv("LORASC_DEBUG") then msg = debug.traceback(msg, 2) end
        return msg
      end, store, r, claim, prog, i, opts)
      local wall = sys.now() - t0
      n.ran = n.ran + 1
      sig, signame = sys.stop_signal()
      if ok then
        store:run_finish(claim.run_id, "done", nil, wall)
        resume.remove(opts.db, r.hash)
        local shifts = {} -- image tasks' eval.shift accuracies, "shift.digits 0.5446"
        for k, v in pairs(res) do if type(k) == "string" and k:match("^shift%.") then shifts[#shifts + 1] = string.format(" %s %.4f", k, v) end end
        table.sort(shifts)
        prog:run_end(string.format("run %d done in %s: val %s test %s%s%s (%s)", claim.run_id,
          progress.fmt_time(wall), score(res.val), score(res.test),
          res.corrupt and string.format(" corrupt %.4f", res.corrupt) or "", table.concat(shifts), r.hash:sub(1, 12)), r.total)
      elseif sig then -- whatever the error says, the signal is why the run ended
        local why = resume.is_stop(res) and res.message or string.format("stopped by %s: %s", signame, sentence(res))
        local fok, ferr = pcall(store.run_finish, store, claim.run_id, "interrupted", why, wall)
        if not fok then prog:message("cannot record the interruption: " .. sentence(ferr)) end
        prog:run_end(string.format("run %d interrupted: %s", claim.run_id, why), r.total)
      else
        n.failed = n.failed + 1
        resume.remove(opts.db, r.hash)
        local fok, ferr = pcall(store.run_finish, store, claim.run_id, "failed", res, wall)
        if not fok then prog:message("cannot record the failure: " .. sentence(ferr)) end
        prog:run_end(string.format("run %d FAILED: %s", claim.run_id, res), r.total)
        -- a device error is sticky (CUDA: the device is unusable for the rest of the process):
        -- the sweep stops and the runs after this one stay pending for the next `lorasc run`
        if sys.device_error() then
          prog:message("the device failed; the sweep stops here (the remaining runs stay pending)")
          break
        end
      end
      if sig then
        n.stop = { signal = sig, name = signame }
        break
      end
    end
    collectgarbage()
  end
  return n
end

return M
