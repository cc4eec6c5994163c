-- Reports. Every cell is one (row, column, task, method label) combination: where the layout
-- leaves the task (or the method) out and the runs have several, the column (the row) names
-- it, so no cell ever holds "whichever task was best". In a cell, the hyper-parameter set
-- (the run config minus the seed) with the best mean validation score over seeds is
-- selected; the test metric's mean ± sample std (n) over that set's seeds is reported with
-- its 95% Student t interval. Each row is compared with its baseline row (spec.baseline,
-- default the first) in the same column: the paired difference over shared seeds (runs
-- match by seed: same seed, same data split) with its t interval, or with one shared seed a
-- paired percentile bootstrap over the test examples both runs stored (stats.lua); a cell is
-- marked ▲ / ▼ (better / worse) only when that interval excludes zero. A cost column gives
-- each row's training throughput and wall time per run. Markdown, LaTeX or CSV, optionally
-- beside published numbers. The spec is checked before anything is printed (M.check).
local json = require "lorasc.json"
local dsl = require "lorasc.dsl"
local canon = require "lorasc.canon"
local stats = require "lorasc.stats"
local families = require "lorasc.families"

local M = {}

M.BOOTSTRAP = { resamples = 2000, seed = 1, level = 0.95 }

local function split_metric(s) return s:match("^(%w+)%.([%w_.%-]+)$") end -- names may hold "-" (test.shift.imagenet-r)

-- Metrics that `scale` does not apply to: losses, counts, flags (a score is an accuracy, F1,
-- EM, a majority baseline or a corruption accuracy).
function M.is_score(metric)
  local last = metric:match("([^.]+)$") or metric
  return not (metric:find("loss", 1, true) or last == "n" or last == "subset")
end
local function lower_better(metric) return metric:find("loss", 1, true) ~= nil end

-- The value of a path in a run's config, as text; nil when the run has none.
local function path_value(run, path)
  if path == "method" then return run.label end
  if path == "task" then return run.task end
  local v = run.config
  for part in path:gmatch("[^.]+") do
    if type(v) ~= "table" then return nil end
    v = v[part]
  end
  if v == nil then return nil end
  if type(v) == "number" then return json.number(v) end
  if type(v) == "table" then return json.encode(v) end
  return tostring(v)
end

-- Every path a report may name: method, task, seed and each key of the runs' configs.
function M.paths(runs)
  local seen, out = { method = true, task = true }, { "method", "task" }
  for _, r in ipairs(runs) do
    for k in pairs(dsl.flatten(r.config, nil, {})) do
      if not seen[k] then seen[k] = true; out[#out + 1] = k end
    end
  end
  table.sort(out)
  return out
end

-- A row's (or column's) name for a run: the path's value; a run without that key is named
-- by its method's label ("lora" where rows = "method.alpha" and lora has no alpha).
local function axis_value(run, path)
  local v = path_value(run, path)
  if v == nil then return run.label end
  return v
end

-- The layout of a report over these runs: which axis also names the task and the method
-- label when the runs have several and neither rows nor cols is them (the task goes to the
-- columns; the label to the rows, or to the columns where rows = "task"). A layout that
-- cannot give one combination per cell is an error at loc.
local function layout(runs, rows_path, cols_path, loc)
  if rows_path == cols_path then
    canon.fail(string.format("%s: rows and cols are both '%s': every cell must be one (row, column, task) combination, so a table needs two different paths (e.g. rows = \"method\", cols = \"task\")",
                             canon.key_loc(loc, "cols"), rows_path))
  end
  local tasks, labels = {}, {}
  for _, r in ipairs(runs) do tasks[r.task], labels[r.label] = true, true end
  local function count(t) local n = 0; for _ in pairs(t) do n = n + 1 end; return n end
  local label_free = count(labels) > 1 and rows_path ~= "method" and cols_path ~= "method"
  return {
    task_in_col = count(tasks) > 1 and rows_path ~= "task" and cols_path ~= "task",
    label_in_row = label_free and rows_path ~= "task",
    label_in_col = label_free and rows_path == "task",
  }
end

-- Checks a report spec against the experiment's runs and the database's done runs, each
-- problem one sentence at the spec's own line: a row/column path or a baseline that matches
-- nothing, a metric (or an explicit select) no run logged. name: the report's; experiment:
-- the experiment whose runs it shows (default: the report's name).
function M.check(spec, runs, db_runs, loc, name, experiment)
  experiment = experiment or name
  local paths = M.paths(runs)
  local valid = {}
  for _, p in ipairs(paths) do valid[p] = true end
  for _, key in ipairs { "rows", "cols" } do
    local p = spec[key]
    if p ~= nil and (type(p) ~= "string" or not valid[p]) then
      canon.fail(string.format("%s: report '%s': %s = %s matches no key of the runs' configs%s; valid paths: %s",
        canon.key_loc(loc, key), name, key, canon.show(p), canon.did_you_mean(p, paths), table.concat(paths, ", ")))
    end
  end
  local metrics = spec.metrics or { spec.metric or "test.score" }
  if type(metrics) ~= "table" or #metrics == 0 then
    canon.fail(string.format("%s: report '%s': metrics must be a list such as { \"test.score\", \"test.majority\" }", canon.key_loc(loc, "metrics"), name))
  end
  local hashes = {}
  for _, r in ipairs(runs) do hashes[r.hash] = true end
  local logged, names, any_done = M.logged(db_runs, hashes)
  local function check_metric(m, key)
    if type(m) ~= "string" or not split_metric(m) then
      canon.fail(string.format("%s: report '%s': %s = %s must look like \"test.score\" (split.metric)", canon.key_loc(loc, key), name, key, canon.show(m)))
    end
    if any_done and not logged[m] then
      canon.fail(string.format("%s: report '%s': %s = \"%s\" was logged by no done run of experiment '%s'%s; logged: %s",
        canon.key_loc(loc, key), name, key, m, experiment, canon.did_you_mean(m, names), table.concat(names, ", ")))
    end
  end
  for _, m in ipairs(metrics) do check_metric(m, spec.metrics and "metrics" or "metric") end
  if spec.select ~= nil then check_metric(spec.select, "select") end
  return any_done
end

-- The metric names (split.metric) the done runs of these config hashes logged: a set, the
-- sorted list, and whether any such run is done.
function M.logged(db_runs, hashes)
  local seen, list, any_done = {}, {}, false
  for _, r in ipairs(db_runs) do
    if r.status == "done" and hashes[r.config_hash] then
      any_done = true
      for split, ms in pairs(r.evals or {}) do
        for m in pairs(ms) do
          local k = split .. "." .. m
          if not seen[k] then seen[k] = true; list[#list + 1] = k end
        end
      end
    end
  end
  table.sort(list)
  return seen, list, any_done
end

local function sorted(values)
  local s = {}
  for i, v in ipairs(values) do s[i] = v end
  table.sort(s)
  return s
end

-- runs: the experiment's expanded runs; db_runs: store:runs() rows (a done run counts
-- whatever experiment it was stored under: a result is found by its config hash; a failed
-- one counts in its cell's "k failed" when no done copy exists). env (optional):
-- examples(run_id, split, metric) -> per-example outcomes or nil (the bootstrap),
-- metrics(run_id) -> store:metrics rows (the cost column), where (the spec's file:line).
-- Returns the table model.
function M.compute(runs, db_runs, spec, env)
  spec, env = spec or {}, env or {}
  local rows_path, cols_path = spec.rows or "method", spec.cols or "task"
  local metric = spec.metric or "test.score"
  local msplit, mname = split_metric(metric)
  local select = spec.select or runs[1] and runs[1].select or "val.score"
  local ssplit, sname = split_metric(select)
  if not msplit or not ssplit then canon.fail((env.where or "report") .. ": report metric and select must look like \"test.score\"") end
  local lay = layout(runs, rows_path, cols_path, env.where or "report")
  local by_hash, failed = {}, {}
  for _, r in ipairs(db_runs) do
    if r.status == "done" then by_hash[r.config_hash] = r end
    if r.status == "failed" then failed[r.config_hash] = true end
  end
  local n_failed = {} -- cell key -> runs failed (and not done elsewhere)
  local rows, cols, cells = {}, {}, {}
  local row_seen, col_seen = {}, {}
  for _, run in ipairs(runs) do
    local row, col = axis_value(run, rows_path), axis_value(run, cols_path)
    if lay.label_in_row and row ~= run.label then row = run.label .. " (" .. rows_path .. " = " .. row .. ")" end
    if lay.label_in_col and col ~= run.label then col = run.label .. " (" .. cols_path .. " = " .. col .. ")" end
    if lay.task_in_col then col = col .. " " .. run.task end
    if not row_seen[row] then row_seen[row] = true; rows[#rows + 1] = row end
    if not col_seen[col] then col_seen[col] = true; cols[#cols + 1] = col end
    local key = row .. "\0" .. col
    local db = by_hash[run.hash]
    if not db and failed[run.hash] then n_failed[key] = (n_failed[key] or 0) + 1 end
    if db then
      local cfg = {}
      for k, v in pairs(run.config) do if k ~= "seed" then cfg[k] = v end end
      local hkey = json.encode(cfg)
      cells[key] = cells[key] or { groups = {}, order = {}, runs = {} }
      local cell = cells[key]
      if not cell.groups[hkey] then
        cell.groups[hkey] = { sel = {}, met = {}, items = {}, run = run }
        cell.order[#cell.order + 1] = hkey
        cell.runs[#cell.runs + 1] = run
      end
      local g = cell.groups[hkey]
      local e = db.evals
      local sv = e[ssplit] and e[ssplit][sname]
      local mv = e[msplit] and e[msplit][mname]
      if sv then g.sel[#g.sel + 1] = sv end
      if mv then
        g.met[#g.met + 1] = mv
        g.items[#g.items + 1] = { seed = run.seed, value = mv, db = db, run = run }
      end
    end
  end
  local score = M.is_score(metric)
  local out = { rows = rows, cols = cols, cells = {}, metric = metric, select = ssplit .. "." .. sname,
                rows_path = rows_path, cols_path = cols_path, score = score, select_score = M.is_score(select),
                lower_better = lower_better(metric), cost = {} }
  for key, cell in pairs(cells) do
    local best, best_val
    for _, hkey in ipairs(cell.order) do
      local g = cell.groups[hkey]
      local m = stats.mean_std(g.sel)
      if m and (best_val == nil or m > best_val) then best, best_val = g, m end
    end
    -- a single candidate without the select metric (e.g. no val split): nothing to choose
    if not best and #cell.order == 1 then best = cell.groups[cell.order[1]] end
    if best then
      local mean, std, n = stats.mean_std(best.met)
      local _, lo, hi = stats.t_interval(best.met)
      out.cells[key] = { mean = mean, std = std, n = n, lo = lo, hi = hi, select_mean = best_val, score = score,
                         selected = dsl.describe(best.run, dsl.varying_keys(cell.runs)),
                         candidates = #cell.order, items = best.items }
    end
  end
  for key, k in pairs(n_failed) do
    out.cells[key] = out.cells[key] or { n = 0, candidates = 0, items = {}, score = score }
    out.cells[key].failed = k
  end
  -- each row against the baseline row, column by column
  out.baseline = spec.baseline or rows[1]
  if spec.baseline ~= nil and not row_seen[spec.baseline] then
    canon.fail(string.format("%s: baseline = %s is not a row of the table%s; rows: %s",
      canon.key_loc(env.where or "report", "baseline"), canon.show(spec.baseline), canon.did_you_mean(spec.baseline, rows), table.concat(rows, ", ")))
  end
  for _, row in ipairs(rows) do
    for _, col in ipairs(cols) do
      local c, b = out.cells[row .. "\0" .. col], out.cells[out.baseline .. "\0" .. col]
      if row ~= out.baseline and c and b and c.n > 0 and b.n > 0 then c.diff = M.paired(c, b, msplit, mname, env) end
      if c and c.diff then c.verdict = stats.verdict(c.diff.lo, c.diff.hi, out.lower_better) end
    end
  end
  -- the cost of each row: the mean training throughput of its reported runs (tokens or images
-- per second: 1 / train.unit_seconds) and their mean wall seconds per run (without the
-- pretraining of a base model the first run that needed it did: base.pretrain_seconds)
  for _, row in ipairs(rows) do
    local rate, n_rate, wall, n_wall, unit = 0, 0, 0, 0, nil
    for _, col in ipairs(cols) do
      local c = out.cells[row .. "\0" .. col]
      for _, it in ipairs(c and c.items or {}) do
        unit = unit or families[it.run.family] and families[it.run.family].cost_unit
        local pretrain = 0 -- the one-off pretraining of a cached base is not this run's cost
        if env.metrics and it.db.id then
          for _, m in ipairs(env.metrics(it.db.id)) do
            if m.name == "train.unit_seconds" and m.last > 0 then rate, n_rate = rate + 1 / m.last, n_rate + 1 end
            if m.name == "base.pretrain_seconds" then pretrain = m.last end
          end
        end
        if it.db.wall_time_s then wall, n_wall = wall + it.db.wall_time_s - pretrain, n_wall + 1 end
      end
    end
    out.cost[row] = { per_s = n_rate > 0 and rate / n_rate or nil, unit = unit or "tokens",
                      wall = n_wall > 0 and wall / n_wall or nil }
  end
  return out
end

-- The paired difference of cell c against the baseline cell b (their selected runs): over
-- the seeds they share (t interval), or, with one shared seed, a paired bootstrap over the
-- test examples both runs stored. nil when they share no (seed, task).
function M.paired(c, b, split, metric, env)
  -- runs pair when they share the seed and the task: the same data split, the same examples
  -- (rows of tasks are never paired)
  local by_seed = {}
  for _, it in ipairs(b.items) do by_seed[it.seed .. "\0" .. it.run.task] = it end
  local xs, ys, pairs_ = {}, {}, {}
  for _, it in ipairs(c.items) do
    local other = by_seed[it.seed .. "\0" .. it.run.task]
    if other then xs[#xs + 1], ys[#ys + 1], pairs_[#pairs_ + 1] = it.value, other.value, { it, other } end
  end
  if #xs == 0 then return nil end
  if #xs >= 2 then
    local d = stats.paired_t(xs, ys)
    -- every seed gave the same difference (scores counted on a few examples often do): t's
    -- interval then has width 0 (up to the rounding of the scores' differences) and would
    -- mark any difference; judge by the test examples' noise instead, as with one seed, over
    -- the examples of all the shared seeds
    if d.hi - d.lo > 1e-9 * (1 + math.abs(d.mean)) then return d end
  end
  local ex_a, ex_b = {}, {}
  for _, p in ipairs(pairs_) do
    local a = env.examples and p[1].db.id and env.examples(p[1].db.id, split, metric)
    local b = env.examples and p[2].db.id and env.examples(p[2].db.id, split, metric)
    if not (a and b and #a == #b and #a > 0) then ex_a = nil break end
    for i = 1, #a do ex_a[#ex_a + 1], ex_b[#ex_b + 1] = a[i], b[i] end
  end
  if ex_a then
    local r = stats.paired_bootstrap(ex_a, ex_b, M.BOOTSTRAP)
    r.seeds = #pairs_
    return r
  end
  -- no per-example outcomes (runs made before they were stored): no interval
  local sum = 0
  for i = 1, #xs do sum = sum + xs[i] - ys[i] end
  return { mean = sum / #xs, n = #xs, method = "none" }
end

-- Several metrics in one table (spec.metrics = { "test.score", "test.corrupt.mean" }): each
-- (column, metric) pair becomes a column "<col> <metric>"; selection is the same for all.
function M.compute_multi(runs, db_runs, spec, env)
  if not spec.metrics then return M.compute(runs, db_runs, spec, env) end
  local out
  for _, metric in ipairs(spec.metrics) do
    local sub = {}
    for k, v in pairs(spec) do sub[k] = v end
    sub.metrics, sub.metric = nil, metric
    local t = M.compute(runs, db_runs, sub, env)
    if not out then
      out = { rows = t.rows, cols = {}, cells = {}, metric = table.concat(spec.metrics, ", "),
              select = t.select, rows_path = t.rows_path, cols_path = t.cols_path, baseline = t.baseline,
              select_score = t.select_score, cost = t.cost, multi = true }
    end
    local short = metric:gsub("^test%.", "")
    for _, col in ipairs(t.cols) do
      local name = col .. " " .. short
      out.cols[#out.cols + 1] = name
      for _, row in ipairs(t.rows) do
        local c = t.cells[row .. "\0" .. col]
        if c then
          c.score = t.score
          out.cells[row .. "\0" .. name] = c
        end
      end
    end
  end
  return out
end

-- Published numbers: a CSV with the columns row (or method), col (or task) and value, on the
-- printed scale; lines starting with # are comments, the first of them the table's caption
-- and source. Returns { ["row\0col"] = value }, caption.
function M.read_paper(path)
  local f, err = io.open(path, "r")
  if not f then error("lorasc: cannot read the published-numbers CSV '" .. path .. "': " .. tostring(err), 0) end
  local caption, header
  for line in f:lines() do
    if line:sub(1, 1) == "#" then caption = caption or line:gsub("^#%s*", "")
    elseif line:match("%S") then header = line; break end
  end
  local names = {}
  for h in (header or ""):gmatch("[^,]+") do names[#names + 1] = h:gsub("^%s+", ""):gsub("%s+$", "") end
  local idx = {}
  for i, h in ipairs(names) do idx[h] = i end
  local ri, ci, vi = idx.row or idx.method, idx.col or idx.task, idx.value
  if not (ri and ci and vi) then
    f:close()
    error("lorasc: " .. path .. ": the CSV header must name the columns row (or method), col (or task) and value", 0)
  end
  local paper = {}
  for line in f:lines() do
    if line:sub(1, 1) ~= "#" then
      local fields = {}
      for v in (line .. ","):gmatch("([^,]*),") do fields[#fields + 1] = v:gsub("^%s+", ""):gsub("%s+$", "") end
      if #fields >= 3 then paper[fields[ri] .. "\0" .. fields[ci]] = tonumber(fields[vi]) end
    end
  end
  f:close()
  return paper, caption
end

local function fmt(x, scale, digits)
  if x == nil or x ~= x then return "—" end
  return string.format("%." .. digits .. "f", x * scale)
end

local MARK = { better = "▲", worse = "▼" }

-- What the intervals are, for the caption.
local function interval_caption(t, any_diff)
  local s = "95% intervals in brackets: Student t over seeds"
  if not any_diff then return s end
  return s .. string.format("; ▲ / ▼: better / worse than the baseline row (%s) in the same column, marked only when the 95%% interval of the paired difference excludes 0 (paired t over the seeds both share; with one shared seed, or seeds whose differences are all equal (t then has no spread), a paired percentile bootstrap over the test examples, %d resamples, seed %d, which covers the test sample's noise but not the spread between training seeds)",
    t.baseline or "—", M.BOOTSTRAP.resamples, M.BOOTSTRAP.seed)
end

local function cost_text(cost)
  if not cost then return "—" end
  local parts = {}
  parts[#parts + 1] = cost.per_s and string.format("%.0f %s/s", cost.per_s, cost.unit) or "—"
  local w = cost.wall
  parts[#parts + 1] = w and string.format(w >= 10 and "%.0f s/run" or w >= 1 and "%.1f s/run" or "%.2g s/run", w) or "—"
  return table.concat(parts, ", ")
end

-- Renders the table as "markdown", "latex" or "csv" (opts.report: the report's name, the
-- first column of the long-format CSV; opts.csv_header: print the CSV header line).
function M.render(t, opts)
  local digits = opts.digits or 2
  local function scale_of(c) return c and c.score == false and 1 or (opts.scale or 100) end
  local sel_scale = t.select_score == false and 1 or (opts.scale or 100)
  local paper = opts.paper
  local lines = {}
  local function add(s) lines[#lines + 1] = s end
  local function diff_text(c, latex)
    local d = c.diff
    if not d then return nil end
    local sc = scale_of(c)
    local s = string.format("%+." .. digits .. "f", d.mean * sc)
    if d.lo then s = s .. string.format(" [%+." .. digits .. "f, %+." .. digits .. "f]", d.lo * sc, d.hi * sc) end
    local how = d.method == "t" and string.format("t, %d seeds", d.n)
                or d.method == "bootstrap" and (d.seeds and d.seeds > 1
                    and string.format("bootstrap, %d examples of %d seeds with equal differences", d.n, d.seeds)
                    or string.format("bootstrap, %d examples", d.n))
                or d.n > 1 and string.format("%d seeds with equal differences, no examples stored", d.n)
                or "1 seed, no examples stored"
    return s .. (c.verdict and (" " .. (latex and (c.verdict == "better" and "$\\blacktriangle$" or "$\\blacktriangledown$") or MARK[c.verdict])) or "") .. " (" .. how .. ")"
  end
  local function cell_text(row, col, latex)
    local c = t.cells[row .. "\0" .. col]
    if not c then return "—" end
    local failed = c.failed and string.format("%d failed", c.failed)
    if c.n == 0 then return failed and ("— (" .. failed .. ")") or "—" end
    local sc = scale_of(c)
    local pm = latex and " $\\pm$ " or " ± "
    local s = fmt(c.mean, sc, digits) .. pm .. fmt(c.std, sc, digits) .. " (" .. c.n .. (failed and ("; " .. failed) or "") .. ")"
    if c.lo then s = s .. " [" .. fmt(c.lo, sc, digits) .. ", " .. fmt(c.hi, sc, digits) .. "]" end
    if c.verdict then s = s .. " " .. (latex and (c.verdict == "better" and "$\\blacktriangle$" or "$\\blacktriangledown$") or MARK[c.verdict]) end
    local p = paper and paper[row .. "\0" .. col]
    if p then
      s = s .. string.format(" / %s (%s%s)", fmt(p, 1, digits), latex and "$\\Delta$ " or "Δ ",
                             string.format("%+." .. digits .. "f", c.mean * sc - p))
    end
    return s
  end
  local any_diff = false
  for _, c in pairs(t.cells) do if c.diff then any_diff = true end end
  if opts.format == "csv" then
    if opts.csv_header ~= false then
      add("report,row,col,mean,std,n,ci_lo,ci_hi,select_mean,selected,diff,diff_lo,diff_hi,diff_method,diff_n,verdict,paper,delta,train_per_s,train_unit,wall_s_per_run,failed")
    end
    local function num(x, sc) return x and x == x and json.number(x * (sc or 1)) or "" end
    local function q(s)
      s = tostring(s)
      if not s:find('[,"\n]') then return s end
      return '"' .. s:gsub('"', '""') .. '"'
    end
    for _, row in ipairs(t.rows) do
      local cost = t.cost and t.cost[row] or {}
      for _, col in ipairs(t.cols) do
        local c = t.cells[row .. "\0" .. col]
        if c then
          local sc, d = scale_of(c), c.diff or {}
          local p = paper and paper[row .. "\0" .. col]
          add(table.concat({ q(opts.report or ""), q(row), q(col), c.n > 0 and num(c.mean, sc) or "", c.n > 0 and num(c.std, sc) or "",
            tostring(c.n), num(c.lo, sc), num(c.hi, sc), num(c.select_mean, sel_scale), c.n > 0 and q(c.selected) or "",
            num(d.mean, sc), num(d.lo, sc), num(d.hi, sc), d.method or "", d.n and tostring(d.n) or "", c.verdict or "",
            p and json.number(p) or "", p and c.n > 0 and json.number(c.mean * sc - p) or "",
            num(cost.per_s), cost.unit or "", num(cost.wall), tostring(c.failed or 0) }, ","))
        end
      end
    end
  elseif opts.format == "latex" then
    add("% " .. (opts.title or "") .. ": " .. t.metric .. " (scores x" .. json.number(opts.scale or 100) .. "), mean $\\pm$ std over seeds (n) [95\\% t interval], selected on " .. t.select)
    add("% " .. interval_caption(t, any_diff))
    if opts.paper_caption then add("% paper: " .. opts.paper_caption) end
    add("\\begin{tabular}{l" .. string.rep("c", #t.cols) .. "r}")
    add("\\toprule")
    add(t.rows_path .. " & " .. table.concat(t.cols, " & ") .. " & cost \\\\")
    add("\\midrule")
    for _, row in ipairs(t.rows) do
      local cells = {}
      for _, col in ipairs(t.cols) do cells[#cells + 1] = cell_text(row, col, true) end
      add(row .. " & " .. table.concat(cells, " & ") .. " & " .. cost_text(t.cost and t.cost[row]) .. " \\\\")
    end
    add("\\bottomrule")
    add("\\end{tabular}")
  else
    add(string.format("### %s: %s (scores x%s, losses as they are), mean ± std over seeds (n), hyper-parameters chosen on %s",
      opts.title or "", t.metric, json.number(opts.scale or 100), t.select))
    add("")
    add(interval_caption(t, any_diff) .. ".")
    add("")
    if opts.paper_caption then add("Beside each cell: the paper's number / Δ (ours − paper); " .. opts.paper_caption .. ".") add("") end
    add("| " .. t.rows_path .. " | " .. table.concat(t.cols, " | ") .. " | cost (train throughput, wall time) |")
    add("|" .. string.rep(" --- |", #t.cols + 2))
    for _, row in ipairs(t.rows) do
      local cells = {}
      for _, col in ipairs(t.cols) do cells[#cells + 1] = cell_text(row, col, false) end
      add("| " .. row .. " | " .. table.concat(cells, " | ") .. " | " .. cost_text(t.cost and t.cost[row]) .. " |")
    end
    if any_diff then
      add("")
      add(string.format("Paired difference to %s (same column; 95%% interval):", t.baseline))
      add("")
      add("| " .. t.rows_path .. " | " .. table.concat(t.cols, " | ") .. " |")
      add("|" .. string.rep(" --- |", #t.cols + 1))
      for _, row in ipairs(t.rows) do
        if row ~= t.baseline then
          local cells = {}
          for _, col in ipairs(t.cols) do
            local c = t.cells[row .. "\0" .. col]
            cells[#cells + 1] = c and diff_text(c, false) or "—"
          end
          add("| " .. row .. " | " .. table.concat(cells, " | ") .. " |")
        end
      end
    end
    local sel = {}
    for _, row in ipairs(t.rows) do
      for _, col in ipairs(t.cols) do
        local c = t.cells[row .. "\0" .. col]
        if c and c.candidates > 1 then
          sel[#sel + 1] = string.format("- %s / %s: %s (of %d; %s %s)", row, col, c.selected, c.candidates,
            t.select, fmt(c.select_mean, sel_scale, digits))
        end
      end
    end
    if #sel > 0 then
      add("")
      add("Selected hyper-parameters:")
      for _, s in ipairs(sel) do add(s) end
    end
    local n_failed = 0
    for _, c in pairs(t.cells) do n_failed = n_failed + (c.failed or 0) end
    if n_failed > 0 then
      add("")
      add(string.format("%d run(s) failed (errors or divergence) and are not in the means: `lorasc status` lists them with their messages.", n_failed))
    end
  end
  -- opts.footer: lines under the table (the commits its runs were made by), as comments in
  -- CSV and LaTeX
  if opts.footer and #opts.footer > 0 then
    if opts.format == "markdown" then add("") end
    for _, f in ipairs(opts.footer) do
      add((opts.format == "csv" and "# " or opts.format == "latex" and "% " or "") .. f)
    end
  end
  return table.concat(lines, "\n")
end

-- The stored runs a report (or a figure: plot.lua) of experiment `name` reads: one done row
-- per config hash from any experiment of the database (a result is found by its config
-- hash; this experiment's copy when it has one), then this experiment's failed rows
-- (counted per cell). store nil (no database): none.
function M.db_runs(store, name)
  local db_runs = {}
  if not store then return db_runs end
  local id = store:experiment_find(name)
  local pick = {}
  for _, r in ipairs(store:runs(0, { "done" })) do
    local p = pick[r.config_hash]
    if not p or (p.experiment_id ~= id and r.experiment_id == id) then pick[r.config_hash] = r end
  end
  for _, r in pairs(pick) do db_runs[#db_runs + 1] = r end
  table.sort(db_runs, function(a, b) return a.id < b.id end)
  if id then
    for _, r in ipairs(store:runs(id, { "failed" })) do db_runs[#db_runs + 1] = r end
  end
  return db_runs
end

return M
