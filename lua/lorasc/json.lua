-- Canonical JSON: object keys sorted, integers (and integral floats) as integers, other
-- numbers in the shortest form that reads back exactly (%.15g, %.16g or %.17g), strings
-- escaped the same way everywhere. The same value gives the same bytes on every machine, so
-- its SHA-256 is a run's identity. Not a general JSON library (no decoder).
local M = {}

local function number(x)
  if math.type(x) == "integer" then return string.format("%d", x) end
  if x ~= x or x == math.huge or x == -math.huge then
    error("lorasc: cannot encode " .. tostring(x) .. " in a config", 0)
  end
  if x == math.floor(x) and math.abs(x) < 2^53 then return string.format("%d", math.tointeger(x)) end
  for _, fmt in ipairs { "%.15g", "%.16g", "%.17g" } do
    local s = string.format(fmt, x)
    if tonumber(s) == x then return s end
  end
end
M.number = number

local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
local function str(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function is_array(t)
  local n = #t
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n and (n > 0 or next(t) == nil)
end

local function encode(v, out)
  local ty = type(v)
  if ty == "table" then
    if next(v) ~= nil and is_array(v) then
      out[#out + 1] = "["
      for i, x in ipairs(v) do
        if i > 1 then out[#out + 1] = "," end
        encode(x, out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = str(k)
        out[#out + 1] = ":"
        encode(v[k], out)
      end
      out[#out + 1] = "}"
    end
  elseif ty == "string" then out[#out + 1] = str(v)
  elseif ty == "number" then out[#out + 1] = number(v)
  elseif ty == "boolean" then out[#out + 1] = tostring(v)
  else error("lorasc: cannot encode a " .. ty .. " in a config", 0) end
end

function M.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

return M
