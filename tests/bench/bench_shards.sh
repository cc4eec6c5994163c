#!/usr/bin/env bash
# Several lorasc processes on one machine: the sweep tests/bench/shards.lua in one process,
# then as N --shard processes side by side (N = 2 by default), with lorasc's defaults (every
# core per process, OpenMP threads waiting passively), with --threads cores/N, and (with
# --spin) with spinning waits, OpenMP's own default (OMP_WAIT_POLICY=active). The settings
# run in turn, --rounds times (default 3), so that other processes on a shared machine
# disturb them alike; each setting's best and median wall time are printed, with its ratio
# to one process and how busy the CPUs were outside these processes during the best round.
# Not a test.
#
#   tests/bench/bench_shards.sh [--shards N] [--rounds R] [--spin] [--lorasc PATH]
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LORASC=$ROOT/build/lua/lorasc
N=2
SPIN=0
ROUNDS=3
while [ $# -gt 0 ]; do
  case $1 in
    --shards) N=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --spin) SPIN=1 ;;
    --lorasc) LORASC=$2; shift ;;
    *) echo "usage: $0 [--shards N] [--rounds R] [--spin] [--lorasc PATH]" >&2; exit 2 ;;
  esac
  shift
done
CORES=$(nproc)
PER=$(( CORES / N > 0 ? CORES / N : 1 ))
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export LORASC_PROGRESS=plain
EXP=$ROOT/tests/bench/shards.lua

# The base model, pretrained once; every setting starts from a copy of the cache.
"$LORASC" run "$EXP" --db "$W/warm/x.db" > "$W/warm.log" 2>&1 || { cat "$W/warm.log"; exit 1; }

busy() { awk '/^cpu /{ print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat; }
children() { awk '{ print $16 + $17 }' /proc/$$/stat; } # CPU ticks of the waited-for children

# The settings: name, processes, environment, lorasc options.
NAMES=("1 process, default threads ($CORES)" "$N shards, default threads ($CORES each)"
       "$N shards, --threads $PER each" "1 process, --threads $PER")
PROCS=(1 "$N" "$N" 1)
ENVS=("" "" "" "")
ARGS=("" "" "--threads $PER" "--threads $PER")
if [ $SPIN = 1 ]; then
  NAMES+=("$N shards, default threads, spinning waits"); PROCS+=("$N")
  ENVS+=("OMP_WAIT_POLICY=active"); ARGS+=("")
fi

# run_once K ROUND: setting K once; appends "wall other" to $W/times.K.
run_once() {
  local k=$1 round=$2 dir="$W/s$1-r$2" i b0 t0 c0 b1 t1 c1 start wall other ok=1
  mkdir -p "$dir"; cp -r "$W/warm/cache" "$dir/"
  read -r b0 t0 < <(busy); c0=$(children)
  start=$(date +%s.%N)
  local pids=()
  for i in $(seq 1 "${PROCS[$k]}"); do
    local shard=""
    [ "${PROCS[$k]}" -gt 1 ] && shard="--shard $i/${PROCS[$k]}"
    # shellcheck disable=SC2086 # the options are words
    env ${ENVS[$k]} "$LORASC" run "$EXP" --db "$dir/x.db" $shard ${ARGS[$k]} > "$dir/$i.log" 2>&1 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || ok=0; done
  wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  read -r b1 t1 < <(busy); c1=$(children)
  # jiffies busy outside these processes, as a share of all the CPUs' jiffies
  other=$(awk -v b="$((b1 - b0))" -v c="$((c1 - c0))" -v t="$((t1 - t0))" 'BEGIN { x = (b - c) / t * 100; print (x < 0 ? 0 : x) }')
  [ "$(sqlite3 "$dir/x.db" "SELECT count(*) FROM runs WHERE status = 'done'")" = 8 ] || ok=0
  [ $ok = 1 ] || { echo "setting '${NAMES[$k]}' failed: see $dir" >&2; trap - EXIT; exit 1; }
  echo "$wall $other" >> "$W/times.$k"
  rm -rf "$dir"
}

echo "lorasc: $LORASC; $CORES cores; $ROUNDS rounds; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
  for k in "${!NAMES[@]}"; do run_once "$k" "$r"; done
done
ONE=$(sort -n "$W/times.0" | head -1 | cut -d' ' -f1)
for k in "${!NAMES[@]}"; do
  sort -n "$W/times.$k" | awk -v n="${NAMES[$k]}" -v one="$ONE" '
    { w[NR] = $1; o[NR] = $2 }
    END { printf "%-44s best %6.1f s (x%4.2f; other load then %4.1f%%)  median %6.1f s  all:", n, w[1], w[1] / one, o[1], w[int((NR + 1) / 2)]
          for (i = 1; i <= NR; i++) printf " %.1f", w[i]; printf "\n" }'
done
