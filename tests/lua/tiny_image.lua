-- A tiny image experiment for the harness tests: a 1-layer dim-16 ViT pretrained for a few
-- steps on Fashion-MNIST classes 0-4, then LoRA and LoRASC on 200 images of classes 5-9,
-- 1 seed each, evaluated on 100 test images, 50 of them under each corruption.
experiment "tiny_image" {
  model = vit { dim = 16, n_layers = 1, n_heads = 2, mlp_dim = 32,
                pretrain = { task = "fashion-mnist:0-4", steps = 6, batch = 16 } },
  tasks = { "fashion-mnist:5-9" },
  split = { val = 0.1, max_train = 200, max_val = 50, max_test = 100 },
  train = { steps = 8, batch = 16, lr = 3e-3, crop_pad = 1 },
  method = { lora { rank = 2 }, lorasc { rank = 2, experts = 2 } },
  seeds = { 1 },
  eval = { batch = 50, corrupt_max = 50 },
  log_every = 4,
}

report "tiny_image" { rows = "method", cols = "task", metrics = { "test.score", "test.corrupt.mean" } }
