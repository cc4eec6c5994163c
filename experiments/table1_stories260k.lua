-- Table 1 at the scale this machine allows: LoRA on the largest pretrained Llama in the
-- mirror (Karpathy's stories260K, llama2.c format, with its 512-piece tokenizer) on every
-- language task the mirror holds, each evaluated with the task's own metric beside the
-- majority-class baseline of the same split. MeZO's protocol with smaller samples (train 200
-- / val 100 from the original train split, test 200 from the original validation split),
-- one seed, so it runs in a few minutes on 2 cores:
--   lorasc data fetch --from ../shared/data      (or LORASC_DATA=../shared/data)
--   lorasc run experiments/table1_stories260k.lua && lorasc report experiments/table1_stories260k.lua
-- Not here: SQuAD and DROP (absent from the mirror: "unavailable here"); ReCoRD and BoolQ run
-- on the mirror's subsets (eval "subset" = 1 in the report). Alpaca (Table 2): table2_stories260k.lua.
local stories = llama { checkpoint = "llama2c_stories260K/stories260K.bin",
                        tokenizer = "llama2c_stories260K/tok512.bin" }

experiment "table1_stories260k" {
  model = stories,
  tasks = { "sst2", "rte", "cb", "boolq", "wsc", "wic", "multirc", "copa", "record" },
  split = { train = 200, val = 100, test = 200 },
  train = { epochs = 4, batch = 8, seq = 256, lr = 3e-3, warmup = 10 },
  method = lora { rank = 8, targets = { "q", "k", "v", "o" } },
  seeds = { 1 },
  eval = { max_examples = 200 },
}
report "table1_stories260k" { rows = "task", cols = "method", digits = 1,
                              metrics = { "test.score", "test.majority", "test.subset" } }

-- GSM8K: trained on the solutions, evaluated 8-shot (left-truncated to the model's 512
-- positions) by exact match of the final number; greedy decoding is the cost, so 50 examples.
experiment "table1_gsm8k" {
  model = stories,
  tasks = { "gsm8k" },
  split = { train = 200, val = 50, test = 50 },
  train = { epochs = 2, batch = 8, seq = 256, lr = 3e-3, warmup = 10 },
  method = lora { rank = 8, targets = { "q", "k", "v", "o" } },
  eval = { max_examples = 50, max_new = 48 },
}
report "table1_gsm8k" { rows = "task", cols = "method", digits = 1,
                        metrics = { "test.score", "test.majority" } }

-- Table 2's evaluation tasks on the base model (train.steps = 0: no fine-tuning): MMLU
-- 5-shot (label-word scores), BBH 3-shot chain of thought (exact match). No val split
-- (val = 0): each cell has one candidate, so there is nothing to select.
experiment "table2_eval_stories260k" {
  model = stories,
  tasks = { "mmlu", "bbh" },
  split = { train = 1, val = 0, test = 100 },
  train = { steps = 0 },
  method = lora { label = "base (no tuning)" },
  eval = { max_examples = 100, max_new = 32 },
}
report "table2_eval_stories260k" { rows = "task", cols = "method", digits = 1,
                                   metrics = { "test.score", "test.majority" } }
