-- Figure 2 of the LoRASC paper (arXiv 2407.01491) on text: accuracy against the LoRA rank and
-- against the number of epochs, for LoRA, COLA and LoRASC, on SmolLM2-135M-Instruct and SST-2
-- with table1_smollm2.lua's design (MeZO sampling 200 / 100 / 300, batch 4, lora_alpha 16 on q
-- and v, linear schedule, 10 warm-up steps, 3 seeds). figure2_vision.lua asks the same of the
-- small ViT. The paper's claims it tests: a cascade gains more from rank than LoRA does, and
-- LoRASC mitigates overfitting as the epochs grow (200 training examples, up to 20 passes).
-- One learning rate, 1e-3: the rate LoRA, COLA and the slow row reach their best SST-2 test
-- scores at in table1_smollm2_lr.lua (every method learns there; at 5e-4 the slow row loses ~8
-- points more). COLA and LoRASC run one expert per epoch (COLA: Table 1's 5 at 5 epochs);
-- LoRASC at lorasc's defaults (α 0.8, λ 1). Ranks 2, 8, 32 at 5 epochs; epochs 1, 2, 5, 10, 20
-- at rank 8. The rank-8, 5-epoch runs are table1_smollm2_lr.lua's and table4_smollm2.lua's (the
-- same configs, found by their hashes in the same database).
--   lorasc data fetch smollm2-135m sst2 --from ../shared/data
--   lorasc run experiments/paper/figure2_smollm2.lua --db results/paper.db
--   lorasc plot experiments/paper/figure2_smollm2.lua --db results/paper.db --out results/figure2_smollm2
--   lorasc report experiments/paper/figure2_smollm2.lua --db results/paper.db
local function methods(rank)
  local function q_v(t) t.rank, t.lora_alpha, t.targets = rank, 16, { "q", "v" }; return t end
  return { lora(q_v { label = "lora" }), cola(q_v { label = "cola", experts = "epochs" }),
           lorasc(q_v { label = "lorasc", alpha = 0.8, noise = 1.0 }) }
end

local function design(epochs, rank)
  return {
    model = llama { checkpoint = "smollm2-135m" },
    tasks = { "sst2" },
    split = { train = 200, val = 100, test = 300 },
    train = { epochs = epochs, batch = 4, seq = 256, lr = 1e-3, warmup = 10, schedule = "linear" },
    seeds = { 1, 2, 3 },
    method = methods(rank),
  }
end

experiment "figure2_smollm2_rank"(design(5, grid { 2, 8, 32 }))
experiment "figure2_smollm2_epochs"(design(grid { 1, 2, 5, 10, 20 }, 8))

figure "figure2_smollm2_rank" { x = "method.rank", y = "test.score", series = "method", logx = true,
                                title = "Figure 2 on text: SST-2 test accuracy against LoRA rank (SmolLM2-135M-Instruct)",
                                xlabel = "LoRA rank r", ylabel = "test accuracy (%)" }
figure "figure2_smollm2_epochs" { x = "train.epochs", y = "test.score", series = "method", logx = true,
                                  title = "Figure 2 on text: SST-2 test accuracy against epochs (SmolLM2-135M-Instruct)",
                                  xlabel = "epochs (COLA and LoRASC: one expert each)", ylabel = "test accuracy (%)" }
report "figure2_smollm2_rank" { rows = "method", cols = "method.rank", digits = 1, metrics = { "test.score", "val.score" } }
report "figure2_smollm2_epochs" { rows = "method", cols = "train.epochs", digits = 1, metrics = { "test.score", "val.score" } }
