-- Table 2 of the LoRASC paper (arXiv 2407.01491) at the scale 2 CPU cores finish: instruction
-- tuning on Alpaca (standard template, loss on the response) of SmolLM2-135M-Instruct, the
-- tuned model evaluated on MMLU 5-shot (label-word scores), BBH 3-shot chain of thought and
-- GSM8K 8-shot (greedy decoding, exact match). Rows as the paper's: LoRA, COLA, +Cascade,
-- ++Slow LoRA, +++Noise Tuning (= LoRASC), 3 epochs (one expert each for the cascades).
-- Not here: DROP (not in the mirror) and HumanEval (no code-execution harness: unavailable).
-- Smaller than the paper's: the mirror holds Alpaca's first 200 records (train 160 / val 40,
-- flagged as a subset), 50 test examples of each evaluation task per run (answers of up to
-- 128 tokens), one learning rate (1e-4 of the paper's grid) instead of five, α and λ at
-- lorasc's defaults, 2 seeds.
-- Selection on validation sees `score`, the mean over the evaluation tasks.
--   lorasc data fetch smollm2-135m alpaca mmlu bbh gsm8k --from ../shared/data
--   lorasc run experiments/paper/table2_smollm2.lua --db results/paper.db
--   lorasc report experiments/paper/table2_smollm2.lua --db results/paper.db --paper results/paper/table2.csv
local smollm2 = llama { checkpoint = "smollm2-135m" }
local function q_v(t) t.rank, t.targets = 8, { "q", "v" }; return t end

experiment "table2_smollm2" {
  model = smollm2,
  tasks = { "alpaca" },
  split = { train = 160, val = 40, test = 50 },   -- test: examples of each evaluation task
  train = { epochs = 3, batch = 4, seq = 512, lr = 1e-4, warmup = 5, schedule = "linear" },
  method = { lora(q_v { label = "lora" }),
             cola(q_v { label = "cola", experts = 3 }),
             cascade(q_v { label = "lora +cascade" }),
             lorasc(q_v { label = "lora ++slow", noise = 0 }),
             lorasc(q_v { label = "lora +++noise" }) },
  seeds = { 1, 2 },
  eval = { tasks = { "mmlu", "bbh", "gsm8k" }, max_examples = 50, max_new = 128 },
}
report "table2_smollm2" { rows = "method", cols = "task", digits = 1,
                          metrics = { "test.mmlu.score", "test.bbh.score", "test.gsm8k.score",
                                      "test.mmlu.majority" } }

-- The untuned model on the same evaluation, for reference (train.steps = 0).
experiment "table2_smollm2_base" {
  model = smollm2,
  tasks = { "alpaca" },
  split = { train = 1, val = 40, test = 50 },
  train = { steps = 0 },
  method = lora { label = "base (no tuning)" },
  eval = { tasks = { "mmlu", "bbh", "gsm8k" }, max_examples = 50, max_new = 128 },
}
report "table2_smollm2_base" { rows = "method", cols = "task", digits = 1,
                               metrics = { "test.mmlu.score", "test.bbh.score", "test.gsm8k.score",
                                           "test.mmlu.majority" } }
