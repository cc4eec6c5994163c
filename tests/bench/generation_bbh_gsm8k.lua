-- Batched generation against one example at a time (tests/bench/RESULTS.md, "Generation"):
-- the untuned SmolLM2-135M-Instruct on 16 BBH and 16 GSM8K test examples (3-shot CoT and
-- 8-shot, greedy, at most 128 new tokens), the evaluation of Table 2's runs in small.
--   /usr/bin/time -f %e build/lua/lorasc run tests/bench/generation_bbh_gsm8k.lua --db /tmp/g.db
-- then compare `select hex(outcomes) from eval_examples` between two builds' databases.
local smollm2 = llama { checkpoint = "smollm2-135m" }
experiment "bbh16" {
  model = smollm2,
  tasks = { "alpaca" },
  split = { train = 1, val = 1, test = 16 },
  train = { steps = 0 },
  method = lora { label = "base" },
  eval = { tasks = { "bbh", "gsm8k" }, max_examples = 16, max_new = 128 },
}
