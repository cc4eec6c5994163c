#!/bin/sh
# `lorasc plot` (lua/lorasc/plot.lua) with real processes and a real gnuplot:
#  - a run's training curves: a PNG (its magic), a well-formed SVG naming every curve, and
#    the .dat holding exactly the database's train.loss / val.score rows and the expert
#    boundaries (not the last step's merge);
#  - a figure of an experiment file (rank x method, lr chosen on validation): PNG, SVG with
#    every series, and the .dat / .csv numbers equal to a selection computed here in SQL
#    (best mean val.score over seeds per cell, test.score mean and sample std x100, n);
#  - the .gp redraws the PNG and the SVG by hand;
#  - unknown run id, unknown figure, a path that matches no config key, series = x, a metric no run
#    logged, no database, no gnuplot: one sentence each, exit 1, no traceback.
# Skipped (77) without gnuplot (Debian: gnuplot-nox; .ci/setup installs it).
# usage: test_plot_cli.sh LORASC SOURCE_ROOT
set -u
LORASC=$(realpath "$1")
SRC=$(realpath "$2")
command -v "${LORASC_GNUPLOT:-gnuplot}" >/dev/null || { echo "gnuplot not installed (apt-get install gnuplot-nox): skipped"; exit 77; }
. "$(dirname "$0")/cli_lib.sh"

is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] && [ "$(wc -c < "$1")" -gt 1000 ]; }
svg_ok() { f=$1; shift; "$LORASC" lua "$SRC/tests/lua/check_svg.lua" "$f" "$@" 2>&1; }
# expect_error NAME PATTERN CMD...: CMD exits 1 with one line on stderr matching PATTERN.
expect_error() {
  name=$1 pat=$2; shift 2
  "$@" > err.out 2> err.txt; rc=$?
  [ $rc = 1 ] || fail "$name: exit status $rc, expected 1"
  [ "$(wc -l < err.txt)" = 1 ] || fail "$name: not one line: $(cat err.txt)"
  grep -q "$pat" err.txt || fail "$name: '$(cat err.txt)' does not say '$pat'"
  grep -qi traceback err.txt && fail "$name: a traceback"
}

# --- 1. a run's training curves ----------------------------------------------------------------
sed -e 's/steps = 8,/steps = 24,/' -e 's/eval = { max_windows = 4, batch = 4 }/eval = { max_windows = 4, batch = 4, every = 6 }/' \
  "$SRC/tests/lua/tiny.lua" > curve.lua
"$LORASC" run curve.lua --db r/x.db > r.log 2>&1 || fail "run: $(cat r.log)"
id=$(q r/x.db "SELECT id FROM runs WHERE json_extract(config, '$.method.name') = 'lorasc' ORDER BY id LIMIT 1")
"$LORASC" plot "$id" --db r/x.db --out out > plot.log 2>&1 || fail "plot $id: $(cat plot.log)"
grep -q "out/run-$id.png and .svg" plot.log || fail "plot $id printed: $(cat plot.log)"
is_png out/run-$id.png || fail "out/run-$id.png is not a PNG"
svg_ok out/run-$id.svg train.loss val.loss val.score lr grad_norm "run $id" "1 expert boundary" || fail "run-$id.svg: $(svg_ok out/run-$id.svg train.loss val.score)"
# block BLOCK FILE: the "step value" rows of the .dat block titled BLOCK
block() { awk -v b="# index [0-9]+: $1" '$0 ~ "^"b { on = 1; next } on && /^#/ { next } on && NF == 0 { exit } on { print }' "$2"; }
for m in train.loss val.score lr grad_norm; do
  block "$m\$" out/run-$id.dat > got.txt
  q r/x.db "SELECT step, printf('%.17g', value) FROM metrics WHERE run_id = $id AND name = '$m' ORDER BY rowid" | tr '|' ' ' > want.txt
  [ -s want.txt ] || fail "no $m rows in the database"
  awk 'NR == FNR { w[FNR] = $0; n = FNR; next } { split(w[FNR], a, " "); if ($1 != a[1] || ($2 - a[2]) ^ 2 > (1e-15 * a[2]) ^ 2) { print "row " FNR ": " $0 " vs " w[FNR]; bad = 1 } } END { if (FNR != n) { print FNR " rows, expected " n; bad = 1 } exit bad }' \
    want.txt got.txt > cmp.txt || fail "run-$id.dat $m: $(head -3 cmp.txt)"
done
[ "$(block "expert boundaries" out/run-$id.dat)" = "12 1" ] || fail "boundaries: '$(block "expert boundaries" out/run-$id.dat)', expected the merge after step 12 of 24 (expert 1)"
grep -q "set arrow from 12, graph 0 to 12, graph 1" out/run-$id.gp || fail "the boundary is not drawn: $(grep arrow out/run-$id.gp)"
# the script redraws the images by hand
mkdir -p hand; cp out/run-$id.gp out/run-$id.dat hand/
(cd hand && gnuplot run-$id.gp && gnuplot -e 'fmt="svg"' run-$id.gp) > hand.log 2>&1 || fail "redraw by hand: $(cat hand.log)"
is_png hand/run-$id.png || fail "the hand-drawn PNG"
svg_ok hand/run-$id.svg train.loss > /dev/null || fail "the hand-drawn SVG"

# --- 2. a figure: accuracy against rank per method, lr chosen on validation --------------------
cat > fig.lua <<'LUA'
experiment "fig" {
  model = llama { dim = 16, hidden_dim = 32, n_layers = 1, n_heads = 2, seq_len = 32,
                  pretrain = { corpus = "text:gpl3", steps = 30, batch = 4 } },
  tasks = { "text:apache" },
  train = { steps = 20, batch = 4, seq = 32, lr = grid { 3e-3, 3e-2 } },
  method = { lora { rank = grid { 1, 4 } }, cola { rank = grid { 1, 4 } }, lorasc { rank = grid { 1, 4 }, experts = 2 } },
  seeds = { 1, 2 },
  eval = { batch = 8 },
}
figure "rank" { x = "method.rank", y = "test.score", series = "method", logx = true, title = "accuracy against rank" }
figure "lr" { x = "train.lr", y = "test.loss", series = "method.rank" }
LUA
"$LORASC" run fig.lua --db f/x.db > f.log 2>&1 || fail "figure runs: $(cat f.log)"
"$LORASC" plot fig.lua --figure rank --db f/x.db --out fo > plot.log 2>&1 || fail "plot --figure rank: $(cat plot.log)"
is_png fo/rank.png || fail "fo/rank.png is not a PNG"
svg_ok fo/rank.svg lora cola lorasc "accuracy against rank" > /dev/null || fail "rank.svg: $(svg_ok fo/rank.svg lora cola lorasc)"
[ -e fo/lr.png ] && fail "--figure rank drew lr too"
# the selection in SQL: per (method, rank), the lr with the best mean val.score over seeds (the
# first lr of the grid on a tie), then test.score over that lr's seeds
q f/x.db "WITH v AS (SELECT r.id, json_extract(r.config, '$.method.name') AS m, json_extract(r.config, '$.method.rank') AS rk,
                            json_extract(r.config, '$.train.lr') AS lr FROM runs r WHERE r.status = 'done'),
               g AS (SELECT m, rk, lr, avg(e.value) AS val FROM v JOIN evals e ON e.run_id = v.id AND e.split = 'val' AND e.metric = 'score' GROUP BY m, rk, lr),
               b AS (SELECT * FROM g g1 WHERE NOT EXISTS (SELECT 1 FROM g g2 WHERE g2.m = g1.m AND g2.rk = g1.rk AND (g2.val > g1.val OR (g2.val = g1.val AND g2.lr < g1.lr))))
          SELECT b.m, b.rk, printf('%.17g', e.value * 100) FROM b JOIN v ON v.m = b.m AND v.rk = b.rk AND v.lr = b.lr
          JOIN evals e ON e.run_id = v.id AND e.split = 'test' AND e.metric = 'score' ORDER BY 1, 2" | tr '|' ' ' |
  awk '{ k = $1 " " $2; n[k]++; s[k] += $3; ss[k] += $3 * $3 } END { for (k in n) { m = s[k] / n[k]; v = (ss[k] - n[k] * m * m) / (n[k] - 1); printf "%s %.10g %.10g %d\n", k, m, sqrt(v < 0 ? 0 : v), n[k] } }' |
  sort > want.txt
for m in lora cola lorasc; do block "$m\$" fo/rank.dat | awk -v m=$m '{ printf "%s %s %.10g %.10g %d\n", m, $1, $2, $3, $4 }'; done | sort > got.txt
[ "$(wc -l < want.txt)" = 6 ] || fail "the SQL selection found $(wc -l < want.txt) cells, expected 6"
awk 'NR == FNR { w[$1 " " $2] = $0; next } { split(w[$1 " " $2], a, " "); if (a[1] == "" || ($3 - a[3]) ^ 2 > 1e-16 || ($4 - a[4]) ^ 2 > 1e-16 || $5 != a[5]) { print $0 " vs " w[$1 " " $2]; bad = 1 } } END { exit bad }' \
  want.txt got.txt > cmp.txt || fail "rank.dat against the SQL selection: $(head -3 cmp.txt)"
[ "$(wc -l < got.txt)" = 6 ] || fail "rank.dat holds $(wc -l < got.txt) points, expected 6"
[ "$(sort -u -k3,3 want.txt | wc -l)" -gt 1 ] || fail "every cell has the same mean: the figure's check would not see a mix-up"
grep -q '^lorasc,4,' fo/rank.csv || fail "rank.csv: $(cat fo/rank.csv)"
grep -q 'train.lr=' fo/rank.csv || fail "rank.csv does not name the selected lr: $(cat fo/rank.csv)"
# every figure of the file; a config path as the series; a loss is not scaled
"$LORASC" plot fig.lua --db f/x.db --out fo > plot.log 2>&1 || fail "plot fig.lua: $(cat plot.log)"
is_png fo/lr.png || fail "fo/lr.png"
svg_ok fo/lr.svg "test.loss" > /dev/null || fail "lr.svg"
block "1\$" fo/lr.dat | awk '$2 < 1 || $2 > 10 { exit 1 }' || fail "lr.dat: test.loss scaled: $(block "1\$" fo/lr.dat)"

# --- 3. refusals: one sentence each ---------------------------------------------------------------
expect_error "unknown run" "no run with id 999 in r/x.db" "$LORASC" plot 999 --db r/x.db --out e
expect_error "unknown figure" "no figure named 'rnk' in fig.lua (did you mean 'rank'?); figures: rank, lr" "$LORASC" plot fig.lua --figure rnk --db f/x.db --out e
sed 's/x = "method.rank"/x = "method.rnk"/' fig.lua > badx.lua
expect_error "bad x" "badx.lua:10: figure 'rank': x = \"method.rnk\" matches no config key of experiment 'fig' (did you mean 'method.rank'?)" "$LORASC" plot badx.lua --db f/x.db --out e
sed 's/series = "method.rank"/series = "train.batchh"/' fig.lua > bads.lua
expect_error "bad series" "bads.lua:11: figure 'lr': series = \"train.batchh\" matches no config key" "$LORASC" plot bads.lua --figure lr --db f/x.db --out e
sed 's/series = "method.rank"/series = "train.lr"/' fig.lua > bad_same.lua
expect_error "series = x" "bad_same.lua:11: figure 'lr': series and x are both 'train.lr'" "$LORASC" plot bad_same.lua --figure lr --db f/x.db --out e
sed 's/y = "test.score"/y = "test.scor"/' fig.lua > bady.lua
expect_error "bad y" "bady.lua:10: figure 'rank': y = \"test.scor\" was logged by no done run of experiment 'fig' (did you mean 'test.score'?)" "$LORASC" plot bady.lua --figure rank --db f/x.db --out e
expect_error "no runs" "no run of experiment 'fig' (task text:apache) is done in the database" "$LORASC" plot fig.lua --db r/x.db --out e
expect_error "no database" "no database at none.db" "$LORASC" plot fig.lua --db none.db --out e
expect_error "no figure" "declares no figure" "$LORASC" plot curve.lua --db r/x.db --out e
expect_error "a figure of a run" "a RUN_ID draws that run's training curves" "$LORASC" plot "$id" --figure rank --db r/x.db
expect_error "no gnuplot" "gnuplot is not installed (Debian: apt-get install gnuplot-nox" env LORASC_GNUPLOT=/nonexistent/gnuplot "$LORASC" plot "$id" --db r/x.db --out ng
[ -s ng/run-$id.dat ] && [ -s ng/run-$id.gp ] || fail "without gnuplot the data and the script are not written"
[ -e ng/run-$id.png ] && fail "a PNG without gnuplot"
"$LORASC" plot --help | grep -q "usage: lorasc plot RUN_ID" || fail "plot --help"

cli_done plot_cli
