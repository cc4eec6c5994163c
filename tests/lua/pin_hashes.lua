-- Pinned run hashes (issue 10): expands every committed experiment file (experiments/*.lua,
-- experiments/paper/*.lua; those whose data cannot exist here are named in NOT_PINNED)
-- plus tests/lua/{tiny,tiny_image,pinned_methods}.lua and compares each run's config hash
-- (SHA-256 of its canonical JSON) with tests/lua/expected_hashes.txt. A refactoring of the
-- DSL must leave them identical; a deliberate change of canonicalisation updates the file
-- (`lorasc lua tests/lua/pin_hashes.lua ROOT --write`, then say why in the commit).
-- A file whose data is absent is skipped with the reason (all skipped: exit 77, meson's skip).
local dsl = require "lorasc.dsl"
local sys = require "lorasc.core.sys"
local data = require "lorasc.core.data"
local tasks_mod = require "lorasc.core.tasks"

local root, mode = ...
if not root then error("usage: lorasc lua pin_hashes.lua SOURCE_ROOT [--write]", 0) end
local expected_path = root .. "/tests/lua/expected_hashes.txt"

-- What each file needs before it can expand; nil = ready, else the reason to skip.
local function need_text(...)
  for _, t in ipairs { ... } do
    local files = data.resolve(t)
    if not files then return "text task " .. t .. " cannot be resolved" end
    for f in files:gmatch("[^:]+") do
      if not sys.exists(f) then return "text task " .. t .. " needs " .. f end
    end
  end
end
local function need_fashion()
  if sys.exists(sys.datadir_path("fashion-mnist/train-images-idx3-ubyte.gz")) then return end
  if sys.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") then return end
  return "Fashion-MNIST is absent (apt-get install dataset-fashion-mnist)"
end
local function need_mnist_t10k()
  if sys.exists(sys.datadir_path("mnist/t10k-images-idx3-ubyte.gz")) then return end
  return "MNIST's t10k is absent from $LORASC_DATA/mnist (lorasc data fetch mnist --from DIR)"
end
local function need_lang(...)
  for _, f in ipairs { "llama2c_stories260K/stories260K.bin", "llama2c_stories260K/tok512.bin" } do
    if not sys.exists(sys.datadir_path(f)) then return sys.datadir_path(f) .. " is absent (set LORASC_DATA)" end
  end
  for _, t in ipairs { ... } do
    local ok, err = tasks_mod.check(t)
    if not ok then return "task " .. t .. ": " .. tostring(err) end
  end
end

local function need_smollm2(...)
  local gguf = "smollm2_135m/SmolLM2-135M-Instruct.Q4_1.gguf"
  if not sys.exists(sys.datadir_path(gguf)) then return sys.datadir_path(gguf) .. " is absent (lorasc data fetch smollm2-135m)" end
  for _, t in ipairs { ... } do
    local ok, err = tasks_mod.check(t)
    if not ok then return "task " .. t .. ": " .. tostring(err) end
  end
end

local FILES = {
  { "experiments/quickstart.lua", need_fashion },
  { "experiments/text_quickstart.lua", function() return need_text("text:gnu", "text:apache") end },
  { "experiments/table1_stories260k.lua", function()
      return need_lang("sst2", "rte", "cb", "boolq", "wsc", "wic", "multirc", "copa", "record", "gsm8k", "mmlu", "bbh") end },
  { "experiments/table2_stories260k.lua", function() return need_lang("alpaca", "mmlu", "bbh") end },
  { "experiments/smollm2_sst2.lua", function() return need_smollm2("sst2", "copa") end },
  { "experiments/paper/table1_smollm2.lua", function() return need_smollm2("sst2", "rte", "cb", "wsc", "wic", "copa") end },
  { "experiments/paper/table1_smollm2_alpha.lua", function() return need_smollm2("sst2", "rte") end },
  { "experiments/paper/table1_smollm2_lr.lua", function() return need_smollm2("sst2", "copa", "rte", "wic") end },
  { "experiments/paper/figure2_smollm2.lua", function() return need_smollm2("sst2") end },
  { "experiments/paper/table4_smollm2.lua", function() return need_smollm2("sst2", "copa") end },
  { "experiments/paper/table2_smollm2.lua", function() return need_smollm2("alpaca", "mmlu", "bbh", "gsm8k") end },
  { "experiments/paper/table3_vision.lua", need_mnist_t10k },
  { "experiments/paper/table4_experts.lua", need_mnist_t10k },
  { "experiments/paper/figure2_vision.lua", need_mnist_t10k },
  { "tests/lua/tiny.lua", function() return need_text("text:gpl3", "text:apache") end },
  { "tests/lua/tiny_image.lua", need_fashion },
  { "tests/lua/pinned_methods.lua", function() return need_text("text:gpl3", "text:apache") end },
}

-- Committed experiment files that cannot be pinned here: their data never exists on these
-- machines, and a file is expanded only against its data. Any other file under experiments/
-- missing from FILES fails the test, so a new one cannot go unpinned unnoticed.
local NOT_PINNED = {
  ["experiments/paper/table1_llama2_7b.lua"] = "Llama-2-7B and SQuAD/DROP are not in the mirror",
  ["experiments/paper/table2_llama2_7b.lua"] = "Llama-2-7B is not in the mirror",
  ["experiments/paper/table3_clip_imagenet.lua"] = "ImageNet and CLIP ViT-B/16 are not in the mirror (lua_folder_cli expands it on a miniature)",
}
local listed = {}
for _, entry in ipairs(FILES) do listed[entry[1]] = true end
local unlisted = 0
for _, dir in ipairs { "experiments", "experiments/paper" } do
  local names = require("lorasc.core.fs").list(root .. "/" .. dir) or {}
  table.sort(names)
  for _, n in ipairs(names) do
    local file = dir .. "/" .. n
    if n:match("%.lua$") and not listed[file] and not NOT_PINNED[file] then
      unlisted = unlisted + 1
      io.stderr:write("FAIL " .. file .. " is neither pinned (FILES) nor excused (NOT_PINNED)\n")
    end
  end
end
if unlisted > 0 then return 1 end

-- One line per run: file experiment hash task seed label.
local got, skipped, done = {}, {}, 0
for _, entry in ipairs(FILES) do
  local file, need = entry[1], entry[2]
  local reason = need()
  if reason then
    skipped[file] = reason
    print("SKIP " .. file .. ": " .. reason)
  else
    local reg = dsl.load_file(root .. "/" .. file)
    got[file] = {}
    for _, name in ipairs(reg.order) do
      for _, r in ipairs(dsl.expand_experiment(reg.experiments[name])) do
        got[file][#got[file] + 1] = string.format("%s %s %s %s %d %s", file, name, r.hash, r.task, r.seed, r.label)
      end
    end
    done = done + 1
  end
end

if mode == "--write" then
  local skipped_any = next(skipped)
  if skipped_any then error("--write needs every file's data; skipped: " .. skipped_any, 0) end
  local f = assert(io.open(expected_path, "w"))
  f:write("# file experiment config-hash task seed label (tests/lua/pin_hashes.lua; issue 10)\n")
  for _, entry in ipairs(FILES) do
    for _, line in ipairs(got[entry[1]]) do f:write(line, "\n") end
  end
  f:close()
  print("wrote " .. expected_path)
  return 0
end

local expected = {}
for line in io.lines(expected_path) do
  if line:sub(1, 1) ~= "#" and line ~= "" then
    local file = line:match("^(%S+)")
    expected[file] = expected[file] or {}
    expected[file][#expected[file] + 1] = line
  end
end

local failures, checked = 0, 0
for _, entry in ipairs(FILES) do
  local file = entry[1]
  if got[file] then
    local want, have = expected[file] or {}, got[file]
    if #want ~= #have then
      failures = failures + 1
      io.stderr:write(string.format("FAIL %s: %d runs, expected %d\n", file, #have, #want))
    end
    for i = 1, math.max(#want, #have) do
      if want[i] ~= have[i] then
        failures = failures + 1
        io.stderr:write(string.format("FAIL %s run %d:\n  expected %s\n  got      %s\n", file, i, tostring(want[i]), tostring(have[i])))
      else
        checked = checked + 1
      end
    end
  end
end
if failures > 0 then
  io.stderr:write(string.format("pinned run hashes: %d mismatches (%d runs matched)\n", failures, checked))
  return 1
end
if done == 0 then
  print("every file skipped: no data to expand them")
  return 77
end
print(string.format("pinned run hashes: %d runs of %d files identical%s", checked, done,
                    next(skipped) and " (some files skipped, see SKIP lines)" or ""))
return 0
