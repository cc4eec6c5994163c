-- Files' SHA-256 kept across processes (<results>/cache/file_hashes*.tsv), so that a command
-- on a large input hashes it once, not every time: `lorasc status` on ImageNet's 1.4 million
-- images (~150 GB) or on a 13 GB checkpoint, each Slurm shard of a sweep over them (the
-- submitting command fills it: slurm.lua). What provenance.lua asks of it is only ever a
-- shortcut: a miss hashes the file.
--
-- An entry is trusted only while the file is the one that was hashed: the same path, size,
-- modification time, inode and inode change time (ctime: set by the kernel on every write,
-- rename or touch, so a file rewritten with its old size and its mtime put back still
-- misses). A file changed in the last seconds before it was hashed is not recorded: it may
-- still be being written within one timestamp tick ("racily clean", as git calls it).
--
-- The file: a header line, then one line per file, `SHA256 SIZE MTIME_NS CTIME_NS INO PATH`.
-- A save rereads it and writes the union (this process's entries win) to a temporary file
-- renamed into place, so concurrent writers (shards, nodes) never leave a torn file; the
-- worst they do is drop each other's new entries, which are hashed again later. Lines that
-- do not parse (a file cut short, edited) are ignored. Deleting the file is always safe.
local sys = require "lorasc.core.sys"
local cache = require "lorasc.cache"

local M = {}

local HEADER = "# lorasc file hashes v1: SHA256 SIZE MTIME_NS CTIME_NS INO PATH (a cache: safe to delete)"
M.RECENT_S = 2 -- a file changed this recently is hashed but not recorded

local function stat_key(st)
  return string.format("%d %d %d %d", st.size, st.mtime_ns, st.ctime_ns, st.ino)
end

-- path -> "SIZE MTIME_NS CTIME_NS INO SHA256" of the lines of the file at `file` that parse.
local function read_entries(file, into)
  local f = io.open(file, "r")
  if not f then return into end
  for line in f:lines() do
    local sha, key, path = line:match("^(%x+) (%d+ %d+ %d+ %d+) (/.+)$")
    if sha and #sha == 64 then into[path] = key .. " " .. sha end
  end
  f:close()
  return into
end

-- A cache kept at `file` (read at the first lookup; nothing is written before save).
function M.new(file)
  return setmetatable({ file = file, entries = nil, added = {} }, { __index = M })
end

function M:load()
  if not self.entries then self.entries = read_entries(self.file, {}) end
  return self.entries
end

-- The SHA-256 recorded for the absolute path whose stat is st (fs.stat's), or nil.
function M:lookup(path, st)
  local e = self:load()[path]
  if not e then return nil end
  local key = stat_key(st)
  if e:sub(1, #key + 1) ~= key .. " " then return nil end
  return e:sub(#key + 2)
end

-- Records sha256 as the hash of path, whose stat st was taken before it was hashed and
-- `bytes` were read; returns whether it was (not when the file changed while it was read,
-- or just before: RECENT_S; not a relative path, nor one with a line break).
function M:record(path, st, sha256, bytes)
  if bytes ~= st.size or path:sub(1, 1) ~= "/" or path:find("[\r\n]") then return false end
  local newest = math.max(st.mtime_ns, st.ctime_ns) // 1000000000
  if newest >= os.time() - M.RECENT_S then return false end
  local e = stat_key(st) .. " " .. sha256
  self:load()[path] = e
  self.added[path] = e
  return true
end

-- Writes the file if entries were recorded since the last save: the union of what is there
-- now and this process's entries, through a temporary file and a rename. A cache that
-- cannot be written (a read-only results directory) is left as it is, in silence: the
-- commands are right without it, only slower. Returns whether it was written.
function M:save()
  if next(self.added) == nil then return false end
  local dir = self.file:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then pcall(sys.mkdir, dir) end
  local all = read_entries(self.file, {})
  for path, e in pairs(self.added) do all[path] = e end
  local paths = {}
  for path in pairs(all) do paths[#paths + 1] = path end
  table.sort(paths)
  -- the cache directory's name for a file being written: cache.clean removes a killed writer's
  local tmp = cache.part_name(self.file)
  local f = io.open(tmp, "w")
  if not f then return false end
  local ok = f:write(HEADER, "\n")
  for _, path in ipairs(paths) do
    if not ok then break end
    local key, sha = all[path]:match("^(%d+ %d+ %d+ %d+) (%x+)$")
    ok = f:write(sha, " ", key, " ", path, "\n")
  end
  ok = f:close() and ok
  if not ok or not os.rename(tmp, self.file) then
    os.remove(tmp)
    return false
  end
  self.entries, self.added = all, {}
  return true
end

return M
