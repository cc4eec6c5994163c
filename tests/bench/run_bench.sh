#!/usr/bin/env bash
# Runs the lorasc CPU benchmark (bench_llama) and its PyTorch reference (bench_torch.py) in one
# go on this machine and prints lorasc/PyTorch tokens/s and % of the sgemm peak (measured by
# bench_llama in the same run) against the targets of the issue. Not a test: a missed target
# is reported, not failed; the exit status is non-zero only when a program crashed.
#
#   tests/bench/run_bench.sh [--shape small|large|all] [--steps N] [--threads N] [--quick]
#
# PyTorch runs twice, as the environment has it and with OMP_WAIT_POLICY=passive (its OpenMP
# workers otherwise spin on the cores OpenBLAS needs; passive is much faster on 2 cores), and
# the faster run is the reference. bench_llama also runs with --matmul omp, an experiment
# that shows what one shared thread pool would give. --quick skips both extra runs.
# Environment: BUILD (default <repo>/build), BENCH_OUT (where the JSON goes; default a
# temporary folder), PYTHON (default /usr/bin/python3, Debian's torch).
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
PYTHON=${PYTHON:-/usr/bin/python3}
SHAPE=all STEPS="" THREADS=2 QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --shape) SHAPE=$2; shift 2 ;;
        --steps) STEPS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
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

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "env: OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset} OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}" \
     "OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-unset}"

crashed=0
run() { # run NAME CMD...: runs CMD, notes a crash
    echo "---- $1: ${*:2}"
    "${@:2}" || { echo "run_bench.sh: $1 exited $?" >&2; crashed=1; }
}

run lorasc "$BIN" "${ARGS[@]}" --json "$OUT/lorasc.json"
[ $QUICK = 0 ] && run "lorasc --matmul omp (experiment)" "$BIN" "${ARGS[@]}" --matmul omp \
    --profile-steps 0 --json "$OUT/lorasc_omp.json"
have_torch=1
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "run_bench.sh: $PYTHON cannot import torch (apt install python3-torch); no reference"
    have_torch=0
else
    run torch "$PYTHON" "$ROOT/tests/bench/bench_torch.py" "${ARGS[@]}" --json "$OUT/torch.json"
    if [ $QUICK = 0 ] && [ -z "${OMP_WAIT_POLICY:-}" ]; then
        run "torch, OMP_WAIT_POLICY=passive" env OMP_WAIT_POLICY=passive "$PYTHON" \
            "$ROOT/tests/bench/bench_torch.py" "${ARGS[@]}" --json "$OUT/torch_passive.json"
    fi
fi
[ $crashed = 0 ] || exit 1

"$PYTHON" - "$OUT" <<'EOF' || { echo "run_bench.sh: the summary failed" >&2; exit 1; }
import json, os, sys
out = sys.argv[1]
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
lor, omp = load("lorasc.json"), load("lorasc_omp.json")
torch_runs = [r for r in (load("torch.json"), load("torch_passive.json")) if r]
peak = lor["sgemm_peak_gflops"]
ratio_target = {"small": 1.5, "large": 1.1}
pct_target = 65.0

def verdict(ok):
    return "PASS" if ok else "MISS"

print(f"\nsummary: {lor['threads']} threads; sgemm peak {peak:.1f} GFLOP/s (2048^3, measured by "
      f"bench_llama in this run); tokens/s from the median step; % peak at 4N FLOPs/token")
noisy = [f"{r.get('engine')} {r.get('env', {}).get('OMP_WAIT_POLICY', '')}".strip()
         for r in [lor, omp] + torch_runs if r and r.get("busy_during", 0) > 0.05]
if noisy:
    print("WARNING: other processes used the CPUs during: " + ", ".join(noisy) + "; rerun on a quiet machine")
hdr = f"{'shape':6} {'run':34} {'tokens/s':>9} {'%peak':>7}"
print(hdr)
for s in lor["shapes"]:
    name = s["name"]
    rows = [("lorasc", s)]
    if omp:
        rows += [("lorasc --matmul omp (experiment)", x) for x in omp["shapes"] if x["name"] == name]
    best = None
    for r in torch_runs:
        pol = r.get("env", {}).get("OMP_WAIT_POLICY", "unset")
        for x in r["shapes"]:
            if x["name"] == name:
                rows.append((f"torch (OMP_WAIT_POLICY={pol})", x))
                if best is None or x["tokens_per_s"] > best["tokens_per_s"]:
                    best = x
    for label, x in rows:
        print(f"{name:6} {label:34} {x['tokens_per_s']:9.1f} {100 * x['gflops'] / peak:6.1f}%")
    rt = ratio_target.get(name, 1.0)
    pct = s["pct_sgemm_peak"]
    if best:
        ratio = s["tokens_per_s"] / best["tokens_per_s"]
        print(f"{name:6} target: lorasc / fastest torch = {ratio:.2f} (>= {rt}x) {verdict(ratio >= rt)}; "
              f"lorasc {pct:.1f}% of peak (>= {pct_target:.0f}%) {verdict(pct >= pct_target)}")
    else:
        print(f"{name:6} target: ratio n/a (no torch); lorasc {pct:.1f}% of peak (>= {pct_target:.0f}%) "
              f"{verdict(pct >= pct_target)}")
EOF
echo "results: $OUT"
exit 0
