#!/usr/bin/env bash
# Several lorasc processes on one machine: the sweep tests/bench/shards.lua in one process,
# then as N --shard processes side by side (N = 2 by default), with lorasc's defaults (every
# core per process, OpenMP threads waiting passively), with --threads cores/N, and (with
# --spin) with spinning waits, OpenMP's own default (OMP_WAIT_POLICY=active). Prints each
# setting's wall time, its ratio to one process, and how busy the CPUs were outside these
# processes meanwhile (a disturbed number is marked). Not a test.
#
#   tests/bench/bench_shards.sh [--shards N] [--spin] [--lorasc PATH]
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LORASC=$ROOT/build/lua/lorasc
N=2
SPIN=0
while [ $# -gt 0 ]; do
  case $1 in
    --shards) N=$2; shift ;;
    --spin) SPIN=1 ;;
    --lorasc) LORASC=$2; shift ;;
    *) echo "usage: $0 [--shards N] [--spin] [--lorasc PATH]" >&2; exit 2 ;;
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

ONE=
# run_setting NAME PROCESSES ENV... -- ARGS: the sweep split over PROCESSES side by side.
run_setting() {
  local name=$1 procs=$2; shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local dir="$W/$name"
  mkdir -p "$dir"; cp -r "$W/warm/cache" "$dir/"
  read -r b0 t0 < <(busy); c0=$(children)
  local start
  start=$(date +%s.%N)
  local pids=()
  for i in $(seq 1 "$procs"); do
    local shard=()
    [ "$procs" -gt 1 ] && shard=(--shard "$i/$procs")
    env ${envs[@]+"${envs[@]}"} "$LORASC" run "$EXP" --db "$dir/x.db" "${shard[@]}" "$@" > "$dir/$i.log" 2>&1 &
    pids+=($!)
  done
  local ok=1
  for p in "${pids[@]}"; do wait "$p" || ok=0; done
  local wall other done_runs
  wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  read -r b1 t1 < <(busy); c1=$(children)
  # jiffies busy outside these processes, as a share of all the CPUs' jiffies
  other=$(awk -v b="$((b1 - b0))" -v c="$((c1 - c0))" -v t="$((t1 - t0))" 'BEGIN { x = (b - c) / t * 100; print (x < 0 ? 0 : x) }')
  [ -z "$ONE" ] && ONE=$wall
  done_runs=$(sqlite3 "$dir/x.db" "SELECT count(*) FROM runs WHERE status = 'done'" 2>/dev/null || echo "?")
  awk -v n="$name" -v w="$wall" -v one="$ONE" -v d="$done_runs" -v o="$other" 'BEGIN {
    printf "%-44s %8.1f s  x%5.2f  (%s runs done; other load %5.1f%% of the CPUs%s)\n", n, w, w / one, d, o, (o > 5 ? ", DISTURBED" : "") }'
  [ $ok = 1 ] || echo "  (a process failed: see $dir)"
}

echo "lorasc: $LORASC; $CORES cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run_setting "1 process, default threads ($CORES)" 1 --
run_setting "1 process, --threads 1" 1 -- --threads 1
run_setting "$N shards, default threads ($CORES each)" "$N" --
run_setting "$N shards, --threads $PER each" "$N" -- --threads "$PER"
if [ $SPIN = 1 ]; then
  run_setting "$N shards, default threads, spinning waits" "$N" OMP_WAIT_POLICY=active --
fi
