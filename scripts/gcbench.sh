#!/bin/sh
# gcbench.sh: GCBench and binary-trees with libspanalloc's collector and
# with Boehm GC (parallel markers), and binary-trees on Go's runtime, in
# one place (bench.sh runs it in the same VM boot as the allocator
# benchmarks). Each collector runs
#   - as configured by default: spanalloc with end pointers on, Boehm with
#     ALL_INTERIOR_POINTERS: both add a byte to every object;
#   - "exact": neither adds it (spanalloc end pointers off, Boehm
#     GC_set_all_interior_pointers(0));
#   - "spanalloc-matched": spanalloc held to the peak RSS Boehm's default
#     runs reached in this boot (GOGC off, SPANALLOC_GOMEMLIMIT scaled by
#     two calibration runs until the peak RSS is Boehm's), so that pauses are
#     compared at the same heap size.
# Implementations alternate, RUNS times each (default 3). Prints every
# run's BENCH line, then the medians, and the ratios to Boehm's default
# (below 1: spanalloc is faster or smaller). A pause is the time the world
# is stopped (see tools/gcbench.c and tools/binarytrees.go).
#   GCBENCH_DEPTH   binary-trees depth (default 18)
#   GCBENCH_RUNS    runs per benchmark and implementation (default 3)
build=$(cd "$(dirname "$0")/.." && pwd)/build/tools
depth=${GCBENCH_DEPTH:-18}
runs=${GCBENCH_RUNS:-3}
out=$(mktemp)
rc=0

# run LABEL ENV... -- CMD...: one BENCH line, relabelled, into $out.
run() {
	label=$1
	shift
	line=$(env "$@") || rc=1
	line=$(echo "$line" | sed "s/ impl=[^ ]*/ impl=$label/")
	echo "$line"
	echo "$line" >> "$out"
}

# The median peak RSS (KiB) of Boehm's default runs of benchmark $1.
boehm_rss() {
	awk -v b="$1" '$2 == "name=" b && $3 == "impl=boehm" {
		sub("rss_kb=", "", $6); v[++n] = $6 }
	END { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
		if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
	      print n ? v[int((n + 1) / 2)] : 0 }' "$out"
}

for b in gcbench binarytrees; do
	have_boehm=1
	[ -x "$build/gcbench-boehm" ] || { echo "gcbench: $build/gcbench-boehm is missing" >&2; rc=1; have_boehm=0; }
	i=0
	while [ $i -lt "$runs" ]; do
		run spanalloc "$build/gcbench-spanalloc" $b "$depth"
		run spanalloc-exact GCBENCH_VARIANT=exact "$build/gcbench-spanalloc" $b "$depth"
		if [ $have_boehm = 1 ]; then
			run boehm "$build/gcbench-boehm" $b "$depth"
			run boehm-exact GCBENCH_VARIANT=exact "$build/gcbench-boehm" $b "$depth"
		fi
		if [ $b = binarytrees ]; then
			if [ -x "$build/binarytrees-go" ]; then
				run go "$build/binarytrees-go" $b "$depth"
			else
				echo "gcbench: $build/binarytrees-go is missing" >&2
				rc=1
			fi
		fi
		i=$((i + 1))
	done
	rss=$(boehm_rss $b)
	if [ "$rss" -gt 0 ]; then
		# The limit bounds the heap's spans, not the process's RSS: two
		# calibration runs scale it so that the peak RSS comes out at
		# Boehm's.
		lim=$rss
		for c in 1 2; do
			got=$(env SPANALLOC_GOGC=off SPANALLOC_GOMEMLIMIT=${lim}KiB \
				"$build/gcbench-spanalloc" $b "$depth" | sed -n 's/.* rss_kb=\([0-9]*\).*/\1/p')
			[ -n "$got" ] && [ "$got" -gt 0 ] && lim=$((lim * rss / got))
		done
		echo "gcbench: $b: Boehm's median peak RSS $rss KiB; spanalloc-matched runs with SPANALLOC_GOMEMLIMIT=${lim}KiB"
		i=0
		while [ $i -lt "$runs" ]; do
			run spanalloc-matched SPANALLOC_GOGC=off SPANALLOC_GOMEMLIMIT=${lim}KiB \
				"$build/gcbench-spanalloc" $b "$depth"
			i=$((i + 1))
		done
	fi
done
awk -v depth="$depth" '
function med(a, n,   i, j, t) {
	for (i = 1; i <= n; i++)
		for (j = i + 1; j <= n; j++)
			if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
/^BENCH / {
	delete v
	for (f = 2; f <= NF; f++) { split($f, kv, "="); v[kv[1]] = kv[2] }
	k = v["name"] SUBSEP v["impl"]
	n[k]++
	for (m in v) if (m != "name" && m != "impl") vals[k, m, n[k]] = v[m]
	names[v["name"]] = 1
}
END {
	nm = split("wall_s cpu_s rss_kb gcs stopped_ms max_pause_ms p50_pause_ms p90_pause_ms markers", ms, " ")
	ni = split("spanalloc spanalloc-exact spanalloc-matched boehm boehm-exact go", impls, " ")
	for (b in names) {
		printf "\n%s%s (median of runs; pauses: world stopped)\n", b, b == "binarytrees" ? " depth " depth : ""
		printf "  %-18s %7s %7s %9s %5s %10s %8s %9s %8s %8s %7s\n", "", "wall s", "cpu s",
		       "peak KiB", "GCs", "stopped ms", "stopped", "max ms", "p50 ms", "p90 ms", "markers"
		for (ii = 1; ii <= ni; ii++) {
			k = b SUBSEP impls[ii]
			if (!n[k])
				continue
			for (mi = 1; mi <= nm; mi++) {
				delete a
				for (r = 1; r <= n[k]; r++) a[r] = vals[k, ms[mi], r]
				res[impls[ii], ms[mi]] = med(a, n[k])
			}
			printf "  %-18s %7.2f %7.2f %9d %5d %10.0f %7.0f%% %9.1f %8.1f %8.1f %7d\n", impls[ii],
			       res[impls[ii], "wall_s"], res[impls[ii], "cpu_s"], res[impls[ii], "rss_kb"],
			       res[impls[ii], "gcs"], res[impls[ii], "stopped_ms"],
			       100 * res[impls[ii], "stopped_ms"] / 1000 / res[impls[ii], "wall_s"],
			       res[impls[ii], "max_pause_ms"], res[impls[ii], "p50_pause_ms"],
			       res[impls[ii], "p90_pause_ms"], res[impls[ii], "markers"]
		}
		split("spanalloc:boehm spanalloc-exact:boehm-exact spanalloc-matched:boehm", pairs, " ")
		for (pi = 1; pi <= 3; pi++) {
			split(pairs[pi], pr, ":")
			if (!n[b SUBSEP pr[1]] || !n[b SUBSEP pr[2]])
				continue
			printf "  %-18s", pr[1] "/" pr[2]
			split("wall_s cpu_s rss_kb gcs stopped_ms max_pause_ms p50_pause_ms", rm, " ")
			for (mi = 1; mi <= 7; mi++) {
				d = res[pr[2], rm[mi]]
				printf " %s=%.2f", rm[mi], d ? res[pr[1], rm[mi]] / d : 0
			}
			printf "\n"
		}
	}
}' "$out"
grep -q WRONG "$out" && { echo "gcbench: a benchmark computed a wrong result" >&2; rc=1; }
rm -f "$out"
exit $rc
