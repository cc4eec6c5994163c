# Shared by the process-level tests of `lorasc` (test_*_cli.sh), sourced once they have read
# their arguments: moves into a fresh work directory removed on exit, skips (77) without the
# sqlite3 command, and defines what every one of them uses. Not a test itself.
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
export LORASC_PROGRESS=plain
command -v sqlite3 >/dev/null || { echo "sqlite3 command not found: skipped"; exit 77; }
FAILS=0
fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }  # counts, and the test goes on
q() { sqlite3 "$1" "$2"; }                             # q DB SQL: one query's rows

# Skips (77) unless Fashion-MNIST is installed (Debian's dataset-fashion-mnist) or mirrored.
need_fashion_mnist() {
  if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] &&
     [ ! -e "${LORASC_DATA:-data}/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
    echo "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): skipped"; exit 77
  fi
}

# cli_done NAME: the exit status, 1 if anything failed.
cli_done() {
  if [ "$FAILS" -gt 0 ]; then echo "$FAILS failure(s)" >&2; exit 1; fi
  echo "$1: all passed"
}
