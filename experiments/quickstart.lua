-- Quickstart (issue 6): offline on a fresh Debian machine with only Debian's
-- dataset-fashion-mnist, a few minutes on 2 cores. A small ViT (patch 7 on 28 x 28 images)
-- is pretrained on Fashion-MNIST classes 0-4 (T-shirt, trouser, pullover, dress, coat;
-- cached under results/cache/, keyed by its config hash), then fine-tuned on the held-out
-- classes 5-9 (sandal, shirt, sneaker, bag, ankle boot) with LoRA, +Cascade (one expert per
-- epoch) and LoRASC (cascade + slow adapter + cascading noise lambda 1), 3 seeds each; the
-- learning rate (and LoRASC's slow-fast retention alpha) chosen per method on validation.
-- Each run is evaluated on clean test images and on ten ImageNet-C-style corruptions at five
-- severities (core/data/corrupt.h); the table shows clean accuracy and the mean corruption
-- accuracy (per-corruption numbers: `lorasc show RUN_ID`, metrics test corrupt.<name>).
--   lorasc run experiments/quickstart.lua && lorasc report experiments/quickstart.lua
-- The text quickstart of issue 3 is experiments/text_quickstart.lua.
experiment "quickstart" {
  model = vit { image_size = 28, patch_size = 7, dim = 48, n_layers = 2, n_heads = 4, mlp_dim = 96,
                pretrain = { task = "fashion-mnist:0-4", steps = 3000, batch = 64, lr = 2e-3,
                             warmup = 50, crop_pad = 2 } },
  tasks = { "fashion-mnist:5-9" },
  -- val: 10% of the train file's images of classes 5-9; caps keep the quickstart short
  split = { val = 0.1, max_train = 4000, max_val = 1000, max_test = 2000 },
  train = { epochs = 4, batch = 32, lr = grid { 3e-3, 1e-2 }, warmup = 10, schedule = "linear" },
  method = {
    lora { rank = 8, lora_alpha = 16 },
    cascade { rank = 8, lora_alpha = 16 },                                  -- one expert per epoch
    lorasc { rank = 8, lora_alpha = 16, alpha = grid { 0.3, 0.8 }, noise = 1.0 }, -- experts: one per epoch
  },
  seeds = { 1, 2, 3 },
  eval = { batch = 250, corrupt = true, corrupt_max = 1000 },
  select = "val.score",
}

report "quickstart" { rows = "method", cols = "task",
                      metrics = { "test.score", "test.corrupt.mean" } }
