-- A tiny experiment for the harness tests: 4 runs of a few steps on a 1-layer dim-16 model.
experiment "tiny" {
  model = llama { dim = 16, hidden_dim = 32, n_layers = 1, n_heads = 2, seq_len = 32,
                  pretrain = { corpus = "text:gpl3", steps = 4, batch = 2 } },
  tasks = { "text:apache" },
  train = { steps = 8, batch = 2, seq = 32, lr = 1e-3 },
  method = { lora { rank = 2 }, lorasc { rank = 2, experts = 2 } },
  seeds = { 1, 2 },
  eval = { max_windows = 4, batch = 4 },
  log_every = 4,
}
