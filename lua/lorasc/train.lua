-- The loops every task family shares when `lorasc run` trains: pretraining a base model
-- (progress lines; the cache and its atomic saves are cache.lua's) and fine-tuning (metrics
-- every log_every steps, expert-boundary events, the progress bar, periodic flushes).
-- What is trained on what is the families' (family_*.lua); the sweep is runner.lua's.
local sys = require "lorasc.core.sys"

local M = {}

function M.dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Runs `steps` pretraining steps (step() returns the loss), reporting five times.
-- Returns the start time and the last loss. LORASC_TEST_PRETRAIN_DELAY (seconds per step)
-- slows it down for the tests of the cache's lock.
function M.pretrain_steps(steps, report, step)
  local t0, loss = sys.now(), 0
  local delay = tonumber(os.getenv("LORASC_TEST_PRETRAIN_DELAY") or "")
  for i = 1, steps do
    loss = step()
    if delay then sys.sleep(delay) end
    if i % math.max(1, steps // 5) == 0 then
      report(string.format("  pretrain step %d/%d loss %.4f (%.1fs)", i, steps, loss, sys.now() - t0))
    end
  end
  return t0, loss
end

-- The fine-tuning loop of every model and task: one Lua call per step (step() returns
-- loss, grad_norm, lr and the expert-boundary event or nil), train.loss / lr / grad_norm every
-- log_every steps, boundary events as metrics, the progress bar, and a flush (which also
-- refreshes the heartbeat) at least every 10 s.
function M.loop(store, run, run_id, prog, total, step)
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

return M
