-- The task families and which one a task belongs to. A family (family_text.lua,
-- family_language.lua, family_image.lua) is one table holding everything that differs
-- between text, language and image tasks: which tasks it owns, the model it takes, its
-- canonicalisation (model, split, eval, train defaults) and, for `lorasc run`, its base
-- model, data, engine and evaluation. Every other file asks the family, never its name.
local canon = require "lorasc.canon"

local M = {
  text = require "lorasc.family_text",
  language = require "lorasc.family_language",
  image = require "lorasc.family_image",
}
-- Asked in this order; text owns whatever the others do not.
local ORDER = { M.language, M.image, M.text }

-- The family of a task string (a malformed image task is an error at loc).
function M.of_task(task, loc)
  for _, f in ipairs(ORDER) do
    local owns, err = f.owns(task)
    if err then canon.fail(loc .. ": " .. err) end
    if owns then return f end
  end
end

-- Checks a task (its data present; its family takes a model of kind arch, when given) and
-- returns it and its family.
function M.check_task(task, loc, arch)
  if type(task) ~= "string" then canon.fail(loc .. ": a task must be a string such as \"text:apache\"") end
  local f = M.of_task(task, loc)
  if arch and arch ~= f.arch then canon.fail(loc .. ": " .. f.wrong_arch(task)) end
  return f.check_task(task, loc), f
end

-- The family of an experiment on other than language tasks with this kind of model; also
-- whose train keys are checked when an experiment is defined, before its tasks are looked
-- at (language shares text's).
function M.of_arch(arch)
  return arch == "vit" and M.image or M.text
end

return M
