-- What the Lua tests in this folder share: a failed check is counted and named on stderr (the
-- test goes on, so one run lists every failure), and the test's last line returns its exit
-- status. Not a framework: no test discovery, no fixtures. `lorasc lua FILE` puts FILE's
-- folder first on package.path, so a test takes it with `require "checks"`.
--   local checks = require("checks").new("test_dsl")
--   local check = checks.check
--   check(x == 1, "x is 1: " .. x)
--   return checks.finish()     -- 1 with the count on stderr if any check failed, else 0
local M = {}

function M.new(name)
  local t = { failures = 0 }
  function t.check(cond, what)
    if not cond then
      t.failures = t.failures + 1
      io.stderr:write("FAIL: ", what, "\n")
    end
    return cond
  end
  function t.finish()
    if t.failures > 0 then
      io.stderr:write(name, ": ", t.failures, " check(s) failed\n")
      return 1
    end
    print(name .. ": all passed")
    return 0
  end
  return t
end

return M
