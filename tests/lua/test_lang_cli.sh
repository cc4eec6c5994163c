#!/bin/sh
# Process-level tests of the language tasks in the harness (issue 5): `lorasc data fetch`
# from a mirror the test writes (a corrupt file rejected, unverified folders reported), and a
# tiny run of every language task end to end through `lorasc run` on small files in the
# original formats (tests/task_fixture.h), SQuAD and DROP included (unavailable in the
# mirror, so only ever run on test-written files); DSL errors write nothing.
# usage: test_lang_cli.sh LORASC WRITE_TASK_FIXTURE
set -u
LORASC=$(realpath "$1")
FIXTURE=$(realpath "$2")
. "$(dirname "$0")/cli_lib.sh"

# 1. lorasc data fetch --from a mirror written here.
mkdir -p mirror/toy mirror/plain
printf 'a,b\n1,2\n' > mirror/toy/train.csv
printf 'hello\n' > mirror/plain/notes.txt
H=$(sha256sum mirror/toy/train.csv | cut -d' ' -f1)
B=$(wc -c < mirror/toy/train.csv | tr -d ' ')
printf 'dataset: toy\nfiles (sha256  bytes  path):\n  %s  %s  train.csv\n' "$H" "$B" > mirror/toy/SOURCE.txt
printf 'dataset: plain (no file list)\n' > mirror/plain/SOURCE.txt
LORASC_DATA=$W/d1 "$LORASC" data fetch toy --from mirror > f1.txt 2>&1 || fail "data fetch toy: $(cat f1.txt)"
cmp -s mirror/toy/train.csv d1/toy/train.csv || fail "data fetch did not copy toy/train.csv"
grep -q "verified" f1.txt || fail "data fetch message: $(cat f1.txt)"
LORASC_DATA=$W/d1 "$LORASC" data fetch plain --from mirror > f2.txt 2>&1 || fail "data fetch plain: $(cat f2.txt)"
grep -q "UNVERIFIED" f2.txt || fail "an unverified folder was not reported: $(cat f2.txt)"
[ -e d1/plain/notes.txt ] || fail "unverified folder not copied"
printf 'a,b\n1,3\n' > mirror/toy/train.csv  # corrupt: the sha256 no longer matches
if LORASC_DATA=$W/d2 "$LORASC" data fetch toy --from mirror > f3.txt 2>&1; then fail "a corrupt file was accepted"; fi
grep -q "train.csv" f3.txt || fail "corrupt-file message names no file: $(cat f3.txt)"
grep -q "traceback" f3.txt && fail "data fetch printed a traceback"
[ ! -e d2/toy/train.csv ] || fail "the corrupt copy was kept"
if "$LORASC" data fetch sst2 > f4.txt 2>&1; then fail "online fetch succeeded"; fi
grep -q -- "--from" f4.txt || fail "online fetch message: $(cat f4.txt)"
"$LORASC" data --help | grep -q "usage: lorasc data fetch" || fail "data --help"

# 2. Every language task, tiny, end to end (test-written files, a random byte-level model).
"$FIXTURE" "$W/data" || { echo "cannot write the fixture"; exit 1; }
export LORASC_DATA=$W/data
cat > mk.lua <<'LUA'
local m = require("lorasc.core.model").new { dim = 16, hidden_dim = 32, n_layers = 1, n_heads = 2,
  vocab_size = 260, seq_len = 96, seed = 1 }
m:save(os.getenv("LORASC_DATA") .. "/tiny/model.lsc")
LUA
mkdir -p data/tiny
"$LORASC" lua mk.lua || fail "cannot write the tiny model"
cat > all.lua <<'LUA'
local m = llama { checkpoint = "tiny/model.lsc", tokenizer = "tok/tokenizer.bin" }
experiment "lang" {
  model = m,
  tasks = { "sst2", "rte", "cb", "boolq", "wsc", "wic", "multirc", "copa", "record", "squad", "drop", "gsm8k", "mmlu" },
  split = { train = 4, val = 2, test = 2 },
  train = { steps = 3, batch = 2, seq = 96, lr = 1e-3 },
  method = lora { rank = 2 },
  eval = { max_new = 4 },
  log_every = 1,
}
experiment "lang_eval" {
  model = m, tasks = { "bbh" }, split = { train = 1, val = 0, test = 2 }, train = { steps = 0 },
  method = lora {}, eval = { max_new = 4 },
}
report "lang" { metrics = { "test.score", "test.majority" } }
LUA
"$LORASC" run all.lua --db r/x.db > run.log 2>&1 || fail "language run: $(cat run.log)"
[ "$(q r/x.db "SELECT count(*) FROM runs WHERE status='done'")" = 14 ] || fail "runs: $(q r/x.db 'SELECT status, error FROM runs')"
for m in score f1 em majority n subset; do
  [ "$(q r/x.db "SELECT count(*) FROM evals WHERE split='test' AND metric='$m'")" = 14 ] || fail "test.$m not logged for every run"
done
for t in squad drop; do
  [ "$(q r/x.db "SELECT count(*) FROM runs WHERE status='done' AND config LIKE '%\"task\":\"$t\"%'")" = 1 ] || fail "$t did not run"
done
[ "$(q r/x.db "SELECT count(*) FROM metrics WHERE name='train.loss'")" -ge 39 ] || fail "train.loss not logged per step"
# an epoch is a pass by default (core/tasks/task.h), recorded in every run's config
[ "$(q r/x.db "SELECT count(*) FROM runs WHERE config LIKE '%\"sampling\":\"epoch\"%'")" = 14 ] || fail "train.sampling = epoch not in every config"
"$LORASC" report all.lua --db r/x.db > rep.md || fail "report"
grep -q "sst2 majority" rep.md || fail "report has no majority column: $(cat rep.md)"

# 3. DSL errors: message, non-zero exit, nothing written.
sed 's/"sst2", "rte"/"sst3", "rte"/' all.lua > bad1.lua
sed 's|"tiny/model.lsc", tokenizer = "tok/tokenizer.bin"|"tiny/model.lsc"|' all.lua > bad3.lua
sed 's/train = 4, val = 2/train = 0.8, val = 0.1/' all.lua > bad4.lua
mkdir -p nodata
sed 's/lr = 1e-3 }/lr = 1e-3, sampling = "epochs" }/' all.lua > bad8.lua
for case in "bad1.lua:unknown task 'sst3'" "bad3.lua:need a pretrained model with its tokenizer" \
            "bad4.lua:take example counts" \
            "bad8.lua:bad8.lua:6: unknown train.sampling 'epochs'; valid: epoch, replacement"; do
  f=${case%%:*}; msg=${case#*:}
  if "$LORASC" run "$f" --db bad/x.db > out.txt 2>&1; then fail "$f: exit status 0"; fi
  grep -qF "$msg" out.txt || fail "$f: expected '$msg', got: $(cat out.txt)"
  grep -q "traceback" out.txt && fail "$f: a user error printed a traceback"
done
grep -q "sst2, rte" out.txt || true
# a missing dataset (squad absent from this data directory): unavailable here + fetch command
rm -rf data/squad
if "$LORASC" run all.lua --db bad/x.db > out.txt 2>&1; then fail "missing squad: exit status 0"; fi
grep -q "task 'squad' is unavailable here" out.txt || fail "missing squad message: $(cat out.txt)"
grep -q "lorasc data fetch squad" out.txt || fail "missing squad: no fetch command: $(cat out.txt)"
# a missing checkpoint names the fetch command
sed 's|tiny/model.lsc|llama2c_stories260K/stories260K.bin|' all.lua | sed 's/"squad", //' > bad5.lua
if "$LORASC" run bad5.lua --db bad/x.db > out.txt 2>&1; then fail "missing checkpoint: exit status 0"; fi
grep -q "lorasc data fetch llama2c_stories260K" out.txt || fail "missing checkpoint message: $(cat out.txt)"
[ ! -e bad ] || fail "bad input wrote to the database directory"

# 4. Table 2: instruction tuning on alpaca (loss on the response), evaluated on mmlu and bbh;
#    eval.tasks is refused elsewhere.
cat > t2.lua <<'LUA'
experiment "t2" {
  model = llama { checkpoint = "tiny/model.lsc", tokenizer = "tok/tokenizer.bin" },
  tasks = { "alpaca" }, split = { train = 2, val = 1, test = 2 },
  train = { steps = 3, batch = 2, seq = 96, lr = 1e-3 }, method = lora { rank = 2 },
  eval = { tasks = { "mmlu", "bbh" }, max_new = 4 },
}
LUA
"$LORASC" run t2.lua --db t2/x.db > t2.log 2>&1 || fail "alpaca run: $(cat t2.log)"
for m in mmlu.score mmlu.majority bbh.score score; do
  [ "$(q t2/x.db "SELECT count(*) FROM evals WHERE split='test' AND metric='$m'")" = 1 ] || fail "alpaca: test.$m not logged: $(q t2/x.db 'SELECT split, metric FROM evals')"
done
[ "$(q t2/x.db "SELECT count(*) FROM metrics WHERE name='train.loss'")" -ge 1 ] || fail "alpaca: no training"
# the sampling of before epochs existed stays a named option
sed 's/"alpaca"/"sst2"/; s/lr = 1e-3 }/lr = 1e-3, sampling = "replacement" }/; /eval = /d' t2.lua > t3.lua
"$LORASC" run t3.lua --db t3/x.db > t3.log 2>&1 || fail "replacement sampling run: $(cat t3.log)"
[ "$(q t3/x.db "SELECT count(*) FROM runs WHERE status='done' AND config LIKE '%\"sampling\":\"replacement\"%'")" = 1 ] || fail "replacement run: $(q t3/x.db 'SELECT status, error, config FROM runs')"
sed 's/"alpaca"/"sst2"/' t2.lua > bad6.lua
if "$LORASC" run bad6.lua --db bad/x.db > out.txt 2>&1; then fail "eval.tasks on sst2: exit status 0"; fi
grep -q "eval.tasks is for instruction tuning on alpaca" out.txt || fail "eval.tasks message: $(cat out.txt)"
sed 's/"mmlu", "bbh"/"alpaca"/' t2.lua > bad7.lua
if "$LORASC" run bad7.lua --db bad/x.db > out.txt 2>&1; then fail "eval on alpaca: exit status 0"; fi
grep -q "is not a task to evaluate alpaca on" out.txt || fail "eval.tasks alpaca message: $(cat out.txt)"
[ ! -e bad ] || fail "bad input wrote to the database directory"

# 5. Hugging Face Llama directories load through llama{ checkpoint = dir } (format detected
#    from config.json): same shapes as the same weights in llama2.c layout.
HF=${LORASC_SOURCE_ROOT:-}/tests/golden/hf_tiny
if [ -n "${LORASC_SOURCE_ROOT:-}" ] && [ -d "$HF/hf" ]; then
  cat > hf.lua <<LUA
local model = require("lorasc.core.model")
local hf = model.load("$HF/hf", "hf")
local meta = model.load("$HF/meta.bin", "llama2c")
assert(hf:num_params() == meta:num_params(), "hf and llama2c parameter counts differ")
assert(hf:config().dim == meta:config().dim and hf:config().n_layers == meta:config().n_layers)
print("hf loads")
LUA
  "$LORASC" lua hf.lua > hf.log 2>&1 || fail "hf load: $(cat hf.log)"
fi

cli_done test_lang_cli
