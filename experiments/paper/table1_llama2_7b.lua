-- Table 1 of the LoRASC paper (arXiv 2407.01491) at the paper's scale, for a user with a GPU
-- and Llama-2-7B: the model is the one line below (a Hugging Face Llama directory, looked up
-- in the working directory, then the data directory). Design as in the paper: the 12 tasks,
-- MeZO's sampling 1000 / 500 / 1000, the paper's learning-rate grid, α ∈ {0.5, 0.6, 0.8},
-- λ ∈ {0.1, 1, 10}, 3 seeds, batch 4, rank 8 (lora_alpha 16) on q and v, 5 epochs (one expert
-- each), linear schedule. Rows: LoRA, COLA, then +Cascade, ++Slow LoRA and +++Noise Tuning
-- (= LoRASC) over LoRA, over LoRA+ (ratio 16) and over DoRA; every hyper-parameter chosen
-- on validation per (row, task), test mean ± std over the seeds.
-- SQuAD and DROP are not in this workplace's mirror (`lorasc data fetch` names what is
-- missing); the smaller design that runs on 2 CPU cores is table1_smollm2.lua.
--   lorasc run experiments/paper/table1_llama2_7b.lua --device cuda --db results/paper7b.db
--   lorasc report experiments/paper/table1_llama2_7b.lua --db results/paper7b.db --paper results/paper/table1.csv
local model = llama { checkpoint = "Llama-2-7b-hf", format = "hf" }

local LR = grid { 1e-5, 5e-5, 1e-4, 5e-4, 1e-3 }
local ALPHA = grid { 0.5, 0.6, 0.8 }
local LAMBDA = grid { 0.1, 1, 10 }

local design = {
  model = model,
  tasks = { "sst2", "rte", "cb", "boolq", "wsc", "wic", "multirc", "copa", "record",
            "squad", "drop", "gsm8k" },
  split = { train = 1000, val = 500, test = 1000 },
  train = { epochs = 5, batch = 4, seq = 1024, lr = LR, warmup = 0, schedule = "linear" },
  seeds = { 1, 2, 3 },
  device = "cuda",
}

local function rows(base, name)
  local function with(t)
    for k, v in pairs(base) do t[k] = v end
    t.rank, t.targets = 8, { "q", "v" }
    return t
  end
  local list = {
    lora(with { label = name }),
    cascade(with { label = name .. " +cascade" }),
    lorasc(with { label = name .. " ++slow", alpha = ALPHA, noise = 0 }),
    lorasc(with { label = name .. " +++noise", alpha = ALPHA, noise = LAMBDA }),
  }
  if name == "lora" then table.insert(list, 2, cola(with { label = "cola", experts = 5 })) end
  return list
end

local function experiment_for(name, base)
  local e = {}
  for k, v in pairs(design) do e[k] = v end
  e.method = rows(base, name)
  experiment("table1_7b_" .. name:gsub("%+", "plus"))(e)
end

experiment_for("lora", {})
experiment_for("lora+", { ratio = 16 })
experiment_for("dora", { dora = true })

for _, name in ipairs { "lora", "loraplus", "dora" } do
  report("table1_7b_" .. name) { rows = "method", cols = "task", digits = 1,
                                 metrics = { "test.score", "val.score" } }
end
