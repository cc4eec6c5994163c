-- The loops every task family shares when `lorasc run` trains: pretraining a base model
-- (progress lines; the cache and its atomic saves are cache.lua's) and fine-tuning (metrics
-- every log_every steps, expert-boundary events, the progress bar, periodic flushes, the
-- run's state saved now and then and on a stop signal: resume.lua).
-- What is trained on what is the families' (family_*.lua); the sweep is runner.lua's.
local sys = require "lorasc.core.sys"
local resume = require "lorasc.resume"

local M = {}

function M.dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Divergence is a failure, not a score. A run diverges when its training loss or gradient
-- norm is not finite (nan, inf), or when, from step WINDOW on, the mean loss of its last
-- WINDOW steps exceeds factor x its start and is at least 1 nat above it (so a loss near zero
-- that wobbles is not called diverged). Its start is the lower of step 1's loss (the model
-- before any update) and the mean of its first WINDOW steps (a loss that explodes at step 2
-- is caught too). The second rule is off when factor is false (train.diverge /
-- pretrain.diverge; default canon.DIVERGE = 4) and needs at least WINDOW steps.
-- Returns watch(step, loss, grad_norm) -> nil, or the reason, and watched() -> what it has
-- seen as a list of numbers, which `saved` gives back to a watch that goes on from there (a
-- run resumed from its saved state watches as if it had never stopped).
M.DIVERGE_WINDOW = 10
local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end
function M.divergence(factor, saved)
  if factor == nil then factor = require("lorasc.canon").DIVERGE end
  local k, n, first, l1, ring = M.DIVERGE_WINDOW, 0, 0, nil, {}
  if saved and #saved >= 3 then
    n, first = math.tointeger(saved[1]) or 0, saved[2]
    if saved[3] == saved[3] then l1 = saved[3] end
    for i = 1, k do
      if saved[3 + i] ~= nil and saved[3 + i] == saved[3 + i] then ring[i] = saved[3 + i] end
    end
  end
  local function watched()
    local out = { n, first, l1 or 0 / 0 }
    for i = 1, k do out[3 + i] = ring[i] or 0 / 0 end
    return out
  end
  local function watch(step, loss, gnorm)
    if not finite(loss) then return string.format("the training loss is %s at step %d", tostring(loss), step) end
    if gnorm ~= nil and not finite(gnorm) then
      return string.format("the gradient norm is %s at step %d (the weights would become non-finite)", tostring(gnorm), step)
    end
    if not factor then return nil end
    n = n + 1
    l1 = l1 or loss
    if n <= k then first = first + loss end
    ring[(n - 1) % k + 1] = loss
    if n < k then return nil end
    local sum = 0
    for i = 1, k do sum = sum + ring[i] end
    local last, start = sum / k, math.min(l1, first / k)
    if last > factor * start and last > start + 1 then
      return string.format("the mean training loss of steps %d-%d (%.4g) is above %g x its start (%.4g, the lower of step %d's loss and the mean of steps %d-%d)",
                           step - k + 1, step, last, factor, start, step - n + 1, step - n + 1, step - n + k)
    end
  end
  return watch, watched
end

-- Runs `steps` pretraining steps (step() returns the loss, or nil on a GPU, where results()
-- reads the pending ones: { loss, grad_norm, ... }), reporting five times. A
-- diverged pretraining (the rule above, with pretrain.diverge) is an error: its model is
-- never cached. Returns the start time and the last loss. LORASC_TEST_PRETRAIN_DELAY
-- (seconds per step) slows it down for the tests of the cache's lock.
function M.pretrain_steps(steps, report, step, factor, results)
  local t0, loss = sys.now(), 0
  local watch = M.divergence(factor)
  local delay = tonumber(os.getenv("LORASC_TEST_PRETRAIN_DELAY") or "")
  local every = math.max(1, steps // 5)
  local function settle(i, l)
    local why = watch(i, l)
    if why then
      error(string.format("lorasc: the base model diverged in pretraining at step %d (%s); it is not cached: lower pretrain.lr, or set pretrain.diverge = false to keep it", i, why), 0)
    end
    loss = l
    if i % every == 0 then
      report(string.format("  pretrain step %d/%d loss %.4f (%.1fs)", i, steps, l, sys.now() - t0))
    end
  end
  -- on a GPU a step's loss stays on the device (step() returns nil): read at report steps,
  -- every READ_EVERY steps and at the end, then settled in order (as M.loop does)
  local pending = {}
  local function read_pending()
    if #pending == 0 then return end
    local got = results()
    assert(#got == 2 * #pending, "lorasc: the device returned the results of a different number of steps")
    local list = pending
    pending = {}
    for j, i in ipairs(list) do settle(i, got[2 * j - 1]) end
  end
  for i = 1, steps do
    resume.check(string.format("while pretraining the base model (step %d of %d; it starts again next time)", i - 1, steps))
    local l = step()
    if delay then sys.sleep(delay) end
    if l == nil then
      pending[#pending + 1] = i
      if i % every == 0 or #pending >= M.READ_EVERY then read_pending() end
    else
      settle(i, l)
    end
  end
  read_pending()
  return t0, loss
end

-- A base model is pretrained once per process: a pretraining that failed (diverged) fails
-- every later run that needs it with the same message, without pretraining again.
local failed_bases = {}
function M.pretrain_once(key, build)
  if failed_bases[key] then error(failed_bases[key], 0) end
  local res = table.pack(pcall(build))
  if not res[1] then
    failed_bases[key] = res[2]
    error(res[2], 0)
  end
  return table.unpack(res, 2, res.n)
end

-- The trained weights of model m are finite, else a divergence error naming what was done.
function M.check_weights(m, what)
  if not m:weights_finite() then
    error(string.format("lorasc: diverged: the weights hold non-finite values after %s", what), 0)
  end
end

-- Validation curves (eval.every = k): after every k-th training step (and its expert
-- boundary) the model as it is then (the base, with the cascade's merges and noise so far,
-- plus the fast adapter) is evaluated on the validation split by the family's own evaluation
-- (eval_split, the one the final evaluation uses: at the last step the point equals the final
-- val eval), and each metric is logged as "val.<metric>" at that step, with
-- "val.eval_seconds" (its cost, shown once per run). Constants of the split (a language
-- task's majority baseline and example count) are left out. curve() returns the list of
-- { metric, value }. Returns point(i) (which returns its seconds) and point.resume(): a run
-- resumed from a state saved at a curve step whose point is not in its kept log (a stop
-- during that evaluation saves the finished step first) evaluates that point before going
-- on, so its curve is the uninterrupted run's.
-- LORASC_TEST_CURVE_DELAY (seconds before each point) lets the tests stop a run in one.
function M.val_curve(store, run, run_id, prog, total, curve, state, watched)
  local every, shown = run.config.eval.every, false
  local delay = tonumber(os.getenv("LORASC_TEST_CURVE_DELAY") or "")
  local point = setmetatable({}, { __call = function(_, i)
    if delay then sys.sleep(delay) end
    local t0 = sys.now()
    local ok, list = pcall(curve)
    if not ok then
      if sys.stop_signal() then -- stopped mid-evaluation: step i is done, save it without its point
        state.save(i, true, watched())
        resume.check(string.format("after step %d of %d, in its validation point (its state is saved: `lorasc run` resumes it)", i, total))
      end
      error(list, 0)
    end
    for _, e in ipairs(list) do store:metric(run_id, i, "val." .. e[1], e[2]) end
    local dt = sys.now() - t0
    store:metric(run_id, i, "val.eval_seconds", dt)
    if not shown then
      shown = true
      prog:message(string.format("  validation curve: %.2f s per point, every %d steps (%d points in this run; eval.every in lua/DSL.md)",
                                 dt, every, total // every))
    end
    return sys.now() - t0 -- with its store writes and message
  end })
  function point.resume()
    local i = state.first
    if i == 0 or i % every ~= 0 then return end
    local kept = store:metric_rows(run_id, "val.eval_seconds")["val.eval_seconds"]
    if not kept or kept.steps[#kept.steps] ~= i then point(i) end
  end
  return point
end

-- The fine-tuning loop of every model and task: one Lua call per step (step() returns
-- loss, grad_norm, lr and the expert-boundary event or nil), train.loss / lr / grad_norm every
-- log_every steps, boundary events as metrics, the progress bar, and a flush (which also
-- refreshes the heartbeat) at least every 10 s. state (resume.start's; nil: none) makes the
-- loop run steps state.first + 1 .. total and save the run's state every state.every seconds
-- (0: never on a timer), when a stop signal has arrived (then it raises the stop) and after
-- the last step if it saved one before. curve (nil: none) is eval.every's validation point
-- (M.val_curve).
-- On a GPU a step's loss and gradient norm stay on the device: step() returns nil for both,
-- and results() reads those of every such step since the last read ({ loss, grad_norm, ... },
-- oldest first). The loop reads at each log step, before an expert boundary's metrics, a
-- validation point and a state save, and every READ_EVERY steps, then treats each step in
-- order as if it had just run (divergence watch, metrics, progress): the same rows, in the
-- same order; a divergence is found up to READ_EVERY - 1 steps late and still names its own
-- step.
M.READ_EVERY = 32
function M.loop(store, run, run_id, prog, total, step, state, curve, results)
  state = state or { first = 0, every = 0, save = function() end } -- nothing saved
  local delay = tonumber(os.getenv("LORASC_TEST_STEP_DELAY") or "")
  local last_flush, last_save = sys.now(), sys.now()
  local factor = run.config.train.diverge
  local watch, watched = M.divergence(factor, state.watched)
  local val_point = curve and M.val_curve(store, run, run_id, prog, total, curve, state, watched)
  if val_point then val_point.resume() end
  local function log_step(i) return i % run.log_every == 0 or i == 1 or i == total end
  local function settle(i, loss, gnorm, lr)
    local why = watch(i, loss, gnorm)
    if why then
      -- the step that diverged is logged, and the run fails with its step and reason
      store:metric(run_id, i, "train.loss", loss)
      store:metric(run_id, i, "grad_norm", gnorm)
      store:metric(run_id, i, "train.diverged_step", i)
      error(string.format("lorasc: diverged at step %d: %s; lower train.lr%s", i, why,
                          factor == false and "" or ", or set train.diverge = false to keep diverging runs"), 0)
    end
    if log_step(i) then
      store:metric(run_id, i, "train.loss", loss)
      store:metric(run_id, i, "lr", lr)
      store:metric(run_id, i, "grad_norm", gnorm)
    end
    prog:step(i, loss)
  end
  local pending = {} -- steps whose loss is still on the device: { step, lr }
  local function read_pending()
    if #pending == 0 then return end
    local got = results()
    assert(#got == 2 * #pending, "lorasc: the device returned the results of a different number of steps")
    local steps = pending
    pending = {}
    for j, p in ipairs(steps) do settle(p[1], got[2 * j - 1], got[2 * j], p[2]) end
  end
  -- train.seconds counts the steps, not the validation points between them (val.eval_seconds)
  local t_start, units, curve_seconds = sys.now(), 0, 0
  for i = state.first + 1, total do
    local loss, gnorm, lr, ev, u = step()
    -- what the step trained on: the tokens its forward ran (Llama), else a batch of images
    units = units + (u or run.config.train.batch or 0)
    local point = val_point and i % run.config.eval.every == 0
    if loss == nil then
      pending[#pending + 1] = { i, lr }
      if log_step(i) or ev or point or #pending >= M.READ_EVERY then read_pending() end
    else
      settle(i, loss, gnorm, lr)
    end
    if ev then
      store:metric(run_id, ev.step, "expert.end", ev.expert)
      store:metric(run_id, ev.step, "expert.merged_norm", ev.merged_norm)
      store:metric(run_id, ev.step, "expert.noise_std_mean", ev.noise_std_mean)
      store:metric(run_id, ev.step, "expert.boundary_seconds", ev.boundary_seconds)
    end
    if point then curve_seconds = curve_seconds + val_point(i) end
    if delay then sys.sleep(delay) end
    local stop = sys.stop_signal()
    if stop or (state.every > 0 and sys.now() - last_save >= state.every) then
      read_pending() -- the state holds the watch as of step i
      state.save(i, stop, watched())
      last_save, last_flush = sys.now(), sys.now()
    end
    if stop then resume.check(string.format("after step %d of %d (its state is saved: `lorasc run` resumes it)", i, total)) end
    if sys.now() - last_flush > 10 then
      store:flush()
      last_flush = sys.now()
    end
  end
  read_pending()
  -- the cost of training (the report's cost column): the wall seconds of the steps this
  -- attempt ran (without its validation points), and those seconds per token (per image for
  -- a ViT) they trained on. Both are timings (names ending in "seconds": what a resumed run
  -- may differ in); logged before the last state is saved, so a run resumed in its
  -- evaluation keeps them
  if total > state.first and units > 0 then
    local seconds = sys.now() - t_start - curve_seconds
    store:metric(run_id, total, "train.seconds", seconds)
    store:metric(run_id, total, "train.unit_seconds", seconds / units)
  end
  -- an evaluation stopped later need not train again
  if state.saved and state.saved < total then state.save(total, false, watched()) end
end

return M
