#!/bin/sh
# Long runs (lua/lorasc/resume.lua), with real `lorasc run` processes and real signals:
#  - SIGKILL mid-run, twice, then resume: the sweep ends bit for bit as one never stopped
#    (every metric but wall times, every eval, the saved models' sha256), for a Llama text
#    task, a language task (SST-2 on stories260K, epoch sampling; skipped without the mirror
#    in $LORASC_DATA) and a ViT image task (skipped without Fashion-MNIST);
#  - SIGTERM and SIGUSR1 end the current step, save the state, mark the run interrupted and
#    exit 128 + the signal; Ctrl-C likewise, and a second Ctrl-C stops at once;
#  - a corrupt state is refused with a message and the run starts again from step 0 (same
#    result); a state that cannot be written is reported and training goes on;
#    --checkpoint-every is not part of a run's identity; bad values are refused.
# usage: test_resume_cli.sh LORASC SOURCE_ROOT
set -u
LORASC=$(realpath "$1")
SRC=$(realpath "$2")
. "$(dirname "$0")/cli_lib.sh"

# Everything a sweep produced but wall times and paths: metrics, evals, saved models.
snapshot() {
  q "$1" "SELECT r.config_hash, m.name, m.step, m.value FROM metrics m JOIN runs r ON r.id = m.run_id
          WHERE m.name NOT LIKE '%seconds' ORDER BY 1, 2, 3, 4"
  q "$1" "SELECT r.config_hash, e.split, e.metric, e.value FROM evals e JOIN runs r ON r.id = e.run_id ORDER BY 1, 2, 3"
  q "$1" "SELECT r.config_hash, a.kind, a.sha256, a.bytes FROM artifacts a JOIN runs r ON r.id = a.run_id ORDER BY 1"
  q "$1" "SELECT config_hash, status FROM runs ORDER BY 1"
}

# wait_for COND: polls the shell condition COND for up to 30 s.
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
running() { [ -e "$1/x.db" ] && [ "$(q "$1/x.db" "SELECT count(*) FROM runs WHERE status = 'running'" 2>/dev/null)" = 1 ]; }

# check_resumed NAME REF DIR LOG...: the sweep in DIR equals REF's, and some log says it resumed.
check_same() {
  snapshot "$2/x.db" > ref.txt
  snapshot "$3/x.db" > got.txt
  [ -s ref.txt ] || fail "$1: the reference sweep logged nothing"
  cmp -s ref.txt got.txt || fail "$1: the resumed sweep differs from the uninterrupted one: $(diff ref.txt got.txt | head -5)"
  [ "$(states "$3")" = 0 ] || fail "$1: states left after every run was done: $(ls "$3/state")"
}

# --- the experiments: tiny.lua and tiny_image.lua, longer, saving their models -----------------
sed -e 's/steps = 8,/steps = 24,/' -e 's/^}/  save = true,\n}/' "$SRC/tests/lua/tiny.lua" > text.lua
grep -q "steps = 24" text.lua || fail "text.lua: tiny.lua changed, this test's sed no longer applies"
export LORASC_TEST_STEP_DELAY=0.1

# --checkpoint-every is not part of a run's identity; bad values are refused
"$LORASC" run text.lua --dry-run > h1.txt || fail "dry-run"
"$LORASC" run text.lua --dry-run --checkpoint-every 5 > h2.txt || fail "dry-run --checkpoint-every"
cmp -s h1.txt h2.txt || fail "--checkpoint-every changed the runs' hashes"
"$LORASC" run text.lua --db bad/x.db --checkpoint-every -1 > out.txt 2>&1 && fail "--checkpoint-every -1 accepted"
grep -q "checkpoint-every must be a number of seconds >= 0" out.txt || fail "--checkpoint-every -1: $(cat out.txt)"

# the base model, pretrained once and shared (a run that pretrains logs its pretraining)
LORASC_TEST_STEP_DELAY= "$LORASC" run text.lua --db w/x.db > w.log 2>&1 || fail "cache warm-up: $(cat w.log)"
for d in a b c d e; do mkdir -p $d; cp -r w/cache $d/; done
LORASC_TEST_STEP_DELAY= "$LORASC" run text.lua --db a/x.db > a.log 2>&1 || fail "reference: $(cat a.log)"
[ "$(states a)" = 0 ] || fail "a sweep of short runs saved states ($(ls a/state))"

# --- 1. SIGKILL twice, then resume -------------------------------------------------------------
"$LORASC" run text.lua --db b/x.db --checkpoint-every 0.2 > b1.log 2>&1 &
P=$!
wait_for '[ "$(states b)" -gt 0 ]'
sleep 0.35
kill -9 $P; wait $P 2>/dev/null
running b || fail "no running row after SIGKILL: $(cat b1.log)"
"$LORASC" run text.lua --db b/x.db --checkpoint-every 0.2 > b2.log 2>&1 &
P=$!
wait_for 'grep -q "resumes at step" b2.log'
sleep 1.2
kill -9 $P; wait $P 2>/dev/null
"$LORASC" run text.lua --db b/x.db --checkpoint-every 0.2 > b3.log 2>&1 || fail "resume after SIGKILL: $(cat b3.log)"
grep -q "resumes at step [1-9]" b2.log || fail "the first resume did not pick up a state: $(cat b2.log)"
grep -q "resumes at step [1-9]" b3.log || fail "the second resume did not pick up a state: $(cat b3.log)"
check_same "SIGKILL" a b

# --- 2. SIGTERM: the step ends, the state is saved, the run is interrupted, exit 143 -----------
"$LORASC" run text.lua --db c/x.db --checkpoint-every 0 > c1.log 2>&1 &
P=$!
wait_for 'running c'
sleep 0.8
kill -TERM $P; wait $P; rc=$?
[ $rc = 143 ] || fail "SIGTERM: exit status $rc, expected 143: $(cat c1.log)"
[ "$(q c/x.db "SELECT count(*) FROM runs WHERE status = 'interrupted'")" = 1 ] || fail "SIGTERM: $(q c/x.db 'SELECT id, status FROM runs')"
q c/x.db "SELECT error FROM runs WHERE status = 'interrupted'" | grep -q "stopped by SIGTERM after step [0-9]* of 24" || \
  fail "SIGTERM: the interrupted run's message: $(q c/x.db "SELECT error FROM runs")"
[ "$(states c)" = 1 ] || fail "SIGTERM: no state saved"
grep -q "stopped by SIGTERM; .lorasc run text.lua. resumes" c1.log || fail "SIGTERM: the last line: $(tail -2 c1.log)"
"$LORASC" status text.lua --db c/x.db | grep -q "1 interrupted" || fail "status does not count the interrupted run"
# a corrupt state is refused, and the run starts again from step 0
st=$(ls c/state/*.ckpt)
size=$(wc -c < "$st")
printf "X" | dd of="$st" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null  # inside a block
"$LORASC" run text.lua --db c/x.db > c2.log 2>&1 || fail "resume after SIGTERM: $(cat c2.log)"
grep -q "cannot resume from .*checksum.*: it starts again from step 0" c2.log || fail "corrupt state: $(grep -i resume c2.log)"
check_same "SIGTERM, corrupt state" a c

# a state that cannot be written (here: "state" is a file) is reported; the sweep goes on
mkdir -p f; cp -r w/cache f/; : > f/state
"$LORASC" run text.lua --db f/x.db --checkpoint-every 0.2 > f.log 2>&1 || fail "unwritable state: $(cat f.log)"
grep -q "cannot save its state at step" f.log || fail "an unwritable state was not reported: $(cat f.log)"
[ "$(q f/x.db "SELECT count(*) FROM runs WHERE status = 'done'")" = 4 ] || fail "unwritable state: runs not done"

# --- 3. Ctrl-C: the same, exit 130; then resume from the state ---------------------------------
"$LORASC" run text.lua --db d/x.db --checkpoint-every 0 > d1.log 2>&1 &
P=$!
wait_for 'running d'
sleep 0.5
kill -INT $P; wait $P; rc=$?
[ $rc = 130 ] || fail "SIGINT: exit status $rc, expected 130"
q d/x.db "SELECT error FROM runs WHERE status = 'interrupted'" | grep -q "stopped by SIGINT" || fail "SIGINT: $(q d/x.db 'SELECT status, error FROM runs')"
"$LORASC" run text.lua --db d/x.db > d2.log 2>&1 || fail "resume after SIGINT: $(cat d2.log)"
grep -q "resumes at step [1-9]" d2.log || fail "SIGINT: no resume: $(cat d2.log)"
check_same "SIGINT" a d
# a second Ctrl-C stops at once: the run stays 'running' (its process gone), no state is written
LORASC_TEST_STEP_DELAY=3 "$LORASC" run text.lua --db e/x.db --checkpoint-every 0 > e1.log 2>&1 &
P=$!
wait_for 'running e'
sleep 0.3
kill -INT $P; sleep 0.3; kill -INT $P; wait $P
[ "$(q e/x.db "SELECT status FROM runs WHERE attempts > 0")" = running ] || fail "a second Ctrl-C did not stop at once: $(q e/x.db 'SELECT status, error FROM runs')"
[ "$(states e)" = 0 ] || fail "a second Ctrl-C still saved a state"

# --- 4. a ViT image task: SIGKILL, then SIGUSR1 (sbatch --signal), then resume ----------------
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
   [ -e "${LORASC_DATA:-data}/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
  sed -e 's/steps = 8,/steps = 40,/' -e 's/^}/  save = true,\n}/' "$SRC/tests/lua/tiny_image.lua" > image.lua
  grep -q "steps = 40" image.lua || fail "image.lua: tiny_image.lua changed, this test's sed no longer applies"
  LORASC_TEST_STEP_DELAY= "$LORASC" run image.lua --db iw/x.db > iw.log 2>&1 || fail "image warm-up: $(cat iw.log)"
  for d in ia ib; do mkdir -p $d; cp -r iw/cache $d/; done
  LORASC_TEST_STEP_DELAY= "$LORASC" run image.lua --db ia/x.db > ia.log 2>&1 || fail "image reference: $(cat ia.log)"
  "$LORASC" run image.lua --db ib/x.db --checkpoint-every 0.3 > ib1.log 2>&1 &
  P=$!
  wait_for '[ "$(states ib)" -gt 0 ]'
  sleep 0.5
  kill -9 $P; wait $P 2>/dev/null
  "$LORASC" run image.lua --db ib/x.db --checkpoint-every 0 > ib2.log 2>&1 &
  P=$!
  wait_for 'grep -q "resumes at step" ib2.log'
  sleep 1.5
  kill -USR1 $P; wait $P; rc=$?
  [ $rc = 138 ] || fail "SIGUSR1: exit status $rc, expected 138: $(tail -3 ib2.log)"
  q ib/x.db "SELECT error FROM runs WHERE status = 'interrupted'" | grep -q "stopped by SIGUSR1" || fail "SIGUSR1: $(q ib/x.db 'SELECT status, error FROM runs')"
  "$LORASC" run image.lua --db ib/x.db > ib3.log 2>&1 || fail "image resume: $(cat ib3.log)"
  grep -q "resumes at step [1-9]" ib2.log || fail "image: the first resume did not pick up a state: $(cat ib2.log)"
  grep -q "resumes at step [1-9]" ib3.log || fail "image: the second resume did not pick up a state: $(cat ib3.log)"
  check_same "ViT" ia ib
else
  echo "Fashion-MNIST not installed: the ViT part is skipped"
fi

# --- 5. a language task (MeZO-sampled SST-2, stories260K, epoch sampler): SIGKILL, resume ------
D=${LORASC_DATA:-data}
if [ -e "$D/llama2c_stories260K/stories260K.bin" ] && [ -e "$D/sst2" ]; then
  cat > lang.lua <<'LUA'
experiment "lang" {
  model = llama { checkpoint = "llama2c_stories260K/stories260K.bin", tokenizer = "llama2c_stories260K/tok512.bin" },
  tasks = { "sst2" },
  split = { train = 60, val = 20, test = 20 },
  train = { epochs = 3, batch = 8, seq = 64, lr = 3e-3 },
  method = lorasc { rank = 2, experts = 2 },
  seeds = { 1, 2 },
  save = true,
}
LUA
  LORASC_TEST_STEP_DELAY= "$LORASC" run lang.lua --db la/x.db > la.log 2>&1 || fail "language reference: $(cat la.log)"
  "$LORASC" run lang.lua --db lb/x.db --checkpoint-every 0.2 > lb1.log 2>&1 &
  P=$!
  wait_for '[ "$(states lb)" -gt 0 ]'
  sleep 1.0  # past the boundary after 12 of 24 steps (8 steps per epoch, the last batch short)
  kill -9 $P; wait $P 2>/dev/null
  "$LORASC" run lang.lua --db lb/x.db > lb2.log 2>&1 || fail "language resume: $(cat lb2.log)"
  grep -q "resumes at step [1-9]" lb2.log || fail "language: no resume: $(cat lb2.log)"
  check_same "language" la lb
else
  echo "stories260K or SST-2 not in the data directory $D: the language part is skipped"
fi

cli_done resume_cli
