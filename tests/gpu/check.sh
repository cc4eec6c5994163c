#!/usr/bin/env bash
# The device check of the CUDA backend (issue 11), one command on a fresh H100/H200 machine:
#   bash tests/gpu/check.sh OUTDIR
# 1. prints what the machine has (GPU, driver, nvcc, compute-sanitizer, Python's torch,
#    transformers and peft, the libraries the binaries need), so a failed start explains itself;
# 2. takes the binaries from the carried bundle .gpu/ (tests/gpu/prepare.sh, built on the
#    development machine), else builds them here with meson if it can;
# 3. runs the parity suite with CUDA required (every op against double references and the CPU,
#    Philox noise bit for bit, the error sentences), then whole fine-tuning runs CUDA against
#    CPU (test_device_step: tiny Llama and ViT, LoRA, DoRA, LoRASC with noise, full; losses,
#    adapters, merged base, logits, checkpoints; steps that read nothing back between logs; an
#    op failure as a sentence);
# 4. the training-step benchmark (bench_train_device: the Llama-2-7B shape, LoRA r 8 on q, v,
#    sequence 1024, the batch as large as fits; tokens/s, MFU against the bf16 GEMM peak
#    measured in the same run, peak memory, the LoRASC boundary) and the same model and step in
#    PyTorch + transformers + PEFT at lorasc's batch (tests/bench/peft_gpu.py), then the
#    comparison with the issue's targets (bench_summary.txt);
# 5. compute-sanitizer (CUDA 13: `compute-sanitizer --tool memcheck|racecheck|synccheck|
#    initcheck`, each tool's report into its step's log): memcheck on the training runs,
#    racecheck and synccheck on the attention kernels, memcheck on the whole parity suite,
#    initcheck on the norms (reported only);
# 5b. the same pair for a ViT shape (CLIP ViT-B/16's vision tower at 224, LoRA r 8 on q, v
#    and the head; images/s), reported only, after the required steps;
# 6. the op benchmark (Llama-2-7B layer shapes against this GPU's copy and matmul ceilings).
# Every step has a time limit and the whole a budget of LORASC_GPU_BUDGET seconds (default 450,
# under 8 minutes): a step starts only with 20 s left and never runs past the budget; a
# required step left out for time fails the check. Everything goes under OUTDIR: env.txt,
# summary.txt, bench_train.json, peft.json, bench_summary.txt and logs.tar.xz (every step's
# log, refreshed after each step, so a run cut short still brings back what it did: the device
# tool returns at most 8 files); the summary is printed last. Exit status: 0 when every
# required step passed. Without a GPU (a dry run) the script gets as far as the machine allows
# and says where it stopped.
set -u
out=${1:?usage: bash tests/gpu/check.sh OUTDIR}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
summary="$out/summary.txt"
: > "$summary"
logs="$out/logs"
mkdir -p "$logs" || exit 2
failed=0
t_start=$(date +%s)
budget=${LORASC_GPU_BUDGET:-450}
deadline=$(( t_start + budget ))

note() { printf '%-44s %s\n' "$1" "$2" | tee -a "$summary"; }

# Runs a step with a time limit, its output to a log; records PASS / FAIL / TIMEOUT.
# step NAME LOG LIMIT_S REQUIRED(1|0) CMD...
# The logs so far, packed (the device tool brings back few files).
pack() { tar -cJf "$out/logs.tar.xz.tmp" -C "$out" logs 2>/dev/null && mv "$out/logs.tar.xz.tmp" "$out/logs.tar.xz"; }

step() {
  local name=$1 log=$2 limit=$3 required=$4
  shift 4
  local t0 rc left
  t0=$(date +%s)
  left=$(( deadline - t0 ))
  if [ "$left" -lt 20 ]; then
    note "$name" "NOT RUN: the ${budget} s budget is spent$([ "$required" = 1 ] && echo ' (required: the check fails)')"
    [ "$required" = 1 ] && failed=1
    return 125
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name: $*" | tee -a "$log"
  timeout "$limit" "$@" >> "$log" 2>&1
  rc=$?
  local took=$(( $(date +%s) - t0 ))
  local verdict=PASS
  [ $rc -eq 124 ] && verdict="TIMEOUT (${limit} s)"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && verdict="FAIL (exit $rc)"
  [ "$required" = 0 ] && [ $rc -ne 0 ] && verdict="$verdict, reported only"
  note "$name" "$verdict, ${took} s, log logs/$(basename "$log")"
  if [ $rc -ne 0 ] && [ "$required" = 1 ]; then failed=1; fi
  pack
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
  echo "--- tools: $(for t in meson ninja python3 pkg-config xz tar; do printf '%s=%s ' "$t" "$(command -v $t >/dev/null && echo yes || echo no)"; done)"
  echo "--- python3 (tests/bench/peft_gpu.py): $(python3 -c 'import sys; from importlib.metadata import version as v
out = [sys.version.split()[0]]
for p in ("torch", "transformers", "peft", "accelerate"):
    try: out.append(p + " " + v(p))
    except Exception: out.append(p + " missing")
print(", ".join(out))' 2>&1)"
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
orig_ld=${LD_LIBRARY_PATH-} # Python's torch runs with the machine's own libraries
parity="" bench="" device_step="" train_bench=""
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
  train_bench=.gpu/bin/bench_train_device
  note "binaries" "carried bundle .gpu (libraries unpacked to $libdir)"
else
  export LD_LIBRARY_PATH="${cuda_dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  build_log="$logs/build.log"
  if command -v meson >/dev/null && command -v ninja >/dev/null && command -v nvcc >/dev/null; then
    if step "build (meson, -Dcuda=enabled)" "$build_log" 300 1 \
         bash -c 'meson setup build-gpu -Dcuda=enabled -Dnative=false --reconfigure || meson setup build-gpu -Dcuda=enabled -Dnative=false; ninja -C build-gpu tests/kernels/test_backend_ops tests/test_device_step tests/bench_backend_ops tests/bench_train_device'; then
      parity=build-gpu/tests/kernels/test_backend_ops
      device_step=build-gpu/tests/test_device_step
      bench=build-gpu/tests/bench_backend_ops
      train_bench=build-gpu/tests/bench_train_device
    fi
  else
    note "build" "FAIL: no carried bundle (.gpu) and meson, ninja or nvcc missing; run tests/gpu/prepare.sh on the development machine and carry .gpu"
    failed=1
  fi
fi
if [ -n "$parity" ]; then
  missing=$(ldd "$parity" "$device_step" "$bench" "$train_bench" 2>&1 | grep 'not found' | sort -u)
  if [ -n "$missing" ]; then
    note "shared libraries" "FAIL: $(echo "$missing" | awk '{print $1}' | tr '\n' ' ')not found"
    failed=1
    parity=""
  else
    note "shared libraries" "all found ($(ldd "$parity" | grep -E 'cublas|cudart' | awk '{print $3}' | tr '\n' ' '))"
  fi
fi

# ---- 3. parity and the training runs ----
if [ -n "$parity" ]; then
  export LORASC_REQUIRE_CUDA=1
  step "parity (every op, CUDA vs CPU vs double)" "$logs/parity.log" 150 1 "$parity"
  if grep -q '^worst |err|' "$logs/parity.log"; then
    grep -E '^  (cpu|cuda) |^SKIP|elements|differ' "$logs/parity.log" | head -20
    sed -n '/^worst |err|/,$p' "$logs/parity.log" | head -45
  else
    tail -20 "$logs/parity.log"
  fi
  step "training runs, CUDA vs CPU (device_step)" "$logs/device_step.log" 150 1 "$device_step"
  grep -E '^worst|SKIP|FAILED|ERROR|a step that cannot run|reads and' "$logs/device_step.log" | head -16

  # ---- 4. the training-step benchmark, lorasc and PyTorch + PEFT ----
  # the bf16 base and bf16 stored activations by default: the precision PEFT's side runs in
  # (LORASC_BENCH_PRECISION=fp32 LORASC_BENCH_ACTIVATIONS=fp32 for the all-fp32 path)
  prec=${LORASC_BENCH_PRECISION:-bf16}
  acts=${LORASC_BENCH_ACTIVATIONS:-bf16}
  step "lorasc training step (Llama-2-7B shape, $prec base, $acts activations)" "$logs/bench_train.log" 180 1 \
    "$train_bench" --device cuda --precision "$prec" --activations "$acts" \
    --shape llama2-7b --seq 1024 --steps 4 --boundaries 2 --json "$out/bench_train.json"
  grep -vE '^\{|^== ' "$logs/bench_train.log" | tail -12
  batch=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["batch"])' "$out/bench_train.json" 2>/dev/null || echo 8)
  step "PyTorch + PEFT, same model and step (batch $batch)" "$logs/peft.log" 180 0 \
    env LD_LIBRARY_PATH="$orig_ld" PYTHONUNBUFFERED=1 python3 tests/bench/peft_gpu.py \
    --batch "$batch" --seq 1024 --steps 4 --warmup 2 --json "$out/peft.json"
  tail -3 "$logs/peft.log" | cut -c1-400
  python3 tests/gpu/bench_summary.py llama "$out/bench_train.json" "$out/peft.json" > "$out/bench_summary.txt" 2>&1
  cat "$out/bench_summary.txt"

  # ---- 5. compute-sanitizer ----
  cs=$(command -v compute-sanitizer || { [ -x /usr/local/cuda/bin/compute-sanitizer ] && echo /usr/local/cuda/bin/compute-sanitizer; } || true)
  if [ -n "$cs" ]; then
    LORASC_TEST_FILTER='test_*_runs' step "memcheck (training runs)" "$logs/memcheck_step.log" 150 1 \
      "$cs" --tool memcheck --leak-check full --error-exitcode 3 "$device_step"
    LORASC_TEST_FILTER='test_*attention' step "racecheck (attention)" "$logs/racecheck.log" 150 1 \
      "$cs" --tool racecheck --racecheck-report all --error-exitcode 3 "$parity"
    step "memcheck (whole parity suite)" "$logs/memcheck.log" 180 1 \
      "$cs" --tool memcheck --leak-check full --error-exitcode 3 "$parity"
    LORASC_TEST_FILTER='test_*attention' step "synccheck (attention)" "$logs/synccheck.log" 90 1 \
      "$cs" --tool synccheck --error-exitcode 3 "$parity"
    LORASC_TEST_FILTER='test_norms' step "initcheck (norms and their column sums)" \
      "$logs/initcheck.log" 60 0 "$cs" --tool initcheck --error-exitcode 3 "$parity"
    for f in memcheck_step racecheck memcheck synccheck initcheck; do
      [ -f "$logs/$f.log" ] || continue
      grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|========= (Invalid|Race|Barrier|Uninit)' "$logs/$f.log" | sort | uniq -c | head -5 | sed "s/^/  $f: /"
    done
  else
    note "compute-sanitizer" "FAIL: not found on this machine"
    failed=1
  fi
  # ---- 5b. the ViT shape (after the required steps: reported only) ----
  # CLIP ViT-B/16's vision tower at 224 x 224, 1,000 classes, LoRA r 8 on q, v
  # and the head: lorasc, then PEFT at its batch; their JSON lines go in the logs (the device
  # tool brings back 8 files at most), the comparison into bench_summary.txt
  step "lorasc training step (ViT-B/16 shape, $prec base, $acts activations)" "$logs/bench_vit.log" 90 0 \
    "$train_bench" --device cuda --precision "$prec" --activations "$acts" \
    --shape vit-b16 --steps 4 --json "$logs/bench_vit.json"
  grep -vE '^\{|^== ' "$logs/bench_vit.log" | tail -6
  vbatch=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["batch"])' "$logs/bench_vit.json" 2>/dev/null || echo 64)
  step "PyTorch + PEFT, same ViT and step (batch $vbatch)" "$logs/peft_vit.log" 90 0 \
    env LD_LIBRARY_PATH="$orig_ld" PYTHONUNBUFFERED=1 python3 tests/bench/peft_gpu.py \
    --model vit --batch "$vbatch" --steps 4 --warmup 2 --json "$logs/peft_vit.json"
  tail -2 "$logs/peft_vit.log" | cut -c1-400
  python3 tests/gpu/bench_summary.py vit "$logs/bench_vit.json" "$logs/peft_vit.json" >> "$out/bench_summary.txt" 2>&1
  tail -3 "$out/bench_summary.txt"

  # ---- 6. the op benchmark ----
  step "op benchmark (Llama-2-7B layer shapes)" "$logs/bench.log" 90 0 "$bench" cuda
  [ -f "$logs/bench.log" ] && sed -n '/^ceilings/,$p' "$logs/bench.log"
fi

note "total" "$(( $(date +%s) - t_start )) s of the ${budget} s budget, $([ $failed -eq 0 ] && echo 'all required steps passed' || echo 'FAILED (see above)')"
cp "$env_txt" "$logs/" 2>/dev/null
pack && rm -rf "$logs" # the tarball holds them: fewer files to bring back
echo "---- summary ($summary)"
cat "$summary"
exit $failed
