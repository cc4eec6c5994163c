#!/usr/bin/env bash
# The hash cache across processes (lua/lorasc/hash_cache.lua): what a command pays to take
# an image folder's provenance (provenance.path_sha256, its tree hash) with no cache (every
# command before it), the first time with one (hashing, recording, saving), and every later
# time (a stat, a realpath and a lookup per file). The tree: N files of SIZE bytes (default
# 10,000 of 110 KB, ImageNet's mean JPEG), in 1,000-file class folders. The files are in the
# page cache after they are written, so "no cache" is the hashing's CPU alone; from a cold
# disk or a network file system it costs more, the cached path does not. Not a test.
#
#   tests/bench/bench_hash_cache.sh [--files N] [--size BYTES] [--lorasc PATH]
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LORASC=$ROOT/build/lua/lorasc
N=10000
SIZE=110000
while [ $# -gt 0 ]; do
  case $1 in
    --files) N=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --lorasc) LORASC=$2; shift ;;
    *) echo "usage: $0 [--files N] [--size BYTES] [--lorasc PATH]" >&2; exit 2 ;;
  esac
  shift
done
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
python3 - "$W/tree" "$N" "$SIZE" <<'PY'
import os, sys
root, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    d = os.path.join(root, "n%05d" % (i // 1000))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "img%06d.JPEG" % i), "wb") as f:
        f.write(os.urandom(size))
PY
sleep 3 # files changed in the last 2 s are hashed but not recorded (hash_cache.RECENT_S)

cat > "$W/take.lua" <<'EOF'
local provenance = require "lorasc.provenance"
local sys = require "lorasc.core.sys"
local tree, cache = ...
if cache ~= "none" then provenance.use_hash_cache(cache) end
local t0 = sys.now()
local h = provenance.path_sha256(tree)
io.write(string.format("%.3f %s\n", sys.now() - t0, h))
EOF
take() { "$LORASC" lua "$W/take.lua" "$W/tree" "$1"; }
read -r none h0 <<< "$(take none)"
read -r first h1 <<< "$(take "$W/cache")"
read -r later h2 <<< "$(take "$W/cache")"
[ "$h0" = "$h1" ] && [ "$h1" = "$h2" ] || { echo "the tree hashes differ: $h0 $h1 $h2" >&2; exit 1; }
mb=$(( N * SIZE / 1000000 ))
echo "tree: $N files of $SIZE bytes ($mb MB); cache file $(du -ck "$W"/cache/file_hashes*.tsv | tail -1 | cut -f1) KiB"
printf "no cache (every command):  %8.3f s\n" "$none"
printf "first, recording:          %8.3f s (%.2fx no cache)\n" "$first" "$(echo "$first / $none" | bc -l)"
printf "later, from the cache:     %8.3f s (%.1fx faster than no cache)\n" "$later" "$(echo "$none / $later" | bc -l)"
