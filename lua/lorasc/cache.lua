-- The base-model cache (<results>/cache/, `lorasc run --results DIR`): pretrained base
-- models, one file per key (the hash of the model's canonical config and of its corpus's
-- contents), shared by every run, process, shard and node that needs the same base.
--   * one builder: a process that needs a base absent from the cache takes NAME.lock
--     (created exclusively, holding its pid, host and start time) and builds it; the others
--     wait for it and load the result. A lock whose process is gone (same host, pid dead) or
--     whose builder stopped refreshing it for STALE_S seconds (any host) is taken over.
--   * a cache file that does not load (corrupt, truncated) is discarded and built again
--     under the lock, so it never fails every run;
--   * files left by a writer killed mid-save (NAME.PID.HOST.part and its .tmp) are removed.
-- What is built and how it is loaded is the families' (family_text.lua, family_image.lua).
local sys = require "lorasc.core.sys"
local fs = require "lorasc.core.fs"

local M = {}

M.STALE_S = 600   -- a lock not refreshed for this long is abandoned (its builder's host is down)
M.LEFTOVER_S = 3600 -- a partial file this old is a leftover whatever its pid
M.BEAT_S = 30     -- how often a builder refreshes its lock

local host = sys.hostname()
local pid = sys.getpid()

-- The name a writer saves to before renaming into place: NAME.PID.HOST.part (the checkpoint
-- writer itself writes that .tmp first).
function M.part_name(path)
  return string.format("%s.%d.%s.part", path, pid, (host:gsub("[^%w%-_]", "_")))
end

-- Saves m (a model with :save) at path atomically: written beside it, then renamed. Several
-- processes may do this for one path: the contents are the same (pretraining is deterministic).
function M.save_atomic(m, path)
  local tmp = M.part_name(path)
  m:save(tmp)
  local ok, err = os.rename(tmp, path)
  if not ok then
    os.remove(tmp)
    error("cannot move the pretrained checkpoint into place: " .. tostring(err), 0)
  end
end

-- Removes what killed writers left in dir: NAME.PID.HOST.part[.tmp] of a dead local process
-- or older than LEFTOVER_S, any other *.tmp older than LEFTOVER_S, and NAME.PID files of
-- earlier lorasc versions whose (local) process is gone. Returns the names removed.
local cleaned = {}
function M.clean(dir, report)
  if cleaned[dir] then return {} end
  cleaned[dir] = true
  local removed = {}
  local now = os.time()
  for _, name in ipairs(fs.list(dir) or {}) do
    local path = dir .. "/" .. name
    local st = fs.stat(path)
    local old = st and now - st.mtime > M.LEFTOVER_S
    local p, h = name:match("%.(%d+)%.([%w%-_]+)%.part$")
    if not p then p, h = name:match("%.(%d+)%.([%w%-_]+)%.part%.tmp$") end
    local legacy = name:match("%.ckpt%.(%d+)$") or name:match("%.ckpt%.(%d+)%.tmp$")
    local dead
    if p then
      dead = h == (host:gsub("[^%w%-_]", "_")) and not fs.pid_alive(tonumber(p))
    elseif legacy then
      dead = not fs.pid_alive(tonumber(legacy))
    end
    if st and not st.dir and ((p or legacy or name:match("%.tmp$")) and (dead or old)) then
      if os.remove(path) then removed[#removed + 1] = name end
    end
  end
  if #removed > 0 and report then
    report(string.format("removed %d file(s) left in %s by killed writers: %s", #removed, dir, table.concat(removed, ", ")))
  end
  return removed
end

local function read_lock(lock)
  local f = io.open(lock, "r")
  if not f then return nil end
  local text = f:read("a") or ""
  f:close()
  local p, h, t = text:match("^pid (%d+) host (%S+) since (%d+)")
  return { pid = tonumber(p), host = h, since = tonumber(t), text = text }
end

-- Why the lock is abandoned, or nil while its builder may still be at work.
local function lock_stale(lock, info)
  local st = fs.stat(lock)
  if not st then return nil end -- gone meanwhile: not ours to judge
  local age = os.time() - st.mtime
  if info and info.pid and info.host == host and not fs.pid_alive(info.pid) then
    return string.format("its builder, process %d on %s, is gone", info.pid, host)
  end
  if age > M.STALE_S then
    return string.format("it was last refreshed %d s ago", age)
  end
  if (not info or not info.pid) and age > 10 then return "it is unreadable" end
  return nil
end

-- Tries to load path; nil and the error if it does not load.
local function try_load(load, path)
  local ok, m = pcall(load, path)
  if ok then return m end
  return nil, tostring(m)
end

-- The cached object named name in dir, built if absent or unreadable: returns the loaded
-- object, its path, and build's result when this process built it (nil otherwise).
--   build(path, beat): makes the file at path (with M.save_atomic); calls beat() often (it
--     refreshes the lock every BEAT_S seconds).
--   load(path): loads it; an error means the file is unusable.
--   report(msg): progress lines.
function M.get(dir, name, build, load, report)
  sys.mkdir(dir)
  M.clean(dir, report)
  local path = dir .. "/" .. name
  local bad -- the stat of a file found unreadable, to tell it from a rebuilt one
  if sys.exists(path) then
    local m, err = try_load(load, path)
    if m then return m, path end
    report(string.format("the cached base model %s does not load (%s): discarding it and building it again", path, err))
    bad = fs.stat(path)
  end
  local lock = path .. ".lock"
  local waited, delay, t0 = false, 0.05, sys.now()
  while true do
    if fs.create_excl(lock, string.format("pid %d host %s since %d\n", pid, host, os.time())) then break end
    -- someone holds it: its result may be there already
    local st = sys.exists(path) and fs.stat(path)
    if st and not (bad and st.ino == bad.ino and st.mtime_ns == bad.mtime_ns) then
      local m = try_load(load, path)
      if m then
        if waited then report(string.format("  the base model is ready (waited %.1f s)", sys.now() - t0)) end
        return m, path
      end
    end
    local info = read_lock(lock)
    local why = lock_stale(lock, info)
    if why then
      report(string.format("taking over the lock %s: %s", lock, why))
      os.remove(lock) -- a racing taker may remove ours too: then both build, and the rename keeps one
    else
      if not waited then
        report(string.format("waiting for %s, which is building the base model %s",
          info and info.pid and string.format("process %d on %s", info.pid, info.host) or "another process", path))
        waited = true
      end
      sys.sleep(delay)
      delay = math.min(delay * 2, 1.0)
      require("lorasc.resume").check("while waiting for another process to build the base model")
    end
  end
  local last_beat = sys.now()
  local function beat()
    if sys.now() - last_beat >= M.BEAT_S then
      fs.touch(lock)
      last_beat = sys.now()
    end
  end
  local ok, m, built = pcall(function()
    local st = sys.exists(path) and fs.stat(path)
    if st and not (bad and st.ino == bad.ino and st.mtime_ns == bad.mtime_ns) then
      local got = try_load(load, path) -- built by another process meanwhile
      if got then
        if waited then report(string.format("  the base model is ready (waited %.1f s)", sys.now() - t0)) end
        return got
      end
    end
    if st then os.remove(path) end
    local result = build(path, beat)
    local got, err = try_load(load, path)
    if not got then error(string.format("the base model just built at %s does not load: %s", path, err), 0) end
    return got, result
  end)
  os.remove(lock)
  if not ok then error(m, 0) end
  return m, path, built
end

return M
