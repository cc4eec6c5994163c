-- Text quickstart (the image quickstart is experiments/quickstart.lua): runs offline on a fresh Debian machine in a few minutes on 2 cores.
-- A small byte-level Llama is pretrained on GNU licence texts (cached under
-- results/cache/, keyed by its config hash), then fine-tuned on the Apache licence with
-- LoRA, +Cascade (one expert per epoch) and LoRASC over a small learning-rate grid, 3 seeds
-- each; the report picks each method's learning rate on validation and reports test.
--   lorasc run experiments/text_quickstart.lua && lorasc report experiments/text_quickstart.lua
experiment "quickstart" {
  model = llama { dim = 64, hidden_dim = 172, n_layers = 2, n_heads = 4, n_kv_heads = 2, seq_len = 64,
                  pretrain = { corpus = "text:gnu", steps = 1200, batch = 8, lr = 3e-3, warmup = 50 } },
  tasks = { "text:apache" },
  split = { train = 0.8, val = 0.1 },          -- by position; test is the last 10%
  train = { epochs = 4, batch = 8, seq = 64, lr = grid { 1e-3, 3e-3 }, warmup = 5, schedule = "linear" },
  method = {
    lora { rank = 8, lora_alpha = 16 },
    cascade { rank = 8, lora_alpha = 16 },                       -- one expert per epoch
    lorasc { rank = 8, lora_alpha = 16, alpha = 0.8, noise = 1.0 }, -- experts: one per epoch
  },
  seeds = { 1, 2, 3 },
  select = "val.score",
}

report "quickstart" { rows = "method", cols = "task", metric = "test.score" }
