-- Long runs: a run's whole state (core/formats/finetune_state.h) saved under
-- <db dir>/state/<config hash>.ckpt every --checkpoint-every seconds, when a stop signal
-- arrives and at the end of its training once it has saved one, so that a killed or stopped
-- run resumes mid-way and, on the CPU, ends bit for bit as if it had never stopped. A claimed
-- run with such a state keeps the metrics it had logged when the state was saved and drops
-- the later ones. The stop signals (Ctrl-C, SIGTERM, SIGUSR1) end a run after its current
-- step; the runner then marks it interrupted and ends the sweep. The training loop itself is
-- train.lua's, the claim and the sweep runner.lua's.
local sys = require "lorasc.core.sys"

local M = { DEFAULT_EVERY = 300 }

-- The error a stop raises through the loops; the runner tells it from a failure.
local Stopped = { __tostring = function(e) return e.message end }

function M.is_stop(e) return getmetatable(e) == Stopped end

-- Raises a stop if a stop signal has arrived; `where` says what was under way.
function M.check(where)
  local sig, name = sys.stop_signal()
  if sig then
    error(setmetatable({ signal = sig, name = name, message = string.format("stopped by %s %s", name, where) }, Stopped), 0)
  end
end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

-- Where the state of the run with config hash `hash` lives, beside the database.
function M.path(db, hash) return dirname(db) .. "/state/" .. hash .. ".ckpt" end

-- A state loads only into the run that saved it, trained by the same build of lorasc.
local function key(hash) return hash .. " " .. (LORASC_BUILD_COMMIT or "unknown") end

-- Removes a run's state (and a half-written one a killed writer left).
function M.remove(db, hash)
  local path = M.path(db, hash)
  os.remove(path)
  os.remove(path .. ".tmp")
end

-- The state of a claimed run whose fine-tuning f has just been built: picks up the saved
-- state if the run was interrupted and its state loads (else the run starts from step 0, and
-- what an earlier attempt logged is cleared), and returns what train.loop needs:
-- { first = steps already done, every = seconds between saves, save = function(step) }.
-- claim.kept_log: the claim kept the earlier attempt's rows (a state file was there).
function M.start(store, run, claim, f, opts, say)
  local path, run_id = M.path(opts.db, run.hash), claim.run_id
  local st = { first = 0, every = opts.checkpoint_every or M.DEFAULT_EVERY }
  -- A state that cannot be written (a full disk) is reported and training goes on: the run
  -- then resumes from its previous state, if it has one. A stop needs it: then it raises.
  function st.save(step, must)
    store:flush() -- the state's metrics are in the database: those are the ones it keeps
    local ok, err = pcall(function()
      sys.mkdir(dirname(path))
      f:save_state(path, key(run.hash), store:log_count(run_id))
    end)
    if ok then st.saved = step
    elseif must then error(err, 0)
    else say(string.format("run %d: cannot save its state at step %d (%s); training goes on", run_id, step, tostring(err))) end
  end
  if not claim.kept_log then return st end
  local keep = 0
  if claim.prior == "interrupted" or claim.was_stale then
    local ok, mark, step = pcall(f.load_state, f, path, key(run.hash))
    if ok then
      st.first = step
      st.saved = st.first
      keep = mark
      local have = store:log_count(run_id)
      say(string.format("run %d resumes at step %d from its saved state %s%s", run_id, st.first, path,
        have < mark and string.format("; %d of the metric rows it had logged are missing from the database", mark - have) or ""))
    else
      say(string.format("run %d cannot resume from %s (%s): it starts again from step 0", run_id, path, tostring(mark)))
    end
  end
  if keep == 0 then M.remove(opts.db, run.hash) end -- not this attempt's to resume from
  store:rewind(run_id, keep)
  return st
end

return M
