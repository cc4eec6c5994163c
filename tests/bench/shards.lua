-- The sweep tests/bench/bench_shards.sh times: 8 LoRA / LoRASC runs of 150 steps on a small
-- byte-level Llama (dim 128, 4 layers, batch 16 x 64 tokens), about 50 s in one process on 2
-- cores. Its base model is pretrained once, before the timing.
experiment "shards" {
  model = llama { dim = 128, hidden_dim = 344, n_layers = 4, n_heads = 4, n_kv_heads = 2, seq_len = 64,
                  pretrain = { corpus = "text:gnu", steps = 20, batch = 8 } },
  tasks = { "text:apache" },
  train = { steps = 150, batch = 16, seq = 64, lr = 1e-3 },
  method = { lora { rank = 8 }, lorasc { rank = 8, experts = 3 } },
  seeds = { 1, 2, 3, 4 },
  eval = { max_windows = 32 },
}
