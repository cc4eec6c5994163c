#!/usr/bin/env bash
# Prepares the bundle tests/gpu/check.sh runs on a GPU machine that cannot build lorasc (no
# OpenBLAS, cmocka, Lua, SQLite or jansson development files, no network): builds the CUDA
# parity test, the training-run test (test_device_step), the op benchmark and the training-step
# benchmark (bench_train_device) here (nvcc compiles for sm_90 without a GPU; -Dnative=false
# so the host code runs on any x86-64), and copies them into .gpu/ (in .gitignore: the device
# tool carries ignored paths named in `carry`) with the shared libraries a CUDA image lacks,
# xz-compressed (OpenBLAS is 36 MB raw, 4 MB compressed; the carried tree has a 64 MiB limit).
# cuBLAS and the CUDA runtime are not carried: the GPU machine has them.
# Usage: bash tests/gpu/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
nvcc_bin=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; } || true)
[ -n "$nvcc_bin" ] || { echo "prepare.sh: nvcc not found; install the CUDA toolkit (13.x)" >&2; exit 1; }
PATH="$(dirname "$nvcc_bin"):$PATH"
export PATH

meson setup build-gpu -Dcuda=enabled -Dnative=false --buildtype=release --reconfigure >/dev/null 2>&1 ||
  meson setup build-gpu -Dcuda=enabled -Dnative=false --buildtype=release
ninja -C build-gpu tests/kernels/test_backend_ops tests/test_device_step tests/bench_backend_ops \
  tests/bench_train_device

rm -rf .gpu
mkdir -p .gpu/bin .gpu/lib
cp build-gpu/tests/kernels/test_backend_ops build-gpu/tests/test_device_step \
  build-gpu/tests/bench_backend_ops build-gpu/tests/bench_train_device .gpu/bin/

# Libraries the binaries need that a CUDA image may lack: everything ldd resolves except libc's
# own, the compiler runtime every image with nvcc has, and CUDA's (found there, not carried).
ldd .gpu/bin/* | awk '/=>/ {print $1, $3}' | sort -u |
  while read -r name path; do
    case $name in
      libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) continue ;;
      libcudart.so*|libcublas.so*|libcublasLt.so*) continue ;;
    esac
    xz -9 -T2 -c "$path" > ".gpu/lib/$name.xz"
  done

{
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet || echo ' (uncommitted changes)')"
  echo "nvcc: $(nvcc --version | tail -2 | head -1)"
  echo "targets: sm_90 machine code + compute_90 PTX"
  echo "libraries carried (xz):"
  for f in .gpu/lib/*; do echo "  $(basename "$f") $(wc -c < "$f")"; done
} > .gpu/MANIFEST
cat .gpu/MANIFEST
du -sh .gpu
echo "carry .gpu with the run: run(command='bash tests/gpu/check.sh \$OUT', carry=['.gpu'])"
