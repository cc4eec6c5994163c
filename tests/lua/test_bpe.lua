-- The tokenizer binding on SmolLM2-135M-Instruct's byte-level BPE (issue 13): encode, decode
-- and chat against ids and text Hugging Face gives (tests/golden/bpe_smollm2.json). Skips (77)
-- without $LORASC_DATA/smollm2_135m.
local sys = require "lorasc.core.sys"
local tasks = require "lorasc.core.tasks"

local rel = "smollm2_135m/SmolLM2-135M-Instruct.Q4_1.gguf"
local path = sys.datadir_path(rel)
local f = io.open(path, "rb")
if not f then
  print("SKIP: " .. path .. " is missing; run `lorasc data fetch smollm2-135m --from DIR`")
  os.exit(77)
end
f:close()

local checks = require("checks").new("test_bpe")
local check = checks.check
local function same(a, b) return table.concat(a, " ") == table.concat(b, " ") end

local tok = tasks.tokenizer(path)
check(tostring(tok) == "tokenizer (byte-level BPE, 49152 pieces)", "tostring: " .. tostring(tok))
-- ids from tests/golden/bpe_smollm2.json ("The capital of France is", "I'm", "<|im_start|>user\nHi<|im_end|>")
local ids = tok:encode("The capital of France is")
check(same(ids, {504, 3575, 282, 4649, 314}), "encode: " .. table.concat(ids, " "))
check(same(tok:encode("The capital of France is", true, true), {504, 3575, 282, 4649, 314, 2}),
      "no BOS for this model, EOS <|im_end|> on request")
check(same(tok:encode("<|im_start|>user\nHi<|im_end|>"), {1, 4093, 198, 26843, 2}), "special tokens in text")
check(tok:decode(ids) == "The capital of France is", "decode")
check(tok:decode({1, 4093, 198, 26843, 2}) == "user\nHi", "decode skips special tokens")
local text = tok:chat({ { role = "user", content = "2+2?" } }, true)
check(text == "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
  .. "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n", "chat: " .. text)
local ok, err = pcall(tok.chat, tok, { { role = "user" } })
check(not ok and tostring(err):find("has no content", 1, true), "chat without content: " .. tostring(err))
tok:close()
return checks.finish()
