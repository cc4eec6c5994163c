-- Table 4 of the LoRASC paper (the number of experts) on text: table4_experts.lua asks it of the
-- small ViT at the paper's exact steps; here the same question of SmolLM2-135M-Instruct on
-- SST-2 and COPA with table1_smollm2.lua's design (MeZO sampling 200 / 100 / 300, batch 4,
-- rank 8 with lora_alpha 16 on q and v, 5 epochs, linear schedule, 10 warm-up steps).
-- 5 epochs of 50 steps make 250 steps (the paper: 5 of 250, 1,250). The expert counts keep the
-- paper's fractions of the run where they can: 2, 5 (one per epoch, the paper's choice), 25
-- and 125 experts are 1/2, 1/5, 1/25 and 1/125 of the steps each (125, 50, 10 and 2 steps);
-- the paper's last count, 1,250, is one expert per step, here 250.
-- LoRASC in full (slow adapter α 0.8, cascading noise λ 1); the learning rate chosen per count
-- on validation from {5e-4, 1e-3} (table1_smollm2.lua's rate, and the one the slow row took on
-- both tasks when tuned over the paper's grid: table1_smollm2_lr.lua); 5 seeds, since Table 1's
-- seeds differ by several points here. The 5-expert runs at 5e-4, seeds 1-3, are
-- table1_smollm2.lua's "lora +++noise" ones (the same configs: found by their hashes).
--   lorasc data fetch smollm2-135m sst2 copa --from ../shared/data
--   lorasc run experiments/paper/table4_smollm2.lua --db results/paper.db
--   lorasc report experiments/paper/table4_smollm2.lua --db results/paper.db
experiment "table4_smollm2" {
  model = llama { checkpoint = "smollm2-135m" },
  tasks = { "sst2", "copa" },
  split = { train = 200, val = 100, test = 300 },
  train = { epochs = 5, batch = 4, seq = 256, lr = grid { 5e-4, 1e-3 }, warmup = 10, schedule = "linear" },
  seeds = { 1, 2, 3, 4, 5 },
  method = lorasc { label = "lorasc", rank = 8, lora_alpha = 16, targets = { "q", "v" }, alpha = 0.8,
                    noise = 1.0, experts = grid { 2, 5, 25, 125, 250 } },
}

-- five experts (one per epoch, the paper's choice) is the row every count is compared with
report "table4_smollm2" { rows = "method.experts", cols = "task", digits = 1, baseline = "5",
                          metrics = { "test.score", "val.score" },
                          title = "Table 4 on text: LoRASC with 2 to 250 experts over 5 epochs of 50 steps (SmolLM2-135M-Instruct)" }
