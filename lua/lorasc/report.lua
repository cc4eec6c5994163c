-- Reports: for each (column, row) cell, e.g. (task, method), the hyper-parameter set (the
-- run config minus the seed) with the best mean validation score over seeds is selected,
-- and the test metric's mean ± sample std over that set's seeds is reported with n. This is
-- the honest version of "best over the grid". Markdown, LaTeX or CSV; optionally beside
-- published numbers (a CSV with columns row,col,value) and the delta.
local json = require "lorasc.json"
local dsl = require "lorasc.dsl"

local M = {}

local function split_metric(s) return s:match("^(%w+)%.([%w_.]+)$") end

local function path_value(run, path)
  if path == "method" then return run.label end
  if path == "task" then return run.task end
  local v = run.config
  for part in path:gmatch("[^.]+") do
    if type(v) ~= "table" then return "?" end
    v = v[part]
  end
  if type(v) == "number" then return json.number(v) end
  if type(v) == "table" then return json.encode(v) end
  return tostring(v)
end

function M.stats(values)
  local n = #values
  if n == 0 then return nil, nil, 0 end
  local sum = 0
  for _, x in ipairs(values) do sum = sum + x end
  local mean = sum / n
  if n == 1 then return mean, 0 / 0, 1 end
  local ss = 0
  for _, x in ipairs(values) do ss = ss + (x - mean) ^ 2 end
  return mean, math.sqrt(ss / (n - 1)), n
end

-- runs: the experiment's expanded runs; db_runs: store:runs() rows (a done run counts
-- whatever experiment it was stored under: a result is found by its config hash; a failed
-- one counts in its cell's "k failed" when no done copy exists). Returns the table model.
function M.compute(runs, db_runs, spec)
  spec = spec or {}
  local rows_path, cols_path = spec.rows or "method", spec.cols or "task"
  local msplit, mname = split_metric(spec.metric or "test.score")
  local ssplit, sname = split_metric(spec.select or runs[1] and runs[1].select or "val.score")
  if not msplit or not ssplit then error("lorasc: report metric and select must look like \"test.score\"", 0) end
  local by_hash, failed = {}, {}
  for _, r in ipairs(db_runs) do
    if r.status == "done" then by_hash[r.config_hash] = r end
    if r.status == "failed" then failed[r.config_hash] = true end
  end
  local n_failed = {} -- cell key -> runs failed (and not done elsewhere)
  local rows, cols, cells = {}, {}, {}
  local row_seen, col_seen = {}, {}
  for _, run in ipairs(runs) do
    local row, col = path_value(run, rows_path), path_value(run, cols_path)
    if not row_seen[row] then row_seen[row] = true; rows[#rows + 1] = row end
    if not col_seen[col] then col_seen[col] = true; cols[#cols + 1] = col end
    local db = by_hash[run.hash]
    if not db and failed[run.hash] then
      local key = row .. "\0" .. col
      n_failed[key] = (n_failed[key] or 0) + 1
    end
    if db then
      local cfg = {}
      for k, v in pairs(run.config) do if k ~= "seed" then cfg[k] = v end end
      local hkey = json.encode(cfg)
      local key = row .. "\0" .. col
      cells[key] = cells[key] or { groups = {}, order = {} }
      local cell = cells[key]
      if not cell.groups[hkey] then
        cell.groups[hkey] = { sel = {}, met = {}, run = run }
        cell.order[#cell.order + 1] = hkey
        cell.runs = cell.runs or {}
        cell.runs[#cell.runs + 1] = run
      end
      local g = cell.groups[hkey]
      local e = db.evals
      local sv = e[ssplit] and e[ssplit][sname]
      local mv = e[msplit] and e[msplit][mname]
      if sv then g.sel[#g.sel + 1] = sv end
      if mv then g.met[#g.met + 1] = mv end
    end
  end
  local out = { rows = rows, cols = cols, cells = {}, metric = spec.metric or "test.score",
                select = ssplit .. "." .. sname, rows_path = rows_path, cols_path = cols_path }
  for key, cell in pairs(cells) do
    local best, best_val
    for _, hkey in ipairs(cell.order) do
      local g = cell.groups[hkey]
      local m = M.stats(g.sel)
      if m and (best_val == nil or m > best_val) then best, best_val = g, m end
    end
    -- a single candidate without the select metric (e.g. no val split): nothing to choose
    if not best and #cell.order == 1 then best = cell.groups[cell.order[1]] end
    if best then
      local mean, std, n = M.stats(best.met)
      out.cells[key] = { mean = mean, std = std, n = n, select_mean = best_val,
                         selected = dsl.describe(best.run, dsl.varying_keys(cell.runs)),
                         candidates = #cell.order }
    end
  end
  for key, k in pairs(n_failed) do
    out.cells[key] = out.cells[key] or { n = 0, candidates = 0 }
    out.cells[key].failed = k
  end
  return out
end

-- Several metrics in one table (spec.metrics = { "test.score", "test.corrupt.mean" }): each
-- (column, metric) pair becomes a column "<col> <metric>"; selection is the same for all.
function M.compute_multi(runs, db_runs, spec)
  if not spec.metrics then return M.compute(runs, db_runs, spec) end
  local out
  for _, metric in ipairs(spec.metrics) do
    local sub = {}
    for k, v in pairs(spec) do sub[k] = v end
    sub.metrics, sub.metric = nil, metric
    local t = M.compute(runs, db_runs, sub)
    if not out then
      out = { rows = t.rows, cols = {}, cells = {}, metric = table.concat(spec.metrics, ", "),
              select = t.select, rows_path = t.rows_path, cols_path = t.cols_path }
    end
    local short = metric:gsub("^test%.", "")
    for _, col in ipairs(t.cols) do
      local name = col .. " " .. short
      out.cols[#out.cols + 1] = name
      for _, row in ipairs(t.rows) do
        local c = t.cells[row .. "\0" .. col]
        if c then out.cells[row .. "\0" .. name] = c end
      end
    end
  end
  return out
end

function M.read_paper(path)
  local f, err = io.open(path, "r")
  if not f then error("lorasc: cannot read the published-numbers CSV '" .. path .. "': " .. tostring(err), 0) end
  local header = f:read("l")
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
    local fields = {}
    for v in (line .. ","):gmatch("([^,]*),") do fields[#fields + 1] = v:gsub("^%s+", ""):gsub("%s+$", "") end
    if #fields >= 3 then paper[fields[ri] .. "\0" .. fields[ci]] = tonumber(fields[vi]) end
  end
  f:close()
  return paper
end

local function fmt(x, scale, digits)
  if x == nil or x ~= x then return "—" end
  return string.format("%." .. digits .. "f", x * scale)
end

-- Renders the table as "markdown", "latex" or "csv".
function M.render(t, opts)
  local scale, digits = opts.scale or 100, opts.digits or 2
  local paper = opts.paper
  local lines = {}
  local function add(s) lines[#lines + 1] = s end
  local function cell_text(row, col, latex)
    local c = t.cells[row .. "\0" .. col]
    if not c then return "—" end
    local failed = c.failed and string.format("%d failed", c.failed)
    if c.n == 0 then return failed and ("— (" .. failed .. ")") or "—" end
    local pm = latex and " $\\pm$ " or " ± "
    local s = fmt(c.mean, scale, digits) .. pm .. fmt(c.std, scale, digits) .. " (" .. c.n .. (failed and ("; " .. failed) or "") .. ")"
    local p = paper and paper[row .. "\0" .. col]
    if p then
      s = s .. string.format(" / %s (%s%s)", fmt(p, 1, digits), latex and "$\\Delta$ " or "Δ ",
                             string.format("%+." .. digits .. "f", c.mean * scale - p))
    end
    return s
  end
  if opts.format == "csv" then
    add("row,col,mean,std,n,select_mean,selected,paper,delta,failed")
    for _, row in ipairs(t.rows) do
      for _, col in ipairs(t.cols) do
        local c = t.cells[row .. "\0" .. col]
        if c and c.n == 0 then
          add(string.format("%s,%s,,,0,,,,,%d", row, col, c.failed or 0))
        elseif c then
          local p = paper and paper[row .. "\0" .. col]
          add(string.format("%s,%s,%s,%s,%d,%s,\"%s\",%s,%s,%d", row, col, json.number(c.mean * scale),
            c.std == c.std and json.number(c.std * scale) or "", c.n, c.select_mean and json.number(c.select_mean * scale) or "",
            c.selected, p and json.number(p) or "", p and json.number(c.mean * scale - p) or "", c.failed or 0))
        end
      end
    end
  elseif opts.format == "latex" then
    add("% " .. (opts.title or "") .. ": " .. t.metric .. " x" .. scale .. ", mean $\\pm$ std over seeds (n), selected on " .. t.select)
    add("\\begin{tabular}{l" .. string.rep("c", #t.cols) .. "}")
    add("\\toprule")
    add(t.rows_path .. " & " .. table.concat(t.cols, " & ") .. " \\\\")
    add("\\midrule")
    for _, row in ipairs(t.rows) do
      local cells = {}
      for _, col in ipairs(t.cols) do cells[#cells + 1] = cell_text(row, col, true) end
      add(row .. " & " .. table.concat(cells, " & ") .. " \\\\")
    end
    add("\\bottomrule")
    add("\\end{tabular}")
  else
    add(string.format("### %s: %s (x%s), mean ± std over seeds (n), hyper-parameters chosen on %s",
      opts.title or "", t.metric, json.number(scale), t.select))
    add("")
    add("| " .. t.rows_path .. " | " .. table.concat(t.cols, " | ") .. " |")
    add("|" .. string.rep(" --- |", #t.cols + 1))
    for _, row in ipairs(t.rows) do
      local cells = {}
      for _, col in ipairs(t.cols) do cells[#cells + 1] = cell_text(row, col, false) end
      add("| " .. row .. " | " .. table.concat(cells, " | ") .. " |")
    end
    local sel = {}
    for _, row in ipairs(t.rows) do
      for _, col in ipairs(t.cols) do
        local c = t.cells[row .. "\0" .. col]
        if c and c.candidates > 1 then
          sel[#sel + 1] = string.format("- %s / %s: %s (of %d; %s %s)", row, col, c.selected, c.candidates,
            t.select, fmt(c.select_mean, scale, digits))
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
