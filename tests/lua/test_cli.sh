#!/bin/sh
# Process-level tests of `lorasc`: hashes stable across processes, bad input writes nothing,
# SIGKILL mid-run then resume, two processes on one database, merge, report, options.
# usage: test_cli.sh LORASC SOURCE_ROOT
set -u
LORASC=$(realpath "$1")
SRC=$(realpath "$2")
TINY=$SRC/tests/lua/tiny.lua
. "$(dirname "$0")/cli_lib.sh"

# 1. Same experiment -> same hashes in two processes, and the expected number of runs.
"$LORASC" run "$TINY" --dry-run --db a/x.db > h1.txt || fail "dry-run"
"$LORASC" run "$TINY" --dry-run --db b/x.db > h2.txt || fail "dry-run 2"
cmp -s h1.txt h2.txt || fail "hashes differ between processes"
[ "$(grep -c 'seed' h1.txt)" = 4 ] || fail "expected 4 runs in the dry run: $(cat h1.txt)"
[ ! -e a/x.db ] || fail "--dry-run created the database"
"$LORASC" run "$TINY" --dry-run --shard 2/2 > s2.txt || fail "dry-run shard"
[ "$(grep -c 'seed' s2.txt)" = 2 ] || fail "shard 2/2 should hold 2 runs"

# 2. Bad input: message, non-zero exit, nothing written.
sed 's/steps = 8/stesp = 8/' "$TINY" > bad1.lua
sed 's/rank = 2 }, lorasc/rank = 0 }, lorasc/' "$TINY" > bad2.lua
sed 's/"text:apache"/"text:nope"/' "$TINY" > bad3.lua
sed 's/experts = 2/experts = 2, alpha = 2/' "$TINY" > bad4.lua
for case in "bad1.lua:unknown key 'stesp' in train" "bad2.lua:rank must be > 0" \
            "bad3.lua:unknown task 'text:nope'" "bad4.lua:must be in [0, 1]"; do
  f=${case%%:*}; msg=${case#*:}
  if "$LORASC" run "$f" --db bad/x.db > out.txt 2>&1; then fail "$f: exit status 0"; fi
  grep -qF "$msg" out.txt || fail "$f: expected '$msg', got: $(cat out.txt)"
  grep -q "traceback" out.txt && fail "$f: a user error printed a traceback"
done
[ ! -e bad ] || fail "bad input wrote to the database directory"
# a typo inside a nested table is reported at its own line (train = {...} is line 6 of tiny.lua)
"$LORASC" run bad1.lua --db bad/x.db 2>&1 | grep -qF "bad1.lua:6: unknown key 'stesp' in train" || \
  fail "nested typo line: $("$LORASC" run bad1.lua --db bad/x.db 2>&1)"
# --device cuda starts the device before any run is claimed: where it cannot (a build without
# the CUDA backend, no GPU answering) the sweep stops with the reason and writes nothing;
# where it can, the runs record the device's description.
if "$LORASC" run "$TINY" --device cuda --db cu/x.db > out.txt 2>&1; then
  q cu/x.db "SELECT device FROM runs LIMIT 1" | grep -qF '"backend":"cuda"' || fail "CUDA runs do not record their device"
else
  grep -qF "device cuda cannot start: " out.txt || fail "--device cuda message: $(cat out.txt)"
  [ ! -e cu ] || fail "a device that cannot start wrote to the database directory"
fi
"$LORASC" run "$TINY" --frobnicate > out.txt 2>&1 && fail "unknown option accepted"
grep -q "unknown option '--frobnicate'" out.txt || fail "unknown option message"
# OpenMP waits passively unless the user chose a policy (spinning threads starve other
# processes on the same cores).
echo 'print(os.getenv("OMP_WAIT_POLICY"))' > policy.lua
[ "$(env -u OMP_WAIT_POLICY "$LORASC" lua policy.lua)" = passive ] || fail "default OMP_WAIT_POLICY is not passive"
[ "$(OMP_WAIT_POLICY=active "$LORASC" lua policy.lua)" = active ] || fail "a user's OMP_WAIT_POLICY was overridden"
for cmd in run status report table show merge; do
  "$LORASC" $cmd --help | grep -q "usage: lorasc" || fail "$cmd --help"
done

# 3. Resume: SIGKILL a real run mid-sweep, then run again.
LORASC_TEST_STEP_DELAY=0.15 "$LORASC" run "$TINY" --db r/x.db > r1.log 2>&1 &
PID=$!
i=0
while [ $i -lt 300 ]; do
  if [ -e r/x.db ] && [ "$(q r/x.db "SELECT count(*) FROM runs WHERE status='done'" 2>/dev/null)" = 1 ] \
     && [ "$(q r/x.db "SELECT count(*) FROM runs WHERE status='running'" 2>/dev/null)" = 1 ]; then break; fi
  sleep 0.1; i=$((i + 1))
done
sleep 0.3
kill -9 $PID; wait $PID 2>/dev/null
[ "$(q r/x.db "SELECT count(*) FROM runs WHERE status='running'")" = 1 ] || fail "no running row after SIGKILL: $(cat r1.log)"
"$LORASC" status "$TINY" --db r/x.db > st.txt || fail "status"
grep -q "1 done" st.txt || fail "status after kill: $(cat st.txt)"
grep -q "1 running" st.txt || fail "status after kill (running): $(cat st.txt)"
grep -q "stale" st.txt || fail "status should flag the killed run as stale: $(cat st.txt)"
"$LORASC" run "$TINY" --db r/x.db > r2.log 2>&1 || fail "resume run failed: $(cat r2.log)"
# A run records the commit the binary was built from (compiled in by vcs_tag) and the
# libraries' own versions (SQLite, Lua, OpenBLAS).
echo 'print(LORASC_BUILD_COMMIT)' > build_commit.lua
built=$("$LORASC" lua build_commit.lua)
stored=$(q r/x.db "SELECT git_commit FROM runs WHERE status='done' LIMIT 1")
case $built in
  unknown) [ -z "$stored" ] || fail "no build commit, yet the run stored '$stored'" ;;
  *) [ "${built%+dirty}" = "$stored" ] || fail "stored commit '$stored' is not the built one '$built'" ;;
esac
libs=$(q r/x.db "SELECT lib_versions FROM runs WHERE status='done' LIMIT 1")
echo "$libs" | grep -Eq '"sqlite":"3\.[0-9]+\.[0-9]+"' || fail "lib_versions lacks SQLite's version: $libs"
echo "$libs" | grep -q '"openblas":"OpenBLAS' || fail "lib_versions lacks OpenBLAS: $libs"
grep -q "was interrupted" r2.log || fail "resume did not report the interrupted run"
grep -q "3 run(s) ran, 0 failed, 1 skipped" r2.log || fail "resume should run 3 and skip 1: $(tail -1 r2.log)"
[ "$(q r/x.db "SELECT count(*) FROM runs WHERE status='done'")" = 4 ] || fail "not all done after resume"
[ "$(q r/x.db "SELECT count(*) FROM runs")" = 4 ] || fail "duplicated runs after resume"
[ "$(q r/x.db "SELECT group_concat(attempts, ',') FROM runs ORDER BY id")" = "1,2,1,1" ] || fail "attempts: $(q r/x.db 'SELECT id, attempts FROM runs')"
[ "$(q r/x.db "SELECT count(*) FROM evals WHERE split='test' AND metric='score'")" = 4 ] || fail "one test score per run"
"$LORASC" run "$TINY" --db r/x.db > r3.log 2>&1 || fail "third run"
grep -q "0 run(s) ran, 0 failed, 4 skipped" r3.log || fail "done runs were not skipped: $(tail -1 r3.log)"

# 4. Two processes on one database at once: every run done exactly once.
"$LORASC" run "$TINY" --db c/x.db > c0.log 2>&1 || fail "cache warm-up"  # pretrains the base
rm -f c/x.db c/x.db-wal c/x.db-shm
LORASC_TEST_STEP_DELAY=0.02 "$LORASC" run "$TINY" --db c/x.db > c1.log 2>&1 &
P1=$!
LORASC_TEST_STEP_DELAY=0.02 "$LORASC" run "$TINY" --db c/x.db > c2.log 2>&1 &
P2=$!
wait $P1 || fail "process 1 failed: $(cat c1.log)"
wait $P2 || fail "process 2 failed: $(cat c2.log)"
[ "$(q c/x.db "SELECT count(*) FROM runs WHERE status='done' AND attempts=1")" = 4 ] || fail "concurrent: $(q c/x.db 'SELECT id, status, attempts FROM runs')"
n1=$(sed -n 's/.*: \([0-9]*\) run(s) ran.*/\1/p' c1.log); n2=$(sed -n 's/.*: \([0-9]*\) run(s) ran.*/\1/p' c2.log)
[ $((n1 + n2)) = 4 ] || fail "concurrent processes ran $n1 + $n2 runs, expected 4 in all"

# 5. Merge and report.
"$LORASC" merge m/out.db r/x.db c/x.db > merge.txt || fail "merge"
[ "$(q m/out.db "SELECT count(*) FROM runs WHERE status='done'")" = 4 ] || fail "merge: runs"
"$LORASC" report "$TINY" --db m/out.db > rep.md || fail "report"
grep -q '| lora | ' rep.md && grep -q '| lorasc | ' rep.md || fail "report rows: $(cat rep.md)"
grep -q '(2) \[' rep.md || fail "report n and interval: $(cat rep.md)"
grep -q 'cost (train throughput, wall time)' rep.md && grep -q 'tokens/s' rep.md || fail "report cost column: $(cat rep.md)"
grep -q 'Paired difference to lora' rep.md || fail "report paired differences: $(cat rep.md)"
"$LORASC" report "$TINY" --db m/out.db --format csv | grep -q '^tiny,lora,text:apache,' || fail "csv report"
# the label of each run and the per-example test outcomes are stored, and merged
[ "$(q m/out.db "SELECT count(*) FROM runs WHERE label = 'lorasc'")" = 2 ] || fail "labels stored and merged"
[ "$(q m/out.db "SELECT count(*) FROM eval_examples WHERE split = 'test' AND metric = 'score' AND n = 4")" = 4 ] || fail "per-example outcomes stored and merged"
# two reports in one file: one long CSV (the report column, one header) or one file each (--out)
{ cat "$TINY"; sed 's/experiment "tiny"/experiment "tiny2"/; s/seeds = { 1, 2 }/seeds = { 1 }/' "$TINY"
  printf 'report "tiny" { rows = "method", cols = "task" }\nreport "tiny2" { baseline = "lorasc" }\n'; } > two.lua
"$LORASC" run two.lua --db m/out.db > two.txt || fail "run two.lua: $(cat two.txt)"
"$LORASC" report two.lua --db m/out.db --format csv > two.csv || fail "csv of two reports"
[ "$(grep -c '^report,row,col' two.csv)" = 1 ] && grep -q '^tiny,lorasc,' two.csv && grep -q '^tiny2,lora,' two.csv || fail "long CSV: $(cat two.csv)"
"$LORASC" report two.lua --db m/out.db --format csv --out o > out.txt || fail "--out"
for n in tiny tiny2; do head -1 "o/$n.csv" | grep -q '^report,row,col' && grep -q "^$n,lora," "o/$n.csv" || fail "o/$n.csv: $(cat o/$n.csv)"; done
# a second view of one experiment (experiment = ...): its own table and file, the same runs
{ cat two.lua; printf 'report "tiny_by_seed" { experiment = "tiny", rows = "method", cols = "seed" }\n'; } > views.lua
"$LORASC" report views.lua --db m/out.db --format csv --out ov > out.txt || fail "views: $(cat out.txt)"
[ "$(ls ov | tr '\n' ' ')" = "tiny.csv tiny2.csv tiny_by_seed.csv " ] || fail "views: files $(ls ov)"
grep -q '^tiny_by_seed,lora,1,' ov/tiny_by_seed.csv && grep -q '^tiny_by_seed,lorasc,2,' ov/tiny_by_seed.csv ||
  fail "view by seed: $(cat ov/tiny_by_seed.csv)"
cmp -s o/tiny.csv ov/tiny.csv || fail "the first view changed: $(diff o/tiny.csv ov/tiny.csv)"
sed 's/cols = "seed" }/cols = "seed", metric = "test.scor" }/' views.lua > badview.lua
"$LORASC" report badview.lua --db m/out.db > out.txt 2>&1 && fail "a view's bad metric: exit status 0"
grep -qF "badview.lua:25: report 'tiny_by_seed': metric = \"test.scor\" was logged by no done run of experiment 'tiny'" out.txt ||
  fail "a view's bad metric: $(cat out.txt)"
# a refused spec, a missing database: one sentence, non-zero, no traceback
sed 's/report "tiny2" { baseline = "lorasc" }/report "tiny2" { metric = "test.acuracy" }/' two.lua > badrep.lua
for case in "badrep.lua:m/out.db:badrep.lua:24: report 'tiny2': metric = \"test.acuracy\" was logged by no done run" \
            "two.lua:nodb/x.db:there is no run database at nodb/x.db"; do
  f=${case%%:*}; rest=${case#*:}; db=${rest%%:*}; msg=${rest#*:}
  if "$LORASC" report "$f" --db "$db" > out.txt 2>&1; then fail "report $f --db $db: exit status 0"; fi
  grep -qF "$msg" out.txt || fail "report $f: expected '$msg', got: $(cat out.txt)"
  grep -q "traceback" out.txt && fail "report $f: a traceback"
done
[ ! -e nodb ] || fail "report created a database directory"
# an experiment none of whose runs is in the database: refused, not an empty table
sed 's/experiment "tiny"/experiment "tiny3"/; s/seeds = { 1, 2 }/seeds = { 7 }/' "$TINY" > three.lua
"$LORASC" report three.lua --db m/out.db > out.txt 2>&1 && fail "report of an experiment with no run: exit status 0"
grep -q "no run of experiment 'tiny3' is done in m/out.db yet" out.txt || fail "report of nothing: $(cat out.txt)"
"$LORASC" show 1 --db m/out.db | grep -q 'label .*lora' || fail "show prints the run's label"
"$LORASC" table "$TINY" --db m/out.db --format latex | grep -q 'begin{tabular}' || fail "latex report"
"$LORASC" show 1 --db m/out.db | grep -q 'eval test  score' || fail "show"

# 6. A failing run is marked failed, the sweep goes on, exit status 1: a grid over a good
# base model and a corrupt checkpoint (present, so validation passes; it fails to load).
head -c 300 /dev/urandom > junk.ckpt
sed 's|model = llama {|model = grid { llama { checkpoint = "'"$W"'/junk.ckpt" }, llama {|; s|batch = 2 } },|batch = 2 } } },|' "$TINY" > failing.lua
"$LORASC" run failing.lua --db f/x.db > f.log 2>&1 && fail "a failed run gave exit status 0"
[ "$(q f/x.db "SELECT count(*) FROM runs WHERE status='failed'")" = 4 ] || fail "failed runs: $(q f/x.db 'SELECT status, error FROM runs') $(cat f.log)"
[ "$(q f/x.db "SELECT count(*) FROM runs WHERE status='done'")" = 4 ] || fail "the sweep did not go on"
err=$(q f/x.db "SELECT error FROM runs WHERE status='failed' LIMIT 1")
echo "$err" | grep -q "junk.ckpt is not a lorasc checkpoint" || fail "failure message: $err"
# a run's failure is core's sentence as it is: no harness file:line before it, no "lorasc: "
case $err in *.lua:*|lorasc:*) fail "failure message carries a prefix: $err" ;; esac
# A split too short for a sequence is an error before anything is written, at the split's line.
sed 's|"text:apache"|"text:apache", "text:'"$W"'/short.txt"|' "$TINY" > short.lua
echo "too short" > short.txt
"$LORASC" run short.lua --db sh/x.db > sh.log 2>&1 && fail "a split too short was accepted"
grep -q "split has" sh.log || fail "short split message: $(cat sh.log)"
[ ! -e sh ] || fail "a split too short wrote to the database directory"

# 7. save = true: each run's trained model is saved and hashed into artifacts.
sed 's/^}/  save = true,\n}/' "$TINY" > saving.lua
"$LORASC" run saving.lua --db s/x.db > s.log 2>&1 || fail "save run: $(cat s.log)"
[ "$(q s/x.db "SELECT count(*) FROM artifacts WHERE kind='model'")" = 4 ] || fail "artifacts: $(q s/x.db 'SELECT * FROM artifacts')"
p=$(q s/x.db "SELECT path FROM artifacts LIMIT 1"); h=$(q s/x.db "SELECT sha256 FROM artifacts LIMIT 1")
[ "$(sha256sum "$p" | cut -d' ' -f1)" = "$h" ] || fail "artifact sha256 does not match $p"

cli_done test_cli
