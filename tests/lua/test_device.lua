-- The device of the Lua bindings (issue 10): sys.set_device / sys.device choose the backend
-- that lua/bind_sys.c opens through core/model/device.h at the first model; an unavailable
-- device fails there with device_open's sentence, and the device cannot change once a model
-- exists. Run by `lorasc lua`.
local sys = require "lorasc.core.sys"
local vit = require "lorasc.core.vit"

-- assert() stops at the first failure; lorasc then exits non-zero with the message.
local function fails_with(pattern, f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok and tostring(err):find(pattern, 1, true),
         string.format("expected an error with '%s', got %s", pattern, ok and "success" or tostring(err)))
end

local tiny = { image_size = 8, patch_size = 4, channels = 1, dim = 8, n_layers = 1, n_heads = 2, n_classes = 3 }
assert(sys.device() == "cpu", "default device: " .. tostring(sys.device()))
fails_with("invalid option 'tpu'", sys.set_device, "tpu")
assert(sys.device() == "cpu", "a bad name changed the device")

sys.set_device("cuda")
local ok, m = pcall(vit.new, tiny)
if ok then -- a CUDA build on a machine with a GPU
  assert(sys.device() == "cuda", "device after a CUDA model")
  fails_with("the device is cuda already", sys.set_device, "cpu")
else
  assert(tostring(m):find("CUDA", 1, true), "the CUDA error names CUDA: " .. tostring(m))
  sys.set_device("cpu") -- nothing was opened, so the device may still change
  local m2 = vit.new(tiny)
  assert(m2:num_params() > 0, "a CPU model after the failed CUDA one")
  fails_with("the device is cpu already", sys.set_device, "cuda")
  sys.set_device("cpu") -- the same device again is fine
  m2:close()
end

-- the open device describes itself (the run's metadata), whichever it is
local info = sys.device_info()
assert(info:find('"backend":"' .. sys.device() .. '"', 1, true), "device_info: " .. info)
assert(type(sys.cuda_built()) == "boolean", "cuda_built")

-- A snapshot puts back what a run changes (here the head, which init_head replaces): the model
-- then saves byte for byte as its untouched twin does. A snapshot whose model was closed
-- first refuses to restore, by name.
local m3 = vit.new(tiny)
local probe = vit.new(tiny) -- same seed: the same weights
local snap <close> = m3:snapshot { "q", "v" }
assert(tostring(snap):find("snapshot (3 tensors", 1, true), tostring(snap))
m3:init_head(99)
snap:restore()
local tmp1, tmp2 = os.tmpname(), os.tmpname()
m3:save(tmp1)
probe:save(tmp2)
local function read(p) local f = assert(io.open(p, "rb")); local d = f:read("a"); f:close(); return d end
assert(read(tmp1) == read(tmp2), "the restored model differs from an untouched one")
os.remove(tmp1)
os.remove(tmp2)
local bad_snap = probe:snapshot()
probe:close()
fails_with("was closed before the snapshot", bad_snap.restore, bad_snap)
bad_snap:close() -- nothing to restore into: just freed
fails_with("unknown LoRA target 'gate'", m3.snapshot, m3, { "gate" })

print("test_device: all passed")
return 0
