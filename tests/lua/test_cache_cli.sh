#!/bin/sh
# The base-model cache (lua/lorasc/cache.lua) through `lorasc run`: a truncated or corrupted
# cache file is discarded and rebuilt (byte-identical), files left by killed writers are
# removed (and a live writer's kept), a dead builder's lock is taken over, two processes
# needing one base build it once (the other waits), and a changed corpus gets its own cache
# file.
# usage: test_cache_cli.sh LORASC SOURCE_ROOT
set -u
LORASC=$(realpath "$1")
SRC=$(realpath "$2")
. "$(dirname "$0")/cli_lib.sh"
[ -r /usr/share/common-licenses/GPL-3 ] || { echo "/usr/share/common-licenses missing: skipped"; exit 77; }
cp /usr/share/common-licenses/GPL-3 corpus.txt
cp /usr/share/common-licenses/Apache-2.0 data.txt
sed -e "s|\"text:gpl3\"|\"text:$W/corpus.txt\"|" -e "s|\"text:apache\"|\"text:$W/data.txt\"|" "$SRC/tests/lua/tiny.lua" > exp.lua
all_done() { [ "$(q "$1" "SELECT count(*) FROM runs WHERE status = 'done'")" = 4 ] || fail "$2: not 4 runs done: $(q "$1" 'SELECT status, error FROM runs')"; }

# 1. The cache file, made once.
"$LORASC" run exp.lua --db a/x.db > a.log 2>&1 || fail "first run: $(cat a.log)"
set -- a/cache/base-*.ckpt
[ $# = 1 ] && [ -e "$1" ] || fail "expected one cache file: $*"
CK=$1
SUM=$(sha256sum "$CK" | cut -d' ' -f1)
rebuilt() { # rebuilt LOG WHAT: the run rebuilt the file, identical
  grep -q "does not load" "$1" || fail "$2: the unreadable cache file was not reported: $(cat "$1")"
  grep -q "pretraining the base model" "$1" || fail "$2: not rebuilt"
  [ "$(sha256sum "$CK" | cut -d' ' -f1)" = "$SUM" ] || fail "$2: the rebuilt cache file differs from the first"
}

# 2. Truncated, then corrupted in the middle: discarded, rebuilt, every run done.
head -c 1000 "$CK" > t && mv t "$CK"
"$LORASC" run exp.lua --db b/x.db --results a > b.log 2>&1 || fail "run on a truncated cache file: $(cat b.log)"
rebuilt b.log truncated
all_done b/x.db truncated
size=$(wc -c < "$CK")
printf 'LSCX' | dd of="$CK" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
"$LORASC" run exp.lua --db c/x.db --results a > c.log 2>&1 || fail "run on a corrupt cache file: $(cat c.log)"
rebuilt c.log corrupted
all_done c/x.db corrupted

# 3. Leftovers of killed writers: removed; a live writer's and an unrelated young file kept.
dead=$(sh -c 'echo $$')
H=$(hostname | tr -c 'A-Za-z0-9_\n-' '_')
for f in "$CK.$dead.$H.part" "$CK.$dead.$H.part.tmp" "$CK.$dead" "$CK.$dead.tmp" "$CK.$$.$H.part" a/cache/notes.tmp; do
  echo partial > "$f"
done
"$LORASC" run exp.lua --db d/x.db --results a > d.log 2>&1 || fail "run with leftovers: $(cat d.log)"
grep -q "removed 4 file(s) left in a/cache by killed writers" d.log || fail "leftovers: $(cat d.log)"
for f in "$CK.$dead.$H.part" "$CK.$dead.$H.part.tmp" "$CK.$dead" "$CK.$dead.tmp"; do [ ! -e "$f" ] || fail "leftover $f kept"; done
[ -e "$CK.$$.$H.part" ] || fail "a live writer's file was removed"
[ -e a/cache/notes.tmp ] || fail "a young file of no writer was removed"
rm -f "$CK.$$.$H.part" a/cache/notes.tmp

# 4. A lock left by a dead builder is taken over.
rm -f "$CK"
echo "pid $dead host $(hostname) since 0" > "$CK.lock"
"$LORASC" run exp.lua --db e/x.db --results a > e.log 2>&1 || fail "run with a stale lock: $(cat e.log)"
grep -q "taking over the lock .*is gone" e.log || fail "stale lock: $(cat e.log)"
[ ! -e "$CK.lock" ] || fail "the lock was left behind"
[ "$(sha256sum "$CK" | cut -d' ' -f1)" = "$SUM" ] || fail "the base built after a takeover differs"

# 5. Two processes needing one base: one builds it, the other waits for it.
rm -f "$CK"
LORASC_TEST_PRETRAIN_DELAY=0.4 "$LORASC" run exp.lua --db f1/x.db --results a > f1.log 2>&1 &
P1=$!
LORASC_TEST_PRETRAIN_DELAY=0.4 "$LORASC" run exp.lua --db f2/x.db --results a > f2.log 2>&1 &
P2=$!
wait $P1 || fail "process 1: $(cat f1.log)"
wait $P2 || fail "process 2: $(cat f2.log)"
[ "$(cat f1.log f2.log | grep -c 'pretraining the base model')" = 1 ] || fail "the base was built $(cat f1.log f2.log | grep -c 'pretraining the base model') times: $(cat f1.log f2.log)"
[ "$(cat f1.log f2.log | grep -c 'waiting for process [0-9]* on ')" = 1 ] || fail "no process waited: $(cat f1.log f2.log)"
grep -q "the base model is ready" f1.log f2.log || fail "the waiting process did not load the result"
all_done f1/x.db "process 1"
all_done f2/x.db "process 2"
[ ! -e "$CK.lock" ] || fail "the lock was left behind"
[ "$(sha256sum "$CK" | cut -d' ' -f1)" = "$SUM" ] || fail "the base built under the lock differs"

# 6. The key covers the corpus's contents: a changed corpus gets its own cache file.
echo "one more line" >> corpus.txt
"$LORASC" run exp.lua --db a/x.db --rerun-stale > g.log 2>&1 || fail "run after the corpus changed: $(cat g.log)"
grep -q "pretraining the base model" g.log || fail "a changed corpus reused the old base: $(cat g.log)"
[ "$(ls a/cache/base-*.ckpt | wc -l)" = 2 ] || fail "expected a second cache file: $(ls a/cache)"

cli_done test_cache_cli
