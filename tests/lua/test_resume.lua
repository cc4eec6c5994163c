-- A run resumed from its saved state watches for divergence as if it had never stopped
-- (lua/lorasc/resume.lua saves train.divergence's watched() with the state): for loss
-- sequences that explode early, climb slowly, stay steady or wobble near zero, a watch
-- restored from what another watch had seen after k steps fires at the same step with the
-- same reason as the uninterrupted watch, for every k. Run by `lorasc lua`.
local train = require "lorasc.train"

local checks = require("checks").new("test_resume")
local check = checks.check

local function seq(n, f)
  local t = {}
  for i = 1, n do t[i] = f(i) end
  return t
end

-- The step a watch fires at (and why) over losses[from..], starting from `saved` or fresh;
-- also what it had seen after step k (when k is given).
local function run(factor, losses, saved, from, k)
  local watch, watched = train.divergence(factor, saved)
  local seen
  for i = from or 1, #losses do
    local why = watch(i, losses[i], 1)
    if why then return i, why, seen end
    if i == k then seen = watched() end
  end
  return nil, nil, seen
end

local cases = {
  boom = { 1.6, 50, 98, 108, 113, 65, 55, 71, 52, 60, 85, 86 },
  climb = seq(60, function(i) return 2 + (i - 1) * 10 / 59 end),
  steady = seq(40, function(i) return 5.5 + 0.3 * math.sin(i * 1.7) end),
  wobble = seq(40, function(i) return i <= 10 and 0.05 or 0.25 end),
  late_nan = seq(30, function(i) return i == 27 and 0 / 0 or 3 end),
}
for name, losses in pairs(cases) do
  for _, factor in ipairs { "default", false, 2 } do
    local f = factor ~= "default" and factor or nil
    local want_at, want_why = run(f, losses)
    for k = 1, #losses - 1 do
      if want_at and k >= want_at then break end
      local _, _, seen = run(f, losses, nil, 1, k)
      check(type(seen) == "table" and #seen == 3 + train.DIVERGE_WINDOW, name .. ": watched() has n, first, l1 and the window")
      local at, why = run(f, losses, seen, k + 1)
      check(at == want_at and why == want_why, string.format("%s (factor %s) resumed after step %d: fires at %s (%s), uninterrupted at %s (%s)",
        name, tostring(factor), k, tostring(at), tostring(why), tostring(want_at), tostring(want_why)))
    end
  end
end
-- a fresh watch and one given nothing are the same
check(select(1, run(nil, cases.climb, {})) == select(1, run(nil, cases.climb)), "an empty saved list is a fresh watch")

return checks.finish()
