-- The helpers every part of the DSL's validation shares: user errors ("lorasc: file:line:
-- ..."), the file:line of a constructor call or of a key inside it, checks of keys and
-- numbers, and where a model's file is found. No DSL constructor and no expansion here.
local sys = require "lorasc.core.sys"
local json = require "lorasc.json"

local M = {}

function M.fail(msg) error("lorasc: " .. msg, 0) end
local fail = M.fail

-- An error value as one sentence, without the "lorasc: " that marks a user error for the
-- host (core's messages arrive with it: bind_error), to be embedded in another message.
function M.sentence(e)
  local msg = type(e) == "string" and e or tostring(e)
  return (msg:gsub("^lorasc: ", ""))
end

-- "file:line" of the experiment file's call to a constructor, `level` frames above the caller.
function M.where(level)
  local info = debug.getinfo(level + 1, "Sl")
  if not info then return "?" end
  local src = info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
  return src .. ":" .. (info.currentline or 0)
end

function M.sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b)
    if type(a) == type(b) and type(a) ~= "table" then return a < b end
    return type(a) < type(b)
  end)
  return ks
end

-- What lorasc refuses to start, each named with its number in the message (lua/DSL.md):
-- an experiment file's evaluation (Lua instructions, new memory), the runs one experiment
-- expands to, epochs, and steps (train.steps, pretrain.steps, and epochs x steps per epoch).
M.LIMITS = { file_instructions = 200000000, file_mib = 256, runs = 100000, epochs = 10000,
             steps = 100000000 }

-- A typo inside a multi-line table is reported at the line that holds it: loc is the
-- "file:line" of the call that received the table, and the key is looked for in that file
-- from that line on (the first `key =` wins). A dotted key ("train.lr") is looked for part
-- by part ("train =", then "lr =" from that line on), so a value is reported at its own line,
-- not at the experiment's. Chunks that are not files keep loc.
function M.key_loc(loc, key)
  local file, line = loc:match("^(.*):(%d+)$")
  if not file or type(key) ~= "string" then return loc end
  local parts = {}
  for p in key:gmatch("[%a_][%w_]*") do parts[#parts + 1] = p end
  if #parts == 0 then return loc end
  local f = io.open(file, "r")
  if not f then return loc end
  local lines = {}
  for text in f:lines() do lines[#lines + 1] = text end
  f:close()
  local start, found = tonumber(line), nil
  for _, part in ipairs(parts) do
    local pattern = "%f[%w_]" .. part:gsub("%p", "%%%0") .. "%s*="
    local hit
    for n = start, math.min(#lines, start + 1000) do
      if lines[n]:find(pattern) then hit = n break end
    end
    if not hit then break end
    found, start = hit, hit
  end
  return found and (file .. ":" .. found) or loc
end

-- The closest of `names` to `word` (case ignored; at most a third of its letters edited),
-- for "did you mean ...?"; nil when none is close.
function M.nearest(word, names)
  if type(word) ~= "string" then return nil end
  local w = word:lower()
  local best, best_d
  for _, name in ipairs(names) do
    local n = name:lower()
    -- edit distance with adjacent transpositions ("stpes" is one edit from "steps")
    local prev2, prev = nil, {}
    for j = 0, #n do prev[j] = j end
    for i = 1, #w do
      local cur = { [0] = i }
      for j = 1, #n do
        local cost = w:byte(i) == n:byte(j) and 0 or 1
        cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        if prev2 and j > 1 and w:byte(i) == n:byte(j - 1) and w:byte(i - 1) == n:byte(j) then
          cur[j] = math.min(cur[j], prev2[j - 2] + 1)
        end
      end
      prev2, prev = prev, cur
    end
    local d = prev[#n]
    if name ~= word and (best_d == nil or d < best_d) then best, best_d = name, d end
  end
  if best and best_d <= math.max(1, #word // 3) then return best end
end

-- " (did you mean 'X'?)" or "".
function M.did_you_mean(word, names)
  local n = M.nearest(word, names)
  return n and string.format(" (did you mean '%s'?)", n) or ""
end

-- A value as a message shows it: strings with their quotes, lists as { a, b }.
function M.show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "number" then
    if v ~= v then return "nan" end
    if v == math.huge or v == -math.huge then return v > 0 and "inf" or "-inf" end
    return json.number(v)
  end
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do
      if i > 8 then parts[#parts + 1] = "..." break end
      parts[#parts + 1] = M.show(x)
    end
    return #parts > 0 and ("{ " .. table.concat(parts, ", ") .. " }") or "a table"
  end
  return tostring(v)
end

-- Unknown keys are errors that name the key, where, and the valid keys.
function M.check_keys(t, valid, what, loc)
  if type(t) ~= "table" then fail(string.format("%s: %s must be a table", loc, what)) end
  local set = {}
  for _, k in ipairs(valid) do set[k] = true end
  for _, k in ipairs(M.sorted_keys(t)) do
    if type(k) ~= "string" or not set[k] then
      local v = {}
      for _, x in ipairs(valid) do v[#v + 1] = x end
      table.sort(v)
      fail(string.format("%s: unknown key '%s' in %s; valid keys: %s%s", M.key_loc(loc, k), tostring(k), what,
                         table.concat(v, ", "), M.did_you_mean(k, v)))
    end
  end
end

-- A value that must be one of a list of names (e.g. slow_merge): the error lists them.
function M.choice(v, what, loc, names)
  for _, n in ipairs(names) do
    if v == n then return v end
  end
  fail(string.format("%s: unknown %s '%s'; valid: %s%s", M.key_loc(loc, what), what, tostring(v),
                     table.concat(names, ", "), M.did_you_mean(v, names)))
end

-- The last name of a dotted key ("train.lr" -> "lr"), as a user writes it.
local function last_key(what) return what:match("([%a_][%w_]*)[^%w_]*$") or what end

function M.finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

-- A number (cond(v) true, else msg); the error is at the key's own line and shows what was
-- written: a string with its quotes, a list with the grid{} it probably meant, nan and inf.
function M.num(v, what, loc, cond, msg)
  if type(v) ~= "number" then
    local at, key = M.key_loc(loc, what), last_key(what)
    if type(v) == "string" and tonumber(v) then
      fail(string.format("%s: %s must be a number, got the string %s; write %s = %s (without quotes)",
                         at, what, M.show(v), key, v))
    elseif type(v) == "table" and v.kind == nil and #v > 0 then
      fail(string.format("%s: %s must be a number, got the list %s; to try several values write %s = grid %s",
                         at, what, M.show(v), key, M.show(v)))
    end
    fail(string.format("%s: %s must be a number, got %s", at, what,
                       type(v) == "table" and "a table" or type(v) == "string" and ("the string " .. M.show(v)) or tostring(v)))
  end
  if not M.finite(v) then
    fail(string.format("%s: %s = %s is not a finite number", M.key_loc(loc, what), what, M.show(v)))
  end
  if cond and not cond(v) then fail(string.format("%s: %s = %s is invalid: %s", M.key_loc(loc, what), what, json.number(v), msg)) end
  return v
end
function M.int(v, what, loc, cond, msg)
  M.num(v, what, loc, cond, msg)
  if math.tointeger(v) == nil then fail(string.format("%s: %s must be an integer, got %s", M.key_loc(loc, what), what, M.show(v))) end
  return math.tointeger(v)
end
-- The divergence rule's factor (train.lua): the default 4 is left out of a config (nil),
-- false turns the rule off, otherwise a number > 1.
M.DIVERGE = 4
function M.diverge(v, what, loc)
  if v == nil or v == M.DIVERGE then return nil end
  if v == false then return false end
  return M.num(v, what, loc, function(x) return x > 1 end,
               "must be a factor > 1 over the starting loss (default 4), or false to turn the divergence check off")
end

function M.pos(x) return x > 0 end
function M.nonneg(x) return x >= 0 end

-- A file of a model (checkpoint, tokenizer): as given, else in the data directory.
function M.data_file(path)
  if sys.exists(path) then return path end
  if path:sub(1, 1) ~= "/" and sys.exists(sys.datadir_path(path)) then return sys.datadir_path(path) end
end

-- A path that does not exist as written but does with other letter cases (a folder of the
-- data directory typed "llama2c_Stories260K"): the path as it exists, written as the user
-- would (relative paths as relative), else nil. Looked for under the working directory,
-- then the data directory.
function M.case_match(path)
  local function walk(root, rel)
    local cur, out = root, {}
    for part in rel:gmatch("[^/]+") do
      local names = sys.listdir(cur)
      if not names then return nil end
      local hit
      for _, n in ipairs(names) do if n == part then hit = n break end end
      if not hit then
        for _, n in ipairs(names) do if n:lower() == part:lower() then hit = n break end end
      end
      if not hit then return nil end
      out[#out + 1] = hit
      cur = (cur:sub(-1) == "/" and cur or cur .. "/") .. hit
    end
    return table.concat(out, "/")
  end
  if path:sub(1, 1) == "/" then
    local m = walk("/", path:sub(2))
    return m and ("/" .. m) or nil
  end
  return walk(".", path) or walk(sys.datadir_path(""), path)
end

-- The sentence for a model file (checkpoint, tokenizer) that is not found: a case typo names
-- the path that exists; otherwise where it was looked for and how to fetch it.
function M.missing_file(what, path)
  local m = M.case_match(path)
  if m and m ~= path then
    return string.format("%s '%s' not found; did you mean '%s'? (paths are case-sensitive)", what, path, m)
  end
  return string.format("%s '%s' not found (looked in the working directory and in the data directory %s); get it with `lorasc data fetch %s --from DIR` (DIR a mirror such as ../shared/data)",
                       what, path, sys.datadir_path(""), path:match("^([^/]+)/") or "NAME")
end

return M
