-- Progress of a sweep: a one-line bar with ETA (sweep and current run: epoch, step, loss)
-- redrawn in place on a TTY, plain periodic lines otherwise (CI logs). Writes to stderr.
local sys = require "lorasc.core.sys"

local M = {}
M.__index = M

local function fmt_time(s)
  if not s or s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%dh%02dm", s // 3600, (s % 3600) // 60) end
  if s >= 60 then return string.format("%dm%02ds", s // 60, s % 60) end
  return string.format("%ds", s)
end
M.fmt_time = fmt_time

-- n_runs runs to train in this sweep (every experiment of the file; runs done already are
-- not counted), total_steps their steps. The ETA is measured on training steps alone (the
-- one-off pretraining of a base model is not a step, and happens before a run starts) plus
-- the mean time a run spends outside its steps (evaluation), for the runs still to come.
function M.new(n_runs, total_steps, quiet)
  local tty = os.getenv("LORASC_PROGRESS") ~= "plain" and sys.isatty(2)
  return setmetatable({ n_runs = n_runs, steps_left = total_steps or 0, tty = tty, quiet = quiet,
                        index = 0, steps_done = 0, train_time = 0, runs_ended = 0, overhead = 0,
                        last_draw = 0, last_line = 0 }, M)
end

function M:message(text)
  if self.tty then io.stderr:write("\r\27[K") end
  io.stderr:write(text, "\n")
  io.stderr:flush()
end

function M:run_start(index, label, total_steps, steps_per_epoch)
  self.index, self.label, self.total, self.spe = index, label, total_steps, steps_per_epoch
  self.run_t0 = sys.now()
  self.last_t = self.run_t0
  self.run_train_time = 0
  self.last_line = 0
  if not self.tty then self:message(string.format("[%d/%d] %s: %d steps", index, self.n_runs, label, total_steps)) end
end

-- Seconds left: of this run (its steps), and of the sweep (every step still to train, and
-- the mean evaluation time of each run still to finish).
function M:eta(step)
  local per_step = self.steps_done > 0 and self.train_time / self.steps_done or 0 / 0
  local overhead = self.runs_ended > 0 and self.overhead / self.runs_ended or 0
  local run_left = (self.total - step) * per_step
  local sweep_left = (self.steps_left - step) * per_step + (self.n_runs - self.index + 1) * overhead
  return run_left, sweep_left
end

function M:step(step, loss)
  local now = sys.now()
  self.steps_done = self.steps_done + 1
  self.train_time = self.train_time + (now - self.last_t)
  self.run_train_time = self.run_train_time + (now - self.last_t)
  self.last_t = now
  local run_left, sweep_left = self:eta(step)
  local epoch = self.spe and self.spe > 0 and ((step - 1) // self.spe + 1) or 1
  local epochs = self.spe and self.spe > 0 and ((self.total - 1) // self.spe + 1) or 1
  if self.tty then
    if now - self.last_draw < 0.1 and step < self.total then return end
    self.last_draw = now
    local width = 20
    local frac = (self.index - 1 + step / self.total) / self.n_runs
    local fill = math.floor(frac * width + 0.5)
    io.stderr:write(string.format("\r\27[K[%s%s] run %d/%d ETA %s | %s epoch %d/%d step %d/%d loss %.4f ETA %s",
      string.rep("#", fill), string.rep(".", width - fill), self.index, self.n_runs, fmt_time(sweep_left),
      self.label, epoch, epochs, step, self.total, loss, fmt_time(run_left)))
    io.stderr:flush()
  else
    if now - self.last_line >= 5 or step == self.total then
      self.last_line = now
      self:message(string.format("[%d/%d] %s epoch %d/%d step %d/%d loss %.4f (run ETA %s, sweep ETA %s)",
        self.index, self.n_runs, self.label, epoch, epochs, step, self.total, loss, fmt_time(run_left), fmt_time(sweep_left)))
    end
  end
end

-- A run of total_steps ended (done or failed): its steps leave the sweep's count, and its
-- time outside the steps (evaluation) joins the mean overhead. A run that failed before it
-- started (no run_start) counts no overhead.
function M:run_end(text, total_steps)
  if self.run_t0 then
    self.overhead = self.overhead + math.max(0, sys.now() - self.run_t0 - self.run_train_time)
    self.runs_ended = self.runs_ended + 1
  end
  self.run_t0 = nil
  self.steps_left = self.steps_left - (total_steps or 0)
  self:message(string.format("[%d/%d] %s", self.index or 0, self.n_runs, text))
end

-- A run another process did meanwhile: its steps leave the count.
function M:skip(total_steps)
  self.steps_left = self.steps_left - (total_steps or 0)
end

return M
