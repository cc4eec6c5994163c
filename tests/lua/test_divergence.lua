-- Divergence is a failure, not a score (issue 16): the rule of train.lua on loss sequences
-- made by hand, the fine-tuning loop failing a run with its step and reason, pretraining
-- refusing to hand out a diverged base (and not retrying it), and reports counting failed
-- runs per cell. Run by `lorasc lua`; the end-to-end runs are in test_badinput_cli.sh.
local train = require "lorasc.train"
local report = require "lorasc.report"
local dsl = require "lorasc.dsl"

local checks = require("checks").new("test_divergence")
local check = checks.check

-- Feeds losses (and grad norms) to a fresh watcher; returns the step it fired at and why.
local function first_divergence(factor, losses, gnorms)
  local watch = train.divergence(factor)
  for i, l in ipairs(losses) do
    local why = watch(i, l, gnorms and gnorms[i] or 1)
    if why then return i, why end
  end
end

local function seq(n, f)
  local t = {}
  for i = 1, n do t[i] = f(i) end
  return t
end
local K = train.DIVERGE_WINDOW
check(K == 10, "the documented window is 10 steps")

-- a steady, noisy loss never diverges
local steady = seq(60, function(i) return 5.5 + 0.3 * math.sin(i * 1.7) end)
check(first_divergence(nil, steady) == nil, "steady loss")
-- a loss that falls, as training should
check(first_divergence(nil, seq(60, function(i) return 5 / i end)) == nil, "falling loss")
-- an explosion right after step 1 (a ViT head at lr 10): caught at step 10, since the start
-- is the lower of step 1's loss and the first window's mean
local boom = { 1.6, 50, 98, 108, 113, 65, 55, 71, 52, 60, 85, 86 }
local at, why = first_divergence(nil, boom)
check(at == K, "explosion at step 2 caught at step 10, got " .. tostring(at))
check(why and why:find("above 4 x its start (1.6", 1, true) ~= nil, "reason names the factor and the start: " .. tostring(why))
-- a slow climb from 2 to 12: fires once the last 10 steps' mean passes 4 x 2 = 8
local climb = seq(60, function(i) return 2 + (i - 1) * 10 / 59 end)
at = first_divergence(nil, climb)
local expect -- first step whose window mean (of steps at-9..at) exceeds 8
for s = K, 60 do
  local sum = 0
  for j = s - K + 1, s do sum = sum + climb[j] end
  if sum / K > 8 then expect = s break end
end
check(at == expect, string.format("slow climb fires at step %s, expected %s", tostring(at), tostring(expect)))
check(first_divergence(6, climb) == nil, "factor 6: the climb's last mean (11.2) stays under 6 x 2")
-- a loss near zero that wobbles 5x is not divergence (the 1-nat margin)
check(first_divergence(nil, seq(60, function(i) return i <= 10 and 0.05 or 0.25 end)) == nil, "near-zero wobble")
-- non-finite loss or gradient norm: at once, whatever the factor (also false)
at, why = first_divergence(nil, { 5, 5, 0 / 0, 5 })
check(at == 3 and why:find("nan") ~= nil, "nan loss at step 3: " .. tostring(why))
at, why = first_divergence(false, { 5, 1 / 0 })
check(at == 2 and why:find("inf") ~= nil, "inf loss with diverge = false: " .. tostring(why))
at, why = first_divergence(nil, { 5, 5, 5 }, { 1, 1 / 0, 1 })
check(at == 2 and why:find("gradient norm is inf") ~= nil, "inf gradient norm: " .. tostring(why))
-- diverge = false keeps an exploding (finite) run
check(first_divergence(false, boom) == nil, "diverge = false")
-- a run shorter than the window has only the non-finite check
check(first_divergence(nil, { 1, 100, 100, 100, 100, 100, 100, 100, 100 }) == nil, "9 steps: no ratio rule")

-- The fine-tuning loop: the run fails with its step and reason, the step is logged.
local logged = {}
local store = { metric = function(_, run_id, step, name, value) logged[#logged + 1] = { run_id, step, name, value } end,
                flush = function() end }
local prog = { step = function() end }
local n = 0
local ok, err = pcall(train.loop, store, { config = { train = {} }, log_every = 100 }, 7, prog, 50, function()
  n = n + 1
  return boom[math.min(n, #boom)], 1.0, 1e-3, nil
end)
check(not ok, "a diverging run fails")
err = tostring(err)
check(err:find("^lorasc: diverged at step 10: ") ~= nil, "message: " .. err)
check(err:find("lower train.lr, or set train.diverge = false") ~= nil, "the fix is named: " .. err)
check(n == 10, "the loop stops at the diverged step, ran " .. n)
local diverged_step
for _, m in ipairs(logged) do if m[3] == "train.diverged_step" then diverged_step = m[4] end end
check(diverged_step == 10, "train.diverged_step logged: " .. tostring(diverged_step))
-- with train.diverge = false, the same run completes
n = 0
ok, err = pcall(train.loop, store, { config = { train = { diverge = false } }, log_every = 100 }, 8, prog, 12, function()
  n = n + 1
  return boom[n], 1.0, 1e-3, nil
end)
check(ok and n == 12, "diverge = false runs to the end: " .. tostring(err))

-- The same loop on a GPU: steps return nil for loss and norm, results() reads them in
-- batches; the loop logs the same rows in the same order as a loop that got them at once,
-- reads at log steps, boundaries and every READ_EVERY steps, and a divergence still names
-- its own step.
local function run_loop(total, losses, deferred, log_every, events)
  local rows, reads, n, pending = {}, 0, 0, {}
  local st = { metric = function(_, _, step, name, value) rows[#rows + 1] = string.format("%d %s %.17g", step, name, value) end,
               flush = function() end }
  local ok_, err_ = pcall(train.loop, st, { config = { train = {} }, log_every = log_every }, 1, prog, total, function()
    n = n + 1
    local ev = events[n] and { step = n, expert = 1, merged_norm = 0.5, noise_std_mean = 0, boundary_seconds = 0 } or nil
    if not deferred then return losses[math.min(n, #losses)], 0.25 * n, 1e-3, ev end
    pending[#pending + 1] = n
    return nil, nil, 1e-3, ev
  end, nil, nil, function()
    reads = reads + 1
    local out = {}
    for _, i in ipairs(pending) do out[#out + 1] = losses[math.min(i, #losses)]; out[#out + 1] = 0.25 * i end
    pending = {}
    return out
  end)
  return ok_, err_, rows, reads, n
end
local smooth = {}
for i = 1, 70 do smooth[i] = 3 - i / 100 end
local ev_at = { [20] = true, [45] = true }
local ok_a, _, rows_a = run_loop(70, smooth, false, 7, ev_at)
local ok_b, _, rows_b, reads_b = run_loop(70, smooth, true, 7, ev_at)
check(ok_a and ok_b and #rows_a == #rows_b and #rows_a > 0, "deferred loop: same number of rows")
for i = 1, #rows_a do check(rows_a[i] == rows_b[i], string.format("deferred loop row %d: %s vs %s", i, rows_a[i], rows_b[i])) end
check(reads_b == 13, "deferred loop: read at the 11 log steps (1, 7, ..., 70) and the 2 boundaries, got " .. reads_b)
local _, _, _, reads_c = run_loop(70, smooth, true, 1000, {})
check(reads_c == 4, "deferred loop, log_every 1000: steps 1, 33, 65 and 70, got " .. reads_c)
local ok_d, err_d, rows_d, _, ran = run_loop(50, boom, true, 1000, {})
check(not ok_d and tostring(err_d):find("^lorasc: diverged at step 10: ") ~= nil, "deferred divergence names step 10: " .. tostring(err_d))
check(ran == 33 and rows_d[#rows_d] == "10 train.diverged_step 10", "found at the read after step 33, step 10 logged: ran " .. ran)

-- Pretraining: a diverged base is an error (so it is never saved to the cache) ...
local calls = 0
ok, err = pcall(train.pretrain_steps, 30, function() end, function() calls = calls + 1 return boom[math.min(calls, #boom)] end)
check(not ok and tostring(err):find("diverged in pretraining at step 10", 1, true) ~= nil, "pretraining diverges: " .. tostring(err))
check(tostring(err):find("it is not cached", 1, true) ~= nil, "says it is not cached: " .. tostring(err))
-- ... deferred on a GPU (step() returns nil, results() reads the pending losses): the same
-- step named, found at the read after it (step 12, the first report step of 60), the reports
-- in order; and a smooth deferred pretraining reads at 12, 24, ..., 60 only
local function deferred(n, losses)
  local k, pending, reads, reported = 0, 0, 0, {}
  local okp, errp, last = pcall(train.pretrain_steps, n, function(line) reported[#reported + 1] = line end,
    function() k = k + 1; pending = pending + 1; return nil end, nil,
    function()
      reads = reads + 1
      local got = {}
      for j = k - pending + 1, k do got[#got + 1] = losses[math.min(j, #losses)]; got[#got + 1] = 1.0 end
      pending = 0
      return got
    end)
  return okp, errp, last, k, reads, reported
end
local okq, errq, _, ranq = deferred(60, boom)
check(not okq and tostring(errq):find("diverged in pretraining at step 10", 1, true) ~= nil, "deferred pretraining names step 10: " .. tostring(errq))
check(ranq == 12, "deferred pretraining: found at the read after step 12, ran " .. ranq)
local okr, _, lastr, _, readsr, rep = deferred(60, smooth)
check(okr and lastr == smooth[60] and readsr == 5 and #rep == 5 and rep[1]:find("step 12/60 loss 2.8800", 1, true),
      string.format("deferred smooth pretraining: last %s, %s reads, report %s", tostring(lastr), tostring(readsr), tostring(rep[1])))
-- ... and a process does not pretrain it again for the next run: the same error at once
local builds = 0
local function build() builds = builds + 1 error("lorasc: the base model diverged in pretraining at step 10 (x)", 0) end
local ok1, e1 = pcall(train.pretrain_once, "hash-a", build)
local ok2, e2 = pcall(train.pretrain_once, "hash-a", build)
check(not ok1 and not ok2 and e1 == e2 and builds == 1, "a failed base is built once per process, got " .. builds)
check(train.pretrain_once("hash-b", function() return { { "m", 1 } } end)[1][1] == "m", "a good base is returned")

-- Reports count failed runs per cell; a run done under another experiment counts (hash).
local tmp = os.tmpname()
local f = assert(io.open(tmp, "w"))
f:write([[
experiment "r" {
  model = llama { dim = 16, n_layers = 1, n_heads = 2, seq_len = 32, pretrain = { steps = 4 } },
  tasks = { "text:apache", "text:gpl2" },
  train = { steps = 4, batch = 2, seq = 32, lr = grid { 1e-3, 1e-2 } },
  method = lora { rank = 2 },
  seeds = { 1, 2 },
}
]])
f:close()
local reg = dsl.load_file(tmp)
os.remove(tmp)
local runs = dsl.expand_experiment(reg.experiments.r)
local db = {}
for _, r in ipairs(runs) do
  local lr = r.config.train.lr
  if r.task == "text:apache" and lr == 1e-2 then
    db[#db + 1] = { config_hash = r.hash, status = "failed", evals = {} } -- both seeds diverged
  elseif r.task == "text:apache" or r.seed == 1 then
    db[#db + 1] = { config_hash = r.hash, status = "done", experiment = "other",
                    evals = { val = { score = 0.5 }, test = { score = 0.25 } } }
  else
    db[#db + 1] = { config_hash = r.hash, status = "failed", evals = {} }
  end
end
local t = report.compute(runs, db, {})
local apache, gpl2 = t.cells["lora\0text:apache"], t.cells["lora\0text:gpl2"]
check(apache and apache.n == 2 and apache.failed == 2, "apache: 2 done, 2 failed")
check(gpl2 and gpl2.n == 1 and gpl2.failed == 2, "gpl2: the chosen lr has 1 done seed; 2 failed")
local md = report.render(t, { format = "markdown", title = "r" })
check(md:find("(2; 2 failed)", 1, true) ~= nil, "markdown cell counts failures: " .. md)
check(md:find("4 run(s) failed", 1, true) ~= nil, "markdown footnote: " .. md)
local csv = report.render(t, { format = "csv" })
check(csv:find(",failed\n", 1, true) ~= nil and csv:find(",2\n", 1, true) ~= nil, "csv failed column: " .. csv)
-- a cell whose runs all failed
local only_failed = {}
for _, r in ipairs(runs) do only_failed[#only_failed + 1] = { config_hash = r.hash, status = "failed", evals = {} } end
local t2 = report.compute(runs, only_failed, {})
local md2 = report.render(t2, { format = "markdown", title = "r" })
check(md2:find("— (4 failed)", 1, true) ~= nil, "all failed: " .. md2)

return checks.finish()
