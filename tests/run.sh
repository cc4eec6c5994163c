#!/usr/bin/env bash
# The whole test suite: the release build's tests, then the bad-input and gradient tests
# again under AddressSanitizer + UndefinedBehaviorSanitizer. Prints meson's summary lines.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

meson setup build --reconfigure >/dev/null 2>&1 || meson setup build
meson compile -C build
meson test -C build --print-errorlogs --num-processes "$jobs"

# Sanitizers: a debug build (no -march=native tricks needed), only the tests that parse
# files and walk every code path; ASan would make the numeric-heavy ones slow.
meson setup build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false \
  --reconfigure >/dev/null 2>&1 || \
  meson setup build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
meson compile -C build-asan
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-asan --print-errorlogs --num-processes "$jobs" \
  checkpoint lora gradcheck_model golden train stories260k store cascade bpe bpe_smollm2 \
  huge_sizes bad_data_files model_limits
