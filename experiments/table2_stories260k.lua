-- Table 2 at the scale this machine allows: instruction tuning on Alpaca (the mirror holds
-- its first 200 records: a subset, flagged in the report), loss on the response tokens only
-- (the standard Alpaca template), with LoRA and LoRASC on stories260K; the tuned model is
-- evaluated on MMLU (5-shot, label-word scores) and BBH (3-shot chain of thought, exact
-- match). "score" is the mean over the evaluation tasks; each task's own numbers are the
-- evals "mmlu.score", "bbh.score", ... (see `lorasc show RUN_ID`).
--   LORASC_DATA=../shared/data lorasc run experiments/table2_stories260k.lua
--   LORASC_DATA=../shared/data lorasc report experiments/table2_stories260k.lua
local stories = llama { checkpoint = "llama2c_stories260K/stories260K.bin",
                        tokenizer = "llama2c_stories260K/tok512.bin" }

experiment "table2_stories260k" {
  model = stories,
  tasks = { "alpaca" },
  split = { train = 160, val = 40, test = 100 },   -- test: examples of each evaluation task
  train = { epochs = 2, batch = 8, seq = 256, lr = 3e-3, warmup = 5 },
  method = { lora { rank = 8, targets = { "q", "k", "v", "o" } },
             lorasc { rank = 8, targets = { "q", "k", "v", "o" } } },
  seeds = { 1 },
  eval = { tasks = { "mmlu", "bbh" }, max_examples = 40, max_new = 32 },
}
report "table2_stories260k" { rows = "method", cols = "task", digits = 1,
                              metrics = { "test.mmlu.score", "test.mmlu.majority", "test.bbh.score" } }
