-- Table 2 of the LoRASC paper (arXiv 2407.01491) at the paper's scale, for a user with a GPU
-- and Llama-2-7B (the one model line below: a Hugging Face directory in the working or data
-- directory) and the full Alpaca data (`alpaca/` in the data directory; this workplace's
-- mirror holds only its first 200 records). Instruction tuning, 3 epochs, the paper's
-- learning-rate grid, α and λ over the paper's grids; evaluated on MMLU 5-shot, BBH 3-shot,
-- DROP 3-shot and GSM8K. HumanEval needs a code-execution harness lorasc does not have:
-- unavailable. The design that runs on 2 CPU cores is table2_smollm2.lua.
--   lorasc run experiments/paper/table2_llama2_7b.lua --device cuda --db results/paper7b.db
--   lorasc report experiments/paper/table2_llama2_7b.lua --db results/paper7b.db --paper results/paper/table2.csv
local model = llama { checkpoint = "Llama-2-7b-hf", format = "hf" }
local function q_v(t) t.rank, t.targets = 8, { "q", "v" }; return t end
local ALPHA, LAMBDA = grid { 0.5, 0.6, 0.8 }, grid { 0.1, 1, 10 }

experiment "table2_7b" {
  model = model,
  tasks = { "alpaca" },
  split = { train = 50000, val = 2000, test = 1000 },
  train = { epochs = 3, batch = 4, seq = 1024, lr = grid { 1e-5, 5e-5, 1e-4, 5e-4, 1e-3 },
            schedule = "linear" },
  method = { lora(q_v { label = "lora" }),
             cola(q_v { label = "cola", experts = 3 }),
             cascade(q_v { label = "lora +cascade" }),
             lorasc(q_v { label = "lora ++slow", alpha = ALPHA, noise = 0 }),
             lorasc(q_v { label = "lora +++noise", alpha = ALPHA, noise = LAMBDA }) },
  seeds = { 1 },
  device = "cuda",
  eval = { tasks = { "mmlu", "bbh", "drop", "gsm8k" }, max_new = 256 },
}
report "table2_7b" { rows = "method", cols = "task", digits = 1,
                     metrics = { "test.mmlu.score", "test.bbh.score", "test.drop.score",
                                 "test.gsm8k.score" } }
