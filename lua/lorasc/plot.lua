-- `lorasc plot`: PNG and SVG files drawn by gnuplot (Debian's gnuplot-nox) from the run
-- database: a run's training curves (`lorasc plot RUN_ID`) and the figures an experiment file
-- declares (`figure "name" { ... }`, lua/DSL.md). Each image lies beside the data it draws
-- (.dat; a figure also as .csv) and its gnuplot script (.gp), so it can be redrawn by hand.
-- Not here: which hyper-parameters a figure's point shows (report.lua chooses them, as for a
-- table), training, or any plotting of our own (gnuplot draws).
local sys = require "lorasc.core.sys"
local canon = require "lorasc.canon"
local dsl = require "lorasc.dsl"
local report = require "lorasc.report"

local M = {}

local function fail(msg) error("lorasc: plot: " .. msg, 0) end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

-- A word for sh, quoted; a string for gnuplot (single quotes: no escapes but '').
local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function gp(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

-- A number as data: exact (17 digits), NaN as gnuplot reads it.
local function num(x)
  if x ~= x then return "NaN" end
  if math.type(x) == "integer" then return tostring(x) end
  return string.format("%.17g", x)
end

local function write(path, text)
  local f, err = io.open(path, "wb")
  if not f then fail("cannot write " .. path .. ": " .. tostring(err)) end
  f:write(text)
  f:close()
end

-- gnuplot ---------------------------------------------------------------------------------
-- The program (LORASC_GNUPLOT, else gnuplot on the PATH), or nil when it does not run.
local function gnuplot()
  local prog = os.getenv("LORASC_GNUPLOT") or "gnuplot"
  if os.execute(sh(prog) .. " --version >/dev/null 2>&1") then return prog end
end

-- The PNG terminal: cairo's where gnuplot has it (Debian's gnuplot-nox does), else libgd's.
local png_terminal
local function png_line(prog, w, h)
  if png_terminal == nil then
    png_terminal = os.execute(sh(prog) .. " -e 'set terminal pngcairo' >/dev/null 2>&1") and "pngcairo" or "png"
  end
  if png_terminal == "pngcairo" then
    return string.format("set terminal pngcairo size %d,%d noenhanced font 'sans,10' background rgb 'white'", w, h)
  end
  return string.format("set terminal png size %d,%d noenhanced background rgb 'white'", w, h)
end

-- Writes DIR/BASE.gp around body (terminal-free gnuplot commands reading BASE.dat) and, with
-- gnuplot, draws BASE.png and BASE.svg. Returns the files written.
local function draw(prog, dir, base, what, body, w, h)
  local script = table.concat({
    "# lorasc plot: " .. what,
    "# Redraw by hand in this directory:  gnuplot " .. base .. ".gp  (PNG),",
    "#   gnuplot -e 'fmt=\"svg\"' " .. base .. ".gp  (SVG)",
    "if (!exists('fmt')) fmt = 'png'",
    "if (fmt eq 'svg') {",
    string.format("  set terminal svg size %d,%d dynamic noenhanced font 'sans,11' background rgb 'white'", w, h),
    "  set output " .. gp(base .. ".svg"),
    "} else {",
    "  " .. png_line(prog or "gnuplot", w, h),
    "  set output " .. gp(base .. ".png"),
    "}",
    "dat = " .. gp(base .. ".dat"),
    body,
    "unset output",
    "" }, "\n")
  write(dir .. "/" .. base .. ".gp", script)
  if not prog then return end
  for _, fmt in ipairs { "png", "svg" } do
    local out = dir .. "/" .. base .. "." .. fmt
    os.remove(out)
    local p = io.popen(string.format("cd %s && %s -e %s %s 2>&1", sh(dir), sh(prog), sh("fmt='" .. fmt .. "'"), sh(base .. ".gp")))
    local msg = p:read("a")
    local ok = p:close()
    local f = io.open(out, "rb")
    local size = f and f:seek("end") or 0
    if f then f:close() end
    if not ok or size == 0 then
      fail(string.format("gnuplot did not draw %s from %s/%s.gp: %s", out, dir, base, (msg:gsub("%s+", " "):gsub("^ ", ""))))
    end
  end
end

-- A data file: blocks separated by two blank lines (gnuplot's `index N`), each headed by
-- comments; blocks = { { title =, header =, rows = { "line", ... } } }.
local function data_text(head, blocks)
  local out = {}
  for _, l in ipairs(head) do out[#out + 1] = "# " .. l end
  for i, b in ipairs(blocks) do
    out[#out + 1] = string.format("# index %d: %s", i - 1, b.title)
    out[#out + 1] = "# " .. b.header
    for _, r in ipairs(b.rows) do out[#out + 1] = r end
    out[#out + 1] = ""
    out[#out + 1] = ""
  end
  return table.concat(out, "\n")
end

-- A run's training curves -------------------------------------------------------------------
-- Panels: loss (train.loss; val.loss of eval.every's curve), the other validation metrics of
-- the curve (val.score, ...), the learning rate and the gradient norm against the step; the
-- expert boundaries (the cascade's merges, metric expert.end, before the last step) as dashed
-- vertical lines in each.
function M.run_curves(store, id, db, out, prog)
  local row
  for _, r in ipairs(store:runs(0)) do if r.id == id then row = r end end
  if not row then fail(string.format("no run with id %d in %s (`lorasc status FILE` lists an experiment's runs with their ids)", id, db)) end
  local rows = store:metric_rows(id)
  local loss = rows["train.loss"]
  if not loss then
    fail(string.format("run %d (%s) logged no training step: an evaluation-only run (train.steps = 0), or one that failed or stopped before its first step", id, row.status))
  end
  local last = 0
  for _, s in ipairs(loss.steps) do last = math.max(last, s) end
  local bounds = {}
  for _, s in ipairs(rows["expert.end"] and rows["expert.end"].steps or {}) do
    if s < last then bounds[#bounds + 1] = s end
  end
  local vals = {}
  for name in pairs(rows) do
    if name:match("^val%.") and name ~= "val.loss" and name ~= "val.eval_seconds" then vals[#vals + 1] = name end
  end
  table.sort(vals, function(a, b) return (a == "val.score") ~= (b == "val.score") and a == "val.score" or a < b end)

  local blocks, index = {}, {}
  local function block(name)
    local s = rows[name]
    if not s then return end
    local lines = {}
    for i, st in ipairs(s.steps) do lines[i] = st .. " " .. num(s.values[i]) end
    blocks[#blocks + 1] = { title = name, header = "step value", rows = lines }
    index[name] = #blocks - 1
  end
  for _, name in ipairs { "train.loss", "val.loss", "lr", "grad_norm" } do block(name) end
  for _, name in ipairs(vals) do block(name) end
  local brows = {}
  for i, s in ipairs(bounds) do brows[i] = s .. " " .. num(rows["expert.end"].values[i]) end
  blocks[#blocks + 1] = { title = "expert boundaries (expert.end: the step that ended expert k)", header = "step expert", rows = brows }

  local function curve(name, style)
    return string.format("dat index %d using 1:2 with %s title %s", index[name], style, gp(name))
  end
  local panels = {}
  local lp = { curve("train.loss", "lines lw 2") }
  if index["val.loss"] then lp[2] = curve("val.loss", "linespoints lw 2 pt 7 ps 0.8") end
  panels[#panels + 1] = { title = "loss", plot = table.concat(lp, ", ") }
  if #vals > 0 then
    local vp = {}
    for _, name in ipairs(vals) do vp[#vp + 1] = curve(name, "linespoints lw 2 pt 7 ps 0.8") end
    panels[#panels + 1] = { title = "validation (eval.every)", plot = table.concat(vp, ", ") }
  end
  if index.lr then panels[#panels + 1] = { title = "learning rate", plot = curve("lr", "lines lw 2") } end
  if index.grad_norm then panels[#panels + 1] = { title = "gradient norm", plot = curve("grad_norm", "lines lw 2") } end

  local config = require("lorasc.core.interop").json_decode(row.config)
  local method = type(config.method) == "table" and config.method.name or "?"
  local title = string.format("run %d: %s, %s, seed %s (experiment %s, %s)%s", id, tostring(config.task), tostring(method),
                              tostring(row.seed), row.experiment, row.config_hash:sub(1, 12),
                              #bounds > 0 and string.format("; dashed: %d expert boundar%s", #bounds, #bounds == 1 and "y" or "ies") or "")
  local body = { "set grid", "set key top right", "set xlabel 'step'", string.format("set xrange [0:%d]", last) }
  for _, s in ipairs(bounds) do
    body[#body + 1] = string.format("set arrow from %d, graph 0 to %d, graph 1 nohead dashtype 2 linecolor rgb 'gray40'", s, s)
  end
  local cols = #panels > 1 and 2 or 1
  body[#body + 1] = string.format("set multiplot layout %d,%d title %s", (#panels + cols - 1) // cols, cols, gp(title))
  for _, p in ipairs(panels) do
    body[#body + 1] = "set title " .. gp(p.title)
    body[#body + 1] = "plot " .. p.plot
  end
  body[#body + 1] = "unset multiplot"
  local base = "run-" .. id
  write(out .. "/" .. base .. ".dat", data_text({ "lorasc plot " .. id .. ": " .. title, "database: " .. db,
                                                  "the metric rows of the run (metrics table), in the order logged" }, blocks))
  draw(prog, out, base, "training curves of run " .. id .. " (" .. db .. ")", table.concat(body, "\n"), 1200, 800)
  return base
end

-- Figures ----------------------------------------------------------------------------------

-- The config paths of runs ("method.rank", "train.lr", ...), sorted; "method" and "task" are
-- the method's label and the task.
local function config_paths(runs)
  local seen, list = { method = true, task = true }, { "method", "task" }
  for _, r in ipairs(runs) do
    for k in pairs(dsl.flatten(r.config, nil, {})) do
      if not seen[k] then seen[k] = true; list[#list + 1] = k end
      local prefix = k:match("^(.*)%.[^.]+$") -- a table on the path draws as its JSON
      while prefix do
        if not seen[prefix] then seen[prefix] = true; list[#list + 1] = prefix end
        prefix = prefix:match("^(.*)%.[^.]+$")
      end
    end
  end
  table.sort(list)
  return list, seen
end

-- The points of figure fig (reg.figures[name]) of FILE: per series (the `series` path's
-- values), per x (the `x` path's values), the cell report.compute chooses on validation, as
-- { series = { { name, points = { { x =, pos =, label =, mean =, std =, n =, ... } } } } }.
function M.figure_points(fig, reg, runs_of, store, file)
  local s, name, loc = fig.spec, fig.name, fig.where
  local ename = s.experiment or (reg.experiments[name] and name) or (#reg.order == 1 and reg.order[1]) or nil
  if not ename then
    fail(string.format("%s: figure '%s' does not say which experiment it draws: add experiment = \"...\" (experiments in %s: %s)",
                       loc, name, file, table.concat(reg.order, ", ")))
  end
  if not reg.experiments[ename] then
    fail(string.format("%s: figure '%s': no experiment named '%s' in %s%s; experiments: %s", canon.key_loc(loc, "experiment"), name,
                       ename, file, canon.did_you_mean(ename, reg.order) or "", table.concat(reg.order, ", ")))
  end
  local runs = runs_of(ename)
  local tasks, task_seen = {}, {}
  for _, r in ipairs(runs) do
    if not task_seen[r.task] then task_seen[r.task] = true; tasks[#tasks + 1] = r.task end
  end
  local task = s.task
  if task and not task_seen[task] then
    fail(string.format("%s: figure '%s': experiment '%s' has no task '%s'; its tasks: %s", canon.key_loc(loc, "task"), name, ename, task, table.concat(tasks, ", ")))
  end
  if not task and #tasks > 1 then
    fail(string.format("%s: figure '%s' draws one task and experiment '%s' has %d (%s): add task = \"%s\" (or one figure per task)",
                       loc, name, ename, #tasks, table.concat(tasks, ", "), tasks[1]))
  end
  task = task or tasks[1]
  local mine, hashes = {}, {}
  for _, r in ipairs(runs) do
    if r.task == task then mine[#mine + 1] = r; hashes[r.hash] = true end
  end
  local paths, valid = config_paths(mine)
  local series_path = s.series or "method"
  for _, kv in ipairs { { "x", s.x }, { "series", series_path } } do
    if not valid[kv[2]] then
      local hint = canon.nearest(kv[2], paths)
      local varying = dsl.varying_keys(mine)
      table.insert(varying, 1, "method")
      fail(string.format("%s: figure '%s': %s = \"%s\" matches no config key of experiment '%s'%s; keys that vary between its runs: %s (any key of a run's config works: `lorasc show RUN_ID` prints one)",
                         canon.key_loc(loc, kv[1]), name, kv[1], kv[2], ename, hint and (" (did you mean '" .. hint .. "'?)") or "",
                         table.concat(varying, ", ")))
    end
  end
  if series_path == s.x then -- report.compute needs two paths (one combination per point)
    fail(string.format("%s: figure '%s': series and x are both '%s': a series needs another path than the x axis (e.g. series = \"method\")",
                       canon.key_loc(loc, "series"), name, s.x))
  end
  local y = s.y or "test.score"
  local select = s.select or (mine[1] and mine[1].select) or "val.score"
  local db_runs = report.db_runs(store, ename)
  local have, names = report.logged(db_runs, hashes)
  if #names == 0 then
    fail(string.format("no run of experiment '%s' (task %s) is done in the database: `lorasc run %s` runs them (figure '%s')", ename, task, file, name))
  end
  for _, kv in ipairs { { "y", y }, { "select", select } } do
    if not have[kv[2]] then
      local hint = canon.nearest(kv[2], names)
      fail(string.format("%s: figure '%s': %s = \"%s\" was logged by no done run of experiment '%s'%s; they logged: %s",
                         canon.key_loc(loc, kv[1]), name, kv[1], kv[2], ename, hint and (" (did you mean '" .. hint .. "'?)") or "",
                         table.concat(names, ", ")))
    end
  end
  -- the table's arithmetic: per (series, x) cell, the hyper-parameters with the best mean
  -- validation score over seeds, and the metric's mean ± std over those seeds
  local t = report.compute(mine, db_runs, { rows = series_path, cols = s.x, metric = y, select = select }, { where = loc })
  local numeric = true
  for _, c in ipairs(t.cols) do numeric = numeric and tonumber(c) ~= nil end
  local xs = {}
  for i, c in ipairs(t.cols) do xs[i] = c end
  if numeric then table.sort(xs, function(a, b) return tonumber(a) < tonumber(b) end) end
  local metric = y:match("^%w+%.(.+)$")
  local scale = s.scale or ((metric == "score" or metric:match("%.score$")) and 100 or 1)
  local fig_out = { name = name, experiment = ename, task = task, x = s.x, y = y, series_path = series_path, select = select,
                    scale = scale, numeric = numeric, xs = xs, series = {} }
  local n_points = 0
  for _, row in ipairs(t.rows) do
    local pts = {}
    for i, col in ipairs(xs) do
      local c = t.cells[row .. "\0" .. col]
      if c and c.n > 0 then
        pts[#pts + 1] = { x = numeric and tonumber(col) or i - 1, label = col, mean = c.mean * scale,
                          std = c.std == c.std and c.std * scale or 0, n = c.n, failed = c.failed or 0,
                          select_mean = c.select_mean, selected = c.selected or "", candidates = c.candidates }
      end
    end
    n_points = n_points + #pts
    fig_out.series[#fig_out.series + 1] = { name = row, points = pts }
  end
  if n_points == 0 then
    fail(string.format("figure '%s' has no point: no (%s, %s) combination of experiment '%s' has a done run with %s", name, series_path, s.x, ename, y))
  end
  return fig_out
end

-- Draws figure data f (M.figure_points) as OUT/<name>.{dat,csv,gp,png,svg}.
function M.draw_figure(f, fig, file, db, out, prog)
  local s = fig.spec
  local blocks, plots = {}, {}
  local csv = { "series,x,mean,std,n,failed,select_mean,selected" }
  for _, se in ipairs(f.series) do
    local lines = {}
    for _, p in ipairs(se.points) do
      lines[#lines + 1] = string.format("%s %s %s %d \"%s\"", num(p.x), num(p.mean), num(p.std), p.n, (p.label:gsub('"', "'")))
      csv[#csv + 1] = string.format("%s,%s,%s,%s,%d,%d,%s,\"%s\"", se.name:find("[,\"]") and ('"' .. se.name:gsub('"', '""') .. '"') or se.name,
                                    p.label:find("[,\"]") and ('"' .. p.label:gsub('"', '""') .. '"') or p.label, num(p.mean), num(p.std), p.n, p.failed,
                                    p.select_mean and num(p.select_mean * f.scale) or "", p.selected:gsub('"', '""'))
    end
    blocks[#blocks + 1] = { title = se.name, header = "x mean std n label", rows = lines }
    if #se.points > 0 then
      plots[#plots + 1] = string.format("dat index %d using 1:2:3 with yerrorlines lw 2 pt 7 ps 1 title %s", #blocks - 1, gp(se.name))
    end
  end
  local ylabel = s.ylabel or (f.y .. (f.scale ~= 1 and (" (x" .. num(f.scale) .. ")") or ""))
  local title = s.title or string.format("%s: %s against %s (%s)", f.name, f.y, f.x, f.task)
  local body = { "set grid", "set key outside right top", "set title " .. gp(title),
                 "set xlabel " .. gp(s.xlabel or f.x), "set ylabel " .. gp(ylabel),
                 "set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05" }
  local tics = {}
  for i, x in ipairs(f.xs) do tics[#tics + 1] = string.format("%s %s", gp(x), f.numeric and x or tostring(i - 1)) end
  body[#body + 1] = "set xtics (" .. table.concat(tics, ", ") .. ")"
  if s.logx then body[#body + 1] = "set logscale x 2" end
  body[#body + 1] = "plot " .. table.concat(plots, ", \\\n     ")
  local head = { string.format("lorasc plot %s --figure %s (database %s)", file, f.name, db),
                 string.format("experiment %s, task %s: %s (x%s) against %s per %s; each point: the hyper-parameters with the best mean %s over seeds, then mean and sample std (0 for one seed) of %s over those seeds, n seeds",
                               f.experiment, f.task, f.y, num(f.scale), f.x, f.series_path, f.select, f.y),
                 f.numeric and "x: the config value" or "x: the position of the label (last column) on the axis" }
  write(out .. "/" .. f.name .. ".dat", data_text(head, blocks))
  write(out .. "/" .. f.name .. ".csv", table.concat(csv, "\n") .. "\n")
  draw(prog, out, f.name, string.format("figure %s of %s (%s)", f.name, file, db), table.concat(body, "\n"), 1000, 650)
  return f.name
end

-- `lorasc plot RUN_ID | FILE [--figure NAME] [--out DIR] [--db PATH]`; cli: the command line's
-- open_store and load_experiments.
function M.command(opts, pos, cli)
  local target = pos[1]
  if not target then fail("needs a RUN_ID or an experiment FILE (see lorasc plot --help)") end
  if #pos > 1 then fail(string.format("takes one RUN_ID or FILE, got %d arguments (%s)", #pos, table.concat(pos, " "))) end
  local id = target:match("^%d+$") and math.tointeger(tonumber(target))
  if id and opts.figure then fail("--figure names a figure of an experiment FILE; a RUN_ID draws that run's training curves") end
  local prog = gnuplot()
  local reg, list
  if not id then -- the experiment file first: its errors come before the database's
    list, reg = cli.load_experiments(target, opts)
    local names = opts.figure and { opts.figure } or reg.figure_order
    if #reg.figure_order == 0 then fail(target .. " declares no figure: add figure \"name\" { x = \"method.rank\", y = \"test.score\", series = \"method\" } (lua/DSL.md)") end
    for _, n in ipairs(names) do
      if not reg.figures[n] then
        fail(string.format("no figure named '%s' in %s%s; figures: %s", n, target, canon.did_you_mean(n, reg.figure_order) or "",
                           table.concat(reg.figure_order, ", ")))
      end
    end
    list.names = names
  end
  local store <close> = cli.open_store(opts, false)
  if not store then fail("no database at " .. opts.db .. " (`lorasc run FILE --db " .. opts.db .. "` makes it)") end
  local out = opts.out or (dirname(opts.db) .. "/plots")
  sys.mkdir(out)
  local bases = {}
  if id then
    bases[1] = M.run_curves(store, id, opts.db, out, prog)
  else
    local expanded = {}
    for _, e in ipairs(list) do expanded[e.name] = e.runs end
    local function runs_of(name)
      expanded[name] = expanded[name] or dsl.expand_experiment(reg.experiments[name])
      return expanded[name]
    end
    for _, n in ipairs(list.names) do
      local fig = reg.figures[n]
      bases[#bases + 1] = M.draw_figure(M.figure_points(fig, reg, runs_of, store, target), fig, target, opts.db, out, prog)
    end
  end
  if not prog then
    fail(string.format("gnuplot is not installed (Debian: apt-get install gnuplot-nox; or set LORASC_GNUPLOT to its path): nothing drawn; the data and the scripts are in %s (%s)",
                       out, table.concat(bases, ".dat/.gp, ") .. ".dat/.gp"))
  end
  for _, b in ipairs(bases) do
    print(string.format("lorasc plot: %s/%s.png and .svg (data %s.dat, script %s.gp)", out, b, b, b))
  end
  return 0
end

return M
