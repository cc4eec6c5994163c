-- Used by test_plot_cli.sh (not a test itself): `lorasc lua check_svg.lua FILE WORD...` exits
-- 0 when FILE is well-formed XML (every tag closed in order, one root element, attributes
-- quoted, entities known) whose root is <svg> and whose text holds every WORD; else prints why
-- and exits 1. No XML library is needed (CI installs none).
local path = ...
local words = { select(2, ...) }
local f = assert(io.open(path, "rb"))
local s = f:read("a")
f:close()
local function bad(msg) io.stderr:write(path .. ": " .. msg .. "\n"); os.exit(1) end
local stack, roots, i, text = {}, 0, 1, {}
local ENT = { amp = true, lt = true, gt = true, quot = true, apos = true }
local function check_text(t, where)
  for e in t:gmatch("&([^;%s]*);?") do
    if not (ENT[e] or e:match("^#%d+$") or e:match("^#x%x+$")) then bad("unknown entity '&" .. e .. "' " .. where) end
  end
  if t:find("<", 1, true) then bad("a bare '<' " .. where) end
end
while i <= #s do
  local lt = s:find("<", i, true)
  local chunk = s:sub(i, (lt or #s + 1) - 1)
  if #stack == 0 and chunk:find("%S") then bad("text outside the root element: " .. chunk:sub(1, 40)) end
  check_text(chunk, "in text")
  text[#text + 1] = chunk
  if not lt then break end
  if s:sub(lt, lt + 3) == "<!--" then
    local e = s:find("-->", lt + 4, true) or bad("an unclosed comment")
    i = e + 3
  elseif s:sub(lt, lt + 8) == "<![CDATA[" then
    local e = s:find("]]>", lt + 9, true) or bad("an unclosed CDATA section")
    text[#text + 1] = s:sub(lt + 9, e - 1)
    i = e + 3
  elseif s:sub(lt, lt + 1) == "<?" then
    i = (s:find("?>", lt + 2, true) or bad("an unclosed processing instruction")) + 2
  elseif s:sub(lt, lt + 1) == "<!" then -- DOCTYPE (may hold [ ... ])
    local e = s:find(">", lt, true) or bad("an unclosed declaration")
    local open = s:find("[", lt, true)
    if open and open < e then e = (s:find("]%s*>", open) or bad("an unclosed DOCTYPE")) end
    i = s:find(">", e, true) + 1
  else
    local e = s:find(">", lt, true) or bad("an unclosed tag")
    local tag = s:sub(lt + 1, e - 1)
    if tag:sub(1, 1) == "/" then
      local name = tag:match("^/([%w:_.-]+)%s*$") or bad("a malformed end tag <" .. tag .. ">")
      local top = table.remove(stack) or bad("</" .. name .. "> closes nothing")
      if top ~= name then bad("</" .. name .. "> closes <" .. top .. ">") end
    else
      local name, rest = tag:match("^([%w:_.-]+)(.-)$")
      if not name then bad("a malformed tag <" .. tag:sub(1, 40) .. ">") end
      local self = rest:sub(-1) == "/"
      if self then rest = rest:sub(1, -2) end
      local attrs = rest:gsub("%s*[%w:_.-]+%s*=%s*\"[^\"]*\"", ""):gsub("%s*[%w:_.-]+%s*=%s*'[^']*'", "")
      if attrs:find("%S") then bad("malformed attributes in <" .. name .. ">: " .. attrs:sub(1, 40)) end
      for v in rest:gmatch("=%s*\"([^\"]*)\"") do check_text(v, "in an attribute of <" .. name .. ">") end
      if #stack == 0 then
        roots = roots + 1
        if roots > 1 then bad("a second root element <" .. name .. ">") end
        if name ~= "svg" then bad("the root is <" .. name .. ">, not <svg>") end
      end
      if not self then stack[#stack + 1] = name end
    end
    i = e + 1
  end
end
if #stack > 0 then bad("<" .. stack[#stack] .. "> is never closed") end
if roots == 0 then bad("no root element") end
local all = table.concat(text)
for _, w in ipairs(words) do
  if not all:find(w, 1, true) then bad("its text does not hold '" .. w .. "'") end
end
return 0
