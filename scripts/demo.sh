#!/usr/bin/env bash
# demo.sh (make demo): the allocator on a multi-threaded workload, then the
# garbage collector on binary-trees (scripts/demo-workload.sh), on this
# machine if it can load the module, else in a VM (one boot for both).
# SPANALLOC_KERNEL picks the VM's kernel series (6.1, 6.12).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/run-here-or-vm.sh
sa_run_with_module scripts/demo-workload.sh "$@"
