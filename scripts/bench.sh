#!/usr/bin/env bash
# bench.sh (make bench): every benchmark in one VM boot when the host cannot
# load modules: tools/bench (the allocator against its peers, jemalloc and
# mimalloc, installed when it can), then scripts/gcbench.sh (the collector
# against Boehm GC, libgc-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/kernel-env.sh
sa_need_pkgs libjemalloc2 libmimalloc2.0 valgrind || echo "bench: peers or valgrind not installed; comparing with what is there" >&2
# Boehm GC, the garbage collectors' peer.
sa_need_pkgs libgc-dev && make -s build/tools/gcbench-boehm ||
	echo "bench: Boehm GC (libgc-dev) not installed: the GC benchmarks run without it" >&2
. scripts/run-here-or-vm.sh
# jemalloc uses initial-exec TLS: let dlopen find room for it. One boot runs
# the allocator benchmarks, then the GC benchmarks.
sa_run_with_module sh -c 'env GLIBC_TUNABLES=glibc.rtld.optional_static_tls=65536 build/tools/bench "$@" && scripts/gcbench.sh' bench "$@"
