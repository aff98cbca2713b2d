#!/usr/bin/env bash
# lint.sh: the kernel code's style and static checks.
#   scripts/lint.sh checkpatch      checkpatch.pl --strict --no-tree on kmod/, uapi/ and include/
#   scripts/lint.sh sparse [SERIES] make C=2 against 6.1 and 6.12 (or SERIES: 6.1,
#                                   6.12 or debug); any sparse report fails
#   scripts/lint.sh w1 SERIES       make W=1 against SERIES (6.1, 6.12 or debug,
#                                   which builds the KUnit module too); any warning fails
#   scripts/lint.sh                 all of the above, both series
# checkpatch.pl comes from Debian's linux-source-6.1 (extracted into the cache).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/kernel-env.sh"
cd "$SA_REPO" || exit 1

checkpatch() {
	local src out
	src=$(sa_linux_source) || return 1
	out=$(perl "$src/scripts/checkpatch.pl" --strict --no-tree --terse --show-types \
		-f kmod/*.c kmod/*.h kmod/tests/*.c uapi/linux/*.h include/*.h 2>&1 | grep -v '^total:')
	if [ -n "$out" ]; then
		echo "$out"
		return 1
	fi
	echo "checkpatch --strict: clean"
}

# Builds a copy of the module for SERIES with extra make arguments; prints
# the compiler's and sparse's reports, fails if there are any.
kbuild_check() {
	local series=$1 abi kdir out log; shift
	if [ "$series" = debug ]; then
		# the debug kernel has KUnit: the KUnit module is built too
		abi=debug
		kdir=$(sa_debug_kernel) || return 1
	else
		abi=$(sa_kernel_abi "$series") || return 1
		kdir=$(sa_headers_dir "$abi") || return 1
	fi
	out=$SA_REPO/build/lint-$abi
	rm -rf "$out"
	sa_copy_module_sources "$out"
	log=$(make -C "$kdir" M="$out" "$@" modules 2>&1)
	local rc=$?
	if [ $rc != 0 ] || echo "$log" | grep -Eq '(warning|error):'; then
		echo "$log" | grep -E '(warning|error):|Error|\*\*\*'
		return 1
	fi
	echo "$series ($abi) $*: clean"
}

case "${1:-all}" in
checkpatch) checkpatch ;;
sparse)
	sa_need_pkgs sparse || exit 1
	if [ -n "${2:-}" ]; then
		kbuild_check "$2" C=2
	else
		kbuild_check 6.1 C=2 && kbuild_check 6.12 C=2
	fi ;;
w1) kbuild_check "${2:-6.1}" W=1 ;;
all)
	rc=0
	checkpatch || rc=1
	sa_need_pkgs sparse && kbuild_check 6.1 C=2 || rc=1
	kbuild_check 6.12 C=2 || rc=1
	kbuild_check 6.1 W=1 || rc=1
	kbuild_check 6.12 W=1 || rc=1
	exit $rc ;;
*) echo "usage: $0 [checkpatch|sparse|w1 SERIES]" >&2; exit 2 ;;
esac
