#!/bin/sh
# gcbench.sh: GCBench and binary-trees with libspanalloc's collector and
# with Boehm GC, alternating, RUNS times each (default 3), in one place
# (bench.sh runs it in the same VM boot as the allocator benchmarks).
# Prints every run's BENCH line, then the medians and the ratios
# spanalloc / boehm (below 1: spanalloc is faster or smaller).
#   GCBENCH_DEPTH   binary-trees depth (default 18)
#   GCBENCH_RUNS    runs per benchmark and collector (default 3)
build=$(cd "$(dirname "$0")/.." && pwd)/build/tools
depth=${GCBENCH_DEPTH:-18}
runs=${GCBENCH_RUNS:-3}
out=$(mktemp)
rc=0
for b in gcbench binarytrees; do
	i=0
	while [ $i -lt "$runs" ]; do
		for impl in spanalloc boehm; do
			if [ ! -x "$build/gcbench-$impl" ]; then
				echo "gcbench: $build/gcbench-$impl is missing" >&2
				rc=1
				continue
			fi
			line=$("$build/gcbench-$impl" $b "$depth") || rc=1
			echo "$line"
			echo "$line" >> "$out"
		done
		i=$((i + 1))
	done
done
awk -v depth="$depth" '
function med(a, n,   i, j, t) {
	for (i = 1; i <= n; i++)
		for (j = i + 1; j <= n; j++)
			if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
/^BENCH / {
	for (f = 2; f <= NF; f++) { split($f, kv, "="); v[kv[1]] = kv[2] }
	k = v["name"] SUBSEP v["impl"]
	n[k]++
	for (m in v) if (m != "name" && m != "impl") vals[k, m, n[k]] = v[m]
	names[v["name"]] = 1
}
END {
	split("wall_s cpu_s rss_kb gcs max_pause_ms", ms, " ")
	for (b in names) {
		printf "\n%s%s (median of %d runs)\n", b, b == "binarytrees" ? " depth " depth : "", n[b SUBSEP "spanalloc"]
		printf "  %-10s %10s %10s %10s %6s %14s\n", "", "wall s", "cpu s", "peak RSS KiB", "GCs", "max pause ms"
		for (ii = 1; ii <= 2; ii++) {
			impl = ii == 1 ? "spanalloc" : "boehm"
			k = b SUBSEP impl
			printf "  %-10s", impl
			for (mi = 1; mi <= 5; mi++) {
				delete a
				for (r = 1; r <= n[k]; r++) a[r] = vals[k, ms[mi], r]
				res[impl, ms[mi]] = med(a, n[k])
				printf mi == 3 ? " %12d" : mi == 4 ? " %6d" : mi == 5 ? " %14.1f" : " %10.3f", res[impl, ms[mi]]
			}
			printf "\n"
		}
		printf "  %-10s", "ratio"
		for (mi = 1; mi <= 5; mi++) {
			d = res["boehm", ms[mi]]
			printf mi == 3 ? " %12.2f" : mi == 4 ? " %6.2f" : mi == 5 ? " %14.2f" : " %10.2f", d ? res["spanalloc", ms[mi]] / d : 0
		}
		printf "   (spanalloc / boehm)\n"
	}
}' "$out"
grep -q WRONG "$out" && { echo "gcbench: a benchmark computed a wrong result" >&2; rc=1; }
rm -f "$out"
exit $rc
