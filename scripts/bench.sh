#!/usr/bin/env bash
# bench.sh (make bench): every benchmark in one run of tools/bench, so in
# one VM boot when the host cannot load modules. Installs the peer
# allocators it compares against (jemalloc, mimalloc) when it can.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/kernel-env.sh
sa_need_pkgs libjemalloc2 libmimalloc2.0 valgrind || echo "bench: peers or valgrind not installed; comparing with what is there" >&2
. scripts/run-here-or-vm.sh
# jemalloc uses initial-exec TLS: let dlopen find room for it.
sa_run_with_module env GLIBC_TUNABLES=glibc.rtld.optional_static_tls=65536 build/tools/bench "$@"
