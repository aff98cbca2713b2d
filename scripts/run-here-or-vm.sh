# shellcheck shell=bash
# Runs a command where spanalloc.ko is loaded: on this machine when it
# already has /dev/spanalloc, or can load the module (root, and a build
# tree for the running kernel); in a VM (scripts/vm-run) otherwise.
# Sourced by demo.sh and bench.sh: sa_run_with_module CMD...
sa_run_with_module() {
	local repo
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	if [ -c /dev/spanalloc ]; then
		echo "spanalloc: using this machine's /dev/spanalloc" >&2
		"$@"
	elif [ "$(id -u)" = 0 ] && [ -d "/lib/modules/$(uname -r)/build" ] &&
	     make -C "$repo" modules >&2 && insmod "$repo/spanalloc.ko"; then
		echo "spanalloc: loaded spanalloc.ko into this machine's kernel" >&2
		local rc=0
		"$@" || rc=$?
		rmmod spanalloc
		return $rc
	else
		echo "spanalloc: this machine cannot load modules: running in a VM (${SPANALLOC_KERNEL:-6.1})" >&2
		"$repo/scripts/vm-run" --kernel "${SPANALLOC_KERNEL:-6.1}" -- "$@"
	fi
}
