#!/bin/sh
# run.sh: runs spanalloc selftest binaries (TAP each) and exits non-zero if
# any failed. Meant to run where /dev/spanalloc exists:
#   scripts/vm-run selftests/run.sh [--fuzz SECONDS] [test ...]
# Without test names it runs the suite every kernel runs; fault_test (which
# needs the debug kernel's fault injection) is named explicitly. --fuzz
# also runs tools/fuzz for that long, reported as one more TAP result;
# --programs "cxx sqlite redis python" runs those real programs under the
# drop-in (programs.sh) after the tests; --tsan also runs the collector's
# tests built with ThreadSanitizer (build/tsan), where any report fails
# the test it happens in (and gc_stress_test once more with heap profile
# sampling on). Binaries come from build/ (make
# selftests).
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$here/.." && pwd)/build
fuzz=0
programs=
tsan=0
while [ $# -gt 0 ]; do
	case "$1" in
	--fuzz) fuzz=$2; shift 2 ;;
	--programs) programs=$2; shift 2 ;;
	--tsan) tsan=1; shift ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || set -- spanalloc_test observe_test reclaim_test lib_test stress_test gc_test gc_roots_test gc_stress_test dropin_test profile_test
rc=0
for t in "$@"; do
	echo "# spanalloc selftest: $t"
	"$build/selftests/$t" || rc=1
done
if [ "$fuzz" -gt 0 ]; then
	echo "# spanalloc fuzzer: $fuzz s"
	echo "TAP version 13"
	echo "1..1"
	out=$("$build/tools/fuzz" --seconds "$fuzz" 2>&1)
	frc=$?
	echo "$out" | sed 's/^/# /'
	summary=$(echo "$out" | sed -n 's/^fuzz: \([0-9]* iterations.*\)/\1/p')
	if [ $frc = 0 ]; then
		echo "ok 1 fuzz: $summary"
	else
		echo "not ok 1 fuzz: $summary"
		rc=1
	fi
fi
# tsan_run TEST OUT [VAR=VALUE ...]: TEST's ThreadSanitizer build, in
# that environment, its output into OUT.
# A run still going after SA_HANG_DUMP seconds (each suite takes under a
# minute in the VM; the harness's timeouts are minutes more) gets every
# thread's stack of its processes printed, once, as "#" lines: a rare
# hang seen only under ThreadSanitizer leaves something to read.
tsan_run() {
	tname=$1 tout=$2
	shift 2
	env "$@" TSAN_OPTIONS="exitcode=66 halt_on_error=0 second_deadlock_stack=1 die_after_fork=0" \
		"$build/tsan/$tname" > "$tout" 2>&1 &
	pid=$!
	(
		# killed, it takes its sleep along: nothing holds the output open
		trap 'kill "$nap" 2>/dev/null; exit 0' TERM
		sleep "${SA_HANG_DUMP:-240}" &
		nap=$!
		wait "$nap"
		kill -0 "$pid" 2>/dev/null || exit 0
		echo "# $tname (ThreadSanitizer) still running after ${SA_HANG_DUMP:-240} s: its stacks"
		for p in $(pgrep -f "$build/tsan/$tname"); do
			echo "# == pid $p"
			gdb -batch -p "$p" -ex 'thread apply all bt' 2>&1 |
				grep -v '^\[New LWP' | head -800 | sed 's/^/#   /'
		done
	) &
	watch=$!
	wait "$pid"
	trc=$?
	kill "$watch" 2>/dev/null
	wait "$watch" 2>/dev/null
	return $trc
}
if [ "$tsan" = 1 ]; then
	for t in gc_test gc_roots_test gc_stress_test stress_test; do
		echo "# spanalloc selftest under ThreadSanitizer: $t"
		# A report makes the test's process exit 66: the harness fails
		# that test. Results are renamed "tsan ..." so they count apart
		# from the same tests' plain runs.
		tsan_run "$t" "$build/tsan/$t.out" || rc=1
		sed 's/^\(\(not \)\{0,1\}ok [0-9]* \)/\1tsan /' "$build/tsan/$t.out"
	done
	# Heap profile sampling at a small rate: its lock meets world stops,
	# sweeps and frees from every thread.
	echo "# spanalloc selftest under ThreadSanitizer, heap profile on: gc_stress_test"
	tsan_run gc_stress_test "$build/tsan/gc_stress_test.prof.out" SPANALLOC_PROFILE_RATE=4096 || rc=1
	sed 's/^\(\(not \)\{0,1\}ok [0-9]* \)/\1tsan profiled /' "$build/tsan/gc_stress_test.prof.out"
fi
if [ -n "$programs" ]; then
	echo "# real programs under the drop-in: $programs"
	# shellcheck disable=SC2086
	"$here/programs.sh" $programs || rc=1
fi
exit $rc
