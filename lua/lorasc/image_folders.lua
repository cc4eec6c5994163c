-- Image folder tasks and shift sets for the image family (family_image.lua): "folder:<path>"
-- names, the metric a shift folder is stored under, the check of eval.shift folders, how a
-- model takes a folder's images (a Hugging Face checkpoint's image processor at the model's
-- size, or lorasc's default), and a folder task's class count. The images themselves are
-- core's (core/tasks/image_task.h, core/data/image_preprocess.h).
local sys = require "lorasc.core.sys"
local fs = require "lorasc.core.fs"
local canon = require "lorasc.canon"
local json = require "lorasc.json"

local M = {}

-- "folder:<path>": an image folder under the data directory (or an absolute path) holding
-- train/<class>/ and val/<class>/ (or test/<class>/, or ImageNet's val/ + LOC_val_solution.csv);
-- every class of train/, decoded at the model's image size and channels. Returns { dataset =
-- "folder", path, root }, or nil for another name.
function M.parse(name)
  local path = type(name) == "string" and name:match("^folder:(.+)$")
  if not path then return nil end
  return { dataset = "folder", path = path, root = path:sub(1, 1) == "/" and path or sys.datadir_path(path) }
end

-- The metric a shift set's accuracy is stored under: test.shift.<key>, the key a folder's last
-- path component ("folder:imagenet-r" -> imagenet-r), another set's name as it is.
function M.shift_key(name)
  local f = M.parse(name)
  return f and (f.path:gsub("/+$", ""):match("([^/]+)$") or f.path) or name
end

-- eval.shift = { "folder:imagenet-r" }: class folders (ImageNet-V2 / -Sketch / -R / -A as they
-- ship), their classes matched to the task's by name, so every task must be a folder task;
-- the folder must exist. `at` is the key's location for the sentence.
function M.check_shift(name, at, tasks)
  for _, task in ipairs(tasks or {}) do
    if not M.parse(task) then
      canon.fail(string.format("%s: eval.shift '%s' is a folder of named classes, matched to a folder task's by name; task '%s' is not a folder task", at, name, task))
    end
  end
  local root = M.parse(name).root
  if not sys.exists(root) then
    canon.fail(string.format("%s: eval.shift '%s': no folder at %s (class folders of PNG or JPEG images; a relative path is under the data directory $LORASC_DATA)", at, name, root))
  end
end

-- How a colour checkpoint's images are prepared (vit.hf_processor: its image processor) for a
-- model of image size S: the processor's resize and centre crop, scaled by S / its output
-- side when the model sees another size; crop offsets floored as transformers does.
function M.processor_at(pre, S)
  local side = pre.crop > 0 and pre.crop or pre.height
  local function scaled(n) return n > 0 and math.floor(n * S / side + 0.5) or nil end
  local p = { mean = pre.mean, std = pre.std, resample = pre.resample, crop = S }
  if pre.crop > 0 then
    p.shortest_edge, p.height, p.width, p.crop_floor = scaled(pre.shortest_edge), scaled(pre.height), scaled(pre.width), true
  else
    p.height, p.width = S, S
  end
  return p
end

-- How a model (its canonical config) takes a folder's images: { channels, size, mean, std,
-- preprocess } (mean/std nil: the data's own statistics; preprocess: images.load_folder's
-- argument, the checkpoint's processor or lorasc's default at the size).
function M.geometry(mc)
  local p, size = mc.processor, mc.image_size or 28
  local pre = size
  if p then
    pre = { size = size, resample = p.resample, shortest_edge = p.shortest_edge or 0,
            height = p.height, width = p.width, crop_floor = p.crop_floor }
  end
  return { channels = mc.channels or 1, size = size, mean = p and p.mean, std = p and p.std, preprocess = pre }
end

-- A cache key for a geometry (image sets are loaded once per geometry).
function M.geometry_key(g) return json.encode(g) end

-- The number of class folders of root/train (at least 2: a task needs them).
function M.class_count(root)
  local n = 0
  for _, name in ipairs(fs.list(root .. "/train") or {}) do
    local st = name:sub(1, 1) ~= "." and fs.stat(root .. "/train/" .. name)
    if st and st.dir then n = n + 1 end
  end
  return math.max(n, 2)
end

return M
