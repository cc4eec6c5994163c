-- Reports that cannot mislead (issue 14), on hand-made databases: every cell one (row,
-- column, task, method) combination (a layout that leaves the task out names it in the
-- column; rows = cols refused), labels instead of "nil", scale on scores only, the 95%
-- intervals, the paired difference to the baseline (t over seeds by hand; the bootstrap over
-- stored examples, reproducible; none with one seed and no examples), ▲/▼ only when the
-- interval excludes 0, the cost column, every refusal of a bad spec with its file:line, the
-- long-format CSV with a report column, published numbers with their caption. Run by
-- `lorasc lua`; the command-line side (no database, --out) is in test_cli.sh.
local dsl = require "lorasc.dsl"
local report = require "lorasc.report"

local checks = require("checks").new("test_report")
local check = checks.check
local function near(a, b, what)
  check(a ~= nil and math.abs(a - b) <= 1e-9 * (1 + math.abs(b)), string.format("%s: got %s, expected %.17g", what, tostring(a), b))
end
local function has(text, needle, what) check(text:find(needle, 1, true) ~= nil, what .. ": no '" .. needle .. "' in:\n" .. text) end

local tmp = os.tmpname()
local function load(text)
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  return dsl.load_file(tmp)
end
-- the error of f(...) (a string), or nil when it succeeds
local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  return not ok and tostring(e) or nil
end

local MODEL = [[llama { dim = 16, n_layers = 1, n_heads = 2, seq_len = 32, pretrain = { corpus = "text:gpl3", steps = 4 } }]]
local reg = load([[
experiment "e" {
  model = ]] .. MODEL .. [[,
  tasks = { "text:apache", "text:gpl2" },
  train = { steps = 4, batch = 2, seq = 32, lr = grid { 1e-3, 1e-2 } },
  method = { lora { rank = 2 }, lorasc { rank = 2, experts = 2 } },
  seeds = { 1, 2, 3 },
}
report "e" {
  rows = "method",
  cols = "train.lr",
  metrics = { "test.score", "test.loss" },
  baseline = "lora",
}
]])
local runs = dsl.expand_experiment(reg.experiments.e)
local where = reg.reports.e.where

-- A database: apache is easy (0.8), gpl2 hard (0.3); lorasc is +0.02 on every seed of
-- apache (significant) and +/-0.01 alternating on gpl2 (not). val prefers lr 1e-3.
local db, by_hash = {}, {}
for i, r in ipairs(runs) do
  local base = r.task == "text:apache" and 0.8 or 0.3
  local gain = 0
  if r.label == "lorasc" then gain = r.task == "text:apache" and 0.02 + 0.001 * r.seed or (r.seed % 2 == 0 and 0.01 or -0.01) end
  local val = r.config.train.lr == 1e-3 and 0.5 or 0.4
  local row = { id = i, status = "done", config_hash = r.hash, wall_time_s = 10 + i,
                evals = { val = { score = val }, test = { score = base + gain + 0.001 * r.seed, loss = 2 - base } } }
  db[#db + 1], by_hash[r.hash] = row, row
end
local function env_with(examples)
  return {
    where = where,
    metrics = function(id)
      local m = { { name = "train.unit_seconds", last = 0.002 }, { name = "train.seconds", last = 2 } }
      -- the first run pretrained the base: its wall time is not the run's cost
      if id == 1 then m[3] = { name = "base.pretrain_seconds", last = 6 } end
      return m
    end,
    examples = examples,
  }
end

-- (a) cols = train.lr with two tasks: each column names its task, no cell mixes tasks
local t = report.compute_multi(runs, db, reg.reports.e.spec, env_with())
local want_cols = { "0.001 text:apache score", "0.01 text:apache score", "0.001 text:gpl2 score", "0.01 text:gpl2 score",
                    "0.001 text:apache loss", "0.01 text:apache loss", "0.001 text:gpl2 loss", "0.01 text:gpl2 loss" }
check(#t.cols == #want_cols, "8 columns (2 lr x 2 tasks x 2 metrics), got " .. table.concat(t.cols, " | "))
for _, c in ipairs(want_cols) do
  local found = false
  for _, x in ipairs(t.cols) do found = found or x == c end
  check(found, "column '" .. c .. "' in " .. table.concat(t.cols, " | "))
end
local lora_gpl2 = t.cells["lora\0" .. "0.001 text:gpl2 score"]
near(lora_gpl2 and lora_gpl2.mean, 0.302, "lora gpl2: its own task's mean (not apache's 0.8)")
local lora_apache = t.cells["lora\0" .. "0.001 text:apache score"]
near(lora_apache and lora_apache.mean, 0.802, "lora apache mean")
-- 95% t interval of {0.801, 0.802, 0.803}: 0.802 ± 4.302652729911275 * 0.001 / sqrt(3)
near(lora_apache.hi - lora_apache.mean, 4.302652729911275 * 0.001 / math.sqrt(3), "cell t interval")

-- the paired differences: apache +0.02+0.001*seed on 3 seeds -> better; gpl2 -> no verdict
local la = t.cells["lorasc\0" .. "0.001 text:apache score"]
check(la.diff and la.diff.method == "t" and la.diff.n == 3, "apache diff: paired t over 3 seeds")
near(la.diff.mean, 0.022, "apache diff mean")
local sd = 0.001 -- diffs 0.021, 0.022, 0.023
near(la.diff.lo, 0.022 - 4.302652729911275 * sd / math.sqrt(3), "apache diff lo")
check(la.verdict == "better", "apache: better (interval above 0)")
local lg = t.cells["lorasc\0" .. "0.001 text:gpl2 score"]
check(lg.diff and lg.diff.lo < 0 and lg.diff.hi > 0 and lg.verdict == nil, "gpl2: interval holds 0, no verdict")
-- losses are lower-better and not scaled: lorasc's loss equals lora's -> no verdict either
local loss_cell = t.cells["lora\0" .. "0.001 text:apache loss"]
check(loss_cell.score == false, "loss is not a score")
local md = report.render(t, { format = "markdown", title = "e", scale = spec_scale })
has(md, "| lora | 80.20 ± 0.10 (3) [79.95, 80.45]", "markdown score cell x100 with its interval")
has(md, "1.20 ± 0.00 (3)", "markdown loss cell not scaled")
has(md, "▲", "markdown mark for the significant row")
has(md, "Student t over seeds", "caption names the interval")
has(md, "paired percentile bootstrap over the test examples, 2000 resamples", "caption names the bootstrap")
has(md, "| 500 tokens/s, 19 s/run |", "cost column: 1 / 0.002 s per token, mean wall (19.5 s, 19 s without run 1's pretraining) of lora's reported runs")
check(not md:find("nil", 1, true), "no 'nil' anywhere: " .. md)
-- the marks only where the interval excludes zero: one ▲ (apache lr 1e-3 score), in the table
-- and in the differences table
local _, n_up = md:gsub("▲", "")
check(n_up == 5, "▲ in the caption, the apache cells of both lr and their differences: got " .. n_up)
check(not md:find("▼", 2, true) or select(2, md:gsub("▼", "")) == 1, "no ▼ but the caption's")
local csv = report.render(t, { format = "csv", report = "e" })
has(csv, "report,row,col,mean,std,n,ci_lo,ci_hi", "csv header")
has(csv, "e,lorasc,0.001 text:apache score,82.4", "csv row with the report column")
has(csv, ",500,tokens,19,0", "csv cost columns (19.5 - 6 / 12)")
has(csv, ",t,3,better,", "csv diff method, n and verdict")
has(csv, "e,lora,0.001 text:apache loss,1.2,", "csv loss unscaled")
local csv2 = report.render(t, { format = "csv", report = "e", csv_header = false })
check(not csv2:find("report,row", 1, true), "a second report's CSV has no header")

-- (b) rows = cols is refused; rows = task with methods left out names the method in the column
local e1 = err_of(report.compute, runs, db, { rows = "task", cols = "task" }, { where = where })
check(e1 and e1:find("rows and cols are both 'task'", 1, true), "rows = cols refused: " .. tostring(e1))
local tt = report.compute(runs, db, { rows = "task", cols = "train.lr" }, {})
local labelled = false
for _, c in ipairs(tt.cols) do labelled = labelled or c:find("^lorasc %(train.lr = 0.001%)") ~= nil end
check(labelled, "rows = task, cols = train.lr: the method named in the column: " .. table.concat(tt.cols, " | "))

-- rows = task: rows of different tasks are never paired (other examples, other data)
local tr = report.compute(runs, db, { rows = "task", cols = "method" }, env_with(function() return { 1, 0, 1 } end))
for key, c in pairs(tr.cells) do check(c.diff == nil and c.verdict == nil, "rows of tasks paired: " .. key:gsub("\0", " / ")) end
local mdr = report.render(tr, { format = "markdown" })
check(not mdr:find("Paired difference", 1, true) and not mdr:find("▲", 1, true), "no differences between tasks: " .. mdr)
has(mdr, "95% intervals in brackets: Student t over seeds.", "the caption still names the cells' interval")

-- (c) labels: rows = method.alpha on lora and lorasc: "lora", never "nil"
local reg2 = load([[
experiment "a" {
  model = ]] .. MODEL .. [[,
  tasks = { "text:apache" },
  train = { steps = 4, batch = 2, seq = 32 },
  method = { lora { rank = 2 }, lorasc { rank = 2, experts = 2, alpha = grid { 0.5, 0.8 } } },
  seeds = { 1 },
}
]])
local runs2 = dsl.expand_experiment(reg2.experiments.a)
local db2 = {}
for i, r in ipairs(runs2) do db2[i] = { id = i, status = "done", config_hash = r.hash, evals = { val = { score = 0.5 }, test = { score = 0.5 + 0.01 * i } } } end
local t2 = report.compute(runs2, db2, { rows = "method.alpha" }, {})
local rows2 = table.concat(t2.rows, " | ")
check(rows2 == "lora | lorasc (method.alpha = 0.5) | lorasc (method.alpha = 0.8)", "row labels: " .. rows2)

-- one seed: the bootstrap over stored examples (reproducible), else no interval
local ex = {}
for i = 1, #runs2 do
  ex[i] = {}
  for k = 1, 200 do ex[i][k] = (k % 10 < 5 + i) and 1 or 0 end -- run i gets (5+i)/10 right
end
local envb = { examples = function(id, split, metric)
  check(split == "test" and metric == "score", "examples asked for test.score")
  return ex[id]
end }
local tb1 = report.compute(runs2, db2, { rows = "method.alpha" }, envb)
local tb2 = report.compute(runs2, db2, { rows = "method.alpha" }, envb)
local cb1, cb2 = tb1.cells["lorasc (method.alpha = 0.5)\0text:apache"], tb2.cells["lorasc (method.alpha = 0.5)\0text:apache"]
check(cb1.diff and cb1.diff.method == "bootstrap" and cb1.diff.n == 200 and cb1.diff.resamples == 2000, "one seed: bootstrap over 200 examples")
check(cb1.diff.lo == cb2.diff.lo and cb1.diff.hi == cb2.diff.hi, "the bootstrap is reproducible")
near(cb1.diff.mean, 0.1, "bootstrap point estimate: 0.7 - 0.6")
check(cb1.verdict == "better", "an example-level gain of 10 points on 200 examples: better")
local tn = report.compute(runs2, db2, { rows = "method.alpha" }, {})
local cn = tn.cells["lorasc (method.alpha = 0.5)\0text:apache"]
check(cn.diff and cn.diff.method == "none" and cn.diff.lo == nil and cn.verdict == nil, "one seed, no examples: no interval, no mark")
local mdn = report.render(tn, { format = "markdown" })
has(mdn, "1 seed, no examples stored", "markdown says why there is no interval")

-- two seeds whose differences are equal (-0.02 on both, as BBH's scores out of 50 examples
-- gave in Table 2): Student's t has no spread (its
-- interval would have width 0 and mark the row), so the bootstrap over the examples of both
-- seeds judges it; without stored examples, no interval and no mark
local reg3 = load([[
experiment "z" {
  model = ]] .. MODEL .. [[,
  tasks = { "text:apache" },
  train = { steps = 4, batch = 2, seq = 32 },
  method = { lora { rank = 2 }, lorasc { rank = 2, experts = 2 } },
  seeds = { 1, 2 },
}
]])
local runs3 = dsl.expand_experiment(reg3.experiments.z)
local db3, ex3 = {}, {}
for i, r in ipairs(runs3) do
  -- lora 0.12 / 0.10, lorasc 0.10 / 0.08: differences equal up to the rounding of doubles
  local s = ({ lora = { 0.12, 0.10 }, lorasc = { 0.10, 0.08 } })[r.label][r.seed]
  db3[i] = { id = i, status = "done", config_hash = r.hash, evals = { val = { score = 0.5 }, test = { score = s } } }
  ex3[i] = {}
  for k = 1, 50 do ex3[i][k] = (k <= math.floor(50 * s + 0.5)) and 1 or 0 end
end
local envz = { examples = function(id) return ex3[id] end }
local cz = report.compute(runs3, db3, { rows = "method" }, envz).cells["lorasc\0text:apache"]
check(cz.diff and cz.diff.method == "bootstrap" and cz.diff.n == 100 and cz.diff.seeds == 2,
      "equal differences over 2 seeds: a bootstrap over their 100 examples, got " ..
      tostring(cz.diff and cz.diff.method) .. " " .. tostring(cz.diff and cz.diff.n))
near(cz.diff.mean, -0.02, "equal differences: the point estimate")
check(cz.verdict == nil, "one example in 50 on each seed: no mark")
has(report.render(report.compute(runs3, db3, { rows = "method" }, envz), { format = "markdown" }),
    "bootstrap, 100 examples of 2 seeds with equal differences", "markdown names the fallback")
local cz0 = report.compute(runs3, db3, { rows = "method" }, {}).cells["lorasc\0text:apache"]
check(cz0.diff and cz0.diff.method == "none" and cz0.diff.lo == nil and cz0.verdict == nil,
      "equal differences, no examples: no interval, no mark")
near(cz0.diff.mean, -0.02, "equal differences, no examples: the mean difference")

-- (d) the spec's refusals, each at its own line of the file
local function spec_err(spec_text, experiment)
  local ok, r = pcall(load, [[
experiment "e" {
  model = ]] .. MODEL .. [[,
  tasks = { "text:apache" },
  train = { steps = 4, batch = 2, seq = 32 },
  method = lora { rank = 2 },
}
]] .. spec_text)
  if not ok then return r end
  local rs = dsl.expand_experiment(r.experiments.e)
  local d = {}
  for i, x in ipairs(rs) do d[i] = { id = i, status = "done", config_hash = x.hash, evals = { val = { score = 0.5 }, test = { score = 0.6 } } } end
  local rep = r.reports[experiment or "e"]
  return err_of(function()
    report.check(rep.spec, rs, d, rep.where, "e")
    report.compute_multi(rs, d, rep.spec, { where = rep.where })
  end)
end
local function refused(spec_text, line, needle, what)
  local e = spec_err(spec_text)
  check(e and e:find(tmp .. ":" .. line .. ":", 1, true) and e:find(needle, 1, true) and not e:find("traceback", 1, true),
        what .. ": " .. tostring(e))
end
refused('report "e" {\n  rows = "method.rnak",\n}\n', 8, "rows = \"method.rnak\" matches no key of the runs' configs (did you mean 'method.rank'?)", "unknown row path")
refused('report "e" {\n  cols = "train.lrr" }\n', 8, "cols = \"train.lrr\" matches no key", "unknown column path")
refused('report "e" {\n  metric = "test.acc",\n}\n', 8, "metric = \"test.acc\" was logged by no done run", "unlogged metric")
refused('report "e" { metrics = { "test.score", "test.f1" } }\n', 7, "metrics = \"test.f1\" was logged by no done run", "unlogged metric of a list")
refused('report "e" {\n  select = "val.loss" }\n', 8, "select = \"val.loss\" was logged by no done run", "unlogged select")
refused('report "e" {\n  baseline = "lora+",\n}\n', 8, "baseline = \"lora+\" is not a row of the table", "baseline that is no row")
refused('report "e" { rows = 3 }\n', 7, "rows must be a string", "a path that is not a string")
refused('report "ee" { rows = "method" }\n', 7, "report 'ee' names no experiment of this file (did you mean 'e'?)", "unknown report name")
refused('report "by_rank" {\n  experiment = "ee", cols = "method.rank" }\n', 8, "report 'by_rank': experiment 'ee' is not an experiment of this file (did you mean 'e'?)", "a view of an unknown experiment")
check(spec_err('report "by_rank" { experiment = "e", cols = "method.rank" }\n', "by_rank") == nil, "a second view of an experiment passes")
refused('report "e" { metric = "score" }\n', 7, "must look like \"test.score\"", "a metric without its split")
check(spec_err('report "e" { rows = "method", cols = "task", metric = "test.score" }\n') == nil, "a good spec passes")

-- (e) published numbers with their caption line
local pf = os.tmpname()
local f = assert(io.open(pf, "w"))
f:write("# Table 9 of a test: made-up numbers for this test only\nrow,col,value\nlora,text:apache,70.5\n")
f:close()
local paper, caption = report.read_paper(pf)
os.remove(pf)
check(caption == "Table 9 of a test: made-up numbers for this test only", "caption: " .. tostring(caption))
check(paper["lora\0text:apache"] == 70.5, "paper value")

os.remove(tmp)
return checks.finish()
