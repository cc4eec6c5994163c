-- The image family: classification of MNIST / Fashion-MNIST classes ("fashion-mnist",
-- "fashion-mnist:5-9", "mnist:0,2,4", "mnist-t10k"; core/data/imagedata.h), or of an image
-- folder's classes ("folder:imagenet": train/ and val/ class folders under the data
-- directory, core/tasks/image_task.h), with a ViT. Its canonicalisation (the vit{} model,
-- pretrained here, a checkpoint or a Hugging Face directory; the val fraction and caps; eval
-- with corruptions and shift sets) and, for `lorasc run`, the base ViT, the images, the
-- engine and the evaluation (clean, then ImageNet-C's protocol, then each distribution
-- shift: the UCI digits for MNIST, shift folders such as ImageNet-R for a folder task).
local sys = require "lorasc.core.sys"
local vit_mod = require "lorasc.core.vit"
local images = require "lorasc.core.images"
local canon = require "lorasc.canon"
local train = require "lorasc.train"
local text = require "lorasc.family_text"
local cache = require "lorasc.cache"
local provenance = require "lorasc.provenance"
local folders = require "lorasc.image_folders"

local fail, num, int, pos, nonneg = canon.fail, canon.num, canon.int, canon.pos, canon.nonneg

local F = { name = "image", arch = "vit", save_ext = "ckpt", cost_unit = "images" }

-- train = { ... }: no sequence length (canon_train drops it); crop_pad and flip augment.
F.train_keys = { "epochs", "steps", "batch", "lr", "schedule", "warmup",
                 "weight_decay", "grad_clip", "min_lr_ratio", "crop_pad", "flip", "diverge" }
F.train = { augment = true, eval_only = false }

-- "fashion-mnist", "fashion-mnist:5-9", "mnist:0,2,4": a class subset, relabelled 0..k-1
-- in the order given. Returns { dataset, classes }, or nil (not an image task), or nil and
-- the error of a malformed one.
local SETS = { ["fashion-mnist"] = 10, mnist = 10, ["mnist-t10k"] = 10 }
-- The file a dataset's images come from in the data directory: "mnist-t10k" is MNIST's t10k
-- file alone, cut into 8,000 "train" and 2,000 "test" images by a fixed permutation.
local FOLDER = { mnist = "mnist", ["mnist-t10k"] = "mnist", ["fashion-mnist"] = "fashion-mnist" }
-- Distribution shifts (eval.shift): the real-data sets a task's model is also evaluated on,
-- and the datasets whose classes they share (the UCI digits: the ten digits, as MNIST's).
local SHIFTS = { digits = { mnist = true, ["mnist-t10k"] = true } }
function F.parse(task)
  if type(task) ~= "string" then return nil end
  local folder = folders.parse(task)
  if folder then return folder end
  local name, spec = task:match("^([%w%-]+):(.+)$")
  if not name then name = task end
  if not SETS[name] then return nil end
  local classes = {}
  if not spec then
    for c = 0, SETS[name] - 1 do classes[#classes + 1] = c end
  else
    for part in (spec .. ","):gmatch("([^,]*),") do
      local a, b = part:match("^(%d+)%-(%d+)$")
      if a then
        for c = tonumber(a), tonumber(b) do classes[#classes + 1] = c end
      elseif part:match("^%d+$") then
        classes[#classes + 1] = tonumber(part)
      else
        return nil, string.format("task '%s': '%s' is not a class or a range; write classes as \"%s:5-9\" or \"%s:0,2,4\"", task, part, name, name)
      end
    end
  end
  local seen = {}
  for _, c in ipairs(classes) do
    if c >= SETS[name] then return nil, string.format("task '%s': class %d is not in %s (classes 0-%d)", task, c, name, SETS[name] - 1) end
    if seen[c] then return nil, string.format("task '%s': class %d is listed twice", task, c) end
    seen[c] = true
  end
  if #classes < 2 then return nil, string.format("task '%s': an image task needs at least 2 classes", task) end
  return { dataset = name, classes = classes }
end

function F.owns(task)
  local t, err = F.parse(task)
  return t ~= nil, err
end

function F.wrong_arch(task)
  return string.format("task '%s' is an image task; use model = vit { ... } for it", task)
end

-- The IDX files: the data directory, then (Fashion-MNIST) Debian's dataset-fashion-mnist;
-- the error says how to get them.
function F.check_task(task, loc)
  local t = F.parse(task)
  if t.dataset == "folder" then
    if sys.exists(t.root .. "/train") then return task end
    fail(string.format("%s: task '%s' needs an image folder at %s with train/<class>/ and val/<class>/ (or test/<class>/) folders of PNG or JPEG images; a relative path is under the data directory $LORASC_DATA (default data/)", loc, task, t.root))
  end
  local name = t.dataset
  if name == "mnist-t10k" then
    local tried = sys.datadir_path("mnist/t10k-images-idx3-ubyte.gz")
    if sys.exists(tried) then return task end
    fail(string.format("%s: task '%s' needs MNIST's t10k IDX files, not found at %s: copy them with `lorasc data fetch mnist --from DIR` (e.g. --from ../shared/data) into $LORASC_DATA/mnist/ (LORASC_DATA is the data directory, default data/)", loc, task, tried))
  end
  local tried = sys.datadir_path(name .. "/train-images-idx3-ubyte.gz")
  if sys.exists(tried) then return task end
  if name == "fashion-mnist" and sys.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") then return task end
  if name == "fashion-mnist" then
    fail(string.format("%s: task '%s' needs Fashion-MNIST, not found at %s or /usr/share/datasets/fashion-mnist: install it with `apt-get install dataset-fashion-mnist`, or put the IDX files in $LORASC_DATA/fashion-mnist/", loc, task, tried))
  end
  fail(string.format("%s: task '%s' needs the MNIST IDX files (train/t10k images and labels), not found at %s: get them with `lorasc data fetch mnist` or copy them into $LORASC_DATA/%s/ (LORASC_DATA is the data directory, default data/)", loc, task, tried, name))
end

-- eval.shift = { "digits" }: each name a shift set of SHIFTS whose classes every task's
-- dataset shares, or a folder (image_folders.check_shift); nil or {} for none (left out of the
-- config, so older runs keep their hashes).
local function canon_shift(shift, loc, tasks)
  if shift == nil then return nil end
  local at = canon.key_loc(loc, "shift")
  if type(shift) == "string" then shift = { shift } end
  if type(shift) ~= "table" then fail(at .. ": eval.shift must be a list of shift sets such as { \"digits\" }") end
  local names = canon.sorted_keys(SHIFTS)
  local out, seen, keys = {}, {}, {}
  for _, name in ipairs(shift) do
    if folders.parse(name) then
      folders.check_shift(name, at, tasks)
      local key = folders.shift_key(name)
      if keys[key] and keys[key] ~= name then
        fail(string.format("%s: eval.shift '%s' and '%s' would both be stored as test.shift.%s; rename one folder", at, keys[key], name, key))
      end
      keys[key] = name
    elseif not SHIFTS[name] then
      fail(string.format("%s: unknown eval.shift '%s'; valid: %s, or \"folder:<path>\" for a folder task", at, tostring(name), table.concat(names, ", ")))
    else
      for _, task in ipairs(tasks or {}) do
        local t = F.parse(task)
        if t and not SHIFTS[name][t.dataset] then
          fail(string.format("%s: eval.shift '%s' holds handwritten digits 0-9, which task '%s' does not classify; it is a shift for mnist and mnist-t10k tasks", at, name, task))
        end
      end
    end
    if not seen[name] then seen[name] = true; out[#out + 1] = name end
  end
  if #out == 0 then return nil end
  table.sort(out)
  return out
end

-- split = { val, max_train, max_val, max_test }: the val fraction of the train file and
-- optional caps; eval = { batch, corrupt, corrupt_max, shift }.
function F.canon_split_eval(split, ev, loc, tasks)
  local _, val_frac = text.fractions(split, loc)
  if ev.max_windows ~= nil then fail(loc .. ": eval.max_windows is for text tasks; image tasks take eval = { batch, corrupt, corrupt_max, shift }") end
  if split.train ~= nil then fail(loc .. ": split.train is for text tasks; image tasks take the val fraction of the train file (split.val) and optional caps max_train, max_val, max_test") end
  if ev.corrupt ~= nil and type(ev.corrupt) ~= "boolean" then fail(loc .. ": eval.corrupt must be true or false") end
  local eval = { batch = int(ev.batch or 128, "eval.batch", loc, pos, "must be > 0"),
                 corrupt = ev.corrupt ~= false,
                 corrupt_max = int(ev.corrupt_max or 0, "eval.corrupt_max", loc, nonneg, "must be >= 0"),
                 shift = canon_shift(ev.shift, loc, tasks) }
  return { val = val_frac,
           max_train = int(split.max_train or 0, "split.max_train", loc, nonneg, "must be >= 0"),
           max_val = int(split.max_val or 0, "split.max_val", loc, nonneg, "must be >= 0"),
           max_test = int(split.max_test or 0, "split.max_test", loc, nonneg, "must be >= 0") }, eval
end

-- Configs of Hugging Face checkpoints in colour whose vit{} did not say channels (folded to
-- grey by default): a folder task asks which was meant (F.check_task_model).
local colour_unsaid = setmetatable({}, { __mode = "k" })

-- vit{ hf = "dir", image_size = N, channels = 1 | 3 }: a Hugging Face ViT / CLIP-vision
-- directory (config.json + safetensors); a relative path is under the data directory. Its
-- head is made for the task's classes; channels = 1 (the default) folds a 3-channel model to
-- grey images (MNIST's), channels = 3 keeps its colour weights and normalises the images as
-- its image processor does (preprocessor_config.json; else transformers' defaults: CLIP's
-- statistics for a CLIP tower); the images are resized to N (core/formats/vit_hf.h,
-- core/tasks/image_task.h).
local function canon_hf(s, mloc)
  if type(s.hf) ~= "string" or s.hf == "" then fail(mloc .. ": hf must be the path of a Hugging Face ViT or CLIP directory") end
  for _, k in ipairs { "patch_size", "dim", "n_layers", "n_heads", "mlp_dim", "norm_eps", "seed" } do
    if s[k] ~= nil then fail(string.format("%s: vit{ hf = ... } takes its sizes from the checkpoint's config.json; drop %s", mloc, k)) end
  end
  local dir = s.hf:sub(1, 1) == "/" and s.hf or sys.datadir_path(s.hf)
  if not sys.exists(dir .. "/config.json") then
    fail(string.format("%s: hf = '%s': no Hugging Face checkpoint at %s (a directory with config.json and model.safetensors; relative paths are under the data directory $LORASC_DATA, default data/)", mloc, s.hf, dir))
  end
  local ok, c = pcall(vit_mod.hf_config, dir)
  if not ok then fail(mloc .. ": " .. canon.sentence(c)) end
  if c.channels ~= 1 and c.channels ~= 3 then
    fail(string.format("%s: %s takes %d-channel images; lorasc reads grey (1 channel; a 3-channel model is folded) and RGB (3) images", mloc, dir, c.channels))
  end
  local channels = 1
  if s.channels ~= nil then
    channels = int(s.channels, "channels", mloc, function(x) return x == 1 or x == c.channels end,
                   string.format("must be 1 (grey images%s) or %d, the checkpoint's own", c.channels == 3 and ", the colour weights folded" or "", c.channels))
  end
  -- The images the model sees: the 28x28 task images resized (torch's bilinear) to image_size,
  -- by default the checkpoint's own; another multiple of its patch size interpolates its
  -- position embeddings as transformers' interpolate_pos_encoding (core/formats/vit_hf.h).
  local size = s.image_size == nil and c.image_size or int(s.image_size, "image_size", mloc, pos, "must be > 0")
  if size % c.patch_size ~= 0 then
    fail(string.format("%s: image_size %d is not a multiple of the patch size %d of %s; use e.g. %d", mloc, size, c.patch_size, dir, (size + c.patch_size - 1) // c.patch_size * c.patch_size))
  end
  if size ~= c.image_size and c.layout == "clip" then
    fail(string.format("%s: %s is a CLIP vision tower for %dx%d images: lorasc (like transformers 4.44) interpolates the position embeddings of ViT checkpoints only; use image_size = %d", mloc, dir, c.image_size, c.image_size, c.image_size))
  end
  -- image_size enters the config only when it is not 28 (configs before resizing keep their hashes)
  local out = { arch = "vit", hf = dir, channels = channels, image_size = size ~= 28 and size or nil }
  if channels == 3 then -- the checkpoint's image processor, in the config: it decides the images
    local ok, pre = pcall(vit_mod.hf_processor, dir)
    if not ok then fail(mloc .. ": " .. canon.sentence(pre)) end
    out.processor = folders.processor_at(pre, size)
  end
  if s.channels == nil and c.channels == 3 then colour_unsaid[out] = true end
  if s.head ~= nil then -- every run's head starts from this file instead of a random one
    if type(s.head) ~= "string" or s.head == "" then fail(mloc .. ": head must be the path of a safetensors file (weight [classes, width], optional bias)") end
    local path = s.head:sub(1, 1) == "/" and s.head or sys.datadir_path(s.head)
    if not sys.exists(path) then
      fail(string.format("%s: head = '%s': no file at %s (a safetensors head, e.g. from tools/clip_zeroshot_head.py; relative paths are under the data directory)", mloc, s.head, path))
    end
    out.head = path
  end
  return out
end

-- A (task, model) pair of an experiment: a folder task's images are decoded as its model
-- takes them (channels, image size); MNIST's are grey.
function F.check_task_model(task, mc, loc)
  local t = F.parse(task)
  if t.dataset == "folder" then
    if mc.checkpoint then
      fail(string.format("%s: task '%s' is decoded at the model's image size and channels, which a lorasc checkpoint does not say before it is loaded; use vit{ hf = ... } or vit{ pretrain = ... } for folder tasks", loc, task))
    end
    if colour_unsaid[mc] then
      fail(string.format("%s: task '%s' holds colour images and %s is a colour (3-channel) checkpoint: write channels = 3 in vit{} to keep its colour weights and preprocessing, or channels = 1 to fold it to grey", loc, task, mc.hf))
    end
  elseif mc.channels == 3 then
    fail(string.format("%s: task '%s' is grey (1 channel); the vit{} takes 3-channel images: use channels = 1", loc, task))
  end
end

-- The canonical vit{} config (every field explicit); its hash keys the base-model cache.
function F.canon_model(m)
  local s, mloc = m.spec, m.where
  if s.hf ~= nil then return canon_hf(s, mloc) end
  if s.checkpoint then
    if type(s.checkpoint) ~= "string" then fail(mloc .. ": checkpoint must be a path") end
    return { arch = "vit", checkpoint = s.checkpoint }
  end
  if s.head ~= nil then fail(mloc .. ": head = \"file\" starts a Hugging Face checkpoint's head (vit{ hf = ..., head = ... }); lorasc's own ViTs start theirs at random") end
  if not s.pretrain then fail(mloc .. ": vit{} needs checkpoint = \"path\" or pretrain = { task = \"fashion-mnist:0-4\", steps = ... }") end
  -- pretrained on a folder task: its images at any size, grey or RGB; MNIST's are 28x28 grey
  local on_folder = folders.parse(s.pretrain.task) ~= nil
  local size = int(s.image_size or 28, "image_size", mloc, pos, "must be > 0")
  local patch = int(s.patch_size or 7, "patch_size", mloc, pos, "must be > 0")
  if size % patch ~= 0 then fail(string.format("%s: image_size %d is not a multiple of patch_size %d", mloc, size, patch)) end
  if size ~= 28 and not on_folder then fail(mloc .. ": image_size must be 28 for a ViT pretrained here on MNIST or Fashion-MNIST (their images' size); other sizes are for Hugging Face checkpoints (vit{ hf = ..., image_size = N }, the images resized) and ViTs pretrained on an image folder") end
  local dim = int(s.dim or 64, "dim", mloc, pos, "must be > 0")
  local heads = int(s.n_heads or 4, "n_heads", mloc, pos, "must be > 0")
  if dim % heads ~= 0 then fail(mloc .. ": dim must be a multiple of n_heads") end
  local c = {
    arch = "vit", image_size = size, patch_size = patch,
    channels = on_folder and int(s.channels or 3, "channels", mloc, function(x) return x == 1 or x == 3 end, "must be 1 (grey) or 3 (RGB)")
               or int(s.channels or 1, "channels", mloc, function(x) return x == 1 end, "MNIST and Fashion-MNIST are grey (1 channel)"),
    dim = dim, n_layers = int(s.n_layers or 2, "n_layers", mloc, pos, "must be > 0"), n_heads = heads,
    mlp_dim = int(s.mlp_dim or 4 * dim, "mlp_dim", mloc, pos, "must be > 0"),
    norm_eps = num(s.norm_eps or 1e-6, "norm_eps", mloc, pos, "must be > 0"),
    seed = int(s.seed or 1, "seed", mloc),
  }
  local p = s.pretrain
  if p.task == nil then fail(mloc .. ": vit{ pretrain = {} } needs task = \"fashion-mnist:0-4\" (an image task)") end
  c.pretrain = {
    task = require("lorasc.families").check_task(p.task, mloc, "vit"),
    steps = int(p.steps or 500, "pretrain.steps", mloc, function(x) return x > 0 and x <= canon.LIMITS.steps end,
                string.format("must be in [1, %d] (lorasc's limit)", canon.LIMITS.steps)),
    batch = int(p.batch or 64, "pretrain.batch", mloc, pos, "must be > 0"),
    lr = num(p.lr or 2e-3, "pretrain.lr", mloc, pos, "must be > 0"),
    warmup = int(p.warmup or 0, "pretrain.warmup", mloc, nonneg, "must be >= 0"),
    schedule = p.schedule or "cosine",
    weight_decay = num(p.weight_decay or 0, "pretrain.weight_decay", mloc, nonneg, "must be >= 0"),
    crop_pad = int(p.crop_pad or 0, "pretrain.crop_pad", mloc, nonneg, "must be >= 0"),
    flip = p.flip == true,
    seed = int(p.seed or 1, "pretrain.seed", mloc),
    diverge = canon.diverge(p.diverge, "pretrain.diverge", mloc),
  }
  return c
end

-- The shape (rows, cols) of each LoRA target of a vit{} config whose sizes the config holds
-- (core's vit_lora_shapes), for the DSL's rank check.
function F.target_shapes(mc)
  if not mc.dim then return nil end
  local d, m = mc.dim, mc.mlp_dim
  return { q = { d, d }, k = { d, d }, v = { d, d }, o = { d, d }, up = { m, d }, down = { d, m } }
end

-- Running -----------------------------------------------------------------------------------
-- Base models and image sets are cached in the process: loaded once per sweep.
local bases, sets, shifts = {}, {}, {}

-- A shift set (core/data/digits.h for "digits"; a folder at the model's geometry), loaded
-- once per process.
local function get_shift(name, mc)
  local f = folders.parse(name)
  local g = f and folders.geometry(mc)
  local key = f and name .. "|" .. folders.geometry_key(g) or name
  if not shifts[key] then
    if f then
      shifts[key] = images.shift_folder(f.root, g.channels, g.preprocess)
    else
      shifts[key] = images.shift(name)
    end
  end
  return shifts[key]
end

local function get_images(task, split, mc)
  split = split or { val = 0.1 }
  local t = assert(F.parse(task))
  local opts = { val = split.val, max_train = split.max_train, max_val = split.max_val, max_test = split.max_test }
  local key = table.concat({ task, split.val, split.max_train or 0, split.max_val or 0, split.max_test or 0 }, "|")
  local g = t.dataset == "folder" and folders.geometry(mc)
  if g then key = key .. "|" .. folders.geometry_key(g) end
  if not sets[key] then
    if g then
      opts.mean, opts.std = g.mean, g.std
      sets[key] = images.load_folder(t.root, g.channels, g.preprocess, opts)
    else
      sets[key] = images.load(t.dataset, t.classes, opts)
    end
  end
  return sets[key]
end

local function pretrain(mc, path, report, beat)
  local p = mc.pretrain
  local d = get_images(p.task, nil, mc)
  local m <close> = vit_mod.new { image_size = mc.image_size, patch_size = mc.patch_size, channels = mc.channels,
                          dim = mc.dim, n_layers = mc.n_layers, n_heads = mc.n_heads, mlp_dim = mc.mlp_dim,
                          norm_eps = mc.norm_eps, n_classes = d:info().n_classes, seed = mc.seed }
  local t <close> = vit_mod.trainer(m, d, { total_steps = p.steps, batch = p.batch, lr = p.lr, warmup = p.warmup,
                                    schedule = p.schedule, weight_decay = p.weight_decay,
                                    crop_pad = p.crop_pad, flip = p.flip and 1 or 0, data_seed = p.seed })
  report(string.format("pretraining the base ViT (%s, %d steps on %s) -> %s", tostring(m), p.steps, p.task, path))
  local t0, loss = train.pretrain_steps(p.steps, report, function() beat(); return t:step() end, p.diverge,
                                        function() return t:results() end)
  t:close()
  train.check_weights(m, "pretraining the base ViT (it is not cached)")
  local acc = d:evaluate(m, "val", 256)
  report(string.format("  pretrained: val accuracy %.4f on %s", acc, p.task))
  cache.save_atomic(m, path)
  m:close()
  return { { "base.pretrain_seconds", sys.now() - t0 }, { "base.pretrain_loss", loss },
           { "base.pretrain_val_acc", acc } }
end

-- The IDX files of an image dataset, found as core/data/imagedata.c finds them: the data
-- directory, then (Fashion-MNIST) Debian's dataset-fashion-mnist.
local function idx_files(name, root)
  if name == "folder" then return { root } end -- a directory: every file under it
  local out = {}
  for _, prefix in ipairs(name == "mnist-t10k" and { "t10k" } or { "train", "t10k" }) do
    local img = sys.datadir_path(string.format("%s/%s-images-idx3-ubyte.gz", FOLDER[name], prefix))
    local lab = sys.datadir_path(string.format("%s/%s-labels-idx1-ubyte.gz", FOLDER[name], prefix))
    if not sys.exists(img) and name == "fashion-mnist" then
      img = string.format("/usr/share/datasets/fashion-mnist/%s-images-idx3-ubyte.gz", prefix)
      lab = string.format("/usr/share/datasets/fashion-mnist/%s-labels-idx1-ubyte.gz", prefix)
    end
    out[#out + 1], out[#out + 1] = img, lab
  end
  return out
end

-- The files a run reads, for its provenance (provenance.lua): the task's images, and the
-- base's checkpoint (a file or a Hugging Face directory) or, pretrained here, its images.
-- An image folder (a folder task's, a shift folder) is one input: its whole tree's hash.
local function model_inputs(mc, list)
  if mc.hf or mc.checkpoint then
    list[#list + 1] = { path = mc.hf or mc.checkpoint, kind = "checkpoint" }
    if mc.head then list[#list + 1] = { path = mc.head, kind = "checkpoint" } end
  elseif mc.pretrain then
    local t = F.parse(mc.pretrain.task)
    for _, f in ipairs(idx_files(t.dataset, t.root)) do
      list[#list + 1] = { path = f, kind = "corpus", tree = t.dataset == "folder" }
    end
  end
  return list
end

function F.inputs(run)
  local list = {}
  local t = F.parse(run.config.task)
  for _, f in ipairs(idx_files(t.dataset, t.root)) do
    list[#list + 1] = { path = f, kind = "data", tree = t.dataset == "folder" }
  end
  for _, name in ipairs(run.config.eval.shift or {}) do
    local f = folders.parse(name)
    list[#list + 1] = { path = f and f.root or sys.datadir_path(name .. "/" .. name .. ".csv.gz"), kind = "data",
                        tree = f ~= nil }
  end
  return model_inputs(run.config.model, list)
end

-- The base ViT of a run (shared by every run: see F.borrow) and, for a cached one,
-- its path. A run that pretrains it gets run.pretrain_metrics, logged by the runner. The
-- cache key is the canonical config and the contents of the images it is pretrained on.
function F.base(run, cache_dir, report)
  local mc = run.config.model
  local key = run.model_hash
  if mc.pretrain and not mc.checkpoint and not mc.hf then
    local parts = { run.model_hash }
    for _, i in ipairs(model_inputs(mc, {})) do parts[#parts + 1] = i.path .. " " .. (provenance.path_sha256(i.path) or "missing") end
    key = sys.sha256(table.concat(parts, "\n"))
  end
  -- a bf16 run gets its own base, converted after loading (the pretraining cache is fp32)
  local precision = run.config.precision or "fp32"
  local bkey = precision == "fp32" and key or (key .. " " .. precision)
  if bases[bkey] then return bases[bkey].m, bases[bkey].path end
  local m, path
  if mc.hf then -- a Hugging Face ViT / CLIP directory; the head is sized for this run's task
    report(string.format("loading the Hugging Face ViT in %s", mc.hf))
    local t = assert(F.parse(run.config.task))
    m = vit_mod.load_hf(mc.hf, { n_classes = t.dataset == "folder" and folders.class_count(t.root) or #t.classes, channels = mc.channels, image_size = mc.image_size or 28 })
  elseif mc.checkpoint then
    if not sys.exists(mc.checkpoint) then error(string.format("ViT checkpoint '%s' not found", mc.checkpoint), 0) end
    m = vit_mod.load(mc.checkpoint)
  else
    -- a base that diverged in pretraining is not cached, and not pretrained again by this process
    m, path, run.pretrain_metrics = train.pretrain_once(key, function()
      return cache.get(cache_dir, string.format("vit-%s.ckpt", key:sub(1, 16)),
        function(p, beat) return pretrain(mc, p, report, beat) end, vit_mod.load, report)
    end)
  end
  if precision ~= "fp32" then m:set_precision(precision) end
  bases[bkey] = { m = m, path = path }
  return m, path
end

-- The run's steps per epoch (runner.lua checks every run with it before any starts); a
-- split without images is an error (an accuracy over no images would be nan).
function F.plan(run)
  local c = run.config
  local info = get_images(c.task, c.split, c.model):info()
  for _, k in ipairs { "train", "val", "test" } do
    if info[k] == 0 then
      error(string.format("lorasc: task '%s': the %s split holds no images (split.val = %s, max_%s = %d); raise them", c.task, k,
                          canon.show(c.split.val), k, c.split["max_" .. k] or 0), 0)
    end
  end
  for _, name in ipairs(c.eval.shift or {}) do get_shift(name, c.model) end -- a missing or bad file: an error now
  if c.model.head then -- the head file's shape against the task's classes and the model's width
    local ok, err = pcall(vit_mod.check_head, c.model.head, info.n_classes, vit_mod.hf_config(c.model.hf).dim)
    if not ok then error(string.format("lorasc: task '%s': %s", c.task, canon.sentence(err)), 0) end
  end
  return math.max(1, info.train // c.train.batch)
end

-- The run's images and steps per epoch: floor(train / batch), at least 1.
function F.prepare(run)
  local c = run.config
  local d = get_images(c.task, c.split, c.model)
  local info = d:info()
  return { data = d, info = info, spe = math.max(1, info.train // c.train.batch) }
end

-- A run trains on the shared base itself, with a fresh head for the task's classes from the
-- run's seed: the adapted matrices and the head are saved first and written back when the
-- returned snapshot is closed. A task with another number of classes replaces the cached base
-- by a copy with a head of its size (once, not per run: one base stays in memory).
function F.borrow(base, ctx, c)
  if base:config().n_classes ~= ctx.info.n_classes then
    local resized = base:clone(ctx.info.n_classes, c.seed)
    for _, b in pairs(bases) do if b.m == base then b.m = resized end end
    base:close()
    base = resized
  end
  base:set_activations(c.activations or "fp32") -- per run: the base is shared
  local snap = base:snapshot(c.method.targets)
  if c.model.head then base:load_head(c.model.head) else base:init_head(c.seed) end
  return base, snap
end

function F.finetune(m, ctx, opts, tr)
  opts.crop_pad, opts.flip = tr.crop_pad, tr.flip and 1 or 0
  return vit_mod.finetune(m, ctx.data, opts)
end

function F.step(f) return f:step() end

-- Accuracy ("score") and loss on the clean images of one split, as a list of
-- { metric, value [, per-example outcomes] } (the final evaluation's, and eval.every's
-- validation curve: train.lua); the score carries whether each image was right (1 or 0).
function F.eval_split(run, m, ctx, split)
  local acc, loss, per_image = ctx.data:evaluate(m, split, run.config.eval.batch)
  return { { "score", acc, per_image }, { "loss", loss } }
end

-- Accuracy ("score") and loss on val and test; with eval.corrupt, ImageNet-C's protocol:
-- per corruption, the accuracy averaged over the five severities; then the mean over
-- corruptions; with eval.shift, the accuracy on each shift set (test.shift.digits). The
-- corrupted images are the same for every run (seed 1, keyed by each test image's position).
-- Whether each clean test image was right is stored too (for corruptions: its mean over
-- corruptions and severities), for the report's paired bootstrap.
function F.evaluate(store, run, run_id, m, ctx)
  local c, d, scores = run.config, ctx.data, {}
  for _, split in ipairs { "val", "test" } do
    local list = F.eval_split(run, m, ctx, split)
    for _, e in ipairs(list) do
      store:eval(run_id, split, e[1], e[2])
      if split == "test" and e[3] then store:eval_examples(run_id, split, e[1], e[3]) end
    end
    scores[split] = list[1][2] -- the score
  end
  if c.eval.corrupt then
    local total_acc, names = 0, images.corruptions()
    local cap = c.eval.corrupt_max > 0 and c.eval.corrupt_max or nil
    local dc = cap and get_images(c.task, { val = c.split.val, max_train = c.split.max_train,
                                            max_val = c.split.max_val, max_test = math.min(cap, c.split.max_test > 0 and c.split.max_test or cap) }, c.model) or d
    local per_image = {} -- each test image's accuracy over every corruption and severity
    for _, name in ipairs(names) do
      local sum = 0
      for sev = 1, 5 do
        local acc, _, right = dc:evaluate(m, "test", c.eval.batch, name, sev, 1)
        sum = sum + acc
        for i, v in ipairs(right) do per_image[i] = (per_image[i] or 0) + v / (5 * #names) end
      end
      store:eval(run_id, "test", "corrupt." .. name, sum / 5)
      total_acc = total_acc + sum / 5
      store:flush()
    end
    store:eval(run_id, "test", "corrupt.mean", total_acc / #names)
    store:eval_examples(run_id, "test", "corrupt.mean", per_image)
    scores.corrupt = total_acc / #names
  end
  -- distribution shifts: every image of the set in the task's classes (test.shift.<key>: the
  -- name, or a folder's last path component); a folder holding a subset of the task's classes
  -- is scored over their logits (ImageNet-R's and -A's protocol)
  for _, name in ipairs(c.eval.shift or {}) do
    local acc, loss, n = d:evaluate_shift(m, get_shift(name, c.model), c.eval.batch)
    local key = "shift." .. folders.shift_key(name)
    store:eval(run_id, "test", key, acc)
    store:eval(run_id, "test", key .. ".loss", loss)
    store:eval(run_id, "test", key .. ".n", n)
    store:flush()
    scores[key] = acc
  end
  return scores
end

return F
