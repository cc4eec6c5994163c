-- The statistics of a report: mean ± sample std (n), Student's t interval over seeds (the t
-- quantile computed here: the regularized incomplete beta function, inverted by bisection),
-- the paired difference of two rows over shared seeds, and the paired percentile bootstrap
-- over test examples (seeded, reproducible: splitmix64). Pure Lua on lists of numbers; what
-- is paired with what is the report's (report.lua).
local M = {}

-- mean, sample std (nan for n = 1) and n of a list; nil, nil, 0 for an empty one.
function M.mean_std(values)
  local n = #values
  if n == 0 then return nil, nil, 0 end
  local sum = 0
  for _, x in ipairs(values) do sum = sum + x end
  local mean = sum / n
  if n == 1 then return mean, 0 / 0, 1 end
  local ss = 0
  for _, x in ipairs(values) do ss = ss + (x - mean) ^ 2 end
  return mean, math.sqrt(ss / (n - 1)), n
end

-- log Γ(x), x > 0: Stirling's series (5 terms) at x + k >= 15, shifted down by the
-- recurrence Γ(x + 1) = x Γ(x); ~1e-15 absolute.
local function lgamma(x)
  local prod = 1
  while x < 15 do prod = prod * x; x = x + 1 end
  local x2 = x * x
  local series = 1 / (12 * x) - 1 / (360 * x * x2) + 1 / (1260 * x * x2 * x2)
                 - 1 / (1680 * x * x2 * x2 * x2) + 1 / (1188 * x * x2 * x2 * x2 * x2)
  return (x - 0.5) * math.log(x) - x + 0.5 * math.log(2 * math.pi) + series - math.log(prod)
end
M.lgamma = lgamma

-- The continued fraction of the incomplete beta function (modified Lentz).
local function betacf(a, b, x)
  local tiny, eps = 1e-300, 1e-16
  local qab, qap, qam = a + b, a + 1, a - 1
  local c, d = 1, 1 - qab * x / qap
  if math.abs(d) < tiny then d = tiny end
  d = 1 / d
  local h = d
  for m = 1, 1000 do
    local m2 = 2 * m
    local aa = m * (b - m) * x / ((qam + m2) * (a + m2))
    d = 1 + aa * d; if math.abs(d) < tiny then d = tiny end
    c = 1 + aa / c; if math.abs(c) < tiny then c = tiny end
    d = 1 / d
    h = h * d * c
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
    d = 1 + aa * d; if math.abs(d) < tiny then d = tiny end
    c = 1 + aa / c; if math.abs(c) < tiny then c = tiny end
    d = 1 / d
    local del = d * c
    h = h * del
    if math.abs(del - 1) < eps then break end
  end
  return h
end

-- The regularized incomplete beta function I_x(a, b).
function M.betainc(x, a, b)
  if x <= 0 then return 0 end
  if x >= 1 then return 1 end
  local bt = math.exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * math.log(x) + b * math.log(1 - x))
  if x < (a + 1) / (a + b + 2) then return bt * betacf(a, b, x) / a end
  return 1 - bt * betacf(b, a, 1 - x) / b
end

-- P(T <= t) for Student's t with df degrees of freedom.
function M.t_cdf(t, df)
  local tail = 0.5 * M.betainc(df / (df + t * t), df / 2, 0.5)
  return t >= 0 and 1 - tail or tail
end

-- The p quantile of Student's t with df > 0 degrees of freedom (0 < p < 1), to ~1e-12.
function M.t_quantile(p, df)
  assert(p > 0 and p < 1 and df > 0, "t_quantile needs 0 < p < 1 and df > 0")
  if p < 0.5 then return -M.t_quantile(1 - p, df) end
  if p == 0.5 then return 0 end
  local lo, hi = 0, 2
  while M.t_cdf(hi, df) < p do lo, hi = hi, hi * 2 end
  for _ = 1, 200 do
    local mid = 0.5 * (lo + hi)
    if M.t_cdf(mid, df) < p then lo = mid else hi = mid end
    if hi - lo <= 1e-13 * hi then break end
  end
  return 0.5 * (lo + hi)
end

-- The level (default 0.95) t interval of the mean of values: mean, lo, hi, n (lo and hi nil
-- when n < 2: one value says nothing about its spread).
function M.t_interval(values, level)
  level = level or 0.95
  local mean, std, n = M.mean_std(values)
  if n < 2 then return mean, nil, nil, n end
  local half = M.t_quantile(1 - (1 - level) / 2, n - 1) * std / math.sqrt(n)
  return mean, mean - half, mean + half, n
end

-- The paired difference a[i] - b[i] over the pairs (lists of equal length): { mean, lo, hi,
-- n, method = "t" } with Student's t interval over the n differences (lo, hi nil for n < 2).
function M.paired_t(a, b, level)
  assert(#a == #b, "paired_t needs lists of equal length")
  local d = {}
  for i = 1, #a do d[i] = a[i] - b[i] end
  local mean, lo, hi, n = M.t_interval(d, level)
  return { mean = mean, lo = lo, hi = hi, n = n, method = "t" }
end

-- A reproducible stream of 64-bit integers (splitmix64), seeded by an integer.
function M.rng(seed)
  local x = math.tointeger(seed) or 0
  return function()
    x = x + 0x9e3779b97f4a7c15
    local z = x
    z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
    z = (z ~ (z >> 27)) * 0x94d049bb133111eb
    return z ~ (z >> 31)
  end
end

-- The q quantile of a sorted list (linear interpolation between order statistics, R's type 7).
function M.quantile_sorted(s, q)
  local h = (#s - 1) * q + 1
  local i = math.floor(h)
  if i >= #s then return s[#s] end
  return s[i] + (h - i) * (s[i + 1] - s[i])
end

-- The paired percentile bootstrap of mean(a) - mean(b) over examples (a[i] and b[i] are the
-- outcomes of one example under two runs): opts.resamples (2000) resamples of n examples
-- drawn with replacement by M.rng(opts.seed or 1), the level's percentile interval.
-- Returns { mean, lo, hi, n, resamples, method = "bootstrap" }.
function M.paired_bootstrap(a, b, opts)
  assert(#a == #b and #a > 0, "paired_bootstrap needs two non-empty lists of equal length")
  opts = opts or {}
  local B, level = opts.resamples or 2000, opts.level or 0.95
  local n, d, sum = #a, {}, 0
  for i = 1, n do d[i] = a[i] - b[i]; sum = sum + d[i] end
  local next_int, stats = M.rng(opts.seed or 1), {}
  for r = 1, B do
    local s = 0
    for _ = 1, n do s = s + d[(next_int() >> 11) % n + 1] end
    stats[r] = s / n
  end
  table.sort(stats)
  return { mean = sum / n, lo = M.quantile_sorted(stats, (1 - level) / 2),
           hi = M.quantile_sorted(stats, 1 - (1 - level) / 2), n = n, resamples = B,
           method = "bootstrap" }
end

-- "better", "worse" or nil: an interval [lo, hi] of a difference that excludes zero, where
-- higher is better unless lower_better (losses).
function M.verdict(lo, hi, lower_better)
  if lo == nil or hi == nil or (lo <= 0 and hi >= 0) then return nil end
  local up = lo > 0
  if lower_better then up = not up end
  return up and "better" or "worse"
end

return M
