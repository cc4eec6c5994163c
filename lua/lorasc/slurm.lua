-- `lorasc slurm FILE`: a sweep on a Slurm cluster. Writes into <db dir>/slurm/<name>/
--   array.sbatch  an array job of N tasks; task i runs `lorasc run FILE --shard i/N` into its
--                 own database, shard-i-of-N.db (SQLite's WAL needs shared memory, which a
--                 network file system does not give across nodes: no two nodes ever write
--                 one database file);
--   merge.sbatch  merges the shards into the experiment's database, then prints its status
--                 and report;
--   submit.sh     submits both, the merge depending on the array with afterany (it runs once
--                 every task has ended, whether done, failed or preempted);
--   done.txt      the config hashes of the runs already done in the database, left out
--                 before the shards are cut (`lorasc run --skip-hashes`);
-- and with --submit runs submit.sh. Resubmitting (this command again) reruns only what is not
-- done: what the database holds is listed in done.txt, and each shard's database remembers
-- its own done runs when a merge did not happen. The scripts name everything by absolute
-- path, so they run from any directory. Submitting is sbatch's; nothing here talks to Slurm
-- otherwise (but squeue, to refuse to touch a sweep whose jobs are still queued).
local sys = require "lorasc.core.sys"
local fs = require "lorasc.core.fs"
local provenance = require "lorasc.provenance"
local store_mod = require "lorasc.core.store"

local M = {}

local function fail(msg) error("lorasc: " .. msg, 0) end

-- A word for sh, quoted.
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- An absolute path (the file need not exist; its directory must).
local function absolute(path)
  local dir, base = path:match("^(.*)/([^/]*)$")
  if not dir then dir, base = ".", path end
  if dir == "" then dir = "/" end
  local real, err = fs.realpath(dir)
  if not real then fail("slurm: " .. err) end
  return (real == "/" and "" or real) .. "/" .. base
end

-- The positive integer option opt (nil if not given).
local function count(opts, key, flag)
  if opts[key] == nil then return nil end
  local n = math.tointeger(tonumber(opts[key]))
  if not n or n < 1 then fail(string.format("%s must be a positive integer, got '%s'", flag, tostring(opts[key]))) end
  return n
end

-- The runs of `list` (load_experiments' result) already done in the database and not to be
-- run again: done, and (with --rerun-stale) made by this code from the files now.
local function done_hashes(list, db, opts)
  local done = {}
  if not sys.exists(db) then return done end
  local store <close> = store_mod.open(db)
  for _, e in ipairs(list) do
    local id = store:experiment_find(e.name)
    local by_hash = {}
    if id then
      for _, r in ipairs(store:runs(id, { "done" })) do by_hash[r.config_hash] = r end
    end
    for _, r in ipairs(e.runs) do
      local row = by_hash[r.hash]
      if row and not (opts.rerun_stale and provenance.stale_reason(row, provenance.inputs(r))) then
        done[#done + 1] = r.hash
      end
    end
  end
  return done
end

local function write(path, text, mode)
  local f, err = io.open(path, "w")
  if not f then fail("slurm: cannot write " .. tostring(err)) end
  f:write(text)
  f:close()
  if mode then os.execute("chmod " .. mode .. " " .. q(path)) end
end

-- Options of `lorasc run` every task repeats.
local function run_options(opts)
  local o = {}
  if opts.experiment then o[#o + 1] = "--experiment " .. q(opts.experiment) end
  if opts.device then o[#o + 1] = "--device " .. opts.device end -- else the experiments' own
  if opts.rerun_failed then o[#o + 1] = "--rerun-failed" end
  if opts.rerun_stale then o[#o + 1] = "--rerun-stale" end
  return table.concat(o, " ")
end

-- The #SBATCH lines both jobs share.
local function sbatch_common(opts, cwd)
  local l = { "#SBATCH --chdir=" .. cwd, "#SBATCH --open-mode=append" }
  if opts.partition then l[#l + 1] = "#SBATCH --partition=" .. opts.partition end
  if opts.time then l[#l + 1] = "#SBATCH --time=" .. opts.time end
  return table.concat(l, "\n")
end

-- Writes the scripts (and submits them with opts.submit). list: the experiments as
-- load_experiments gives them; file: FILE as given.
function M.main(list, file, opts)
  local total = 0
  for _, e in ipairs(list) do total = total + #e.runs end
  local n_want = count(opts, "array", "--array")
  local gpus = count(opts, "gpus_per_task", "--gpus-per-task")
  local cpus = count(opts, "cpus_per_task", "--cpus-per-task")
  if opts.shard then fail("slurm: --shard is chosen per array task; give the number of tasks with --array N") end
  for _, k in ipairs { "partition", "time" } do
    if opts[k] and not tostring(opts[k]):match("^[%w%-_.:,+/]+$") then
      fail(string.format("slurm: --%s '%s' has characters Slurm does not take in that option", k, opts[k]))
    end
  end
  -- --db DIR (an existing directory, or a path ending in /) means DIR/lorasc.db
  local db = opts.db
  if db:sub(-1) == "/" or (fs.stat(db) or {}).dir then db = db:gsub("/+$", "") .. "/lorasc.db" end
  local db_dir = db:match("^(.*)/[^/]*$") or "."
  sys.mkdir(db_dir)
  db = absolute(db)
  db_dir = db:match("^(.*)/[^/]*$")
  local results = absolute(opts.results or db_dir)
  local file_abs = absolute(file)
  local stem = (file:match("([^/]+)$") or file):gsub("%.lua$", ""):gsub("[^%w%-_.]", "_")
  local name = stem .. (opts.experiment and ("-" .. opts.experiment:gsub("[^%w%-_.]", "_")) or "")
  local dir = db_dir .. "/slurm/" .. name
  local job = "lorasc-" .. name .. "-" .. sys.sha256(dir):sub(1, 6)
  local cwd = fs.realpath(".")
  local data = sys.datadir_path("")
  data = data:sub(1, 1) == "/" and data or (cwd .. "/" .. data)
  data = (fs.realpath(data) or data)

  -- jobs of this sweep still queued would read the done list and the shards about to change
  local sq = io.popen("squeue -h -o %i -n " .. q(job .. "," .. job .. "-merge") .. " 2>/dev/null")
  local queued = sq and sq:read("a") or ""
  if sq then sq:close() end
  if queued:match("%S") then
    fail(string.format("slurm: jobs of this sweep are still queued or running (%s); wait for them, or scancel them, before writing or submitting it again",
      queued:gsub("%s+", " "):match("^%s*(.-)%s*$")))
  end
  provenance.use_hash_cache(results .. "/cache") -- the shards' (--results)
  local done = done_hashes(list, db, opts)
  local todo = total - #done
  -- Every shard takes its runs' inputs before its first run: hashed here, once, the shards
  -- find them in the cache instead of each reading them all (ImageNet: ~150 GB per shard).
  if todo > 0 then
    io.stderr:write(string.format("lorasc slurm: taking the inputs' hashes of %d run(s) once for the shards (kept in %s/cache)\n", todo, results))
  end
  local is_done = {}
  for _, h in ipairs(done) do is_done[h] = true end
  for _, e in ipairs(list) do
    for _, r in ipairs(e.runs) do
      if not is_done[r.hash] then provenance.inputs(r) end
    end
  end
  local n = math.min(n_want or 16, math.max(todo, 1))
  sys.mkdir(dir .. "/logs")
  write(dir .. "/done.txt", table.concat(done, "\n") .. (#done > 0 and "\n" or ""))
  local shard_db = function(i) return string.format("%s/shard-%s-of-%d.db", dir, i, n) end
  local exe = fs.exe()
  local env = string.format("export LORASC_DATA=%s\nexport LORASC_PROGRESS=plain", q(data))
  local header = string.format("# Written by `lorasc slurm` on %s for %s: %d runs, %d done in %s, the other %d in %d shards.\n# lorasc %s, commit %s.",
    os.date("!%Y-%m-%dT%H:%M:%SZ"), file_abs, total, #done, db, todo, n, LORASC_VERSION, provenance.current_code())

  local array = { "#!/bin/bash", header,
    "# Task i runs the runs i, i+N, ... of those not listed in done.txt into its own database.",
    "#SBATCH --job-name=" .. job,
    string.format("#SBATCH --array=1-%d", n),
    "#SBATCH --output=" .. dir .. "/logs/shard-%a-of-" .. n .. ".log",
    sbatch_common(opts, cwd) }
  if cpus then array[#array + 1] = "#SBATCH --cpus-per-task=" .. cpus end
  if gpus then array[#array + 1] = "#SBATCH --gpus-per-task=" .. gpus end
  array[#array + 1] = "set -eu\n" .. env
  array[#array + 1] = string.format("exec %s run %s --shard \"${SLURM_ARRAY_TASK_ID}/%d\" --db %s --results %s --skip-hashes %s --threads \"${SLURM_CPUS_PER_TASK:-1}\" %s",
    q(exe), q(file_abs), n, q(dir) .. "/shard-\"${SLURM_ARRAY_TASK_ID}\"-of-" .. n .. ".db", q(results),
    q(dir .. "/done.txt"), run_options(opts))
  write(dir .. "/array.sbatch", table.concat(array, "\n") .. "\n")

  local exp_opt = opts.experiment and (" --experiment " .. q(opts.experiment)) or ""
  local merge = { "#!/bin/bash", header,
    "# Merges the shards' databases into the experiment's, then prints its status and report.",
    "#SBATCH --job-name=" .. job .. "-merge",
    "#SBATCH --output=" .. dir .. "/logs/merge.log",
    "#SBATCH --ntasks=1",
    sbatch_common(opts, cwd),
    "set -eu\n" .. env,
    "shards=()",
    string.format("for i in $(seq 1 %d); do", n),
    string.format("  f=%s/shard-$i-of-%d.db", q(dir), n),
    "  if [ -e \"$f\" ]; then shards+=(\"$f\"); else echo \"shard $i wrote no database (its task never started?)\"; fi",
    "done",
    "echo \"merge at $(date -u +%Y-%m-%dT%H:%M:%SZ)\"",
    "if [ ${#shards[@]} -gt 0 ]; then " .. q(exe) .. " merge " .. q(db) .. " \"${shards[@]}\"; fi",
    q(exe) .. " status " .. q(file_abs) .. " --db " .. q(db) .. exp_opt,
    q(exe) .. " report " .. q(file_abs) .. " --db " .. q(db) .. exp_opt }
  write(dir .. "/merge.sbatch", table.concat(merge, "\n") .. "\n")

  write(dir .. "/submit.sh", table.concat({ "#!/bin/sh",
    "# Submits the array job, then the merge job after it (afterany: once every task has ended).",
    "set -eu",
    string.format("queued=$(squeue -h -o %%i -n %s 2>/dev/null | tr '\\n' ' ')", q(job .. "," .. job .. "-merge")),
    "if [ -n \"$queued\" ]; then echo \"jobs of this sweep are still queued or running ($queued): wait for them, or scancel them, before submitting again\" >&2; exit 3; fi",
    string.format("array=$(sbatch --parsable %s)", q(dir .. "/array.sbatch")),
    "array=${array%%;*}",
    string.format("merge=$(sbatch --parsable --dependency=afterany:$array %s)", q(dir .. "/merge.sbatch")),
    "merge=${merge%%;*}",
    "echo \"submitted array job $array and merge job $merge\"" }, "\n") .. "\n", "755")

  print(string.format("lorasc slurm: %d runs in %s: %d done in %s, %d to run in %d array task(s)%s",
    total, file, #done, db, todo, n, n_want and n < n_want and string.format(" (not %d: there are only %d to run)", n_want, todo) or ""))
  print("  scripts: " .. dir .. "/{array.sbatch,merge.sbatch,submit.sh}; logs: " .. dir .. "/logs/")
  if todo == 0 then
    print("  nothing to run: every run is done (lorasc report " .. file .. " --db " .. db .. ")")
    return 0
  end
  if not opts.submit then
    print("  submit with: sh " .. dir .. "/submit.sh   (or lorasc slurm ... --submit)")
    return 0
  end
  local p = io.popen("sh " .. q(dir .. "/submit.sh") .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  io.write(out)
  if not ok then
    if code == 127 or out:find("sbatch: not found", 1, true) or out:find("sbatch: command not found", 1, true) then
      fail("slurm: sbatch is not on this machine's PATH (is this a Slurm login node?); the scripts are in " .. dir .. ", submit them there with sh " .. dir .. "/submit.sh")
    end
    fail(string.format("slurm: submitting failed (exit status %s); the scripts are in %s", tostring(code), dir))
  end
  print("  the report will be at the end of " .. dir .. "/logs/merge.log")
  return 0
end

return M
