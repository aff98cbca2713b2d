#!/bin/sh
# demo-workload.sh: what make demo runs where the module is loaded (demo.sh
# decides where): the allocator's multi-threaded demo, then the garbage
# collector on binary-trees with Go-style gctrace lines.
build=$(cd "$(dirname "$0")/.." && pwd)/build/tools
"$build/demo" "$@" || exit 1
echo
echo "== the garbage collector: binary-trees of depth 14 (SPANALLOC_GCTRACE=1: a line per cycle)"
SPANALLOC_GCTRACE=1 "$build/gcbench-spanalloc" binarytrees 14 > /tmp/demo-gc.out 2>&1
rc=$?
head -n 6 /tmp/demo-gc.out
echo "..."
grep "^gc " /tmp/demo-gc.out | tail -n 2
grep "^BENCH" /tmp/demo-gc.out
rm -f /tmp/demo-gc.out
exit $rc
