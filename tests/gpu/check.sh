#!/usr/bin/env bash
# The device check of the CUDA backend (issue 11), one command on a fresh H100/H200 machine:
#   bash tests/gpu/check.sh OUTDIR
# 1. prints what the machine has (GPU, driver, nvcc, compute-sanitizer, the libraries the
#    binaries need), so a failed start explains itself;
# 2. takes the parity test and op benchmark from the carried bundle .gpu/ (tests/gpu/prepare.sh,
#    built on the development machine), else builds them here with meson if it can;
# 3. runs the parity suite with CUDA required (every op against double references and the CPU,
#    Philox noise bit for bit, the error sentences), then whole fine-tuning runs CUDA against
#    CPU (test_device_step: tiny Llama and ViT, LoRA, DoRA, LoRASC with noise, full; losses,
#    adapters, merged base, logits, checkpoints, an op failure as a sentence), then
#    compute-sanitizer: memcheck on the whole parity suite and on the training runs, racecheck
#    and synccheck on the attention kernels, initcheck (reported only);
# 4. runs the op benchmark (Llama-2-7B layer shapes against this GPU's copy and matmul ceilings).
# Everything goes to OUTDIR (env.txt, parity.log, device_step.log, memcheck.log,
# memcheck_step.log, racecheck.log, synccheck.log, initcheck.log, bench.log, summary.txt:
# 10 files) and the summary is printed last. Exit status:
# 0 when every required step passed. Each step has a time limit; the whole fits in 8 minutes.
# Without a GPU (a dry run) the script gets as far as the machine allows and says where it
# stopped. Not here: the Llama-2-7B training-step benchmark and the PEFT comparison (they need
# the model on the device, a later step of issue 11).
set -u
out=${1:?usage: bash tests/gpu/check.sh OUTDIR}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
summary="$out/summary.txt"
: > "$summary"
failed=0
t_start=$(date +%s)

note() { printf '%-44s %s\n' "$1" "$2" | tee -a "$summary"; }

# Runs a step with a time limit, its output to a log; records PASS / FAIL / TIMEOUT.
# step NAME LOG LIMIT_S REQUIRED(1|0) CMD...
step() {
  local name=$1 log=$2 limit=$3 required=$4
  shift 4
  local t0 rc
  t0=$(date +%s)
  echo "== $name: $*" | tee -a "$log"
  timeout "$limit" "$@" >> "$log" 2>&1
  rc=$?
  local took=$(( $(date +%s) - t0 ))
  local verdict=PASS
  [ $rc -eq 124 ] && verdict="TIMEOUT (${limit} s)"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && verdict="FAIL (exit $rc)"
  [ "$required" = 0 ] && [ $rc -ne 0 ] && verdict="$verdict, reported only"
  note "$name" "$verdict, ${took} s, log $(basename "$log")"
  if [ $rc -ne 0 ] && [ "$required" = 1 ]; then failed=1; fi
  return $rc
}

# ---- 1. what this machine has ----
env_txt="$out/env.txt"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(uname -n)  kernel: $(uname -r)  arch: $(uname -m)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo '(no git)')"
  echo "--- nvidia-smi"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.sm,clocks.max.sm \
    --format=csv 2>&1 || echo "nvidia-smi: not usable"
  echo "--- nvcc"
  (command -v nvcc && nvcc --version | tail -2) 2>&1 || echo "nvcc: not found"
  echo "--- compute-sanitizer"
  for cs in compute-sanitizer /usr/local/cuda/bin/compute-sanitizer; do
    command -v "$cs" >/dev/null 2>&1 && { command -v "$cs"; "$cs" --version | head -2; break; }
  done
  echo "--- tools: $(for t in meson ninja python3 pkg-config xz; do printf '%s=%s ' "$t" "$(command -v $t >/dev/null && echo yes || echo no)"; done)"
  echo "--- libraries (ldconfig)"
  ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libcudart|libcublas|libopenblas|libcmocka|liblua|libsqlite3|libjansson|libgomp|libgfortran' |
    awk '{print "  " $1 " -> " $NF}'
  echo "--- carried bundle (.gpu)"
  if [ -f .gpu/MANIFEST ]; then cat .gpu/MANIFEST; else echo "none"; fi
} > "$env_txt" 2>&1
cat "$env_txt"

# CUDA's libraries: the toolkit's folders and the ones pip wheels bring (PyTorch's nvidia-*).
cuda_dirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 \
         $(python3 -c 'import glob, site; print(" ".join(sorted(set(p.rsplit("/", 1)[0] for s in site.getsitepackages() for p in glob.glob(s + "/nvidia/*/lib/lib*.so*")))))' 2>/dev/null); do
  [ -d "$d" ] && cuda_dirs="$cuda_dirs:$d"
done

# ---- 2. the binaries: the carried bundle, else a build here ----
parity="" bench="" device_step=""
if [ -x .gpu/bin/test_backend_ops ]; then
  libdir=$(mktemp -d /tmp/lorasc-gpu-lib.XXXXXX)
  for f in .gpu/lib/*.xz; do
    [ -e "$f" ] || continue
    python3 -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.open(sys.argv[1]).read())' \
      "$f" "$libdir/$(basename "$f" .xz)" || { echo "cannot unpack $f"; failed=1; }
  done
  export LD_LIBRARY_PATH="$libdir$cuda_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  parity=.gpu/bin/test_backend_ops
  device_step=.gpu/bin/test_device_step
  bench=.gpu/bin/bench_backend_ops
  note "binaries" "carried bundle .gpu (libraries unpacked to $libdir)"
else
  export LD_LIBRARY_PATH="${cuda_dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  build_log="$out/parity.log"
  if command -v meson >/dev/null && command -v ninja >/dev/null && command -v nvcc >/dev/null; then
    if step "build (meson, -Dcuda=enabled)" "$build_log" 300 1 \
         bash -c 'meson setup build-gpu -Dcuda=enabled -Dnative=false --reconfigure || meson setup build-gpu -Dcuda=enabled -Dnative=false; ninja -C build-gpu tests/kernels/test_backend_ops tests/test_device_step tests/bench_backend_ops'; then
      parity=build-gpu/tests/kernels/test_backend_ops
      device_step=build-gpu/tests/test_device_step
      bench=build-gpu/tests/bench_backend_ops
    fi
  else
    note "build" "FAIL: no carried bundle (.gpu) and meson, ninja or nvcc missing; run tests/gpu/prepare.sh on the development machine and carry .gpu"
    failed=1
  fi
fi
if [ -n "$parity" ]; then
  missing=$(ldd "$parity" "$device_step" "$bench" 2>&1 | grep 'not found' | sort -u)
  if [ -n "$missing" ]; then
    note "shared libraries" "FAIL: $(echo "$missing" | awk '{print $1}' | tr '\n' ' ')not found"
    failed=1
    parity=""
  else
    note "shared libraries" "all found ($(ldd "$parity" | grep -E 'cublas|cudart' | awk '{print $3}' | tr '\n' ' '))"
  fi
fi

# ---- 3. parity and the sanitizers ----
if [ -n "$parity" ]; then
  export LORASC_REQUIRE_CUDA=1
  step "parity (every op, CUDA vs CPU vs double)" "$out/parity.log" 180 1 "$parity"
  if grep -q '^worst |err|' "$out/parity.log"; then
    grep -E '^  (cpu|cuda) |^SKIP|elements|differ' "$out/parity.log" | head -20
    sed -n '/^worst |err|/,$p' "$out/parity.log" | head -45
  else
    tail -20 "$out/parity.log"
  fi
  step "training runs, CUDA vs CPU (device_step)" "$out/device_step.log" 120 1 \
    "$device_step"
  grep -E '^worst|SKIP|FAILED|ERROR|a step that cannot run' "$out/device_step.log" | head -12
  cs=$(command -v compute-sanitizer || { [ -x /usr/local/cuda/bin/compute-sanitizer ] && echo /usr/local/cuda/bin/compute-sanitizer; } || true)
  if [ -n "$cs" ]; then
    step "memcheck (whole parity suite)" "$out/memcheck.log" 240 1 \
      "$cs" --tool memcheck --leak-check full --error-exitcode 3 "$parity"
    LORASC_TEST_FILTER='test_*_runs' step "memcheck (training runs)" "$out/memcheck_step.log" 180 1 \
      "$cs" --tool memcheck --leak-check full --error-exitcode 3 "$device_step"
    LORASC_TEST_FILTER=test_attention step "racecheck (attention)" "$out/racecheck.log" 240 1 \
      "$cs" --tool racecheck --racecheck-report all --error-exitcode 3 "$parity"
    LORASC_TEST_FILTER=test_attention step "synccheck (attention)" "$out/synccheck.log" 120 1 \
      "$cs" --tool synccheck --error-exitcode 3 "$parity"
    LORASC_TEST_FILTER='test_norms' step "initcheck (norms and their column sums)" \
      "$out/initcheck.log" 120 0 "$cs" --tool initcheck --error-exitcode 3 "$parity"
    for f in memcheck memcheck_step racecheck synccheck initcheck; do
      grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|========= (Invalid|Race|Barrier|Uninit)' "$out/$f.log" | sort | uniq -c | head -5 | sed "s/^/  $f: /"
    done
  else
    note "compute-sanitizer" "FAIL: not found on this machine"
    failed=1
  fi
  # ---- 4. the op benchmark ----
  step "op benchmark (Llama-2-7B layer shapes)" "$out/bench.log" 180 0 "$bench" cuda
  sed -n '/^ceilings/,$p' "$out/bench.log"
fi

note "total" "$(( $(date +%s) - t_start )) s, $([ $failed -eq 0 ] && echo 'all required steps passed' || echo 'FAILED (see above)')"
echo "---- summary ($summary)"
cat "$summary"
exit $failed
