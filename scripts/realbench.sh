#!/bin/sh
# realbench.sh: real programs and the classic allocator benchmarks under
# each allocator, in one boot (make bench runs it in the VM after
# tools/bench). Every program runs under glibc's malloc, jemalloc,
# mimalloc, tcmalloc and spanalloc (LD_PRELOAD of libspanalloc-malloc.so),
# the allocators alternating within each of RUNS rounds; the result is the
# median wall time and peak RSS per program and allocator, printed as
#   BENCH name=<program> impl=<allocator> wall_s=... rss_kb=...
# and as a table of ratios against glibc. For redis-server the time is
# redis-benchmark's (the client runs on glibc) and the RSS the server's.
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$repo/build
lib=/usr/lib/x86_64-linux-gnu
RUNS=${RUNS:-3}
tmp=$(mktemp -d /tmp/realbench.XXXXXX)
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null

impls="glibc jemalloc mimalloc tcmalloc spanalloc"
preload() {
	case "$1" in
	glibc) echo "" ;;
	jemalloc) echo "$lib/libjemalloc.so.2" ;;
	mimalloc) echo "$lib/libmimalloc.so.2" ;;
	tcmalloc) echo "$lib/libtcmalloc_minimal.so.4" ;;
	spanalloc) echo "$build/lib/libspanalloc-malloc.so" ;;
	esac
}

# The programs: name and command (run in $tmp).
programs="python sqlite3 redis cxx larson xmalloc cache-scratch"
cat > "$tmp/load.sql" <<'SQL'
CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)
INSERT INTO t(k, v) SELECT printf('key-%08d', x), randomblob(x % 300) FROM c;
COMMIT;
CREATE INDEX t_k ON t(k);
SELECT count(*) FROM t WHERE k LIKE 'key-0001%';
SQL

# run1 PROGRAM IMPL: prints "wall_s rss_kb", or "fail".
run1() {
	p=$(preload "$2")
	case "$1" in
	redis)
		env ${p:+LD_PRELOAD=$p} redis-server --port 6391 --bind 127.0.0.1 \
			--save '' --daemonize no > "$tmp/srv.log" 2>&1 &
		srv=$!
		for _ in $(seq 100); do
			redis-cli -p 6391 ping 2>/dev/null | grep -q PONG && break
			sleep 0.1
		done
		/usr/bin/time -f "%e" -o "$tmp/t" redis-benchmark -p 6391 -q -n 40000 \
			-c 20 -r 100000 -d 100 -t set,get,lpush,lpop,hset > /dev/null 2>&1 || { echo fail; kill "$srv"; wait; return; }
		rss=$(awk '/^VmHWM:/ { print $2 }' "/proc/$srv/status")
		redis-cli -p 6391 shutdown nosave > /dev/null 2>&1
		wait "$srv"
		echo "$(cat "$tmp/t") $rss"
		return ;;
	python) set -- env PYTHONMALLOC=malloc /usr/bin/python3.11 "$repo/tools/pyload.py" 150000 ;;
	sqlite3) rm -f "$tmp/b.db"; set -- sh -c "sqlite3 '$tmp/b.db' < '$tmp/load.sql'" ;;
	cxx) set -- "$build/selftests/cxx_test" --any-allocator ;;
	larson) set -- "$build/tools/allocbench" larson 4 20 ;;
	xmalloc) set -- "$build/tools/allocbench" xmalloc 4 2000000 ;;
	cache-scratch) set -- "$build/tools/allocbench" cache-scratch 4 100000 ;;
	esac
	if /usr/bin/time -f "%e %M" -o "$tmp/t" env ${p:+LD_PRELOAD=$p} "$@" > /dev/null 2> "$tmp/err"; then
		cat "$tmp/t"
	else
		echo fail
	fi
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

for r in $(seq "$RUNS"); do
	for prog in $programs; do
		for impl in $impls; do
			echo "$(run1 "$prog" "$impl")" >> "$tmp/$prog.$impl"
		done
	done
	echo "# realbench: round $r of $RUNS done" >&2
done

echo "== real programs and allocator benchmarks: median of $RUNS runs, wall time and peak RSS as ratios to glibc"
printf '%-14s' program
for impl in $impls; do printf ' %20s' "$impl"; done
echo
for prog in $programs; do
	printf '%-14s' "$prog"
	gw=$(grep -v fail "$tmp/$prog.glibc" | cut -d' ' -f1 | median)
	gr=$(grep -v fail "$tmp/$prog.glibc" | cut -d' ' -f2 | median)
	for impl in $impls; do
		if grep -q fail "$tmp/$prog.$impl"; then
			printf ' %20s' "failed"
			echo "BENCH name=$prog impl=$impl failed=1" >> "$tmp/bench-lines"
			continue
		fi
		w=$(cut -d' ' -f1 "$tmp/$prog.$impl" | median)
		m=$(cut -d' ' -f2 "$tmp/$prog.$impl" | median)
		printf ' %9s %4.2fx/%4.2fx' "${w}s" "$(echo "$w $gw" | awk '{ printf "%.2f", $1 / $2 }')" \
			"$(echo "$m $gr" | awk '{ printf "%.2f", $1 / $2 }')"
		echo "BENCH name=$prog impl=$impl wall_s=$w rss_kb=$m wall_vs_glibc=$(echo "$w $gw" | awk '{ printf "%.3f", $1 / $2 }') rss_vs_glibc=$(echo "$m $gr" | awk '{ printf "%.3f", $1 / $2 }')" >> "$tmp/bench-lines"
	done
	echo
done
echo "(each cell: median wall time, then wall time / glibc's and peak RSS / glibc's; lower is better)"
cat "$tmp/bench-lines"
rm -rf "$tmp"
