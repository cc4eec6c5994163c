#!/bin/sh
# Process-level tests of issue 16's bad input and divergence: a read-only database is still
# reported, shown and merged from (and `run` says it is read-only); user errors print one
# sentence without a traceback; failed runs are not "skipped" and --rerun-failed is named; a
# configuration two experiments name is trained once; the ETA ignores the one-off pretraining
# and covers every experiment of the file; a diverged pretraining is never cached; a diverged
# fine-tuning run is failed with its step and counted per cell; an empty validation split is
# "—", not nan; an empty tokenizer file is one sentence before any run.
# usage: test_badinput_cli.sh LORASC SOURCE_ROOT
set -u
LORASC=$(realpath "$1")
SRC=$(realpath "$2")
TINY=$SRC/tests/lua/tiny.lua
. "$(dirname "$0")/cli_lib.sh"

no_traceback() { grep -q "traceback" "$1" && fail "$2: a user error printed a traceback: $(cat "$1")"; }

# 1. A bounded experiment file: `while true do end` ends with its line, nothing is written.
printf 'experiment "x" {}\nwhile true do end\n' > loop.lua
"$LORASC" run loop.lua --db loop/x.db > loop.txt 2>&1 && fail "an endless experiment file gave exit status 0"
grep -q "loop.lua:2: the experiment file ran more than 200000000 Lua instructions" loop.txt || fail "loop message: $(cat loop.txt)"
no_traceback loop.txt "loop"
[ ! -e loop ] || fail "an endless experiment file wrote to the database directory"

# 2. A store error is one sentence: no harness path before it, no traceback.
echo "not a database" > notadb.txt
"$LORASC" run "$TINY" --db notadb.txt > nd.txt 2>&1 && fail "a text file as --db was accepted"
grep -q "^lorasc: notadb.txt is not an SQLite database" nd.txt || fail "store error: $(cat nd.txt)"
no_traceback nd.txt "store error"

# 3. Failed runs are counted as failed, not skipped, and --rerun-failed is named: a grid over a
# good base and a corrupt checkpoint (present, so validation passes).
head -c 300 /dev/urandom > junk.ckpt
sed 's|model = llama {|model = grid { llama { checkpoint = "'"$W"'/junk.ckpt" }, llama {|; s|batch = 2 } },|batch = 2 } } },|' "$TINY" > failing.lua
"$LORASC" run failing.lua --db f/x.db > f1.log 2>&1 && fail "failing runs gave exit status 0"
"$LORASC" run failing.lua --db f/x.db > f2.log 2>&1 && fail "a rerun with failed runs gave exit status 0"
grep -q "0 run(s) ran, 0 failed, 4 skipped (done already or held by another process); 4 failed before and not run again: \`lorasc run failing.lua --rerun-failed\` runs them" f2.log || \
  fail "failed runs counted as skipped: $(tail -1 f2.log)"
"$LORASC" status failing.lua --db f/x.db > fst.txt || fail "status"
grep -q "4 failed" fst.txt && grep -q -- "--rerun-failed" fst.txt || fail "status names --rerun-failed: $(cat fst.txt)"
"$LORASC" report failing.lua --db f/x.db > frep.md || fail "report with failed runs"
grep -q "(2; 2 failed)" frep.md || fail "report counts failed runs per cell: $(cat frep.md)"

# 4. A run's result is found by its hash whatever experiment asked for it: the same
# configuration under another experiment name is not trained again.
"$LORASC" run "$TINY" --db h/x.db > h1.log 2>&1 || fail "tiny: $(tail -3 h1.log)"
sed 's/experiment "tiny"/experiment "again"/' "$TINY" > again.lua
"$LORASC" run again.lua --db h/x.db > h2.log 2>&1 || fail "again: $(tail -3 h2.log)"
grep -q "0 run(s) ran, 0 failed, 4 skipped (done already or held by another process; 4 done in another experiment of the database)" h2.log || \
  fail "the same configuration was trained twice: $(tail -1 h2.log)"
[ "$(q h/x.db "SELECT count(*) FROM runs")" = 4 ] || fail "runs stored twice: $(q h/x.db 'SELECT experiment_id, status FROM runs')"
"$LORASC" status again.lua --db h/x.db | grep -q "4 done" || fail "status of the second experiment"
"$LORASC" report again.lua --db h/x.db | grep -q "| lora | .* (2) \[" || fail "report of the second experiment: $("$LORASC" report again.lua --db h/x.db)"

# 5. A read-only database (a finished sweep on a read-only share) is reported, shown, listed and
# merged from; `run` says it is read-only. As root, permissions do not bind: run as nobody.
mkdir ro && cp h/x.db ro/x.db && chmod 755 "$W" && chmod -R a+rX ro && chmod a-w ro/x.db ro
AS=""
if [ "$(id -u)" = 0 ]; then
  if command -v setpriv >/dev/null && setpriv --reuid=nobody --regid=nogroup --clear-groups "$LORASC" --version >/dev/null 2>&1; then
    AS="setpriv --reuid=nobody --regid=nogroup --clear-groups"
  else
    AS=skip
  fi
fi
if [ "$AS" = skip ]; then
  echo "read-only database: skipped (root, and nobody cannot run $LORASC)"
else
  mkdir out && chmod 777 out
  $AS "$LORASC" report "$TINY" --db ro/x.db > ro1.txt 2>&1 || fail "report of a read-only database: $(cat ro1.txt)"
  grep -q "| lora | " ro1.txt || fail "read-only report: $(cat ro1.txt)"
  $AS "$LORASC" status "$TINY" --db ro/x.db > ro2.txt 2>&1 || fail "status of a read-only database: $(cat ro2.txt)"
  $AS "$LORASC" show 1 --db ro/x.db > ro3.txt 2>&1 || fail "show of a read-only database: $(cat ro3.txt)"
  $AS "$LORASC" merge out/m.db ro/x.db > ro4.txt 2>&1 || fail "merge from a read-only database: $(cat ro4.txt)"
  [ "$(q out/m.db "SELECT count(*) FROM runs WHERE status='done'")" = 4 ] || fail "merged from read-only: $(cat ro4.txt)"
  $AS "$LORASC" run "$TINY" --db ro/x.db > ro5.txt 2>&1 && fail "run into a read-only database succeeded"
  grep -q "Cannot write the run database ro/x.db: the file is read-only" ro5.txt || fail "read-only run message: $(cat ro5.txt)"
  no_traceback ro5.txt "read-only run"
  [ ! -e ro/x.db-wal ] && [ ! -e ro/x.db-shm ] || fail "reading a read-only database wrote beside it"
fi

# 6. ETA: the one-off pretraining is not a step (here it takes seconds, a step milliseconds),
# and the sweep counts every experiment of the file.
{ sed 's/steps = 4, batch = 2 } }/steps = 4000, batch = 2 } }/' "$TINY"
  sed 's/experiment "tiny"/experiment "second"/; s/steps = 4, batch = 2 } }/steps = 4000, batch = 2 } }/; s/steps = 8,/steps = 40,/' "$TINY"; } > eta.lua
"$LORASC" run eta.lua --db e/x.db > eta.log 2>&1 || fail "eta run: $(tail -3 eta.log)"
first=$(grep -m1 "step 1/8" eta.log)
echo "$first" | grep -q "^\[1/8\]" || fail "the sweep does not count both experiments' runs: $first"
eta=$(echo "$first" | sed -n 's/.*sweep ETA \([^)]*\)).*/\1/p')
case $eta in *h*|*m*|"") fail "first sweep ETA '$eta' counts the pretraining: $first" ;; esac
[ "${eta%s}" -le 5 ] 2>/dev/null || fail "first sweep ETA $eta: more than the steps left take: $first"

# 7. A base model that diverged in pretraining is never cached; its runs fail with the step.
sed 's/pretrain = { corpus = "text:gpl3", steps = 4, batch = 2 }/pretrain = { corpus = "text:gpl3", steps = 30, batch = 2, lr = 1e3, schedule = "constant" }/' "$TINY" > pdiv.lua
"$LORASC" run pdiv.lua --db p/x.db > p.log 2>&1 && fail "a diverged base gave exit status 0"
[ "$(q p/x.db "SELECT count(*) FROM runs WHERE status='failed'")" = 4 ] || fail "runs on a diverged base: $(q p/x.db 'SELECT status, error FROM runs')"
q p/x.db "SELECT error FROM runs LIMIT 1" | grep -q "the base model diverged in pretraining at step 10" || fail "pretraining divergence message: $(q p/x.db 'SELECT error FROM runs LIMIT 1')"
[ "$(grep -c "pretraining the base model" p.log)" = 1 ] || fail "a diverged base was pretrained again by the same process"
[ -z "$(ls p/cache 2>/dev/null | grep -v "^file_hashes.*\.tsv$")" ] || fail "a diverged base was cached: $(ls p/cache)" # the hash cache may be there
sed 's/lr = 1e3, schedule = "constant"/lr = 1e3, schedule = "constant", diverge = false/' pdiv.lua > pkeep.lua
"$LORASC" run pkeep.lua --db pk/x.db > pk.log 2>&1 || fail "pretrain.diverge = false: $(tail -3 pk.log)"

# 8. A diverged fine-tuning run is failed with its step and reason, and reported per cell:
# a ViT (its head is trained: the loss is not bounded) at lr 10 without clipping.
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || [ -e "${LORASC_DATA:-data}/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
  sed 's/lr = 3e-3, crop_pad = 1/lr = grid { 3e-3, 10 }, crop_pad = 1, schedule = "constant", grad_clip = 0/; s/steps = 8, batch = 16/steps = 30, batch = 16/; s/method = { lora { rank = 2 }, lorasc { rank = 2, experts = 2 } }/method = lora { rank = 2 }/; s/corrupt_max = 50/corrupt = false/; s/metrics = { "test.score", "test.corrupt.mean" }/metric = "test.score"/' \
    "$SRC/tests/lua/tiny_image.lua" > vdiv.lua
  "$LORASC" run vdiv.lua --db v/x.db > v.log 2>&1 && fail "a diverged run gave exit status 0"
  [ "$(q v/x.db "SELECT count(*) FROM runs WHERE status='done'")" = 1 ] || fail "the stable run: $(q v/x.db 'SELECT status, error FROM runs')"
  err=$(q v/x.db "SELECT error FROM runs WHERE status='failed'")
  echo "$err" | grep -q "^diverged at step 10: the mean training loss of steps 1-10" || fail "divergence message: $err"
  [ "$(q v/x.db "SELECT count(*) FROM evals e JOIN runs r ON r.id = e.run_id WHERE r.status='failed'")" = 0 ] || fail "a diverged run was scored"
  [ "$(q v/x.db "SELECT value FROM metrics WHERE name='train.diverged_step'")" = 10.0 ] || fail "train.diverged_step: $(q v/x.db "SELECT * FROM metrics WHERE name='train.diverged_step'")"
  "$LORASC" report vdiv.lua --db v/x.db > vrep.md || fail "report"
  grep -q "(1; 1 failed)" vrep.md || fail "report counts the diverged run: $(cat vrep.md)"
else
  echo "diverged fine-tuning: skipped (Fashion-MNIST not installed: apt-get install dataset-fashion-mnist)"
fi

# 9. An empty validation split is shown as such, not as nan (language tasks allow val = 0).
D=${LORASC_DATA:-data}
if [ -e "$D/llama2c_stories260K/stories260K.bin" ] && [ -e "$D/sst2/train.tsv" ]; then
  cat > noval.lua <<'EOF'
experiment "noval" {
  model = llama { checkpoint = "llama2c_stories260K/stories260K.bin", tokenizer = "llama2c_stories260K/tok512.bin" },
  tasks = { "sst2" },
  split = { train = 8, val = 0, test = 8 },
  train = { steps = 2, batch = 2 },
  method = lora { rank = 2 },
}
EOF
  "$LORASC" run noval.lua --db n/x.db > n.log 2>&1 || fail "val = 0: $(tail -3 n.log)"
  grep -q "val — (empty split) test " n.log || fail "empty val split: $(grep done n.log)"
  grep -qi "nan" n.log && fail "nan printed: $(grep -i nan n.log)"
  # an empty tokenizer.json: one sentence before any run (it was "too short to be a llama2.c
  # tokenizer", and every run failed with it)
  : > empty.json
  sed 's|tokenizer = "llama2c_stories260K/tok512.bin"|tokenizer = "'"$W"'/empty.json"|' noval.lua > emptytok.lua
  "$LORASC" run emptytok.lua --db et/x.db > et.log 2>&1 && fail "an empty tokenizer was accepted"
  grep -q "emptytok.lua:2: .*empty.json is empty: a tokenizer is a tokenizer.json, a GGUF file or a llama2.c tokenizer.bin" et.log || fail "empty tokenizer: $(cat et.log)"
  [ ! -e et ] || fail "an empty tokenizer wrote to the database directory"
else
  echo "empty validation split: skipped (stories260K or SST-2 not in $D)"
fi

cli_done test_badinput_cli
