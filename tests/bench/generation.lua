-- The generation benchmark of tests/bench/RESULTS.md ("Generation"): SmolLM2-135M-Instruct,
-- untuned (train.steps = 0), on 4 validation and 4 test examples of GSM8K 8-shot, greedy
-- decoding of at most 128 tokens: the evaluation Table 2 spends most of its time in.
--   /usr/bin/time -f %e build/lua/lorasc run tests/bench/generation.lua --db /tmp/gen.db
-- (a fresh database each time: a run already done is not run again).
local smollm2 = llama { checkpoint = "smollm2-135m" }
experiment "gen4" {
  model = smollm2,
  tasks = { "alpaca" },
  split = { train = 1, val = 4, test = 4 },
  train = { steps = 0 },
  method = lora { label = "base" },
  eval = { tasks = { "gsm8k" }, max_examples = 4, max_new = 128 },
}
