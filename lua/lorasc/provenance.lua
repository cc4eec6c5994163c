-- What made a result: the code (the commit and dirty flag this lorasc was built from) and the
-- inputs (every data file and checkpoint a run reads, by SHA-256). A stored done run whose
-- code or inputs differ from what a run would use now is stale: never reused silently
-- (`lorasc run` counts them and reruns them with --rerun-stale, `status` lists them, `report`
-- keeps commits apart). Which files a run reads is its family's (F.inputs); the store keeps
-- them (run_inputs, runs.inputs_sha256; core/store/STORE.md).
local sys = require "lorasc.core.sys"
local fs = require "lorasc.core.fs"

local M = {}

-- The commit this binary was built from (compiled in by meson's vcs_tag), never what the
-- source tree says at run time: (commit, dirty 0/1), or (nil, 0) outside a git checkout.
function M.build_commit()
  local tag = LORASC_BUILD_COMMIT or "unknown"
  local commit = tag:match("^(%x+)")
  if not commit or #commit ~= 40 then return nil, 0 end
  return commit, tag:find("+dirty", 1, true) and 1 or 0
end

-- "0123abcd…" (12 digits) with "+dirty", or "unknown": how reports and messages name a
-- code version.
function M.code_name(commit, dirty)
  if not commit then return "unknown" end
  return commit:sub(1, 12) .. ((dirty == 1) and "+dirty" or "")
end

function M.current_code()
  return M.code_name(M.build_commit())
end

-- The hash caches across processes (hash_cache.lua) in the directory a command named
-- (M.use_hash_cache; nil: every process hashes what it reads): file_hashes.tsv for single
-- files (checkpoints, text files), and one file per folder hashed as a tree (an image
-- folder: file_hashes-<its real path's hash>.tsv), so that a command loads ImageNet's 1.4
-- million entries only when it takes ImageNet's hash.
local cache_dir, caches = nil, {}

-- Keeps files' hashes in dir (<results>/cache) from now on.
function M.use_hash_cache(dir)
  cache_dir, caches = dir, {}
end

-- The cache of the tree at real path `tree` (nil: of single files); nil without a cache dir.
local function cache_for(tree)
  if not cache_dir then return nil end
  local key = tree or ""
  if not caches[key] then
    local name = tree and ("file_hashes-" .. sys.sha256(tree):sub(1, 16) .. ".tsv") or "file_hashes.tsv"
    caches[key] = require("lorasc.hash_cache").new(cache_dir .. "/" .. name)
  end
  return caches[key]
end

-- Writes the hashes this process made to the caches (M.use_hash_cache), if any.
function M.save_hash_cache()
  for _, c in pairs(caches) do c:save() end
end

-- SHA-256 of a file, remembered per process by (path, size, modification time), and across
-- processes by a hash cache (`disk`, or the single files' one) under the file's real path
-- (`real`, or fs.realpath's: the same file reached through another LORASC_DATA, a symbolic
-- link or a relative path is one entry): a sweep hashes each file once, and a large input
-- is hashed once for every later command.
local memo = {}
local function hash(path, real, disk)
  local st = fs.stat(path)
  if not st then return nil end
  local key = string.format("%s|%d|%d|%d", path, st.size, st.mtime_ns, st.ino)
  if not memo[key] then
    disk = disk or cache_for(nil)
    real = disk and (real or fs.realpath(path))
    local hex = real and disk:lookup(real, st)
    local bytes = st.size
    if not hex then
      hex, bytes = fs.sha256(path)
      if real then disk:record(real, st, hex, bytes) end
    end
    memo[key] = { sha256 = hex, bytes = bytes }
  end
  return memo[key]
end

-- SHA-256 of a file's contents (remembered as above), or nil if it does not exist.
function M.file_sha256(path)
  local h = hash(path)
  return h and h.sha256
end

-- The regular files under dir (recursively), sorted.
local function files_under(dir, out)
  local names = fs.list(dir) or {}
  table.sort(names)
  for _, n in ipairs(names) do
    local p = dir .. "/" .. n
    local st = fs.stat(p)
    if st and st.dir then files_under(p, out)
    elseif st and n ~= "SOURCE.txt" then out[#out + 1] = p end -- SOURCE.txt: the mirror's notes, never read
  end
  return out
end

-- A directory as one hash: its files' paths under it and their hashes, in order
-- ({ sha256, bytes = their total }). Taken once per directory and process: every command
-- takes the inputs of all its runs at one moment (a sweep before its first run), and an
-- image folder's walk is a million stat calls.
local trees = {}
local function tree_hash(dir)
  if trees[dir] then return trees[dir] end
  local lines, bytes = {}, 0
  local real = cache_dir and fs.realpath(dir) -- one realpath for the tree, not one per file
  local disk = real and cache_for(real)
  for _, p in ipairs(files_under(dir, {})) do
    local h = hash(p, real and real .. p:sub(#dir + 1), disk)
    lines[#lines + 1] = p:sub(#dir + 2) .. " " .. (h and h.sha256 or "missing")
    bytes = bytes + (h and h.bytes or 0)
  end
  trees[dir] = { sha256 = sys.sha256(table.concat(lines, "\n")), bytes = bytes }
  return trees[dir]
end

-- SHA-256 of a file's contents, or of a directory's files (tree_hash); nil if it does not
-- exist.
function M.path_sha256(path)
  local st = fs.stat(path)
  local h
  if st and st.dir then h = tree_hash(path).sha256 else h = M.file_sha256(path) end
  M.save_hash_cache()
  return h
end

-- How a file is named in the fingerprint: relative to the data directory when under it,
-- else its base name, so that the same files elsewhere (another node's mount, another
-- LORASC_DATA) give the same fingerprint.
local function portable_name(path)
  local root = sys.datadir_path("")
  root = root:sub(-1) == "/" and root or root .. "/"
  if path:sub(1, #root) == root then return path:sub(#root + 1) end
  return path:match("([^/]+)$") or path
end

-- The run's inputs now: { list = { {path, kind, sha256, bytes}, ... } sorted by kind and path,
-- fingerprint = hex } (files that do not exist are left out: the run itself says so when it
-- loads them). Directories (Hugging Face checkpoints, a language task's folder) stand for
-- every file under them, one entry each; a family's `tree = true` directory (an image folder:
-- ImageNet's 1.4 million files would be as many store rows per run) is one entry, its
-- tree_hash, so a change inside it is named by the folder.
function M.inputs(run)
  local fam = require("lorasc.families")[run.family] -- lazily: the families use this module
  local wanted = fam.inputs and fam.inputs(run) or {}
  local list, seen = {}, {}
  local function add(path, kind, h)
    if seen[path] then return end
    seen[path] = true
    h = h or hash(path)
    if h then list[#list + 1] = { path = path, kind = kind, sha256 = h.sha256, bytes = h.bytes } end
  end
  for _, w in ipairs(wanted) do
    local st = w.path and fs.stat(w.path)
    if st and st.dir and w.tree then
      add(w.path, w.kind, tree_hash(w.path))
    elseif st and st.dir then
      for _, p in ipairs(files_under(w.path, {})) do add(p, w.kind) end
    elseif st then
      add(w.path, w.kind)
    end
  end
  table.sort(list, function(a, b) return a.kind < b.kind or (a.kind == b.kind and a.path < b.path) end)
  local lines = {}
  for _, i in ipairs(list) do lines[#lines + 1] = string.format("%s %s %s", i.kind, portable_name(i.path), i.sha256) end
  table.sort(lines)
  M.save_hash_cache()
  return { list = list, fingerprint = sys.sha256(table.concat(lines, "\n")) }
end

-- Why a stored done run is stale against the current code and inputs, or nil if it is not.
-- db_run: a row of store:runs(); inputs: M.inputs(run). With a store, names the files that
-- changed (their recorded and current hashes differ, or one side lacks them).
function M.stale_reason(db_run, inputs, store)
  if db_run.status ~= "done" then return nil end
  local commit, dirty = M.build_commit()
  local then_dirty = db_run.git_commit and db_run.git_dirty or -1
  local now_dirty = commit and dirty or -1
  local reasons = {}
  if db_run.git_commit ~= commit or then_dirty ~= now_dirty then
    reasons[#reasons + 1] = string.format("code: made by %s, this lorasc is %s",
      M.code_name(db_run.git_commit, db_run.git_dirty), M.code_name(commit, dirty))
  end
  if db_run.inputs_sha256 ~= inputs.fingerprint then
    if not db_run.inputs_sha256 then
      reasons[#reasons + 1] = "data: its inputs were not recorded"
    else
      local changed = {}
      if store then
        local before = {}
        for _, i in ipairs(store:run_inputs(db_run.id)) do
          if i.kind ~= "base" then before[portable_name(i.path)] = i.sha256 end
        end
        for _, i in ipairs(inputs.list) do
          local name = portable_name(i.path)
          if before[name] ~= i.sha256 then changed[#changed + 1] = name end
          before[name] = nil
        end
        for name in pairs(before) do changed[#changed + 1] = name .. " (gone)" end
        table.sort(changed)
      end
      reasons[#reasons + 1] = "data: " .. (#changed > 0 and (table.concat(changed, ", ", 1, math.min(#changed, 3)) ..
        (#changed > 3 and string.format(" and %d more", #changed - 3) or "") .. " changed") or "other inputs")
    end
  end
  return #reasons > 0 and table.concat(reasons, "; ") or nil
end

return M
