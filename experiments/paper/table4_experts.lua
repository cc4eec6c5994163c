-- Table 4 of the LoRASC paper: the number of experts. The paper trains 5 epochs of 250 steps
-- (1,250 steps) with 2, 5, 25, 125 and 1,250 experts (625, 250, 50, 10 and 1 steps each;
-- 5 = one expert per epoch, its choice) and finds five best. Here the same steps, epochs and
-- expert counts, so the same ratios, on the image task of Table 3 (table3_vision.lua: the
-- ViT pretrained on MNIST digits 0-4, cached and shared, fine-tuned on digits 5-9 of
-- "mnist-t10k"): 3,500 training images in batches of 14 make exactly 250 steps an epoch.
-- LoRASC in full (slow adapter alpha 0.8, cascading noise lambda 1, rank 8 on q and v); the
-- learning rate chosen per expert count on validation from {3e-3, 1e-2, 3e-2}; 5 seeds (the
-- differences between counts are small, so more seeds than Table 3); columns clean test
-- accuracy and the UCI digits shift (core/data/digits.h).
-- Why the image task and not text: a 1,250-step run of this ViT takes 5.6 s of CPU time
-- (20 s of wall time on cores loaded 10-fold), so the paper's exact counts and steps fit:
-- 75 runs, about 7 minutes on quiet cores, 25 at that load. On text, SmolLM2-135M learns
-- SST-2 here but needs 5-9 minutes for 2 epochs of 500 examples (1,250 steps x 75 runs:
-- days), and stories260K does not beat the majority class on the language tasks.
--   lorasc data fetch mnist --from ../shared/data && lorasc data fetch digits   (python3-sklearn)
--   lorasc run experiments/paper/table4_experts.lua && lorasc report experiments/paper/table4_experts.lua
-- Measured (this machine, load average 10-12 from other jobs): a 1,250-step run with 5 or
-- with 1,250 experts 20 s of wall time each (11.2 s of CPU time for the two); plus Table 3's
-- base once (164 s) if it is not cached yet.
local base = vit { image_size = 28, patch_size = 7, dim = 64, n_layers = 4, n_heads = 4, mlp_dim = 128,
                   pretrain = { task = "mnist-t10k:0-4", steps = 4000, batch = 64, lr = 2e-3,
                                warmup = 50, crop_pad = 2 } }

experiment "table4_experts" {
  model = base,
  tasks = { "mnist-t10k:5-9" },
  split = { val = 0.1, max_train = 3500 },
  train = { epochs = 5, batch = 14, lr = grid { 3e-3, 1e-2, 3e-2 }, warmup = 10, schedule = "linear" },
  method = lorasc { rank = 8, lora_alpha = 16, targets = { "q", "v" }, alpha = 0.8, noise = 1.0,
                    experts = grid { 2, 5, 25, 125, 1250 } },
  seeds = { 1, 2, 3, 4, 5 },
  eval = { batch = 250, corrupt = false, shift = { "digits" } },
  select = "val.score",
}

report "table4_experts" { rows = "method.experts", cols = "task", digits = 2,
                          metrics = { "test.score", "test.shift.digits" },
                          title = "Table 4 at 2-core scale: LoRASC with 2 to 1,250 experts over 5 epochs of 250 steps (MNIST digits 5-9)" }
