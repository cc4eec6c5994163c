#!/bin/sh
# Process-level test of the UCI digits shift (eval.shift, core/data/digits.h): `lorasc data
# fetch digits` from Debian's python3-sklearn into a data directory, a tiny ViT experiment on
# "mnist-t10k:5-9" evaluated on the shift (test.shift.digits, .loss, .n in the database and a
# report column), and the errors: a shift for a task whose classes it does not share and an
# unknown shift (file:line), a data directory without the file (the fetch command named).
# Needs MNIST's t10k in $LORASC_DATA/mnist and python3-sklearn: skipped (77) without them.
# usage: test_shift_cli.sh LORASC
set -u
LORASC=$(realpath "$1")
SKLEARN=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
MNIST=$(realpath -m "${LORASC_DATA:-data}/mnist")
. "$(dirname "$0")/cli_lib.sh"
[ -e "$MNIST/t10k-images-idx3-ubyte.gz" ] || { echo "MNIST t10k not in \$LORASC_DATA/mnist: skipped"; exit 77; }
[ -e "$SKLEARN" ] || { echo "$SKLEARN absent (apt-get install python3-sklearn): skipped"; exit 77; }
mkdir d && ln -s "$MNIST" d/mnist
export LORASC_DATA=$W/d

cat > exp.lua <<'LUA'
experiment "shift" {
  model = vit { dim = 16, n_layers = 1, n_heads = 2, mlp_dim = 32,
                pretrain = { task = "mnist-t10k:0-4", steps = 6, batch = 16 } },
  tasks = { "mnist-t10k:5-9" },
  split = { val = 0.1, max_train = 200, max_val = 50, max_test = 100 },
  train = { steps = 8, batch = 16, lr = 3e-3 },
  method = lora { rank = 2 },
  eval = { batch = 64, corrupt = false, shift = { "digits" } },
}
report "shift" { metrics = { "test.score", "test.shift.digits" } }
LUA

# 1. without the file: one sentence naming the fetch command, nothing run
if "$LORASC" run exp.lua --db r/x.db > out.txt 2>&1; then fail "ran without the digits file"; fi
grep -qF 'run `lorasc data fetch digits`' out.txt || fail "no fetch command named: $(cat out.txt)"
grep -q traceback out.txt && fail "a traceback: $(cat out.txt)"

# 2. fetch, run, the evals
"$LORASC" data fetch digits > f.txt 2>&1 || fail "data fetch digits: $(cat f.txt)"
grep -q "^  [0-9a-f]\{64\}  57512  digits.csv.gz" d/digits/SOURCE.txt || fail "SOURCE.txt: $(cat d/digits/SOURCE.txt)"
"$LORASC" run exp.lua --db r/x.db > r1.log 2>&1 || fail "run: $(cat r1.log)"
acc=$(q r/x.db "SELECT value FROM evals WHERE split='test' AND metric='shift.digits'")
awk -v v="$acc" 'BEGIN { exit !(v != "" && v >= 0 && v <= 1) }' || fail "test shift.digits = '$acc' is not an accuracy"
# the UCI digits of classes 5-9: 182 + 181 + 179 + 174 + 180
[ "$(q r/x.db "SELECT CAST(value AS INT) FROM evals WHERE metric='shift.digits.n'")" = 896 ] || fail "shift.digits.n: $(q r/x.db "SELECT value FROM evals WHERE metric='shift.digits.n'")"
q r/x.db "SELECT path FROM run_inputs" | grep -q "digits/digits.csv.gz" || fail "the digits file is not among the run's inputs"
"$LORASC" report exp.lua --db r/x.db > rep.md || fail "report"
grep -qF 'mnist-t10k:5-9 shift.digits |' rep.md || fail "report column: $(cat rep.md)"

# 3. DSL errors at the shift's own line (line 8)
sed 's/"mnist-t10k:5-9"/"fashion-mnist:5-9"/' exp.lua > bad1.lua
sed 's/shift = { "digits" }/shift = { "usps" }/' exp.lua > bad2.lua
for case in "bad1.lua:8:eval.shift 'digits' holds handwritten digits 0-9, which task 'fashion-mnist:5-9' does not classify" \
            "bad2.lua:8:unknown eval.shift 'usps'; valid: digits"; do
  f=${case%%:*}; rest=${case#*:}; line=${rest%%:*}; msg=${rest#*:}
  if "$LORASC" run "$f" --db bad/x.db > out.txt 2>&1; then fail "$f: exit status 0"; fi
  grep -qF "$msg" out.txt || fail "$f: expected '$msg', got: $(cat out.txt)"
  grep -qF "$f:$line:" out.txt || fail "$f: expected the location $f:$line, got: $(cat out.txt)"
done

cli_done test_shift_cli
