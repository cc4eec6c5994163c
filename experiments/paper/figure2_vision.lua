-- Figure 2 of the LoRASC paper (arXiv 2407.01491): accuracy against the LoRA rank and against
-- the number of epochs, for LoRA, COLA and LoRASC, at the scale of table3_vision.lua (the same
-- ViT pretrained on MNIST digits 0-4, cached; fine-tuned on the held-out digits 5-9 of
-- MNIST's t10k file). Smaller than Table 3: one learning rate (1e-2, the middle of Table 3's
-- grid), LoRASC at lorasc's defaults (α = 0.8, λ = 1, one expert per epoch), COLA with 2
-- experts; 3 seeds, mean ± std as error bars. Ranks 1-16 at 5 epochs; epochs 1-8 at rank 8.
--   lorasc data fetch mnist --from ../shared/data && lorasc data fetch digits   (python3-sklearn)
--   lorasc run experiments/paper/figure2_vision.lua && lorasc plot experiments/paper/figure2_vision.lua
local base = vit { image_size = 28, patch_size = 7, dim = 64, n_layers = 4, n_heads = 4, mlp_dim = 128,
                   pretrain = { task = "mnist-t10k:0-4", steps = 4000, batch = 64, lr = 2e-3,
                                warmup = 50, crop_pad = 2 } }

local function methods(rank)
  local function q_v(t) t.rank, t.lora_alpha, t.targets = rank, 16, { "q", "v" }; return t end
  return { lora(q_v {}), cola(q_v { experts = 2 }), lorasc(q_v {}) }
end
local design = {
  model = base,
  tasks = { "mnist-t10k:5-9" },
  split = { val = 0.1 },
  seeds = { 1, 2, 3 },
  eval = { batch = 250 },
  select = "val.score",
}
local function with(t) for k, v in pairs(design) do t[k] = v end; return t end

experiment "figure2_rank" (with {
  train = { epochs = 5, batch = 32, lr = 1e-2, warmup = 10, schedule = "linear" },
  method = { lora { rank = grid { 1, 2, 4, 8, 16 }, lora_alpha = 16, targets = { "q", "v" } },
             cola { rank = grid { 1, 2, 4, 8, 16 }, lora_alpha = 16, targets = { "q", "v" }, experts = 2 },
             lorasc { rank = grid { 1, 2, 4, 8, 16 }, lora_alpha = 16, targets = { "q", "v" } } },
})
experiment "figure2_epochs" (with {
  train = { epochs = grid { 1, 2, 3, 5, 8 }, batch = 32, lr = 1e-2, warmup = 10, schedule = "linear" },
  method = methods(8),
})

figure "figure2_rank" { x = "method.rank", y = "test.score", series = "method", logx = true,
                        title = "Figure 2 (2-core scale): test accuracy against LoRA rank, MNIST digits 5-9",
                        xlabel = "LoRA rank r", ylabel = "test accuracy (%)" }
figure "figure2_epochs" { x = "train.epochs", y = "test.score", series = "method",
                          title = "Figure 2 (2-core scale): test accuracy against epochs, MNIST digits 5-9",
                          xlabel = "epochs (LoRASC: one expert each)", ylabel = "test accuracy (%)" }
report "figure2_rank" { rows = "method", cols = "method.rank", digits = 2, metrics = { "test.score" } }
report "figure2_epochs" { rows = "method", cols = "train.epochs", digits = 2, metrics = { "test.score" } }
