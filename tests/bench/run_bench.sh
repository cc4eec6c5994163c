#!/usr/bin/env bash
# Runs the lorasc CPU benchmark (bench_llama) and its PyTorch reference (bench_torch.py) in one
# go on this machine and prints lorasc/PyTorch tokens/s and % of the sgemm peak (measured by
# bench_llama in the same run) against the targets of the issue. Not a test: a missed target
# is reported, not failed; the exit status is non-zero only when a program crashed.
#
#   tests/bench/run_bench.sh [--shape small|large|all] [--steps N] [--threads N]
# Environment: BUILD (default <repo>/build), BENCH_OUT (where the JSON goes; default a
# temporary folder), PYTHON (default /usr/bin/python3, Debian's torch).
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
PYTHON=${PYTHON:-/usr/bin/python3}
SHAPE=all STEPS="" THREADS=2
while [ $# -gt 0 ]; do
    case "$1" in
        --shape) SHAPE=$2; shift 2 ;;
        --steps) STEPS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "run_bench.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
OUT=${BENCH_OUT:-$(mktemp -d /tmp/lorasc_bench.XXXXXX)}
mkdir -p "$OUT"
ARGS=(--shape "$SHAPE" --threads "$THREADS")
[ -n "$STEPS" ] && ARGS+=(--steps "$STEPS")

# The benchmark binary: the meson target if the build has it, else compiled here by hand.
BIN=$BUILD/tests/bench_llama
if [ ! -x "$BIN" ]; then
    BIN=$OUT/bench_llama
    echo "run_bench.sh: $BUILD/tests/bench_llama not built; compiling $BIN"
    ninja -C "$BUILD" >/dev/null || { echo "run_bench.sh: ninja -C $BUILD failed" >&2; exit 1; }
    gcc -std=c11 -O3 -march=native -fopenmp -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
        -I"$ROOT" -I"$BUILD" "$ROOT/tests/bench/bench_llama.c" "$BUILD/core/liblorasc_core.a" \
        "$BUILD/kernels/liblorasc_kernels.a" -lopenblas -lm -o "$BIN" ||
        { echo "run_bench.sh: compiling bench_llama failed" >&2; exit 1; }
fi

# How busy the machine is before we start: another process on the cores makes every number
# below meaningless, so say so up front.
busy=$(awk 'NR==1{b=$2+$3+$4+$7+$8+$9; t=b+$5+$6; print b, t}' /proc/stat)
sleep 1
busy2=$(awk 'NR==1{b=$2+$3+$4+$7+$8+$9; t=b+$5+$6; print b, t}' /proc/stat)
read -r b1 t1 <<<"$busy"
read -r b2 t2 <<<"$busy2"
load_pct=$(( (b2 - b1) * 100 / ( (t2 - t1) > 0 ? (t2 - t1) : 1 ) ))
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; busy ${load_pct}% in the second before the run"
echo "env: OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset} OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-unset}"
[ "$load_pct" -gt 15 ] && echo "WARNING: other processes are using the CPUs; timings are unreliable"

echo "---- lorasc: $BIN ${ARGS[*]}"
"$BIN" "${ARGS[@]}" --json "$OUT/lorasc.json"
rc_c=$?
echo "---- torch: $PYTHON tests/bench/bench_torch.py ${ARGS[*]}"
have_torch=1
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "run_bench.sh: $PYTHON cannot import torch (apt install python3-torch); no reference"
    have_torch=0
    rc_py=0
else
    "$PYTHON" "$ROOT/tests/bench/bench_torch.py" "${ARGS[@]}" --json "$OUT/torch.json"
    rc_py=$?
fi
if [ $rc_c -ne 0 ] || [ $rc_py -ne 0 ]; then
    echo "run_bench.sh: bench_llama exited $rc_c, bench_torch.py exited $rc_py" >&2
    exit 1
fi

"$PYTHON" - "$OUT/lorasc.json" "$OUT/torch.json" "$have_torch" <<'EOF'
import json, sys
lor = json.load(open(sys.argv[1]))
tor = json.load(open(sys.argv[2]))["shapes"] if sys.argv[3] == "1" else []
tor = {s["name"]: s for s in tor}
peak = lor["sgemm_peak_gflops"]
ratio_target = {"small": 1.5, "large": 1.1}
pct_target = 65.0
print(f"\nsummary ({lor['threads']} threads; sgemm peak {peak:.1f} GFLOP/s measured in this run; "
      "tokens/s = median step)")
print(f"{'shape':6} {'lorasc tok/s':>12} {'torch tok/s':>11} {'ratio':>6} {'target':>6}     "
      f"{'lorasc %peak':>12} {'torch %peak':>11} {'target':>6}")
for s in lor["shapes"]:
    t = tor.get(s["name"])
    rt = ratio_target.get(s["name"], 1.0)
    if t:
        ratio = s["tokens_per_s"] / t["tokens_per_s"]
        rcol = f"{t['tokens_per_s']:11.1f} {ratio:6.2f} {rt:5.1f}x {'PASS' if ratio >= rt else 'MISS'}"
        tpct = f"{100 * t['gflops'] / peak:10.1f}%"
    else:
        rcol = f"{'-':>11} {'-':>6} {rt:5.1f}x  n/a"
        tpct = f"{'-':>11}"
    pct = s["pct_sgemm_peak"]
    print(f"{s['name']:6} {s['tokens_per_s']:12.1f} {rcol} {pct:11.1f}% {tpct} {pct_target:5.0f}% "
          f"{'PASS' if pct >= pct_target else 'MISS'}")
EOF
echo "results: $OUT/lorasc.json $OUT/torch.json"
exit 0
