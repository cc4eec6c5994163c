-- Table 1's learning rate on SmolLM2: the paper chooses it per row on validation from
-- {1e-5, 5e-5, 1e-4, 5e-4, 1e-3}; table1_smollm2.lua fixed it at 5e-4 for every row. Here
-- LoRA, COLA, +Cascade and ++Slow LoRA (α from the paper's grid {0.5, 0.6, 0.8}) each choose
-- their learning rate (and ++Slow its α) on validation, on SST-2 and COPA, with the design of
-- table1_smollm2.lua otherwise (MeZO sampling 200 / 100 / 300, batch 4, rank 8 with
-- lora_alpha 16 on q and v, 5 epochs = 5 experts (COLA: 5), linear schedule, 10 warm-up
-- steps, 3 seeds). Does a slow row that keeps only part of each fast expert want a larger rate
-- than LoRA, and does a tuned cascade gain on LoRA? (+++Noise is left out: at this scale its
-- noise changed no prediction at λ = 1 and little at λ = 10, table1_smollm2_alpha.lua.) The
-- runs at 5e-4 are table1_smollm2.lua's and table1_smollm2_alpha.lua's (the same configs:
-- found by their hashes in the same database).
-- A second experiment asks the same of RTE, where the slow rows sat below guessing for every
-- α at 5e-4 (table1_smollm2_alpha.lua), with the two rates every row chose on SST-2 and COPA
-- when it learned at all (5e-4 and 1e-3): an RTE run takes ~3.3 min here, the full grid ~5 h.
-- A third asks it of WiC with the same two rates. WSC is left out (its test set is its
-- validation set, so choosing a rate on validation would choose it on the test examples), CB
-- for time (its long premises make a run ~6.5 min on one core here: 24 new runs, ~2.6 h).
--   lorasc data fetch smollm2-135m sst2 copa rte wic --from ../shared/data
--   lorasc run experiments/paper/table1_smollm2_lr.lua --db results/paper.db
--   lorasc report experiments/paper/table1_smollm2_lr.lua --db results/paper.db
local function r8(t) t.rank, t.lora_alpha, t.targets = 8, 16, { "q", "v" } return t end

local function rows()
  return {
    lora(r8 { label = "lora" }),
    cola(r8 { label = "cola", experts = 5 }),
    cascade(r8 { label = "lora +cascade" }),
    lorasc(r8 { label = "lora ++slow", alpha = grid { 0.5, 0.6, 0.8 }, noise = 0 }),
  }
end

local function design(tasks, rates)
  return {
    model = llama { checkpoint = "smollm2-135m" },
    tasks = tasks,
    split = { train = 200, val = 100, test = 300 },
    train = { epochs = 5, batch = 4, seq = 256, lr = grid(rates), warmup = 10, schedule = "linear" },
    seeds = { 1, 2, 3 },
    method = rows(),
  }
end

experiment "table1_smollm2_lr"(design({ "sst2", "copa" }, { 1e-5, 5e-5, 1e-4, 5e-4, 1e-3 }))
experiment "table1_smollm2_lr_rte"(design({ "rte" }, { 5e-4, 1e-3 }))
experiment "table1_smollm2_lr_wic"(design({ "wic" }, { 5e-4, 1e-3 }))

-- per experiment: the rates and α chosen on validation, each row against LoRA; then every
-- rate (α still chosen on validation for ++Slow)
for _, name in ipairs { "table1_smollm2_lr", "table1_smollm2_lr_rte", "table1_smollm2_lr_wic" } do
  report(name) { rows = "method", cols = "task", digits = 1, metrics = { "test.score", "val.score" } }
  report(name .. "_each") { experiment = name, rows = "method", cols = "train.lr", digits = 1,
                            metrics = { "test.score", "val.score" } }
end
