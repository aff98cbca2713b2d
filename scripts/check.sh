#!/usr/bin/env bash
# check.sh: every test of the project (make check runs it after building).
#   1. the generated size class headers match a fresh run of their generator
#   2. kernel code lint: checkpatch --strict, sparse, W=1 on 6.1 and 6.12;
#      the man pages cover every public function, module parameter and
#      tracepoint
#   3. native unit tests under ASan and UBSan; the Debian packages build,
#      ship what they should, and DKMS builds the module from them for 6.1
#      and 6.12
#   4. the kselftests (device, reclaim, library, stress, gc) and a short fuzzer
#      run in a VM booting Debian's 6.1 kernel, then 6.12, with the
#      collector's tests also under ThreadSanitizer on 6.1; the VM run itself
#      must end clean (no kernel warning, module unloads); then a VM per
#      series loads the DKMS-built module and runs the packaged libraries
#   5. on the debug kernel (KASAN, lockdep, kmemleak, DEBUG_VM, DEBUG_LIST,
#      fault injection; built into the cache on first use): the KUnit
#      suites, the whole selftest suite plus fault injection, and a longer
#      fuzzer run; any kernel report, a leak, or lockdep switched off fails
# Ends with one line "N passed, N failed". Skipped tests count as neither
# and are listed; under CI (CI=true) a skip fails the run, since CI must
# run everything. Exit status: 0 only if nothing failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo" || exit 1
log=build/check
mkdir -p "$log"
pass=0 fail=0
skipped=() failed=()

ok() { pass=$((pass + 1)); echo "PASS: $1"; }
bad() { fail=$((fail + 1)); failed+=("$1"); echo "FAIL: $1"; }
skip() { skipped+=("$1"); echo "SKIP: $1"; }
check() { local name=$1; shift; if "$@" > "$log/$name.log" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/    /' "$log/$name.log" | tail -n 40; fi; }

# Counts TAP results of one run: prefix, file, and the indent of the lines
# that count ("" for TAP; four spaces for KUnit's KTAP, whose indented
# lines are the test cases and whose suite lines only summarize them). A
# plan with fewer results than it announced (a crash) counts the missing
# ones as failures.
tap() {
	local prefix=$1 file=$2 in=${3:-} planned=0 seen=0 line name
	[ -f "$file" ] || { bad "$prefix no output"; return; }
	while IFS= read -r line; do
		case "$line" in
		"${in}1.."*) planned=$((planned + ${line#"${in}"1..})) ;;
		"${in}ok "*"# SKIP"*) seen=$((seen + 1)); name=${line#"${in}"ok }; skip "$prefix ${name#* }" ;;
		"${in}ok "*) seen=$((seen + 1)); name=${line#"${in}"ok }; ok "$prefix ${name#* }" ;;
		"${in}not ok "*) seen=$((seen + 1)); name=${line#"${in}"not ok }; bad "$prefix ${name#* }" ;;
		esac
	done < <(tr -d '\r' < "$file")
	if [ "$seen" -lt "$planned" ]; then
		for ((i = seen; i < planned; i++)); do bad "$prefix: test $((i + 1)) of $planned never reported"; done
	fi
	[ "$planned" -gt 0 ] || bad "$prefix: no TAP output"
}

# Fuzzer time per VM run: short on Debian's kernels, longer on the debug
# kernel where it matters most. Longer runs by hand: see README.
FUZZ_SHORT=${FUZZ_SHORT:-20}
FUZZ_DEBUG=${FUZZ_DEBUG:-60}
# Real programs under the drop-in, on every kernel. CPython's tests take
# minutes under emulation (the whole subset, 11 minutes of the 6.1 run in
# one worker): 6.1 runs the whole subset, 6.12 and the debug kernel (KASAN
# makes it several times slower) a few of them, which keeps a cold-cache
# make check well inside CI's 90 minutes (README: the time measured).
PROGRAMS=${PROGRAMS:-cxx sqlite redis python}
PY_TESTS_DEBUG=${PY_TESTS_DEBUG:-test_dict test_list test_gc test_weakref test_threading}

sizeclasses_fresh() {
	build/mksizeclasses | diff -u uapi/linux/spanalloc-sizeclasses.h - &&
		build/mksizeclasses table | diff -u include/spanalloc-classtable.h -
}
check sizeclasses_header_is_generated sizeclasses_fresh

# Every public function is in spanalloc(3), every module parameter and
# tracepoint in spanalloc(7); each page renders without a warning.
man_pages_cover() {
	local f name rc=0
	. scripts/kernel-env.sh && sa_need_pkgs groff-base || return 1
	for f in docs/man/*.[137]; do
		[ -z "$(groff -man -ww -z "$f" 2>&1)" ] || { echo "$f: groff warns"; rc=1; }
	done
	for name in $(sed -n 's/^[a-z].*[ *]\(sa_[a-z0-9_]*\)(.*/\1/p' userlib/spanalloc.h); do
		grep -qw "$name" docs/man/spanalloc.3 || { echo "spanalloc(3) lacks $name"; rc=1; }
	done
	for name in $(sed -n 's/^module_param_named(\([a-z_]*\),.*/\1/p' kmod/*.c) \
		$(sed -n 's/^TRACE_EVENT(\([a-z_]*\),/\1/p' kmod/spanalloc_trace.h); do
		grep -qw "$name" docs/man/spanalloc.7 || { echo "spanalloc(7) lacks $name"; rc=1; }
	done
	return $rc
}
check man_pages_cover_the_api_parameters_and_tracepoints man_pages_cover
check checkpatch_strict scripts/lint.sh checkpatch
check sparse_6.1_and_6.12 scripts/lint.sh sparse
check module_builds_without_warnings_6.1 scripts/lint.sh w1 6.1
check module_builds_without_warnings_6.12 scripts/lint.sh w1 6.12
check module_and_kunit_build_without_warnings_debug scripts/lint.sh w1 debug
check sparse_debug_with_kunit scripts/lint.sh sparse debug

build/native/unit_test > "$log/unit.tap" 2>&1
tap "native(asan,ubsan):" "$log/unit.tap"

# Debian packages and DKMS (scripts/package.sh): built from a copy of the
# tree, unpacked and inspected, the module built by dkms from the packaged
# source for 6.1 and 6.12; the VM runs below load that module.
check debian_packages_build scripts/package.sh build
check debian_packages_ship_everything_and_dkms_builds_for_6.1_and_6.12 scripts/package.sh check

# The real programs the drop-in runs in the VMs (programs.sh), from Debian,
# and valgrind (lib_test maps the heap under it, as make bench does).
. scripts/kernel-env.sh
sa_need_pkgs python3.11 libpython3.11-testsuite sqlite3 redis-server redis-tools valgrind golang-go linux-perf ||
	bad "the real programs' Debian packages are installed"

for series in 6.1 6.12; do
	echo "== selftests in a VM, Linux $series (at $((SECONDS / 60)) min)"
	# The collector's tests under ThreadSanitizer: user space only, so
	# one kernel series is enough.
	tsan= py=
	[ "$series" = 6.1 ] && tsan=--tsan
	[ "$series" = 6.1 ] || py="PY_TESTS='$PY_TESTS_DEBUG'"
	# The TAP lines carry the tests' verdicts; vm-run's own status says
	# whether the guest kernel stayed clean and the module unloaded.
	if scripts/vm-run --kernel "$series" -- sh -c "$py selftests/run.sh $tsan --fuzz $FUZZ_SHORT --programs '$PROGRAMS'; exit 0" 2>&1 |
		tee "$log/vm-$series.log"; then
		ok "vm $series: run ends clean (no kernel warning, module unloads)"
	else
		bad "vm $series: run ends clean (no kernel warning, module unloads)"
	fi
	tap "vm $series:" "$log/vm-$series.log"
	# the module DKMS built from the package, loaded, with the packaged
	# libraries and drop-in
	check "packages_in_vm_${series}_dkms_module_example_and_dropin" \
		scripts/vm-run --kernel "$series" --no-module -- scripts/package.sh vm-test
done

echo "== KUnit, selftests, fault injection and the fuzzer on the debug kernel (at $((SECONDS / 60)) min)"
rm -f "$log/kunit.ktap"
if scripts/vm-run --kernel debug --kunit "$log/kunit.ktap" -- sh -c \
	"PY_TESTS='$PY_TESTS_DEBUG' REDIS_REQUESTS=2000 selftests/run.sh --fuzz $FUZZ_DEBUG --programs '$PROGRAMS' spanalloc_test observe_test reclaim_test fault_test lib_test stress_test gc_test gc_roots_test gc_stress_test dropin_test; exit 0" 2>&1 |
	tee "$log/vm-debug.log"; then
	ok "vm debug: run ends clean (no KASAN, lockdep, DEBUG_VM, list or atomic-sleep report, kmemleak clean, lockdep still on, module unloads)"
else
	bad "vm debug: run ends clean (no KASAN, lockdep, DEBUG_VM, list or atomic-sleep report, kmemleak clean, lockdep still on, module unloads)"
fi
tap "vm debug:" "$log/vm-debug.log"
tap "kunit:" "$log/kunit.ktap" "    "

echo
if [ ${#skipped[@]} -gt 0 ]; then
	echo "Skipped (${#skipped[@]}):"
	printf '  %s\n' "${skipped[@]}"
	if [ "${CI:-}" = true ]; then
		echo "!!! CI must run every test: the skips above fail this run !!!"
	fi
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "Failed (${#failed[@]}):"
	printf '  %s\n' "${failed[@]}"
fi
echo "== done in $((SECONDS / 60)) min"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] || exit 1
[ ${#skipped[@]} -eq 0 ] || [ "${CI:-}" != true ] || exit 1
exit 0
