#!/bin/sh
# demo-workload.sh: what make demo runs where the module is loaded (demo.sh
# decides where): the allocator's multi-threaded demo, then the garbage
# collector on binary-trees with Go-style gctrace lines, then the tools that
# look at a heap while it runs: spantop, spanview (a picture of the heap,
# build/demo-heap.svg) and a pprof heap profile (build/demo-heap.pprof).
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
[ $rc = 0 ] || exit $rc

echo
echo "== looking at a heap while it runs: binary-trees of depth 17"
out=$(cd "$build/.." && pwd)
rm -f "$out/demo-heap.pprof" "$out/demo-heap.svg"
SPANALLOC_HEAPPROFILE="$out/demo-heap.pprof" "$build/gcbench-spanalloc" binarytrees 17 > /dev/null 2>&1 &
pid=$!
for _ in $(seq 50); do
	grep -q "^heap [0-9]* $pid " /proc/spanallocinfo 2>/dev/null && break
	sleep 0.1
done
sleep 1
echo "-- spantop --once -d 1 (one second of rates)"
"$build/spantop" --once -d 1 -s exch | head -n 12
"$build/spanview" --pid "$pid" -o "$out/demo-heap.svg" &&
	echo "-- spanview --pid $pid: the heap drawn in build/demo-heap.svg"
wait $pid || exit 1
if command -v go > /dev/null && [ -s "$out/demo-heap.pprof" ]; then
	echo "-- go tool pprof -top: what allocated the bytes still in use at exit"
	HOME=${HOME:-/tmp} go tool pprof -top -nodecount=8 "$out/demo-heap.pprof" 2>&1 | sed -n '4,14p'
fi
exit 0
