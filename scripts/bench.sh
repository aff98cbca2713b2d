#!/usr/bin/env bash
# bench.sh (make bench): every benchmark in one VM boot when the host cannot
# load modules: tools/bench (the allocator against its peers, jemalloc and
# mimalloc, installed when it can), scripts/realbench.sh (real programs and
# the classic allocator benchmarks under glibc, jemalloc, mimalloc,
# tcmalloc and the drop-in), then scripts/gcbench.sh (the collector
# against Boehm GC, libgc-dev, and Go's runtime, golang-go).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/kernel-env.sh
sa_need_pkgs libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 valgrind \
	python3.11 sqlite3 redis-server redis-tools ||
	echo "bench: peers, programs or valgrind not installed; comparing with what is there" >&2
# Boehm GC, the garbage collectors' peer, and Go's runtime, their reference.
sa_need_pkgs libgc-dev && make -s build/tools/gcbench-boehm ||
	echo "bench: Boehm GC (libgc-dev) not installed: the GC benchmarks run without it" >&2
sa_need_pkgs golang-go && make -s build/tools/binarytrees-go ||
	echo "bench: Go (golang-go) not installed: binary-trees runs without Go's runtime" >&2
. scripts/run-here-or-vm.sh
# jemalloc uses initial-exec TLS: let dlopen find room for it. One boot runs
# the allocator benchmarks, the real programs, then the GC benchmarks.
# BENCH_ONLY=real runs the real programs alone.
if [ "${BENCH_ONLY:-}" = real ]; then
	sa_run_with_module scripts/realbench.sh
else
	sa_run_with_module sh -c 'env GLIBC_TUNABLES=glibc.rtld.optional_static_tls=65536 build/tools/bench "$@" && scripts/realbench.sh && scripts/gcbench.sh' bench "$@"
fi
