#!/bin/sh
# Process-level tests of `lorasc` on image tasks (issue 6): a tiny ViT experiment run end to
# end (pretraining cached, LoRA and LoRASC, clean and corrupted evals in the database, the
# multi-metric report), and DSL errors for vit{} typos and bad image tasks with file:line.
# Needs Fashion-MNIST (Debian's dataset-fashion-mnist or $LORASC_DATA/fashion-mnist): skipped
# (77) without it.
# usage: test_image_cli.sh LORASC SOURCE_ROOT
set -u
LORASC=$(realpath "$1")
SRC=$(realpath "$2")
TINY=$SRC/tests/lua/tiny_image.lua
. "$(dirname "$0")/cli_lib.sh"
need_fashion_mnist

# 1. DSL errors: message with file:line, non-zero exit, nothing written.
sed 's/mlp_dim = 32/mlp_dimm = 32/' "$TINY" > bad1.lua
sed 's/"fashion-mnist:5-9"/"fashion-mnist:5-12"/' "$TINY" > bad2.lua
sed 's/"fashion-mnist:5-9"/"fashion-mnist:5-x"/' "$TINY" > bad3.lua
sed 's/"fashion-mnist:5-9"/"text:apache"/' "$TINY" > bad4.lua
sed 's/crop_pad = 1/crop_pad = 1, seq = 4/' "$TINY" > bad5.lua
sed 's/task = "fashion-mnist:0-4", steps/tsak = "fashion-mnist:0-4", steps/' "$TINY" > bad6.lua
sed 's/"fashion-mnist:5-9"/"mnist"/' "$TINY" > bad7.lua
# a task is reported at its own line (tasks = ..., line 7), not the experiment's
for case in "bad1.lua:5:unknown key 'mlp_dimm' in vit{}" "bad2.lua:7:class 10 is not in fashion-mnist" \
            "bad3.lua:7:'5-x' is not a class or a range" "bad4.lua:7:not an image task" \
            "bad5.lua:9:unknown key 'seq' in train" "bad6.lua:6:unknown key 'tsak' in vit{ pretrain = {} }" \
            "bad7.lua:7:lorasc data fetch"; do
  f=${case%%:*}; rest=${case#*:}; line=${rest%%:*}; msg=${rest#*:}
  if LORASC_DATA=$W/nodata "$LORASC" run "$f" --db bad/x.db > out.txt 2>&1; then fail "$f: exit status 0"; fi
  grep -qF "$msg" out.txt || fail "$f: expected '$msg', got: $(cat out.txt)"
  grep -qF "$f:$line:" out.txt || fail "$f: expected the location $f:$line, got: $(cat out.txt)"
  grep -q "traceback" out.txt && fail "$f: a user error printed a traceback"
done
[ ! -e bad ] || fail "bad input wrote to the database directory"

# 2. The tiny experiment end to end, twice (the second run skips everything).
"$LORASC" run "$TINY" --dry-run > dry.txt || fail "dry-run"
[ "$(grep -c 'seed' dry.txt)" = 2 ] || fail "expected 2 runs: $(cat dry.txt)"
"$LORASC" run "$TINY" --db r/x.db > r1.log 2>&1 || fail "run: $(cat r1.log)"
grep -q "pretraining the base ViT" r1.log || fail "no pretraining message: $(cat r1.log)"
[ "$(ls r/cache/vit-*.ckpt | wc -l)" = 1 ] || fail "the pretrained ViT is not cached: $(ls -R r)"
[ "$(q r/x.db "SELECT count(*) FROM runs WHERE status='done'")" = 2 ] || fail "runs: $(q r/x.db 'SELECT status, error FROM runs')"
[ "$(q r/x.db "SELECT count(*) FROM evals WHERE split='test' AND metric LIKE 'corrupt.%'")" = 22 ] || fail "corrupt evals: $(q r/x.db "SELECT metric FROM evals")"
for m in score corrupt.mean corrupt.gaussian_noise corrupt.jpeg corrupt.elastic; do
  v=$(q r/x.db "SELECT value FROM evals WHERE split='test' AND metric='$m' LIMIT 1")
  awk -v v="$v" 'BEGIN { exit !(v >= 0 && v <= 1 && v != "") }' || fail "test $m = '$v' is not an accuracy"
done
q r/x.db "SELECT count(*) FROM metrics WHERE name='expert.end'" | grep -qv '^0$' || fail "no expert boundaries logged"
"$LORASC" run "$TINY" --db r/x.db > r2.log 2>&1 || fail "second run"
grep -q "0 run(s) ran, 0 failed, 2 skipped" r2.log || fail "done runs were not skipped: $(tail -1 r2.log)"
grep -q "pretraining" r2.log && fail "the cached ViT was pretrained again"
"$LORASC" report "$TINY" --db r/x.db > rep.md || fail "report"
grep -qF 'fashion-mnist:5-9 score | fashion-mnist:5-9 corrupt.mean |' rep.md || fail "report columns: $(cat rep.md)"
grep -q '| lorasc | ' rep.md || fail "report rows: $(cat rep.md)"
sed 's/metrics = { "test.score", "test.corrupt.mean" }/metric = "test.corrupt.elastic"/' "$TINY" > one.lua
"$LORASC" report one.lua --db r/x.db | grep -q 'test.corrupt.elastic' || fail "single corruption report"
"$LORASC" show 1 --db r/x.db | grep -q 'corrupt.mean' || fail "show"

cli_done test_image_cli
