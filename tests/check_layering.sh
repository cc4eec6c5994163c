#!/bin/sh
# The house plan, enforced: dependencies point one way (lua -> core -> kernels), and inside
# core/ tasks -> model, data, formats; formats -> model; model -> base; data, store -> base.
# Fails, naming file:line, when a file includes a folder its layer may not use.
# Usage: check_layering.sh SOURCE_ROOT
root=${1:-.}
cd "$root" || exit 2
status=0
# allowed ROOM: the include prefixes a file under ROOM may use (besides its own room)
allowed() {
  case $1 in
    kernels) echo "kernels/" ;;
    core/base) echo "kernels/ core/base/" ;;
    core/model) echo "kernels/ core/base/ core/model/" ;;
    core/formats) echo "kernels/ core/base/ core/model/ core/formats/" ;;
    core/data) echo "kernels/ core/base/ core/data/" ;;
    core/store) echo "kernels/ core/base/ core/store/" ;;
    core/tasks) echo "kernels/ core/base/ core/model/ core/data/ core/formats/ core/tasks/" ;;
    lua) echo "kernels/ core/ lua/ lorasc_" ;;
  esac
}
for room in kernels core/base core/model core/formats core/data core/store core/tasks lua; do
  [ -d "$room" ] || { echo "check_layering: missing folder $room"; status=1; continue; }
  ok=$(allowed "$room")
  for f in $(find "$room" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \)); do
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | while IFS= read -r line; do
      inc=$(printf '%s' "$line" | sed 's/.*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/')
      case $inc in */*) ;; *) continue ;; esac  # same-folder includes
      good=0
      for p in $ok; do case $inc in "$p"*) good=1 ;; esac; done
      if [ $good -eq 0 ]; then
        echo "$f:${line%%:*}: includes \"$inc\", which $room/ may not use (allowed: $ok)"
        echo x >> "${TMPDIR:-/tmp}/lorasc_layering.$$"
      fi
    done
  done
done
# a core/ file outside any room breaks the plan too
for f in core/*.c core/*.h; do
  [ -e "$f" ] && { echo "$f: core/ files live in a room (base, model, formats, data, tasks, store)"; status=1; }
done
if [ -e "${TMPDIR:-/tmp}/lorasc_layering.$$" ]; then rm -f "${TMPDIR:-/tmp}/lorasc_layering.$$"; status=1; fi
[ $status -eq 0 ] && echo "layering ok: kernels/ <- core/{base <- model <- formats, data, store} <- tasks <- lua/"
exit $status
