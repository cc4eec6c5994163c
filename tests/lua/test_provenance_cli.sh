#!/bin/sh
# A result knows what made it (lua/lorasc/provenance.lua, store schema 2): every run records
# the SHA-256 of each file it read; after a data file changes, or the recorded code version
# (commit, dirty flag) differs, `lorasc run` counts the stale runs and keeps them, `status`
# lists them with what differs, `--rerun-stale` runs exactly them again, and `report` refuses
# to mix commits in a table (unless --mix-commits) and names the commit under it.
# usage: test_provenance_cli.sh LORASC SOURCE_ROOT
set -u
LORASC=$(realpath "$1")
SRC=$(realpath "$2")
. "$(dirname "$0")/cli_lib.sh"
[ -r /usr/share/common-licenses/GPL-3 ] || { echo "/usr/share/common-licenses missing: skipped"; exit 77; }
cp /usr/share/common-licenses/GPL-3 corpus.txt
cp /usr/share/common-licenses/Apache-2.0 data.txt
sed -e "s|\"text:gpl3\"|\"text:$W/corpus.txt\"|" -e "s|\"text:apache\"|\"text:$W/data.txt\"|" "$SRC/tests/lua/tiny.lua" > exp.lua
DB=p/x.db
sum() { sha256sum "$1" | cut -d' ' -f1; }
attempts() { q $DB "SELECT group_concat(attempts, ',') FROM (SELECT attempts FROM runs ORDER BY id)"; }

# 1. What a run read is recorded: the data file, the corpus, the cached base model.
"$LORASC" run exp.lua --db $DB > r1.log 2>&1 || fail "first run: $(cat r1.log)"
[ "$(q $DB "SELECT count(*) FROM run_inputs WHERE kind = 'data' AND sha256 = '$(sum data.txt)' AND path = '$W/data.txt'")" = 4 ] ||
  fail "data inputs: $(q $DB 'SELECT * FROM run_inputs')"
[ "$(q $DB "SELECT count(*) FROM run_inputs WHERE kind = 'corpus' AND sha256 = '$(sum corpus.txt)'")" = 4 ] || fail "corpus inputs"
base=$(ls p/cache/base-*.ckpt)
[ "$(q $DB "SELECT count(*) FROM run_inputs WHERE kind = 'base' AND sha256 = '$(sum "$base")'")" = 4 ] || fail "base inputs"
[ "$(q $DB "SELECT count(DISTINCT inputs_sha256) FROM runs WHERE length(inputs_sha256) = 64")" = 1 ] || fail "inputs fingerprint"
"$LORASC" show 1 --db $DB | grep -q "input data .* $W/data.txt" || fail "show lists no inputs: $("$LORASC" show 1 --db $DB)"
"$LORASC" report exp.lua --db $DB > rep.md || fail "report"
code=$("$LORASC" lua /dev/stdin <<'EOF'
print(require("lorasc.provenance").current_code())
EOF
)
grep -q "^commit: $code (4 runs)$" rep.md || fail "report footer (code $code): $(cat rep.md)"

# 2. A data file changes: the runs are stale, kept, listed; --rerun-stale reruns them all.
echo "an appendix" >> data.txt
"$LORASC" run exp.lua --db $DB > r2.log 2>&1 || fail "run after a data change: $(cat r2.log)"
grep -q "0 run(s) ran, 0 failed, 4 skipped" r2.log || fail "stale runs were rerun without --rerun-stale: $(cat r2.log)"
grep -q "4 stored run(s) were made by other code or from other data" r2.log || fail "stale count: $(cat r2.log)"
"$LORASC" status exp.lua --db $DB > st.txt || fail "status"
[ "$(grep -c "^  stale .*: data: data.txt changed" st.txt)" = 4 ] || fail "status lists: $(cat st.txt)"
"$LORASC" report exp.lua --db $DB | grep -q "4 of these runs were made from other data" || fail "report does not say the data differ"
"$LORASC" run exp.lua --db $DB --rerun-stale > r3.log 2>&1 || fail "--rerun-stale: $(cat r3.log)"
grep -q "4 run(s) ran, 0 failed, 0 skipped" r3.log || fail "--rerun-stale: $(tail -2 r3.log)"
[ "$(grep -c "is stale (data: data.txt changed): running it again" r3.log)" = 4 ] || fail "rerun messages: $(cat r3.log)"
[ "$(attempts)" = "2,2,2,2" ] || fail "attempts after the data rerun: $(attempts)"
[ "$(q $DB "SELECT count(*) FROM run_inputs WHERE kind = 'data' AND sha256 = '$(sum data.txt)'")" = 4 ] || fail "new data hashes"
"$LORASC" run exp.lua --db $DB --rerun-stale > r4.log 2>&1 || fail "run 4"
grep -q "0 run(s) ran, 0 failed, 4 skipped" r4.log && ! grep -q "stored run(s) were made" r4.log || fail "fresh runs called stale: $(cat r4.log)"

# 3. The recorded code version differs (another commit; a dirty flag; no record of inputs):
#    exactly those runs are stale.
q $DB "UPDATE runs SET git_commit = '0123456789abcdef0123456789abcdef01234567' WHERE id = 1"
q $DB "UPDATE runs SET git_dirty = 1 - git_dirty WHERE id = 2 AND git_dirty IS NOT NULL"
q $DB "UPDATE runs SET inputs_sha256 = NULL WHERE id = 3"
"$LORASC" run exp.lua --db $DB > r5.log 2>&1 || fail "run after a code change: $(cat r5.log)"
case $code in unknown) n=2 ;; *) n=3 ;; esac # outside git there is no dirty flag to differ
grep -q "$n stored run(s) were made by other code" r5.log || fail "code stale count: $(cat r5.log)"
"$LORASC" status exp.lua --db $DB > st2.txt
grep -q "stale .*(run 1): code: made by 0123456789ab" st2.txt || fail "status, other commit: $(cat st2.txt)"
grep -q "stale .*(run 3): data: its inputs were not recorded" st2.txt || fail "status, no inputs: $(cat st2.txt)"
"$LORASC" report exp.lua --db $DB > rep2.md 2>&1 && fail "report mixed two commits without --mix-commits"
grep -q "would mix results made by [23] versions of the code: .*0123456789ab[+a-z]* (1 run)" rep2.md || fail "mixed-commit message: $(cat rep2.md)"
grep -q -- "--mix-commits" rep2.md || fail "the message does not name --mix-commits"
"$LORASC" report exp.lua --db $DB --mix-commits --format csv > rep3.csv || fail "report --mix-commits"
grep -q "^# commits (mixed, --mix-commits): .*0123456789ab" rep3.csv || fail "csv footer: $(cat rep3.csv)"
"$LORASC" run exp.lua --db $DB --rerun-stale > r6.log 2>&1 || fail "rerun after a code change: $(cat r6.log)"
grep -q "$n run(s) ran" r6.log || fail "code rerun: $(tail -1 r6.log)"
[ "$(q $DB "SELECT attempts FROM runs WHERE id = 4")" = 2 ] || fail "run 4 was rerun, it was not stale"
"$LORASC" report exp.lua --db $DB > rep4.md || fail "report after the reruns: $(cat rep4.md)"
grep -q "^commit: $code (4 runs)$" rep4.md || fail "report footer after the reruns: $(cat rep4.md)"

# 4. A merge carries the inputs.
"$LORASC" merge m/x.db $DB > /dev/null || fail "merge"
[ "$(q m/x.db "SELECT count(*) FROM run_inputs")" = "$(q $DB "SELECT count(*) FROM run_inputs")" ] || fail "merge lost inputs"
"$LORASC" run exp.lua --db m/x.db > r7.log 2>&1 || fail "run on the merged database"
grep -q "0 run(s) ran" r7.log && ! grep -q "stored run(s) were made" r7.log || fail "merged runs called stale: $(cat r7.log)"

# 5. The hash cache (p/cache/file_hashes.tsv, lua/lorasc/hash_cache.lua): a command records
#    the hashes it made (of files older than a few seconds), the next trusts an entry only
#    while the file's size, mtime, ctime and inode are the recorded ones.
H=p/cache/file_hashes.tsv
real=$(realpath data.txt)
sleep 3 # data.txt changed in part 2: a file changed in the last 2 s is hashed, not recorded
"$LORASC" status exp.lua --db $DB > st3.txt || fail "status with the cache"
grep -q "^$(sum data.txt) [0-9]* [0-9]* [0-9]* [0-9]* $real\$" $H || fail "data.txt is not in the cache: $(cat $H)"
grep -q "^$(sum corpus.txt) .* $(realpath corpus.txt)\$" $H || fail "corpus.txt is not in the cache: $(cat $H)"
# an entry is what the next command uses: a wrong hash recorded for data.txt's stat says it
# changed (nothing else could)
zeros=0000000000000000000000000000000000000000000000000000000000000000
sed -i "s|^$(sum data.txt) \(.* $real\)\$|$zeros \1|" $H
grep -q "^$zeros " $H || fail "tampering with the cache"
"$LORASC" status exp.lua --db $DB > st4.txt || fail "status with a tampered cache"
[ "$(grep -c "stale .*: data: data.txt changed" st4.txt)" = 4 ] || fail "the cache's entry was not used: $(cat st4.txt)"
# rewritten with its size and mtime put back (cp -p, touch -r): the ctime differs, the entry
# is not trusted, the file is hashed, and the runs are not stale
cp -p data.txt ref.txt
cat ref.txt > data.txt
touch -r ref.txt data.txt
"$LORASC" status exp.lua --db $DB > st5.txt || fail "status after a rewrite"
! grep -q "stale" st5.txt || fail "an entry outlived a rewrite of its file: $(cat st5.txt)"
# a cache cut short or edited is read for what parses, never an error, and written whole again
sleep 3
printf '# lorasc file hashes v1\nnot a line\n%s 12 1 2\n' "$zeros" > $H
head -c 100 /dev/urandom >> $H
"$LORASC" status exp.lua --db $DB > st6.txt 2>&1 || fail "status with a corrupt cache: $(cat st6.txt)"
! grep -q "stale" st6.txt || fail "a corrupt cache changed the result: $(cat st6.txt)"
grep -q "^$(sum data.txt) .* $real\$" $H && ! grep -q "not a line" $H || fail "the corrupt cache was not rewritten: $(cat $H)"
ls p/cache | grep -q "\.part\$" && fail "a temporary cache file was left: $(ls p/cache)"

cli_done test_provenance_cli
