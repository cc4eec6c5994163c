-- The helpers every part of the DSL's validation shares: user errors ("lorasc: file:line:
-- ..."), the file:line of a constructor call or of a key inside it, checks of keys and
-- numbers, and where a model's file is found. No DSL constructor and no expansion here.
local sys = require "lorasc.core.sys"
local json = require "lorasc.json"

local M = {}

function M.fail(msg) error("lorasc: " .. msg, 0) end
local fail = M.fail

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

-- A typo inside a multi-line table is reported at the line that holds it: loc is the
-- "file:line" of the call that received the table, and the key is looked for in that file
-- from that line on (the first `key =` wins). Chunks that are not files keep loc.
function M.key_loc(loc, key)
  local file, line = loc:match("^(.*):(%d+)$")
  if not file or type(key) ~= "string" then return loc end
  local f = io.open(file, "r")
  if not f then return loc end
  local start, n, found = tonumber(line), 0, nil
  local pattern = "%f[%w_]" .. key:gsub("%p", "%%%0") .. "%s*="
  for text in f:lines() do
    n = n + 1
    if n >= start and text:find(pattern) then
      found = n
      break
    end
    if n > start + 1000 then break end
  end
  f:close()
  return found and (file .. ":" .. found) or loc
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
      fail(string.format("%s: unknown key '%s' in %s; valid keys: %s", M.key_loc(loc, k), tostring(k), what,
                         table.concat(v, ", ")))
    end
  end
end

-- A value that must be one of a list of names (e.g. slow_merge): the error lists them.
function M.choice(v, what, loc, names)
  for _, n in ipairs(names) do
    if v == n then return v end
  end
  fail(string.format("%s: unknown %s '%s'; valid: %s", loc, what, tostring(v), table.concat(names, ", ")))
end

function M.num(v, what, loc, cond, msg)
  if type(v) ~= "number" then fail(string.format("%s: %s must be a number, got %s", loc, what, tostring(v))) end
  if cond and not cond(v) then fail(string.format("%s: %s = %s is invalid: %s", loc, what, json.number(v), msg)) end
  return v
end
function M.int(v, what, loc, cond, msg)
  M.num(v, what, loc, cond, msg)
  if math.tointeger(v) == nil then fail(string.format("%s: %s must be an integer, got %s", loc, what, tostring(v))) end
  return math.tointeger(v)
end
function M.pos(x) return x > 0 end
function M.nonneg(x) return x >= 0 end

-- A file of a model (checkpoint, tokenizer): as given, else in the data directory.
function M.data_file(path)
  if sys.exists(path) then return path end
  if path:sub(1, 1) ~= "/" and sys.exists(sys.datadir_path(path)) then return sys.datadir_path(path) end
end

return M
