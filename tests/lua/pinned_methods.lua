-- Pinned run hashes (issue 10): every method constructor with its defaults and each named
-- option once, on a text task (only /usr/share/common-licenses needed), so a change to a
-- default or to canonicalisation changes a pinned hash. Not a real experiment: never run.
experiment "pinned_methods" {
  model = llama { dim = 16, hidden_dim = 32, n_layers = 1, n_heads = 2, seq_len = 32,
                  pretrain = { corpus = "text:gpl3", steps = 4, batch = 2 } },
  tasks = { "text:apache" },
  train = { epochs = 2, batch = 2, seq = 32 },
  method = {
    lora {}, lora { dora = true }, lora { ratio = 4 }, loraplus {}, loraplus { lora_plus_ratio = 8 },
    cascade {}, cascade { experts = 3 },
    lorasc {}, lorasc { every = 5 }, lorasc { slow_merge = "replace", noise_std = "unscaled" },
    lorasc { alpha = 0.5, noise = 0, experts = 4, targets = { "q", "k", "v", "o", "gate", "up", "down" } },
    cola {}, cola { experts = 3 },
    relora {}, relora { every = 7, rewarmup = 0 },
  },
  seeds = { 1 },
}
