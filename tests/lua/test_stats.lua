-- The report's statistics (lua/lorasc/stats.lua): Student's t quantiles against scipy's
-- stats.t.ppf, t intervals and paired differences on hand-made numbers (references computed
-- with numpy/scipy), the paired bootstrap seeded and reproducible, and the verdict that marks
-- a cell only when its interval excludes zero. Run by `lorasc lua`.
local stats = require "lorasc.stats"

local checks = require("checks").new("test_stats")
local check = checks.check
local function close(got, want, tol, what)
  local ok = got ~= nil and math.abs(got - want) <= tol * (1 + math.abs(want))
  check(ok, string.format("%s: got %s, expected %.17g (tolerance %g)", what, tostring(got), want, tol))
end

-- scipy.stats.t.ppf(p, df)
local T = {
  { 0.975, 1, 12.706204736432095 }, { 0.975, 2, 4.302652729911275 }, { 0.975, 3, 3.182446305284263 },
  { 0.975, 4, 2.7764451051977987 }, { 0.975, 9, 2.2621571627409915 }, { 0.975, 29, 2.045229642132703 },
  { 0.975, 100, 1.9839715184496334 }, { 0.995, 5, 4.032142983557536 }, { 0.9, 10, 1.3721836411102863 },
  { 0.975, 1000, 1.9623390808264074 },
}
for _, c in ipairs(T) do
  close(stats.t_quantile(c[1], c[2]), c[3], 1e-10, string.format("t quantile p=%g df=%d", c[1], c[2]))
  close(stats.t_quantile(1 - c[1], c[2]), -c[3], 1e-10, string.format("t quantile p=%g df=%d", 1 - c[1], c[2]))
  close(stats.t_cdf(c[3], c[2]), c[1], 1e-11, string.format("t cdf at the p=%g df=%d quantile", c[1], c[2]))
end
close(stats.lgamma(5), math.log(24), 1e-14, "lgamma(5)")
close(stats.lgamma(0.5), 0.5 * math.log(math.pi), 1e-14, "lgamma(0.5)")

-- mean ± std and the t interval
local m, s, n = stats.mean_std { 2, 4, 4, 4, 5, 5, 7, 9 }
close(m, 5, 1e-15, "mean")
close(s, math.sqrt(32 / 7), 1e-15, "sample std")
check(n == 8, "n")
local m1, s1, n1 = stats.mean_std { 3 }
check(m1 == 3 and s1 ~= s1 and n1 == 1, "one value: mean, nan std, n = 1")
check(stats.mean_std {} == nil, "no values: nil")
local tm, tlo, thi = stats.t_interval { 1, 2, 3 }
close(tm, 2, 1e-15, "t interval mean")
close(thi - tm, 4.302652729911275 / math.sqrt(3), 1e-10, "t interval half-width (n = 3)")
close(tm - tlo, thi - tm, 1e-15, "t interval symmetric")
local _, nlo, nhi = stats.t_interval { 1 }
check(nlo == nil and nhi == nil, "one value has no interval")

-- paired t over seeds (numpy/scipy by hand)
local p = stats.paired_t({ 0.80, 0.82, 0.85 }, { 0.78, 0.79, 0.80 })
close(p.mean, 0.03333333333333329, 1e-12, "paired mean")
close(p.lo, -0.004612497004061272, 1e-10, "paired lo")
close(p.hi, 0.07127916367072785, 1e-10, "paired hi")
check(p.n == 3 and p.method == "t", "paired n and method")
check(stats.verdict(p.lo, p.hi) == nil, "an interval that holds zero gives no verdict")
local q = stats.paired_t({ 0.91, 0.93, 0.92, 0.94 }, { 0.88, 0.89, 0.90, 0.90 })
close(q.lo, 0.017265198191709255, 1e-10, "paired lo (4 seeds)")
close(q.hi, 0.04773480180829075, 1e-10, "paired hi (4 seeds)")
check(stats.verdict(q.lo, q.hi) == "better", "above zero: better")
check(stats.verdict(-q.hi, -q.lo) == "worse", "below zero: worse")
check(stats.verdict(q.lo, q.hi, true) == "worse", "a loss that rose: worse")

-- the paired bootstrap: reproducible for a seed, other for another seed, sensible intervals
local a, b = {}, {}
local r = stats.rng(7)
for i = 1, 400 do
  b[i] = (r() >> 11) % 100 < 70 and 1 or 0          -- ~70% right
  a[i] = b[i] == 1 and 1 or ((r() >> 11) % 100 < 30 and 1 or 0) -- fixes ~30% of b's errors
end
local b1 = stats.paired_bootstrap(a, b, { seed = 1, resamples = 2000 })
local b2 = stats.paired_bootstrap(a, b, { seed = 1, resamples = 2000 })
check(b1.lo == b2.lo and b1.hi == b2.hi, "same seed, same interval (bit for bit)")
local u, v = {}, {}
for i = 1, 300 do u[i], v[i] = (r() >> 11) / 2 ^ 53, (r() >> 11) / 2 ^ 53 end
local c1 = stats.paired_bootstrap(u, v, { seed = 1 })
local c2 = stats.paired_bootstrap(u, v, { seed = 2 })
check(c1.lo ~= c2.lo and c1.hi ~= c2.hi, "another seed, another interval (continuous outcomes)")
check(c1.resamples == 2000, "2000 resamples by default")
-- the interval of a mean of 300 uniform differences: about ± 1.96 * sqrt(1/6 / 300)
close(c1.hi - c1.lo, 2 * 1.96 * math.sqrt(1 / 6 / 300), 0.15, "bootstrap width near the normal theory's")
local sa, sb = 0, 0
for i = 1, #a do sa, sb = sa + a[i], sb + b[i] end
close(b1.mean, (sa - sb) / #a, 1e-15, "bootstrap point estimate = difference of means")
check(b1.lo < b1.mean and b1.mean < b1.hi, "the estimate inside its interval")
check(b1.lo > 0 and stats.verdict(b1.lo, b1.hi) == "better", "a only fixes b's errors: better, interval above 0")
check(b1.method == "bootstrap" and b1.resamples == 2000 and b1.n == 400, "bootstrap fields")
-- identical runs: every resample is 0
local z = stats.paired_bootstrap(b, b, { seed = 3, resamples = 200 })
check(z.lo == 0 and z.hi == 0 and stats.verdict(z.lo, z.hi) == nil, "identical outcomes: [0, 0], no verdict")
-- the percentile interval of a known case: d = +1 for 1 example of 2 -> means in {0, .5, 1}
local h = stats.paired_bootstrap({ 1, 0 }, { 0, 0 }, { seed = 5, resamples = 4000 })
check(h.lo == 0 and h.hi == 1, string.format("two examples: interval [0, 1], got [%g, %g]", h.lo, h.hi))
-- the rng is splitmix64 (first output for seed 0: 0xe220a8397b1dcdaf)
check(stats.rng(0)() == math.tointeger(0xe220a8397b1dcdaf), "splitmix64's first output for seed 0")
close(stats.quantile_sorted({ 1, 2, 3, 4 }, 0.5), 2.5, 0, "type-7 median")

return checks.finish()
