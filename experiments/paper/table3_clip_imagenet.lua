-- Table 3 of the LoRASC paper at the paper's scale, for a user with a GPU and the data: a CLIP
-- ViT-B/16 vision tower fine-tuned on ImageNet-1K, tested on ImageNet's validation images and
-- on its natural distribution shifts ImageNet-V2, -Sketch, -A and -R. The model is the one line
-- below (a Hugging Face directory: openai/clip-vit-base-patch16, or any CLIP / ViT checkpoint);
-- the data are image folders under the data directory ($LORASC_DATA), as they ship:
--   imagenet/train/<wnid>/*.JPEG          ILSVRC-2012 training images (1,281,167; 1,000 classes)
--   imagenet/val/<wnid>/*.JPEG            the 50,000 validation images in class folders, or
--   imagenet/val/*.JPEG + imagenet/LOC_val_solution.csv   (the layout of the Kaggle download)
--   imagenet-v2/<0..999>/*.jpeg           ImageNet-V2 MatchedFrequency (folders are label numbers)
--   imagenet-sketch/<wnid>/*.JPEG         ImageNet-Sketch (50,889 images, 1,000 classes)
--   imagenet-a/<wnid>/*.jpg               ImageNet-A (7,500 images, 200 classes)
--   imagenet-r/<wnid>/*.jpg               ImageNet-R (30,000 images, 200 classes)
-- ImageNet-A and -R hold 200 of the 1,000 classes: they are scored over those 200 logits of the
-- 1,000-way model, as their authors do (lua/DSL.md, "Image folders").
--   lorasc run experiments/paper/table3_clip_imagenet.lua --device cuda --db results/table3_clip.db
--   lorasc report experiments/paper/table3_clip_imagenet.lua --db results/table3_clip.db
--
-- Design: the rows of Table 3 at 2-core scale (table3_vision.lua) on the paper's data: LoRA;
-- COLA; +Cascade; ++Slow LoRA; +++Noise Tuning (= LoRASC), rank 8 (lora_alpha 16) on q and v,
-- 5 epochs (one expert each), linear schedule, 3 seeds, every hyper-parameter chosen on
-- validation per row: the learning rate, and the paper's grids α ∈ {0.5, 0.6, 0.8} and
-- λ ∈ {0.1, 1, 10}. The paper's own vision hyper-parameters (its learning rates, batch, head)
-- could not be read from this environment (results/paper/README.md): the learning-rate grid,
-- batch 128, warm-up and weight decay below are lorasc's choices, usual for LoRA on CLIP.
-- Validation: 1% of the training images (12,812), held out by the run's seeded split; the
-- ImageNet validation images are the test set, never used for selection.
--
-- Notes, and what is not done:
--   * the head is new (normal(0, 0.02) from the run's seed) and trained with the adapters; to
--     start from CLIP's zero-shot classifier instead, make it once with PyTorch and transformers
--       python3 tools/clip_zeroshot_head.py $LORASC_DATA/models/clip-vit-base-patch16 \
--         imagenet_classes.tsv $LORASC_DATA/imagenet/train $LORASC_DATA/models/clip_b16_imagenet_head.safetensors
--     (imagenet_classes.tsv: "<wnid><TAB><class name>" per line, e.g. CLIP's ImageNet class
--     names; --templates for OpenAI's 80 prompts) and add head = "models/clip_b16_imagenet_head.safetensors"
--     to the vit{} line;
--   * the images are prepared as the checkpoint's CLIPImageProcessor does (Pillow's bicubic
--     shorter side, the centre crop, CLIP's statistics; byte for byte: test image_preprocess);
--   * the training folder (193 GB decoded at 224x224) is streamed from its files: every batch
--     decodes its 128 JPEGs again on the CPU cores (OpenMP), the next batch while the GPU
--     computes on this one (evaluation too), so a step waits only when decoding is the slower
--     (~2.5 ms of one core per image here: ~20 ms a batch on 16 cores; tests/bench/RESULTS.md);
--   * each folder is one input of a run's provenance (the hash of its tree, taken once per
--     process: a first read of every file, ~150 GB for ImageNet's train/);
--   * nothing of it has run on a GPU (the CUDA backend has never met one: README).
-- Its expansion (135 runs, the tasks and shift folders checked, the model's geometry read) and
-- one run end to end are tested on a miniature of this layout (tests/lua/test_folder_cli.sh).
local clip = vit { hf = "models/clip-vit-base-patch16", channels = 3 }
local function r8(t) t.rank, t.lora_alpha, t.targets = 8, 16, { "q", "v" } return t end

experiment "table3_clip_imagenet" {
  model = clip,
  tasks = { "folder:imagenet" },
  split = { val = 0.01 },
  train = { epochs = 5, batch = 128, lr = grid { 1e-4, 3e-4, 1e-3 }, warmup = 500,
            schedule = "linear", weight_decay = 0.1, flip = true },
  method = {
    lora(r8 {}),
    cola(r8 { experts = 2 }),
    cascade(r8 {}),
    lorasc(r8 { alpha = grid { 0.5, 0.6, 0.8 }, noise = 0, label = "++slow lora" }),
    lorasc(r8 { alpha = grid { 0.5, 0.6, 0.8 }, noise = grid { 0.1, 1.0, 10.0 }, label = "+++noise (lorasc)" }),
  },
  seeds = { 1, 2, 3 },
  eval = { batch = 256, corrupt = false,
           shift = { "folder:imagenet-v2", "folder:imagenet-sketch", "folder:imagenet-a", "folder:imagenet-r" } },
  select = "val.score",
  device = "cuda",
  precision = "bf16",
  activations = "bf16",
}

report "table3_clip_imagenet" { rows = "method", cols = "task", digits = 2,
                                metrics = { "test.score", "test.shift.imagenet-v2", "test.shift.imagenet-sketch",
                                            "test.shift.imagenet-a", "test.shift.imagenet-r" },
                                title = "Table 3: CLIP ViT-B/16 on ImageNet, tested on ImageNet, -V2, -Sketch, -A, -R" }
