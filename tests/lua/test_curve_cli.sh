#!/bin/sh
# Validation curves (eval.every = k, lua/lorasc/train.lua) with real `lorasc run` processes:
#  - points at steps k, 2k, ... (total // k of them per run), one val.<metric> row each, and
#    the point at the last step equal to the run's final val eval bit for bit (text, image,
#    and a language task when the mirror is in $LORASC_DATA);
#  - the curve's evaluations leave training untouched: every other metric and every eval equal
#    the same runs without eval.every; without it the hashes are tiny.lua's (pinned);
#  - resume: SIGKILL mid-run (text), and SIGTERM inside a point's evaluation (image: the step
#    is saved without its point, which the resumed run evaluates first), then resume: the
#    curve equals the uninterrupted run's;
#  - eval.every = 0, longer than the run, or with an empty validation split: one sentence.
# usage: test_curve_cli.sh LORASC SOURCE_ROOT
set -u
LORASC=$(realpath "$1")
SRC=$(realpath "$2")
. "$(dirname "$0")/cli_lib.sh"

# Everything a sweep produced but wall times: metrics, evals, statuses.
snapshot() {
  q "$1" "SELECT r.config_hash, m.name, m.step, m.value FROM metrics m JOIN runs r ON r.id = m.run_id
          WHERE m.name NOT LIKE '%seconds' ORDER BY 1, 2, 3, 4"
  q "$1" "SELECT r.config_hash, e.split, e.metric, e.value FROM evals e JOIN runs r ON r.id = e.run_id ORDER BY 1, 2, 3"
  q "$1" "SELECT config_hash, status FROM runs ORDER BY 1"
}
# The same, without the curve's rows and with the config hashes replaced by the seed and method.
training() {
  q "$1" "SELECT r.seed, json_extract(r.config, '$.method.name'), m.name, m.step, m.value FROM metrics m
          JOIN runs r ON r.id = m.run_id WHERE m.name NOT LIKE 'val.%' AND m.name NOT LIKE '%seconds'
          AND m.name NOT LIKE 'base.%' ORDER BY 1, 2, 3, 4"
  q "$1" "SELECT r.seed, json_extract(r.config, '$.method.name'), e.split, e.metric, e.value FROM evals e
          JOIN runs r ON r.id = e.run_id ORDER BY 1, 2, 3, 4"
}
wait_for() {
  i=0
  while [ $i -lt 300 ]; do
    if eval "$1"; then return 0; fi
    sleep 0.1; i=$((i + 1))
  done
  fail "timed out waiting for: $1"
  return 1
}
states() { ls "$1"/state/*.ckpt 2>/dev/null | wc -l; }

# check_points NAME DB K TOTAL: every done run has its val.score points at K, 2K, ..., TOTAL // K
# of them, one val.eval_seconds per point, and (when K divides TOTAL) the last equals its final
# val score and loss.
check_points() {
  name=$1 db=$2 k=$3 total=$4
  n=$((total / k))
  for id in $(q "$db" "SELECT id FROM runs WHERE status = 'done'"); do
    got=$(q "$db" "SELECT group_concat(step, ' ') FROM (SELECT step FROM metrics WHERE run_id = $id AND name = 'val.score' ORDER BY rowid)")
    want=$(seq -s ' ' "$k" "$k" "$total")
    [ "$got" = "$want" ] || fail "$name run $id: val.score at steps '$got', expected '$want'"
    [ "$(q "$db" "SELECT count(*) FROM metrics WHERE run_id = $id AND name = 'val.eval_seconds'")" = "$n" ] ||
      fail "$name run $id: not $n val.eval_seconds rows"
    if [ $((total % k)) = 0 ]; then
      # every val eval but the split's constants (a language task's majority, n, subset)
      for m in $(q "$db" "SELECT metric FROM evals WHERE run_id = $id AND split = 'val' AND metric NOT IN ('majority', 'n', 'subset')"); do
        last=$(q "$db" "SELECT value FROM metrics WHERE run_id = $id AND name = 'val.$m' AND step = $total")
        final=$(q "$db" "SELECT value FROM evals WHERE run_id = $id AND split = 'val' AND metric = '$m'")
        [ "$last" = "$final" ] || fail "$name run $id: the point at step $total (val.$m $last) is not the final val eval ($final)"
      done
      [ -n "$(q "$db" "SELECT value FROM evals WHERE run_id = $id AND split = 'val' AND metric = 'score'")" ] || fail "$name run $id: no final val score"
    fi
  done
  [ -n "$(q "$db" "SELECT id FROM runs WHERE status = 'done'")" ] || fail "$name: no run done"
}

# --- 1. a text task: points, counts, the last = the final eval; training untouched -----------
sed -e 's/steps = 8,/steps = 24,/' -e 's/eval = { max_windows = 4, batch = 4 }/eval = { max_windows = 4, batch = 4, every = 5 }/' \
  "$SRC/tests/lua/tiny.lua" > curve.lua
sed -e 's/steps = 8,/steps = 24,/' "$SRC/tests/lua/tiny.lua" > plain.lua
grep -q "every = 5" curve.lua || fail "curve.lua: tiny.lua changed, this test's sed no longer applies"
"$LORASC" run "$SRC/tests/lua/tiny.lua" --dry-run > h0.txt || fail "dry-run tiny.lua"
grep -q "$(sed -n 's/^  \([0-9a-f]\{16\}\).*/\1/p' h0.txt | head -1)" "$SRC/tests/lua/expected_hashes.txt" ||
  fail "tiny.lua's hashes are not the pinned ones"
"$LORASC" run curve.lua --dry-run > h1.txt || fail "dry-run curve.lua"
"$LORASC" run plain.lua --dry-run > h2.txt || fail "dry-run plain.lua"
cmp -s h1.txt h2.txt && fail "eval.every did not change the runs' hashes (a run with a curve is another run)"
# the base model, pretrained once and shared (a run that pretrains logs its pretraining)
"$LORASC" run "$SRC/tests/lua/tiny.lua" --db w/x.db > w.log 2>&1 || fail "cache warm-up: $(cat w.log)"
for d in p a b s; do mkdir -p $d; cp -r w/cache $d/; done
"$LORASC" run plain.lua --db p/x.db > p.log 2>&1 || fail "plain: $(cat p.log)"
"$LORASC" run curve.lua --db a/x.db > a.log 2>&1 || fail "curve: $(cat a.log)"
grep -q "validation curve: .* s per point, every 5 steps (4 points in this run" a.log || fail "the curve's cost is not shown: $(cat a.log)"
check_points text a/x.db 5 24
[ "$(q a/x.db "SELECT count(*) FROM metrics WHERE name = 'val.score'")" = 16 ] || fail "text: not 4 x 4 val.score rows"
training p/x.db > p.txt
training a/x.db > a.txt
[ -s p.txt ] && cmp -s p.txt a.txt || fail "the curve changed training: $(diff p.txt a.txt | head -5)"
# k dividing the run: the last point is the final evaluation
sed -e 's/every = 5/every = 6/' curve.lua > six.lua
"$LORASC" run six.lua --db s/x.db > s.log 2>&1 || fail "every = 6: $(cat s.log)"
check_points "every = 6" s/x.db 6 24

# --- 2. resume: SIGKILL mid-run (twice), then resume = never stopped -----------------------------
LORASC_TEST_STEP_DELAY=0.1 "$LORASC" run curve.lua --db b/x.db --checkpoint-every 0.2 > b1.log 2>&1 &
P=$!
wait_for '[ "$(states b)" -gt 0 ]'
sleep 0.75
kill -9 $P; wait $P 2>/dev/null
LORASC_TEST_STEP_DELAY=0.1 "$LORASC" run curve.lua --db b/x.db --checkpoint-every 0.2 > b2.log 2>&1 &
P=$!
wait_for 'grep -q "resumes at step" b2.log'
sleep 1.1
kill -9 $P; wait $P 2>/dev/null
"$LORASC" run curve.lua --db b/x.db > b3.log 2>&1 || fail "resume after SIGKILL: $(cat b3.log)"
grep -q "resumes at step [1-9]" b2.log || fail "the first resume did not pick up a state: $(cat b2.log)"
snapshot a/x.db > ref.txt
snapshot b/x.db > got.txt
cmp -s ref.txt got.txt || fail "SIGKILL: the resumed curve differs from the uninterrupted one: $(diff ref.txt got.txt | head -5)"

# --- 3. an image task: SIGTERM inside a point's evaluation, then resume -----------------------
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
   [ -e "${LORASC_DATA:-data}/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
  sed -e 's/steps = 8,/steps = 12,/' -e 's/eval = { batch = 50, corrupt_max = 50 }/eval = { batch = 50, corrupt_max = 50, every = 4 }/' \
    "$SRC/tests/lua/tiny_image.lua" > image.lua
  grep -q "every = 4" image.lua || fail "image.lua: tiny_image.lua changed, this test's sed no longer applies"
  "$LORASC" run image.lua --db iw/x.db > iw.log 2>&1 || fail "image warm-up: $(cat iw.log)"
  for d in ia ib; do mkdir -p $d; cp -r iw/cache $d/; done
  "$LORASC" run image.lua --db ia/x.db > ia.log 2>&1 || fail "image reference: $(cat ia.log)"
  check_points image ia/x.db 4 12
  # each point waits 1 s before evaluating: the signal lands there, and the evaluation stops at
  # its first batch; the finished step is saved without its point
  LORASC_TEST_CURVE_DELAY=1 "$LORASC" run image.lua --db ib/x.db --checkpoint-every 0 > ib1.log 2>&1 &
  P=$!
  wait_for 'grep -q "step 1/12" ib1.log'
  sleep 0.5
  kill -TERM $P; wait $P; rc=$?
  [ $rc = 143 ] || fail "image SIGTERM: exit status $rc, expected 143: $(tail -3 ib1.log)"
  q ib/x.db "SELECT error FROM runs WHERE status = 'interrupted'" | grep -q "after step 4 of 12, in its validation point" ||
    fail "image SIGTERM: not stopped in the point at step 4: $(q ib/x.db 'SELECT status, error FROM runs')"
  [ "$(q ib/x.db "SELECT count(*) FROM metrics WHERE name = 'val.score'")" = 0 ] || fail "image SIGTERM: a point was logged"
  "$LORASC" run image.lua --db ib/x.db > ib2.log 2>&1 || fail "image resume: $(cat ib2.log)"
  grep -q "resumes at step 4" ib2.log || fail "image: did not resume at step 4: $(cat ib2.log)"
  snapshot ia/x.db > ref.txt
  snapshot ib/x.db > got.txt
  cmp -s ref.txt got.txt || fail "image: the resumed curve differs from the uninterrupted one: $(diff ref.txt got.txt | head -5)"
else
  echo "Fashion-MNIST not installed: the image part is skipped"
fi

# --- 4. a language task (SST-2 on stories260K), when the mirror is there ------------------------
D=${LORASC_DATA:-data}
if [ -e "$D/llama2c_stories260K/stories260K.bin" ] && [ -e "$D/sst2" ]; then
  cat > lang.lua <<'LUA'
experiment "lang" {
  model = llama { checkpoint = "llama2c_stories260K/stories260K.bin", tokenizer = "llama2c_stories260K/tok512.bin" },
  tasks = { "sst2" },
  split = { train = 32, val = 16, test = 16 },
  train = { epochs = 2, batch = 8, seq = 64, lr = 3e-3 },
  method = lorasc { rank = 2 },
  eval = { every = 2 },
}
LUA
  "$LORASC" run lang.lua --db l/x.db > l.log 2>&1 || fail "language: $(cat l.log)"
  check_points language l/x.db 2 8
  for m in f1 em; do
    [ "$(q l/x.db "SELECT count(*) FROM metrics WHERE name = 'val.$m'")" = 4 ] || fail "language: not 4 val.$m points"
  done
  [ "$(q l/x.db "SELECT count(*) FROM metrics WHERE name IN ('val.majority', 'val.n')")" = 0 ] || fail "language: the split's constants were logged per point"
else
  echo "stories260K or SST-2 not in the data directory $D: the language part is skipped"
fi

# --- 5. bad values: one sentence each, at the line ------------------------------------------------
for bad in "every = 0|eval.every = 0 is invalid: must be > 0" "every = 25|eval.every = 25 is longer than the run (24 steps"; do
  v=${bad%%|*} msg=${bad#*|}
  sed -e "s/every = 5/$v/" curve.lua > bad.lua
  "$LORASC" run bad.lua --db bad/x.db > bad.txt 2>&1 && fail "$v accepted"
  grep -q "^lorasc: bad.lua:9: $msg" bad.txt || fail "$v: $(cat bad.txt)"
  grep -q traceback bad.txt && fail "$v: a traceback"
done
[ -e bad/x.db ] && fail "a bad eval.every wrote a database"

cli_done curve_cli
