#!/bin/sh
# run.sh: runs every spanalloc selftest binary (TAP each) and exits non-zero
# if any failed. Meant to run where /dev/spanalloc exists: scripts/vm-run
# selftests/run.sh. Binaries come from build/selftests (make selftests).
dir=$(cd "$(dirname "$0")/.." && pwd)/build/selftests
rc=0
for t in spanalloc_test reclaim_test lib_test stress_test; do
	echo "# spanalloc selftest: $t"
	"$dir/$t" || rc=1
done
exit $rc
