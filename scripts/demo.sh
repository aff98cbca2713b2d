#!/usr/bin/env bash
# demo.sh (make demo): the allocator on a multi-threaded workload, then the
# garbage collector on binary-trees with a trace line per cycle, on this
# machine if it can load the module, else in a VM (one boot for both).
# SPANALLOC_KERNEL picks the VM's kernel series (6.1, 6.12).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/run-here-or-vm.sh
sa_run_with_module sh -c 'build/tools/demo "$@" || exit 1
echo
echo "== the garbage collector: binary-trees of depth 14, one gctrace line per cycle"
SPANALLOC_GCTRACE=1 build/tools/gcbench-spanalloc binarytrees 14 2>&1 | sed -n "1,8p;\$p"' demo "$@"
